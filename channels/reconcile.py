"""Reconciliation: each account's orders and advertised stock compared with the channel's as a whole.

The sync reads what changed since its cursor and the inventory push trusts what it last sent; this reads
the channel's side again (orders updated within a window, the quantities each listing advertises now),
classifies every disagreement as a Drift row and heals it through the paths everything else uses:

- the channel is ahead (an order never ingested, cancelled or shipped at the channel, lines edited): its
  payload goes through the sync's own inbound path (events deduped, the ingest's watermark, the upstream
  cancel and ship services): a payload that fails validation is quarantined as a failed event exactly as
  the sync does, and nothing is healed from it;
- Waybill is ahead (a confirmation or cancellation the channel lost): the original outbox message is queued
  again under a key derived from the drift, so a replayed run finds the message in flight and sends nothing;
- stock: over-advertised SKUs first (oversell risk), then under-advertised, pushed through the outbox with
  the channel's current value recorded as what it advertises.

**Locks.** A run holds its own advisory lock per (account, scope), never the sync's: a sync is never kept
waiting by a reconciliation. A heal that ingests takes the sync's lock for the page only, waiting its turn
while a sync runs; and while a sync runs, the reader pauses before each page, leaving the channel's rate
budget to it (``WAYBILL_RECONCILE_PACE_SECONDS`` spaces the reader's pages further, per channel kind). Where the
channel reports its budget (Shopify), the reader's calls also leave ``WAYBILL_RECONCILE_BUDGET_RESERVE`` of it
(half) untouched, so a sync that starts between two of its pages finds its budget there.

**Horizon.** Only what the sync has had its chance to see is compared: orders the channel changed up to the
sync's cursor less its overlap. A newer change is the next poll's, not drift.

**Replays.** Detection and heal of a page commit together with the drift rows. One unsettled drift per
(account, kind, subject) is a database constraint, and an order with a confirmation in flight is not a
drift, so an overlapping, replayed or restarted run heals nothing twice. A drift that was healed once and
comes back, or cannot be healed, opens an exception case (kind ``reconcile_drift``) and waits for a person;
a later run that finds the subject consistent settles it and resolves its case.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from channels.availability import channel_availabilities_observed, channel_availability_recompute
from channels.connectors import CONNECTORS
from channels.connectors.base import ChannelError, Connector, ListingIds, NormalizedOrder, PayloadError
from channels.inbound import inbound_orders_process
from channels.models import (
    ORDER_DRIFT_KINDS,
    ChannelAccount,
    ChannelAvailability,
    Drift,
    DriftKind,
    DriftStatus,
    Listing,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    ReconcileRun,
    ReconcileScope,
    SyncStatus,
)
from channels.outbox import outbox_enqueue
from channels.services import connector_for
from channels.sync import LOCK_NAMESPACE as SYNC_LOCK_NAMESPACE
from channels.sync import account_lock
from config.kernel.errors import DomainError
from orders import services as order_services
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, Order, OrderStatus, Severity

log = logging.getLogger(__name__)

# The advisory lock's first key per scope ("WR" + scope); the account id is the second.
LOCK_KEYS = {ReconcileScope.ORDERS: 0x5752, ReconcileScope.STOCK: 0x5753}
WINDOW_DAYS = 30
# Orders open here but absent from the channel's pages, read again by id per run.
BY_ID_LIMIT = 200
# How long a heal that ingests waits for a running sync to finish its page before deferring to the next run.
SYNC_WAIT_SECONDS = 60.0
# How long the reader pauses for a running sync before going on with its own page anyway.
SYNC_YIELD_SECONDS = 30.0
OPEN_ORDER_STATUSES = (
    OrderStatus.PENDING,
    OrderStatus.OPEN,
    OrderStatus.BACKORDERED,
    OrderStatus.ALLOCATED,
    OrderStatus.RELEASED,
    OrderStatus.PARTIALLY_SHIPPED,
)
IN_FLIGHT = (OutboxStatus.PENDING, OutboxStatus.FAILED, OutboxStatus.SENDING)
# Heals that go through the inbound path (the channel is ahead) and those that resend a message.
INGEST_KINDS = frozenset(
    {DriftKind.MISSING_HERE, DriftKind.CANCELLED_THERE, DriftKind.SHIPPED_THERE, DriftKind.LINES_DISAGREE}
)
RESEND_KINDS = {
    DriftKind.SHIPPED_HERE_NOT_THERE: OutboxKind.SHIP_CONFIRMATION,
    DriftKind.CANCELLED_HERE_NOT_THERE: OutboxKind.CANCELLATION,
}
RESEND_PREFIX = "reconcile:"
# A write the channel acknowledged this recently may not show in its reads yet (Amazon's updates lag minutes):
# such an order or SKU counts as in flight, not as drift.
SETTLE_SECONDS = 900.0
# The share of a channel's reported rate budget the reader leaves to the sync and the sends.
BUDGET_RESERVE = 0.5


def _settle_window() -> timedelta:
    return timedelta(seconds=float(_setting("WAYBILL_RECONCILE_SETTLE_SECONDS", SETTLE_SECONDS)))


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def _actor(account: ChannelAccount) -> str:
    return f"reconcile:{account.name}"[:150]


# --- locks and pacing ---------------------------------------------------------------------------


@contextmanager
def reconcile_lock(account_id: int, scope: str) -> Iterator[bool]:
    """Yields True if this connection now holds the account's reconciliation lock for the scope."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_KEYS[scope], account_id])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_KEYS[scope], account_id])


