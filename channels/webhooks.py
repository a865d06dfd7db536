"""Webhooks: verified, stored and answered at once; processed in batches by a task.

A webhook is a fast path, never the only path: the scheduled poll reconciles what a lost delivery
missed. Processing is idempotent by state: the order is re-read from the channel and upserted
through the same page ingest as the poll, so duplicates and out-of-order deliveries are harmless.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection, transaction
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from channels.connectors.base import (
    ChannelError,
    ChannelThrottled,
    ChannelUnsupported,
    Connector,
    PayloadError,
    WebhookRejected,
)
from channels.inbound import inbound_orders_process
from channels.models import ChannelAccount, InboundEvent, InboundKind, InboundStatus, SyncKind
from channels.registry import BY_KIND
from channels.services import connector_for
from channels.signals import webhook_events_stored
from channels.sync import account_lock, sync_account_run
from config.kernel.errors import DomainError
from orders import services as order_services
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, Order, Severity

log = logging.getLogger(__name__)

BATCH = 200
BACKLOG_ACTOR = "webhooks"


def _kick(account_id: int) -> None:
    # channels.tasks listens and enqueues the processing for the account. The event is stored already: with the
    # broker (or the cache holding the pending markers) down, the answer is still 200 and beat's dispatcher
    # drains the account once the broker is back (webhook_accounts_waiting).
    for _receiver, result in webhook_events_stored.send_robust(sender=InboundEvent, account_id=account_id):
        if isinstance(result, Exception):
            log.warning(
                "webhook stored for account %s; its drain was not queued (%s: %s): the dispatcher will queue it",
                account_id,
                type(result).__name__,
                result,
            )


def _store(
    account: ChannelAccount, *, dedupe_key: str, external_id: str, payload: dict, updated_at, error: str
) -> bool:
    """Insert the webhook event unless its delivery id was seen; True when it is new."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO channels_inboundevent (account_id, kind, dedupe_key, external_id, payload, received_at,"
            " source_updated_at, status, error, attempts) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, 0)"
            " ON CONFLICT (account_id, dedupe_key) DO NOTHING RETURNING id",
            [
                account.pk,
                InboundKind.WEBHOOK,
                dedupe_key,
                external_id,
                json.dumps(payload, ensure_ascii=False),
                timezone.now(),
                updated_at,
                InboundStatus.FAILED if error else InboundStatus.RECEIVED,
                error,
            ],
        )
        return cursor.fetchone() is not None


def _refused() -> JsonResponse:
    return JsonResponse({"error": "invalid signature"}, status=401)


def _accepts_webhooks(channel: str) -> bool:
    """Whether the channel kind's connector verifies webhooks (decided by the kind, never by an account)."""
    marketplace = BY_KIND.get(channel)
    if marketplace is None:
        return False
    return import_string(marketplace.connector).verify_webhook is not Connector.verify_webhook


@csrf_exempt
@login_not_required
@require_POST
def webhook_receive(request: HttpRequest, channel: str, account_id: int) -> HttpResponse:
    """Verify the signature over the raw body; 401 stores nothing. Answer 200 before any processing.

    An unknown account and a bad signature get the same answer (``_refused``), and a channel without
    webhooks answers 404 whatever the id: account ids cannot be enumerated. A stale replay (signed, so
    from the channel) is told why. The log says which it was."""
    if not _accepts_webhooks(channel):
        return JsonResponse({"error": f"{channel[:32]} webhooks are not supported"}, status=404)
    account = ChannelAccount.objects.filter(pk=account_id, kind=channel).first()
    if account is None:
        log.warning("webhook for %s account %s refused: unknown account", channel[:16], account_id)
        return _refused()
    body = request.body
    try:
        connector = connector_for(account)
    except ChannelUnsupported:
        log.warning("webhook for %s refused: the channel has no webhooks", account.name)
        return _refused()
    try:
        if not connector.verify_webhook(request.headers, body):
            log.warning("webhook for %s rejected: bad signature", account.name)
            return _refused()
    except ChannelUnsupported:
        log.warning("webhook for %s refused: the channel has no webhooks", account.name)
        return _refused()
    except WebhookRejected as exc:
        # Signed but stale (a replay): refused, nothing stored; only a holder of the secret gets here.
        log.warning("webhook for %s rejected: %s", account.name, exc)
        return JsonResponse({"error": str(exc)}, status=401)
    finally:
        connector.close()
    try:
        event = connector.parse_webhook(request.headers, body)
        fields = dict(
            dedupe_key=event.dedupe_key,
            external_id=event.external_id,
            payload=event.payload,
            updated_at=event.updated_at,
            error="",
        )
    except PayloadError as exc:
        # Signed by the channel but unreadable: kept, failed and visible, never dropped.
        digest = hashlib.sha256(body).hexdigest()[:40]
        fields = dict(
            dedupe_key=f"webhook:unreadable:{digest}",
            external_id="",
            payload={"_raw": body[:65536].decode("utf-8", "replace")},
            updated_at=None,
            error=str(exc),
        )
    # One statement in autocommit; the drain is queued after it (at most one waits per account).
    new = _store(account, **fields)
    if new and not fields["error"]:
        transaction.on_commit(partial(_kick, account.pk))
    return JsonResponse({"ok": True, "duplicate": not new})


