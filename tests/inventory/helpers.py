"""Shared helpers for the inventory tests: the DESIGN.md invariants as one assertion."""

from __future__ import annotations

from django.db import connection

from inventory.models import Reservation, StockLevel, StockMovement

INVARIANT_SQL = f"""
SELECT sl.id, sl.sku_id, sl.location_id, sl.on_hand, sl.reserved, sl.receiving, sl.damaged, sl.quarantine,
       sl.refurbish,
       COALESCE((SELECT sum(r.quantity) FROM {Reservation._meta.db_table} r
                  WHERE r.sku_id = sl.sku_id AND r.location_id = sl.location_id AND r.status = 'active'), 0),
       COALESCE((SELECT sum(m.delta) FROM {StockMovement._meta.db_table} m
                  WHERE m.sku_id = sl.sku_id AND m.location_id = sl.location_id AND m.bucket = 'sellable'), 0),
       COALESCE((SELECT sum(m.delta) FROM {StockMovement._meta.db_table} m
                  WHERE m.sku_id = sl.sku_id AND m.location_id = sl.location_id AND m.bucket = 'receiving'), 0),
       COALESCE((SELECT sum(m.delta) FROM {StockMovement._meta.db_table} m
                  WHERE m.sku_id = sl.sku_id AND m.location_id = sl.location_id AND m.bucket = 'damaged'), 0),
       COALESCE((SELECT sum(m.delta) FROM {StockMovement._meta.db_table} m
                  WHERE m.sku_id = sl.sku_id AND m.location_id = sl.location_id AND m.bucket = 'quarantine'), 0),
       COALESCE((SELECT sum(m.delta) FROM {StockMovement._meta.db_table} m
                  WHERE m.sku_id = sl.sku_id AND m.location_id = sl.location_id AND m.bucket = 'refurbish'), 0)
  FROM {StockLevel._meta.db_table} sl
 WHERE %s::bigint[] IS NULL OR sl.sku_id = ANY(%s::bigint[])
"""


def assert_stock_invariants(sku_ids: list[int] | None = None) -> None:
    """0 <= reserved <= on_hand; reserved == Σ active reservations; every bucket == Σ its ledger."""
    with connection.cursor() as cursor:
        cursor.execute(INVARIANT_SQL, [sku_ids, sku_ids])
        rows = cursor.fetchall()
    for row in rows:
        pk, sku, loc, on_hand, reserved, receiving, damaged, quarantine, refurbish = row[:9]
        active, led_s, led_r, led_d, led_q, led_f = row[9:]
        where = f"stock level {pk} (sku {sku} @ location {loc})"
        assert 0 <= reserved <= on_hand, f"{where}: reserved {reserved}, on hand {on_hand}"
        assert reserved == active, f"{where}: reserved {reserved} != Σ active reservations {active}"
        assert on_hand == led_s, f"{where}: on hand {on_hand} != ledger {led_s}"
        assert (receiving, damaged, quarantine, refurbish) == (led_r, led_d, led_q, led_f), (
            f"{where}: buckets differ from the ledger"
        )