def sync_running(account_id: int) -> bool:
    """Whether a sync of the account holds its lock now (read from pg_locks: taking it would race the sync)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s AND objid = %s AND objsubid = 2 AND database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database()))",
            [SYNC_LOCK_NAMESPACE, account_id],
        )
        return bool(cursor.fetchone()[0])


@contextmanager
def _sync_lock_for_heal(account_id: int) -> Iterator[bool]:
    """The sync's lock for one page of heals, waiting for a running sync (which never waits for us)."""
    deadline = time.monotonic() + float(_setting("WAYBILL_RECONCILE_SYNC_WAIT_SECONDS", SYNC_WAIT_SECONDS))
    while True:
        with account_lock(account_id) as acquired:
            if acquired:
                yield True
                return
        if time.monotonic() >= deadline:
            yield False
            return
        time.sleep(0.2)


class _Pacer:
    """Spaces the reader's calls: pauses while the account's sync runs, then keeps the configured gap."""

    def __init__(self, account: ChannelAccount):
        self.account_id = account.pk
        self.gap = float((_setting("WAYBILL_RECONCILE_PACE_SECONDS", {}) or {}).get(account.kind, 0.0))
        self.last = 0.0
        self.yielded_seconds = 0.0

    def wait(self) -> None:
        start = time.monotonic()
        limit = start + float(_setting("WAYBILL_RECONCILE_SYNC_YIELD_SECONDS", SYNC_YIELD_SECONDS))
        while sync_running(self.account_id) and time.monotonic() < limit:
            time.sleep(0.25)
        if self.gap:
            pause = self.last + self.gap - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        self.last = time.monotonic()
        self.yielded_seconds += self.last - start


@contextmanager
def _leaving_budget(connector: Connector, run: ReconcileRun) -> Iterator[None]:
    """The reader's calls leave WAYBILL_RECONCILE_BUDGET_RESERVE of the channel's rate budget to the sync (where
    the channel reports its budget); the connector is given back as it came."""
    reserve = min(max(float(_setting("WAYBILL_RECONCILE_BUDGET_RESERVE", BUDGET_RESERVE)), 0.0), 0.9)
    before = connector.budget_reserve
    connector.budget_reserve = reserve
    run.progress = {**run.progress, "budget_reserve": reserve}
    try:
        yield
    finally:
        connector.budget_reserve = before


def _count_calls(connector: Connector) -> Callable[[], int]:
    """Counts the HTTP requests the connector sends from now on (retries included)."""
    counter = {"n": 0}

    def count(request) -> None:
        counter["n"] += 1

    connector.http.client.event_hooks["request"].append(count)
    return lambda: counter["n"]


# --- the order comparison (pure) ----------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One side of an order: its status and {line id: (ordered, shipped, cancelled)}."""

    status: str
    lines: dict[str, tuple[int, int, int]]
    marketplace_fulfilled: bool = False

    def total(self, index: int) -> int:
        return sum(values[index] for values in self.lines.values())

    def as_json(self) -> dict:
        return {
            "status": self.status,
            "lines": {k: {"ordered": o, "shipped": s, "cancelled": c} for k, (o, s, c) in sorted(self.lines.items())},
        }


def side_of_channel(order: NormalizedOrder) -> Side:
    lines: dict[str, tuple[int, int, int]] = {}
    for line in order.lines:
        o, s, c = lines.get(line.external_id, (0, 0, 0))
        lines[line.external_id] = (o + line.quantity, s + line.quantity_shipped, c + line.quantity_cancelled)
    return Side(order.status, lines, order.marketplace_fulfilled)


def side_of_order(order: Order) -> Side:
    return Side(
        order.status,
        {
            line.external_id: (line.quantity, line.quantity_shipped, line.quantity_cancelled)
            for line in order.lines.all()
        },
        order.marketplace_fulfilled,
    )


def _over(theirs: Side, ours: Side, index: int) -> bool:
    return any(values[index] > ours.lines.get(line_id, (0, 0, 0))[index] for line_id, values in theirs.lines.items())


