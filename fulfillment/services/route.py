"""Route and reserve: for each order, plan nodes (fulfillment.routing), reserve the stock (inventory's
stock_reserve, all or nothing), take node capacity, and write the RoutingDecision, the Shipments and
their lines and the order's transitions, all in one transaction per order.

The normal path (open orders routed whole, _route_batch / _route_fast) is five statements for a whole
batch of orders, or for one: the re-read, one all-or-nothing reservation statement (stock_reserve_order),
one guarded capacity statement for every node and day in the plans (which also tries each order's
advisory lock without waiting), the guarded order transition open → allocated → released with its
events (orders_transition_path), and one statement writing the RoutingDecisions, Shipments,
ShipmentLines, line statuses and "routed" events. Anything else (backorders, exceptions, re-routes, a
race) takes the general path below, one order per transaction.

Lock order (the same as inventory's): a per-order advisory lock (two routers never plan one order
at once; the normal path only tries it, after the stock rows, so it never waits on it), then stock
rows (inside stock_reserve), then node capacity rows, then the order row (order_transition).
Lines that can't be routed become backorders where the SKU or channel allows it, otherwise an
ExceptionCase names the reason (no node, over capacity, ship-by unreachable, insufficient stock).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache

from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from fulfillment import routing
from fulfillment.errors import CapacityExhausted, InvalidInput, RerouteRefused
from fulfillment.models import RoutingDecision, RoutingOutcome, Shipment, ShipmentLine, ShipmentStatus
from fulfillment.selectors import (
    ROUTING_EXCEPTION_KINDS,
    NetworkSnapshot,
    OrderToRoute,
    atp_for,
    network_snapshot,
    orders_to_route,
    unreleased_reservations,
)
from fulfillment.services.common import (
    Actor,
    actor_resolve,
    capacity_give_back,
    capacity_take,
    capacity_take_many,
)
from fulfillment.status import PRE_SHIP
from inventory.errors import InsufficientStock
from inventory.services import (
    LineDemand,
    preorder_promisable,
    preorder_promise_lock,
    stock_release,
    stock_reserve,
    stock_reserve_order,
)
from orders import services as order_services
from orders.models import (
    CaseStatus,
    ExceptionCase,
    ExceptionKind,
    LineStatus,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    Severity,
)

ROUTABLE_ORDER_STATUSES = frozenset(
    {
        OrderStatus.OPEN,
        OrderStatus.BACKORDERED,
        OrderStatus.ALLOCATED,
        OrderStatus.RELEASED,
        OrderStatus.PARTIALLY_SHIPPED,
    }
)
RESERVE_ATTEMPTS = 3
_ADVISORY_NAMESPACE = 7306

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


def orders_route(
    *,
    order_ids: Sequence[int],
    actor: Actor,
    now: datetime | None = None,
    network: NetworkSnapshot | None = None,
) -> list[RouteResult]:
    """Route and reserve a batch of orders. The network (nodes, eligibility, capacity, ATP, rules) is loaded
    once for the batch in a constant number of queries. The orders of the normal shape (open, unheld,
    routed whole) are routed and reserved together in one transaction of five statements, all or nothing;
    the others, or all of them after a race rolled that transaction back, one transaction each."""
    actor_resolve(actor)
    ids = list(dict.fromkeys(int(i) for i in order_ids))
    if not ids:
        return []
    preview = None
    if network is None:
        preview = orders_to_route(ids)
        sku_ids = sorted({line.sku_id for o in preview.values() for line in o.route.lines})
        network = network_snapshot(sku_ids=sku_ids, now=now)
    done: dict[int, RouteResult] = {}
    if len(ids) > 1:
        # The normal shape, all together: one transaction, five statements for the whole batch (four when
        # the orders were just read for the snapshot: that read serves as the re-read).
        try:
            with transaction.atomic(durable=True):
                done = _route_batch(order_ids=ids, network=network, actor=actor, now=now, fresh=preview)
        except _FastPathMiss:
            # Rolled back: a race. Every order goes one by one, each in its own transaction.
            done = {}
    results = []
    for order_id in ids:
        if order_id in done:
            results.append(done[order_id])
            continue
        try:
            with transaction.atomic(durable=True):
                result = _route_fast(order_id=order_id, network=network, actor=actor, now=now)
                if result is None:  # not the normal shape: nothing written yet, take the general path
                    result = _route_locked(order_id=order_id, network=network, actor=actor, now=now)
        except _FastPathMiss:
            # Rolled back: a race (stock, capacity, another router, a status change). The general path
            # takes the advisory lock, re-reads and decides.
            with transaction.atomic(durable=True):
                result = _route_locked(order_id=order_id, network=network, actor=actor, now=now)
        results.append(result)
    return results


def order_route(*, order_id: int, actor: Actor, now: datetime | None = None) -> RouteResult:
    """Route and reserve one order (see orders_route)."""
    return orders_route(order_ids=[order_id], actor=actor, now=now)[0]


def order_reroute(
    *, order_id: int, reason: str, actor: Actor, location_id: int | None = None, now: datetime | None = None
) -> RouteResult:
    """Manual reroute: cancel the order's unshipped shipments (their reservations released), then route
    again, optionally forced to one node. One OrderEvent "rerouted" records actor, reason, before, after.

    A forced node that cannot ship every line refuses the reroute and changes nothing.
    """
    actor_resolve(actor)
    if not reason or not reason.strip():
        raise InvalidInput("reason", "a reroute needs a reason")
    with transaction.atomic(durable=True):
        _advisory_lock(order_id)
        fresh = orders_to_route([order_id]).get(order_id)
        if fresh is None:
            raise InvalidInput("order", f"order {order_id} does not exist or has no lines")
        if fresh.marketplace_fulfilled:
            raise RerouteRefused(f"order {fresh.external_id} is fulfilled by the marketplace: never routed")
        if fresh.status not in ROUTABLE_ORDER_STATUSES:
            raise RerouteRefused(f"order {fresh.external_id} is {fresh.status}: nothing to reroute")
        if not fresh.ship_to_usable:
            raise RerouteRefused(f"order {fresh.external_id} has no usable ship-to address: it cannot be routed")
        shipments = list(
            Shipment.objects.select_for_update()
            .filter(order_id=order_id, status__in=PRE_SHIP)
            .select_related("location")
            .order_by("pk")
        )
        before = [_shipment_summary(s) for s in shipments]
        reservation_ids = list(
            ShipmentLine.objects.filter(shipment__in=shipments, reservation__isnull=False).values_list(
                "reservation_id", flat=True
            )
        )
        if reservation_ids:
            stock_release(reservation_ids=reservation_ids, actor=actor)
        line_ids = set()
        for s in shipments:
            s.status = ShipmentStatus.CANCELLED
            s.save(update_fields=["status", "updated_at"])
            capacity_give_back(location_id=s.location_id, day=s.capacity_day)
            line_ids |= {line.order_line_id for line in s.lines.all()}
        order_services.order_lines_reopen_unreserved(line_ids=line_ids, actor=actor)
        network = network_snapshot(
            sku_ids=sorted({line["sku_id"] for line in fresh.lines.values() if line["sku_id"]}), now=now
        )
        if location_id is not None:
            if location_id not in network.nodes:
                raise InvalidInput("location", f"location {location_id} is not an active node")
            network.rules = replace(network.rules, forced_location=location_id)
        result = _route_locked(
            order_id=order_id, network=network, actor=actor, now=now, locked=True, strategy="manual-reroute"
        )
        if location_id is not None and (result.backordered_line_ids or result.exception_case_ids):
            # Raised inside the transaction: the cancelled shipments and released stock roll back.
            node = network.nodes[location_id].code
            explanation = RoutingDecision.objects.values_list("explanation", flat=True).get(pk=result.decision_id)
            raise RerouteRefused(f"{node} cannot ship the whole order: {explanation}")
        after = [
            _shipment_summary(s)
            for s in Shipment.objects.filter(pk__in=result.shipment_ids).select_related("location").order_by("pk")
        ]
        order_services.order_event_record(
            order=_order_ref(order_id),
            kind="rerouted",
            actor=actor,
            reason=reason.strip(),
            data={
                "before": before,
                "after": after,
                "forced_location": network.nodes[location_id].code if location_id else None,
                "decision_id": result.decision_id,
            },
        )
    return result


# --- the normal path: an open order routed whole, in five statements ----------------------------------


class _FastPathMiss(Exception):
    """The normal path met a race after writing: roll its transaction back and take the general path."""


# The one writer of OrderLine.status outside orders' services (orders/services/line_status.py): this
# statement sets the routed lines ALLOCATED with their shipments, keeping a batch at five statements in
# all (tests/benchmarks: routing 453 orders/s at 0.70 statements per order); its invariants are checked
# by tests/fulfillment/test_route_statements.py (a batch's lines end as order_lines_status_set leaves them).
_FAST_WRITE_SQL = """
WITH dv AS (
    -- One JSON document for the batch's decisions: far cheaper to send than arrays of jsonb.
    SELECT (e.d->>'order_id')::bigint AS order_id, e.d->'plan' AS plan, e.d->'candidates' AS candidates,
           e.d->>'outcome' AS outcome, e.d->>'explanation' AS explanation,
           (e.d->>'duration_ms')::float8 AS duration_ms, e.d->'event_data' AS event_data, e.n
      FROM jsonb_array_elements(%(decisions)s::jsonb) WITH ORDINALITY AS e(d, n)
), dec AS (
    INSERT INTO {decision} (order_id, created_at, actor, strategy, config_version, plan, candidates, outcome,
                            explanation, duration_ms)
    SELECT dv.order_id, now(), %(actor)s, %(strategy)s, %(config_version)s, dv.plan, dv.candidates, dv.outcome,
           dv.explanation, dv.duration_ms
      FROM dv
     ORDER BY dv.n
    RETURNING id, order_id
), sv AS (
    SELECT * FROM unnest(%(s_order_ids)s::bigint[], %(s_location_ids)s::bigint[], %(s_kinds)s::text[],
                         %(s_days)s::date[], %(s_service_levels)s::text[], %(s_promised)s::timestamptz[],
                         %(s_ship_by)s::timestamptz[])
           WITH ORDINALITY AS sv(order_id, location_id, kind, capacity_day, service_level, promised, ship_by, n)
), ship AS (
    INSERT INTO {shipment} (order_id, location_id, status, kind, carrier_id, service_level, tracking_number,
                            tracking_url, released_at, acknowledged_at, shipped_at, promised_delivery_at,
                            delivered_at, pickup_deadline, last_scan_at, external_reference, ship_by,
                            capacity_day, decision_id, created_at, updated_at)
    SELECT sv.order_id, sv.location_id, %(released)s, sv.kind, NULL, sv.service_level, '', '', %(now)s, NULL,
           NULL, sv.promised, NULL, NULL, NULL, '', sv.ship_by, sv.capacity_day, dec.id, now(), now()
      FROM sv JOIN dec ON dec.order_id = sv.order_id
     ORDER BY sv.n
    RETURNING id, order_id, location_id
), lv AS (
    SELECT * FROM unnest(%(l_order_ids)s::bigint[], %(l_location_ids)s::bigint[], %(l_line_ids)s::bigint[],
                         %(l_reservation_ids)s::bigint[], %(l_quantities)s::integer[])
           WITH ORDINALITY AS lv(order_id, location_id, order_line_id, reservation_id, quantity, n)
), sl AS (
    INSERT INTO {shipment_line} (shipment_id, order_line_id, reservation_id, quantity, quantity_shipped,
                                 quantity_short, quantity_cancelled)
    SELECT ship.id, lv.order_line_id, lv.reservation_id, lv.quantity, 0, 0, 0
      FROM lv JOIN ship ON ship.order_id = lv.order_id AND ship.location_id = lv.location_id
     ORDER BY lv.n
    RETURNING id
), lines AS (
    UPDATE {order_line} SET status = %(allocated)s
     WHERE id = ANY(%(routed_line_ids)s::bigint[]) AND status <> %(cancelled)s
    RETURNING id
), ev AS (
    INSERT INTO {event} (order_id, kind, from_status, to_status, actor_user_id, actor, reason, data, created_at)
    SELECT dec.order_id, 'routed', '', '', %(user_id)s, %(actor)s, '',
           jsonb_build_object('decision_id', dec.id) || dv.event_data, now()
      FROM dec JOIN dv ON dv.order_id = dec.order_id
     ORDER BY dv.n
    RETURNING id
)
SELECT dec.order_id, dec.id, ship.id, ship.location_id, (SELECT count(*) FROM sl), (SELECT count(*) FROM ev)
  FROM dec JOIN ship ON ship.order_id = dec.order_id
