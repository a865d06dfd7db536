"""Channel reads for the console: account health, sync runs, inbound events, the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from channels.models import (
    ChannelAccount,
    Drift,
    DriftKind,
    DriftStatus,
    InboundEvent,
    InboundKind,
    InboundStatus,
    OutboxMessage,
    OutboxStatus,
    ReconcileRun,
    ReconcileScope,
    SyncRun,
    SyncStatus,
)
from config.kernel.trends import daily_found_healed
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, Order


@dataclass
class AccountHealth:
    account: ChannelAccount
    last_run: SyncRun | None
    lag_seconds: float | None
    error_rate: float | None
    events_24h: int
    orders_today: int
    failed_events: int
    outbox_due: int
    outbox_parked: int
    # From the last finished run: failed runs in a row, and when a backing-off account is tried again.
    consecutive_failures: int = 0
    next_attempt_at: datetime | None = None


def account_health(*, now: datetime | None = None) -> list[AccountHealth]:
    """One row per account; a fixed number of grouped queries whatever the number of accounts."""
    now = now or timezone.now()
    accounts = list(ChannelAccount.objects.order_by("kind", "name"))
    since = now - timedelta(hours=24)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    events = {
        row["account_id"]: row
        for row in InboundEvent.objects.filter(received_at__gte=since)
        .values("account_id")
        .annotate(total=Count("id"), failed=Count("id", filter=Q(status=InboundStatus.FAILED)))
    }
    failed_all = dict(
        InboundEvent.objects.filter(status=InboundStatus.FAILED)
        .values("account_id")
        .annotate(n=Count("id"))
        .values_list("account_id", "n")
    )
    orders_today = dict(
        Order.objects.filter(placed_at__gte=today)
        .values("account_id")
        .annotate(n=Count("id"))
        .values_list("account_id", "n")
    )
    outbox = {
        row["account_id"]: row
        for row in OutboxMessage.objects.filter(
            status__in=[OutboxStatus.PENDING, OutboxStatus.FAILED, OutboxStatus.SENDING, OutboxStatus.PARKED]
        )
        .values("account_id")
        .annotate(
            due=Count("id", filter=~Q(status=OutboxStatus.PARKED)),
            parked=Count("id", filter=Q(status=OutboxStatus.PARKED)),
        )
    }
    last_runs = {
        run.account_id: run for run in SyncRun.objects.order_by("account_id", "-started_at").distinct("account_id")
    }
    finished_runs = {
        run.account_id: run
        for run in SyncRun.objects.exclude(status=SyncStatus.RUNNING)
        .order_by("account_id", "-started_at", "-pk")
        .distinct("account_id")
        .only("pk", "account_id", "progress", "started_at")
    }
    rows = []
    for account in accounts:
        stats = events.get(account.pk, {"total": 0, "failed": 0})
        lag = (now - account.sync_cursor).total_seconds() if account.sync_cursor else None
        rows.append(
            AccountHealth(
                account=account,
                last_run=last_runs.get(account.pk),
                lag_seconds=max(lag, 0.0) if lag is not None else None,
                error_rate=(stats["failed"] / stats["total"]) if stats["total"] else None,
                events_24h=stats["total"],
                orders_today=orders_today.get(account.pk, 0),
                failed_events=failed_all.get(account.pk, 0),
                outbox_due=outbox.get(account.pk, {}).get("due", 0),
                outbox_parked=outbox.get(account.pk, {}).get("parked", 0),
                **sync_backoff_state(finished_runs.get(account.pk), now=now),
            )
        )
    return rows


def sync_backoff_state(run: SyncRun | None, *, now: datetime | None = None) -> dict:
    """{consecutive_failures, next_attempt_at} from an account's last finished run (next_attempt_at only
    while the account is still backing off)."""
    progress = (run.progress if run else None) or {}
    failures = int(progress.get("consecutive_failures") or 0)
    until = None
    if failures and progress.get("next_attempt_at"):
        try:
            until = datetime.fromisoformat(progress["next_attempt_at"])
        except (TypeError, ValueError):
            until = None
    if until is not None and until <= (now or timezone.now()):
        until = None
    return {"consecutive_failures": failures, "next_attempt_at": until}


@dataclass
class AccountPage:
    account: ChannelAccount
    last_run: SyncRun | None
    consecutive_failures: int
    next_attempt_at: datetime | None
    runs: list[SyncRun]
    attention: list[OutboxMessage]
    failed_events: list[InboundEvent]
    listing_cases: list[ExceptionCase]
    sync_cases: list[ExceptionCase]


def account_page(*, account: ChannelAccount, limit: int = 50) -> AccountPage:
    """What one account's page shows: sync state and backoff, recent runs, parked and failing outbox
    messages, failed inbound events, open listing-not-found and sync-failure cases."""
    runs = list(SyncRun.objects.filter(account=account).select_related("account").order_by("-started_at", "-pk")[:10])
    finished = next((run for run in runs if run.status != SyncStatus.RUNNING), None)
    if finished is None:
        finished = (
            SyncRun.objects.filter(account=account)
            .exclude(status=SyncStatus.RUNNING)
            .order_by("-started_at", "-pk")
            .first()
        )
    cases = (
        ExceptionCase.objects.filter(
            account_id=account.pk, kind__in=[ExceptionKind.LISTING_NOT_FOUND, ExceptionKind.SYNC_FAILURE]
        )
        .exclude(status=CaseStatus.RESOLVED)
        .select_related("sku")
        .order_by("-created_at", "-pk")
    )
    cases = list(cases[: limit * 2])
    return AccountPage(
        account=account,
        last_run=runs[0] if runs else None,
        runs=runs,
        attention=list(
            outbox_list(account_id=account.pk).filter(status__in=[OutboxStatus.PARKED, OutboxStatus.FAILED])[:limit]
        ),
        failed_events=list(inbound_event_list(status=InboundStatus.FAILED, account_id=account.pk)[:limit]),
        listing_cases=[case for case in cases if case.kind == ExceptionKind.LISTING_NOT_FOUND][:limit],
        sync_cases=[case for case in cases if case.kind == ExceptionKind.SYNC_FAILURE],
        **sync_backoff_state(finished),
    )


def sync_run_list(*, account_id: int | None = None) -> QuerySet[SyncRun]:
    runs = SyncRun.objects.select_related("account").order_by("-started_at", "-pk")
    return runs.filter(account_id=account_id) if account_id else runs


def inbound_event_list(
    *, status: str | None = InboundStatus.FAILED, account_id: int | None = None
) -> QuerySet[InboundEvent]:
    events = InboundEvent.objects.select_related("account").defer("payload").order_by("-pk")
    if status:
        events = events.filter(status=status)
    return events.filter(account_id=account_id) if account_id else events


def outbox_list(*, status: str | None = None, account_id: int | None = None) -> QuerySet[OutboxMessage]:
    messages = OutboxMessage.objects.select_related("account").order_by("-pk")
    if status:
        messages = messages.filter(status=status)
    return messages.filter(account_id=account_id) if account_id else messages


RETRY_BACKOFF_CAP = timedelta(hours=1)


def inbound_retry_due_at(event: InboundEvent, interval_seconds: int) -> datetime | None:
    """When a failed order event may be read again: at once after its first failure, then after the
    account's interval, doubling with each attempt, at most an hour."""
    if event.processed_at is None or event.attempts <= 1:
        return event.processed_at
    delay = min(timedelta(seconds=interval_seconds * 2 ** (event.attempts - 2)), RETRY_BACKOFF_CAP)
    return event.processed_at + delay