def order_drift(theirs: Side, ours: Side | None) -> str | None:
    """The kind of drift between the channel's order and ours, the one to heal first; None when they agree."""
    if ours is None:
        return DriftKind.MISSING_HERE
    if (theirs.status == OrderStatus.CANCELLED and ours.status != OrderStatus.CANCELLED) or _over(theirs, ours, 2):
        return DriftKind.CANCELLED_THERE
    if _over(theirs, ours, 1):
        return DriftKind.SHIPPED_THERE
    if not ours.marketplace_fulfilled and _over(ours, theirs, 1):
        return DriftKind.SHIPPED_HERE_NOT_THERE
    if _over(ours, theirs, 2) or (ours.status == OrderStatus.CANCELLED and theirs.status != OrderStatus.CANCELLED):
        return DriftKind.CANCELLED_HERE_NOT_THERE
    if {k: v[0] for k, v in theirs.lines.items()} != {k: v[0] for k, v in ours.lines.items()}:
        return DriftKind.LINES_DISAGREE
    return None


# --- drift rows ---------------------------------------------------------------------------------


def _drift_take(
    account: ChannelAccount, run: ReconcileRun, kind: str, subject: str, **fields: Any
) -> tuple[Drift, bool]:
    """The unsettled drift of this subject and kind, locked, or a new one; (row, found before)."""
    existing = (
        Drift.objects.select_for_update()
        .filter(account=account, kind=kind, subject=subject[:255], status__in=[DriftStatus.OPEN, DriftStatus.UNHEALED])
        .first()
    )
    if existing is not None:
        for name, value in fields.items():
            setattr(existing, name, value)
        existing.save(update_fields=list(fields))
        return existing, True
    return Drift.objects.create(account=account, run=run, kind=kind, subject=subject[:255], **fields), False


def _healed(drift: Drift, action: str, *, message: OutboxMessage | None = None) -> None:
    drift.status = DriftStatus.HEALED
    drift.healed_at = timezone.now()
    drift.action = action[:4000]
    drift.outbox_message = message
    drift.save(update_fields=["status", "healed_at", "action", "outbox_message"])


def _unhealed(account: ChannelAccount, drift: Drift, why: str, *, severity: str = Severity.HIGH) -> None:
    """Leave the drift to a person: one exception case per drift row."""
    what = drift.get_kind_display().lower()
    case, _ = order_services.exception_case_open(
        kind=ExceptionKind.RECONCILE_DRIFT,
        title=f"{account.name}: {what}: {drift.subject}",
        detail=(
            f"Reconciliation found {what} for {drift.subject} on {account.name}.\n"
            f"The channel says: {json.dumps(drift.theirs, sort_keys=True)[:1500]}\n"
            f"Waybill says: {json.dumps(drift.ours, sort_keys=True)[:1500]}\n"
            f"Not healed automatically: {why}\n"
            "The next reconciliation that finds both sides agreeing resolves this case."
        ),
        severity=severity,
        order_id=drift.order_id,
        account_id=account.pk,
        sku_id=drift.sku_id,
        dedupe_key=f"reconcile_drift:{drift.pk}",
        actor=_actor(account),
    )
    drift.status = DriftStatus.UNHEALED
    drift.case = case
    drift.action = why[:4000]
    drift.save(update_fields=["status", "case", "action"])


def _settle_consistent(account: ChannelAccount, run: ReconcileRun, subjects: list[str], kinds) -> int:
    """Unsettled drifts of subjects now found consistent are cleared and their cases resolved."""
    if not subjects:
        return 0
    settled = 0
    for drift in Drift.objects.select_for_update().filter(
        account=account,
        subject__in=subjects,
        kind__in=list(kinds),
        status__in=[DriftStatus.OPEN, DriftStatus.UNHEALED],
    ):
        drift.status = DriftStatus.CLEARED
        drift.action = f"{drift.action}\nFound consistent by reconciliation run #{run.pk}.".strip()[:4000]
        drift.save(update_fields=["status", "action"])
        settled += 1
        if drift.case_id:
            try:
                order_services.exception_case_resolve(
                    case=drift.case_id,
                    note=f"Reconciliation run #{run.pk} found both sides agreeing.",
                    actor=_actor(account),
                )
            except DomainError:
                continue  # resolved by a person already
    return settled


# --- runs ---------------------------------------------------------------------------------------


def _run_start(account: ChannelAccount, scope: str, trigger: str, **fields: Any) -> ReconcileRun:
    started = timezone.now()
    # Runs left "running" by a worker that died: we hold the lock, so none of them is alive.
    ReconcileRun.objects.filter(account=account, scope=scope, status=SyncStatus.RUNNING).update(
        status=SyncStatus.FAILED, finished_at=started, error="The worker running this reconciliation stopped."
    )
    return ReconcileRun.objects.create(
        account=account, scope=scope, trigger=trigger[:16], started_at=started, progress={"stage": "reading"}, **fields
    )


