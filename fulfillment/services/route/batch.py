"""The normal path: open, unheld orders decided together, in five statements for a whole batch of orders that
route whole, or for one: the re-read, one all-or-nothing reservation statement (stock_reserve_order), one
guarded capacity statement for every node and day in the plans (which also tries each order's advisory lock
without waiting), the guarded order transition open → allocated → released with its events
(orders_transition_path), and one statement writing the RoutingDecisions, Shipments, ShipmentLines, line
statuses and "routed" events. Orders that backorder, open exception cases or route in part are decided in
the same transaction as the general path decides them, with at most two statements more for the batch: the
guarded open → backordered transition, and the cases with their events (exception_cases_open_new).
A race rolls it back (FastPathMiss) and the general path decides.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

from django.db import connection
from django.utils import timezone
from psycopg.types.json import Jsonb

from config.kernel.actors import Actor, actor_resolve
from fulfillment import routing
from fulfillment.models import RoutingDecision, Shipment, ShipmentLine, ShipmentStatus
from fulfillment.selectors import NetworkSnapshot, OrderToRoute, atp_for, orders_to_route
from fulfillment.services.common import capacity_take_many
from fulfillment.services.route.common import ADVISORY_NAMESPACE, RouteResult, plan_demands, plan_outcome
from fulfillment.services.route.general import EXCEPTION_FOR_REASON, EXCEPTION_TITLE
from inventory.errors import InsufficientStock
from inventory.services import stock_reserve_order
from orders import services as order_services
from orders.models import LineStatus, Order, OrderEvent, OrderLine, OrderStatus, Severity


class FastPathMiss(Exception):
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
     -- An order no transition moved (nothing shipped, nothing backordered: its lines open exception
     -- cases) must still be open and unheld; the count below sends the batch back otherwise.
     WHERE NOT ((e.d->>'order_id')::bigint = ANY(%(unmoved_ids)s::bigint[]))
        OR EXISTS (SELECT 1 FROM {order} o WHERE o.id = (e.d->>'order_id')::bigint
                                              AND o.status = %(open)s AND NOT o.on_hold)
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
    -- A line cancelled since the orders were read (fully or in part) no longer has the units the plan
    -- reserved: it is left alone, and the count below sends the batch back (FastPathMiss).
    UPDATE {order_line} ol SET status = %(allocated)s
     WHERE ol.id = ANY(%(routed_line_ids)s::bigint[]) AND ol.status <> %(cancelled)s
       AND ol.quantity - ol.quantity_cancelled - ol.quantity_shipped
           >= (SELECT sum(lv.quantity) FROM lv WHERE lv.order_line_id = ol.id)
    RETURNING ol.id
), bo AS (
    UPDATE {order_line} ol SET status = %(backordered)s
     WHERE ol.id = ANY(%(backordered_line_ids)s::bigint[]) AND ol.status <> %(cancelled)s
    RETURNING ol.id
), ev AS (
    INSERT INTO {event} (order_id, kind, from_status, to_status, actor_user_id, actor, reason, data, created_at)
    SELECT dec.order_id, 'routed', '', '', %(user_id)s, %(actor)s, '',
           jsonb_build_object('decision_id', dec.id) || dv.event_data, now()
      FROM dec JOIN dv ON dv.order_id = dec.order_id
     ORDER BY dv.n
    RETURNING id
)
SELECT dec.order_id, dec.id, ship.id, ship.location_id, (SELECT count(*) FROM sl), (SELECT count(*) FROM ev),
       (SELECT count(*) FROM lines), (SELECT count(*) FROM bo)
  FROM dec LEFT JOIN ship ON ship.order_id = dec.order_id
"""


