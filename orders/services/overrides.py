"""Manual overrides on an order that orders settles alone: the ship-to edited, the shipping service level
changed, a channel SKU mapped on the orders it held, and the exception cases a fix settles.

Overrides that move stock or shipments (cancel units, reroute, force a node) are fulfilment's services;
those that talk to the channel (resend a ship confirmation) are channels'. Each writes one OrderEvent
with actor, reason, before and after."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.db import transaction

from config.kernel.actors import Actor, actor_resolve
from config.kernel.errors import DomainError
from orders.models import (
    CaseStatus,
    ExceptionCase,
    ExceptionKind,
    HoldKind,
    Order,
    OrderLine,
    OrderStatus,
    ShipToAddress,
)
from orders.services.common import order_event_record, order_lock
from orders.services.exception_queue import exception_case_resolve
from orders.services.holds import hold_release
from orders.services.ingest import ship_to_usable
from orders.signals import order_ship_to_changed

SHIP_TO_FIELDS = (
    "name",
    "company",
    "line1",
    "line2",
    "line3",
    "city",
    "region",
    "postal_code",
    "country_code",
    "phone",
    "email",
)
# Once a parcel has left, a new address or service level changes nothing.
NOT_YET_SHIPPED = frozenset(
    {OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.BACKORDERED, OrderStatus.ALLOCATED, OrderStatus.RELEASED}
)
SHIPPING_METHOD_MAX = 64


def exception_cases_settle(*, order_id: int, kinds: Iterable[str], note: str, actor: Actor) -> list[int]:
    """Resolve the order's unresolved cases of these kinds (a fix settled them). Returns their ids."""
    ids = list(
        ExceptionCase.objects.filter(order_id=order_id, kind__in=list(kinds))
        .exclude(status=CaseStatus.RESOLVED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for case_id in ids:
        exception_case_resolve(case=case_id, note=note, actor=actor)
    return ids


def order_ship_to_edit(*, order: Order | int, changes: Mapping[str, str], reason: str, actor: Actor) -> Order:
    """Edit the ship-to of an order not shipped yet. The old values are kept in the "ship_to_edited" event;
    fulfilment tells the node (order_ship_to_changed). A usable address releases the address hold and
    resolves the address case."""
    name, _ = actor_resolve(actor)
    if not reason or not reason.strip():
        raise DomainError("editing the ship-to needs a reason")
    unknown = sorted(set(changes) - set(SHIP_TO_FIELDS))
    if unknown:
        raise DomainError(f"unknown address field(s): {', '.join(unknown)}")
    cleaned = {key: (value or "").strip() for key, value in changes.items()}
    if "country_code" in cleaned:
        cleaned["country_code"] = cleaned["country_code"].upper()
        if cleaned["country_code"] and len(cleaned["country_code"]) != 2:
            raise DomainError("country code: two letters (ISO 3166-1), e.g. US")
    for key, value in cleaned.items():
        limit = ShipToAddress._meta.get_field(key).max_length
        if len(value) > limit:
            raise DomainError(f"{key}: at most {limit} characters")
    order_id = order if isinstance(order, int) else order.pk
    with transaction.atomic():
        locked = order_lock(order_id)
        if locked.status not in NOT_YET_SHIPPED:
            raise DomainError(f"order {locked} is {locked.get_status_display().lower()}: its ship-to can't change")
        address = ShipToAddress.objects.select_for_update().get(pk=locked.ship_to_id) if locked.ship_to_id else None
        if address is not None and address.purged_at:
            raise DomainError(f"order {locked}: the buyer's address was purged")
        if address is None:
            address = ShipToAddress.objects.create()
            locked.ship_to = address
        before = {key: getattr(address, key) for key in cleaned if getattr(address, key) != cleaned[key]}
        after = {key: cleaned[key] for key in before}
        if not after:
            raise DomainError("nothing to change: the address already has these values")
        for key, value in after.items():
            setattr(address, key, value)
        address.save()
        if "name" in after:
            locked.customer_name = after["name"]
        locked.save(update_fields=["ship_to", "customer_name", "updated_at"])
        event = order_event_record(
            order=locked,
            kind="ship_to_edited",
            actor=actor,
            reason=reason.strip(),
            data={"before": before, "after": after},
        )
        if locked.status in (OrderStatus.BACKORDERED, OrderStatus.ALLOCATED, OrderStatus.RELEASED):
            order_ship_to_changed.send(
                sender=Order, order_id=locked.pk, event_id=event.pk, before=before, after=after, actor=name
            )
        usable = ship_to_usable(
            line1=address.line1, city=address.city, country_code=address.country_code, postal_code=address.postal_code
        )
        if usable:
            for hold_id in locked.holds.filter(kind=HoldKind.ADDRESS, released_at__isnull=True).values_list(
                "pk", flat=True
            ):
                hold_release(hold=hold_id, reason=f"ship-to edited: {reason.strip()}", actor=actor)
            exception_cases_settle(
                order_id=locked.pk, kinds=[ExceptionKind.ADDRESS], note=f"ship-to edited: {reason.strip()}", actor=actor
            )
    return locked


def order_shipping_method_set(*, order: Order | int, shipping_method: str, reason: str, actor: Actor) -> Order:
    """Change the shipping service level (e.g. Standard → Expedited) of an order not shipped yet."""
    actor_resolve(actor)
    method = (shipping_method or "").strip()
    if not method:
        raise DomainError("name the service level, e.g. Standard, Expedited, NextDay")
    if len(method) > SHIPPING_METHOD_MAX:
        raise DomainError(f"service level: at most {SHIPPING_METHOD_MAX} characters")
    if not reason or not reason.strip():
        raise DomainError("changing the service level needs a reason")
    order_id = order if isinstance(order, int) else order.pk
    with transaction.atomic():
        locked = order_lock(order_id)
        if locked.status not in NOT_YET_SHIPPED:
            raise DomainError(f"order {locked} is {locked.get_status_display().lower()}: its service level is final")
        before = locked.shipping_method
        if before == method:
            raise DomainError(f"order {locked} already ships {method}")
        locked.shipping_method = method
        locked.save(update_fields=["shipping_method", "updated_at"])
        order_event_record(
            order=locked,
            kind="service_level_changed",
            actor=actor,
            reason=reason.strip(),
            data={"before": {"shipping_method": before}, "after": {"shipping_method": method}},
        )
    return locked


def orders_channel_sku_mapped(
    *, account_id: int, channel_sku: str, sku_id: int, actor: Actor, reason: str = ""
) -> list[int]:
    """A channel SKU of an account is now mapped to Sku ``sku_id``: its unmapped lines on the account's
    orders not shipped yet get the SKU; an order with no unmapped line left has its unmapped-SKU hold
    released and its unmapped-SKU case resolved (routing then takes it on its next run).
    Returns the ids of the orders released."""
    name, _ = actor_resolve(actor)
    if not channel_sku:
        raise DomainError("a channel SKU is required")
    note = reason.strip() or f"channel SKU {channel_sku} mapped by {name}"
    released = []
    with transaction.atomic():
        order_ids = list(
            OrderLine.objects.filter(
                order__account_id=account_id,
                channel_sku=channel_sku,
                sku__isnull=True,
                order__status__in=list(NOT_YET_SHIPPED),
            )
            .order_by("order_id")
            .values_list("order_id", flat=True)
            .distinct()
        )
        for order_id in order_ids:
            locked = order_lock(order_id)
            lines = list(
                locked.lines.select_for_update().filter(channel_sku=channel_sku, sku__isnull=True).order_by("pk")
            )
            for line in lines:
                line.sku_id = sku_id
            OrderLine.objects.bulk_update(lines, ["sku"])
            order_event_record(
                order=locked,
                kind="sku_mapped",
                actor=actor,
                reason=note,
                data={
                    "channel_sku": channel_sku,
                    "lines": [line.pk for line in lines],
                    "before": {"sku": None},
                    "after": {"sku": sku_id},
                },
            )
            if locked.lines.filter(sku__isnull=True).exists():
                continue  # another SKU of the order is still unmapped: the hold stays
            for hold_id in locked.holds.filter(kind=HoldKind.UNMAPPED_SKU, released_at__isnull=True).values_list(
                "pk", flat=True
            ):
                hold_release(hold=hold_id, reason=note, actor=actor)
            exception_cases_settle(order_id=order_id, kinds=[ExceptionKind.UNMAPPED_SKU], note=note, actor=actor)
            released.append(order_id)
    return released


def order_lines_backorder_allow(*, order: Order | int, reason: str, actor: Actor) -> list[int]:
    """Let the order's open lines be backordered (wait for stock) instead of raising a routing exception.
    Returns the lines changed; one "backorder_allowed" event."""
    actor_resolve(actor)
    if not reason or not reason.strip():
        raise DomainError("allowing a backorder needs a reason")
    order_id = order if isinstance(order, int) else order.pk
    with transaction.atomic():
        locked = order_lock(order_id)
        if locked.status not in NOT_YET_SHIPPED:
            raise DomainError(f"order {locked} is {locked.get_status_display().lower()}: nothing to backorder")
        lines = [
            line
            for line in locked.lines.select_for_update().order_by("pk")
            if line.quantity_open > 0 and not line.is_backorder_allowed
        ]
        if not lines:
            raise DomainError(f"order {locked}: every open line may already be backordered")
        for line in lines:
            line.is_backorder_allowed = True
        OrderLine.objects.bulk_update(lines, ["is_backorder_allowed"])
        order_event_record(
            order=locked,
            kind="backorder_allowed",
            actor=actor,
            reason=reason.strip(),
            data={
                "lines": [line.pk for line in lines],
                "before": {"is_backorder_allowed": False},
                "after": {"is_backorder_allowed": True},
            },
        )
    return [line.pk for line in lines]
