"""What the routing paths share: the result, the per-order advisory lock, a plan's reservation demands
and outcome, and the Shipments a plan creates."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection

from fulfillment import routing
from fulfillment.models import RoutingOutcome, Shipment, ShipmentLine, ShipmentStatus
from fulfillment.selectors import OrderToRoute
from inventory.services import LineDemand
from orders.models import Order, OrderStatus

ROUTABLE_ORDER_STATUSES = frozenset(
    {
        OrderStatus.OPEN,
        OrderStatus.BACKORDERED,
        OrderStatus.ALLOCATED,
        OrderStatus.RELEASED,
        OrderStatus.PARTIALLY_SHIPPED,
    }
)


ADVISORY_NAMESPACE = 7306


@dataclass
class RouteResult:
    order_id: int
    outcome: str = ""
    decision_id: int | None = None
    shipment_ids: list[int] = field(default_factory=list)
    backordered_line_ids: list[int] = field(default_factory=list)
    exception_case_ids: list[int] = field(default_factory=list)
    skipped: str = ""  # why nothing was done

    @property
    def routed(self) -> bool:
        return bool(self.shipment_ids)


def advisory_lock(order_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [ADVISORY_NAMESPACE, order_id])


def order_ref(order_id: int) -> Order:
    # The event only needs the key: no need to read the row again.
    return Order(pk=order_id)


def plan_demands(plan: routing.RoutingPlan) -> list[LineDemand]:
    sku_of = {line.line_id: line.sku_id for s in plan.shipments for line in s.lines}
    return [
        LineDemand(order_line_id=line_id, sku_id=sku_of[line_id], quantities=quantities)
        for line_id, quantities in sorted(plan.allocations().items())
    ]


def plan_outcome(plan: routing.RoutingPlan, backordered: list[int], exceptions: list[int]) -> str:
    if plan.shipments:
        return RoutingOutcome.SPLIT if len(plan.shipments) > 1 else RoutingOutcome.ROUTED
    if exceptions:
        reasons = {u.reason for u in plan.unrouted}
        return (
            RoutingOutcome.NO_NODE
            if reasons <= {routing.NO_NODE, routing.TOO_MANY_SHIPMENTS}
            else (RoutingOutcome.EXCEPTION)
        )
    return RoutingOutcome.BACKORDERED


def shipments_create(*, order: OrderToRoute, plan: routing.RoutingPlan, reservations, decision, now) -> list[int]:
    if not plan.shipments:
        return []
    by_pair = {(r.order_line_id, r.location_id): r.pk for r in reservations}
    shipments = Shipment.objects.bulk_create(
        [
            Shipment(
                order_id=order.route.order_id,
                location_id=planned.location_id,
                kind=planned.kind,
                status=ShipmentStatus.RELEASED,
                service_level=order.shipping_method[:64],
                released_at=now,
                ship_by=order.ship_by,
                promised_delivery_at=order.deliver_by,
                capacity_day=planned.ship_day,
                decision=decision,
            )
            for planned in plan.shipments
        ]
    )
    ShipmentLine.objects.bulk_create(
        [
            ShipmentLine(
                shipment=shipment,
                order_line_id=line.line_id,
                reservation_id=by_pair.get((line.line_id, planned.location_id)),
                quantity=line.quantity,
            )
            for shipment, planned in zip(shipments, plan.shipments, strict=True)
            for line in planned.lines
        ]
    )
    return [s.pk for s in shipments]
