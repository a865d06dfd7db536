"""Scorecards reads: tiles, one account's scorecard with its trends, the orders behind a metric, revenue
leakage and manual touches. Read-only SQL over other apps' tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import QuerySet
from django.utils import timezone

from channels.models import ChannelAccount
from orders.models import Order
from scorecards import compute
from scorecards.models import (
    AccountHealthReport,
    BackfillRun,
    MarketplaceMetric,
    MetricDefinition,
    MetricSnapshot,
    MetricState,
    ReportStatus,
)
from scorecards.projection import order_scorecard_impact, projections

__all__ = [
    "account_health_due",
    "account_scorecard",
    "backfill_latest",
    "definitions_in_force",
    "manual_touches",
    "metric_order_facts",
    "metric_orders",
    "order_scorecard_impact",
    "revenue_leakage",
    "scorecard_tiles",
    "snapshot_list",
]

STATE_RANK = {MetricState.BREACH: 3, MetricState.WARNING: 2, MetricState.OK: 1, MetricState.NO_DATA: 0}
TREND_DAYS = 90


def snapshot_list() -> QuerySet[MetricSnapshot]:
    return MetricSnapshot.objects.select_related("account", "definition").order_by("-day", "account_id", "code")


def definitions_in_force(kind: str, day: date) -> list[MetricDefinition]:
    """The active version of each metric in force on ``day`` (newest effective_from, then version)."""
    chosen: dict[str, MetricDefinition] = {}
    for definition in MetricDefinition.objects.filter(
        channel_kind=kind, is_active=True, effective_from__lte=day
    ).order_by("code", "effective_from", "version"):
        chosen[definition.code] = definition
    return sorted(chosen.values(), key=lambda d: d.name)


@dataclass
class Tile:
    account: ChannelAccount
    day: date
    metrics: list[MetricSnapshot]
    state: str
    at_risk: int = 0

    @property
    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in MetricState.values}
        for snapshot in self.metrics:
            out[snapshot.state] += 1
        return out


def scorecard_tiles(*, day: date | None = None) -> list[Tile]:
    """One tile per account: today's metrics and the worst state. Two queries."""
    day = day or compute.utc_day(timezone.now())
    snaps = MetricSnapshot.objects.filter(day=day).select_related("definition").order_by("account_id", "code")
    by_account: dict[int, list[MetricSnapshot]] = {}
    for snapshot in snaps:
        by_account.setdefault(snapshot.account_id, []).append(snapshot)
    tiles = []
    for account in ChannelAccount.objects.order_by("name"):
        metrics = by_account.get(account.pk, [])
        worst = max((s.state for s in metrics), key=lambda s: STATE_RANK[s], default=MetricState.NO_DATA)
        tiles.append(Tile(account=account, day=day, metrics=metrics, state=worst))
    return tiles


@dataclass
class MetricRow:
    definition: MetricDefinition
    snapshot: MetricSnapshot | None
    trend: list[MetricSnapshot]
    theirs: MarketplaceMetric | None = None
    projection: object | None = None
    # The scorecard's day: the trend's last day.
    day: date | None = None

    @property
    def state(self) -> str:
        return self.snapshot.state if self.snapshot else MetricState.NO_DATA


@dataclass
class AccountScorecard:
    account: ChannelAccount
    day: date
    rows: list[MetricRow] = field(default_factory=list)
    report_fetched_at: datetime | None = None


def account_scorecard(
    *, account: ChannelAccount, day: date | None = None, with_projection: bool = True
) -> AccountScorecard:
    day = day or compute.utc_day(timezone.now())
    definitions = definitions_in_force(account.kind, day)
    first = day - timedelta(days=TREND_DAYS - 1)
    trend: dict[str, list[MetricSnapshot]] = {}
    for snapshot in MetricSnapshot.objects.filter(account=account, day__range=(first, day)).order_by("code", "day"):
        trend.setdefault(snapshot.code, []).append(snapshot)
    theirs: dict[str, MarketplaceMetric] = {}
    for metric in (
        MarketplaceMetric.objects.filter(account=account).select_related("report").order_by("reporting_to", "id")
    ):
        theirs[metric.metric] = metric
    projected = {}
    if with_projection:
        projected = {p.definition.code: p for p in projections(account_ids=[account.pk])}
    card = AccountScorecard(account=account, day=day)
    for definition in definitions:
        series = trend.get(definition.code, [])
        today = series[-1] if series and series[-1].day == day else None
        card.rows.append(
            MetricRow(
                definition=definition,
                snapshot=today,
                trend=series,
                theirs=theirs.get(definition.marketplace_metric) if definition.marketplace_metric else None,
                projection=projected.get(definition.code),
                day=day,
            )
        )
    if theirs:
        card.report_fetched_at = max(m.report.fetched_at or m.report.requested_at for m in theirs.values())
    return card


