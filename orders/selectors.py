"""Order reads: querysets with their joins done, for the console and the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Min, Prefetch, Q, QuerySet
from django.utils import timezone

from config.kernel import accounts
from orders.models import (
    CaseStatus,
    ExceptionCase,
    ExceptionKind,
    Hold,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
)

PRE_SHIP_STATUSES = (
    OrderStatus.PENDING,
    OrderStatus.OPEN,
    OrderStatus.BACKORDERED,
    OrderStatus.ALLOCATED,
    OrderStatus.RELEASED,
)


def order_list() -> QuerySet[Order]:
    # Two queries per page: the orders, then the page's accounts in one (config.kernel.accounts); nothing per row.
    return Order.objects.prefetch_related("account").only(
        "id",
        "external_id",
        "external_reference",
        "status",
        "channel_status",
        "marketplace_fulfilled",
        "placed_at",
        "ship_by",
        "currency",
        "total_amount",
        "customer_name",
        "on_hold",
        "account_id",
    )


def order_detail() -> QuerySet[Order]:
    return Order.objects.select_related("ship_to", "pickup_location").prefetch_related(
        "account",
        Prefetch("lines", queryset=OrderLine.objects.select_related("sku").order_by("id")),
        Prefetch("holds", queryset=Hold.objects.order_by("-placed_at")),
        Prefetch("events", queryset=OrderEvent.objects.order_by("-created_at", "-id")),
        Prefetch(
            "exception_cases",
            queryset=ExceptionCase.objects.select_related("owner").order_by("status", "-created_at"),
        ),
        # Fulfilment's reverse relations, by name only: orders never imports fulfillment.
        "routing_decisions",
        "shipments__location",
        "shipments__lines__order_line",
    )


def exception_cases_by_urgency(*, include_resolved: bool = False) -> QuerySet[ExceptionCase]:
    """Cases with their sort keys ``urgency_at`` (the due time, else the order's ship-by) and ``impact`` (0 for a
    kind that costs a scorecard metric, then by severity): the queue sorts by time left, then impact, read in
    order from the partial index ``exceptioncase_urgency`` (both keys are columns kept by the database)."""
    # The account is held by id (a page that shows it fetches its accounts in one call: config.kernel.accounts).
    qs = ExceptionCase.objects.select_related("order", "owner", "sku")
    if not include_resolved:
        qs = qs.exclude(status=CaseStatus.RESOLVED)
    return qs


# What a row of the queue's page shows (orders.rows.case_rows): 50 narrow rows, not every column of five tables.
QUEUE_ROW_FIELDS = (
    "id",
    "kind",
    "severity",
    "status",
    "title",
    "detail",
    "dedupe_key",
    "due_at",
    "created_at",
    "urgency_at",
    "impact",
    "order_id",
    "account_id",
    "sku_id",
    "owner_id",
    "order__id",
    "order__external_id",
    "order__external_reference",
    "order__ship_by",
    "owner__id",
    "owner__username",
)


def exception_case_queue_rows(*, include_resolved: bool = False) -> QuerySet[ExceptionCase]:
    """The queue's page: cases by urgency with only what a row shows (the order and the owner joined)."""
    return (
        exception_cases_by_urgency(include_resolved=include_resolved)
        .select_related(None)
        .select_related("order", "owner")
        .only(*QUEUE_ROW_FIELDS)
    )


def exception_case_queue() -> QuerySet[ExceptionCase]:
    return exception_cases_by_urgency().order_by("urgency_at", "impact", "id")


@dataclass(frozen=True)
class CaseGroup:
    kind: str
    kind_label: str
    count: int
    cause: str
    params: dict
    oldest: datetime | None
    due: datetime | None

    @property
    def label(self) -> str:
        return f"{self.count} case{'s' if self.count != 1 else ''}: {self.kind_label.lower()}, {self.cause}"


