"""The RMA lifecycle: requested → authorized → in transit → received → inspected → completed, or rejected /
cancelled. One transition service checks the table, locks the row, saves and writes the event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from channels.connectors import connector_class
from channels.models import OutboxKind
from channels.outbox import outbox_enqueue
from config.kernel.actors import Actor, actor_resolve
from config.kernel.errors import InvalidTransition
from inventory.models import Location
from orders import services as order_services
from orders.models import LineStatus, Order, OrderLine
from returns.models import ReturnAuthorization, ReturnLine, ReturnReason, ReturnSource, ReturnStatus, ReturnUnit
from returns.services.common import (
    ReturnConflict,
    ReturnError,
    order_returns_lock,
    rma_event_record,
    rma_lock,
    units_checked,
)

S = ReturnStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    S.REQUESTED: frozenset({S.AUTHORIZED, S.IN_TRANSIT, S.RECEIVED, S.REJECTED, S.CANCELLED}),
    S.AUTHORIZED: frozenset({S.IN_TRANSIT, S.RECEIVED, S.CANCELLED, S.REJECTED}),
    S.IN_TRANSIT: frozenset({S.RECEIVED, S.CANCELLED}),
    # More units of a partly inspected return may still arrive.
    S.RECEIVED: frozenset({S.INSPECTED, S.COMPLETED}),
    S.INSPECTED: frozenset({S.RECEIVED, S.COMPLETED}),
    S.COMPLETED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
}
OPEN_STATUSES = (S.REQUESTED, S.AUTHORIZED, S.IN_TRANSIT, S.RECEIVED, S.INSPECTED)
RECEIVABLE = (S.REQUESTED, S.AUTHORIZED, S.IN_TRANSIT, S.RECEIVED, S.INSPECTED)
CLOSED = (S.COMPLETED, S.REJECTED, S.CANCELLED)
# How far along a return is: a channel's report never moves an RMA back.
RANK = {S.REQUESTED: 0, S.AUTHORIZED: 1, S.IN_TRANSIT: 2, S.RECEIVED: 3, S.INSPECTED: 4, S.COMPLETED: 5}


def can_transition(from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS.get(from_status, frozenset())


@dataclass(frozen=True)
class ReturnLineInput:
    order_line_id: int
    quantity: int
    reason: str = ""
    external_id: str = ""


def line_units_held(order_line_ids: list[int], *, exclude_rma_id: int | None = None) -> dict[int, int]:
    """Units of each order line under return: all units of open RMAs, the received ones of completed RMAs."""
    rows = ReturnLine.objects.filter(order_line_id__in=order_line_ids).exclude(
        rma__status__in=[S.REJECTED, S.CANCELLED]
    )
    if exclude_rma_id:
        rows = rows.exclude(rma_id=exclude_rma_id)
    open_units = dict(
        rows.exclude(rma__status=S.COMPLETED)
        .values("order_line_id")
        .annotate(n=Sum("quantity"))
        .values_list("order_line_id", "n")
    )
    done_units = dict(
        rows.filter(rma__status=S.COMPLETED)
        .values("order_line_id")
        .annotate(n=Sum("quantity_received"))
        .values_list("order_line_id", "n")
    )
    return {i: (open_units.get(i) or 0) + (done_units.get(i) or 0) for i in order_line_ids}


def _next_rma_number(order: Order) -> str:
    count = ReturnAuthorization.objects.filter(order=order).count()
    base = f"RMA-{order.pk}"
    number = f"{base}-{count + 1}"
    while ReturnAuthorization.objects.filter(rma_number=number).exists():
        count += 1
        number = f"{base}-{count + 1}"
    return number


def rma_create(
    *,
    order_id: int,
    lines: list[ReturnLineInput],
    actor: Actor,
    reason: str = ReturnReason.OTHER,
    customer_note: str = "",
    return_location_id: int | None = None,
    status: str = ReturnStatus.REQUESTED,
    source: str = ReturnSource.CONSOLE,
    external_id: str = "",
    channel_status: str = "",
) -> ReturnAuthorization:
    """Open an RMA for shipped units of an order's lines. Refused, naming the line and writing nothing,
    when a line is not on the order, is cancelled, or would be under return for more units than shipped
    minus those already returned or under return (also enforced by the database)."""
    name, _ = actor_resolve(actor)
    if reason not in ReturnReason.values:
        raise ReturnError(f"unknown return reason {reason!r}; expected one of {', '.join(ReturnReason.values)}")
    if status not in (S.REQUESTED, S.AUTHORIZED, S.IN_TRANSIT):
        raise ReturnError(f"an RMA starts requested, authorized or in transit, not {status!r}")
    if source not in ReturnSource.values:
        raise ReturnError(f"unknown source {source!r}")
    if not lines:
        raise ReturnError("an RMA needs at least one line with a quantity")
    wanted: dict[int, ReturnLineInput] = {}
    for item in lines:
        if not isinstance(item.order_line_id, int) or isinstance(item.order_line_id, bool):
            raise ReturnError(f"order line id must be a number, got {item.order_line_id!r}")
        if item.order_line_id in wanted:
            raise ReturnError(f"order line #{item.order_line_id} is named twice")
        if item.reason and item.reason not in ReturnReason.values:
            raise ReturnError(f"order line #{item.order_line_id}: unknown return reason {item.reason!r}")
        units_checked(item.quantity, f"order line #{item.order_line_id}")
        wanted[item.order_line_id] = item
    try:
        order = Order.objects.get(pk=order_id)
    except Order.DoesNotExist:
        raise ReturnError(f"order #{order_id} does not exist") from None
    if order.marketplace_fulfilled:
        raise ReturnConflict(f"order {order} was fulfilled by the marketplace: its returns go back to the marketplace")
    if return_location_id is not None and not Location.objects.filter(pk=return_location_id).exists():
        raise ReturnError(f"location #{return_location_id} does not exist")
    try:
        with transaction.atomic():
            order_returns_lock(order.pk)
            order_lines = {line.pk: line for line in OrderLine.objects.filter(order=order, pk__in=list(wanted))}
            held = line_units_held(list(wanted))
            for line_id, item in wanted.items():
                line = order_lines.get(line_id)
                if line is None:
                    raise ReturnError(f"order line #{line_id} is not a line of order {order}")
                label = f"line {line.external_id} ({line.channel_sku})"
                if line.status == LineStatus.CANCELLED or line.quantity_cancelled >= line.quantity:
                    raise ReturnConflict(f"{label} of order {order} is cancelled: nothing of it can be returned")
                returnable = line.quantity_shipped - held[line_id]
                if item.quantity > returnable:
                    raise ReturnConflict(
                        f"{label} of order {order}: {item.quantity} unit(s) asked, but only {max(returnable, 0)} "
                        f"can be returned ({line.quantity_shipped} shipped, {held[line_id]} already returned or "
                        "under return)"
                    )
            now = timezone.now()
            rma = ReturnAuthorization.objects.create(
                rma_number=_next_rma_number(order),
                order=order,
                status=status,
                reason=reason,
                customer_note=customer_note,
                return_location_id=return_location_id,
                external_id=external_id,
                source=source,
                channel_status=channel_status,
                created_by=name,
                authorized_at=now if status != S.REQUESTED else None,
            )
            ReturnLine.objects.bulk_create(
                ReturnLine(
                    rma=rma,
                    order_line_id=item.order_line_id,
                    quantity=item.quantity,
                    reason=item.reason or reason,
                    external_id=item.external_id,
                )
                for item in wanted.values()
            )
            rma_event_record(
                rma=rma,
                kind="created",
                actor=actor,
                to_status=status,
                reason=customer_note[:500],
                data={"lines": {str(i): item.quantity for i, item in wanted.items()}, "source": source},
            )
            order_services.order_event_record(
                order=order,
                kind="return_requested",
                actor=actor,
                reason=f"{rma.rma_number}: {ReturnReason(reason).label}",
                data={
                    "rma": rma.rma_number,
                    "lines": {order_lines[i].external_id: it.quantity for i, it in wanted.items()},
                },
            )
    except IntegrityError as exc:
        if "returnline_exceeds_shipped" in str(exc):
            raise ReturnConflict(str(exc).split("CONTEXT")[0].strip()) from exc
        if "rma_unique_order_external_id" in str(exc):
            raise ReturnConflict(f"order {order} already has an RMA for the channel's return {external_id}") from exc
        raise
    return rma


def rma_transition(
    *, rma_id: int, to_status: str, actor: Actor, reason: str = "", data: dict[str, Any] | None = None
) -> ReturnAuthorization:
    """Move an RMA to ``to_status`` if the table allows it; write the event. Same status: no-op."""
    actor_resolve(actor)
    if to_status not in S.values:
        raise ReturnError(f"unknown return status {to_status!r}; expected one of {', '.join(S.values)}")
    with transaction.atomic():
        rma = rma_lock(rma_id)
        return rma_transition_locked(rma, to_status, actor=actor, reason=reason, data=data)


def rma_transition_locked(
    rma: ReturnAuthorization, to_status: str, *, actor: Actor, reason: str = "", data: dict[str, Any] | None = None
) -> ReturnAuthorization:
    from_status = rma.status
    if from_status == to_status:
        return rma
    if not can_transition(from_status, to_status):
        raise InvalidTransition(entity=f"RMA {rma.rma_number}", from_status=from_status, to_status=to_status)
    now = timezone.now()
    rma.status = to_status
    fields = ["status", "updated_at"]
    stamp = {S.AUTHORIZED: "authorized_at", S.RECEIVED: "received_at", S.INSPECTED: "inspected_at"}.get(to_status)
    if to_status in CLOSED:
        stamp = "closed_at"
    if stamp and getattr(rma, stamp) is None:
        setattr(rma, stamp, now)
        fields.append(stamp)
    rma.save(update_fields=fields)
    rma_event_record(
        rma=rma,
        kind="status_changed",
        actor=actor,
        reason=reason,
        from_status=from_status,
        to_status=to_status,
        data=data,
    )
    return rma


def rma_authorize(
    *, rma_id: int, actor: Actor, return_location_id: int | None = None, reason: str = ""
) -> ReturnAuthorization:
    """Authorize a return. A buyer's request that waits for the seller at the channel (Shopify, TikTok) is
    approved there too, through the outbox."""
    with transaction.atomic():
        rma = rma_lock(rma_id)
        if return_location_id is not None:
            if not Location.objects.filter(pk=return_location_id).exists():
                raise ReturnError(f"location #{return_location_id} does not exist")
            rma.return_location_id = return_location_id
            rma.save(update_fields=["return_location", "updated_at"])
        was = rma.status
        rma_transition_locked(rma, S.AUTHORIZED, actor=actor, reason=reason)
        if was == S.REQUESTED:
            _channel_decision(rma, approve=True, reason=reason)
        return rma


def _channel_decision(rma: ReturnAuthorization, *, approve: bool, reason: str) -> None:
    """Queue the answer to the buyer's request at the channel, where the channel waits for one."""
    if not rma.external_id or rma.source != ReturnSource.CHANNEL:
        return
    account = rma.order.account
    if not connector_class(account.kind).decides_returns:
        return
    outbox_enqueue(
        account_id=account.pk,
        kind=OutboxKind.RETURN_DECISION,
        dedupe_key=f"return:{rma.external_id}"[:255],
        order_id=rma.order_id,
        payload={
            "channel_return_id": rma.external_id,
            "decision": "approve" if approve else "decline",
            "reason": reason[:255],
            "rma": rma.rma_number,
        },
    )