@dataclass(frozen=True)
class MetricOrderFacts:
    """Why one order counts as it does in a metric: the times the formulas compare (UTC)."""

    in_numerator: bool
    confirmed_at: datetime | None  # the channel accepted the first ship confirmation
    scan_at: datetime | None  # the first carrier scan
    promise: datetime | None  # the delivery promise (the channel's estimated date, else the shipment's)
    delivered_at: datetime | None


def metric_orders(
    *,
    account: ChannelAccount,
    definition: MetricDefinition,
    day: date,
    keep: str | None = None,
    as_of: datetime | None = None,
) -> tuple[QuerySet[Order], dict[int, bool]]:
    """The orders behind a metric on a day (see ``metric_order_facts``). Returns (orders, {order id: in
    numerator})."""
    orders, facts = metric_order_facts(account=account, definition=definition, day=day, keep=keep, as_of=as_of)
    return orders, {pk: f.in_numerator for pk, f in facts.items()}


def metric_order_facts(
    *,
    account: ChannelAccount,
    definition: MetricDefinition,
    day: date,
    keep: str | None = None,
    as_of: datetime | None = None,
) -> tuple[QuerySet[Order], dict[int, MetricOrderFacts]]:
    """The orders behind a metric on a day: by default the ones that hurt it (the numerator of a
    lower-is-better metric, the misses of a higher-is-better one). Returns (orders, {order id: its facts}).

    Read as of the moment the day's snapshot was computed (its ``computed_at``), so the orders are the ones
    its numbers counted (a backfilled past day counts what was known at the backfill); with no snapshot, as
    of the end of the day (or now)."""
    if keep is None:
        keep = "numerator" if definition.lower_is_better else "not_numerator"
    if as_of is None:
        as_of = (
            MetricSnapshot.objects.filter(account=account, code=definition.code, day=day)
            .values_list("computed_at", flat=True)
            .first()
        )
    as_of = as_of or min(timezone.now(), compute.day_start(day + timedelta(days=1)))
    window_from = day - timedelta(days=definition.window_days - 1)
    params = {
        "accounts": [account.pk],
        "as_of": as_of,
        "placed_from": compute.day_start(window_from) - timedelta(days=compute.BASIS_LAG_DAYS),
        "side_from": compute.day_start(window_from) - timedelta(days=compute.BASIS_LAG_DAYS + compute.SIDE_SLACK_DAYS),
        "window_from": window_from,
        "window_to": day,
        "all_orders": True,
        "order_ids": [],
    }
    _, fetched = compute.fetch(compute.drilldown_sql(definition.formula, keep=keep), params)
    facts = {row[0]: MetricOrderFacts(*row[1:]) for row in fetched}
    orders = Order.objects.filter(pk__in=list(facts)).prefetch_related("account").order_by("ship_by", "pk")
    return orders, facts


def backfill_latest() -> BackfillRun | None:
    return BackfillRun.objects.order_by("-started_at", "-pk").first()


# Amazon's Account Health is fetched once a day per account; a failed (or abandoned) attempt is tried again
# after an hour. The beat asks every few minutes, so a new account or a fresh demo gets its report soon.
ACCOUNT_HEALTH_EVERY = timedelta(hours=24)
ACCOUNT_HEALTH_RETRY = timedelta(hours=1)


def account_health_due(*, now: datetime | None = None) -> list[ChannelAccount]:
    """Enabled Amazon accounts whose Account Health report is due: never requested, the last one fetched a
    day ago or more, or the last attempt failed (or never finished) an hour ago or more."""
    now = now or timezone.now()
    accounts = list(ChannelAccount.objects.filter(kind="amazon", is_enabled=True).order_by("pk"))
    latest: dict[int, AccountHealthReport] = {}
    for report in (
        AccountHealthReport.objects.filter(account__in=accounts)
        .order_by("account_id", "-requested_at", "-pk")
        .distinct("account_id")
    ):
        latest[report.account_id] = report
    due = []
    for account in accounts:
        last = latest.get(account.pk)
        wait = ACCOUNT_HEALTH_EVERY if last is not None and last.status == ReportStatus.DONE else ACCOUNT_HEALTH_RETRY
        if last is None or last.requested_at <= now - wait:
            due.append(account)
    return due


