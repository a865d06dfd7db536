"""Backorders and preorders on the live routing path, and receipts that fill the backorders waiting for them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from fulfillment import services
from inventory import services as inventory
from inventory.models import InboundStatus, Reservation, ReservationStatus, StockLevel
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, LineStatus, OrderEvent, OrderStatus
from tests.factories import ChannelAccountFactory, InboundLineFactory, InboundShipmentFactory, OrderFactory, SkuFactory
from tests.inventory.helpers import assert_stock_invariants

pytestmark = pytest.mark.django_db


def test_lines_that_fit_are_routed_the_rest_backordered_or_an_exception(node, stock, order_for):
    # given: plenty of tees, no mugs (backorder allowed on the SKU), no caps (nothing allowed)
    dc = node("DC")
    tee, mug, cap = SkuFactory(), SkuFactory(allow_backorder=True), SkuFactory()
    stock(tee, dc, 5)
    order = order_for([(tee, 2), (mug, 1), (cap, 1)])
    tee_line, mug_line, cap_line = order.lines.order_by("pk")
    # when
    services.order_route(order_id=order.pk, actor="router")
    # then the tee is reserved, the mug waits for stock, the cap is a case for a person
    statuses = {line.pk: line.status for line in order.lines.all()}
    assert statuses[tee_line.pk] == LineStatus.ALLOCATED
    assert Reservation.objects.get(order_line=tee_line).quantity == 2
    assert statuses[mug_line.pk] == LineStatus.BACKORDERED
    assert statuses[cap_line.pk] == LineStatus.OPEN
    case = ExceptionCase.objects.get(order=order)
    assert (case.kind, case.order_id, case.status) == (ExceptionKind.INSUFFICIENT_STOCK, order.pk, CaseStatus.OPEN)
    assert cap.code in case.detail
    order.refresh_from_db()
    assert order.status != OrderStatus.BACKORDERED  # an exception is open: the order waits for a person
    assert not Reservation.objects.filter(order_line=mug_line).exists()
    assert_stock_invariants()


def test_channel_allowed_backorder_moves_the_order_to_backordered(node, order_for):
    node("DC")
    order = order_for([(SkuFactory(), 1)])
    order.lines.update(is_backorder_allowed=True)
    services.order_route(order_id=order.pk, actor="router")
    order.refresh_from_db()
    assert order.status == OrderStatus.BACKORDERED
    assert order.lines.get().status == LineStatus.BACKORDERED
    assert not ExceptionCase.objects.exists()


def test_preorder_sells_against_incoming_stock_at_eligible_nodes_only(node, order_for):
    # given a preorder SKU with 3 units on an open PO at an eligible node, and 10 at a node the account can't use
    dc = node("DC")
    sku = SkuFactory(is_preorder=True)
    InboundLineFactory(shipment=InboundShipmentFactory(location=dc), sku=sku, quantity_expected=3)
    elsewhere = ChannelAccountFactory().eligible_locations
    other = InboundShipmentFactory()
    elsewhere.add(other.location)
    InboundLineFactory(shipment=other, sku=sku, quantity_expected=10)
    first, second = order_for([(sku, 2)]), order_for([(sku, 2)])
    # when two orders want 2 each
    services.orders_route(order_ids=[first.pk], actor="router")
    services.orders_route(order_ids=[second.pk], actor="router")
    # then the first is promised against the PO, the second is a case (only 1 incoming unit left for it)
    assert first.lines.get().status == LineStatus.BACKORDERED
    assert not ExceptionCase.objects.filter(order=first).exists()
    assert second.lines.get().status == LineStatus.OPEN
    assert ExceptionCase.objects.filter(order=second).count() == 1
    assert inventory.preorder_promisable(sku_id=sku.pk, location_ids=[dc.pk]) == 1
    assert inventory.preorder_promisable(sku_id=sku.pk) == 13 - 2


def test_receiving_allocates_backorders_earliest_ship_by_first(node, order_for):
    # given three backordered lines and a PO for 3 units
    dc = node("DC")
    sku = SkuFactory(allow_backorder=True)
    now = timezone.now()
    late = order_for([(sku, 2)], ship_by=now + timedelta(days=5)).lines.get()
    soon = order_for([(sku, 2)], ship_by=now + timedelta(days=1)).lines.get()
    soonest = order_for([(sku, 1)]).lines.get()
    soonest.ship_by = now + timedelta(hours=6)
    soonest.save(update_fields=["ship_by"])
    # and a backordered line of an account that may not ship from this node
    stranger = OrderFactory(account=ChannelAccountFactory(), ship_by=now)
    stranger_line = stranger.lines.create(sku=sku, quantity=1, status=LineStatus.BACKORDERED)
    services.orders_route(order_ids=[late.order_id, soon.order_id, soonest.order_id], actor="router")
    for line in (late, soon, soonest):
        line.order.refresh_from_db()
        assert line.order.status == OrderStatus.BACKORDERED
    inbound = InboundLineFactory(shipment=InboundShipmentFactory(location=dc), sku=sku, quantity_expected=4)
    # when 4 arrive
    outcome = inventory.inbound_receive(
        shipment_id=inbound.shipment_id, quantities={inbound.pk: 4}, actor="wms:dallas", idempotency_key="rcv-1"
    )
    # then the two earliest ship-by lines of the eligible account are reserved, the late one keeps waiting
    assert outcome.allocated_lines == sorted([soonest.pk, soon.pk])
    statuses = {line.pk: line.status for line in (late, soon, soonest, stranger_line) if not line.refresh_from_db()}
    assert statuses == {
        late.pk: LineStatus.BACKORDERED,
        soon.pk: LineStatus.ALLOCATED,
        soonest.pk: LineStatus.ALLOCATED,
        stranger_line.pk: LineStatus.BACKORDERED,
    }
    soon.order.refresh_from_db()
    assert soon.order.status == OrderStatus.ALLOCATED
    level = StockLevel.objects.get(sku=sku, location=dc)
    assert (level.on_hand, level.reserved) == (4, 3)
    inbound.refresh_from_db(), inbound.shipment.refresh_from_db()
    assert (inbound.quantity_received, inbound.shipment.status) == (4, InboundStatus.RECEIVED)
    assert OrderEvent.objects.filter(order=soon.order, kind="backorder_allocated").exists()
    # and a replayed receipt changes nothing
    replay = inventory.inbound_receive(
        shipment_id=inbound.shipment_id, quantities={inbound.pk: 4}, actor="wms:dallas", idempotency_key="rcv-1"
    )
    assert replay.replayed
    level.refresh_from_db()
    inbound.refresh_from_db()
    assert (level.on_hand, inbound.quantity_received) == (4, 4)
    assert Reservation.objects.filter(status=ReservationStatus.ACTIVE).count() == 2
    assert_stock_invariants()


def test_marketplace_fulfilled_orders_are_never_reserved(node, stock, order_for):
    dc = node("DC")
    sku = SkuFactory()
    stock(sku, dc, 5)
    order = order_for([(sku, 1)], marketplace_fulfilled=True)
    services.order_route(order_id=order.pk, actor="router")
    assert not Reservation.objects.filter(order_line__order=order).exists()
    assert StockLevel.objects.get(sku=sku, location=dc).reserved == 0
