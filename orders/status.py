"""The order state machine: the transition table and the pure derivation of partial states."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from orders.models import OrderStatus

S = OrderStatus

# Every move an order may make. Channel truth (a line shipped or cancelled outside Waybill) may
# arrive at any open stage, so shipping and cancelling are reachable from each of them.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.OPEN, S.CANCELLED, S.PARTIALLY_SHIPPED, S.SHIPPED}),
    S.OPEN: frozenset({S.ALLOCATED, S.BACKORDERED, S.PARTIALLY_SHIPPED, S.SHIPPED, S.CANCELLED}),
    S.BACKORDERED: frozenset({S.OPEN, S.ALLOCATED, S.PARTIALLY_SHIPPED, S.SHIPPED, S.CANCELLED}),
    # Back to OPEN/BACKORDERED when a node comes up short and the lines are re-routed.
    S.ALLOCATED: frozenset({S.RELEASED, S.OPEN, S.BACKORDERED, S.PARTIALLY_SHIPPED, S.SHIPPED, S.CANCELLED}),
    S.RELEASED: frozenset({S.ALLOCATED, S.OPEN, S.BACKORDERED, S.PARTIALLY_SHIPPED, S.SHIPPED, S.CANCELLED}),
    S.PARTIALLY_SHIPPED: frozenset({S.SHIPPED, S.DELIVERED, S.PARTIALLY_RETURNED, S.RETURNED}),
    S.SHIPPED: frozenset({S.DELIVERED, S.PARTIALLY_RETURNED, S.RETURNED}),
    S.DELIVERED: frozenset({S.PARTIALLY_RETURNED, S.RETURNED}),
    # Some units came back; more may follow (or the rest of a partly shipped order may still ship).
    S.PARTIALLY_RETURNED: frozenset({S.RETURNED}),
    S.CANCELLED: frozenset(),
    S.RETURNED: frozenset(),
}

# How far along an order is; a channel payload never moves an order to a lower rank.
RANK: dict[str, int] = {
    S.PENDING: 0,
    S.OPEN: 1,
    S.BACKORDERED: 2,
    S.ALLOCATED: 3,
    S.RELEASED: 4,
    S.PARTIALLY_SHIPPED: 5,
    S.SHIPPED: 6,
    S.DELIVERED: 7,
    S.PARTIALLY_RETURNED: 8,
    S.RETURNED: 9,
    S.CANCELLED: 10,
}


def can_transition(from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS.get(from_status, frozenset())


class LineQuantities(Protocol):
    quantity: int
    quantity_cancelled: int
    quantity_shipped: int
    quantity_returned: int


def determine_order_status(lines: Iterable[LineQuantities], current: str) -> str:
    """The status that the line quantities imply, or ``current`` when they don't decide it.

    Quantities decide cancelled, partially shipped, shipped and returned; the stages before
    shipping (open, allocated, released…) and delivery come from events, not quantities.
    """
    lines = list(lines)
    if not lines:
        return current
    if all(line.quantity_cancelled >= line.quantity for line in lines):
        return S.CANCELLED
    shipped = sum(line.quantity_shipped for line in lines)
    if shipped == 0:
        return current
    if any(line.quantity_shipped < line.quantity - line.quantity_cancelled for line in lines):
        return S.PARTIALLY_SHIPPED
    if all(line.quantity_returned >= line.quantity_shipped for line in lines):
        return S.RETURNED
    if any(line.quantity_returned for line in lines) and current in (
        S.PARTIALLY_SHIPPED,
        S.SHIPPED,
        S.DELIVERED,
        S.PARTIALLY_RETURNED,
    ):
        return S.PARTIALLY_RETURNED
    if current == S.DELIVERED:
        return S.DELIVERED
    return S.SHIPPED
