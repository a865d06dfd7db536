"""Fulfilment writes. Keyword-only arguments, an ``actor`` on every call, a transaction in each service.

route      order routing + reservation: orders_route / order_route / order_reroute
shipments  the shipment lifecycle, short picks, line cancels, store pickup
tracking   carrier/TMS scans, missing-scan and late-delivery checks
tokens     node API tokens, the API's stored idempotent answers (pruned), routing configuration versions
overrides  a person's overrides: cancel units, backorder, bulk reroute, resend a ship confirmation
detection  exceptions detected as events arrive (scans) and every few seconds (ship-by at risk, late)
"""

from fulfillment.services.detection import DetectResult, exceptions_detect, tracking_scan_cases
from fulfillment.services.route import RouteResult, backorders_fill, order_reroute, order_route, orders_route
from fulfillment.services.shipments import (
    BuyerCancelResult,
    ShortPickResult,
    order_buyer_cancel_accept,
    order_lines_cancelled_upstream,
    order_lines_shipped_upstream,
    pickup_expire,
    pickups_expire_due,
    shipment_acknowledge,
    shipment_cancel,
    shipment_line_cancel,
    shipment_pack,
    shipment_pick_start,
    shipment_picked_up,
    shipment_ready_for_pickup,
    shipment_ship,
    shipment_short_pick,
    shipment_transition,
    shipments_ship_to_changed,
)
from fulfillment.services.tokens import (
    idempotency_records_prune,
    node_token_create,
    node_token_revoke,
    routing_config_bump,
)
from fulfillment.services.tracking import (
    TrackingInput,
    TrackingResult,
    shipment_for_tracking,
    tracking_checks_run,
    tracking_events_record,
)

__all__ = [
    "BuyerCancelResult",
    "DetectResult",
    "RouteResult",
    "ShortPickResult",
    "TrackingInput",
    "TrackingResult",
    "backorders_fill",
    "exceptions_detect",
    "idempotency_records_prune",
    "node_token_create",
    "node_token_revoke",
    "order_buyer_cancel_accept",
    "order_lines_cancelled_upstream",
    "order_lines_shipped_upstream",
    "order_reroute",
    "order_route",
    "orders_route",
    "pickup_expire",
    "pickups_expire_due",
    "routing_config_bump",
    "shipment_acknowledge",
    "shipment_cancel",
    "shipment_for_tracking",
    "shipment_line_cancel",
    "shipment_pack",
    "shipment_pick_start",
    "shipment_picked_up",
    "shipment_ready_for_pickup",
    "shipment_ship",
    "shipment_short_pick",
    "shipment_transition",
    "shipments_ship_to_changed",
    "tracking_checks_run",
    "tracking_events_record",
    "tracking_scan_cases",
]
