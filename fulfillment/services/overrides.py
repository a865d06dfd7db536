"""Manual overrides a person applies to an order from the console or the API, where stock or shipments
move: cancel units (the channel is told through the outbox), backorder the open lines, reroute many
orders, split or merge shipments the node has not started, resend a ship confirmation. Each is one
service call and one audit event, and closes the exception cases it settles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from config.kernel.actors import Actor, actor_resolve
from fulfillment.errors import CancelRefused, CaseFixRefused, InvalidInput
from fulfillment.models import Shipment, ShipmentKind, ShipmentLine
from fulfillment.services.common import capacity_give_back, capacity_take
from fulfillment.services.route.reroute import order_reroute
from fulfillment.services.shipments.common import S, shipment_event, shipment_lock, unshipped_reservations_release
from fulfillment.services.shipments.shorts_and_cancels import shipment_line_cancel
from fulfillment.signals import ship_confirmation_resend
from fulfillment.status import HOLDS_STOCK, SHIPPED_STATES
from orders import services as order_services
from orders.models import (
    CancelInitiator,
    CaseStatus,
    ExceptionCase,
    ExceptionKind,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
)

# The cases a routing fix (reroute, backorder, cancel) settles for the order.
ROUTING_CASE_KINDS = (
    ExceptionKind.NO_NODE,
    ExceptionKind.INSUFFICIENT_STOCK,
    ExceptionKind.OVER_CAPACITY,
    ExceptionKind.SHIP_BY_UNREACHABLE,
    ExceptionKind.SHORT_PICK,
)
# The cases a group fix (reroute, backorder, cancel the order) applies to, and the actions it offers.
CASE_FIX_KINDS = frozenset({*ROUTING_CASE_KINDS, ExceptionKind.SHIP_BY_AT_RISK, ExceptionKind.LATE_SHIPMENT})
CASE_FIX_ACTIONS = ("reroute", "backorder", "cancel")
NOT_STARTED = HOLDS_STOCK - {"picking", "packed", "ready_for_pickup"}


@dataclass
class CancelResult:
    cancelled: dict[int, int] = field(default_factory=dict)  # order line -> units
    shipments: list[int] = field(default_factory=list)
    settled_cases: list[int] = field(default_factory=list)
    order_status: str = ""


def order_units_cancel(
    *,
    order_id: int,
    reason: str,
    actor: Actor,
    quantities: Mapping[int, int] | None = None,
    initiator: str = CancelInitiator.SELLER,
) -> CancelResult:
    """Cancel open units of an order: ``quantities`` ({order line id: units}), or every open unit (the
    whole order) when None. Units on shipments the node has not started (released, acknowledged) are
    cancelled there (stock released, ``shipment_line_cancelled``); units not routed yet through orders'
    order_lines_cancel (``order_lines_cancelled``); either way the channels app queues the cancellation
    with ``reason`` in its outbox. All or nothing: a unit being picked or packed, or more units than are
    open, refuses the whole call, having changed nothing."""
    actor_resolve(actor)
    if not reason or not reason.strip():
        raise InvalidInput("reason", "a cancellation needs a reason; it is sent to the channel")
    if initiator not in CancelInitiator.values:
        raise InvalidInput("initiator", f"expected one of {', '.join(CancelInitiator.values)}")
    result = CancelResult()
    with transaction.atomic():
        shipments = list(
            Shipment.objects.select_for_update(of=("self",)).filter(order_id=order_id).order_by("pk")
        )  # the shipment lock order first, as every shipment service: a node cannot start picking meanwhile
        order = Order.objects.filter(pk=order_id).first()
        if order is None:
            raise InvalidInput("order", f"order {order_id} does not exist")
        if order.is_terminal:
            raise CancelRefused(f"order {order} is {order.get_status_display().lower()}: nothing to cancel")
        if order.marketplace_fulfilled:
            raise CancelRefused(f"order {order} is fulfilled by the marketplace: cancel it at the channel")
        lines = {line.pk: line for line in OrderLine.objects.filter(order_id=order_id).order_by("pk")}
        if quantities is None:
            wanted = {pk: line.quantity_open for pk, line in lines.items() if line.quantity_open > 0}
            if not wanted:
                raise CancelRefused(f"order {order}: no open units left to cancel")
        else:
            wanted = {}
            for raw_id, qty in quantities.items():
                if isinstance(qty, bool) or not isinstance(qty, int) or qty < 0:
                    raise InvalidInput("lines", f"order line {raw_id}: units must be a whole number, 0 or more")
                if qty:
                    wanted[int(raw_id)] = qty
            if not wanted:
                raise InvalidInput("lines", "name at least one line and the units to cancel")
        on_shipments: dict[int, list[tuple[Shipment, ShipmentLine]]] = {}
        busy: dict[int, int] = {}
        for shipment in shipments:
            if shipment.status in SHIPPED_STATES or shipment.status not in HOLDS_STOCK:
                continue
            for sline in shipment.lines.order_by("pk"):
                if sline.quantity_open <= 0:
                    continue
                if shipment.status in NOT_STARTED:
                    on_shipments.setdefault(sline.order_line_id, []).append((shipment, sline))
                else:
                    busy[sline.order_line_id] = busy.get(sline.order_line_id, 0) + sline.quantity_open
        plan: list[tuple[Shipment, int, int]] = []  # (shipment, order line, units)
        unrouted: dict[int, int] = {}
        for line_id, qty in sorted(wanted.items()):
            line = lines.get(line_id)
            if line is None:
                raise InvalidInput("lines", f"order line {line_id} is not a line of order {order}")
            if qty > line.quantity_open:
                raise InvalidInput(
                    "lines", f"line {line.channel_sku}: {qty} unit(s) to cancel, only {line.quantity_open} open"
                )
            left = qty
            for shipment, sline in on_shipments.get(line_id, []):
                take = min(left, sline.quantity_open)
                if take:
                    plan.append((shipment, line_id, take))
                    left -= take
            on_node = sum(s.quantity_open for _, s in on_shipments.get(line_id, []))
            free = line.quantity_open - on_node - busy.get(line_id, 0)
            if left > free:
                raise CancelRefused(
                    f"line {line.channel_sku}: {busy.get(line_id, 0)} unit(s) are being picked or packed at the "
                    "node; cancel there first (short-pick them) or cancel fewer units"
                )
            if left:
                unrouted[line_id] = left
        for shipment, line_id, units in plan:
            shipment_line_cancel(
                shipment=shipment.pk,
                order_line_id=line_id,
                quantity=units,
                reason=reason.strip(),
                actor=actor,
                initiator=initiator,
            )
            result.cancelled[line_id] = result.cancelled.get(line_id, 0) + units
            if shipment.pk not in result.shipments:
                result.shipments.append(shipment.pk)
        if unrouted:
            unshipped_reservations_release(unrouted, actor=actor)
            order_services.order_lines_cancel(
                order=order_id, quantities=unrouted, reason=reason.strip(), initiator=initiator, actor=actor
            )
            for line_id, units in unrouted.items():
                result.cancelled[line_id] = result.cancelled.get(line_id, 0) + units
        order_services.order_cancel_initiator_set(order=order_id, initiator=initiator, actor=actor, reason=reason)
        still_open = OrderLine.objects.filter(
            order_id=order_id, quantity__gt=F("quantity_cancelled") + F("quantity_shipped")
        ).exists()
        if not still_open:
            result.settled_cases = order_services.exception_cases_settle(
                order_id=order_id,
                kinds=[*ROUTING_CASE_KINDS, ExceptionKind.CANCEL_REQUEST, ExceptionKind.UNMAPPED_SKU],
                note=f"units cancelled: {reason.strip()}",
                actor=actor,
            )
        result.order_status = Order.objects.values_list("status", flat=True).get(pk=order_id)
    return result


def order_backorder(*, order_id: int, reason: str, actor: Actor, durable: bool = True) -> list[int]:
    """Let the order's open lines wait for stock: they are marked backorder-allowed and the order is routed
    again, so what is in stock is reserved and the rest is backordered (filled on receipt) instead of an
    exception. Settles the order's routing cases. Returns the backordered line ids. ``durable=False`` lets a
    bulk fix run it in its per-case savepoint."""
    actor_resolve(actor)
    if not reason or not reason.strip():
        raise InvalidInput("reason", "a backorder needs a reason")
    with transaction.atomic(durable=durable):
        order_services.order_lines_backorder_allow(order=order_id, reason=reason.strip(), actor=actor)
        status = Order.objects.values_list("status", flat=True).get(pk=order_id)
        if status in (OrderStatus.BACKORDERED, OrderStatus.OPEN, OrderStatus.ALLOCATED, OrderStatus.RELEASED):
            result = order_reroute(order_id=order_id, reason=f"backorder: {reason.strip()}", actor=actor, durable=False)
            backordered = list(result.backordered_line_ids)
        else:
            backordered = []
        order_services.exception_cases_settle(
            order_id=order_id, kinds=ROUTING_CASE_KINDS, note=f"backordered: {reason.strip()}", actor=actor
        )
    return backordered


def orders_reroute_bulk(*, order_ids: Sequence[int], reason: str, actor: Actor) -> order_services.BulkResult:
    """Reroute many orders, each in its own transaction; the ones refused are named."""
    actor_resolve(actor)
    if not reason or not reason.strip():
        raise InvalidInput("reason", "a reroute needs a reason")
    return order_services.bulk_apply(
        ids=order_ids,
        action="reroute",
        apply=lambda pk: order_reroute(order_id=pk, reason=reason, actor=actor, durable=False),
    )


def exception_cases_fix_bulk(
    *, case_ids: Sequence[int], action: str, reason: str, actor: Actor, location_id: int | None = None
) -> order_services.BulkResult:
    """One fix applied to a root-cause group of cases ("no node can ship, all for SKU WB-1041"): each case's
    order is rerouted (to ``location_id`` when named), backordered, or cancelled with ``reason`` told to the
    channel, in its own transaction, and the cases the fix settles are resolved. A case of another kind, with
    no order, already resolved, or whose order the fix leaves unsettled is named and changes nothing; several
    cases of one order take one fix."""
    actor_resolve(actor)
    if action not in CASE_FIX_ACTIONS:
        raise InvalidInput("action", f"expected one of {', '.join(CASE_FIX_ACTIONS)}")
    if not reason or not reason.strip():
        raise InvalidInput("reason", f"a bulk {action} needs a reason")
    if location_id is not None and action != "reroute":
        raise InvalidInput("location", "a node is named only for a reroute")
    note = reason.strip()
    labels = dict(ExceptionKind.choices)
    fixed_orders: set[int] = set()

    def fix(case_id: int) -> None:
        case = ExceptionCase.objects.filter(pk=case_id).values("kind", "status", "order_id").first()
        if case is None:
            raise InvalidInput("case", f"case {case_id} does not exist")
        if case["kind"] not in CASE_FIX_KINDS:
            raise CaseFixRefused(f"a {labels.get(case['kind'], case['kind']).lower()} case is not fixed by a {action}")
        order_id = case["order_id"]
        if order_id is not None and order_id in fixed_orders:
            # The order took its fix for an earlier case of this call: this case is settled by it too.
            if case["status"] != CaseStatus.RESOLVED:
                order_services.exception_case_resolve(case=case_id, note=f"{action}: {note}", actor=actor)
            return
        if case["status"] == CaseStatus.RESOLVED:
            raise CaseFixRefused("already resolved")
        if order_id is None:
            raise CaseFixRefused("the case names no order")
        if action == "reroute":
            result = order_reroute(order_id=order_id, reason=note, actor=actor, location_id=location_id, durable=False)
            if result.backordered_line_ids or result.exception_case_ids:
                # Raised inside the case's savepoint: the reroute rolls back and the case stays as it was.
                raise CaseFixRefused("a reroute still cannot ship the whole order; name a node, backorder or cancel")
        elif action == "backorder":
            order_backorder(order_id=order_id, reason=note, actor=actor, durable=False)
        else:
            order_units_cancel(order_id=order_id, reason=note, actor=actor)
        if ExceptionCase.objects.filter(pk=case_id).exclude(status=CaseStatus.RESOLVED).exists():
            order_services.exception_case_resolve(case=case_id, note=f"{action}: {note}", actor=actor)
        fixed_orders.add(order_id)

    return order_services.bulk_apply(ids=case_ids, action=action, apply=fix)


def shipment_confirmation_resend(*, shipment_id: int, reason: str, actor: Actor) -> OrderEvent:
    """Send the ship confirmation of a shipped shipment to the channel again (the channel lost it, or it
    was corrected). Records "ship_confirmation_resent" with the original details; the channels app queues a
    new outbox message from ``ship_confirmation_resend``."""
    actor_resolve(actor)
    if not reason or not reason.strip():
        raise InvalidInput("reason", "resending a ship confirmation needs a reason")
    with transaction.atomic():
        shipment = Shipment.objects.select_related("order", "location").filter(pk=shipment_id).first()
        if shipment is None:
            raise InvalidInput("shipment", f"shipment {shipment_id} does not exist")
        if shipment.order.marketplace_fulfilled:
            raise InvalidInput("shipment", "the marketplace fulfils this order: Waybill sends no confirmation")
        shipped = (
            OrderEvent.objects.filter(order_id=shipment.order_id, kind="shipped", data__shipment_id=shipment.pk)
            .order_by("-pk")
            .first()
        )
        if shipment.shipped_at is None or shipped is None:
            raise InvalidInput("shipment", f"shipment {shipment.pk} has not shipped: there is nothing to confirm")
        event = order_services.order_event_record(
            order=shipment.order,
            kind="ship_confirmation_resent",
            actor=actor,
            reason=reason.strip(),
            data={**shipped.data, "resend_of_event": shipped.pk},
        )
        ship_confirmation_resend.send(
            sender=Shipment, shipment_id=shipment.pk, order_id=shipment.order_id, event_id=event.pk
        )
    return event


def shipment_split(*, shipment_id: int, order_line_ids: Sequence[int], reason: str, actor: Actor) -> Shipment:
    """Move whole lines of a shipment the node has not started (released or acknowledged) to a new shipment
    at the same node: two parcels instead of one. Their reservations move with them; the node's day takes
    one shipment more of capacity. Refuses, changing nothing, to leave the first shipment empty or to move
    a line with units already shipped, short or cancelled. Returns the new shipment."""
    actor_resolve(actor)
    if not reason or not reason.strip():
        raise InvalidInput("reason", "splitting a shipment needs a reason")
    wanted = sorted({int(pk) for pk in order_line_ids})
    if not wanted:
        raise InvalidInput("order_lines", "name at least one order line to move to the new shipment")
    with transaction.atomic():
        locked = shipment_lock(shipment_id)
        _not_started(locked, "split")
        lines = {line.order_line_id: line for line in locked.lines.select_for_update().order_by("pk")}
        unknown = [pk for pk in wanted if pk not in lines]
        if unknown:
            raise InvalidInput("order_lines", f"order line(s) {unknown} are not on shipment {locked.pk}")
        if len(wanted) >= len(lines):
            raise InvalidInput("order_lines", "leave at least one line on the first shipment")
        touched = [pk for pk in wanted if lines[pk].quantity_open != lines[pk].quantity]
        if touched:
            raise InvalidInput("order_lines", f"order line(s) {touched} have units shipped, short or cancelled")
        if locked.capacity_day is not None:
            capacity_take(
                location_id=locked.location_id,
                day=locked.capacity_day,
                daily_capacity=locked.location.daily_capacity,
            )
        new = Shipment.objects.create(
            order_id=locked.order_id,
            location_id=locked.location_id,
            status=S.RELEASED,
            kind=locked.kind,
            service_level=locked.service_level,
            ship_by=locked.ship_by,
            capacity_day=locked.capacity_day,
            decision_id=locked.decision_id,
            released_at=timezone.now(),
            promised_delivery_at=locked.promised_delivery_at,
        )
        ShipmentLine.objects.filter(pk__in=[lines[pk].pk for pk in wanted]).update(shipment=new)
        locked.save(update_fields=["updated_at"])  # the node's changed_since poll sees it
        shipment_event(
            locked,
            kind="shipment_split",
            actor=actor,
            reason=reason.strip(),
            data={
                "before": {"shipment_id": locked.pk, "order_lines": sorted(lines)},
                "after": {"new_shipment_id": new.pk, "moved_order_lines": wanted},
            },
        )
    return new


def shipments_merge(*, shipment_ids: Sequence[int], reason: str, actor: Actor) -> Shipment:
    """Merge shipments of one order at one node that the node has not started into the first (lowest id):
    one parcel instead of several. The others' lines (and reservations) move to it, they are cancelled
    and their capacity given back. Returns the shipment kept."""
    actor_resolve(actor)
    if not reason or not reason.strip():
        raise InvalidInput("reason", "merging shipments needs a reason")
    ids = sorted({int(pk) for pk in shipment_ids})
    if len(ids) < 2:
        raise InvalidInput("shipments", "name at least two shipments to merge")
    with transaction.atomic():
        locked = [shipment_lock(pk) for pk in ids]  # pk order: the lock order of every shipment service
        keep, others = locked[0], locked[1:]
        for shipment in locked:
            _not_started(shipment, "merge")
            if (shipment.order_id, shipment.location_id) != (keep.order_id, keep.location_id):
                raise InvalidInput("shipments", "only shipments of one order at one node can be merged")
        moved = list(ShipmentLine.objects.filter(shipment__in=others).order_by("pk").values_list("pk", flat=True))
        ShipmentLine.objects.filter(pk__in=moved).update(shipment=keep)
        for other in others:
            other.status = S.CANCELLED
            other.save(update_fields=["status", "updated_at"])
            capacity_give_back(location_id=other.location_id, day=other.capacity_day)
        keep.save(update_fields=["updated_at"])
        shipment_event(
            keep,
            kind="shipments_merged",
            actor=actor,
            reason=reason.strip(),
            data={"before": {"shipment_ids": ids}, "after": {"shipment_id": keep.pk, "moved_lines": moved}},
        )
    return keep


def _not_started(shipment: Shipment, what: str) -> None:
    if shipment.kind != ShipmentKind.SHIP:
        raise InvalidInput("shipment", f"shipment {shipment.pk} is a {shipment.get_kind_display().lower()}")
    if shipment.status not in NOT_STARTED:
        raise CancelRefused(
            f"shipment {shipment.pk} is {shipment.get_status_display().lower()}: the node has started it, "
            f"it can no longer be {what}d here"
        )
