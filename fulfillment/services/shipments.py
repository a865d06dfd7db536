"""The shipment lifecycle: released -> (acknowledged) -> picking -> packed -> shipped -> in transit ->
delivered, or exception / cancelled; for store pickup, ready for pickup -> picked up or expired.

One transition service checks the table (fulfillment/status.py), locks the shipment row, saves and
writes the OrderEvent. Units leaving the node (shipped, picked up) consume the reservations through
inventory's stock_consume, count the shipped quantities on the order lines and send
``shipment_shipped`` inside the transaction (see fulfillment/signals.py: the channels app queues the
ship confirmation in its outbox from there). Releasing stock goes through inventory's stock_release.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from config.kernel.errors import InvalidTransition
from fulfillment.errors import CancelRefused, FulfillmentError, InvalidInput, ShipRefused
from fulfillment.models import Carrier, Shipment, ShipmentKind, ShipmentLine, ShipmentStatus
from fulfillment.selectors import network_snapshot, routing_config_active
from fulfillment.services.common import (
    Actor,
    actor_resolve,
    capacity_give_back,
    lines_reopen_if_unreserved,
    order_follow_shipments,
)
from fulfillment.signals import pickup_ready, shipment_line_cancelled, shipment_shipped
from fulfillment.status import HOLDS_STOCK, PRE_SHIP, SHIPPED_STATES, can_transition
from inventory.errors import InsufficientStock
from inventory.models import Reservation, ReservationStatus
from inventory.services import LineDemand, stock_adjust, stock_consume, stock_release, stock_reserve
from orders import services as order_services
from orders.models import CancelInitiator, ExceptionKind, Hold, HoldKind, LineStatus, Order, OrderLine, Severity

S = ShipmentStatus
STAMPS = {S.ACKNOWLEDGED: "acknowledged_at", S.DELIVERED: "delivered_at"}


def _lock(shipment: Shipment | int) -> Shipment:
    shipment_id = shipment if isinstance(shipment, int) else shipment.pk
    try:
        return Shipment.objects.select_for_update(of=("self",)).select_related("location", "order").get(pk=shipment_id)
    except Shipment.DoesNotExist:
        raise InvalidInput("shipment", f"shipment {shipment_id} does not exist") from None


def _event(shipment: Shipment, *, kind: str, actor: Actor, from_status: str = "", reason: str = "", data=None):
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
        locked = _lock(shipment)
        if locked.status == to_status:
            return locked
        _check(locked, to_status)
        from_status = locked.status
        locked.status = to_status
        fields = ["status", "updated_at"]
        if to_status in STAMPS:
            setattr(locked, STAMPS[to_status], at or timezone.now())
            fields.append(STAMPS[to_status])
        locked.save(update_fields=fields)
        _event(locked, kind=f"shipment_{to_status}", actor=actor, from_status=from_status, reason=reason, data=data)
        if to_status == S.DELIVERED:
            order_follow_shipments(order_id=locked.order_id, actor=actor, reason="delivered")
    return locked


def _check(shipment: Shipment, to_status: str) -> None:
    if not can_transition(shipment.status, to_status):
        raise InvalidTransition(entity=f"shipment {shipment.pk}", from_status=shipment.status, to_status=to_status)


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


# --- units leave the node --------------------------------------------------------------------------


def _refuse_if_cancel_requested(locked: Shipment, what: str) -> None:
    """While a buyer's cancel request holds the order, its units must not leave the node."""
    hold = Hold.objects.filter(order_id=locked.order_id, kind=HoldKind.CANCEL_REQUEST, released_at__isnull=True).first()
    if hold is not None:
        raise ShipRefused(
            f"do not {what} shipment {locked.pk}: the buyer asked to cancel order {locked.order.external_id} "
            f"(held since {hold.placed_at:%Y-%m-%d %H:%M %Z}). Keep the parcel at the node until the request is "
            "settled: the order is cancelled, or the hold is released."
        )


def _validate_time(value: datetime | None, field_name: str, now: datetime) -> datetime:
    if value is None:
        return now
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidInput(field_name, "a timezone-aware date and time is required")
    if value > now + timedelta(hours=1):
        raise InvalidInput(field_name, f"{value.isoformat()} is in the future")
    return value


