"""What the shipment services share: the shipment row lock and its event, the transition check, units
leaving the node, and the reservation bookkeeping of lines that give units up."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from django.db.models import F

from config.kernel.actors import Actor
from config.kernel.errors import InvalidTransition
from fulfillment.errors import FulfillmentError, InvalidInput, ShipRefused
from fulfillment.models import Shipment, ShipmentLine, ShipmentStatus
from fulfillment.status import can_transition
from inventory.errors import InsufficientStock
from inventory.models import Reservation, ReservationStatus
from inventory.services import LineDemand, stock_consume, stock_release, stock_reserve
from orders import services as order_services
from orders.models import Hold, HoldKind, LineStatus, Order, OrderLine

S = ShipmentStatus


def shipment_lock(shipment: Shipment | int) -> Shipment:
    shipment_id = shipment if isinstance(shipment, int) else shipment.pk
    try:
        return Shipment.objects.select_for_update(of=("self",)).select_related("location", "order").get(pk=shipment_id)
    except Shipment.DoesNotExist:
        raise InvalidInput("shipment", f"shipment {shipment_id} does not exist") from None


def shipment_event(shipment: Shipment, *, kind: str, actor: Actor, from_status: str = "", reason: str = "", data=None):
    return order_services.order_event_record(
        order=Order(pk=shipment.order_id),
        kind=kind,
        actor=actor,
        reason=reason,
        data={
            "shipment_id": shipment.pk,
            "node": shipment.location.code,
            "from": from_status,
            "to": shipment.status,
            **(data or {}),
        },
    )


def transition_check(shipment: Shipment, to_status: str) -> None:
    if not can_transition(shipment.status, to_status):
        raise InvalidTransition(entity=f"shipment {shipment.pk}", from_status=shipment.status, to_status=to_status)


def refuse_if_cancel_requested(locked: Shipment, what: str) -> None:
    """While a buyer's cancel request holds the order, its units must not leave the node."""
    hold = Hold.objects.filter(order_id=locked.order_id, kind=HoldKind.CANCEL_REQUEST, released_at__isnull=True).first()
    if hold is not None:
        raise ShipRefused(
            f"do not {what} shipment {locked.pk}: the buyer asked to cancel order {locked.order.external_id} "
            f"(held since {hold.placed_at:%Y-%m-%d %H:%M %Z}). Keep the parcel at the node until the request is "
            "settled: the order is cancelled, or the hold is released."
        )


# A node's clock may run a little ahead of ours; a time further ahead is a mistake, not skew.
CLOCK_SKEW = timedelta(minutes=5)
# The channel's clock (placed_at) and the node's may each be off by a few minutes: a ship time earlier
# than the order by more than this is a mistake (a typo in the year, a clock reset), not skew.
PLACED_SKEW = timedelta(minutes=15)


def time_checked(value: datetime | None, field_name: str, now: datetime) -> datetime:
    if value is None:
        return now
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidInput(field_name, "a date and time with a time zone is required, e.g. 2026-05-01T14:30:00Z")
    if value > now + CLOCK_SKEW:
        raise InvalidInput(
            field_name, f"{value.isoformat()} is in the future (now is {now.isoformat(timespec='seconds')})"
        )
    return value


def time_not_before_order(value: datetime, field_name: str, shipment: Shipment) -> None:
    """A node cannot ship or hand over an order before it was placed: such a time would corrupt the
    on-time metrics (a typo in the year, a clock reset)."""
    placed_at = shipment.order.placed_at
    if value < placed_at - PLACED_SKEW:
        raise InvalidInput(
            field_name,
            f"{value.isoformat()} is before order {shipment.order.external_id} was placed "
            f"({placed_at.isoformat(timespec='seconds')})",
        )


