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
from functools import cache

from django.db import transaction
from django.utils import timezone

from config.kernel.errors import DomainError
from orders.models import (
    CancelInitiator,
    CaseStatus,
    ExceptionCase,
    Hold,
    HoldKind,
    LineStatus,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    ShipToAddress,
)
from orders.services.exception_queue import exception_case_resolve
from orders.services.holds import NO_SHIP_TO, address_case_key, hold_place, hold_release, order_address_hold
from orders.signals import order_ship_to_changed
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
    "ship_to_usable",
]

ACTIVE_LINE_STATUS = {OrderStatus.PENDING: LineStatus.PENDING}
# Statuses in which nothing is routed yet: where the order goes (its pickup store) may still change.
ROUTABLE_AGAIN = frozenset({OrderStatus.PENDING, OrderStatus.OPEN})
SERVICE_LEVELS = tuple(value for value, _ in Order._meta.get_field("service_level").choices)
# Statuses in which nothing has shipped yet: what the channel changes (ship-to, dates, prices, SKUs) applies.
EDITABLE = frozenset(
    {OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.BACKORDERED, OrderStatus.ALLOCATED, OrderStatus.RELEASED}
)
# Statuses in which an order may have shipments at a node that must hear of a new ship-to.
AT_A_NODE = frozenset({OrderStatus.BACKORDERED, OrderStatus.ALLOCATED, OrderStatus.RELEASED})
# Line statuses with no unit routed yet: the line may still take another SKU.
UNROUTED_LINE_STATUSES = frozenset({LineStatus.PENDING, LineStatus.OPEN})
CENT = Decimal("0.01")
ADDRESS_FIELDS = ("name", "line1", "line2", "city", "region", "postal_code", "country_code", "phone", "email")
# Fields a channel often leaves out of a later payload (restricted buyer data): blank means "not sent".
CONTACT_FIELDS = frozenset({"name", "phone", "email"})
# Countries whose addresses carry no postal code (ISO 3166-1 alpha-2).
_NO_POSTAL_CODE = (
    "AE AG AO AW BF BI BJ BO BS BW BZ CD CF CG CI CK CM DJ DM ER FJ GA GD GH GM GQ GY HK JM KI KM KN KP LC ML MO "
    "MR MW NR NU QA RW SB SC SL SR ST SY TD TF TG TK TL TO TV UG VU YE ZW"
)
NO_POSTAL_CODE_COUNTRIES = frozenset(_NO_POSTAL_CODE.split())


def ship_to_usable(*, line1: str | None, city: str | None, country_code: str | None, postal_code: str | None) -> bool:
    """Whether a parcel can be labelled for this address: a street line, a city, a country code and a
    postal code where the country uses one. The one rule for ingest (hold) and order routing (guard)."""
    country = (country_code or "").strip().upper()
    if not (line1 or "").strip() or not (city or "").strip() or len(country) != 2:
        return False
    return bool((postal_code or "").strip()) or country in NO_POSTAL_CODE_COUNTRIES


def _usable(address) -> bool:
    if address is None:
        return False
    return ship_to_usable(
        line1=address.line1, city=address.city, country_code=address.country_code, postal_code=address.postal_code
    )


def _needs_ship_to(order: Order) -> bool:
    return not order.marketplace_fulfilled and order.service_level != "pickup"


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
    # The buyer's cancel request arrived with this payload (the order is held for it) / was withdrawn.
    cancel_requested: bool = False
    cancel_request_withdrawn: bool = False
    # Fields the channel changed on an order not shipped yet ("ship_to", "ship_by", "lines.unit_price"…).
    edited: list[str] = field(default_factory=list)


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
    if order.cancelled_by and order.cancelled_by not in CancelInitiator.values:
        raise IngestError(
            f"order {ref}: unknown cancelled_by {order.cancelled_by!r}; expected one of "
            f"{', '.join(CancelInitiator.values)} or empty"
        )
    if len(order.marketplace_id) > 64:
        raise IngestError(f"order {ref}: marketplace_id must be at most 64 characters")
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


