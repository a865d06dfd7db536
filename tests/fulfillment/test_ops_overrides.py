"""Overrides a person applies (cancel units, backorder, bulk reroute, resend a confirmation), detection in
seconds (scans open cases at once; the detector finds ship-by at risk and late shipments), and the
demo's simulated warehouse driving an order to Delivered over HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from channels.models import OutboxKind, OutboxMessage
from fulfillment import services
from fulfillment.errors import CancelRefused, InvalidInput
from fulfillment.models import Shipment, ShipmentStatus
from fulfillment.services import overrides
from fulfillment.services.detection import exceptions_detect
from orders import services as order_services
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, LineStatus, OrderEvent, OrderStatus
from orders.services.exception_queue import CASE_RULES
from tests.console import page_to_end
from tests.inventory.helpers import assert_stock_invariants

pytestmark = pytest.mark.django_db


@pytest.fixture
def routed(node, stock, order_for, skus):
    dc = node("DC", "94107")
    alt = node("ALT", "10001")
    for location in (dc, alt):
        stock(skus[0], location, 5)
        stock(skus[1], location, 5)
    order = order_for([(skus[0], 2), (skus[1], 1)])
    services.order_route(order_id=order.pk, actor="router")
    return order, Shipment.objects.get(order=order), dc, alt


def _ship(shipment, ups, number="1Z1"):
    services.shipment_acknowledge(shipment=shipment.pk, actor="wms:dc", external_reference="W1")
    services.shipment_pick_start(shipment=shipment.pk, actor="wms:dc")
    services.shipment_pack(shipment=shipment.pk, actor="wms:dc")
    return services.shipment_ship(
        shipment=shipment.pk,
        carrier_code="UPS",
        tracking_number=number,
        shipped_at=timezone.now() - timedelta(minutes=1),
        actor="wms:dc",
    )


def test_cancelling_one_line_releases_its_stock_and_queues_the_channel_cancellation(routed, manager):
    order, shipment, _, _ = routed
    line = order.lines.order_by("pk").first()
    # when a manager cancels 1 of the 2 units of the first line
    result = overrides.order_units_cancel(
        order_id=order.pk, quantities={line.pk: 1}, reason="customer changed size", actor=manager
    )
    # then the unit is cancelled on the shipment and the line, and the channel hears it through the outbox
    line.refresh_from_db()
    assert (line.quantity_cancelled, result.cancelled) == (1, {line.pk: 1})
    assert result.shipments == [shipment.pk]
    message = OutboxMessage.objects.get(order=order, kind=OutboxKind.CANCELLATION)
    assert message.payload["lines"][0]["quantity"] == 1
    assert (
        OrderEvent.objects.filter(order=order, kind="line_cancelled").exists()
        or OrderEvent.objects.filter(order=order, kind="shipment_line_cancelled").exists()
    )
    assert_stock_invariants()


def test_cancelling_the_whole_order_cancels_it_and_settles_its_routing_cases(routed, manager):
    order, _, _, _ = routed
    case, _ = order_services.exception_case_open(
        kind=ExceptionKind.NO_NODE, title="no node", order_id=order.pk, actor="router"
    )
    result = overrides.order_units_cancel(order_id=order.pk, quantities=None, reason="out of stock", actor=manager)
    order.refresh_from_db()
    case.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED and result.order_status == OrderStatus.CANCELLED
    assert case.status == CaseStatus.RESOLVED and case.pk in result.settled_cases
    assert set(order.lines.values_list("status", flat=True)) == {LineStatus.CANCELLED}
    assert_stock_invariants()


def test_a_cancel_of_units_being_picked_changes_nothing(routed, manager):
    order, shipment, _, _ = routed
    services.shipment_acknowledge(shipment=shipment.pk, actor="wms:dc", external_reference="W1")
    services.shipment_pick_start(shipment=shipment.pk, actor="wms:dc")
    line = order.lines.order_by("pk").first()
    with pytest.raises(CancelRefused, match="picked or packed"):
        overrides.order_units_cancel(order_id=order.pk, quantities={line.pk: 1}, reason="x", actor=manager)
    line.refresh_from_db()
    assert line.quantity_cancelled == 0
    assert not OutboxMessage.objects.filter(order=order, kind=OutboxKind.CANCELLATION).exists()


@pytest.mark.parametrize(
    ("quantities", "message"),
    [({}, "at least one line"), ({999999: 1}, "not a line"), ("too-many", "only 2 open")],
)
def test_bad_cancel_input_gets_a_clear_error_and_changes_nothing(routed, manager, quantities, message):
    order, _, _, _ = routed
    if quantities == "too-many":
        quantities = {order.lines.order_by("pk").first().pk: 3}
    with pytest.raises(InvalidInput, match=message):
        overrides.order_units_cancel(order_id=order.pk, quantities=quantities, reason="x", actor=manager)
    assert not OrderEvent.objects.filter(order=order, kind__in=["lines_cancelled", "shipment_line_cancelled"]).exists()


def test_bulk_reroute_applies_the_good_ones_and_names_the_refused(routed, order_for, skus, manager):
    order, _, _, _ = routed
    cancelled = order_for([(skus[0], 1)], status=OrderStatus.CANCELLED)
    result = overrides.orders_reroute_bulk(order_ids=[order.pk, cancelled.pk], reason="DC flooded", actor=manager)
    assert result.done == [order.pk]
    assert list(result.failed) == [cancelled.pk] and "nothing to reroute" in result.failed[cancelled.pk]
    assert OrderEvent.objects.filter(order=order, kind="rerouted").count() == 1


def test_backorder_lets_the_short_lines_wait_and_settles_the_case(node, stock, order_for, skus, manager):
    dc = node("DC", "94107")
    stock(skus[0], dc, 1)
    order = order_for([(skus[0], 3)])
    services.order_route(order_id=order.pk, actor="router")
    assert ExceptionCase.objects.filter(order=order).exclude(status=CaseStatus.RESOLVED).exists()
    overrides.order_backorder(order_id=order.pk, reason="PO arriving Friday", actor=manager)
    order.refresh_from_db()
    assert order.lines.get().is_backorder_allowed
    assert (
        not ExceptionCase.objects.filter(order=order, kind__in=overrides.ROUTING_CASE_KINDS)
        .exclude(status=CaseStatus.RESOLVED)
        .exists()
    )
    assert OrderEvent.objects.filter(order=order, kind="backorder_allowed").count() == 1
    assert_stock_invariants()


def test_resending_a_ship_confirmation_queues_a_second_message(routed, ups, manager):
    order, shipment, _, _ = routed
    _ship(shipment, ups)
    assert OutboxMessage.objects.filter(order=order, kind=OutboxKind.SHIP_CONFIRMATION).count() == 1
    overrides.shipment_confirmation_resend(shipment_id=shipment.pk, reason="channel lost it", actor=manager)
    messages = OutboxMessage.objects.filter(order=order, kind=OutboxKind.SHIP_CONFIRMATION).order_by("pk")
    assert messages.count() == 2
    assert messages[1].payload["tracking_number"] == "1Z1" and ":resend-" in messages[1].dedupe_key


def test_resending_for_an_unshipped_shipment_is_refused(routed, manager):
    _, shipment, _, _ = routed
    with pytest.raises(InvalidInput, match="has not shipped"):
        overrides.shipment_confirmation_resend(shipment_id=shipment.pk, reason="x", actor=manager)


def test_a_late_carrier_scan_opens_its_case_at_once_and_the_delivery_settles_tracking_cases(routed, ups):
    order, shipment, _, _ = routed
    _ship(shipment, ups, "1ZLATE")
    now = timezone.now()
    services.tracking_events_record(
        shipment=shipment.pk,
        events=[services.TrackingInput(status="delayed", occurred_at=now, description="weather", dedupe_key="d1")],
        source="carrier:ups",
        actor="carrier:ups",
    )
    case = ExceptionCase.objects.get(kind=ExceptionKind.DELIVERY_LATE, order=order)
    assert case.dedupe_key == f"delivery_late:shipment={shipment.pk}" and case.due_at is not None
    assert case.shipment_id == shipment.pk
    # a replay opens nothing more
    services.tracking_events_record(
        shipment=shipment.pk,
        events=[services.TrackingInput(status="delayed", occurred_at=now, description="weather", dedupe_key="d1")],
        source="carrier:ups",
        actor="carrier:ups",
    )
    assert ExceptionCase.objects.filter(order=order, kind=ExceptionKind.DELIVERY_LATE).count() == 1
    services.tracking_events_record(
        shipment=shipment.pk,
        events=[services.TrackingInput(status="exception", occurred_at=now + timedelta(minutes=1), dedupe_key="e1")],
        source="carrier:ups",
        actor="carrier:ups",
    )
    exception = ExceptionCase.objects.get(kind=ExceptionKind.DELIVERY_EXCEPTION, order=order)
    services.tracking_events_record(
        shipment=shipment.pk,
        events=[services.TrackingInput(status="delivered", occurred_at=now + timedelta(minutes=2), dedupe_key="v1")],
        source="carrier:ups",
        actor="carrier:ups",
    )
    exception.refresh_from_db()
    assert exception.status == CaseStatus.RESOLVED
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED


def test_the_detector_finds_ship_by_at_risk_and_late_shipments_then_settles_them(routed, ups, settings):
    settings.WAYBILL_PICK_MINUTES = 120
    order, shipment, _, _ = routed
    now = timezone.now()
    Shipment.objects.filter(pk=shipment.pk).update(ship_by=now + timedelta(minutes=30))
    first = exceptions_detect(now=now)
    assert len(first.at_risk) == 1
    assert exceptions_detect(now=now).at_risk == []  # once per shipment
    late = exceptions_detect(now=now + timedelta(hours=1))
    assert len(late.late) == 1
    case = ExceptionCase.objects.get(pk=late.late[0])
    assert (case.kind, case.severity, case.order_id) == (ExceptionKind.LATE_SHIPMENT, "critical", order.pk)
    _ship(Shipment.objects.get(pk=shipment.pk), ups)
    settled = exceptions_detect(now=now + timedelta(hours=1))
    assert set(settled.settled) == {first.at_risk[0], late.late[0]}


@pytest.mark.django_db(transaction=True)
def test_the_simulated_warehouse_takes_an_order_to_delivered_over_http(live_server, routed, ups, settings):
    from fulfillment.warehouse_sim import SimConfig, WarehouseSimulator

    order, shipment, dc, alt = routed
    settings.TRACKING_WEBHOOK_SECRET = "test-webhook-secret"
    keys = {node.code: services.node_token_create(location=node, name="sim", actor="test")[1] for node in (dc, alt)}
    config = SimConfig(
        base_url=live_server.url,
        step_seconds=0,
        short_pick_rate=0,
        delay_rate=0,
        exception_rate=0,
        webhook_secret="test-webhook-secret",
        seed=1,
    )
    sim = WarehouseSimulator(config, keys)
    for tick in range(12):
        stats = sim.tick(now=float(tick))
        assert stats.errors == []
        order.refresh_from_db()
        if order.status == OrderStatus.DELIVERED:
            break
    shipment.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert shipment.status == ShipmentStatus.DELIVERED and shipment.tracking_number
    assert shipment.tracking_events.filter(source__startswith="carrier:").count() == 3
    assert OutboxMessage.objects.filter(order=order, kind=OutboxKind.SHIP_CONFIRMATION).count() == 1


def test_split_then_merge_a_shipment_moves_lines_and_their_reservations(routed, manager):
    order, shipment, dc, _ = routed
    first, second = list(order.lines.order_by("pk"))
    new = overrides.shipment_split(
        shipment_id=shipment.pk, order_line_ids=[second.pk], reason="oversize item ships alone", actor=manager
    )
    assert (new.location_id, new.status) == (dc.pk, ShipmentStatus.RELEASED)
    assert list(new.lines.values_list("order_line_id", flat=True)) == [second.pk]
    assert list(shipment.lines.values_list("order_line_id", flat=True)) == [first.pk]
    assert new.lines.get().reservation_id is not None
    with pytest.raises(InvalidInput, match="at least one line"):
        overrides.shipment_split(shipment_id=shipment.pk, order_line_ids=[first.pk], reason="x", actor=manager)
    kept = overrides.shipments_merge(shipment_ids=[new.pk, shipment.pk], reason="one box after all", actor=manager)
    new.refresh_from_db()
    assert kept.pk == shipment.pk and new.status == ShipmentStatus.CANCELLED
    assert sorted(kept.lines.values_list("order_line_id", flat=True)) == [first.pk, second.pk]
    assert OrderEvent.objects.filter(order=order, kind__in=["shipment_split", "shipments_merged"]).count() == 2
    assert_stock_invariants()


def test_a_started_shipment_is_not_split(routed, manager):
    order, shipment, _, _ = routed
    services.shipment_acknowledge(shipment=shipment.pk, actor="wms:dc", external_reference="W1")
    services.shipment_pick_start(shipment=shipment.pk, actor="wms:dc")
    with pytest.raises(CancelRefused, match="the node has started it"):
        overrides.shipment_split(
            shipment_id=shipment.pk, order_line_ids=[order.lines.order_by("pk").last().pk], reason="x", actor=manager
        )
    assert Shipment.objects.filter(order=order).count() == 1


def test_the_override_api_cancels_and_splits_with_roles(api_client, routed, manager, agent):
    order, shipment, _, _ = routed
    line = order.lines.order_by("pk").last()
    api_client.force_authenticate(agent)
    denied = api_client.post(f"/api/v1/orders/{order.pk}/split-shipment/", {}, format="json")
    assert denied.status_code == 403
    api_client.force_authenticate(manager)
    split = api_client.post(
        f"/api/v1/orders/{order.pk}/split-shipment/",
        {"shipment": shipment.pk, "order_lines": [line.pk], "reason": "ships alone"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="split-1",
    )
    assert split.status_code == 200, split.json()
    assert Shipment.objects.filter(order=order, status="released").count() == 2
    refused = api_client.post(
        f"/api/v1/orders/{order.pk}/cancel/",
        {"reason": "x", "lines": [{"order_line": line.pk, "quantity": 5}]},
        format="json",
    )
    assert refused.status_code == 400 and "only 1 open" in refused.json()["detail"]
    done = api_client.post(
        f"/api/v1/orders/{order.pk}/cancel/",
        {"reason": "buyer asked", "initiator": "buyer", "lines": [{"order_line": line.pk, "quantity": 1}]},
        format="json",
    )
    assert done.status_code == 200 and done.json()["cancelled"] == {str(line.pk): 1}
    assert OutboxMessage.objects.filter(order=order, kind=OutboxKind.CANCELLATION).exists()


def test_shipments_queue_bulk_reroute_over_all_matching_and_csv(client, routed, manager):
    order, shipment, _, _ = routed
    client.force_login(manager)
    page = client.get("/fulfillment/shipments/", {"node": "DC"})
    assert page.status_code == 200 and str(shipment.pk) in page.content.decode()
    response = client.post(
        "/fulfillment/shipments/bulk/",
        {"action": "reroute", "reason": "DC closed", "select_all": "matching", "query": "node=DC"},
        follow=True,
    )
    assert "reroute: 1 of 1 order(s) done" in response.content.decode()
    assert OrderEvent.objects.filter(order=order, kind="rerouted").count() == 1
    body = b"".join(client.get("/fulfillment/shipments/export.csv", {"node": "DC"}).streaming_content).decode()
    assert body.splitlines()[0].startswith("id,order,node") and str(shipment.pk) in body


def test_a_detected_case_gets_its_kinds_due_time_and_owner(routed, manager, settings):
    # given late shipments go to the manager, and nobody is named for ship-by at risk
    settings.WAYBILL_CASE_OWNERS = {ExceptionKind.LATE_SHIPMENT: manager.username}
    order, shipment, _, _ = routed
    now = timezone.now()
    Shipment.objects.filter(pk=shipment.pk).update(ship_by=now - timedelta(minutes=5))
    # when the detector finds the shipment past its ship-by, and a ship-by at risk case opens for the order
    before = timezone.now()
    late = exceptions_detect(now=now)
    at_risk, _ = order_services.exception_case_open(
        kind=ExceptionKind.SHIP_BY_AT_RISK, title="at risk", order_id=order.pk, actor="detector"
    )
    after = timezone.now()
    # then each case is due by its kind's rule, and only the late shipment has an owner
    case = ExceptionCase.objects.get(pk=late.late[0])
    assert case.owner_id == manager.pk
    late_minutes = timedelta(minutes=CASE_RULES[ExceptionKind.LATE_SHIPMENT].due_minutes)
    risk_minutes = timedelta(minutes=CASE_RULES[ExceptionKind.SHIP_BY_AT_RISK].due_minutes)
    assert before + late_minutes <= case.due_at <= after + late_minutes
    assert at_risk.owner_id is None
    assert before + risk_minutes <= at_risk.due_at <= after + risk_minutes
    # and a second detector pass refreshes the same case instead of opening another
    exceptions_detect(now=now)
    assert ExceptionCase.objects.filter(kind=ExceptionKind.LATE_SHIPMENT, order=order).count() == 1


def test_the_shipments_queue_sorts_by_ship_by_soonest_and_pages_past_those_without_one(
    client, node, stock, order_for, skus, manager
):
    # given 9 released shipments, 4 with a ship-by and 5 without
    dc = node("DC", "94107")
    stock(skus[0], dc, 20)
    orders = [order_for([(skus[0], 1)]) for _ in range(9)]
    services.orders_route(order_ids=[o.pk for o in orders], actor="router")
    shipments = list(Shipment.objects.filter(order__in=orders).order_by("pk").values_list("pk", flat=True))
    now = timezone.now()
    dated = shipments[:4][::-1]  # the latest shipment is due first
    for hours, pk in enumerate(dated, start=1):
        Shipment.objects.filter(pk=pk).update(ship_by=now + timedelta(hours=hours))
    Shipment.objects.filter(pk__in=shipments[4:]).update(ship_by=None)
    client.force_login(manager)
    # when the queue sorted by urgency is paged 3 at a time to its end
    seen = page_to_end(client, "/fulfillment/shipments/?ordering=ship_by&page_size=3", rows="shipments")
    # then the soonest ship-by comes first and every shipment shows once
    assert seen[:4] == dated
    assert sorted(seen) == sorted(shipments)
    assert 'value="ship_by" selected' in client.get("/fulfillment/shipments/?ordering=ship_by").content.decode()
