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

**Nothing fails silently**: after its pages a run reads again, by id, the orders whose newest event
failed (``inbound_orders_retry``), so an order quarantined once is not lost when the cursor moves
past it. A run that fails counts consecutive failures on the run (``progress``), backs off (the
interval doubling, capped) and opens one sync-failure case for the account when the first backfill
fails or polls fail SYNC_FAILURES_BEFORE_CASE times in a row; the next successful run resolves it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.db.models import F
from django.utils import timezone

from channels.connectors import CONNECTORS
from channels.connectors.base import ChannelError, ChannelThrottled
from channels.inbound import PageOutcome, inbound_orders_process, inbound_orders_retry
from channels.models import ChannelAccount, InboundEvent, InboundKind, SyncKind, SyncRun, SyncStatus
from channels.services import connector_for
from config.kernel.errors import DomainError
from orders import services as order_services
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, Order, Severity

log = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x5742  # "WB": the advisory lock's first key; the account id is the second
# Polls that fail this many times in a row open a sync-failure case (a failed first backfill at once).
SYNC_FAILURES_BEFORE_CASE = 3
# Failed orders read again by id per run, after the pages.
RETRY_FAILED_ORDERS = 25


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


_LOCKS_HELD_SQL = (
    "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
    " AND classid = %s AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def accounts_locked() -> set[int]:
    """Accounts whose sync lock some session holds now (a sync or a webhook drain is running)."""
    with connection.cursor() as cursor:
        cursor.execute(_LOCKS_HELD_SQL, [LOCK_NAMESPACE])
        return {row[0] for row in cursor.fetchall()}


def sync_runs_sweep() -> int:
    """Runs left ``running`` by a worker that died: nobody holds their account's lock (the server released
    it when the worker's connection closed), so they are failed now rather than by the account's next
    sync. Returns how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE channels_syncrun SET status = %s, finished_at = now(), error = %s"  # noqa: S608 - constants only
            f" WHERE status = %s AND account_id NOT IN ({_LOCKS_HELD_SQL})",
            [SyncStatus.FAILED, "The worker running this sync stopped.", SyncStatus.RUNNING, LOCK_NAMESPACE],
        )
        return cursor.rowcount


# How long a sync whose database went away waits for it to come back to record its failure (a restart takes seconds).
DATABASE_BACK_SECONDS = 60.0


def _database_back() -> None:
    """A new session once the server answers again, within DATABASE_BACK_SECONDS; raises if it does not."""
    deadline = time.monotonic() + float(getattr(settings, "WAYBILL_SYNC_DATABASE_BACK_SECONDS", DATABASE_BACK_SECONDS))
    while True:
        connection.close()
        try:
            connection.ensure_connection()
            return
        except OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _actor(account: ChannelAccount) -> str:
    return f"sync:{account.name}"


def syncs_due(*, now: datetime | None = None) -> list[int]:
    """Enabled accounts with a connector whose interval has passed since their last run started (so a
    sync that takes a while does not push the next one back by its length), whose sync is not running now
    (the lock is free), and whose last run, if it failed, is not backing off still
    (``progress.next_attempt_at``)."""
    now = now or timezone.now()
    running = accounts_locked()
    accounts = {
        pk: (last, interval)
        for pk, last, interval in ChannelAccount.objects.filter(is_enabled=True, kind__in=list(CONNECTORS))
        .order_by("pk")
        .values_list("pk", "last_synced_at", "sync_interval_seconds")
        if pk not in running
    }
    if not accounts:
        return []
    latest = {
        account_id: (started, progress)
        for account_id, started, progress in SyncRun.objects.filter(account_id__in=list(accounts))
        .exclude(status=SyncStatus.RUNNING)
        .order_by("account_id", "-started_at", "-pk")
        .distinct("account_id")
        .values_list("account_id", "started_at", "progress")
    }
    due = []
    for account_id, (last, interval) in accounts.items():
        started, progress = latest.get(account_id, (None, None))
        if _backing_off_until(progress, now):
            continue
        since = min(started, last) if started and last else last
        if since is None or since <= now - timedelta(seconds=interval):
            due.append(account_id)
    return due


def _backing_off_until(progress: dict | None, now: datetime) -> datetime | None:
    value = (progress or {}).get("next_attempt_at")
    if not value:
        return None
    try:
        until = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return until if until > now else None


def sync_backoff(*, interval_seconds: int, failures: int) -> timedelta:
    """How long a failing account waits before its next scheduled run: its interval, doubling with
    each consecutive failure, at most WAYBILL_SYNC_BACKOFF_CAP_SECONDS (an hour)."""
    cap = float(getattr(settings, "WAYBILL_SYNC_BACKOFF_CAP_SECONDS", 3600))
    return timedelta(seconds=min(interval_seconds * 2 ** max(failures - 1, 0), max(cap, interval_seconds)))


def _sync_failure_key(account: ChannelAccount) -> str:
    return f"sync_failure:account={account.pk}"


def _failures_before(account: ChannelAccount, run: SyncRun) -> int:
    """The streak of failed runs the account's previous finished run recorded."""
    previous = (
        SyncRun.objects.filter(account=account, started_at__lt=run.started_at)
        .exclude(pk=run.pk)
        .exclude(status=SyncStatus.RUNNING)
        .order_by("-started_at", "-pk")
        .values_list("progress", flat=True)
        .first()
    )
    return int((previous or {}).get("consecutive_failures") or 0)


def _record_failure(account: ChannelAccount, run: SyncRun, backfill: bool, finished: datetime) -> None:
    """Count consecutive failed runs, back off, and open one sync-failure case for the account when
    the first backfill fails or polls have failed SYNC_FAILURES_BEFORE_CASE times in a row."""
    failures = _failures_before(account, run) + 1
    delay = sync_backoff(interval_seconds=account.sync_interval_seconds, failures=failures)
    next_attempt = finished + delay
    run.progress = {
        **run.progress,
        "consecutive_failures": failures,
        "backoff_seconds": int(delay.total_seconds()),
        "next_attempt_at": next_attempt.isoformat(),
    }
    threshold = int(getattr(settings, "WAYBILL_SYNC_FAILURES_BEFORE_CASE", SYNC_FAILURES_BEFORE_CASE))
    if not backfill and failures < threshold:
        return
    what = "the first sync (backfill)" if backfill else f"{failures} syncs in a row"
    order_services.exception_case_open(
        kind=ExceptionKind.SYNC_FAILURE,
        title=f"{account.name}: {what} failed; no orders are coming in",
        detail=(
            f"Sync run #{run.pk} failed: {run.error[:2000] or 'no error recorded'}\n"
            f"{failures} consecutive failed run(s). The next scheduled attempt is at "
            f"{next_attempt:%Y-%m-%d %H:%M:%S} UTC (backing off {int(delay.total_seconds())} s). "
            "This case is resolved by the first sync that succeeds."
        ),
        severity=Severity.CRITICAL if backfill else Severity.HIGH,
        account_id=account.pk,
        dedupe_key=_sync_failure_key(account),
        actor=_actor(account),
    )


def _pause_until_refilled(account: ChannelAccount, run: SyncRun, exc: ChannelThrottled, finished: datetime) -> None:
    """A run paused by the channel's spent rate budget is not a failure: the streak of failed runs before it
    carries on unchanged, and the dispatcher sends the account again once the budget has refilled."""
    wait = max(float(exc.retry_after or 0.0), 1.0)
    run.progress = {
        **run.progress,
        "consecutive_failures": _failures_before(account, run),
        "next_attempt_at": (finished + timedelta(seconds=wait)).isoformat(),
    }


def _resolve_failure(account: ChannelAccount, run: SyncRun) -> None:
    for case in ExceptionCase.objects.filter(
        kind=ExceptionKind.SYNC_FAILURE, dedupe_key=_sync_failure_key(account)
    ).exclude(status=CaseStatus.RESOLVED):
        try:
            order_services.exception_case_resolve(
                case=case.pk, note=f"Sync run #{run.pk} succeeded.", actor=_actor(account)
            )
        except DomainError:
            continue  # a person resolved it meanwhile


def _retry_quarantined(account: ChannelAccount, connector, run: SyncRun) -> None:
    limit = int(getattr(settings, "WAYBILL_SYNC_RETRY_FAILED_ORDERS", RETRY_FAILED_ORDERS))
    counts = inbound_orders_retry(
        account=account, connector=connector, actor=_actor(account), limit=limit, tried_before=run.started_at
    )
    if counts["retried"]:
        run.progress = {**run.progress, "quarantine": counts}


# A held version counts as settled once a completed run that started this long after its update time listed
# it: channels stamp updates to the second (Shopify), so a read within the same second may have missed a second
# change stamped alike; the margin also covers the clock skew between the channel and Waybill.
SETTLE_SECONDS = 5
SETTLED_RUNS = 20


def _held_versions(account: ChannelAccount, external_ids: list[str]) -> dict[str, datetime]:
    """The source update Waybill holds of each of these orders, for those whose copy is settled: stored from a
    read made at least SETTLE_SECONDS after that update, or a completed run (every page fetched) that started
    that long after it had it in its window, so the order was read after every change stamped with that second
    (or found settled). An order held but not settled is absent: the poll reads it again."""
    held = Order.objects.filter(account_id=account.pk, external_id__in=external_ids, source_updated_at__isnull=False)
    runs = list(
        SyncRun.objects.filter(account=account, cursor_to__isnull=False, cursor_from__isnull=False)
        .order_by("-started_at")
        .values_list("started_at", "cursor_from")[:SETTLED_RUNS]
    )
    margin = timedelta(seconds=SETTLE_SECONDS)
    held_at = dict(held.values_list("external_id", "source_updated_at"))
    # Or Waybill stored that version (an order event) SETTLE_SECONDS or more after its update: read after every
    # change of that second, by a run cut short or a webhook's read (a completed run alone would let a run
    # stopped by the budget read the same orders again and again).
    stored = set(
        InboundEvent.objects.filter(
            account=account,
            kind=InboundKind.ORDER,
            external_id__in=list(held_at),
            received_at__gte=F("source_updated_at") + margin,
        ).values_list("external_id", "source_updated_at")
    )
    return {
        external_id: updated
        for external_id, updated in held_at.items()
        if (external_id, updated) in stored
        or any(started >= updated + margin and since <= updated for started, since in runs)
    }


def sync_account_run(
    *, account_id: int, kind: str = SyncKind.POLL, connector=None, should_stop: Callable[[], bool] | None = None
) -> SyncRun | None:
    """Poll one account. Returns the SyncRun, or None when another sync of it holds the lock.

    ``should_stop`` (the worker is shutting down) is asked after each page: when it says so the run ends
    there, as a run cut short does (the cursor stays, the next run replays from it), without counting as a
    failure or backing off."""
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
        stopped = False
        throttled: ChannelThrottled | None = None
        connector.held_versions = lambda ids: _held_versions(account, ids)
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
                if should_stop is not None and should_stop():
                    stopped = True
                    break
            completed = not stopped
            # After the pages: orders that failed earlier are read again by id (the cursor moved on).
            _retry_quarantined(account, connector, run)
            if stopped:
                run.error = f"Stopped after page {run.pages}: the worker is shutting down; the next run goes on."
                log.info("sync of %s stopped after page %s: the worker is shutting down", account.name, run.pages)
        except ChannelThrottled as exc:
            # The channel's rate budget is spent for longer than a worker waits: the run ends at the page in hand
            # as on shutdown (the cursor stays, no failure counted) and the account is due again once it refills.
            throttled = exc
            run.error = f"Paused after page {run.pages}: {exc}"[:4000]
            log.info("sync of %s paused after page %s: %s", account.name, run.pages, exc)
        except ChannelError as exc:
            run.error = str(exc)[:4000]
            log.warning("sync of %s stopped: %s", account.name, exc)
        except (OperationalError, InterfaceError) as exc:
            # The database went away mid-run (a restart, a failover): the page in flight was rolled back and the
            # session is gone, with the lock. The run is recorded failed on a new session (once the server is
            # back; if it is not, the dispatcher's sweep fails the run later) and the cursor stays, so the next
            # run replays from there.
            run.error = f"The database connection was lost: {type(exc).__name__}: {exc}"[:4000]
            log.warning("sync of %s stopped: the database connection was lost: %s", account.name, exc)
            _database_back()
        except Exception as exc:
            run.error = f"{type(exc).__name__}: {exc}"[:4000]
            log.exception("sync of %s crashed", account.name)
        finally:
            connector.held_versions = None
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
            run.progress = {**run.progress, "consecutive_failures": 0}
        else:
            run.status = SyncStatus.PARTIAL if run.pages else SyncStatus.FAILED
            # The cursor stays; last_synced_at moves, and the dispatcher waits out the run's backoff.
            ChannelAccount.objects.filter(pk=account.pk).update(last_synced_at=finished)
        run.finished_at = finished
        run.progress = {**run.progress, "stage": "stopped" if stopped else "throttled" if throttled else "done"}
        if throttled is not None:
            _pause_until_refilled(account, run, throttled, finished)
        elif not completed and not stopped:
            _record_failure(account, run, backfill, finished)
        run.save(update_fields=["status", "finished_at", "error", "cursor_to", "progress"])
        if completed:
            _resolve_failure(account, run)
        return run
