"""Signals orders sends so the outer apps can react without orders importing them (DESIGN.md).

Sent INSIDE the transaction that made the change: receivers write rows (an outbox message, a shipment
event, an exception case) that commit with it, and do no network I/O.

order_ship_to_changed   kwargs: order_id, event_id (the OrderEvent "channel_edited" whose data holds the
                        changed ship-to fields before and after), before, after ({field: value} of the
                        changed fields only), actor. Sent for an order that may already be at a node
                        (backordered, allocated, released): fulfilment tells the node.
order_lines_cancelled   kwargs: order_id, lines ([(order line id, units)]), reason, initiator, event_id.
                        Units no shipment carried (not routed yet) were cancelled by Waybill: the channel
                        may need a cancellation for them, like a shipment line cancel.
"""

from __future__ import annotations

from django.dispatch import Signal

order_ship_to_changed = Signal()
order_lines_cancelled = Signal()
