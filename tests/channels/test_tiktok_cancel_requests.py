"""TikTok buyer cancellation requests over HTTP: parsed as a cancel request with its reason, approved
through Approve Cancellation (the buyer's cancel, not a seller-fault one) when Waybill accepts it, and
who cancelled recorded for cancelled units."""

from __future__ import annotations

import httpx
import pytest

from channels.connectors.base import CancelRequest, ChannelError, ShipmentConfirmation, ShipmentLine
from channels.models import OutboxMessage, OutboxStatus
from channels.outbox import cancellation_enqueue, outbox_relay
from channels.sandbox.base import SandboxLine
from channels.sandbox.tiktok import sku_id_for
from channels.services import connector_for
from channels.sync import sync_account_run
from orders.models import CancelInitiator, Order, OrderStatus

pytestmark = pytest.mark.django_db


def _awaiting(sandbox, lines=None):
    (made,) = sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    if lines:
        made.lines = lines
    return made


def _buyer_asks(sandbox, order, reason="Ordered the wrong size"):
    reply = httpx.post(
        f"{sandbox.base_url}/_sandbox/tiktok/buyer_cancel", json={"order_id": order.order_id, "reason": reason}
    )
    return reply.json()["cancel_id"]


def _parsed(account, order_id):
    connector = connector_for(account)
    return connector.parse_order(connector.get_order(order_id))


def test_a_buyers_request_is_parsed_as_a_cancel_request_with_its_reason(tiktok_sandbox, tiktok_account):
    # given
    made = _awaiting(tiktok_sandbox)
    before = _parsed(tiktok_account, made.order_id)
    # when
    _buyer_asks(tiktok_sandbox, made)
    after = _parsed(tiktok_account, made.order_id)
    # then
    assert not before.cancel_requested
    assert after.cancel_requested and after.cancel_request_reason == "Ordered the wrong size"
    assert after.status == OrderStatus.OPEN and after.cancelled_by == ""
    assert after.updated_at > before.updated_at
    assert after.to_ingest().cancel_requested is True


def test_the_sandbox_refuses_to_ship_an_order_the_buyer_asked_to_cancel(tiktok_sandbox, tiktok_account):
    # given
    made = _awaiting(tiktok_sandbox, [SandboxLine("a", "WB-1001", "Mug", 1, 5)])
    _buyer_asks(tiktok_sandbox, made)
    shipment = ShipmentConfirmation(
        order_external_id=made.order_id,
        package_reference="P",
        carrier_code="USPS",
        tracking_number="9400X",
        shipped_at=made.created_at,
        lines=[ShipmentLine(sku_id_for("WB-1001"), 1)],
    )
    # then
    with pytest.raises(ChannelError, match="code 21011005"):
        connector_for(tiktok_account).confirm_shipment(shipment, state={})


def test_accepting_the_buyers_request_approves_it_instead_of_a_seller_cancel(tiktok_sandbox, tiktok_account, skus):
    # given: an ingested order the buyer then asks to cancel
    made = _awaiting(tiktok_sandbox, [SandboxLine("a", "WB-1001", "Mug", 3, 5)])
    sync_account_run(account_id=tiktok_account.pk)
    cancel_id = _buyer_asks(tiktok_sandbox, made)
    order = Order.objects.get(account_id=tiktok_account.pk, external_id=made.order_id)
    # when: Waybill accepts it
    message = cancellation_enqueue(order=order, lines=[], reason="BuyerCanceled", dedupe_key="buyer-request")
    outbox_relay(account_id=tiktok_account.pk)
    # then: approved at TikTok, no seller cancellation made
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT, message.last_error
    assert message.response["approved_cancellations"] == [cancel_id]
    assert tiktok_sandbox.cancel_records[cancel_id]["cancel_status"] == "CANCELLATION_REQUEST_COMPLETE"
    assert not [c for c in tiktok_sandbox.cancel_records.values() if c["role"] == "SELLER"]
    assert tiktok_sandbox.state.cancellations[-1]["by"] == "BUYER"
    parsed = _parsed(tiktok_account, made.order_id)
    assert parsed.status == OrderStatus.CANCELLED and parsed.cancelled_by == CancelInitiator.BUYER
    assert not parsed.cancel_requested


def test_a_resent_approval_is_found_applied(tiktok_sandbox, tiktok_account, skus):
    # given: the approval landed but the relay crashed before marking it sent
    made = _awaiting(tiktok_sandbox)
    sync_account_run(account_id=tiktok_account.pk)
    _buyer_asks(tiktok_sandbox, made)
    order = Order.objects.get(account_id=tiktok_account.pk, external_id=made.order_id)
    message = cancellation_enqueue(order=order, lines=[], reason="BuyerCanceled", dedupe_key="buyer-request")
    connector = connector_for(tiktok_account)
    connector.cancel_lines(
        CancelRequest(made.order_id, [], "BuyerCanceled"),
        state={},
    )
    # then: a second approval has nothing pending, and the outbox sees it applied
    assert connector.is_applied("cancellation", message.payload, {})
    with pytest.raises(ChannelError, match="no pending buyer cancellation"):
        connector.cancel_lines(
            CancelRequest(made.order_id, [], "BuyerCanceled"),
            state={},
        )
    assert OutboxMessage.objects.filter(pk=message.pk).exists()


def test_a_seller_cancel_is_the_sellers_and_a_platform_cancel_the_marketplaces(tiktok_sandbox, tiktok_account, skus):
    # given
    by_seller = _awaiting(tiktok_sandbox, [SandboxLine("a", "WB-1001", "Mug", 2, 5)])
    by_platform = _awaiting(tiktok_sandbox)
    sync_account_run(account_id=tiktok_account.pk)
    order = Order.objects.get(account_id=tiktok_account.pk, external_id=by_seller.order_id)
    # when: Waybill cancels one unit for lack of stock; TikTok cancels the other order itself
    cancellation_enqueue(order=order, lines=[(sku_id_for("WB-1001"), 1)], reason="NoInventory", dedupe_key="short")
    outbox_relay(account_id=tiktok_account.pk)
    with tiktok_sandbox.state.lock:
        tiktok_sandbox.state.cancel(by_platform, "UnpaidTimeout")
    # then
    seller = _parsed(tiktok_account, by_seller.order_id)
    assert seller.cancelled_by == CancelInitiator.SELLER and seller.status == OrderStatus.OPEN
    assert seller.lines[0].quantity_cancelled == 1
    assert _parsed(tiktok_account, by_platform.order_id).cancelled_by == CancelInitiator.MARKETPLACE


def test_an_order_listed_while_its_buyer_asks_to_cancel_is_found_by_search(tiktok_sandbox, tiktok_account):
    # given
    made = _awaiting(tiktok_sandbox)
    _awaiting(tiktok_sandbox)
    _buyer_asks(tiktok_sandbox, made)
    # when
    (pending,) = connector_for(tiktok_account).pending_buyer_cancellations(made.order_id)
    # then
    assert pending["role"] == "BUYER" and pending["order_id"] == made.order_id
