"""What every order service shares: the audit row (OrderEvent) and the order row lock."""

from __future__ import annotations

from typing import Any

from config.kernel.actors import Actor, audit_event_create
from config.kernel.errors import DomainError
from orders.models import Order, OrderEvent


class UnknownStatus(DomainError):
    code = "unknown_status"


def order_lock(order_id: int) -> Order:
    # Evaluated at once: a lazy locked queryset takes no lock.
    return Order.objects.select_for_update().get(pk=order_id)


def order_event_record(
    *,
    order: Order,
    kind: str,
    actor: Actor,
    reason: str = "",
    from_status: str = "",
    to_status: str = "",
    data: dict[str, Any] | None = None,
) -> OrderEvent:
    return audit_event_create(
        OrderEvent,
        order=order,
        kind=kind,
        actor=actor,
        reason=reason,
        from_status=from_status,
        to_status=to_status,
        data=data,
    )