def _run_save(run: ReconcileRun, calls: Callable[[], int], **progress: Any) -> None:
    run.calls = calls()
    run.progress = {**run.progress, **progress}
    run.save(update_fields=["compared", "found", "healed", "unhealed", "calls", "progress"])


def _run_finish(run: ReconcileRun, calls: Callable[[], int], completed: bool) -> ReconcileRun:
    run.calls = calls()
    run.finished_at = timezone.now()
    if completed:
        run.status = (
            SyncStatus.PARTIAL
            if run.progress.get("quarantined") or run.progress.get("deferred")
            else SyncStatus.SUCCEEDED
        )
    else:
        run.status = SyncStatus.PARTIAL if run.compared else SyncStatus.FAILED
    run.progress = {**run.progress, "stage": "done"}
    run.save(
        update_fields=["status", "finished_at", "compared", "found", "healed", "unhealed", "calls", "error", "progress"]
    )
    return run


def _guarded(run: ReconcileRun, account: ChannelAccount, body: Callable[[], None]) -> bool:
    try:
        body()
        return True
    except ChannelError as exc:
        run.error = str(exc)[:4000]
        log.warning("reconciliation of %s stopped: %s", account.name, exc)
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"[:4000]
        log.exception("reconciliation of %s crashed", account.name)
    return False


# --- orders -------------------------------------------------------------------------------------


def reconcile_orders_run(
    *, account_id: int, trigger: str = "schedule", connector: Connector | None = None, now: datetime | None = None
) -> ReconcileRun | None:
    """Compare every order the channel updated within the window (WAYBILL_RECONCILE_WINDOW_DAYS) with ours,
    then read by id the orders open here that the channel's pages did not include; heal what differs.
    Returns the run, or None when a reconciliation of the account's orders is already running."""
    with reconcile_lock(account_id, ReconcileScope.ORDERS) as acquired:
        if not acquired:
            return None
        account = ChannelAccount.objects.get(pk=account_id)
        now = now or timezone.now()
        window_from = now - timedelta(days=float(_setting("WAYBILL_RECONCILE_WINDOW_DAYS", WINDOW_DAYS)))
        run = _run_start(account, ReconcileScope.ORDERS, trigger, window_from=window_from)
        own = connector is None
        connector = connector or connector_for(account)
        # Only changes the sync has had its chance to see are compared: up to its cursor less its overlap.
        horizon = min(run.started_at, (account.sync_cursor or run.started_at) - connector.overlap)
        run.progress = {**run.progress, "horizon": horizon.isoformat()}
        calls = _count_calls(connector)
        pacer = _Pacer(account)
        seen: set[str] = set()

        def body() -> None:
            bulk = connector.reconcile_in_bulk
            pages = connector.fetch_orders(since=window_from, backfill=bulk)
            page_number = 0
            while True:
                pacer.wait()
                page = next(pages, None)
                if page is None:
                    break
                page_number += 1
                newest_first = _orders_page(account, connector, run, page.raw_orders, seen)
                if connector.pages_in_update_order and not bulk and newest_first:
                    # Every order on the page changed after the horizon: later pages are newer still (a live
                    # list sorted by update time grows at its end while it is read).
                    run.progress["stopped_at_horizon"] = page_number
                    _run_save(run, calls, stage="reading", pages=page_number)
                    break
                _run_save(
                    run, calls, stage="reading", pages=page_number, yielded_seconds=round(pacer.yielded_seconds, 1)
                )
            _orders_by_id(account, connector, run, seen, window_from, pacer, calls)

        try:
            with _leaving_budget(connector, run):
                completed = _guarded(run, account, body)
        finally:
            if own:
                connector.close()
        return _run_finish(run, calls, completed)


def _orders_page(
    account: ChannelAccount, connector: Connector, run: ReconcileRun, raws: list[Any], seen: set[str]
) -> bool:
    """Compare and heal one page of the channel's orders. True when every order on it (at least one) changed
    after the horizon."""
    parsed: dict[str, tuple[NormalizedOrder, Any]] = {}
    malformed: list[Any] = []
    newer = 0
    for raw in raws:
        try:
            order = connector.parse_order(raw)
        except (PayloadError, TypeError, ValueError, AttributeError, KeyError) as exc:
            log.info("reconciliation of %s: a malformed order is quarantined: %s", account.name, exc)
            malformed.append(raw)
            continue
        seen.add(order.external_id)
        # A change the sync has not polled yet (after its cursor) is the sync's to take, not drift.
        if order.updated_at <= _horizon(run):
            parsed[order.external_id] = (order, raw)
        else:
            newer += 1
    if malformed:
        # Quarantined as the sync does it: stored as failed events with a case; nothing is healed from them.
        with _sync_lock_for_heal(account.pk) as locked:
            if locked:
                outcome = inbound_orders_process(
                    account=account, connector=connector, raw_orders=malformed, actor=_actor(account)
                )
                run.progress["quarantined"] = run.progress.get("quarantined", 0) + outcome.failed + outcome.replayed
            else:
                run.progress["deferred"] = run.progress.get("deferred", 0) + len(malformed)
    _orders_compare(account, connector, run, parsed)
    return bool(raws) and newer == len(raws)


