"""The buyer's cancel request and a new ship-to reach the node: a cancel accepted while nothing is picked,
and the shipments told of an address change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from config.kernel.actors import Actor, actor_resolve
from fulfillment.errors import CancelRefused, InvalidInput
from fulfillment.models import Shipment, ShipmentKind
from fulfillment.services.shipments.common import (
    S,
    shipment_event,
    unshipped_reservations_release,
)
from fulfillment.services.shipments.shorts_and_cancels import shipment_line_cancel
from fulfillment.status import HOLDS_STOCK, PRE_SHIP, SHIPPED_STATES
from orders import services as order_services
from orders.models import CancelInitiator, ExceptionKind, Hold, HoldKind, Order, OrderLine, Severity

# A shipment in one of these has units picked (or gone): a buyer's cancel request needs a person.
PICKED_OR_GONE = frozenset({S.PICKING, S.PACKED, S.READY_FOR_PICKUP}) | SHIPPED_STATES


# A parcel in one of these may carry a label printed for the old address.
LABELLED = frozenset({S.PACKED})


@dataclass
class BuyerCancelResult:
    cancelled: dict[int, int] = field(default_factory=dict)  # order line -> units cancelled
    shipments: list[int] = field(default_factory=list)  # shipments that gave units up
    hold_released: bool = False


def order_buyer_cancel_accept(*, order_id: int, reason: str, actor: Actor) -> BuyerCancelResult:
    """Accept a buyer's cancel request while nothing of the order is picked, packed or shipped: every open
    unit is cancelled, charged to the buyer. Units on released shipments go through shipment_line_cancel
    (their stock released, the channel told with the buyer's reason); units not routed yet through orders'
    order_lines_cancel (the channel told too), with any stock reserved for them outside a shipment
    released. Then the order's cancel-request hold is released.

    Raises CancelRefused, having changed nothing, when a unit is picked, packed or shipped (or the order is
    already closed): a person decides. The order's shipments are locked first, in pk order (the lock order
    of every shipment service), so a node cannot start picking meanwhile."""
    actor_resolve(actor)
    if not reason or not reason.strip():
        raise InvalidInput("reason", "accepting a cancel request needs a reason")
    result = BuyerCancelResult()
    with transaction.atomic():
        shipments = list(
            Shipment.objects.select_for_update(of=("self",))
            .filter(order_id=order_id)
            .select_related("order")
            .order_by("pk")
        )
        order = shipments[0].order if shipments else Order.objects.get(pk=order_id)
        busy = [f"shipment {s.pk} is {s.get_status_display().lower()}" for s in shipments if s.status in PICKED_OR_GONE]
        lines = list(OrderLine.objects.filter(order_id=order_id).order_by("pk"))
        if any(line.quantity_shipped for line in lines):
            busy.append("units have shipped")
        if order.is_terminal:
            busy.append(f"the order is {order.status}")
        if busy:
            raise CancelRefused(f"order {order.external_id}: the cancel request needs a person: {'; '.join(busy)}")
        for shipment in shipments:
            if shipment.status not in HOLDS_STOCK:
                continue
            for line in shipment.lines.order_by("pk"):
                if line.quantity_open <= 0:
                    continue
                shipment_line_cancel(
                    shipment=shipment.pk,
                    order_line_id=line.order_line_id,
                    quantity=line.quantity_open,
                    reason=reason,
                    actor=actor,
                    initiator=CancelInitiator.BUYER,
                )
                result.cancelled[line.order_line_id] = result.cancelled.get(line.order_line_id, 0) + line.quantity_open
                if shipment.pk not in result.shipments:
                    result.shipments.append(shipment.pk)
        unrouted = {
            line.pk: line.quantity_open
            for line in OrderLine.objects.filter(order_id=order_id).order_by("pk")
            if line.quantity_open > 0
        }
        if unrouted:
            unshipped_reservations_release(unrouted, actor=actor)
            order_services.order_lines_cancel(
                order=order_id, quantities=unrouted, reason=reason, initiator=CancelInitiator.BUYER, actor=actor
            )
            for line_id, qty in unrouted.items():
                result.cancelled[line_id] = result.cancelled.get(line_id, 0) + qty
        order_services.order_cancel_initiator_set(
            order=order_id, initiator=CancelInitiator.BUYER, actor=actor, reason=reason
        )
        for hold_id in Hold.objects.filter(
            order_id=order_id, kind=HoldKind.CANCEL_REQUEST, released_at__isnull=True
        ).values_list("pk", flat=True):
            order_services.hold_release(hold=hold_id, reason=f"cancel request accepted: {reason}", actor=actor)
            result.hold_released = True
    return result


def shipments_ship_to_changed(
    *, order_id: int, before: Mapping[str, Any], after: Mapping[str, Any], actor: Actor
) -> list[int]:
    """The order's ship-to changed after it reached a node: each of its unshipped (non-pickup) shipments
    gets an "address_changed" event with the changed fields before and after, which the node API lists
    with the shipment; a packed one also opens an address case: its label must be redone.

    Runs in the ingest's transaction, which holds the order row: shipments are read, not locked (a node
    locks its shipment, then the order), so the two never wait on each other. Returns the shipment ids."""
    actor_resolve(actor)
    shipments = list(
        Shipment.objects.filter(order_id=order_id, status__in=PRE_SHIP)
        .exclude(kind=ShipmentKind.PICKUP)
        .select_related("location", "order")
        .order_by("pk")
    )
    for shipment in shipments:
        shipment_event(
            shipment,
            kind="address_changed",
            actor=actor,
            from_status=shipment.status,
            reason="The buyer's ship-to changed on the channel",
            data={"before": dict(before), "after": dict(after)},
        )
        if shipment.status in LABELLED:
            order_services.exception_case_open(
                kind=ExceptionKind.ADDRESS,
                title=f"Order {shipment.order.external_id}: ship-to changed after shipment {shipment.pk} was packed",
                detail=f"Shipment {shipment.pk} at {shipment.location.code} is packed with a label for the old "
                f"address. Redo the label for the new address ({', '.join(sorted(after))} changed) before it ships.",
                severity=Severity.HIGH,
                order_id=order_id,
                actor=actor,
                dedupe_key=f"address_changed:shipment={shipment.pk}",
            )
    return [s.pk for s in shipments]
