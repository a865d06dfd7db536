"""Scorecards' Celery tasks: thin, idempotent (a recompute upserts)."""

from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def scorecards_refresh_task() -> dict:
    """Beat, every few minutes: current windows, missing history, at-risk cases."""
    from scorecards.services import scorecards_refresh

    return scorecards_refresh()


@shared_task(acks_late=True, ignore_result=True)
def scorecards_backfill_task(days: int, actor: str) -> int:
    from scorecards.services import scorecards_backfill

    return scorecards_backfill(actor=f"backfill:{actor}", days=days).pk


@shared_task(acks_late=True, ignore_result=True, autoretry_for=(ConnectionError,), retry_backoff=True)
def account_health_fetch_task() -> int:
    """Beat, every few minutes: the Account Health report of each Amazon account it is due for (daily, or an
    hour after a failed attempt; scorecards.selectors.account_health_due), beside ours."""
    from scorecards.selectors import account_health_due
    from scorecards.services import account_health_fetch

    fetched = 0
    for account in account_health_due():
        try:
            account_health_fetch(account=account)
            fetched += 1
        except Exception:  # one account's failure is recorded on its report row; the others go on
            log.exception("Account Health report for %s failed", account.name)
    return fetched
