"""The order-routing core: choose the fulfilment node(s) for one order. Pure: dataclasses in, a plan out,
no database, no clock (``now`` is an input), so every rule is testable on its own.

Order routing here means choosing nodes (sourcing); it never plans vehicle routes.

Hard constraints, per node: active; eligible for the order's channel account; not blocked by a channel
policy; able to serve the service level (ship, store pickup, ship-from-store); capacity left on the
day it would ship; able to meet the ship-by given its cutoff time and timezone (unless the rules
allow late routing); ATP for what it is given.
Objective, in order: fewest shipments, then the configured tie-breakers (default: on time, distance to
the ship-to, node cost, node priority), then the node code so every decision is deterministic.
An order is split only when no single node can ship everything, and never into more than
``max_shipments`` shipments.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from fulfillment.geo import Point, distance_km

SHIP, PICKUP, SHIP_FROM_STORE = "ship", "pickup", "ship_from_store"

# Why lines could not be routed; the service turns each into a backorder or an exception case.
INSUFFICIENT_STOCK = "insufficient_stock"
NO_NODE = "no_node"
OVER_CAPACITY = "over_capacity"
SHIP_BY_UNREACHABLE = "ship_by_unreachable"
TOO_MANY_SHIPMENTS = "too_many_shipments"
ORDER_INCOMPLETE = "ships_complete"

# Combination search keeps to the best few nodes so a network of hundreds of stores stays fast.
SEARCH_WIDTH = {2: 30, 3: 14, 4: 9}
DEFAULT_SEARCH_WIDTH = 7


@dataclass(frozen=True)
class RouteLine:
    line_id: int
    sku_id: int
    sku_code: str
    quantity: int  # units still to route


@dataclass(frozen=True)
class RouteOrder:
    order_id: int
    account_id: int
    channel_kind: str
    service_level: str
    ship_by: datetime | None
    ship_to: Point | None
    lines: tuple[RouteLine, ...]
    # Store pickup: the store the buyer chose (None with a ref: the channel's store is not mapped yet).
    pickup_location_id: int | None = None
    pickup_location_ref: str = ""


@dataclass(frozen=True)
class RouteNode:
    location_id: int
    code: str
    kind: str  # warehouse, store, threepl
    is_active: bool = True
    eligible: bool = True  # the channel account may ship from it
    can_ship: bool = True
    can_pickup: bool = False
    ships_from_store: bool = False
    timezone: str = "UTC"
    cutoff: time | None = None
    daily_capacity: int | None = None
    capacity_used: Mapping[date, int] = field(default_factory=dict)
    ship_days: frozenset[int] = frozenset(range(7))  # weekdays it ships, 0 = Monday
    closed_on: frozenset[date] = frozenset()  # holidays and other closures
    cost: Decimal = Decimal("0")
    priority: int = 0
    point: Point | None = None


@dataclass(frozen=True)
class RouteRules:
    version: str = "default@1"
    max_shipments: int = 3
    allow_line_split: bool = True
    ship_partial: bool = True
    allow_late: bool = False
    tie_breakers: tuple[str, ...] = ("on_time", "distance", "cost", "priority")
    distance_band_km: int = 0
    # location_id -> channel kinds / account ids that may not use it
    blocked_kinds: Mapping[int, frozenset[str]] = field(default_factory=dict)
    blocked_accounts: Mapping[int, frozenset[int]] = field(default_factory=dict)
    excluded_locations: frozenset[int] = frozenset()  # e.g. the node that just short-picked
    forced_location: int | None = None  # a manual reroute to one node


@dataclass(frozen=True)
class PlannedLine:
    line_id: int
    sku_id: int
    quantity: int


@dataclass
class PlannedShipment:
    location_id: int
    code: str
    kind: str  # ship, pickup, ship_from_store (fulfillment.models.ShipmentKind values)
    ship_day: date
    ships_at: datetime
    on_time: bool
    distance_km: float | None
    lines: list[PlannedLine] = field(default_factory=list)

    @property
    def units(self) -> int:
        return sum(line.quantity for line in self.lines)


@dataclass(frozen=True)
class UnroutedLine:
    line_id: int
    sku_id: int
    sku_code: str
    quantity: int
    reason: str  # one of the constants above
    detail: str


@dataclass
class RoutingPlan:
    shipments: list[PlannedShipment]
    unrouted: list[UnroutedLine]
    candidates: list[dict]
    explanation: str
    rules_version: str

    def allocations(self) -> dict[int, dict[int, int]]:
        """{order_line_id: {location_id: units}}"""
        out: dict[int, dict[int, int]] = defaultdict(dict)
        for shipment in self.shipments:
            for line in shipment.lines:
                out[line.line_id][shipment.location_id] = out[line.line_id].get(shipment.location_id, 0) + line.quantity
        return dict(out)

    def as_json(self) -> dict[str, list[dict]]:
        return {
            s.code: [{"order_line": line.line_id, "sku_id": line.sku_id, "quantity": line.quantity} for line in s.lines]
            for s in self.shipments
        }


# --- per-node evaluation ---------------------------------------------------------------------------


@dataclass
class _Node:
    node: RouteNode
    ship_day: date
    ships_at: datetime
    on_time: bool
    distance: float | None
    capacity_left: int | None
    covers: dict[int, int]  # sku_id -> units it can give this order
    covers_units: int
    covers_all: bool
    rejected: str = ""
    rejected_code: str = ""


# A node closed for longer than this is treated as not shipping at all.
MAX_CLOSED_DAYS = 31


def ships_on(node: RouteNode, day: date) -> bool:
    return day.weekday() in node.ship_days and day not in node.closed_on


def ship_moment(node: RouteNode, now: datetime) -> tuple[date, datetime]:
    """(local ship day, the moment it ships): today at the cutoff if before it, else the next day at the
    cutoff; a day the node does not ship (a weekday it is closed, a holiday) moves to its next ship day.
    Without a cutoff a node ships by the end of its local day. A node with no ship day in the next
    MAX_CLOSED_DAYS days gets the day after them (the caller checks ``ships_on``)."""
    tz = ZoneInfo(node.timezone or "UTC")
    local = now.astimezone(tz)
    at = time(23, 59, 59) if node.cutoff is None else node.cutoff
    day = local.date() if node.cutoff is None or local.time() < node.cutoff else local.date() + timedelta(days=1)
    for _ in range(MAX_CLOSED_DAYS):
        if ships_on(node, day):
            break
        day += timedelta(days=1)
    return day, datetime.combine(day, at, tzinfo=tz)


@lru_cache(maxsize=4096)
def _ship_moment_of(timezone: str, cutoff, ship_days: frozenset, closed_on: frozenset, now: datetime):
    """ship_moment by the node's calendar: the same for every order a batch plans at one ``now``."""
    return ship_moment(
        RouteNode(
            location_id=0,
            code="",
            kind="warehouse",
            timezone=timezone,
            cutoff=cutoff,
            ship_days=ship_days,
            closed_on=closed_on,
        ),
        now,
    )


