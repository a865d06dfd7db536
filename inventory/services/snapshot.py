"""WMS snapshots: absolute sellable counts per (sku, location) become adjustment movements.

Every row is validated before anything is applied; one bad row rejects the snapshot and names each
offending row. The StockSnapshot row (unique idempotency key) makes a replay return the original
result and change nothing, even after later stock movements.

Reconciliation of nodes: every count that differs from on-hand is a StockCountProposal row (their count,
our on-hand, the difference). Within the node's ``count_tolerance_units`` it is applied at once; beyond it,
nothing moves: the proposal waits, and an exception case (kind ``stock_count``) lists the ledger lines to
check, until a person applies or rejects it (``stock_count_proposal_apply`` / ``_reject``). A node with no
tolerance set applies every count, as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from config.kernel.limits import INT32_MAX
from inventory.errors import InvalidQuantity, SnapshotInvalid
from inventory.models import (
    CountProposalStatus,
    Location,
    MovementReason,
    Sku,
    StockBucket,
    StockCountProposal,
    StockLevel,
    StockMovement,
    StockSnapshot,
)
from inventory.services.common import Actor, actor_resolve, lock_levels, stock_changed_announce
from inventory.services.ledger import stock_adjust
from orders import services as order_services
from orders.models import CaseStatus, ExceptionKind, Severity

MAX_ROWS = 10_000


@dataclass(frozen=True)
class SnapshotResult:
    snapshot_id: int
    idempotency_key: str
    replayed: bool
    rows: list[dict]

    @property
    def changed(self) -> int:
        return sum(1 for row in self.rows if row["delta"] and not row.get("proposed"))

    @property
    def proposed(self) -> int:
        return sum(1 for row in self.rows if row.get("proposed"))


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
    tolerance = dict(Location.objects.filter(code__in=list(locations)).values_list("code", "count_tolerance_units"))
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
            result, movements, conflicts, proposals = [], [], [], []
            for index, sku, location, counted in parsed:
                level = levels[(skus[sku], locations[location])]
                delta = counted - level.on_hand
                limit = tolerance.get(location)
                if delta and limit is not None and abs(delta) > limit:
                    # Beyond the node's tolerance: proposed to a person, nothing moves.
                    result.append(
                        {
                            "row": index,
                            "sku": sku,
                            "location": location,
                            "before": level.on_hand,
                            "after": level.on_hand,
                            "delta": delta,
                            "proposed": True,
                        }
                    )
                    proposals.append((level, counted, None))
                    continue
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
            _proposals_record(
                snapshot,
                [*proposals, *((levels[(m.sku_id, m.location_id)], m.balance_after, m) for m in movements)],
                name,
            )
    except IntegrityError as exc:
        if "idempotency_key" not in str(exc):
            raise
        done = StockSnapshot.objects.get(idempotency_key=key)  # a concurrent replay won
        return SnapshotResult(done.pk, key, True, done.result.get("rows", []))
    stock_changed_announce(m.sku_id for m in movements)
    return SnapshotResult(snapshot.pk, key, False, result)


# --- reconciliation of nodes: count proposals ------------------------------------------------------


def _count_case_key(sku_id: int, location_id: int) -> str:
    return f"stock_count:sku={sku_id}:location={location_id}"


def _ledger_lines(sku_id: int, location_id: int, limit: int = 15) -> str:
    lines = [
        f"  {m.created_at:%Y-%m-%d %H:%M:%S} {m.delta:+d} {m.get_reason_display()} "
        f"{m.reference or '-'} by {m.actor} (balance {m.balance_after if m.balance_after is not None else '?'})"
        for m in StockMovement.objects.filter(
            sku_id=sku_id, location_id=location_id, bucket=StockBucket.SELLABLE
        ).order_by("-created_at", "-pk")[:limit]
    ]
    return "\n".join(lines) or "  (no movements)"


def _proposals_record(
    snapshot: StockSnapshot, rows: list[tuple[StockLevel, int, StockMovement | None]], actor: str
) -> None:
    """One proposal per differing count: applied ones with their movement, the others waiting with a case.
    A count that arrives while an older one waits supersedes it (the older is rejected)."""
    now = timezone.now()
    for level, counted, movement in rows:
        if movement is not None:
            StockCountProposal.objects.create(
                snapshot=snapshot,
                sku_id=level.sku_id,
                location_id=level.location_id,
                counted=counted,
                on_hand=counted - movement.delta,
                delta=movement.delta,
                status=CountProposalStatus.AUTO_APPLIED,
                movement=movement,
                decided_by=actor,
                decided_at=now,
            )
            continue
        waiting = StockCountProposal.objects.filter(
            sku_id=level.sku_id, location_id=level.location_id, status=CountProposalStatus.PROPOSED
        )
        if waiting.filter(counted=counted, on_hand=level.on_hand).exists():
            continue  # the same difference, counted again: it is already waiting
        waiting.update(
            status=CountProposalStatus.REJECTED,
            decided_by=actor,
            decided_at=now,
            decision_note=f"Superseded by snapshot {snapshot.idempotency_key}.",
        )
        sku = Sku.objects.only("code").get(pk=level.sku_id)
        location = Location.objects.only("code", "count_tolerance_units").get(pk=level.location_id)
        delta = counted - level.on_hand
        case, _ = order_services.exception_case_open(
            kind=ExceptionKind.STOCK_COUNT,
            title=f"{location.code}: counted {counted} of {sku.code}, Waybill has {level.on_hand} ({delta:+d})",
            detail=(
                f"Snapshot {snapshot.idempotency_key} from {snapshot.source or actor} counted {counted} sellable "
                f"units of {sku.code} at {location.code}; Waybill's on-hand is {level.on_hand} "
                f"({level.reserved} reserved). The difference ({delta:+d}) is beyond the node's tolerance of "
                f"{location.count_tolerance_units} unit(s), so nothing was applied.\n"
                f"Ledger lines to check (newest first):\n{_ledger_lines(level.sku_id, level.location_id)}\n"
                "Apply or reject the proposal on the node's reconciliation page."
            ),
            severity=Severity.HIGH if delta < 0 else Severity.MEDIUM,
            sku_id=level.sku_id,
            dedupe_key=_count_case_key(level.sku_id, level.location_id),
            actor=actor,
        )
        StockCountProposal.objects.create(
            snapshot=snapshot,
            sku_id=level.sku_id,
            location_id=level.location_id,
            counted=counted,
            on_hand=level.on_hand,
            delta=delta,
            status=CountProposalStatus.PROPOSED,
            case=case,
        )


def _proposal_decide(proposal: StockCountProposal | int, actor: Actor, note: str, apply: bool) -> StockCountProposal:
    name, _ = actor_resolve(actor)
    pk = proposal if isinstance(proposal, int) else proposal.pk
    with transaction.atomic():
        locked = StockCountProposal.objects.select_for_update().get(pk=pk)
        if locked.status != CountProposalStatus.PROPOSED:
            raise InvalidQuantity(
                f"count proposal #{locked.pk} is {locked.get_status_display().lower()}; only a waiting one is decided"
            )
        if apply:
            locked.movement = stock_adjust(
                sku=locked.sku_id,
                location=locked.location_id,
                delta=locked.delta,
                reason=note or f"count proposal #{locked.pk} applied",
                actor=actor,
                reference=f"count:{locked.pk}",
                idempotency_key=f"count-proposal:{locked.pk}",
            )
        locked.status = CountProposalStatus.APPLIED if apply else CountProposalStatus.REJECTED
        locked.decided_by = name
        locked.decided_at = timezone.now()
        locked.decision_note = note
        locked.save(update_fields=["status", "movement", "decided_by", "decided_at", "decision_note"])
        if locked.case_id and locked.case.status != CaseStatus.RESOLVED:
            order_services.exception_case_resolve(
                case=locked.case_id,
                note=f"Count proposal #{locked.pk} {'applied' if apply else 'rejected'} by {name}. {note}".strip(),
                actor=actor,
            )
            locked.case.refresh_from_db()
    return locked


def stock_count_proposal_apply(
    *, proposal: StockCountProposal | int, actor: Actor, note: str = ""
) -> StockCountProposal:
    """A person accepts a node's count: its difference becomes one adjustment movement (the audit row)."""
    return _proposal_decide(proposal, actor, note, apply=True)


def stock_count_proposal_reject(*, proposal: StockCountProposal | int, actor: Actor, note: str) -> StockCountProposal:
    """A person rejects a node's count (a miscount at the node): nothing moves. A note is required."""
    if not note or not note.strip():
        raise InvalidQuantity("rejecting a count proposal needs a note saying why")
    return _proposal_decide(proposal, actor, note.strip(), apply=False)
