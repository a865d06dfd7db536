"""The Amazon sandbox's Reports API (2021-06-30): createReport → getReport (IN_QUEUE → IN_PROGRESS → DONE,
one step per read) → getReportDocument → the document at a presigned-style URL.

Report types are served by generators keyed by ``reportType`` (``report_generators``: the sandbox adds the
returns report, a flat file); a report type with
no generator ends FATAL, as Amazon does for a type the seller cannot request. The Account Health report
``GET_V2_SELLER_PERFORMANCE_REPORT`` (document schema amazon-account-health-report-schema.json) is computed
from what the sandbox recorded: the orders, their ship-by windows, the packages confirmed (createdTime is
when Amazon accepted the confirmation) and who cancelled. What only Amazon knows, and a test sets:

  POST /_sandbox/amazon/account_health  {"defects": {"<orderId>": ["claim", "chargeback", "negative_feedback"]},
                                         "unscanned": ["<tracking number>"], "late_deliveries": ["<tracking>"]}
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from channels.sandbox.base import Request, Response, iso_z, utcnow

SPEC_REPORTS = "amazon-reports-2021-06-30.json"
ACCOUNT_HEALTH_REPORT = "GET_V2_SELLER_PERFORMANCE_REPORT"
DEFECT_KINDS = ("claim", "chargeback", "negative_feedback")
# The windows Amazon's Account Health page uses for each metric.
WINDOWS = {"orderDefectRate": 60, "lateShipmentRate": 30, "preFulfillmentCancellationRate": 7, "validTrackingRate": 30}
WINDOWS["onTimeDeliveryRate"] = 14


def _minute(value: datetime) -> str:
    """Amazon's reporting dates: UTC to the minute, "2020-11-18T23:59Z"."""
    return value.strftime("%Y-%m-%dT%H:%MZ")


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _rate(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 6) if denominator else 0.0


def _status(rate: float, target: float, condition: str, denominator: int) -> str:
    if not denominator:
        return "NONE"
    good = rate < target if condition == "LESS_THAN" else rate > target
    return "GOOD" if good else "BAD"