# --- revenue leakage --------------------------------------------------------------------------------------

LEAKAGE_SQL = """
WITH orders AS (
    SELECT o.id, o.account_id, o.ship_by, o.cancel_initiator, o.currency,
           date_trunc('month', o.placed_at AT TIME ZONE 'UTC')::date AS month
    FROM orders_order o
    WHERE o.account_id = ANY(%(accounts)s) AND NOT o.marketplace_fulfilled
      AND o.placed_at >= %(since)s AND o.placed_at < %(until)s
),
lines AS (
    SELECT l.order_id, sum(l.quantity * l.unit_price) AS gross,
           sum(l.quantity_cancelled * l.unit_price) AS cancelled_value,
           sum(l.quantity_returned * l.unit_price) AS returned_value
    FROM orders_orderline l WHERE l.order_id IN (SELECT id FROM orders)
    GROUP BY l.order_id
),
confirmations AS (
    SELECT m.order_id, min(m.sent_at) AS confirmed_at FROM channels_outboxmessage m
    WHERE m.kind = 'ship_confirmation' AND m.status = 'sent' AND m.order_id IN (SELECT id FROM orders)
    GROUP BY m.order_id
),
refunds AS (
    SELECT r.order_id, sum(r.amount) AS refunded FROM returns_refund r
    WHERE r.status <> 'failed' AND r.order_id IN (SELECT id FROM orders)
    GROUP BY r.order_id
)
SELECT o.account_id, o.month, o.currency,
       count(*) AS orders,
       COALESCE(sum(l.gross), 0) AS gross,
       count(*) FILTER (WHERE o.cancel_initiator = 'seller' AND l.cancelled_value > 0) AS oversold_orders,
       COALESCE(sum(l.cancelled_value) FILTER (WHERE o.cancel_initiator = 'seller'), 0) AS oversold,
       count(*) FILTER (WHERE c.confirmed_at > o.ship_by) AS late_orders,
       COALESCE(sum(l.gross - l.cancelled_value) FILTER (WHERE c.confirmed_at > o.ship_by), 0) AS late,
       count(*) FILTER (WHERE r.refunded IS NOT NULL) AS refunded_orders,
       COALESCE(sum(r.refunded), 0) AS refunded,
       COALESCE(sum(l.returned_value) FILTER (WHERE r.refunded IS NULL), 0) AS returned
FROM orders o
LEFT JOIN lines l ON l.order_id = o.id
LEFT JOIN confirmations c ON c.order_id = o.id
LEFT JOIN refunds r ON r.order_id = o.id
GROUP BY o.account_id, o.month, o.currency
ORDER BY o.account_id, o.month, o.currency
"""


@dataclass
class LeakageMonth:
    account_id: int
    month: date
    currency: str
    orders: int
    gross: Decimal
    oversold_orders: int
    oversold: Decimal
    late_orders: int
    late: Decimal
    refunded_orders: int
    refunded: Decimal
    returned: Decimal

    @property
    def total(self) -> Decimal:
        return self.oversold + self.late + self.refunded + self.returned

    @property
    def share(self) -> Decimal | None:
        return (self.total / self.gross).quantize(Decimal("0.0001")) if self.gross else None


def revenue_leakage(*, account_ids: list[int], months: int = 3, now: datetime | None = None) -> list[LeakageMonth]:
    """Per account and month (of order placement), in money: seller cancels for stock (oversells, the
    cancelled units' value), late shipments (the value of orders whose confirmation was accepted after the
    ship-by), refunds (what was refunded) and returns without a refund (the returned units' value).
    Marketplace-fulfilled orders are excluded."""
    now = now or timezone.now()
    start = compute.utc_day(now).replace(day=1)
    for _ in range(months - 1):
        start = (start - timedelta(days=1)).replace(day=1)
    params = {"accounts": list(account_ids), "since": compute.day_start(start), "until": now}
    columns, rows = compute.fetch(LEAKAGE_SQL, params)
    return [LeakageMonth(**dict(zip(columns, row, strict=True))) for row in rows]


