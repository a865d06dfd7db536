"""Walmart Marketplace (US, v3) sandbox: client-credentials tokens, orders, acknowledge, ship, cancel, inventory.

Wire format per ../shared/channel-specs/walmart-orders.json, walmart-auth.json and
walmart-inventory.json: epoch-millisecond times, per-line statuses with quantities, ``nextCursor``
as a whole query string, ``shipNodeType`` defaulting to SellerFulfilled (WFS orders are listed only
when asked for), no orders answered 404 CONTENT_NOT_FOUND. Calls need ``WM_SEC.ACCESS_TOKEN``,
``WM_QOS.CORRELATION_ID``, ``WM_SVC.NAME`` and ``Accept: application/json`` (XML otherwise).
Throttling answers 429 with ``x-current-token-count`` and ``x-next-replenishment-time`` (epoch ms).
Unshipped lines are cancelled by the marketplace ``auto_cancel_days`` after the ship date.

Every call is checked against those models (``contracts``; the shipping body against the shipment line
types, see channels.sandbox.contract.ERRATA) and the rules they state in prose: ``limit`` at most 200,
``shipNodeType`` and ``status`` values, ISO dates; a shipment only for lines that exist, ``Shipped`` with a
quantity no larger than what is unshipped, times in epoch milliseconds, ``sellerOrderId`` of at most 30
characters, ``trackingURL`` with ``otherCarrier``; a cancellation ``Cancelled`` with a reason of the enum,
CUSTOMER_REQUESTED_SELLER_TO_CANCEL only for lines the customer asked to cancel. Refusals answer 400 with
the model's error list (GatewayError: code, field, description, info, severity, category, causes).

Buyer cancellation requests: ``POST /_sandbox/walmart/intent_to_cancel {"purchaseOrderId", "lines"}`` marks
lines ``intentToCancel``; shipping such a line needs ``intentToCancelOverride: true``, and once the seller
accepted the request (cancelled with CUSTOMER_REQUESTED_SELLER_TO_CANCEL) no line of the order ships.
The catalog (``POST /_sandbox/catalog {"add": [...], "remove": [...]}``) is what Walmart lists, ordered or
not; inventory for a SKU outside it is refused. ``POST /_sandbox/edit`` changes an order's address or
promise after creation.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

from jsonschema import Draft4Validator

from channels.sandbox.base import (
    Request,
    Response,
    SandboxApp,
    SandboxOrder,
    SandboxState,
    TokenBucket,
    utcnow,
)
from channels.sandbox.contract import ContractViolation, spec

METHOD_CODES = {"Standard", "Express", "OneDay", "Freight", "WhiteGlove", "Value"}
CANCEL_REASONS = {
    "CUSTOMER_REQUESTED_SELLER_TO_CANCEL",
    "SELLER_CANCEL_PRICING_ERROR",
    "SELLER_CANCEL_OUT_OF_STOCK",
    "SELLER_CANCEL_FRAUD_STOP_SHIPMENT",
    "SELLER_CANCEL_ADDRESS_NOT_SERVICEABLE",
}
BUYER_REASON = "CUSTOMER_REQUESTED_SELLER_TO_CANCEL"
BAD_CONTENT = "INVALID_REQUEST_CONTENT.GMP_ORDER_API"
BAD_PARAM = "INVALID_REQUEST_PARAM.GMP_ORDER_API"
SHIP_NODE_TYPES = {"SellerFulfilled", "WFSFulfilled", "3PLFulfilled"}
LINE_STATUSES = {"Created", "Acknowledged", "Shipped", "Delivered", "Cancelled"}
DATE_PARAMS = (
    "createdStartDate",
    "createdEndDate",
    "fromExpectedShipDate",
    "toExpectedShipDate",
    "lastModifiedStartDate",
    "lastModifiedEndDate",
)
# What the sandbox renders for a line the customer asked to cancel (the model types intentToCancel a string).
INTENT_FLAG = "Y"


def millis(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value else None


def _error(
    status: int, code: str, description: str, field: str = "", headers: dict | None = None, *, info: str = ""
) -> Response:
    """Walmart's error list as the model declares it (``errors``: GatewayError items)."""
    return Response(status, {"errors": [_gateway_error(code, description, field, info)]}, headers=headers or {})


