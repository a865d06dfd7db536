"""Holds: an order on hold is never routed. The address hold waits for a usable ship-to."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from config.kernel.actors import Actor, actor_resolve
from orders.errors import HoldError
from orders.models import ExceptionKind, Hold, HoldKind, Order, Severity
from orders.services.common import order_event_record, order_lock
from orders.services.exception_queue import exception_case_open

# The reason of the hold placed on an open order that has no usable ship-to; a later payload with a
# usable address releases it (a person's address hold is not touched).
NO_SHIP_TO = "no ship-to address yet"


def address_case_key(order_id: int) -> str:
    return f"address:no_ship_to:order={order_id}"


def hold_place(*, order: Order | int, kind: str, reason: str, actor: Actor) -> Hold:
    """Place a hold. An active hold of the same kind is returned as is (no second hold, no event)."""
    actor_resolve(actor)
    if kind not in HoldKind.values:
        raise HoldError(f"unknown hold kind {kind!r}; expected one of {', '.join(HoldKind.values)}")
    if not reason or not reason.strip():
        raise HoldError("a hold needs a reason")
    order_id = order if isinstance(order, int) else order.pk
    with transaction.atomic():
        locked = order_lock(order_id)
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
        locked_order = order_lock(order_id)  # the order first, then the hold: one lock order everywhere
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
