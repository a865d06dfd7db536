"""The stock ledger: every change of a stock bucket is a StockMovement, applied under the row lock.

For each (sku, location): on_hand == Σ delta of its sellable movements, and each non-sellable bucket
(receiving, damaged, quarantine) == Σ delta of its movements. Counters move with F(); the locked row
gives the exact balance_after. Non-sellable buckets never count towards available-to-promise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F

from inventory.errors import IdempotencyConflict, InvalidQuantity, StockConflict
from inventory.models import MovementReason, StockBucket, StockLevel, StockMovement
from inventory.services.common import Actor, actor_resolve, lock_levels, positive_quantity, stock_changed_announce

BUCKET_FIELD = {
    StockBucket.SELLABLE: "on_hand",
    StockBucket.RECEIVING: "receiving",
    StockBucket.DAMAGED: "damaged",
    StockBucket.QUARANTINE: "quarantine",
    StockBucket.REFURBISH: "refurbish",
}


@dataclass(frozen=True)
class StockChange:
    sku_id: int
    location_id: int
    delta: int
    reason: str
    bucket: str = StockBucket.SELLABLE
    reference: str = ""
    note: str = ""
    idempotency_key: str | None = None


def _id(obj) -> int:
    return obj if isinstance(obj, int) else obj.pk


def _replayed(changes: Sequence[StockChange], keys: list[str]) -> list[StockMovement] | None:
    existing = {m.idempotency_key: m for m in StockMovement.objects.filter(idempotency_key__in=keys)}
    if not existing:
        return None
    for change in changes:
        movement = existing.get(change.idempotency_key)
        if movement is None or (movement.sku_id, movement.location_id, movement.reason, movement.bucket) != (
            change.sku_id,
            change.location_id,
            change.reason,
            change.bucket,
        ):
            raise IdempotencyConflict(
                f"idempotency key {change.idempotency_key!r} was already used for a different stock change"
            )
    return [existing[c.idempotency_key] for c in changes]


def movements_apply(*, changes: Sequence[StockChange], actor: Actor) -> list[StockMovement]:
    """Apply ledger changes in one transaction: all of them or none.

    With idempotency keys (on every change or none), a replay returns the original movements and
    changes nothing; the same key on a different change raises IdempotencyConflict.
    """
    name, user = actor_resolve(actor)
    if not changes:
        return []
    for change in changes:
        if isinstance(change.delta, bool) or not isinstance(change.delta, int) or change.delta == 0:
            raise InvalidQuantity(f"a stock change must be a non-zero whole number, got {change.delta!r}")
        if change.bucket not in BUCKET_FIELD:
            raise InvalidQuantity(f"unknown stock bucket {change.bucket!r}")
    keys = [c.idempotency_key for c in changes if c.idempotency_key]
    if keys and len(keys) != len(changes):
        raise IdempotencyConflict("either every change of one call has an idempotency key or none has")
    if keys and (replay := _replayed(changes, keys)) is not None:
        return replay
    try:
        with transaction.atomic():
            movements = stock_changes_apply_locked(changes, name=name, user=user)
    except IntegrityError as exc:
        # A concurrent call with the same key won the unique index: answer with its movements.
        if keys and "stockmovement_unique_idempotency_key" in str(exc):
            replay = _replayed(changes, keys)
            if replay is not None:
                return replay
        raise
    stock_changed_announce(c.sku_id for c in changes if c.bucket == StockBucket.SELLABLE)
    return movements


def stock_changes_apply_locked(changes: Sequence[StockChange], *, name: str, user) -> list[StockMovement]:
    """Apply checked changes (as movements_apply checks them) to their stock rows, locked here in pk order, and
    write one movement each; refuses a change that would take a balance below zero. The actor is given as
    (name, user), as actor_resolve returns it. Must run inside a transaction; the caller handles idempotency
    keys and announces the stock change after commit."""
    levels = lock_levels([(c.sku_id, c.location_id) for c in changes], create=True)
    balances: dict[tuple[int, str], int] = {}
    net: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    movements = []
    for change in changes:
        level = levels[(change.sku_id, change.location_id)]
        field = BUCKET_FIELD[change.bucket]
        key = (level.pk, field)
        before = balances.get(key, getattr(level, field))
        after = before + change.delta
        where = f"{level.sku.code} at {level.location.code}"
        if after < 0:
            raise StockConflict(f"{where}: {field.replace('_', ' ')} would go below zero ({before} {change.delta:+d})")
        if field == "on_hand" and after < level.reserved:
            raise StockConflict(
                f"{where}: on hand would be {after}, below the {level.reserved} reserved; release reservations first"
            )
        balances[key] = after
        net[level.pk][field] += change.delta
        movements.append(
            StockMovement(
                sku_id=change.sku_id,
                location_id=change.location_id,
                delta=change.delta,
                bucket=change.bucket,
                reason=change.reason,
                reference=change.reference[:128],
                note=change.note,
                actor=name,
                actor_user=user,
                idempotency_key=change.idempotency_key,
                balance_after=after,
            )
        )
    for level_pk in sorted(net):
        updates = {field: F(field) + delta for field, delta in net[level_pk].items() if delta}
        if updates:
            StockLevel.objects.filter(pk=level_pk).update(**updates)
    return StockMovement.objects.bulk_create(movements)


def _one(movements: list[StockMovement]) -> StockMovement:
    return movements[0]


# --- the public ledger services -----------------------------------------------------------------


def stock_receive(
    *,
    sku,
    location,
    quantity: int,
    actor: Actor,
    reference: str = "",
    bucket: str = StockBucket.SELLABLE,
    note: str = "",
    idempotency_key: str | None = None,
) -> StockMovement:
    """Goods in: sellable by default, or into the receiving bucket until put away."""
    positive_quantity(quantity)
    change = StockChange(
        _id(sku), _id(location), quantity, MovementReason.RECEIVE, bucket, reference, note, idempotency_key
    )
    return _one(movements_apply(changes=[change], actor=actor))


def stock_putaway(
    *, sku, location, quantity: int, actor: Actor, reference: str = "", idempotency_key: str | None = None
) -> list[StockMovement]:
    """Move received units from the receiving bucket to sellable stock."""
    return _bucket_move(
        sku,
        location,
        quantity,
        StockBucket.RECEIVING,
        StockBucket.SELLABLE,
        MovementReason.RECEIVE,
        actor,
        reference,
        "put away",
        idempotency_key,
    )


def stock_adjust(
    *,
    sku,
    location,
    delta: int,
    reason: str,
    actor: Actor,
    reference: str = "",
    idempotency_key: str | None = None,
) -> StockMovement:
    """A manual correction of sellable stock. The reason is required: the movement is the audit row
    (actor, reason, delta and balance_after give before/after)."""
    if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0:
        raise InvalidQuantity(f"an adjustment must be a non-zero whole number, got {delta!r}")
    if not reason or not reason.strip():
        raise InvalidQuantity("an adjustment needs a reason")
    change = StockChange(
        _id(sku),
        _id(location),
        delta,
        MovementReason.ADJUST,
        StockBucket.SELLABLE,
        reference,
        reason.strip(),
        idempotency_key,
    )
    return _one(movements_apply(changes=[change], actor=actor))


def stock_transfer(
    *,
    sku,
    from_location,
    to_location,
    quantity: int,
    actor: Actor,
    reference: str = "",
    idempotency_key: str | None = None,
) -> list[StockMovement]:
    """Move sellable units between nodes: a transfer-out and a transfer-in in one transaction."""
    positive_quantity(quantity)
    if _id(from_location) == _id(to_location):
        raise InvalidQuantity("a transfer needs two different locations")
    key_out = f"{idempotency_key}:out" if idempotency_key else None
    key_in = f"{idempotency_key}:in" if idempotency_key else None
    changes = [
        StockChange(
            _id(sku),
            _id(from_location),
            -quantity,
            MovementReason.TRANSFER_OUT,
            reference=reference,
            idempotency_key=key_out,
        ),
        StockChange(
            _id(sku),
            _id(to_location),
            quantity,
            MovementReason.TRANSFER_IN,
            reference=reference,
            idempotency_key=key_in,
        ),
    ]
    return movements_apply(changes=changes, actor=actor)


def stock_restock(
    *,
    sku,
    location,
    quantity: int,
    actor: Actor,
    reference: str = "",
    sellable: bool = True,
    idempotency_key: str | None = None,
) -> StockMovement:
    """A returned unit back into stock: sellable, or into the damaged bucket when it can't be resold."""
    positive_quantity(quantity)
    bucket = StockBucket.SELLABLE if sellable else StockBucket.DAMAGED
    change = StockChange(
        _id(sku), _id(location), quantity, MovementReason.RETURN_RESTOCK, bucket, reference, "", idempotency_key
    )
    return _one(movements_apply(changes=[change], actor=actor))