@dataclass
class WebhookDrain:
    """What one drain of an account's received webhook events did."""

    processed: int = 0
    failed: int = 0
    # Left ``received`` because the channel failed in a way worth retrying; retry_in says when.
    deferred: int = 0
    retry_in: float | None = None
    # The account's sync lock was held (a sync is running): nothing was done.
    locked: bool = False
    # The time budget ran out with events still waiting.
    more: bool = False
    pages: int = 0
    # A sync pass ran because many orders needed reading.
    synced: bool = False
    # The worker is shutting down: the drain returned at a page boundary (the rest stays ``received``).
    stopped: bool = False


def _max_attempts() -> int:
    return int(getattr(settings, "WAYBILL_WEBHOOK_MAX_ATTEMPTS", 8))


def webhook_retry_delay(attempts: int, retry_after: float | None = None) -> float:
    """Seconds before received events that failed ``attempts`` times are tried again: 5 s doubling,
    at most 5 minutes, never sooner than the channel asked."""
    base = float(getattr(settings, "WAYBILL_WEBHOOK_BACKOFF_SECONDS", 5.0))
    return max(min(base * 2 ** max(attempts - 1, 0), 300.0), retry_after or 0.0)


def _sync_threshold() -> int:
    # A single read of a Shopify order costs several times its share of a page (query cost): from three
    # orders on, one pass over the pages is cheaper, and leaves the channel's budget to the regular polls.
    return int(getattr(settings, "WAYBILL_WEBHOOK_SYNC_THRESHOLD", 3))


def _held(account: ChannelAccount, external_ids: list[str]) -> dict[str, datetime | None]:
    """The newest update Waybill holds of each of these orders."""
    return dict(
        Order.objects.filter(account_id=account.pk, external_id__in=external_ids).values_list(
            "external_id", "source_updated_at"
        )
    )


def _current(newest: dict[str, datetime | None], held: dict[str, datetime | None]) -> set[str]:
    """Orders whose every webhook event Waybill already holds (nothing to read)."""
    return {
        external_id
        for external_id, updated in newest.items()
        if updated is not None and held.get(external_id) is not None and held[external_id] >= updated
    }


