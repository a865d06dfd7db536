"""Amazon buyer cancellation requests and who cancelled, over HTTP against the sandbox.

The 2026-01-01 model carries them per order item: ``cancellation.cancellationRequest`` {requester
(BUYER), cancelReason} while the buyer waits for the seller, and ``cancellation.cancellationExecution``
{cancelledBy (BUYER, MERCHANT, AMAZON), cancelReason} once units are cancelled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from channels.connectors.base import CancelRequest, ShipmentLine
from channels.models import OutboxStatus
from channels.outbox import cancellation_enqueue, outbox_relay
from channels.services import connector_for
from channels.sync import sync_account_run
from orders.models import CancelInitiator, Order, OrderStatus

pytestmark = pytest.mark.django_db


def _read(connector, order_id: str) -> dict:
    """The order as the next incremental poll sees it (searchOrders), checked equal to getOrder."""
    since = datetime.now(UTC) - timedelta(days=2)
    raw = next(o for page in connector.fetch_orders(since=since) for o in page.raw_orders if o["orderId"] == order_id)
    assert connector.get_order(order_id) == raw
    return raw


def _unshipped(sandbox, lines: int = 2):
    (made,) = sandbox.state.generate(1, lines=lines, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    return made


def test_a_buyer_cancel_request_is_read_from_the_order(amazon_sandbox, amazon_account):
    # given: an order, then the buyer asks Amazon to cancel it (the sandbox's admin hook, over HTTP)
    made = _unshipped(amazon_sandbox)
    connector = connector_for(amazon_account)
    before = _read(connector, made.order_id)["lastUpdatedTime"]
    answer = httpx.post(
        f"{amazon_sandbox.base_url}/_sandbox/amazon/orders/{made.order_id}/cancel_request",
        json={"reason": "Pedido por error — ordered by mistake"},
    )
    assert answer.status_code == 200
    # when
    raw = _read(connector, made.order_id)
    order = connector.parse_order(raw)
    # then: the request is on every open item, the order is newer, and nothing is cancelled yet
    assert raw["lastUpdatedTime"] >= before
    assert [item["cancellation"] for item in raw["orderItems"]] == [
        {"cancellationRequest": {"requester": "BUYER", "cancelReason": "Pedido por error — ordered by mistake"}}
    ] * len(made.lines)
    assert order.cancel_requested is True
    assert order.cancel_request_reason == "Pedido por error — ordered by mistake"
    assert order.cancelled_by == "" and order.status == OrderStatus.OPEN
    assert all(line.quantity_cancelled == 0 for line in order.lines)
    connector.close()


def test_an_order_without_a_request_is_not_cancel_requested(amazon_sandbox, amazon_account):
    made = _unshipped(amazon_sandbox)
    connector = connector_for(amazon_account)
    order = connector.parse_order(_read(connector, made.order_id))
    assert (order.cancel_requested, order.cancel_request_reason, order.cancelled_by) == (False, "", "")
    connector.close()


@pytest.mark.parametrize(
    ("reason", "by", "initiator"),
    [
        ("BuyerCanceled", None, CancelInitiator.BUYER),  # the buyer cancelled before the seller saw it
        ("GeneralAdjustment", "AMAZON", CancelInitiator.MARKETPLACE),  # Amazon cancelled it
        ("NoInventory", "MERCHANT", CancelInitiator.SELLER),  # the seller could not ship it
        ("BuyerCanceled", "MERCHANT", CancelInitiator.BUYER),  # the seller cancelled because the buyer asked
    ],
)
def test_who_cancelled_comes_from_the_cancellation_execution(amazon_sandbox, amazon_account, reason, by, initiator):
    # given
    made = _unshipped(amazon_sandbox)
    with amazon_sandbox.state.lock:
        amazon_sandbox.state.cancel(made, reason, by=by)
    connector = connector_for(amazon_account)
    # when
    raw = _read(connector, made.order_id)
    order = connector.parse_order(raw)
    # then
    assert raw["orderItems"][0]["cancellation"]["cancellationExecution"] == {
        "cancelledBy": by or "BUYER",
        "cancelReason": reason,
    }
    assert order.status == OrderStatus.CANCELLED
    assert order.cancelled_by == initiator
    assert order.cancel_requested is False
    connector.close()


def test_accepting_a_buyers_request_cancels_with_buyer_canceled(amazon_sandbox, amazon_account, skus):
    # given: an ingested order whose buyer then asked to cancel
    made = _unshipped(amazon_sandbox)
    sync_account_run(account_id=amazon_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    with amazon_sandbox.state.lock:
        amazon_sandbox.state.request_cancel(made, "Found it cheaper")
    # when: Waybill accepts the request (the outbox's BuyerCanceled reason code)
    message = cancellation_enqueue(order=order, lines=[], reason="BuyerCanceled", dedupe_key="buyer-request")
    outbox_relay(account_id=amazon_account.pk)
    # then: the acknowledgement feed told Amazon BuyerCanceled, and the order reads as cancelled for the buyer
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT, message.last_error
    (cancelled,) = amazon_sandbox.state.cancellations
    assert cancelled["reason"] == "BuyerCanceled"
    connector = connector_for(amazon_account)
    read = connector.parse_order(_read(connector, made.order_id))
    assert read.status == OrderStatus.CANCELLED
    assert read.cancelled_by == CancelInitiator.BUYER
    assert read.cancel_requested is False
    connector.close()


def test_the_cancellation_feed_names_the_reason_per_item(amazon_sandbox, amazon_account):
    # given
    made = _unshipped(amazon_sandbox)
    connector = connector_for(amazon_account)
    # when: one item is cancelled for the buyer, with a reason code Amazon does not have falling back
    feed = connector.cancellation_feed(
        CancelRequest(made.order_id, [ShipmentLine(made.lines[0].line_id, 1)], "BuyerCanceled")
    ).decode()
    fallback = connector.cancellation_feed(CancelRequest(made.order_id, [], "Lost in the warehouse")).decode()
    # then
    assert f"<AmazonOrderItemCode>{made.lines[0].line_id}</AmazonOrderItemCode>" in feed
    assert "<CancelReason>BuyerCanceled</CancelReason>" in feed
    assert "<StatusCode>Failure</StatusCode>" in feed
    assert "<CancelReason>GeneralAdjustment</CancelReason>" in fallback
    connector.close()
