"""Shopify, GraphQL Admin API only (REST is legacy): orders, fulfilment, cancel, inventory, webhooks.

Throttling is cost-based and arrives as HTTP 200 with ``errors[].extensions.code == "THROTTLED"``
and no Retry-After: the client waits (requested cost - currently available) / restore rate and
sends the same request again. Real 429/5xx are retried by ChannelHttp. Shopify sends no ship-by:
it is computed from the account's handling time and cutoff (business days, the account's zone).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from channels.connectors.base import (
    CancelRequest,
    ChannelError,
    ChannelThrottled,
    Connector,
    InventoryQuantity,
    NormalizedLine,
    NormalizedOrder,
    OrderPage,
    PayloadError,
    SendResult,
    ShipmentConfirmation,
    WebhookEvent,
    json_body,
    normalized_address,
    parse_datetime,
    parse_decimal,
    parse_int,
    require_list,
    require_obj,
    require_str,
)
from orders.models import OrderStatus

ORDER_FIELDS = """id legacyResourceId name createdAt updatedAt cancelledAt cancelReason closed
      displayFinancialStatus displayFulfillmentStatus currencyCode
      totalPriceSet { shopMoney { amount currencyCode } }
      shippingAddress { name address1 address2 city provinceCode zip countryCodeV2 phone }"""
LINE_FIELDS = """id sku name quantity currentQuantity unfulfilledQuantity
        originalUnitPriceSet { shopMoney { amount currencyCode } }
        variant { id inventoryItem { id } }"""
FO_FIELDS = "id status updatedAt deliveryMethod { methodType } assignedLocation { name location { id } }"
FO_LINE_FIELDS = "id totalQuantity remainingQuantity lineItem { id }"
PAGE_INFO = "pageInfo { hasNextPage endCursor }"
NESTED = f"""lineItems(first: 50) {{ {PAGE_INFO} nodes {{ {LINE_FIELDS} }} }}
      fulfillmentOrders(first: 5) {{ {PAGE_INFO} nodes {{ {FO_FIELDS}
        lineItems(first: 50) {{ {PAGE_INFO} nodes {{ {FO_LINE_FIELDS} }} }} }} }}"""

ORDERS_QUERY = f"""query OrdersSince($q: String!, $after: String, $first: Int!) {{
  orders(first: $first, after: $after, sortKey: UPDATED_AT, query: $q) {{
    {PAGE_INFO}
    nodes {{ {ORDER_FIELDS}
      {NESTED} }}
  }}
}}"""
ORDER_QUERY = f"""query OrderById($id: ID!) {{
  order(id: $id) {{ {ORDER_FIELDS}
    {NESTED} }}
}}"""
ORDER_LINES_QUERY = f"""query OrderLineItems($id: ID!, $after: String) {{
  order(id: $id) {{ lineItems(first: 250, after: $after) {{ {PAGE_INFO} nodes {{ {LINE_FIELDS} }} }} }}
}}"""
ORDER_FULFILLMENT_ORDERS_QUERY = f"""query OrderFulfillmentOrders($id: ID!, $after: String) {{
  order(id: $id) {{ fulfillmentOrders(first: 20, after: $after) {{ {PAGE_INFO} nodes {{ {FO_FIELDS}
    lineItems(first: 250) {{ {PAGE_INFO} nodes {{ {FO_LINE_FIELDS} }} }} }} }} }}
}}"""
FULFILLMENT_ORDER_LINES_QUERY = f"""query FulfillmentOrderLineItems($id: ID!, $after: String) {{
  fulfillmentOrder(id: $id) {{ lineItems(first: 250, after: $after) {{ {PAGE_INFO} nodes {{ {FO_LINE_FIELDS} }} }} }}
}}"""
ORDER_FULFILLMENTS_QUERY = """query OrderFulfillments($id: ID!) {
  order(id: $id) { id cancelledAt fulfillments(first: 50) { id status trackingInfo(first: 10) { number company } } }
}"""
FULFILLMENT_CREATE = """mutation FulfillmentCreate($fulfillment: FulfillmentInput!, $message: String) {
  fulfillmentCreate(fulfillment: $fulfillment, message: $message) {
    fulfillment { id status trackingInfo(first: 10) { company number url } }
    userErrors { field message }
  }
}"""
ORDER_CANCEL = """mutation OrderCancel($orderId: ID!, $reason: OrderCancelReason!, $restock: Boolean!,
    $notifyCustomer: Boolean, $staffNote: String) {
  orderCancel(orderId: $orderId, reason: $reason, restock: $restock, notifyCustomer: $notifyCustomer,
      staffNote: $staffNote) {
    job { id done }
    orderCancelUserErrors { field message code }
  }
}"""
PREPARED_FOR_PICKUP = """mutation PreparedForPickup($input: FulfillmentOrderLineItemsPreparedForPickupInput!) {
  fulfillmentOrderLineItemsPreparedForPickup(input: $input) { userErrors { field message code } }
}"""
# Cancelling part of an order is an order edit: begin, set the lines' new quantities, commit.
ORDER_EDIT_BEGIN = """mutation OrderEditBegin($id: ID!) {
  orderEditBegin(id: $id) {
    calculatedOrder { id lineItems(first: 250) { nodes { id sku quantity editableQuantity } } }
    userErrors { field message }
  }
}"""
ORDER_EDIT_SET_QUANTITY = """mutation OrderEditSetQuantity($id: ID!, $lineItemId: ID!, $quantity: Int!) {
  orderEditSetQuantity(id: $id, lineItemId: $lineItemId, quantity: $quantity, restock: false) {
    calculatedLineItem { id quantity }
    userErrors { field message }
  }
}"""
ORDER_EDIT_COMMIT = """mutation OrderEditCommit($id: ID!, $notifyCustomer: Boolean, $staffNote: String) {
  orderEditCommit(id: $id, notifyCustomer: $notifyCustomer, staffNote: $staffNote) {
    order { id }
    userErrors { field message }
  }
}"""
ORDER_CANCELLED_QUERY = """query OrderCancelled($id: ID!) { order(id: $id) { id cancelledAt cancelReason closed } }"""
INVENTORY_SET = """mutation InventorySet($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id reason referenceDocumentUri changes { name delta item { id } location { id } } }
    userErrors { field message code }
  }
}"""
BULK_RUN = """mutation BulkOrders($query: String!) {
  bulkOperationRunQuery(query: $query) { bulkOperation { id status } userErrors { field message code } }
}"""
BULK_POLL = """query BulkStatus($id: ID!) {
  bulkOperation(id: $id) { id status errorCode objectCount rootObjectCount fileSize url partialDataUrl completedAt }
}"""


def bulk_orders_query(since: datetime) -> str:
    """The bulk export of orders: no ``first`` on connections, nesting at most two levels."""
    return f"""{{ orders(query: "updated_at:>='{_iso(since)}'", sortKey: UPDATED_AT) {{ edges {{ node {{ {ORDER_FIELDS}
  lineItems {{ edges {{ node {{ {LINE_FIELDS} }} }} }}
  fulfillmentOrders {{ edges {{ node {{ {FO_FIELDS} lineItems {{ edges {{ node {{ {FO_LINE_FIELDS} }} }} }} }} }} }}
}} }} }} }}"""


# Every document the connector sends; tests validate each against the saved schema.
DOCUMENTS = {
    "orders": ORDERS_QUERY,
    "order": ORDER_QUERY,
    "order_lines": ORDER_LINES_QUERY,
    "order_fulfillment_orders": ORDER_FULFILLMENT_ORDERS_QUERY,
    "fulfillment_order_lines": FULFILLMENT_ORDER_LINES_QUERY,
    "order_fulfillments": ORDER_FULFILLMENTS_QUERY,
    "fulfillment_create": FULFILLMENT_CREATE,
    "order_cancel": ORDER_CANCEL,
    "order_cancelled": ORDER_CANCELLED_QUERY,
    "prepared_for_pickup": PREPARED_FOR_PICKUP,
    "order_edit_begin": ORDER_EDIT_BEGIN,
    "order_edit_set_quantity": ORDER_EDIT_SET_QUANTITY,
    "order_edit_commit": ORDER_EDIT_COMMIT,
    "inventory_set": INVENTORY_SET,
    "bulk_run": BULK_RUN,
    "bulk_poll": BULK_POLL,
}
RELEASABLE_FINANCIAL = {"PAID", "AUTHORIZED", "PARTIALLY_PAID", "PARTIALLY_REFUNDED", "REFUNDED"}
CANCEL_REASON = {
    "BuyerCanceled": "CUSTOMER",
    "CustomerExchange": "CUSTOMER",
    "NoInventory": "INVENTORY",
    "Fraud": "FRAUD",
    "PaymentDeclined": "DECLINED",
}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _nodes(connection: Any, path: str) -> list:
    connection = require_obj(connection, path)
    return require_list(connection.get("nodes"), f"{path}.nodes")


class ShopifyConnector(Connector):
    kind = "shopify"
    overlap = timedelta(minutes=2)
    idempotent_kinds = frozenset({"inventory"})
    supports_pickup_ready = True
    page_size: ClassVar[int] = 50
    max_throttle_waits: ClassVar[int] = 40
    bulk_poll_interval: ClassVar[float] = 0.5
    bulk_poll_attempts: ClassVar[int] = 1200
    cancel_confirm_attempts: ClassVar[int] = 10

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.throttled = 0
        self.last_cost: dict = {}

    # --- transport -----------------------------------------------------------------------------

    def graphql(self, document: str, variables: dict | None = None) -> dict:
        token = self.credentials.get("access_token")
        if not token:
            raise ChannelError("Shopify credentials lack access_token", retryable=False)
        version = self.account.api_version or "2026-10"
        wait = 1.0
        for _ in range(self.max_throttle_waits):
            response = self.http.request(
                "POST",
                f"/admin/api/{version}/graphql.json",
                json={"query": document, "variables": variables or {}},
                headers={"X-Shopify-Access-Token": token},
            )
            if response.status_code in (401, 402, 403, 404, 423):
                raise ChannelError(
                    f"Shopify GraphQL: HTTP {response.status_code}", retryable=False, status=response.status_code
                )
            if response.status_code != 200:
                raise ChannelError(
                    f"Shopify GraphQL: HTTP {response.status_code}: {response.text[:200]}",
                    retryable=response.status_code >= 500,
                    status=response.status_code,
                )
            body = json_body(response, "Shopify GraphQL")
            if not isinstance(body, dict):
                raise ChannelError("Shopify GraphQL: response is not a JSON object", retryable=False)
            cost = (body.get("extensions") or {}).get("cost") or {}
            self.last_cost = cost
            errors = body.get("errors")
            if isinstance(errors, list) and errors:
                codes = {((e.get("extensions") or {}).get("code")) for e in errors if isinstance(e, dict)}
                if "THROTTLED" in codes:
                    status = cost.get("throttleStatus") or {}
                    restore = float(status.get("restoreRate") or 50.0)
                    short = float(cost.get("requestedQueryCost") or 0) - float(status.get("currentlyAvailable") or 0)
                    wait = min(max(short / restore, 0.01), 60.0)
                    self.throttled += 1
                    self.http.sleep(wait)
                    continue
                messages = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
                raise ChannelError(
                    f"Shopify GraphQL errors: {messages[:1000]}",
                    retryable=bool(codes & {"INTERNAL_SERVER_ERROR", "IDEMPOTENCY_CONCURRENT_REQUEST"}),
                )
            if errors:
                raise ChannelError(f"Shopify GraphQL errors: {str(errors)[:500]}", retryable=False)
            data = body.get("data")
            if not isinstance(data, dict):
                raise ChannelError("Shopify GraphQL: response has no data", retryable=False)
            return data
        raise ChannelThrottled(f"Shopify still THROTTLED after {self.max_throttle_waits} waits", retry_after=wait)

    # --- reading orders ------------------------------------------------------------------------

    def _complete(self, order: dict) -> dict:
        """Fetch the rest of nested connections that were cut at ``first``, in place."""
        if not isinstance(order, dict) or not isinstance(order.get("id"), str):
            return order
        lines = order.get("lineItems")
        if isinstance(lines, dict) and (lines.get("pageInfo") or {}).get("hasNextPage"):
            after = lines["pageInfo"].get("endCursor")
            while after:
                page = (self.graphql(ORDER_LINES_QUERY, {"id": order["id"], "after": after}).get("order") or {}).get(
                    "lineItems"
                ) or {}
                lines["nodes"].extend(page.get("nodes") or [])
                after = (
                    (page.get("pageInfo") or {}).get("endCursor")
                    if (page.get("pageInfo") or {}).get("hasNextPage")
                    else None
                )
            lines["pageInfo"] = {"hasNextPage": False, "endCursor": None}
        fos = order.get("fulfillmentOrders")
        if isinstance(fos, dict) and (fos.get("pageInfo") or {}).get("hasNextPage"):
            after = fos["pageInfo"].get("endCursor")
            while after:
                page = (
                    self.graphql(ORDER_FULFILLMENT_ORDERS_QUERY, {"id": order["id"], "after": after}).get("order") or {}
                ).get("fulfillmentOrders") or {}
                fos["nodes"].extend(page.get("nodes") or [])
                after = (
                    (page.get("pageInfo") or {}).get("endCursor")
                    if (page.get("pageInfo") or {}).get("hasNextPage")
                    else None
                )
            fos["pageInfo"] = {"hasNextPage": False, "endCursor": None}
        for fo in (fos or {}).get("nodes") or []:
            fo_lines = fo.get("lineItems") if isinstance(fo, dict) else None
            if isinstance(fo_lines, dict) and (fo_lines.get("pageInfo") or {}).get("hasNextPage"):
                after = fo_lines["pageInfo"].get("endCursor")
                while after:
                    page = (
                        self.graphql(FULFILLMENT_ORDER_LINES_QUERY, {"id": fo["id"], "after": after}).get(
                            "fulfillmentOrder"
                        )
                        or {}
                    ).get("lineItems") or {}
                    fo_lines["nodes"].extend(page.get("nodes") or [])
                    info = page.get("pageInfo") or {}
                    after = info.get("endCursor") if info.get("hasNextPage") else None
                fo_lines["pageInfo"] = {"hasNextPage": False, "endCursor": None}
        return order

    def fetch_orders(self, *, since: datetime, backfill: bool = False) -> Iterator[OrderPage]:
        if backfill:
            yield from self._bulk_orders(since)
            return
        query = f"updated_at:>='{_iso(since)}'"
        after = None
        page = 0
        while True:
            data = self.graphql(ORDERS_QUERY, {"q": query, "after": after, "first": self.page_size})
            connection = require_obj(data.get("orders"), "orders")
            nodes = [self._complete(node) for node in require_list(connection.get("nodes"), "orders.nodes")]
            info = connection.get("pageInfo") or {}
            page += 1
            yield OrderPage(raw_orders=nodes, progress={"page": page, "has_next": bool(info.get("hasNextPage"))})
            if not info.get("hasNextPage") or not info.get("endCursor"):
                return
            after = info["endCursor"]

    def _bulk_orders(self, since: datetime) -> Iterator[OrderPage]:
        data = self.graphql(BULK_RUN, {"query": bulk_orders_query(since)})
        run = data.get("bulkOperationRunQuery") or {}
        if run.get("userErrors"):
            raise ChannelError(f"bulkOperationRunQuery: {run['userErrors']}", retryable=True)
        bulk_id = (run.get("bulkOperation") or {}).get("id")
        if not bulk_id:
            raise ChannelError("bulkOperationRunQuery returned no operation", retryable=True)
        for _ in range(self.bulk_poll_attempts):
            status = self.graphql(BULK_POLL, {"id": bulk_id}).get("bulkOperation") or {}
            if status.get("status") == "COMPLETED":
                break
            if status.get("status") in ("FAILED", "CANCELED", "CANCELING", "EXPIRED"):
                raise ChannelError(f"bulk operation {bulk_id} {status.get('status')}: {status.get('errorCode')}")
            time.sleep(self.bulk_poll_interval)
        else:
            raise ChannelError(f"bulk operation {bulk_id} did not finish in time")
        orders: list[dict] = []
        if status.get("url"):
            response = self.http.request("GET", status["url"])
            if response.status_code != 200:
                raise ChannelError(f"bulk result download: HTTP {response.status_code}")
            orders = assemble_bulk_orders(response.text)
        for start in range(0, max(len(orders), 1), 100):
            yield OrderPage(
                raw_orders=orders[start : start + 100],
                progress={"bulk_operation": bulk_id, "offset": start, "total": len(orders)},
            )

    def get_order(self, external_id: str) -> dict:
        order = self.graphql(ORDER_QUERY, {"id": external_id}).get("order")
        if order is None:
            raise ChannelError(f"order {external_id} not found", retryable=False, status=404)
        return self._complete(order)

    def order_identity(self, raw: Any) -> tuple[str, str]:
        if not isinstance(raw, dict):
            return "", ""
        return str(raw.get("id") or "")[:128], str(raw.get("updatedAt") or "")[:64]

    def ship_by(self, placed: datetime) -> datetime:
        """Placed + handling days (business days), at the cutoff in the account's zone."""
        try:
            zone = ZoneInfo(self.account.timezone or "UTC")
        except ZoneInfoNotFoundError:
            zone = ZoneInfo("UTC")
        local = placed.astimezone(zone)
        day: date = local.date()
        cutoff = self.account.cutoff_time
        if cutoff and local.time() > cutoff:
            day += timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        for _ in range(self.account.handling_time_days):
            day += timedelta(days=1)
            while day.weekday() >= 5:
                day += timedelta(days=1)
        return datetime.combine(day, cutoff or clock(23, 59), zone).astimezone(UTC)

    def parse_order(self, raw: dict) -> NormalizedOrder:
        raw = require_obj(raw, "order")
        order_id = require_str(raw, "id", "", max_length=128)
        if not order_id.startswith("gid://shopify/Order/"):
            raise PayloadError("id", f"not an Order GID: {order_id[:60]!r}")
        placed = parse_datetime(raw.get("createdAt"), "createdAt")
        updated = parse_datetime(raw.get("updatedAt"), "updatedAt")
        cancelled_at = parse_datetime(raw.get("cancelledAt"), "cancelledAt", required=False)
        currency = require_str(raw, "currencyCode", "", max_length=3)
        financial = str(raw.get("displayFinancialStatus") or "")
        fulfillment = require_str(raw, "displayFulfillmentStatus", "", max_length=32)
        nodes = _nodes(raw.get("lineItems"), "lineItems")
        if not nodes:
            raise PayloadError("lineItems.nodes", "is empty")
        ship_by = self.ship_by(placed)
        lines = []
        for index, node in enumerate(nodes):
            path = f"lineItems.nodes[{index}]"
            node = require_obj(node, path)
            line_id = require_str(node, "id", path, max_length=128)
            quantity = parse_int(node.get("quantity"), f"{path}.quantity", minimum=1)
            current = parse_int(node.get("currentQuantity"), f"{path}.currentQuantity", default=quantity)
            unfulfilled = parse_int(node.get("unfulfilledQuantity"), f"{path}.unfulfilledQuantity", default=current)
            if current > quantity:
                raise PayloadError(f"{path}.currentQuantity", f"{current} exceeds quantity {quantity}")
            if unfulfilled > current:
                raise PayloadError(f"{path}.unfulfilledQuantity", f"{unfulfilled} exceeds currentQuantity {current}")
            shipped = current - unfulfilled
            cancelled = quantity - shipped if cancelled_at else quantity - current
            price = require_obj(node.get("originalUnitPriceSet"), f"{path}.originalUnitPriceSet", required=False)
            money = require_obj(price.get("shopMoney"), f"{path}.originalUnitPriceSet.shopMoney", required=False)
            variant = require_obj(node.get("variant"), f"{path}.variant", required=False)
            item = require_obj(variant.get("inventoryItem"), f"{path}.variant.inventoryItem", required=False)
            sku = node.get("sku")
            if sku is not None and not isinstance(sku, str):
                raise PayloadError(f"{path}.sku", f"expected a string, got {type(sku).__name__}")
            lines.append(
                NormalizedLine(
                    external_id=line_id,
                    channel_sku=(sku or f"NOSKU:{line_id.rsplit('/', 1)[-1]}")[:128],
                    quantity=quantity,
                    unit_price=parse_decimal(
                        money.get("amount"), f"{path}.originalUnitPriceSet.shopMoney.amount", default=0
                    ),
                    title=str(node.get("name") or "")[:500],
                    channel_status=fulfillment,
                    quantity_shipped=shipped,
                    quantity_cancelled=cancelled,
                    ship_by=ship_by,
                    external_variant_id=str(item.get("id") or ""),
                )
            )
        if cancelled_at:
            status = OrderStatus.CANCELLED
        elif fulfillment == "FULFILLED":
            status = OrderStatus.SHIPPED
        elif fulfillment == "PARTIALLY_FULFILLED":
            status = OrderStatus.PARTIALLY_SHIPPED
        elif financial in RELEASABLE_FINANCIAL:
            status = OrderStatus.OPEN
        else:
            status = OrderStatus.PENDING
        total_set = require_obj(raw.get("totalPriceSet"), "totalPriceSet", required=False)
        total_money = require_obj(total_set.get("shopMoney"), "totalPriceSet.shopMoney", required=False)
        total = (
            parse_decimal(total_money["amount"], "totalPriceSet.shopMoney.amount") if "amount" in total_money else None
        )
        address = require_obj(raw.get("shippingAddress"), "shippingAddress", required=False)
        ship_to = None
        if address:
            ship_to = normalized_address(
                name=address.get("name"),
                line1=address.get("address1"),
                line2=address.get("address2"),
                city=address.get("city"),
                region=address.get("provinceCode"),
                postal_code=address.get("zip"),
                country_code=address.get("countryCodeV2"),
                phone=address.get("phone"),
            )
        pickup_ref, pickup_name = _pickup_location(raw)
        return NormalizedOrder(
            service_level="pickup" if pickup_ref else "ship",
            pickup_location_ref=pickup_ref,
            pickup_location_name=pickup_name,
            external_id=order_id,
            external_reference=str(raw.get("name") or "")[:128],
            placed_at=placed,
            updated_at=updated,
            currency=currency,
            status=status,
            channel_status=f"{financial or 'NONE'}/{fulfillment}"[:64],
            lines=lines,
            total_amount=total,
            ship_to=ship_to,
            ship_by=ship_by,
        )

    # --- writes --------------------------------------------------------------------------------

    def _fulfillment_orders(self, order_id: str) -> list[dict]:
        order = self.graphql(ORDER_FULFILLMENT_ORDERS_QUERY, {"id": order_id, "after": None}).get("order")
        if order is None:
            raise ChannelError(f"order {order_id} not found", retryable=False)
        return self._complete({"id": order_id, "fulfillmentOrders": order["fulfillmentOrders"]})["fulfillmentOrders"][
            "nodes"
        ]

    def confirm_shipment(self, shipment: ShipmentConfirmation, *, state: dict) -> SendResult:
        wanted = {line.external_line_id: line.quantity for line in shipment.lines}
        by_fo: dict[str, list[dict]] = {}
        for fo in self._fulfillment_orders(shipment.order_external_id):
            if fo.get("status") not in ("OPEN", "IN_PROGRESS") or fo["id"] in state.get("done", []):
                continue
            for item in fo["lineItems"]["nodes"]:
                line_id = item["lineItem"]["id"]
                take = min(wanted.get(line_id, 0), item["remainingQuantity"])
                if take > 0:
                    by_fo.setdefault(fo["id"], []).append({"id": item["id"], "quantity": take})
                    wanted[line_id] -= take
        short = {line: quantity for line, quantity in wanted.items() if quantity > 0}
        if short and not state.get("done"):
            raise ChannelError(
                f"nothing left to fulfil for line(s) {short} on {shipment.order_external_id}", retryable=False
            )
        created = []
        for fo_id, items in by_fo.items():
            tracking = {"company": shipment.carrier_name or shipment.carrier_code, "number": shipment.tracking_number}
            if shipment.tracking_url:
                tracking["url"] = shipment.tracking_url
            data = self.graphql(
                FULFILLMENT_CREATE,
                {
                    "fulfillment": {
                        "lineItemsByFulfillmentOrder": [
                            {"fulfillmentOrderId": fo_id, "fulfillmentOrderLineItems": items}
                        ],
                        "trackingInfo": tracking,
                        "notifyCustomer": True,
                    },
                    "message": f"Waybill package {shipment.package_reference}",
                },
            )
            result = data.get("fulfillmentCreate") or {}
            if result.get("userErrors"):
                raise ChannelError(
                    f"fulfillmentCreate: {'; '.join(e.get('message', '') for e in result['userErrors'])}",
                    retryable=False,
                )
            state.setdefault("done", []).append(fo_id)
            created.append((result.get("fulfillment") or {}).get("id"))
        return SendResult(response={"fulfillments": created}, state=state)

    def is_applied(self, kind: str, payload: dict, state: dict) -> bool:
        if kind == "ship_confirmation":
            order = self.graphql(ORDER_FULFILLMENTS_QUERY, {"id": payload["order_external_id"]}).get("order") or {}
            numbers = {t.get("number") for f in order.get("fulfillments") or [] for t in f.get("trackingInfo") or []}
            return payload["tracking_number"] in numbers
        if kind == "cancellation":
            order = self.graphql(ORDER_CANCELLED_QUERY, {"id": payload["order_external_id"]}).get("order") or {}
            return bool(order.get("cancelledAt"))
        return False

    def cancel_lines(self, cancel: CancelRequest, *, state: dict) -> SendResult:
        """Every open unit of an order with nothing fulfilled: orderCancel. Anything less (some lines, some
        units of a line, or an order already partly fulfilled): an order edit lowering those lines."""
        if cancel.lines or state.get("targets"):
            order = self.get_order(cancel.order_external_id)
            nodes = order["lineItems"]["nodes"]
            wanted = {line.external_line_id: line.quantity for line in cancel.lines}
            unfulfilled = {n["id"]: n.get("unfulfilledQuantity") or 0 for n in nodes}
            whole = (
                not state.get("targets")
                and {line_id for line_id, units in unfulfilled.items() if units} == set(wanted)
                and all(wanted[line_id] >= unfulfilled[line_id] for line_id in wanted)
                and all((n.get("unfulfilledQuantity") or 0) == (n.get("currentQuantity") or 0) for n in nodes)
            )
            if not whole:
                return self._cancel_by_edit(cancel, nodes, state)
        if not state.get("job_id"):
            data = self.graphql(
                ORDER_CANCEL,
                {
                    "orderId": cancel.order_external_id,
                    "reason": CANCEL_REASON.get(cancel.reason, "OTHER"),
                    # Waybill owns availability and pushes it; Shopify's own restock would double count.
                    "restock": False,
                    "notifyCustomer": True,
                    "staffNote": f"Cancelled by Waybill: {cancel.reason}"[:255],
                },
            )
            result = data.get("orderCancel") or {}
            errors = result.get("orderCancelUserErrors") or []
            if errors:
                if any("already been canceled" in e.get("message", "") for e in errors):
                    return SendResult(response={"already_cancelled": True}, already_applied=True)
                raise ChannelError(f"orderCancel: {'; '.join(e.get('message', '') for e in errors)}", retryable=False)
            state["job_id"] = (result.get("job") or {}).get("id")
        for _ in range(self.cancel_confirm_attempts):
            order = self.graphql(ORDER_CANCELLED_QUERY, {"id": cancel.order_external_id}).get("order") or {}
            if order.get("cancelledAt"):
                return SendResult(
                    response={"cancelled_at": order["cancelledAt"], "job_id": state["job_id"]}, state=state
                )
            time.sleep(0.2)
        raise ChannelError("orderCancel accepted but the order is not cancelled yet; will re-read", retryable=True)

    def pickup_ready(self, order_external_id: str, *, state: dict) -> SendResult:
        """Mark the order's open local-pickup fulfillment orders prepared: Shopify tells the buyer."""
        ready = [
            fo["id"]
            for fo in self._fulfillment_orders(order_external_id)
            if (fo.get("deliveryMethod") or {}).get("methodType") == "PICK_UP"
            and fo.get("status") in ("OPEN", "IN_PROGRESS")
            and fo["id"] not in state.get("done", [])
        ]
        if not ready and not state.get("done"):
            raise ChannelError(f"order {order_external_id} has no open local-pickup fulfillment order", retryable=False)
        if ready:
            result = (
                self.graphql(
                    PREPARED_FOR_PICKUP,
                    {"input": {"lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": fo_id} for fo_id in ready]}},
                ).get("fulfillmentOrderLineItemsPreparedForPickup")
                or {}
            )
            _raise_user_errors("fulfillmentOrderLineItemsPreparedForPickup", result)
            state.setdefault("done", []).extend(ready)
        return SendResult(response={"prepared": state.get("done", [])}, state=state)

    def _cancel_by_edit(self, cancel: CancelRequest, nodes: list[dict], state: dict) -> SendResult:
        """Set each line's quantity to what it keeps. The targets are absolute (Waybill's own count, else
        read once and remembered in ``state``), so a resend after a lost answer lowers nothing twice."""
        by_id = {n["id"]: n for n in nodes}
        targets = dict(state.get("targets") or {})
        for line in cancel.lines:
            if line.external_line_id in targets:
                continue
            node = by_id.get(line.external_line_id)
            if node is None:
                raise ChannelError(
                    f"line {line.external_line_id} is not on order {cancel.order_external_id}", retryable=False
                )
            current = node.get("currentQuantity") or 0
            unfulfilled = node.get("unfulfilledQuantity") or 0
            keep = cancel.keep.get(line.external_line_id, current - line.quantity)
            if current - keep > unfulfilled:
                raise ChannelError(
                    f"line {line.external_line_id}: cannot remove {current - keep} unit(s), only {unfulfilled} "
                    "are unfulfilled on Shopify",
                    retryable=False,
                )
            targets[line.external_line_id] = max(keep, 0)
        state["targets"] = targets
        pending = {
            line_id: keep for line_id, keep in targets.items() if (by_id[line_id].get("currentQuantity") or 0) > keep
        }
        if not pending:
            return SendResult(response={"quantities": targets}, state=state, already_applied=True)
        begin = self.graphql(ORDER_EDIT_BEGIN, {"id": cancel.order_external_id}).get("orderEditBegin") or {}
        _raise_user_errors("orderEditBegin", begin)
        calculated = begin["calculatedOrder"]
        # A calculated line item carries the number of the line item it stands for.
        calc_ids = {node["id"].rsplit("/", 1)[-1]: node["id"] for node in calculated["lineItems"]["nodes"]}
        for line_id, keep in sorted(pending.items()):
            calc_id = calc_ids.get(line_id.rsplit("/", 1)[-1])
            if calc_id is None:
                raise ChannelError(f"line {line_id} is not in Shopify's order edit", retryable=False)
            result = (
                self.graphql(
                    ORDER_EDIT_SET_QUANTITY, {"id": calculated["id"], "lineItemId": calc_id, "quantity": keep}
                ).get("orderEditSetQuantity")
                or {}
            )
            _raise_user_errors("orderEditSetQuantity", result)
        commit = (
            self.graphql(
                ORDER_EDIT_COMMIT,
                {
                    "id": calculated["id"],
                    "notifyCustomer": True,
                    "staffNote": f"Cancelled by Waybill: {cancel.reason}"[:255],
                },
            ).get("orderEditCommit")
            or {}
        )
        _raise_user_errors("orderEditCommit", commit)
        return SendResult(response={"quantities": targets, "edited": sorted(pending)}, state=state)

    def push_inventory(self, quantities: list[InventoryQuantity], *, idempotency_key: str, state: dict) -> SendResult:
        location = self.account.inventory_location_id
        if not location:
            raise ChannelError("Shopify account has no inventory_location_id (a Location GID)", retryable=False)
        pushable = [q for q in quantities if q.external_variant_id]
        skipped = [q.channel_sku for q in quantities if not q.external_variant_id]
        if not pushable:
            raise ChannelError(f"no Shopify inventoryItem id known for {', '.join(skipped)}", retryable=False)
        variables = {
            "key": idempotency_key,
            "input": {
                "name": "available",
                "reason": "correction",
                "referenceDocumentUri": f"gid://waybill/InventoryPush/{idempotency_key[:24]}",
                # null opts out of compare-and-set: Waybill is the source of truth for availability.
                "quantities": [
                    {
                        "inventoryItemId": q.external_variant_id,
                        "locationId": location,
                        "quantity": q.quantity,
                        "changeFromQuantity": None,
                    }
                    for q in pushable
                ],
            },
        }
        data = self.graphql(INVENTORY_SET, variables)
        result = data.get("inventorySetQuantities") or {}
        errors = result.get("userErrors") or []
        if errors:
            retry = any(e.get("code") == "IDEMPOTENCY_CONCURRENT_REQUEST" for e in errors)
            raise ChannelError(
                f"inventorySetQuantities: {'; '.join(str(e.get('message')) for e in errors)}", retryable=retry
            )
        group = result.get("inventoryAdjustmentGroup") or {}
        return SendResult(
            response={"adjustment_group": group.get("id"), "skipped": skipped},
            acknowledged={q.channel_sku: q.quantity for q in pushable},
            rejected={sku: "no Shopify inventoryItem id known" for sku in skipped},
        )

    # --- webhooks ------------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        sent = headers.get("X-Shopify-Hmac-Sha256") or ""
        secrets = [self.credentials.get("webhook_secret"), self.credentials.get("webhook_secret_previous")]
        valid = False
        for secret in secrets:
            if not secret:
                continue
            expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
            valid |= hmac.compare_digest(expected.encode(), sent.encode())
        return valid

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        topic = headers.get("X-Shopify-Topic") or ""
        webhook_id = headers.get("X-Shopify-Webhook-Id") or ""
        shop = headers.get("X-Shopify-Shop-Domain") or ""
        if not topic or not webhook_id:
            raise PayloadError("headers", "X-Shopify-Topic and X-Shopify-Webhook-Id are required")
        try:
            payload = json.loads(body)
        except ValueError:
            raise PayloadError("body", "not JSON") from None
        payload = require_obj(payload, "body")
        gid = payload.get("admin_graphql_api_id") or (
            f"gid://shopify/Order/{payload['id']}" if payload.get("id") else ""
        )
        try:
            updated = parse_datetime(payload.get("updated_at"), "updated_at", required=False)
        except PayloadError:
            updated = None
        return WebhookEvent(
            dedupe_key=f"webhook:{shop}:{topic}:{webhook_id}"[:255],
            topic=topic,
            external_id=str(gid)[:128],
            payload=payload,
            updated_at=updated,
        )