def _address_row(address: IngestAddress) -> ShipToAddress:
    return ShipToAddress(**{name: _fit(name, getattr(address, name)) for name in ADDRESS_FIELDS})


@cache
def _max_length(name: str) -> int:
    return ShipToAddress._meta.get_field(name).max_length


def _fit(name: str, value: str) -> str:
    return (value or "")[: _max_length(name)]


def _new_order_rows(account_id: int, item: IngestOrder, sku_map: dict[str, SkuRef], now: datetime):
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
    address = _address_row(item.ship_to) if item.ship_to else None
    any_cancelled = any(line.quantity_cancelled for line in lines)
    order = Order(
        account_id=account_id,
        external_id=item.external_id,
        external_reference=item.external_reference[:128],
        status=status,
        channel_status=item.channel_status[:64],
        marketplace_fulfilled=item.marketplace_fulfilled,
        shipping_method=item.shipping_method[:64],
        service_level=item.service_level,
        channel_marketplace_id=item.marketplace_id,
        pickup_location_id=item.pickup_location_id,
        pickup_location_ref=item.pickup_location_ref,
        placed_at=item.placed_at,
        paid_at=item.paid_at,
        ship_by=item.ship_by or (min(ship_bys) if ship_bys else None),
        deliver_by=item.deliver_by,
        currency=item.currency,
        total_amount=total,
        customer_name=(item.ship_to.name if item.ship_to else "")[:255],
        cancel_requested_at=now if item.cancel_requested and status != OrderStatus.CANCELLED else None,
        cancel_request_reason=item.cancel_request_reason[:255] if item.cancel_requested else "",
        cancel_initiator=item.cancelled_by if any_cancelled else "",
        source_updated_at=item.source_updated_at,
    )
    return order, address, lines, unmapped


# The order fields the update path writes (with updated_at).
_WRITTEN_FIELDS = (
    "status",
    "channel_status",
    "source_updated_at",
    "paid_at",
    "service_level",
    "pickup_location_ref",
    "pickup_location_id",
    "ship_to",
    "ship_by",
    "deliver_by",
    "shipping_method",
    "total_amount",
    "customer_name",
    "channel_marketplace_id",
    "cancel_requested_at",
    "cancel_request_reason",
    "cancel_initiator",
)
# Read with the order row for the update path: every field it compares or writes (a deferred field would
# cost one query per order when bulk_update reads it).
_EXISTING_FIELDS = ("id", "account_id", "external_id", "marketplace_fulfilled", "on_hold", *_WRITTEN_FIELDS)


