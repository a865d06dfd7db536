"""Line statuses set by the apps that plan and reserve stock: order routing (fulfillment) and stock
allocation (inventory) move many lines at once. The only writers of OrderLine.status besides the
order services themselves; the one exception is order routing's batch statement (fulfillment's
_FAST_WRITE_SQL), which sets ALLOCATED on the lines it routes in the same statement as their shipments.

A cancelled line is final: it is never moved. No event is written here: each caller records the event
of what it did (routed, stock_allocated, backorder_allocated, shipment_cancelled) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import F

from config.kernel.actors import Actor, actor_resolve
from orders.models import LineStatus, OrderLine
from orders.services.common import UnknownStatus

# What planning and reserving stock may set; shipped, delivered and returned follow from line quantities.
SETTABLE = (LineStatus.OPEN, LineStatus.BACKORDERED, LineStatus.ALLOCATED)


def order_lines_status_set(*, line_ids: Iterable[int], status: str, actor: Actor) -> int:
    """Set ``status`` (open, backordered or allocated) on these lines, except cancelled ones, in one
    statement in the caller's transaction. Returns the number of lines written."""
    actor_resolve(actor)
    if status not in SETTABLE:
        raise UnknownStatus(f"a line's status can't be set to {status!r} here (only {', '.join(SETTABLE)})")
    ids = sorted(set(line_ids))
    if not ids:
        return 0
    return OrderLine.objects.filter(pk__in=ids).exclude(status=LineStatus.CANCELLED).update(status=status)


def order_lines_reopen_unreserved(*, line_ids: Iterable[int], actor: Actor) -> int:
    """Allocated lines left with open units and no active reservation go back to OPEN, so order routing
    finds them (after a shipment cancel or a reroute released their stock). Returns the number reopened."""
    actor_resolve(actor)
    ids = sorted(set(line_ids))
    if not ids:
        return 0
    return (
        OrderLine.objects.filter(pk__in=ids, status=LineStatus.ALLOCATED)
        .exclude(reservations__status="active")
        .filter(quantity__gt=F("quantity_shipped") + F("quantity_cancelled"))
        .update(status=LineStatus.OPEN)
    )
