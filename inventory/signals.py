"""Signals inventory sends so the outer apps can react without inventory importing them (DESIGN.md).

stock_changed   kwargs: sku_ids (sorted list of ids). Sent AFTER the commit of a change to what may be
                promised of these SKUs: sellable stock moved, stock was reserved, released or consumed,
                a snapshot applied, an inbound shipment received. Receivers read the committed stock
                (inventory.selectors.atp_by_sku_location) and queue their own work; a receiver that
                fails is logged and does not affect the others (the change is committed either way).

stock_received  kwargs: sku_ids (sorted list of ids), location_id, actor. Sent INSIDE the transaction of an
                inbound receipt, after the units are on hand and before the commit, so that whoever fills
                backorders (fulfilment: it knows which channel accounts may ship from the node) reserves the new
                units in the same transaction as the receipt. A receiver returns the order line ids it
                allocated (the receipt reports them); an exception rolls the receipt back.
"""

from __future__ import annotations

from django.dispatch import Signal

stock_changed = Signal()
stock_received = Signal()
