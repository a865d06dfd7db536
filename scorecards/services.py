"""Scorecards writes: snapshots (recompute, backfill with progress), the Amazon Account Health report beside
ours, and the at-risk projection's exception cases.

Scorecards write only their own tables; an exception case is opened through orders' service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone

from channels.models import ChannelAccount
from config.kernel.actors import Actor, actor_resolve
from config.kernel.errors import DomainError
from orders.models import ExceptionKind, Severity
from orders.services import exception_case_open
from scorecards import compute
from scorecards.models import (
    AccountHealthReport,
    BackfillRun,
    BackfillStatus,
    MarketplaceMetric,
    MetricDefinition,
    MetricSnapshot,
    ReportStatus,
)

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "scorecards"
BACKFILL_CHUNK_DAYS = 15


class ScorecardError(DomainError):
    code = "scorecard_error"
    http_status = 400


def _account_ids(account_ids: list[int] | None) -> list[int]:
    if account_ids is not None:
        return list(account_ids)
    return list(ChannelAccount.objects.order_by("pk").values_list("pk", flat=True))


def snapshots_recompute(
    *,
    account_ids: list[int] | None = None,
    first_day: date | None = None,
    last_day: date | None = None,
    as_of: datetime | None = None,
    full_history: bool = False,
    rebuild_facts: bool = False,
    refresh_facts: bool = True,
) -> compute.RecomputeResult:
    """Recompute every active metric for the accounts (all by default) and every day from ``first_day`` to
    ``last_day`` (default: the 90 days ending today): the per-order facts are brought up to date (the orders
    changed since the last refresh, or all with ``rebuild_facts``; not at all without ``refresh_facts``, for
    a caller that has just refreshed them), then one SQL statement aggregates them."""
    as_of = as_of or timezone.now()
    last_day = last_day or compute.utc_day(as_of)
    first_day = first_day or last_day - timedelta(days=compute.DEFAULT_DAYS - 1)
    if first_day > last_day:
        raise ScorecardError(f"the first day {first_day} is after the last day {last_day}")
    ids = _account_ids(account_ids)
    params = compute.recompute_params(
        account_ids=ids, first_day=first_day, last_day=last_day, as_of=as_of, full_history=full_history
    )
    if refresh_facts or rebuild_facts:
        compute.facts_refresh(full=rebuild_facts)
    written = compute.snapshots_recompute_sql(params)
    return compute.RecomputeResult(accounts=len(ids), first_day=first_day, last_day=last_day, snapshots=written)


def scorecards_backfill(
    *,
    actor: Actor,
    days: int = compute.DEFAULT_DAYS,
    account_ids: list[int] | None = None,
    as_of: datetime | None = None,
    chunk_days: int = BACKFILL_CHUNK_DAYS,
    on_progress: Callable[[BackfillRun], None] | None = None,
) -> BackfillRun:
    """Recompute ``days`` of history, ``chunk_days`` at a time, recording progress on a BackfillRun."""
    name, _ = actor_resolve(actor)
    if not 1 <= days <= 3 * 366:
        raise ScorecardError(f"a backfill covers 1 to {3 * 366} days, not {days}")
    as_of = as_of or timezone.now()
    last_day = compute.utc_day(as_of)
    first_day = last_day - timedelta(days=days - 1)
    run = BackfillRun.objects.create(
        started_at=timezone.now(), started_by=name, first_day=first_day, last_day=last_day, days_total=days
    )
    day = first_day
    try:
        # A backfill re-derives every order's facts once, then recomputes chunk by chunk over them. (A refresh
        # per chunk would re-read as "changed" every order written just before the first one, an order list
        # the size of a fresh history.)
        compute.facts_refresh(full=True)
        while day <= last_day:
            end = min(day + timedelta(days=chunk_days - 1), last_day)
            result = snapshots_recompute(
                account_ids=account_ids, first_day=day, last_day=end, as_of=as_of, refresh_facts=False
            )
            run.days_done += (end - day).days + 1
            run.snapshots += result.snapshots
            run.save(update_fields=["days_done", "snapshots"])
            if on_progress:
                on_progress(run)
            day = end + timedelta(days=1)
    except Exception as exc:
        run.status = BackfillStatus.FAILED
        run.error = str(exc)[:2000]
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])
        raise
    run.status = BackfillStatus.DONE
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "finished_at"])
    return run


def scorecards_refresh(*, as_of: datetime | None = None) -> dict:
    """The beat's job: accounts without history get a backfill; every account's current windows (yesterday
    and today) are recomputed; the at-risk projection opens its cases."""
    as_of = as_of or timezone.now()
    today = compute.utc_day(as_of)
    ids = _account_ids(None)
    with_history = set(
        MetricSnapshot.objects.filter(day__lte=today - timedelta(days=1))
        .values_list("account_id", flat=True)
        .distinct()
    )
    missing = [pk for pk in ids if pk not in with_history]
    backfilled = None
    if missing:
        backfilled = scorecards_backfill(actor=SYSTEM_ACTOR, account_ids=missing, as_of=as_of).snapshots
    result = snapshots_recompute(account_ids=ids, first_day=today - timedelta(days=1), last_day=today, as_of=as_of)
    from scorecards.projection import at_risk_cases_open

    cases = at_risk_cases_open(as_of=as_of)
    return {"snapshots": result.snapshots, "backfilled": backfilled, "cases_opened": cases}


# --- the marketplace's own numbers ------------------------------------------------------------------------

# The report's metric → (where its numerator and denominator are, our definition's marketplace_metric)
REPORT_METRICS: dict[str, tuple[str, str]] = {
    "lateShipmentRate": ("lateShipmentCount", "orderCount"),
    "preFulfillmentCancellationRate": ("cancellationCount", "orderCount"),
    "validTrackingRate": ("validTrackingCount", "shipmentCount"),
    "onTimeDeliveryRate": ("onTimeDeliveryCount", "shipmentCountWithValidTracking"),
}


def _decimal(value, where: str) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ScorecardError(f"{where}: {value!r} is not a number") from exc


def _moment(value, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ScorecardError(f"{where}: {value!r} is not a date and time") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


@dataclass
class ParsedMetric:
    metric: str
    marketplace_id: str
    reporting_from: datetime
    reporting_to: datetime
    numerator: int | None
    denominator: int | None
    rate: Decimal
    target_value: Decimal | None
    target_condition: str
    status: str
    details: dict = field(default_factory=dict)


def account_health_parse(document: dict) -> list[ParsedMetric]:
    """The metrics of an Account Health document (schema amazon-account-health-report-schema.json)."""
    out: list[ParsedMetric] = []
    for index, block in enumerate(document.get("performanceMetrics") or []):
        where = f"performanceMetrics[{index}]"
        marketplace = str(block.get("marketplaceId", ""))
        entries: list[tuple[str, dict, str | None, str | None]] = []
        for name, (num_key, den_key) in REPORT_METRICS.items():
            if isinstance(block.get(name), dict):
                entries.append((name, block[name], num_key, den_key))
        odr = block.get("orderDefectRate") or {}
        for kind in ("mfn", "afn"):
            if isinstance(odr.get(kind), dict):
                entries.append((f"orderDefectRate.{kind}", odr[kind], None, "orderCount"))
        for name, entry, num_key, den_key in entries:
            rng = entry.get("reportingDateRange") or {}
            details = {}
            if name.startswith("orderDefectRate"):
                details = {k: (entry.get(k) or {}).get("count") for k in ("claims", "chargebacks", "negativeFeedback")}
                numerator = (entry.get("orderWithDefects") or {}).get("count")
            else:
                numerator = entry.get(num_key)
            denominator = entry.get(den_key) if den_key else None
            out.append(
                ParsedMetric(
                    metric=name,
                    marketplace_id=marketplace,
                    reporting_from=_moment(rng.get("reportingDateFrom"), f"{where}.{name}.reportingDateFrom"),
                    reporting_to=_moment(rng.get("reportingDateTo"), f"{where}.{name}.reportingDateTo"),
                    numerator=int(numerator) if numerator is not None else None,
                    denominator=int(denominator) if denominator is not None else None,
                    rate=_decimal(entry.get("rate"), f"{where}.{name}.rate"),
                    target_value=_decimal(entry["targetValue"], f"{where}.{name}.targetValue")
                    if entry.get("targetValue") is not None
                    else None,
                    target_condition=str(entry.get("targetCondition", "")),
                    status=str(entry.get("status", "")),
                    details=details,
                )
            )
    return out


def account_health_fetch(*, account: ChannelAccount | int, actor: Actor = SYSTEM_ACTOR) -> AccountHealthReport:
    """Fetch the Account Health report through the Amazon connector, store its metrics beside ours and open
    a case for each metric that diverges beyond its definition's tolerance."""
    from channels.services import connector_for

    actor_resolve(actor)
    account = account if isinstance(account, ChannelAccount) else ChannelAccount.objects.get(pk=account)
    if account.kind != "amazon":
        raise ScorecardError(f"{account} is a {account.kind} account: only Amazon publishes an Account Health report")
    report = AccountHealthReport.objects.create(
        account=account, report_type="GET_V2_SELLER_PERFORMANCE_REPORT", requested_at=timezone.now()
    )
    state: dict = {}
    connector = connector_for(account)
    try:
        document = connector.account_health(state=state)
        parsed = account_health_parse(document)
    except Exception as exc:
        report.status = ReportStatus.FAILED
        report.report_id = str(state.get("report_id", ""))
        report.error = str(exc)[:2000]
        report.save(update_fields=["status", "report_id", "error"])
        raise
    finally:
        connector.close()
    with transaction.atomic():
        report.status = ReportStatus.DONE
        report.report_id = str(state.get("report_id", ""))
        report.fetched_at = timezone.now()
        report.document = document
        report.save(update_fields=["status", "report_id", "fetched_at", "document"])
        MarketplaceMetric.objects.bulk_create(
            MarketplaceMetric(
                report=report,
                account=account,
                marketplace_id=m.marketplace_id,
                metric=m.metric,
                reporting_from=m.reporting_from,
                reporting_to=m.reporting_to,
                numerator=m.numerator,
                denominator=m.denominator,
                rate=m.rate,
                target_value=m.target_value,
                target_condition=m.target_condition,
                status=m.status,
                details=m.details,
            )
            for m in parsed
        )
    # ODR's numerator comes from this report: the days it covers are recomputed with it.
    last = max((compute.utc_day(m.reporting_to) for m in parsed), default=compute.utc_day(timezone.now()))
    snapshots_recompute(account_ids=[account.pk], first_day=last - timedelta(days=1), last_day=last)
    marketplace_metrics_compare(report=report)
    return report


