"""Exceptions detected in seconds, not by a nightly scan.

As a scan arrives (tracking_events_record calls tracking_scan_cases in its transaction): a carrier
delivery exception or a return to sender, a carrier's delay, a delivery later than promised each open
(or refresh) one case for the shipment at once; a scan after silence, or the delivery, settles the
tracking cases it answers.

Every few seconds (exceptions_detect, from fulfillment.tasks.exceptions_detect_task): a shipment not
picked with less than the node's pick time left before its ship-by (or its cutoff that day), a shipment
past its ship-by, tracking stalled for hours (the task also runs tracking_checks_run: no scan N hours
after shipping, undelivered past the promise). Cases of shipments that have since moved on are resolved
by the same run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from config.kernel.actors import Actor, actor_resolve
from fulfillment.models import Shipment, ShipmentStatus, TrackingEvent, TrackingStatus
from fulfillment.status import PRE_SHIP
from orders import services as order_services
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, Severity

S = ShipmentStatus
DETECTOR = "detector"
NOT_PICKED = (S.RELEASED, S.ACKNOWLEDGED)
SCAN_CASES = {
    TrackingStatus.EXCEPTION: (ExceptionKind.DELIVERY_EXCEPTION, Severity.HIGH, "carrier delivery exception"),
    TrackingStatus.RETURNED_TO_SENDER: (ExceptionKind.DELIVERY_EXCEPTION, Severity.CRITICAL, "returned to sender"),
    TrackingStatus.DELAYED: (ExceptionKind.DELIVERY_LATE, Severity.HIGH, "the carrier reports a delay"),
}
# What a later scan settles: any scan ends silence; the delivery ends every tracking case of the parcel.
SETTLED_BY_SCAN = (ExceptionKind.TRACKING_MISSING, ExceptionKind.STALLED_TRACKING)
SETTLED_BY_DELIVERY = (*SETTLED_BY_SCAN, ExceptionKind.DELIVERY_EXCEPTION)


def shipment_case_key(kind: str, shipment_id: int) -> str:
    return f"{kind}:shipment={shipment_id}"


def _open(shipment: Shipment, kind: str, severity: str, title: str, detail: str, actor: Actor) -> tuple[int, bool]:
    case, created = order_services.exception_case_open(
        kind=kind,
        title=title,
        detail=detail,
        severity=severity,
        order_id=shipment.order_id,
        actor=actor,
        dedupe_key=shipment_case_key(kind, shipment.pk),
    )
    return case.pk, created


def _settle(shipment_id: int, kinds: Iterable[str], note: str, actor: Actor) -> list[int]:
    keys = [shipment_case_key(kind, shipment_id) for kind in kinds]
    ids = list(
        ExceptionCase.objects.filter(dedupe_key__in=keys)
        .exclude(status=CaseStatus.RESOLVED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for case_id in ids:
        order_services.exception_case_resolve(case=case_id, note=note, actor=actor)
    return ids


def tracking_scan_cases(*, shipment: Shipment, events: list[TrackingEvent], actor: Actor) -> list[int]:
    """Open the cases these new scans call for, and settle the ones they answer. Runs in the caller's
    transaction (the shipment row is locked). Returns the ids of the cases opened."""
    opened = []
    where = f"tracking {shipment.tracking_number}" if shipment.tracking_number else f"shipment {shipment.pk}"
    for event in sorted(events, key=lambda e: e.occurred_at):
        if event.status in SCAN_CASES:
            kind, severity, what = SCAN_CASES[event.status]
            text = f"{event.description} " if event.description else ""
            case_id, created = _open(
                shipment,
                kind,
                severity,
                f"Shipment {shipment.pk}: {what}",
                f"{text}({where}, {event.location_text or 'no location'}, "
                f"scanned {event.occurred_at:%Y-%m-%d %H:%M %Z}).",
                actor,
            )
            if created:
                opened.append(case_id)
        elif (
            event.status == TrackingStatus.DELIVERED
            and shipment.promised_delivery_at
            and event.occurred_at > shipment.promised_delivery_at
        ):
            late = event.occurred_at - shipment.promised_delivery_at
            case_id, created = _open(
                shipment,
                ExceptionKind.DELIVERY_LATE,
                Severity.MEDIUM,
                f"Shipment {shipment.pk}: delivered {_hours(late)} after its promise",
                f"Promised {shipment.promised_delivery_at:%Y-%m-%d %H:%M %Z}, delivered "
                f"{event.occurred_at:%Y-%m-%d %H:%M %Z} ({where}). Counts against on-time delivery.",
                actor,
            )
            if created:
                opened.append(case_id)
    scanned = [e for e in events if e.status != TrackingStatus.LABEL_CREATED]
    if scanned:
        delivered = any(e.status == TrackingStatus.DELIVERED for e in scanned)
        _settle(
            shipment.pk,
            SETTLED_BY_DELIVERY if delivered else SETTLED_BY_SCAN,
            "delivered" if delivered else "the carrier scanned the parcel",
            actor,
        )
    return opened


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours >= 1 else f"{delta.total_seconds() / 60:.0f} min"


def _deadline(shipment: Shipment, now: datetime) -> datetime:
    """The time the parcel must be on the truck: its ship-by, or the node's cutoff on the ship-by's local
    day if that comes first."""
    deadline = shipment.ship_by
    location = shipment.location
    if location.cutoff_time:
        zone = ZoneInfo(location.timezone or "UTC")
        local_day = deadline.astimezone(zone).date()
        cutoff = datetime.combine(local_day, location.cutoff_time, tzinfo=zone)
        deadline = min(deadline, cutoff)
    return deadline


@dataclass
class DetectResult:
    at_risk: list[int] = field(default_factory=list)
    late: list[int] = field(default_factory=list)
    stalled: list[int] = field(default_factory=list)
    settled: list[int] = field(default_factory=list)


def exceptions_detect(*, actor: Actor = DETECTOR, now: datetime | None = None, limit: int = 2000) -> DetectResult:
    """One detection pass (see the module docstring). Idempotent: an open case is refreshed, not doubled."""
    actor_resolve(actor)
    now = now or timezone.now()
    pick = timedelta(minutes=settings.WAYBILL_PICK_MINUTES)
    result = DetectResult()
    # Ship-by at risk: not picked, and less than the pick time left before the deadline.
    candidates = (
        Shipment.objects.filter(
            status__in=NOT_PICKED, ship_by__isnull=False, ship_by__lt=now + pick + timedelta(days=1)
        )
        .select_related("location")
        .order_by("ship_by", "pk")[:limit]
    )
    for shipment in candidates:
        deadline = _deadline(shipment, now)
        if now <= deadline < now + pick:
            case_id, created = _open(
                shipment,
                ExceptionKind.SHIP_BY_AT_RISK,
                Severity.HIGH,
                f"Shipment {shipment.pk} at {shipment.location.code}: ship-by at risk",
                f"Not picked yet and {_hours(deadline - now)} left before {deadline:%Y-%m-%d %H:%M %Z}; "
                f"picking takes about {settings.WAYBILL_PICK_MINUTES} min.",
                actor,
            )
            if created:
                result.at_risk.append(case_id)
    # Late: past its ship-by and still at the node.
    late = (
        Shipment.objects.filter(status__in=list(PRE_SHIP), ship_by__lt=now)
        .select_related("location")
        .order_by("ship_by", "pk")[:limit]
    )
    for shipment in late:
        case_id, created = _open(
            shipment,
            ExceptionKind.LATE_SHIPMENT,
            Severity.CRITICAL,
            f"Shipment {shipment.pk} at {shipment.location.code}: late, ship-by passed",
            f"Ship-by {shipment.ship_by:%Y-%m-%d %H:%M %Z} passed {_hours(now - shipment.ship_by)} ago; status "
            f"{shipment.get_status_display().lower()}. Counts against the late shipment rate.",
            actor,
        )
        if created:
            result.late.append(case_id)
    # Stalled: in transit with no scan for hours.
    stalled_after = timedelta(hours=settings.WAYBILL_STALLED_TRACKING_HOURS)
    stalled = Shipment.objects.filter(
        status__in=[S.IN_TRANSIT, S.OUT_FOR_DELIVERY], last_scan_at__lt=now - stalled_after
    ).order_by("last_scan_at", "pk")[:limit]
    for shipment in stalled:
        case_id, created = _open(
            shipment,
            ExceptionKind.STALLED_TRACKING,
            Severity.MEDIUM,
            f"Shipment {shipment.pk}: tracking stalled",
            f"No carrier scan since {shipment.last_scan_at:%Y-%m-%d %H:%M %Z} ({shipment.tracking_number}).",
            actor,
        )
        if created:
            result.stalled.append(case_id)
    result.settled = _settle_moved_on(actor=actor)
    return result


def _settle_moved_on(*, actor: Actor) -> list[int]:
    """At-risk and late cases of shipments that have shipped or been cancelled since."""
    settled = []
    for kind in (ExceptionKind.SHIP_BY_AT_RISK, ExceptionKind.LATE_SHIPMENT):
        open_cases = dict(
            ExceptionCase.objects.filter(kind=kind, dedupe_key__startswith=f"{kind}:shipment=")
            .exclude(status=CaseStatus.RESOLVED)
            .values_list("pk", "dedupe_key")[:2000]
        )
        if not open_cases:
            continue
        by_shipment = {int(key.rsplit("=", 1)[1]): pk for pk, key in open_cases.items()}
        picked_or_gone = Shipment.objects.filter(pk__in=list(by_shipment)).exclude(
            status__in=list(NOT_PICKED) if kind == ExceptionKind.SHIP_BY_AT_RISK else list(PRE_SHIP)
        )
        for shipment_id, status in picked_or_gone.values_list("pk", "status"):
            order_services.exception_case_resolve(
                case=by_shipment[shipment_id], note=f"shipment moved on: {status}", actor=actor
            )
            settled.append(by_shipment[shipment_id])
    return settled
