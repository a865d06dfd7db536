"""Channel tasks: thin wrappers over channels.sync / channels.outbox / channels.webhooks / channels.availability.

Each carries an account or a batch, never one order (../shared/LIMITS.md: Celery overhead).
All are idempotent: the sync holds a per-account lock, events and outbox rows are deduplicated.
At most one unit of work per key waits in the queue (config.kernel.dispatch): a sync per account, a
webhook drain per account, a relay per account; beat's own entries likewise (config/beat.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from celery import shared_task
from django.conf import settings
from django.dispatch import receiver

from channels import availability, fixes, outbox, reconcile, sync, webhooks
from channels.models import ReconcileScope
from channels.signals import outbox_messages_queued, webhook_events_stored
from config.kernel.dispatch import dispatch_once, worker_stopping

# A drain that finds the account's sync running comes back after this long (the sync takes what it can).
WEBHOOKS_LOCKED_RETRY_SECONDS = 5.0


@shared_task(acks_late=True, ignore_result=True)
def channels_dispatch_syncs_task() -> dict[str, int]:
    """Beat (every 10 s): a sync for every account that is due and neither queued nor running, a drain for
    every account with received webhook events, and the sweep of what dead workers left behind."""
    swept = sync.sync_runs_sweep()
    queued = sum(channels_sync_dispatch(account_id) for account_id in sync.syncs_due())
    drains = sum(webhooks_process_dispatch(account_id) for account_id in webhooks.webhook_accounts_waiting())
    late = webhooks.webhook_backlog_check()
    return {"syncs": queued, "drains": drains, "swept_runs": swept, "accounts_with_late_webhooks": len(late)}


def channels_sync_dispatch(account_id: int, kind: str = "poll") -> bool:
    """Queue a sync of the account unless one is already waiting."""
    return dispatch_once(channels_sync_account_task, key=f"sync:{account_id}", args=[account_id, kind])


def _stopping(hostname: str | None):
    """Asked by long loops between two pages or sends: has this worker been told to shut down?"""
    return (lambda: worker_stopping(hostname)) if hostname else None


@shared_task(bind=True, acks_late=True, ignore_result=True, soft_time_limit=1800, time_limit=1900)
def channels_sync_account_task(self, account_id: int, kind: str = "poll") -> int | None:
    run = sync.sync_account_run(account_id=account_id, kind=kind, should_stop=_stopping(self.request.hostname))
    return run.pk if run else None


def webhooks_process_dispatch(account_id: int, *, countdown: float | None = None) -> bool:
    """Queue a drain of the account's received webhook events unless one is already waiting."""
    return dispatch_once(
        channels_webhooks_process_task, key=f"webhooks:{account_id}", args=[account_id], countdown=countdown
    )


@shared_task(bind=True, acks_late=True, ignore_result=True)
def channels_webhooks_process_task(self, account_id: int) -> int:
    """Drain the account's received webhook events in pages; comes back later when its sync holds the lock
    or the channel failed in a retryable way (backing off), at once when its time budget ran out; a drain
    stopped by the worker's shutdown is not queued again (the dispatcher queues one once a worker runs)."""
    drain = webhooks.webhook_events_drain(account_id=account_id, should_stop=_stopping(self.request.hostname))
    if drain.stopped:
        return drain.processed + drain.failed
    if drain.locked:
        webhooks_process_dispatch(account_id, countdown=WEBHOOKS_LOCKED_RETRY_SECONDS)
    elif drain.retry_in is not None:
        webhooks_process_dispatch(account_id, countdown=drain.retry_in)
    elif drain.more:
        webhooks_process_dispatch(account_id)
    return drain.processed + drain.failed


def outbox_relay_dispatch(account_id: int | None = None) -> bool:
    return dispatch_once(outbox_relay_task, key=f"relay:{account_id or 'all'}", args=[account_id])


@shared_task(bind=True, acks_late=True, ignore_result=True)
def outbox_relay_task(self, account_id: int | None = None) -> dict:
    hostname = self.request.hostname
    return outbox.outbox_relay(account_id=account_id, should_stop=_stopping(hostname), keep_connectors=True)


@shared_task(acks_late=True, ignore_result=True)
def channels_plan_inventory_pushes_task() -> int:
    """Beat (every 30 s), a safety sweep behind the pushes queued by each stock change: changed SKUs still
    pending get a drain, every account with flagged quantities a push (what a worker that died left)."""
    if availability.channel_availability_pending():
        channel_availability_recompute_task.apply_async(kwargs={"sku_ids": None})
    flagged = availability.channel_availability_flagged()
    return sum(inventory_push_dispatch(account_id) for account_id in flagged)


@shared_task(bind=True, acks_late=True, ignore_result=True)
def channel_availability_recompute_task(self, *, sku_ids: list[int] | None = None) -> None:
    """A stock change's one hop: recompute what each account advertises of these SKUs (None: every SKU in
    the pending set, with Redis), then push what moved to every account whose rate budget allows it now (the
    others get a push at their next slot)."""
    if sku_ids is None:
        sku_ids, cutoff = availability.channel_availability_drain_started()
        rows = availability.channel_availability_recompute(sku_ids=sku_ids)
        availability.channel_availability_drained(cutoff=cutoff)
    else:
        availability.channel_availability_recompute_started(sku_ids=sku_ids)
        rows = availability.channel_availability_recompute(sku_ids=sku_ids)
    if not push_on_change():
        return  # the beat sweep or the caller plans the pushes
    for account_id in sorted({row.account_id for row in rows if row.needs_push}):
        inventory_push_run(account_id, hostname=self.request.hostname)


