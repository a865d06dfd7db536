"""Walmart Marketplace (US, v3) sandbox: client-credentials tokens, orders, acknowledge, ship, cancel, inventory.

Wire format per ../shared/channel-specs/walmart-orders.json, walmart-auth.json and
walmart-inventory.json: epoch-millisecond times, per-line statuses with quantities, ``nextCursor``
as a whole query string, ``shipNodeType`` defaulting to SellerFulfilled (WFS orders are listed only
when asked for), no orders answered 404 CONTENT_NOT_FOUND. Calls need ``WM_SEC.ACCESS_TOKEN``,
``WM_QOS.CORRELATION_ID``, ``WM_SVC.NAME`` and ``Accept: application/json`` (XML otherwise).
Throttling answers 429 with ``x-current-token-count`` and ``x-next-replenishment-time`` (epoch ms).
Unshipped lines are cancelled by the marketplace ``auto_cancel_days`` after the ship date.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

from channels.sandbox.base import Request, Response, SandboxApp, SandboxOrder, SandboxState, TokenBucket, utcnow

METHOD_CODES = {"Standard", "Express", "OneDay", "Freight", "WhiteGlove", "Value"}
CANCEL_REASONS = {
    "CUSTOMER_REQUESTED_SELLER_TO_CANCEL",
    "SELLER_CANCEL_PRICING_ERROR",
    "SELLER_CANCEL_OUT_OF_STOCK",
    "SELLER_CANCEL_FRAUD_STOP_SHIPMENT",
    "SELLER_CANCEL_ADDRESS_NOT_SERVICEABLE",
}
BAD_CONTENT = "INVALID_REQUEST_CONTENT.GMP_ORDER_API"
SHIP_NODE_TYPES = {"SellerFulfilled", "WFSFulfilled", "3PLFulfilled"}


def millis(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value else None


def _error(status: int, code: str, description: str, field: str = "", headers: dict | None = None) -> Response:
    error = {"code": code, "field": field, "description": description, "severity": "ERROR", "category": "DATA"}
    return Response(status, {"errors": [error]}, headers=headers or {})


def _parse_date(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class WalmartState(SandboxState):
    def order_id_for(self, number: int) -> str:
        return str(1_790_000_000_000 + number * 7)


class WalmartSandbox(SandboxApp):
    kind = "walmart"

    def __init__(
        self,
        state: SandboxState | None = None,
        *,
        client_id: str = "demo-walmart-client",
        client_secret: str = "demo-walmart-secret",
        rate: float = 20.0,
        burst: int = 20,
        token_lifetime: int = 900,
        auto_cancel_days: int = 4,
        **options: Any,
    ):
        super().__init__(state or WalmartState(), **options)
        self.client_id = client_id
        self.client_secret = client_secret
        self.rate = rate
        self.burst = burst
        self.token_lifetime = token_lifetime
        self.auto_cancel_days = auto_cancel_days
        self._bucket = TokenBucket(rate, burst)
        self.access_tokens: dict[str, float] = {}
        self.tokens_issued = 0
        self.snapshots: dict[str, list[str]] = {}
        self.acknowledged: set[str] = set()
        # purchaseOrderId -> [{lineNumber, quantity, trackingInfo}]
        self.line_shipments: dict[str, list[dict]] = {}

    def routes(self):
        return [
            ("POST", "/v3/token", self.token),
            ("GET", "/v3/orders", self.list_orders),
            ("GET", "/v3/orders/{po}", self.get_order),
            ("POST", "/v3/orders/{po}/acknowledge", self.acknowledge),
            ("POST", "/v3/orders/{po}/shipping", self.ship),
            ("POST", "/v3/orders/{po}/cancel", self.cancel),
            ("PUT", "/v3/inventory", self.put_inventory),
        ]

    def server_error(self) -> Response:
        return _error(500, "INTERNAL_SERVER_ERROR.GMP_ORDER_API", "Internal Server Error")

    # --- auth, headers, throttling -------------------------------------------------------------

    def before(self, request: Request) -> Response | None:
        early = super().before(request)
        if early is not None:
            return early
        if not request.header("wm_qos.correlation_id") or not request.header("wm_svc.name"):
            return _error(400, "MISSING_HEADER.GMP_GATEWAY_API", "WM_QOS.CORRELATION_ID and WM_SVC.NAME are required")
        if "application/json" not in (request.header("accept") or ""):
            xml = b"<?xml version='1.0'?><ns2:errors><ns2:error><ns2:code>ACCEPT</ns2:code></ns2:error></ns2:errors>"
            return Response(406, raw=xml, headers={"Content-Type": "application/xml"})
        if request.path == "/v3/token":
            return None
        expires = self.access_tokens.get(request.header("wm_sec.access_token") or "")
        if not expires or expires < time.monotonic():
            return _error(401, "UNAUTHORIZED.GMP_GATEWAY_API", "Unauthorized token or payload")
        if self.state.faults.take("throttle_next") or not self._take_token():
            replenish = millis(utcnow() + timedelta(seconds=1 / max(self.rate, 0.001)))
            headers = {"x-current-token-count": "0", "x-next-replenishment-time": str(replenish)}
            return _error(429, "REQUEST_THRESHOLD_VIOLATED.GMP_GATEWAY_API", "Too many requests", headers=headers)
        return None

    def _take_token(self) -> bool:
        return self._bucket.take()

    def token(self, request: Request) -> Response:
        auth = request.header("authorization") or ""
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if auth != f"Basic {expected}":
            return _error(401, "UNAUTHORIZED.GMP_GATEWAY_API", "Invalid client credentials")
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return _error(400, "INVALID_REQUEST.GMP_GATEWAY_API", "grant_type must be client_credentials")
        access = "eyJraWQi" + secrets.token_urlsafe(32)
        self.access_tokens[access] = time.monotonic() + self.token_lifetime
        self.tokens_issued += 1
        return Response(200, {"access_token": access, "token_type": "Bearer", "expires_in": self.token_lifetime})

    # --- rendering -----------------------------------------------------------------------------

    def ship_node_type(self, order: SandboxOrder) -> str:
        return "SellerFulfilled" if order.fulfilled_by == "MERCHANT" else "WFSFulfilled"

    def render(self, order: SandboxOrder) -> dict:
        stamp = millis(order.updated_at)
        shipments = self.line_shipments.get(order.order_id, [])
        lines = []
        for index, line in enumerate(order.lines, start=1):
            number = str(index)
            statuses = []
            open_status = "Acknowledged" if order.order_id in self.acknowledged else "Created"
            if line.remaining:
                statuses.append({"status": open_status, "statusQuantity": _qty(line.remaining)})
            for shipment in (s for s in shipments if s["lineNumber"] == number):
                statuses.append(
                    {
                        "status": "Shipped",
                        "statusQuantity": _qty(shipment["quantity"]),
                        "trackingInfo": shipment["trackingInfo"],
                    }
                )
            untracked = line.shipped - sum(s["quantity"] for s in shipments if s["lineNumber"] == number)
            if untracked > 0:  # shipped by WFS
                statuses.append({"status": "Shipped", "statusQuantity": _qty(untracked)})
            if line.cancelled:
                statuses.append(
                    {
                        "status": "Cancelled",
                        "statusQuantity": _qty(line.cancelled),
                        "cancellationReason": order.cancel_reason or "CUSTOMER_REQUESTED_SELLER_TO_CANCEL",
                    }
                )
            lines.append(
                {
                    "lineNumber": number,
                    "item": {"productName": line.title, "sku": line.sku},
                    "charges": {
                        "charge": [
                            {
                                "chargeType": "PRODUCT",
                                "chargeName": "ItemPrice",
                                "chargeAmount": {
                                    "currency": order.currency,
                                    "amount": float(line.unit_price * line.quantity),
                                },
                                "tax": {
                                    "taxName": "Tax1",
                                    "taxAmount": {"currency": order.currency, "amount": 0.0},
                                },
                            }
                        ]
                    },
                    "orderLineQuantity": _qty(line.quantity),
                    "statusDate": stamp,
                    "orderLineStatuses": {"orderLineStatus": statuses},
                    "fulfillment": {"fulfillmentOption": "S2H", "shipMethod": "STANDARD"},
                }
            )
        a = order.address
        body: dict[str, Any] = {
            "purchaseOrderId": order.order_id,
            "customerOrderId": str(5_200_000_000_000 + order.number),
            "customerEmailId": f"{uuid.uuid5(uuid.NAMESPACE_OID, order.order_id).hex.upper()}@relay.walmart.com",
            "orderDate": millis(order.created_at),
            "shippingInfo": {
                "phone": a["phone"].replace(" ", "").lstrip("+1") or "5550100000",
                "estimatedDeliveryDate": millis(order.deliver_by),
                "estimatedShipDate": millis(order.ship_by),
                "methodCode": "Standard",
                "postalAddress": {
                    "name": order.buyer_name,
                    "address1": a["line1"],
                    "address2": a["line2"] or None,
                    "city": a["city"],
                    "state": a["region"],
                    "postalCode": a["postal_code"],
                    "country": "USA",
                    "addressType": "RESIDENTIAL",
                },
            },
            "orderLines": {"orderLine": lines},
            "shipNode": {"type": self.ship_node_type(order)},
        }
        if order.malformed == "bad_quantity":
            lines[0]["orderLineQuantity"]["amount"] = "many"
        elif order.malformed == "bad_date":
            body["orderDate"] = "2025-12-31 10:00"
        elif order.malformed == "missing_items":
            del body["orderLines"]
        return body

    def _auto_cancel(self) -> None:
        """Walmart cancels lines still unshipped ``auto_cancel_days`` after the estimated ship date."""
        cutoff = utcnow() - timedelta(days=self.auto_cancel_days)
        with self.state.lock:
            for order in self.state.orders.values():
                late = order.ship_by is not None and order.ship_by < cutoff
                if late and order.status in ("pending", "unshipped", "partially_shipped"):
                    self.state.cancel(order, "SELLER_CANCEL_OUT_OF_STOCK")

    # --- orders --------------------------------------------------------------------------------

    def list_orders(self, request: Request) -> Response:
        self._auto_cancel()
        cursor_snapshot = request.arg("soIndex")
        node_type = request.arg("shipNodeType") or "SellerFulfilled"
        if node_type not in SHIP_NODE_TYPES:
            return _error(400, "INVALID_REQUEST_PARAM.GMP_ORDER_API", "Invalid shipNodeType", "shipNodeType")
        try:
            limit = int(request.arg("limit") or 100)
        except ValueError:
            return _error(400, "INVALID_REQUEST_PARAM.GMP_ORDER_API", "limit must be a number", "limit")
        if not 1 <= limit <= 200:
            return _error(400, "INVALID_REQUEST_PARAM.GMP_ORDER_API", "limit cannot be larger than 200", "limit")
        since_text = request.arg("lastModifiedStartDate") or ""
        if cursor_snapshot:
            ids = self.snapshots.get(cursor_snapshot)
            if ids is None or request.arg("hasMoreElements") != "true":
                return _error(400, "INVALID_REQUEST_PARAM.GMP_ORDER_API", "Invalid nextCursor", "nextCursor")
            try:
                offset = int(request.arg("poIndex") or 0)
            except ValueError:
                return _error(400, "INVALID_REQUEST_PARAM.GMP_ORDER_API", "Invalid poIndex", "poIndex")
        else:
            since = _parse_date(since_text) if since_text else utcnow() - timedelta(days=7)
            if since is None:
                return _error(
                    400, "INVALID_REQUEST_PARAM.GMP_ORDER_API", "Invalid lastModifiedStartDate", "lastModifiedStartDate"
                )
            with self.state.lock:
                rows = [
                    o
                    for o in self.state.orders.values()
                    if o.updated_at >= since and self.ship_node_type(o) == node_type
                ]
                rows.sort(key=lambda o: (o.updated_at, o.order_id))
            ids = [o.order_id for o in rows]
            cursor_snapshot = str(len(self.snapshots) + 1)
            self.snapshots[cursor_snapshot] = ids
            offset = 0
        if not ids:
            return _error(404, "CONTENT_NOT_FOUND.GMP_ORDER_API", "No orders found for the given criteria")
        with self.state.lock:
            page = [self.render(self.state.orders[i]) for i in ids[offset : offset + limit]]
            next_offset = offset + limit
            if self.state.faults.take("duplicate_next") and len(page) > 2:
                next_offset -= 2
        meta: dict[str, Any] = {"totalCount": len(ids), "limit": limit}
        if next_offset < len(ids):
            query = {
                "limit": limit,
                "hasMoreElements": "true",
                "soIndex": cursor_snapshot,
                "poIndex": next_offset,
                "partnerId": "100009",
                "sellerId": "8",
                "lastModifiedStartDate": since_text,
                "shipNodeType": node_type,
            }
            meta["nextCursor"] = "?" + urlencode(query)
        return Response(200, {"list": {"meta": meta, "elements": {"order": page}}})

    def _order(self, po: str) -> SandboxOrder | Response:
        order = self.state.orders.get(po)
        if order is None:
            return _error(404, "CONTENT_NOT_FOUND.GMP_ORDER_API", f"Purchase order {po} not found", "purchaseOrderId")
        return order

    def get_order(self, request: Request, po: str) -> Response:
        with self.state.lock:
            order = self._order(po)
            if isinstance(order, Response):
                return order
            return Response(200, {"order": self.render(order)})

    def acknowledge(self, request: Request, po: str) -> Response:
        with self.state.lock:
            order = self._order(po)
            if isinstance(order, Response):
                return order
            if order.fulfilled_by != "MERCHANT" or order.status == "cancelled":
                return _error(400, "INVALID_REQUEST.GMP_ORDER_API", f"Purchase order {po} cannot be acknowledged")
            if po not in self.acknowledged:
                self.acknowledged.add(po)
                self.state.extra.setdefault("acknowledgements", []).append(po)
                self.state.touch(order)
            return Response(200, {"order": self.render(order)})

    def _lines_in(self, body: Any, root: str) -> list[dict] | Response:
        try:
            lines = body[root]["orderLines"]["orderLine"]
        except (KeyError, TypeError):
            return _error(400, BAD_CONTENT, f"{root}.orderLines.orderLine is required")
        if not isinstance(lines, list) or not lines:
            return _error(400, BAD_CONTENT, f"{root}.orderLines.orderLine is empty")
        return lines

    def ship(self, request: Request, po: str) -> Response:
        lines = self._lines_in(request.json(), "orderShipment")
        if isinstance(lines, Response):
            return lines
        with self.state.lock:
            order = self._order(po)
            if isinstance(order, Response):
                return order
            if order.fulfilled_by != "MERCHANT" or order.status == "cancelled":
                return _error(400, "INVALID_REQUEST.GMP_ORDER_API", f"Purchase order {po} cannot be shipped")
            by_number = {str(i): line for i, line in enumerate(order.lines, start=1)}
            planned: list[tuple[Any, int, dict, str]] = []
            for entry in lines:
                number = str(entry.get("lineNumber", ""))
                line = by_number.get(number)
                if line is None or not entry.get("sellerOrderId"):
                    return _error(400, BAD_CONTENT, f"Invalid line {number!r}", "lineNumber")
                for status in (entry.get("orderLineStatuses") or {}).get("orderLineStatus") or []:
                    problem = _shipped_status_problem(status)
                    if problem:
                        return _error(400, BAD_CONTENT, problem, "trackingInfo")
                    quantity = int(status["statusQuantity"]["amount"])
                    if not 0 < quantity <= line.remaining - sum(q for ln, q, *_ in planned if ln is line):
                        return _error(400, BAD_CONTENT, f"Quantity exceeds line {number}", "amount")
                    planned.append((line, quantity, status["trackingInfo"], number))
            if not planned:
                return _error(400, BAD_CONTENT, "No Shipped status given")
            for line, quantity, tracking, number in planned:
                line.shipped += quantity
                self.line_shipments.setdefault(po, []).append(
                    {"lineNumber": number, "quantity": quantity, "trackingInfo": tracking}
                )
            self.acknowledged.add(po)
            order.recompute()
            self.state.touch(order)
            self.state.shipments.append({"order_id": po, "lines": [dict(p[2], lineNumber=p[3]) for p in planned]})
            return Response(200, {"order": self.render(order)})

    def cancel(self, request: Request, po: str) -> Response:
        lines = self._lines_in(request.json(), "orderCancellation")
        if isinstance(lines, Response):
            return lines
        with self.state.lock:
            order = self._order(po)
            if isinstance(order, Response):
                return order
            by_number = {str(i): line for i, line in enumerate(order.lines, start=1)}
            wanted: dict[str, int] = {}
            reason = ""
            for entry in lines:
                number = str(entry.get("lineNumber", ""))
                line = by_number.get(number)
                if line is None:
                    return _error(400, BAD_CONTENT, f"Invalid line {number!r}", "lineNumber")
                for status in (entry.get("orderLineStatuses") or {}).get("orderLineStatus") or []:
                    reason = status.get("cancellationReason") or ""
                    if status.get("status") != "Cancelled" or reason not in CANCEL_REASONS:
                        return _error(400, BAD_CONTENT, "Invalid cancellationReason", "cancellationReason")
                    quantity = _amount(status.get("statusQuantity"))
                    if quantity is None or not 0 < quantity <= line.remaining:
                        return _error(400, BAD_CONTENT, f"Quantity exceeds line {number}", "amount")
                    wanted[line.line_id] = wanted.get(line.line_id, 0) + quantity
            self.state.cancel(order, reason, lines=wanted)
            self.state.cancellations.append({"order_id": po, "lines": wanted, "reason": reason})
            return Response(200, {"order": self.render(order)})

    # --- inventory -----------------------------------------------------------------------------

    def put_inventory(self, request: Request) -> Response:
        sku = request.arg("sku")
        body = request.json()
        quantity = (body.get("quantity") or {}) if isinstance(body, dict) else {}
        if not sku or body.get("sku") != sku:
            return _error(400, "INVALID_REQUEST_CONTENT.GMP_INVENTORY_API", "sku must match the query", "sku")
        amount = quantity.get("amount")
        if quantity.get("unit") != "EACH" or not isinstance(amount, int) or amount < 0:
            return _error(400, "INVALID_REQUEST_CONTENT.GMP_INVENTORY_API", "quantity.amount must be >= 0", "quantity")
        with self.state.lock:
            self.state.inventory[sku] = amount
            self.state.inventory_log.append({"sku": sku, "quantity": amount, "at": time.time()})
        return Response(200, {"sku": sku, "quantity": {"unit": "EACH", "amount": amount}})


def _qty(amount: int) -> dict:
    return {"unitOfMeasurement": "EACH", "amount": str(amount)}


def _amount(quantity: Any) -> int | None:
    if not isinstance(quantity, dict) or not isinstance(quantity.get("amount"), str):
        return None
    return int(quantity["amount"]) if quantity["amount"].isdigit() else None


def _shipped_status_problem(status: Any) -> str:
    if not isinstance(status, dict) or status.get("status") != "Shipped":
        return "status must be Shipped"
    if _amount(status.get("statusQuantity")) is None:
        return "statusQuantity.amount must be a number as a string"
    tracking = status.get("trackingInfo") or {}
    if not isinstance(tracking.get("shipDateTime"), int):
        return "trackingInfo.shipDateTime must be epoch milliseconds"
    if tracking["shipDateTime"] < 10**12:
        return "trackingInfo.shipDateTime looks like seconds, not milliseconds"
    if tracking.get("methodCode") not in METHOD_CODES:
        return "trackingInfo.methodCode is invalid"
    if not tracking.get("trackingNumber"):
        return "trackingInfo.trackingNumber is required"
    carrier = tracking.get("carrierName") or {}
    if not carrier.get("carrier") and not carrier.get("otherCarrier"):
        return "trackingInfo.carrierName is required"
    if carrier.get("otherCarrier") and not tracking.get("trackingURL"):
        return "trackingInfo.trackingURL is required with otherCarrier"
    return ""
