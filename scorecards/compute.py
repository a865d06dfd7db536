"""Every active metric for every account and day, set-based in SQL (no Python loop over orders).

Read-only over other apps' tables (orders, fulfilment, the channel outbox, returns); the only writes are
scorecards' own tables: the per-order facts and the snapshots.

How it works:
1. ``facts`` (FACTS_SQL): one row per seller-fulfilled order with what every formula needs: ship-by,
   promise, the time the channel accepted the first ship confirmation (outbox ``sent_at``), the first carrier
   scan, delivery, who cancelled, refunds and seller-responsible returns. Side tables are aggregated per
   order, then joined once. ``facts_refresh`` stores them in scorecards_orderfact: all of them on a rebuild,
   then only the orders whose sources changed since the last refresh.
2. ``counts`` (COUNTS_SQL): one GROUP BY per basis day (order day, ship-by day, confirmation day, promise
   day) counts each formula's numerator and denominator per account and day, from the same predicates the
   drill-down uses (PREDICATES). "As of" applies here, so the stored facts serve any day.
3. ``cum`` (RECOMPUTE_SQL): running totals per account, formula and day over a dense day series; a window of
   N days ending on D is cum(D) - cum(D - N), so any window length costs the same. Each day takes the
   definition version in force (the newest active ``effective_from`` on or before it); the state is derived
   in SQL from its threshold, warning line and seller line, exactly as ``MetricDefinition.state_for``.

Days are UTC days. Marketplace-fulfilled orders never count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.utils import timezone

from scorecards.models import Formula

# Orders placed this long before the first window still reach it through a later basis day (a ship-by,
# a promise or a confirmation weeks after the order).
BASIS_LAG_DAYS = 30
# Side rows (confirmations, scans, shipments, refunds) may precede their order's placement by this much at most.
SIDE_SLACK_DAYS = 7
DEFAULT_DAYS = 90
REPORT_MAX_AGE_DAYS = 7
SELLER_RETURN_REASONS = ("damaged", "defective", "wrong_item", "not_as_described")

# basis: p = order placed day, s = ship-by day, c = confirmation accepted day, d = promise day
FORMULA_COLUMNS: dict[str, tuple[str, str, str]] = {
    Formula.SELLER_CANCEL: ("p", "seller_cancels", "placed"),
    Formula.REFUND: ("p", "refunded", "placed"),
    Formula.SELLER_REFUND: ("p", "seller_refunded", "placed"),
    Formula.ORDER_DEFECT_REPORT: ("p", "0", "placed"),
    Formula.LATE_CONFIRMATION: ("s", "late_confirmed", "confirmed"),
    Formula.ON_TIME_CONFIRMATION: ("s", "on_time_confirmed", "confirmed"),
    Formula.LATE_SCAN: ("s", "late_scanned", "confirmed"),
    Formula.TRACKING_UPLOADED: ("s", "tracking_uploaded", "confirmed"),
    Formula.LATE_DISPATCH: ("s", "late_dispatched", "dispatch_due"),
    Formula.VALID_TRACKING: ("c", "scanned", "confirmed"),
    Formula.ON_TIME_DELIVERY: ("d", "delivered_on_time_tracked", "delivery_due_tracked"),
    Formula.ON_TIME_DELIVERY_ORDERS: ("d", "delivered_on_time", "delivery_due"),
}
if set(FORMULA_COLUMNS) != set(Formula.values):
    raise ImportError("scorecards.compute: every Formula needs its columns")


# The SQL below is composed from this module's constants only; values always travel as parameters.
FACTS_SQL = f"""
orders AS (
    SELECT o.id, o.account_id, o.placed_at, o.ship_by, o.deliver_by, o.status, o.cancel_initiator
    FROM orders_order o
    WHERE o.account_id = ANY(%(accounts)s) AND NOT o.marketplace_fulfilled
      AND o.placed_at >= %(placed_from)s AND o.placed_at < %(as_of)s
      AND (%(all_orders)s OR o.id = ANY(%(order_ids)s))
),
confirmations AS (
    SELECT m.order_id, min(m.sent_at) AS confirmed_at
    FROM channels_outboxmessage m
    WHERE m.kind = 'ship_confirmation' AND m.status = 'sent' AND m.order_id IS NOT NULL
      AND m.account_id = ANY(%(accounts)s) AND m.sent_at >= %(side_from)s AND m.sent_at <= %(as_of)s
      AND (%(all_orders)s OR m.order_id = ANY(%(order_ids)s))
    GROUP BY m.order_id
),
first_scans AS (
    SELECT t.shipment_id, min(t.occurred_at) AS scan_at
    FROM fulfillment_trackingevent t
    WHERE t.status <> 'label_created' AND t.occurred_at >= %(side_from)s AND t.occurred_at <= %(as_of)s
      AND (%(all_orders)s
           OR t.shipment_id IN (SELECT s2.id FROM fulfillment_shipment s2 WHERE s2.order_id = ANY(%(order_ids)s)))
    GROUP BY t.shipment_id
),
shipments AS (
    SELECT s.order_id,
           COALESCE(bool_or(s.tracking_number <> '') FILTER (WHERE s.status <> 'cancelled' AND s.kind <> 'pickup'),
                    false) AS has_tracking,
           min(s.promised_delivery_at) FILTER (WHERE s.status <> 'cancelled' AND s.kind <> 'pickup') AS promised_at,
           CASE WHEN bool_and(s.delivered_at IS NOT NULL) FILTER (WHERE s.status <> 'cancelled' AND s.kind <> 'pickup')
                THEN max(s.delivered_at) FILTER (WHERE s.status <> 'cancelled' AND s.kind <> 'pickup') END
               AS delivered_at,
           min(fs.scan_at) AS scan_at
    FROM fulfillment_shipment s
    LEFT JOIN first_scans fs ON fs.shipment_id = s.id
    WHERE s.created_at >= %(side_from)s AND (%(all_orders)s OR s.order_id = ANY(%(order_ids)s))
    GROUP BY s.order_id
),
refunds AS (
    SELECT r.order_id, true AS refunded, bool_or(r.rma_id IS NULL) AS without_return
    FROM returns_refund r
    WHERE r.status <> 'failed' AND r.created_at >= %(side_from)s
      AND (%(all_orders)s OR r.order_id = ANY(%(order_ids)s))
    GROUP BY r.order_id
),
seller_returns AS (
    SELECT DISTINCT a.order_id
    FROM returns_returnauthorization a
    WHERE a.reason IN {SELLER_RETURN_REASONS!r} AND a.status NOT IN ('rejected', 'cancelled')
      AND a.created_at >= %(side_from)s AND (%(all_orders)s OR a.order_id = ANY(%(order_ids)s))
),
facts AS (
    SELECT o.id AS order_id, o.account_id, o.placed_at, o.ship_by, o.status, o.cancel_initiator,
           COALESCE(o.deliver_by, sh.promised_at) AS promise,
           c.confirmed_at, sh.scan_at, COALESCE(sh.has_tracking, false) AS has_tracking, sh.delivered_at,
           COALESCE(rf.refunded, false) AS refunded,
           (COALESCE(rf.without_return, false) OR sr.order_id IS NOT NULL) AS seller_refunded,
           (o.placed_at AT TIME ZONE 'UTC')::date AS pday,
           (o.ship_by AT TIME ZONE 'UTC')::date AS sday,
           (c.confirmed_at AT TIME ZONE 'UTC')::date AS cday,
           (COALESCE(o.deliver_by, sh.promised_at) AT TIME ZONE 'UTC')::date AS dday
    FROM orders o
    LEFT JOIN confirmations c ON c.order_id = o.id
    LEFT JOIN shipments sh ON sh.order_id = o.id
    LEFT JOIN refunds rf ON rf.order_id = o.id
    LEFT JOIN seller_returns sr ON sr.order_id = o.id
)"""

# The recompute reads the stored facts (scorecards_orderfact); "as of" applies here, so one set of facts
# serves any day: a first confirmation or scan after ``as_of`` is none yet.
STORED_FACTS_SQL = """
facts AS (
    SELECT f.order_id, f.account_id, f.placed_at, f.ship_by, f.status, f.cancel_initiator, f.promise,
           f.has_tracking, f.delivered_at, f.refunded, f.seller_refunded, f.pday, f.sday, f.cday, f.dday,
           CASE WHEN f.confirmed_at <= %(as_of)s THEN f.confirmed_at END AS confirmed_at,
           CASE WHEN f.scan_at <= %(as_of)s THEN f.scan_at END AS scan_at
    FROM scorecards_orderfact f
    WHERE f.account_id = ANY(%(accounts)s) AND f.placed_at >= %(placed_from)s AND f.placed_at < %(as_of)s
)"""

FACT_COLUMNS = (
    "order_id, account_id, placed_at, ship_by, promise, status, cancel_initiator, confirmed_at, scan_at, "
    "has_tracking, delivered_at, refunded, seller_refunded, pday, sday, cday, dday"
)
FACTS_UPSERT_SQL = f"""
WITH {FACTS_SQL.strip()}
INSERT INTO scorecards_orderfact ({FACT_COLUMNS}, refreshed_at)
SELECT {FACT_COLUMNS}, now() FROM facts
ON CONFLICT (order_id) DO UPDATE SET
    account_id = EXCLUDED.account_id, placed_at = EXCLUDED.placed_at, ship_by = EXCLUDED.ship_by,
    promise = EXCLUDED.promise, status = EXCLUDED.status, cancel_initiator = EXCLUDED.cancel_initiator,
    confirmed_at = EXCLUDED.confirmed_at, scan_at = EXCLUDED.scan_at, has_tracking = EXCLUDED.has_tracking,
    delivered_at = EXCLUDED.delivered_at, refunded = EXCLUDED.refunded, seller_refunded = EXCLUDED.seller_refunded,
    pday = EXCLUDED.pday, sday = EXCLUDED.sday, cday = EXCLUDED.cday, dday = EXCLUDED.dday,
    refreshed_at = EXCLUDED.refreshed_at
