"""The shipment lifecycle at the node: released -> (acknowledged) -> picking -> packed -> shipped, and the
moves the carrier reports after (in transit, delivered, exception) through shipment_transition."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from config.kernel.actors import Actor, actor_resolve
from fulfillment.errors import InvalidInput
from fulfillment.models import Carrier, Shipment, ShipmentKind
from fulfillment.selectors import routing_config_active
from fulfillment.services.common import order_follow_shipments
from fulfillment.services.shipments.common import (
    S,
    refuse_if_cancel_requested,
    shipment_event,
    shipment_lock,
    time_checked,
    time_not_before_order,
    transition_check,
    units_leave,
)
from fulfillment.signals import shipment_shipped

STAMPS = {S.ACKNOWLEDGED: "acknowledged_at", S.DELIVERED: "delivered_at"}


def shipment_transition(
    *,
    shipment: Shipment | int,
    to_status: str,
    actor: Actor,
    reason: str = "",
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> Shipment:
    """Move a shipment along the table and write the event. The same status again changes nothing.

    Moves with side effects (shipped, picked up, cancelled, ready for pickup, expired) have their own
    services; this one refuses them so they can't be skipped.
    """
    actor_resolve(actor)
    if to_status not in S.values:
        raise InvalidInput("status", f"unknown shipment status {to_status!r}; expected one of {', '.join(S.values)}")
    if to_status in (S.SHIPPED, S.PICKED_UP, S.CANCELLED, S.READY_FOR_PICKUP, S.PICKUP_EXPIRED):
        raise InvalidInput("status", f"use the {to_status} service: it moves stock")
    with transaction.atomic():
        locked = shipment_lock(shipment)
        if locked.status == to_status:
            return locked
        transition_check(locked, to_status)
        from_status = locked.status
        locked.status = to_status
        fields = ["status", "updated_at"]
        if to_status in STAMPS:
            setattr(locked, STAMPS[to_status], at or timezone.now())
            fields.append(STAMPS[to_status])
        locked.save(update_fields=fields)
        shipment_event(
            locked, kind=f"shipment_{to_status}", actor=actor, from_status=from_status, reason=reason, data=data
        )
        if to_status == S.DELIVERED:
            order_follow_shipments(order_id=locked.order_id, actor=actor, reason="delivered")
    return locked


def shipment_acknowledge(*, shipment: Shipment | int, actor: Actor, external_reference: str = "") -> Shipment:
    with transaction.atomic():
        locked = shipment_transition(shipment=shipment, to_status=S.ACKNOWLEDGED, actor=actor)
        if external_reference and locked.external_reference != external_reference:
            locked.external_reference = external_reference[:128]
            locked.save(update_fields=["external_reference", "updated_at"])
    return locked


def shipment_pick_start(*, shipment: Shipment | int, actor: Actor) -> Shipment:
    return shipment_transition(shipment=shipment, to_status=S.PICKING, actor=actor)


def shipment_pack(*, shipment: Shipment | int, actor: Actor) -> Shipment:
    return shipment_transition(shipment=shipment, to_status=S.PACKED, actor=actor)


def shipment_ship(
    *,
    shipment: Shipment | int,
    carrier_code: str,
    tracking_number: str,
    actor: Actor,
    shipped_at: datetime | None = None,
    service_level: str = "",
    now: datetime | None = None,
) -> Shipment:
    """The node shipped the package: consume its reservations, record carrier, tracking and the actual ship
    time, count the shipped units on the order, and send ``shipment_shipped`` for the channel outbox."""
    actor_resolve(actor)
    now = now or timezone.now()
    shipped_at = time_checked(shipped_at, "shipped_at", now)
    if not carrier_code or not str(carrier_code).strip():
        raise InvalidInput("carrier", "a carrier code is required")
    # Carrier codes are matched case-insensitively: "ups", "UPS" and "Ups" are one carrier.
    carrier = Carrier.objects.filter(code__iexact=str(carrier_code).strip(), is_active=True).first()
    if carrier is None:
        raise InvalidInput("carrier", f"unknown or inactive carrier {str(carrier_code).strip()!r}")
    tracking_number = (tracking_number or "").strip()
    if not tracking_number:
        raise InvalidInput("tracking_number", "a tracking number is required")
    if len(tracking_number) > 128:
        raise InvalidInput("tracking_number", "at most 128 characters")
    with transaction.atomic():
        locked = shipment_lock(shipment)
        if locked.kind == ShipmentKind.PICKUP:
            raise InvalidInput("shipment", f"shipment {locked.pk} is a store pickup: report it picked up instead")
        transition_check(locked, S.SHIPPED)
        time_not_before_order(shipped_at, "shipped_at", locked)
        refuse_if_cancel_requested(locked, "ship")
        from_status = locked.status
        shipped = units_leave(locked, actor=actor)
        config = routing_config_active()
        locked.status = S.SHIPPED
        locked.carrier = carrier
        locked.tracking_number = tracking_number
        locked.tracking_url = carrier.tracking_url(tracking_number)[:500]
        locked.shipped_at = shipped_at
        if service_level:
            locked.service_level = service_level[:64]
        order = locked.order
        locked.promised_delivery_at = order.deliver_by or shipped_at + timedelta(days=config.transit_days)
        locked.save()
        event = shipment_event(
            locked,
            kind="shipped",
            actor=actor,
            from_status=from_status,
            data={
                "kind": locked.kind,
                "carrier": carrier.code,
                "carrier_name": carrier.name,
                "channel_carrier_codes": carrier.channel_codes,
                "tracking_number": tracking_number,
                "tracking_url": locked.tracking_url,
                "service_level": locked.service_level,
                "shipped_at": shipped_at.isoformat(),
                "lines": shipped,
            },
        )
        order_follow_shipments(order_id=locked.order_id, actor=actor, reason=f"shipment {locked.pk} shipped")
        shipment_shipped.send(sender=Shipment, shipment_id=locked.pk, order_id=locked.order_id, event_id=event.pk)
    return locked
