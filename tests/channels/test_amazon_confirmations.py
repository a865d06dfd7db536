"""Amazon ship confirmations over HTTP against the strict sandbox: a shipment is confirmed on its first try
with a numeric package reference kept per shipment, in the order's own marketplace; Amazon's refusals are
kept whole (code, message and details)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from channels.connectors.base import ChannelError, ShipmentConfirmation, ShipmentLine
from channels.models import OutboxKind, OutboxMessage, OutboxStatus
from channels.outbox import _send, cancellation_enqueue, outbox_claim, outbox_relay, ship_confirmation_enqueue
from channels.services import connector_for
from channels.sync import sync_account_run
from fulfillment import services as fulfillment
from fulfillment.models import Shipment
from inventory import services as inventory
from inventory.models import Sku
from orders.models import Order
from tests.channels.conftest import AMAZON_MX, AMAZON_US
from tests.factories import LocationFactory
from tests.fulfillment.conftest import ups  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


def _released(sandbox, account, *, marketplace_id: str = AMAZON_US, lines: int = 2):
    """An order synced from the sandbox, routed and released to a node that holds its stock."""
    (made,) = sandbox.state.generate(
        1, lines=lines, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False, marketplace_id=marketplace_id
    )
    node = LocationFactory(code=f"N{made.number}")
    account.eligible_locations.add(node)
    for line in made.lines:
        inventory.stock_receive(sku=Sku.objects.get(code=line.sku), location=node, quantity=50, actor="test:setup")
    sync_account_run(account_id=account.pk)
    order = Order.objects.get(account_id=account.pk, external_id=made.order_id)
    assert fulfillment.order_route(order_id=order.pk, actor="router").routed
    return made, order, Shipment.objects.get(order=order)


def _ship(shipment) -> None:
    fulfillment.shipment_ship(
        shipment=shipment.pk,
        carrier_code="UPS",
        tracking_number="1Z999AA10123456784",
        shipped_at=timezone.now() - timedelta(minutes=3),
        actor="wms:dc",
    )


def _one_unit(made, *, package_reference: str, marketplace_id: str) -> ShipmentConfirmation:
    """A confirmation of one unit of the sandbox order's first line, by UPS, three minutes ago."""
    return ShipmentConfirmation(
        order_external_id=made.order_id,
        package_reference=package_reference,
        carrier_code="UPS",
        tracking_number="1Z999AA10123456784",
        shipped_at=timezone.now() - timedelta(minutes=3),
        lines=[ShipmentLine(made.lines[0].line_id, 1)],
        marketplace_id=marketplace_id,
    )


def test_a_shipment_is_confirmed_on_its_first_try_with_its_number(amazon_sandbox, amazon_account, skus, ups):  # noqa: F811
    # given: an order released to a node
    made, _, shipment = _released(amazon_sandbox, amazon_account)
    # when: the node ships it and the relay runs
    _ship(shipment)
    counts = outbox_relay(account_id=amazon_account.pk)
    # then: Amazon took it the first time, under the shipment's number
    message = OutboxMessage.objects.get(kind=OutboxKind.SHIP_CONFIRMATION)
    assert counts == {"sent": 1}
    assert message.status == OutboxStatus.SENT and message.attempts == 1, message.last_error
    (confirmed,) = amazon_sandbox.state.shipments
    assert confirmed["packageReferenceId"] == str(shipment.pk)
    assert confirmed["marketplaceId"] == AMAZON_US
    assert made.status == "shipped" and amazon_sandbox.state.contract_violations == []


def test_an_mx_order_on_a_us_and_mx_account_is_confirmed_in_mx(amazon_sandbox, amazon_us_mx_account, skus, ups):  # noqa: F811
    # given: the account lists Amazon.com first; the order was placed on Amazon.com.mx
    made, _, shipment = _released(amazon_sandbox, amazon_us_mx_account, marketplace_id=AMAZON_MX)
    # when
    _ship(shipment)
    outbox_relay(account_id=amazon_us_mx_account.pk)
    # then
    message = OutboxMessage.objects.get(kind=OutboxKind.SHIP_CONFIRMATION)
    assert message.status == OutboxStatus.SENT and message.attempts == 1, message.last_error
    assert message.response["marketplaceId"] == AMAZON_MX
    (confirmed,) = amazon_sandbox.state.shipments
    assert confirmed["marketplaceId"] == AMAZON_MX
    assert made.status == "shipped"


