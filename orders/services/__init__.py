"""Order writes: creation, the state machine, holds and the exception queue.

Every function takes keyword-only arguments and an ``actor``: a user, or the name of a system
actor such as "sync:amazon-us". Each change writes its audit row in the same transaction.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from orders.errors import ActorRequired, DomainError, HoldError, InvalidTransition
from orders.models import (
    CancelInitiator,
    CaseStatus,
    ExceptionCase,
    ExceptionKind,
    Hold,
    HoldKind,
    LineStatus,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    Severity,
    ShipToAddress,
)
from orders.services.ingest import NO_SHIP_TO, ROUTABLE_AGAIN, IngestAddress, address_case_key
from orders.signals import order_lines_cancelled
from orders.status import can_transition, determine_order_status

Actor = AbstractBaseUser | str


class DuplicateOrder(DomainError):
    code = "duplicate_order"
    http_status = 409


class UnknownStatus(DomainError):
    code = "unknown_status"


class ExceptionCaseError(DomainError):
    code = "exception_case_error"
    http_status = 409


def actor_resolve(actor: Actor | None) -> tuple[str, AbstractBaseUser | None]:
    """(name, user) for an actor; a missing or blank actor is refused."""
    if actor is None:
        raise ActorRequired("an actor is required: a user or a named system actor such as 'sync:amazon-us'")
    if isinstance(actor, str):
        name = actor.strip()
        if not name:
            raise ActorRequired("an actor is required: the system actor name is blank")
        return name[:150], None
    if not getattr(actor, "is_authenticated", False):
        raise ActorRequired("an actor is required: an anonymous user cannot change orders")
    return actor.get_username(), actor


def order_event_record(
    *,
    order: Order,
    kind: str,
    actor: Actor,
    reason: str = "",
    from_status: str = "",
    to_status: str = "",
    data: dict[str, Any] | None = None,
) -> OrderEvent:
    name, user = actor_resolve(actor)
    return OrderEvent.objects.create(
        order=order,
        kind=kind,
        actor=name,
        actor_user=user,
        reason=reason,
        from_status=from_status,
        to_status=to_status,
        data=data or {},
    )


# --- creation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineInput:
    external_id: str
    channel_sku: str
    quantity: int
    unit_price: Decimal = Decimal("0")
    sku_id: int | None = None
    title: str = ""
    ship_by: datetime | None = None
    deliver_by: datetime | None = None
    channel_status: str = ""
    external_unit_ids: list[str] = field(default_factory=list)
    allow_backorder: bool = False


# The buyer's address, as order_create and the channel ingest both take it.
AddressInput = IngestAddress


def order_create(
    *,
    account_id: int,
    external_id: str,
    placed_at: datetime,
    currency: str,
    lines: list[LineInput],
    actor: Actor,
    status: str = OrderStatus.PENDING,
    external_reference: str = "",
    channel_status: str = "",
    marketplace_fulfilled: bool = False,
    ship_to: AddressInput | None = None,
    total_amount: Decimal | None = None,
    ship_by: datetime | None = None,
    deliver_by: datetime | None = None,
    source_updated_at: datetime | None = None,
    service_level: str = "ship",
) -> Order:
    """Create an order with its lines and address in one transaction, or nothing at all."""
    name, _ = actor_resolve(actor)
    if status not in OrderStatus.values:
        raise UnknownStatus(f"unknown order status {status!r}; expected one of {', '.join(OrderStatus.values)}")
    if not external_id:
        raise DomainError("an order needs the channel's external id")
    if not lines:
        raise DomainError(f"order {external_id} has no lines")
    for line in lines:
        if line.quantity <= 0:
            raise DomainError(f"order {external_id} line {line.external_id}: quantity must be positive")
        if line.unit_price < 0:
            raise DomainError(f"order {external_id} line {line.external_id}: unit price must not be negative")
    if placed_at.tzinfo is None:
        raise DomainError(f"order {external_id}: placed_at must be timezone-aware")
    line_ship_bys = [line.ship_by for line in lines if line.ship_by]
    if total_amount is None:
        total_amount = sum((line.unit_price * line.quantity for line in lines), Decimal("0"))
    line_status = {
        OrderStatus.PENDING: LineStatus.PENDING,
        OrderStatus.OPEN: LineStatus.OPEN,
    }.get(status, LineStatus.OPEN)
    try:
        with transaction.atomic():
            address = ShipToAddress.objects.create(**ship_to.__dict__) if ship_to else None
            order = Order.objects.create(
                account_id=account_id,
                external_id=external_id,
                external_reference=external_reference,
                status=status,
                channel_status=channel_status,
                marketplace_fulfilled=marketplace_fulfilled,
                placed_at=placed_at,
                currency=currency,
                total_amount=total_amount,
                ship_to=address,
                customer_name=address.name if address else "",
                ship_by=ship_by or (min(line_ship_bys) if line_ship_bys else None),
                deliver_by=deliver_by,
                source_updated_at=source_updated_at,
                service_level=service_level,
            )
            OrderLine.objects.bulk_create(
                OrderLine(
                    order=order,
                    external_id=line.external_id,
                    external_unit_ids=line.external_unit_ids,
                    sku_id=line.sku_id,
                    channel_sku=line.channel_sku,
                    title=line.title,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    currency=currency,
                    status=line_status,
                    channel_status=line.channel_status,
                    ship_by=line.ship_by,
                    deliver_by=line.deliver_by,
                    is_backorder_allowed=line.allow_backorder,
                )
                for line in lines
            )
            order_event_record(
                order=order,
                kind="created",
                actor=actor,
                to_status=status,
                data={"lines": len(lines), "actor": name},
            )
    except IntegrityError as exc:
        if "order_unique_account_external_id" in str(exc):
            raise DuplicateOrder(f"order {external_id} already exists for account {account_id}") from exc
        if "orderline_unique_external_id" in str(exc):
            raise DomainError(f"order {external_id} has two lines with the same line id") from exc
        raise
    return order


# --- the state machine ---------------------------------------------------------------------------


def _lock_order(order_id: int) -> Order:
    # Evaluated at once: a lazy locked queryset takes no lock.
    return Order.objects.select_for_update().get(pk=order_id)


def order_transition(
    *,
    order: Order | int,
    to_status: str,
    actor: Actor,
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> Order:
    """Move an order to ``to_status`` if the table allows it; write the event. Same status: no-op."""
    actor_resolve(actor)
    if to_status not in OrderStatus.values:
        raise UnknownStatus(f"unknown order status {to_status!r}; expected one of {', '.join(OrderStatus.values)}")
    order_id = order if isinstance(order, int) else order.pk
    with transaction.atomic():
        locked = _lock_order(order_id)
        from_status = locked.status
        if from_status == to_status:
            return locked
        if not can_transition(from_status, to_status):
            raise InvalidTransition(entity=f"order {locked}", from_status=from_status, to_status=to_status)
        locked.status = to_status
        locked.save(update_fields=["status", "updated_at"])
        order_event_record(
            order=locked,
            kind="status_changed",
            actor=actor,
            reason=reason,
            from_status=from_status,
            to_status=to_status,
            data=data,
        )
    if not isinstance(order, int):
        order.status = locked.status
    return locked


_TRANSITION_PATH_SQL = """
WITH o AS (
    UPDATE {order} SET status = %(to_status)s, updated_at = now()
     WHERE id = ANY(%(order_ids)s::bigint[]) AND status = %(from_status)s
    RETURNING id
)
INSERT INTO {event} (order_id, kind, from_status, to_status, actor_user_id, actor, reason, data, created_at)
SELECT o.id, 'status_changed', e.from_status, e.to_status, %(user_id)s, %(actor)s, e.reason, %(data)s, now()
  FROM o CROSS JOIN unnest(%(froms)s::text[], %(tos)s::text[], %(reasons)s::text[]) WITH ORDINALITY
       AS e(from_status, to_status, reason, n)
 ORDER BY o.id, e.n