def _horizon(run: ReconcileRun) -> datetime:
    return datetime.fromisoformat(run.progress["horizon"])


def _ours(account: ChannelAccount, external_ids: list[str]) -> dict[str, Order]:
    return {
        order.external_id: order
        for order in Order.objects.filter(account_id=account.pk, external_id__in=external_ids).prefetch_related("lines")
    }


def _orders_compare(
    account: ChannelAccount, connector: Connector, run: ReconcileRun, parsed: dict[str, tuple[NormalizedOrder, Any]]
) -> None:
    if not parsed:
        return
    ours = _ours(account, list(parsed))
    found: dict[str, str] = {}
    consistent: list[str] = []
    for external_id, (order, _) in parsed.items():
        mine = ours.get(external_id)
        kind = order_drift(side_of_channel(order), side_of_order(mine) if mine else None)
        if kind in RESEND_KINDS and _in_flight(mine, RESEND_KINDS[kind]):
            kind = None  # Waybill's message is on its way: not a drift yet
        if kind is None:
            consistent.append(external_id)
        else:
            found[external_id] = kind
    run.compared += len(parsed)
    with transaction.atomic():
        _settle_consistent(account, run, consistent, ORDER_DRIFT_KINDS)
    to_ingest = {k: v for k, v in found.items() if v in INGEST_KINDS}
    for external_id, kind in found.items():
        if kind in RESEND_KINDS:
            with transaction.atomic():
                _resend(account, run, ours[external_id], parsed[external_id][0], kind)
    if to_ingest:
        _heal_by_ingest(account, connector, run, {k: parsed[k] for k in to_ingest}, to_ingest, ours)


def _in_flight(order: Order | None, kind: str) -> bool:
    """A message of that kind is on its way, or was acknowledged too recently to show in the channel's reads."""
    if order is None:
        return False
    recent = Q(status=OutboxStatus.SENT, sent_at__gt=timezone.now() - _settle_window())
    return OutboxMessage.objects.filter(Q(status__in=IN_FLIGHT) | recent, order=order, kind=kind).exists()


def _count_found(run: ReconcileRun, drift: Drift, before: bool) -> None:
    if not before:
        run.found += 1


def _resend(account: ChannelAccount, run: ReconcileRun, order: Order, theirs: NormalizedOrder, kind: str) -> None:
    """Waybill is ahead: queue the order's sent messages of that kind again, once per drift."""
    message_kind = RESEND_KINDS[kind]
    drift, before = _drift_take(
        account,
        run,
        kind,
        order.external_id,
        order=order,
        theirs=side_of_channel(theirs).as_json(),
        ours=side_of_order(order).as_json(),
    )
    if before and drift.status == DriftStatus.UNHEALED:
        return  # a person has it
    _count_found(run, drift, before)
    messages = list(OutboxMessage.objects.filter(order=order, kind=message_kind).order_by("pk"))
    resent = [m for m in messages if m.dedupe_key.startswith(RESEND_PREFIX) and m.status == OutboxStatus.SENT]
    originals = [m for m in messages if not m.dedupe_key.startswith(RESEND_PREFIX)]
    label = "ship confirmation" if message_kind == OutboxKind.SHIP_CONFIRMATION else "cancellation"
    if resent:
        _unhealed(
            account,
            drift,
            f"the {label} was already sent again (outbox #{resent[-1].pk}) and the channel still does not show it",
        )
    elif any(m.status == OutboxStatus.PARKED for m in originals):
        parked = next(m for m in originals if m.status == OutboxStatus.PARKED)
        _unhealed(account, drift, f"the {label} is parked (outbox #{parked.pk}): the channel refused it")
    elif not [m for m in originals if m.status == OutboxStatus.SENT]:
        _unhealed(account, drift, f"Waybill has no {label} for this order that it could send again")
    else:
        queued = []
        for original in (m for m in originals if m.status == OutboxStatus.SENT):
            message, _ = outbox_enqueue(
                account_id=account.pk,
                kind=message_kind,
                dedupe_key=f"{RESEND_PREFIX}{drift.pk}:{original.dedupe_key}"[:255],
                payload=original.payload,
                order_id=order.pk,
            )
            queued.append(message)
        _healed(
            drift,
            f"the channel lost the {label}: sent again through the outbox "
            f"({', '.join(f'#{m.pk}' for m in queued)}, from #{', #'.join(str(m.pk) for m in originals)})",
            message=queued[0],
        )
        run.healed += 1
        return
    run.unhealed += 0 if before else 1


