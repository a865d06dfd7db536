"""The general path: one order per transaction, under its advisory lock. Backorders, exceptions, re-routes,
partly routed orders and whatever raced on the normal path come here. Lines that can't be routed become
backorders where the SKU or channel allows it, otherwise an ExceptionCase names the reason (no node, over
capacity, ship-by unreachable, insufficient stock)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from config.kernel.actors import Actor, actor_resolve
from fulfillment import routing
from fulfillment.errors import CapacityExhausted
from fulfillment.models import RoutingDecision, RoutingOutcome
from fulfillment.selectors import ROUTING_EXCEPTION_KINDS, NetworkSnapshot, OrderToRoute, atp_for, orders_to_route
from fulfillment.services.common import capacity_take
from fulfillment.services.route.common import (
    ROUTABLE_ORDER_STATUSES,
    RouteResult,
    advisory_lock,
    order_ref,
    plan_demands,
    plan_outcome,
    shipments_create,
)
from fulfillment.services.route.release import reserved_lines_release
from inventory.errors import InsufficientStock
from inventory.services import preorder_promisable, preorder_promise_lock, stock_reserve
from orders import services as order_services
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, LineStatus, OrderStatus, Severity

RESERVE_ATTEMPTS = 3


EXCEPTION_FOR_REASON = {
    routing.NO_NODE: ExceptionKind.NO_NODE,
    routing.TOO_MANY_SHIPMENTS: ExceptionKind.NO_NODE,
    routing.OVER_CAPACITY: ExceptionKind.OVER_CAPACITY,
    routing.SHIP_BY_UNREACHABLE: ExceptionKind.SHIP_BY_UNREACHABLE,
    routing.INSUFFICIENT_STOCK: ExceptionKind.INSUFFICIENT_STOCK,
}


EXCEPTION_TITLE = {
    ExceptionKind.NO_NODE: "No node can ship order {order}",
    ExceptionKind.OVER_CAPACITY: "Nodes over capacity for order {order}",
    ExceptionKind.SHIP_BY_UNREACHABLE: "Ship-by unreachable for order {order}",
    ExceptionKind.INSUFFICIENT_STOCK: "Not enough stock for order {order}",
}


def order_route_in_transaction(
    *,
    order_id: int,
    network: NetworkSnapshot,
    actor: Actor,
    now: datetime | None,
    locked: bool = False,
    strategy: str = "fewest-shipments",
    excluded_locations: Iterable[int] = (),
) -> RouteResult:
    """Route one order inside the caller's transaction: the general path. Takes the order's advisory lock
    unless the caller holds it already (``locked``); never chooses a node in ``excluded_locations`` (a short
    pick routes the missing units away from the node that missed them)."""
    started = time.perf_counter()
    now = now or timezone.now()
    name, _ = actor_resolve(actor)
    if not locked:
        advisory_lock(order_id)
    fresh = orders_to_route([order_id]).get(order_id)
    result = RouteResult(order_id=order_id)
    if fresh is None:
        result.skipped = "no such order or no lines"
        return result
    if fresh.marketplace_fulfilled:
        result.skipped = "fulfilled by the marketplace: never routed"
        return result
    if fresh.on_hold:
        result.skipped = "on hold"
        return result
    if fresh.status not in ROUTABLE_ORDER_STATUSES:
        result.skipped = f"order is {fresh.status}"
        return result
    if not fresh.ship_to_usable:
        # However it got here: never released to a node without an address to label. It waits, held.
        order_services.order_address_hold(order=order_id, actor=actor)
        result.skipped = "no usable ship-to address: held until the channel sends one"
        return result

    released = reserved_lines_release(order_id=order_id, fresh=fresh, network=network, actor=actor, now=now)
    result.shipment_ids.extend(released)
    if not fresh.route.lines:
        if released:
            _order_advance(fresh, actor=actor, shipped_anything=True, backordered=False)
            result.outcome = RoutingOutcome.ROUTED
        else:
            result.skipped = "nothing left to route"
        return result

    missing = sorted({line.sku_id for line in fresh.route.lines} - {sku for _, sku in network.atp})
    if missing:
        network.atp.update(atp_for(sku_ids=missing, location_ids=list(network.nodes)))
    rules = network.rules
    if excluded_locations:
        rules = replace(rules, excluded_locations=frozenset(excluded_locations) | rules.excluded_locations)
    route_order = fresh.route
    plan, reservations = None, []
    for attempt in range(RESERVE_ATTEMPTS):
        plan = routing.plan_order(
            order=route_order, nodes=network.nodes_for(route_order.account_id), atp=network.atp, rules=rules, now=now
        )
        if not plan.shipments:
            break
        try:
            with transaction.atomic():
                reservations = stock_reserve(lines=plan_demands(plan), actor=actor)
                for shipment in sorted(plan.shipments, key=lambda s: s.location_id):
                    node = network.nodes[shipment.location_id]
                    capacity_take(
                        location_id=node.location_id, day=shipment.ship_day, daily_capacity=node.daily_capacity
                    )
            break
        except InsufficientStock:
            # Someone reserved since the snapshot: re-read this order's ATP and plan again.
            skus = sorted({line.sku_id for line in route_order.lines})
            network.atp.update(atp_for(sku_ids=skus, location_ids=list(network.nodes)))
        except CapacityExhausted as exc:
            full = network.nodes[exc.location_id].daily_capacity or 0
            network.capacity_used.setdefault(exc.location_id, {})[exc.day] = full
        if attempt == RESERVE_ATTEMPTS - 1:
            plan = replace(plan, shipments=[], unrouted=_all_unrouted(route_order, "stock or capacity kept moving"))
    network.take_plan(plan)

    backordered, exceptions = _unrouted_outcome(
        fresh, plan, actor=actor, eligible=network.eligible.get(fresh.route.account_id, set())
    )
    outcome = plan_outcome(plan, backordered, exceptions)
    decision = RoutingDecision.objects.create(
        order_id=order_id,
        actor=name,
        strategy=strategy,
        config_version=rules.version,
        plan=plan.as_json(),
        candidates=plan.candidates,
        outcome=outcome,
        explanation=plan.explanation,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    shipment_ids = shipments_create(order=fresh, plan=plan, reservations=reservations, decision=decision, now=now)
    result.shipment_ids.extend(shipment_ids)
    result.decision_id = decision.pk
    result.outcome = outcome
    result.backordered_line_ids = backordered
    result.exception_case_ids = exceptions
    routed_lines = {line.line_id for s in plan.shipments for line in s.lines}
    order_services.order_lines_status_set(line_ids=routed_lines, status=LineStatus.ALLOCATED, actor=actor)
    order_services.order_lines_status_set(line_ids=backordered, status=LineStatus.BACKORDERED, actor=actor)
    _order_advance(fresh, actor=actor, shipped_anything=bool(result.shipment_ids), backordered=bool(backordered))
    if plan.shipments and not plan.unrouted and fresh.has_routing_case:
        _resolve_routing_cases(order_id, decision_id=decision.pk, actor=actor)
    order_services.order_event_record(
        order=order_ref(order_id),
        kind="routed",
        actor=actor,
        data={
            "decision_id": decision.pk,
            "outcome": outcome,
            "config_version": rules.version,
            "shipments": [
                {"node": s.code, "lines": [[pl.line_id, pl.quantity] for pl in s.lines]} for s in plan.shipments
            ],
            "unrouted": [{"order_line": u.line_id, "reason": u.reason} for u in plan.unrouted],
        },
    )
    return result


def _all_unrouted(order: routing.RouteOrder, detail: str) -> list[routing.UnroutedLine]:
    return [
        routing.UnroutedLine(
            line.line_id, line.sku_id, line.sku_code, line.quantity, routing.INSUFFICIENT_STOCK, detail
        )
        for line in order.lines
    ]


def _unrouted_outcome(
    fresh: OrderToRoute, plan: routing.RoutingPlan, *, actor: Actor, eligible: set[int]
) -> tuple[list[int], list[int]]:
    """Backorder what may wait for stock; open one exception case per reason for the rest. ``eligible``: the
    nodes the order's account may ship from (a preorder is promised only what is coming to those)."""
    backordered: list[int] = []
    by_kind: dict[str, list[routing.UnroutedLine]] = defaultdict(list)
    # Held until commit: two routers never promise the same last incoming units of a preorder SKU.
    preorder_promise_lock(sku_ids=[u.sku_id for u in plan.unrouted if fresh.lines[u.line_id]["is_preorder"]])
    for unrouted in plan.unrouted:
        line = fresh.lines[unrouted.line_id]
        if unrouted.reason in (routing.INSUFFICIENT_STOCK, routing.ORDER_INCOMPLETE) and _may_backorder(
            line, need=unrouted.quantity, eligible=eligible
        ):
            backordered.append(unrouted.line_id)
        elif unrouted.reason != routing.ORDER_INCOMPLETE:
            by_kind[EXCEPTION_FOR_REASON[unrouted.reason]].append(unrouted)
    cases = []
    for kind, items in sorted(by_kind.items()):
        case, _ = order_services.exception_case_open(
            kind=kind,
            title=EXCEPTION_TITLE[kind].format(order=fresh.external_id),
            detail="\n".join(f"{u.sku_code} x{u.quantity}: {u.detail}" for u in items),
            severity=Severity.HIGH,
            order_id=fresh.route.order_id,
            sku_id=items[0].sku_id if len(items) == 1 else None,
            actor=actor,
            due_at=fresh.ship_by,
        )
        cases.append(case.pk)
    return backordered, cases


