"""Changes made on the channel reach the node: a cancellation takes the units back out of the order's
released shipment and reservations; units shipped in the channel's own tools leave the node once. The
channel is told nothing (it made the change)."""

from __future__ import annotations

import pytest

from channels.models import OutboxKind, OutboxMessage
from channels.sync import sync_account_run
from fulfillment import services as fulfillment
from fulfillment.models import Shipment, ShipmentStatus
from inventory import services as inventory
from inventory.models import Reservation, ReservationStatus, Sku, StockLevel
from orders.models import Order, OrderStatus
from tests.factories import LocationFactory
from tests.inventory.helpers import assert_stock_invariants


def _released_order(amazon_sandbox, amazon_account):
    """An order synced from the channel, routed and released to DAL1 (50 of each SKU) with its stock reserved."""
    (made,) = amazon_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    node = LocationFactory(code="DAL1")
    amazon_account.eligible_locations.add(node)
    for line in made.lines:
        inventory.stock_receive(sku=Sku.objects.get(code=line.sku), location=node, quantity=50, actor="test:setup")
    sync_account_run(account_id=amazon_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    assert fulfillment.order_route(order_id=order.pk, actor="router").routed
    shipment = Shipment.objects.get(order=order)
    assert shipment.status == ShipmentStatus.RELEASED
    assert Reservation.objects.filter(order_line__order=order, status=ReservationStatus.ACTIVE).exists()
    return made, node, order, shipment


@pytest.mark.django_db
def test_a_channel_cancel_of_a_released_order_releases_its_shipment_and_stock(amazon_sandbox, amazon_account, skus):
    # given an order synced from the channel, routed and released to a node with its stock reserved
    made, node, order, shipment = _released_order(amazon_sandbox, amazon_account)

    # when the buyer cancels on the channel and the next poll picks it up
    with amazon_sandbox.state.lock:
        amazon_sandbox.state.cancel(made, "BuyerCanceled")
    sync_account_run(account_id=amazon_account.pk)

    # then the order is cancelled, the node's shipment too, and no unit stays reserved
    order.refresh_from_db()
    shipment.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert shipment.status == ShipmentStatus.CANCELLED
    assert not Reservation.objects.filter(order_line__order=order, status=ReservationStatus.ACTIVE).exists()
    assert sum(StockLevel.objects.filter(location=node).values_list("reserved", flat=True)) == 0
    assert all(line.quantity_cancelled == line.quantity for line in order.lines.all())
    # and the channel is not told about its own cancellation
    assert not OutboxMessage.objects.filter(kind=OutboxKind.CANCELLATION).exists()
    assert_stock_invariants()


@pytest.mark.django_db
def test_units_shipped_in_the_channels_own_tools_leave_the_node_once(amazon_sandbox, amazon_account, skus):
    # given an order synced from the channel, routed and released to a node with its stock reserved
    made, node, order, shipment = _released_order(amazon_sandbox, amazon_account)
    ordered = {line.sku: line.quantity for line in made.lines}

    # when the seller ships the whole order in Seller Central and the next poll picks it up
    with amazon_sandbox.state.lock:
        amazon_sandbox.state.ship(made)
    sync_account_run(account_id=amazon_account.pk)

    # then the node's shipment no longer waits to be picked: its units left the node through the ledger
    shipment.refresh_from_db()
    order.refresh_from_db()
    assert shipment.status == ShipmentStatus.SHIPPED and shipment.tracking_number == ""
    assert order.status == OrderStatus.SHIPPED
    assert not Reservation.objects.filter(order_line__order=order, status=ReservationStatus.ACTIVE).exists()
    for code, quantity in ordered.items():
        level = StockLevel.objects.get(sku__code=code, location=node)
        assert (level.on_hand, level.reserved) == (50 - quantity, 0)
    assert all(line.quantity_shipped == line.quantity for line in order.lines.all())
    assert order.events.filter(kind="shipped_upstream").count() == 1
    # and nothing goes back to the channel, which made the change
    assert not OutboxMessage.objects.filter(kind=OutboxKind.SHIP_CONFIRMATION).exists()

    # when the same state is polled again, nothing is counted twice
    with amazon_sandbox.state.lock:
        amazon_sandbox.state.touch(made)
    sync_account_run(account_id=amazon_account.pk)
    for code, quantity in ordered.items():
        assert StockLevel.objects.get(sku__code=code, location=node).on_hand == 50 - quantity
    assert order.events.filter(kind="shipped_upstream").count() == 1
    assert_stock_invariants()
