"""What a Shopify poll spends of the shop's query budget, over real HTTP against the sandbox (whose cost model is
Shopify's: requested cost from ``first:`` sizes and nesting, a leaky bucket answering THROTTLED), and how a sync
or webhook drain stops at a page boundary when the worker shuts down. Every query sent is validated against
the saved Admin schema and Shopify's limits."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from channels.connectors.shopify import ShopifyConnector
from channels.models import ChannelKind, InboundEvent, InboundStatus, SyncStatus
from channels.services import connector_for
from channels.sync import sync_account_run, syncs_due
from channels.webhooks import webhook_events_drain
from config.kernel.dispatch import worker_stopping, worker_stopping_set
from orders.models import Order
from tests.channels.conftest import SHOPIFY_CREDENTIALS, record_requests, sandbox_account
from tests.channels.test_background_work import _deliver
from tests.channels.test_shopify_contract import _problems

pytestmark = pytest.mark.django_db

OPERATION = re.compile(r"^\s*(?:query|mutation)\s+(\w+)")


def _operations(sent, schema) -> list[tuple[str, int]]:
    """(operation name, number of orders asked by id) of each GraphQL request sent; each must fit Shopify."""
    out = []
    for _method, _path, _query, body in sent:
        assert _problems(schema, body["query"], body["variables"]) == []
        name = OPERATION.match(body["query"]).group(1)
        out.append((name, sum(1 for key in body["variables"] if re.fullmatch(r"id\d+", key))))
    return out


def _aged(sandbox, made, seconds: float) -> None:
    """The orders as last changed ``seconds`` ago (what a running shop's orders look like to a poll)."""
    with sandbox.state.lock:
        for order in made:
            order.updated_at = (timezone.now() - timedelta(seconds=seconds)).replace(microsecond=0)


def test_a_poll_lists_its_overlap_for_a_point_an_order_and_reads_only_what_changed(
    shopify_sandbox, shopify_account, skus, shopify_schema_built
):
    # given five orders changed a minute ago, inside the next poll's overlap window
    made = shopify_sandbox.state.generate(5, unknown_sku=False)
    _aged(shopify_sandbox, made, 60)
    shopify_account.sync_cursor = timezone.now() - timedelta(seconds=90)
    shopify_account.save()
    connector = connector_for(shopify_account)
    sent = record_requests(connector)
    # when the first poll runs: the ids are listed, then the five read in one query
    first = sync_account_run(account_id=shopify_account.pk, connector=connector)
    assert first.status == SyncStatus.SUCCEEDED and Order.objects.count() == 5
    assert _operations(sent, shopify_schema_built) == [("OrderIdsSince", 0), ("OrdersById", 5)]
    # when the next poll runs over the same window: Waybill holds them, settled (read long after their update)
    sent.clear()
    second = sync_account_run(account_id=shopify_account.pk, connector=connector)
    # then it only lists them, for the listing's requested cost (2 + 100 x 1)
    assert _operations(sent, shopify_schema_built) == [("OrderIdsSince", 0)]
    assert connector.last_cost["requestedQueryCost"] == 102
    assert second.status == SyncStatus.SUCCEEDED and second.orders_seen == 0
    # when one of them changes at the shop
    with shopify_sandbox.state.lock:
        made[2].buyer_name = "Ana Changed"
        shopify_sandbox.state.touch(made[2])
    sent.clear()
    sync_account_run(account_id=shopify_account.pk, connector=connector)
    # then that one is read, and the change is in Waybill
    assert _operations(sent, shopify_schema_built) == [("OrderIdsSince", 0), ("OrdersById", 1)]
    changed = Order.objects.get(external_id=f"gid://shopify/Order/{made[2].order_id}")
    assert changed.source_updated_at == made[2].updated_at
    connector.close()


def test_an_order_read_in_the_second_of_its_update_is_read_again_so_a_same_second_change_is_not_lost(
    shopify_sandbox, shopify_account, skus, shopify_schema_built
):
    # given an unpaid order read by a poll in the same second it was placed
    shopify_account.sync_cursor = timezone.now()
    shopify_account.save()
    (made,) = shopify_sandbox.state.generate(1, status="pending", unknown_sku=False)
    sync_account_run(account_id=shopify_account.pk)
    order = Order.objects.get(external_id=f"gid://shopify/Order/{made.order_id}")
    stamp = order.source_updated_at
    # when payment clears within that second (Shopify stamps updatedAt to the second: the same stamp)
    with shopify_sandbox.state.lock:
        made.paid, made.status = True, "unshipped"
        made.version += 1
    assert made.updated_at == stamp
    connector = connector_for(shopify_account)
    sent = record_requests(connector)
    sync_account_run(account_id=shopify_account.pk, connector=connector)
    # then the next poll read it again (not settled: no run started 5 s after its update had it), and it is open
    assert ("OrdersById", 1) in _operations(sent, shopify_schema_built)
    order.refresh_from_db()
    assert order.status == "open"
    connector.close()


def test_orders_read_by_id_come_in_one_query_and_a_deleted_one_is_left_out(shopify_sandbox, shopify_account, skus):
    # given three orders, the middle one deleted at the shop
    made = shopify_sandbox.state.generate(3, unknown_sku=False)
    with shopify_sandbox.state.lock:
        del shopify_sandbox.state.orders[made[1].order_id]
    connector = connector_for(shopify_account)
    sent = record_requests(connector)
    # when
    raws = connector.get_orders([f"gid://shopify/Order/{m.order_id}" for m in made])
    # then
    assert [raw["id"] for raw in raws] == [
        f"gid://shopify/Order/{made[0].order_id}",
        f"gid://shopify/Order/{made[2].order_id}",
    ]
    assert len(sent) == 1
    connector.close()


def test_the_returns_read_lists_the_window_and_reads_only_orders_with_a_return(
    shopify_sandbox, shopify_account, skus, shopify_schema_built
):
    # given 12 orders changed lately, one of them with a return opened at Shopify
    made = shopify_sandbox.state.generate(12, unknown_sku=False, status="unshipped")
    returned = made[4]
    with shopify_sandbox.state.lock:
        returned.lines[0].shipped = returned.lines[0].quantity
    shopify_sandbox.state.open_return(returned, lines={returned.lines[0].line_id: 1}, reason="DEFECTIVE")
    connector = connector_for(shopify_account)
    sent = record_requests(connector)
    # when
    returns = [r for page in connector.fetch_returns(since=timezone.now() - timedelta(minutes=10)) for r in page]
    # then the return came, and only its order was read in full (the 11 others were listed for 5 points each)
    assert [(r.order_external_id, r.lines[0].quantity) for r in returns] == [
        (f"gid://shopify/Order/{returned.order_id}", 1)
    ]
    assert _operations(sent, shopify_schema_built) == [("OrderReturnIds", 0), ("OrderReturnsById", 1)]
    assert connector.last_cost["requestedQueryCost"] == 84
    connector.close()


def _shop(serve_sandbox, name: str, **bucket):
    """A Shopify sandbox of its own with ``bucket`` (restore_rate, maximum_available, refund_unused); its account."""
    from channels.sandbox.shopify import LOCATION_ID, ShopifySandbox

    sandbox = serve_sandbox(ShopifySandbox(access_token="shpat_test", webhook_secret="whsec-current", **bucket))
    account = sandbox_account(
        sandbox,
        kind=ChannelKind.SHOPIFY,
        name=name,
        credentials=SHOPIFY_CREDENTIALS,
        api_version="2026-10",
        inventory_location_id=LOCATION_ID,
    )
    return sandbox, account


@pytest.fixture
def small_bucket_shop(serve_sandbox, shopify_schema_built, db):
    """A shop whose bucket holds 1,000 points refilling 250 a second: two full reads cannot go back to back.
    Every query is charged its full requested cost (no refund of the unused part, as for reads that fill every
    page they ask for), so the pacing arithmetic below counts requested costs exactly."""
    return _shop(
        serve_sandbox, "shopify-small-bucket", restore_rate=250.0, maximum_available=1000.0, refund_unused=False
    )


def test_the_connector_paces_by_the_reported_throttle_status_instead_of_being_throttled(small_bucket_shop):
    # given 14 orders: one read of them all costs 938 of the 1,000 points
    sandbox, account = small_bucket_shop
    ids = [f"gid://shopify/Order/{m.order_id}" for m in sandbox.state.generate(14, unknown_sku=False)]
    connector = connector_for(account)
    waits = []
    real_sleep = connector.http.sleep
    connector.http.sleep = lambda seconds: (waits.append(seconds), real_sleep(seconds))
    # when they are read twice in a row
    for _ in range(2):
        assert len(connector.get_orders(ids)) == 14
    # then the second waited for the bucket (as Shopify reported it: 62 left, 250 a second) and was not refused
    assert connector.paced == 1 and connector.throttled == 0
    assert len(waits) == 1 and 0 < waits[0] <= (938 - 62) / 250
    connector.close()


def test_a_poll_reads_what_the_bucket_holds_instead_of_waiting_for_a_full_page(small_bucket_shop, shopify_schema_built):
    # given a bucket just emptied by a read of 14 orders (62 of 1,000 points left), and those 14 to poll
    sandbox, account = small_bucket_shop
    made = sandbox.state.generate(14, unknown_sku=False)
    connector = connector_for(account)
    connector.get_orders([f"gid://shopify/Order/{m.order_id}" for m in made])
    sent = record_requests(connector)
    # when
    pages = list(connector.fetch_orders(since=timezone.now() - timedelta(minutes=5)))
    # then every order came, in reads sized to the bucket (not one 938-point query), and none was refused
    asked = [count for name, count in _operations(sent, shopify_schema_built) if name == "OrdersById"]
    assert sorted(raw["id"] for page in pages for raw in page.raw_orders) == sorted(
        f"gid://shopify/Order/{m.order_id}" for m in made
    )
    assert sum(asked) == 14 and asked[0] < 14
    assert connector.throttled == 0
    connector.close()


def test_the_shop_refunds_what_a_query_did_not_use_as_shopify_does(serve_sandbox, shopify_schema_built, db):
    # given a shop whose bucket does not refill during the test, and one order
    sandbox, account = _shop(serve_sandbox, "shopify-refund", restore_rate=0.001)
    (made,) = sandbox.state.generate(1, unknown_sku=False)
    connector = connector_for(account)
    # when the order is read with a query asking room for 10 lines and 2 fulfillment orders
    connector.get_orders([f"gid://shopify/Order/{made.order_id}"])
    # then the bucket paid the actual cost (the nodes returned), not the requested one
    cost = connector.last_cost
    assert 1 <= cost["actualQueryCost"] < cost["requestedQueryCost"]
    assert cost["throttleStatus"]["currentlyAvailable"] == 2000 - cost["actualQueryCost"]
    assert sandbox.lowest_available <= 2000 - cost["requestedQueryCost"] + 1  # the requested cost was held first
    connector.close()


# --- a spent budget gives the worker back instead of holding it asleep ----------------------------------------


def _spent(sandbox, account) -> tuple[list[str], ShopifyConnector]:
    """14 orders, and a connector that has just read them all (938 of the bucket's 1,000 points: 62 left)."""
    ids = [f"gid://shopify/Order/{m.order_id}" for m in sandbox.state.generate(14, unknown_sku=False)]
    connector = connector_for(account)
    connector.get_orders(ids)
    return ids, connector


def _gives_the_worker_back_then_reads(connector, ids, *, says: str, longer_than: float, then) -> None:
    """Asked again, the read sends nothing and sleeps nothing: it raises ChannelThrottled saying ``says`` and how
    long the budget takes to refill; after ``then()`` the same read waits in place and reads."""
    from channels.connectors.base import ChannelThrottled

    slept: list[float] = []
    connector.http.sleep = slept.append
    sent = record_requests(connector)
    with pytest.raises(ChannelThrottled) as raised:
        connector.get_orders(ids)
    assert sent == [] and slept == []
    assert longer_than < raised.value.retry_after <= (938 - 62) / 250
    assert says in str(raised.value)
    then()
    connector.http.sleep = time.sleep
    assert len(connector.get_orders(ids)) == 14 and connector.throttled == 0
    connector.close()


def test_a_wait_for_the_budget_longer_than_a_worker_waits_gives_the_worker_back(small_bucket_shop):
    # given a spent bucket (876 points short of another full read, 3.5 s at 250 a second), and a worker that
    # waits at most a second
    ids, connector = _spent(*small_bucket_shop)
    connector.longest_wait = 1.0
    # then the same read gives the worker back; a worker that waits longer waits it out in place and reads
    _gives_the_worker_back_then_reads(
        connector,
        ids,
        says="query budget is spent",
        longer_than=1.0,
        then=lambda: setattr(connector, "longest_wait", 5.0),
    )


def test_short_waits_for_the_budget_add_up_to_at_most_a_minutes_share_then_the_worker_goes_back(small_bucket_shop):
    # given a spent bucket whose refill (3.5 s) is within what one wait may take, and a client that has already
    # waited 8 s for the budget in the last minute
    ids, connector = _spent(*small_bucket_shop)
    connector.longest_wait = 5.0
    connector.longest_waits_per_minute = 10.0
    connector._waits = [(time.monotonic() - 30.0, 8.0)]
    # then the read gives the worker back instead of sleeping past the minute's share; once those waits are more
    # than a minute old, the same read waits in place and reads
    _gives_the_worker_back_then_reads(
        connector,
        ids,
        says="already waited 8.0 s",
        longer_than=0.0,
        then=lambda: setattr(connector, "_waits", [(time.monotonic() - 61.0, 8.0)]),
    )


def test_a_sync_paused_by_the_budget_is_no_failure_and_is_due_again_once_it_refills(small_bucket_shop, skus, settings):
    from orders.models import ExceptionCase, ExceptionKind

    # given a spent bucket, a worker that does not wait for it, and a case opened at the first failed poll
    settings.WAYBILL_SYNC_FAILURES_BEFORE_CASE = 1
    sandbox, account = small_bucket_shop
    _ids, connector = _spent(sandbox, account)
    type(account).objects.filter(pk=account.pk).update(sync_cursor=timezone.now() - timedelta(minutes=5))
    connector.longest_wait = 0.0
    # when the account is polled
    before = timezone.now()
    run = sync_account_run(account_id=account.pk, connector=connector)
    # then the run paused: not a failure (no streak, no case), the account is due once the budget has refilled
    assert run.progress["stage"] == "throttled" and run.error.startswith("Paused after page 0")
    assert run.progress["consecutive_failures"] == 0
    until = timezone.datetime.fromisoformat(run.progress["next_attempt_at"])
    assert before + timedelta(seconds=1) <= until <= timezone.now() + timedelta(seconds=4)
    assert not ExceptionCase.objects.filter(kind=ExceptionKind.SYNC_FAILURE).exists()
    assert account.pk not in syncs_due(now=until - timedelta(milliseconds=500))
    assert account.pk in syncs_due(now=until + timedelta(seconds=account.sync_interval_seconds + 1))
    # when the next worker's run comes after the refill
    connector.longest_wait = 5.0
    again = sync_account_run(account_id=account.pk, connector=connector)
    connector.close()
    # then every order is in, once
    assert again.status == SyncStatus.SUCCEEDED and Order.objects.filter(account_id=account.pk).count() == 14


def test_a_webhook_drain_waiting_for_the_budget_spends_no_attempt_of_its_events(
    client, small_bucket_shop, skus, settings, monkeypatch
):
    # given webhooks about 2 orders (read one by one), a spent bucket, and a worker that does not wait for it
    settings.WAYBILL_WEBHOOK_SYNC_THRESHOLD = 100
    settings.WAYBILL_WEBHOOK_MAX_ATTEMPTS = 1
    sandbox, account = small_bucket_shop
    made = sandbox.state.generate(2, unknown_sku=False)
    for n, order in enumerate(made):
        _deliver(client, sandbox, account, order, f"budget-{n}")
    _spent(sandbox, account)[1].close()
    monkeypatch.setattr(ShopifyConnector, "longest_wait", 0.0)
    # when the drain runs
    drain = webhook_events_drain(account_id=account.pk)
    # then it stopped at the read the budget could not pay for (the refill meanwhile may pay for the first) and
    # comes back once the budget has refilled; what it did not read waits, received, with no attempt spent
    assert drain.deferred >= 1 and drain.processed + drain.deferred == 2 and 0 < drain.retry_in <= 4
    waiting = InboundEvent.objects.filter(status=InboundStatus.RECEIVED)
    assert waiting.count() == drain.deferred and set(waiting.values_list("attempts", flat=True)) == {0}
    # when it comes back with the budget refilled
    monkeypatch.setattr(ShopifyConnector, "longest_wait", 5.0)
    again = webhook_events_drain(account_id=account.pk)
    # then both orders are in
    assert again.processed == drain.deferred and Order.objects.filter(account_id=account.pk).count() == 2


# --- a worker shutting down: a sync or a drain stops at the next page boundary -----------------------------


def test_a_sync_stops_after_the_page_in_hand_when_the_worker_shuts_down(
    shopify_sandbox, shopify_account, skus, monkeypatch
):
    # given 20 orders to read in pages of 7, and a worker told to stop while the first page is read
    monkeypatch.setattr(ShopifyConnector, "page_size", 7)
    _aged(shopify_sandbox, shopify_sandbox.state.generate(20, unknown_sku=False), 60)
    cursor = timezone.now() - timedelta(seconds=90)
    shopify_account.sync_cursor = cursor
    shopify_account.save()
    worker_stopping_set("worker-a@test", False)
    connector = connector_for(shopify_account)
    real = connector.get_orders

    def read_then_shutdown(ids):
        worker_stopping_set("worker-a@test", True)
        return real(ids)

    connector.get_orders = read_then_shutdown
    # when
    run = sync_account_run(
        account_id=shopify_account.pk, connector=connector, should_stop=lambda: worker_stopping("worker-a@test")
    )
    connector.close()
    # then one page was kept, the cursor stayed, and it is not counted as a failure (no backoff, no case)
    assert (run.status, run.pages, run.orders_seen) == (SyncStatus.PARTIAL, 1, 7)
    assert "shutting down" in run.error and run.progress["stage"] == "stopped"
    assert "consecutive_failures" not in run.progress and "next_attempt_at" not in run.progress
    shopify_account.refresh_from_db()
    assert shopify_account.sync_cursor == cursor
    later = timezone.now() + timedelta(seconds=shopify_account.sync_interval_seconds + 1)
    assert shopify_account.pk in syncs_due(now=later)
    # when the next worker's run goes on
    worker_stopping_set("worker-a@test", False)
    again = sync_account_run(account_id=shopify_account.pk)
    # then every order is in, once
    assert again.status == SyncStatus.SUCCEEDED and Order.objects.filter(account_id=shopify_account.pk).count() == 20


def test_a_webhook_drain_stops_between_two_reads_when_the_worker_shuts_down(
    client, shopify_sandbox, shopify_account, skus, settings
):
    # given webhooks about 6 orders, read one by one (below the sync threshold)
    settings.WAYBILL_WEBHOOK_SYNC_THRESHOLD = 100
    made = shopify_sandbox.state.generate(6, unknown_sku=False)
    for n, order in enumerate(made):
        _deliver(client, shopify_sandbox, shopify_account, order, f"stop-{n}")
    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > 2

    # when the worker is told to stop after two reads
    drain = webhook_events_drain(account_id=shopify_account.pk, should_stop=should_stop)
    # then the drain returned with two orders read and the rest still received
    assert drain.stopped and (drain.processed, drain.failed, drain.deferred) == (2, 0, 0)
    assert InboundEvent.objects.filter(status=InboundStatus.RECEIVED).count() == 4
    # when a drain runs on a worker that is not stopping
    again = webhook_events_drain(account_id=shopify_account.pk)
    # then the rest are read
    assert again.processed == 4 and not InboundEvent.objects.filter(status=InboundStatus.RECEIVED).exists()
    assert Order.objects.filter(account_id=shopify_account.pk).count() == 6


def _full_bucket(sandbox) -> None:
    with sandbox.bucket_lock:
        sandbox.available = sandbox.maximum_available
        sandbox.lowest_available = sandbox.maximum_available


def test_reconciliation_leaves_half_the_query_budget_to_the_sync(small_bucket_shop, skus, settings):
    from channels.reconcile import reconcile_orders_run

    # given: 14 orders synced an hour after they last changed, so reconciliation compares every one in full
    sandbox, account = small_bucket_shop
    made = sandbox.state.generate(14, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    _aged(sandbox, made, 3600)
    assert sync_account_run(account_id=account.pk).status == SyncStatus.SUCCEEDED and Order.objects.count() == 14
    type(account).objects.filter(pk=account.pk).update(sync_cursor=timezone.now())  # later polls saw nothing new
    connector = connector_for(account)
    connector.get_orders([f"gid://shopify/Order/{made[0].order_id}"])  # the connector knows what a read costs
    # The window's orders come in one bulk export for a few points; orders open here that it did not include are
    # read one by one at query cost. An empty window makes all 14 such reads.
    settings.WAYBILL_RECONCILE_WINDOW_DAYS = 0
    # when: reconciled without a reserve, from a full bucket
    settings.WAYBILL_RECONCILE_BUDGET_RESERVE = 0
    _full_bucket(sandbox)
    greedy = reconcile_orders_run(account_id=account.pk, connector=connector)
    # then: it spends the bucket down past half
    assert greedy.status == SyncStatus.SUCCEEDED and greedy.compared == 14
    assert sandbox.lowest_available < 500
    # when: reconciled with the default reserve (half), from a full bucket
    settings.WAYBILL_RECONCILE_BUDGET_RESERVE = 0.5
    _full_bucket(sandbox)
    polite = reconcile_orders_run(account_id=account.pk, connector=connector)
    # then: every order is compared as before, nothing is refused, and half the bucket is always left to the sync
    assert polite.status == SyncStatus.SUCCEEDED and polite.compared == 14 and polite.found == 0
    assert polite.progress["budget_reserve"] == 0.5
    assert sandbox.lowest_available >= 500 - 1  # the bucket's reported level is rounded down
    assert connector.throttled == 0
    # and the connector is given back without the reserve
    assert connector.budget_reserve == 0
    connector.close()