def units_leave(locked: Shipment, *, actor: Actor) -> list[dict]:
    """Consume the reservations of every open unit and count them shipped on the order lines."""
    lines = list(locked.lines.select_for_update().select_related("order_line").order_by("pk"))
    moving = [(line, line.quantity_open) for line in lines if line.quantity_open > 0]
    if not moving:
        raise FulfillmentError(f"shipment {locked.pk} has no units left to ship (all short-picked or cancelled)")
    reservations = {line.reservation_id: qty for line, qty in moving if line.reservation_id}
    if reservations:
        stock_consume(
            reservation_ids=sorted(reservations),
            quantities=reservations,
            reference=f"shipment:{locked.pk}",
            actor=actor,
        )
    shipped = []
    for line, qty in moving:
        ShipmentLine.objects.filter(pk=line.pk).update(quantity_shipped=F("quantity_shipped") + qty)
        OrderLine.objects.filter(pk=line.order_line_id).update(quantity_shipped=F("quantity_shipped") + qty)
        shipped.append(
            {
                "order_line": line.order_line_id,
                "external_id": line.order_line.external_id,
                "external_unit_ids": line.order_line.external_unit_ids,
                "channel_sku": line.order_line.channel_sku,
                "quantity": qty,
            }
        )
    (
        OrderLine.objects.filter(pk__in=[line.order_line_id for line, _ in moving])
        .filter(quantity__lte=F("quantity_shipped") + F("quantity_cancelled"))
        .exclude(status=LineStatus.CANCELLED)
        .update(status=LineStatus.SHIPPED)
    )
    return shipped


def lines_by_order_line(locked: Shipment) -> dict[int, ShipmentLine]:
    return {line.order_line_id: line for line in locked.lines.select_for_update().order_by("pk")}


def reservation_shrink(line: ShipmentLine, *, by: int, shipment: Shipment, actor: Actor) -> int:
    """Release ``by`` units of the line's reservation: release it whole, then reserve what stays.

    inventory releases whole reservations; the stock rows stay locked from the release to the commit,
    so the re-reservation cannot lose the units to another order.
    """
    keep = line.quantity_open - by
    if line.reservation_id:
        stock_release(reservation_ids=[line.reservation_id], actor=actor)
    line.reservation = None
    return keep


def line_rereserve(line: ShipmentLine, *, keep: int, shipment: Shipment, sku_id: int, actor: Actor) -> None:
    if keep <= 0:
        line.reservation = None
        return
    try:
        demand = LineDemand(order_line_id=line.order_line_id, sku_id=sku_id, quantities={shipment.location_id: keep})
        [reservation] = stock_reserve(lines=[demand], actor=actor)
    except InsufficientStock as exc:
        where = shipment.location.code
        raise FulfillmentError(f"the {keep} unit(s) still at {where} cannot stay reserved: {exc}") from exc
    line.reservation = reservation


def unshipped_reservations_take(quantities: Mapping[int, int]) -> tuple[list[tuple], dict[int, int]]:
    """Pick up to ``quantities`` units ({order line: units}) from the active reservations held for those
    lines outside any shipment (a backorder's partial reservation), oldest first. Returns
    [(reservation id, line id, sku id, location id, reserved, units taken)] and the units not found."""
    held = (
        Reservation.objects.filter(
            order_line_id__in=list(quantities), status=ReservationStatus.ACTIVE, shipment_lines__isnull=True
        )
        .order_by("pk")
        .values_list("pk", "order_line_id", "sku_id", "location_id", "quantity")
    )
    taken, left = [], dict(quantities)
    for pk, line_id, sku_id, location_id, qty in held:
        take = min(left.get(line_id, 0), qty)
        if take <= 0:
            continue
        left[line_id] -= take
        taken.append((pk, line_id, sku_id, location_id, qty, take))
    return taken, {line_id: qty for line_id, qty in left.items() if qty > 0}


def unshipped_reservations_release(quantities: Mapping[int, int], *, actor: Actor) -> None:
    """Release ``quantities`` units of reservations held for order lines outside any shipment, keeping
    the rest reserved at the same node."""
    taken, _ = unshipped_reservations_take(quantities)
    releasing, keeping = [], []
    for pk, line_id, sku_id, location_id, qty, take in taken:
        releasing.append(pk)
        if qty > take:
            keeping.append(LineDemand(order_line_id=line_id, sku_id=sku_id, quantities={location_id: qty - take}))
    if releasing:
        stock_release(reservation_ids=releasing, actor=actor)
    for demand in keeping:
        stock_reserve(lines=[demand], actor=actor)
