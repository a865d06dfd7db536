"""The shipment lifecycle: released -> (acknowledged) -> picking -> packed -> shipped -> in transit ->
delivered, or exception / cancelled; for store pickup, ready for pickup -> picked up or expired.

One transition service checks the table (fulfillment/status.py), locks the shipment row, saves and
writes the OrderEvent. Units leaving the node (shipped, picked up) consume the reservations through
inventory's stock_consume, count the shipped quantities on the order lines and send
``shipment_shipped`` inside the transaction (see fulfillment/signals.py: the channels app queues the
ship confirmation in its outbox from there). Releasing stock goes through inventory's stock_release.

lifecycle           shipment_transition, acknowledge, pick, pack, ship
shorts_and_cancels  short picks (re-routed), line cancels, shipment cancels
upstream            changes made at the channel: units it cancelled or shipped itself
pickup              store pickup: ready, picked up, expired
buyer_requests      the buyer's cancel request accepted; a new ship-to told to the shipments
common              the row lock and event, units leaving, reservation bookkeeping
"""

from fulfillment.services.shipments.buyer_requests import (
    BuyerCancelResult,
    order_buyer_cancel_accept,
    shipments_ship_to_changed,
)
from fulfillment.services.shipments.lifecycle import (
    shipment_acknowledge,
    shipment_pack,
    shipment_pick_start,
    shipment_ship,
    shipment_transition,
)
from fulfillment.services.shipments.pickup import (
    pickup_expire,
    pickups_expire_due,
    shipment_picked_up,
    shipment_ready_for_pickup,
)
from fulfillment.services.shipments.shorts_and_cancels import (
    ShortPickResult,
    shipment_cancel,
    shipment_line_cancel,
    shipment_short_pick,
)
from fulfillment.services.shipments.upstream import (
    UpstreamShipResult,
    order_lines_cancelled_upstream,
    order_lines_shipped_upstream,
)

__all__ = [
    "BuyerCancelResult",
    "ShortPickResult",
    "UpstreamShipResult",
    "order_buyer_cancel_accept",
    "order_lines_cancelled_upstream",
    "order_lines_shipped_upstream",
    "pickup_expire",
    "pickups_expire_due",
    "shipment_acknowledge",
    "shipment_cancel",
    "shipment_line_cancel",
    "shipment_pack",
    "shipment_pick_start",
    "shipment_picked_up",
    "shipment_ready_for_pickup",
    "shipment_ship",
    "shipment_short_pick",
    "shipment_transition",
    "shipments_ship_to_changed",
]