def _heal_by_ingest(
    account: ChannelAccount,
    connector: Connector,
    run: ReconcileRun,
    parsed: dict[str, tuple[NormalizedOrder, Any]],
    kinds: dict[str, str],
    ours: dict[str, Order],
) -> None:
    """The channel is ahead: its payloads go through the sync's inbound path under the sync's lock, then each
    order is compared again; what still differs goes to a person."""
    with _sync_lock_for_heal(account.pk) as locked:
        if not locked:
            run.progress["deferred"] = run.progress.get("deferred", 0) + len(parsed)
            return
        with transaction.atomic():
            drifts: dict[str, tuple[Drift, bool]] = {}
            for external_id, (order, _) in parsed.items():
                mine = ours.get(external_id)
                drifts[external_id] = _drift_take(
                    account,
                    run,
                    kinds[external_id],
                    external_id,
                    order=mine,
                    theirs=side_of_channel(order).as_json(),
                    ours=side_of_order(mine).as_json() if mine else {},
                )
            pending = {k: v for k, v in parsed.items() if drifts[k][0].status != DriftStatus.UNHEALED}
            for external_id in pending:
                _count_found(run, *drifts[external_id])
            if not pending:
                return
            outcome = inbound_orders_process(
                account=account,
                connector=connector,
                raw_orders=[raw for _, raw in pending.values()],
                actor=_actor(account),
            )
            after = _ours(account, list(pending))
            for external_id, (order, _) in pending.items():
                drift, _before = drifts[external_id]
                mine = after.get(external_id)
                drift.order = mine
                drift.save(update_fields=["order"])
                still = order_drift(side_of_channel(order), side_of_order(mine) if mine else None)
                if still is None:
                    _healed(drift, _ingest_action(kinds[external_id], outcome))
                    run.healed += 1
                else:
                    why = (
                        "the channel's order was ingested through the sync's path and Waybill still differs "
                        f"({DriftKind(still).label.lower()}): an older payload than what the order reflects, "
                        "a failed event, or a change Waybill refuses (see the order's events)"
                    )
                    _unhealed(account, drift, why)
                    run.unhealed += 1


def _ingest_action(kind: str, outcome) -> str:
    what = {
        DriftKind.MISSING_HERE: "ingested the order the sync never saw",
        DriftKind.CANCELLED_THERE: "applied the channel's cancellation (units cancelled, reservations released, "
        "unpicked shipments recalled)",
        DriftKind.SHIPPED_THERE: "applied the units shipped outside Waybill (the shipped-upstream path)",
        DriftKind.LINES_DISAGREE: "applied the channel's lines",
    }[kind]
    return f"{what} through the sync's inbound path (page: {outcome.created} created, {outcome.updated} updated)"


def _orders_by_id(
    account: ChannelAccount,
    connector: Connector,
    run: ReconcileRun,
    seen: set[str],
    window_from: datetime,
    pacer: _Pacer,
    calls: Callable[[], int],
) -> None:
    """Orders open here (or shipped within the window) that the channel's pages did not include: read each by
    id (least recently reconciled first, at most WAYBILL_RECONCILE_BY_ID_LIMIT) and compare; one the channel
    does not know is a drift for a person."""
    limit = int(_setting("WAYBILL_RECONCILE_BY_ID_LIMIT", BY_ID_LIMIT))
    candidates = (
        Order.objects.filter(account_id=account.pk)
        .filter(Q(status__in=OPEN_ORDER_STATUSES) | Q(status=OrderStatus.SHIPPED, updated_at__gte=window_from))
        .filter(created_at__lt=run.started_at)
        .filter(replaces_order__isnull=True)  # an exchange's replacement order exists only here
        .order_by("updated_at", "pk")
        .values_list("external_id", flat=True)
    )
    unseen: list[str] = []
    for external_id in candidates.iterator(chunk_size=2000):
        if external_id not in seen:
            unseen.append(external_id)
            if len(unseen) >= limit:
                break
    run.progress["by_id"] = len(unseen)
    for external_id in unseen:
        pacer.wait()
        try:
            raw = connector.get_order(external_id)
        except ChannelError as exc:
            if exc.status == 404:
                _missing_there(account, run, external_id, str(exc))
                continue
            raise
        _orders_page(account, connector, run, [raw], seen)
        _run_save(run, calls, stage="reading by id")