def inbound_orders_to_retry(
    *, account: ChannelAccount, limit: int = 25, tried_before: datetime | None = None, now: datetime | None = None
) -> list[InboundEvent]:
    """The newest failed event of each order (with a channel id, not discarded) that is due for another
    read, least recently tried first; ``tried_before``: only events last tried before then (not the ones
    the current run has just read)."""
    now = now or timezone.now()
    failed = InboundEvent.objects.filter(account=account, kind=InboundKind.ORDER, status=InboundStatus.FAILED)
    if tried_before is not None:
        failed = failed.filter(Q(processed_at__isnull=True) | Q(processed_at__lt=tried_before))
    newest = list(
        failed.exclude(external_id="")
        .select_related("account")
        .defer("payload")
        .order_by("external_id", "-pk")
        .distinct("external_id")
    )
    due = [event for event in newest if (inbound_retry_due_at(event, account.sync_interval_seconds) or now) <= now]
    due.sort(key=lambda event: (event.processed_at or event.received_at, event.pk))
    return due[:limit]


# --- reconciliation (channels/reconcile.py) ---------------------------------------------------------


@dataclass
class ReconcileSummary:
    account: ChannelAccount
    orders_run: ReconcileRun | None
    stock_run: ReconcileRun | None
    unsettled: int


