"""Channel tasks: thin wrappers over channels.sync / channels.outbox / channels.webhooks / channels.availability.

Each carries an account or a batch, never one order (../shared/LIMITS.md: Celery overhead).
All are idempotent: the sync holds a per-account lock, events and outbox rows are deduplicated.
"""

from __future__ import annotations

from collections.abc import Iterable

from celery import shared_task
from django.dispatch import receiver

from channels import availability, outbox, sync, webhooks
from channels.signals import outbox_messages_queued, webhook_events_stored


@shared_task(acks_late=True, ignore_result=True)
def channels_dispatch_syncs_task() -> int:
    """Beat: start a sync for every account whose interval has passed."""
    due = sync.syncs_due()
    for account_id in due:
        channels_sync_account_task.delay(account_id)
    return len(due)


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=1800, time_limit=1900)
def channels_sync_account_task(account_id: int, kind: str = "poll") -> int | None:
    run = sync.sync_account_run(account_id=account_id, kind=kind)
    return run.pk if run else None


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=None)
def channels_webhooks_process_task(self, account_id: int) -> int:
    """Ingest received webhook events for an account; waits its turn if a sync holds the lock."""
    processed = webhooks.webhook_events_process(account_id=account_id)
    if processed is None:
        raise self.retry(countdown=2)
    return processed


@shared_task(acks_late=True, ignore_result=True)
def outbox_relay_task(account_id: int | None = None) -> dict:
    return outbox.outbox_relay(account_id=account_id)


@shared_task(acks_late=True, ignore_result=True)
def channels_plan_inventory_pushes_task() -> int:
    """Beat (every second): coalesce stock changes into inventory messages, then send them."""
    created = outbox.inventory_push_plan()
    return created


@shared_task(acks_late=True, ignore_result=True)
def channel_availability_recompute_task(*, sku_ids: list[int]) -> None:
    availability.channel_availability_recompute(sku_ids=sku_ids)


@shared_task(acks_late=True, ignore_result=True)
def channel_availability_reconcile_task() -> int:
    """Beat: every advertised quantity re-derived from stock, behind the per-change recompute."""
    return availability.channel_availability_reconcile()


# --- scheduling: the services announce (channels.signals) or are asked (receivers); these enqueue ---------


def channel_availability_schedule(*, sku_ids: Iterable[int]) -> None:
    """Queue a recompute of these changed SKUs, at most one per SKU per debounce window (the window is
    availability.channel_availability_recompute_due's). Runs after commit."""
    due, countdown = availability.channel_availability_recompute_due(sku_ids=sku_ids)
    if countdown <= 0:
        channel_availability_recompute_task.apply_async(kwargs={"sku_ids": due})
    elif due:
        channel_availability_recompute_task.apply_async(kwargs={"sku_ids": due}, countdown=countdown)


@receiver(outbox_messages_queued, dispatch_uid="channels.tasks.outbox_relay")
def outbox_relay_enqueue(sender, *, account_id: int, **kwargs) -> None:
    outbox_relay_task.delay(account_id)


@receiver(webhook_events_stored, dispatch_uid="channels.tasks.webhooks_process")
def webhooks_process_enqueue(sender, *, account_id: int, **kwargs) -> None:
    channels_webhooks_process_task.delay(account_id)


# --- data protection (issue #21) ----------------------------------------------------------------------


@shared_task(name="channels.tasks.pii_purge_task")
def pii_purge_task() -> dict:
    """Daily: purge buyers' PII of orders done longer ago than their account's retention period."""
    from channels.privacy import channel_accounts_pii_purge

    run = channel_accounts_pii_purge()
    return {"purged": run.purged, "held": run.held}
