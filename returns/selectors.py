"""Returns reads: the queue, one RMA with everything its page shows, and the return-reasons report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import (
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.functions import TruncWeek
from django.utils import timezone

from config.kernel import accounts
from orders.models import OrderLine
from returns.models import (
    Refund,
    ReturnAuthorization,
    ReturnEvent,
    ReturnLine,
    ReturnPolicy,
    ReturnReceipt,
    ReturnStatus,
    ReturnUnit,
)

AWAITING_RECEIPT = (ReturnStatus.REQUESTED, ReturnStatus.AUTHORIZED, ReturnStatus.IN_TRANSIT)
DEFAULT_OVERDUE_DAYS = 14


def rma_queue() -> QuerySet[ReturnAuthorization]:
    # The orders' accounts in one query per page (an order holds its account by id: config.kernel.accounts).
    return (
        ReturnAuthorization.objects.select_related("order", "return_location")
        .prefetch_related("order__account")
        .annotate(unit_count=Sum("lines__quantity"), received=Sum("lines__quantity_received"))
    )


def rma_queue_filtered(*, bucket: str = "", channel: str = "", query: str = "", now: datetime | None = None):
    """The queue: ``bucket`` awaiting_receipt, awaiting_inspection, overdue (awaiting receipt longer than the
    account's overdue_after_days, 14 by default), open, closed or all; ``channel`` a channel kind."""
    now = now or timezone.now()
    rows = rma_queue()
    if bucket == "awaiting_receipt":
        rows = rows.filter(status__in=AWAITING_RECEIPT)
    elif bucket == "awaiting_inspection":
        pending = ReturnUnit.objects.filter(disposition="pending", quantity_inspected__lt=F("quantity"))
        rows = rows.filter(Q(status=ReturnStatus.RECEIVED) | Q(pk__in=pending.values("line__rma_id")))
    elif bucket == "overdue":
        default_cut = now - timedelta(days=DEFAULT_OVERDUE_DAYS)
        policy = ReturnPolicy.objects.filter(account_id=OuterRef("order__account_id"))
        days = ExpressionWrapper(Value(timedelta(days=1)) * F("overdue_after_days"), output_field=DurationField())
        cut = ExpressionWrapper(Value(now) - days, output_field=DateTimeField())
        overdue_by_policy = policy.alias(cut=cut).filter(cut__gt=OuterRef("created_at"))
        rows = rows.filter(status__in=AWAITING_RECEIPT).filter(
            Q(~Exists(policy), created_at__lt=default_cut) | Q(Exists(overdue_by_policy))
        )
    elif bucket == "open":
        rows = rows.exclude(status__in=[ReturnStatus.COMPLETED, ReturnStatus.REJECTED, ReturnStatus.CANCELLED])
    elif bucket == "closed":
        rows = rows.filter(status__in=[ReturnStatus.COMPLETED, ReturnStatus.REJECTED, ReturnStatus.CANCELLED])
    if channel:
        rows = rows.filter(order__account_id__in=accounts.account_ids(kind=channel))
    if query:
        q = query.strip()
        rows = rows.filter(
            Q(rma_number__iexact=q)
            | Q(external_id=q)
            | Q(order__external_id=q)
            | Q(order__external_reference=q)
            | Q(return_tracking_number=q)
        )
    return rows.order_by("-created_at", "-id")


def queue_counts(now: datetime | None = None) -> dict[str, int]:
    return {
        bucket: rma_queue_filtered(bucket=bucket, now=now).count()
        for bucket in ("awaiting_receipt", "awaiting_inspection", "overdue")
    }


def rma_detail() -> QuerySet[ReturnAuthorization]:
    return ReturnAuthorization.objects.select_related(
        "order", "return_location", "exchange_order", "carrier"
    ).prefetch_related(
        "order__account",
        Prefetch("lines", queryset=ReturnLine.objects.select_related("order_line", "order_line__sku").order_by("pk")),
        Prefetch("events", queryset=ReturnEvent.objects.order_by("created_at", "pk")),
        Prefetch("receipts", queryset=ReturnReceipt.objects.select_related("location").order_by("pk")),
        Prefetch("refunds", queryset=Refund.objects.prefetch_related("lines").order_by("pk")),
    )


def rma_units(rma: ReturnAuthorization) -> QuerySet[ReturnUnit]:
    return ReturnUnit.objects.filter(line__rma=rma).select_related("location", "line__order_line").order_by("pk")


def returnable_lines(order_id: int) -> list[dict]:
    """An order's lines with what can still be returned (shipped minus returned or under return)."""
    from returns.services.lifecycle import line_units_held

    lines = list(OrderLine.objects.filter(order_id=order_id).select_related("sku").order_by("pk"))
    held = line_units_held([line.pk for line in lines])
    return [
        {"line": line, "held": held[line.pk], "returnable": max(line.quantity_shipped - held[line.pk], 0)}
        for line in lines
    ]


@dataclass
class ReasonsReport:
    by_sku: list[dict]
    by_reason: list[dict]
    by_channel: list[dict]
    weekly: list[dict]
    since: datetime


def return_reasons_report(*, days: int = 90, now: datetime | None = None) -> ReasonsReport:
    """Return rates over the last ``days``: units returned (on RMAs, not rejected or cancelled) per units
    shipped, by SKU, by reason and by channel, and returned units per week and channel."""
    now = now or timezone.now()
    since = now - timedelta(days=days)
    lines = ReturnLine.objects.filter(rma__created_at__gte=since).exclude(
        rma__status__in=[ReturnStatus.REJECTED, ReturnStatus.CANCELLED]
    )
    shipped = OrderLine.objects.filter(order__placed_at__gte=since, quantity_shipped__gt=0)
    shipped_by_sku = dict(shipped.values("sku__code").annotate(n=Sum("quantity_shipped")).values_list("sku__code", "n"))
    # By account in SQL, then by the accounts' kinds (an order holds its account by id: config.kernel.accounts).
    shipped_by_account = list(
        shipped.values("order__account_id").annotate(n=Sum("quantity_shipped")).values_list("order__account_id", "n")
    )
    returned_by_account = list(
        lines.values("rma__order__account_id").annotate(n=Sum("quantity")).values_list("rma__order__account_id", "n")
    )
    weekly_by_account = list(
        lines.annotate(week=TruncWeek("rma__created_at"))
        .values("week", "rma__order__account_id")
        .annotate(n=Sum("quantity"))
        .values_list("week", "rma__order__account_id", "n")
    )
    kind_of = {
        pk: acct.kind
        for pk, acct in accounts.accounts(
            [pk for pk, _ in shipped_by_account + returned_by_account] + [pk for _, pk, _ in weekly_by_account]
        ).items()
    }
    shipped_by_channel: dict[str | None, int] = {}
    for pk, n in shipped_by_account:
        shipped_by_channel[kind_of.get(pk)] = shipped_by_channel.get(kind_of.get(pk), 0) + n
    returned_by_channel: dict[str | None, int] = {}
    for pk, n in returned_by_account:
        returned_by_channel[kind_of.get(pk)] = returned_by_channel.get(kind_of.get(pk), 0) + n
    weekly_by_channel: dict[tuple, int] = {}
    for week, pk, n in weekly_by_account:
        weekly_by_channel[(week, kind_of.get(pk))] = weekly_by_channel.get((week, kind_of.get(pk)), 0) + n
    shipped_total = sum(shipped_by_channel.values())

    def rate(returned: int, out: int) -> float | None:
        return round(100.0 * returned / out, 2) if out else None

    by_sku = [
        {
            "sku": row["order_line__sku__code"] or row["order_line__channel_sku"],
            "returned": row["n"],
            "rmas": row["rmas"],
            "shipped": shipped_by_sku.get(row["order_line__sku__code"], 0),
            "rate": rate(row["n"], shipped_by_sku.get(row["order_line__sku__code"], 0)),
        }
        for row in lines.values("order_line__sku__code", "order_line__channel_sku")
        .annotate(n=Sum("quantity"), rmas=Count("rma", distinct=True))
        .order_by("-n")[:100]
    ]
    by_sku.sort(key=lambda row: (row["rate"] is None, -(row["rate"] or 0), -row["returned"]))
    by_reason = [
        {"reason": row["reason"] or "other", "returned": row["n"], "share": rate(row["n"], shipped_total)}
        for row in lines.values("reason").annotate(n=Sum("quantity")).order_by("-n")
    ]
    by_channel = [
        {
            "channel": kind,
            "returned": n,
            "shipped": shipped_by_channel.get(kind, 0),
            "rate": rate(n, shipped_by_channel.get(kind, 0)),
        }
        for kind, n in sorted(returned_by_channel.items(), key=lambda item: -item[1])
    ]
    weekly = [
        {"week": week, "channel": kind, "returned": n}
        for (week, kind), n in sorted(weekly_by_channel.items(), key=lambda item: (item[0][0], item[0][1] or ""))
    ]
    return ReasonsReport(by_sku=by_sku, by_reason=by_reason, by_channel=by_channel, weekly=weekly, since=since)
