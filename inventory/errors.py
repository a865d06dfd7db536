"""Inventory domain errors. The API edge turns them into 4xx (config/kernel/api_errors.py), the console
into form errors."""

from __future__ import annotations

from dataclasses import dataclass

from config.kernel.errors import DomainError


@dataclass(frozen=True)
class Shortage:
    sku: str
    location: str
    wanted: int
    available: int

    def __str__(self) -> str:
        return f"{self.sku} at {self.location}: wanted {self.wanted}, available {self.available}"


class InventoryError(DomainError):
    code = "inventory_error"


class InsufficientStock(InventoryError):
    """Raised when a reservation cannot be met; names every short (sku, location)."""

    code = "insufficient_stock"
    http_status = 409

    def __init__(self, shortages: list[Shortage]) -> None:
        self.shortages = shortages
        first = shortages[0]
        self.sku, self.location, self.wanted, self.available = first.sku, first.location, first.wanted, first.available
        super().__init__("insufficient stock: " + "; ".join(str(s) for s in shortages))


class InvalidQuantity(InventoryError):
    code = "invalid_quantity"


class UnknownStockItem(InventoryError):
    """An unknown SKU, location, order line or reservation."""

    code = "unknown_stock_item"


class StockConflict(InventoryError):
    """The change would break an invariant (on hand below reserved, a bucket below zero…)."""

    code = "stock_conflict"
    http_status = 409


class IdempotencyConflict(InventoryError):
    """The idempotency key was already used for a different request."""

    code = "idempotency_conflict"
    http_status = 409


class ReservationError(InventoryError):
    code = "reservation_error"
    http_status = 409


class SnapshotInvalid(InventoryError):
    """A WMS snapshot with bad rows: nothing was applied. ``rows`` lists each offending row and why."""

    code = "snapshot_invalid"

    def __init__(self, rows: list[dict], *, http_status: int = 400) -> None:
        self.rows = rows
        self.http_status = http_status
        super().__init__(f"{len(rows)} snapshot row(s) rejected; nothing was applied")