def marketplace_metrics_compare(*, report: AccountHealthReport) -> list[MarketplaceMetric]:
    """Set ours beside theirs (the snapshot on the report's last day) and open a case per divergence."""
    definitions = {
        d.marketplace_metric: d
        for d in MetricDefinition.objects.filter(channel_kind="amazon", is_active=True)
        .exclude(marketplace_metric="")
        .order_by("effective_from", "version")
    }
    diverging = []
    metrics = list(report.metrics.all())
    for metric in metrics:
        definition = definitions.get(metric.metric)
        if definition is None:
            continue
        snapshot = MetricSnapshot.objects.filter(
            account_id=report.account_id, code=definition.code, day=compute.utc_day(metric.reporting_to)
        ).first()
        if snapshot is None or snapshot.value is None:
            continue
        metric.ours_numerator = snapshot.numerator
        metric.ours_denominator = snapshot.denominator
        metric.ours_rate = snapshot.value
        metric.diverges = abs(snapshot.value - metric.rate) > definition.divergence_tolerance
        metric.save(update_fields=["ours_numerator", "ours_denominator", "ours_rate", "diverges"])
        if metric.diverges:
            diverging.append(metric)
            exception_case_open(
                kind=ExceptionKind.METRIC_WARNING,
                title=(
                    f"{report.account.name} {definition.name}: Waybill {snapshot.value * 100:.2f}% but Amazon "
                    f"reports {metric.rate * 100:.2f}%"
                )[:255],
                detail=(
                    f"Amazon's Account Health report ({metric.reporting_from:%Y-%m-%d} to "
                    f"{metric.reporting_to:%Y-%m-%d}) says {metric.numerator} of {metric.denominator}; Waybill "
                    f"counts {snapshot.numerator} of {snapshot.denominator} over its {definition.window_days}-day "
                    f"window. The tolerance is {definition.divergence_tolerance * 100:.2f} points."
                ),
                severity=Severity.MEDIUM,
                account_id=report.account_id,
                actor=SYSTEM_ACTOR,
                dedupe_key=f"metric_divergence:account={report.account_id}:metric={definition.code}",
            )
    return diverging
