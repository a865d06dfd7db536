"""Units back from the buyer: the returns app records them here, on the order's own rows.

The order and its lines show returns through their quantities and statuses (partially returned,
returned); orders knows nothing of RMAs: the caller names the lines, the units and a reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import F

from config.kernel.actors import Actor, actor_resolve
from config.kernel.errors import DomainError
from orders.models import LineStatus, Order, OrderLine
from orders.services.common import order_event_record, order_lock
from orders.services.state import order_status_refresh


class ReturnQuantityError(DomainError):
    code = "return_quantity"
    http_status = 409


def line_returned_status(*, quantity_shipped: int, quantity_returned: int, current: str) -> str:
    """A line's status once ``quantity_returned`` of its ``quantity_shipped`` units came back."""
    if quantity_returned <= 0:
        return current
    if quantity_returned >= quantity_shipped:
        return LineStatus.RETURNED
    return LineStatus.PARTIALLY_RETURNED


def order_lines_returned_record(
    *,
    order_id: int,
    units: Mapping[int, int],
    actor: Actor,
    reference: str = "",
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> Order:
    """Add ``units`` ({order line id: units received back}) to the lines' returned quantities, set their
    statuses (partially returned / returned) and the order's, with one "units_returned" event.

    Refused (ReturnQuantityError naming the line, nothing written) when a line is not on the order or
    would have more units returned than shipped. Runs in the caller's transaction when there is one."""
    actor_resolve(actor)
    wanted = {int(line_id): int(n) for line_id, n in units.items() if n}
    if not wanted:
        raise ReturnQuantityError("no returned units to record")
    if any(n < 0 for n in wanted.values()):
        raise ReturnQuantityError("returned units must be positive")
    with transaction.atomic():
        order = order_lock(order_id)
        lines = {
            line.pk: line
            for line in OrderLine.objects.select_for_update()
            .filter(order_id=order_id, pk__in=list(wanted))
            .order_by("pk")
        }
        for line_id, n in sorted(wanted.items()):
            line = lines.get(line_id)
            if line is None:
                raise ReturnQuantityError(f"order line #{line_id} is not a line of order {order}")
            if line.quantity_returned + n > line.quantity_shipped:
                raise ReturnQuantityError(
                    f"line {line.external_id} ({line.channel_sku}) of order {order}: {n} more unit(s) returned "
                    f"would make {line.quantity_returned + n}, but only {line.quantity_shipped} shipped"
                )
        before = {}
        for line_id, n in sorted(wanted.items()):
            line = lines[line_id]
            before[line.external_id] = line.quantity_returned
            line.quantity_returned += n
            line.status = line_returned_status(
                quantity_shipped=line.quantity_shipped, quantity_returned=line.quantity_returned, current=line.status
            )
            OrderLine.objects.filter(pk=line_id).update(
                quantity_returned=F("quantity_returned") + n, status=line.status
            )
        order_event_record(
            order=order,
            kind="units_returned",
            actor=actor,
            reason=reason or f"units returned ({reference})".strip(),
            data={
                "reference": reference,
                "lines": {
                    lines[line_id].external_id: {"before": before[lines[line_id].external_id], "added": n}
                    for line_id, n in sorted(wanted.items())
                },
                **(data or {}),
            },
        )
        return order_status_refresh(order=order, actor=actor, reason=reason or "units returned")
