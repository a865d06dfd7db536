"""Amazon Reports API 2021-06-30 (channel-specs/amazon-reports-2021-06-30.json), mixed into AmazonConnector:
createReport → poll getReport until DONE → getReportDocument → download (GZIP when Amazon says so).

The scorecards read the seller's Account Health this way (GET_V2_SELLER_PERFORMANCE_REPORT, document schema
channel-specs/amazon-account-health-report-schema.json); any other report type uses the same calls.
"""

from __future__ import annotations

import gzip
import json
import time
from datetime import datetime
from typing import Any, ClassVar

from channels.connectors.base import ChannelError, json_body

ACCOUNT_HEALTH_REPORT = "GET_V2_SELLER_PERFORMANCE_REPORT"
REPORTS = "/reports/2021-06-30"


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class AmazonReportsMixin:
    report_poll_attempts: ClassVar[int] = 20
    report_poll_interval: ClassVar[float] = 0.5

    def create_report_body(
        self,
        report_type: str,
        *,
        marketplace_ids: list[str] | None = None,
        data_start: datetime | None = None,
        data_end: datetime | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"reportType": report_type, "marketplaceIds": marketplace_ids or [self._marketplace()]}
        if data_start is not None:
            body["dataStartTime"] = _iso(data_start)
        if data_end is not None:
            body["dataEndTime"] = _iso(data_end)
        return body

    def report_create(self, report_type: str, **options: Any) -> str:
        response = self.call("POST", f"{REPORTS}/reports", json=self.create_report_body(report_type, **options))
        if response.status_code not in (200, 202):
            raise self.failure(f"createReport {report_type}", response)
        return str(json_body(response, "createReport")["reportId"])

    def report_get(self, report_id: str) -> dict[str, Any]:
        response = self.call("GET", f"{REPORTS}/reports/{report_id}")
        if response.status_code != 200:
            raise self.failure(f"getReport {report_id}", response)
        return json_body(response, "getReport")

    def report_document(self, document_id: str) -> bytes:
        response = self.call("GET", f"{REPORTS}/documents/{document_id}")
        if response.status_code != 200:
            raise self.failure(f"getReportDocument {document_id}", response)
        document = json_body(response, "getReportDocument")
        download = self.http.request("GET", document["url"])
        if download.status_code != 200:
            raise ChannelError(f"report document download: HTTP {download.status_code}", status=download.status_code)
        content = download.content
        if document.get("compressionAlgorithm") == "GZIP":
            content = gzip.decompress(content)
        return content

    def report_fetch(self, report_type: str, *, state: dict, **options: Any) -> bytes:
        """Request a report (once: ``state["report_id"]`` resumes a poll) and return its document's bytes."""
        if not state.get("report_id"):
            state["report_id"] = self.report_create(report_type, **options)
        for _ in range(self.report_poll_attempts):
            report = self.report_get(state["report_id"])
            status = report.get("processingStatus")
            if status == "DONE":
                return self.report_document(report["reportDocumentId"])
            if status in ("CANCELLED", "FATAL"):
                state.pop("report_id", None)
                raise ChannelError(f"report {report.get('reportId')} ended {status}", retryable=False, detail=report)
            time.sleep(self.report_poll_interval)
        raise ChannelError(f"report {state['report_id']} still processing; will poll again", retryable=True)

    def account_health(self, *, state: dict) -> dict[str, Any]:
        """The seller's Account Health document (accountStatuses, performanceMetrics per marketplace)."""
        content = self.report_fetch(
            ACCOUNT_HEALTH_REPORT, state=state, marketplace_ids=list(self.account.marketplace_ids or []) or None
        )
        try:
            document = json.loads(content)
        except ValueError as exc:
            raise ChannelError(f"the Account Health report is not JSON: {exc}", retryable=False) from exc
        if not isinstance(document, dict) or not isinstance(document.get("performanceMetrics"), list):
            raise ChannelError("the Account Health report has no performanceMetrics list", retryable=False)
        return document
