"""Route and reserve on PostgreSQL: decisions, reservations, capacity, backorders and exceptions."""

from __future__ import annotations

from datetime import time, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from fulfillment import services
from fulfillment.models import NodeCapacityDay, RoutingConfig, RoutingDecision, Shipment, ShipmentStatus
from fulfillment.selectors import releasable_order_ids, retry_order_ids
from inventory.models import Reservation, ReservationStatus, StockLevel
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, LineStatus, OrderEvent, OrderStatus
from tests.factories import SkuFactory
from tests.inventory.helpers import assert_stock_invariants

pytestmark = pytest.mark.django_db


def test_one_node_beats_a_split_and_everything_is_written_in_one_go(node, stock, order_for, skus):
    # given a near node with one SKU each, and a far node with both
    near_a, near_b, far = node("SFO", "94107"), node("OAK", "94607"), node("NJ", "07001")
    a, b = skus[0], skus[1]
    stock(a, near_a, 5)
    stock(b, near_b, 5)
    stock(a, far, 5)
    stock(b, far, 5)
    order = order_for([(a, 2), (b, 1)])
    # when
    result = services.order_route(order_id=order.pk, actor="router")
    # then one shipment from the far node, stock reserved there, and the decision explains every node
    [shipment] = Shipment.objects.filter(order=order)
    assert (shipment.location, shipment.status, shipment.kind) == (far, ShipmentStatus.RELEASED, "ship")
    assert sorted((sl.order_line.sku_id, sl.quantity, sl.reservation.location_id) for sl in shipment.lines.all()) == [
        (a.pk, 2, far.pk),
        (b.pk, 1, far.pk),
    ]
    assert StockLevel.objects.get(sku=a, location=far).reserved == 2
    decision = RoutingDecision.objects.get(order=order)
    assert decision.pk == result.decision_id and decision.outcome == "routed" and decision.config_version
    why = {c["node"]: c["why"] for c in decision.candidates}
    assert why["NJ"] == "chosen" and why["SFO"].startswith("covers 2 of 3 units")
    order.refresh_from_db()
    assert order.status == OrderStatus.RELEASED
    assert set(order.lines.values_list("status", flat=True)) == {LineStatus.ALLOCATED}
    assert list(order.events.filter(kind="status_changed").values_list("to_status", flat=True).order_by("pk")) == [
        OrderStatus.ALLOCATED,
        OrderStatus.RELEASED,
    ]
    assert order.events.filter(kind="routed").count() == 1
    assert NodeCapacityDay.objects.get(location=far).capacity_used == 1
    assert_stock_invariants()


def test_capacity_is_respected_and_a_full_network_opens_an_exception(node, stock, order_for, skus):
    # given one node with capacity for one shipment a day
    only = node("ONE", daily_capacity=1)
    stock(skus[0], only, 10)
    first, second = order_for([(skus[0], 1)]), order_for([(skus[0], 1)])
    # when two orders are routed
    results = services.orders_route(order_ids=[first.pk, second.pk], actor="router")
    # then the second finds the node full: no reservation, an over-capacity case, order still open
    assert results[0].routed and not results[1].routed
    assert NodeCapacityDay.objects.get(location=only).capacity_used == 1
    second.refresh_from_db()
    assert second.status == OrderStatus.OPEN
    case = ExceptionCase.objects.get(order=second)
    assert case.kind == ExceptionKind.OVER_CAPACITY and "ONE" in case.detail
    assert not Reservation.objects.filter(order_line__order=second).exists()
    assert RoutingDecision.objects.get(order=second).outcome == "exception"
    # an order with an open routing case waits for the retry queue, not the releasable one
    assert second.pk not in releasable_order_ids(limit=10)
    assert second.pk in retry_order_ids(limit=10)


def test_cutoff_past_for_the_ship_by_opens_ship_by_unreachable(node, stock, order_for, skus):
    # given a node whose cutoff already passed today and an order that must ship within the hour (at noon: an
    # hour later is still today, whatever the time of the run)
    now = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    gone = node("GONE", cutoff_time=time(0, 0, 1), timezone="UTC")
    stock(skus[0], gone, 5)
    order = order_for([(skus[0], 1)], ship_by=now + timedelta(hours=1))
    # when
    services.order_route(order_id=order.pk, actor="router", now=now)
    # then
    case = ExceptionCase.objects.get(order=order)
    assert case.kind == ExceptionKind.SHIP_BY_UNREACHABLE and "GONE" in case.detail
    assert not Shipment.objects.filter(order=order).exists()
    assert StockLevel.objects.get(sku=skus[0], location=gone).reserved == 0


def test_short_stock_backorders_when_allowed_and_opens_a_case_otherwise(node, stock, order_for):
    node("DC")
    waits, cannot = SkuFactory(allow_backorder=True), SkuFactory()
    backorder, exception = order_for([(waits, 1)]), order_for([(cannot, 1)])
    # when
    services.orders_route(order_ids=[backorder.pk, exception.pk], actor="router")
    # then
    backorder.refresh_from_db()
    exception.refresh_from_db()
    assert backorder.status == OrderStatus.BACKORDERED
    assert backorder.lines.get().status == LineStatus.BACKORDERED
    assert not ExceptionCase.objects.filter(order=backorder).exists()
    assert exception.status == OrderStatus.OPEN
    assert ExceptionCase.objects.get(order=exception).kind == ExceptionKind.INSUFFICIENT_STOCK


