"""Tracking checks, tasks, and the fulfilment console screens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from fulfillment import services, tasks
from fulfillment.models import Shipment, ShipmentStatus
from fulfillment.services import TrackingInput
from orders.models import ExceptionCase, ExceptionKind, OrderStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def shipped(node, stock, order_for, skus, ups):
    dc = node("DC", daily_capacity=50)
    stock(skus[0], dc, 5)
    # placed before it shipped 30 hours ago (a ship time before the order is refused)
    order = order_for([(skus[0], 1)], placed_at=timezone.now() - timedelta(hours=40))
    services.order_route(order_id=order.pk, actor="router")
    shipment = Shipment.objects.get(order=order)
    services.shipment_ship(
        shipment=shipment.pk,
        carrier_code="UPS",
        tracking_number="1ZCHK",
        shipped_at=timezone.now() - timedelta(hours=30),
        actor="wms",
    )
    return order, Shipment.objects.get(pk=shipment.pk)


def test_no_scan_after_n_hours_opens_one_case(shipped):
    order, shipment = shipped
    result = services.tracking_checks_run(actor="check")
    assert result.missing_scan == [shipment.pk]
    assert services.tracking_checks_run(actor="check").missing_scan == []
    assert ExceptionCase.objects.filter(order=order, kind=ExceptionKind.TRACKING_MISSING).count() == 1


def test_past_promised_delivery_opens_a_late_case(shipped):
    order, shipment = shipped
    Shipment.objects.filter(pk=shipment.pk).update(promised_delivery_at=timezone.now() - timedelta(hours=1))
    assert services.tracking_checks_run(actor="check").late == [shipment.pk]
    assert ExceptionCase.objects.get(order=order, kind=ExceptionKind.DELIVERY_LATE)


def test_an_older_scan_arriving_late_never_moves_the_parcel_back(shipped):
    order, shipment = shipped
    now = timezone.now()
    services.tracking_events_record(
        shipment=shipment.pk,
        events=[TrackingInput(status="out_for_delivery", occurred_at=now - timedelta(hours=1), dedupe_key="b")],
        source="carrier:ups",
        actor="tms",
    )
    services.tracking_events_record(
        shipment=shipment.pk,
        events=[TrackingInput(status="in_transit", occurred_at=now - timedelta(hours=5), dedupe_key="a")],
        source="carrier:ups",
        actor="tms",
    )
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.OUT_FOR_DELIVERY
    assert shipment.last_scan_at == now - timedelta(hours=1)
    services.tracking_events_record(
        shipment=shipment.pk,
        events=[TrackingInput(status="delivered", occurred_at=now, dedupe_key="c")],
        source="carrier:ups",
        actor="tms",
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED


def test_the_routing_task_takes_a_batch(node, stock, order_for, skus):
    dc = node("DC")
    stock(skus[0], dc, 10)
    orders = [order_for([(skus[0], 1)]) for _ in range(3)]
    assert tasks.route_releasable_task.delay(batch=2).get() == 3
    assert set(Shipment.objects.values_list("order_id", flat=True)) == {o.pk for o in orders}
    assert tasks.route_releasable_task.delay().get() == 0


def test_board_shows_a_nodes_columns_and_capacity(client, agent, node, stock, order_for, skus):
    dc = node("DC", daily_capacity=40)
    stock(skus[0], dc, 5)
    order = order_for([(skus[0], 1)], ship_by=timezone.now() - timedelta(hours=1))
    from fulfillment.models import RoutingConfig

    RoutingConfig.objects.create(name="rules", allow_late=True)
    services.order_route(order_id=order.pk, actor="router")
    client.force_login(agent)
    response = client.get(reverse("fulfillment:board"), {"node": "DC"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Capacity" in body and "1</strong> of 40" in body and "Late</strong> (1)" in body
    partial = client.get(reverse("fulfillment:board"), {"node": "DC"}, HTTP_HX_REQUEST="true")
    assert "<html" not in partial.content.decode()


def test_order_page_shows_why_this_node_in_constant_queries(client, agent, node, stock, order_for, skus):
    dc, far = node("DC", "94107"), node("FAR", "10001")
    stock(skus[0], dc, 5)
    stock(skus[0], far, 5)
    order = order_for([(skus[0], 1)])
    services.order_route(order_id=order.pk, actor="router")
    client.force_login(agent)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(reverse("orders:detail", args=[order.pk]))
    body = response.content.decode()
    assert "Why this node" in body and "farther:" in body
    assert len(ctx.captured_queries) < 25


def test_reroute_screen_needs_override_and_a_reason(client, agent, manager, node, stock, order_for, skus):
    dc, alt = node("DC", "94107"), node("ALT", "10001")
    stock(skus[0], dc, 5)
    stock(skus[0], alt, 5)
    order = order_for([(skus[0], 1)])
    services.order_route(order_id=order.pk, actor="router")
    url = reverse("fulfillment:reroute", args=[order.pk])
    client.force_login(agent)
    assert client.post(url, {"reason": "x", "location": alt.pk}).status_code == 403
    client.force_login(manager)
    client.post(url, {"reason": "", "location": alt.pk})
    assert not order.events.filter(kind="rerouted").exists()
    client.post(url, {"reason": "DC short-staffed", "location": alt.pk})
    assert order.events.get(kind="rerouted").actor == "manager"
    assert Shipment.objects.get(order=order, status=ShipmentStatus.RELEASED).location == alt


def test_shipment_detail_and_simulator_render(client, manager, shipped):
    order, shipment = shipped
    client.force_login(manager)
    detail = client.get(reverse("fulfillment:shipment", args=[shipment.pk]))
    assert detail.status_code == 200 and "1ZCHK" in detail.content.decode()
    sim = client.get(reverse("fulfillment:simulator"), {"days": 7})
    assert sim.status_code == 200
    body = sim.content.decode()
    assert "Split rate" in body and str(order) in body
    assert client.get(reverse("fulfillment:simulator"), {"days": 0}).status_code == 400