"""


@dataclass
class _Planned:
    fresh: OrderToRoute
    plan: routing.RoutingPlan
    duration_ms: float

    @property
    def order_id(self) -> int:
        return self.fresh.route.order_id


def _plan_whole(fresh: OrderToRoute | None, network: NetworkSnapshot, now: datetime, started: float) -> _Planned | None:
    """The plan of an open, unheld, seller-fulfilled order that routes whole to distinct nodes, or None."""
    if (
        fresh is None
        or fresh.marketplace_fulfilled
        or fresh.on_hold
        or not fresh.ship_to_usable
        or fresh.status != OrderStatus.OPEN
        or fresh.has_routing_case
        or not fresh.route.lines
        or any(line["status"] == LineStatus.ALLOCATED for line in fresh.lines.values())
    ):
        return None
    missing = sorted({line.sku_id for line in fresh.route.lines} - {sku for _, sku in network.atp})
    if missing:
        network.atp.update(atp_for(sku_ids=missing, location_ids=list(network.nodes)))
    route_order = fresh.route
    plan = routing.plan_order(
        order=route_order,
        nodes=network.nodes_for(route_order.account_id),
        atp=network.atp,
        rules=network.rules,
        now=now,
    )
    if not plan.shipments or plan.unrouted or len({s.location_id for s in plan.shipments}) != len(plan.shipments):
        return None
    return _Planned(fresh=fresh, plan=plan, duration_ms=round((time.perf_counter() - started) * 1000, 3))


def _write_routed(
    planned: list[_Planned], *, network: NetworkSnapshot, actor: Actor, now: datetime
) -> dict[int, RouteResult]:
    """Route and reserve the planned orders in the caller's transaction, in four statements whatever their
    number: one all-or-nothing reservation statement, one capacity statement (which also tries each
    order's advisory lock), one guarded transition open → allocated → released with its events, and one
    statement writing the RoutingDecisions, Shipments, ShipmentLines, line statuses and "routed" events.
    Raises _FastPathMiss after a write when a race makes any order fall short: the caller rolls back.
    The caller counts the plans against the snapshot."""
    name, user = actor_resolve(actor)
    rules = network.rules
    order_ids = [p.order_id for p in planned]
    try:
        reservations = stock_reserve_order(demands=[d for p in planned for d in _demands(p.plan)], actor=actor)
    except InsufficientStock:
        # Nothing was reserved (the statement is all or nothing). Re-read these orders' ATP before the
        # general path plans again.
        skus = sorted({line.sku_id for p in planned for line in p.fresh.route.lines})
        network.atp.update(atp_for(sku_ids=skus, location_ids=list(network.nodes)))
        raise _FastPathMiss from None
    takes = [
        (s.location_id, s.ship_day, network.nodes[s.location_id].daily_capacity)
        for p in planned
        for s in p.plan.shipments
    ]
    if not capacity_take_many(takes=takes, lock_namespace=_ADVISORY_NAMESPACE, lock_keys=order_ids):
        raise _FastPathMiss
    moved = order_services.orders_transition_path(
        order_ids=order_ids,
        path=[OrderStatus.OPEN, OrderStatus.ALLOCATED, OrderStatus.RELEASED],
        actor=actor,
        reason=["order routing", "released to node"],
    )
    if moved != set(order_ids):
        raise _FastPathMiss  # another router or a person changed an order since the re-read
    by_pair = {(r.order_line_id, r.location_id): r.pk for r in reservations}
    shipments = [(p, s) for p in planned for s in p.plan.shipments]
    planned_lines = [(p, s.location_id, line) for p, s in shipments for line in s.lines]
    outcomes = [_outcome(p.plan, [], []) for p in planned]
    params = {
        "actor": name,
        "user_id": user.pk if user is not None else None,
        "strategy": "fewest-shipments",
        "config_version": rules.version,
        "released": ShipmentStatus.RELEASED,
        "now": now,
        "allocated": LineStatus.ALLOCATED,
        "cancelled": LineStatus.CANCELLED,
        "decisions": Jsonb(
            [
                {
                    "order_id": p.order_id,
                    "plan": p.plan.as_json(),
                    "candidates": p.plan.candidates,
                    "outcome": outcome,
                    "explanation": p.plan.explanation,
                    "duration_ms": p.duration_ms,
                    "event_data": {
                        "outcome": outcome,
                        "config_version": rules.version,
                        "shipments": [
                            {"node": s.code, "lines": [[pl.line_id, pl.quantity] for pl in s.lines]}
                            for s in p.plan.shipments
                        ],
                        "unrouted": [],
                    },
                }
                for p, outcome in zip(planned, outcomes, strict=True)
            ]
        ),
        "s_order_ids": [p.order_id for p, _ in shipments],
        "s_location_ids": [s.location_id for _, s in shipments],
        "s_kinds": [s.kind for _, s in shipments],
        "s_days": [s.ship_day for _, s in shipments],
        "s_service_levels": [p.fresh.shipping_method[:64] for p, _ in shipments],
        "s_promised": [p.fresh.deliver_by for p, _ in shipments],
        "s_ship_by": [p.fresh.ship_by for p, _ in shipments],
        "l_order_ids": [p.order_id for p, _, _ in planned_lines],
        "l_location_ids": [location_id for _, location_id, _ in planned_lines],
        "l_line_ids": [line.line_id for _, _, line in planned_lines],
        "l_reservation_ids": [by_pair.get((line.line_id, location_id)) for _, location_id, line in planned_lines],
        "l_quantities": [line.quantity for _, _, line in planned_lines],
        "routed_line_ids": sorted({line.line_id for _, _, line in planned_lines}),
    }
    with connection.cursor() as cursor:
        cursor.execute(_fast_write_sql(), params)
        rows = cursor.fetchall()
    if len(rows) != len(shipments) or rows[0][4] != len(planned_lines) or rows[0][5] != len(planned):
        raise RuntimeError(f"orders {order_ids}: the routing write returned {rows!r}")  # rolls them back
    decision_of = {order_id: decision_id for order_id, decision_id, *_ in rows}
    shipment_of = {(order_id, location_id): shipment_id for order_id, _, shipment_id, location_id, *_ in rows}
    return {
        p.order_id: RouteResult(
            order_id=p.order_id,
            outcome=outcome,
            decision_id=decision_of[p.order_id],
            shipment_ids=[shipment_of[(p.order_id, s.location_id)] for s in p.plan.shipments],
        )
        for p, outcome in zip(planned, outcomes, strict=True)
    }


def _route_fast(*, order_id: int, network: NetworkSnapshot, actor: Actor, now: datetime | None) -> RouteResult | None:
    """One order on the normal path: the re-read, then _write_routed's four statements.

    Returns None, having written nothing, when the order is not of that shape (the general path then
    runs in the same transaction). Raises _FastPathMiss after a write when a race makes it fall short.

    Two routers can't both route one order: the order's guarded ``UPDATE … WHERE status = 'open'`` lets
    one through (the other rolls back), and the advisory lock tried in the capacity statement sends this
    path back to the general one whenever a general-path router holds the order.
    """
    started = time.perf_counter()
    now = now or timezone.now()
    actor_resolve(actor)
    planned = _plan_whole(orders_to_route([order_id]).get(order_id), network, now, started)
    if planned is None:
        return None
    result = _write_routed([planned], network=network, actor=actor, now=now)[order_id]
    network.take_plan(planned.plan)
    return result


def _route_batch(
    *,
    order_ids: list[int],
    network: NetworkSnapshot,
    actor: Actor,
    now: datetime | None,
    fresh: dict[int, OrderToRoute] | None = None,
) -> dict[int, RouteResult]:
    """Several orders on the normal path in ONE transaction and five statements in all: one re-read of
    every order, then _write_routed. Returns the results of the orders routed; the others (not of the
    normal shape) are left for the caller. Each order is planned on what the orders before it leave.
    Raises _FastPathMiss (the caller's transaction rolls back, nothing kept) when a race makes any order
    fall short.

    ``fresh``: the orders as read a moment ago (for the snapshot), instead of reading them again. The
    writes guard what a stale read could get wrong either way: the transition only moves orders still
    open, the reservation statement checks every line and row."""
    now = now or timezone.now()
    actor_resolve(actor)
    if fresh is None:
        fresh = orders_to_route(order_ids)
    planned: list[_Planned] = []
    try:
        for order_id in order_ids:
            item = _plan_whole(fresh.get(order_id), network, now, time.perf_counter())
            if item is not None:
                planned.append(item)
                network.take_plan(item.plan)  # the next order is planned on what this one leaves
        return _write_routed(planned, network=network, actor=actor, now=now) if planned else {}
    except BaseException:
        for item in planned:
            network.take_plan(item.plan, sign=-1)  # rolled back: the units are free again
        raise


@cache
def _fast_write_sql() -> str:
    return _FAST_WRITE_SQL.format(
        decision=RoutingDecision._meta.db_table,
        shipment=Shipment._meta.db_table,
        shipment_line=ShipmentLine._meta.db_table,
        order_line=OrderLine._meta.db_table,
        event=OrderEvent._meta.db_table,
    )


def _shipment_summary(shipment: Shipment) -> dict:
    return {
        "shipment_id": shipment.pk,
        "node": shipment.location.code,
        "status": shipment.status,
        "lines": [{"order_line": line.order_line_id, "quantity": line.quantity} for line in shipment.lines.all()],
    }


def _advisory_lock(order_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_ADVISORY_NAMESPACE, order_id])


def _route_locked(
    *,
    order_id: int,
    network: NetworkSnapshot,
    actor: Actor,
    now: datetime | None,
    locked: bool = False,
    strategy: str = "fewest-shipments",
    excluded_locations: Iterable[int] = (),
) -> RouteResult:
    """Route one order inside the caller's transaction."""
    started = time.perf_counter()
    now = now or timezone.now()
    name, _ = actor_resolve(actor)
    if not locked:
        _advisory_lock(order_id)
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

    released = _release_unreleased(order_id=order_id, fresh=fresh, network=network, actor=actor, now=now)
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
                reservations = stock_reserve(lines=_demands(plan), actor=actor)
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

    backordered, exceptions = _unrouted_outcome(fresh, plan, actor=actor)
    outcome = _outcome(plan, backordered, exceptions)
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
    shipment_ids = _shipments_create(order=fresh, plan=plan, reservations=reservations, decision=decision, now=now)
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
        order=_order_ref(order_id),
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


def _order_ref(order_id: int) -> Order:
    # The event only needs the key: no need to read the row again.
    return Order(pk=order_id)


def _all_unrouted(order: routing.RouteOrder, detail: str) -> list[routing.UnroutedLine]:
    return [
        routing.UnroutedLine(
            line.line_id, line.sku_id, line.sku_code, line.quantity, routing.INSUFFICIENT_STOCK, detail
        )
        for line in order.lines
    ]


def _demands(plan: routing.RoutingPlan) -> list[LineDemand]:
    sku_of = {line.line_id: line.sku_id for s in plan.shipments for line in s.lines}
    return [
        LineDemand(order_line_id=line_id, sku_id=sku_of[line_id], quantities=quantities)
        for line_id, quantities in sorted(plan.allocations().items())
    ]


def _unrouted_outcome(fresh: OrderToRoute, plan: routing.RoutingPlan, *, actor: Actor) -> tuple[list[int], list[int]]:
    """Backorder what may wait for stock; open one exception case per reason for the rest."""
    backordered: list[int] = []
    by_kind: dict[str, list[routing.UnroutedLine]] = defaultdict(list)
    # Held until commit: two routers never promise the same last incoming units of a preorder SKU.
    preorder_promise_lock(sku_ids=[u.sku_id for u in plan.unrouted if fresh.lines[u.line_id]["is_preorder"]])
    for unrouted in plan.unrouted:
        line = fresh.lines[unrouted.line_id]
        if unrouted.reason in (routing.INSUFFICIENT_STOCK, routing.ORDER_INCOMPLETE) and _may_backorder(
            line, need=unrouted.quantity, account_id=fresh.route.account_id
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


def _may_backorder(line: dict, *, need: int, account_id: int) -> bool:
    if line["allow_backorder"]:
        return True
    if line["is_preorder"]:
        return preorder_promisable(sku_id=line["sku_id"], account_id=account_id) >= need
    return False


def _outcome(plan: routing.RoutingPlan, backordered: list[int], exceptions: list[int]) -> str:
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


def _shipments_create(*, order: OrderToRoute, plan: routing.RoutingPlan, reservations, decision, now) -> list[int]:
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


def _release_unreleased(*, order_id: int, fresh: OrderToRoute, network: NetworkSnapshot, actor, now) -> list[int]:
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
                kind=routing._shipment_kind(node, fresh.route.service_level),
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
    return _shipments_create(order=fresh, plan=plan, reservations=reservations, decision=decision, now=now)


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
