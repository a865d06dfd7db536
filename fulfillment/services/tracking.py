"""Tracking: carrier/TMS scans for shipped parcels, and the checks that turn silence into exception cases.

Events are append-only and deduped on (shipment, dedupe key): a replayed feed inserts nothing and
changes nothing. A shipment's status follows its newest scan (by the time it happened, not arrival),
only along the shipment table, so a late-arriving old scan never moves a parcel backwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.kernel.actors import Actor, actor_resolve
from fulfillment.errors import InvalidInput
from fulfillment.models import Carrier, Shipment, ShipmentStatus, TrackingEvent, TrackingStatus
from fulfillment.selectors import routing_config_active
from fulfillment.services.common import order_follow_shipments
from fulfillment.services.detection import tracking_scan_cases
from fulfillment.services.shipments.common import shipment_event, shipment_lock
from fulfillment.status import IN_FLIGHT, can_transition
from orders import services as order_services
from orders.models import ExceptionKind, Severity

S = ShipmentStatus
STATUS_FOR_SCAN = {
    TrackingStatus.IN_TRANSIT: S.IN_TRANSIT,
    TrackingStatus.OUT_FOR_DELIVERY: S.OUT_FOR_DELIVERY,
    TrackingStatus.DELIVERED: S.DELIVERED,
    TrackingStatus.EXCEPTION: S.EXCEPTION,
    TrackingStatus.RETURNED_TO_SENDER: S.EXCEPTION,
    TrackingStatus.DELAYED: S.IN_TRANSIT,
}
MAX_EVENTS = 500


@dataclass(frozen=True)
class TrackingInput:
    status: str
    occurred_at: datetime
    description: str = ""
    location_text: str = ""
    dedupe_key: str = ""
    raw: dict = field(default_factory=dict)

    def key(self) -> str:
        if self.dedupe_key:
            return self.dedupe_key[:255]
        basis = "|".join((self.status, self.occurred_at.isoformat(), self.location_text, self.description))
        return "h:" + hashlib.sha256(basis.encode()).hexdigest()


@dataclass
class TrackingResult:
    shipment: Shipment
    created: int
    duplicates: int


def _validate(events: Sequence[TrackingInput]) -> None:
    if not events:
        raise InvalidInput("events", "at least one tracking event is required")
    if len(events) > MAX_EVENTS:
        raise InvalidInput("events", f"at most {MAX_EVENTS} events per call")
    for index, event in enumerate(events):
        if event.status not in TrackingStatus.values:
            raise InvalidInput(
                f"events[{index}].status",
                f"unknown status {event.status!r}; expected one of {', '.join(TrackingStatus.values)}",
            )
        if not isinstance(event.occurred_at, datetime) or event.occurred_at.tzinfo is None:
            raise InvalidInput(f"events[{index}].occurred_at", "a timezone-aware date and time is required")


def tracking_events_record(
    *,
    shipment: Shipment | int,
    events: Sequence[TrackingInput],
    source: str,
    actor: Actor,
    carrier_code: str = "",
) -> TrackingResult:
    """Store new scans for one shipment and move it along (in transit, out for delivery, delivered,
    exception). Scans already stored (same dedupe key) are skipped: a replay changes nothing."""
    actor_resolve(actor)
    _validate(events)
    if not source or not source.strip():
        raise InvalidInput("source", 'a source such as "tms" or "carrier:ups" is required')
    with transaction.atomic():
        locked = shipment_lock(shipment)
        carrier = locked.carrier
        if carrier_code:
            carrier = Carrier.objects.filter(code__iexact=carrier_code.strip()).first() or carrier
        keys = {event.key(): event for event in events}
        known = set(
            TrackingEvent.objects.filter(shipment=locked, dedupe_key__in=list(keys)).values_list(
                "dedupe_key", flat=True
            )
        )
        fresh = [
            TrackingEvent(
                shipment=locked,
                carrier=carrier,
                status=event.status,
                description=event.description[:500],
                location_text=event.location_text[:255],
                occurred_at=event.occurred_at,
                source=source.strip()[:64],
                dedupe_key=key,
                raw=event.raw,
            )
            for key, event in keys.items()
            if key not in known
        ]
        if not fresh:
            return TrackingResult(shipment=locked, created=0, duplicates=len(events))
        TrackingEvent.objects.bulk_create(fresh, ignore_conflicts=True)
        scans = [e.occurred_at for e in fresh if e.status != TrackingStatus.LABEL_CREATED]
        if scans and (locked.last_scan_at is None or max(scans) > locked.last_scan_at):
            locked.last_scan_at = max(scans)
            locked.save(update_fields=["last_scan_at", "updated_at"])
        _follow_newest_scan(locked, actor=actor)
        # Detection in seconds: the cases these scans call for open in the same transaction.
        tracking_scan_cases(shipment=locked, events=fresh, actor=actor)
    return TrackingResult(shipment=locked, created=len(fresh), duplicates=len(events) - len(fresh))


def _follow_newest_scan(locked: Shipment, *, actor: Actor) -> None:
    if locked.status not in IN_FLIGHT:
        return  # not shipped yet (the node confirms shipping), or already delivered
    newest = (
        TrackingEvent.objects.filter(shipment=locked, status__in=list(STATUS_FOR_SCAN))
        .order_by("-occurred_at", "-pk")
        .first()
    )
    if newest is None:
        return
    target = STATUS_FOR_SCAN[newest.status]
    if target == locked.status or not can_transition(locked.status, target):
        return
    from_status = locked.status
    locked.status = target
    fields = ["status", "updated_at"]
    if target == S.DELIVERED:
        locked.delivered_at = newest.occurred_at
        fields.append("delivered_at")
    locked.save(update_fields=fields)
    shipment_event(
        locked,
        kind=f"shipment_{target}",
        actor=actor,
        from_status=from_status,
        data={"tracking_event_id": newest.pk, "scan": newest.status, "occurred_at": newest.occurred_at.isoformat()},
    )
    if target == S.DELIVERED:
        order_follow_shipments(order_id=locked.order_id, actor=actor, reason="delivered")


def shipment_for_tracking(*, tracking_number: str, carrier_code: str = "") -> Shipment:
    """The shipment a feed's tracking number belongs to (the newest with that number)."""
    if not tracking_number or not tracking_number.strip():
        raise InvalidInput("tracking_number", "a tracking number is required")
    qs = Shipment.objects.filter(tracking_number=tracking_number.strip())
    if carrier_code:
        qs = qs.filter(Q(carrier__code__iexact=carrier_code.strip()) | Q(carrier__isnull=True))
    shipment = qs.order_by("-pk").first()
    if shipment is None:
        raise InvalidInput("tracking_number", f"no shipment has tracking number {tracking_number!r}")
    return shipment


