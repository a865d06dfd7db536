"""A channel's pickup store mapped to a Location: the account's unrouted orders that name it follow."""

from __future__ import annotations

from django.db import transaction

from config.kernel.actors import Actor, actor_resolve
from config.kernel.errors import DomainError
from orders.models import HoldKind, Order
from orders.services.common import order_event_record, order_lock
from orders.services.holds import hold_release
from orders.services.ingest import ROUTABLE_AGAIN


def orders_pickup_store_set(*, account_id: int, pickup_location_ref: str, location_id: int, actor: Actor) -> list[int]:
    """The channel's pickup store ``pickup_location_ref`` is now known to be Location ``location_id``: set
    it on the account's unrouted orders that name it and release their unmapped-store holds.
    Returns the ids of the orders changed. Orders already routed keep their store."""
    name, _ = actor_resolve(actor)
    if not pickup_location_ref:
        raise DomainError("a channel location id is required")
    changed = []
    with transaction.atomic():
        order_ids = list(
            Order.objects.filter(
                account_id=account_id,
                pickup_location_ref=pickup_location_ref,
                status__in=list(ROUTABLE_AGAIN),
            )
            .exclude(pickup_location_id=location_id)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        for order_id in order_ids:
            locked = order_lock(order_id)
            if locked.status not in ROUTABLE_AGAIN:
                continue
            before = locked.pickup_location_id
            locked.pickup_location_id = location_id
            locked.save(update_fields=["pickup_location", "updated_at"])
            order_event_record(
                order=locked,
                kind="pickup_store_set",
                actor=actor,
                reason=f"channel location {pickup_location_ref} mapped",
                data={"before": {"pickup_location": before}, "after": {"pickup_location": location_id}},
            )
            for hold_id in locked.holds.filter(kind=HoldKind.UNMAPPED_LOCATION, released_at__isnull=True).values_list(
                "pk", flat=True
            ):
                hold_release(hold=hold_id, reason=f"pickup store mapped by {name}", actor=actor)
            changed.append(order_id)
    return changed