def test_the_orders_marketplace_travels_in_the_outbox_payload(amazon_sandbox, amazon_us_mx_account, skus):
    # given: an MX order whose marketplace Waybill stored
    (made,) = amazon_sandbox.state.generate(
        1, lines=2, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False, marketplace_id=AMAZON_MX
    )
    sync_account_run(account_id=amazon_us_mx_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    Order.objects.filter(pk=order.pk).update(channel_marketplace_id=AMAZON_MX)
    order.refresh_from_db()
    first, second = made.lines
    # when: a confirmation and a cancellation are queued and sent
    shipped = ship_confirmation_enqueue(
        order=order,
        package_reference="shipment-7",
        carrier_code="UPS",
        tracking_number="1Z999AA10123456784",
        shipped_at=timezone.now() - timedelta(minutes=3),
        lines=[(first.line_id, first.quantity)],
    )
    cancelled = cancellation_enqueue(
        order=order, lines=[(second.line_id, second.quantity)], reason="NoInventory", dedupe_key="second"
    )
    outbox_relay(account_id=amazon_us_mx_account.pk)
    # then: both name the order's marketplace, and Amazon applied both there
    shipped.refresh_from_db()
    cancelled.refresh_from_db()
    assert shipped.payload["marketplace_id"] == cancelled.payload["marketplace_id"] == AMAZON_MX
    assert (shipped.status, cancelled.status) == (OutboxStatus.SENT, OutboxStatus.SENT), (
        shipped.last_error,
        cancelled.last_error,
    )
    assert amazon_sandbox.state.shipments[0]["marketplaceId"] == AMAZON_MX
    assert amazon_sandbox.feeds[cancelled.response["feed_id"]]["marketplaceIds"] == [AMAZON_MX]
    assert (first.shipped, second.cancelled) == (first.quantity, second.quantity)


def test_a_message_queued_with_the_old_reference_is_sent_as_the_number_and_never_twice(
    amazon_sandbox, amazon_account, skus
):
    # given: a message queued before the change ("shipment-28"), sent once by a worker that died before
    # marking it sent
    (made,) = amazon_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    sync_account_run(account_id=amazon_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    message = ship_confirmation_enqueue(
        order=order,
        package_reference="shipment-28",
        carrier_code="UPS",
        tracking_number="1Z999AA10123456784",
        shipped_at=timezone.now() - timedelta(minutes=3),
        lines=[(line.external_id, line.quantity) for line in order.lines.all()],
    )
    payload = dict(message.payload)
    payload.pop("marketplace_id")  # queued before the marketplace travelled in the payload
    OutboxMessage.objects.filter(pk=message.pk).update(payload=payload)
    (claimed,) = outbox_claim(account_id=amazon_account.pk)
    connector = connector_for(amazon_account)
    _send(connector, OutboxMessage.objects.get(pk=claimed), {})
    connector.close()
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    # when: the relay takes the expired lease
    outbox_relay(account_id=amazon_account.pk)
    # then: confirmed once, as package 28; the resend found it already applied
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT and message.response["already_applied"] is True
    (confirmed,) = amazon_sandbox.state.shipments
    assert confirmed["packageReferenceId"] == "28"
    assert [p["packageReferenceId"] for p in made.packages] == ["28"]


def test_amazons_refusal_is_kept_whole(amazon_sandbox, amazon_us_mx_account):
    # given: a US order confirmed as if it were an MX order
    (made,) = amazon_sandbox.state.generate(1, lines=1, status="unshipped", fulfilled_by="MERCHANT")
    connector = connector_for(amazon_us_mx_account)
    shipment = _one_unit(made, package_reference="shipment-5", marketplace_id=AMAZON_MX)
    # when
    with pytest.raises(ChannelError) as raised:
        connector.confirm_shipment(shipment, state={})
    connector.close()
    # then: the error names Amazon's code, message and details, and carries the whole answer
    error = raised.value
    assert error.status == 400 and error.retryable is False
    assert error.detail == {
        "errors": [
            {
                "code": "InvalidInput",
                "message": f"Order {made.order_id} was not placed in marketplace {AMAZON_MX}.",
                "details": f"marketplaceId must be the order's marketplace {AMAZON_US}.",
            }
        ]
    }
    assert f"details: marketplaceId must be the order's marketplace {AMAZON_US}" in str(error)
    assert "InvalidInput" in str(error) and amazon_sandbox.state.shipments == []


def test_a_refused_confirmation_is_parked_with_amazons_details(amazon_sandbox, amazon_account, skus):
    # given: a confirmation of more units than are unshipped
    (made,) = amazon_sandbox.state.generate(1, lines=1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    sync_account_run(account_id=amazon_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    line = made.lines[0]
    message = ship_confirmation_enqueue(
        order=order,
        package_reference="shipment-9",
        carrier_code="UPS",
        tracking_number="1Z999AA10123456784",
        shipped_at=timezone.now() - timedelta(minutes=3),
        lines=[(line.line_id, line.quantity + 1)],
    )
    # when
    outbox_relay(account_id=amazon_account.pk)
    # then: parked at once (sending it again cannot succeed), with Amazon's reason and details
    message.refresh_from_db()
    assert message.status == OutboxStatus.PARKED and message.attempts == 1
    assert f"Invalid quantity {line.quantity + 1}" in message.last_error
    assert f"details: {line.quantity} unit(s) of this item are unshipped." in message.last_error


def test_a_reference_without_a_number_is_refused_before_anything_is_sent(amazon_sandbox, amazon_account):
    # given
    (made,) = amazon_sandbox.state.generate(1, lines=1, status="unshipped", fulfilled_by="MERCHANT")
    connector = connector_for(amazon_account)
    shipment = _one_unit(made, package_reference="PKG-A", marketplace_id=AMAZON_US)
    requests = amazon_sandbox.state.requests
    # when
    with pytest.raises(ChannelError) as raised:
        connector.confirm_shipment(shipment, state={})
    connector.close()
    # then
    assert raised.value.retryable is False and "positive numeric packageReferenceId" in str(raised.value)
    assert amazon_sandbox.state.requests == requests and made.packages == []