class AmazonReportsMixin:
    """Mixed into AmazonSandbox: its routes, handlers and the Account Health generator."""

    def reports_init(self) -> None:
        self.reports: dict[str, dict] = {}
        self.report_documents: dict[str, dict] = {}
        # What only Amazon knows.
        self.health_defects: dict[str, set[str]] = {}
        self.health_unscanned: set[str] = set()
        self.health_late_deliveries: set[str] = set()

    def report_routes(self) -> list:
        return [
            ("POST", "/reports/2021-06-30/reports", self.create_report),
            ("GET", "/reports/2021-06-30/reports/{report_id}", self.get_report),
            ("GET", "/reports/2021-06-30/documents/{document_id}", self.get_report_document),
            ("GET", "/_sandbox/reports/{document_id}", self.download_report),
            ("POST", "/_sandbox/amazon/account_health", self.admin_account_health),
        ]

    @property
    def report_generators(self) -> dict:
        """reportType -> generator(report) giving the document: a JSON-able value, or (bytes, content type)."""
        return {ACCOUNT_HEALTH_REPORT: lambda report: self.account_health_document(report["marketplaceIds"])}

    # --- the Reports API ------------------------------------------------------------------------

    def create_report(self, request: Request) -> Response:
        body = request.json()
        unknown = [m for m in body["marketplaceIds"] if m not in self.known_marketplaces()]
        if unknown:
            return self.report_error(400, "InvalidInput", f"Invalid marketplaceIds: {', '.join(unknown)}")
        now = utcnow()
        for key in ("dataStartTime", "dataEndTime"):
            moment = _parse(body.get(key))
            if moment is not None and moment > now + timedelta(seconds=5):
                return self.report_error(400, "InvalidInput", f"{key} must be prior to or equal to the current time.")
        report_id = str(60_000_000_000 + len(self.reports) + 1)
        self.reports[report_id] = {
            "reportId": report_id,
            "reportType": body["reportType"],
            "marketplaceIds": body["marketplaceIds"],
            "createdTime": iso_z(now),
            "processingStatus": "IN_QUEUE",
            **{k: body[k] for k in ("dataStartTime", "dataEndTime") if k in body},
        }
        return Response(202, {"reportId": report_id})

    def get_report(self, request: Request, report_id: str) -> Response:
        report = self.reports.get(report_id)
        if report is None:
            return self.report_error(404, "NotFound", f"Report {report_id} was not found.")
        if report["processingStatus"] == "IN_QUEUE":
            report["processingStatus"] = "IN_PROGRESS"
            report["processingStartTime"] = iso_z(utcnow())
        elif report["processingStatus"] == "IN_PROGRESS":
            generator = self.report_generators.get(report["reportType"])
            report["processingEndTime"] = iso_z(utcnow())
            if generator is None:
                report["processingStatus"] = "FATAL"
            else:
                document_id = f"amzn1.spdoc.1.4.na.{uuid.uuid4()}"
                produced = generator(report)
                if isinstance(produced, tuple):  # (bytes, content type): a flat-file report
                    content, content_type = produced
                else:
                    content, content_type = json.dumps(produced).encode(), "application/json"
                self.report_documents[document_id] = {"content": content, "contentType": content_type}
                report["processingStatus"] = "DONE"
                report["reportDocumentId"] = document_id
        return Response(200, dict(report))

    def get_report_document(self, request: Request, document_id: str) -> Response:
        if document_id not in self.report_documents:
            return self.report_error(404, "NotFound", "Report document not found.")
        return Response(
            200, {"reportDocumentId": document_id, "url": f"{self.base_url}/_sandbox/reports/{document_id}"}
        )

    def download_report(self, request: Request, document_id: str) -> Response:
        document = self.report_documents.get(document_id)
        if document is None:
            return Response(
                404, raw=b"<Error><Code>NoSuchKey</Code></Error>", headers={"Content-Type": "application/xml"}
            )
        return Response(200, raw=document["content"], headers={"Content-Type": document["contentType"]})

    def admin_account_health(self, request: Request) -> Response:
        data = request.json()
        for order_id, kinds in (data.get("defects") or {}).items():
            wrong = [kind for kind in kinds if kind not in DEFECT_KINDS]
            if wrong:
                return Response(400, {"error": f"unknown defect kind(s) {wrong}; expected {list(DEFECT_KINDS)}"})
            self.health_defects.setdefault(str(order_id), set()).update(kinds)
        self.health_unscanned.update(str(t) for t in data.get("unscanned") or [])
        self.health_late_deliveries.update(str(t) for t in data.get("late_deliveries") or [])
        return Response(200, {"defects": len(self.health_defects), "unscanned": len(self.health_unscanned)})

    # --- GET_V2_SELLER_PERFORMANCE_REPORT from what the sandbox recorded -------------------------

    def account_health_document(self, marketplace_ids: list[str]) -> dict[str, Any]:
        now = utcnow().replace(second=0, microsecond=0)
        metrics = [self._marketplace_health(marketplace, now) for marketplace in marketplace_ids]
        statuses = [
            {
                "marketplaceId": m["marketplaceId"],
                "status": "AT_RISK" if any(w["status"] == "BAD" for w in m["warningStates"]) else "NORMAL",
            }
            for m in metrics
        ]
        return {"accountStatuses": statuses, "performanceMetrics": metrics}

    def _range(self, now: datetime, days: int) -> tuple[datetime, datetime, dict]:
        start = (now - timedelta(days=days)).replace(hour=0, minute=0) + timedelta(days=1)
        return start, now, {"reportingDateFrom": _minute(start), "reportingDateTo": _minute(now)}

    def _marketplace_health(self, marketplace: str, now: datetime) -> dict[str, Any]:
        with self.state.lock:
            orders = [o for o in self.state.orders.values() if self.state.marketplace(o) == marketplace]
        mfn = [o for o in orders if o.fulfilled_by == "MERCHANT"]
        afn = [o for o in orders if o.fulfilled_by != "MERCHANT"]

        start, end, odr_range = self._range(now, WINDOWS["orderDefectRate"])

        def odr(group: list, kind: str) -> dict:
            placed = [o for o in group if start <= o.created_at <= end]
            defects = [self.health_defects.get(o.order_id, set()) for o in placed]
            counts = {k: sum(1 for d in defects if k in d) for k in DEFECT_KINDS}
            with_defects = sum(1 for d in defects if d)
            rate = _rate(with_defects, len(placed))
            status = _status(rate, 0.01, "LESS_THAN", len(placed))
            return {
                "reportingDateRange": odr_range,
                "orderCount": len(placed),
                "orderWithDefects": {"count": with_defects, "status": status},
                "claims": {"count": counts["claim"], "status": "NONE"},
                "chargebacks": {"count": counts["chargeback"], "status": "NONE"},
                "negativeFeedback": {"count": counts["negative_feedback"], "status": "NONE"},
                "fulfillmentType": kind,
                "status": status,
                "rate": rate,
                "targetValue": 0.01,
                "targetCondition": "LESS_THAN",
            }

        # Late shipment: MFN orders whose ship-by falls in the window and that were confirmed.
        start, end, lsr_range = self._range(now, WINDOWS["lateShipmentRate"])
        confirmed = [o for o in mfn if o.packages and o.ship_by and start <= o.ship_by <= end]
        late = sum(1 for o in confirmed if min(_parse(p["createdTime"]) for p in o.packages) > o.ship_by)
        lsr_rate = _rate(late, len(confirmed))
        lsr_status = _status(lsr_rate, 0.04, "LESS_THAN", len(confirmed))

        # Pre-fulfilment cancels: MFN orders placed in the window that the seller cancelled.
        start, end, cancel_range = self._range(now, WINDOWS["preFulfillmentCancellationRate"])
        placed = [o for o in mfn if start <= o.created_at <= end]
        cancelled = sum(
            1
            for o in placed
            if self.state.cancelled_by.get(o.order_id) == "MERCHANT" and any(line.cancelled for line in o.lines)
        )
        cancel_rate = _rate(cancelled, len(placed))
        cancel_status = _status(cancel_rate, 0.025, "LESS_THAN", len(placed))

        # Valid tracking: MFN orders confirmed in the window; valid unless the carrier never scanned it.
        start, end, vtr_range = self._range(now, WINDOWS["validTrackingRate"])
        shipped = [o for o in mfn if o.packages and start <= min(_parse(p["createdTime"]) for p in o.packages) <= end]
        valid = sum(1 for o in shipped if not any(p["trackingNumber"] in self.health_unscanned for p in o.packages))
        vtr_rate = _rate(valid, len(shipped))
        vtr_status = _status(vtr_rate, 0.95, "GREATER_THAN", len(shipped))

        start, end, otd_range = self._range(now, WINDOWS["onTimeDeliveryRate"])
        tracked = [
            o
            for o in mfn
            if o.packages
            and start <= min(_parse(p["createdTime"]) for p in o.packages) <= end
            and not any(p["trackingNumber"] in self.health_unscanned for p in o.packages)
        ]
        on_time = sum(
            1 for o in tracked if not any(p["trackingNumber"] in self.health_late_deliveries for p in o.packages)
        )
        otd_rate = _rate(on_time, len(tracked))
        units = sum(line.quantity for o in tracked for line in o.lines)
        units_on_time = sum(
            line.quantity
            for o in tracked
            if not any(p["trackingNumber"] in self.health_late_deliveries for p in o.packages)
            for line in o.lines
        )
        mfn_odr = odr(mfn, "mfn")
        zero = {"reportingDateRange": lsr_range, "defectsCount": 0, "status": "GOOD", "targetValue": 0}
        zero["targetCondition"] = "EQUALS"
        return {
            "marketplaceId": marketplace,
            "invoiceDefectRate": {
                "reportingDateRange": lsr_range,
                "orderCount": 0,
                "invoiceDefect": {"count": 0, "status": "NONE"},
                "missingInvoice": {"count": 0, "status": "NONE"},
                "lateInvoice": {"count": 0, "status": "NONE"},
                "status": "NONE",
                "rate": 0.0,
                "targetValue": 0.05,
                "targetCondition": "LESS_THAN",
            },
            "lateShipmentRate": {
                "reportingDateRange": lsr_range,
                "orderCount": len(confirmed),
                "lateShipmentCount": late,
                "status": lsr_status,
                "rate": lsr_rate,
                "targetValue": 0.04,
                "targetCondition": "LESS_THAN",
            },
            "orderDefectRate": {"mfn": mfn_odr, "afn": odr(afn, "afn")},
            "onTimeDeliveryRate": {
                "reportingDateRange": otd_range,
                "shipmentCountWithValidTracking": len(tracked),
                "onTimeDeliveryCount": on_time,
                "status": _status(otd_rate, 0.97, "GREATER_THAN", len(tracked)),
                "rate": otd_rate,
                "targetValue": 0.97,
                "targetCondition": "GREATER_THAN",
            },
            "unitOnTimeDeliveryRate": {
                "reportingDateRange": otd_range,
                "status": _status(_rate(units_on_time, units), 0.97, "GREATER_THAN", units),
                "targetValue": 0.97,
                "targetCondition": "GREATER_THAN",
                "unitOnTimeDeliveryCount": units_on_time,
                "totalUnitCount": units,
                "rate": _rate(units_on_time, units),
            },
            "validTrackingRate": {
                "reportingDateRange": vtr_range,
                "shipmentCount": len(shipped),
                "validTrackingCount": valid,
                "status": vtr_status,
                "rate": vtr_rate,
                "targetValue": 0.95,
                "targetCondition": "GREATER_THAN",
            },
            "preFulfillmentCancellationRate": {
                "reportingDateRange": cancel_range,
                "orderCount": len(placed),
                "cancellationCount": cancelled,
                "status": cancel_status,
                "rate": cancel_rate,
                "targetValue": 0.025,
                "targetCondition": "LESS_THAN",
            },
            "warningStates": [
                {"warningType": "ORDER_DEFECT_RATE", "status": mfn_odr["status"]},
                {"warningType": "LATE_SHIPMENT_RATE", "status": lsr_status},
                {"warningType": "PRE_FULFILLMENT_CANCEL_RATE", "status": cancel_status},
                {"warningType": "VALID_TRACKING_RATE", "status": vtr_status},
            ],
            "accountHealthRating": {
                "ahrStatus": "GREAT" if mfn_odr["status"] != "BAD" and lsr_status != "BAD" else "WARNED",
                "reportingDateRange": odr_range,
            },
            **{
                name: dict(zero)
                for name in (
                    "listingPolicyViolations",
                    "productAuthenticityCustomerComplaints",
                    "productConditionCustomerComplaints",
                    "productSafetyCustomerComplaints",
                    "receivedIntellectualPropertyComplaints",
                    "restrictedProductPolicyViolations",
                    "suspectedIntellectualPropertyViolations",
                    "foodAndProductSafetyIssues",
                    "otherPolicyViolations",
                    "documentRequests",
                )
            },
        }
