"""Helpers shared by the fulfilment services: node capacity, order-line bookkeeping, order follow-up."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

from django.db import connection
from django.db.models import F

from config.kernel.actors import Actor
from fulfillment.errors import CapacityExhausted
from fulfillment.models import NodeCapacityDay, Shipment
from fulfillment.status import HOLDS_STOCK, SHIPPED_STATES
from orders import services as order_services
from orders.models import LineStatus, Order, OrderLine, OrderStatus

_TAKE_SQL = """
INSERT INTO {table} AS t (location_id, day, capacity_used) VALUES (%(location_id)s, %(day)s, 1)
ON CONFLICT (location_id, day) DO UPDATE SET capacity_used = t.capacity_used + 1
 WHERE %(cap)s::integer IS NULL OR t.capacity_used < %(cap)s::integer
RETURNING capacity_used
"""


def capacity_take(*, location_id: int, day: date, daily_capacity: int | None, guarded: bool = True) -> int:
    """One shipment more on the node's day, in one guarded statement: never past daily_capacity.

    Returns the new count; raises CapacityExhausted when the day is full. The row lock is held to the
    commit, so callers take capacity last, after the stock rows (one lock order everywhere).
    """
    cap = daily_capacity if guarded else None
    if cap is not None and cap < 1:
        raise CapacityExhausted(location_id, day)
    with connection.cursor() as cursor:
        cursor.execute(
            _TAKE_SQL.format(table=NodeCapacityDay._meta.db_table),
            {"location_id": location_id, "day": day, "cap": cap},
        )
        row = cursor.fetchone()
    if row is None:
        raise CapacityExhausted(location_id, day)
    return row[0]


_TAKE_MANY_SQL = """
WITH gate AS (
    SELECT bool_and(pg_try_advisory_xact_lock(%(lock_namespace)s, k)) AS got
      FROM unnest(%(lock_keys)s::integer[]) AS k
), v AS (
    SELECT * FROM unnest(%(location_ids)s::bigint[], %(days)s::date[], %(counts)s::integer[], %(caps)s::integer[])
           AS v(location_id, day, n, cap)
)
INSERT INTO {table} AS t (location_id, day, capacity_used)
SELECT v.location_id, v.day, v.n FROM v, gate
 WHERE gate.got AND (v.cap IS NULL OR v.n <= v.cap)
 ORDER BY v.location_id, v.day
ON CONFLICT (location_id, day) DO UPDATE SET capacity_used = t.capacity_used + EXCLUDED.capacity_used
 WHERE t.capacity_used + EXCLUDED.capacity_used
       <= COALESCE((SELECT v.cap FROM v WHERE v.location_id = t.location_id AND v.day = t.day), 2147483647)
RETURNING location_id
"""


def capacity_take_many(
    *, takes: Iterable[tuple[int, date, int | None]], lock_namespace: int, lock_keys: Sequence[int]
) -> bool:
    """One shipment more per (location_id, day, daily_capacity) in ``takes``, in ONE guarded statement that
    also tries the transaction-level advisory locks (lock_namespace, key) of ``lock_keys`` without waiting:
    never past daily_capacity.

    Returns True when the lock was free and every day had room. False means the statement may have
    taken some of the days: the caller must roll its transaction back (no savepoint here, on purpose:
    it would cost two round trips on every call). Rows are written in (location, day) order, after the
    stock rows: the same lock order as capacity_take.
    """
    counts: dict[tuple[int, date], int] = {}
    caps: dict[tuple[int, date], int | None] = {}
    for location_id, day, cap in takes:
        counts[(location_id, day)] = counts.get((location_id, day), 0) + 1
        caps[(location_id, day)] = cap
    keys = sorted(counts)
    if not keys:
        return True
    with connection.cursor() as cursor:
        cursor.execute(
            _TAKE_MANY_SQL.format(table=NodeCapacityDay._meta.db_table),
            {
                "lock_namespace": lock_namespace,
                "lock_keys": sorted(lock_keys),
                "location_ids": [loc for loc, _ in keys],
                "days": [day for _, day in keys],
                "counts": [counts[k] for k in keys],
                "caps": [caps[k] for k in keys],
            },
        )
        return len(cursor.fetchall()) == len(keys)


def capacity_give_back(*, location_id: int, day: date | None) -> None:
    if day is not None:
        NodeCapacityDay.objects.filter(location_id=location_id, day=day, capacity_used__gt=0).update(
            capacity_used=F("capacity_used") - 1
        )


def order_follow_shipments(*, order_id: int, actor: Actor, reason: str = "") -> Order:
    """After a shipment changed: apply what the line quantities imply, then delivered when every shipped
    shipment is delivered, or back to OPEN/BACKORDERED when nothing is released any more."""
    order = order_services.order_status_refresh(order=order_id, actor=actor, reason=reason)
    statuses = set(Shipment.objects.filter(order_id=order_id).values_list("status", flat=True))
    if order.status == OrderStatus.SHIPPED and statuses and statuses <= {"delivered", "picked_up", "cancelled"}:
        if statuses & {"delivered", "picked_up"}:
            order = order_services.order_transition(
                order=order_id, to_status=OrderStatus.DELIVERED, actor=actor, reason=reason or "all delivered"
            )
    elif order.status in (OrderStatus.RELEASED, OrderStatus.ALLOCATED) and not (
        statuses & (HOLDS_STOCK | SHIPPED_STATES)
    ):
        backordered = OrderLine.objects.filter(order_id=order_id, status=LineStatus.BACKORDERED).exists()
        target = OrderStatus.BACKORDERED if backordered else OrderStatus.OPEN
        order = order_services.order_transition(
            order=order_id, to_status=target, actor=actor, reason=reason or "no shipment released any more"
        )
    return order
