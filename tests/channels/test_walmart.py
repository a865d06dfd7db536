"""Walmart over real HTTP against the sandbox: tokens, paging, throttling, replays, WFS, acks, writes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from channels.connectors.base import ChannelError
from channels.connectors.walmart import WalmartConnector, from_millis
from channels.inbound import inbound_orders_process
from channels.models import (
    ChannelAvailability,
    InboundEvent,
    Listing,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    SyncStatus,
)
from channels.outbox import cancellation_enqueue, inventory_push_plan, outbox_relay, ship_confirmation_enqueue
from channels.services import channel_account_set_credentials, connector_for
from channels.sync import sync_account_run
from inventory.models import Reservation
from orders.models import ExceptionCase, ExceptionKind, Order, OrderLine, OrderStatus
from tests.channels import battery

pytestmark = pytest.mark.django_db

CREDENTIALS = {"client_id": "wm-client", "client_secret": "wm-secret"}


def _merchant(sandbox, count=1, **kwargs):
    kwargs.setdefault("unknown_sku", False)
    return sandbox.state.generate(count, status="unshipped", fulfilled_by="MERCHANT", **kwargs)


def test_full_ingest_pages_with_next_cursor_and_reads_wfs_separately(walmart_sandbox, walmart_account, skus):
    # given: 450 seller-fulfilled orders (3 pages of 200) and 30 WFS orders
    _merchant(walmart_sandbox, 450)
    wfs = walmart_sandbox.state.generate(30, fulfilled_by="WFS", unknown_sku=False)
    # when
    run = sync_account_run(account_id=walmart_account.pk)
    # then
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert (run.pages, run.orders_seen, run.orders_created) == (4, 480, 480)
    assert Order.objects.filter(account_id=walmart_account.pk).count() == 480
    lines = sum(len(o.lines) for o in walmart_sandbox.state.orders.values())
    assert OrderLine.objects.filter(order__account_id=walmart_account.pk).count() == lines
    assert set(Order.objects.filter(marketplace_fulfilled=True).values_list("external_id", flat=True)) == {
        o.order_id for o in wfs
    }
    assert walmart_sandbox.tokens_issued == 1


def test_times_are_epoch_milliseconds_and_lines_carry_status(walmart_sandbox, walmart_account, skus):
    # given
    (made,) = _merchant(walmart_sandbox, lines=2)
    # when
    sync_account_run(account_id=walmart_account.pk)
    # then
    order = Order.objects.select_related("ship_to").get(external_id=made.order_id)
    assert order.status == OrderStatus.OPEN and order.channel_status == "Created"
    assert order.placed_at == made.created_at
    assert order.ship_by == made.ship_by and order.deliver_by == made.deliver_by
    assert order.ship_to.country_code == "US" and order.ship_to.name == made.buyer_name
    assert sorted(order.lines.values_list("external_id", flat=True)) == ["1", "2"]
    assert {line.channel_status for line in order.lines.all()} == {f"Created:{line.quantity}" for line in made.lines}
    assert from_millis(1568466571000, "x").isoformat() == "2019-09-14T13:09:31+00:00"


def test_new_order_queues_one_acknowledgement_in_the_ingest_transaction(walmart_sandbox, walmart_account, skus):
    # given: two new seller-fulfilled orders and one WFS order
    made = _merchant(walmart_sandbox, 2)
    walmart_sandbox.state.generate(1, fulfilled_by="WFS", unknown_sku=False)
    connector = connector_for(walmart_account)
    raws = [connector.get_order(o.order_id) for o in walmart_sandbox.state.orders.values()]
    # when: a page is ingested, twice
    inbound_orders_process(account=walmart_account, connector=connector, raw_orders=raws, actor="test")
    inbound_orders_process(account=walmart_account, connector=connector, raw_orders=raws, actor="test")
    # then: one acknowledgement per seller-fulfilled purchase order, none for WFS
    acks = OutboxMessage.objects.filter(account=walmart_account, kind=OutboxKind.ACKNOWLEDGE)
    assert sorted(acks.values_list("dedupe_key", flat=True)) == sorted(f"ack:{o.order_id}" for o in made)
    assert all(m.order_id == Order.objects.get(external_id=m.payload["order_external_id"]).pk for m in acks)


def test_acknowledgement_reaches_walmart_and_the_next_poll_sees_it(walmart_sandbox, walmart_account, skus):
    # given
    (made,) = _merchant(walmart_sandbox)
    sync_account_run(account_id=walmart_account.pk)
    # when
    counts = outbox_relay(account_id=walmart_account.pk)
    sync_account_run(account_id=walmart_account.pk)
    # then
    assert counts == {"sent": 1}
    assert walmart_sandbox.state.extra["acknowledgements"] == [made.order_id]
    order = Order.objects.get(external_id=made.order_id)
    assert order.channel_status == "Acknowledged"
    assert OutboxMessage.objects.filter(kind=OutboxKind.ACKNOWLEDGE).count() == 1


def test_an_order_cancelled_before_its_acknowledgement_is_not_parked(walmart_sandbox, walmart_account, skus):
    # given: a new order ingested (its acknowledgement queued), then cancelled on Walmart before the relay ran
    (made,) = _merchant(walmart_sandbox)
    sync_account_run(account_id=walmart_account.pk)
    with walmart_sandbox.state.lock:
        walmart_sandbox.state.cancel(made, "CUSTOMER_REQUESTED_SELLER_TO_CANCEL")
    # when
    counts = outbox_relay(account_id=walmart_account.pk)
    # then: Walmart refused it (nothing to acknowledge), and the message is done, with no case for ops
    message = OutboxMessage.objects.get(kind=OutboxKind.ACKNOWLEDGE)
    assert counts == {"sent": 1} and message.status == OutboxStatus.SENT
    assert message.response["skipped"]
    assert walmart_sandbox.state.extra.get("acknowledgements", []) == []
    assert not ExceptionCase.objects.filter(kind=ExceptionKind.OUTBOX_PARKED).exists()


def test_wfs_orders_are_recorded_never_reserved(walmart_sandbox, walmart_account, skus):
    # given
    from fulfillment.selectors import releasable_order_ids
    from fulfillment.services import orders_route

    (made,) = walmart_sandbox.state.generate(1, fulfilled_by="WFS", status="unshipped", unknown_sku=False)
    # when
    sync_account_run(account_id=walmart_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    orders_route(order_ids=[order.pk], actor="router")
    # then
    assert order.marketplace_fulfilled and order.status == OrderStatus.OPEN
    assert order.pk not in releasable_order_ids(limit=100)
    assert not Reservation.objects.filter(order_line__order=order).exists()
    assert not OutboxMessage.objects.filter(order_id=order.pk).exists()


def test_replayed_pages_create_nothing_new(walmart_sandbox, walmart_account, skus):
    battery.replayed_pages_create_nothing_new(walmart_sandbox, walmart_account, _merchant, 220, also=(OutboxMessage,))


def test_duplicates_across_pages_are_ingested_once(walmart_sandbox, walmart_account, skus):
    battery.duplicates_across_pages_are_ingested_once(walmart_sandbox, walmart_account, _merchant, 300)


def test_no_orders_is_walmart_404_and_an_empty_success(walmart_sandbox, walmart_account):
    # when
    run = sync_account_run(account_id=walmart_account.pk)
    # then
    assert run.status == SyncStatus.SUCCEEDED and run.orders_seen == 0


def test_throttling_waits_for_the_replenishment_time(walmart_sandbox, walmart_account, skus):
    # given: five 429s with x-next-replenishment-time
    _merchant(walmart_sandbox, 50)
    walmart_sandbox.state.faults.throttle_next = 5
    connector = connector_for(walmart_account)
    waits: list[float] = []
    connector.http.sleep = waits.append
    # when
    run = sync_account_run(account_id=walmart_account.pk, connector=connector)
    # then
    assert run.status == SyncStatus.SUCCEEDED
    assert run.progress["throttled"] >= 5 and len(waits) >= 5
    assert all(0 <= wait <= 1.0 for wait in waits)
    assert Order.objects.count() == 50


def test_throttling_beyond_patience_keeps_the_cursor(walmart_sandbox, walmart_account, skus):
    battery.throttling_beyond_patience_keeps_the_cursor(walmart_sandbox, walmart_account, _merchant, 10, 5)


def test_server_errors_are_retried(walmart_sandbox, walmart_account, skus):
    battery.server_errors_are_retried(walmart_sandbox, walmart_account, _merchant, 30)


def test_expired_token_is_renewed_once(walmart_sandbox, walmart_account, skus):
    # given: a synced account whose cached token Walmart no longer knows
    _merchant(walmart_sandbox, 3)
    sync_account_run(account_id=walmart_account.pk)
    walmart_sandbox.access_tokens.clear()
    _merchant(walmart_sandbox, 2)
    # when
    run = sync_account_run(account_id=walmart_account.pk)
    # then
    assert run.status == SyncStatus.SUCCEEDED
    assert walmart_sandbox.tokens_issued == 2 and Order.objects.count() == 5


def test_bad_client_secret_fails_the_sync_and_stores_nothing(walmart_sandbox, walmart_account):
    # given
    _merchant(walmart_sandbox, 3)
    channel_account_set_credentials(
        account=walmart_account, credentials={"client_id": "wm-client", "client_secret": "wrong"}, actor="test"
    )
    # when
    run = sync_account_run(account_id=walmart_account.pk)
    # then
    assert run.status == SyncStatus.FAILED and "401" in run.error
    assert "wrong" not in run.error
    assert not InboundEvent.objects.exists()


def test_out_of_order_updates_never_regress_status(walmart_sandbox, walmart_account, skus):
    # given: an order ingested as shipped, and an older payload from when it was open
    (made,) = _merchant(walmart_sandbox)
    connector = connector_for(walmart_account)
    old_payload = connector.get_order(made.order_id)
    with walmart_sandbox.state.lock:
        for line in made.lines:
            line.shipped = line.quantity
        made.recompute()
        walmart_sandbox.state.touch(made)
    old_payload["orderDate"] -= 3_600_000
    for line in old_payload["orderLines"]["orderLine"]:
        line["statusDate"] -= 3_600_000
    sync_account_run(account_id=walmart_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    assert order.status == OrderStatus.SHIPPED
    # when
    outcome = inbound_orders_process(account=walmart_account, connector=connector, raw_orders=[old_payload], actor="t")
    # then
    order.refresh_from_db()
    assert outcome.unchanged == 1 and order.status == OrderStatus.SHIPPED
    assert all(line.quantity_shipped == line.quantity for line in order.lines.all())


def test_walmart_auto_cancel_after_the_ship_date_cancels_the_order(walmart_sandbox, walmart_account, skus):
    # given: an order whose ship date is more than the configured days past
    (made,) = _merchant(walmart_sandbox)
    sync_account_run(account_id=walmart_account.pk)
    walmart_sandbox.auto_cancel_days = 1
    made.ship_by = timezone.now() - timedelta(days=2)
    # when
    sync_account_run(account_id=walmart_account.pk)
    # then
    order = Order.objects.get(external_id=made.order_id)
    assert order.status == OrderStatus.CANCELLED
    assert all(line.quantity_cancelled == line.quantity for line in order.lines.all())


def test_malformed_orders_fail_naming_the_field(walmart_sandbox, walmart_account, skus):
    field_for = {
        "bad_quantity": "orderLines.orderLine[0].orderLineQuantity.amount",
        "bad_date": "orderDate",
        "missing_items": "orderLines",
    }
    battery.malformed_orders_fail_naming_the_field(walmart_sandbox, walmart_account, _merchant, 40, field_for)


def test_ship_confirmation_sends_per_line_tracking_in_milliseconds(walmart_sandbox, walmart_account, skus):
    # given
    (made,) = _merchant(walmart_sandbox, lines=2)
    sync_account_run(account_id=walmart_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    shipped_at = timezone.now() - timedelta(minutes=5)
    message = ship_confirmation_enqueue(
        order=order,
        package_reference="PKG-1",
        carrier_code="UPS",
        tracking_number="1Z999",
        shipped_at=shipped_at,
        lines=[(line.external_id, line.quantity) for line in order.lines.all()],
        shipping_method="Express",
    )
    # when
    outbox_relay(account_id=walmart_account.pk)
    sync_account_run(account_id=walmart_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT, message.last_error
    (shipment,) = walmart_sandbox.state.shipments
    assert sorted(line["lineNumber"] for line in shipment["lines"]) == ["1", "2"]
    tracking = shipment["lines"][0]
    assert tracking["shipDateTime"] == int(shipped_at.timestamp() * 1000)
    assert tracking["carrierName"] == {"carrier": "UPS"} and tracking["methodCode"] == "Express"
    order.refresh_from_db()
    assert order.status == OrderStatus.SHIPPED


def test_ship_resend_after_a_crash_is_found_by_tracking_number(walmart_sandbox, walmart_account, skus):
    # given: Walmart got the shipment but the worker died before marking the message
    (made,) = _merchant(walmart_sandbox)
    sync_account_run(account_id=walmart_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    message = ship_confirmation_enqueue(
        order=order,
        package_reference="PKG-9",
        carrier_code="FedEx",
        tracking_number="7712",
        shipped_at=timezone.now(),
        lines=[(line.external_id, line.quantity) for line in order.lines.all()],
    )
    OutboxMessage.objects.filter(kind=OutboxKind.ACKNOWLEDGE).delete()
    connector = connector_for(walmart_account)
    from channels.outbox import _send, outbox_claim

    (claimed,) = outbox_claim(account_id=walmart_account.pk)
    _send(connector, OutboxMessage.objects.get(pk=claimed), {})
    OutboxMessage.objects.filter(pk=claimed).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    # when
    outbox_relay(account_id=walmart_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT and message.response["already_applied"] is True
    assert len(walmart_sandbox.state.shipments) == 1


def test_cancellation_uses_walmarts_reason_codes(walmart_sandbox, walmart_account, skus):
    # given: one line of two cancelled for lack of stock
    (made,) = _merchant(walmart_sandbox, lines=2)
    sync_account_run(account_id=walmart_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    first = order.lines.get(external_id="1")
    message = cancellation_enqueue(
        order=order, lines=[(first.external_id, first.quantity)], reason="NoInventory", dedupe_key="l1"
    )
    # when
    outbox_relay(account_id=walmart_account.pk)
    sync_account_run(account_id=walmart_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT, message.last_error
    (cancel,) = walmart_sandbox.state.cancellations
    assert cancel["reason"] == "SELLER_CANCEL_OUT_OF_STOCK"
    first.refresh_from_db()
    assert first.quantity_cancelled == first.quantity
    assert order.lines.get(external_id="2").quantity_cancelled == 0


def test_inventory_is_put_per_sku(walmart_sandbox, walmart_account, skus):
    # given
    for index, quantity in {0: 4, 1: 0}.items():
        Listing.objects.create(account=walmart_account, sku=skus[index], channel_sku=skus[index].code)
        ChannelAvailability.objects.create(account=walmart_account, sku=skus[index], quantity=quantity, needs_push=True)
    # when
    inventory_push_plan()
    outbox_relay(account_id=walmart_account.pk)
    # then
    assert walmart_sandbox.state.inventory == {skus[0].code: 4, skus[1].code: 0}
    assert OutboxMessage.objects.get(kind=OutboxKind.INVENTORY).status == OutboxStatus.SENT


def test_connector_without_credentials_refuses_to_call(walmart_sandbox, walmart_account):
    # given
    connector = WalmartConnector(walmart_account, {})
    # then
    with pytest.raises(ChannelError, match="client_id"):
        connector.get_order("1")