def rma_in_transit(
    *, rma_id: int, actor: Actor, tracking_number: str = "", carrier_id: int | None = None
) -> ReturnAuthorization:
    if len(tracking_number) > 128:
        raise ReturnError("a tracking number has at most 128 characters")
    with transaction.atomic():
        rma = rma_lock(rma_id)
        if tracking_number:
            rma.return_tracking_number = tracking_number.strip()
            rma.carrier_id = carrier_id or rma.carrier_id
            rma.save(update_fields=["return_tracking_number", "carrier", "updated_at"])
        return rma_transition_locked(
            rma, S.IN_TRANSIT, actor=actor, reason="return shipped by the buyer", data={"tracking": tracking_number}
        )


def rma_close(*, rma_id: int, to_status: str, actor: Actor, reason: str) -> ReturnAuthorization:
    """Reject or cancel an RMA (a reason is required) or complete it. A rejected or cancelled RMA's
    units stop counting as under return; a completed one keeps only what was received."""
    if to_status not in CLOSED:
        raise ReturnError(f"an RMA is closed as completed, rejected or cancelled, not {to_status!r}")
    if to_status != S.COMPLETED and not (reason or "").strip():
        raise ReturnError(f"a {to_status} RMA needs a reason")
    with transaction.atomic():
        rma = rma_lock(rma_id)
        if to_status in (S.REJECTED, S.CANCELLED) and rma.lines.filter(quantity_received__gt=0).exists():
            raise ReturnConflict(
                f"RMA {rma.rma_number} has received units: complete it instead "
                f"({to_status} is for returns never received)"
            )
        pending = ReturnUnit.objects.filter(line__rma=rma, disposition="pending").exclude(
            quantity_inspected=F("quantity")
        )
        if to_status == S.COMPLETED and pending.exists():
            raise ReturnConflict(f"RMA {rma.rma_number} has units awaiting inspection: inspect them first")
        was = rma.status
        rma_transition_locked(rma, to_status, actor=actor, reason=reason)
        if was == S.REQUESTED and to_status == S.REJECTED:
            _channel_decision(rma, approve=False, reason=reason)
        return rma


def rma_status_after_units(rma: ReturnAuthorization, *, actor: Actor) -> ReturnAuthorization:
    """After units were received or inspected (RMA locked): RECEIVED, then INSPECTED once every unit
    of every line is in and inspected."""
    if rma.status in (S.REQUESTED, S.AUTHORIZED, S.IN_TRANSIT):
        rma_transition_locked(rma, S.RECEIVED, actor=actor, reason="units received")
    all_in = not rma.lines.filter(
        Q(quantity_received__lt=F("quantity")) | Q(quantity_inspected__lt=F("quantity_received"))
    ).exists()
    if all_in and rma.status == S.RECEIVED:
        rma_transition_locked(rma, S.INSPECTED, actor=actor, reason="every unit received and inspected")
    elif not all_in and rma.status == S.INSPECTED:
        rma_transition_locked(rma, S.RECEIVED, actor=actor, reason="more units to inspect")
    return rma