def orders_ingest_batch(
    *, account_id: int, orders: list[IngestOrder], sku_map: dict[str, SkuRef], actor: str
) -> list[IngestResult]:
    """Create or update a page of orders for one account; one result per input, in input order.

    An order that fails validation is reported as ``failed`` and nothing of it is written; the
    rest of the page goes on. Several payloads of one order in a page: the newest wins.

    After the rows are written (in bulk), the few orders that need it are held or released one by one:
    a buyer's cancel request (held at once; a withdrawn request releases it), an open ship order with no
    usable ship-to (held with an address case; released when a usable one arrives), an order whose
    unmapped SKUs are all mapped now (its unmapped-SKU hold released).
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
            .only(*_EXISTING_FIELDS)
            .order_by("pk")
        }
        fresh = [(i, item) for i, item in newest.values() if item.external_id not in existing]
        known = [(i, item) for i, item in newest.values() if item.external_id in existing]
        follow = _FollowUp()
        _create(account_id, fresh, sku_map, actor, results, now, follow)
        _update(existing, known, sku_map, actor, results, now, follow)
        follow.run(actor)
    return [results[i] for i in range(len(orders))]


@dataclass
class _FollowUp:
    """Holds to place or release once the page's rows are written: rare, so one service call each."""

    cancel_holds: list[tuple[int, str]] = field(default_factory=list)  # (order id, reason)
    cancel_withdrawn: list[int] = field(default_factory=list)
    address_holds: list[int] = field(default_factory=list)
    address_ok: list[int] = field(default_factory=list)  # held orders with a usable ship-to now
    sku_mapped: list[int] = field(default_factory=list)  # held orders whose lines are all mapped now
    ship_to_changed: list[tuple[int, OrderEvent, dict, dict]] = field(default_factory=list)

    def run(self, actor: str) -> None:
        for order_id, reason in self.cancel_holds:
            hold_place(
                order=order_id,
                kind=HoldKind.CANCEL_REQUEST,
                reason=f"The buyer asked the channel to cancel{': ' + reason if reason else ''}",
                actor=actor,
            )
        for order_id in self.address_holds:
            order_address_hold(order=order_id, actor=actor)
        releases = [
            (self.cancel_withdrawn, HoldKind.CANCEL_REQUEST, None, "the buyer withdrew the cancel request"),
            (self.address_ok, HoldKind.ADDRESS, NO_SHIP_TO, "the channel sent a usable ship-to address"),
            (self.sku_mapped, HoldKind.UNMAPPED_SKU, None, "every line's SKU is mapped now"),
        ]
        for order_ids, kind, reason, note in releases:
            if not order_ids:
                continue
            holds = Hold.objects.filter(order_id__in=order_ids, kind=kind, released_at__isnull=True)
            if reason is not None:
                holds = holds.filter(reason=reason)
            for hold_id, order_id in holds.order_by("order_id").values_list("pk", "order_id"):
                hold_release(hold=hold_id, reason=note, actor=actor)
                cases = ExceptionCase.objects.filter(
                    order_id=order_id, kind=kind, status__in=[CaseStatus.OPEN, CaseStatus.ACKNOWLEDGED]
                )
                if kind == HoldKind.ADDRESS:
                    cases = cases.filter(dedupe_key=address_case_key(order_id))
                for case_id in cases.order_by("pk").values_list("pk", flat=True):
                    exception_case_resolve(case=case_id, note=note, actor=actor)
        for order_id, event, before, after in self.ship_to_changed:
            order_ship_to_changed.send(
                sender=Order, order_id=order_id, event_id=event.pk, before=before, after=after, actor=actor
            )


def _create(account_id, fresh, sku_map, actor, results, now, follow: _FollowUp) -> None:
    if not fresh:
        return
    built = [(i, item, *_new_order_rows(account_id, item, sku_map, now)) for i, item in fresh]
    addresses = [address for *_, address, _, _ in built if address is not None]
    ShipToAddress.objects.bulk_create(addresses)
    for *_, order, address, _, _ in built:
        order.ship_to = address
    Order.objects.bulk_create([order for _, _, order, *_ in built])
    all_lines = []
    events = []
    for i, item, order, address, lines, unmapped in built:
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
        result = IngestResult(
            external_id=item.external_id,
            outcome="created",
            order_id=order.pk,
            to_status=order.status,
            unmapped_skus=sorted(set(unmapped)),
        )
        if order.cancel_requested_at is not None:
            events.append(_cancel_requested_event(order, item, actor))
            result.cancel_requested = True
            if not order.marketplace_fulfilled:
                follow.cancel_holds.append((order.pk, order.cancel_request_reason))
        if order.status == OrderStatus.OPEN and _needs_ship_to(order) and not _usable(address):
            follow.address_holds.append(order.pk)
        results[i] = result
    OrderLine.objects.bulk_create(all_lines)
    OrderEvent.objects.bulk_create(events)


def _cancel_requested_event(order: Order, item: IngestOrder, actor: str) -> OrderEvent:
    return OrderEvent(
        order_id=order.pk,
        kind="cancel_requested",
        actor=actor,
        reason=item.cancel_request_reason or "The buyer asked the channel to cancel",
        data={
            "before": {"cancel_requested_at": None},
            "after": {"cancel_requested_at": order.cancel_requested_at.isoformat()},
            "reason": item.cancel_request_reason,
            "channel_status": item.channel_status,
        },
    )


