"""Shipped orders to return, and a node to receive them at."""

from __future__ import annotations

from decimal import Decimal

from orders.models import LineStatus, OrderStatus
from tests.factories import LocationFactory, OrderFactory, OrderLineFactory, SkuFactory


def shipped_order(*, units: int = 2, price: str = "25.00", lines: int = 1, **order_kwargs):
    order = OrderFactory(
        status=OrderStatus.SHIPPED, total_amount=Decimal(price) * units * lines + Decimal("5.00"), **order_kwargs
    )
    made = [
        OrderLineFactory(
            order=order,
            sku=SkuFactory(),
            quantity=units,
            quantity_shipped=units,
            unit_price=Decimal(price),
            status=LineStatus.SHIPPED,
        )
        for _ in range(lines)
    ]
    return order, made


def node():
    return LocationFactory()
