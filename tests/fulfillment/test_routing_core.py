"""The pure order-routing core: hand-built scenarios and a property over random networks."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fulfillment import routing
from fulfillment.geo import US_ZIP2, Point, postal_centroid
from fulfillment.routing import RouteLine, RouteNode, RouteOrder, RouteRules, plan_order

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 09:00 in Chicago, 10:00 in New York
SF = postal_centroid("US", "94105")
NYC = postal_centroid("US", "10001")


def order(*lines, ship_to=SF, ship_by=None, service_level="ship", kind="amazon", account_id=1) -> RouteOrder:
    return RouteOrder(
        order_id=1,
        account_id=account_id,
        channel_kind=kind,
        service_level=service_level,
        ship_by=ship_by,
        ship_to=ship_to,
        lines=tuple(RouteLine(i + 1, sku, f"SKU{sku}", qty) for i, (sku, qty) in enumerate(lines)),
    )


def node(location_id, code, zip_code="75261", **fields) -> RouteNode:
    fields.setdefault("timezone", "America/Chicago")
    return RouteNode(location_id=location_id, code=code, kind=fields.pop("kind", "warehouse"),
                     point=postal_centroid("US", zip_code), **fields)  # fmt: skip


def test_one_node_beats_a_split_even_when_farther():
    # given two nearby nodes that each hold one SKU, and a far node that holds both
    nodes = [node(1, "LA", "90001"), node(2, "OAK", "94607"), node(3, "NJ", "07001")]
    atp = {(1, 10): 5, (2, 20): 5, (3, 10): 5, (3, 20): 5}
    # when
    plan = plan_order(order=order((10, 1), (20, 1)), nodes=nodes, atp=atp, rules=RouteRules(), now=NOW)
    # then one shipment from the far node, and the near ones say why they lost
    assert [s.code for s in plan.shipments] == ["NJ"]
    why = {c["node"]: c["why"] for c in plan.candidates}
    assert why["NJ"] == "chosen"
    assert why["LA"].startswith("covers 1 of 2 units")


def test_split_only_when_no_single_node_can_and_never_beyond_the_maximum():
    nodes = [node(1, "A", "90001"), node(2, "B", "60601"), node(3, "C", "10001")]
    atp = {(1, 10): 1, (2, 20): 1, (3, 30): 1}
    lines = ((10, 1), (20, 1), (30, 1))
    # when three shipments are allowed
    plan = plan_order(order=order(*lines), nodes=nodes, atp=atp, rules=RouteRules(max_shipments=3), now=NOW)
    assert sorted(s.code for s in plan.shipments) == ["A", "B", "C"] and not plan.unrouted
    # when only two are allowed, the best two ship and the third line says why
    plan = plan_order(order=order(*lines), nodes=nodes, atp=atp, rules=RouteRules(max_shipments=2), now=NOW)
    assert len(plan.shipments) == 2
    [left] = plan.unrouted
    assert left.reason == routing.TOO_MANY_SHIPMENTS and "at most 2" in left.detail


def test_nearest_node_wins_among_equals_then_cost():
    nodes = [node(1, "EAST", "10001", cost=Decimal("1")), node(2, "WEST", "94107", cost=Decimal("5"))]
    atp = {(1, 10): 3, (2, 10): 3}
    plan = plan_order(order=order((10, 2), ship_to=SF), nodes=nodes, atp=atp, rules=RouteRules(), now=NOW)
    assert plan.shipments[0].code == "WEST"
    assert "farther" in {c["node"]: c["why"] for c in plan.candidates}["EAST"]
    # a wide distance band makes them equal, so the cheaper one wins
    banded = RouteRules(distance_band_km=10_000)
    plan = plan_order(order=order((10, 2), ship_to=SF), nodes=nodes, atp=atp, rules=banded, now=NOW)
    assert plan.shipments[0].code == "EAST"


def test_capacity_and_cutoff_are_hard_constraints():
    today = NOW.astimezone(routing.ZoneInfo("America/Chicago")).date()
    full = node(1, "FULL", "94107", daily_capacity=10, capacity_used={today: 10})
    late = node(2, "LATE", "94107", cutoff=time(8, 0))  # 09:00 local: today's cutoff has passed
    ok = node(3, "OK", "10001", cutoff=time(17, 0))
    atp = {(1, 10): 5, (2, 10): 5, (3, 10): 5}
    ship_by = datetime(2026, 11, 25, 23, 59, tzinfo=UTC)
    plan = plan_order(
        order=order((10, 1), ship_by=ship_by), nodes=[full, late, ok], atp=atp, rules=RouteRules(), now=NOW
    )
    assert [s.code for s in plan.shipments] == ["OK"]
    why = {c["node"]: c["why"] for c in plan.candidates}
    assert why["FULL"].startswith("at capacity")
    assert why["LATE"].startswith("cannot meet the ship-by")


def test_unreachable_ship_by_and_capacity_are_named_reasons():
    late = node(2, "LATE", cutoff=time(8, 0))
    ship_by = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    atp = {(2, 10): 5}
    plan = plan_order(order=order((10, 1), ship_by=ship_by), nodes=[late], atp=atp, rules=RouteRules(), now=NOW)
    assert not plan.shipments
    assert plan.unrouted[0].reason == routing.SHIP_BY_UNREACHABLE
    # allowed to ship late, the same node takes it and the plan says so
    late_ok = RouteRules(allow_late=True)
    plan = plan_order(order=order((10, 1), ship_by=ship_by), nodes=[late], atp=atp, rules=late_ok, now=NOW)
    assert plan.shipments[0].on_time is False and "late" in plan.explanation
    today = date(2026, 11, 25)
    full = node(1, "FULL", daily_capacity=1, capacity_used={today: 1})
    plan = plan_order(order=order((10, 1)), nodes=[full], atp={(1, 10): 5}, rules=RouteRules(), now=NOW)
    assert plan.unrouted[0].reason == routing.OVER_CAPACITY


def test_pickup_goes_to_one_pickup_store_and_ship_from_store_to_a_store_that_ships():
    dc = node(1, "DC", "94107")
    store = node(2, "STORE", "94110", kind="store", can_pickup=True, can_ship=True, ships_from_store=False)
    sfs = node(3, "SFS", "94110", kind="store", can_ship=True, ships_from_store=True)
    atp = {(1, 10): 9, (2, 10): 9, (3, 10): 9}
    pickup = plan_order(order=order((10, 1), service_level="pickup"), nodes=[dc, store, sfs], atp=atp,
                        rules=RouteRules(), now=NOW)  # fmt: skip
    assert [(s.code, s.kind) for s in pickup.shipments] == [("STORE", "pickup")]
    shipped = plan_order(order=order((10, 1), service_level="ship_from_store"), nodes=[dc, store, sfs], atp=atp,
                         rules=RouteRules(), now=NOW)  # fmt: skip
    assert [(s.code, s.kind) for s in shipped.shipments] == [("SFS", "ship_from_store")]
    # a plain ship order never goes to a store that does not ship from store
    plain = plan_order(order=order((10, 1)), nodes=[store], atp=atp, rules=RouteRules(), now=NOW)
    assert plain.unrouted[0].reason == routing.NO_NODE


def test_pickup_goes_only_to_the_store_the_buyer_chose():
    near = node(1, "NEAR", "94105", kind="store", can_pickup=True)
    chosen = node(2, "CHOSEN", "10001", kind="store", can_pickup=True)
    atp = {(1, 10): 9, (2, 10): 9}
    base = order((10, 1), service_level="pickup")
    # the buyer chose the far store: the nearer one with the same stock loses, and says why
    picked = replace(base, pickup_location_id=2, pickup_location_ref="gid://shopify/Location/2")
    plan = plan_order(order=picked, nodes=[near, chosen], atp=atp, rules=RouteRules(), now=NOW)
    assert [s.code for s in plan.shipments] == ["CHOSEN"]
    why = {c["node"]: c["rejected"] for c in plan.candidates}
    assert why["NEAR"] == "not the pickup store the buyer chose"
    # the chosen store is short: the order waits, it is not sent to another store
    short = plan_order(order=picked, nodes=[near, chosen], atp={(1, 10): 9}, rules=RouteRules(), now=NOW)
    assert short.shipments == [] and short.unrouted
    # the channel's store is not mapped yet: no store at all
    unmapped = replace(base, pickup_location_ref="gid://shopify/Location/9")
    plan = plan_order(order=unmapped, nodes=[near, chosen], atp=atp, rules=RouteRules(), now=NOW)
    assert plan.shipments == [] and plan.unrouted[0].reason == routing.NO_NODE
    assert all("not mapped" in c["rejected"] for c in plan.candidates)
    # a manual reroute (the buyer agreed) may move it to another store
    forced = plan_order(order=picked, nodes=[near, chosen], atp=atp, rules=RouteRules(forced_location=1), now=NOW)
    assert [s.code for s in forced.shipments] == ["NEAR"]


def test_pickup_never_splits():
    a = node(1, "A", kind="store", can_pickup=True)
    b = node(2, "B", kind="store", can_pickup=True)
    plan = plan_order(order=order((10, 1), (20, 1), service_level="pickup"), nodes=[a, b],
                      atp={(1, 10): 1, (2, 20): 1}, rules=RouteRules(), now=NOW)  # fmt: skip
    assert len(plan.shipments) <= 1 and plan.unrouted


def test_channel_policy_and_eligibility():
    store = node(1, "STORE", "94107")
    dc = node(2, "DC", "10001")
    other = RouteNode(**{**node(3, "OTHER", "94107").__dict__, "eligible": False})
    rules = RouteRules(blocked_kinds={1: frozenset({"amazon"})})
    atp = {(1, 10): 5, (2, 10): 5, (3, 10): 5}
    plan = plan_order(order=order((10, 1)), nodes=[store, dc, other], atp=atp, rules=rules, now=NOW)
    assert plan.shipments[0].code == "DC"
    why = {c["node"]: c["why"] for c in plan.candidates}
    assert "channel policy" in why["STORE"] and "not an eligible node" in why["OTHER"]
    # another channel may still use the store
    plan = plan_order(order=order((10, 1), kind="shopify"), nodes=[store, dc], atp=atp, rules=rules, now=NOW)
    assert plan.shipments[0].code == "STORE"


def test_ships_complete_holds_every_line():
    a = node(1, "A")
    plan = plan_order(order=order((10, 1), (20, 1)), nodes=[a], atp={(1, 10): 1}, rules=RouteRules(ship_partial=False),
                      now=NOW)  # fmt: skip
    assert not plan.shipments
    reasons = {u.line_id: u.reason for u in plan.unrouted}
    assert reasons == {1: routing.ORDER_INCOMPLETE, 2: routing.INSUFFICIENT_STOCK}


def test_a_line_splits_across_nodes_only_when_allowed():
    nodes = [node(1, "A"), node(2, "B")]
    atp = {(1, 10): 2, (2, 10): 2}
    plan = plan_order(order=order((10, 3)), nodes=nodes, atp=atp, rules=RouteRules(), now=NOW)
    assert sorted(s.units for s in plan.shipments) == [1, 2]
    plan = plan_order(order=order((10, 3)), nodes=nodes, atp=atp, rules=RouteRules(allow_line_split=False), now=NOW)
    assert not plan.shipments and plan.unrouted[0].quantity == 3


WEEKDAYS = frozenset(range(5))
THANKSGIVING = date(2026, 11, 26)


def test_a_node_ships_only_on_its_ship_days_and_not_on_its_holidays():
    # Wednesday 10:00 in New York, after a 09:30 cutoff: the next day is Thanksgiving, closed
    dc = RouteNode(1, "DC", "warehouse", timezone="America/New_York", cutoff=time(9, 30), ship_days=WEEKDAYS,
                   closed_on=frozenset({THANKSGIVING}))  # fmt: skip
    day, at = routing.ship_moment(dc, NOW)
    assert (day, at.hour, at.minute) == (date(2026, 11, 27), 9, 30)
    # Friday after the cutoff at a Monday-to-Friday node: Monday
    friday_late = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
    assert routing.ship_moment(dc, friday_late)[0] == date(2026, 11, 30)
    # a Saturday with no cutoff: the node's next ship day, by its end
    saturday = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
    nightly = RouteNode(2, "N", "warehouse", timezone="America/New_York", ship_days=WEEKDAYS)
    day, at = routing.ship_moment(nightly, saturday)
    assert (day, at.hour) == (date(2026, 11, 30), 23)


def test_a_closed_day_decides_the_ship_by_and_a_node_that_never_ships_is_rejected():
    # ship-by Thursday evening: the weekday DC is closed for Thanksgiving, the 7-day 3PL ships on time
    ship_by = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)  # Thursday 22:00 in Chicago
    dc = node(1, "DC", "94107", cutoff=time(8, 0), ship_days=WEEKDAYS, closed_on=frozenset({THANKSGIVING}))
    tpl = node(2, "3PL", "10001", cutoff=time(8, 0))
    plan = plan_order(order=order((10, 1), ship_by=ship_by), nodes=[dc, tpl], atp={(1, 10): 5, (2, 10): 5},
                      rules=RouteRules(), now=NOW)  # fmt: skip
    assert [s.code for s in plan.shipments] == ["3PL"]
    why = {c["node"]: c["rejected"] for c in plan.candidates}
    assert why["DC"].startswith("cannot meet the ship-by: ships 2026-11-27")
    # a node with no ship day at all never gets an order
    shut = node(3, "SHUT", "94107", ship_days=frozenset())
    plan = plan_order(order=order((10, 1)), nodes=[shut], atp={(3, 10): 5}, rules=RouteRules(), now=NOW)
    assert not plan.shipments and plan.unrouted[0].reason == routing.NO_NODE
    assert plan.candidates[0]["rejected"].startswith("closed")


def test_cutoff_respects_the_node_timezone():
    # 15:00 UTC is 10:00 in New York and 07:00 in Los Angeles
    ny = RouteNode(1, "NY", "warehouse", timezone="America/New_York", cutoff=time(9, 30))
    la = RouteNode(2, "LA", "warehouse", timezone="America/Los_Angeles", cutoff=time(9, 30))
    assert routing.ship_moment(ny, NOW)[0] == date(2026, 11, 26)
    assert routing.ship_moment(la, NOW)[0] == date(2026, 11, 25)


# --- property: a plan never allocates more than ATP and covers every line or says why -------------------

node_st = st.builds(
    lambda i, zip2, cap, used, cutoff, cost: RouteNode(
        location_id=i,
        code=f"N{i}",
        kind="warehouse",
        point=Point(*US_ZIP2[zip2]),
        daily_capacity=cap,
        capacity_used={date(2026, 11, 25): used, date(2026, 11, 26): used},
        cutoff=cutoff,
        cost=Decimal(cost),
        timezone="America/Chicago",
    ),
    st.integers(1, 8),
    st.sampled_from(["10", "30", "60", "75", "94", "98"]),
    st.one_of(st.none(), st.integers(0, 3)),
    st.integers(0, 3),
    st.one_of(st.none(), st.sampled_from([time(8, 0), time(12, 0), time(18, 0)])),
    st.integers(0, 9),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nodes=st.lists(node_st, min_size=0, max_size=6, unique_by=lambda n: n.location_id),
    lines=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 5)), min_size=1, max_size=5),
    stock=st.dictionaries(st.tuples(st.integers(1, 8), st.integers(1, 4)), st.integers(0, 6), max_size=30),
    max_shipments=st.integers(1, 3),
    split=st.booleans(),
    partial=st.booleans(),
    ship_by_hours=st.one_of(st.none(), st.integers(-2, 48)),
)
def test_plan_never_exceeds_atp_and_accounts_for_every_line(
    nodes, lines, stock, max_shipments, split, partial, ship_by_hours
):
    rules = RouteRules(max_shipments=max_shipments, allow_line_split=split, ship_partial=partial)
    ship_by = None if ship_by_hours is None else NOW + timedelta(hours=ship_by_hours)
    the_order = order(*lines, ship_by=ship_by)
    plan = plan_order(order=the_order, nodes=nodes, atp=stock, rules=rules, now=NOW)
    # never more than ATP at any (node, sku)
    taken = defaultdict(int)
    for shipment in plan.shipments:
        for line in shipment.lines:
            taken[(shipment.location_id, line.sku_id)] += line.quantity
    for key, units in taken.items():
        assert units <= stock.get(key, 0)
    # every line is fully allocated, or unrouted whole with a reason
    allocated = defaultdict(int)
    for shipment in plan.shipments:
        for line in shipment.lines:
            allocated[line.line_id] += line.quantity
    unrouted = {u.line_id: u for u in plan.unrouted}
    for line in the_order.lines:
        if line.line_id in unrouted:
            assert allocated[line.line_id] == 0 and unrouted[line.line_id].reason and unrouted[line.line_id].detail
        else:
            assert allocated[line.line_id] == line.quantity
    # limits: shipments, capacity, ship-by, one node per line unless splits are allowed
    assert len(plan.shipments) <= max_shipments
    assert len({s.location_id for s in plan.shipments}) == len(plan.shipments)
    by_id = {n.location_id: n for n in nodes}
    for shipment in plan.shipments:
        n = by_id[shipment.location_id]
        if n.daily_capacity is not None:
            assert n.capacity_used.get(shipment.ship_day, 0) < n.daily_capacity
        assert shipment.on_time
    if not split:
        per_line = defaultdict(set)
        for shipment in plan.shipments:
            for line in shipment.lines:
                per_line[line.line_id].add(shipment.location_id)
        assert all(len(v) == 1 for v in per_line.values())
    if not partial and plan.unrouted:
        assert not plan.shipments
    # every node is explained, and one node ships everything when one node can
    assert len(plan.candidates) == len(nodes) and all(c["why"] for c in plan.candidates)
    if any(not c["rejected"] and c["covers_units"] == c["of_units"] for c in plan.candidates):
        assert len(plan.shipments) == 1 and not plan.unrouted