@dataclass
class TrackingCheckResult:
    missing_scan: list[int] = field(default_factory=list)
    late: list[int] = field(default_factory=list)


def tracking_checks_run(*, actor: Actor, now: datetime | None = None, limit: int = 1000) -> TrackingCheckResult:
    """Open an exception case (once per shipment) for a parcel with no carrier scan N hours after shipping,
    and for one still undelivered past its promised delivery."""
    actor_resolve(actor)
    now = now or timezone.now()
    config = routing_config_active()
    result = TrackingCheckResult()
    silent = (
        Shipment.objects.filter(
            status=S.SHIPPED,
            last_scan_at__isnull=True,
            tracking_number__gt="",  # shipped in a channel's own tools: no tracking to scan against
            shipped_at__lt=now - timedelta(hours=config.no_scan_hours),
        )
        .select_related("order", "location")
        .order_by("shipped_at", "pk")[:limit]
    )
    for shipment in silent:
        _case, created = order_services.exception_case_open(
            kind=ExceptionKind.TRACKING_MISSING,
            title=f"No carrier scan for shipment {shipment.pk} ({shipment.tracking_number})",
            detail=f"Shipped from {shipment.location.code} at {shipment.shipped_at:%Y-%m-%d %H:%M %Z}; "
            f"no scan after {config.no_scan_hours} h.",
            severity=Severity.MEDIUM,
            order_id=shipment.order_id,
            actor=actor,
            dedupe_key=f"tracking_missing:shipment={shipment.pk}",
        )
        if created:
            result.missing_scan.append(shipment.pk)
    late = (
        Shipment.objects.filter(status__in=IN_FLIGHT, promised_delivery_at__lt=now, delivered_at__isnull=True)
        .select_related("order", "location")
        .order_by("promised_delivery_at", "pk")[:limit]
    )
    for shipment in late:
        _case, created = order_services.exception_case_open(
            kind=ExceptionKind.DELIVERY_LATE,
            title=f"Shipment {shipment.pk} not delivered by its promise",
            detail=f"Promised {shipment.promised_delivery_at:%Y-%m-%d %H:%M %Z}; status {shipment.get_status_display()}"
            + (f", tracking {shipment.tracking_number}" if shipment.tracking_number else ""),
            severity=Severity.HIGH,
            order_id=shipment.order_id,
            actor=actor,
            dedupe_key=f"delivery_late:shipment={shipment.pk}",
        )
        if created:
            result.late.append(shipment.pk)
    return result
