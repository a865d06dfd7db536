"""eBay buyer cancellation requests over HTTP against the sandbox: read through getOrder, approved through
the Post-Order API (never a seller cancellation), and who cancelled."""

from __future__ import annotations

import httpx
import pytest

from channels.connectors.base import CancelRequest
from channels.models import OutboxStatus
from channels.outbox import cancellation_enqueue, outbox_relay
from channels.services import connector_for
from channels.sync import sync_account_run
from orders.models import Order
from tests.channels.helpers import listed_order

pytestmark = pytest.mark.django_db


def _ask_to_cancel(sandbox, order_id: str) -> dict:
    response = httpx.post(
        f"{sandbox.base_url}/_sandbox/ebay/cancel_request",
        json={"orderId": order_id, "reason": "ORDER_PLACED_BY_MISTAKE"},
    )
    assert response.status_code == 200
    return response.json()


def test_a_buyer_request_is_read_through_get_order(ebay_sandbox, ebay_account):
    # given
    (made,) = ebay_sandbox.state.generate(1, status="unshipped", unknown_sku=False)
    request = _ask_to_cancel(ebay_sandbox, made.order_id)
    connector = connector_for(ebay_account)
    # when
    raw = listed_order(ebay_account, made.order_id, id_field="orderId")
    order = connector.parse_order(raw)
    # then: getOrders alone has no requests (the model says so); the connector read them with getOrder
    plain = connector.call("GET", f"/sell/fulfillment/v1/order?orderIds={made.order_id}").json()["orders"][0]
    assert plain["cancelStatus"] == {"cancelState": "IN_PROGRESS", "cancelRequests": []}
    assert raw["cancelStatus"]["cancelRequests"][0]["cancelRequestId"] == request["cancelRequestId"]
    assert order.cancel_requested and "ORDER_PLACED_BY_MISTAKE" in order.cancel_request_reason
    assert order.status == "open" and order.to_ingest().cancel_requested


def test_cancelling_an_order_the_buyer_asked_to_cancel_approves_the_request(ebay_sandbox, ebay_account, skus):
    # given: an ingested order whose buyer asked to cancel
    (made,) = ebay_sandbox.state.generate(1, status="unshipped", unknown_sku=False, lines=2)
    sync_account_run(account_id=ebay_account.pk)
    request = _ask_to_cancel(ebay_sandbox, made.order_id)
    order = Order.objects.get(external_id=made.order_id)
    message = cancellation_enqueue(order=order, lines=[], reason="BuyerCanceled", dedupe_key="all")
    # when
    outbox_relay(account_id=ebay_account.pk)
    # then: the buyer's request was approved; no seller cancellation (a defect) was opened
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT, message.last_error
    assert message.response["approved_buyer_request"] is True
    assert ebay_sandbox.approvals == [request["cancelRequestId"]]
    assert ebay_sandbox.eligibility_checks == []
    assert [c.get("approved") for c in ebay_sandbox.state.cancellations] == [True]
    parsed = connector_for(ebay_account).parse_order(listed_order(ebay_account, made.order_id, id_field="orderId"))
    assert parsed.status == "cancelled" and parsed.cancelled_by == "buyer" and not parsed.cancel_requested


def test_a_seller_cancellation_is_refused_while_the_buyer_request_is_open(ebay_sandbox, ebay_account):
    # The sandbox holds eBay's line: a request awaiting the seller is answered, not overtaken.
    (made,) = ebay_sandbox.state.generate(1, status="unshipped", unknown_sku=False)
    _ask_to_cancel(ebay_sandbox, made.order_id)
    connector = connector_for(ebay_account)
    headers = {"X-EBAY-C-MARKETPLACE-ID": "EBAY_US"}
    connector.call(
        "POST", "/post-order/v2/cancellation/check_eligibility", json={"legacyOrderId": made.order_id}, headers=headers
    )
    response = connector.call(
        "POST",
        "/post-order/v2/cancellation",
        json={"legacyOrderId": made.order_id, "cancelReason": "OUT_OF_STOCK_OR_CANNOT_FULFILL"},
        headers=headers,
    )
    assert response.status_code == 400 and "approve or reject" in response.json()["errors"][0]["longMessage"]


def test_a_seller_cancellation_is_charged_to_the_seller(ebay_sandbox, ebay_account):
    # given
    (made,) = ebay_sandbox.state.generate(1, status="unshipped", unknown_sku=False)
    # when
    connector_for(ebay_account).cancel_lines(CancelRequest(made.order_id, [], reason="NoInventory"), state={})
    # then
    parsed = connector_for(ebay_account).parse_order(listed_order(ebay_account, made.order_id, id_field="orderId"))
    assert parsed.status == "cancelled" and parsed.cancelled_by == "seller"
    assert ebay_sandbox.approvals == []