def _missing_there(account: ChannelAccount, run: ReconcileRun, external_id: str, error: str) -> None:
    order = Order.objects.filter(account_id=account.pk, external_id=external_id).first()
    with transaction.atomic():
        drift, before = _drift_take(
            account,
            run,
            DriftKind.MISSING_THERE,
            external_id,
            order=order,
            theirs={"error": error[:500]},
            ours=side_of_order(order).as_json() if order else {},
        )
        if before:
            return
        run.found += 1
        run.unhealed += 1
        _unhealed(account, drift, "the channel does not know this order: check it in the seller centre")


# --- advertised stock ---------------------------------------------------------------------------


def reconcile_stock_run(
    *, account_id: int, trigger: str = "schedule", connector: Connector | None = None
) -> ReconcileRun | None:
    """Read what the channel advertises for every listed SKU, compare it with what Waybill last pushed and
    what it would push now, and push where they differ: over-advertised first. None when already running."""
    with reconcile_lock(account_id, ReconcileScope.STOCK) as acquired:
        if not acquired:
            return None
        account = ChannelAccount.objects.get(pk=account_id)
        run = _run_start(account, ReconcileScope.STOCK, trigger)
        own = connector is None
        connector = connector or connector_for(account)
        calls = _count_calls(connector)
        pacer = _Pacer(account)
        listings = list(
            Listing.objects.filter(account=account, is_active=True, sku__isnull=False)
            .order_by("sku_id", "pk")
            .only("pk", "sku_id", "channel_sku", "external_listing_id", "external_variant_id")
        )
        first_per_sku: dict[int, Listing] = {}
        for listing in listings:
            first_per_sku.setdefault(listing.sku_id, listing)  # the listing the push uses

        def body() -> None:
            batch_size = max(int(connector.stock_read_batch), 1)
            chosen = list(first_per_sku.values())
            over: list[tuple[Drift, ChannelAvailability, int]] = []
            under: list[tuple[Drift, ChannelAvailability, int]] = []
            for start in range(0, len(chosen), batch_size):
                pacer.wait()
                batch = chosen[start : start + batch_size]
                found = _stock_batch(account, connector, run, batch)
                over += [f for f in found if f[0].kind == DriftKind.OVER_ADVERTISED]
                under += [f for f in found if f[0].kind == DriftKind.UNDER_ADVERTISED]
                _run_save(run, calls, stage="reading", skus=len(chosen), read=min(start + batch_size, len(chosen)))
            # Over-advertising first: its push is queued (and sent) before the under-advertised one.
            for label, drifts in (("over", over), ("under", under)):
                _stock_push(account, run, label, drifts)

        try:
            with _leaving_budget(connector, run):
                completed = _guarded(run, account, body)
        finally:
            if own:
                connector.close()
        return _run_finish(run, calls, completed)


def _inventory_in_flight(account: ChannelAccount) -> set[int]:
    sku_ids: set[int] = set()
    for payload in OutboxMessage.objects.filter(
        account=account, kind=OutboxKind.INVENTORY, status__in=IN_FLIGHT
    ).values_list("payload", flat=True):
        sku_ids.update(int(s) for s in (payload or {}).get("sku_ids") or [])
    return sku_ids


def _stock_batch(
    account: ChannelAccount, connector: Connector, run: ReconcileRun, batch: list[Listing]
) -> list[tuple[Drift, ChannelAvailability, int]]:
    sku_ids = [listing.sku_id for listing in batch]
    channel_availability_recompute(sku_ids=sku_ids)  # "what we would push now" is current
    rows = {row.sku_id: row for row in ChannelAvailability.objects.filter(account=account, sku_id__in=sku_ids)}
    try:
        advertised = connector.read_stock(
            [listing.channel_sku for listing in batch],
            listings={
                listing.channel_sku: ListingIds(listing.external_listing_id, listing.external_variant_id)
                for listing in batch
            },
        )
    except PayloadError as exc:
        # A malformed answer heals nothing: the batch is skipped and the run says why.
        run.progress["quarantined"] = run.progress.get("quarantined", 0) + len(batch)
        run.progress["last_bad_answer"] = str(exc)[:500]
        return []
    busy = _inventory_in_flight(account)
    settled_before = timezone.now() - _settle_window()
    found: list[tuple[Drift, ChannelAvailability, int]] = []
    consistent: list[str] = []
    for listing in batch:
        row = rows.get(listing.sku_id)
        theirs = advertised.quantities.get(listing.channel_sku)
        if row is None or theirs is None:
            if row is not None:
                run.progress["not_listed"] = run.progress.get("not_listed", 0) + 1
            continue  # not advertised here, or not listed there (the push's listing-not-found case)
        run.compared += 1
        if theirs < 0:
            _oversold_at_channel(account, listing, theirs)
        if row.needs_push or row.sku_id in busy or (row.last_pushed_at and row.last_pushed_at > settled_before):
            continue  # a push is on its way, or too recent to show in the channel's reads
        if theirs == row.quantity:
            consistent.append(listing.channel_sku)
            continue
        kind = DriftKind.OVER_ADVERTISED if theirs > row.quantity else DriftKind.UNDER_ADVERTISED
        with transaction.atomic():
            drift, before = _drift_take(
                account,
                run,
                kind,
                listing.channel_sku,
                sku_id=listing.sku_id,
                theirs={"advertised": theirs},
                ours={"last_pushed": row.last_pushed_quantity, "would_push": row.quantity},
            )
        if before and drift.status == DriftStatus.UNHEALED:
            continue
        _count_found(run, drift, before)
        found.append((drift, row, theirs))
    with transaction.atomic():
        _settle_consistent(account, run, consistent, [DriftKind.OVER_ADVERTISED, DriftKind.UNDER_ADVERTISED])
    return found


