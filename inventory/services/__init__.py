"""Inventory writes. Keyword-only arguments, an ``actor`` on every call, a transaction in each service.

ledger        receive, adjust, transfer, restock, damage, quarantine, put-away, returned units: StockMovement rows
reservations  stock_reserve / stock_reserve_order / stock_release / stock_consume (the locking is described there)
snapshot      stock_snapshot_apply: absolute WMS counts become adjustment movements, replay-safe; counts beyond
              a node's tolerance become proposals a person applies or rejects
inbound       backorders, preorders, inbound shipments and receiving

Every service that changes what may be promised announces it after commit (inventory.signals.stock_changed).
"""

from inventory.services.inbound import (
    InboundLineInput,
    ReceiveOutcome,
    backorders_allocate,
    inbound_create,
    inbound_receive,
    preorder_promisable,
    preorder_promise_lock,
)
from inventory.services.ledger import (
    RETURN_TARGETS,
    ReturnedUnits,
    StockChange,
    movements_apply,
    stock_adjust,
    stock_damage,
    stock_putaway,
    stock_quarantine,
    stock_quarantine_release,
    stock_receive,
    stock_refurbish_complete,
    stock_restock,
    stock_returns_apply,
    stock_transfer,
)
from inventory.services.reservations import (
    LineDemand,
    stock_consume,
    stock_release,
    stock_reserve,
    stock_reserve_order,
)
from inventory.services.snapshot import (
    SnapshotResult,
    stock_count_proposal_apply,
    stock_count_proposal_reject,
    stock_snapshot_apply,
)

__all__ = [
    "RETURN_TARGETS",
    "InboundLineInput",
    "LineDemand",
    "ReceiveOutcome",
    "ReturnedUnits",
    "SnapshotResult",
    "StockChange",
    "backorders_allocate",
    "inbound_create",
    "inbound_receive",
    "movements_apply",
    "preorder_promisable",
    "preorder_promise_lock",
    "stock_adjust",
    "stock_consume",
    "stock_count_proposal_apply",
    "stock_count_proposal_reject",
    "stock_damage",
    "stock_putaway",
    "stock_quarantine",
    "stock_quarantine_release",
    "stock_receive",
    "stock_refurbish_complete",
    "stock_release",
    "stock_reserve",
    "stock_reserve_order",
    "stock_restock",
    "stock_returns_apply",
    "stock_snapshot_apply",
    "stock_transfer",
]