def _service_ok(node: RouteNode, service_level: str) -> bool:
    if service_level == PICKUP:
        return node.can_pickup
    if service_level == SHIP_FROM_STORE:
        return node.kind == "store" and node.ships_from_store and node.can_ship
    return node.can_ship and (node.kind != "store" or node.ships_from_store)


def _not_the_chosen_store(order: RouteOrder, node: RouteNode) -> str:
    """A pickup goes only to the store the buyer chose (a manual reroute may move it: the buyer agreed)."""
    if order.service_level != PICKUP or (order.pickup_location_id is None and not order.pickup_location_ref):
        return ""
    if order.pickup_location_id is None:
        return f"the buyer's pickup store {order.pickup_location_ref} is not mapped to a Waybill location"
    if node.location_id != order.pickup_location_id:
        return "not the pickup store the buyer chose"
    return ""


def shipment_kind(node: RouteNode, service_level: str) -> str:
    if service_level == PICKUP:
        return PICKUP
    return SHIP_FROM_STORE if node.kind == "store" else SHIP


def _evaluate(
    order: RouteOrder,
    node: RouteNode,
    atp: Mapping[tuple[int, int], int],
    rules: RouteRules,
    now,
    need: dict[int, int] | None = None,
):
    need = _need(order.lines) if need is None else need
    ship_day, ships_at = _ship_moment_of(node.timezone, node.cutoff, node.ship_days, node.closed_on, now)
    used = node.capacity_used.get(ship_day, 0)
    capacity_left = None if node.daily_capacity is None else max(node.daily_capacity - used, 0)
    covers = {sku: min(max(atp.get((node.location_id, sku), 0), 0), units) for sku, units in need.items()}
    covers_units = sum(covers.values())
    ev = _Node(
        node=node,
        ship_day=ship_day,
        ships_at=ships_at,
        on_time=order.ship_by is None or ships_at <= order.ship_by,
        distance=distance_km(node.point, order.ship_to),
        capacity_left=capacity_left,
        covers=covers,
        covers_units=covers_units,
        covers_all=all(covers[sku] >= units for sku, units in need.items()),
    )
    if not node.is_active:
        ev.rejected, ev.rejected_code = "inactive", NO_NODE
    elif not ships_on(node, ship_day):
        ev.rejected, ev.rejected_code = f"closed: no ship day in the next {MAX_CLOSED_DAYS} days", NO_NODE
    elif rules.forced_location is not None and node.location_id != rules.forced_location:
        ev.rejected, ev.rejected_code = "not the node forced by a manual reroute", NO_NODE
    elif rules.forced_location is None and (rejected := _not_the_chosen_store(order, node)):
        ev.rejected, ev.rejected_code = rejected, NO_NODE
    elif not node.eligible:
        ev.rejected, ev.rejected_code = "not an eligible node for this channel account", NO_NODE
    elif order.channel_kind in rules.blocked_kinds.get(node.location_id, ()):
        ev.rejected, ev.rejected_code = f"channel policy: {order.channel_kind} orders may not use it", NO_NODE
    elif order.account_id in rules.blocked_accounts.get(node.location_id, ()):
        ev.rejected, ev.rejected_code = "channel policy: this account may not use it", NO_NODE
    elif node.location_id in rules.excluded_locations:
        ev.rejected, ev.rejected_code = "excluded for this re-route (it came up short)", NO_NODE
    elif not _service_ok(node, order.service_level):
        ev.rejected, ev.rejected_code = f"cannot serve {order.service_level.replace('_', ' ')}", NO_NODE
    elif capacity_left is not None and capacity_left < 1:
        ev.rejected = f"at capacity on {ship_day:%Y-%m-%d} ({used} of {node.daily_capacity} used)"
        ev.rejected_code = OVER_CAPACITY
    elif not ev.on_time and not rules.allow_late:
        ev.rejected = (
            f"cannot meet the ship-by: ships {ships_at:%Y-%m-%d %H:%M %Z} (cutoff), "
            f"ship-by {order.ship_by.astimezone(ships_at.tzinfo):%Y-%m-%d %H:%M %Z}"
        )
        ev.rejected_code = SHIP_BY_UNREACHABLE
    elif covers_units == 0:
        ev.rejected, ev.rejected_code = "no stock for this order's lines", INSUFFICIENT_STOCK
    return ev