@dataclass
class _Planned:
    fresh: OrderToRoute
    plan: routing.RoutingPlan
    duration_ms: float
    # Lines the plan leaves unrouted: backordered ones, and the exception cases the others open, by kind.
    backordered: list[int] = field(default_factory=list)
    cases: list[tuple[str, list[routing.UnroutedLine]]] = field(default_factory=list)

    @property
    def order_id(self) -> int:
        return self.fresh.route.order_id

    @property
    def outcome(self) -> str:
        return plan_outcome(self.plan, self.backordered, [kind for kind, _ in self.cases])


def _unrouted_split(
    fresh: OrderToRoute, plan: routing.RoutingPlan
) -> tuple[list[int], list[tuple[str, list[routing.UnroutedLine]]]] | None:
    """The general path's outcome of the plan's unrouted lines, decided on the order as read: backordered
    lines, and one exception case per kind for the others. None when deciding needs the general path (a
    preorder line, whose promise is read and locked there, or a reason it alone knows)."""
    backordered: list[int] = []
    by_kind: dict[str, list[routing.UnroutedLine]] = defaultdict(list)
    for unrouted in plan.unrouted:
        line = fresh.lines[unrouted.line_id]
        if line["is_preorder"]:
            return None
        if unrouted.reason in (routing.INSUFFICIENT_STOCK, routing.ORDER_INCOMPLETE) and line["allow_backorder"]:
            backordered.append(unrouted.line_id)
        elif unrouted.reason == routing.ORDER_INCOMPLETE:
            continue  # waits for the other lines, as on the general path
        elif unrouted.reason in EXCEPTION_FOR_REASON:
            by_kind[EXCEPTION_FOR_REASON[unrouted.reason]].append(unrouted)
        else:
            return None
    return backordered, sorted(by_kind.items())


def _plan_whole(
    fresh: OrderToRoute | None, network: NetworkSnapshot, now: datetime, started: float, known_skus: set[int]
) -> _Planned | None:
    """The plan of an open, unheld, seller-fulfilled order with its outcome decided in the batch: routed
    (whole or in part, to distinct nodes), backordered or left with exception cases; or None (the general
    path decides). ``known_skus``: the SKUs whose ATP the snapshot holds (kept up to date here)."""
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
    route_order = fresh.route
    missing = sorted({line.sku_id for line in route_order.lines} - known_skus)
    if missing:
        network.atp.update(atp_for(sku_ids=missing, location_ids=list(network.nodes)))
        known_skus.update(missing)
        network.atp_skus.update(missing)
    plan = routing.plan_order(
        order=route_order,
        nodes=network.nodes_for(route_order.account_id),
        atp=network.atp,
        rules=network.rules,
        now=now,
    )
    if len({s.location_id for s in plan.shipments}) != len(plan.shipments):
        return None
    backordered: list[int] = []
    cases: list[tuple[str, list[routing.UnroutedLine]]] = []
    if plan.unrouted:
        split = _unrouted_split(fresh, plan)
        if split is None:
            return None
        backordered, cases = split
    if not plan.shipments and not backordered and not cases:
        return None
    return _Planned(
        fresh=fresh,
        plan=plan,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        backordered=backordered,
        cases=cases,
    )


