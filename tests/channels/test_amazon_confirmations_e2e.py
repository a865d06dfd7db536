"""An Amazon shipment is confirmed on its first try, end to end: an MX order on a US+MX account is synced,
routed, released, and shipped by the node through the node API; the relay's confirmation names the MX
marketplace and a numeric package reference, and the strict sandbox takes it the first time."""

from __future__ import annotations

import pytest

from channels.models import OutboxKind, OutboxMessage, OutboxStatus
from tests.channels.conftest import AMAZON_MX
from tests.channels.e2e_helpers import messages, node_client, node_for, relay, route, ship_at_node, synced_order

pytestmark = pytest.mark.django_db


def test_an_mx_order_shipped_through_the_node_api_is_confirmed_on_its_first_try(
    amazon_sandbox, amazon_us_mx_account, skus, api_client
):
    account = amazon_us_mx_account
    # given: an order placed on Amazon.com.mx, the account listing Amazon.com first
    (made,) = amazon_sandbox.state.generate(
        1, lines=2, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False, marketplace_id=AMAZON_MX
    )
    node = node_for(account, [made])
    order = synced_order(account, made)
    assert order.channel_marketplace_id == AMAZON_MX
    shipment = route(order)
    # when: the node ships it through the node API and the relay runs
    shipped = ship_at_node(node_client(api_client, node), shipment)
    assert shipped.status_code == 200, shipped.content
    relay(account)
    # then: one confirmation, taken on its first attempt, in MX, under a numeric package reference
    (message,) = messages(order, OutboxKind.SHIP_CONFIRMATION)
    assert message.status == OutboxStatus.SENT and message.attempts == 1, message.last_error
    assert message.payload["marketplace_id"] == AMAZON_MX
    (confirmed,) = amazon_sandbox.state.shipments
    assert confirmed["marketplaceId"] == AMAZON_MX
    assert confirmed["packageReferenceId"].isdigit() and int(confirmed["packageReferenceId"]) > 0
    assert made.status == "shipped" and amazon_sandbox.state.contract_violations == []
    assert not OutboxMessage.objects.exclude(status=OutboxStatus.SENT).exists()
