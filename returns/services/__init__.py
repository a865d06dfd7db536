"""Returns writes. Keyword-only arguments, an ``actor`` on every call, a transaction in each service, an
audit row (ReturnEvent, and an OrderEvent on the order) with each change.

common      errors, the RMA row lock, the per-order returns lock, the audit row
lifecycle   rma_create and the RMA state machine (authorize, in transit, close)
receiving   rma_receive / rma_inspect: units back at any node, by disposition, replay-safe
refunds     refund_create (capped, pushed through the outbox or to a person), the channel's answer
exchanges   exchange_create: a linked replacement order, routed now or once the return arrives
channel     channel returns in: each channel's return becomes (or updates) one RMA
"""

from returns.services.channel import (
    IngestOutcome,
    channel_return_ingest,
    channel_return_wait,
    channel_returns_retry,
    returns_sync_account,
)
from returns.services.common import ReturnConflict, ReturnError
from returns.services.exchanges import ExchangeLineInput, exchange_create, exchange_policy_for
from returns.services.lifecycle import (
    ReturnLineInput,
    line_units_held,
    rma_authorize,
    rma_close,
    rma_create,
    rma_in_transit,
    rma_transition,
)
from returns.services.receiving import InspectItem, ReceiveItem, ReceiveResult, rma_inspect, rma_receive
from returns.services.refunds import (
    RefundLineInput,
    refund_answer_record,
    refund_create,
    refund_manual_record,
    refund_record_from_channel,
    refunds_answers_sweep,
)

__all__ = [
    "ExchangeLineInput",
    "IngestOutcome",
    "InspectItem",
    "ReceiveItem",
    "ReceiveResult",
    "RefundLineInput",
    "ReturnConflict",
    "ReturnError",
    "ReturnLineInput",
    "channel_return_ingest",
    "channel_return_wait",
    "channel_returns_retry",
    "exchange_create",
    "exchange_policy_for",
    "line_units_held",
    "refund_answer_record",
    "refund_create",
    "refund_manual_record",
    "refund_record_from_channel",
    "refunds_answers_sweep",
    "returns_sync_account",
    "rma_authorize",
    "rma_close",
    "rma_create",
    "rma_in_transit",
    "rma_inspect",
    "rma_receive",
    "rma_transition",
]