"""

# Orders any of whose facts' sources changed at or after %(since)s.
CHANGED_ORDERS_SQL = """
SELECT o.id FROM orders_order o WHERE o.updated_at >= %(since)s
UNION SELECT m.order_id FROM channels_outboxmessage m
      WHERE m.updated_at >= %(since)s AND m.kind = 'ship_confirmation' AND m.order_id IS NOT NULL
UNION SELECT s.order_id FROM fulfillment_shipment s WHERE s.updated_at >= %(since)s
UNION SELECT s.order_id FROM fulfillment_trackingevent t JOIN fulfillment_shipment s ON s.id = t.shipment_id
      WHERE t.received_at >= %(since)s
UNION SELECT r.order_id FROM returns_refund r WHERE r.created_at >= %(since)s
UNION SELECT a.order_id FROM returns_returnauthorization a WHERE a.updated_at >= %(since)s
"""

# Each formula's denominator and numerator as predicates over ``facts``: the daily counts and the drill-down
# are both generated from them (tests/scorecards check the two agree order by order).
BASIS_DAY = {"p": "pday", "s": "sday", "c": "cday", "d": "dday"}
PREDICATES: dict[str, tuple[str, str]] = {
    Formula.SELLER_CANCEL: ("true", "cancel_initiator = 'seller'"),
    Formula.REFUND: ("true", "refunded"),
    Formula.SELLER_REFUND: ("true", "seller_refunded"),
    Formula.ORDER_DEFECT_REPORT: ("true", "false"),
    Formula.LATE_CONFIRMATION: ("confirmed_at IS NOT NULL", "confirmed_at > ship_by"),
    Formula.ON_TIME_CONFIRMATION: ("confirmed_at IS NOT NULL", "confirmed_at <= ship_by"),
    Formula.LATE_SCAN: ("confirmed_at IS NOT NULL", "COALESCE(scan_at, confirmed_at) > ship_by"),
    Formula.TRACKING_UPLOADED: ("confirmed_at IS NOT NULL", "confirmed_at <= ship_by AND has_tracking"),
    Formula.LATE_DISPATCH: (
        "status <> 'cancelled' AND (ship_by < %(as_of)s OR scan_at IS NOT NULL)",
        "scan_at > ship_by OR (scan_at IS NULL AND ship_by < %(as_of)s)",
    ),
    Formula.VALID_TRACKING: ("confirmed_at IS NOT NULL", "scan_at IS NOT NULL"),
    Formula.ON_TIME_DELIVERY: (
        "confirmed_at IS NOT NULL AND has_tracking AND (delivered_at IS NOT NULL OR promise < %(as_of)s)",
        "delivered_at <= promise",
    ),
    Formula.ON_TIME_DELIVERY_ORDERS: (
        "confirmed_at IS NOT NULL AND (delivered_at IS NOT NULL OR promise < %(as_of)s)",
        "delivered_at <= promise",
    ),
}


def _counts_sql() -> str:
    """``counts``: (account, day, formula, numerator, denominator), one GROUP BY per basis day counting only
    its own formulas, over the stored facts (inlined in each). Plain GROUP BYs, unlike GROUPING SETS, run as
    parallel partial aggregates; a statement that writes cannot, so the counts are a SELECT of their own."""
    parts = []
    for basis, day in BASIS_DAY.items():
        formulas = [f for f, (b, _, _) in FORMULA_COLUMNS.items() if b == basis]
        dens = list(dict.fromkeys(PREDICATES[f][0] for f in formulas))
        aggregates = ",\n           ".join(
            [f"count(*) FILTER (WHERE {den}) AS d{i}" for i, den in enumerate(dens)]
            + [
                f"count(*) FILTER (WHERE ({PREDICATES[f][0]}) AND ({PREDICATES[f][1]})) AS n{i}"
                for i, f in enumerate(formulas)
            ]
        )
        values = ", ".join(f"('{f}', g.n{i}, g.d{dens.index(PREDICATES[f][0])})" for i, f in enumerate(formulas))
        parts.append(
            f"""    SELECT g.account_id, g.day, v.formula, v.num, v.den
    FROM (SELECT account_id, {day} AS day,
           {aggregates}
          FROM facts WHERE {day} BETWEEN %(series_from)s AND %(last_day)s GROUP BY account_id, {day}) g
    CROSS JOIN LATERAL (VALUES {values}) AS v(formula, num, den)"""
        )
    return "counts AS (\n" + "\n    UNION ALL\n".join(parts) + "\n)"


COUNTS_SQL = _counts_sql()


# When "as of" is now or later, no stored confirmation or scan is after it: the facts are read as stored
# (the CASE above would otherwise be evaluated again by every predicate that reads the column).
STORED_FACTS_NOW_SQL = STORED_FACTS_SQL.replace(
    "CASE WHEN f.confirmed_at <= %(as_of)s THEN f.confirmed_at END AS confirmed_at", "f.confirmed_at"
).replace("CASE WHEN f.scan_at <= %(as_of)s THEN f.scan_at END AS scan_at", "f.scan_at")

RECOMPUTE_SQL = f"""
WITH accounts AS (
    SELECT a.id AS account_id, a.kind FROM channels_channelaccount a WHERE a.id = ANY(%(accounts)s)
),
out_days AS (
    SELECT generate_series(%(first_day)s::date, %(last_day)s::date, interval '1 day')::date AS day
),
in_force AS (
    SELECT a.account_id, od.day, d.*
    FROM accounts a CROSS JOIN out_days od
    CROSS JOIN LATERAL (
        SELECT DISTINCT ON (md.code) md.id AS definition_id, md.code, md.formula, md.window_days, md.comparison,
               md.threshold, md.warning_threshold, md.seller_threshold
        FROM scorecards_metricdefinition md
        WHERE md.is_active AND md.channel_kind = a.kind AND md.effective_from <= od.day
        ORDER BY md.code, md.effective_from DESC, md.version DESC
    ) d
),
series AS (
    SELECT generate_series(%(series_from)s::date, %(last_day)s::date, interval '1 day')::date AS day
),
grid AS (
    SELECT f.account_id, f.formula, s.day
    FROM (SELECT DISTINCT account_id, formula FROM in_force) f CROSS JOIN series s
),
counts AS (
    SELECT * FROM unnest(%(c_account)s::bigint[], %(c_day)s::date[], %(c_formula)s::text[], %(c_num)s::bigint[],
                         %(c_den)s::bigint[]) AS c(account_id, day, formula, num, den)
),
cum AS (
    SELECT g.account_id, g.formula, g.day,
           sum(COALESCE(c.num, 0)) OVER w AS cnum, sum(COALESCE(c.den, 0)) OVER w AS cden
    FROM grid g LEFT JOIN counts c ON c.account_id = g.account_id AND c.formula = g.formula AND c.day = g.day
    WINDOW w AS (PARTITION BY g.account_id, g.formula ORDER BY g.day)
),
windowed AS (
    SELECT f.*, (hi.cnum - COALESCE(lo.cnum, 0))::int AS num, (hi.cden - COALESCE(lo.cden, 0))::int AS den
    FROM in_force f
    JOIN cum hi ON hi.account_id = f.account_id AND hi.formula = f.formula AND hi.day = f.day
    LEFT JOIN cum lo ON lo.account_id = f.account_id AND lo.formula = f.formula
                    AND lo.day = f.day - f.window_days
),
reported AS (
    SELECT w.account_id, w.code, w.day, w.definition_id, w.window_days, w.comparison, w.threshold,
           w.warning_threshold, w.seller_threshold,
           CASE WHEN w.formula = 'order_defect_report' THEN COALESCE(r.numerator, 0) ELSE w.num END AS num,
           CASE WHEN w.formula = 'order_defect_report' AND r.numerator IS NULL THEN 0 ELSE w.den END AS den
    FROM windowed w
    LEFT JOIN LATERAL (
        SELECT mm.numerator FROM scorecards_marketplacemetric mm
        WHERE w.formula = 'order_defect_report' AND mm.account_id = w.account_id
          AND mm.metric = 'orderDefectRate.mfn' AND mm.numerator IS NOT NULL
          AND (mm.reporting_to AT TIME ZONE 'UTC')::date <= w.day
          AND (mm.reporting_to AT TIME ZONE 'UTC')::date > w.day - {REPORT_MAX_AGE_DAYS}
        ORDER BY mm.reporting_to DESC, mm.id DESC LIMIT 1
    ) r ON true
),
valued AS (
    SELECT r.*, CASE WHEN r.den = 0 THEN NULL ELSE round(r.num::numeric / r.den, 6) END AS value
    FROM reported r
)
-- computed_at is the moment the numbers are as of: the drill-down reads the orders as of it too.
INSERT INTO scorecards_metricsnapshot
    (definition_id, account_id, code, day, computed_at, window_start, window_end,
     numerator, denominator, value, state)