def _money(value: Decimal) -> Decimal:
    # As the column stores it: a price sent with more places is not a change on every payload.
    return Decimal(value).quantize(CENT)


def _json(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


class _Edits:
    """Before and after of the fields the channel changed on one order (JSON-ready)."""

    def __init__(self) -> None:
        self.before: dict = {}
        self.after: dict = {}
        self.not_applied: list[str] = []

    def order(self, name: str, before, after) -> None:
        self.before[name] = _json(before)
        self.after[name] = _json(after)

    def group(self, group: str, key: str | None, name: str, before, after) -> None:
        for side, value in ((self.before, before), (self.after, after)):
            bucket = side.setdefault(group, {})
            if key is not None:
                bucket = bucket.setdefault(key, {})
            bucket[name] = _json(value)

    @property
    def fields(self) -> list[str]:
        names = []
        for name, value in self.after.items():
            if name == "lines":
                names += sorted({f"lines.{field}" for changed in value.values() for field in changed})
            else:
                names.append(name)
        return names

    def __bool__(self) -> bool:
        return bool(self.after)


def _edit_address(order: Order, incoming: IngestAddress | None, row: ShipToAddress | None, edits: _Edits):
    """Apply the channel's ship-to to the order's address row (a new row when it had none).
    Returns (row to update, row to create)."""
    if incoming is None or not any(
        getattr(incoming, name) for name in ("line1", "city", "postal_code", "country_code")
    ):
        return None, None  # no address in this payload: keep what the order has
    if row is not None and row.purged_at is not None:
        return None, None
    created = row is None
    if created:
        row = ShipToAddress()
    for name in ADDRESS_FIELDS:
        value = _fit(name, getattr(incoming, name))
        if not value and name in CONTACT_FIELDS:
            continue
        if getattr(row, name) != value:
            edits.group("ship_to", None, name, getattr(row, name), value)
            setattr(row, name, value)
    if "ship_to" not in edits.after:
        return None, None
    if "name" in edits.after["ship_to"] and order.customer_name != row.name[:255]:
        edits.order("customer_name", order.customer_name, row.name[:255])
        order.customer_name = row.name[:255]
    return (None, row) if created else (row, None)


def _edit_order(order: Order, item: IngestOrder, lines: list[OrderLine], edits: _Edits) -> None:
    ship_bys = [line.ship_by for line in item.lines if line.ship_by]
    wanted = {
        "ship_by": item.ship_by or (min(ship_bys) if ship_bys else None),
        "deliver_by": item.deliver_by,
        "shipping_method": item.shipping_method[:64] or None,
    }
    for name, value in wanted.items():
        if value is not None and getattr(order, name) != value:
            edits.order(name, getattr(order, name), value)
            setattr(order, name, value)
    total = item.total_amount
    if total is None:
        total = sum((line.unit_price * line.quantity for line in lines), Decimal("0"))
    total = _money(total)
    if order.total_amount != total:
        edits.order("total_amount", order.total_amount, total)
        order.total_amount = total


def _edit_line(line: OrderLine, incoming: IngestLine, item: IngestOrder, sku_map, edits: _Edits, unmapped) -> None:
    key = line.external_id
    for name, value in (
        ("unit_price", _money(incoming.unit_price)),
        ("ship_by", incoming.ship_by or item.ship_by),
        ("deliver_by", incoming.deliver_by or item.deliver_by),
    ):
        if value is not None and getattr(line, name) != value:
            edits.group("lines", key, name, getattr(line, name), value)
            setattr(line, name, value)
    if incoming.channel_sku != line.channel_sku:
        if line.status not in UNROUTED_LINE_STATUSES or line.quantity_shipped or line.quantity_cancelled:
            # Units of the old SKU may be reserved or gone: a person decides.
            edits.not_applied.append(f"line {key}: channel SKU {line.channel_sku} → {incoming.channel_sku}")
            return
        ref = sku_map.get(incoming.channel_sku)
        edits.group("lines", key, "channel_sku", line.channel_sku, incoming.channel_sku)
        line.channel_sku = incoming.channel_sku
        if ref is None:
            unmapped.append(incoming.channel_sku)
        _map_line(line, ref, edits)
    elif line.sku_id is None and line.channel_sku in sku_map and line.status in UNROUTED_LINE_STATUSES:
        _map_line(line, sku_map[line.channel_sku], edits)  # the mapping arrived after the order


def _map_line(line: OrderLine, ref: SkuRef | None, edits: _Edits) -> None:
    sku_id = ref.sku_id if ref else None
    if line.sku_id != sku_id:
        edits.group("lines", line.external_id, "sku_id", line.sku_id, sku_id)
        line.sku_id = sku_id
    line.is_backorder_allowed = ref.allow_backorder if ref else False


def _update(existing, known, sku_map, actor, results, now, follow: _FollowUp) -> None:
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
    # The addresses of orders not shipped yet: edited, or checked before the order may be routed.
    address_ids = [order.ship_to_id for *_, order in changing if order.ship_to_id and order.status in EDITABLE]
    addresses = ShipToAddress.objects.in_bulk(address_ids) if address_ids else {}
    # Orders held for a cancel request that the channel may have withdrawn.
    withdrawable = [
        order.pk
        for _, item, order in changing
        if order.on_hold and order.cancel_requested_at and not item.cancel_requested
    ]
    cancel_held = (
        set(
            Hold.objects.filter(
                order_id__in=withdrawable, kind=HoldKind.CANCEL_REQUEST, released_at__isnull=True
            ).values_list("order_id", flat=True)
        )
        if withdrawable
        else set()
    )
    touched_lines: list[OrderLine] = []
    new_lines: list[OrderLine] = []
    touched_orders: list[Order] = []
    touched_addresses: list[ShipToAddress] = []
    new_addresses: list[tuple[Order, ShipToAddress]] = []
    events: list[OrderEvent] = []
    edited: list[tuple[Order, OrderEvent, _Edits]] = []
    for i, item, order in changing:
        current = lines_by_order[order.pk]
        unmapped = []
        cancelled_lines, shipped_lines = [], []
        from_status = order.status
        editable = from_status in EDITABLE
        edits = _Edits()
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
                if editable:
                    _edit_line(line, incoming, item, sku_map, edits, unmapped)
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
            if order.service_level != item.service_level:
                edits.order("service_level", order.service_level, item.service_level)
            order.service_level = item.service_level
            order.pickup_location_ref = item.pickup_location_ref
            order.pickup_location_id = item.pickup_location_id
        address = addresses.get(order.ship_to_id) if order.ship_to_id else None
        if editable:
            _edit_order(order, item, list(current.values()), edits)
            to_update, to_create = _edit_address(order, item.ship_to, address, edits)
            if to_update is not None:
                touched_addresses.append(to_update)
            if to_create is not None:
                new_addresses.append((order, to_create))
                address = to_create
        if item.marketplace_id and order.channel_marketplace_id != item.marketplace_id:
            edits.order("channel_marketplace_id", order.channel_marketplace_id, item.marketplace_id)
            order.channel_marketplace_id = item.marketplace_id
        if (cancelled_lines or any(line.quantity_cancelled for line in new_lines if line.order_id == order.pk)) and (
            item.cancelled_by and order.cancel_initiator != item.cancelled_by
        ):
            edits.order("cancel_initiator", order.cancel_initiator, item.cancelled_by)
            order.cancel_initiator = item.cancelled_by
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
        if edits or edits.not_applied:
            event = OrderEvent(
                order_id=order.pk,
                kind="channel_edited",
                actor=actor,
                reason="Changed on the channel: " + (", ".join(edits.fields) or "nothing applied"),
                data={
                    "before": edits.before,
                    "after": edits.after,
                    "not_applied": edits.not_applied,
                    "source_updated_at": item.source_updated_at.isoformat(),
                },
            )
            events.append(event)
            edited.append((order, event, edits))
        result = IngestResult(
            external_id=item.external_id,
            outcome="updated",
            order_id=order.pk,
            from_status=from_status,
            to_status=to_status,
            unmapped_skus=sorted(set(unmapped)),
            cancelled_lines=cancelled_lines,
            shipped_lines=shipped_lines,
            edited=edits.fields,
        )
        _cancel_request_follow(order, item, to_status, actor, now, events, result, follow, order.pk in cancel_held)
        _holds_follow(order, to_status, address, current.values(), follow)
        results[i] = result
    if new_addresses:
        ShipToAddress.objects.bulk_create([row for _, row in new_addresses])
        for order, row in new_addresses:
            order.ship_to = row
    if touched_addresses:
        ShipToAddress.objects.bulk_update(touched_addresses, list(ADDRESS_FIELDS))
    Order.objects.bulk_update(touched_orders, [*_WRITTEN_FIELDS, "updated_at"])
    if touched_lines:
        OrderLine.objects.bulk_update(
            touched_lines,
            [
                "quantity",
                "quantity_shipped",
                "quantity_cancelled",
                "channel_status",
                "status",
                "external_unit_ids",
                "unit_price",
                "ship_by",
                "deliver_by",
                "channel_sku",
                "sku",
                "is_backorder_allowed",
            ],
        )
    OrderLine.objects.bulk_create(new_lines)
    OrderEvent.objects.bulk_create(events)
    for order, event, edits in edited:
        if "ship_to" in edits.after and order.status in AT_A_NODE:
            follow.ship_to_changed.append((order.pk, event, edits.before["ship_to"], edits.after["ship_to"]))


def _cancel_request_follow(order, item, to_status, actor, now, events, result, follow: _FollowUp, held: bool) -> None:
    """A cancel request newly sent holds the order at once; one withdrawn while held releases it."""
    if item.cancel_requested and order.cancel_requested_at is None:
        if to_status == OrderStatus.CANCELLED:
            return  # already cancelled: nothing left to ask for
        order.cancel_requested_at = now
        order.cancel_request_reason = item.cancel_request_reason[:255]
        events.append(_cancel_requested_event(order, item, actor))
        result.cancel_requested = True
        if not order.marketplace_fulfilled:
            follow.cancel_holds.append((order.pk, order.cancel_request_reason))
    elif not item.cancel_requested and order.cancel_requested_at is not None and held:
        if to_status == OrderStatus.CANCELLED:
            return
        events.append(
            OrderEvent(
                order_id=order.pk,
                kind="cancel_request_withdrawn",
                actor=actor,
                reason="The buyer's cancel request is no longer on the channel",
                data={
                    "before": {
                        "cancel_requested_at": order.cancel_requested_at.isoformat(),
                        "cancel_request_reason": order.cancel_request_reason,
                    },
                    "after": {"cancel_requested_at": None, "cancel_request_reason": ""},
                },
            )
        )
        order.cancel_requested_at = None
        order.cancel_request_reason = ""
        result.cancel_request_withdrawn = True
        follow.cancel_withdrawn.append(order.pk)


def _holds_follow(order, to_status, address, lines, follow: _FollowUp) -> None:
    """An open ship order without a usable ship-to waits, held; a held one whose address became usable, or
    whose lines are all mapped now, has that hold released (the release checks the hold is there)."""
    if to_status == OrderStatus.OPEN and _needs_ship_to(order) and not _usable(address):
        follow.address_holds.append(order.pk)
    elif order.on_hold and _usable(address) and to_status in EDITABLE:
        follow.address_ok.append(order.pk)
    if order.on_hold and to_status in EDITABLE and all(line.sku_id for line in lines):
        follow.sku_mapped.append(order.pk)
