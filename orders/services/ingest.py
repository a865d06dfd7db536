"""Batched order ingest: a page of channel orders upserted in a handful of statements.

Per-row ORM writes top out near 280 orders/s (../shared/LIMITS.md); a page of orders is written
with one bulk INSERT per table (addresses, orders, lines, events) and one bulk UPDATE per table
for orders already known. The caller serialises ingest per account (channels holds a per-account
lock), so two writers never insert the same (account, external_id) at once; the unique
constraint still guards it.

The ``source_updated_at`` watermark: a payload older than what the order already reflects
changes nothing (equal is applied: channels stamp to the second), and a newer one never moves
the status to a lower RANK (orders.status). Line
quantities shipped and cancelled only grow: Waybill may know of a shipment the channel has not
reported yet.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from orders.errors import DomainError
from orders.models import LineStatus, Order, OrderEvent, OrderLine, OrderStatus, ShipToAddress
from orders.status import RANK, can_transition, determine_order_status

__all__ = [
    "IngestAddress",
    "IngestError",
    "IngestLine",
    "IngestOrder",
    "IngestResult",
    "SkuRef",
    "ingest_order_validate",
    "orders_ingest_batch",
]

ACTIVE_LINE_STATUS = {OrderStatus.PENDING: LineStatus.PENDING}
# Statuses in which nothing is routed yet: where the order goes (its pickup store) may still change.
ROUTABLE_AGAIN = frozenset({OrderStatus.PENDING, OrderStatus.OPEN})
SERVICE_LEVELS = tuple(value for value, _ in Order._meta.get_field("service_level").choices)


class IngestError(DomainError):
    code = "ingest_error"


@dataclass(frozen=True)
class IngestAddress:
    name: str = ""
    line1: str = ""
    line2: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    country_code: str = ""
    phone: str = ""
    email: str = ""


@dataclass(frozen=True)
class IngestLine:
    external_id: str
    channel_sku: str
    quantity: int
    unit_price: Decimal = Decimal("0")
    title: str = ""
    channel_status: str = ""
    quantity_shipped: int = 0
    quantity_cancelled: int = 0
    ship_by: datetime | None = None
    deliver_by: datetime | None = None
    external_unit_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class IngestOrder:
    external_id: str
    status: str
    channel_status: str
    placed_at: datetime
    source_updated_at: datetime
    currency: str
    lines: list[IngestLine]
    external_reference: str = ""
    total_amount: Decimal | None = None
    ship_by: datetime | None = None
    deliver_by: datetime | None = None
    paid_at: datetime | None = None
    shipping_method: str = ""
    marketplace_fulfilled: bool = False
    ship_to: IngestAddress | None = None
    # ship | pickup | ship_from_store; a pickup names the store: its Location (when mapped) and the
    # channel's id for it.
    service_level: str = "ship"
    pickup_location_id: int | None = None
    pickup_location_ref: str = ""
    # The buyer asked the channel to cancel the order.
    cancel_requested: bool = False
    cancel_request_reason: str = ""
    # Who cancelled the units the channel reports cancelled (orders.models.CancelInitiator), or "".
    cancelled_by: str = ""
    marketplace_id: str = ""


@dataclass(frozen=True)
class SkuRef:
    sku_id: int
    allow_backorder: bool = False


@dataclass
class IngestResult:
    external_id: str
    # created | updated | unchanged (not newer than the watermark) | failed
    outcome: str
    order_id: int | None = None
    from_status: str = ""
    to_status: str = ""
    error: str = ""
    unmapped_skus: list[str] = field(default_factory=list)
    # (order line id, units) the channel cancelled since the last payload, already counted on the line:
    # the caller takes them back out of shipments and reservations.
    cancelled_lines: list[tuple[int, int]] = field(default_factory=list)
    # Units of known lines the channel newly reports shipped (shipped outside Waybill's shipments).
    shipped_lines: list[tuple[int, int]] = field(default_factory=list)


def ingest_order_validate(order: IngestOrder) -> None:
    """Refuse what the database would refuse, naming the field, before anything is written."""
    ref = order.external_id or "(no id)"
    if not order.external_id or len(order.external_id) > 128:
        raise IngestError(f"order {ref}: external_id must be 1 to 128 characters")
    if order.status not in OrderStatus.values:
        raise IngestError(f"order {ref}: unknown status {order.status!r}")
    if order.placed_at.tzinfo is None or order.source_updated_at.tzinfo is None:
        raise IngestError(f"order {ref}: placed_at and source_updated_at must be timezone-aware")
    if len(order.currency) != 3:
        raise IngestError(f"order {ref}: currency must be a 3-letter code, got {order.currency!r}")
    if order.total_amount is not None and order.total_amount < 0:
        raise IngestError(f"order {ref}: total_amount must not be negative")
    if order.service_level not in SERVICE_LEVELS:
        raise IngestError(
            f"order {ref}: unknown service level {order.service_level!r}; expected one of {', '.join(SERVICE_LEVELS)}"
        )
    if len(order.pickup_location_ref) > 255:
        raise IngestError(f"order {ref}: pickup_location_ref must be at most 255 characters")
    if not order.lines:
        raise IngestError(f"order {ref}: has no lines")
    seen: set[str] = set()
    for line in order.lines:
        where = f"order {ref} line {line.external_id or '(no id)'}"
        if not line.external_id or line.external_id in seen:
            raise IngestError(f"{where}: line id missing or repeated")
        seen.add(line.external_id)
        if line.quantity <= 0:
            raise IngestError(f"{where}: quantity must be positive, got {line.quantity}")
        if line.quantity_shipped < 0 or line.quantity_cancelled < 0:
            raise IngestError(f"{where}: shipped and cancelled quantities must not be negative")
        if line.quantity_shipped > line.quantity:
            raise IngestError(f"{where}: shipped {line.quantity_shipped} exceeds ordered {line.quantity}")
        if line.unit_price < 0:
            raise IngestError(f"{where}: unit_price must not be negative")
        if not line.channel_sku or len(line.channel_sku) > 128:
            raise IngestError(f"{where}: channel SKU must be 1 to 128 characters")


def _line_status(quantity: int, shipped: int, cancelled: int, active: str) -> str:
    if cancelled >= quantity:
        return LineStatus.CANCELLED
    if shipped and shipped >= quantity - cancelled:
        return LineStatus.SHIPPED
    return active


def _status_after(current: str, incoming: str, lines: list) -> str:
    """The highest-ranked of what the channel says and what the line quantities imply, if reachable."""
    derived = determine_order_status(lines, current)
    best = current
    for candidate in (incoming, derived):
        if RANK[candidate] > RANK[best] and can_transition(current, candidate):
            best = candidate
    return best


def _new_order_rows(account_id: int, item: IngestOrder, sku_map: dict[str, SkuRef]):
    lines = []
    unmapped = []
    for line in item.lines:
        ref = sku_map.get(line.channel_sku)
        if ref is None:
            unmapped.append(line.channel_sku)
        cancelled = min(line.quantity_cancelled, line.quantity - line.quantity_shipped)
        lines.append(
            OrderLine(
                external_id=line.external_id,
                external_unit_ids=line.external_unit_ids,
                sku_id=ref.sku_id if ref else None,
                channel_sku=line.channel_sku,
                title=line.title[:500],
                quantity=line.quantity,
                quantity_shipped=line.quantity_shipped,
                quantity_cancelled=cancelled,
                unit_price=line.unit_price,
                currency=item.currency,
                channel_status=line.channel_status[:64],
                ship_by=line.ship_by or item.ship_by,
                deliver_by=line.deliver_by or item.deliver_by,
                is_backorder_allowed=ref.allow_backorder if ref else False,
            )
        )
    status = _status_after(OrderStatus.PENDING, item.status, lines)
    active = ACTIVE_LINE_STATUS.get(status, LineStatus.OPEN)
    for line in lines:
        line.status = _line_status(line.quantity, line.quantity_shipped, line.quantity_cancelled, active)
    ship_bys = [line.ship_by for line in lines if line.ship_by]
    total = item.total_amount
    if total is None:
        total = sum((line.unit_price * line.quantity for line in lines), Decimal("0"))
    address = ShipToAddress(**item.ship_to.__dict__) if item.ship_to else None
    order = Order(
        account_id=account_id,
        external_id=item.external_id,
        external_reference=item.external_reference[:128],
        status=status,
        channel_status=item.channel_status[:64],
        marketplace_fulfilled=item.marketplace_fulfilled,
        shipping_method=item.shipping_method[:64],
        service_level=item.service_level,
        pickup_location_id=item.pickup_location_id,
        pickup_location_ref=item.pickup_location_ref,
        placed_at=item.placed_at,
        paid_at=item.paid_at,
        ship_by=item.ship_by or (min(ship_bys) if ship_bys else None),
        deliver_by=item.deliver_by,
        currency=item.currency,
        total_amount=total,
        customer_name=(item.ship_to.name if item.ship_to else "")[:255],
        source_updated_at=item.source_updated_at,
    )
    return order, address, lines, unmapped


def orders_ingest_batch(
    *, account_id: int, orders: list[IngestOrder], sku_map: dict[str, SkuRef], actor: str
) -> list[IngestResult]:
    """Create or update a page of orders for one account; one result per input, in input order.

    An order that fails validation is reported as ``failed`` and nothing of it is written; the
    rest of the page goes on. Several payloads of one order in a page: the newest wins.
    """
    if not actor or not actor.strip():
        raise IngestError("an actor is required")
    results: dict[int, IngestResult] = {}
    newest: dict[str, tuple[int, IngestOrder]] = {}
    for index, item in enumerate(orders):
        try:
            ingest_order_validate(item)
        except IngestError as exc:
            results[index] = IngestResult(external_id=item.external_id, outcome="failed", error=str(exc))
            continue
        kept = newest.get(item.external_id)
        if kept is None or item.source_updated_at > kept[1].source_updated_at:
            if kept is not None:
                results[kept[0]] = IngestResult(external_id=item.external_id, outcome="unchanged")
            newest[item.external_id] = (index, item)
        else:
            results[index] = IngestResult(external_id=item.external_id, outcome="unchanged")
    now = timezone.now()
    with transaction.atomic():
        existing = {
            order.external_id: order
            for order in Order.objects.select_for_update()
            .filter(account_id=account_id, external_id__in=list(newest))
            .only("id", "external_id", "status", "source_updated_at", "channel_status")
            .order_by("pk")
        }
        fresh = [(i, item) for i, item in newest.values() if item.external_id not in existing]
        known = [(i, item) for i, item in newest.values() if item.external_id in existing]
        _create(account_id, fresh, sku_map, actor, results, now)
        _update(existing, known, sku_map, actor, results, now)
    return [results[i] for i in range(len(orders))]


def _create(account_id, fresh, sku_map, actor, results, now) -> None:
    if not fresh:
        return
    built = [(i, item, *_new_order_rows(account_id, item, sku_map)) for i, item in fresh]
    addresses = [address for *_, address, _, _ in built if address is not None]
    ShipToAddress.objects.bulk_create(addresses)
    for *_, order, address, _, _ in built:
        order.ship_to = address
    Order.objects.bulk_create([order for _, _, order, *_ in built])
    all_lines = []
    events = []
    for i, item, order, _, lines, unmapped in built:
        for line in lines:
            line.order_id = order.pk
        all_lines.extend(lines)
        events.append(
            OrderEvent(
                order_id=order.pk,
                kind="created",
                actor=actor,
                to_status=order.status,
                data={"lines": len(lines), "channel_status": item.channel_status, "source": "channel"},
            )
        )
        results[i] = IngestResult(
            external_id=item.external_id,
            outcome="created",
            order_id=order.pk,
            to_status=order.status,
            unmapped_skus=sorted(set(unmapped)),
        )
    OrderLine.objects.bulk_create(all_lines)
    OrderEvent.objects.bulk_create(events)


def _update(existing, known, sku_map, actor, results, now) -> None:
    if not known:
        return
    changing = []
    for i, item in known:
        order = existing[item.external_id]
        if order.source_updated_at and item.source_updated_at < order.source_updated_at:
            results[i] = IngestResult(external_id=item.external_id, outcome="unchanged", order_id=order.pk)
        else:
            changing.append((i, item, order))
    if not changing:
        return
    lines_by_order: dict[int, dict[str, OrderLine]] = defaultdict(dict)
    for line in OrderLine.objects.filter(order_id__in=[order.pk for *_, order in changing]).order_by("pk"):
        lines_by_order[line.order_id][line.external_id] = line
    touched_lines: list[OrderLine] = []
    new_lines: list[OrderLine] = []
    touched_orders: list[Order] = []
    events: list[OrderEvent] = []
    for i, item, order in changing:
        current = lines_by_order[order.pk]
        unmapped = []
        cancelled_lines, shipped_lines = [], []
        for incoming in item.lines:
            line = current.get(incoming.external_id)
            if line is None:
                ref = sku_map.get(incoming.channel_sku)
                if ref is None:
                    unmapped.append(incoming.channel_sku)
                line = OrderLine(
                    order_id=order.pk,
                    external_id=incoming.external_id,
                    external_unit_ids=incoming.external_unit_ids,
                    sku_id=ref.sku_id if ref else None,
                    channel_sku=incoming.channel_sku,
                    title=incoming.title[:500],
                    quantity=incoming.quantity,
                    unit_price=incoming.unit_price,
                    currency=item.currency,
                    status=LineStatus.OPEN,
                    ship_by=incoming.ship_by or item.ship_by,
                    deliver_by=incoming.deliver_by or item.deliver_by,
                    is_backorder_allowed=ref.allow_backorder if ref else False,
                )
                new_lines.append(line)
                current[incoming.external_id] = line
            else:
                touched_lines.append(line)
            line.quantity = max(line.quantity, incoming.quantity)
            before_shipped = line.quantity_shipped
            line.quantity_shipped = max(line.quantity_shipped, min(incoming.quantity_shipped, line.quantity))
            if line.pk and line.quantity_shipped > before_shipped:
                shipped_lines.append((line.pk, line.quantity_shipped - before_shipped))
            before_cancelled = line.quantity_cancelled
            line.quantity_cancelled = min(
                max(line.quantity_cancelled, incoming.quantity_cancelled), line.quantity - line.quantity_shipped
            )
            if line.pk and line.quantity_cancelled > before_cancelled:
                cancelled_lines.append((line.pk, line.quantity_cancelled - before_cancelled))
            line.channel_status = incoming.channel_status[:64]
            if incoming.external_unit_ids:
                line.external_unit_ids = incoming.external_unit_ids
        from_status = order.status
        to_status = _status_after(from_status, item.status, list(current.values()))
        active = ACTIVE_LINE_STATUS.get(to_status, LineStatus.OPEN)
        for line in current.values():
            keep = line.status if line.status not in (LineStatus.PENDING, LineStatus.OPEN) else active
            line.status = _line_status(line.quantity, line.quantity_shipped, line.quantity_cancelled, keep)
        before_channel = order.channel_status
        order.status = to_status
        order.channel_status = item.channel_status[:64]
        order.source_updated_at = item.source_updated_at
        order.paid_at = item.paid_at
        if from_status in ROUTABLE_AGAIN:
            # The buyer may change the pickup store (or its mapping arrives) until the order is routed.
            order.service_level = item.service_level
            order.pickup_location_ref = item.pickup_location_ref
            order.pickup_location_id = item.pickup_location_id
        order.updated_at = now
        touched_orders.append(order)
        if to_status != from_status:
            events.append(
                OrderEvent(
                    order_id=order.pk,
                    kind="status_changed",
                    actor=actor,
                    reason=f"Channel status {item.channel_status}",
                    from_status=from_status,
                    to_status=to_status,
                    data={
                        "channel_status": item.channel_status,
                        "source_updated_at": item.source_updated_at.isoformat(),
                    },
                )
            )
        elif before_channel != order.channel_status:
            events.append(
                OrderEvent(
                    order_id=order.pk,
                    kind="channel_updated",
                    actor=actor,
                    reason=f"Channel status {before_channel or '—'} → {item.channel_status}",
                    data={"before": before_channel, "after": item.channel_status},
                )
            )
        results[i] = IngestResult(
            external_id=item.external_id,
            outcome="updated",
            order_id=order.pk,
            from_status=from_status,
            to_status=to_status,
            unmapped_skus=sorted(set(unmapped)),
            cancelled_lines=cancelled_lines,
            shipped_lines=shipped_lines,
        )
    Order.objects.bulk_update(
        touched_orders,
        [
            "status",
            "channel_status",
            "source_updated_at",
            "paid_at",
            "updated_at",
            "service_level",
            "pickup_location_ref",
            "pickup_location_id",
        ],
    )
    if touched_lines:
        OrderLine.objects.bulk_update(
            touched_lines,
            ["quantity", "quantity_shipped", "quantity_cancelled", "channel_status", "status", "external_unit_ids"],
        )
    OrderLine.objects.bulk_create(new_lines)
    OrderEvent.objects.bulk_create(events)
