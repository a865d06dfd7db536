"""The outbox over real HTTP: ship confirmations, cancellations, inventory pushes, crashes, parking."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from channels.models import ChannelAvailability, Listing, OutboxKind, OutboxMessage, OutboxStatus
from channels.outbox import (
    _send,
    cancellation_enqueue,
    inventory_push_plan,
    outbox_claim,
    outbox_relay,
    outbox_retry_now,
    ship_confirmation_enqueue,
)
from channels.sandbox.shopify import variant_ids
from channels.services import connector_for
from channels.sync import sync_account_run
from orders.models import ExceptionCase, ExceptionKind, Order, OrderStatus

pytestmark = pytest.mark.django_db


def _synced_order(sandbox, account, **kwargs) -> tuple:
    (made,) = sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False, **kwargs)
    if account.kind == "shopify" and account.sync_cursor is None:
        account.sync_cursor = timezone.now() - timedelta(minutes=1)
        account.save()
    sync_account_run(account_id=account.pk)
    external = made.order_id if account.kind == "amazon" else f"gid://shopify/Order/{made.order_id}"
    return made, Order.objects.get(account_id=account.pk, external_id=external)


def _ship(order, package="shipment-1", tracking="1Z999AA10123456784"):
    return ship_confirmation_enqueue(
        order=order,
        package_reference=package,
        carrier_code="UPS",
        tracking_number=tracking,
        shipped_at=timezone.now() - timedelta(minutes=3),
        lines=[(line.external_id, line.quantity) for line in order.lines.all()],
        shipping_method="Ground",
    )


def _crash_after_send(message: OutboxMessage) -> None:
    """Claim and send like the relay, then die before marking it sent; the lease then expires."""
    (claimed,) = outbox_claim(account_id=message.account_id)
    message = OutboxMessage.objects.select_related("account").get(pk=claimed)
    connector = connector_for(message.account)
    _send(connector, message, {})
    connector.close()
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_amazon_ship_confirmation_is_sent_and_the_order_follows(amazon_sandbox, amazon_account, skus):
    # given
    made, order = _synced_order(amazon_sandbox, amazon_account)
    message = _ship(order)
    # when
    counts = outbox_relay(account_id=amazon_account.pk)
    # then
    message.refresh_from_db()
    assert counts == {"sent": 1} and message.status == OutboxStatus.SENT and message.sent_at
    (shipment,) = amazon_sandbox.state.shipments
    assert shipment["packageReferenceId"] == "1" and shipment["carrierCode"] == "UPS"
    assert {i["orderItemId"]: i["quantity"] for i in shipment["orderItems"]} == {
        line.line_id: line.quantity for line in made.lines
    }
    # when: the next poll
    sync_account_run(account_id=amazon_account.pk)
    # then
    order.refresh_from_db()
    assert order.status == OrderStatus.SHIPPED


def test_same_change_twice_is_one_message(amazon_sandbox, amazon_account, skus):
    # given
    _, order = _synced_order(amazon_sandbox, amazon_account)
    # when
    first, second = _ship(order), _ship(order)
    # then
    assert first.pk == second.pk
    assert OutboxMessage.objects.count() == 1


def test_amazon_resend_after_a_crash_between_send_and_mark_sent_applies_once(amazon_sandbox, amazon_account, skus):
    # given: the confirmation reached Amazon but the worker died before marking it
    _, order = _synced_order(amazon_sandbox, amazon_account)
    message = _ship(order)
    _crash_after_send(message)
    assert len(amazon_sandbox.state.shipments) == 1
    # when: the relay picks up the expired lease
    outbox_relay(account_id=amazon_account.pk)
    # then: read-before-retry found the package; nothing sent twice
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT and message.attempts == 2
    assert message.response["already_applied"] is True
    assert len(amazon_sandbox.state.shipments) == 1


def test_shopify_resend_after_a_crash_applies_once(shopify_sandbox, shopify_account, skus):
    # given
    _, order = _synced_order(shopify_sandbox, shopify_account)
    message = _ship(order)
    _crash_after_send(message)
    # when
    outbox_relay(account_id=shopify_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT and message.response["already_applied"] is True
    assert len(shopify_sandbox.state.shipments) == 1


def test_shopify_fulfillment_uses_fulfillment_orders(shopify_sandbox, shopify_account, skus):
    # given
    made, order = _synced_order(shopify_sandbox, shopify_account, lines=2)
    _ship(order, tracking="TRK-42")
    # when
    outbox_relay(account_id=shopify_account.pk)
    # then
    (shipment,) = shopify_sandbox.state.shipments
    assert shipment["tracking"]["number"] == "TRK-42"
    assert all(line.remaining == 0 for line in made.lines)


def test_amazon_cancellation_goes_through_the_acknowledgement_feed(amazon_sandbox, amazon_account, skus):
    # given
    made, order = _synced_order(amazon_sandbox, amazon_account, lines=2)
    message = cancellation_enqueue(order=order, lines=[], reason="NoInventory", dedupe_key="all")
    # when
    outbox_relay(account_id=amazon_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT, message.last_error
    assert message.response["feed_id"]
    assert made.status == "cancelled"
    assert amazon_sandbox.state.cancellations[0]["reason"] == "NoInventory"


def test_shopify_cancel_is_confirmed_by_re_reading_the_order(shopify_sandbox, shopify_account, skus):
    # given
    made, order = _synced_order(shopify_sandbox, shopify_account)
    message = cancellation_enqueue(order=order, lines=[], reason="NoInventory", dedupe_key="all")
    # when
    outbox_relay(account_id=shopify_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT, message.last_error
    assert message.response["cancelled_at"]
    assert made.status == "cancelled"


def _shopify_order_with_lines(shopify_sandbox, shopify_account, quantities: list[int]):
    made, order = _synced_order(shopify_sandbox, shopify_account, lines=len(quantities))
    with shopify_sandbox.state.lock:
        for line, quantity in zip(made.lines, quantities, strict=False):
            line.quantity = quantity
        shopify_sandbox.state.touch(made)
    sync_account_run(account_id=shopify_account.pk)
    assert len(made.lines) == len(quantities), "the sandbox merged lines of one SKU: pick other quantities"
    return made, order


def test_shopify_cancels_some_units_of_a_line_with_an_order_edit(shopify_sandbox, shopify_account, skus):
    # given a Shopify order whose first line has 3 units, and Waybill cancelling 1 of them
    made, order = _shopify_order_with_lines(shopify_sandbox, shopify_account, [3, 1])
    first = made.lines[0]
    line_gid = f"gid://shopify/LineItem/{first.line_id}"
    message = cancellation_enqueue(
        order=order, lines=[(line_gid, 1)], reason="NoInventory", dedupe_key="one-unit", keep={line_gid: 2}
    )
    # when the relay sends it, then loses the answer and sends it again
    outbox_relay(account_id=shopify_account.pk)
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT, message.last_error
    assert message.response["edited"] == [line_gid]
    OutboxMessage.objects.filter(pk=message.pk).update(status=OutboxStatus.PENDING, next_attempt_at=timezone.now())
    outbox_relay(account_id=shopify_account.pk)
    # then the line lost exactly one unit on Shopify, the order stays open, and no orderCancel was sent
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT and message.response.get("already_applied") is True
    assert (first.quantity - first.cancelled, made.lines[1].cancelled, made.status) == (2, 0, "unshipped")
    assert [c.get("edit") for c in shopify_sandbox.state.cancellations] == [{first.line_id: 2}]


def test_shopify_whole_line_cancel_of_a_partly_shipped_order_is_an_edit_and_a_refusal_is_parked(
    shopify_sandbox, shopify_account, skus
):
    # given a two-line order whose first line has shipped
    made, order = _shopify_order_with_lines(shopify_sandbox, shopify_account, [1, 2])
    with shopify_sandbox.state.lock:
        shopify_sandbox.state.ship(made, lines={made.lines[0].line_id: 1})
    second = f"gid://shopify/LineItem/{made.lines[1].line_id}"
    # when Waybill cancels every open unit (the whole second line): orderCancel would refuse a fulfilled order
    message = cancellation_enqueue(order=order, lines=[(second, 2)], reason="NoInventory", dedupe_key="rest")
    outbox_relay(account_id=shopify_account.pk)
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT, message.last_error
    assert made.lines[1].cancelled == 2 and made.status == "shipped"
    # and cancelling a unit that has shipped is refused with Shopify's reason, and parked, not retried
    first = f"gid://shopify/LineItem/{made.lines[0].line_id}"
    refused = cancellation_enqueue(order=order, lines=[(first, 1)], reason="NoInventory", dedupe_key="shipped")
    outbox_relay(account_id=shopify_account.pk)
    refused.refresh_from_db()
    assert refused.status == OutboxStatus.PARKED
    assert "only 0 are unfulfilled" in refused.last_error


def test_a_message_is_parked_after_n_failures(settings, amazon_sandbox, amazon_account, skus):
    # given: Amazon answers 500 to everything and two attempts are allowed
    settings.WAYBILL_OUTBOX_MAX_ATTEMPTS = 2
    _, order = _synced_order(amazon_sandbox, amazon_account)
    message = _ship(order)
    amazon_sandbox.state.faults.error_500_next = 1000
    # when
    outbox_relay(account_id=amazon_account.pk)
    message.refresh_from_db()
    # then: failed once, with a backoff
    assert message.status == OutboxStatus.FAILED and message.next_attempt_at > timezone.now()
    # when: the backoff has passed
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    outbox_relay(account_id=amazon_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.PARKED and message.attempts == 2
    case = ExceptionCase.objects.get(kind=ExceptionKind.OUTBOX_PARKED)
    assert case.order_id == order.pk
    # when: an agent retries once the channel is back
    amazon_sandbox.state.faults.error_500_next = 0
    outbox_retry_now(message=message, actor="agent")
    outbox_relay(account_id=amazon_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT


def test_throttling_defers_the_accounts_other_messages_without_spending_attempts(amazon_sandbox, amazon_account, skus):
    # given: two messages and a channel that keeps answering 429
    _, first = _synced_order(amazon_sandbox, amazon_account)
    _, second = _synced_order(amazon_sandbox, amazon_account)
    one, two = _ship(first), _ship(second, package="shipment-2")
    amazon_sandbox.state.faults.throttle_next = 1000
    # when
    counts = outbox_relay(account_id=amazon_account.pk)
    # then
    one.refresh_from_db()
    two.refresh_from_db()
    assert counts == {"failed": 1, "deferred": 1}
    assert one.status == two.status == OutboxStatus.FAILED
    # a throttle is the channel's budget, not the message's failure: neither spent an attempt
    assert (one.attempts, two.attempts) == (0, 0)
    assert "429" in one.last_error and not two.last_error
    assert two.next_attempt_at >= one.next_attempt_at


def _availability(account, skus, quantities: dict[int, int], *, variant: bool = False):
    for index, quantity in quantities.items():
        sku = skus[index]
        Listing.objects.update_or_create(
            account=account,
            channel_sku=sku.code,
            defaults={"sku": sku, "external_variant_id": variant_ids(sku.code)[1] if variant else ""},
        )
        ChannelAvailability.objects.update_or_create(
            account=account, sku=sku, defaults={"quantity": quantity, "needs_push": True}
        )


def test_inventory_pushes_are_diffed_and_marked(amazon_sandbox, amazon_account, skus):
    # given: three changed SKUs, one unchanged since the last push
    _availability(amazon_account, skus, {0: 5, 1: 0, 2: 12, 3: 7})
    ChannelAvailability.objects.filter(sku=skus[3]).update(last_pushed_quantity=7)
    # when
    planned = inventory_push_plan()
    outbox_relay(account_id=amazon_account.pk)
    # then
    assert planned == 1
    assert amazon_sandbox.state.inventory == {skus[0].code: 5, skus[1].code: 0, skus[2].code: 12}
    assert not ChannelAvailability.objects.filter(needs_push=True).exists()
    assert dict(ChannelAvailability.objects.values_list("sku__code", "last_pushed_quantity")) == {
        skus[0].code: 5,
        skus[1].code: 0,
        skus[2].code: 12,
        skus[3].code: 7,
    }
    # when: nothing changed and the planner runs again
    ChannelAvailability.objects.update(needs_push=True)
    # then
    assert inventory_push_plan() == 0


def test_many_skus_go_as_one_json_listings_feed(amazon_sandbox, amazon_account, skus):
    # given
    _availability(amazon_account, skus, {i: i + 1 for i in range(25)})
    # when
    inventory_push_plan()
    outbox_relay(account_id=amazon_account.pk)
    # then
    message = OutboxMessage.objects.get(kind=OutboxKind.INVENTORY)
    assert message.status == OutboxStatus.SENT and message.response["summary"]["messagesAccepted"] == 25
    assert len(amazon_sandbox.state.inventory) == 25


def test_shopify_inventory_resend_reuses_the_idempotency_key(shopify_sandbox, shopify_account, skus):
    # given: a push that reached Shopify before the worker died
    _availability(shopify_account, skus, {0: 9, 1: 4}, variant=True)
    inventory_push_plan()
    message = OutboxMessage.objects.get(kind=OutboxKind.INVENTORY)
    (claimed,) = outbox_claim(account_id=shopify_account.pk)
    message = OutboxMessage.objects.select_related("account").get(pk=claimed)
    connector = connector_for(message.account)
    _send(connector, message, {})
    ChannelAvailability.objects.update(last_pushed_quantity=None)  # the mark never committed
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    # when
    outbox_relay(account_id=shopify_account.pk)
    # then: the same key came back; Shopify applied it once
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT
    assert len(shopify_sandbox.state.inventory_log) == 2
    assert shopify_sandbox.state.inventory == {skus[0].code: 9, skus[1].code: 4}