RETURNING id, order_id
"""


def _transition_path_checked(path: Sequence[str], reason: str | Sequence[str], entity: str):
    steps = list(path)
    if len(steps) < 2:
        raise DomainError("a transition path needs a start status and at least one step")
    for status in steps:
        if status not in OrderStatus.values:
            raise UnknownStatus(f"unknown order status {status!r}; expected one of {', '.join(OrderStatus.values)}")
    steps = [OrderStatus(status).value for status in steps]
    pairs = list(itertools.pairwise(steps))
    for from_status, to_status in pairs:
        if not can_transition(from_status, to_status):
            raise InvalidTransition(entity=entity, from_status=from_status, to_status=to_status)
    reasons = [reason] * len(pairs) if isinstance(reason, str) else list(reason)
    if len(reasons) != len(pairs):
        raise DomainError(f"{len(pairs)} step(s) but {len(reasons)} reason(s)")
    return steps, pairs, reasons


def _transition_path_run(order_ids, steps, pairs, reasons, *, actor: Actor, data) -> list[tuple[int, int]]:
    """The guarded statement for ``order_ids``: [(event id, order id)] for the orders it moved."""
    name, user = actor_resolve(actor)
    sql = _TRANSITION_PATH_SQL.format(order=Order._meta.db_table, event=OrderEvent._meta.db_table)
    # No savepoint (two more round trips): a statement that matched no row changed nothing.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(
            sql,
            {
                "order_ids": list(order_ids),
                "from_status": steps[0],
                "to_status": steps[-1],
                "user_id": user.pk if user is not None else None,
                "actor": name,
                "data": Jsonb(data or {}),
                "froms": [a for a, _ in pairs],
                "tos": [b for _, b in pairs],
                "reasons": reasons,
            },
        )
        return [(row[0], row[1]) for row in cursor.fetchall()]


def orders_transition_path(
    *, order_ids: Sequence[int], path: Sequence[str], actor: Actor, reason: str | Sequence[str] = ""
) -> set[int]:
    """order_transition_path for many orders in one statement: each order still in ``path[0]`` moves along
    ``path`` with its events. Returns the ids of the orders moved; the others are left as they are."""
    steps, pairs, reasons = _transition_path_checked(path, reason, "orders")
    if not order_ids:
        return set()
    return {order_id for _, order_id in _transition_path_run(order_ids, steps, pairs, reasons, actor=actor, data=None)}


def order_transition_path(
    *,
    order: Order | int,
    path: Sequence[str],
    actor: Actor,
    reason: str | Sequence[str] = "",
    data: dict[str, Any] | None = None,
) -> list[OrderEvent]:
    """Move an order along ``path`` (its current status first, e.g. ["open", "allocated", "released"]) in
    one statement: the guarded ``UPDATE … WHERE status = path[0]`` locks the row and changes it once, and
    one "status_changed" event per step is inserted with it. Every step is checked against the table first.

    ``reason`` is one reason for every step or one per step. Raises InvalidTransition naming both states
    for an illegal step, or when the order is no longer in ``path[0]`` (then naming the status it is in):
    nothing is changed. Returns the events in step order.
    """
    name, user = actor_resolve(actor)
    order_id = order if isinstance(order, int) else order.pk
    steps, pairs, reasons = _transition_path_checked(path, reason, f"order #{order_id}")
    ids = [event_id for event_id, _ in _transition_path_run([order_id], steps, pairs, reasons, actor=actor, data=data)]
    if not ids:
        current = Order.objects.filter(pk=order_id).values_list("status", flat=True).first()
        if current is None:
            raise Order.DoesNotExist(f"order #{order_id} does not exist")
        raise InvalidTransition(entity=f"order #{order_id}", from_status=current, to_status=steps[1])
    if not isinstance(order, int):
        order.status = steps[-1]
    return [
        OrderEvent(
            pk=pk,
            order_id=order_id,
            kind="status_changed",
            actor=name,
            actor_user=user,
            reason=step_reason,
            from_status=from_status,
            to_status=to_status,
            data=data or {},
        )
        for pk, (from_status, to_status), step_reason in zip(ids, pairs, reasons, strict=True)
    ]


def order_status_refresh(*, order: Order | int, actor: Actor, reason: str = "") -> Order:
    """Apply the status that the line quantities imply (partially shipped, shipped, cancelled…)."""
    order_id = order if isinstance(order, int) else order.pk
    with transaction.atomic():
        locked = _lock_order(order_id)
        derived = determine_order_status(locked.lines.all(), locked.status)
        if derived == locked.status:
            return locked
        return order_transition(order=locked, to_status=derived, actor=actor, reason=reason)


def orders_pickup_store_set(*, account_id: int, pickup_location_ref: str, location_id: int, actor: Actor) -> list[int]:
    """The channel's pickup store ``pickup_location_ref`` is now known to be Location ``location_id``: set
    it on the account's unrouted orders that name it and release their unmapped-store holds.
    Returns the ids of the orders changed. Orders already routed keep their store."""
    name, _ = actor_resolve(actor)
    if not pickup_location_ref:
        raise DomainError("a channel location id is required")
    changed = []
    with transaction.atomic():
        order_ids = list(
            Order.objects.filter(
                account_id=account_id,
                pickup_location_ref=pickup_location_ref,
                status__in=list(ROUTABLE_AGAIN),
            )
            .exclude(pickup_location_id=location_id)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        for order_id in order_ids:
            locked = _lock_order(order_id)
            if locked.status not in ROUTABLE_AGAIN:
                continue
            before = locked.pickup_location_id
            locked.pickup_location_id = location_id
            locked.save(update_fields=["pickup_location", "updated_at"])
            order_event_record(
                order=locked,
                kind="pickup_store_set",
                actor=actor,
                reason=f"channel location {pickup_location_ref} mapped",
                data={"before": {"pickup_location": before}, "after": {"pickup_location": location_id}},
            )
            for hold_id in locked.holds.filter(kind=HoldKind.UNMAPPED_LOCATION, released_at__isnull=True).values_list(
                "pk", flat=True
            ):
                hold_release(hold=hold_id, reason=f"pickup store mapped by {name}", actor=actor)
            changed.append(order_id)
    return changed


# --- cancellations -------------------------------------------------------------------------------


def _cancel_initiator_check(initiator: str) -> None:
    if initiator not in CancelInitiator.values:
        raise DomainError(f"unknown cancel initiator {initiator!r}; expected one of {', '.join(CancelInitiator)}")


def order_cancel_initiator_set(*, order: Order | int, initiator: str, actor: Actor, reason: str = "") -> Order:
    """Record who the order's cancelled units are charged to (CancelInitiator): the scorecards count the
    seller's cancels apart from the buyer's and the marketplace's. The same initiator again changes nothing."""
    actor_resolve(actor)
    _cancel_initiator_check(initiator)
    order_id = order if isinstance(order, int) else order.pk
    with transaction.atomic():
        locked = _lock_order(order_id)
        before = locked.cancel_initiator
        if before == initiator:
            return locked
        locked.cancel_initiator = initiator
        locked.save(update_fields=["cancel_initiator", "updated_at"])
        order_event_record(
            order=locked,
            kind="cancel_initiator_set",
            actor=actor,
            reason=reason,
            data={"before": {"cancel_initiator": before}, "after": {"cancel_initiator": initiator}},
        )
    return locked