def push_on_change() -> bool:
    """WAYBILL_INVENTORY_PUSH_ON_CHANGE, else True unless Celery runs eagerly (tests plan and relay pushes
    themselves, against sandboxes they start)."""
    value = getattr(settings, "WAYBILL_INVENTORY_PUSH_ON_CHANGE", None)
    return (not settings.CELERY_TASK_ALWAYS_EAGER) if value is None else bool(value)


def inventory_push_dispatch(account_id: int, *, countdown: float | None = None) -> bool:
    """Queue a push of the account's flagged quantities unless one is already waiting."""
    return dispatch_once(
        inventory_push_account_task, key=f"inventory-push:{account_id}", args=[account_id], countdown=countdown
    )


def inventory_push_run(account_id: int, *, hostname: str | None = None) -> dict:
    """Push the account's flagged quantities now and relay them, or queue the push for its next slot."""
    created, wait = outbox.inventory_push_now(account_id=account_id)
    if wait > 0:
        inventory_push_dispatch(account_id, countdown=wait)
    if not created:
        return {}
    return outbox.outbox_relay(account_id=account_id, should_stop=_stopping(hostname), keep_connectors=True)


@shared_task(bind=True, acks_late=True, ignore_result=True)
def inventory_push_account_task(self, account_id: int) -> dict:
    """The account's next push slot: its flagged SKUs recomputed (the newest quantity), pushed and relayed."""
    flagged = availability.channel_availability_flagged(account_id=account_id).get(account_id, [])
    if not flagged:
        return {}
    availability.channel_availability_recompute(sku_ids=flagged, account_ids=[account_id])
    return inventory_push_run(account_id, hostname=self.request.hostname)


@shared_task(acks_late=True, ignore_result=True)
def channel_availability_reconcile_task() -> int:
    """Beat: every advertised quantity re-derived from stock, behind the per-change recompute."""
    return availability.channel_availability_reconcile()


# --- scheduling: the services announce (channels.signals) or are asked (receivers); these enqueue ---------


def channel_availability_schedule(*, sku_ids: Iterable[int]) -> None:
    """Queue a recompute (and push) of these changed SKUs: at once, or at most once per debounce window in a
    burst. With Redis, one pending set and one drain queued at a time (availability.channel_availability_changed);
    with the file cache, a recompute per SKU (availability.channel_availability_recompute_due). Runs after commit."""
    if availability.channel_availability_batched():
        countdown = availability.channel_availability_changed(sku_ids=sku_ids)
        if countdown is not None:
            kwargs = {"kwargs": {"sku_ids": None}}
            channel_availability_recompute_task.apply_async(**kwargs, **({"countdown": countdown} if countdown else {}))
        return
    for countdown, due in availability.channel_availability_recompute_due(sku_ids=sku_ids):
        if countdown <= 0:
            channel_availability_recompute_task.apply_async(kwargs={"sku_ids": due})
        else:
            channel_availability_recompute_task.apply_async(kwargs={"sku_ids": due}, countdown=countdown)


@receiver(outbox_messages_queued, dispatch_uid="channels.tasks.outbox_relay")
def outbox_relay_enqueue(sender, *, account_id: int, **kwargs) -> None:
    outbox_relay_dispatch(account_id)


@receiver(webhook_events_stored, dispatch_uid="channels.tasks.webhooks_process")
def webhooks_process_enqueue(sender, *, account_id: int, **kwargs) -> None:
    webhooks_process_dispatch(account_id)


# --- reconciliation (channels/reconcile.py) ---------------------------------------------------------


@shared_task(acks_late=True, ignore_result=True)
def channels_dispatch_reconciliations_task() -> int:
    """Beat: start a reconciliation of every account whose last scheduled one is an interval old."""
    due = reconcile.reconciliations_due()
    # One scheduled run waiting per account: while one waits (a busy worker), the next tick queues nothing.
    return sum(
        dispatch_once(channels_reconcile_account_task, key=f"reconcile:{account_id}", args=[account_id])
        for account_id in due
    )


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=3300, time_limit=3500)
def channels_reconcile_account_task(account_id: int, trigger: str = "schedule", scope: str = "all") -> dict:
    """Reconcile one account's orders and/or advertised stock. A scheduled one that another already did
    (a duplicate delivery) does nothing."""
    if trigger == "schedule" and account_id not in reconcile.reconciliations_due():
        return {}
    runs: dict = {}
    if scope in ("all", ReconcileScope.ORDERS):
        run = reconcile.reconcile_orders_run(account_id=account_id, trigger=trigger)
        runs["orders"] = run.pk if run else None
    if scope in ("all", ReconcileScope.STOCK):
        run = reconcile.reconcile_stock_run(account_id=account_id, trigger=trigger)
        runs["stock"] = run.pk if run else None
    return runs


# --- end of reconciliation -----------------------------------------------------------------------------
# ---- Ops console: pushes failing repeatedly, detected in seconds (exceptions at scale) ----------------


@shared_task(acks_late=True)
def push_failures_detect_task() -> dict:
    found = fixes.push_failures_detect(actor="detector")
    return {"opened": len(found["opened"]), "resolved": len(found["resolved"])}


# --- data protection (issue #21) ----------------------------------------------------------------------


@shared_task(name="channels.tasks.pii_purge_task")
def pii_purge_task() -> dict:
    """Daily: purge buyers' PII of orders done longer ago than their account's retention period."""
    from channels.privacy import channel_accounts_pii_purge

    run = channel_accounts_pii_purge()
    return {"purged": run.purged, "held": run.held}
