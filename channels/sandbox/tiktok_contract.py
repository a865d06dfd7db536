"""TikTok Shop's request shapes as JSON Schemas: the one model both the sandbox and the contract tests
validate with (TikTok publishes no machine-readable model).

Written from TikTok Shop's public API reference (partner.tiktokshop.com, pages "Get Order List 202309",
"Get Order Detail 202309", "Mark Package As Shipped 202309", "Cancel Order 202309", "Search Cancellations
202309", "Approve Cancellation 202309", "Update Inventory 202309", "Search Products 202502", "Get Refresh
Token" and "Common errors"); where the reference states a limit only in prose it is encoded here as a
schema keyword (page_size 1 to 100, at most 10 seller_skus per product search, ids as numeric strings).
Fields the reference marks optional and that Waybill never sends are still described, so a misspelt
field (``additionalProperties: false``) or a wrong type fails.

Query values arrive as text: ``query_violations`` turns a declared integer or boolean back into one
before validating, as the gateway does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from channels.sandbox.contract import ContractViolation

# Every TikTok id (order, line item, SKU, product, warehouse, shipping provider, cancellation) is a
# numeric string, at most 32 digits in the references.
ID = {"type": "string", "pattern": "^[0-9]{1,32}$"}
UNIX_SECONDS = {"type": "integer", "minimum": 0, "maximum": 99_999_999_999}
PAGE_SIZE = {"type": "integer", "minimum": 1, "maximum": 100}
PAGE_TOKEN = {"type": "string", "maxLength": 1024}
# The query of a paged, sorted search (orders, cancellations).
SEARCH_QUERY = {
    "page_size": (PAGE_SIZE, True),
    "page_token": (PAGE_TOKEN, False),
    "sort_field": ({"enum": ["create_time", "update_time"]}, False),
    "sort_order": ({"enum": ["ASC", "DESC"]}, False),
}

ORDER_STATUSES = [
    "UNPAID",
    "ON_HOLD",
    "AWAITING_SHIPMENT",
    "PARTIALLY_SHIPPING",
    "AWAITING_COLLECTION",
    "IN_TRANSIT",
    "DELIVERED",
    "COMPLETED",
    "CANCELLED",
]
CANCEL_STATUSES = [
    "CANCELLATION_REQUEST_PENDING",
    "CANCELLATION_REQUEST_SUCCESS",
    "CANCELLATION_REQUEST_CANCEL",
    "CANCELLATION_REQUEST_COMPLETE",
]
RETURN_TYPES = ["REFUND", "RETURN_AND_REFUND", "REPLACEMENT"]
RETURN_STATUSES = [
    "RETURN_OR_REFUND_REQUEST_PENDING",
    "REFUND_OR_RETURN_REQUEST_REJECT",
    "AWAITING_BUYER_SHIP",
    "BUYER_SHIPPED_ITEM",
    "REJECT_RECEIVE_PACKAGE",
    "RETURN_OR_REFUND_REQUEST_SUCCESS",
    "RETURN_OR_REFUND_REQUEST_CANCEL",
    "RETURN_OR_REFUND_REQUEST_COMPLETE",
]
RETURN_DECISIONS = ["APPROVE_REFUND", "APPROVE_RETURN", "APPROVE_RECEIVED_PACKAGE", "APPROVE_REPLACEMENT"]
PRODUCT_STATUSES = [
    "ALL",
    "DRAFT",
    "PENDING",
    "FAILED",
    "ACTIVATE",
    "SELLER_DEACTIVATED",
    "PLATFORM_DEACTIVATED",
    "FREEZE",
    "DELETED",
]


@dataclass(frozen=True)
class TikTokOperation:
    method: str
    path: str
    # {name: (schema, required)}
    query: dict[str, tuple[dict, bool]]
    body: dict | None = None

    def query_violations(self, query: dict[str, str]) -> list[ContractViolation]:
        violations = []
        for name, (schema, required) in self.query.items():
            raw = query.get(name)
            if raw is None:
                if required:
                    violations.append(ContractViolation(f"query.{name}", "is required"))
                continue
            value: Any = raw
            if schema.get("type") == "integer":
                if not re.fullmatch(r"-?[0-9]+", raw):
                    violations.append(ContractViolation(f"query.{name}", f"{raw!r} is not an integer"))
                    continue
                value = int(raw)
            elif schema.get("type") == "boolean":
                value = {"true": True, "false": False}.get(raw, raw)
            for error in Draft202012Validator(schema).iter_errors(value):
                violations.append(ContractViolation(f"query.{name}", error.message[:500]))
        return violations

    def body_violations(self, body: Any) -> list[ContractViolation]:
        if self.body is None:
            return []
        violations = []
        for error in sorted(Draft202012Validator(self.body).iter_errors(body), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(part) for part in error.absolute_path)
            violations.append(ContractViolation(f"body.{where}" if where else "body", error.message[:500]))
        return violations

    def violations(self, *, query: dict[str, str] | None = None, body: Any = None) -> list[ContractViolation]:
        return self.query_violations(query or {}) + self.body_violations(body)


def _object(properties: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": properties, "required": required or [], "additionalProperties": False}


def _ids(max_items: int | None = None, min_items: int = 0) -> dict:
    schema: dict = {"type": "array", "items": ID, "minItems": min_items, "uniqueItems": True}
    if max_items is not None:
        schema["maxItems"] = max_items
    return schema


OPERATIONS: dict[tuple[str, str], TikTokOperation] = {
    op.method + " " + op.path: op
    for op in [
        TikTokOperation(
            "GET",
            "/api/v2/token/refresh",
            query={
                "app_key": ({"type": "string", "minLength": 1}, True),
                "app_secret": ({"type": "string", "minLength": 1}, True),
                "refresh_token": ({"type": "string", "minLength": 1}, True),
                "grant_type": ({"const": "refresh_token"}, True),
            },
        ),
        TikTokOperation(
            "POST",
            "/order/202309/orders/search",
            query=SEARCH_QUERY,
            body=_object(
                {
                    "order_status": {"enum": ORDER_STATUSES},
                    "create_time_ge": UNIX_SECONDS,
                    "create_time_lt": UNIX_SECONDS,
                    "update_time_ge": UNIX_SECONDS,
                    "update_time_lt": UNIX_SECONDS,
                    "shipping_type": {"enum": ["TIKTOK", "SELLER"]},
                    "buyer_user_id": {"type": "string"},
                    "is_buyer_request_cancel": {"type": "boolean"},
                    "warehouse_ids": _ids(),
                }
            ),
        ),
        TikTokOperation(
            "GET",
            "/order/202309/orders",
            # A comma-separated list of 1 to 50 order ids.
            query={"ids": ({"type": "string", "pattern": "^[0-9]{1,32}(,[0-9]{1,32}){0,49}$"}, True)},
        ),
        TikTokOperation(
            "POST",
            "/fulfillment/202309/orders/{order_id}/packages",
            query={},
            body=_object(
                {
                    "tracking_number": {"type": "string", "minLength": 1, "maxLength": 64},
                    "shipping_provider_id": ID,
                    "order_line_item_ids": _ids(min_items=1),
                },
                ["tracking_number", "shipping_provider_id", "order_line_item_ids"],
            ),
        ),
        TikTokOperation("GET", "/logistics/202309/delivery_options/{delivery_option_id}/shipping_providers", query={}),
        TikTokOperation(
            "POST",
            "/return_refund/202309/cancellations",
            query={},
            body={
                **_object(
                    {
                        "order_id": ID,
                        "order_line_item_ids": _ids(min_items=1),
                        "skus": {
                            "type": "array",
                            "minItems": 1,
                            "items": _object(
                                {"sku_id": ID, "quantity": {"type": "integer", "minimum": 1}}, ["sku_id", "quantity"]
                            ),
                        },
                        "cancel_reason": {"type": "string", "minLength": 1, "maxLength": 128},
                    },
                    ["order_id", "cancel_reason"],
                ),
                # Units are named either by line item id or by SKU and quantity, never both.
                "not": {"required": ["order_line_item_ids", "skus"]},
            },
        ),
        TikTokOperation(
            "POST",
            "/return_refund/202309/cancellations/search",
            query=SEARCH_QUERY,
            body=_object(
                {
                    "cancel_ids": _ids(max_items=50),
                    "order_ids": _ids(max_items=50),
                    "buyer_user_ids": {"type": "array", "items": {"type": "string"}},
                    "cancel_types": {"type": "array", "items": {"enum": ["CANCEL", "BUYER_CANCEL"]}},
                    "cancel_status": {"type": "array", "items": {"enum": CANCEL_STATUSES}},
                    "create_time_ge": UNIX_SECONDS,
                    "create_time_lt": UNIX_SECONDS,
                    "update_time_ge": UNIX_SECONDS,
                    "update_time_lt": UNIX_SECONDS,
                    "locale": {"type": "string"},
                }
            ),
        ),
        TikTokOperation(
            "POST",
            "/return_refund/202309/cancellations/{cancel_id}/approve",
            query={"idempotency_key": ({"type": "string", "minLength": 1, "maxLength": 255}, False)},
        ),
        # Returns and refunds (issue #18): "Search Returns 202309" and "Approve Return 202309".
        TikTokOperation(
            "POST",
            "/return_refund/202309/returns/search",
            query=SEARCH_QUERY,
            body=_object(
                {
                    "return_ids": _ids(max_items=50),
                    "order_ids": _ids(max_items=50),
                    "buyer_user_ids": {"type": "array", "items": {"type": "string"}},
                    "return_types": {"type": "array", "items": {"enum": RETURN_TYPES}},
                    "return_status": {"type": "array", "items": {"enum": RETURN_STATUSES}},
                    "create_time_ge": UNIX_SECONDS,
                    "create_time_lt": UNIX_SECONDS,
                    "update_time_ge": UNIX_SECONDS,
                    "update_time_lt": UNIX_SECONDS,
                    "locale": {"type": "string"},
                }
            ),
        ),
        TikTokOperation(
            "POST",
            "/return_refund/202309/returns/{return_id}/approve",
            query={"idempotency_key": ({"type": "string", "minLength": 1, "maxLength": 255}, False)},
            body=_object(
                {
                    "decision": {"enum": RETURN_DECISIONS},
                    "buyer_keep_item": {"type": "boolean"},
                },
                ["decision"],
            ),
        ),
        TikTokOperation(
            "POST",
            "/product/202309/products/{product_id}/inventory/update",
            query={},
            body=_object(
                {
                    "skus": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 100,
                        "items": _object(
                            {
                                "id": ID,
                                "inventory": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": _object(
                                        {
                                            "warehouse_id": ID,
                                            "quantity": {"type": "integer", "minimum": 0, "maximum": 999_999},
                                        },
                                        ["quantity"],
                                    ),
                                },
                            },
                            ["id", "inventory"],
                        ),
                    }
                },
                ["skus"],
            ),
        ),
        TikTokOperation(
            "POST",
            "/product/202502/products/search",
            query={"page_size": (PAGE_SIZE, True), "page_token": (PAGE_TOKEN, False)},
            body=_object(
                {
                    "status": {"enum": PRODUCT_STATUSES},
                    # Search Products refuses more than 10 seller SKUs in one filter (12019027).
                    "seller_skus": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 10,
                        "items": {"type": "string", "minLength": 1, "maxLength": 50},
                    },
                    "sku_ids": _ids(max_items=10),
                    "create_time_ge": UNIX_SECONDS,
                    "create_time_le": UNIX_SECONDS,
                    "update_time_ge": UNIX_SECONDS,
                    "update_time_le": UNIX_SECONDS,
                    "category_version": {"type": "string"},
                    "listing_quality_tiers": {"type": "array", "items": {"enum": ["POOR", "FAIR", "GOOD"]}},
                }
            ),
        ),
    ]
}

_TEMPLATES = [(re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", key.split(" ", 1)[1]) + "$"), key) for key in OPERATIONS]


def operation_for(method: str, path: str) -> TikTokOperation | None:
    """The documented operation a concrete request path is an instance of, if any."""
    for pattern, key in _TEMPLATES:
        if key.startswith(method + " ") and pattern.match(path):
            return OPERATIONS[key]
    return None


def request_violations(method: str, path: str, *, query: dict[str, str], body: Any) -> list[ContractViolation]:
    op = operation_for(method, path)
    if op is None:
        return [ContractViolation("path", f"{method} {path} is not a documented TikTok Shop operation")]
    return op.violations(query=query, body=body)
