"""Order creation: an order with its lines and address, in one transaction or not at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction

from config.kernel.actors import Actor, actor_resolve
from config.kernel.errors import DomainError
from orders.models import LineStatus, Order, OrderLine, OrderStatus, ShipToAddress
from orders.services.common import UnknownStatus, order_event_record
from orders.services.ingest import IngestAddress


class DuplicateOrder(DomainError):
    code = "duplicate_order"
    http_status = 409


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
    replaces_order_id: int | None = None,
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
                replaces_order_id=replaces_order_id,
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
