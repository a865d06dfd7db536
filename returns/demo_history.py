"""The returns and refunds of the demo's past (channels.demo_history): written here, by the app that owns them."""

from __future__ import annotations

from channels.demo_history import ACTOR, HistoryReturn, history_tables_analyze
from returns.models import Refund, ReturnAuthorization, ReturnLine, ReturnReason, ReturnStatus

# A history return names why the buyer sent it back; "other" needs a note no seeded return has.
HISTORY_REASONS = [reason for reason in ReturnReason.values if reason != ReturnReason.OTHER]


def history_returns_seed(planned: list[HistoryReturn]) -> None:
    """One completed RMA (every line received) for each returned order and one confirmed full refund for
    each returned or refunded order, as the history's orders and lines already record them."""
    for item in planned:
        rma = None
        if item.returned:
            rma = ReturnAuthorization.objects.create(
                rma_number=f"RMA-{item.order.external_id}",
                order=item.order,
                status=ReturnStatus.COMPLETED,
                reason=HISTORY_REASONS[int(item.reason_roll * len(HISTORY_REASONS))],
                created_by=ACTOR,
            )
            ReturnLine.objects.bulk_create(
                ReturnLine(rma=rma, order_line=line, quantity=line.quantity, quantity_received=line.quantity)
                for line in item.lines
            )
        Refund.objects.create(
            rma=rma,
            order=item.order,
            amount=item.order.total_amount,
            currency="USD",
            reason="Demo history",
            status="confirmed",
            created_by=ACTOR,
        )
    if planned:
        history_tables_analyze((ReturnAuthorization, ReturnLine, Refund))  # loaded in bulk, as the orders were
