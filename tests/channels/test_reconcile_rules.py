"""Reconciliation's rules without a channel: how an order's two sides are classified (the one to heal first),
which accounts are due, that a duplicate scheduled delivery does nothing, and what a throttling storm leaves."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from channels.models import Drift, DriftKind, ReconcileRun, ReconcileScope, SyncStatus
from channels.reconcile import Side, order_drift, reconcile_orders_run, reconciliations_due
from channels.tasks import channels_dispatch_reconciliations_task, channels_reconcile_account_task
from orders.models import OrderStatus
from tests.channels.e2e_helpers import admin

OPEN, SHIPPED, CANCELLED = OrderStatus.OPEN, OrderStatus.SHIPPED, OrderStatus.CANCELLED


def side(status, mf=False, **lines):
    return Side(status, {k: tuple(v) for k, v in lines.items()}, mf)


@pytest.mark.parametrize(
    ("theirs", "ours", "kind"),
    [
        (side(OPEN, a=(2, 0, 0)), None, DriftKind.MISSING_HERE),
        (side(OPEN, a=(2, 0, 0)), side(OPEN, a=(2, 0, 0)), None),
        (side(CANCELLED, a=(2, 0, 2)), side(OPEN, a=(2, 0, 0)), DriftKind.CANCELLED_THERE),
        (side(OPEN, a=(2, 0, 1)), side(OPEN, a=(2, 0, 0)), DriftKind.CANCELLED_THERE),  # one unit of a line
        (side(CANCELLED, a=(2, 0, 0)), side(OPEN, a=(2, 0, 0)), DriftKind.CANCELLED_THERE),  # order-level only
        (side(SHIPPED, a=(2, 2, 0)), side(OPEN, a=(2, 0, 0)), DriftKind.SHIPPED_THERE),
        (side(OPEN, a=(2, 0, 0)), side(SHIPPED, a=(2, 2, 0)), DriftKind.SHIPPED_HERE_NOT_THERE),
        (side(OPEN, True, a=(2, 0, 0)), side(SHIPPED, True, a=(2, 2, 0)), None),  # marketplace ships its own
        (side(OPEN, a=(2, 0, 0)), side(OPEN, a=(2, 0, 1)), DriftKind.CANCELLED_HERE_NOT_THERE),
        (side(OPEN, a=(2, 0, 0)), side(CANCELLED, a=(2, 0, 0)), DriftKind.CANCELLED_HERE_NOT_THERE),
        (side(OPEN, a=(3, 0, 0)), side(OPEN, a=(2, 0, 0)), DriftKind.LINES_DISAGREE),
        (side(OPEN, a=(2, 0, 0), b=(1, 0, 0)), side(OPEN, a=(2, 0, 0)), DriftKind.LINES_DISAGREE),
        # The channel ahead wins over Waybill ahead: its cancellation is applied before anything is resent.
        (side(CANCELLED, a=(2, 0, 2)), side(SHIPPED, a=(2, 2, 0)), DriftKind.CANCELLED_THERE),
    ],
)
def test_an_orders_two_sides_are_classified(theirs, ours, kind):
    assert order_drift(theirs, ours) == kind


@pytest.mark.django_db
def test_accounts_are_due_once_an_interval_and_a_duplicate_delivery_does_nothing(
    settings, walmart_sandbox, walmart_account, ebay_account
):
    settings.WAYBILL_RECONCILE_INTERVAL_SECONDS = 3600
    # given: nothing reconciled yet: both accounts are due, and the dispatcher starts both (tasks run eagerly)
    assert reconciliations_due() == [walmart_account.pk, ebay_account.pk]
    assert channels_dispatch_reconciliations_task() == 2
    assert ReconcileRun.objects.filter(scope=ReconcileScope.ORDERS).count() == 2
    assert ReconcileRun.objects.filter(scope=ReconcileScope.STOCK).count() == 2
    # then: neither is due again within the hour, and a duplicate scheduled delivery runs nothing
    assert reconciliations_due() == []
    assert channels_reconcile_account_task(walmart_account.pk) == {}
    assert ReconcileRun.objects.count() == 4
    # but a person's "Reconcile now" always runs, and does not delay the schedule
    assert set(channels_reconcile_account_task(walmart_account.pk, trigger="manual", scope="orders")) == {"orders"}
    assert reconciliations_due(now=timezone.now() + timedelta(hours=1, seconds=1)) == [
        walmart_account.pk,
        ebay_account.pk,
    ]
    # a disabled account is never due
    ebay_account.is_enabled = False
    ebay_account.save(update_fields=["is_enabled"])
    assert reconciliations_due(now=timezone.now() + timedelta(hours=2)) == [walmart_account.pk]


@pytest.mark.django_db
def test_a_throttling_storm_stops_the_run_and_heals_nothing(settings, amazon_sandbox, amazon_account, skus):
    settings.WAYBILL_CHANNEL_HTTP = {"backoff_base": 0.001, "backoff_cap": 0.002, "max_retries": 2}
    admin(amazon_sandbox, "/_sandbox/drift", {"unseen": {"count": 2, "hours_ago": 5}})
    admin(amazon_sandbox, "/_sandbox/faults", {"throttle_next": 50})
    run = reconcile_orders_run(account_id=amazon_account.pk)
    assert run.status == SyncStatus.FAILED and "429" in run.error
    assert run.found == 0 and not Drift.objects.exists()
    # and once the storm is over the next run finds and heals both
    admin(amazon_sandbox, "/_sandbox/faults", {"throttle_next": 0})
    assert reconcile_orders_run(account_id=amazon_account.pk).healed == 2


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["amazon", "walmart", "shopify", "ebay", "tiktok"])
def test_the_demo_sandboxes_inject_drift_of_every_kind(kind, request):
    sandbox = request.getfixturevalue(f"{kind}_sandbox")
    (made,) = sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    sandbox.state.shipments.append({"order_id": made.order_id})
    sandbox.drift_stock("WB-1001", 5)
    seen = set()
    for _ in range(60):
        seen.update(sandbox.drift_tick())
    assert seen == {"unseen", "cancel", "ship", "forget_shipments", "stock"}


@pytest.mark.django_db
def test_a_change_after_the_syncs_cursor_is_the_syncs_to_take_not_drift(walmart_sandbox, walmart_account, skus):
    # given: a sync has run; then an order arrives that no poll has read yet
    from channels.sync import sync_account_run

    sync_account_run(account_id=walmart_account.pk)
    walmart_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    # when: reconciled before the next poll
    run = reconcile_orders_run(account_id=walmart_account.pk)
    # then: it is not drift; the next poll takes it
    assert run.found == 0 and not Drift.objects.exists()


@pytest.mark.django_db
def test_a_live_list_sorted_by_update_time_is_read_up_to_the_horizon_only(tiktok_sandbox, tiktok_account, skus):
    # given: a shop whose orders all changed after the horizon (no sync has polled them yet)
    tiktok_sandbox.state.generate(3, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    # when: reconciled
    run = reconcile_orders_run(account_id=tiktok_account.pk)
    # then: the reader stops at the first page of newer orders instead of chasing the list's growing end
    assert run.progress["stopped_at_horizon"] == 1 and run.compared == 0 and run.found == 0


@pytest.mark.django_db
def test_shopify_reads_the_reconciliation_window_as_one_bulk_operation(shopify_sandbox, shopify_account, skus):
    # given: a shop with orders the sync never saw, placed hours ago (behind the sync's cursor)
    done = admin(shopify_sandbox, "/_sandbox/drift", {"unseen": {"count": 30, "hours_ago": 6}})
    # when: reconciled
    run = reconcile_orders_run(account_id=shopify_account.pk)
    # then: the window came as one bulk export (run, poll, download), not pages of orders at query cost,
    # and every unseen order was found and taken in
    assert run.status == SyncStatus.SUCCEEDED, (run.error, run.progress)
    assert len(shopify_sandbox.bulk_operations) == 1
    assert run.found == len(done["unseen"]) == 30 and run.healed == 30
    assert "stopped_at_horizon" not in run.progress
