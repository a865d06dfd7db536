"""Order writes. Every function takes keyword-only arguments and an ``actor``: a user, or the name of a
system actor such as "sync:amazon-us". Each change writes its audit row in the same transaction.

common           the audit row (order_event_record) and the order row lock
creation         order_create
state            the order state machine: order_transition, the guarded transition paths, order_status_refresh
cancellations    who a cancel is charged to, units cancelled before any shipment carries them
holds            hold_place / hold_release, the address hold
exception_queue  exception cases: open, assign, acknowledge, resolve
pickup_store     a channel's pickup store mapped to a Location
line_status      many lines' statuses at once, for order routing and stock allocation
ingest           the batched channel ingest
bulk             bulk actions of the console: each item in its own transaction, refusals named
overrides        ship-to edit, service level, a channel SKU mapped on its held orders, cases a fix settles
returned         units back from the buyer (the returns app records them): returned quantities and statuses
privacy          buyers' PII purged after the order is done (data protection)
"""

from orders.services.bulk import (
    MAX_BULK_ITEMS,
    BulkError,
    BulkResult,
    bulk_apply,
    exception_cases_bulk,
    orders_holds_release_bulk,
)
from orders.services.cancellations import order_cancel_initiator_set, order_lines_cancel
from orders.services.common import UnknownStatus, order_event_record
from orders.services.creation import AddressInput, DuplicateOrder, LineInput, order_create
from orders.services.exception_queue import (
    CaseToOpen,
    ExceptionCaseError,
    exception_case_acknowledge,
    exception_case_assign,
    exception_case_dedupe_key,
    exception_case_open,
    exception_case_resolve,
    exception_cases_open_new,
)
from orders.services.holds import NO_SHIP_TO, address_case_key, hold_place, hold_release, order_address_hold
from orders.services.ingest import (
    IngestAddress,
    IngestError,
    IngestLine,
    IngestOrder,
    IngestResult,
    SkuRef,
    ingest_order_validate,
    orders_ingest_batch,
    ship_to_usable,
)
from orders.services.line_status import order_lines_reopen_unreserved, order_lines_status_set
from orders.services.overrides import (
    exception_cases_settle,
    order_lines_backorder_allow,
    order_ship_to_edit,
    order_shipping_method_set,
    orders_channel_sku_mapped,
)
from orders.services.pickup_store import orders_pickup_store_set
from orders.services.privacy import orders_pii_due, orders_pii_purge
from orders.services.returned import ReturnQuantityError, line_returned_status, order_lines_returned_record
from orders.services.state import order_status_refresh, order_transition, order_transition_path, orders_transition_path

__all__ = [
    "MAX_BULK_ITEMS",
    "NO_SHIP_TO",
    "AddressInput",
    "BulkError",
    "BulkResult",
    "CaseToOpen",
    "DuplicateOrder",
    "ExceptionCaseError",
    "IngestAddress",
    "IngestError",
    "IngestLine",
    "IngestOrder",
    "IngestResult",
    "LineInput",
    "ReturnQuantityError",
    "SkuRef",
    "UnknownStatus",
    "address_case_key",
    "bulk_apply",
    "exception_case_acknowledge",
    "exception_case_assign",
    "exception_case_dedupe_key",
    "exception_case_open",
    "exception_case_resolve",
    "exception_cases_bulk",
    "exception_cases_open_new",
    "exception_cases_settle",
    "hold_place",
    "hold_release",
    "ingest_order_validate",
    "line_returned_status",
    "order_address_hold",
    "order_cancel_initiator_set",
    "order_create",
    "order_event_record",
    "order_lines_backorder_allow",
    "order_lines_cancel",
    "order_lines_reopen_unreserved",
    "order_lines_returned_record",
    "order_lines_status_set",
    "order_ship_to_edit",
    "order_shipping_method_set",
    "order_status_refresh",
    "order_transition",
    "order_transition_path",
    "orders_channel_sku_mapped",
    "orders_holds_release_bulk",
    "orders_ingest_batch",
    "orders_pickup_store_set",
    "orders_pii_due",
    "orders_pii_purge",
    "orders_transition_path",
    "ship_to_usable",
]
