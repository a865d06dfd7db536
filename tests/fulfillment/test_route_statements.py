"""The normal routed path: at most five statements per order, whatever the lines and nodes in the plan."""

from __future__ import annotations

from dataclasses import replace

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from fulfillment import services
from fulfillment.models import NodeCapacityDay, RoutingDecision, Shipment, ShipmentLine, ShipmentStatus
from fulfillment.routing import RouteLine
from fulfillment.selectors import network_snapshot, orders_to_route
from fulfillment.services.route import batch
from inventory import services as inventory
from inventory.models import Reservation, ReservationStatus, StockLevel
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
from tests.factories import OrderLineFactory, SkuFactory
from tests.inventory.helpers import assert_stock_invariants

from .statements import count_statements

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    # The after-commit availability dispatch goes to the broker, outside the project (and outside the count).
    from channels import tasks as channel_tasks

    monkeypatch.setattr(channel_tasks.channel_availability_recompute_task, "apply_async", lambda *a, **k: None)


def _route_counted(order):
    preview = orders_to_route([order.pk])
    network = network_snapshot(sku_ids=sorted({ln.sku_id for o in preview.values() for ln in o.route.lines}))
    with count_statements() as sent, CaptureQueriesContext(connection) as django_seen:
        [result] = services.orders_route(order_ids=[order.pk], network=network, actor="router:test")
    return result, sent, django_seen


