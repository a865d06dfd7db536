"""Amazon over real HTTP against the sandbox: paging, throttling, replays, crashes, bad data."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from channels.connectors.base import ChannelError
from channels.inbound import inbound_event_reprocess, inbound_orders_process
from channels.models import InboundEvent, InboundStatus, Listing, SyncRun, SyncStatus
from channels.services import connector_for
from channels.sync import LOCK_NAMESPACE, sync_account_run, syncs_due
from orders.models import ExceptionCase, ExceptionKind, Hold, HoldKind, Order, OrderLine, OrderStatus
from tests.channels import battery

pytestmark = pytest.mark.django_db


def test_full_ingest_with_paging(amazon_sandbox, amazon_account, skus):
    # given: 250 orders, 3 pages of 100
    amazon_sandbox.state.generate(250, unknown_sku=False)
    # when
    run = sync_account_run(account_id=amazon_account.pk)
    # then
    assert run.status == SyncStatus.SUCCEEDED
    assert (run.pages, run.orders_seen, run.orders_created, run.orders_failed) == (3, 250, 250, 0)
    assert Order.objects.filter(account_id=amazon_account.pk).count() == 250
    expected_lines = sum(len(o.lines) for o in amazon_sandbox.state.orders.values())
    assert OrderLine.objects.filter(order__account_id=amazon_account.pk).count() == expected_lines
    assert InboundEvent.objects.filter(account=amazon_account, status=InboundStatus.PROCESSED).count() == 250
    afn = {o.order_id for o in amazon_sandbox.state.orders.values() if o.fulfilled_by == "AMAZON"}
    assert set(Order.objects.filter(marketplace_fulfilled=True).values_list("external_id", flat=True)) == afn
    pending = {o.order_id for o in amazon_sandbox.state.orders.values() if o.status == "pending"}
    assert set(Order.objects.filter(status=OrderStatus.PENDING).values_list("external_id", flat=True)) == pending
    assert not OrderLine.objects.filter(order__account_id=amazon_account.pk, sku__isnull=True).exists()
    amazon_account.refresh_from_db()
    assert amazon_account.sync_cursor == run.cursor_to
    assert amazon_account.last_synced_at is not None


def test_status_ship_by_and_address_come_from_the_wire(amazon_sandbox, amazon_account, skus):
    # given: one unshipped order
    (made,) = amazon_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    # when
    sync_account_run(account_id=amazon_account.pk)
    # then
    order = Order.objects.select_related("ship_to").get(external_id=made.order_id)
    assert order.status == OrderStatus.OPEN
    assert order.channel_status == "UNSHIPPED"
    assert order.ship_by == made.ship_by
    assert order.ship_to.name == made.buyer_name
    assert order.currency == "USD"


def _generate(sandbox, count: int):
    return sandbox.state.generate(count)


def test_replayed_pages_create_nothing_new(amazon_sandbox, amazon_account, skus):
    # the overlap replays every page of a completed sync
    run = battery.replayed_pages_create_nothing_new(amazon_sandbox, amazon_account, _generate, 150)
    assert run.status == SyncStatus.SUCCEEDED


def test_duplicates_across_pages_are_ingested_once(amazon_sandbox, amazon_account, skus):
    battery.duplicates_across_pages_are_ingested_once(amazon_sandbox, amazon_account, _generate, 180)


def test_throttling_storm_is_honoured(amazon_sandbox, amazon_account, skus):
    # the next five calls answer 429 QuotaExceeded
    run = battery.throttling_storm_is_honoured(amazon_sandbox, amazon_account, _generate, 120)
    assert run.progress["http_retries"] >= 5


def test_throttling_beyond_patience_keeps_the_cursor(amazon_sandbox, amazon_account, skus):
    battery.throttling_beyond_patience_keeps_the_cursor(amazon_sandbox, amazon_account, _generate, 10, 5)


def test_server_errors_are_retried(amazon_sandbox, amazon_account, skus):
    battery.server_errors_are_retried(amazon_sandbox, amazon_account, _generate, 30)


class DiesAfterTwoPages:
    """A connector whose worker is killed after two pages were processed."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def fetch_orders(self, **kwargs):
        for number, page in enumerate(self.inner.fetch_orders(**kwargs), start=1):
            yield page
            if number == 2:
                raise ChannelError("worker killed")


def test_sync_killed_halfway_loses_and_duplicates_nothing(amazon_sandbox, amazon_account, skus):
    # given: 250 orders and a sync that dies after page 2
    amazon_sandbox.state.generate(250)
    connector = DiesAfterTwoPages(connector_for(amazon_account))
    # when
    first = sync_account_run(account_id=amazon_account.pk, connector=connector)
    # then: two pages are in, the cursor did not move
    assert first.status == SyncStatus.PARTIAL
    assert Order.objects.count() == 200
    amazon_account.refresh_from_db()
    assert amazon_account.sync_cursor is None
    # when: the next run
    second = sync_account_run(account_id=amazon_account.pk)
    # then: every order once, every event once
    assert second.status == SyncStatus.SUCCEEDED
    assert second.orders_created == 50 and second.progress["replayed"] == 200
    assert Order.objects.count() == 250
    assert InboundEvent.objects.count() == 250


