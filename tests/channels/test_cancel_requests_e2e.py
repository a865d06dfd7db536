"""Buyer cancel requests end to end, on every channel that has them: the request is set at the sandbox,
a real sync reads it, the order is held and (nothing picked, the account accepting automatically) cancelled
for the buyer with its stock released, and the relay tells the channel the way that channel wants it; a
picked order is held, a case opened and the node refused when it tries to ship. Cancels decided at the
channel or by the seller are charged to whoever made them."""

from __future__ import annotations

import pytest

from channels.models import OutboxKind, OutboxStatus
from fulfillment.models import ShipmentStatus
from inventory.models import Reservation, ReservationStatus, StockLevel
from orders.models import CancelInitiator, CaseStatus, ExceptionCase, ExceptionKind, HoldKind, Order, OrderStatus
from orders.services import order_lines_cancel
from tests.channels.e2e_helpers import (
    admin,
    messages,
    node_client,
    node_for,
    relay,
    route,
    ship_at_node,
    sync,
    synced_order,
)
from tests.inventory.helpers import assert_stock_invariants

pytestmark = pytest.mark.django_db


def _made(sandbox, lines: int = 2):
    (made,) = sandbox.state.generate(1, lines=lines, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    return made


def _cancelled_for_the_buyer(order: Order, node=None) -> None:
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED and order.cancel_initiator == CancelInitiator.BUYER
    assert not order.on_hold
    assert all(line.quantity_cancelled == line.quantity for line in order.lines.all())
    assert not Reservation.objects.filter(order_line__order=order, status=ReservationStatus.ACTIVE).exists()
    if node is not None:
        assert sum(StockLevel.objects.filter(location=node).values_list("reserved", flat=True)) == 0
    assert_stock_invariants()


def _all_sent(order: Order) -> list:
    sent = messages(order)
    assert sent, "no cancellation queued for the channel"
    for message in sent:
        message.refresh_from_db()
        assert message.status == OutboxStatus.SENT, message.last_error
    return sent


def test_walmart_intent_to_cancel_on_a_released_order_is_accepted_and_told_to_walmart(
    walmart_sandbox, walmart_account, skus
):
    # given: a Walmart order released to a node, nothing picked
    made = _made(walmart_sandbox)
    node = node_for(walmart_account, [made])
    order = synced_order(walmart_account, made)
    shipment = route(order)
    # when: the customer asks Walmart to cancel, and the next sync reads it
    admin(walmart_sandbox, "/_sandbox/walmart/intent_to_cancel", {"purchaseOrderId": made.order_id})
    sync(walmart_account)
    # then: cancelled for the buyer, the node's shipment cancelled, its stock released
    _cancelled_for_the_buyer(order, node)
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.CANCELLED
    # and Walmart is told with the customer's reason, which it accepts
    relay(walmart_account)
    _all_sent(order)
    assert {c["reason"] for c in walmart_sandbox.state.cancellations} == {"CUSTOMER_REQUESTED_SELLER_TO_CANCEL"}
    assert made.status == "cancelled" and walmart_sandbox.state.contract_violations == []
    # and the next sync (Walmart now shows the lines cancelled by the customer) changes nothing
    sync(walmart_account)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED and order.cancel_initiator == CancelInitiator.BUYER
    assert len(messages(order)) == len(_all_sent(order))


def test_a_walmart_order_with_a_buyer_cancel_request_is_never_shipped(
    walmart_sandbox, walmart_account, skus, api_client
):
    # given: a Walmart order the node is already picking
    made = _made(walmart_sandbox)
    node = node_for(walmart_account, [made])
    order = synced_order(walmart_account, made)
    shipment = route(order)
    client = node_client(api_client, node)
    assert client.post(f"/api/v1/fulfillment/shipments/{shipment.pk}/picking/").status_code == 200
    # when: the customer asks to cancel, read by the next sync
    admin(walmart_sandbox, "/_sandbox/walmart/intent_to_cancel", {"purchaseOrderId": made.order_id})
    sync(walmart_account)
    # then: held, a case for a person, nothing cancelled
    order.refresh_from_db()
    assert order.on_hold and order.status == OrderStatus.RELEASED
    assert order.holds.get(released_at__isnull=True).kind == HoldKind.CANCEL_REQUEST
    case = ExceptionCase.objects.get(order=order, kind=ExceptionKind.CANCEL_REQUEST)
    assert case.status == CaseStatus.OPEN
    # and the node may not ship it: nothing reaches Walmart
    refused = ship_at_node(client, shipment)
    assert refused.status_code == 409, refused.content
    relay(walmart_account)
    assert not messages(order, OutboxKind.SHIP_CONFIRMATION) and not messages(order)
    assert walmart_sandbox.state.shipments == [] and made.status == "unshipped"
    shipment.refresh_from_db()
    assert shipment.status != ShipmentStatus.SHIPPED


def test_amazon_buyer_cancellation_request_is_accepted_with_buyer_canceled(amazon_sandbox, amazon_account, skus):
    # given: an Amazon order not routed yet
    made = _made(amazon_sandbox)
    order = synced_order(amazon_account, made)
    # when: the buyer asks Amazon to cancel (cancellationRequest, requester BUYER), read by the next sync
    admin(amazon_sandbox, f"/_sandbox/amazon/orders/{made.order_id}/cancel_request", {"reason": "BuyerCanceled"})
    sync(amazon_account)
    # then
    _cancelled_for_the_buyer(order)
    relay(amazon_account)
    _all_sent(order)
    assert [c["reason"] for c in amazon_sandbox.state.cancellations] == ["BuyerCanceled"]
    assert made.status == "cancelled" and amazon_sandbox.state.contract_violations == []


def test_ebay_buyer_cancel_request_is_approved_not_cancelled_by_the_seller(ebay_sandbox, ebay_account, skus):
    # given: an eBay order released to a node
    made = _made(ebay_sandbox)
    node = node_for(ebay_account, [made])
    order = synced_order(ebay_account, made)
    route(order)
    # when: the buyer asks eBay to cancel (cancelStatus.cancelRequests), read by the next sync
    request = admin(ebay_sandbox, "/_sandbox/ebay/cancel_request", {"orderId": made.order_id})
    sync(ebay_account)
    # then: cancelled for the buyer; the buyer's request approved at eBay, no seller cancellation opened
    _cancelled_for_the_buyer(order, node)
    relay(ebay_account)
    _all_sent(order)
    assert ebay_sandbox.approvals == [request["cancelRequestId"]]
    assert ebay_sandbox.eligibility_checks == []
    assert [c.get("approved") for c in ebay_sandbox.state.cancellations] == [True]
    assert made.status == "cancelled" and ebay_sandbox.state.contract_violations == []
    # and the next sync agrees
    sync(ebay_account)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED and order.cancel_initiator == CancelInitiator.BUYER


def test_tiktok_buyer_cancel_request_is_approved(tiktok_sandbox, tiktok_account, skus):
    # given: a TikTok order not routed yet
    made = _made(tiktok_sandbox)
    order = synced_order(tiktok_account, made)
    # when: the buyer asks TikTok to cancel, read by the next sync
    cancel_id = admin(tiktok_sandbox, "/_sandbox/tiktok/buyer_cancel", {"order_id": made.order_id})["cancel_id"]
    sync(tiktok_account)
    # then: cancelled for the buyer, the buyer's request approved, no seller cancel made
    _cancelled_for_the_buyer(order)
    relay(tiktok_account)
    _all_sent(order)
    assert tiktok_sandbox.cancel_records[cancel_id]["cancel_status"] == "CANCELLATION_REQUEST_COMPLETE"
    assert not [c for c in tiktok_sandbox.cancel_records.values() if c["role"] == "SELLER"]
    assert made.status == "cancelled"
    sync(tiktok_account)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED and order.cancel_initiator == CancelInitiator.BUYER


@pytest.mark.parametrize(
    ("reason", "initiator"), [("CUSTOMER", CancelInitiator.BUYER), ("INVENTORY", CancelInitiator.SELLER)]
)
def test_a_shopify_order_cancelled_at_shopify_is_charged_to_who_cancelled_it(
    shopify_sandbox, shopify_account, skus, reason, initiator
):
    # given: a Shopify order ingested
    made = _made(shopify_sandbox)
    order = synced_order(shopify_account, made)
    assert order.status == OrderStatus.OPEN
    # when: it is cancelled at Shopify (the buyer asked: cancelReason CUSTOMER; out of stock: INVENTORY)
    with shopify_sandbox.state.lock:
        for line in made.lines:
            line.cancelled = line.quantity
        made.status, made.cancel_reason = "cancelled", reason
        shopify_sandbox.state.touch(made)
    sync(shopify_account)
    # then: cancelled, charged to who cancelled; Shopify is not told back what it told Waybill
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED and order.cancel_initiator == initiator
    assert not messages(order)


def test_a_cancel_waybill_makes_for_want_of_stock_is_the_sellers(walmart_sandbox, walmart_account, skus):
    # given: a Walmart order nobody could route
    made = _made(walmart_sandbox, lines=1)
    order = synced_order(walmart_account, made)
    line = order.lines.get()
    # when: the seller cancels it for want of stock
    order_lines_cancel(
        order=order, quantities={line.pk: line.quantity}, reason="NoInventory", initiator="seller", actor="agent"
    )
    relay(walmart_account)
    # then: charged to the seller, at Walmart too, and the next sync keeps it so
    _all_sent(order)
    assert [c["reason"] for c in walmart_sandbox.state.cancellations] != ["CUSTOMER_REQUESTED_SELLER_TO_CANCEL"]
    sync(walmart_account)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED and order.cancel_initiator == CancelInitiator.SELLER