def order_lines_cancel(
    *, order: Order | int, quantities: Mapping[int, int], reason: str, initiator: str, actor: Actor
) -> OrderEvent:
    """Cancel units that no shipment carries ({order line id: units}; lines not routed yet: pending, open,
    backordered): count them cancelled on the lines, record who the cancel is charged to, move the order
    through the state machine (cancelled when nothing is left) and send ``order_lines_cancelled`` in the
    transaction (channels queues the cancellation for the channel, as for a shipment line cancel).

    Units on a shipment are cancelled through fulfilment (shipment_line_cancel), which releases their
    stock; stock reserved for these units outside any shipment is the caller's to release. Refuses, having
    changed nothing, units that are not open. Returns the "lines_cancelled" event."""
    actor_resolve(actor)
    if not reason or not reason.strip():
        raise DomainError("cancelling lines needs a reason")
    _cancel_initiator_check(initiator)
    if not quantities:
        raise DomainError("name at least one line and the units to cancel")
    wanted: dict[int, int] = {}
    for raw_id, qty in quantities.items():
        if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
            raise DomainError(f"order line {raw_id}: the units to cancel must be a positive whole number")
        wanted[int(raw_id)] = qty
    order_id = order if isinstance(order, int) else order.pk
    with transaction.atomic():
        locked = _lock_order(order_id)
        if locked.is_terminal:
            raise InvalidTransition(entity=f"order {locked}", from_status=locked.status, to_status="lines cancelled")
        lines = {line.pk: line for line in locked.lines.select_for_update().order_by("pk")}
        changed = []
        for line_id, qty in sorted(wanted.items()):
            line = lines.get(line_id)
            if line is None:
                raise DomainError(f"order line {line_id} is not a line of order {locked}")
            if qty > line.quantity_open:
                raise DomainError(
                    f"order {locked} line {line.external_id}: {qty} unit(s) to cancel, only {line.quantity_open} open"
                )
            line.quantity_cancelled += qty
            if line.quantity_cancelled >= line.quantity:
                line.status = LineStatus.CANCELLED
            elif line.quantity_shipped and line.quantity_shipped >= line.quantity - line.quantity_cancelled:
                line.status = LineStatus.SHIPPED
            changed.append(
                {
                    "order_line": line.pk,
                    "external_id": line.external_id,
                    "quantity": qty,
                    "before": line.quantity_cancelled - qty,
                    "after": line.quantity_cancelled,
                }
            )
        OrderLine.objects.bulk_update([lines[c["order_line"]] for c in changed], ["quantity_cancelled", "status"])
        before_initiator = locked.cancel_initiator
        locked.cancel_initiator = initiator
        locked.save(update_fields=["cancel_initiator", "updated_at"])
        event = order_event_record(
            order=locked,
            kind="lines_cancelled",
            actor=actor,
            reason=reason.strip(),
            data={
                "lines": changed,
                "initiator": initiator,
                "before": {"cancel_initiator": before_initiator},
                "after": {"cancel_initiator": initiator},
            },
        )
        derived = determine_order_status(lines.values(), locked.status)
        if derived != locked.status:
            order_transition(order=locked, to_status=derived, actor=actor, reason=reason.strip())
        order_lines_cancelled.send(
            sender=Order,
            order_id=locked.pk,
            lines=[(c["order_line"], c["quantity"]) for c in changed],
            reason=reason.strip(),
            initiator=initiator,
            event_id=event.pk,
        )
    return event