def reconcile_overview() -> list[ReconcileSummary]:
    """Every account with its last run of each scope and its drifts waiting for a person; a fixed number of
    queries whatever the number of accounts."""
    accounts = list(ChannelAccount.objects.order_by("kind", "name"))
    last = {
        (run.account_id, run.scope): run
        for run in ReconcileRun.objects.order_by("account_id", "scope", "-started_at", "-pk").distinct(
            "account_id", "scope"
        )
    }
    unsettled = dict(
        Drift.objects.filter(status__in=[DriftStatus.OPEN, DriftStatus.UNHEALED])
        .values("account_id")
        .annotate(n=Count("id"))
        .values_list("account_id", "n")
    )
    return [
        ReconcileSummary(
            account=account,
            orders_run=last.get((account.pk, ReconcileScope.ORDERS)),
            stock_run=last.get((account.pk, ReconcileScope.STOCK)),
            unsettled=unsettled.get(account.pk, 0),
        )
        for account in accounts
    ]


@dataclass
class ReconcilePage:
    runs: list[ReconcileRun]
    live: bool
    by_kind: list[dict]
    trend: list[dict]
    unsettled: list[Drift]
    recent: list[Drift]


def reconcile_page(*, account: ChannelAccount, days: int = 14, now: datetime | None = None) -> ReconcilePage:
    """One account's reconciliation: recent runs, drift found and healed by kind (within ``days``), found and
    healed per day (the trend), the drifts waiting for a person and the latest ones."""
    now = now or timezone.now()
    since = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    runs = list(ReconcileRun.objects.filter(account=account).order_by("-started_at", "-pk")[:20])
    window = Drift.objects.filter(account=account, found_at__gte=since)
    by_kind = list(
        window.values("kind")
        .annotate(
            found=Count("id"),
            healed=Count("id", filter=Q(status=DriftStatus.HEALED)),
            unhealed=Count("id", filter=Q(status=DriftStatus.UNHEALED)),
            cleared=Count("id", filter=Q(status=DriftStatus.CLEARED)),
        )
        .order_by("kind")
    )
    labels = dict(DriftKind.choices)
    for row in by_kind:
        row["label"] = labels.get(row["kind"], row["kind"])
    trend = daily_found_healed(
        window, day_field="found_at", healed=Q(status=DriftStatus.HEALED), since=since, days=days
    )
    related = Drift.objects.select_related("order", "sku", "case", "outbox_message", "run")
    return ReconcilePage(
        runs=runs,
        live=any(run.status == SyncStatus.RUNNING for run in runs),
        by_kind=by_kind,
        trend=trend,
        unsettled=list(
            related.filter(account=account, status__in=[DriftStatus.OPEN, DriftStatus.UNHEALED]).order_by("-found_at")[
                :200
            ]
        ),
        recent=list(related.filter(account=account).order_by("-found_at", "-pk")[:50]),
    )


# --- end of reconciliation ---------------------------------------------------------------------------
def outbox_oldest_due_by_account() -> dict[int, datetime]:
    """For the push lag: each account's oldest message not sent yet (pending, sending or failed)."""
    return dict(
        OutboxMessage.objects.filter(status__in=[OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.FAILED])
        .values("account_id")
        .annotate(oldest=Min("created_at"))
        .values_list("account_id", "oldest")
    )
