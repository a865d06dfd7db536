"""What the routing batch guards when the orders it planned were read a moment before a change: a line
cancelled in between is neither reserved, shipped nor set allocated (the batch statement is the one writer
of line statuses outside orders' services, tests/fulfillment/test_route_statements.py)."""

from __future__ import annotations

import pytest
from django.db import transaction

from fulfillment import services
from fulfillment.models import ShipmentLine
from fulfillment.selectors import network_snapshot, orders_to_route
from fulfillment.services.route import batch
from inventory.models import Reservation, ReservationStatus
from orders import services as order_services
from orders.models import LineStatus, OrderStatus
from tests.factories import SkuFactory
from tests.inventory.helpers import assert_stock_invariants

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("ordered", "cancelled"), [(1, 1), (3, 1)])
def test_a_line_cancelled_after_the_batch_read_its_order_sends_the_batch_back(
    node, stock, order_for, ordered, cancelled
):
    # given an open order of two lines, read for routing
    here = node("HERE")
    tee, mug = SkuFactory(), SkuFactory()
    stock(tee, here, 10)
    stock(mug, here, 10)
    order = order_for([(tee, 2), (mug, ordered)])
    fresh = orders_to_route([order.pk])
    network = network_snapshot(sku_ids=[tee.pk, mug.pk])
    # when the buyer's cancel of (some of) the mug line lands before the batch writes
    mug_line = order.lines.get(sku=mug)
    order_services.order_lines_cancel(
        order=order, quantities={mug_line.pk: cancelled}, reason="buyer asked", initiator="buyer", actor="agent"
    )
    # then the batch, planned on the stale read, is sent back: its caller rolls back
    with pytest.raises(batch.FastPathMiss), transaction.atomic():
        batch.route_batch(order_ids=[order.pk], network=network, actor="router:test", now=None, fresh=fresh)
    assert not Reservation.objects.filter(order_line__order=order).exists()
    # and routed again on what is left, only the units still wanted are reserved and shipped
    [result] = services.orders_route(
        order_ids=[order.pk], network=network_snapshot(sku_ids=[tee.pk, mug.pk]), actor="router:test"
    )
    assert result.routed
    order.refresh_from_db()
    mug_line.refresh_from_db()
    assert order.status == OrderStatus.RELEASED
    left = ordered - cancelled
    assert mug_line.status == (LineStatus.ALLOCATED if left else LineStatus.CANCELLED)
    reserved = Reservation.objects.filter(order_line=mug_line, status=ReservationStatus.ACTIVE)
    assert sum(reserved.values_list("quantity", flat=True)) == left
    assert sum(ShipmentLine.objects.filter(order_line=mug_line).values_list("quantity", flat=True)) == left
    assert_stock_invariants()