def _may_backorder(line: dict, *, need: int, eligible: set[int]) -> bool:
    if line["allow_backorder"]:
        return True
    if line["is_preorder"]:
        return preorder_promisable(sku_id=line["sku_id"], location_ids=eligible) >= need
    return False


def _order_advance(fresh: OrderToRoute, *, actor: Actor, shipped_anything: bool, backordered: bool) -> None:
    order_id, status = fresh.route.order_id, fresh.status
    if shipped_anything:
        if status in (OrderStatus.OPEN, OrderStatus.BACKORDERED):
            order_services.order_transition(
                order=order_id, to_status=OrderStatus.ALLOCATED, actor=actor, reason="order routing"
            )
            status = OrderStatus.ALLOCATED
        if status == OrderStatus.ALLOCATED:
            order_services.order_transition(
                order=order_id, to_status=OrderStatus.RELEASED, actor=actor, reason="released to node"
            )
    elif backordered and status == OrderStatus.OPEN:
        order_services.order_transition(
            order=order_id, to_status=OrderStatus.BACKORDERED, actor=actor, reason="no stock to route"
        )


def _resolve_routing_cases(order_id: int, *, decision_id: int, actor: Actor) -> None:
    open_cases = ExceptionCase.objects.filter(
        order_id=order_id,
        kind__in=ROUTING_EXCEPTION_KINDS,
        status__in=[CaseStatus.OPEN, CaseStatus.ACKNOWLEDGED],
    ).values_list("pk", flat=True)
    for case_id in list(open_cases):
        order_services.exception_case_resolve(
            case=case_id, note=f"routed on a later attempt (routing decision #{decision_id})", actor=actor
        )