def _need(lines: Sequence[RouteLine]) -> dict[int, int]:
    need: dict[int, int] = defaultdict(int)
    for line in lines:
        need[line.sku_id] += line.quantity
    return dict(need)


# --- scoring -----------------------------------------------------------------------------------------


def _band(distance: float | None, band: int) -> tuple[int, float]:
    if distance is None:
        return (1, 0.0)  # unknown distance ranks after every known one
    return (0, math.floor(distance / band) if band > 0 else round(distance, 3))


def _node_key(ev: _Node, rules: RouteRules) -> tuple:
    parts: list = []
    for breaker in rules.tie_breakers:
        if breaker == "on_time":
            parts.append(0 if ev.on_time else 1)
        elif breaker == "distance":
            parts.append(_band(ev.distance, rules.distance_band_km))
        elif breaker == "cost":
            parts.append(ev.node.cost)
        elif breaker == "priority":
            parts.append(ev.node.priority)
    return (*parts, ev.node.code)


def _plan_key(chosen: Sequence[_Node], rules: RouteRules) -> tuple:
    parts: list = [len(chosen)]
    for breaker in rules.tie_breakers:
        if breaker == "on_time":
            parts.append(sum(0 if ev.on_time else 1 for ev in chosen))
        elif breaker == "distance":
            unknown = sum(1 for ev in chosen if ev.distance is None)
            parts.append((unknown, sum(_band(ev.distance, rules.distance_band_km)[1] for ev in chosen)))
        elif breaker == "cost":
            parts.append(sum((ev.node.cost for ev in chosen), Decimal("0")))
        elif breaker == "priority":
            parts.append(sum(ev.node.priority for ev in chosen))
    return (*parts, tuple(sorted(ev.node.code for ev in chosen)))


