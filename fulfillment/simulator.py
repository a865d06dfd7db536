"""The routing simulator: replay the last N days of orders through the routing core under the current
rules and today's ATP, and put the result next to what actually happened. Reads only; writes nothing.

Each order is planned at the time it was placed (so cutoffs and ship-bys mean what they meant then);
ATP and node capacity are drawn down in memory as the replay goes, like the real router would.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import mean

from django.db.models import F
from django.utils import timezone

from fulfillment import routing
from fulfillment.geo import distance_km, point_of
from fulfillment.models import Shipment, ShipmentStatus
from fulfillment.selectors import network_snapshot
from orders.models import Order, OrderLine, OrderStatus

MAX_ORDERS = 5000


@dataclass
class Side:
    orders: int = 0
    shipments: int = 0
    split_orders: int = 0
    on_time: int = 0
    timed: int = 0
    distances: list[float] = field(default_factory=list)
    unrouted_orders: int = 0

    @property
    def shipments_per_order(self) -> float | None:
        routed = self.orders - self.unrouted_orders
        return round(self.shipments / routed, 3) if routed else None

    @property
    def split_rate(self) -> float | None:
        routed = self.orders - self.unrouted_orders
        return round(self.split_orders / routed, 4) if routed else None

    @property
    def on_time_rate(self) -> float | None:
        return round(self.on_time / self.timed, 4) if self.timed else None

    @property
    def mean_distance_km(self) -> float | None:
        return round(mean(self.distances), 1) if self.distances else None


@dataclass
class SimulationReport:
    days: int
    config_version: str
    simulated: Side
    actual: Side
    truncated: bool
    rows: list[dict]


def simulate(*, days: int, now: datetime | None = None, limit: int = MAX_ORDERS, sample_rows: int = 50):
    now = now or timezone.now()
    orders = list(
        Order.objects.filter(placed_at__gte=now - timedelta(days=days), placed_at__lte=now, marketplace_fulfilled=False)
        .exclude(status__in=[OrderStatus.PENDING, OrderStatus.CANCELLED])
        .select_related("ship_to")
        .prefetch_related("account")
        .order_by("placed_at", "pk")[: limit + 1]
    )
    truncated = len(orders) > limit
    orders = orders[:limit]
    ids = [o.pk for o in orders]
    lines_by_order: dict[int, list[routing.RouteLine]] = defaultdict(list)
    for line_id, order_id, sku_id, code, units in (
        OrderLine.objects.filter(order_id__in=ids, sku__isnull=False)
        .annotate(units=F("quantity") - F("quantity_cancelled"))
        .filter(units__gt=0)
        .values_list("pk", "order_id", "sku_id", "sku__code", "units")
    ):
        lines_by_order[order_id].append(routing.RouteLine(line_id, sku_id, code, units))
    network = network_snapshot(
        sku_ids=sorted({ln.sku_id for lines in lines_by_order.values() for ln in lines}), now=now
    )
    network.capacity_used = {}
    actual_by_order: dict[int, list[Shipment]] = defaultdict(list)
    for shipment in (
        Shipment.objects.filter(order_id__in=ids).exclude(status=ShipmentStatus.CANCELLED).select_related("location")
    ):
        actual_by_order[shipment.order_id].append(shipment)

    sim, act = Side(), Side()
    rows = []
    for order in orders:
        ship_to = (
            point_of(
                order.ship_to.latitude, order.ship_to.longitude, order.ship_to.country_code, order.ship_to.postal_code
            )
            if order.ship_to
            else None
        )
        route_order = routing.RouteOrder(
            order_id=order.pk,
            account_id=order.account_id,
            channel_kind=order.account.kind,
            service_level=order.service_level,
            ship_by=order.ship_by,
            ship_to=ship_to,
            lines=tuple(lines_by_order.get(order.pk, ())),
        )
        if not route_order.lines:
            continue
        plan = routing.plan_order(
            order=route_order,
            nodes=network.nodes_for(order.account_id),
            atp=network.atp,
            rules=network.rules,
            now=order.placed_at,
        )
        sim.orders += 1
        if plan.unrouted and not plan.shipments:
            sim.unrouted_orders += 1
        sim.shipments += len(plan.shipments)
        sim.split_orders += len(plan.shipments) > 1
        network.take_plan(plan)
        for s in plan.shipments:
            if order.ship_by:
                sim.timed += 1
                sim.on_time += s.on_time
            if s.distance_km is not None:
                sim.distances.append(s.distance_km)
        actual = actual_by_order.get(order.pk, [])
        act.orders += 1
        if not actual:
            act.unrouted_orders += 1
        act.shipments += len(actual)
        act.split_orders += len(actual) > 1
        for s in actual:
            if s.shipped_at and order.ship_by:
                act.timed += 1
                act.on_time += s.shipped_at <= order.ship_by
            node = network.nodes.get(s.location_id)
            d = distance_km(node.point if node else None, ship_to)
            if d is not None:
                act.distances.append(d)
        if len(rows) < sample_rows:
            rows.append(
                {
                    "order": order,
                    "simulated": [s.code for s in plan.shipments] or ["—"],
                    "actual": [s.location.code for s in actual] or ["—"],
                    "differs": sorted(s.code for s in plan.shipments) != sorted(s.location.code for s in actual),
                }
            )
    return SimulationReport(
        days=days, config_version=network.rules.version, simulated=sim, actual=act, truncated=truncated, rows=rows
    )
