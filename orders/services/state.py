"""The order state machine: one transition service checks the table (orders/status.py), locks the row,
saves and writes the event; a guarded statement moves many orders along a path at once."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from django.db import connection, transaction
from psycopg.types.json import Jsonb

from config.kernel.actors import Actor, actor_resolve
from config.kernel.errors import DomainError, InvalidTransition
from orders.models import Order, OrderEvent, OrderStatus
from orders.services.common import UnknownStatus, order_event_record, order_lock
from orders.status import can_transition, determine_order_status


def order_transition(
    *,
    order: Order | int,
    to_status: str,
    actor: Actor,
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> Order:
    """Move an order to ``to_status`` if the table allows it; write the event. Same status: no-op."""
    actor_resolve(actor)
    if to_status not in OrderStatus.values:
        raise UnknownStatus(f"unknown order status {to_status!r}; expected one of {', '.join(OrderStatus.values)}")
    order_id = order if isinstance(order, int) else order.pk
    with transaction.atomic():
        locked = order_lock(order_id)
        from_status = locked.status
        if from_status == to_status:
            return locked
        if not can_transition(from_status, to_status):
            raise InvalidTransition(entity=f"order {locked}", from_status=from_status, to_status=to_status)
        locked.status = to_status
        locked.save(update_fields=["status", "updated_at"])
        order_event_record(
            order=locked,
            kind="status_changed",
            actor=actor,
            reason=reason,
            from_status=from_status,
            to_status=to_status,
            data=data,
        )
    if not isinstance(order, int):
        order.status = locked.status
    return locked


_TRANSITION_PATH_SQL = """
WITH o AS (
    UPDATE {order} SET status = %(to_status)s, updated_at = now()
     WHERE id = ANY(%(order_ids)s::bigint[]) AND status = %(from_status)s
    RETURNING id
)
INSERT INTO {event} (order_id, kind, from_status, to_status, actor_user_id, actor, reason, data, created_at)
SELECT o.id, 'status_changed', e.from_status, e.to_status, %(user_id)s, %(actor)s, e.reason, %(data)s, now()
  FROM o CROSS JOIN unnest(%(froms)s::text[], %(tos)s::text[], %(reasons)s::text[]) WITH ORDINALITY
       AS e(from_status, to_status, reason, n)
 ORDER BY o.id, e.n
RETURNING id, order_id
"""


def _transition_path_checked(path: Sequence[str], reason: str | Sequence[str], entity: str):
    steps = list(path)
    if len(steps) < 2:
        raise DomainError("a transition path needs a start status and at least one step")
    for status in steps:
        if status not in OrderStatus.values:
            raise UnknownStatus(f"unknown order status {status!r}; expected one of {', '.join(OrderStatus.values)}")
    steps = [OrderStatus(status).value for status in steps]
    pairs = list(itertools.pairwise(steps))
    for from_status, to_status in pairs:
        if not can_transition(from_status, to_status):
            raise InvalidTransition(entity=entity, from_status=from_status, to_status=to_status)
    reasons = [reason] * len(pairs) if isinstance(reason, str) else list(reason)
    if len(reasons) != len(pairs):
        raise DomainError(f"{len(pairs)} step(s) but {len(reasons)} reason(s)")
    return steps, pairs, reasons


def _transition_path_run(order_ids, steps, pairs, reasons, *, actor: Actor, data) -> list[tuple[int, int]]:
    """The guarded statement for ``order_ids``: [(event id, order id)] for the orders it moved."""
    name, user = actor_resolve(actor)
    sql = _TRANSITION_PATH_SQL.format(order=Order._meta.db_table, event=OrderEvent._meta.db_table)
    # No savepoint (two more round trips): a statement that matched no row changed nothing.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(
            sql,
            {
                "order_ids": list(order_ids),
                "from_status": steps[0],
                "to_status": steps[-1],
                "user_id": user.pk if user is not None else None,
                "actor": name,
                "data": Jsonb(data or {}),
                "froms": [a for a, _ in pairs],
                "tos": [b for _, b in pairs],
                "reasons": reasons,
            },
        )
        return [(row[0], row[1]) for row in cursor.fetchall()]


def orders_transition_path(
    *, order_ids: Sequence[int], path: Sequence[str], actor: Actor, reason: str | Sequence[str] = ""
) -> set[int]:
    """order_transition_path for many orders in one statement: each order still in ``path[0]`` moves along
    ``path`` with its events. Returns the ids of the orders moved; the others are left as they are."""
    steps, pairs, reasons = _transition_path_checked(path, reason, "orders")
    if not order_ids:
        return set()
    return {order_id for _, order_id in _transition_path_run(order_ids, steps, pairs, reasons, actor=actor, data=None)}


def order_transition_path(
    *,
    order: Order | int,
    path: Sequence[str],
    actor: Actor,
    reason: str | Sequence[str] = "",
    data: dict[str, Any] | None = None,
) -> list[OrderEvent]:
    """Move an order along ``path`` (its current status first, e.g. ["open", "allocated", "released"]) in
    one statement: the guarded ``UPDATE … WHERE status = path[0]`` locks the row and changes it once, and
    one "status_changed" event per step is inserted with it. Every step is checked against the table first.

    ``reason`` is one reason for every step or one per step. Raises InvalidTransition naming both states
    for an illegal step, or when the order is no longer in ``path[0]`` (then naming the status it is in):
    nothing is changed. Returns the events in step order.
    """
    name, user = actor_resolve(actor)
    order_id = order if isinstance(order, int) else order.pk
    steps, pairs, reasons = _transition_path_checked(path, reason, f"order #{order_id}")
    ids = [event_id for event_id, _ in _transition_path_run([order_id], steps, pairs, reasons, actor=actor, data=data)]
    if not ids:
        current = Order.objects.filter(pk=order_id).values_list("status", flat=True).first()
        if current is None:
            raise Order.DoesNotExist(f"order #{order_id} does not exist")
        raise InvalidTransition(entity=f"order #{order_id}", from_status=current, to_status=steps[1])
    if not isinstance(order, int):
        order.status = steps[-1]
    return [
        OrderEvent(
            pk=pk,
            order_id=order_id,
            kind="status_changed",
            actor=name,
            actor_user=user,
            reason=step_reason,
            from_status=from_status,
            to_status=to_status,
            data=data or {},
        )
        for pk, (from_status, to_status), step_reason in zip(ids, pairs, reasons, strict=True)
    ]


def order_status_refresh(*, order: Order | int, actor: Actor, reason: str = "") -> Order:
    """Apply the status that the line quantities imply (partially shipped, shipped, cancelled…)."""
    order_id = order if isinstance(order, int) else order.pk
    with transaction.atomic():
        locked = order_lock(order_id)
        derived = determine_order_status(locked.lines.all(), locked.status)
        if derived == locked.status:
            return locked
        return order_transition(order=locked, to_status=derived, actor=actor, reason=reason)