def test_a_later_attempt_routes_and_resolves_the_case(node, stock, order_for, skus):
    dc = node("DC")
    order = order_for([(skus[0], 2)])
    services.order_route(order_id=order.pk, actor="router")
    case = ExceptionCase.objects.get(order=order)
    # when stock arrives and the retry runs
    stock(skus[0], dc, 2)
    result = services.orders_route(order_ids=retry_order_ids(limit=10), actor="router")[0]
    # then
    assert result.routed
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED and "routing decision" in case.resolution_note


def test_marketplace_fulfilled_and_held_orders_are_never_routed(node, stock, order_for, skus):
    dc = node("DC")
    stock(skus[0], dc, 5)
    afn = order_for([(skus[0], 1)], marketplace_fulfilled=True)
    held = order_for([(skus[0], 1)], on_hold=True)
    results = services.orders_route(order_ids=[afn.pk, held.pk], actor="router")
    assert [r.skipped for r in results] == ["fulfilled by the marketplace: never routed", "on hold"]
    assert not Reservation.objects.exists() and not RoutingDecision.objects.exists()
    assert afn.pk not in releasable_order_ids(limit=10) and held.pk not in releasable_order_ids(limit=10)


def test_channel_policy_keeps_a_channel_off_a_node(node, stock, order_for, skus, account):
    # given a store near the buyer that Amazon orders may not use, and a far DC
    store, dc = node("STORE", "94107"), node("DC", "10001")
    stock(skus[0], store, 5)
    stock(skus[0], dc, 5)
    config = RoutingConfig.objects.create(name="rules")
    config.channel_policies.create(channel_kind="amazon", location=store, note="marketplace SLAs")
    order = order_for([(skus[0], 1)])
    # when
    services.order_route(order_id=order.pk, actor="router")
    # then
    assert Shipment.objects.get(order=order).location == dc
    decision = RoutingDecision.objects.get(order=order)
    assert decision.config_version == "rules@1"
    assert "channel policy" in {c["node"]: c["why"] for c in decision.candidates}["STORE"]


def test_config_changes_apply_to_the_next_decision(node, stock, order_for, skus):
    a, b = node("A", "90001"), node("B", "10001")
    stock(skus[0], a, 1)
    stock(skus[1], b, 1)
    config = RoutingConfig.objects.create(name="rules", max_shipments=1)
    first = order_for([(skus[0], 1), (skus[1], 1)])
    services.order_route(order_id=first.pk, actor="router")
    assert Shipment.objects.filter(order=first).count() == 1  # ship partial, one line waits
    config.max_shipments = 2
    config.save()
    services.routing_config_bump(config=config, actor="manager")
    second_sku_a, second_sku_b = SkuFactory(), SkuFactory()
    stock(second_sku_a, a, 1)
    stock(second_sku_b, b, 1)
    second = order_for([(second_sku_a, 1), (second_sku_b, 1)])
    services.order_route(order_id=second.pk, actor="router")
    assert Shipment.objects.filter(order=second).count() == 2
    assert RoutingDecision.objects.get(order=second).config_version == "rules@2"


def test_loading_inputs_takes_a_constant_number_of_queries(node, stock, order_for, account):
    from fulfillment.selectors import network_snapshot, orders_to_route

    dc = node("DC")
    small_skus = [SkuFactory() for _ in range(1)]
    big_skus = [SkuFactory() for _ in range(5)]
    for sku in small_skus + big_skus:
        stock(sku, dc, 5)
    small = order_for([(s, 1) for s in small_skus])
    big = order_for([(s, 1) for s in big_skus])
    RoutingConfig.objects.create(name="rules")
    counts = []
    for order, sku_list in ((small, small_skus), (big, big_skus)):
        with CaptureQueriesContext(connection) as ctx:
            orders_to_route([order.pk])
            network_snapshot(sku_ids=[s.pk for s in sku_list])
        counts.append(len(ctx.captured_queries))
    # one for the orders and lines, six for the network whatever the batch
    assert counts[0] == counts[1] == 7


def test_backorder_filled_on_receipt_is_released_as_a_shipment(node, stock, order_for):
    # given a backordered order
    dc = node("DC")
    sku = SkuFactory(allow_backorder=True)
    order = order_for([(sku, 2)])
    services.order_route(order_id=order.pk, actor="router")
    order.refresh_from_db()
    assert order.status == OrderStatus.BACKORDERED
    # when inventory receives stock and allocates the backorder (a reservation with no shipment)
    from inventory import services as inventory

    inventory.stock_receive(sku=sku, location=dc, quantity=2, actor="test")
    services.backorders_fill(sku_ids=[sku.pk], location_id=dc.pk, actor="receiving")
    assert Reservation.objects.filter(order_line__order=order, status=ReservationStatus.ACTIVE).count() == 1
    # then the retry queue finds it and releases it to the node without reserving twice
    assert order.pk in retry_order_ids(limit=10)
    services.orders_route(order_ids=[order.pk], actor="router")
    shipment = Shipment.objects.get(order=order)
    assert shipment.lines.get().reservation.status == ReservationStatus.ACTIVE
    assert StockLevel.objects.get(sku=sku, location=dc).reserved == 2
    order.refresh_from_db()
    assert order.status == OrderStatus.RELEASED
    assert_stock_invariants()


def test_events_name_the_router(node, stock, order_for, skus):
    dc = node("DC")
    stock(skus[0], dc, 1)
    order = order_for([(skus[0], 1)])
    services.order_route(order_id=order.pk, actor="router:test")
    assert set(OrderEvent.objects.filter(order=order).exclude(kind="created").values_list("actor", flat=True)) == {
        "router:test"
    }