# --- holds ---------------------------------------------------------------------------------------


def hold_place(*, order: Order | int, kind: str, reason: str, actor: Actor) -> Hold:
    """Place a hold. An active hold of the same kind is returned as is (no second hold, no event)."""
    actor_resolve(actor)
    if kind not in HoldKind.values:
        raise HoldError(f"unknown hold kind {kind!r}; expected one of {', '.join(HoldKind.values)}")
    if not reason or not reason.strip():
        raise HoldError("a hold needs a reason")
    order_id = order if isinstance(order, int) else order.pk
    with transaction.atomic():
        locked = _lock_order(order_id)
        if locked.is_terminal:
            raise HoldError(f"order {locked} is {locked.status}: it can no longer be held")
        existing = locked.holds.filter(kind=kind, released_at__isnull=True).first()
        if existing:
            return existing
        name, _ = actor_resolve(actor)
        hold = Hold.objects.create(order=locked, kind=kind, reason=reason.strip(), placed_by=name)
        before = locked.on_hold
        locked.on_hold = True
        locked.save(update_fields=["on_hold", "updated_at"])
        order_event_record(
            order=locked,
            kind="hold_placed",
            actor=actor,
            reason=reason.strip(),
            data={
                "hold_id": hold.pk,
                "hold_kind": kind,
                "before": {"on_hold": before},
                "after": {"on_hold": True},
            },
        )
    return hold


