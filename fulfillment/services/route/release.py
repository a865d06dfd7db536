"""Backorders filled and released: units received at a node are reserved for the backordered lines of the
accounts that may ship from it (backorders_fill, on inventory's stock_received), and stock reserved later for
an order's lines, which no shipment carries yet, becomes shipments at the nodes holding it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from config.kernel.actors import Actor, actor_resolve
from fulfillment import routing
from fulfillment.models import RoutingDecision, RoutingOutcome
from fulfillment.selectors import NetworkSnapshot, OrderToRoute, accounts_shipping_from, unreleased_reservations
from fulfillment.services.common import capacity_take
from fulfillment.services.route.common import shipments_create
from inventory.services import backorders_allocate
from orders.models import LineStatus


def backorders_fill(*, sku_ids: Sequence[int], location_id: int, actor: Actor) -> list[int]:
    """Reserve units now at ``location_id`` for the backordered lines of these SKUs whose channel account may
    ship from it, earliest ship-by first (inventory's backorders_allocate). Returns the allocated line ids;
    the next routing pass releases them as shipments (reserved_lines_release)."""
    return backorders_allocate(
        sku_ids=sku_ids, location_id=location_id, account_ids=accounts_shipping_from(location_id), actor=actor
    )


def reserved_lines_release(*, order_id: int, fresh: OrderToRoute, network: NetworkSnapshot, actor, now) -> list[int]:
    """Active reservations no shipment carries (a backorder filled on receipt) become shipments."""
    if not any(line["status"] == LineStatus.ALLOCATED for line in fresh.lines.values()):
        return []
    reservations = unreleased_reservations(order_id)
    if not reservations:
        return []
    by_node: dict[int, list] = defaultdict(list)
    for r in reservations:
        by_node[r.location_id].append(r)
    plan_shipments = []
    for location_id, items in sorted(by_node.items()):
        node = network.nodes.get(location_id)
        if node is None:
            continue  # an inactive node: its reservations wait for a person (the board shows them)
        ship_day, ships_at = routing.ship_moment(node, now)
        capacity_take(location_id=location_id, day=ship_day, daily_capacity=None, guarded=False)
        network.use_capacity(location_id, ship_day)
        plan_shipments.append(
            routing.PlannedShipment(
                location_id=location_id,
                code=node.code,
                kind=routing.shipment_kind(node, fresh.route.service_level),
                ship_day=ship_day,
                ships_at=ships_at,
                on_time=fresh.ship_by is None or ships_at <= fresh.ship_by,
                distance_km=None,
                lines=[routing.PlannedLine(r.order_line_id, r.sku_id, r.quantity) for r in items],
            )
        )
    if not plan_shipments:
        return []
    plan = routing.RoutingPlan(
        shipments=plan_shipments,
        unrouted=[],
        candidates=[],
        explanation="stock reserved later (a backorder filled on receipt) released to "
        + ", ".join(s.code for s in plan_shipments),
        rules_version=network.rules.version,
    )
    decision = RoutingDecision.objects.create(
        order_id=order_id,
        actor=actor_resolve(actor)[0],
        strategy="release-reserved",
        config_version=network.rules.version,
        plan=plan.as_json(),
        candidates=[],
        outcome=RoutingOutcome.SPLIT if len(plan_shipments) > 1 else RoutingOutcome.ROUTED,
        explanation=plan.explanation,
    )
    return shipments_create(order=fresh, plan=plan, reservations=reservations, decision=decision, now=now)