# --- allocation --------------------------------------------------------------------------------------


def _allocate(
    lines: Sequence[RouteLine], nodes: Sequence[_Node], atp: Mapping[tuple[int, int], int], rules: RouteRules
) -> tuple[dict[int, list[PlannedLine]], list[RouteLine]]:
    """Give each line to the best node that holds all of it, or (line splits allowed) to several nodes.
    A line is allocated whole or not at all. Returns ({location_id: lines}, lines left over)."""
    remaining = {
        (ev.node.location_id, sku): max(atp.get((ev.node.location_id, sku), 0), 0)
        for ev in nodes
        for sku in {line.sku_id for line in lines}
    }
    given: dict[int, list[PlannedLine]] = defaultdict(list)
    left: list[RouteLine] = []
    for line in sorted(lines, key=lambda ln: (-ln.quantity, ln.line_id)):
        whole = next((ev for ev in nodes if remaining[(ev.node.location_id, line.sku_id)] >= line.quantity), None)
        if whole is not None:
            remaining[(whole.node.location_id, line.sku_id)] -= line.quantity
            given[whole.node.location_id].append(PlannedLine(line.line_id, line.sku_id, line.quantity))
            continue
        total = sum(remaining[(ev.node.location_id, line.sku_id)] for ev in nodes)
        if not rules.allow_line_split or total < line.quantity:
            left.append(line)
            continue
        want = line.quantity
        for ev in sorted(nodes, key=lambda e: -remaining[(e.node.location_id, line.sku_id)]):
            take = min(want, remaining[(ev.node.location_id, line.sku_id)])
            if take > 0:
                remaining[(ev.node.location_id, line.sku_id)] -= take
                given[ev.node.location_id].append(PlannedLine(line.line_id, line.sku_id, take))
                want -= take
            if want == 0:
                break
    return dict(given), left


def _covers(combo: Sequence[_Node], need: Mapping[int, int]) -> bool:
    return all(sum(ev.covers[sku] for ev in combo) >= units for sku, units in need.items())


def _best_cover(usable, lines, atp, rules, max_k):
    """The best combination of at most max_k nodes that covers every line, or None."""
    need = _need(lines)
    singles = [ev for ev in usable if ev.covers_all]
    if singles:
        best = min(singles, key=lambda ev: _node_key(ev, rules))
        given, left = _allocate(lines, [best], atp, rules)
        if not left:
            return [best], given
    ranked = sorted(usable, key=lambda ev: (-ev.covers_units, _node_key(ev, rules)))
    for k in range(2, max_k + 1):
        pool = ranked[: SEARCH_WIDTH.get(k, DEFAULT_SEARCH_WIDTH)]
        found = None
        for combo in itertools.combinations(pool, k):
            if not _covers(combo, need):
                continue
            ordered = sorted(combo, key=lambda ev: _node_key(ev, rules))
            given, left = _allocate(lines, ordered, atp, rules)
            if left:
                continue
            used = [ev for ev in ordered if ev.node.location_id in given]
            key = _plan_key(used, rules)
            if found is None or key < found[0]:
                found = (key, used, given)
        if found is not None:
            return found[1], found[2]
    return None


def _best_partial(usable, lines, atp, rules, max_k):
    """Greedy: the nodes that cover the most units, up to max_k; lines allocated whole or not at all."""
    chosen: list[_Node] = []
    pending = list(lines)
    for _ in range(max_k):
        need = _need(pending)
        if not need:
            break
        options = [ev for ev in usable if ev not in chosen]
        scored = [(sum(min(ev.covers.get(sku, 0), units) for sku, units in need.items()), ev) for ev in options]
        scored = [(units, ev) for units, ev in scored if units > 0]
        if not scored:
            break
        best = min(scored, key=lambda item: (-item[0], _node_key(item[1], rules)))[1]
        chosen.append(best)
        given, pending = _allocate(lines, sorted(chosen, key=lambda ev: _node_key(ev, rules)), atp, rules)
    if not chosen:
        return [], {}, list(lines)
    ordered = sorted(chosen, key=lambda ev: _node_key(ev, rules))
    given, left = _allocate(lines, ordered, atp, rules)
    return [ev for ev in ordered if ev.node.location_id in given], given, left