def test_out_of_order_updates_never_regress_status(amazon_sandbox, amazon_account, skus):
    # given: an order ingested as shipped
    (made,) = amazon_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    connector = connector_for(amazon_account)
    old_payload = connector.get_order(made.order_id)
    old_payload["lastUpdatedTime"] = (made.updated_at - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with amazon_sandbox.state.lock:
        for line in made.lines:
            line.shipped = line.quantity
        made.recompute()
        amazon_sandbox.state.touch(made)
    sync_account_run(account_id=amazon_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    assert order.status == OrderStatus.SHIPPED
    # when: the older payload arrives late
    outcome = inbound_orders_process(
        account=amazon_account, connector=connector, raw_orders=[old_payload], actor="test"
    )
    # then
    order.refresh_from_db()
    assert outcome.unchanged == 1
    assert order.status == OrderStatus.SHIPPED
    assert all(line.quantity_shipped == line.quantity for line in order.lines.all())


def test_a_newer_channel_state_never_moves_waybill_backwards(amazon_sandbox, amazon_account, skus):
    # given: Waybill allocated the order; the channel still says UNSHIPPED, with a newer timestamp
    (made,) = amazon_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    sync_account_run(account_id=amazon_account.pk)
    Order.objects.filter(external_id=made.order_id).update(status=OrderStatus.ALLOCATED)
    made.buyer_name += " (gift)"
    amazon_sandbox.state.touch(made)
    # when
    sync_account_run(account_id=amazon_account.pk)
    # then
    assert Order.objects.get(external_id=made.order_id).status == OrderStatus.ALLOCATED


def test_channel_cancellation_and_payment_move_orders_forward(amazon_sandbox, amazon_account, skus):
    # given
    pending, to_cancel = amazon_sandbox.state.generate(2, status="pending", fulfilled_by="MERCHANT")
    sync_account_run(account_id=amazon_account.pk)
    # when: one is paid, the other cancelled by the buyer
    with amazon_sandbox.state.lock:
        pending.status, pending.paid = "unshipped", True
        amazon_sandbox.state.touch(pending)
        amazon_sandbox.state.cancel(to_cancel, "BuyerCanceled")
    sync_account_run(account_id=amazon_account.pk)
    # then
    assert Order.objects.get(external_id=pending.order_id).status == OrderStatus.OPEN
    cancelled = Order.objects.get(external_id=to_cancel.order_id)
    assert cancelled.status == OrderStatus.CANCELLED
    assert all(line.quantity_cancelled == line.quantity for line in cancelled.lines.all())
    assert cancelled.events.filter(kind="status_changed", to_status=OrderStatus.CANCELLED).count() == 1


def test_malformed_order_is_quarantined_while_the_rest_ingest(amazon_sandbox, amazon_account, skus):
    # 3 malformed orders among 60
    field_for = {"bad_quantity": "quantityOrdered", "bad_date": "createdTime", "missing_items": "orderItems"}
    run = battery.malformed_orders_fail_naming_the_field(amazon_sandbox, amazon_account, _generate, 60, field_for)
    bad = [o.order_id for o in amazon_sandbox.state.orders.values() if o.malformed]
    assert not Order.objects.filter(external_id__in=bad).exists()
    amazon_account.refresh_from_db()
    assert amazon_account.sync_cursor == run.cursor_to  # a bad record never blocks the cursor


def test_failed_event_is_reprocessed_after_a_fix(amazon_sandbox, amazon_account, skus):
    # given: a failed event whose payload is later corrected
    amazon_sandbox.state.faults.malformed_next = 1
    (made,) = amazon_sandbox.state.generate(1, lines=1)
    made.malformed = "bad_quantity"
    sync_account_run(account_id=amazon_account.pk)
    event = InboundEvent.objects.get(status=InboundStatus.FAILED)
    connector = connector_for(amazon_account)
    # when: re-processed unchanged
    again = inbound_event_reprocess(event=event, connector=connector, actor="agent")
    # then
    assert again.status == InboundStatus.FAILED and again.attempts == 2
    # when: fixed at the channel and re-processed (the order is read again from Amazon)
    made.malformed = ""
    fixed = inbound_event_reprocess(event=event, connector=connector, actor="agent")
    # then
    assert fixed.status == InboundStatus.PROCESSED
    assert fixed.order_id == Order.objects.get(external_id=made.order_id).pk


def test_unknown_sku_holds_the_order_and_opens_a_case(amazon_sandbox, amazon_account, skus):
    # given: an order with a SKU Waybill doesn't know
    (made,) = amazon_sandbox.state.generate(1, lines=2, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=True)
    unknown = made.lines[-1].sku
    # when
    sync_account_run(account_id=amazon_account.pk)
    # then
    order = Order.objects.get(external_id=made.order_id)
    assert order.on_hold
    assert Hold.objects.filter(order=order, kind=HoldKind.UNMAPPED_SKU, released_at__isnull=True).count() == 1
    case = ExceptionCase.objects.get(kind=ExceptionKind.UNMAPPED_SKU, order=order)
    assert unknown in case.title
    assert Listing.objects.get(account=amazon_account, channel_sku=unknown).sku_id is None
    assert order.lines.get(channel_sku=unknown).sku_id is None


def test_one_sync_per_account_at_a_time(amazon_sandbox, amazon_account):
    # given: another connection (another worker) holds the account's lock
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_NAMESPACE, amazon_account.pk])
        # when
        run = sync_account_run(account_id=amazon_account.pk)
        # then
        assert run is None
        assert not SyncRun.objects.exists()
    # when: that worker's connection is gone, so is its lock (the server ends the backend a moment
    # after the client hangs up: wait for the lock to disappear rather than race it)
    with connection.cursor() as cursor:
        for _ in range(100):
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s "
                "AND pid <> pg_backend_pid()",
                [LOCK_NAMESPACE, amazon_account.pk],
            )
            if cursor.fetchone()[0] == 0:
                break
            time.sleep(0.05)
    assert sync_account_run(account_id=amazon_account.pk) is not None


