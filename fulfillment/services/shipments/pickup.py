"""Store pickup (BOPIS): ready for pickup starts the deadline; the buyer collects it, or it expires and the
stock goes back to the store."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from config.kernel.actors import Actor, actor_resolve
from fulfillment.errors import InvalidInput
from fulfillment.models import Shipment, ShipmentKind, ShipmentLine
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
from fulfillment.signals import pickup_ready, shipment_line_cancelled, shipment_shipped
from inventory.services import stock_release
from orders import services as order_services
from orders.models import CancelInitiator, ExceptionKind, LineStatus, OrderLine, Severity


def shipment_ready_for_pickup(*, shipment: Shipment | int, actor: Actor, now: datetime | None = None) -> Shipment:
    """The store has the order ready: the pickup deadline starts now."""
    actor_resolve(actor)
    now = now or timezone.now()
    with transaction.atomic():
        locked = shipment_lock(shipment)
        if locked.kind != ShipmentKind.PICKUP:
            raise InvalidInput("shipment", f"shipment {locked.pk} is not a store pickup")
        if locked.status == S.READY_FOR_PICKUP:
            return locked
        transition_check(locked, S.READY_FOR_PICKUP)
        from_status = locked.status
        locked.status = S.READY_FOR_PICKUP
        locked.pickup_deadline = now + timedelta(hours=routing_config_active().pickup_deadline_hours)
        locked.save(update_fields=["status", "pickup_deadline", "updated_at"])
        shipment_event(
            locked,
            kind="ready_for_pickup",
            actor=actor,
            from_status=from_status,
            data={"pickup_deadline": locked.pickup_deadline.isoformat()},
        )
        pickup_ready.send(sender=Shipment, shipment_id=locked.pk, order_id=locked.order_id)
    return locked


def shipment_picked_up(
    *, shipment: Shipment | int, actor: Actor, picked_up_at: datetime | None = None, now: datetime | None = None
) -> Shipment:
    """The buyer collected the order: the units leave the store (reservations consumed), the order is
    delivered, and ``shipment_shipped`` goes out like a ship confirmation."""
    actor_resolve(actor)
    now = now or timezone.now()
    picked_up_at = time_checked(picked_up_at, "picked_up_at", now)
    with transaction.atomic():
        locked = shipment_lock(shipment)
        if locked.kind != ShipmentKind.PICKUP:
            raise InvalidInput("shipment", f"shipment {locked.pk} is not a store pickup")
        transition_check(locked, S.PICKED_UP)
        time_not_before_order(picked_up_at, "picked_up_at", locked)
        refuse_if_cancel_requested(locked, "hand over")
        from_status = locked.status
        shipped = units_leave(locked, actor=actor)
        locked.status = S.PICKED_UP
        locked.shipped_at = picked_up_at
        locked.delivered_at = picked_up_at
        locked.save(update_fields=["status", "shipped_at", "delivered_at", "updated_at"])
        event = shipment_event(
            locked,
            kind="shipped",
            actor=actor,
            from_status=from_status,
            data={"kind": locked.kind, "picked_up_at": picked_up_at.isoformat(), "lines": shipped},
        )
        order_follow_shipments(order_id=locked.order_id, actor=actor, reason="picked up")
        shipment_shipped.send(sender=Shipment, shipment_id=locked.pk, order_id=locked.order_id, event_id=event.pk)
    return locked


def pickup_expire(*, shipment: Shipment | int, actor: Actor, now: datetime | None = None) -> Shipment | None:
    """A pickup not collected by its deadline: the stock returns to the store (reservations released), the
    open units are cancelled on the order, and an exception case asks for the refund. None if not due."""
    actor_resolve(actor)
    now = now or timezone.now()
    with transaction.atomic():
        locked = shipment_lock(shipment)
        if locked.status != S.READY_FOR_PICKUP or not locked.pickup_deadline or locked.pickup_deadline > now:
            return None
        lines = list(locked.lines.select_for_update().order_by("pk"))
        reservation_ids = [line.reservation_id for line in lines if line.reservation_id]
        if reservation_ids:
            stock_release(reservation_ids=reservation_ids, actor=actor)
        locked.status = S.PICKUP_EXPIRED
        locked.save(update_fields=["status", "updated_at"])
        cancelled = []
        for line in lines:
            qty = line.quantity_open
            if qty <= 0:
                continue
            ShipmentLine.objects.filter(pk=line.pk).update(quantity_cancelled=F("quantity_cancelled") + qty)
            OrderLine.objects.filter(pk=line.order_line_id).update(quantity_cancelled=F("quantity_cancelled") + qty)
            cancelled.append((line.order_line_id, qty))
        OrderLine.objects.filter(
            pk__in=[line_id for line_id, _ in cancelled], quantity__lte=F("quantity_cancelled")
        ).update(status=LineStatus.CANCELLED)
        event = shipment_event(
            locked,
            kind="pickup_expired",
            actor=actor,
            from_status=S.READY_FOR_PICKUP,
            data={"deadline": locked.pickup_deadline.isoformat(), "cancelled": cancelled},
        )
        order_services.exception_case_open(
            kind=ExceptionKind.PICKUP_EXPIRED,
            title=f"Pickup expired at {locked.location.code} for order {locked.order.external_id}",
            detail="The buyer did not collect by the deadline; the stock went back to the store. Refund or contact.",
            severity=Severity.MEDIUM,
            order_id=locked.order_id,
            actor=actor,
            dedupe_key=f"pickup_expired:shipment={locked.pk}",
        )
        if cancelled:
            order_services.order_cancel_initiator_set(
                order=locked.order_id, initiator=CancelInitiator.BUYER, actor=actor, reason="pickup expired"
            )
        order_follow_shipments(order_id=locked.order_id, actor=actor, reason="pickup expired")
        for order_line_id, qty in cancelled:
            shipment_line_cancelled.send(
                sender=Shipment,
                shipment_id=locked.pk,
                order_id=locked.order_id,
                order_line_id=order_line_id,
                quantity=qty,
                reason="pickup expired",
                event_id=event.pk,
            )
    return locked


def pickups_expire_due(*, actor: Actor, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Expire every pickup past its deadline (one transaction each). Returns the shipment ids expired."""
    now = now or timezone.now()
    due = list(
        Shipment.objects.filter(status=S.READY_FOR_PICKUP, pickup_deadline__lte=now)
        .order_by("pickup_deadline", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    return [pk for pk in due if pickup_expire(shipment=pk, actor=actor, now=now)]
