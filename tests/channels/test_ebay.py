"""eBay over real HTTP against the sandbox: OAuth refresh, filter encoding, offset paging, throttling,
replays, per-line ship-by, shipping fulfillments, Post-Order cancellation, inventory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from channels.connectors.ebay import orders_filter
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
from orders.models import Order, OrderLine, OrderStatus
from tests.channels import battery

pytestmark = pytest.mark.django_db

CREDENTIALS = {"client_id": "eb-client", "client_secret": "eb-secret", "refresh_token": "v^1.1#test"}


def _open(sandbox, count=1, **kwargs):
    kwargs.setdefault("unknown_sku", False)
    return sandbox.state.generate(count, status="unshipped", **kwargs)


def _synced(sandbox, account, **kwargs):
    (made,) = _open(sandbox, **kwargs)
    sync_account_run(account_id=account.pk)
    return made, Order.objects.get(account_id=account.pk, external_id=made.order_id)


def test_the_filter_is_percent_encoded_as_ebay_documents_it():
    # given
    since = datetime(2024, 5, 15, 8, 25, 43, 511000, tzinfo=UTC)
    # then
    assert orders_filter(since) == "lastmodifieddate:%5B2024-05-15T08:25:43.511Z..%5D"


def test_full_ingest_with_offset_paging(ebay_sandbox, ebay_account, skus):
    # given: 450 orders, pages of 200
    _open(ebay_sandbox, 450)
    # when
    run = sync_account_run(account_id=ebay_account.pk)
    # then
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert (run.pages, run.orders_seen, run.orders_created) == (3, 450, 450)
    lines = sum(len(o.lines) for o in ebay_sandbox.state.orders.values())
    assert OrderLine.objects.filter(order__account_id=ebay_account.pk).count() == lines
    assert all("%5B" in q and "[" not in q for q in ebay_sandbox.raw_queries)
    assert ebay_sandbox.tokens_issued == 1


def test_ship_by_is_per_line_and_the_order_takes_the_earliest(ebay_sandbox, ebay_account, skus):
    # given
    made, order = _synced(ebay_sandbox, ebay_account, lines=3)
    # then
    by_line = dict(order.lines.values_list("external_id", "ship_by"))
    expected = {f"{made.number}{i + 1:04d}": made.ship_by + timedelta(hours=i) for i in range(len(made.lines))}
    assert by_line == expected
    assert order.ship_by == made.ship_by and order.status == OrderStatus.OPEN
    assert order.channel_status == "PAID/NOT_STARTED/NONE_REQUESTED"
    line = order.lines.get(external_id=f"{made.number}0001")
    assert line.unit_price == made.lines[0].unit_price


def test_unpaid_order_is_pending(ebay_sandbox, ebay_account, skus):
    # given
    (made,) = ebay_sandbox.state.generate(1, status="pending", unknown_sku=False)
    # when
    sync_account_run(account_id=ebay_account.pk)
    # then
    assert Order.objects.get(external_id=made.order_id).status == OrderStatus.PENDING


def test_replayed_pages_create_nothing_new(ebay_sandbox, ebay_account, skus):
    battery.replayed_pages_create_nothing_new(ebay_sandbox, ebay_account, _open, 210)


def test_duplicates_across_pages_are_ingested_once(ebay_sandbox, ebay_account, skus):
    battery.duplicates_across_pages_are_ingested_once(ebay_sandbox, ebay_account, _open, 300)


def test_throttling_storm_is_honoured(ebay_sandbox, ebay_account, skus):
    battery.throttling_storm_is_honoured(ebay_sandbox, ebay_account, _open, 60)


def test_throttling_beyond_patience_keeps_the_cursor(ebay_sandbox, ebay_account, skus):
    battery.throttling_beyond_patience_keeps_the_cursor(ebay_sandbox, ebay_account, _open, 10, 5)


def test_server_errors_are_retried(ebay_sandbox, ebay_account, skus):
    battery.server_errors_are_retried(ebay_sandbox, ebay_account, _open, 20)


def test_expired_token_is_refreshed_once(ebay_sandbox, ebay_account, skus):
    # given
    _open(ebay_sandbox, 2)
    sync_account_run(account_id=ebay_account.pk)
    ebay_sandbox.access_tokens.clear()
    _open(ebay_sandbox, 1)
    # when
    run = sync_account_run(account_id=ebay_account.pk)
    # then
    assert run.status == SyncStatus.SUCCEEDED
    assert ebay_sandbox.tokens_issued == 2 and Order.objects.count() == 3


def test_revoked_refresh_token_fails_the_sync_and_stores_nothing(ebay_sandbox, ebay_account):
    # given
    _open(ebay_sandbox, 2)
    channel_account_set_credentials(account=ebay_account, credentials={**CREDENTIALS, "refresh_token": "x"}, actor="t")
    # when
    run = sync_account_run(account_id=ebay_account.pk)
    # then
    assert run.status == SyncStatus.FAILED and "token refresh failed" in run.error
    assert not InboundEvent.objects.exists()


def test_out_of_order_updates_never_regress_status(ebay_sandbox, ebay_account, skus):
    # given: an order ingested as shipped, then its older payload
    (made,) = _open(ebay_sandbox)
    connector = connector_for(ebay_account)
    old_payload = connector.get_order(made.order_id)
    old_payload["lastModifiedDate"] = "2020-01-01T00:00:00.000Z"
    with ebay_sandbox.state.lock:
        for line in made.lines:
            line.shipped = line.quantity
        made.recompute()
        ebay_sandbox.state.touch(made)
    sync_account_run(account_id=ebay_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    assert order.status == OrderStatus.SHIPPED
    # when
    outcome = inbound_orders_process(account=ebay_account, connector=connector, raw_orders=[old_payload], actor="t")
    # then
    order.refresh_from_db()
    assert outcome.unchanged == 1 and order.status == OrderStatus.SHIPPED


def test_malformed_orders_fail_naming_the_field(ebay_sandbox, ebay_account, skus):
    field_for = {"bad_quantity": "lineItems[0].quantity", "bad_date": "creationDate", "missing_items": "lineItems"}
    battery.malformed_orders_fail_naming_the_field(ebay_sandbox, ebay_account, _open, 30, field_for)


def test_shipping_fulfillment_is_created_and_read_back_after_a_crash(ebay_sandbox, ebay_account, skus):
    # given: the fulfilment reached eBay, the worker died before marking the message
    _made, order = _synced(ebay_sandbox, ebay_account, lines=2)
    shipped_at = timezone.now() - timedelta(minutes=2)
    message = ship_confirmation_enqueue(
        order=order,
        package_reference="PKG-1",
        carrier_code="USPS",
        tracking_number="9400111",
        shipped_at=shipped_at,
        lines=[(line.external_id, line.quantity) for line in order.lines.all()],
    )
    from channels.outbox import _send, outbox_claim

    (claimed,) = outbox_claim(account_id=ebay_account.pk)
    _send(connector_for(ebay_account), OutboxMessage.objects.get(pk=claimed), {})
    OutboxMessage.objects.filter(pk=claimed).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    # when
    outbox_relay(account_id=ebay_account.pk)
    sync_account_run(account_id=ebay_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT and message.response["already_applied"] is True
    (shipment,) = ebay_sandbox.state.shipments
    assert shipment["shipmentTrackingNumber"] == "9400111"
    assert shipment["shippedDate"] == shipped_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{shipped_at.microsecond // 1000:03d}Z"
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.SHIPPED


def test_cancellation_checks_eligibility_then_cancels_the_whole_order(ebay_sandbox, ebay_account, skus):
    # given
    made, order = _synced(ebay_sandbox, ebay_account, lines=2)
    message = cancellation_enqueue(order=order, lines=[], reason="NoInventory", dedupe_key="all")
    # when
    outbox_relay(account_id=ebay_account.pk)
    sync_account_run(account_id=ebay_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT, message.last_error
    assert ebay_sandbox.eligibility_checks == [made.order_id]
    assert ebay_sandbox.state.cancellations[0]["reason"] == "OUT_OF_STOCK_OR_CANNOT_FULFILL"
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED


def test_cancelling_one_line_of_two_is_refused(ebay_sandbox, ebay_account, skus):
    # given
    _made, order = _synced(ebay_sandbox, ebay_account, lines=2)
    first = order.lines.order_by("external_id").first()
    message = cancellation_enqueue(order=order, lines=[(first.external_id, 1)], reason="NoInventory", dedupe_key="1")
    # when
    outbox_relay(account_id=ebay_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.PARKED and "whole order" in message.last_error
    assert not ebay_sandbox.state.cancellations


def test_a_shipped_order_is_not_eligible(ebay_sandbox, ebay_account, skus):
    # given
    made, order = _synced(ebay_sandbox, ebay_account)
    made.lines[0].shipped = 1
    message = cancellation_enqueue(order=order, lines=[], reason="NoInventory", dedupe_key="all")
    # when
    outbox_relay(account_id=ebay_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.PARKED and "ORDER_SHIPPED" in message.last_error


def test_inventory_goes_through_bulk_update_price_quantity(ebay_sandbox, ebay_account, skus):
    # given: 30 SKUs, more than one call of 25
    for index in range(30):
        Listing.objects.create(account=ebay_account, sku=skus[index], channel_sku=skus[index].code)
        ChannelAvailability.objects.create(account=ebay_account, sku=skus[index], quantity=index, needs_push=True)
    # when
    inventory_push_plan()
    outbox_relay(account_id=ebay_account.pk)
    # then
    assert ebay_sandbox.state.inventory == {skus[i].code: i for i in range(30)}
    assert OutboxMessage.objects.get(kind=OutboxKind.INVENTORY).status == OutboxStatus.SENT
