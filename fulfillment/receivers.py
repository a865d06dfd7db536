"""What fulfilment does when orders announces a change (orders never imports fulfilment)."""

from __future__ import annotations

from django.dispatch import receiver

from fulfillment.services import shipments_ship_to_changed
from orders.signals import order_ship_to_changed


@receiver(order_ship_to_changed, dispatch_uid="fulfillment.ship_to_changed")
def tell_the_node_of_a_new_ship_to(sender, *, order_id: int, before: dict, after: dict, actor: str, **kwargs) -> None:
    shipments_ship_to_changed(order_id=order_id, before=before, after=after, actor=actor)