def test_dispatcher_picks_accounts_that_are_due(amazon_account):
    # given: never synced
    # then
    assert syncs_due() == [amazon_account.pk]
    # given: just synced
    from django.utils import timezone

    amazon_account.last_synced_at = timezone.now()
    amazon_account.save()
    assert syncs_due() == []


def test_a_stale_running_run_is_closed_by_the_next_sync(amazon_sandbox, amazon_account):
    # given: a run left "running" by a worker that died
    stale = SyncRun.objects.create(account=amazon_account, kind="poll")
    # when
    sync_account_run(account_id=amazon_account.pk)
    # then
    stale.refresh_from_db()
    assert stale.status == SyncStatus.FAILED and "stopped" in stale.error


def test_get_order_returns_an_order_exactly_as_a_page_has_it(amazon_sandbox, amazon_us_mx_account):
    # given: orders of every shape: pending, several lines, part-shipped with a package, cancelled,
    # cancel-requested, fulfilled by Amazon, placed on Amazon.com.mx
    state = amazon_sandbox.state
    state.generate(1, status="pending", fulfilled_by="MERCHANT")
    (part,) = state.generate(1, lines=3, status="unshipped", fulfilled_by="MERCHANT")
    (asked,) = state.generate(1, lines=2, status="unshipped", fulfilled_by="MERCHANT")
    state.generate(1, status="cancelled", fulfilled_by="MERCHANT")
    state.generate(1, status="unshipped", fulfilled_by="AMAZON")
    state.generate(1, lines=2, status="unshipped", fulfilled_by="MERCHANT", marketplace_id="A1AM78C64UM0Y8")
    connector = connector_for(amazon_us_mx_account)
    token = connector.access_token()
    confirmed = httpx.post(
        f"{amazon_sandbox.base_url}/orders/v0/orders/{part.order_id}/shipmentConfirmation",
        headers={"x-amz-access-token": token},
        json={
            "marketplaceId": "ATVPDKIKX0DER",
            "packageDetail": {
                "packageReferenceId": "1",
                "carrierCode": "UPS",
                "trackingNumber": "1Z999AA10123456784",
                "shipDate": "2026-03-02T15:00:00Z",
                "orderItems": [{"orderItemId": part.lines[0].line_id, "quantity": 1}],
            },
        },
    )
    assert confirmed.status_code == 204
    with state.lock:
        state.request_cancel(asked, "No longer needed")
    # when
    listed = [
        raw for page in connector.fetch_orders(since=timezone.now() - timedelta(days=2)) for raw in page.raw_orders
    ]
    # then: getOrder (over HTTP) answers each one identically, and the pipeline parses it the same way
    assert len(listed) == 6
    for raw in listed:
        one = connector.get_order(raw["orderId"])
        assert one == raw
        assert connector.parse_order(one) == connector.parse_order(raw)
    shapes = {raw["orderId"]: raw for raw in listed}
    assert shapes[part.order_id]["packages"][0]["packageReferenceId"] == "1"
    assert "buyer" in shapes[part.order_id] and "recipient" in shapes[part.order_id]
    # and an order Amazon doesn't have is a 404 that keeps Amazon's answer
    with pytest.raises(ChannelError) as missing:
        connector.get_order("114-0000000-0000000")
    assert missing.value.status == 404 and missing.value.detail["errors"][0]["code"] == "NotFound"
    connector.close()
