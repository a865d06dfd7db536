"""Channel reads for the console: account health, sync runs, inbound events, the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from channels.models import ChannelAccount, InboundEvent, InboundStatus, OutboxMessage, OutboxStatus, SyncRun
from orders.models import Order


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
            )
        )
    return rows


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