def _locks_try(order_ids: list[int]) -> bool:
    """Try every order's advisory lock without waiting (the capacity statement does it when it has days)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT bool_and(pg_try_advisory_xact_lock(%s, k)) FROM unnest(%s::integer[]) AS k",
            [ADVISORY_NAMESPACE, sorted(order_ids)],
        )
        return bool(cursor.fetchone()[0])


def _write_routed(
    planned: list[_Planned], *, network: NetworkSnapshot, actor: Actor, now: datetime
) -> dict[int, RouteResult]:
    """Route and reserve the planned orders in the caller's transaction, in a constant number of statements
    whatever their number: one all-or-nothing reservation statement, one capacity statement (which also
    tries each order's advisory lock), one guarded transition open → allocated → released with its
    events, and one statement writing the RoutingDecisions, Shipments, ShipmentLines, line statuses and
    "routed" events; when some orders backorder or open exception cases, one more guarded transition
    open → backordered and one statement opening the cases with their events.
    Raises FastPathMiss after a write when a race makes any order fall short: the caller rolls back.
    The caller counts the plans against the snapshot."""
    name, user = actor_resolve(actor)
    rules = network.rules
    order_ids = [p.order_id for p in planned]
    shipping = [p for p in planned if p.plan.shipments]
    backordering = [p.order_id for p in planned if not p.plan.shipments and p.backordered]
    unmoved = [p.order_id for p in planned if not p.plan.shipments and not p.backordered]
    reservations = []
    if shipping:
        try:
            reservations = stock_reserve_order(demands=[d for p in shipping for d in plan_demands(p.plan)], actor=actor)
        except InsufficientStock:
            # Nothing was reserved (the statement is all or nothing). Re-read these orders' ATP before the
            # general path plans again.
            skus = sorted({line.sku_id for p in planned for line in p.fresh.route.lines})
            network.atp.update(atp_for(sku_ids=skus, location_ids=list(network.nodes)))
            raise FastPathMiss from None
    takes = [
        (s.location_id, s.ship_day, network.nodes[s.location_id].daily_capacity)
        for p in shipping
        for s in p.plan.shipments
    ]
    if takes:
        if not capacity_take_many(takes=takes, lock_namespace=ADVISORY_NAMESPACE, lock_keys=order_ids):
            raise FastPathMiss
    elif not _locks_try(order_ids):
        raise FastPathMiss
    moved: set[int] = set()
    if shipping:
        moved = order_services.orders_transition_path(
            order_ids=[p.order_id for p in shipping],
            path=[OrderStatus.OPEN, OrderStatus.ALLOCATED, OrderStatus.RELEASED],
            actor=actor,
            reason=["order routing", "released to node"],
        )
    if backordering:
        moved |= order_services.orders_transition_path(
            order_ids=backordering,
            path=[OrderStatus.OPEN, OrderStatus.BACKORDERED],
            actor=actor,
            reason="no stock to route",
        )
    if moved != set(order_ids) - set(unmoved):
        raise FastPathMiss  # another router or a person changed an order since the re-read
    by_pair = {(r.order_line_id, r.location_id): r.pk for r in reservations}
    shipments = [(p, s) for p in shipping for s in p.plan.shipments]
    planned_lines = [(p, s.location_id, line) for p, s in shipments for line in s.lines]
    outcomes = [p.outcome for p in planned]
    backordered_line_ids = sorted({line_id for p in planned for line_id in p.backordered})
    params = {
        "actor": name,
        "user_id": user.pk if user is not None else None,
        "strategy": "fewest-shipments",
        "config_version": rules.version,
        "released": ShipmentStatus.RELEASED,
        "now": now,
        "open": OrderStatus.OPEN,
        "allocated": LineStatus.ALLOCATED,
        "backordered": LineStatus.BACKORDERED,
        "cancelled": LineStatus.CANCELLED,
        "unmoved_ids": unmoved,
        "backordered_line_ids": backordered_line_ids,
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
                        "unrouted": [{"order_line": u.line_id, "reason": u.reason} for u in p.plan.unrouted],
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
    if not rows or rows[0][5] != len(planned):
        raise FastPathMiss  # an order left open changed (held, routed elsewhere) since the re-read
    if (
        sum(1 for row in rows if row[2] is not None) != len(shipments)
        or len({row[0] for row in rows}) != len(planned)
        or rows[0][4] != len(planned_lines)
    ):
        raise RuntimeError(f"orders {order_ids}: the routing write returned {rows!r}")  # rolls them back
    if rows[0][6] != len(params["routed_line_ids"]) or rows[0][7] != len(backordered_line_ids):
        # A planned line was cancelled (fully or in part) after the orders were read: the plan reserved and
        # shipped units that are no longer wanted. The caller rolls back and plans again on what is left.
        raise FastPathMiss
    case_ids = _cases_open(planned, actor=actor)
    decision_of = {order_id: decision_id for order_id, decision_id, *_ in rows}
    shipment_of = {
        (order_id, location_id): shipment_id
        for order_id, _, shipment_id, location_id, *_ in rows
        if shipment_id is not None
    }
    return {
        p.order_id: RouteResult(
            order_id=p.order_id,
            outcome=outcome,
            decision_id=decision_of[p.order_id],
            shipment_ids=[shipment_of[(p.order_id, s.location_id)] for s in p.plan.shipments],
            backordered_line_ids=list(p.backordered),
            exception_case_ids=[case_ids[(p.order_id, kind)] for kind, _ in p.cases],
        )
        for p, outcome in zip(planned, outcomes, strict=True)
    }


def _cases_open(planned: list[_Planned], *, actor: Actor) -> dict[tuple[int, str], int]:
    """The exception cases of the batch's unrouted lines, as the general path opens them, in one statement."""
    cases = [
        order_services.CaseToOpen(
            order_id=p.order_id,
            kind=kind,
            title=EXCEPTION_TITLE[kind].format(order=p.fresh.external_id),
            detail="\n".join(f"{u.sku_code} x{u.quantity}: {u.detail}" for u in items),
            severity=Severity.HIGH,
            due_at=p.fresh.ship_by,
            sku_id=items[0].sku_id if len(items) == 1 else None,
        )
        for p in planned
        for kind, items in p.cases
    ]
    if not cases:
        return {}
    opened = order_services.exception_cases_open_new(cases=cases, actor=actor)
    if opened is None:
        raise FastPathMiss  # a case with the same key appeared since the re-read: the general path decides
    return opened


def route_fast(*, order_id: int, network: NetworkSnapshot, actor: Actor, now: datetime | None) -> RouteResult | None:
    """One order on the normal path: the re-read, then _write_routed's four statements.

    Returns None, having written nothing, when the order is not of that shape (the general path then
    runs in the same transaction). Raises FastPathMiss after a write when a race makes it fall short.

    Two routers can't both route one order: the order's guarded ``UPDATE … WHERE status = 'open'`` lets
    one through (the other rolls back), and the advisory lock tried in the capacity statement sends this
    path back to the general one whenever a general-path router holds the order.
    """
    started = time.perf_counter()
    now = now or timezone.now()
    actor_resolve(actor)
    known_skus = network.atp_skus | {sku for _, sku in network.atp}
    planned = _plan_whole(orders_to_route([order_id]).get(order_id), network, now, started, known_skus)
    if planned is None:
        return None
    result = _write_routed([planned], network=network, actor=actor, now=now)[order_id]
    network.take_plan(planned.plan)
    return result


def route_batch(
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
    Raises FastPathMiss (the caller's transaction rolls back, nothing kept) when a race makes any order
    fall short.

    ``fresh``: the orders as read a moment ago (for the snapshot), instead of reading them again. The
    writes guard what a stale read could get wrong either way: the transition only moves orders still
    open, the reservation statement checks every line and row."""
    now = now or timezone.now()
    actor_resolve(actor)
    if fresh is None:
        fresh = orders_to_route(order_ids)
    planned: list[_Planned] = []
    known_skus = network.atp_skus | {sku for _, sku in network.atp}
    # SKUs the snapshot has no stock row of (stocked nowhere, or new since): one query for the batch, not
    # one per order that holds them.
    unknown = sorted({line.sku_id for o in fresh.values() for line in o.route.lines} - known_skus)
    if unknown:
        network.atp.update(atp_for(sku_ids=unknown, location_ids=list(network.nodes)))
        known_skus.update(unknown)
        network.atp_skus.update(unknown)
    try:
        for order_id in order_ids:
            item = _plan_whole(fresh.get(order_id), network, now, time.perf_counter(), known_skus)
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
        order=Order._meta.db_table,
    )