def assemble_bulk_orders(jsonl: str) -> list[dict]:
    """Bulk JSONL rows back into the paged query's shape; children may come in any order."""
    orders: dict[str, dict] = {}
    fulfillment_orders: dict[str, dict] = {}
    children: list[dict] = []
    for number, text in enumerate(jsonl.splitlines(), start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except ValueError:
            raise ChannelError(f"bulk result line {number} is not JSON", retryable=False) from None
        row_id = str(row.get("id", ""))
        if "__parentId" not in row:
            row["lineItems"] = {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": []}
            row["fulfillmentOrders"] = {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": []}
            orders[row_id] = row
        elif row_id.startswith("gid://shopify/FulfillmentOrder/"):
            row["lineItems"] = {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": []}
            fulfillment_orders[row_id] = row
            children.append(row)
        else:
            children.append(row)
    for row in children:
        parent = row.pop("__parentId")
        row_id = str(row.get("id", ""))
        if row_id.startswith("gid://shopify/LineItem/") and parent in orders:
            orders[parent]["lineItems"]["nodes"].append(row)
        elif row_id.startswith("gid://shopify/FulfillmentOrder/") and parent in orders:
            orders[parent]["fulfillmentOrders"]["nodes"].append(row)
        elif row_id.startswith("gid://shopify/FulfillmentOrderLineItem/") and parent in fulfillment_orders:
            fulfillment_orders[parent]["lineItems"]["nodes"].append(row)
    return list(orders.values())


def _pickup_location(raw: dict) -> tuple[str, str]:
    """(Location GID, name) of the store a local-pickup order is to be collected from: the assigned
    location of its first live fulfillment order whose delivery method is PICK_UP; ("", "") to ship."""
    fos = require_obj(raw.get("fulfillmentOrders"), "fulfillmentOrders", required=False)
    for index, fo in enumerate(require_list(fos.get("nodes") or [], "fulfillmentOrders.nodes")):
        path = f"fulfillmentOrders.nodes[{index}]"
        fo = require_obj(fo, path)
        method = require_obj(fo.get("deliveryMethod"), f"{path}.deliveryMethod", required=False)
        if method.get("methodType") != "PICK_UP" or fo.get("status") == "CANCELLED":
            continue
        assigned = require_obj(fo.get("assignedLocation"), f"{path}.assignedLocation")
        location = require_obj(assigned.get("location"), f"{path}.assignedLocation.location")
        gid = require_str(location, "id", f"{path}.assignedLocation.location", max_length=255)
        if not gid.startswith("gid://shopify/Location/"):
            raise PayloadError(f"{path}.assignedLocation.location.id", f"not a Location GID: {gid[:60]!r}")
        return gid, str(assigned.get("name") or "")[:255]
    return "", ""


def _raise_user_errors(mutation: str, result: dict) -> None:
    errors = result.get("userErrors") or []
    if errors:
        raise ChannelError(f"{mutation}: {'; '.join(str(e.get('message', '')) for e in errors)}", retryable=False)
