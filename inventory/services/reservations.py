"""Reservations: oversell-proof under concurrency, on PostgreSQL.

How stock is locked (DESIGN.md "Locks", LIMITS.md for the measured ratios):

* A call whose demand falls on ONE stock row (one SKU at one location, any number of lines) runs one
  guarded statement: ``WITH s AS (UPDATE stocklevel SET reserved = reserved + n WHERE … AND
  on_hand - reserved - safety_stock >= n RETURNING …) INSERT INTO reservation … SELECT … FROM s``.
  The availability check is in SQL, under the row lock the UPDATE takes, and the lock is held for
  that one statement (plus the commit). Outside a transaction it runs in autocommit, so the hot row
  is locked for the shortest span possible; `make bench` measures the service beside the raw shapes
  (tests/benchmarks/RESULTS.md, with the profile). The line check is an uncorrelated sub-select:
  PostgreSQL runs it once before the UPDATE reaches the row, so it is outside the lock. The statement
  is prepared per connection; Reservation carries no index that the reads don't need and one
  foreign key to the stock row itself (checked against the row already locked): each reservation is
  written while the hot row is locked.
  No row updated means short: a second, lock-free read says why.
* A call touching several stock rows (``stock_reserve_order``, and ``stock_reserve`` for that shape)
  is one statement too: a CTE sums demand per (sku, location), locks the stock rows
  ``ORDER BY id FOR UPDATE`` (the lock node sits above the sort: rows are locked in pk order, and a
  row changed by a concurrent commit is re-read at its newest version), decides in SQL whether
  EVERY row has ``on_hand - reserved - safety_stock >= demand`` and every line is for its SKU and
  seller-fulfilled, and only then updates the rows and inserts the reservations. A short row
  changes nothing, so no savepoint is needed; a second, lock-free read says why. Every caller
  locks in pk order, so two multi-SKU orders can't deadlock on stock rows, and two lines of one
  SKU can't both pass on the same units. ``stock_reserve_locked`` (select_for_update in pk order,
  check, ``F()``) remains for the partial shape backorder allocation needs and as the fallback
  when a race keeps the statement short while the explaining read finds enough.

Release and consume lock the reservation rows (pk order), then the stock rows (pk order), so a
reservation is released or consumed once. ``reserved`` == Σ active reservations at every commit.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

import psycopg
from django.db import connection, transaction
from django.db.models import F

from inventory.errors import InsufficientStock, ReservationError, Shortage, UnknownStockItem
from inventory.models import (
    Location,
    MovementReason,
    Reservation,
    ReservationStatus,
    Sku,
    StockBucket,
    StockLevel,
    StockMovement,
)
from inventory.services.common import (
    Actor,
    actor_resolve,
    ensure_known,
    lock_levels,
    positive_quantity,
    stats_refresh_when_grown,
    stock_changed_announce,
    stock_pairs_q,
)
from orders.models import Order, OrderLine


@dataclass(frozen=True)
class LineDemand:
    """One order line and how many units to reserve at each location: {location_id: quantity}."""

    order_line_id: int
    sku_id: int
    quantities: Mapping[int, int] = field(default_factory=dict)


def demands_flatten(lines: Sequence[LineDemand]) -> list[tuple[int, int, int, int]]:
    """The demands as [(order_line_id, sku_id, location_id, quantity)], each quantity checked positive; refuses
    no demands, or a line with no location quantities. The form demand_lines_check and stock_reserve_locked take."""
    if not lines:
        raise ReservationError("nothing to reserve")
    flat = []
    for line in lines:
        if not line.quantities:
            raise ReservationError(f"order line {line.order_line_id}: no location quantities")
        for location_id, quantity in line.quantities.items():
            positive_quantity(quantity, f"order line {line.order_line_id} quantity")
            flat.append((line.order_line_id, line.sku_id, location_id, quantity))
    return flat


def demand_lines_check(flat: Sequence[tuple[int, int, int, int]]) -> None:
    """Every line of flattened demands (demands_flatten) exists, is for the SKU it reserves, and is not
    marketplace-fulfilled (never reserved); refuses otherwise. Run it before stock_reserve_locked."""
    wanted = {(line_id, sku_id) for line_id, sku_id, _, _ in flat}
    line_ids = sorted({line_id for line_id, _ in wanted})
    found = {
        (pk, sku_id): mf
        for pk, sku_id, mf in OrderLine.objects.filter(pk__in=line_ids).values_list(
            "pk", "sku_id", "order__marketplace_fulfilled"
        )
    }
    bad = sorted(line_id for line_id, sku_id in wanted if (line_id, sku_id) not in found)
    if bad:
        raise ReservationError(f"order line(s) {bad} don't exist or are for another SKU")
    marketplace = sorted(line_id for (line_id, _), mf in found.items() if mf)
    if marketplace:
        raise ReservationError(f"order line(s) {marketplace} are marketplace-fulfilled: never reserved")


def stock_reserve(*, lines: Sequence[LineDemand], actor: Actor) -> list[Reservation]:
    """Reserve every line's quantities, all or nothing, in one transaction.

    Raises InsufficientStock naming each short (sku, location) with wanted and available.
    Call it once per order: several calls inside one outer transaction hold earlier rows' locks
    while taking later ones, which is exactly the lock-order hazard one call avoids.
    """
    actor_resolve(actor)
    flat = demands_flatten(lines)
    rows = {(sku_id, location_id) for _, sku_id, location_id, _ in flat}
    reservations = _reserve_one_row(flat) if len(rows) == 1 else _reserve_rows(flat)
    stock_changed_announce(sku_id for sku_id, _ in rows)
    return reservations


def stock_reserve_order(*, demands: Sequence[LineDemand], actor: Actor) -> list[Reservation]:
    """Reserve every (line, location, quantity) of one order in ONE statement, all or nothing, whatever
    the number of stock rows (see the module docstring). Raises InsufficientStock naming each short
    (sku, location) with wanted and available; ReservationError / UnknownStockItem for bad input.

    Inside the caller's transaction the stock rows stay locked to its commit; outside one the
    statement is atomic on its own.
    """
    actor_resolve(actor)
    flat = demands_flatten(demands)
    reservations = _reserve_rows(flat)
    stock_changed_announce({sku_id for _, sku_id, _, _ in flat})
    return reservations


# --- several stock rows (or any shape): one all-or-nothing statement ---------------------------------

_RESERVE_ROWS_SQL = """
WITH d AS (
    SELECT * FROM unnest(%(line_ids)s::bigint[], %(sku_ids)s::bigint[], %(location_ids)s::bigint[],
                         %(quantities)s::integer[])
           WITH ORDINALITY AS d(order_line_id, sku_id, location_id, quantity, n)
), need AS (
    SELECT sku_id, location_id, sum(quantity)::integer AS total FROM d GROUP BY sku_id, location_id
), locked AS (
    SELECT s.id, need.total, s.on_hand - s.reserved - s.safety_stock >= need.total AS fits
      FROM {stock} s JOIN need ON s.sku_id = need.sku_id AND s.location_id = need.location_id
     ORDER BY s.id
       FOR UPDATE OF s
), go AS (
    SELECT (SELECT count(*) FROM locked WHERE fits) = (SELECT count(*) FROM need)
       AND (SELECT count(*) FROM (SELECT DISTINCT order_line_id, sku_id FROM d) dl
              JOIN {line} ol ON ol.id = dl.order_line_id AND ol.sku_id = dl.sku_id
              JOIN {order} o ON o.id = ol.order_id AND NOT o.marketplace_fulfilled)
         = (SELECT count(*) FROM (SELECT DISTINCT order_line_id, sku_id FROM d) dl2) AS ok
), s AS (
    UPDATE {stock} st SET reserved = st.reserved + locked.total, updated_at = now()
      FROM locked, go
     WHERE st.id = locked.id AND go.ok
    RETURNING st.sku_id, st.location_id
)
INSERT INTO {reservation} (order_line_id, sku_id, location_id, quantity, status, created_at, updated_at)
SELECT d.order_line_id, d.sku_id, d.location_id, d.quantity, %(active)s, now(), now()
  FROM d JOIN s ON s.sku_id = d.sku_id AND s.location_id = d.location_id
 ORDER BY d.n
