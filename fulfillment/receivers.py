"""What fulfilment does when orders or inventory announce a change (neither imports fulfilment)."""

from __future__ import annotations

from django.dispatch import receiver

from fulfillment.services import backorders_fill, shipments_ship_to_changed
from inventory.signals import stock_received
from orders.signals import order_ship_to_changed


@receiver(order_ship_to_changed, dispatch_uid="fulfillment.ship_to_changed")
def tell_the_node_of_a_new_ship_to(sender, *, order_id: int, before: dict, after: dict, actor: str, **kwargs) -> None:
    shipments_ship_to_changed(order_id=order_id, before=before, after=after, actor=actor)


@receiver(stock_received, dispatch_uid="fulfillment.backorders_fill")
def fill_backorders_from_a_receipt(sender, *, sku_ids: list[int], location_id: int, actor, **kwargs) -> list[int]:
    """Inside the receipt's transaction: the new units go to the backorders waiting for them there."""
    return backorders_fill(sku_ids=sku_ids, location_id=location_id, actor=actor)