SELECT v.definition_id, v.account_id, v.code, v.day, %(as_of)s,
       ((v.day - v.window_days + 1)::timestamp AT TIME ZONE 'UTC'),
       ((v.day + 1)::timestamp AT TIME ZONE 'UTC'),
       v.num, v.den, v.value,
       CASE
           WHEN v.den = 0 THEN 'no_data'
           WHEN (v.comparison = 'lt' AND v.value >= v.threshold) OR (v.comparison = 'lte' AND v.value > v.threshold)
             OR (v.comparison = 'gt' AND v.value <= v.threshold) OR (v.comparison = 'gte' AND v.value < v.threshold)
               THEN 'breach'
           WHEN (v.comparison IN ('lt', 'lte') AND (v.value > v.warning_threshold OR v.value > v.seller_threshold))
             OR (v.comparison IN ('gt', 'gte') AND (v.value < v.warning_threshold OR v.value < v.seller_threshold))
               THEN 'warning'
           ELSE 'ok'
       END
FROM valued v
ON CONFLICT ON CONSTRAINT metricsnapshot_one_per_account_code_day DO UPDATE SET
    definition_id = EXCLUDED.definition_id, computed_at = EXCLUDED.computed_at,
    window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end,
    numerator = EXCLUDED.numerator, denominator = EXCLUDED.denominator,
    value = EXCLUDED.value, state = EXCLUDED.state