# --- the entry point ---------------------------------------------------------------------------------


def plan_order(
    *,
    order: RouteOrder,
    nodes: Sequence[RouteNode],
    atp: Mapping[tuple[int, int], int],
    rules: RouteRules,
    now: datetime,
) -> RoutingPlan:
    """Choose node(s) for the order's lines. Never allocates more than ATP; every line is either in a
    shipment or in ``unrouted`` with the reason."""
    lines = [line for line in order.lines if line.quantity > 0]
    need = _need(order.lines)
    evaluated = [_evaluate(order, node, atp, rules, now, need) for node in nodes]
    usable = [ev for ev in evaluated if not ev.rejected]
    max_k = 1 if order.service_level == PICKUP else max(rules.max_shipments, 1)

    chosen: list[_Node] = []
    given: dict[int, list[PlannedLine]] = {}
    left: list[RouteLine] = list(lines)
    held: set[int] = set()  # lines that could ship but wait: the order ships complete
    if lines:
        cover = _best_cover(usable, lines, atp, rules, max_k)
        if cover is not None:
            chosen, given = cover
            left = []
        else:
            chosen, given, left = _best_partial(usable, lines, atp, rules, max_k)
            if left and not rules.ship_partial:
                blocking = {line.line_id for line in left}
                held = {line.line_id for line in lines} - blocking
                chosen, given = [], {}
                left = list(lines)

    shipments = [
        PlannedShipment(
            location_id=ev.node.location_id,
            code=ev.node.code,
            kind=shipment_kind(ev.node, order.service_level),
            ship_day=ev.ship_day,
            ships_at=ev.ships_at,
            on_time=ev.on_time,
            distance_km=None if ev.distance is None else round(ev.distance, 1),
            lines=sorted(given[ev.node.location_id], key=lambda pl: pl.line_id),
        )
        for ev in chosen
    ]
    unrouted = [_why_unrouted(line, evaluated, usable, max_k, line.line_id in held) for line in left]
    candidates = _candidates(evaluated, chosen, lines, rules)
    return RoutingPlan(
        shipments=shipments,
        unrouted=unrouted,
        candidates=candidates,
        explanation=_explain(shipments, unrouted, candidates),
        rules_version=rules.version,
    )


def _why_unrouted(line, evaluated, usable, max_k, held: bool) -> UnroutedLine:
    def stock_at(group) -> int:
        return sum(ev.covers.get(line.sku_id, 0) for ev in group)

    usable_units = stock_at(usable)
    by_code = defaultdict(list)
    for ev in evaluated:
        if ev.rejected:
            by_code[ev.rejected_code].append(ev)
    if held:
        reason, detail = ORDER_INCOMPLETE, "the order ships complete and another line cannot be routed"
    elif usable_units >= line.quantity:
        reason = TOO_MANY_SHIPMENTS
        detail = f"stock is spread over more than {max_k} node(s); the rules allow at most {max_k} shipment(s)"
    elif stock_at(by_code[OVER_CAPACITY]) + usable_units >= line.quantity:
        reason = OVER_CAPACITY
        detail = "stock is at node(s) with no capacity left: " + ", ".join(
            ev.node.code for ev in by_code[OVER_CAPACITY] if ev.covers.get(line.sku_id)
        )
    elif stock_at(by_code[SHIP_BY_UNREACHABLE]) + usable_units >= line.quantity:
        reason = SHIP_BY_UNREACHABLE
        detail = "stock is only at node(s) past their cutoff for the ship-by: " + ", ".join(
            ev.node.code for ev in by_code[SHIP_BY_UNREACHABLE] if ev.covers.get(line.sku_id)
        )
    elif (
        not usable
        and not by_code[OVER_CAPACITY]
        and not by_code[SHIP_BY_UNREACHABLE]
        and not any(ev.rejected_code == INSUFFICIENT_STOCK for ev in evaluated)
    ):
        reason, detail = NO_NODE, "no node can serve this order (eligibility, channel policy or service level)"
    elif stock_at(by_code[NO_NODE]) + usable_units >= line.quantity:
        reason = NO_NODE
        detail = "stock is only at nodes this order may not use: " + ", ".join(
            ev.node.code for ev in by_code[NO_NODE] if ev.covers.get(line.sku_id)
        )
    else:
        reason = INSUFFICIENT_STOCK
        detail = f"wanted {line.quantity}, available {usable_units} at usable nodes"
    return UnroutedLine(line.line_id, line.sku_id, line.sku_code, line.quantity, reason, detail)


