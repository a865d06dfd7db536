"""Fulfilment domain errors. The API edge turns them into 4xx (config/kernel/api_errors.py), the console
into messages."""

from __future__ import annotations

from config.kernel.errors import DomainError


class FulfillmentError(DomainError):
    code = "fulfillment_error"
    http_status = 409


class InvalidInput(DomainError):
    """Bad input, naming the field: nothing was changed."""

    code = "invalid_input"
    http_status = 400

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class NotRoutable(FulfillmentError):
    code = "not_routable"


class RerouteRefused(FulfillmentError):
    code = "reroute_refused"


class CapacityExhausted(FulfillmentError):
    """A node's daily capacity was used up between planning and release (the router re-plans)."""

    code = "capacity_exhausted"

    def __init__(self, location_id: int, day) -> None:
        self.location_id = location_id
        self.day = day
        super().__init__(f"location {location_id} has no capacity left on {day}")


class ShipRefused(FulfillmentError):
    """The node must not ship this shipment now (a buyer's cancel request holds the order)."""

    code = "ship_refused"


class CancelRefused(FulfillmentError):
    """A buyer's cancel request cannot be accepted automatically (units picked, packed or shipped)."""

    code = "cancel_refused"


class CaseFixRefused(FulfillmentError):
    """A bulk fix does not apply to this case (another kind, no order, already resolved, still unsettled)."""

    code = "case_fix_refused"