def _process_page(
    account: ChannelAccount,
    connector,
    events: list[InboundEvent],
    drain: WebhookDrain,
    deadline: float,
    should_stop: Callable[[], bool] | None = None,
) -> bool:
    """Ingest the page's orders: an order Waybill already holds at least as new as every event about it is
    not read again (a replayed or repeated delivery); the others are re-read from the channel, once each.
    False when the page stopped early: the channel failed in a retryable way (the events not read stay
    ``received``; the one that failed counts an attempt, and is failed for good, visible and retried by the
    sync, once it has used WAYBILL_WEBHOOK_MAX_ATTEMPTS), or the time budget ran out (``drain.more``)."""
    newest: dict[str, datetime | None] = {}
    for event in events:
        known = newest.get(event.external_id, event.source_updated_at)
        newest[event.external_id] = (
            None if known is None or event.source_updated_at is None else max(known, event.source_updated_at)
        )
    held = _held(account, list(newest))
    current = _current(newest, held)
    if not drain.synced and len(newest) - len(current) >= _sync_threshold():
        # Several orders to read: one sync pass reads every order changed since the cursor in pages, far
        # cheaper than as many single reads (Shopify's query cost, Amazon's rate); what it did not bring
        # up to date is read one by one below.
        drain.synced = True
        sync_account_run(account_id=account.pk, kind=SyncKind.WEBHOOK, connector=connector, should_stop=should_stop)
        held = _held(account, list(newest))
        current = _current(newest, held)
    raws, errors, done_ids = [], {}, set(current)
    retry: ChannelError | None = None
    failing = ""
    for external_id in newest:
        if external_id in current:
            continue
        if time.monotonic() >= deadline and done_ids:
            drain.more = True
            break
        if should_stop is not None and should_stop():
            drain.stopped = True
            break
        try:
            raws.append(connector.get_order(external_id))
        except ChannelError as exc:
            if exc.retryable:
                retry, failing = exc, external_id
                break
            errors[external_id] = str(exc)
        done_ids.add(external_id)
    if raws:
        inbound_orders_process(account=account, connector=connector, raw_orders=raws, actor=f"webhook:{account.name}")
    done = [e for e in events if e.external_id in done_ids]
    orders = dict(
        Order.objects.filter(account_id=account.pk, external_id__in=[e.external_id for e in done]).values_list(
            "external_id", "pk"
        )
    )
    now = timezone.now()
    for event in done:
        event.processed_at = now
        event.order_id = orders.get(event.external_id)
        event.error = errors.get(event.external_id, "")
        event.status = InboundStatus.FAILED if event.error else InboundStatus.PROCESSED
        drain.failed += bool(event.error)
        drain.processed += not event.error
    InboundEvent.objects.bulk_update(done, ["processed_at", "order_id", "error", "status"])
    if retry is None:
        return not (drain.more or drain.stopped)
    if isinstance(retry, ChannelThrottled):
        # The channel's budget is spent: not the event's failure (no attempt counted); back once it refills.
        drain.deferred += sum(1 for e in events if e.external_id not in done_ids)
        drain.retry_in = max(float(retry.retry_after or 0.0), 1.0)
        log.info("webhooks of %s wait %.0f s for the channel's budget: %s", account.name, drain.retry_in, retry)
        return False
    tried = [e for e in events if e.external_id == failing]
    attempts = max(e.attempts for e in tried) + 1
    give_up = attempts >= _max_attempts()
    for event in tried:
        event.attempts += 1
        event.error = f"{retry}"[:4000]
        if give_up:
            # Failed and visible (channel page, inbound retry by id in the next sync), never dropped.
            event.status = InboundStatus.FAILED
            event.processed_at = now
    InboundEvent.objects.bulk_update(tried, ["attempts", "error", "status", "processed_at"])
    drain.failed += len(tried) if give_up else 0
    drain.deferred += sum(1 for e in events if e.external_id not in done_ids) - (len(tried) if give_up else 0)
    drain.retry_in = webhook_retry_delay(attempts, retry.retry_after)
    log.warning("webhooks of %s deferred %.0f s: %s", account.name, drain.retry_in, retry)
    return False


def _received(account: ChannelAccount, after: int, limit: int) -> list[InboundEvent]:
    return list(
        InboundEvent.objects.filter(
            account=account, kind=InboundKind.WEBHOOK, status=InboundStatus.RECEIVED, pk__gt=after
        )
        .order_by("pk")
        .only("pk", "external_id", "attempts", "source_updated_at")[:limit]
    )


