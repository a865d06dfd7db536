"""The shipment lifecycle: ship, short pick and re-route, line cancel, manual reroute, store pickup."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from config.kernel.errors import InvalidTransition
from fulfillment import services
from fulfillment.errors import InvalidInput, RerouteRefused
from fulfillment.models import NodeCapacityDay, Shipment, ShipmentStatus
from fulfillment.signals import shipment_line_cancelled, shipment_shipped
from inventory.models import MovementReason, Reservation, ReservationStatus, StockLevel, StockMovement
from orders.models import ExceptionCase, ExceptionKind, LineStatus, OrderEvent, OrderStatus
from tests.inventory.helpers import assert_stock_invariants

pytestmark = pytest.mark.django_db


@pytest.fixture
def received():
    calls = []

    def receiver(sender, **kwargs):
        calls.append(kwargs)

    shipment_shipped.connect(receiver)
    shipment_line_cancelled.connect(receiver)
    yield calls
    shipment_shipped.disconnect(receiver)
    shipment_line_cancelled.disconnect(receiver)


@pytest.fixture
def routed(node, stock, order_for, skus):
    """An order of 2 x sku0 + 1 x sku1 routed to DC (a second node, ALT, holds the same stock)."""
    dc, alt = node("DC", "94107"), node("ALT", "10001")
    for location in (dc, alt):
        stock(skus[0], location, 5)
        stock(skus[1], location, 5)
    order = order_for([(skus[0], 2), (skus[1], 1)])
    services.order_route(order_id=order.pk, actor="router")
    shipment = Shipment.objects.get(order=order)
    assert shipment.location == dc
    return order, shipment, dc, alt


def test_shipping_consumes_reservations_counts_lines_and_signals_the_outbox(routed, ups, skus, received):
    order, shipment, dc, _ = routed
    shipped_at = timezone.now() - timedelta(minutes=5)
    # when the node reports picked, packed and shipped
    services.shipment_acknowledge(shipment=shipment.pk, actor="wms:dc", external_reference="WMS-1")
    services.shipment_pick_start(shipment=shipment.pk, actor="wms:dc")
    services.shipment_pack(shipment=shipment.pk, actor="wms:dc")
    services.shipment_ship(
        shipment=shipment.pk, carrier_code="UPS", tracking_number="1Z999", shipped_at=shipped_at, actor="wms:dc"
    )
    # then stock left the node through the ledger and the reservations are consumed
    shipment.refresh_from_db()
    assert (shipment.status, shipment.tracking_number, shipment.shipped_at) == ("shipped", "1Z999", shipped_at)
    assert shipment.tracking_url == "https://www.ups.com/track?tracknum=1Z999"
    level = StockLevel.objects.get(sku=skus[0], location=dc)
    assert (level.on_hand, level.reserved) == (3, 0)
    assert set(Reservation.objects.filter(order_line__order=order).values_list("status", flat=True)) == {
        ReservationStatus.CONSUMED
    }
    assert StockMovement.objects.filter(reason=MovementReason.SHIP, reference=f"shipment:{shipment.pk}").count() == 2
    order.refresh_from_db()
    assert order.status == OrderStatus.SHIPPED
    assert sorted(order.lines.values_list("quantity_shipped", "status")) == [(1, "shipped"), (2, "shipped")]
    event = OrderEvent.objects.get(order=order, kind="shipped")
    assert event.data["carrier"] == "UPS" and event.data["tracking_number"] == "1Z999"
    assert event.data["shipped_at"] == shipped_at.isoformat()
    assert event.data["channel_carrier_codes"]["amazon"] == "UPS"
    assert sorted(line["quantity"] for line in event.data["lines"]) == [1, 2]
    assert received == [{"signal": shipment_shipped, "shipment_id": shipment.pk, "order_id": order.pk,
                         "event_id": event.pk}]  # fmt: skip
    assert_stock_invariants()


def test_bad_ship_input_names_the_field_and_changes_nothing(routed, ups):
    _, shipment, _, _ = routed
    with pytest.raises(InvalidInput) as caught:
        services.shipment_ship(shipment=shipment.pk, carrier_code="NOPE", tracking_number="1", actor="wms")
    assert caught.value.field == "carrier"
    with pytest.raises(InvalidInput) as caught:
        services.shipment_ship(
            shipment=shipment.pk,
            carrier_code="UPS",
            tracking_number="1",
            shipped_at=timezone.now() + timedelta(days=1),
            actor="wms",
        )
    assert caught.value.field == "shipped_at"
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.RELEASED and not shipment.tracking_number


def test_short_pick_releases_the_missing_units_and_reroutes_only_those(routed, skus):
    order, shipment, dc, alt = routed
    line_a = order.lines.get(sku=skus[0])
    # when the node finds only 1 of the 2 units of sku0
    result = services.shipment_short_pick(
        shipment=shipment.pk, lines={line_a.pk: 1}, reason="bin empty", actor="wms:dc"
    )
    # then the shipment keeps 1 unit of sku0 and the sku1 line; the missing unit goes to ALT
    kept = {sl.order_line_id: (sl.quantity, sl.quantity_short, sl.quantity_open) for sl in shipment.lines.all()}
    assert kept[line_a.pk] == (2, 1, 1)
    assert result.reroute.routed
    [new] = Shipment.objects.filter(order=order).exclude(pk=shipment.pk)
    assert new.location == alt and [(sl.order_line_id, sl.quantity) for sl in new.lines.all()] == [(line_a.pk, 1)]
    # the node's on-hand went down by the missing unit; only the kept unit is reserved there
    level = StockLevel.objects.get(sku=skus[0], location=dc)
    assert (level.on_hand, level.reserved) == (4, 1)
    assert StockLevel.objects.get(sku=skus[0], location=alt).reserved == 1
    assert order.events.filter(kind="short_picked").count() == 1
    assert order.routing_decisions.filter(strategy="short-pick-reroute").exists()
    order.refresh_from_db()
    assert order.status == OrderStatus.RELEASED
    assert_stock_invariants()


def test_short_pick_with_nowhere_else_opens_a_case_and_cancels_an_empty_shipment(node, stock, order_for, skus):
    only = node("ONLY")
    stock(skus[0], only, 1)
    order = order_for([(skus[0], 1)])
    services.order_route(order_id=order.pk, actor="router")
    shipment = Shipment.objects.get(order=order)
    line = order.lines.get()
    result = services.shipment_short_pick(shipment=shipment.pk, lines={line.pk: 1}, actor="wms")
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.CANCELLED
    assert ExceptionCase.objects.get(pk=result.exception_case_id).kind == ExceptionKind.SHORT_PICK
    assert NodeCapacityDay.objects.get(location=only).capacity_used == 0
    order.refresh_from_db()
    assert order.status == OrderStatus.OPEN
    assert_stock_invariants()


def test_short_pick_over_the_open_quantity_is_refused(routed, skus):
    order, shipment, _, _ = routed
    line_a = order.lines.get(sku=skus[0])
    with pytest.raises(InvalidInput) as caught:
        services.shipment_short_pick(shipment=shipment.pk, lines={line_a.pk: 3}, actor="wms")
    assert caught.value.field == "lines" and "only 2 open" in str(caught.value)
    assert not order.events.filter(kind="short_picked").exists()


def test_cancelling_a_line_before_shipment_releases_its_reservation(routed, skus, received):
    order, shipment, dc, _ = routed
    line_b = order.lines.get(sku=skus[1])
    services.shipment_line_cancel(
        shipment=shipment.pk, order_line_id=line_b.pk, quantity=1, reason="buyer asked", actor="agent"
    )
    line_b.refresh_from_db()
    assert (line_b.quantity_cancelled, line_b.status) == (1, LineStatus.CANCELLED)
    assert StockLevel.objects.get(sku=skus[1], location=dc).reserved == 0
    assert shipment.lines.get(order_line=line_b).quantity_open == 0
    assert received[0]["order_line_id"] == line_b.pk and received[0]["quantity"] == 1
    assert_stock_invariants()


def test_manual_reroute_forced_to_a_node_is_audited(routed, manager):
    order, shipment, dc, alt = routed
    result = services.order_reroute(order_id=order.pk, location_id=alt.pk, reason="DC flooded", actor=manager)
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.CANCELLED
    [new] = Shipment.objects.filter(pk__in=result.shipment_ids)
    assert new.location == alt
    event = order.events.get(kind="rerouted")
    assert (event.actor, event.reason) == ("manager", "DC flooded")
    assert event.data["before"][0]["node"] == "DC" and event.data["after"][0]["node"] == "ALT"
    assert StockLevel.objects.filter(location=dc, reserved__gt=0).count() == 0
    assert_stock_invariants()


def test_a_refused_reroute_changes_nothing(routed, manager, node):
    order, shipment, _, _ = routed
    empty = node("EMPTY")
    with pytest.raises(RerouteRefused):
        services.order_reroute(order_id=order.pk, location_id=empty.pk, reason="try", actor=manager)
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.RELEASED
    assert not order.events.filter(kind="rerouted").exists()
    with pytest.raises(InvalidInput):
        services.order_reroute(order_id=order.pk, reason="  ", actor=manager)


def test_shipment_transitions_follow_the_table(routed, ups):
    _, shipment, _, _ = routed
    with pytest.raises(InvalidTransition):
        services.shipment_transition(shipment=shipment.pk, to_status="delivered", actor="wms")
    services.shipment_pack(shipment=shipment.pk, actor="wms")
    with pytest.raises(InvalidTransition):
        services.shipment_pick_start(shipment=shipment.pk, actor="wms")


def test_store_pickup_ready_then_collected(node, stock, order_for, skus, received):
    store = node("STORE", kind="store", can_pickup=True)
    stock(skus[0], store, 3)
    order = order_for([(skus[0], 1)], service_level="pickup")
    services.order_route(order_id=order.pk, actor="router")
    shipment = Shipment.objects.get(order=order)
    assert shipment.kind == "pickup"
    now = timezone.now()
    services.shipment_ready_for_pickup(shipment=shipment.pk, actor="store", now=now)
    shipment.refresh_from_db()
    assert shipment.pickup_deadline == now + timedelta(hours=72)
    services.shipment_picked_up(shipment=shipment.pk, actor="store")
    shipment.refresh_from_db()
    order.refresh_from_db()
    assert shipment.status == ShipmentStatus.PICKED_UP and order.status == OrderStatus.DELIVERED
    assert StockLevel.objects.get(sku=skus[0], location=store).on_hand == 2
    assert received[0]["shipment_id"] == shipment.pk
    assert_stock_invariants()


def test_an_expired_pickup_returns_the_stock(node, stock, order_for, skus):
    store = node("STORE", kind="store", can_pickup=True)
    stock(skus[0], store, 3)
    order = order_for([(skus[0], 2)], service_level="pickup")
    services.order_route(order_id=order.pk, actor="router")
    shipment = Shipment.objects.get(order=order)
    then = timezone.now() - timedelta(hours=100)
    services.shipment_ready_for_pickup(shipment=shipment.pk, actor="store", now=then)
    # when the expiry runs
    expired = services.pickups_expire_due(actor="pickup-expiry")
    # then the units are back, the lines cancelled and a case asks for the refund
    assert expired == [shipment.pk]
    level = StockLevel.objects.get(sku=skus[0], location=store)
    assert (level.on_hand, level.reserved) == (3, 0)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert ExceptionCase.objects.get(order=order).kind == ExceptionKind.PICKUP_EXPIRED
    assert services.pickups_expire_due(actor="pickup-expiry") == []
    assert_stock_invariants()


def test_ship_from_store_goes_to_a_store_that_ships(node, stock, order_for, skus):
    node("DC", "94107")
    store = node("SFS", "94110", kind="store", ships_from_store=True)
    stock(skus[0], store, 2)
    order = order_for([(skus[0], 1)], service_level="ship_from_store")
    services.order_route(order_id=order.pk, actor="router")
    shipment = Shipment.objects.get(order=order)
    assert (shipment.location, shipment.kind) == (store, "ship_from_store")


def _channel_counts_shipped(line, units: int) -> None:
    """What the sync does before it calls order_lines_shipped_upstream: count the units on the line."""
    type(line).objects.filter(pk=line.pk).update(quantity_shipped=line.quantity_shipped + units)


def test_units_shipped_on_the_channel_leave_the_released_shipment_and_the_rest_still_ships(routed, ups, skus, received):
    order, shipment, dc, _ = routed
    line_a = order.lines.get(sku=skus[0])
    # given the seller shipped one of the two units of line A in the channel's own tools
    _channel_counts_shipped(line_a, 1)
    # when the sync applies it
    result = services.order_lines_shipped_upstream(order_id=order.pk, shipped={line_a.pk: 1}, actor="sync:amazon-us")
    # then that unit left DC through the ledger, the other stays reserved on the same shipment
    assert result.consumed == {line_a.pk: 1} and result.without_stock == {}
    level = StockLevel.objects.get(sku=skus[0], location=dc)
    assert (level.on_hand, level.reserved) == (4, 1)
    assert StockMovement.objects.get(sku=skus[0], location=dc, reason=MovementReason.SHIP).delta == -1
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.RELEASED
    assert shipment.lines.get(order_line=line_a).quantity_open == 1
    event = OrderEvent.objects.get(order=order, kind="shipped_upstream")
    assert event.actor == "sync:amazon-us" and event.data["shipped"] == {str(line_a.pk): 1}
    assert received == []  # the channel is not told what it reported
    # when the node ships what is left, only that leaves
    services.shipment_ship(shipment=shipment.pk, carrier_code="UPS", tracking_number="1Z1", actor="wms:dc")
    assert StockLevel.objects.get(sku=skus[0], location=dc).on_hand == 3
    assert StockLevel.objects.get(sku=skus[1], location=dc).on_hand == 4
    order.refresh_from_db()
    assert order.status == OrderStatus.SHIPPED
    assert [call["shipment_id"] for call in received] == [shipment.pk]
    assert_stock_invariants()


def test_a_whole_pickup_collected_outside_waybill_is_picked_up(node, stock, order_for, skus, received):
    store = node("STORE", kind="store", can_pickup=True)
    stock(skus[0], store, 3)
    order = order_for([(skus[0], 2)], service_level="pickup")
    services.order_route(order_id=order.pk, actor="router")
    shipment = Shipment.objects.get(order=order)
    line = order.lines.get()
    _channel_counts_shipped(line, 2)
    services.order_lines_shipped_upstream(order_id=order.pk, shipped={line.pk: 2}, actor="sync:shopify")
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.PICKED_UP and shipment.shipped_at is not None
    assert StockLevel.objects.get(sku=skus[0], location=store).on_hand == 1
    # a shipment with no tracking number is never chased for a carrier scan
    later = timezone.now() + timedelta(days=5)
    assert services.tracking_checks_run(actor="checker", now=later).missing_scan == []
    assert received == []
    assert_stock_invariants()


def test_units_shipped_on_the_channel_that_held_no_stock_open_a_case(node, stock, order_for, skus):
    node("DC", "94107")
    order = order_for([(skus[2], 3)])
    services.order_route(order_id=order.pk, actor="router")
    line = order.lines.get()
    assert not Reservation.objects.filter(order_line=line).exists()
    _channel_counts_shipped(line, 3)
    result = services.order_lines_shipped_upstream(order_id=order.pk, shipped={line.pk: 3}, actor="sync:ebay")
    assert result.without_stock == {line.pk: 3} and result.consumed == {}
    case = ExceptionCase.objects.get(pk=result.exception_case_id)
    assert case.order_id == order.pk and f"{line.channel_sku}: 3" in case.detail
    assert not StockMovement.objects.filter(sku=skus[2]).exists()
    # the same report again finds the case already open
    again = services.order_lines_shipped_upstream(order_id=order.pk, shipped={line.pk: 3}, actor="sync:ebay")
    assert again.exception_case_id == case.pk