# --- manual touches ---------------------------------------------------------------------------------------

# The order events a person makes that count as manual touches, and the cause each is reported under.
MANUAL_CAUSES = {
    "hold_placed": "hold",
    "hold_released": "hold",
    "rerouted": "reroute",
    "stock_allocated": "stock override",
    "backorder_allocated": "stock override",
    "address_changed": "address edit",
}
MANUAL_TOUCH_LIMIT = 2  # more than this before ship confirmation is a systemic failure (CHANNELS.md)

TOUCHES_SQL = """
WITH orders AS (
    SELECT o.id, o.account_id, date_trunc('week', o.placed_at AT TIME ZONE 'UTC')::date AS week
    FROM orders_order o
    WHERE o.account_id = ANY(%(accounts)s) AND o.placed_at >= %(since)s
),
confirmations AS (
    SELECT m.order_id, min(m.sent_at) AS confirmed_at FROM channels_outboxmessage m
    WHERE m.kind = 'ship_confirmation' AND m.status = 'sent' AND m.order_id IN (SELECT id FROM orders)
    GROUP BY m.order_id
),
touches AS (
    SELECT e.order_id, e.kind, count(*) AS n
    FROM orders_orderevent e
    LEFT JOIN confirmations c ON c.order_id = e.order_id
    WHERE e.order_id IN (SELECT id FROM orders) AND e.actor_user_id IS NOT NULL AND e.kind = ANY(%(kinds)s)
      AND (c.confirmed_at IS NULL OR e.created_at < c.confirmed_at)
    GROUP BY e.order_id, e.kind
)
SELECT o.account_id, o.week, t.order_id, t.kind, t.n
FROM touches t JOIN orders o ON o.id = t.order_id
ORDER BY o.account_id, o.week, t.order_id, t.kind
"""


@dataclass
class TouchWeek:
    account_id: int
    week: date
    orders_touched: int = 0
    touches: int = 0
    flagged_orders: list[int] = field(default_factory=list)
    causes: dict[str, int] = field(default_factory=dict)

    @property
    def top_cause(self) -> str:
        if not self.causes:
            return ""
        return max(sorted(self.causes), key=lambda c: self.causes[c])


def manual_touches(*, account_ids: list[int], weeks: int = 8, now: datetime | None = None) -> list[TouchWeek]:
    """Per account and week (of order placement): orders a person touched before their ship confirmation
    (holds placed or released, reroutes, stock overrides, address edits), the orders with more than
    MANUAL_TOUCH_LIMIT touches, and the most frequent cause among those flagged orders (among all touched
    orders when none is flagged)."""
    now = now or timezone.now()
    since = compute.day_start(compute.utc_day(now) - timedelta(weeks=weeks))
    _, rows = compute.fetch(TOUCHES_SQL, {"accounts": list(account_ids), "since": since, "kinds": list(MANUAL_CAUSES)})
    per_order: dict[tuple[int, date, int], dict[str, int]] = {}
    for account_id, week, order_id, kind, n in rows:
        causes = per_order.setdefault((account_id, week, order_id), {})
        cause = MANUAL_CAUSES[kind]
        causes[cause] = causes.get(cause, 0) + n
    weeks_out: dict[tuple[int, date], TouchWeek] = {}
    all_causes: dict[tuple[int, date], dict[str, int]] = {}
    for (account_id, week, order_id), causes in per_order.items():
        tw = weeks_out.setdefault((account_id, week), TouchWeek(account_id=account_id, week=week))
        total = sum(causes.values())
        tw.orders_touched += 1
        tw.touches += total
        bucket = all_causes.setdefault((account_id, week), {})
        for cause, n in causes.items():
            bucket[cause] = bucket.get(cause, 0) + n
        if total > MANUAL_TOUCH_LIMIT:
            tw.flagged_orders.append(order_id)
            for cause, n in causes.items():
                tw.causes[cause] = tw.causes.get(cause, 0) + n
    for key, tw in weeks_out.items():
        if not tw.flagged_orders:
            tw.causes = all_causes[key]
        tw.flagged_orders.sort()
    return sorted(weeks_out.values(), key=lambda t: (t.account_id, t.week))