def exception_case_groups(*, min_size: int = 2, limit: int = 20) -> list[CaseGroup]:
    """Open cases of one root cause, biggest first: one SKU ("all for SKU WB-1041"), one unmapped
    channel SKU on one account, or one account (sync, outbox). Each names the filter that selects it."""
    labels = dict(ExceptionKind.choices)
    open_cases = ExceptionCase.objects.exclude(status=CaseStatus.RESOLVED)
    groups: list[CaseGroup] = []
    for row in (
        open_cases.filter(sku__isnull=False)
        .values("kind", "sku_id", "sku__code")
        .annotate(n=Count("id"), oldest=Min("created_at"), due=Min("due_at"))
        .filter(n__gte=min_size)
        .order_by("-n")[:limit]
    ):
        groups.append(
            CaseGroup(
                kind=row["kind"],
                kind_label=labels.get(row["kind"], row["kind"]),
                count=row["n"],
                cause=f"all for SKU {row['sku__code']}",
                params={"kind": row["kind"], "sku": row["sku_id"]},
                oldest=row["oldest"],
                due=row["due"],
            )
        )
    by_channel_sku = list(
        open_cases.filter(kind=ExceptionKind.UNMAPPED_SKU, order__lines__sku__isnull=True)
        .values("account_id", "order__lines__channel_sku")
        .annotate(n=Count("id", distinct=True), oldest=Min("created_at"), due=Min("due_at"))
        .filter(n__gte=min_size)
        .order_by("-n")[:limit]
    )
    by_account = list(
        open_cases.filter(sku__isnull=True, account_id__isnull=False)
        .exclude(kind=ExceptionKind.UNMAPPED_SKU)
        .values("kind", "account_id")
        .annotate(n=Count("id"), oldest=Min("created_at"), due=Min("due_at"))
        .filter(n__gte=min_size)
        .order_by("-n")[:limit]
    )
    # The accounts' names in one query (the account is held by id: config.kernel.accounts).
    found = accounts.accounts(row["account_id"] for row in by_channel_sku + by_account)
    for row in by_channel_sku + by_account:
        acct = found.get(row["account_id"])
        row["account__name"] = acct.name if acct is not None else None
    for row in by_channel_sku:
        groups.append(
            CaseGroup(
                kind=ExceptionKind.UNMAPPED_SKU,
                kind_label=labels[ExceptionKind.UNMAPPED_SKU],
                count=row["n"],
                cause=f"all for channel SKU {row['order__lines__channel_sku']} on {row['account__name']}",
                params={
                    "kind": ExceptionKind.UNMAPPED_SKU,
                    "account": row["account_id"],
                    "channel_sku": row["order__lines__channel_sku"],
                },
                oldest=row["oldest"],
                due=row["due"],
            )
        )
    for row in by_account:
        groups.append(
            CaseGroup(
                kind=row["kind"],
                kind_label=labels.get(row["kind"], row["kind"]),
                count=row["n"],
                cause=f"all on {row['account__name']}",
                params={"kind": row["kind"], "account": row["account_id"]},
                oldest=row["oldest"],
                due=row["due"],
            )
        )
    groups.sort(key=lambda g: -g.count)
    return groups[:limit]


@dataclass
class OrdersDashboard:
    now: datetime
    today_by_channel: list[dict]
    today_total: int
    due_today: int
    shipped_of_due_today: int
    at_risk: int
    late: int
    on_hold: int
    exceptions_by_kind: list[dict]
    exceptions_open: int


def orders_dashboard(*, now: datetime | None = None, risk_hours: int = 4) -> OrdersDashboard:
    """The dashboard's order tiles, a fixed number of grouped queries (indexed on placed_at and ship_by)."""
    now = now or timezone.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = today + timedelta(days=1)
    # By account in SQL, then by the accounts' kinds (one query for the accounts: config.kernel.accounts).
    by_account = list(
        Order.objects.filter(placed_at__gte=today, placed_at__lt=tomorrow)
        .values("account_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    found = accounts.accounts(row["account_id"] for row in by_account)
    per_kind: dict[str | None, int] = {}
    for row in by_account:
        acct = found.get(row["account_id"])
        kind = acct.kind if acct is not None else None
        per_kind[kind] = per_kind.get(kind, 0) + row["n"]
    by_channel = [{"account__kind": kind, "n": n} for kind, n in sorted(per_kind.items(), key=lambda item: -item[1])]
    due = Order.objects.filter(ship_by__gte=today, ship_by__lt=tomorrow).aggregate(
        total=Count("id", filter=~Q(status=OrderStatus.CANCELLED)),
        shipped=Count(
            "id",
            filter=Q(
                status__in=[
                    OrderStatus.SHIPPED,
                    OrderStatus.DELIVERED,
                    OrderStatus.PARTIALLY_SHIPPED,
                    OrderStatus.RETURNED,
                ]
            ),
        ),
    )
    risk = Order.objects.filter(status__in=PRE_SHIP_STATUSES, ship_by__lt=now + timedelta(hours=risk_hours)).aggregate(
        at_risk=Count("id", filter=Q(ship_by__gte=now)), late=Count("id", filter=Q(ship_by__lt=now))
    )
    on_hold = Order.objects.filter(on_hold=True, status__in=PRE_SHIP_STATUSES).count()
    labels = dict(ExceptionKind.choices)
    kinds = []
    for row in (
        ExceptionCase.objects.exclude(status=CaseStatus.RESOLVED)
        .values("kind")
        .annotate(
            n=Count("id"),
            under_1h=Count("id", filter=Q(created_at__gte=now - timedelta(hours=1))),
            under_24h=Count(
                "id", filter=Q(created_at__lt=now - timedelta(hours=1), created_at__gte=now - timedelta(hours=24))
            ),
            older=Count("id", filter=Q(created_at__lt=now - timedelta(hours=24))),
            unassigned=Count("id", filter=Q(owner__isnull=True)),
        )
        .order_by("-n")
    ):
        row["label"] = labels.get(row["kind"], row["kind"])
        kinds.append(row)
    return OrdersDashboard(
        now=now,
        today_by_channel=by_channel,
        today_total=sum(r["n"] for r in by_channel),
        due_today=due["total"],
        shipped_of_due_today=due["shipped"],
        at_risk=risk["at_risk"],
        late=risk["late"],
        on_hold=on_hold,
        exceptions_by_kind=kinds,
        exceptions_open=sum(r["n"] for r in kinds),
    )