def _gateway_error(code: str, description: str, field: str = "", info: str = "") -> dict:
    return {
        "code": code,
        "field": field,
        "description": description,
        "info": info or description,
        "severity": "ERROR",
        "category": "DATA",
        "causes": [],
        "errorIdentifiers": {},
    }


def _parse_date(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class WalmartState(SandboxState):
    distinct_stamps = True

    def order_id_for(self, number: int) -> str:
        return str(1_790_000_000_000 + number * 7)


class WalmartSandbox(SandboxApp):
    kind = "walmart"
    contracts = [("walmart-orders.json", ""), ("walmart-auth.json", ""), ("walmart-inventory.json", "")]

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
        # purchaseOrderId -> line numbers the customer asked to cancel (intentToCancel), still pending
        self.cancel_intents: dict[str, set[str]] = {}
        # Purchase orders whose customer cancel request the seller accepted: nothing of them ships.
        self.cancel_accepted: set[str] = set()

    def routes(self):
        return [
            ("POST", "/v3/token", self.token),
            ("GET", "/v3/orders", self.list_orders),
            ("GET", "/v3/orders/{po}", self.get_order),
            ("POST", "/v3/orders/{po}/acknowledge", self.acknowledge),
            ("POST", "/v3/orders/{po}/shipping", self.ship),
            ("POST", "/v3/orders/{po}/cancel", self.cancel),
            ("POST", "/v3/orders/{po}/refund", self.refund),
            ("PUT", "/v3/inventory", self.put_inventory),
            ("GET", "/v3/inventory", self.get_inventory),
        ]

    def admin_routes(self):
        return [
            *super().admin_routes(),
            ("POST", "/_sandbox/walmart/intent_to_cancel", self.admin_intent_to_cancel),
            ("POST", "/_sandbox/catalog", self.admin_catalog),
            ("POST", "/_sandbox/edit", self.admin_edit),
        ]

    def admin_intent_to_cancel(self, request: Request) -> Response:
        """The customer asks Walmart to cancel ``lines`` (line numbers; every open line when absent)."""
        data = request.json()
        with self.state.lock:
            order = self.state.orders.get(str(data.get("purchaseOrderId") or ""))
            if order is None:
                return Response(404, {"error": "unknown purchaseOrderId"})
            numbers = {str(i) for i, line in enumerate(order.lines, start=1) if line.remaining}
            wanted = {str(n) for n in data.get("lines") or numbers}
            if not wanted or not wanted <= numbers:
                return Response(400, {"error": f"lines must be open lines of the order: {sorted(numbers)}"})
            self.cancel_intents.setdefault(order.order_id, set()).update(wanted)
            self.state.touch(order)
            return Response(200, {"purchaseOrderId": order.order_id, "intentToCancel": sorted(wanted)})

    def render_edited(self, order: SandboxOrder) -> Any:
        return {"order": self.render(order)}

    def server_error(self) -> Response:
        return _error(500, "INTERNAL_SERVER_ERROR.GMP_ORDER_API", "Internal Server Error")

    # --- the published model and its prose --------------------------------------------------------

    def contract_error(self, request: Request, violations: list[ContractViolation]) -> Response:
        if request.path.startswith("/v3/inventory"):
            code = "INVALID_REQUEST_CONTENT.GMP_INVENTORY_API"
        elif request.path == "/v3/token":
            code = "INVALID_REQUEST.GMP_GATEWAY_API"
        else:
            code = BAD_PARAM if request.method == "GET" else BAD_CONTENT
        errors = [_gateway_error(code, v.message, v.where) for v in violations]
        return Response(400, {"errors": errors})

    def prose_violations(self, request: Request, template: str, body: Any) -> list[ContractViolation]:
        try:
            return self._prose(request, template, body)
        except (KeyError, TypeError, AttributeError):
            return []  # the body breaks the schema: those violations are already reported

    def _prose(self, request: Request, template: str, body: Any) -> list[ContractViolation]:
        if template == "/v3/orders" and request.method == "GET":
            return _list_query_violations(request)
        if template == "/v3/token":
            return _token_violations(request)
        if template == "/v3/inventory" and request.method == "PUT":
            return _inventory_violations(request, body)
        if template == "/v3/orders/{purchaseOrderId}/shipping" and isinstance(body, dict):
            return self._shipping_violations(request.path.split("/")[3], body)
        if template == "/v3/orders/{purchaseOrderId}/cancel" and isinstance(body, dict):
            return self._cancel_violations(request.path.split("/")[3], body)
        if template == "/v3/orders/{purchaseOrderId}/refund" and isinstance(body, dict):
            return self._refund_violations(request.path.split("/")[3], body)
        return []

    def _open_units(self, order: SandboxOrder) -> dict[str, int]:
        return {str(i): line.remaining for i, line in enumerate(order.lines, start=1)}

    def _shipping_violations(self, po: str, body: dict) -> list[ContractViolation]:
        with self.state.lock:
            order = self.state.orders.get(po)
            if order is None:
                return []  # answered 404 by the handler
            open_units = self._open_units(order)
            intents = self.cancel_intents.get(po, set())
            accepted = po in self.cancel_accepted
        out: list[ContractViolation] = []
        asked: dict[str, int] = {}
        lines = body["orderShipment"]["orderLines"]["orderLine"]
        if not lines:
            out.append(ContractViolation("orderShipment.orderLines.orderLine", "at least one order line is required"))
        for index, entry in enumerate(lines):
            where = f"orderShipment.orderLines.orderLine[{index}]"
            number = entry["lineNumber"]
            if number not in open_units:
                out.append(ContractViolation(f"{where}.lineNumber", f"line {number} is not on purchase order {po}"))
                continue
            if len(entry["sellerOrderId"]) > 30:
                out.append(ContractViolation(f"{where}.sellerOrderId", "is limited to 30 characters"))
            if accepted:
                out.append(
                    ContractViolation(
                        f"{where}.lineNumber",
                        f"purchase order {po} was cancelled at the customer's request; its lines cannot be shipped",
                    )
                )
            elif number in intents and entry.get("intentToCancelOverride") is not True:
                out.append(
                    ContractViolation(
                        f"{where}.intentToCancelOverride",
                        f"the customer asked to cancel line {number}: cancel it, or pass intentToCancelOverride "
                        "true to confirm it shipped anyway",
                    )
                )
            for s_index, status in enumerate(entry["orderLineStatuses"]["orderLineStatus"]):
                s_where = f"{where}.orderLineStatuses.orderLineStatus[{s_index}]"
                if status["status"] != "Shipped":
                    out.append(ContractViolation(f"{s_where}.status", "must be Shipped"))
                amount = status["statusQuantity"]["amount"]
                if not amount.isdigit() or int(amount) < 1:
                    out.append(ContractViolation(f"{s_where}.statusQuantity.amount", "must be a positive whole number"))
                else:
                    asked[number] = asked.get(number, 0) + int(amount)
                tracking = status["trackingInfo"]
                if not 10**12 <= tracking["shipDateTime"] < 10**14:
                    out.append(ContractViolation(f"{s_where}.trackingInfo.shipDateTime", "must be epoch milliseconds"))
                carrier = tracking["carrierName"]
                if bool(carrier.get("carrier")) == bool(carrier.get("otherCarrier")):
                    out.append(
                        ContractViolation(
                            f"{s_where}.trackingInfo.carrierName", "give exactly one of carrier and otherCarrier"
                        )
                    )
                if carrier.get("otherCarrier") and not tracking.get("trackingURL"):
                    out.append(
                        ContractViolation(
                            f"{s_where}.trackingInfo.trackingURL", "is mandatory when otherCarrier is used"
                        )
                    )
                if not tracking["trackingNumber"].strip():
                    out.append(ContractViolation(f"{s_where}.trackingInfo.trackingNumber", "is empty"))
        for number, units in asked.items():
            if units > open_units[number]:
                out.append(
                    ContractViolation(
                        "orderShipment.orderLines.orderLine",
                        f"line {number}: {units} unit(s) to ship, {open_units[number]} not shipped or cancelled",
                    )
                )
        return out

    def _cancel_violations(self, po: str, body: dict) -> list[ContractViolation]:
        with self.state.lock:
            order = self.state.orders.get(po)
            if order is None:
                return []
            open_units = self._open_units(order)
            intents = self.cancel_intents.get(po, set())
        out: list[ContractViolation] = []
        asked: dict[str, int] = {}
        lines = body["orderCancellation"]["orderLines"]["orderLine"]
        if not lines:
            out.append(ContractViolation("orderCancellation.orderLines.orderLine", "at least one line is required"))
        for index, entry in enumerate(lines):
            where = f"orderCancellation.orderLines.orderLine[{index}]"
            number = entry["lineNumber"]
            if number not in open_units:
                out.append(ContractViolation(f"{where}.lineNumber", f"line {number} is not on purchase order {po}"))
                continue
            for s_index, status in enumerate(entry["orderLineStatuses"]["orderLineStatus"]):
                s_where = f"{where}.orderLineStatuses.orderLineStatus[{s_index}]"
                if status["status"] != "Cancelled":
                    out.append(ContractViolation(f"{s_where}.status", "must be Cancelled"))
                if status["cancellationReason"] == BUYER_REASON and number not in intents:
                    out.append(
                        ContractViolation(
                            f"{s_where}.cancellationReason",
                            f"{BUYER_REASON} is only for lines the customer asked to cancel (intentToCancel); "
                            f"line {number} has no such request",
                        )
                    )
                amount = status["statusQuantity"]["amount"]
                if not amount.isdigit() or int(amount) < 1:
                    out.append(ContractViolation(f"{s_where}.statusQuantity.amount", "must be a positive whole number"))
                else:
                    asked[number] = asked.get(number, 0) + int(amount)
        for number, units in asked.items():
            if units > open_units[number]:
                out.append(
                    ContractViolation(
                        "orderCancellation.orderLines.orderLine",
                        f"line {number}: {units} unit(s) to cancel, {open_units[number]} not shipped or cancelled",
                    )
                )
        return out

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
        intents = self.cancel_intents.get(order.order_id, set())
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
                        "cancellationReason": _walmart_reason(order.cancel_reason),
                    }
                )
            intent = {"intentToCancel": INTENT_FLAG} if number in intents and line.remaining else {}
            refund = self._line_refund(order.order_id, number, statuses)
            lines.append(
                {
                    **intent,
                    **refund,
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
        limit = int(request.arg("limit") or 100)
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
        # The body was checked against the model and its prose (lines, quantities, tracking) before this.
        lines = request.json()["orderShipment"]["orderLines"]["orderLine"]
        with self.state.lock:
            order = self._order(po)
            if isinstance(order, Response):
                return order
            if order.fulfilled_by != "MERCHANT" or order.status == "cancelled":
                return _error(400, "INVALID_REQUEST.GMP_ORDER_API", f"Purchase order {po} cannot be shipped")
            by_number = {str(i): line for i, line in enumerate(order.lines, start=1)}
            planned: list[tuple[Any, int, dict, str]] = []
            for entry in lines:
                number = entry["lineNumber"]
                for status in entry["orderLineStatuses"]["orderLineStatus"]:
                    quantity = int(status["statusQuantity"]["amount"])
                    planned.append((by_number[number], quantity, status["trackingInfo"], number))
            for line, quantity, tracking, number in planned:
                line.shipped += quantity
                self.line_shipments.setdefault(po, []).append(
                    {"lineNumber": number, "quantity": quantity, "trackingInfo": tracking}
                )
                self.cancel_intents.get(po, set()).discard(number)
            self.acknowledged.add(po)
            order.recompute()
            self.state.touch(order)
            self.state.shipments.append({"order_id": po, "lines": [dict(p[2], lineNumber=p[3]) for p in planned]})
            return Response(200, {"order": self.render(order)})

    def cancel(self, request: Request, po: str) -> Response:
        # The body was checked against the model and its prose (lines, quantities, reasons) before this.
        lines = request.json()["orderCancellation"]["orderLines"]["orderLine"]
        with self.state.lock:
            order = self._order(po)
            if isinstance(order, Response):
                return order
            by_number = {str(i): line for i, line in enumerate(order.lines, start=1)}
            wanted: dict[str, int] = {}
            reason = ""
            for entry in lines:
                line = by_number[entry["lineNumber"]]
                for status in entry["orderLineStatuses"]["orderLineStatus"]:
                    reason = status["cancellationReason"]
                    wanted[line.line_id] = wanted.get(line.line_id, 0) + int(status["statusQuantity"]["amount"])
                    if reason == BUYER_REASON:
                        # The seller accepted the customer's request: nothing of this order ships any more.
                        self.cancel_intents.get(po, set()).discard(entry["lineNumber"])
                        self.cancel_accepted.add(po)
            self.state.cancel(order, reason, lines=wanted)
            self.state.cancellations.append({"order_id": po, "lines": wanted, "reason": reason})
            return Response(200, {"order": self.render(order)})

    # --- refunds (issue #18): POST /v3/orders/{po}/refund; refunded units come back in status Refund ---------

    def _refund_violations(self, po: str, body: dict) -> list[ContractViolation]:
        with self.state.lock:
            order = self.state.orders.get(po)
            if order is None:
                return []
            shipped = {str(i): line.shipped for i, line in enumerate(order.lines, start=1)}
            paid = {str(i): line.unit_price * line.quantity for i, line in enumerate(order.lines, start=1)}
            done = self._refunded_amounts(po)
        out: list[ContractViolation] = []
        if body["orderRefund"]["purchaseOrderId"] != po:
            out.append(ContractViolation("orderRefund.purchaseOrderId", "must be the purchase order of the path"))
        lines = body["orderRefund"]["orderLines"]["orderLine"]
        if not lines:
            out.append(ContractViolation("orderRefund.orderLines.orderLine", "at least one line is required"))
        for index, entry in enumerate(lines):
            where = f"orderRefund.orderLines.orderLine[{index}]"
            number = entry["lineNumber"]
            if number not in shipped:
                out.append(ContractViolation(f"{where}.lineNumber", f"line {number} is not on purchase order {po}"))
                continue
            if not shipped[number]:
                out.append(
                    ContractViolation(f"{where}.lineNumber", f"line {number} has not shipped: cancel it instead")
                )
            total = 0.0
            for r_index, refund in enumerate(entry["refunds"]["refund"]):
                for c_index, charge in enumerate(refund["refundCharges"].get("refundCharge") or []):
                    c_where = f"{where}.refunds.refund[{r_index}].refundCharges.refundCharge[{c_index}]"
                    amount = charge["charge"]["chargeAmount"]["amount"]
                    if amount >= 0:
                        out.append(ContractViolation(f"{c_where}.charge.chargeAmount.amount", "a refund is negative"))
                    total += -amount
            if total - float(paid[number] - done.get(number, 0)) > 0.001:
                out.append(ContractViolation(where, f"line {number}: refund above what is left to refund"))
        return out

    def _refunded_amounts(self, po: str) -> dict[str, Any]:
        done: dict[str, Any] = {}
        for record in self.state.extra.get("refunds", {}).get(po, []):
            done[record["lineNumber"]] = done.get(record["lineNumber"], 0) + record["amount"]
        return done

    def _return_refunds(self, po: str, number: str) -> list[dict]:
        """Buyers' returns Walmart settled itself (approved or later): refunds of the returned units."""
        order = self.state.orders.get(po)
        out = []
        for made in self.state.returns.values():
            if made.order_id != po or made.status in ("requested", "declined"):
                continue
            for index, line in enumerate(order.lines, start=1):
                if str(index) != number or line.line_id not in made.lines:
                    continue
                units = made.lines[line.line_id]
                amount = float(line.unit_price * units)
                out.append(
                    {
                        "lineNumber": number,
                        "refundId": f"RR{''.join(c for c in made.return_id if c.isdigit())}",
                        "comments": "Customer returned item",
                        "charges": [
                            {
                                "refundReason": "Customer returned item",
                                "charge": {
                                    "chargeType": "PRODUCT",
                                    "chargeName": "Item Price",
                                    "chargeAmount": {"currency": order.currency, "amount": -amount},
                                },
                            }
                        ],
                        "amount": amount,
                        "quantity": units,
                    }
                )
        return out

    def _line_refund(self, po: str, number: str, statuses: list[dict]) -> dict:
        records = [r for r in self.state.extra.get("refunds", {}).get(po, []) if r["lineNumber"] == number]
        records += self._return_refunds(po, number)
        if not records:
            return {}
        units = sum(r["quantity"] for r in records)
        for status in statuses:  # refunded units move from Shipped to Refund
            if units and status["status"] == "Shipped":
                moved = min(units, int(status["statusQuantity"]["amount"]))
                status["statusQuantity"] = _qty(int(status["statusQuantity"]["amount"]) - moved)
                units -= moved
        statuses[:] = [s for s in statuses if s["statusQuantity"]["amount"] != "0"]
        refunded = sum(r["quantity"] for r in records)
        if refunded:
            statuses.append({"status": "Refund", "statusQuantity": _qty(refunded)})
        last = records[-1]
        return {
            "refund": {
                "refundId": last["refundId"],
                "refundComments": last["comments"],
                "refundCharges": {"refundCharge": [c for r in records for c in r["charges"]]},
            }
        }

    def refund(self, request: Request, po: str) -> Response:
        # The body was checked against the model and its prose (lines, negative amounts, caps) before this.
        body = request.json()["orderRefund"]
        with self.state.lock:
            order = self._order(po)
            if isinstance(order, Response):
                return order
            for entry in body["orderLines"]["orderLine"]:
                for refund in entry["refunds"]["refund"]:
                    charges = refund["refundCharges"].get("refundCharge") or []
                    record = {
                        "lineNumber": entry["lineNumber"],
                        "refundId": f"RF{len(self.state.extra.setdefault('refund_log', [])) + 1:08d}",
                        "comments": refund.get("refundComments", ""),
                        "charges": charges,
                        "amount": sum(-c["charge"]["chargeAmount"]["amount"] for c in charges),
                    }
                    line = order.lines[int(entry["lineNumber"]) - 1]
                    # Whole units refunded move to status Refund (the model carries amounts, not units).
                    units = (
                        line.shipped
                        if entry.get("isFullRefund")
                        else int(record["amount"] / float(line.unit_price) + 0.001)
                    )
                    refunded = sum(
                        r["quantity"]
                        for r in self.state.extra.get("refunds", {}).get(po, [])
                        if r["lineNumber"] == entry["lineNumber"]
                    )
                    record["quantity"] = max(min(units, line.shipped - refunded), 0)
                    self.state.extra["refund_log"].append({"order_id": po, **record})
                    self.state.extra.setdefault("refunds", {}).setdefault(po, []).append(record)
            self.state.touch(order)
            return Response(200, {"order": self.render(order)})

    # --- inventory -----------------------------------------------------------------------------

    def put_inventory(self, request: Request) -> Response:
        sku = request.arg("sku") or ""
        amount = request.json()["quantity"]["amount"]
        with self.state.lock:
            if sku not in self.catalog:
                return _item_not_found(sku)
            self.state.inventory[sku] = int(amount)
            self.state.inventory_log.append({"sku": sku, "quantity": int(amount), "at": time.time()})
        return Response(200, {"sku": sku, "quantity": {"unit": "EACH", "amount": int(amount)}})

    def get_inventory(self, request: Request) -> Response:
        sku = request.arg("sku") or ""
        with self.state.lock:
            if sku not in self.catalog:
                return _item_not_found(sku)
            amount = self.state.inventory.get(sku, 0)
        return Response(200, {"sku": sku, "quantity": {"unit": "EACH", "amount": amount}})


def _item_not_found(sku: str) -> Response:
    return _error(
        404,
        "CONTENT_NOT_FOUND.GMP_INVENTORY_API",
        f"Item not found for sku {sku!r}",
        "sku",
        info="Requested content could not be found.",
    )


def _walmart_reason(reason: str) -> str:
    """The sandbox's own cancel reasons (a buyer's cancel before the seller saw it) as Walmart's enum."""
    if reason in CANCEL_REASONS:
        return reason
    return BUYER_REASON if reason == "BuyerCanceled" else "SELLER_CANCEL_OUT_OF_STOCK"


def _list_query_violations(request: Request) -> list[ContractViolation]:
    """getAllOrders' parameters as the model describes them."""
    out = []
    limit = request.arg("limit")
    if limit is not None and (not limit.isdigit() or not 1 <= int(limit) <= 200):
        out.append(ContractViolation("query.limit", f"must be 1 to 200 (cannot be larger than 200): {limit!r}"))
    node_type = request.arg("shipNodeType")
    if node_type is not None and node_type not in SHIP_NODE_TYPES:
        out.append(ContractViolation("query.shipNodeType", f"allowed values are {sorted(SHIP_NODE_TYPES)}"))
    status = request.arg("status")
    if status is not None and status not in LINE_STATUSES:
        out.append(ContractViolation("query.status", f"valid statuses are {sorted(LINE_STATUSES)}"))
    for name in DATE_PARAMS:
        value = request.arg(name)
        if value is not None and _parse_date(value) is None:
            out.append(ContractViolation(f"query.{name}", f"use UTC or ISO 8601 (yyyy-MM-dd'T'HH:mm:ssZ): {value!r}"))
    return out


def _token_violations(request: Request) -> list[ContractViolation]:
    """The token request is a form (IAMTokenDTO), which the JSON validators do not read."""
    form = {k: v[0] for k, v in parse_qs(request.body.decode(errors="replace")).items()}
    schema = {**spec("walmart-auth.json")["components"]["schemas"]["IAMTokenDTO"]}
    return [
        ContractViolation(f"body.{'.'.join(map(str, e.absolute_path))}".rstrip("."), e.message)
        for e in Draft4Validator(schema).iter_errors(form)
    ]


def _inventory_violations(request: Request, body: Any) -> list[ContractViolation]:
    out = []
    if body.get("sku") != request.arg("sku"):
        out.append(ContractViolation("body.sku", "must be the SKU of the sku query parameter"))
    amount = body["quantity"]["amount"]
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        out.append(ContractViolation("body.quantity.amount", f"must be a whole number of units, 0 or more: {amount!r}"))
    return out


def _qty(amount: int) -> dict:
    return {"unitOfMeasurement": "EACH", "amount": str(amount)}
