"""What every returns service shares: errors, the RMA row lock, the per-order lock, the RMA's audit row."""

from __future__ import annotations

from typing import Any

from django.db import connection

from config.kernel.actors import Actor, audit_event_create
from config.kernel.errors import DomainError
from returns.models import ReturnAuthorization, ReturnEvent

# pg_advisory_xact_lock namespace: one order's returns and refunds are decided one at a time.
ORDER_LOCK_NAMESPACE = 7318
# 7319 is the returns read's (channel.SYNC_LOCK_NAMESPACE); 7320 the database's return-quantity guard's, per
# order line (returns migration 0005).

MAX_UNITS = 100_000


class ReturnError(DomainError):
    """Bad input for a return: the message names the line, SKU or value."""

    code = "return_error"


class ReturnConflict(DomainError):
    """The return's state refuses the change (more units than shipped, a closed RMA…)."""

    code = "return_conflict"
    http_status = 409


def order_returns_lock(order_id: int) -> None:
    """Serialise RMA creation, receipts and refunds of one order until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [ORDER_LOCK_NAMESPACE, int(order_id)])


def rma_lock(rma_id: int) -> ReturnAuthorization:
    # Evaluated at once: a lazy locked queryset takes no lock.
    try:
        return ReturnAuthorization.objects.select_for_update(of=("self",)).select_related("order").get(pk=rma_id)
    except ReturnAuthorization.DoesNotExist:
        raise ReturnError(f"RMA #{rma_id} does not exist") from None


def units_checked(value: Any, what: str) -> int:
    """A positive whole number of units, at most MAX_UNITS; the message names ``what``."""
    if isinstance(value, bool):
        raise ReturnError(f"{what}: quantity must be a whole number, got {value!r}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise ReturnError(f"{what}: quantity must be a whole number, got {value!r}")
    if value <= 0:
        raise ReturnError(f"{what}: quantity must be at least 1, got {value}")
    if value > MAX_UNITS:
        raise ReturnError(f"{what}: quantity {value} is implausibly large (at most {MAX_UNITS})")
    return value


def rma_event_record(
    *,
    rma: ReturnAuthorization,
    kind: str,
    actor: Actor,
    reason: str = "",
    from_status: str = "",
    to_status: str = "",
    data: dict[str, Any] | None = None,
) -> ReturnEvent:
    return audit_event_create(
        ReturnEvent,
        rma=rma,
        kind=kind,
        actor=actor,
        reason=reason,
        from_status=from_status,
        to_status=to_status,
        data=data,
    )
