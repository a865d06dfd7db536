"""WMS snapshots: absolute sellable counts per (sku, location) become adjustment movements.

Every row is validated before anything is applied; one bad row rejects the snapshot and names each
offending row. The StockSnapshot row (unique idempotency key) makes a replay return the original
result and change nothing, even after later stock movements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F

from config.kernel.limits import INT32_MAX
from inventory.errors import InvalidQuantity, SnapshotInvalid
from inventory.models import Location, MovementReason, Sku, StockBucket, StockLevel, StockMovement, StockSnapshot
from inventory.services.common import Actor, actor_resolve, lock_levels, stock_changed_announce

MAX_ROWS = 10_000


@dataclass(frozen=True)
class SnapshotResult:
    snapshot_id: int
    idempotency_key: str
    replayed: bool
    rows: list[dict]

    @property
    def changed(self) -> int:
        return sum(1 for row in self.rows if row["delta"])


def _validate(rows: Sequence[object]) -> tuple[list[tuple[int, str, str, int]], list[dict]]:
    errors: list[dict] = []
    parsed: list[tuple[int, str, str, int]] = []
    seen: dict[tuple[str, str], int] = {}
    for index, row in enumerate(rows):
        problems = []
        if not isinstance(row, Mapping):
            errors.append({"row": index, "errors": ["not an object with sku, location and on_hand"]})
            continue
        sku, location, on_hand = row.get("sku"), row.get("location"), row.get("on_hand")
        if not isinstance(sku, str) or not sku.strip():
            problems.append("sku: a SKU code is required")
        if not isinstance(location, str) or not location.strip():
            problems.append("location: a location code is required")
        if isinstance(on_hand, bool) or not isinstance(on_hand, int):
            problems.append(f"on_hand: a whole number is required, got {on_hand!r}")
        elif on_hand < 0:
            problems.append(f"on_hand: must not be negative, got {on_hand}")
        elif on_hand > INT32_MAX:
            problems.append(f"on_hand: at most {INT32_MAX:,} units, got {on_hand}")
        if extra := sorted(set(row) - {"sku", "location", "on_hand"}):
            problems.append(f"unknown field(s): {', '.join(map(str, extra))}")
        if not problems:
            key = (sku.strip(), location.strip())
            if key in seen:
                problems.append(f"duplicate of row {seen[key]} ({key[0]} at {key[1]})")
            else:
                seen[key] = index
                parsed.append((index, key[0], key[1], on_hand))
        if problems:
            errors.append({"row": index, "sku": sku, "location": location, "errors": problems})
    return parsed, errors


def stock_snapshot_apply(
    *,
    rows: Sequence[Mapping],
    idempotency_key: str,
    actor: Actor,
    source: str = "",
    reason: str = MovementReason.ADJUST,
) -> SnapshotResult:
    """Set sellable on-hand to the WMS counts. All rows or none; a replayed key changes nothing.

    Raises SnapshotInvalid (400) naming each malformed, duplicate or unknown row, or (409) each row
    whose count is below the units already reserved there.
    """
    name, user = actor_resolve(actor)
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise InvalidQuantity("a snapshot needs an idempotency key")
    key = idempotency_key.strip()[:255]
    if (done := StockSnapshot.objects.filter(idempotency_key=key).first()) is not None:
        return SnapshotResult(done.pk, key, True, done.result.get("rows", []))
    if not rows:
        raise SnapshotInvalid([{"row": None, "errors": ["the snapshot has no rows"]}])
    if len(rows) > MAX_ROWS:
        raise SnapshotInvalid([{"row": None, "errors": [f"at most {MAX_ROWS} rows per snapshot"]}])
    parsed, errors = _validate(rows)
    skus = dict(Sku.objects.filter(code__in=[s for _, s, _, _ in parsed]).values_list("code", "pk"))
    locations = dict(Location.objects.filter(code__in=[loc for _, _, loc, _ in parsed]).values_list("code", "pk"))
    for index, sku, location, _ in parsed:
        problems = []
        if sku not in skus:
            problems.append(f"sku: unknown SKU {sku!r}")
        if location not in locations:
            problems.append(f"location: unknown location {location!r}")
        if problems:
            errors.append({"row": index, "sku": sku, "location": location, "errors": problems})
    if errors:
        raise SnapshotInvalid(sorted(errors, key=lambda e: e["row"]))

    try:
        with transaction.atomic():
            levels = lock_levels([(skus[s], locations[loc]) for _, s, loc, _ in parsed], create=True)
            result, movements, conflicts = [], [], []
            for index, sku, location, counted in parsed:
                level = levels[(skus[sku], locations[location])]
                if counted < level.reserved:
                    conflicts.append(
                        {
                            "row": index,
                            "sku": sku,
                            "location": location,
                            "errors": [f"on_hand {counted} is below the {level.reserved} units reserved there"],
                        }
                    )
                    continue
                delta = counted - level.on_hand
                result.append(
                    {
                        "row": index,
                        "sku": sku,
                        "location": location,
                        "before": level.on_hand,
                        "after": counted,
                        "delta": delta,
                    }
                )
                if delta:
                    StockLevel.objects.filter(pk=level.pk).update(on_hand=F("on_hand") + delta)
                    movements.append(
                        StockMovement(
                            sku_id=level.sku_id,
                            location_id=level.location_id,
                            delta=delta,
                            bucket=StockBucket.SELLABLE,
                            reason=reason,
                            reference=f"snapshot:{key}"[:128],
                            note=f"WMS count {counted} (was {level.on_hand})" + (f" from {source}" if source else ""),
                            actor=name,
                            actor_user=user,
                            balance_after=counted,
                        )
                    )
            if conflicts:
                raise SnapshotInvalid(conflicts, http_status=409)
            StockMovement.objects.bulk_create(movements)
            snapshot = StockSnapshot.objects.create(
                idempotency_key=key,
                actor=name,
                actor_user=user,
                source=source[:150],
                row_count=len(parsed),
                result={"rows": result},
            )
    except IntegrityError as exc:
        if "idempotency_key" not in str(exc):
            raise
        done = StockSnapshot.objects.get(idempotency_key=key)  # a concurrent replay won
        return SnapshotResult(done.pk, key, True, done.result.get("rows", []))
    stock_changed_announce(m.sku_id for m in movements)
    return SnapshotResult(snapshot.pk, key, False, result)
