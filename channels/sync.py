"""The sync engine: one account's orders polled since its cursor, page by page, under a lock.

**The lock is a PostgreSQL session advisory lock** (``pg_try_advisory_lock``) held for the whole
sync by the worker's database connection. If the worker dies, its connection closes and the server
releases the lock at once: no lease to expire, no stale row to clean, no clock to trust. A lease
row would need an expiry longer than the longest sync and would keep a crashed account blocked for
that long. The try-variant never waits: a second sync of the same account returns immediately.

**The cursor** is the newest ``source_updated_at`` the channel confirmed (or the channel's own
window end, Amazon ``lastUpdatedBefore``). A run starts at cursor minus the connector's overlap
window and advances the cursor only when every page was fetched; a run killed or throttled halfway
leaves the cursor where it was, and the next run replays those pages, whose events are already
stored (skipped in one query) and whose orders are already upserted (the watermark).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from channels.connectors import CONNECTORS, connector_for
from channels.connectors.base import ChannelError
from channels.inbound import PageOutcome, inbound_orders_process
from channels.models import ChannelAccount, SyncKind, SyncRun, SyncStatus

log = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x5742  # "WB": the advisory lock's first key; the account id is the second


@contextmanager
def account_lock(account_id: int) -> Iterator[bool]:
    """Yields True if this connection now holds the account's sync lock (released on exit)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, account_id])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, account_id])


def _actor(account: ChannelAccount) -> str:
    return f"sync:{account.name}"


def syncs_due(*, now: datetime | None = None) -> list[int]:
    """Enabled accounts with a connector whose interval has passed since their last sync."""
    now = now or timezone.now()
    accounts = ChannelAccount.objects.filter(is_enabled=True, kind__in=list(CONNECTORS)).filter(
        Q(last_synced_at__isnull=True) | Q(last_synced_at__lte=now - timedelta(seconds=1) * F("sync_interval_seconds"))
    )
    return list(accounts.order_by("pk").values_list("pk", flat=True))


def sync_account_run(*, account_id: int, kind: str = SyncKind.POLL, connector=None) -> SyncRun | None:
    """Poll one account. Returns the SyncRun, or None when another sync of it holds the lock."""
    with account_lock(account_id) as acquired:
        if not acquired:
            return None
        account = ChannelAccount.objects.get(pk=account_id)
        started = timezone.now()
        # Runs left "running" by a worker that died: we hold the lock, so none of them is alive.
        SyncRun.objects.filter(account=account, status=SyncStatus.RUNNING).update(
            status=SyncStatus.FAILED, finished_at=started, error="The worker running this sync stopped."
        )
        own_connector = connector is None
        connector = connector or connector_for(account)
        backfill = account.sync_cursor is None
        since = account.sync_cursor - connector.overlap if account.sync_cursor else started - connector.initial_lookback
        run = SyncRun.objects.create(
            account=account,
            kind=SyncKind.BACKFILL if backfill and kind == SyncKind.POLL else kind,
            started_at=started,
            cursor_from=since,
            progress={"stage": "fetching"},
        )
        total = PageOutcome()
        window_end = None
        completed = False
        try:
            for page in connector.fetch_orders(since=since, backfill=backfill):
                outcome = inbound_orders_process(
                    account=account, connector=connector, raw_orders=page.raw_orders, actor=_actor(account)
                )
                total.add(outcome)
                window_end = page.window_end or window_end
                run.pages += 1
                run.orders_seen = total.seen
                run.orders_created = total.created
                run.orders_updated = total.updated
                run.orders_failed = total.failed
                run.progress = {
                    **page.progress,
                    "stage": "fetching",
                    "replayed": total.replayed,
                    "unchanged": total.unchanged,
                    "http_retries": connector.http.retries,
                    "throttled": getattr(connector, "throttled", 0) + connector.http.throttled,
                }
                run.save(
                    update_fields=[
                        "pages",
                        "orders_seen",
                        "orders_created",
                        "orders_updated",
                        "orders_failed",
                        "progress",
                    ]
                )
            completed = True
        except ChannelError as exc:
            run.error = str(exc)[:4000]
            log.warning("sync of %s stopped: %s", account.name, exc)
        except Exception as exc:
            run.error = f"{type(exc).__name__}: {exc}"[:4000]
            log.exception("sync of %s crashed", account.name)
        finally:
            if own_connector:
                connector.close()
        finished = timezone.now()
        if completed:
            run.status = SyncStatus.PARTIAL if total.failed else SyncStatus.SUCCEEDED
            cursor = window_end or total.newest
            if cursor is None or (account.sync_cursor and cursor < account.sync_cursor):
                cursor = account.sync_cursor or started
            account.sync_cursor = cursor
            account.last_synced_at = finished
            account.sync_lag_seconds = max((finished - cursor).total_seconds(), 0.0)
            account.save(update_fields=["sync_cursor", "last_synced_at", "sync_lag_seconds", "updated_at"])
            run.cursor_to = cursor
        else:
            run.status = SyncStatus.PARTIAL if run.pages else SyncStatus.FAILED
            # The cursor stays; last_synced_at moves so the dispatcher waits one interval to retry.
            ChannelAccount.objects.filter(pk=account.pk).update(last_synced_at=finished)
        run.finished_at = finished
        run.progress = {**run.progress, "stage": "done"}
        run.save(update_fields=["status", "finished_at", "error", "cursor_to", "progress"])
        return run