def _units_leave(locked: Shipment, *, actor: Actor) -> list[dict]:
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
    shipped_at = _validate_time(shipped_at, "shipped_at", now)
    if not carrier_code or not str(carrier_code).strip():
        raise InvalidInput("carrier", "a carrier code is required")
    carrier = Carrier.objects.filter(code=str(carrier_code).strip(), is_active=True).first()
    if carrier is None:
        raise InvalidInput("carrier", f"unknown or inactive carrier {carrier_code!r}")
    tracking_number = (tracking_number or "").strip()
    if not tracking_number:
        raise InvalidInput("tracking_number", "a tracking number is required")
    if len(tracking_number) > 128:
        raise InvalidInput("tracking_number", "at most 128 characters")
    with transaction.atomic():
        locked = _lock(shipment)
        if locked.kind == ShipmentKind.PICKUP:
            raise InvalidInput("shipment", f"shipment {locked.pk} is a store pickup: report it picked up instead")
        _check(locked, S.SHIPPED)
        _refuse_if_cancel_requested(locked, "ship")
        from_status = locked.status
        shipped = _units_leave(locked, actor=actor)
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
        event = _event(
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


# --- short picks and cancelled lines ----------------------------------------------------------------


def _lines_by_order_line(locked: Shipment) -> dict[int, ShipmentLine]:
    return {line.order_line_id: line for line in locked.lines.select_for_update().order_by("pk")}


def _parse_quantities(quantities: Mapping[int, int], lines: dict[int, ShipmentLine], what: str) -> dict[int, int]:
    if not quantities:
        raise InvalidInput("lines", f"name at least one line and the units {what}")
    parsed = {}
    for raw_id, qty in quantities.items():
        try:
            line_id = int(raw_id)
        except (TypeError, ValueError):
            raise InvalidInput("lines", f"order line id {raw_id!r} is not a number") from None
        if line_id not in lines:
            raise InvalidInput("lines", f"order line {line_id} is not in this shipment")
        if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
            raise InvalidInput("lines", f"order line {line_id}: quantity must be a positive whole number")
        if qty > lines[line_id].quantity_open:
            raise InvalidInput(
                "lines", f"order line {line_id}: {qty} {what} but only {lines[line_id].quantity_open} open"
            )
        parsed[line_id] = qty
    return parsed


def _shrink_reservation(line: ShipmentLine, *, by: int, shipment: Shipment, actor: Actor) -> int:
    """Release ``by`` units of the line's reservation: release it whole, then reserve what stays.

    inventory releases whole reservations; the stock rows stay locked from the release to the commit,
    so the re-reservation cannot lose the units to another order.
    """
    keep = line.quantity_open - by
    if line.reservation_id:
        stock_release(reservation_ids=[line.reservation_id], actor=actor)
    line.reservation = None
    return keep


def _rereserve(line: ShipmentLine, *, keep: int, shipment: Shipment, sku_id: int, actor: Actor) -> None:
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


@dataclass
class ShortPickResult:
    shipment: Shipment
    released: dict[int, int]
    reroute: Any = None  # RouteResult of the re-route of the missing units
    exception_case_id: int | None = None
    replaced_shipment_ids: list[int] = field(default_factory=list)


def shipment_short_pick(
    *, shipment: Shipment | int, lines: Mapping[int, int], actor: Actor, reason: str = "", now=None
) -> ShortPickResult:
    """The node could not find some units ({order_line_id: units short}). Release those units, lower the
    node's on-hand by them (when the rules say so), and re-route only those units to other nodes.
    The shipment keeps the rest; with nothing left it is cancelled."""
    from fulfillment.services.route import _route_locked

    actor_resolve(actor)
    with transaction.atomic():
        locked = _lock(shipment)
        if locked.status not in PRE_SHIP:
            raise InvalidTransition(entity=f"shipment {locked.pk}", from_status=locked.status, to_status="short pick")
        by_line = _lines_by_order_line(locked)
        shorts = _parse_quantities(lines, by_line, "short")
        config = routing_config_active()
        skus = dict(OrderLine.objects.filter(pk__in=list(shorts)).values_list("pk", "sku_id"))
        for order_line_id, short in sorted(shorts.items()):
            line = by_line[order_line_id]
            keep = _shrink_reservation(line, by=short, shipment=locked, actor=actor)
            if config.short_pick_adjusts_stock:
                stock_adjust(
                    sku=skus[order_line_id],
                    location=locked.location_id,
                    delta=-short,
                    reason=f"short pick on shipment {locked.pk}" + (f": {reason}" if reason else ""),
                    reference=f"shipment:{locked.pk}",
                    actor=actor,
                )
            _rereserve(line, keep=keep, shipment=locked, sku_id=skus[order_line_id], actor=actor)
            line.quantity_short += short
            line.save(update_fields=["quantity_short", "reservation"])
        from_status = locked.status
        if all(line.quantity_open == 0 for line in by_line.values()):
            locked.status = S.CANCELLED
            locked.save(update_fields=["status", "updated_at"])
            capacity_give_back(location_id=locked.location_id, day=locked.capacity_day)
        OrderLine.objects.filter(pk__in=list(shorts), status=LineStatus.ALLOCATED).update(status=LineStatus.OPEN)
        _event(
            locked,
            kind="short_picked",
            actor=actor,
            from_status=from_status,
            reason=reason,
            data={"short": {str(k): v for k, v in shorts.items()}, "adjusted_stock": config.short_pick_adjusts_stock},
        )
        network = network_snapshot(sku_ids=sorted(set(skus.values())), now=now)
        reroute = _route_locked(
            order_id=locked.order_id,
            network=network,
            actor=actor,
            now=now,
            strategy="short-pick-reroute",
            excluded_locations={locked.location_id},
        )
        result = ShortPickResult(shipment=locked, released=shorts, reroute=reroute)
        if not reroute.routed:
            case, _ = order_services.exception_case_open(
                kind=ExceptionKind.SHORT_PICK,
                title=f"Short pick at {locked.location.code} for order {locked.order.external_id}",
                detail=", ".join(f"line {k}: {v} short" for k, v in shorts.items())
                + (f" ({reason})" if reason else "")
                + "; no other node could take the missing units",
                severity=Severity.HIGH,
                order_id=locked.order_id,
                actor=actor,
                dedupe_key=f"short_pick:shipment={locked.pk}",
            )
            result.exception_case_id = case.pk
        order_follow_shipments(order_id=locked.order_id, actor=actor, reason="short pick")
    return result


def shipment_line_cancel(
    *,
    shipment: Shipment | int,
    order_line_id: int,
    quantity: int,
    reason: str,
    actor: Actor,
    initiator: str = CancelInitiator.SELLER,
) -> Shipment:
    """Cancel units of a line before they ship: release their reservation, count them cancelled on the
    order line, record who the cancel is charged to (the seller unless said otherwise: no stock, no node,
    a short pick) and send ``shipment_line_cancelled``. A shipment with nothing left is cancelled."""
    actor_resolve(actor)
    if not reason or not reason.strip():
        raise InvalidInput("reason", "cancelling a line needs a reason")
    if initiator not in CancelInitiator.values:
        raise InvalidInput("initiator", f"expected one of {', '.join(CancelInitiator)}")
    with transaction.atomic():
        locked = _lock(shipment)
        if locked.status not in HOLDS_STOCK:
            raise InvalidTransition(entity=f"shipment {locked.pk}", from_status=locked.status, to_status="line cancel")
        by_line = _lines_by_order_line(locked)
        [(line_id, qty)] = _parse_quantities({order_line_id: quantity}, by_line, "to cancel").items()
        line = by_line[line_id]
        sku_id = OrderLine.objects.values_list("sku_id", flat=True).get(pk=line_id)
        keep = _shrink_reservation(line, by=qty, shipment=locked, actor=actor)
        _rereserve(line, keep=keep, shipment=locked, sku_id=sku_id, actor=actor)
        line.quantity_cancelled += qty
        line.save(update_fields=["quantity_cancelled", "reservation"])
        OrderLine.objects.filter(pk=line_id).update(quantity_cancelled=F("quantity_cancelled") + qty)
        OrderLine.objects.filter(pk=line_id, quantity__lte=F("quantity_cancelled")).update(status=LineStatus.CANCELLED)
        from_status = locked.status
        if all(sl.quantity_open == 0 for sl in by_line.values()):
            locked.status = S.CANCELLED
            locked.save(update_fields=["status", "updated_at"])
            capacity_give_back(location_id=locked.location_id, day=locked.capacity_day)
        event = _event(
            locked,
            kind="line_cancelled",
            actor=actor,
            from_status=from_status,
            reason=reason.strip(),
            data={
                "order_line": line_id,
                "quantity": qty,
                "before": line.quantity_cancelled - qty,
                "initiator": initiator,
            },
        )
        order_services.order_cancel_initiator_set(
            order=locked.order_id, initiator=initiator, actor=actor, reason=reason.strip()
        )
        order_follow_shipments(order_id=locked.order_id, actor=actor, reason="line cancelled")
        shipment_line_cancelled.send(
            sender=Shipment,
            shipment_id=locked.pk,
            order_id=locked.order_id,
            order_line_id=line_id,
            quantity=qty,
            reason=reason.strip(),
            event_id=event.pk,
        )
    return locked


def order_lines_cancelled_upstream(
    *, order_id: int, cancelled: Mapping[int, int], actor: Actor, reason: str = "cancelled on the channel"
) -> None:
    """The channel cancelled units that the sync has already counted on the order lines: take them back
    out of the order's unshipped shipments, then out of any other active reservation of those lines.

    Nothing is counted twice (the lines' cancelled quantities are not touched here) and nothing goes to
    the outbox: the channel made the change. Shipments are locked in pk order, before the order, like
    every shipment service.
    """
    actor_resolve(actor)
    remaining = {int(line_id): qty for line_id, qty in cancelled.items() if qty > 0}
    if not remaining:
        return
    with transaction.atomic():
        for shipment_id in _unshipped_shipment_ids(order_id, remaining):
            locked = _lock(shipment_id)
            by_line = _lines_by_order_line(locked)
            taken = {}
            for line_id, line in by_line.items():
                qty = min(remaining.get(line_id, 0), line.quantity_open)
                if qty <= 0:
                    continue
                sku_id = OrderLine.objects.values_list("sku_id", flat=True).get(pk=line_id)
                keep = _shrink_reservation(line, by=qty, shipment=locked, actor=actor)
                _rereserve(line, keep=keep, shipment=locked, sku_id=sku_id, actor=actor)
                line.quantity_cancelled += qty
                line.save(update_fields=["quantity_cancelled", "reservation"])
                remaining[line_id] -= qty
                taken[line_id] = qty
            if not taken:
                continue
            from_status = locked.status
            if all(line.quantity_open == 0 for line in by_line.values()):
                locked.status = S.CANCELLED
                locked.save(update_fields=["status", "updated_at"])
                capacity_give_back(location_id=locked.location_id, day=locked.capacity_day)
            _event(
                locked,
                kind="line_cancelled",
                actor=actor,
                from_status=from_status,
                reason=reason,
                data={"cancelled": {str(k): v for k, v in taken.items()}, "by_channel": True},
            )
        leftover = {line_id: qty for line_id, qty in remaining.items() if qty > 0}
        if leftover:
            _release_unshipped_reservations(leftover, actor=actor)
        order_follow_shipments(order_id=order_id, actor=actor, reason=reason)


def _unshipped_shipment_ids(order_id: int, line_ids) -> list[int]:
    """The order's shipments still holding stock for any of ``line_ids``, in pk (lock) order."""
    return list(
        Shipment.objects.filter(order_id=order_id, status__in=HOLDS_STOCK, lines__order_line_id__in=list(line_ids))
        .order_by("pk")
        .values_list("pk", flat=True)
        .distinct()
    )


@dataclass
class UpstreamShipResult:
    consumed: dict[int, int] = field(default_factory=dict)  # order line -> units taken from reserved stock
    without_stock: dict[int, int] = field(default_factory=dict)  # order line -> units that held no stock
    shipments: list[int] = field(default_factory=list)  # shipments that gave up units
    exception_case_id: int | None = None


def order_lines_shipped_upstream(
    *,
    order_id: int,
    shipped: Mapping[int, int],
    actor: Actor,
    reason: str = "shipped outside Waybill (reported by the channel)",
) -> UpstreamShipResult:
    """The channel reports units shipped that no Waybill shipment shipped: the seller fulfilled them in the
    channel's own tools. Those units must not ship twice, and the stock held for them must not stay held.

    Units on an unshipped shipment leave that node: their reservations are consumed (it is where the
    units were held, and counting them gone can never oversell), the shipment lines count them shipped,
    and a shipment with nothing left becomes shipped (picked up, for a pickup) with no tracking, so the
    node's queue no longer offers it. Units reserved outside any shipment are consumed where reserved.
    Units that held no stock open an exception case: the node that shipped them must correct on-hand.
    The order lines' shipped quantities are the sync's (not touched here); nothing goes to the outbox.
    """
    actor_resolve(actor)
    remaining = {int(line_id): qty for line_id, qty in shipped.items() if qty > 0}
    result = UpstreamShipResult()
    if not remaining:
        return result
    now = timezone.now()
    no_stock: dict[int, int] = {}
    with transaction.atomic():
        for shipment_id in _unshipped_shipment_ids(order_id, remaining):
            locked = _lock(shipment_id)
            by_line = _lines_by_order_line(locked)
            taken, consume = {}, {}
            for line_id, line in by_line.items():
                qty = min(remaining.get(line_id, 0), line.quantity_open)
                if qty <= 0:
                    continue
                if line.reservation_id:
                    consume[line.reservation_id] = qty
                else:
                    no_stock[line_id] = no_stock.get(line_id, 0) + qty
                line.quantity_shipped += qty
                line.save(update_fields=["quantity_shipped"])
                remaining[line_id] -= qty
                taken[line_id] = qty
            if not taken:
                continue
            if consume:
                stock_consume(
                    reservation_ids=sorted(consume), quantities=consume, reference=f"shipment:{locked.pk}", actor=actor
                )
            from_status = locked.status
            if all(line.quantity_open == 0 for line in by_line.values()):
                to_status = S.PICKED_UP if locked.kind == ShipmentKind.PICKUP else S.SHIPPED
                _check(locked, to_status)
                locked.status = to_status
                locked.shipped_at = now
                locked.save(update_fields=["status", "shipped_at", "updated_at"])
            _event(
                locked,
                kind="shipped_upstream",
                actor=actor,
                from_status=from_status,
                reason=reason,
                data={"shipped": {str(k): v for k, v in taken.items()}, "by_channel": True},
            )
            result.shipments.append(locked.pk)
            for line_id, qty in taken.items():
                if qty - no_stock.get(line_id, 0) > 0:
                    result.consumed[line_id] = result.consumed.get(line_id, 0) + qty - no_stock.get(line_id, 0)
        leftover = {line_id: qty for line_id, qty in remaining.items() if qty > 0}
        if leftover:
            held, leftover = _unshipped_reservations_take(leftover)
            if held:
                stock_consume(
                    reservation_ids=sorted(pk for pk, *_ in held),
                    quantities={pk: take for pk, _l, _s, _loc, _q, take in held},
                    reference=f"order:{order_id}",
                    actor=actor,
                )
                for _pk, line_id, _s, _loc, _q, take in held:
                    result.consumed[line_id] = result.consumed.get(line_id, 0) + take
        for line_id, qty in no_stock.items():
            leftover[line_id] = leftover.get(line_id, 0) + qty
        result.without_stock = leftover
        if leftover:
            codes = dict(OrderLine.objects.filter(pk__in=list(leftover)).values_list("pk", "channel_sku"))
            order = Order.objects.only("external_id").get(pk=order_id)
            case, _ = order_services.exception_case_open(
                kind=ExceptionKind.OTHER,
                title=f"Order {order.external_id}: units shipped outside Waybill held no stock",
                detail=", ".join(f"{codes.get(k, k)}: {v}" for k, v in sorted(leftover.items()))
                + " unit(s) were shipped in the channel's own tools, but Waybill held no stock for them. "
                "Adjust on-hand at the node that shipped them, or the stock there is counted too high.",
                severity=Severity.HIGH,
                order_id=order_id,
                actor=actor,
                dedupe_key=f"shipped_upstream:order={order_id}",
            )
            result.exception_case_id = case.pk
        if result.shipments:
            order_follow_shipments(order_id=order_id, actor=actor, reason=reason)
    return result


def _unshipped_reservations_take(quantities: Mapping[int, int]) -> tuple[list[tuple], dict[int, int]]:
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


def _release_unshipped_reservations(quantities: Mapping[int, int], *, actor: Actor) -> None:
    """Release ``quantities`` units of reservations held for order lines outside any shipment, keeping
    the rest reserved at the same node."""
    taken, _ = _unshipped_reservations_take(quantities)
    releasing, keeping = [], []
    for pk, line_id, sku_id, location_id, qty, take in taken:
        releasing.append(pk)
        if qty > take:
            keeping.append(LineDemand(order_line_id=line_id, sku_id=sku_id, quantities={location_id: qty - take}))
    if releasing:
        stock_release(reservation_ids=releasing, actor=actor)
    for demand in keeping:
        stock_reserve(lines=[demand], actor=actor)


def shipment_cancel(*, shipment: Shipment | int, reason: str, actor: Actor) -> Shipment:
    """Cancel an unshipped shipment: its reservations are released and its lines wait to be routed again."""
    actor_resolve(actor)
    if not reason or not reason.strip():
        raise InvalidInput("reason", "cancelling a shipment needs a reason")
    with transaction.atomic():
        locked = _lock(shipment)
        _check(locked, S.CANCELLED)
        from_status = locked.status
        lines = list(locked.lines.select_for_update().order_by("pk"))
        reservation_ids = [line.reservation_id for line in lines if line.reservation_id]
        if reservation_ids:
            stock_release(reservation_ids=reservation_ids, actor=actor)
        locked.status = S.CANCELLED
        locked.save(update_fields=["status", "updated_at"])
        capacity_give_back(location_id=locked.location_id, day=locked.capacity_day)
        lines_reopen_if_unreserved(line.order_line_id for line in lines)
        _event(locked, kind="shipment_cancelled", actor=actor, from_status=from_status, reason=reason.strip())
        order_follow_shipments(order_id=locked.order_id, actor=actor, reason="shipment cancelled")
    return locked


# --- store pickup (BOPIS) -------------------------------------------------------------------------------


def shipment_ready_for_pickup(*, shipment: Shipment | int, actor: Actor, now: datetime | None = None) -> Shipment:
    """The store has the order ready: the pickup deadline starts now."""
    actor_resolve(actor)
    now = now or timezone.now()
    with transaction.atomic():
        locked = _lock(shipment)
        if locked.kind != ShipmentKind.PICKUP:
            raise InvalidInput("shipment", f"shipment {locked.pk} is not a store pickup")
        if locked.status == S.READY_FOR_PICKUP:
            return locked
        _check(locked, S.READY_FOR_PICKUP)
        from_status = locked.status
        locked.status = S.READY_FOR_PICKUP
        locked.pickup_deadline = now + timedelta(hours=routing_config_active().pickup_deadline_hours)
        locked.save(update_fields=["status", "pickup_deadline", "updated_at"])
        _event(
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
    picked_up_at = _validate_time(picked_up_at, "picked_up_at", now)
    with transaction.atomic():
        locked = _lock(shipment)
        if locked.kind != ShipmentKind.PICKUP:
            raise InvalidInput("shipment", f"shipment {locked.pk} is not a store pickup")
        _check(locked, S.PICKED_UP)
        _refuse_if_cancel_requested(locked, "hand over")
        from_status = locked.status
        shipped = _units_leave(locked, actor=actor)
        locked.status = S.PICKED_UP
        locked.shipped_at = picked_up_at
        locked.delivered_at = picked_up_at
        locked.save(update_fields=["status", "shipped_at", "delivered_at", "updated_at"])
        event = _event(
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
        locked = _lock(shipment)
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
        event = _event(
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


# --- the buyer's cancel request and a new ship-to reach the node ------------------------------------------

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
            _release_unshipped_reservations(unrouted, actor=actor)
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
        _event(
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
