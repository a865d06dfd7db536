"""Changes made at the channel: units the channel cancelled, or reports shipped in its own tools, that the
sync has already counted on the order lines. Nothing goes back to the outbox: the channel made them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from config.kernel.actors import Actor, actor_resolve
from fulfillment.models import Shipment, ShipmentKind
from fulfillment.services.common import capacity_give_back, order_follow_shipments
from fulfillment.services.shipments.common import (
    S,
    line_rereserve,
    lines_by_order_line,
    reservation_shrink,
    shipment_event,
    shipment_lock,
    transition_check,
    unshipped_reservations_release,
    unshipped_reservations_take,
)
from fulfillment.status import HOLDS_STOCK
from inventory.services import stock_consume
from orders import services as order_services
from orders.models import ExceptionKind, Order, OrderLine, Severity


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
            locked = shipment_lock(shipment_id)
            by_line = lines_by_order_line(locked)
            taken = {}
            for line_id, line in by_line.items():
                qty = min(remaining.get(line_id, 0), line.quantity_open)
                if qty <= 0:
                    continue
                sku_id = OrderLine.objects.values_list("sku_id", flat=True).get(pk=line_id)
                keep = reservation_shrink(line, by=qty, shipment=locked, actor=actor)
                line_rereserve(line, keep=keep, shipment=locked, sku_id=sku_id, actor=actor)
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
            shipment_event(
                locked,
                kind="line_cancelled",
                actor=actor,
                from_status=from_status,
                reason=reason,
                data={"cancelled": {str(k): v for k, v in taken.items()}, "by_channel": True},
            )
        leftover = {line_id: qty for line_id, qty in remaining.items() if qty > 0}
        if leftover:
            unshipped_reservations_release(leftover, actor=actor)
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
            locked = shipment_lock(shipment_id)
            by_line = lines_by_order_line(locked)
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
                transition_check(locked, to_status)
                locked.status = to_status
                locked.shipped_at = now
                locked.save(update_fields=["status", "shipped_at", "updated_at"])
            shipment_event(
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
            held, leftover = unshipped_reservations_take(leftover)
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