def webhook_events_drain(
    *,
    account_id: int,
    budget_seconds: float = 20.0,
    page: int = BATCH,
    should_stop: Callable[[], bool] | None = None,
) -> WebhookDrain:
    """Process the account's received webhook events page by page (oldest first) until none are left,
    the channel fails in a retryable way, or the time budget is spent (checked between two reads from the
    channel). Holds the account's sync lock: a sync and a drain of one account never run at once, and a
    drain gives the lock back within about its budget. ``should_stop`` (the worker is shutting down) is asked
    between two reads and after each page: the drain returns there, what it has not read stays ``received``
    for the next drain (the dispatcher queues one for every account with received events)."""
    drain = WebhookDrain()
    with account_lock(account_id) as acquired:
        if not acquired:
            drain.locked = True
            return drain
        account = ChannelAccount.objects.get(pk=account_id)
        deadline = time.monotonic() + budget_seconds
        after = 0
        connector = None
        try:
            while True:
                events = _received(account, after, page)
                if not events:
                    break
                connector = connector or connector_for(account)
                drain.pages += 1
                after = events[-1].pk
                if not _process_page(account, connector, events, drain, deadline, should_stop):
                    break
                if should_stop is not None and should_stop():
                    drain.stopped = True
                    break
                if time.monotonic() >= deadline:
                    drain.more = bool(_received(account, after, 1))
                    break
        finally:
            if connector is not None:
                connector.close()
    return drain


def webhook_events_process(*, account_id: int) -> int | None:
    """One page of the account's received webhook events; how many were processed or failed.
    None: a sync holds the account's lock."""
    drain = webhook_events_drain(account_id=account_id, budget_seconds=0.0)
    return None if drain.locked else drain.processed + drain.failed


def webhook_accounts_waiting() -> list[int]:
    """Accounts with webhook events still ``received``: the dispatcher makes sure each has a drain queued."""
    return list(
        InboundEvent.objects.filter(kind=InboundKind.WEBHOOK, status=InboundStatus.RECEIVED)
        .order_by("account_id")
        .values_list("account_id", flat=True)
        .distinct()
    )


def _backlog_case_key(account_id: int) -> str:
    return f"webhooks_waiting:account={account_id}"


def webhook_backlog_check(*, now: datetime | None = None) -> dict[int, int]:
    """The age check: an account whose webhook events have waited longer than WAYBILL_WEBHOOK_STALE_SECONDS
    (10 minutes) gets one case saying how many and since when; it is resolved once none are that old.
    Returns {account id: events waiting too long}."""
    now = now or timezone.now()
    stale = float(getattr(settings, "WAYBILL_WEBHOOK_STALE_SECONDS", 600))
    cutoff = now - timedelta(seconds=stale)
    waiting = {
        row["account_id"]: row
        for row in InboundEvent.objects.filter(
            kind=InboundKind.WEBHOOK, status=InboundStatus.RECEIVED, received_at__lt=cutoff
        )
        .values("account_id")
        .annotate(count=Count("pk"), oldest=Min("received_at"))
        .order_by()
    }
    names = dict(ChannelAccount.objects.filter(pk__in=list(waiting)).values_list("pk", "name"))
    for account_id, row in waiting.items():
        minutes = int(stale // 60)
        order_services.exception_case_open(
            kind=ExceptionKind.SYNC_FAILURE,
            title=f"{names[account_id]}: {row['count']} webhook event(s) waiting more than {minutes} minutes",
            detail=(
                f"The oldest arrived at {row['oldest']:%Y-%m-%d %H:%M:%S} UTC and is still not processed. "
                "Check that a Celery worker is running and that the channel answers (the channel page shows "
                "the events and their last error). The scheduled sync still reads these orders; this case is "
                "resolved once no webhook event has waited that long."
            ),
            severity=Severity.HIGH,
            account_id=account_id,
            dedupe_key=_backlog_case_key(account_id),
            actor=BACKLOG_ACTOR,
        )
    open_cases = ExceptionCase.objects.filter(
        kind=ExceptionKind.SYNC_FAILURE, dedupe_key__startswith="webhooks_waiting:"
    ).exclude(status=CaseStatus.RESOLVED)
    for case in open_cases.exclude(account_id__in=list(waiting)):
        try:
            order_services.exception_case_resolve(
                case=case.pk, note="No webhook event is waiting too long any more.", actor=BACKLOG_ACTOR
            )
        except DomainError:
            continue  # resolved by a person meanwhile
    return {account_id: row["count"] for account_id, row in waiting.items()}