"""


def drilldown_sql(formula: str, *, keep: str = "all") -> str:
    """Order ids in a formula's denominator for one account and window (params: accounts, as_of,
    placed_from, window_from, window_to), each with whether it counts in the numerator and the facts that
    decide it (confirmation accepted, first carrier scan, promise, delivered). ``keep``: "all",
    "numerator", or "not_numerator" (the failures of a higher-is-better metric)."""
    basis = BASIS_DAY[FORMULA_COLUMNS[formula][0]]
    den, num = PREDICATES[formula]
    extra = {"all": "", "numerator": f"AND ({num})", "not_numerator": f"AND ({num}) IS NOT TRUE"}[keep]
    return f"""
WITH {FACTS_SQL.strip()}
SELECT order_id, COALESCE(({num}), false) AS in_numerator, confirmed_at, scan_at, promise, delivered_at
FROM facts
WHERE {basis} BETWEEN %(window_from)s AND %(window_to)s AND ({den}) {extra}
ORDER BY order_id"""


@dataclass(frozen=True)
class RecomputeResult:
    accounts: int
    first_day: date
    last_day: date
    snapshots: int


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def max_window_days() -> int:
    from scorecards.models import MetricDefinition

    return max(MetricDefinition.objects.filter(is_active=True).values_list("window_days", flat=True), default=1)


def recompute_params(
    *, account_ids: list[int], first_day: date, last_day: date, as_of: datetime, full_history: bool = False
) -> dict:
    series_from = first_day - timedelta(days=max_window_days())
    placed_from = datetime(1970, 1, 1, tzinfo=UTC) if full_history else day_start(series_from)
    if not full_history:
        placed_from -= timedelta(days=BASIS_LAG_DAYS)
    return {
        "accounts": list(account_ids),
        "first_day": first_day,
        "last_day": last_day,
        "series_from": series_from,
        "placed_from": placed_from,
        "side_from": placed_from - timedelta(days=SIDE_SLACK_DAYS),
        "as_of": as_of,
    }


def counts_select_sql(as_of: datetime) -> str:
    facts = STORED_FACTS_NOW_SQL if as_of >= timezone.now() else STORED_FACTS_SQL
    facts = facts.strip().replace("facts AS (", "facts AS NOT MATERIALIZED (", 1)
    return f"WITH {facts},\n{COUNTS_SQL}\nSELECT account_id, day, formula, num, den FROM counts"


def snapshots_recompute_sql(params: dict) -> int:
    """Count every formula per account and day over the stored facts (``facts_refresh`` first), then write
    the snapshots in one statement; returns the snapshot rows written."""
    with transaction.atomic(), connection.cursor() as cursor:
        # The planner's row estimates are far too high for these aggregates and would make it JIT-compile
        # them: seconds of compilation for milliseconds of work.
        cursor.execute("SET LOCAL jit = off")
        # The per-order aggregates hash in memory instead of spilling to disk.
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute(counts_select_sql(params["as_of"]), params)
        rows = cursor.fetchall()
        columns = ("c_account", "c_day", "c_formula", "c_num", "c_den")
        arrays = {name: [row[i] for row in rows] for i, name in enumerate(columns)}
        # The running totals are looked up by (account, formula, day): hash joins, not merge joins that
        # re-sort millions of rescanned rows.
        cursor.execute("SET LOCAL enable_mergejoin = off")
        cursor.execute(RECOMPUTE_SQL, {**params, **arrays})
        return cursor.rowcount


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
# A change committed a little after its timestamp was taken is still seen by the next refresh.
FACTS_SLACK = timedelta(minutes=2)
FACTS_CHUNK = 20_000


def _facts_params(account_ids: list[int], order_ids: list[int] | None) -> dict:
    return {
        "accounts": account_ids,
        "placed_from": EPOCH,
        "side_from": EPOCH,
        "as_of": FAR_FUTURE,
        "all_orders": order_ids is None,
        "order_ids": list(order_ids or []),
    }


def facts_refresh(*, full: bool = False) -> int:
    """Bring scorecards_orderfact up to date: every seller-fulfilled order (``full``, or the first time), or
    the orders whose sources changed since the last refresh. Returns the facts written."""
    from channels.models import ChannelAccount
    from scorecards.models import FactsWatermark

    started = timezone.now()
    with transaction.atomic():
        mark, created = FactsWatermark.objects.select_for_update().get_or_create(
            name="order_facts", defaults={"changed_since": EPOCH}
        )
        accounts = list(ChannelAccount.objects.values_list("pk", flat=True))
        written = 0
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL work_mem = '256MB'")
            if full or created:
                cursor.execute(FACTS_UPSERT_SQL, _facts_params(accounts, None))
                written = cursor.rowcount
            else:
                cursor.execute(CHANGED_ORDERS_SQL, {"since": mark.changed_since - FACTS_SLACK})
                changed = sorted(row[0] for row in cursor.fetchall())
                for start in range(0, len(changed), FACTS_CHUNK):
                    cursor.execute(FACTS_UPSERT_SQL, _facts_params(accounts, changed[start : start + FACTS_CHUNK]))
                    written += cursor.rowcount
        mark.changed_since = started
        mark.save(update_fields=["changed_since"])
    return written


def fetch(sql: str, params: dict) -> tuple[list[str], list[tuple]]:
    """(column names, rows) of a read over the scorecards' facts, with JIT off (see snapshots_recompute_sql)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(sql, params)
        return [c.name for c in cursor.description], cursor.fetchall()
