"""Units the node gives up before they ship: a short pick (re-routed elsewhere), a line cancelled, a whole
shipment cancelled. Their reservations are released; what stays on the shipment stays reserved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F

from config.kernel.actors import Actor, actor_resolve
from config.kernel.errors import InvalidTransition
from fulfillment.errors import InvalidInput
from fulfillment.models import Shipment, ShipmentLine
from fulfillment.selectors import network_snapshot, routing_config_active
from fulfillment.services.common import capacity_give_back, order_follow_shipments
from fulfillment.services.route import RouteResult, order_route_in_transaction
from fulfillment.services.shipments.common import (
    S,
    line_rereserve,
    lines_by_order_line,
    reservation_shrink,
    shipment_event,
    shipment_lock,
    transition_check,
)
from fulfillment.signals import shipment_line_cancelled
from fulfillment.status import HOLDS_STOCK, PRE_SHIP
from inventory.services import stock_adjust, stock_release
from orders import services as order_services
from orders.models import CancelInitiator, ExceptionKind, LineStatus, OrderLine, Severity


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


@dataclass
class ShortPickResult:
    shipment: Shipment
    released: dict[int, int]
    reroute: RouteResult | None = None  # the re-route of the missing units
    exception_case_id: int | None = None
    replaced_shipment_ids: list[int] = field(default_factory=list)


def shipment_short_pick(
    *, shipment: Shipment | int, lines: Mapping[int, int], actor: Actor, reason: str = "", now=None
) -> ShortPickResult:
    """The node could not find some units ({order_line_id: units short}). Release those units, lower the
    node's on-hand by them (when the rules say so), and re-route only those units to other nodes.
    The shipment keeps the rest; with nothing left it is cancelled."""
    actor_resolve(actor)
    with transaction.atomic():
        locked = shipment_lock(shipment)
        if locked.status not in PRE_SHIP:
            raise InvalidTransition(entity=f"shipment {locked.pk}", from_status=locked.status, to_status="short pick")
        by_line = lines_by_order_line(locked)
        shorts = _parse_quantities(lines, by_line, "short")
        config = routing_config_active()
        skus = dict(OrderLine.objects.filter(pk__in=list(shorts)).values_list("pk", "sku_id"))
        for order_line_id, short in sorted(shorts.items()):
            line = by_line[order_line_id]
            keep = reservation_shrink(line, by=short, shipment=locked, actor=actor)
            if config.short_pick_adjusts_stock:
                stock_adjust(
                    sku=skus[order_line_id],
                    location=locked.location_id,
                    delta=-short,
                    reason=f"short pick on shipment {locked.pk}" + (f": {reason}" if reason else ""),
                    reference=f"shipment:{locked.pk}",
                    actor=actor,
                )
            line_rereserve(line, keep=keep, shipment=locked, sku_id=skus[order_line_id], actor=actor)
            line.quantity_short += short
            line.save(update_fields=["quantity_short", "reservation"])
        from_status = locked.status
        if all(line.quantity_open == 0 for line in by_line.values()):
            locked.status = S.CANCELLED
            locked.save(update_fields=["status", "updated_at"])
            capacity_give_back(location_id=locked.location_id, day=locked.capacity_day)
        OrderLine.objects.filter(pk__in=list(shorts), status=LineStatus.ALLOCATED).update(status=LineStatus.OPEN)
        shipment_event(
            locked,
            kind="short_picked",
            actor=actor,
            from_status=from_status,
            reason=reason,
            data={"short": {str(k): v for k, v in shorts.items()}, "adjusted_stock": config.short_pick_adjusts_stock},
        )
        network = network_snapshot(sku_ids=sorted(set(skus.values())), now=now)
        reroute = order_route_in_transaction(
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
        locked = shipment_lock(shipment)
        if locked.status not in HOLDS_STOCK:
            raise InvalidTransition(entity=f"shipment {locked.pk}", from_status=locked.status, to_status="line cancel")
        by_line = lines_by_order_line(locked)
        [(line_id, qty)] = _parse_quantities({order_line_id: quantity}, by_line, "to cancel").items()
        line = by_line[line_id]
        sku_id = OrderLine.objects.values_list("sku_id", flat=True).get(pk=line_id)
        keep = reservation_shrink(line, by=qty, shipment=locked, actor=actor)
        line_rereserve(line, keep=keep, shipment=locked, sku_id=sku_id, actor=actor)
        line.quantity_cancelled += qty
        line.save(update_fields=["quantity_cancelled", "reservation"])
        OrderLine.objects.filter(pk=line_id).update(quantity_cancelled=F("quantity_cancelled") + qty)
        OrderLine.objects.filter(pk=line_id, quantity__lte=F("quantity_cancelled")).update(status=LineStatus.CANCELLED)
        from_status = locked.status
        if all(sl.quantity_open == 0 for sl in by_line.values()):
            locked.status = S.CANCELLED
            locked.save(update_fields=["status", "updated_at"])
            capacity_give_back(location_id=locked.location_id, day=locked.capacity_day)
        event = shipment_event(
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


def shipment_cancel(*, shipment: Shipment | int, reason: str, actor: Actor) -> Shipment:
    """Cancel an unshipped shipment: its reservations are released and its lines wait to be routed again."""
    actor_resolve(actor)
    if not reason or not reason.strip():
        raise InvalidInput("reason", "cancelling a shipment needs a reason")
    with transaction.atomic():
        locked = shipment_lock(shipment)
        transition_check(locked, S.CANCELLED)
        from_status = locked.status
        lines = list(locked.lines.select_for_update().order_by("pk"))
        reservation_ids = [line.reservation_id for line in lines if line.reservation_id]
        if reservation_ids:
            stock_release(reservation_ids=reservation_ids, actor=actor)
        locked.status = S.CANCELLED
        locked.save(update_fields=["status", "updated_at"])
        capacity_give_back(location_id=locked.location_id, day=locked.capacity_day)
        order_services.order_lines_reopen_unreserved(line_ids=[line.order_line_id for line in lines], actor=actor)
        shipment_event(locked, kind="shipment_cancelled", actor=actor, from_status=from_status, reason=reason.strip())
        order_follow_shipments(order_id=locked.order_id, actor=actor, reason="shipment cancelled")
    return locked