RETURNING id, order_line_id, sku_id, location_id, quantity, created_at
"""


def _reserve_rows(flat: list[tuple[int, int, int, int]]) -> list[Reservation]:
    params = {
        "line_ids": [line_id for line_id, _, _, _ in flat],
        "sku_ids": [sku_id for _, sku_id, _, _ in flat],
        "location_ids": [location_id for _, _, location_id, _ in flat],
        "quantities": [q for *_, q in flat],
        "active": ReservationStatus.ACTIVE,
    }
    sql = _sql(_RESERVE_ROWS_SQL)
    for _attempt in range(3):
        returned = _execute_hot(sql, params)
        if len(returned) == len(flat):
            stats_refresh_when_grown(Reservation, [row[0] for row in returned])
            return [
                Reservation(
                    pk=pk,
                    order_line_id=line_id,
                    sku_id=sku_id,
                    location_id=location_id,
                    quantity=quantity,
                    status=ReservationStatus.ACTIVE,
                    created_at=created_at,
                    updated_at=created_at,
                )
                for pk, line_id, sku_id, location_id, quantity, created_at in returned
            ]
        if returned:  # the statement's own gate makes this impossible: never leave half an order reserved
            raise ReservationError(f"reserved {len(returned)} of {len(flat)} demands: roll the transaction back")
        _raise_if_any_short(flat)
    # Still contended after three tries: take the row locks and decide under them.
    with transaction.atomic():
        reservations, _ = stock_reserve_locked(flat, all_or_nothing=True)
    return reservations


def _raise_if_any_short(flat: Sequence[tuple[int, int, int, int]]) -> None:
    """Why did the all-or-nothing statement reserve nothing? Raise the domain error; return to try again."""
    demand_lines_check(flat)
    demand: dict[tuple[int, int], int] = defaultdict(int)
    for _, sku_id, location_id, quantity in flat:
        demand[(sku_id, location_id)] += quantity
    levels = {
        (row["sku_id"], row["location_id"]): row
        for row in StockLevel.objects.filter(stock_pairs_q(demand)).values(
            "sku_id", "location_id", "on_hand", "reserved", "safety_stock", "sku__code", "location__code"
        )
    }
    unknown = demand.keys() - levels.keys()
    if unknown:
        ensure_known(sku_ids=[s for s, _ in unknown], location_ids=[loc for _, loc in unknown])
    shortages = []
    for pair, wanted in sorted(demand.items()):
        level = levels.get(pair)
        if level is None:
            shortages.append(_shortage(pair, wanted, 0, {}))
            continue
        available = max(level["on_hand"] - level["reserved"] - level["safety_stock"], 0)
        if available < wanted:
            shortages.append(Shortage(level["sku__code"], level["location__code"], wanted, available))
    if shortages:
        raise InsufficientStock(shortages)


# --- one stock row: one guarded statement ----------------------------------------------------------

_RESERVE_ONE_ROW_SQL = """
WITH v AS (
    SELECT * FROM unnest(%(line_ids)s::bigint[], %(quantities)s::integer[]) AS v(order_line_id, quantity)
), s AS (
    UPDATE {stock} SET reserved = reserved + %(total)s, updated_at = now()
     WHERE sku_id = %(sku_id)s AND location_id = %(location_id)s
       AND on_hand - reserved - safety_stock >= %(total)s
       AND (SELECT count(*) FROM {line} ol JOIN {order} o ON o.id = ol.order_id
             WHERE ol.id = ANY(%(distinct_line_ids)s::bigint[]) AND ol.sku_id = %(sku_id)s
               AND NOT o.marketplace_fulfilled) = %(distinct_count)s
    RETURNING sku_id, location_id
)
INSERT INTO {reservation} (order_line_id, sku_id, location_id, quantity, status, created_at, updated_at)
SELECT v.order_line_id, s.sku_id, s.location_id, v.quantity, %(active)s, now(), now() FROM s CROSS JOIN v
RETURNING {reservation_fields}
"""


_RESERVE_ONE_LINE_SQL = """
WITH s AS (
    UPDATE {stock} SET reserved = reserved + %(total)s, updated_at = now()
     WHERE sku_id = %(sku_id)s AND location_id = %(location_id)s
       AND on_hand - reserved - safety_stock >= %(total)s
       AND EXISTS (SELECT 1 FROM {line} ol JOIN {order} o ON o.id = ol.order_id
                    WHERE ol.id = %(line_id)s AND ol.sku_id = %(sku_id)s AND NOT o.marketplace_fulfilled)
    RETURNING sku_id, location_id
)
INSERT INTO {reservation} (order_line_id, sku_id, location_id, quantity, status, created_at, updated_at)
SELECT %(line_id)s, s.sku_id, s.location_id, %(total)s, %(active)s, now(), now() FROM s
RETURNING {reservation_fields}
"""


# The one-row statements return whole reservation rows, in this order (Reservation.from_db takes them).
_RESERVATION_FIELDS = [f.attname for f in Reservation._meta.concrete_fields]


@cache
def _sql(template: str) -> str:
    return template.format(
        stock=StockLevel._meta.db_table,
        line=OrderLine._meta.db_table,
        order=Order._meta.db_table,
        reservation=Reservation._meta.db_table,
        reservation_fields=", ".join(f.column for f in Reservation._meta.concrete_fields),
    )


def _reserve_one_row(flat: list[tuple[int, int, int, int]]) -> list[Reservation]:
    _, sku_id, location_id, _ = flat[0]
    total = sum(q for *_, q in flat)
    distinct = sorted({line_id for line_id, *_ in flat})
    params = {
        "line_id": flat[0][0],
        "line_ids": [line_id for line_id, *_ in flat],
        "quantities": [q for *_, q in flat],
        "total": total,
        "sku_id": sku_id,
        "location_id": location_id,
        "distinct_line_ids": distinct,
        "distinct_count": len(distinct),
        "active": ReservationStatus.ACTIVE,
    }
    # The common case, one line on one row, has a plainer statement: ~half the server time of unnest().
    sql = _sql(_RESERVE_ONE_LINE_SQL if len(flat) == 1 else _RESERVE_ONE_ROW_SQL)
    # Short on a stale read can turn available by the time we look why: try again, a few times.
    for _attempt in range(3):
        returned = _execute_hot(sql, params)
        if returned:
            # The statement returns every column in the model's field order: instances as loaded from the
            # database (Model.from_db), a third of the cost of keyword construction on this hot path.
            stats_refresh_when_grown(Reservation, [row[0] for row in returned])
            return [Reservation.from_db(connection.alias, _RESERVATION_FIELDS, row) for row in returned]
        _raise_if_short(flat, sku_id=sku_id, location_id=location_id, total=total)
    # Still contended after three tries: take the row lock and decide under it.
    with transaction.atomic():
        reservations, _ = stock_reserve_locked(flat, all_or_nothing=True)
    return reservations


# Only explicit prepare=True statements get prepared: Django's own queries use client-side binding.
_EXPLICIT_PREPARES_ONLY = 2**31 - 1


def _execute_hot(sql: str, params: dict) -> list[tuple]:
    """Run the hot statement on Django's connection, prepared, with a server-side-binding cursor.

    Outside a transaction this is autocommit: the statement is atomic on its own and the row lock
    lasts that one statement. Django turns psycopg's prepared statements off (prepare_threshold
    None); planning this statement costs the server more than running it, so it is prepared once
    per connection and reused.
    """
    connection.ensure_connection()
    raw = connection.connection
    cursor = _hot_cursor.__dict__.get("cursor")
    if cursor is None or cursor.connection is not raw or cursor.closed:
        if raw.prepare_threshold is None:
            raw.prepare_threshold = _EXPLICIT_PREPARES_ONLY
        # One cursor per connection, kept: a cursor's construction costs as much as its execute here.
        cursor = _hot_cursor.cursor = psycopg.Cursor(raw)
    with connection.wrap_database_errors:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchall()


# This thread's hot-statement cursor (Django's connections are per thread too); replaced with the connection.
_hot_cursor = threading.local()


def _raise_if_short(flat, *, sku_id: int, location_id: int, total: int) -> None:
    """Why did the guarded statement update nothing? Raise the domain error; return to try again."""
    demand_lines_check(flat)
    level = (
        StockLevel.objects.filter(sku_id=sku_id, location_id=location_id)
        .values("on_hand", "reserved", "safety_stock", "sku__code", "location__code")
        .first()
    )
    if level is None:
        ensure_known(sku_ids=[sku_id], location_ids=[location_id])
        sku_code = Sku.objects.values_list("code", flat=True).get(pk=sku_id)
        location_code = Location.objects.values_list("code", flat=True).get(pk=location_id)
        raise InsufficientStock([Shortage(sku_code, location_code, total, 0)])
    available = max(level["on_hand"] - level["reserved"] - level["safety_stock"], 0)
    if available < total:
        raise InsufficientStock([Shortage(level["sku__code"], level["location__code"], total, available)])


# --- several stock rows: lock in pk order, check, update --------------------------------------------


def stock_reserve_locked(
    flat: Sequence[tuple[int, int, int, int]], *, all_or_nothing: bool
) -> tuple[list[Reservation], list[int]]:
    """Reserve flattened demands (demands_flatten, checked by demand_lines_check): lock the stock rows in pk
    order, then reserve. all_or_nothing: raise on any shortage; otherwise reserve the lines that fit in the
    order given (each line all or nothing) and return the short line ids. Returns (reservations, short line
    ids). Must run inside a transaction; the caller announces the stock change and records its own event."""
    pairs = {(sku_id, location_id) for _, sku_id, location_id, _ in flat}
    levels = lock_levels(pairs, create=False)
    unknown = pairs - levels.keys()
    if unknown:
        ensure_known(sku_ids=[s for s, _ in unknown], location_ids=[loc for _, loc in unknown])
    remaining = {pair: max(lv.on_hand - lv.reserved - lv.safety_stock, 0) for pair, lv in levels.items()}
    for pair in unknown:
        remaining[pair] = 0

    by_line: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for line_id, sku_id, location_id, quantity in flat:
        by_line[line_id].append((sku_id, location_id, quantity))

    if all_or_nothing:
        demand: dict[tuple[int, int], int] = defaultdict(int)
        for _, sku_id, location_id, quantity in flat:
            demand[(sku_id, location_id)] += quantity
        shortages = [
            _shortage(pair, wanted, remaining[pair], levels)
            for pair, wanted in sorted(demand.items())
            if wanted > remaining[pair]
        ]
        if shortages:
            raise InsufficientStock(shortages)
        accepted = list(by_line)
        short: list[int] = []
    else:
        accepted, short = [], []
        for line_id, parts in by_line.items():
            need: dict[tuple[int, int], int] = defaultdict(int)
            for sku_id, location_id, quantity in parts:
                need[(sku_id, location_id)] += quantity
            if all(q <= remaining[pair] for pair, q in need.items()):
                for pair, q in need.items():
                    remaining[pair] -= q
                accepted.append(line_id)
            else:
                short.append(line_id)

    increments: dict[tuple[int, int], int] = defaultdict(int)
    reservations = []
    for line_id in accepted:
        for sku_id, location_id, quantity in by_line[line_id]:
            increments[(sku_id, location_id)] += quantity
            reservations.append(
                Reservation(order_line_id=line_id, sku_id=sku_id, location_id=location_id, quantity=quantity)
            )
    for pair in sorted(increments, key=lambda p: levels[p].pk):
        StockLevel.objects.filter(pk=levels[pair].pk).update(reserved=F("reserved") + increments[pair])
    created = Reservation.objects.bulk_create(reservations)
    stats_refresh_when_grown(Reservation, [r.pk for r in created])
    return created, short


def _shortage(pair: tuple[int, int], wanted: int, available: int, levels: dict) -> Shortage:
    level = levels.get(pair)
    if level is not None:
        return Shortage(level.sku.code, level.location.code, wanted, available)
    sku_id, location_id = pair
    return Shortage(
        Sku.objects.values_list("code", flat=True).get(pk=sku_id),
        Location.objects.values_list("code", flat=True).get(pk=location_id),
        wanted,
        available,
    )


# --- release and consume --------------------------------------------------------------------------


def _lock_reservations(*, reservation_ids: Sequence[int] | None, order_line_ids: Sequence[int] | None):
    if (reservation_ids is None) == (order_line_ids is None):
        raise ReservationError("pass reservation ids or order line ids, not both")
    qs = Reservation.objects.select_for_update().filter(status=ReservationStatus.ACTIVE)
    if reservation_ids is not None:
        ids = list(reservation_ids)
        known = set(Reservation.objects.filter(pk__in=ids).values_list("pk", flat=True))
        if missing := sorted(set(ids) - known):
            raise UnknownStockItem(f"unknown reservation id(s) {missing}")
        qs = qs.filter(pk__in=ids)
    else:
        qs = qs.filter(order_line_id__in=list(order_line_ids))
    return list(qs.order_by("pk"))


def stock_release(
    *,
    actor: Actor,
    reservation_ids: Sequence[int] | None = None,
    order_line_ids: Sequence[int] | None = None,
) -> list[Reservation]:
    """Release active reservations (by id, or every active one of some order lines).

    Idempotent: reservations no longer active are left alone. Returns those released now.
    """
    actor_resolve(actor)
    with transaction.atomic():
        reservations = _lock_reservations(reservation_ids=reservation_ids, order_line_ids=order_line_ids)
        if not reservations:
            return []
        totals: dict[tuple[int, int], int] = defaultdict(int)
        for r in reservations:
            totals[(r.sku_id, r.location_id)] += r.quantity
        levels = lock_levels(totals, create=False)
        for pair in sorted(totals, key=lambda p: levels[p].pk):
            StockLevel.objects.filter(pk=levels[pair].pk).update(reserved=F("reserved") - totals[pair])
        Reservation.objects.filter(pk__in=[r.pk for r in reservations]).update(status=ReservationStatus.RELEASED)
        for r in reservations:
            r.status = ReservationStatus.RELEASED
    stock_changed_announce(sku_id for sku_id, _ in totals)
    return reservations


def stock_consume(
    *,
    actor: Actor,
    reservation_ids: Sequence[int],
    quantities: Mapping[int, int] | None = None,
    reference: str = "",
) -> list[StockMovement]:
    """Ship reserved units: reserved and on_hand both go down, one SHIP movement per reservation.

    ``quantities`` ({reservation_id: units}) ships part of a reservation: the rest stays active.
    Consuming a reservation that is no longer active changes nothing (a replayed ship confirmation).
    """
    name, user = actor_resolve(actor)
    quantities = dict(quantities or {})
    for reservation_id, quantity in quantities.items():
        positive_quantity(quantity, f"reservation {reservation_id} quantity")
    with transaction.atomic():
        reservations = _lock_reservations(reservation_ids=reservation_ids, order_line_ids=None)
        if not reservations:
            return []
        totals: dict[tuple[int, int], int] = defaultdict(int)
        shipped: list[tuple[Reservation, int]] = []
        for r in reservations:
            q = quantities.get(r.pk, r.quantity)
            if q > r.quantity:
                raise ReservationError(f"reservation {r.pk} holds {r.quantity}, cannot ship {q}")
            totals[(r.sku_id, r.location_id)] += q
            shipped.append((r, q))
        levels = lock_levels(totals, create=False)
        balances = {pair: levels[pair].on_hand for pair in totals}
        for pair in sorted(totals, key=lambda p: levels[p].pk):
            StockLevel.objects.filter(pk=levels[pair].pk).update(
                reserved=F("reserved") - totals[pair], on_hand=F("on_hand") - totals[pair]
            )
        movements, splits = [], []
        for r, q in shipped:
            pair = (r.sku_id, r.location_id)
            balances[pair] -= q
            movements.append(
                StockMovement(
                    sku_id=r.sku_id,
                    location_id=r.location_id,
                    delta=-q,
                    bucket=StockBucket.SELLABLE,
                    reason=MovementReason.SHIP,
                    reference=(reference or f"reservation:{r.pk}")[:128],
                    actor=name,
                    actor_user=user,
                    balance_after=balances[pair],
                )
            )
            if q == r.quantity:
                r.status = ReservationStatus.CONSUMED
                r.save(update_fields=["status", "updated_at"])
            else:
                # Part shipped: the active row keeps the rest, a consumed row records what left.
                r.quantity -= q
                r.save(update_fields=["quantity", "updated_at"])
                splits.append(
                    Reservation(
                        order_line_id=r.order_line_id,
                        sku_id=r.sku_id,
                        location_id=r.location_id,
                        quantity=q,
                        status=ReservationStatus.CONSUMED,
                    )
                )
        Reservation.objects.bulk_create(splits)
        created = StockMovement.objects.bulk_create(movements)
    stock_changed_announce(sku_id for sku_id, _ in totals)
    return created
