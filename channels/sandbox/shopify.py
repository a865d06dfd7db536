"""Shopify GraphQL Admin API sandbox: queries run by graphql-core against the saved 2026-07 schema.

``POST /admin/api/{version}/graphql.json`` with ``X-Shopify-Access-Token``. Documents are validated
against ../shared/channel-specs/shopify-admin-graphql-2026-07.graphql and executed with resolvers
over the sandbox's orders. Cost-based throttling: every response carries ``extensions.cost``; an
empty bucket answers HTTP 200 with ``errors[].extensions.code == "THROTTLED"``. Sandbox cost
model: a leaf field 0, an object 1 plus its children, a connection 2 + ceil(first / 10) x its
children, a mutation 10 (Shopify publishes no exact formula; the shape is what matters).

Webhooks (REST-shaped JSON, ``X-Shopify-Hmac-Sha256`` over the raw body) go to ``webhook_url``
when one is set, from a background thread, unless the ``drop_webhooks`` fault is on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import random
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    build_schema,
    execute,
    parse,
    validate,
)
from graphql.execution.values import get_directive_values

from channels.sandbox.base import Request, Response, SandboxApp, SandboxOrder, SandboxState, iso_z, utcnow

SCHEMA_FILE = "shopify-admin-graphql-2026-07.graphql"
SUPPORTED_VERSIONS = ("2026-01", "2026-04", "2026-07", "2026-10")
LOCATION_ID = "gid://shopify/Location/1"
LOCATION_NAME = "Sandbox warehouse"
# The shop's retail store, offered to buyers as local pickup.
STORE_LOCATION_ID = "gid://shopify/Location/2"
STORE_LOCATION_NAME = "Sandbox San Francisco store"
LOCATIONS = {LOCATION_ID: LOCATION_NAME, STORE_LOCATION_ID: STORE_LOCATION_NAME}
UPDATED_AT_FILTER = re.compile(r"updated_at:(>=|>|<=|<)'([^']+)'")
CANCEL_REASONS = {"BuyerCanceled": "CUSTOMER", "NoInventory": "INVENTORY", "GeneralAdjustment": "OTHER"}

_schema: GraphQLSchema | None = None
_schema_lock = threading.Lock()


def schema_path() -> Path:
    from django.conf import settings

    return Path(getattr(settings, "SHOPIFY_SCHEMA_PATH", "") or Path(settings.CHANNEL_SPECS_DIR) / SCHEMA_FILE)


def shopify_schema() -> GraphQLSchema:
    """The saved Admin schema, built once per process (3.8 MB of SDL, about 3 s)."""
    global _schema
    with _schema_lock:
        if _schema is None:
            # graphql-core 3.3 rejects a deprecated implementation of a non-deprecated interface
            # field in Shopify's published schema; documents are still validated in full.
            _schema = build_schema(schema_path().read_text(), assume_valid=True)
        return _schema


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def _unb64(cursor: str) -> dict:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError) as exc:
        raise GraphQLError("Invalid cursor", extensions={"code": "BAD_REQUEST"}) from exc


def _numeric(gid: str) -> str:
    return gid.rsplit("/", 1)[-1]


def variant_ids(sku: str) -> tuple[str, str]:
    """(ProductVariant GID, InventoryItem GID) for a SKU: stable across runs."""
    number = int(hashlib.sha256(sku.encode()).hexdigest()[:8], 16) % 10_000_000
    return f"gid://shopify/ProductVariant/{40_000_000 + number}", f"gid://shopify/InventoryItem/{50_000_000 + number}"


def _money(amount, currency: str) -> dict:
    value = {"amount": f"{amount:.2f}", "currencyCode": currency}
    return {"shopMoney": value, "presentmentMoney": value}


def _connection(items: list, first: int | None, after: str | None, bulk: bool, key=None) -> dict:
    if first is None and not bulk:
        raise GraphQLError("you must provide one of first or last", extensions={"code": "BAD_REQUEST"})
    if first is not None and not 0 <= first <= 250:
        raise GraphQLError(
            "first cannot exceed 250. To query larger amounts of data with fewer limits, "
            "bulk operations should be used instead.",
            extensions={"code": "BAD_REQUEST"},
        )
    start = 0
    if after:
        start = int(_unb64(after).get("offset", -1)) + 1
    chosen = items[start:] if first is None else items[start : start + first]
    edges = [{"cursor": _b64({"offset": start + i}), "node": node} for i, node in enumerate(chosen)]
    return {
        "edges": edges,
        "nodes": chosen,
        "pageInfo": {
            "hasNextPage": start + len(chosen) < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def query_cost(operation: OperationDefinitionNode, variables: dict) -> int:
    def arg(node: FieldNode, name: str) -> int | None:
        for argument in node.arguments or ():
            if argument.name.value == name:
                value = argument.value
                if value.kind == "variable":
                    return variables.get(value.name.value)
                return int(getattr(value, "value", 0))
        return None

    def cost(selection_set) -> int:
        total = 0
        for selection in selection_set.selections if selection_set else []:
            if isinstance(selection, FieldNode):
                if selection.selection_set is None:
                    continue
                children = cost(selection.selection_set)
                size = arg(selection, "first") or arg(selection, "last")
                total += 2 + math.ceil(size / 10) * children if size else 1 + children
            else:
                total += cost(selection.selection_set)
        return total

    if operation.operation == OperationType.MUTATION:
        return 10 + cost(operation.selection_set)
    return max(cost(operation.selection_set), 1)


class ShopifyState(SandboxState):
    """``pickup_rate``: the share of new orders the buyer chose to collect at the store (local pickup);
    drawn from a generator of its own so the other orders stay the same for a given seed."""

    def __init__(self, *, pickup_rate: float = 0.0, **options):
        self.pickup_rate = pickup_rate
        super().__init__(**options)

    def reset(self) -> None:
        super().reset()
        self.pickup_rng = random.Random(self.seed + 1)

    def order_id_for(self, number: int) -> str:
        return str(5_000_000_000_000 + number)

    def generate(self, count: int = 1, *, pickup_location: str | None = None, **options) -> list[SandboxOrder]:
        with self.lock:
            made = super().generate(count, **options)
            for order in made:
                chosen = pickup_location
                if chosen is None and self.pickup_rate and self.pickup_rng.random() < self.pickup_rate:
                    chosen = STORE_LOCATION_ID
                order.pickup_location = chosen or ""
        return made


class ShopifySandbox(SandboxApp):
    kind = "shopify"

    def __init__(
        self,
        state: SandboxState | None = None,
        *,
        access_token: str = "shpat_demo",
        webhook_secret: str = "demo-webhook-secret",
        webhook_url: str = "",
        maximum_available: float = 2000.0,
        restore_rate: float = 100.0,
        cancel_delay: float = 0.05,
        **options,
    ):
        super().__init__(state or ShopifyState(), **options)
        self.access_token = access_token
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.maximum_available = maximum_available
        self.restore_rate = restore_rate
        self.available = maximum_available
        self.refilled = time.monotonic()
        self.cancel_delay = cancel_delay
        self.bucket_lock = threading.Lock()
        self.fulfillments: dict[str, list[dict]] = {}
        self.bulk_operations: dict[str, dict] = {}
        self.edits: dict[str, dict] = {}  # calculated order id -> the order edit in progress
        self.jobs: dict[str, dict] = {}
        self.idempotency: dict[str, tuple[str, dict]] = {}
        self.state.on_change = self._on_change
        self.webhooks_start()

    def serve(self, *args, **kwargs):
        shopify_schema()  # built before the first request, not during it (about 3 s)
        return super().serve(*args, **kwargs)

    def routes(self):
        return [
            ("POST", "/admin/api/{version}/graphql.json", self.graphql),
            ("GET", "/_sandbox/bulk/{name}", self.bulk_download),
            ("POST", "/_sandbox/webhooks", self.admin_webhooks),
        ]

    def server_error(self) -> Response:
        return Response(500, {"errors": "Internal Server Error"})

    def admin_webhooks(self, request: Request) -> Response:
        data = request.json()
        self.webhook_url = data.get("url", self.webhook_url)
        self.webhook_secret = data.get("secret", self.webhook_secret)
        return Response(200, {"url": self.webhook_url})

    # --- the endpoint --------------------------------------------------------------------------

    def _throttle_status(self) -> dict:
        return {
            "maximumAvailable": self.maximum_available,
            "currentlyAvailable": int(self.available),
            "restoreRate": self.restore_rate,
        }

    def _take(self, cost: int) -> bool:
        with self.bucket_lock:
            now = time.monotonic()
            self.available = min(self.maximum_available, self.available + (now - self.refilled) * self.restore_rate)
            self.refilled = now
            if self.state.faults.take("throttle_next"):
                self.available = min(self.available, max(cost - self.restore_rate * 0.05, 0))
                return False
            if self.available < cost:
                return False
            self.available -= cost
            return True

    def graphql(self, request: Request, version: str) -> Response:
        if request.header("x-shopify-access-token") != self.access_token:
            return Response(
                401, {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
            )
        served = version if version in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[0]
        headers = {"X-Shopify-API-Version": served, "X-Request-Id": str(uuid.uuid4())}
        try:
            body = request.json()
        except json.JSONDecodeError:
            return Response(400, {"errors": {"query": "Required parameter missing or invalid"}}, headers=headers)
        source = body.get("query") if isinstance(body, dict) else None
        if not isinstance(source, str) or not source.strip():
            return Response(400, {"errors": {"query": "Required parameter missing or invalid"}}, headers=headers)
        variables = body.get("variables") or {}
        schema = shopify_schema()
        try:
            document = parse(source)
        except GraphQLError as exc:
            return Response(200, {"errors": [_error(exc, "PARSE_ERROR")]}, headers=headers)
        problems = validate(schema, document)
        if problems:
            return Response(
                200, {"errors": [_error(p, "GRAPHQL_VALIDATION_FAILED") for p in problems]}, headers=headers
            )
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        operation = next((o for o in operations if o.name and o.name.value == body.get("operationName")), operations[0])
        cost = query_cost(operation, variables)
        if cost > 1000:
            error = {
                "message": f"Query cost is {cost}, which exceeds the single query max cost limit (1000).",
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": cost, "maxCost": 1000},
            }
            return Response(200, {"errors": [error]}, headers=headers)
        if not self._take(cost):
            throttled = {
                "errors": [
                    {
                        "message": "Throttled",
                        "extensions": {
                            "code": "THROTTLED",
                            "documentation": "https://shopify.dev/api/usage/rate-limits",
                        },
                    }
                ],
                "extensions": {
                    "cost": {
                        "requestedQueryCost": cost,
                        "actualQueryCost": None,
                        "throttleStatus": self._throttle_status(),
                    }
                },
            }
            return Response(200, throttled, headers=headers)
        mutation = operation.operation == OperationType.MUTATION
        result = execute(
            schema,
            document,
            root_value=self._mutation_root() if mutation else self._query_root(),
            variable_values=variables,
            operation_name=body.get("operationName"),
            context_value={"bulk": False},
        )
        out: dict[str, Any] = {}
        if result.errors:
            out["errors"] = [_error(e, "INTERNAL_SERVER_ERROR") for e in result.errors]
        out["data"] = result.data
        out["extensions"] = {
            "cost": {"requestedQueryCost": cost, "actualQueryCost": cost, "throttleStatus": self._throttle_status()}
        }
        return Response(200, out, headers=headers)

    # --- rendering orders ----------------------------------------------------------------------

    def _fulfillment_order(self, order: SandboxOrder) -> dict:
        assigned = order.pickup_location if order.pickup_location in LOCATIONS else LOCATION_ID
        open_total = sum(line.quantity - line.cancelled for line in order.lines)
        remaining = sum(line.remaining for line in order.lines)
        status = "CLOSED" if remaining == 0 else ("IN_PROGRESS" if remaining < open_total else "OPEN")
        if order.status == "cancelled":
            status = "CLOSED"
        items = [
            {
                "id": f"gid://shopify/FulfillmentOrderLineItem/{line.line_id}",
                "totalQuantity": line.quantity - line.cancelled,
                "remainingQuantity": line.remaining,
                "sku": line.sku,
                "lineItem": {"id": f"gid://shopify/LineItem/{line.line_id}"},
                "inventoryItemId": variant_ids(line.sku)[1],
                "requiresShipping": True,
                "productTitle": line.title,
                "warnings": [],
                "financialSummaries": [],
            }
            for line in order.lines
        ]
        return {
            "id": f"gid://shopify/FulfillmentOrder/{order.order_id}",
            "status": status,
            "requestStatus": "UNSUBMITTED",
            "updatedAt": iso_z(order.updated_at),
            "createdAt": iso_z(order.created_at),
            "orderId": f"gid://shopify/Order/{order.order_id}",
            "orderName": f"#{order.number}",
            "deliveryMethod": {
                "id": f"gid://shopify/DeliveryMethod/{order.order_id}",
                "methodType": "PICK_UP" if order.pickup_location else "SHIPPING",
            },
            "assignedLocation": {
                "name": LOCATIONS[assigned],
                "countryCode": "US",
                "location": {"id": assigned, "name": LOCATIONS[assigned]},
            },
            "lineItems": lambda info, first=None, after=None, **_: _connection(
                items, first, after, info.context["bulk"]
            ),
        }

    def render(self, order: SandboxOrder) -> dict:
        currency = order.currency
        lines = []
        for line in order.lines:
            variant, item = variant_ids(line.sku)
            lines.append(
                {
                    "id": f"gid://shopify/LineItem/{line.line_id}",
                    "sku": line.sku,
                    "name": line.title,
                    "title": line.title,
                    "quantity": -2 if order.malformed == "bad_quantity" else line.quantity,
                    "currentQuantity": line.quantity - line.cancelled,
                    "unfulfilledQuantity": line.remaining,
                    "requiresShipping": True,
                    "isGiftCard": False,
                    "originalUnitPriceSet": _money(line.unit_price, currency),
                    "variant": {"id": variant, "sku": line.sku, "inventoryItem": {"id": item, "tracked": True}},
                }
            )
        if order.malformed == "missing_items":
            lines = []
        total = sum(line.unit_price * line.quantity for line in order.lines)
        shipped = sum(line.shipped for line in order.lines)
        owed = sum(line.quantity - line.cancelled for line in order.lines)
        first, _, last = order.buyer_name.partition(" ")
        fulfillment_order = self._fulfillment_order(order)
        return {
            "id": f"gid://shopify/Order/{order.order_id}",
            "legacyResourceId": order.order_id,
            "name": f"#{order.number}",
            "createdAt": "31/12/2025 10:00" if order.malformed == "bad_date" else iso_z(order.created_at),
            "updatedAt": iso_z(order.updated_at),
            "processedAt": iso_z(order.created_at),
            "cancelledAt": iso_z(order.updated_at) if order.status == "cancelled" else None,
            "cancelReason": CANCEL_REASONS.get(order.cancel_reason, "OTHER") if order.status == "cancelled" else None,
            "closed": order.status in ("cancelled", "shipped"),
            "displayFinancialStatus": "PAID" if order.paid else "PENDING",
            "displayFulfillmentStatus": "FULFILLED"
            if owed and shipped >= owed
            else ("PARTIALLY_FULFILLED" if shipped else "UNFULFILLED"),
            "currencyCode": currency,
            "email": "buyer@example.com",
            "totalPriceSet": _money(total, currency),
            "shippingAddress": {
                "name": order.buyer_name,
                "firstName": first,
                "lastName": last,
                "address1": order.address["line1"],
                "address2": order.address["line2"] or None,
                "city": order.address["city"],
                "province": order.address["region"],
                "provinceCode": order.address["region"],
                "zip": order.address["postal_code"],
                "country": "United States",
                "countryCodeV2": order.address["country_code"],
                "phone": order.address["phone"],
            },
            "lineItems": lambda info, first=None, after=None, **_: _connection(
                lines, first, after, info.context["bulk"]
            ),
            "fulfillmentOrders": lambda info, first=None, after=None, **_: _connection(
                [fulfillment_order], first, after, info.context["bulk"]
            ),
            "fulfillments": lambda info, first=None, **_: self.fulfillments.get(order.order_id, [])[: first or None],
        }

    def _find(self, gid: str, kind: str) -> SandboxOrder | None:
        prefix = f"gid://shopify/{kind}/"
        if not isinstance(gid, str) or not gid.startswith(prefix):
            return None
        return self.state.orders.get(_numeric(gid))

    # --- query root ----------------------------------------------------------------------------

    def _query_root(self) -> dict:
        return {
            "orders": self._orders,
            "order": lambda info, id: (lambda o: self.render(o) if o else None)(self._find(id, "Order")),
            "bulkOperation": lambda info, id: self._bulk_status(id),
            "job": lambda info, id: self.jobs.get(id),
            "location": lambda info, id: {"id": id, "name": LOCATIONS[id]} if id in LOCATIONS else None,
            "shop": {
                "name": "Waybill Sandbox",
                "currencyCode": "USD",
                "myshopifyDomain": "waybill-sandbox.myshopify.com",
            },
        }

    def _orders(
        self,
        info,
        first=None,
        after=None,
        last=None,
        before=None,
        reverse=False,
        sortKey="PROCESSED_AT",
        query=None,
        **_,
    ):
        bulk = info.context["bulk"]
        if first is None and not bulk:
            raise GraphQLError("you must provide one of first or last", extensions={"code": "BAD_REQUEST"})
        with self.state.lock:
            rows = list(self.state.orders.values())
            for op, value in UPDATED_AT_FILTER.findall(query or ""):
                bound = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if bound.tzinfo is None:
                    bound = bound.replace(tzinfo=UTC)
                compare = {
                    ">=": lambda a, b=bound: a >= b,
                    ">": lambda a, b=bound: a > b,
                    "<=": lambda a, b=bound: a <= b,
                    "<": lambda a, b=bound: a < b,
                }[op]
                rows = [o for o in rows if compare(o.updated_at)]
            key = {
                "UPDATED_AT": lambda o: (o.updated_at, o.number),
                "CREATED_AT": lambda o: (o.created_at, o.number),
            }.get(sortKey, lambda o: (o.created_at, o.number))
            rows.sort(key=key, reverse=bool(reverse))
            if after:
                mark = _unb64(after)
                position = (datetime.fromisoformat(mark["last_value"]), int(mark["last_id"]))
                rows = [o for o in rows if (key(o) < position if reverse else key(o) > position)]
            chosen = rows if first is None else rows[:first]
            if first is not None and not 0 <= first <= 250:
                raise GraphQLError("first cannot exceed 250.", extensions={"code": "BAD_REQUEST"})
            if self.state.faults.take("duplicate_next") and first is not None and len(chosen) > 2:
                chosen = chosen[:-2]  # the page ends early: its last orders come again on the next page
            nodes = [self.render(o) for o in chosen]
            cursors = [_b64({"last_id": o.number, "last_value": key(o)[0].isoformat()}) for o in chosen]
        has_next = len(rows) > len(chosen)
        return {
            "edges": [{"cursor": c, "node": n} for c, n in zip(cursors, nodes, strict=True)],
            "nodes": nodes,
            "pageInfo": {
                "hasNextPage": has_next,
                "hasPreviousPage": bool(after),
                "startCursor": cursors[0] if cursors else None,
                "endCursor": cursors[-1] if cursors else None,
            },
        }

    # --- mutations -----------------------------------------------------------------------------

    def _mutation_root(self) -> dict:
        return {
            "fulfillmentCreate": self._fulfillment_create,
            "orderCancel": self._order_cancel,
            "fulfillmentOrderLineItemsPreparedForPickup": self._prepared_for_pickup,
            "orderEditBegin": self._order_edit_begin,
            "orderEditSetQuantity": self._order_edit_set_quantity,
            "orderEditCommit": self._order_edit_commit,
            "inventorySetQuantities": self._inventory_set,
            "bulkOperationRunQuery": self._bulk_run,
        }

    def _fulfillment_create(self, info, fulfillment, message=None):
        groups = fulfillment.get("lineItemsByFulfillmentOrder") or []
        if not groups:
            return {
                "fulfillment": None,
                "userErrors": [{"field": ["fulfillment"], "message": "Fulfillment order does not exist."}],
            }
        with self.state.lock:
            order = self._find(groups[0]["fulfillmentOrderId"], "FulfillmentOrder")
            if order is None or any(g["fulfillmentOrderId"] != groups[0]["fulfillmentOrderId"] for g in groups):
                return {
                    "fulfillment": None,
                    "userErrors": [{"field": ["fulfillment"], "message": "Fulfillment order does not exist."}],
                }
            if order.status == "cancelled" or all(line.remaining == 0 for line in order.lines):
                return {
                    "fulfillment": None,
                    "userErrors": [
                        {
                            "field": ["fulfillment"],
                            "message": f"Fulfillment order {order.order_id} has an unfulfillable status= closed.",
                        }
                    ],
                }
            lines = {f"gid://shopify/FulfillmentOrderLineItem/{line.line_id}": line for line in order.lines}
            wanted = groups[0].get("fulfillmentOrderLineItems")
            plan = (
                [(lines.get(i["id"]), i["quantity"]) for i in wanted]
                if wanted
                else [(line, line.remaining) for line in order.lines if line.remaining]
            )
            for index, (line, quantity) in enumerate(plan):
                if quantity <= 0:
                    field = [
                        "fulfillment",
                        "lineItemsByFulfillmentOrder",
                        "0",
                        "fulfillmentOrderLineItems",
                        str(index),
                        "quantity",
                    ]
                    return {
                        "fulfillment": None,
                        "userErrors": [{"field": field, "message": "Quantity must be greater than 0"}],
                    }
                if line is None or quantity > line.remaining:
                    return {
                        "fulfillment": None,
                        "userErrors": [
                            {
                                "field": ["fulfillment"],
                                "message": "Invalid fulfillment order line item quantity requested.",
                            }
                        ],
                    }
            for line, quantity in plan:
                line.shipped += quantity
            tracking = fulfillment.get("trackingInfo") or {}
            record = {
                "id": f"gid://shopify/Fulfillment/{uuid.uuid4().int % 10**13}",
                "name": f"#{order.number}-F{len(self.fulfillments.get(order.order_id, [])) + 1}",
                "status": "SUCCESS",
                "displayStatus": "FULFILLED",
                "createdAt": iso_z(utcnow()),
                "updatedAt": iso_z(utcnow()),
                "trackingInfo": [
                    {"company": tracking.get("company"), "number": tracking.get("number"), "url": tracking.get("url")}
                ],
            }
            self.fulfillments.setdefault(order.order_id, []).append(record)
            order.recompute()
            self.state.touch(order, "update")
            self.state.shipments.append(
                {
                    "order_id": order.order_id,
                    "tracking": tracking,
                    "lines": {line.line_id: quantity for line, quantity in plan},
                    "notify_customer": fulfillment.get("notifyCustomer", False),
                }
            )
        return {"fulfillment": record, "userErrors": []}

    def _order_cancel(
        self, info, orderId, reason, restock, refundMethod=None, notifyCustomer=False, staffNote=None, refund=None
    ):
        if refund is not None and refundMethod is not None:
            error = {
                "field": ["refund"],
                "message": "Only one of the arguments `refund` or `refund_method` is allowed.",
                "code": "INVALID",
            }
            return {"job": None, "orderCancelUserErrors": [error], "userErrors": [error]}
        if staffNote and len(staffNote) > 255:
            error = {
                "field": ["staffNote"],
                "message": "Staff note is too long. Maximum length is 255 characters.",
                "code": "INVALID",
            }
            return {"job": None, "orderCancelUserErrors": [error], "userErrors": [error]}
        with self.state.lock:
            order = self._find(orderId, "Order")
            if order is None:
                error = {"field": ["orderId"], "message": "Order does not exist", "code": "NOT_FOUND"}
                return {"job": None, "orderCancelUserErrors": [error], "userErrors": [error]}
            if order.status == "cancelled":
                error = {
                    "field": ["orderId"],
                    "message": "Cannot cancel an order that has already been canceled",
                    "code": "INVALID",
                }
                return {"job": None, "orderCancelUserErrors": [error], "userErrors": [error]}
            if any(line.shipped for line in order.lines):
                error = {
                    "field": ["orderId"],
                    "message": "Cannot cancel an order with outstanding fulfillments",
                    "code": "INVALID",
                }
                return {"job": None, "orderCancelUserErrors": [error], "userErrors": [error]}
        job_id = f"gid://shopify/Job/{uuid.uuid4()}"
        self.jobs[job_id] = {"id": job_id, "done": False}

        def run():
            with self.state.lock:
                if order.status != "cancelled":
                    self.state.cancel(order, {v: k for k, v in CANCEL_REASONS.items()}.get(reason, "GeneralAdjustment"))
                    self.state.cancellations.append({"order_id": order.order_id, "reason": reason, "restock": restock})
            self.jobs[job_id]["done"] = True

        threading.Timer(self.cancel_delay, run).start()
        return {"job": {"id": job_id, "done": False}, "orderCancelUserErrors": [], "userErrors": []}

    def _prepared_for_pickup(self, info, input):
        errors, ready = [], []
        with self.state.lock:
            for group in input.get("lineItemsByFulfillmentOrder") or []:
                order = self._find(group["fulfillmentOrderId"], "FulfillmentOrder")
                if order is None:
                    errors.append({"field": ["input"], "message": "Fulfillment order does not exist.", "code": None})
                elif not order.pickup_location or order.status == "cancelled":
                    errors.append(
                        {"field": ["input"], "message": "Fulfillment order is not a local pickup.", "code": None}
                    )
                else:
                    ready.append(order)
            if errors:
                return {"userErrors": errors}
            for order in ready:
                self.state.extra.setdefault("prepared_for_pickup", []).append(order.order_id)
                self.state.touch(order)
        return {"userErrors": []}

    # --- order editing: begin, stage quantities, commit -------------------------------------------

    def _calculated(self, calc_id: str) -> dict:
        edit = self.edits[calc_id]
        order = edit["order"]
        items = [
            {
                "id": f"gid://shopify/CalculatedLineItem/{line.line_id}",
                "sku": line.sku,
                "title": line.title,
                "quantity": edit["quantities"].get(line.line_id, line.quantity - line.cancelled),
                "editableQuantity": line.remaining,
                "editableQuantityBeforeChanges": line.remaining,
            }
            for line in order.lines
            if line.quantity - line.cancelled > 0
        ]
        return {
            "id": calc_id,
            "committed": edit["committed"],
            "lineItems": lambda info, first=None, after=None, **_: _connection(items, first, after, False),
        }

    @staticmethod
    def _edit_error(field_name: str, message: str, **empty) -> dict:
        return {**dict.fromkeys(empty, None), "userErrors": [{"field": [field_name], "message": message}]}

    def _order_edit_begin(self, info, id):
        with self.state.lock:
            order = self._find(id, "Order")
            if order is None:
                return self._edit_error("id", "The order does not exist.", calculatedOrder=1, orderEditSession=1)
            if order.status == "cancelled":
                return self._edit_error("id", "The order is canceled and cannot be edited.", calculatedOrder=1)
            calc_id = f"gid://shopify/CalculatedOrder/{uuid.uuid4().int % 10**12}"
            self.edits[calc_id] = {"order": order, "quantities": {}, "committed": False}
            return {"calculatedOrder": self._calculated(calc_id), "orderEditSession": None, "userErrors": []}

    def _order_edit_set_quantity(self, info, id, lineItemId, quantity, restock=None, locationId=None):
        with self.state.lock:
            edit = self.edits.get(id)
            if edit is None or edit["committed"]:
                return self._edit_error("id", "No such calculated order, or it was committed.", calculatedOrder=1)
            lines = {f"gid://shopify/CalculatedLineItem/{line.line_id}": line for line in edit["order"].lines}
            line = lines.get(lineItemId)
            if line is None:
                return self._edit_error("lineItemId", "The line item does not exist.", calculatedOrder=1)
            if quantity < 0 or quantity < line.shipped:
                return self._edit_error(
                    "quantity", f"The quantity cannot be less than the fulfilled quantity ({line.shipped}).",
                    calculatedOrder=1,
                )  # fmt: skip
            if quantity > line.quantity - line.cancelled:
                return self._edit_error("quantity", "Adding units is not supported here.", calculatedOrder=1)
            edit["quantities"][line.line_id] = quantity
            return {
                "calculatedLineItem": {"id": lineItemId, "quantity": quantity},
                "calculatedOrder": self._calculated(id),
                "orderEditSession": None,
                "userErrors": [],
            }

    def _order_edit_commit(self, info, id, notifyCustomer=None, staffNote=None):
        with self.state.lock:
            edit = self.edits.get(id)
            if edit is None or edit["committed"]:
                return self._edit_error("id", "No such calculated order, or it was committed.", order=1)
            order = edit["order"]
            for line in order.lines:
                if line.line_id in edit["quantities"]:
                    line.cancelled += line.quantity - line.cancelled - edit["quantities"][line.line_id]
            edit["committed"] = True
            self.state.cancellations.append(
                {"order_id": order.order_id, "edit": dict(edit["quantities"]), "staff_note": staffNote}
            )
            order.recompute()
            self.state.touch(order)
            return {"order": self.render(order), "successMessages": ["Order updated"], "userErrors": []}

    def _inventory_set(self, info, input):
        directive = shopify_schema().get_directive("idempotent")
        values = get_directive_values(directive, info.field_nodes[0], info.variable_values)
        if not values or not str(values.get("key", "")).strip():
            raise GraphQLError(
                "The @idempotent directive is required for this mutation but was not provided.",
                extensions={"code": "BAD_REQUEST"},
            )
        key = values["key"]
        fingerprint = hashlib.sha256(json.dumps(input, sort_keys=True, default=str).encode()).hexdigest()
        with self.state.lock:
            if key in self.idempotency:
                seen, result = self.idempotency[key]
                if seen != fingerprint:
                    error = {
                        "field": ["input"],
                        "message": "The idempotency key was already used with different parameters.",
                        "code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                    }
                    return {"inventoryAdjustmentGroup": None, "userErrors": [error]}
                return result
            for quantity in input["quantities"]:
                if "changeFromQuantity" not in quantity:
                    raise GraphQLError(
                        "InventoryQuantityInput must include the following argument: changeFromQuantity.",
                        extensions={"code": "INVALID_FIELD_ARGUMENTS"},
                    )
            if input["name"] not in ("available", "on_hand"):
                return {
                    "inventoryAdjustmentGroup": None,
                    "userErrors": [{"field": ["input", "name"], "message": "Invalid name", "code": "INVALID_NAME"}],
                }
            by_item = {variant_ids(sku)[1]: sku for sku in self._known_skus()}
            changes = []
            errors = []
            for index, quantity in enumerate(input["quantities"]):
                sku = by_item.get(quantity["inventoryItemId"])
                field = ["input", "quantities", str(index)]
                if sku is None:
                    errors.append(
                        {
                            "field": [*field, "inventoryItemId"],
                            "message": "The specified inventory item could not be found.",
                            "code": "INVALID_INVENTORY_ITEM",
                        }
                    )
                elif quantity["locationId"] != LOCATION_ID:
                    errors.append(
                        {
                            "field": [*field, "locationId"],
                            "message": "The specified location could not be found.",
                            "code": "INVALID_LOCATION",
                        }
                    )
                elif quantity["changeFromQuantity"] is not None and quantity[
                    "changeFromQuantity"
                ] != self.state.inventory.get(sku, 0):
                    errors.append(
                        {
                            "field": [*field, "changeFromQuantity"],
                            "message": "The current quantity does not match changeFromQuantity.",
                            "code": "CHANGE_FROM_QUANTITY_STALE",
                        }
                    )
                elif input["name"] == "on_hand" and quantity["quantity"] < 0:
                    errors.append(
                        {
                            "field": [*field, "quantity"],
                            "message": "The quantity can't be negative.",
                            "code": "INVALID_QUANTITY_NEGATIVE",
                        }
                    )
                else:
                    changes.append((sku, quantity))
            if errors:
                return {"inventoryAdjustmentGroup": None, "userErrors": errors}
            out = []
            for sku, quantity in changes:
                before = self.state.inventory.get(sku, 0)
                self.state.inventory[sku] = quantity["quantity"]
                self.state.inventory_log.append(
                    {"sku": sku, "quantity": quantity["quantity"], "at": time.time(), "key": key}
                )
                out.append(
                    {
                        "name": input["name"],
                        "delta": quantity["quantity"] - before,
                        "quantityAfterChange": None,
                        "item": {"id": quantity["inventoryItemId"]},
                        "location": {"id": LOCATION_ID, "name": LOCATION_NAME},
                    }
                )
            result = {
                "inventoryAdjustmentGroup": {
                    "id": f"gid://shopify/InventoryAdjustmentGroup/{uuid.uuid4().int % 10**13}",
                    "createdAt": iso_z(utcnow()),
                    "reason": input["reason"],
                    "referenceDocumentUri": input.get("referenceDocumentUri"),
                    "changes": out,
                },
                "userErrors": [],
            }
            self.idempotency[key] = (fingerprint, result)
            return result

    def _known_skus(self) -> set[str]:
        from channels.sandbox.base import SKU_CODES, UNKNOWN_SKUS

        return set(SKU_CODES) | set(UNKNOWN_SKUS) | {line.sku for o in self.state.orders.values() for line in o.lines}

    # --- bulk operations -----------------------------------------------------------------------

    def _bulk_run(self, info, query, groupObjects=False):
        try:
            document = parse(query)
        except GraphQLError as exc:
            return {
                "bulkOperation": None,
                "userErrors": [
                    {"field": ["query"], "message": f"Invalid bulk query: {exc.message}", "code": "INVALID"}
                ],
            }
        problems = validate(shopify_schema(), document)
        if problems:
            return {
                "bulkOperation": None,
                "userErrors": [{"field": ["query"], "message": problems[0].message, "code": "INVALID"}],
            }
        running = [b for b in self.bulk_operations.values() if b["status"] in ("CREATED", "RUNNING")]
        if len(running) >= 5:
            return {
                "bulkOperation": None,
                "userErrors": [
                    {
                        "field": None,
                        "message": "A bulk query operation for this app and shop is already in progress",
                        "code": "OPERATION_IN_PROGRESS",
                    }
                ],
            }
        bulk_id = f"gid://shopify/BulkOperation/{len(self.bulk_operations) + 7_000_000_000_000}"
        self.bulk_operations[bulk_id] = {
            "document": document,
            "status": "CREATED",
            "createdAt": iso_z(utcnow()),
            "query": query,
        }
        return {"bulkOperation": self._bulk_status(bulk_id), "userErrors": []}

    def _bulk_status(self, bulk_id: str) -> dict | None:
        bulk = self.bulk_operations.get(bulk_id)
        if bulk is None:
            return None
        if bulk["status"] == "CREATED":
            bulk["status"] = "RUNNING"
        elif bulk["status"] == "RUNNING":
            result = execute(
                shopify_schema(), bulk["document"], root_value=self._query_root(), context_value={"bulk": True}
            )
            rows: list[dict] = []
            for value in (result.data or {}).values():
                _flatten(value, None, rows)
            bulk["jsonl"] = "".join(json.dumps(row).replace("/", "\\/") + "\n" for row in rows).encode()
            bulk["objectCount"] = len(rows)
            bulk["rootObjectCount"] = sum(1 for row in rows if "__parentId" not in row)
            bulk["status"] = "COMPLETED"
            bulk["completedAt"] = iso_z(utcnow())
        done = bulk["status"] == "COMPLETED"
        return {
            "id": bulk_id,
            "status": bulk["status"],
            "type": "QUERY",
            "errorCode": None,
            "createdAt": bulk["createdAt"],
            "completedAt": bulk.get("completedAt"),
            "objectCount": str(bulk.get("objectCount", 0)),
            "rootObjectCount": str(bulk.get("rootObjectCount", 0)),
            "fileSize": str(len(bulk.get("jsonl", b""))) if done else None,
            "url": f"{self.base_url}/_sandbox/bulk/{_numeric(bulk_id)}.jsonl" if done else None,
            "partialDataUrl": None,
            "query": bulk["query"],
        }

    def bulk_download(self, request: Request, name: str) -> Response:
        bulk = self.bulk_operations.get(f"gid://shopify/BulkOperation/{name.removesuffix('.jsonl')}")
        if bulk is None or "jsonl" not in bulk:
            return Response(404, raw=b"NoSuchKey", headers={"Content-Type": "application/xml"})
        return Response(200, raw=bulk["jsonl"], headers={"Content-Type": "application/jsonl"})

    # --- webhooks ------------------------------------------------------------------------------

    def rest_payload(self, order: SandboxOrder) -> dict:
        local = _shop_time
        shipped = sum(line.shipped for line in order.lines)
        owed = sum(line.quantity - line.cancelled for line in order.lines)
        return {
            "id": int(order.order_id),
            "admin_graphql_api_id": f"gid://shopify/Order/{order.order_id}",
            "name": f"#{order.number}",
            "created_at": local(order.created_at),
            "updated_at": local(order.updated_at),
            "cancelled_at": local(order.updated_at) if order.status == "cancelled" else None,
            "cancel_reason": "customer" if order.status == "cancelled" else None,
            "financial_status": "paid" if order.paid else "pending",
            "fulfillment_status": "fulfilled" if owed and shipped >= owed else ("partial" if shipped else None),
            "currency": order.currency,
            "total_price": f"{sum(line.unit_price * line.quantity for line in order.lines):.2f}",
            "line_items": [
                {
                    "id": int(line.line_id),
                    "admin_graphql_api_id": f"gid://shopify/LineItem/{line.line_id}",
                    "sku": line.sku,
                    "title": line.title,
                    "quantity": line.quantity,
                    "current_quantity": line.quantity - line.cancelled,
                    "fulfillable_quantity": line.remaining,
                    "price": f"{line.unit_price:.2f}",
                }
                for line in order.lines
            ],
        }

    def _on_change(self, order: SandboxOrder, topic: str) -> None:
        if not self.webhook_url:
            return
        name = {"create": "orders/create", "cancel": "orders/cancelled"}.get(topic, "orders/updated")
        body = json.dumps(self.rest_payload(order), ensure_ascii=False).encode()
        record = {
            "topic": name,
            "webhook_id": str(uuid.uuid4()),
            "order_id": order.order_id,
            "triggered_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        self.webhook_queue_put({"body": body, "record": record})

    def signed_headers(self, delivery: dict) -> dict[str, str]:
        digest = hmac.new(self.webhook_secret.encode(), delivery["body"], hashlib.sha256).digest()
        record = delivery["record"]
        return {
            "Content-Type": "application/json",
            "X-Shopify-Topic": record["topic"],
            "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
            "X-Shopify-Shop-Domain": "waybill-sandbox.myshopify.com",
            "X-Shopify-API-Version": "2026-10",
            "X-Shopify-Webhook-Id": record["webhook_id"],
            "X-Shopify-Event-Id": str(uuid.uuid4()),
            "X-Shopify-Triggered-At": record["triggered_at"],
        }


SHOP_TZ = timezone(timedelta(hours=-5))


def _shop_time(value: datetime | None) -> str | None:
    """Webhook payloads are REST-shaped: shop-local time with an offset."""
    return value.astimezone(SHOP_TZ).isoformat() if value else None


def _flatten(value: Any, parent: str | None, rows: list[dict]) -> None:
    """A bulk result as JSONL rows: every connection node a row, children carrying ``__parentId``."""
    if not isinstance(value, dict):
        return
    nodes = value.get("nodes")
    if nodes is None and "edges" in value:
        nodes = [edge.get("node") for edge in value["edges"]]
    for node in nodes or []:
        row = {}
        children = []
        for key, child in node.items():
            if isinstance(child, dict) and ("edges" in child or "nodes" in child):
                children.append(child)
            else:
                row[key] = child
        if parent:
            row["__parentId"] = parent
        rows.append(row)
        for child in children:
            _flatten(child, node.get("id"), rows)


def _error(error: GraphQLError, code: str) -> dict:
    formatted = error.formatted
    formatted.setdefault("extensions", {})
    formatted["extensions"].setdefault("code", code)
    return formatted