def _candidates(evaluated: Sequence[_Node], chosen: Sequence[_Node], lines, rules: RouteRules) -> list[dict]:
    total = sum(line.quantity for line in lines)
    chosen_ids = {ev.node.location_id for ev in chosen}
    winner = min(chosen, key=lambda ev: _node_key(ev, rules)) if len(chosen) == 1 else None
    rows = []
    for ev in sorted(evaluated, key=lambda e: (bool(e.rejected), _node_key(e, rules))):
        row = {
            "location_id": ev.node.location_id,
            "node": ev.node.code,
            "chosen": ev.node.location_id in chosen_ids,
            "rejected": ev.rejected,
            "covers_units": ev.covers_units,
            "of_units": total,
            "on_time": ev.on_time,
            "ships_at": ev.ships_at.isoformat(),
            "distance_km": None if ev.distance is None else round(ev.distance, 1),
            "cost": str(ev.node.cost),
            "priority": ev.node.priority,
            "capacity_left": ev.capacity_left,
        }
        if row["chosen"]:
            row["why"] = "chosen" if len(chosen) == 1 else f"chosen: part of a {len(chosen)}-node split"
        elif ev.rejected:
            row["why"] = ev.rejected
        elif winner is not None:
            row["why"] = _lost_to(ev, winner, rules, total)
        elif chosen:
            row["why"] = (
                f"covers {ev.covers_units} of {total} units; the chosen {len(chosen)}-node plan scores better"
                if ev.covers_units < total
                else "not in the best plan"
            )
        else:
            row["why"] = f"covers {ev.covers_units} of {total} units"
        rows.append(row)
    return rows


def _lost_to(ev: _Node, winner: _Node, rules: RouteRules, total: int) -> str:
    if not ev.covers_all:
        return f"covers {ev.covers_units} of {total} units: would need a split"
    for breaker in rules.tie_breakers:
        if breaker == "on_time" and ev.on_time != winner.on_time:
            return f"would ship late ({ev.ships_at:%Y-%m-%d %H:%M %Z})" if not ev.on_time else "on time but lost"
        if breaker == "distance":
            mine, theirs = _band(ev.distance, rules.distance_band_km), _band(winner.distance, rules.distance_band_km)
            if mine != theirs:
                if ev.distance is None:
                    return "distance to the ship-to unknown"
                return f"farther: {ev.distance:.0f} km vs {winner.distance:.0f} km"
        if breaker == "cost" and ev.node.cost != winner.node.cost:
            return f"costs {ev.node.cost} per shipment vs {winner.node.cost}"
        if breaker == "priority" and ev.node.priority != winner.node.priority:
            return f"lower priority ({ev.node.priority} vs {winner.node.priority})"
    return f"tie on every rule, {winner.node.code} sorts first"


def _explain(shipments: Sequence[PlannedShipment], unrouted: Sequence[UnroutedLine], candidates) -> str:
    parts = []
    if shipments:
        nodes = ", ".join(f"{s.code} ({s.units} unit{'s' if s.units != 1 else ''})" for s in shipments)
        considered = sum(1 for c in candidates if not c["rejected"])
        late = [s.code for s in shipments if not s.on_time]
        parts.append(
            f"{len(shipments)} shipment{'s' if len(shipments) != 1 else ''} from {nodes}; "
            f"{considered} usable node{'s' if considered != 1 else ''} of {len(candidates)}"
            + (f"; ships late from {', '.join(late)}" if late else "")
        )
    for u in unrouted:
        parts.append(f"{u.sku_code} x{u.quantity} not routed ({u.reason}): {u.detail}")
    if not shipments and not unrouted:
        parts.append("nothing left to route")
    return ". ".join(parts)
