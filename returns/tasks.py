"""Returns tasks: thin wrappers over returns.services. Each carries an account, never one return."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.dispatch import receiver

from channels.models import ChannelAccount
from channels.signals import webhook_events_stored
from config.kernel.dispatch import dispatch_once
from returns import services

# A webhook burst starts one returns read per account in this window.
NUDGE_SECONDS = 5


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=600, time_limit=660)
def returns_sync_task(account_id: int) -> dict:
    return services.returns_sync_account(account_id=account_id)


def returns_sync_dispatch(account_id: int, *, countdown: float | None = None) -> bool:
    """Queue a read of the account's returns unless one is already waiting (config.kernel.dispatch)."""
    return dispatch_once(returns_sync_task, key=f"returns:{account_id}", args=[account_id], countdown=countdown)


@shared_task(acks_late=True, ignore_result=True)
def returns_sync_all_task() -> int:
    """Beat: read every enabled account's returns (the channel's returns, refunds seen on orders); an account
    whose read is still waiting in the queue is not queued again."""
    ids = list(ChannelAccount.objects.filter(is_enabled=True).values_list("pk", flat=True))
    return sum(returns_sync_dispatch(account_id) for account_id in ids)


@shared_task(acks_late=True, ignore_result=True)
def refunds_answers_sweep_task() -> int:
    return services.refunds_answers_sweep()


@receiver(webhook_events_stored, dispatch_uid="returns.tasks.nudge")
def returns_read_on_webhook(sender, *, account_id: int, **kwargs) -> None:
    """A channel's webhook (Shopify RETURNS_* / REFUNDS_CREATE arrive with the order's updates) is a nudge:
    read the account's returns soon, once per burst. Not in eager mode (tests): the read would run inside the
    webhook's request; the beat read covers it."""
    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        return
    if cache.add(f"returns:nudge:{account_id}", 1, NUDGE_SECONDS):
        returns_sync_dispatch(account_id, countdown=NUDGE_SECONDS)
