"""Helpers shared by the inventory services: actors, quantity checks, stock-row locks, announcing stock changes."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from django.db import connection, transaction
from django.db.models import Model, Q

from config.kernel.actors import Actor, actor_resolve
from inventory.errors import InvalidQuantity, UnknownStockItem
from inventory.models import Location, Sku, StockLevel
from inventory.signals import stock_changed

__all__ = [
    "Actor",
    "actor_resolve",
    "lock_levels",
    "positive_quantity",
    "stats_refresh_when_grown",
    "stock_changed_announce",
    "stock_pairs_q",
]


def positive_quantity(value: object, what: str = "quantity") -> int:
    # bool is an int subclass: True must not reserve one unit.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidQuantity(f"{what} must be a whole number, got {value!r}")
    if value <= 0:
        raise InvalidQuantity(f"{what} must be positive, got {value}")
    return value


def stock_pairs_q(pairs: Iterable[tuple[int, int]]) -> Q:
    """A filter for the StockLevel rows of these (sku_id, location_id) pairs; no pairs match nothing."""
    q = Q(pk__in=[])
    for sku_id, location_id in pairs:
        q |= Q(sku_id=sku_id, location_id=location_id)
    return q


def ensure_known(*, sku_ids: Iterable[int], location_ids: Iterable[int]) -> None:
    sku_ids, location_ids = set(sku_ids), set(location_ids)
    missing_skus = sku_ids - set(Sku.objects.filter(pk__in=list(sku_ids)).values_list("pk", flat=True))
    missing_locations = location_ids - set(
        Location.objects.filter(pk__in=list(location_ids)).values_list("pk", flat=True)
    )
    problems = []
    if missing_skus:
        problems.append(f"unknown SKU id(s) {sorted(missing_skus)}")
    if missing_locations:
        problems.append(f"unknown location id(s) {sorted(missing_locations)}")
    if problems:
        raise UnknownStockItem("; ".join(problems))


def lock_levels(pairs: Iterable[tuple[int, int]], *, create: bool) -> dict[tuple[int, int], StockLevel]:
    """Lock the stock rows of ``pairs`` (sku_id, location_id) in pk order; with ``create``, make missing ones.

    Must run inside a transaction. The queryset is evaluated here: a lazy locked queryset takes no lock.
    Missing rows are inserted with ON CONFLICT DO NOTHING first, so two creators never collide.
    """
    pairs = sorted(set(pairs))
    if not pairs:
        return {}
    if create:
        present = set(StockLevel.objects.filter(stock_pairs_q(pairs)).values_list("sku_id", "location_id"))
        missing = [p for p in pairs if p not in present]
        if missing:
            ensure_known(sku_ids=[s for s, _ in missing], location_ids=[loc for _, loc in missing])
            safety = dict(Sku.objects.filter(pk__in=[s for s, _ in missing]).values_list("pk", "safety_stock"))
            StockLevel.objects.bulk_create(
                [StockLevel(sku_id=s, location_id=loc, safety_stock=safety[s]) for s, loc in missing],
                ignore_conflicts=True,
            )
    rows = list(
        StockLevel.objects.select_for_update(of=("self",))
        .select_related("sku", "location")
        .only(
            "id",
            "sku_id",
            "location_id",
            "on_hand",
            "reserved",
            "safety_stock",
            "receiving",
            "damaged",
            "quarantine",
            "refurbish",
            "sku__code",
            "location__code",
        )
        .filter(stock_pairs_q(pairs))
        .order_by("pk")
    )
    if create and missing:
        created = set(missing)
        stats_refresh_when_grown(StockLevel, [row.pk for row in rows if (row.sku_id, row.location_id) in created])
    return {(row.sku_id, row.location_id): row for row in rows}


# Below this many rows a stale plan costs little; from here the statistics are refreshed at every doubling.
STATS_REFRESH_FROM = 256


def stats_refresh_when_grown(model: type[Model], new_ids: Iterable[int]) -> None:
    """After commit, ANALYZE the model's table when one of the rows just written has a power-of-two id
    (256, 512, 1024, ...): the table has about doubled since it was last analysed here.

    Why: PostgreSQL keeps a plan per session for each foreign-key check and each prepared statement, made
    from the table's statistics at that moment; a table analysed while tiny (a fresh database, a
    `VACUUM ANALYZE` at setup) gets a sequential-scan plan that stays as the table grows, unless
    autovacuum re-analyses it, and production can't count on autovacuum (it may be off, as on the
    machines these figures come from). ANALYZE refreshes the statistics and invalidates those plans in
    every session. About log2(rows) times in a table's life, outside any lock; SKIP_LOCKED: a
    concurrent ANALYZE of the same table is enough.
    """
    if any(pk >= STATS_REFRESH_FROM and pk & (pk - 1) == 0 for pk in new_ids):
        table = connection.ops.quote_name(model._meta.db_table)
        transaction.on_commit(partial(_analyze, table), robust=True)


def _analyze(table: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE (SKIP_LOCKED) {table}")


def _stock_changed_send(sku_ids: list[int]) -> None:
    stock_changed.send_robust(sender=Sku, sku_ids=sku_ids)


def stock_changed_announce(sku_ids: Iterable[int]) -> None:
    """After commit, announce that what may be promised of these SKUs changed (inventory.signals.stock_changed)."""
    ids = sorted(set(sku_ids))
    if ids:
        # robust: the stock change is committed; whatever a listener misses its own reconciliation catches up.
        transaction.on_commit(partial(_stock_changed_send, ids), robust=True)