def hold_release(*, hold: Hold | int, reason: str, actor: Actor) -> Hold:
    """Release a hold. Releasing one that is already released is an error and changes nothing."""
    name, _ = actor_resolve(actor)
    if not reason or not reason.strip():
        raise HoldError("releasing a hold needs a reason")
    hold_id = hold if isinstance(hold, int) else hold.pk
    with transaction.atomic():
        order_id = Hold.objects.values_list("order_id", flat=True).get(pk=hold_id)
        locked_order = _lock_order(order_id)  # the order first, then the hold: one lock order everywhere
        locked = Hold.objects.select_for_update().get(pk=hold_id)
        if locked.released_at is not None:
            raise HoldError(
                f"hold #{locked.pk} ({locked.get_kind_display()}) was already released by "
                f"{locked.released_by} at {locked.released_at:%Y-%m-%d %H:%M:%S %Z}"
            )
        locked.released_at = timezone.now()
        locked.released_by = name
        locked.release_reason = reason.strip()
        locked.save(update_fields=["released_at", "released_by", "release_reason"])
        still_held = locked_order.holds.filter(released_at__isnull=True).exists()
        before = locked_order.on_hold
        locked_order.on_hold = still_held
        locked_order.save(update_fields=["on_hold", "updated_at"])
        order_event_record(
            order=locked_order,
            kind="hold_released",
            actor=actor,
            reason=reason.strip(),
            data={
                "hold_id": locked.pk,
                "hold_kind": locked.kind,
                "before": {"on_hold": before},
                "after": {"on_hold": still_held},
            },
        )
    return locked


