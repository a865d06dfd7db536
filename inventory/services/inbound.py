"""Backorders, preorders and inbound supply.

Order routing (fulfilment) decides which short lines become backorders: the SKU allows it
(allow_backorder), the channel allows it (the line's is_backorder_allowed) or the SKU is a preorder with
enough incoming stock not yet promised (preorder_promisable, under preorder_promise_lock). Receiving an
inbound shipment adds stock and announces it (inventory.signals.stock_received) inside its transaction;
fulfilment answers by allocating the waiting backordered lines at that location (backorders_allocate),
earliest ship-by first.

Lock order everywhere here: stock rows (pk order), then order rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.db.models.functions import Coalesce

from inventory.errors import InvalidQuantity, StockConflict, UnknownStockItem
from inventory.models import (
    InboundKind,
    InboundLine,
    InboundShipment,
    InboundStatus,
    MovementReason,
    ReservationStatus,
    StockBucket,
    StockMovement,
)
from inventory.services.common import Actor, actor_resolve, ensure_known, positive_quantity, stock_changed_announce
from inventory.services.ledger import StockChange, stock_changes_apply_locked
from inventory.services.reservations import stock_reserve_locked
from inventory.signals import stock_received
from orders import services as order_services
from orders.models import LineStatus, Order, OrderLine, OrderStatus


def _line_need(line) -> int:
    active = sum(r.quantity for r in line.reservations.all() if r.status == ReservationStatus.ACTIVE)
    return max(line.quantity - line.quantity_cancelled - line.quantity_shipped - active, 0)


PREORDER_LOCK_NAMESPACE = 7301


def preorder_promise_lock(*, sku_ids: Iterable[int]) -> None:
    """Take the per-SKU preorder promise locks (transaction-scoped, in SKU order) before reading
    preorder_promisable and backordering against it: the next promiser of a SKU waits for this
    transaction's commit and then counts the lines it backordered, so two orders can't both be promised
    the last incoming units. Must run inside the transaction that backorders."""
    with connection.cursor() as cursor:
        for sku_id in sorted(set(sku_ids)):
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [PREORDER_LOCK_NAMESPACE, sku_id])


def preorder_promisable(*, sku_id: int, location_ids: Collection[int] | None = None) -> int:
    """Incoming units (open inbound lines, at ``location_ids`` when given: the nodes the order may ship from)
    not yet promised to backordered lines of this SKU."""
    shipments = InboundShipment.objects.filter(status__in=[InboundStatus.OPEN, InboundStatus.PARTIALLY_RECEIVED])
    if location_ids is not None:
        shipments = shipments.filter(location_id__in=list(location_ids))
    incoming = (
        InboundLine.objects.filter(sku_id=sku_id, shipment__in=shipments)
        .annotate(outstanding=F("quantity_expected") - F("quantity_received"))
        .filter(outstanding__gt=0)
        .aggregate(total=Sum("outstanding"))["total"]
        or 0
    )
    promised = (
        OrderLine.objects.filter(sku_id=sku_id, status="backordered").aggregate(
            total=Sum(F("quantity") - F("quantity_cancelled") - F("quantity_shipped"))
        )["total"]
        or 0
    )
    return max(incoming - promised, 0)


def _order_status_follow(order_id: int, *, actor: Actor) -> None:
    """Move the order to ALLOCATED / BACKORDERED when its open lines say so."""
    order = Order.objects.get(pk=order_id)
    statuses = set(
        order.lines.exclude(status=LineStatus.CANCELLED).exclude(sku__isnull=True).values_list("status", flat=True)
    )
    waiting = statuses & {LineStatus.OPEN, LineStatus.PENDING}
    if waiting or not statuses:
        return
    target = OrderStatus.BACKORDERED if LineStatus.BACKORDERED in statuses else OrderStatus.ALLOCATED
    if order.status in (OrderStatus.OPEN, OrderStatus.BACKORDERED) and order.status != target:
        order_services.order_transition(order=order.pk, to_status=target, actor=actor, reason="stock allocation")


# --- inbound shipments --------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundLineInput:
    sku_id: int
    quantity_expected: int
    expected_at: datetime | None = None


def inbound_create(
    *,
    reference: str,
    location_id: int,
    expected_at: datetime,
    lines: Sequence[InboundLineInput],
    actor: Actor,
    kind: str = InboundKind.PO,
    supplier: str = "",
) -> InboundShipment:
    """Record a PO or an ASN: expected supply at a location, the basis of preorder promises."""
    actor_resolve(actor)
    if not reference or not reference.strip():
        raise InvalidQuantity("an inbound shipment needs a reference (PO or ASN number)")
    if not lines:
        raise InvalidQuantity("an inbound shipment needs at least one line")
    for line in lines:
        positive_quantity(line.quantity_expected, f"inbound line {line.sku_id} quantity")
    ensure_known(sku_ids=[line.sku_id for line in lines], location_ids=[location_id])
    try:
        with transaction.atomic():
            shipment = InboundShipment.objects.create(
                reference=reference.strip(),
                location_id=location_id,
                expected_at=expected_at,
                kind=kind,
                supplier=supplier,
            )
            InboundLine.objects.bulk_create(
                InboundLine(
                    shipment=shipment,
                    sku_id=line.sku_id,
                    quantity_expected=line.quantity_expected,
                    expected_at=line.expected_at,
                )
                for line in lines
            )
    except IntegrityError as exc:
        raise StockConflict(f"an inbound shipment {reference!r} already exists") from exc
    return shipment


@dataclass
class ReceiveOutcome:
    shipment: InboundShipment
    movements: list[StockMovement]
    allocated_lines: list[int]
    replayed: bool = False


def inbound_receive(
    *,
    shipment_id: int,
    quantities: Mapping[int, int],
    actor: Actor,
    idempotency_key: str | None = None,
) -> ReceiveOutcome:
    """Receive units against an inbound shipment ({inbound_line_id: units}) into sellable stock at its
    location, then allocate the backordered lines waiting for those SKUs there (earliest ship-by first).

    Over-receipt is allowed. A replay with the same idempotency key changes nothing.
    """
    actor_resolve(actor)
    if not quantities:
        raise InvalidQuantity("nothing to receive")
    for line_id, quantity in quantities.items():
        positive_quantity(quantity, f"inbound line {line_id} quantity")
    keys = {line_id: f"inbound:{idempotency_key}:{line_id}" for line_id in quantities} if idempotency_key else {}
    with transaction.atomic():
        # The shipment row serialises receipts of one shipment: the replay check below is race-free.
        shipment = InboundShipment.objects.select_for_update().filter(pk=shipment_id).first()
        if shipment is None:
            raise UnknownStockItem(f"unknown inbound shipment {shipment_id}")
        if keys:
            done = list(StockMovement.objects.filter(idempotency_key__in=list(keys.values())).order_by("pk"))
            if done:
                return ReceiveOutcome(shipment=shipment, movements=done, allocated_lines=[], replayed=True)
        if shipment.status in (InboundStatus.RECEIVED, InboundStatus.CANCELLED):
            raise StockConflict(f"inbound shipment {shipment.reference} is {shipment.status}")
        lines = {line.pk: line for line in shipment.lines.select_related("sku")}
        if unknown := sorted(set(quantities) - set(lines)):
            raise UnknownStockItem(f"inbound line(s) {unknown} are not on shipment {shipment.reference}")
        name, user = actor_resolve(actor)
        changes = [
            StockChange(
                lines[line_id].sku_id,
                shipment.location_id,
                quantity,
                MovementReason.RECEIVE,
                StockBucket.SELLABLE,
                shipment.reference,
                "",
                keys.get(line_id),
            )
            for line_id, quantity in sorted(quantities.items())
        ]
        movements = stock_changes_apply_locked(changes, name=name, user=user)
        for line_id, quantity in quantities.items():
            InboundLine.objects.filter(pk=line_id).update(quantity_received=F("quantity_received") + quantity)
        outstanding = shipment.lines.filter(quantity_received__lt=F("quantity_expected")).exists()
        shipment.status = InboundStatus.PARTIALLY_RECEIVED if outstanding else InboundStatus.RECEIVED
        shipment.save(update_fields=["status", "updated_at"])
        sku_ids = sorted({lines[line_id].sku_id for line_id in quantities})
        # Whoever fills backorders (fulfilment) reserves the new units in this transaction.
        answers = stock_received.send(
            sender=InboundShipment, sku_ids=sku_ids, location_id=shipment.location_id, actor=actor
        )
        allocated = sorted({line_id for _, filled in answers for line_id in filled or ()})
    stock_changed_announce(sku_ids)
    return ReceiveOutcome(shipment=shipment, movements=movements, allocated_lines=allocated)


def backorders_allocate(
    *, sku_ids: Sequence[int], location_id: int, account_ids: Collection[int], actor: Actor
) -> list[int]:
    """Reserve stock at ``location_id`` for backordered lines of these SKUs, earliest ship-by first.

    Only lines of orders from ``account_ids`` (the channel accounts that may ship from that location: the
    caller knows them, inventory does not); each line whole or not at all. Returns the allocated line ids.
    Runs inside the caller's transaction when there is one.
    """
    if not account_ids:
        return []
    candidates = list(
        OrderLine.objects.filter(
            sku_id__in=list(sku_ids),
            status=LineStatus.BACKORDERED,
            order__marketplace_fulfilled=False,
            order__account_id__in=list(account_ids),
        )
        .exclude(order__status__in=[OrderStatus.CANCELLED, OrderStatus.RETURNED])
        .prefetch_related("reservations")
        .order_by(Coalesce("ship_by", "order__ship_by").asc(nulls_last=True), "order__placed_at", "id")
    )
    flat = []
    for line in candidates:
        need = _line_need(line)
        if need > 0:
            flat.append((line.pk, line.sku_id, location_id, need))
    if not flat:
        return []
    with transaction.atomic():
        reservations, _ = stock_reserve_locked(flat, all_or_nothing=False)
        allocated = sorted({r.order_line_id for r in reservations})
        order_services.order_lines_status_set(line_ids=allocated, status=LineStatus.ALLOCATED, actor=actor)
        order_of = {line.pk: line.order_id for line in candidates}
        by_order: dict[int, list[int]] = defaultdict(list)
        for line_id in allocated:
            by_order[order_of[line_id]].append(line_id)
        for order in Order.objects.filter(pk__in=sorted(by_order)).order_by("pk"):
            order_services.order_event_record(
                order=order,
                kind="backorder_allocated",
                actor=actor,
                data={"lines": by_order[order.pk], "location_id": location_id},
            )
            _order_status_follow(order.pk, actor=actor)
    stock_changed_announce(sku_ids)
    return allocated
