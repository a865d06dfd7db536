"""Helpers shared by the inventory services: actors, quantity checks, stock-row locks, announcing stock changes."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from django.db import transaction
from django.db.models import Q

from config.kernel.actors import Actor, actor_resolve
from inventory.errors import InvalidQuantity, UnknownStockItem
from inventory.models import Location, Sku, StockLevel
from inventory.signals import stock_changed

__all__ = ["Actor", "actor_resolve", "lock_levels", "positive_quantity", "stock_changed_announce", "stock_pairs_q"]


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
    return {(row.sku_id, row.location_id): row for row in rows}


def _stock_changed_send(sku_ids: list[int]) -> None:
    stock_changed.send_robust(sender=Sku, sku_ids=sku_ids)


def stock_changed_announce(sku_ids: Iterable[int]) -> None:
    """After commit, announce that what may be promised of these SKUs changed (inventory.signals.stock_changed)."""
    ids = sorted(set(sku_ids))
    if ids:
        # robust: the stock change is committed; whatever a listener misses its own reconciliation catches up.
        transaction.on_commit(partial(_stock_changed_send, ids), robust=True)