def order_address_hold(*, order: Order | int, actor: Actor) -> Hold:
    """A ship order with no usable ship-to waits: hold it with an address case. Ingest releases the hold when
    the channel sends a usable address (ship_to_usable); a person may release it after fixing the address."""
    order_id = order if isinstance(order, int) else order.pk
    with transaction.atomic():
        hold = hold_place(order=order_id, kind=HoldKind.ADDRESS, reason=NO_SHIP_TO, actor=actor)
        ref = Order.objects.filter(pk=order_id).values_list("external_reference", "external_id").get()
        exception_case_open(
            kind=ExceptionKind.ADDRESS,
            title=f"Order {ref[0] or ref[1]}: no ship-to address yet",
            detail="The order has no usable ship-to (street, city, country and postal code). It is held and never "
            "routed without one; the hold is released when the channel sends a usable address.",
            severity=Severity.HIGH,
            order_id=order_id,
            actor=actor,
            dedupe_key=address_case_key(order_id),
        )
    return hold


# --- the exception queue -------------------------------------------------------------------------


def exception_case_dedupe_key(
    *, kind: str, order_id: int | None = None, account_id: int | None = None, sku_id: int | None = None
) -> str:
    return f"{kind}:order={order_id or '-'}:account={account_id or '-'}:sku={sku_id or '-'}"