@pytest.mark.parametrize(("lines", "nodes"), [(1, 1), (2, 1), (5, 1), (3, 3), (6, 3)])
def test_a_whole_route_is_five_statements_whatever_the_lines_and_nodes(node, stock, order_for, lines, nodes):
    # given `nodes` nodes, each the only holder of its share of the order's SKUs
    locations = [node(f"N{i}", "75261") for i in range(nodes)]
    skus = [SkuFactory() for _ in range(lines)]
    for i, sku in enumerate(skus):
        stock(sku, locations[i % nodes], 10)
    order = order_for([(sku, 2) for sku in skus])
    # when it is routed
    result, sent, django_seen = _route_counted(order)
    # then five statements (one raw: the reservation), one commit, and everything written
    assert len(sent) <= 5, "\n".join(q[:150] for q in sent.statements)
    assert sent.commits == 1
    # Django 6 logs BEGIN and COMMIT too; it doesn't see the raw reservation statement
    seen = [q["sql"] for q in django_seen.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
    assert len(seen) == len(sent) - 1, seen
    assert len(result.shipment_ids) == nodes
    order.refresh_from_db()
    assert order.status == OrderStatus.RELEASED
    assert [(e.from_status, e.to_status, e.actor, e.reason) for e in order.events.order_by("pk")][-3:] == [
        (OrderStatus.OPEN, OrderStatus.ALLOCATED, "router:test", "order routing"),
        (OrderStatus.ALLOCATED, OrderStatus.RELEASED, "router:test", "released to node"),
        ("", "", "router:test", ""),
    ]
    routed = order.events.get(kind="routed")
    assert routed.data["decision_id"] == result.decision_id and routed.data["outcome"] in ("routed", "split")
    assert set(order.lines.values_list("status", flat=True)) == {LineStatus.ALLOCATED}
    decision = RoutingDecision.objects.get(order=order)
    assert decision.actor == "router:test" and decision.candidates and decision.explanation
    assert decision.duration_ms is not None and decision.plan
    shipments = Shipment.objects.filter(order=order)
    assert {s.status for s in shipments} == {ShipmentStatus.RELEASED}
    assert {s.decision_id for s in shipments} == {decision.pk}
    assert all(s.released_at and s.capacity_day for s in shipments)
    for sl in ShipmentLine.objects.filter(shipment__order=order).select_related("reservation", "shipment"):
        assert sl.reservation.location_id == sl.shipment.location_id
        assert sl.reservation.order_line_id == sl.order_line_id and sl.reservation.quantity == sl.quantity
    assert Reservation.objects.filter(order_line__order=order, status=ReservationStatus.ACTIVE).count() == lines
    assert sum(NodeCapacityDay.objects.values_list("capacity_used", flat=True)) == nodes
    assert_stock_invariants()


def test_the_write_statement_names_every_column_of_the_tables_it_inserts():
    # a new NOT NULL column would otherwise fail only at run time
    sql = batch._fast_write_sql()
    for model in (RoutingDecision, Shipment, ShipmentLine, OrderEvent):
        table = model._meta.db_table
        head = sql.split(f"INSERT INTO {table} (", 1)[1].split(")", 1)[0]
        columns = {c.strip() for c in head.split(",")}
        assert columns == {f.column for f in model._meta.concrete_fields if not f.primary_key}, table


def test_a_short_row_after_the_snapshot_takes_the_general_path_and_reserves_nothing_twice(node, stock, order_for):
    # given a snapshot that still believes 5 units of A are free, then another order reserves 4 of them
    here = node("HERE")
    a, b = SkuFactory(), SkuFactory()
    stock(a, here, 5)
    stock(b, here, 5)
    order = order_for([(a, 3), (b, 1)])
    preview = orders_to_route([order.pk])
    network = network_snapshot(sku_ids=sorted({ln.sku_id for ln in preview[order.pk].route.lines}))
    other = OrderLineFactory(sku=a, quantity=4)
    inventory.stock_reserve(lines=[inventory.LineDemand(other.pk, a.pk, {here.pk: 4})], actor="test:other")
    # when
    [result] = services.orders_route(order_ids=[order.pk], network=network, actor="router:test")
    # then the all-or-nothing statement rolled back with its order; the general path shipped B alone
    # (ship_partial) and opened a case for A: one decision, one reservation, one capacity unit
    assert len(result.shipment_ids) == 1 and result.exception_case_ids
    assert StockLevel.objects.get(sku=a, location=here).reserved == 4
    assert StockLevel.objects.get(sku=b, location=here).reserved == 1
    assert Reservation.objects.filter(order_line__order=order).count() == 1
    assert NodeCapacityDay.objects.get(location=here).capacity_used == 1
    assert RoutingDecision.objects.filter(order=order).count() == 1
    assert_stock_invariants()


def test_a_full_node_found_by_the_capacity_statement_rolls_the_reservation_back(node, stock, order_for):
    # given a node with room for one shipment, which the snapshot doesn't know is already used
    here = node("HERE", daily_capacity=1)
    a, b = SkuFactory(), SkuFactory()
    stock(a, here, 5)
    stock(b, here, 5)
    first, second = order_for([(a, 1)]), order_for([(a, 1), (b, 1)])
    preview = orders_to_route([first.pk, second.pk])
    network = network_snapshot(sku_ids=[a.pk, b.pk])
    services.order_route(order_id=first.pk, actor="router:other")  # its own snapshot: the day is now full
    # when
    [result] = services.orders_route(order_ids=[second.pk], network=network, actor="router:test")
    # then nothing of the second order stays reserved and the day's count is still 1
    assert preview and not result.shipment_ids
    assert NodeCapacityDay.objects.get(location=here).capacity_used == 1
    assert not Reservation.objects.filter(order_line__order=second).exists()
    assert StockLevel.objects.get(sku=b, location=here).reserved == 0
    second.refresh_from_db()
    assert second.status == OrderStatus.OPEN
    assert_stock_invariants()


def test_an_order_another_router_released_is_not_routed_twice(node, stock, order_for):
    # given two routers that both read the order while it was open
    here = node("HERE")
    a = SkuFactory()
    stock(a, here, 10)
    order = order_for([(a, 2)])
    stale = network_snapshot(sku_ids=[a.pk])
    services.order_route(order_id=order.pk, actor="router:one")
    real_read = batch.orders_to_route
    open_again = {**real_read([order.pk])}
    open_again[order.pk].status = OrderStatus.OPEN  # what the second router read before the first committed
    open_again[order.pk].lines = {k: {**v, "status": LineStatus.OPEN} for k, v in open_again[order.pk].lines.items()}
    open_again[order.pk].route = replace(open_again[order.pk].route, lines=(RouteLine(*_line(order), 2),))
    calls = []

    def stale_then_real(ids):
        calls.append(ids)
        return open_again if len(calls) == 1 else real_read(ids)

    batch.orders_to_route = stale_then_real
    try:
        # when the second router writes
        [result] = services.orders_route(order_ids=[order.pk], network=stale, actor="router:two")
    finally:
        batch.orders_to_route = real_read
    # then its guarded transition found the order released: everything it wrote rolled back
    assert not result.shipment_ids
    assert Shipment.objects.filter(order=order).count() == 1
    assert Reservation.objects.filter(order_line__order=order).count() == 1
    assert StockLevel.objects.get(sku=a, location=here).reserved == 2
    assert NodeCapacityDay.objects.get(location=here).capacity_used == 1
    assert order.events.filter(kind="routed").count() == 1
    assert_stock_invariants()


def _line(order):
    line = order.lines.select_related("sku").get()
    return line.pk, line.sku_id, line.sku.code


def _snapshot_for(orders):
    preview = orders_to_route([o.pk for o in orders])
    return network_snapshot(sku_ids=sorted({ln.sku_id for o in preview.values() for ln in o.route.lines}))


def test_a_batch_of_orders_is_routed_in_five_statements_and_one_commit(node, stock, order_for):
    # given twelve orders of one to three lines over three nodes
    locations = [node(f"N{i}", "75261") for i in range(3)]
    skus = [SkuFactory() for _ in range(6)]
    for i, sku in enumerate(skus):
        stock(sku, locations[i % 3], 50)
    orders = [order_for([(skus[(i + k) % 6], 1 + k) for k in range(1 + i % 3)]) for i in range(12)]
    network = _snapshot_for(orders)
    # when the batch is routed
    with count_statements() as sent:
        results = services.orders_route(order_ids=[o.pk for o in orders], network=network, actor="router:test")
    # then five statements and one commit for all of them, and each order is as if routed alone
    assert len(sent) <= 5, "\n".join(q[:150] for q in sent.statements)
    assert sent.commits == 1
    assert [r.order_id for r in results] == [o.pk for o in orders] and all(r.routed for r in results)
    for order, result in zip(orders, results, strict=True):
        order.refresh_from_db()
        assert order.status == OrderStatus.RELEASED
        assert [(e.from_status, e.to_status) for e in order.events.filter(kind="status_changed").order_by("pk")] == [
            (OrderStatus.OPEN, OrderStatus.ALLOCATED),
            (OrderStatus.ALLOCATED, OrderStatus.RELEASED),
        ]
        assert order.events.get(kind="routed").data["decision_id"] == result.decision_id
        assert RoutingDecision.objects.get(order=order).pk == result.decision_id
        shipments = Shipment.objects.filter(order=order)
        assert sorted(s.pk for s in shipments) == sorted(result.shipment_ids)
        for sl in ShipmentLine.objects.filter(shipment__order=order).select_related("reservation", "shipment"):
            assert sl.reservation.location_id == sl.shipment.location_id
            assert sl.reservation.order_line_id == sl.order_line_id and sl.reservation.quantity == sl.quantity
        assert set(order.lines.values_list("status", flat=True)) == {LineStatus.ALLOCATED}
    assert sum(NodeCapacityDay.objects.values_list("capacity_used", flat=True)) == Shipment.objects.count()
    assert_stock_invariants()


def test_orders_of_a_batch_share_the_stock_in_order_and_the_rest_take_their_own_path(node, stock, order_for):
    # given 3 units at one node, three orders of 2 (earliest first), and one order on hold
    here = node("HERE")
    a = SkuFactory()
    stock(a, here, 3)
    first, second, third = (order_for([(a, 2)]) for _ in range(3))
    held = order_for([(a, 1)], on_hold=True)
    network = _snapshot_for([first, second, third, held])
    # when routed as one batch
    results = services.orders_route(
        order_ids=[first.pk, second.pk, third.pk, held.pk], network=network, actor="router:test"
    )
    # then the first order took 2 units; the others were planned on the 1 left and went their own way
    outcome = {r.order_id: r for r in results}
    assert outcome[first.pk].routed and not outcome[second.pk].routed and not outcome[third.pk].routed
    assert not outcome[held.pk].routed
    assert StockLevel.objects.get(sku=a, location=here).reserved == 2
    held.refresh_from_db()
    assert held.status == OrderStatus.OPEN and not Reservation.objects.filter(order_line__order=held).exists()
    assert_stock_invariants()


def test_a_race_inside_a_batch_rolls_it_back_and_routes_each_order_alone(node, stock, order_for):
    # given a snapshot that believes 6 units are free, then another order reserves 4 of them
    here = node("HERE")
    a, b = SkuFactory(), SkuFactory()
    stock(a, here, 6)
    stock(b, here, 5)
    one, two = order_for([(a, 3)]), order_for([(a, 2), (b, 1)])
    network = _snapshot_for([one, two])
    other = OrderLineFactory(sku=a, quantity=4)
    inventory.stock_reserve(lines=[inventory.LineDemand(other.pk, a.pk, {here.pk: 4})], actor="test:other")
    # when both are routed as one batch: its all-or-nothing reservation finds 2 units, not 5
    results = {r.order_id: r for r in services.orders_route(order_ids=[one.pk, two.pk], network=network,
                                                             actor="router:test")}  # fmt: skip
    # then nothing of the batch stayed; one by one, the order that fits is routed whole
    assert StockLevel.objects.get(sku=a, location=here).reserved == 4 + sum(
        Reservation.objects.filter(order_line__order__in=[one, two], sku=a, status="active").values_list(
            "quantity", flat=True
        )
    )
    assert results[two.pk].routed and len(results[two.pk].shipment_ids) == 1
    assert not results[one.pk].routed
    assert RoutingDecision.objects.filter(order=two).count() == 1
    assert NodeCapacityDay.objects.get(location=here).capacity_used == 1
    assert_stock_invariants()


def test_the_batch_statement_leaves_line_statuses_consistent_with_their_quantities(node, stock, order_for):
    # The batch statement is the one writer of OrderLine.status outside orders' services: after a batch,
    # every line is as order_lines_status_set would leave it.
    # given orders with a whole line, a partly cancelled line and a wholly cancelled line
    here = node("HERE")
    skus = [SkuFactory() for _ in range(3)]
    for sku in skus:
        stock(sku, here, 20)
    orders = [order_for([(skus[0], 2)]) for _ in range(3)]
    partly = OrderLineFactory(order=orders[1], sku=skus[1], quantity=3, quantity_cancelled=1)
    wholly = OrderLineFactory(
        order=orders[2], sku=skus[2], quantity=2, quantity_cancelled=2, status=LineStatus.CANCELLED
    )
    network = _snapshot_for(orders)
    # when they are routed as one batch, in five statements
    with count_statements() as sent:
        results = services.orders_route(order_ids=[o.pk for o in orders], network=network, actor="router:test")
    assert len(sent) <= 5 and all(r.routed for r in results)
    # then a cancelled line stays cancelled, and every other line is allocated with exactly its open units reserved
    wholly.refresh_from_db()
    assert wholly.status == LineStatus.CANCELLED
    assert not Reservation.objects.filter(order_line=wholly).exists()
    for order in orders:
        for line in order.lines.exclude(pk=wholly.pk):
            reserved = sum(
                Reservation.objects.filter(order_line=line, status=ReservationStatus.ACTIVE).values_list(
                    "quantity", flat=True
                )
            )
            assert line.status == LineStatus.ALLOCATED
            assert reserved == line.quantity - line.quantity_cancelled - line.quantity_shipped
    assert Reservation.objects.get(order_line=partly).quantity == 2
    assert_stock_invariants()


def test_orders_that_backorder_or_open_cases_are_decided_in_the_batch_in_a_constant_number_of_statements(
    node, stock, order_for
):
    # given a whole order, one routable in part (its other SKU is stocked nowhere), one whose only SKU may
    # backorder, one with nothing routable, and a mixed one that routes, backorders and opens a case
    here = node("HERE")
    stocked, nowhere, waits = SkuFactory(), SkuFactory(), SkuFactory(allow_backorder=True)
    stock(stocked, here, 50)
    whole = order_for([(stocked, 1)])
    part = order_for([(stocked, 2), (nowhere, 1)])
    backorder = order_for([(waits, 3)])
    stuck = order_for([(nowhere, 2)])
    mixed = order_for([(stocked, 1), (waits, 1), (nowhere, 1)])
    orders = [whole, part, backorder, stuck, mixed]
    network = _snapshot_for(orders)
    # when they are routed as one batch
    with count_statements() as sent:
        results = {
            r.order_id: r
            for r in services.orders_route(order_ids=[o.pk for o in orders], network=network, actor="router:test")
        }
    # then one transaction of seven statements decided them all (the two extra: open → backordered, the cases)
    assert len(sent) <= 7, "\n".join(q[:150] for q in sent.statements)
    assert sent.commits == 1
    # and each order is left as the general path leaves it
    for order in orders:
        order.refresh_from_db()
    assert whole.status == part.status == mixed.status == OrderStatus.RELEASED
    assert backorder.status == OrderStatus.BACKORDERED
    assert stuck.status == OrderStatus.OPEN
    assert [r.outcome for r in (results[o.pk] for o in orders)] == [
        "routed", "routed", "backordered", "exception", "routed"
    ]  # fmt: skip
    for order in orders:
        decision = RoutingDecision.objects.get(order=order)
        assert decision.pk == results[order.pk].decision_id and decision.explanation and decision.candidates is not None
        routed = order.events.get(kind="routed")
        assert routed.data["outcome"] == decision.outcome
        planned = {pl["order_line"] for lines in decision.plan.values() for pl in lines}
        assert {u["order_line"] for u in routed.data["unrouted"]} == set(
            order.lines.exclude(pk__in=planned).values_list("pk", flat=True)
        )
    line_status = {
        (ln.order_id, ln.sku_id): ln.status
        for ln in OrderLine.objects.filter(order__in=orders)
    }  # fmt: skip
    assert line_status[(part.pk, nowhere.pk)] == LineStatus.OPEN
    assert line_status[(backorder.pk, waits.pk)] == LineStatus.BACKORDERED
    assert line_status[(mixed.pk, waits.pk)] == LineStatus.BACKORDERED
    assert line_status[(mixed.pk, stocked.pk)] == LineStatus.ALLOCATED
    assert results[mixed.pk].backordered_line_ids == [
        OrderLine.objects.get(order=mixed, sku=waits).pk
    ]  # fmt: skip
    assert [(e.from_status, e.to_status, e.reason) for e in backorder.events.filter(kind="status_changed")] == [
        (OrderStatus.OPEN, OrderStatus.BACKORDERED, "no stock to route")
    ]
    assert not stuck.events.filter(kind="status_changed").exists()
    for order in (part, stuck, mixed):
        [case] = ExceptionCase.objects.filter(order=order)
        assert results[order.pk].exception_case_ids == [case.pk]
        assert (case.kind, case.status, case.severity, case.sku_id) == (
            ExceptionKind.INSUFFICIENT_STOCK, CaseStatus.OPEN, Severity.HIGH, nowhere.pk
        )  # fmt: skip
        assert case.title == f"Not enough stock for order {order.external_id}" and nowhere.code in case.detail
        assert case.due_at == order.ship_by and case.opened_by == "router:test"
        opened = order.events.get(kind="exception_opened")
        assert opened.data == {"case_id": case.pk, "exception_kind": case.kind, "severity": case.severity}
    assert not ExceptionCase.objects.filter(order__in=[whole, backorder]).exists()
    assert sum(NodeCapacityDay.objects.values_list("capacity_used", flat=True)) == Shipment.objects.count() == 3
    assert_stock_invariants()
    # and routed again, the order with an open case takes the general path, which keeps the one case
    again = services.orders_route(order_ids=[stuck.pk], actor="router:test")
    assert again[0].exception_case_ids == [ExceptionCase.objects.get(order=stuck).pk]


def test_a_case_opened_since_the_read_sends_the_batch_back_to_the_general_path(node, stock, order_for):
    # given an order with nothing routable, read for the batch; then a person opens its no-node case
    here = node("HERE")
    stocked, nowhere = SkuFactory(), SkuFactory()
    stock(stocked, here, 5)
    fine, stuck = order_for([(stocked, 1)]), order_for([(nowhere, 1)])
    preview = orders_to_route([fine.pk, stuck.pk])
    network = _snapshot_for([fine, stuck])
    case, _ = order_services.exception_case_open(
        kind=ExceptionKind.INSUFFICIENT_STOCK,
        title="by hand",
        actor="ops:test",
        order_id=stuck.pk,
        sku_id=nowhere.pk,
    )
    # when the batch routes them on that read
    with pytest.raises(batch.FastPathMiss), transaction.atomic(durable=True):
        batch.route_batch(order_ids=[fine.pk, stuck.pk], network=network, actor="router:test", now=None, fresh=preview)
    # then nothing of the batch stayed, and routed again the one case is kept
    assert not RoutingDecision.objects.exists() and not Shipment.objects.exists()
    results = services.orders_route(order_ids=[fine.pk, stuck.pk], actor="router:test")
    assert results[0].routed and results[1].exception_case_ids == [case.pk]
    assert ExceptionCase.objects.filter(order=stuck).count() == 1
    assert_stock_invariants()


def test_an_order_with_nothing_routable_put_on_hold_since_the_read_is_left_alone(node, stock, order_for):
    # given an order with nothing routable, read for the batch; then it is put on hold
    here = node("HERE")
    stocked, nowhere = SkuFactory(), SkuFactory()
    stock(stocked, here, 5)
    fine, stuck = order_for([(stocked, 1)]), order_for([(nowhere, 1)])
    preview = orders_to_route([fine.pk, stuck.pk])
    network = _snapshot_for([fine, stuck])
    Order.objects.filter(pk=stuck.pk).update(on_hold=True)
    # when the batch routes them on that read, it rolls back
    with pytest.raises(batch.FastPathMiss), transaction.atomic(durable=True):
        batch.route_batch(order_ids=[fine.pk, stuck.pk], network=network, actor="router:test", now=None, fresh=preview)
    # then nothing was decided for the held order: no decision, no case
    assert not RoutingDecision.objects.exists() and not ExceptionCase.objects.exists()
    results = services.orders_route(order_ids=[fine.pk, stuck.pk], actor="router:test")
    assert results[0].routed and results[1].skipped == "on hold"
    assert not RoutingDecision.objects.filter(order=stuck).exists() and not ExceptionCase.objects.exists()
