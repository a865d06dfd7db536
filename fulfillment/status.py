"""The shipment state machine: every move a shipment may make."""

from __future__ import annotations

from fulfillment.models import ShipmentStatus

S = ShipmentStatus

PRE_SHIP = frozenset({S.RELEASED, S.ACKNOWLEDGED, S.PICKING, S.PACKED})
# Units have left the node: reservations were consumed.
SHIPPED_STATES = frozenset({S.SHIPPED, S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.DELIVERED, S.EXCEPTION, S.PICKED_UP})
IN_FLIGHT = frozenset({S.SHIPPED, S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.EXCEPTION})
TERMINAL = frozenset({S.DELIVERED, S.CANCELLED, S.PICKED_UP, S.PICKUP_EXPIRED})
# Shipments that still hold reservations.
HOLDS_STOCK = PRE_SHIP | {S.READY_FOR_PICKUP}

TRANSITIONS: dict[str, frozenset[str]] = {
    # A store may hand a pickup over before it was marked ready (the buyer arrived while it was picked).
    S.RELEASED: frozenset(
        {S.ACKNOWLEDGED, S.PICKING, S.PACKED, S.SHIPPED, S.READY_FOR_PICKUP, S.PICKED_UP, S.CANCELLED}
    ),
    S.ACKNOWLEDGED: frozenset({S.PICKING, S.PACKED, S.SHIPPED, S.READY_FOR_PICKUP, S.PICKED_UP, S.CANCELLED}),
    S.PICKING: frozenset({S.PACKED, S.SHIPPED, S.READY_FOR_PICKUP, S.PICKED_UP, S.CANCELLED}),
    S.PACKED: frozenset({S.SHIPPED, S.READY_FOR_PICKUP, S.PICKED_UP, S.CANCELLED}),
    S.SHIPPED: frozenset({S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.DELIVERED, S.EXCEPTION}),
    S.IN_TRANSIT: frozenset({S.OUT_FOR_DELIVERY, S.DELIVERED, S.EXCEPTION}),
    S.OUT_FOR_DELIVERY: frozenset({S.IN_TRANSIT, S.DELIVERED, S.EXCEPTION}),
    S.EXCEPTION: frozenset({S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.DELIVERED}),
    S.READY_FOR_PICKUP: frozenset({S.PICKED_UP, S.PICKUP_EXPIRED, S.CANCELLED}),
    S.DELIVERED: frozenset(),
    S.CANCELLED: frozenset(),
    S.PICKED_UP: frozenset(),
    S.PICKUP_EXPIRED: frozenset(),
}


def can_transition(from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS.get(from_status, frozenset())