def stock_damage(
    *, sku, location, quantity: int, actor: Actor, reason: str, reference: str = "", idempotency_key: str | None = None
) -> list[StockMovement]:
    """Sellable units found damaged: out of sellable stock, into the damaged bucket."""
    return _bucket_move(
        sku,
        location,
        quantity,
        StockBucket.SELLABLE,
        StockBucket.DAMAGED,
        MovementReason.DAMAGE,
        actor,
        reference,
        reason,
        idempotency_key,
    )


def stock_quarantine(
    *, sku, location, quantity: int, actor: Actor, reason: str, reference: str = "", idempotency_key: str | None = None
) -> list[StockMovement]:
    return _bucket_move(
        sku,
        location,
        quantity,
        StockBucket.SELLABLE,
        StockBucket.QUARANTINE,
        MovementReason.QUARANTINE,
        actor,
        reference,
        reason,
        idempotency_key,
    )


def stock_quarantine_release(
    *, sku, location, quantity: int, actor: Actor, reason: str, reference: str = "", idempotency_key: str | None = None
) -> list[StockMovement]:
    return _bucket_move(
        sku,
        location,
        quantity,
        StockBucket.QUARANTINE,
        StockBucket.SELLABLE,
        MovementReason.RELEASE_QUARANTINE,
        actor,
        reference,
        reason,
        idempotency_key,
    )


