"""An Amazon order first seen PENDING (no address yet) and later UNSHIPPED with an address, over HTTP.

The first test is the connector's part: what the poll reads and parses before and after (ship-to, buyer
contact, prices, total, ship-by and deliver-by). The others follow the ORDER through two syncs: it ends up
with the address, and it is never routed while it has none. They rely on the ingest applying changes
after the first ingest (orders/services/ingest.py) and on routing refusing an order without a ship-to.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone

from channels.services import connector_for
from channels.sync import sync_account_run
from fulfillment import services as fulfillment
from fulfillment.models import Shipment
from inventory import services as inventory
from inventory.models import Sku
from orders.models import Order, OrderStatus
from tests.factories import LocationFactory

pytestmark = pytest.mark.django_db

ADDRESS = {
    "line1": "Calle de Alcalá 42",
    "line2": "3º izquierda",
    "city": "Sioux Falls",
    "region": "SD",
    "postal_code": "57104",
    "country_code": "US",
    "phone": "+1 605 555 0199",
}


def _pending_order(sandbox) -> str:
    """Over HTTP: a PENDING merchant-fulfilled order (Amazon shows no recipient yet)."""
    answer = httpx.post(f"{sandbox.base_url}/_sandbox/amazon/orders", json={"status": "pending", "lines": 2})
    assert answer.status_code == 200
    (order_id,) = answer.json()["created"]
    return order_id


def _release(sandbox, order_id: str, **body) -> None:
    """Over HTTP: payment cleared, the order is UNSHIPPED; ``address`` replaces the buyer's address."""
    answer = httpx.post(f"{sandbox.base_url}/_sandbox/amazon/orders/{order_id}/release", json=body)
    assert answer.status_code == 200, answer.text


def _read(connector, order_id: str) -> dict:
    since = timezone.now() - timedelta(days=2)
    return next(o for page in connector.fetch_orders(since=since) for o in page.raw_orders if o["orderId"] == order_id)


def _stocked_node(sandbox, account, order_id: str):
    node = LocationFactory(code="SFX1")
    account.eligible_locations.add(node)
    for line in sandbox.state.orders[order_id].lines:
        inventory.stock_receive(sku=Sku.objects.get(code=line.sku), location=node, quantity=20, actor="test:setup")
    return node


def test_the_poll_reads_a_pending_order_without_address_then_unshipped_with_it(amazon_sandbox, amazon_account):
    # given: a pending order
    order_id = _pending_order(amazon_sandbox)
    connector = connector_for(amazon_account)
    first = _read(connector, order_id)
    pending = connector.parse_order(first)
    # then: pending, no recipient, no buyer contact yet
    assert first["fulfillment"]["fulfillmentStatus"] == "PENDING"
    assert "recipient" not in first and "buyer" not in first
    assert pending.status == OrderStatus.PENDING and pending.ship_to is None
    # when: payment clears and Amazon shows the address
    _release(amazon_sandbox, order_id, address=ADDRESS)
    second = _read(connector, order_id)
    unshipped = connector.parse_order(second)
    made = amazon_sandbox.state.orders[order_id]
    # then: a newer version of the order, with everything the ingest needs to update it
    assert second["lastUpdatedTime"] > first["lastUpdatedTime"]
    assert unshipped.updated_at > pending.updated_at
    assert unshipped.status == OrderStatus.OPEN and unshipped.channel_status == "UNSHIPPED"
    ship_to = unshipped.ship_to
    assert (ship_to.name, ship_to.line1, ship_to.line2, ship_to.city, ship_to.region) == (
        made.buyer_name,
        "Calle de Alcalá 42",
        "3º izquierda",
        "Sioux Falls",
        "SD",
    )
    assert (ship_to.postal_code, ship_to.country_code, ship_to.phone) == ("57104", "US", "+1 605 555 0199")
    assert ship_to.email == second["buyer"]["buyerEmail"] and ship_to.email.endswith("@marketplace.amazon.com")
    assert unshipped.ship_by == made.ship_by and unshipped.ship_by != pending.ship_by
    assert unshipped.deliver_by == made.deliver_by and unshipped.deliver_by != pending.deliver_by
    assert unshipped.total_amount == sum((line.unit_price * line.quantity for line in made.lines), Decimal("0"))
    assert [(line.channel_sku, line.quantity, line.unit_price) for line in unshipped.lines] == [
        (line.sku, line.quantity, line.unit_price) for line in made.lines
    ]
    assert unshipped.shipping_method == "STANDARD" and unshipped.marketplace_id == "ATVPDKIKX0DER"
    connector.close()


def test_the_order_gets_its_address_on_the_second_sync_and_is_routed_only_then(amazon_sandbox, amazon_account, skus):
    # given: a pending order synced, and a node that can ship it
    order_id = _pending_order(amazon_sandbox)
    _stocked_node(amazon_sandbox, amazon_account, order_id)
    sync_account_run(account_id=amazon_account.pk)
    order = Order.objects.select_related("ship_to").get(external_id=order_id)
    assert order.status == OrderStatus.PENDING
    assert order.ship_to is None or not order.ship_to.line1
    # then: not routed while it has no address
    assert not fulfillment.order_route(order_id=order.pk, actor="router").routed
    assert not Shipment.objects.filter(order=order).exists()
    # when: Amazon shows it UNSHIPPED with the address, and the next poll runs
    _release(amazon_sandbox, order_id, address=ADDRESS)
    sync_account_run(account_id=amazon_account.pk)
    # then: the order has the address, the new ship-by and deliver-by, and only now is routed
    made = amazon_sandbox.state.orders[order_id]
    order = Order.objects.select_related("ship_to").get(pk=order.pk)
    assert order.status == OrderStatus.OPEN
    assert order.ship_to is not None
    assert (order.ship_to.line1, order.ship_to.city, order.ship_to.postal_code) == (
        "Calle de Alcalá 42",
        "Sioux Falls",
        "57104",
    )
    assert order.ship_to.name == made.buyer_name
    assert (order.ship_by, order.deliver_by) == (made.ship_by, made.deliver_by)
    assert fulfillment.order_route(order_id=order.pk, actor="router").routed
    assert Shipment.objects.filter(order=order).count() == 1


def test_an_unshipped_order_whose_address_is_withheld_is_never_routed(amazon_sandbox, amazon_account, skus):
    # given: a pending order synced; then Amazon says UNSHIPPED but shows no recipient
    order_id = _pending_order(amazon_sandbox)
    _stocked_node(amazon_sandbox, amazon_account, order_id)
    sync_account_run(account_id=amazon_account.pk)
    _release(amazon_sandbox, order_id, withhold_recipient=True)
    # when
    sync_account_run(account_id=amazon_account.pk)
    order = Order.objects.select_related("ship_to").get(external_id=order_id)
    result = fulfillment.order_route(order_id=order.pk, actor="router")
    # then: the order has no usable address and nothing went to a node
    assert order.ship_to is None or not order.ship_to.line1
    assert not result.routed
    assert not Shipment.objects.filter(order=order).exists()
