"""Refunds over HTTP against the sandboxes: each body as the published model has it, exactly once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from channels.models import OutboxMessage, OutboxStatus
from channels.outbox import outbox_claim, outbox_relay, outbox_send
from channels.services import connector_for
from channels.sync import sync_account_run
from orders.models import CaseStatus, ExceptionCase, Order
from returns import services
from returns.models import RefundStatus, ReturnAuthorization, WaitingChannelReturn
from returns.services import RefundLineInput

pytestmark = pytest.mark.django_db

ACTOR = "test:returns"


def _shipped_at_channel(sandbox, account):
    (made,) = sandbox.state.generate(1, lines=1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    sandbox.state.ship(made)
    sync_account_run(account_id=account.pk)
    order = Order.objects.get(account_id=account.pk, external_id__endswith=made.order_id)
    return made, order, order.lines.get()


@pytest.fixture
def marketplace(channel, request, monkeypatch):
    """The sandbox of the test's ``channel`` and an account at it; Amazon's returns report is polled at once."""
    from channels.connectors.amazon import AmazonConnector

    monkeypatch.setattr(AmazonConnector, "returns_report_poll_interval", 0.01)
    return request.getfixturevalue(f"{channel}_sandbox"), request.getfixturevalue(f"{channel}_account")


def _lose_the_answer(account_id):
    """Send the claimed message but lose its answer: the worker died before marking it, its lease expires."""
    from channels.outbox import _send

    (claimed,) = outbox_claim(account_id=account_id)
    message = OutboxMessage.objects.get(pk=claimed)
    connector = connector_for(message.account)
    try:
        _send(connector, message, {})
    finally:
        connector.close()
    OutboxMessage.objects.filter(pk=claimed).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_walmart_refund_sent_its_answer_lost_and_sent_again_is_applied_once(walmart_sandbox, walmart_account, skus):
    # given a shipped Walmart order
    made, order, line = _shipped_at_channel(walmart_sandbox, walmart_account)
    refund = services.refund_create(
        order_id=order.pk,
        lines=[RefundLineInput(line.pk, line.unit_price, 1)],
        shipping_amount="0",
        reason="defective",
        actor=ACTOR,
    )
    # when the refund reaches Walmart, its answer is lost, and the relay sends it again
    _lose_the_answer(walmart_account.pk)
    outbox_relay(account_id=walmart_account.pk)
    # then Walmart refunded once, the body met the model, and the refund records Walmart's answer
    log = walmart_sandbox.state.extra["refund_log"]
    assert len(log) == 1 and log[0]["comments"] == f"WB-REFUND-{refund.pk}"
    assert log[0]["charges"][0]["charge"]["chargeAmount"]["amount"] == -float(line.unit_price)
    assert walmart_sandbox.state.contract_violations == []
    refund.refresh_from_db()
    assert refund.status == RefundStatus.CONFIRMED and refund.external_id == log[0]["refundId"]
    assert refund.outbox_message.response["already_applied"] is True
    # and the refunded unit comes back on the order in status Refund
    status = {
        s["status"]
        for s in walmart_sandbox.render(walmart_sandbox.state.orders[made.order_id])["orderLines"]["orderLine"][0][
            "orderLineStatuses"
        ]["orderLineStatus"]
    }
    assert "Refund" in status


def test_walmart_refuses_a_refund_the_model_refuses_and_the_refund_fails_with_its_words(
    walmart_sandbox, walmart_account, skus
):
    _made, order, line = _shipped_at_channel(walmart_sandbox, walmart_account)
    # given the order total lets more through than the line is worth at Walmart (Waybill's cap is the order)
    Order.objects.filter(pk=order.pk).update(total_amount=Decimal("99999"))
    line.__class__.objects.filter(pk=line.pk).update(unit_price=Decimal("5000"))
    refund = services.refund_create(
        order_id=order.pk, lines=[RefundLineInput(line.pk, "4999.00")], reason="goodwill", actor=ACTOR
    )
    (claimed,) = outbox_claim(account_id=walmart_account.pk)
    assert outbox_send(message_id=claimed) == OutboxStatus.PARKED
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED and "above what is left to refund" in refund.channel_response["error"]


def test_ebay_issue_refund_sent_its_answer_lost_and_sent_again_is_applied_once(ebay_sandbox, ebay_account, skus):
    _made, order, line = _shipped_at_channel(ebay_sandbox, ebay_account)
    refund = services.refund_create(
        order_id=order.pk, lines=[RefundLineInput(line.pk, "3.00", 1)], reason="wrong_item", actor=ACTOR
    )
    _lose_the_answer(ebay_account.pk)
    outbox_relay(account_id=ebay_account.pk)
    (sent,) = ebay_sandbox.state.extra["refund_log"]
    assert (
        sent["body"]["reasonForRefund"] == "SELLER_WRONG_ITEM" and sent["body"]["comment"] == f"WB-REFUND-{refund.pk}"
    )
    assert sent["body"]["refundItems"] == [
        {"lineItemId": line.external_id, "refundAmount": {"value": "3.00", "currency": "USD"}}
    ]
    assert ebay_sandbox.state.contract_violations == []
    refund.refresh_from_db()
    assert refund.status == RefundStatus.CONFIRMED and refund.external_id == sent["refundId"]


def test_shopify_refund_create_carries_an_idempotency_key_and_a_resend_is_applied_once(
    shopify_sandbox, shopify_account, skus
):
    _made, order, line = _shipped_at_channel(shopify_sandbox, shopify_account)
    refund = services.refund_create(
        order_id=order.pk,
        lines=[RefundLineInput(line.pk, line.unit_price, 1)],
        reason="defective",
        actor=ACTOR,
    )
    _lose_the_answer(shopify_account.pk)
    outbox_relay(account_id=shopify_account.pk)
    log = shopify_sandbox.state.extra["refund_log"]
    assert len(log) == 1 and log[0]["key"] == f"waybill-WB-REFUND-{refund.pk}"
    assert log[0]["input"]["refundLineItems"] == [
        {"lineItemId": line.external_id, "quantity": 1, "restockType": "NO_RESTOCK"}
    ]
    assert shopify_sandbox.state.contract_violations == []
    refund.refresh_from_db()
    assert refund.status == RefundStatus.CONFIRMED and refund.external_id == log[0]["refund_id"]


# --- channel returns in -------------------------------------------------------------------------------


def _return_at_channel(sandbox, made, status="requested", reason="DEFECTIVE"):
    opened = sandbox.state.open_return(made, lines={made.lines[0].line_id: 1}, reason=reason, status=status)
    assert not isinstance(opened, str), opened
    return opened


@pytest.mark.parametrize("channel", ["amazon", "shopify", "walmart", "ebay", "tiktok"])
def test_a_channel_return_becomes_one_rma_matched_to_its_line_however_often_it_is_read(channel, skus, marketplace):
    sandbox, account = marketplace
    # given a shipped order the buyer returns one unit of at the marketplace
    made, order, line = _shipped_at_channel(sandbox, account)
    # (Walmart and eBay settle returns themselves: the refund on the line is what Waybill sees)
    _return_at_channel(sandbox, made, status="requested" if channel in ("shopify", "tiktok") else "approved")
    # when the account's returns are read twice
    first = services.returns_sync_account(account_id=account.pk, force=True)
    second = services.returns_sync_account(account_id=account.pk, force=True)
    # then one RMA of one unit of that line is open, from the channel
    (rma,) = ReturnAuthorization.objects.filter(order=order)
    assert first["created"] == 1 and second["created"] == 0, (first, second)
    assert rma.source == "channel" and rma.external_id
    (rma_line,) = rma.lines.all()
    assert (rma_line.order_line_id, rma_line.quantity) == (line.pk, 1)
    assert sandbox.state.contract_violations == []


def _returned_before_its_order_is_here(sandbox, account, channel):
    """A shipped order the buyer returns a unit of at the marketplace, the order not read into Waybill yet."""
    (made,) = sandbox.state.generate(1, lines=1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    sandbox.state.ship(made)
    _return_at_channel(sandbox, made, status="requested" if channel in ("shopify", "tiktok") else "approved")
    return made


@pytest.mark.parametrize("channel", ["amazon", "shopify", "walmart", "ebay", "tiktok"])
def test_a_channel_return_read_before_its_order_waits_and_becomes_one_rma_when_the_order_arrives(
    channel, skus, marketplace
):
    sandbox, account = marketplace
    # given a return at the marketplace whose order Waybill has not read yet
    made = _returned_before_its_order_is_here(sandbox, account, channel)
    # when the account's returns are read
    first = services.returns_sync_account(account_id=account.pk, force=True)
    # then no RMA is open, and the return is kept, naming its order
    assert first["created"] == 0 and first["waiting"] == 1, first
    assert not ReturnAuthorization.objects.exists()
    (waiting,) = WaitingChannelReturn.objects.filter(account=account)
    assert waiting.resolved_at is None and waiting.order_external_id.endswith(made.order_id)
    # when the order arrives, and the returns are read again twice (the channel may or may not report the
    # return again: its order changed since)
    sync_account_run(account_id=account.pk)
    order = Order.objects.get(account_id=account.pk, external_id__endswith=made.order_id)
    second = services.returns_sync_account(account_id=account.pk, force=True)
    third = services.returns_sync_account(account_id=account.pk, force=True)
    # then the kept return became one RMA of one unit of its line, once
    assert second["created"] == 1 and second["waiting"] == 0 and third["created"] == 0, (second, third)
    (rma,) = ReturnAuthorization.objects.filter(order=order)
    assert rma.source == "channel" and rma.external_id
    (rma_line,) = rma.lines.all()
    assert (rma_line.order_line_id, rma_line.quantity) == (order.lines.get().pk, 1)
    waiting.refresh_from_db()
    assert waiting.resolved_at is not None and waiting.rma_id == rma.pk and waiting.attempts == 1
    assert sandbox.state.contract_violations == []


@pytest.mark.parametrize("channel", ["tiktok", "walmart"])
def test_a_return_whose_order_never_arrives_opens_one_case_naming_the_return_and_the_order(channel, skus, marketplace):
    sandbox, account = marketplace
    # given a return kept for want of its order
    made = _returned_before_its_order_is_here(sandbox, account, channel)
    services.returns_sync_account(account_id=account.pk, force=True)
    waiting = WaitingChannelReturn.objects.get(account=account)
    # when the returns are tried again before the wait is over, and then twice after it
    soon = services.channel_returns_retry(account_id=account.pk, actor=ACTOR, now=timezone.now() + timedelta(hours=1))
    later = timezone.now() + timedelta(hours=7)
    services.channel_returns_retry(account_id=account.pk, actor=ACTOR, now=later)
    services.channel_returns_retry(account_id=account.pk, actor=ACTOR, now=later)
    # then one case names the channel's return and its order, opened only after the wait
    assert soon["cases"] == 0
    (case,) = ExceptionCase.objects.filter(account_id=account.pk)
    assert waiting.key in case.title and made.order_id in case.title and case.status != CaseStatus.RESOLVED
    # when the order arrives at last, and the kept returns are tried again without reading the channel
    sync_account_run(account_id=account.pk)
    retried = services.channel_returns_retry(account_id=account.pk, actor=ACTOR, now=later)
    # then the return is one RMA, from what was kept, and the case is resolved, saying so
    order = Order.objects.get(account_id=account.pk, external_id__endswith=made.order_id)
    rma = ReturnAuthorization.objects.get(order=order)
    assert retried["ingested"] == 1 and retried["created"] == 1 and rma.external_id == waiting.key[:128]
    assert rma.lines.get().order_line == order.lines.get()
    # and a later read of the channel keeps the one RMA
    services.returns_sync_account(account_id=account.pk, force=True)
    assert ReturnAuthorization.objects.filter(order=order).count() == 1
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED and f"RMA #{rma.pk}" in case.resolution_note


def test_a_tiktok_return_is_refunded_by_approving_it_once(tiktok_sandbox, tiktok_account, skus):
    # given a TikTok return read into an RMA, received and inspected
    made, order, line = _shipped_at_channel(tiktok_sandbox, tiktok_account)
    opened = _return_at_channel(tiktok_sandbox, made, status="shipped")
    services.returns_sync_account(account_id=tiktok_account.pk, force=True)
    rma = ReturnAuthorization.objects.get(order=order)
    assert rma.status == "in_transit" and rma.channel_status == "BUYER_SHIPPED_ITEM"
    # when Waybill refunds it, the answer is lost and the refund is sent again
    refund = services.refund_create(
        order_id=order.pk,
        lines=[RefundLineInput(line.pk, line.unit_price, 1)],
        reason="defective",
        actor=ACTOR,
        rma_id=rma.pk,
    )
    _lose_the_answer(tiktok_account.pk)
    outbox_relay(account_id=tiktok_account.pk)
    # then TikTok approved the received package once, and the refund records its refund id
    (approval,) = tiktok_sandbox.state.extra["refund_log"]
    assert approval["decision"] == "APPROVE_RECEIVED_PACKAGE" and approval["return_id"] in opened.return_id.replace(
        "R", ""
    )
    refund.refresh_from_db()
    assert refund.status == RefundStatus.CONFIRMED and refund.external_id == f"return:{rma.external_id}"
    assert refund.channel_response["tiktok_refund_id"] == approval["refund_id"]
    assert tiktok_sandbox.state.contract_violations == []
    # and reading the returns again records no second refund (TikTok's refund is the one Waybill asked for)
    services.returns_sync_account(account_id=tiktok_account.pk, force=True)
    assert order.refunds.count() == 1


def test_amazon_payment_adjustment_feed_sent_its_answer_lost_and_sent_again_is_applied_once(
    amazon_sandbox, amazon_account, skus, monkeypatch
):
    from channels.connectors.amazon import AmazonConnector

    monkeypatch.setattr(AmazonConnector, "feed_poll_interval", 0.01)
    _made, order, line = _shipped_at_channel(amazon_sandbox, amazon_account)
    refund = services.refund_create(
        order_id=order.pk,
        lines=[RefundLineInput(line.pk, line.unit_price, 1)],
        shipping_amount="0",
        reason="wrong_item",
        actor=ACTOR,
    )
    _lose_the_answer(amazon_account.pk)
    outbox_relay(account_id=amazon_account.pk)
    (adjusted,) = amazon_sandbox.state.extra["refund_log"]
    assert adjusted["id"] == f"WB-REFUND-{refund.pk}-1" and adjusted["item"] == line.external_id
    assert amazon_sandbox.state.contract_violations == []
    refund.refresh_from_db()
    assert refund.status == RefundStatus.CONFIRMED and refund.external_id.startswith("feed:")
    assert refund.channel_response["duplicate"] is True


def test_authorizing_a_shopify_request_approves_it_at_shopify_once(shopify_sandbox, shopify_account, skus):
    # given a buyer's return request read from Shopify
    made, order, _line = _shipped_at_channel(shopify_sandbox, shopify_account)
    opened = _return_at_channel(shopify_sandbox, made)
    services.returns_sync_account(account_id=shopify_account.pk, force=True)
    rma = ReturnAuthorization.objects.get(order=order)
    assert (rma.status, rma.channel_status) == ("requested", "REQUESTED")
    # when ops authorize it in Waybill, and the answer of the approval is lost
    services.rma_authorize(rma_id=rma.pk, actor=ACTOR)
    _lose_the_answer(shopify_account.pk)
    outbox_relay(account_id=shopify_account.pk)
    # then Shopify approved it once (the resend read the return's status first)
    (decision,) = shopify_sandbox.state.extra["return_decisions"]
    assert decision["status"] == "approved" and opened.status == "approved"
    message = OutboxMessage.objects.get(kind="return_decision")
    assert message.status == OutboxStatus.SENT and message.response["already_applied"] is True
    assert shopify_sandbox.state.contract_violations == []


def test_a_refund_of_a_shopify_return_processes_it_once_and_closes_it(shopify_sandbox, shopify_account, skus):
    # given a shipped Shopify order whose buyer returns its two units, the return approved and read into an RMA
    made, order, line = _shipped_at_channel(shopify_sandbox, shopify_account)
    units = line.quantity_shipped
    opened = shopify_sandbox.state.open_return(
        made, lines={made.lines[0].line_id: units}, reason="DEFECTIVE", status="approved"
    )
    services.returns_sync_account(account_id=shopify_account.pk, force=True)
    rma = ReturnAuthorization.objects.get(order=order)
    assert rma.channel_status == "OPEN" and rma.external_id.startswith("gid://shopify/Return/")
    # when Waybill refunds every returned unit plus shipping, the answer is lost and the refund is sent again
    refund = services.refund_create(
        order_id=order.pk,
        lines=[RefundLineInput(line.pk, line.unit_price * units, units)],
        shipping_amount="0",
        reason="defective",
        actor=ACTOR,
        rma_id=rma.pk,
    )
    _lose_the_answer(shopify_account.pk)
    outbox_relay(account_id=shopify_account.pk)
    # then Shopify processed the return once (no refundCreate), its line items NOT_RESTOCKED, with one refund
    (processed,) = shopify_sandbox.state.extra["return_process_log"]
    (refunded,) = shopify_sandbox.state.extra["refund_log"]
    assert "key" not in refunded and refunded["return_id"] == opened.return_id
    sent = processed["input"]
    assert sent["returnId"] == rma.external_id and sent["note"].startswith(f"WB-REFUND-{refund.pk}:")
    (item,) = sent["returnLineItems"]
    assert item["quantity"] == units
    assert [(d["dispositionType"], d["quantity"]) for d in item["dispositions"]] == [("NOT_RESTOCKED", units)]
    (transfer,) = sent["financialTransfer"]["issueRefund"]["orderTransactions"]
    assert Decimal(transfer["transactionAmount"]["amount"]) == refund.amount
    # and the return is CLOSED at Shopify, every line processed
    assert opened.status == "closed"
    assert shopify_sandbox.state.extra["return_processed"][opened.return_id] == {made.lines[0].line_id: units}
    assert shopify_sandbox.state.contract_violations == []
    # and the refund records Shopify's refund, found by the read before the resend
    refund.refresh_from_db()
    assert refund.status == RefundStatus.CONFIRMED and refund.external_id == refunded["refund_id"]
    assert refund.outbox_message.response["already_applied"] is True
    assert refund.outbox_message.response["return_status"] == "CLOSED"
    # and reading the returns again records no second refund and keeps one RMA
    services.returns_sync_account(account_id=shopify_account.pk, force=True)
    assert order.refunds.count() == 1 and ReturnAuthorization.objects.filter(order=order).count() == 1


def test_shopify_refuses_to_process_a_return_above_its_refundable_amount_and_the_refund_fails_with_its_words(
    shopify_sandbox, shopify_account, skus
):
    # given a Shopify return read into an RMA, and the order's total in Waybill above what Shopify took
    made, order, line = _shipped_at_channel(shopify_sandbox, shopify_account)
    opened = shopify_sandbox.state.open_return(made, lines={made.lines[0].line_id: 1}, status="approved")
    services.returns_sync_account(account_id=shopify_account.pk, force=True)
    rma = ReturnAuthorization.objects.get(order=order)
    Order.objects.filter(pk=order.pk).update(total_amount=Decimal("99999"))
    line.__class__.objects.filter(pk=line.pk).update(unit_price=Decimal("5000"))
    refund = services.refund_create(
        order_id=order.pk, lines=[RefundLineInput(line.pk, "4999.00", 1)], reason="goodwill", actor=ACTOR, rma_id=rma.pk
    )
    # when it is sent
    (claimed,) = outbox_claim(account_id=shopify_account.pk)
    assert outbox_send(message_id=claimed) == OutboxStatus.PARKED
    # then nothing was processed, the return stays OPEN, and the refund failed with Shopify's words
    assert "return_process_log" not in shopify_sandbox.state.extra and opened.status == "approved"
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED and "exceeds the refundable amount" in refund.channel_response["error"]


def test_returns_are_not_read_more_often_than_the_channel_allows(amazon_sandbox, amazon_account, skus, monkeypatch):
    from channels.connectors.amazon import AmazonConnector

    monkeypatch.setattr(AmazonConnector, "returns_report_poll_interval", 0.01)
    services.returns_sync_account(account_id=amazon_account.pk)
    again = services.returns_sync_account(account_id=amazon_account.pk)
    assert again == {"skipped": "read recently"}
    assert len(amazon_sandbox.reports) == 1


def test_the_demo_sandboxes_stream_returns_of_shipped_orders(walmart_sandbox, walmart_account, skus):
    made, order, _line = _shipped_at_channel(walmart_sandbox, walmart_account)
    walmart_sandbox.state.rng.seed(1)
    for _ in range(6):
        walmart_sandbox.returns_tick()
    (opened,) = [r for r in walmart_sandbox.state.returns.values() if r.order_id == made.order_id]
    assert opened.status in ("requested", "approved", "shipped")
    walmart_sandbox.state.return_advance(opened, "approved")
    services.returns_sync_account(account_id=walmart_account.pk, force=True)
    assert ReturnAuthorization.objects.filter(order=order, source="channel").count() == 1


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("refunds/create", {"id": 890088186047892319, "order_id": 5000000001001, "note": "WB-REFUND-1"}),
        (
            "returns/request",
            {
                "admin_graphql_api_id": "gid://shopify/Return/1",
                "order": {"admin_graphql_api_id": "gid://shopify/Order/5000000001001"},
            },
        ),
    ],
)
def test_shopify_return_and_refund_webhooks_point_at_their_order(shopify_account, topic, payload):
    import json

    connector = connector_for(shopify_account)
    event = connector.parse_webhook(
        {"X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": "w-1", "X-Shopify-Shop-Domain": "s"},
        json.dumps(payload).encode(),
    )
    connector.close()
    assert event.external_id == "gid://shopify/Order/5000000001001"


@pytest.mark.parametrize("channel", ["walmart", "ebay", "tiktok"])
def test_a_refund_made_at_the_channel_is_recorded_once_and_counts_against_what_is_left(channel, skus, marketplace):
    from orders.models import OrderEvent
    from returns.models import Refund
    from returns.services import ReturnConflict

    sandbox, account = marketplace
    # given a shipped order whose return the marketplace refunds itself (in its seller centre, not through Waybill)
    made, order, _line = _shipped_at_channel(sandbox, account)
    opened = _return_at_channel(sandbox, made, status="approved")
    if channel == "tiktok":
        services.returns_sync_account(account_id=account.pk, force=True)
        sandbox.state.return_advance(opened, "refunded")
    # when the account's returns are read twice
    services.returns_sync_account(account_id=account.pk, force=True)
    services.returns_sync_account(account_id=account.pk, force=True)
    # then the channel's refund is recorded once, confirmed, on the RMA it settles, with an order event
    (refund,) = Refund.objects.filter(order=order)
    rma = ReturnAuthorization.objects.get(order=order)
    assert refund.from_channel and refund.status == RefundStatus.CONFIRMED and refund.external_id
    assert refund.rma_id == rma.pk and refund.amount > 0
    assert OrderEvent.objects.filter(order=order, kind="refund_seen_at_channel").count() == 1
    assert sandbox.state.contract_violations == []
    # and Waybill will not refund again what the channel already refunded
    left = order.total_amount - refund.amount
    with pytest.raises(ReturnConflict, match=f"{refund.amount} refunded before"):
        services.refund_create(
            order_id=order.pk, lines=[], shipping_amount=left + Decimal("0.01"), reason="again", actor=ACTOR
        )
    assert Refund.objects.filter(order=order).count() == 1


def test_authorizing_a_tiktok_request_approves_it_at_tiktok_once(tiktok_sandbox, tiktok_account, skus):
    # given a buyer's return request read from TikTok Shop
    made, order, _line = _shipped_at_channel(tiktok_sandbox, tiktok_account)
    opened = _return_at_channel(tiktok_sandbox, made)
    services.returns_sync_account(account_id=tiktok_account.pk, force=True)
    rma = ReturnAuthorization.objects.get(order=order)
    assert rma.status == "requested"
    # when ops authorize it in Waybill, and the answer of the approval is lost
    services.rma_authorize(rma_id=rma.pk, actor=ACTOR)
    _lose_the_answer(tiktok_account.pk)
    outbox_relay(account_id=tiktok_account.pk)
    # then TikTok approved it once (the resend carried the same idempotency key), and the buyer may ship it back
    assert opened.status == "approved" and len(tiktok_sandbox.return_approvals) == 1
    message = OutboxMessage.objects.get(kind="return_decision")
    assert message.status == OutboxStatus.SENT and message.response["decision"] == "APPROVE_RETURN"
    assert tiktok_sandbox.state.contract_violations == []
    # and the next read of TikTok's returns keeps the one RMA, now with TikTok's status
    services.returns_sync_account(account_id=tiktok_account.pk, force=True)
    (rma,) = ReturnAuthorization.objects.filter(order=order)
    assert (rma.status, rma.channel_status) == ("authorized", "AWAITING_BUYER_SHIP")
