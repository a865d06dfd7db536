"""Buyers' PII purged after the order is done (Amazon Data Protection Policy; ASVS 8.3.8).

The order, its lines, amounts, dates and statuses stay (scorecards still count them); the buyer's name,
company, street lines, phone, email, postal code, city and coordinates are replaced by empty values, the
order's search name too, and personal values inside earlier audit rows (an address change's before and
after). Country and region are kept for reports. One ``pii_purged`` event per order records who and when,
without any of the purged values."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import DateTimeField, Max, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.kernel.actors import Actor, actor_resolve
from orders.models import Order, OrderEvent, OrderStatus, ShipToAddress
from orders.services.common import order_event_record

DONE_STATUSES = (OrderStatus.DELIVERED, OrderStatus.CANCELLED, OrderStatus.RETURNED)
PII_FIELDS = ("name", "company", "line1", "line2", "line3", "city", "postal_code", "phone", "email")
PII_KEYS = frozenset({*PII_FIELDS, "customer_name", "buyer_name", "address", "latitude", "longitude"})
PURGE_BATCH = 500


def orders_pii_due(*, account_id: int, retention_days: int, now: datetime | None = None) -> QuerySet[Order]:
    """The account's done orders whose PII is still kept and whose last move to a done status (or, without
    such an event, last update) is more than ``retention_days`` ago."""
    cutoff = (now or timezone.now()) - timezone.timedelta(days=retention_days)
    return (
        Order.objects.filter(account_id=account_id, status__in=DONE_STATUSES)
        .filter(Q(ship_to__purged_at__isnull=True) | (Q(ship_to__isnull=True) & ~Q(customer_name="")))
        .annotate(
            done_at=Coalesce(
                Max("events__created_at", filter=Q(events__to_status__in=DONE_STATUSES)),
                "updated_at",
                output_field=DateTimeField(),
            )
        )
        .filter(done_at__lt=cutoff)
        .order_by("pk")
    )


def _scrub(value):
    if isinstance(value, dict):
        return {k: ("" if k in PII_KEYS and not isinstance(v, dict | list) else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def orders_pii_purge(*, order_ids: list[int], actor: Actor, reason: str) -> list[int]:
    """Purge the buyer PII of these orders (those not purged yet). Returns the ids purged."""
    actor_resolve(actor)
    purged: list[int] = []
    now = timezone.now()
    for start in range(0, len(order_ids), PURGE_BATCH):
        chunk = sorted(order_ids[start : start + PURGE_BATCH])
        with transaction.atomic():
            orders = list(Order.objects.select_for_update(of=("self",)).filter(pk__in=chunk).order_by("pk"))
            address_ids = [o.ship_to_id for o in orders if o.ship_to_id]
            ShipToAddress.objects.filter(pk__in=address_ids, purged_at__isnull=True).update(
                **dict.fromkeys(PII_FIELDS, ""), latitude=None, longitude=None, purged_at=now
            )
            Order.objects.filter(pk__in=[o.pk for o in orders]).update(customer_name="")
            events = list(
                OrderEvent.objects.filter(order_id__in=[o.pk for o in orders]).exclude(data={}).only("pk", "data")
            )
            changed = []
            for event in events:
                scrubbed = _scrub(event.data)
                if scrubbed != event.data:
                    event.data = scrubbed
                    changed.append(event)
            OrderEvent.objects.bulk_update(changed, ["data"], batch_size=500)
            for order in orders:
                order_event_record(
                    order=order,
                    kind="pii_purged",
                    actor=actor,
                    reason=reason,
                    data={"purged_at": now.isoformat(), "fields": list(PII_FIELDS)},
                )
                purged.append(order.pk)
    return purged
