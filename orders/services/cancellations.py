"""Cancellations on the order: who a cancel is charged to, and units cancelled before any shipment
carries them."""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction

from config.kernel.actors import Actor, actor_resolve
from config.kernel.errors import DomainError, InvalidTransition
from orders.models import CancelInitiator, LineStatus, Order, OrderEvent, OrderLine
from orders.services.common import order_event_record, order_lock
from orders.services.state import order_transition
from orders.signals import order_lines_cancelled
from orders.status import determine_order_status


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
        locked = order_lock(order_id)
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
        locked = order_lock(order_id)
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
