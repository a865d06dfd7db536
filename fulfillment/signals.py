"""Signals fulfilment sends so other apps can react without fulfilment importing them.

Ship confirmations reach the channel through the outbox, which the channels app owns; fulfilment
never depends on the channels app (DESIGN.md: channels and fulfilment both call orders and inventory). So
fulfilment records the fact (the Shipment row, and an OrderEvent "shipped" whose data carries the
carrier, channel carrier codes, tracking number and URL, the lines and quantities and the actual
ship time) and sends a signal INSIDE the same transaction. The channels app connects a receiver
that writes its OutboxMessage with ``transaction`` still open, so the confirmation is queued if and
only if the shipment commits. Receivers must not do network I/O: they write rows; the outbox
worker pushes after commit.

shipment_shipped        kwargs: shipment_id, order_id, event_id (the OrderEvent with the details).
                        Sent once per shipment, when its units leave the node: shipped by a carrier,
                        or picked up by the buyer (BOPIS).
shipment_line_cancelled kwargs: shipment_id, order_id, order_line_id, quantity, reason, event_id.
                        Units of a line cancelled before they shipped (a line cancel, an expired
                        pickup): the channel may need a cancellation for them.
ship_confirmation_resend kwargs: shipment_id, order_id, event_id (the OrderEvent "ship_confirmation_resent",
                        whose data is the original "shipped" event's). A person asked for the shipment's
                        confirmation to be sent to the channel again.
pickup_ready            kwargs: shipment_id, order_id. A store pickup is ready: channels that tell
                        the buyer (Shopify local pickup) queue that notice.
"""

from __future__ import annotations

from django.dispatch import Signal

shipment_shipped = Signal()
shipment_line_cancelled = Signal()
pickup_ready = Signal()
ship_confirmation_resend = Signal()