def exception_case_open(
    *,
    kind: str,
    title: str,
    actor: Actor,
    detail: str = "",
    severity: str = Severity.MEDIUM,
    order_id: int | None = None,
    account_id: int | None = None,
    sku_id: int | None = None,
    due_at: datetime | None = None,
    dedupe_key: str | None = None,
) -> tuple[ExceptionCase, bool]:
    """Open a case, or return the unresolved one with the same key. Returns (case, created)."""
    name, _ = actor_resolve(actor)
    if kind not in ExceptionKind.values:
        raise ExceptionCaseError(f"unknown exception kind {kind!r}")
    if severity not in Severity.values:
        raise ExceptionCaseError(f"unknown severity {severity!r}")
    key = dedupe_key or exception_case_dedupe_key(kind=kind, order_id=order_id, account_id=account_id, sku_id=sku_id)
    existing = ExceptionCase.objects.filter(dedupe_key=key).exclude(status=CaseStatus.RESOLVED).first()
    if existing:
        return existing, False
    try:
        # A savepoint: a concurrent opener that wins the unique index leaves our transaction usable.
        with transaction.atomic():
            case = ExceptionCase.objects.create(
                kind=kind,
                title=title[:255],
                detail=detail,
                severity=severity,
                dedupe_key=key,
                order_id=order_id,
                account_id=account_id,
                sku_id=sku_id,
                due_at=due_at,
                opened_by=name,
            )
            if order_id:
                order_event_record(
                    order=case.order,
                    kind="exception_opened",
                    actor=actor,
                    reason=title,
                    data={"case_id": case.pk, "exception_kind": kind, "severity": severity},
                )
    except IntegrityError:
        return ExceptionCase.objects.exclude(status=CaseStatus.RESOLVED).get(dedupe_key=key), False
    return case, True


def _lock_case(case: ExceptionCase | int) -> ExceptionCase:
    case_id = case if isinstance(case, int) else case.pk
    return ExceptionCase.objects.select_for_update().get(pk=case_id)


def exception_case_assign(*, case: ExceptionCase | int, owner: AbstractBaseUser | None, actor: Actor) -> ExceptionCase:
    actor_resolve(actor)
    with transaction.atomic():
        locked = _lock_case(case)
        if locked.status == CaseStatus.RESOLVED:
            raise ExceptionCaseError(f"case #{locked.pk} is resolved; reopen it by opening a new case")
        locked.owner = owner
        locked.save(update_fields=["owner", "updated_at"])
    return locked


def exception_case_acknowledge(*, case: ExceptionCase | int, actor: Actor) -> ExceptionCase:
    _, user = actor_resolve(actor)
    with transaction.atomic():
        locked = _lock_case(case)
        if locked.status == CaseStatus.RESOLVED:
            raise ExceptionCaseError(f"case #{locked.pk} is already resolved")
        locked.status = CaseStatus.ACKNOWLEDGED
        if locked.owner_id is None and user is not None:
            locked.owner = user
        locked.save(update_fields=["status", "owner", "updated_at"])
    return locked


def exception_case_resolve(*, case: ExceptionCase | int, note: str, actor: Actor) -> ExceptionCase:
    name, _ = actor_resolve(actor)
    if not note or not note.strip():
        raise ExceptionCaseError("resolving a case needs a resolution note")
    with transaction.atomic():
        locked = _lock_case(case)
        if locked.status == CaseStatus.RESOLVED:
            raise ExceptionCaseError(
                f"case #{locked.pk} was already resolved by {locked.resolved_by} at {locked.resolved_at:%Y-%m-%d %H:%M}"
            )
        locked.status = CaseStatus.RESOLVED
        locked.resolved_by = name
        locked.resolved_at = timezone.now()
        locked.resolution_note = note.strip()
        locked.save(update_fields=["status", "resolved_by", "resolved_at", "resolution_note", "updated_at"])
        if locked.order_id:
            order_event_record(
                order=locked.order,
                kind="exception_resolved",
                actor=actor,
                reason=note.strip(),
                data={"case_id": locked.pk, "exception_kind": locked.kind},
            )
    return locked


from orders.services.ingest import *  # noqa: E402, F403 - re-export: IngestOrder, orders_ingest_batch, …
from orders.services.line_status import order_lines_reopen_unreserved, order_lines_status_set  # noqa: E402, F401