def _oversold_at_channel(account: ChannelAccount, listing: Listing, theirs: int) -> None:
    """The channel reports a negative available quantity (Shopify lets it go below 0): it has sold more than
    it had. One OVERSELL case per account and SKU, refreshed while it stays negative."""
    order_services.exception_case_open(
        kind=ExceptionKind.OVERSELL,
        title=f"{account.name} oversold {listing.channel_sku}: {theirs} available there",
        detail=(
            f"{account.name} reports {theirs} available for {listing.channel_sku}: it sold {-theirs} more than it "
            "had. Find the orders it sold last for this SKU and ship them from another node, backorder them, or "
            "cancel those lines with reason NoInventory; the stock push corrects the channel's quantity."
        ),
        severity=Severity.HIGH,
        sku_id=listing.sku_id,
        account_id=account.pk,
        actor="system:reconcile",
    )


def _stock_push(
    account: ChannelAccount, run: ReconcileRun, label: str, drifts: list[tuple[Drift, ChannelAvailability, int]]
) -> None:
    """Record what the channel advertises as the last pushed quantity and queue one push of those SKUs."""
    if not drifts:
        return
    with transaction.atomic():
        channel_availabilities_observed(observed={row.pk: theirs for _, row, theirs in drifts})
        sku_ids = sorted(row.sku_id for _, row, _ in drifts)
        digest = hashlib.sha256(json.dumps(sku_ids).encode()).hexdigest()[:24]
        message, _ = outbox_enqueue(
            account_id=account.pk,
            kind=OutboxKind.INVENTORY,
            dedupe_key=f"{RESEND_PREFIX}run-{run.pk}:{label}:{digest}",
            payload={"sku_ids": sku_ids, "planned": {str(row.sku_id): row.quantity for _, row, _ in drifts}},
        )
        for drift, row, theirs in drifts:
            locked = Drift.objects.select_for_update().get(pk=drift.pk)
            _healed(
                locked,
                f"the channel advertised {theirs}, Waybill last pushed {row.last_pushed_quantity} and would push "
                f"{row.quantity}: pushed through the outbox (#{message.pk})",
                message=message,
            )
            run.healed += 1


# --- scheduling ---------------------------------------------------------------------------------


def reconciliations_due(*, now: datetime | None = None) -> list[int]:
    """Enabled accounts with a connector whose last reconciliation started an interval ago or never
    (WAYBILL_RECONCILE_INTERVAL_SECONDS, an hour)."""
    now = now or timezone.now()
    interval = timedelta(seconds=float(_setting("WAYBILL_RECONCILE_INTERVAL_SECONDS", 3600)))
    accounts = list(
        ChannelAccount.objects.filter(is_enabled=True, kind__in=list(CONNECTORS))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    recent = set(
        ReconcileRun.objects.filter(account_id__in=accounts, scope=ReconcileScope.ORDERS, started_at__gt=now - interval)
        .exclude(trigger="manual")
        .values_list("account_id", flat=True)
    )
    return [pk for pk in accounts if pk not in recent]


def reconcile_account(*, account_id: int, trigger: str = "schedule") -> dict[str, int | None]:
    """Both scopes of one account, orders first; {scope: run id or None when one was already running}."""
    orders = reconcile_orders_run(account_id=account_id, trigger=trigger)
    stock = reconcile_stock_run(account_id=account_id, trigger=trigger)
    return {"orders": orders.pk if orders else None, "stock": stock.pk if stock else None}


def drift_case_open_count(*, account_id: int) -> int:
    return (
        ExceptionCase.objects.filter(kind=ExceptionKind.RECONCILE_DRIFT, account_id=account_id)
        .exclude(status=CaseStatus.RESOLVED)
        .count()
    )
