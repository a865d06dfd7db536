from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory import services
from inventory.models import InboundStatus, Reservation, ReservationStatus, StockLevel
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, LineStatus, OrderEvent, OrderStatus
from tests.factories import (
    ChannelAccountFactory,
    InboundLineFactory,
    InboundShipmentFactory,
    LocationFactory,
    OrderFactory,
    OrderLineFactory,
    SkuFactory,
)

from .helpers import assert_stock_invariants

pytestmark = pytest.mark.django_db


@pytest.fixture
def node():
    return LocationFactory()


@pytest.fixture
def account(node):
    account = ChannelAccountFactory()
    account.eligible_locations.add(node)
    return account


def test_lines_that_fit_are_allocated_the_rest_backordered_or_an_exception(node, account, stock):
    # given: plenty of tees, no mugs (backorder allowed on the SKU), no caps (nothing allowed)
    tee, mug, cap = SkuFactory(), SkuFactory(allow_backorder=True), SkuFactory()
    stock(tee, node, 5)
    order = OrderFactory(account=account)
    tee_line = OrderLineFactory(order=order, sku=tee, quantity=2)
    mug_line = OrderLineFactory(order=order, sku=mug, quantity=1)
    cap_line = OrderLineFactory(order=order, sku=cap, quantity=1)
    # when
    outcome = services.order_stock_allocate(
        order_id=order.pk,
        plan={tee_line.pk: {node.pk: 2}, mug_line.pk: {node.pk: 1}, cap_line.pk: {node.pk: 1}},
        actor="router",
    )
    # then
    assert (outcome.reserved, outcome.backordered) == ([tee_line.pk], [mug_line.pk])
    tee_line.refresh_from_db(), mug_line.refresh_from_db(), cap_line.refresh_from_db()
    assert (tee_line.status, mug_line.status, cap_line.status) == (
        LineStatus.ALLOCATED,
        LineStatus.BACKORDERED,
        LineStatus.OPEN,
    )
    case = ExceptionCase.objects.get(pk__in=outcome.exceptions)
    assert (case.kind, case.order_id, case.sku_id, case.status) == (
        ExceptionKind.INSUFFICIENT_STOCK,
        order.pk,
        cap.pk,
        CaseStatus.OPEN,
    )
    assert f"{cap.code} at {node.code}: wanted 1, available 0" in case.detail
    order.refresh_from_db()
    assert order.status == OrderStatus.OPEN  # an exception is open: the order waits for a person
    assert OrderEvent.objects.filter(order=order, kind="stock_allocated").exists()
    assert_stock_invariants()


def test_channel_allowed_backorder_moves_the_order_to_backordered(node, account):
    sku = SkuFactory()
    order = OrderFactory(account=account)
    line = OrderLineFactory(order=order, sku=sku, quantity=1, is_backorder_allowed=True)
    services.order_stock_allocate(order_id=order.pk, plan={line.pk: {node.pk: 1}}, actor="router")
    order.refresh_from_db()
    assert order.status == OrderStatus.BACKORDERED
    assert not ExceptionCase.objects.exists()


def test_preorder_sells_against_incoming_stock_only(node, account):
    # given a preorder SKU with 3 units on an open PO at an eligible node
    sku = SkuFactory(is_preorder=True)
    InboundLineFactory(shipment=InboundShipmentFactory(location=node), sku=sku, quantity_expected=3)
    first = OrderFactory(account=account)
    first_line = OrderLineFactory(order=first, sku=sku, quantity=2)
    second = OrderFactory(account=account)
    second_line = OrderLineFactory(order=second, sku=sku, quantity=2)
    # when two orders want 2 each
    one = services.order_stock_allocate(order_id=first.pk, plan={first_line.pk: {node.pk: 2}}, actor="router")
    two = services.order_stock_allocate(order_id=second.pk, plan={second_line.pk: {node.pk: 2}}, actor="router")
    # then the first is promised against the PO, the second is an exception (only 1 incoming unit left)
    assert one.backordered == [first_line.pk] and one.exceptions == []
    assert two.backordered == [] and len(two.exceptions) == 1
    assert services.preorder_promisable(sku_id=sku.pk) == 1


def test_receiving_allocates_backorders_earliest_ship_by_first(node, account):
    # given three backordered lines and a PO for 3 units
    sku = SkuFactory(allow_backorder=True)
    now = timezone.now()
    late = OrderLineFactory(order=OrderFactory(account=account, ship_by=now + timedelta(days=5)), sku=sku, quantity=2)
    soon = OrderLineFactory(order=OrderFactory(account=account, ship_by=now + timedelta(days=1)), sku=sku, quantity=2)
    soonest = OrderLineFactory(
        order=OrderFactory(account=account), sku=sku, quantity=1, ship_by=now + timedelta(hours=6)
    )
    for line in (late, soon, soonest):
        services.order_stock_allocate(order_id=line.order_id, plan={line.pk: {node.pk: line.quantity}}, actor="router")
        line.order.refresh_from_db()
        assert line.order.status == OrderStatus.BACKORDERED
    inbound = InboundLineFactory(shipment=InboundShipmentFactory(location=node), sku=sku, quantity_expected=3)
    # when 3 arrive
    outcome = services.inbound_receive(
        shipment_id=inbound.shipment_id, quantities={inbound.pk: 3}, actor="wms:dallas", idempotency_key="rcv-1"
    )
    # then the two earliest ship-by lines are reserved, the late one keeps waiting
    assert outcome.allocated_lines == sorted([soonest.pk, soon.pk])
    statuses = {line.pk: line.status for line in (late, soon, soonest) if not line.refresh_from_db()}
    assert statuses == {
        late.pk: LineStatus.BACKORDERED,
        soon.pk: LineStatus.ALLOCATED,
        soonest.pk: LineStatus.ALLOCATED,
    }
    soon.order.refresh_from_db()
    assert soon.order.status == OrderStatus.ALLOCATED
    level = StockLevel.objects.get(sku=sku, location=node)
    assert (level.on_hand, level.reserved) == (3, 3)
    inbound.refresh_from_db(), inbound.shipment.refresh_from_db()
    assert (inbound.quantity_received, inbound.shipment.status) == (3, InboundStatus.RECEIVED)
    assert OrderEvent.objects.filter(order=soon.order, kind="backorder_allocated").exists()
    # and a replayed receipt changes nothing
    replay = services.inbound_receive(
        shipment_id=inbound.shipment_id, quantities={inbound.pk: 3}, actor="wms:dallas", idempotency_key="rcv-1"
    )
    assert replay.replayed
    level.refresh_from_db()
    inbound.refresh_from_db()
    assert (level.on_hand, inbound.quantity_received) == (3, 3)
    assert Reservation.objects.filter(status=ReservationStatus.ACTIVE).count() == 2
    assert_stock_invariants()


def test_marketplace_fulfilled_orders_are_never_allocated(node, account):
    from inventory.errors import ReservationError

    order = OrderFactory(account=account, marketplace_fulfilled=True)
    line = OrderLineFactory(order=order, sku=SkuFactory())
    with pytest.raises(ReservationError):
        services.order_stock_allocate(order_id=order.pk, plan={line.pk: {node.pk: 1}}, actor="router")