def stock_refurbish_complete(
    *,
    sku,
    location,
    quantity: int,
    actor: Actor,
    reason: str,
    sellable: bool = True,
    reference: str = "",
    idempotency_key: str | None = None,
) -> list[StockMovement]:
    """Returned units whose refurbishment is done leave the refurbish bucket: sellable again (announced, so the
    channels advertise them), or into the damaged bucket when they cannot be repaired. The reason is required."""
    return _bucket_move(
        sku,
        location,
        quantity,
        StockBucket.REFURBISH,
        StockBucket.SELLABLE if sellable else StockBucket.DAMAGED,
        MovementReason.RETURN_RESTOCK if sellable else MovementReason.DAMAGE,
        actor,
        reference,
        reason,
        idempotency_key,
    )


def _bucket_move(sku, location, quantity, source, target, reason, actor, reference, note, idempotency_key):
    positive_quantity(quantity)
    if not note or not str(note).strip():
        raise InvalidQuantity("moving stock between buckets needs a reason")
    changes = [
        StockChange(
            _id(sku),
            _id(location),
            -quantity,
            reason,
            source,
            reference,
            note,
            f"{idempotency_key}:from" if idempotency_key else None,
        ),
        StockChange(
            _id(sku),
            _id(location),
            quantity,
            reason,
            target,
            reference,
            note,
            f"{idempotency_key}:to" if idempotency_key else None,
        ),
    ]
    return movements_apply(changes=changes, actor=actor)


# --- returned units (called by the returns app; inventory knows nothing of RMAs) ---------------------

# Where an inspected returned unit goes: a stock bucket, or out of stock (None) with the movement's reason.
RETURN_TARGETS: dict[str, tuple[str | None, str]] = {
    "restock": (StockBucket.SELLABLE, MovementReason.RETURN_RESTOCK),
    "refurbish": (StockBucket.REFURBISH, MovementReason.RETURN_RESTOCK),
    "damaged": (StockBucket.DAMAGED, MovementReason.RETURN_RESTOCK),
    "destroy": (None, MovementReason.RETURN_DISPOSE),
    "return_to_vendor": (None, MovementReason.RETURN_TO_VENDOR),
}


@dataclass(frozen=True)
class ReturnedUnits:
    """Units of one SKU back from a buyer at one node: ``target`` is None while they await inspection
    (they wait in the receiving bucket), else a RETURN_TARGETS key. ``inspect_only``: the units already
    wait in receiving and now leave it by ``target``."""

    sku_id: int
    location_id: int
    quantity: int
    target: str | None = None
    inspect_only: bool = False
    key: str = ""


def return_changes(units: ReturnedUnits, *, reference: str, note: str = "") -> list[StockChange]:
    """The ledger changes of returned units: into receiving (unless inspect_only), then out of it by their
    disposition (a sellable, refurbish or damaged bucket, or out of stock for destroy / return to vendor).
    Every change carries an idempotency key derived from ``units.key`` when it has one."""
    positive_quantity(units.quantity)
    if units.target is not None and units.target not in RETURN_TARGETS:
        raise InvalidQuantity(f"unknown disposition {units.target!r}; expected one of {', '.join(RETURN_TARGETS)}")
    if units.inspect_only and units.target is None:
        raise InvalidQuantity("inspecting returned units needs a disposition")

    def key(part: str) -> str | None:
        return f"{units.key}:{part}" if units.key else None

    changes = []
    if not units.inspect_only:
        changes.append(
            StockChange(
                units.sku_id,
                units.location_id,
                units.quantity,
                MovementReason.RETURN_RECEIVE,
                StockBucket.RECEIVING,
                reference,
                note,
                key("in"),
            )
        )
    if units.target is not None:
        bucket, reason = RETURN_TARGETS[units.target]
        changes.append(
            StockChange(
                units.sku_id,
                units.location_id,
                -units.quantity,
                reason,
                StockBucket.RECEIVING,
                reference,
                note,
                key("from"),
            )
        )
        if bucket is not None:
            changes.append(
                StockChange(units.sku_id, units.location_id, units.quantity, reason, bucket, reference, note, key("to"))
            )
    return changes


def stock_returns_apply(
    *, units: Sequence[ReturnedUnits], reference: str, actor: Actor, note: str = ""
) -> list[StockMovement]:
    """Apply returned units to the ledger in one transaction (all or none). Restocked units become sellable
    and are announced after commit (stock_changed): the channels recompute what they advertise. Units in
    receiving, refurbish or damaged never count toward available-to-promise. With keys, a replay changes
    nothing (movements_apply)."""
    changes = [change for unit in units for change in return_changes(unit, reference=reference, note=note)]
    return movements_apply(changes=changes, actor=actor)
