"""eBay sandbox: OAuth refresh, Sell Fulfillment orders and shipping fulfillments, Post-Order
cancellation, Inventory API quantity updates.

Wire format per ../shared/channel-specs/ebay-sell-fulfillment-v1.json and ebay-sell-inventory-v1.json
(ISO times with milliseconds and Z, per-line ship-by, offset paging with ``next`` hrefs). The
``filter`` query must arrive percent-encoded as eBay documents it (``[`` as %5B, ``]`` as %5D): a raw
bracket is refused with error 30810. The Post-Order API is not in the saved models; its shapes follow
../shared/CHANNELS.md and eBay's public Post-Order docs (check_eligibility first, whole-order cancellation,
``X-EBAY-C-MARKETPLACE-ID``; a buyer's request is approved with ``POST
/post-order/v2/cancellation/{cancelId}/approve``, no body, 200).

Every Sell call is checked against the models (``contracts``) and the rules they state in prose: the
``filter`` grammar (creationdate / lastmodifieddate ``[start..end]`` in UTC, orderfulfillmentstatus
combinations), ``limit`` 1 to 200, ``offset`` 0 or more, at most 50 ``orderIds``; a shipping fulfillment
names line items of the order once each with a quantity from 1 to what is unshipped, ``shippedDate`` as
``YYYY-MM-DDThh:mm:ss.sssZ``, ``shippingCarrierCode`` and ``trackingNumber`` together and the tracking number
alphanumeric; inventory requests of 1 to 25 distinct SKUs of at most 50 characters and quantities of 0 or
more. Refusals answer 400 in eBay's error list (errorId, domain, category, message, longMessage,
parameters). getOrders returns ``cancelStatus.cancelRequests`` empty, getOrder populated, as the model says.

Admin: ``POST /_sandbox/ebay/cancel_request {"orderId", "reason"}`` (a buyer asks to cancel),
``POST /_sandbox/catalog {"add", "remove"}`` (the SKUs the seller has inventory items for, ordered or not),
``POST /_sandbox/edit`` (an order's address or promise changes after creation).
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

from channels.sandbox.base import (
    Request,
    Response,
    SandboxApp,
    SandboxOrder,
    SandboxState,
    TokenBucket,
)
from channels.sandbox.contract import ContractViolation

SELLER_REASONS = {"OUT_OF_STOCK_OR_CANNOT_FULFILL", "ADDRESS_ISSUES", "BUYER_ASKED_CANCEL"}
DATE_FILTER = re.compile(r"^\[([^\]]*?)\.\.([^\]]*)\]$")
FULFILLMENT_FILTERS = {
    "{NOT_STARTED|IN_PROGRESS}": {"NOT_STARTED", "IN_PROGRESS"},
    "{FULFILLED|IN_PROGRESS}": {"FULFILLED", "IN_PROGRESS"},
}
SHIPPED_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def iso_ms(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _error(
    status: int,
    error_id: int,
    message: str,
    category: str = "REQUEST",
    headers: dict | None = None,
    *,
    domain: str = "API_FULFILLMENT",
    parameters: list[dict] | None = None,
):
    return Response(
        status, {"errors": [_error_body(error_id, message, category, domain, parameters)]}, headers=headers or {}
    )


def _error_body(
    error_id: int, message: str, category: str = "REQUEST", domain: str = "API_FULFILLMENT", parameters=None
) -> dict:
    """One entry of eBay's error list, as the models' Error type has it."""
    return {
        "errorId": error_id,
        "domain": domain,
        "category": category,
        "message": message[:50] if len(message) > 50 else message,
        "longMessage": message,
        "parameters": parameters or [],
    }


@dataclass(frozen=True)
class EbayViolation(ContractViolation):
    """A refusal with eBay's own error id for it (the models list them per operation)."""

    error_id: int = 0


def _parse_iso(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return parsed if parsed.tzinfo else None


class EbayState(SandboxState):
    distinct_stamps = True

    def order_id_for(self, number: int) -> str:
        return f"{10 + number % 90:02d}-{10000 + number:05d}-{(number * 7919) % 100000:05d}"

    def generate(self, count: int = 1, **options: Any) -> list[SandboxOrder]:
        with self.lock:
            made = super().generate(count, **options)
            for order in made:
                for index, line in enumerate(order.lines, start=1):
                    line.line_id = line_item_id(order.number, index)
        return made


def line_item_id(number: int, index: int) -> str:
    """eBay's lineItemId of an order's ``index``-th line (from 1)."""
    return f"{number}{index:04d}"


class EbaySandbox(SandboxApp):
    kind = "ebay"
    contracts = [
        ("ebay-sell-fulfillment-v1.json", "/sell/fulfillment/v1"),
        ("ebay-sell-inventory-v1.json", "/sell/inventory/v1"),
    ]

    def __init__(
        self,
        state: SandboxState | None = None,
        *,
        client_id: str = "demo-ebay",
        client_secret: str = "demo-ebay-secret",
        refresh_token: str = "v^1.1#demo",
        rate: float = 20.0,
        burst: int = 20,
        **options: Any,
    ):
        super().__init__(state or EbayState(), **options)
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.rate = rate
        self.burst = burst
        self._bucket = TokenBucket(rate, burst)
        self.access_tokens: dict[str, float] = {}
        self.tokens_issued = 0
        self.fulfillments: dict[str, list[dict]] = {}
        self.eligibility_checks: list[str] = []
        self.raw_queries: list[str] = []
        # orderId -> cancel requests (CancelRequest of the fulfillment model), buyer's and seller's
        self.cancel_requests: dict[str, list[dict]] = {}
        self.approvals: list[str] = []

    def routes(self):
        return [
            ("POST", "/identity/v1/oauth2/token", self.token),
            ("GET", "/sell/fulfillment/v1/order", self.get_orders),
            ("GET", "/sell/fulfillment/v1/order/{order_id}", self.get_order),
            ("GET", "/sell/fulfillment/v1/order/{order_id}/shipping_fulfillment", self.get_fulfillments),
            ("POST", "/sell/fulfillment/v1/order/{order_id}/issue_refund", self.issue_refund),
            ("POST", "/sell/fulfillment/v1/order/{order_id}/shipping_fulfillment", self.create_fulfillment),
            ("POST", "/post-order/v2/cancellation/check_eligibility", self.check_eligibility),
            ("POST", "/post-order/v2/cancellation", self.create_cancellation),
            ("POST", "/post-order/v2/cancellation/{cancel_id}/approve", self.approve_cancellation),
            ("POST", "/sell/inventory/v1/bulk_update_price_quantity", self.bulk_update_price_quantity),
            ("POST", "/sell/inventory/v1/bulk_get_inventory_item", self.bulk_get_inventory_item),
            ("GET", "/sell/inventory/v1/inventory_item/{sku}", self.get_inventory_item),
        ]

    def admin_routes(self):
        return [
            *super().admin_routes(),
            ("POST", "/_sandbox/ebay/cancel_request", self.admin_cancel_request),
            ("POST", "/_sandbox/catalog", self.admin_catalog),
            ("POST", "/_sandbox/edit", self.admin_edit),
        ]

    def admin_cancel_request(self, request: Request) -> Response:
        """The buyer asks to cancel the order (eBay lets them within the first hour): the seller must approve it."""
        data = request.json()
        with self.state.lock:
            order = self.state.orders.get(str(data.get("orderId") or ""))
            if order is None:
                return Response(404, {"error": "unknown orderId"})
            if order.status in ("cancelled", "shipped") or any(line.shipped for line in order.lines):
                return Response(400, {"error": "a shipped or cancelled order cannot be asked to cancel"})
            requested = {
                "cancelRequestId": f"5{sum(len(r) for r in self.cancel_requests.values()) + 1:09d}",
                "cancelInitiator": "BUYER",
                "cancelReason": str(data.get("reason") or "ORDER_PLACED_BY_MISTAKE"),
                "cancelRequestedDate": iso_ms(self.state.stamp()),
                "cancelRequestState": "REQUESTED",
            }
            self.cancel_requests.setdefault(order.order_id, []).append(requested)
            self.state.touch(order)
            return Response(200, requested)

    def render_edited(self, order: SandboxOrder) -> Any:
        return self.render(order, detail=True)

    # --- the published models and their prose -----------------------------------------------------

    def contract_error(self, request: Request, violations: list[ContractViolation]) -> Response:
        inventory = request.path.startswith("/sell/inventory/")
        domain = "API_INVENTORY" if inventory else "API_FULFILLMENT"
        default = 25709 if inventory else (30800 if request.method == "GET" else 32600)
        errors = [
            _error_body(
                getattr(v, "error_id", 0) or default,
                v.message,
                domain=domain,
                parameters=[{"name": v.where, "value": v.message[:200]}],
            )
            for v in violations
        ]
        return Response(400, {"errors": errors})

    def prose_violations(self, request: Request, template: str, body: Any) -> list[ContractViolation]:
        try:
            if template == "/order" and request.method == "GET":
                return _orders_query_violations(request)
            if template == "/order/{orderId}/shipping_fulfillment" and request.method == "POST":
                return self._fulfillment_violations(request.path.split("/")[5], body)
            if template in ("/bulk_update_price_quantity", "/bulk_get_inventory_item"):
                return _inventory_request_violations(template, body)
        except (KeyError, TypeError, AttributeError):
            return []  # the body breaks the schema: those violations are already reported
        return []

    def _fulfillment_violations(self, order_id: str, body: Any) -> list[ContractViolation]:
        with self.state.lock:
            order = self.state.orders.get(order_id)
            if order is None:
                return []  # answered by the handler: Invalid Order Id
            open_units = {line.line_id: line.remaining for line in order.lines}
        out: list[ContractViolation] = []
        items = body.get("lineItems") or []
        if not items:
            out.append(EbayViolation("body.lineItems", "at least one line item is required", 32600))
        seen: set[str] = set()
        for index, item in enumerate(items):
            where = f"body.lineItems[{index}]"
            line_id = item.get("lineItemId")
            if line_id not in open_units:
                out.append(EbayViolation(f"{where}.lineItemId", f"Invalid line item id: {line_id}", 32200))
                continue
            if line_id in seen:
                out.append(EbayViolation(f"{where}.lineItemId", "Duplicate line item in the request", 32210))
            seen.add(line_id)
            quantity = item.get("quantity", 1)
            if not 1 <= quantity <= open_units[line_id]:
                out.append(
                    EbayViolation(
                        f"{where}.quantity",
                        f"line item {line_id}: quantity {quantity}, {open_units[line_id]} unit(s) not yet shipped",
                        32600,
                    )
                )
        shipped = body.get("shippedDate")
        if shipped is not None and not SHIPPED_DATE.match(shipped):
            out.append(EbayViolation("body.shippedDate", "Invalid shipped date: use YYYY-MM-DDThh:mm:ss.sssZ", 32500))
        carrier, tracking = body.get("shippingCarrierCode"), body.get("trackingNumber")
        if bool(carrier) != bool(tracking):
            out.append(
                EbayViolation(
                    "body.trackingNumber", "shippingCarrierCode and trackingNumber go together (both or neither)", 32300
                )
            )
        if tracking and not tracking.isalnum():
            out.append(
                EbayViolation("body.trackingNumber", "Invalid shipment tracking number: letters and digits only", 32300)
            )
        return out

    def server_error(self) -> Response:
        return _error(500, 10001, "System error.", "APPLICATION")

    def serve(self, *args: Any, **kwargs: Any):
        """Keeps the raw query string of each request: Request.query is already decoded."""
        self._local = threading.local()
        server = super().serve(*args, **kwargs)
        base = server.httpd.RequestHandlerClass
        app = self

        class RawQueryHandler(base):
            def do_GET(self) -> None:
                app._local.raw = self.path.partition("?")[2]
                base.do_GET(self)

            do_POST = base.do_POST
            do_PUT = base.do_PUT

        server.httpd.RequestHandlerClass = RawQueryHandler
        return server

    # --- auth and throttling -------------------------------------------------------------------

    def before(self, request: Request) -> Response | None:
        early = super().before(request)
        if early is not None or request.path == "/identity/v1/oauth2/token":
            return early
        auth = request.header("authorization") or ""
        scheme = "IAF " if request.path.startswith("/post-order/") else "Bearer "
        token = auth[len(scheme) :] if auth.startswith(scheme) else ""
        expires = self.access_tokens.get(token)
        if not expires or expires < time.monotonic():
            return Response(
                401,
                {
                    "errors": [
                        {"errorId": 1001, "domain": "OAuth", "category": "REQUEST", "message": "Invalid access token"}
                    ]
                },
            )
        if self.state.faults.take("throttle_next") or not self._take_token():
            return Response(
                429,
                {
                    "errors": [
                        {
                            "errorId": 2001,
                            "domain": "ACCESS",
                            "category": "REQUEST",
                            "message": "Too many requests. The request limit has been reached for the resource.",
                        }
                    ]
                },
            )
        return None

    def _take_token(self) -> bool:
        return self._bucket.take()

    def token(self, request: Request) -> Response:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if request.header("authorization") != f"Basic {expected}":
            return Response(401, {"error": "invalid_client", "error_description": "client authentication failed"})
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != self.refresh_token:
            return Response(400, {"error": "invalid_grant", "error_description": "the refresh token is invalid"})
        access = "v^1.1#i^1#" + secrets.token_urlsafe(32)
        self.access_tokens[access] = time.monotonic() + 7200
        self.tokens_issued += 1
        return Response(200, {"access_token": access, "expires_in": 7200, "token_type": "User Access Token"})

    # --- orders --------------------------------------------------------------------------------

    def render(self, order: SandboxOrder, *, detail: bool = False) -> dict:
        """The order as getOrder (``detail``) or one element of getOrders returns it: the list leaves
        ``cancelStatus.cancelRequests`` empty, as the model says."""
        cancelled = order.status == "cancelled"
        lines = []
        for index, line in enumerate(order.lines):
            ship_by = order.ship_by + timedelta(hours=index) if order.ship_by else None
            if line.remaining == 0 and line.shipped:
                state = "FULFILLED"
            else:
                state = "IN_PROGRESS" if line.shipped else "NOT_STARTED"
            lines.append(
                {
                    "lineItemId": line.line_id,
                    "legacyItemId": f"1100{order.number:08d}",
                    "sku": line.sku,
                    "title": line.title,
                    "quantity": line.quantity,
                    "lineItemCost": {"value": f"{line.unit_price * line.quantity:.2f}", "currency": order.currency},
                    "lineItemFulfillmentStatus": state,
                    "listingMarketplaceId": "EBAY_US",
                    "soldFormat": "FIXED_PRICE",
                    "lineItemFulfillmentInstructions": {
                        "shipByDate": iso_ms(ship_by),
                        "minEstimatedDeliveryDate": iso_ms(order.ship_by),
                        "maxEstimatedDeliveryDate": iso_ms(order.deliver_by),
                        "guaranteedDelivery": False,
                    },
                    "refunds": self._line_refunds(order.order_id, line.line_id),
                    "taxes": [],
                    "appliedPromotions": [],
                }
            )
        states = {line["lineItemFulfillmentStatus"] for line in lines}
        if states == {"FULFILLED"}:
            fulfillment = "FULFILLED"
        elif states == {"NOT_STARTED"}:
            fulfillment = "NOT_STARTED"
        else:
            fulfillment = "IN_PROGRESS"
        total = sum((line.unit_price * line.quantity for line in order.lines), start=0)
        requests = self.cancel_requests.get(order.order_id, [])
        if cancelled:
            cancel_state = "CANCELED"
        elif any(r["cancelRequestState"] == "REQUESTED" for r in requests):
            cancel_state = "IN_PROGRESS"
        else:
            cancel_state = "NONE_REQUESTED"
        a = order.address
        body: dict[str, Any] = {
            "orderId": order.order_id,
            "legacyOrderId": order.order_id,
            "creationDate": iso_ms(order.created_at),
            "lastModifiedDate": iso_ms(order.updated_at),
            "orderFulfillmentStatus": fulfillment,
            "orderPaymentStatus": "PAID" if order.paid else "PENDING",
            "sellerId": "waybill_sandbox",
            "buyer": {"username": f"buyer{order.number}"},
            "cancelStatus": {
                "cancelState": cancel_state,
                "cancelRequests": [dict(r) for r in requests] if detail else [],
                **({"cancelledDate": iso_ms(order.updated_at)} if cancelled else {}),
            },
            "pricingSummary": {
                "priceSubtotal": {"value": f"{total:.2f}", "currency": order.currency},
                "total": {"value": f"{total:.2f}", "currency": order.currency},
            },
            "fulfillmentStartInstructions": [
                {
                    "fulfillmentInstructionsType": "SHIP_TO",
                    "minEstimatedDeliveryDate": iso_ms(order.ship_by),
                    "maxEstimatedDeliveryDate": iso_ms(order.deliver_by),
                    "shippingStep": {
                        "shippingCarrierCode": "USPS",
                        "shippingServiceCode": "USPSPriority",
                        "shipTo": {
                            "fullName": order.buyer_name,
                            "contactAddress": {
                                "addressLine1": a["line1"],
                                **({"addressLine2": a["line2"]} if a["line2"] else {}),
                                "city": a["city"],
                                "stateOrProvince": a["region"],
                                "postalCode": a["postal_code"],
                                "countryCode": a["country_code"],
                            },
                            "primaryPhone": {"phoneNumber": a["phone"]},
                            "email": f"buyer{order.number}@members.ebay.com",
                        },
                    },
                }
            ],
            "fulfillmentHrefs": [
                f"{self.base_url}/sell/fulfillment/v1/order/{order.order_id}/shipping_fulfillment/{f['fulfillmentId']}"
                for f in self.fulfillments.get(order.order_id, [])
            ],
            "lineItems": lines,
        }
        if order.malformed == "bad_quantity":
            lines[0]["quantity"] = "many"
        elif order.malformed == "bad_date":
            body["creationDate"] = "31/12/2025 10:00"
        elif order.malformed == "missing_items":
            del body["lineItems"]
        return body

    # --- refunds (issue #18): POST /order/{order_id}/issue_refund -----------------------------------------

    REFUND_REASONS = frozenset(
        {
            "BUYER_CANCEL",
            "BUYER_RETURN",
            "ITEM_NOT_RECEIVED",
            "SELLER_WRONG_ITEM",
            "SELLER_OUT_OF_STOCK",
            "SELLER_FOUND_CHEAPER_PRICE",
            "OTHER",
        }
    )

    def _line_refunds(self, order_id: str, line_id: str) -> list[dict]:
        """Refunds issued through issue_refund, and those of buyers' returns eBay settled (its managed returns
        refund the buyer once the return is approved)."""
        out = [
            {"amount": r["amount"], "refundDate": r["refundDate"], "refundId": r["refundId"]}
            for r in self.state.extra.get("refunds", {}).get(order_id, [])
            if r["lineItemId"] == line_id
        ]
        order = self.state.orders.get(order_id)
        for made in self.state.returns.values():
            if made.order_id != order_id or line_id not in made.lines or made.status in ("requested", "declined"):
                continue
            line = next(line for line in order.lines if line.line_id == line_id)
            value = line.unit_price * made.lines[line_id]
            out.append(
                {
                    "amount": {"value": f"{value:.2f}", "currency": order.currency},
                    "refundDate": iso_ms(made.updated_at),
                    "refundId": f"9{''.join(c for c in made.return_id if c.isdigit())}",
                }
            )
        return out

    def _refund_violations(self, order_id: str, body: dict) -> list[ContractViolation]:
        out: list[ContractViolation] = []
        if body.get("reasonForRefund") not in self.REFUND_REASONS:
            out.append(
                ContractViolation(
                    "reasonForRefund", f"must be one of ReasonForRefundEnum {sorted(self.REFUND_REASONS)}"
                )
            )
        items = body.get("refundItems") or []
        if bool(items) == bool(body.get("orderLevelRefundAmount")):
            out.append(ContractViolation("refundItems", "give refundItems or orderLevelRefundAmount, one of them"))
        if len(body.get("comment") or "") > 100:
            out.append(ContractViolation("comment", "is limited to 100 characters"))
        with self.state.lock:
            order = self.state.orders.get(order_id)
            if order is None:
                return out
            lines = {line.line_id: line for line in order.lines}
            for index, item in enumerate(items):
                line = lines.get(item.get("lineItemId") or "")
                where = f"refundItems[{index}]"
                if line is None:
                    out.append(ContractViolation(f"{where}.lineItemId", "is not a line item of the order"))
                    continue
                try:
                    value = Decimal(str((item.get("refundAmount") or {}).get("value")))
                except (ArithmeticError, ValueError):
                    out.append(ContractViolation(f"{where}.refundAmount.value", "is not an amount"))
                    continue
                done = sum(
                    Decimal(r["amount"]["value"])
                    for r in self.state.extra.get("refunds", {}).get(order_id, [])
                    if r["lineItemId"] == line.line_id
                )
                if value <= 0 or value + done > line.unit_price * line.quantity:
                    out.append(
                        ContractViolation(
                            f"{where}.refundAmount.value", "must be above 0 and within what is left to refund"
                        )
                    )
        return out

    def issue_refund(self, request: Request, order_id: str) -> Response:
        body = request.json()
        with self.state.lock:
            order = self._order(order_id)
            if isinstance(order, Response):
                return order
            violations = self._refund_violations(order_id, body)
            if violations:
                self.state.contract_violations.append(
                    {"method": "POST", "path": request.path, "violations": [str(v) for v in violations]}
                )
                return self.contract_error(request, violations)
            log = self.state.extra.setdefault("refund_log", [])
            refund_id = f"5{len(log) + 1:011d}"
            stamp = iso_ms(self.state.stamp())
            for item in body.get("refundItems") or []:
                record = {
                    "lineItemId": item["lineItemId"],
                    "amount": {"value": item["refundAmount"]["value"], "currency": item["refundAmount"]["currency"]},
                    "refundDate": stamp,
                    "refundId": refund_id,
                }
                self.state.extra.setdefault("refunds", {}).setdefault(order_id, []).append(record)
            log.append({"order_id": order_id, "refundId": refund_id, "body": body})
            self.state.touch(order)
            return Response(200, {"refundId": refund_id, "refundStatus": "PENDING"})

    def get_orders(self, request: Request) -> Response:
        raw = getattr(getattr(self, "_local", None), "raw", "")
        self.raw_queries.append(raw)
        if "[" in raw or "]" in raw:
            return _error(400, 30810, "Invalid date format")
        filter_text = request.arg("filter") or ""
        criteria, _ = _parse_filter(filter_text)  # already checked by prose_violations
        limit = int(request.arg("limit") or 50)
        offset = int(request.arg("offset") or 0)
        ids = [i for i in (request.arg("orderIds") or "").split(",") if i]
        with self.state.lock:
            if ids:
                rows = [self.state.orders[i] for i in ids if i in self.state.orders]
                offset, limit = 0, max(len(rows), 1)
            else:
                rows = sorted(
                    (o for o in self.state.orders.values() if _matches(criteria, o, self.render)),
                    key=lambda o: (o.updated_at, o.order_id),
                )
            page = [self.render(o) for o in rows[offset : offset + limit]]
            next_offset = offset + limit
            if self.state.faults.take("duplicate_next") and len(page) > 2:
                next_offset -= 2
        href = f"{self.base_url}/sell/fulfillment/v1/order"
        query = {"filter": filter_text} if filter_text else {}

        def link(at: int) -> str:
            encoded = urlencode({**query, "limit": limit, "offset": at}, safe=":.,")
            return f"{href}?{encoded}"

        body: dict[str, Any] = {
            "href": link(offset),
            "total": len(rows),
            "limit": limit,
            "offset": offset,
            "orders": page,
        }
        if next_offset < len(rows):
            body["next"] = link(next_offset)
        if offset:
            body["prev"] = link(max(offset - limit, 0))
        return Response(200, body)

    def _order(self, order_id: str) -> SandboxOrder | Response:
        order = self.state.orders.get(order_id)
        if order is None:
            return _error(404, 32100, f"Invalid Order Id: {order_id}")
        return order

    def get_order(self, request: Request, order_id: str) -> Response:
        with self.state.lock:
            order = self._order(order_id)
            return order if isinstance(order, Response) else Response(200, self.render(order, detail=True))

    def get_fulfillments(self, request: Request, order_id: str) -> Response:
        with self.state.lock:
            order = self._order(order_id)
            if isinstance(order, Response):
                return order
            found = self.fulfillments.get(order_id, [])
            return Response(200, {"fulfillments": found, "total": len(found)})

    def create_fulfillment(self, request: Request, order_id: str) -> Response:
        # The body was checked against the model and its prose (line items, quantities, dates, tracking).
        body = request.json()
        items = body["lineItems"]
        with self.state.lock:
            order = self._order(order_id)
            if isinstance(order, Response):
                return order
            if order.status == "cancelled":
                return _error(409, 32600, "The order is cancelled")
            by_id = {line.line_id: line for line in order.lines}
            for item in items:
                by_id[item["lineItemId"]].shipped += item.get("quantity", 1)
            # With tracking, the fulfillment's id is the tracking number (the model says so).
            fulfillment_id = body.get("trackingNumber") or f"{999 + len(self.state.shipments)}"
            record = {
                "fulfillmentId": fulfillment_id,
                "lineItems": [{"lineItemId": i["lineItemId"], "quantity": i.get("quantity", 1)} for i in items],
                "shipmentTrackingNumber": body.get("trackingNumber"),
                "shippingCarrierCode": body.get("shippingCarrierCode"),
                "shippedDate": body.get("shippedDate") or iso_ms(datetime.now(UTC)),
            }
            self.fulfillments.setdefault(order_id, []).append(record)
            order.recompute()
            self.state.touch(order)
            self.state.shipments.append({"order_id": order_id, **record})
        location = f"{self.base_url}/sell/fulfillment/v1/order/{order_id}/shipping_fulfillment/{fulfillment_id}"
        return Response(201, raw=b"", headers={"Location": location})

    # --- Post-Order cancellation ---------------------------------------------------------------

    def _cancel_blocker(self, order: SandboxOrder) -> str:
        if order.status == "cancelled":
            return "ORDER_ALREADY_CANCELLED"
        if any(line.shipped for line in order.lines):
            return "ORDER_SHIPPED"
        return ""

    def check_eligibility(self, request: Request) -> Response:
        if not request.header("x-ebay-c-marketplace-id"):
            return _error(400, 1215, "X-EBAY-C-MARKETPLACE-ID header is missing")
        order_id = str(request.json().get("legacyOrderId") or "")
        with self.state.lock:
            order = self._order(order_id)
            if isinstance(order, Response):
                return order
            self.eligibility_checks.append(order_id)
            blocker = self._cancel_blocker(order)
        body: dict[str, Any] = {"legacyOrderId": order_id, "eligible": not blocker}
        if blocker:
            body["failureReason"] = [blocker]
        else:
            body["eligibleCancelReason"] = sorted(SELLER_REASONS)
        return Response(200, body)

    def create_cancellation(self, request: Request) -> Response:
        if not request.header("x-ebay-c-marketplace-id"):
            return _error(400, 1215, "X-EBAY-C-MARKETPLACE-ID header is missing")
        body = request.json()
        order_id = str(body.get("legacyOrderId") or "")
        reason = body.get("cancelReason")
        if reason not in SELLER_REASONS:
            return _error(400, 1202, f"Invalid cancelReason {reason!r}")
        with self.state.lock:
            order = self._order(order_id)
            if isinstance(order, Response):
                return order
            if order_id not in self.eligibility_checks:
                return _error(400, 1203, "Check eligibility before creating a cancellation")
            blocker = self._cancel_blocker(order)
            if blocker:
                return _error(400, 1204, f"The order is not eligible for cancellation: {blocker}")
            pending = [r for r in self.cancel_requests.get(order_id, []) if r["cancelRequestState"] == "REQUESTED"]
            if pending:
                return _error(
                    400,
                    1205,
                    f"The buyer's cancellation request {pending[0]['cancelRequestId']} is open: approve or reject it",
                )
            cancel_id = f"5{sum(len(r) for r in self.cancel_requests.values()) + 1:09d}"
            stamp = iso_ms(self.state.stamp())
            self.cancel_requests.setdefault(order_id, []).append(
                {
                    "cancelRequestId": cancel_id,
                    "cancelInitiator": "SELLER",
                    "cancelReason": reason,
                    "cancelRequestedDate": stamp,
                    "cancelCompletedDate": stamp,
                    "cancelRequestState": "COMPLETED",
                }
            )
            self.state.cancel(order, reason)
            self.state.cancellations.append({"order_id": order_id, "reason": reason, "cancelId": cancel_id})
        return Response(201, {"cancelId": cancel_id})

    def approve_cancellation(self, request: Request, cancel_id: str) -> Response:
        """The seller approves the buyer's request: eBay cancels the order, counted as buyer-requested."""
        with self.state.lock:
            found = [
                (order_id, r)
                for order_id, requests in self.cancel_requests.items()
                for r in requests
                if r["cancelRequestId"] == cancel_id
            ]
            if not found:
                return _error(404, 1300, f"Cancellation {cancel_id} not found", domain="API_POSTORDER")
            order_id, cancel_request = found[0]
            if cancel_request["cancelInitiator"] != "BUYER" or cancel_request["cancelRequestState"] != "REQUESTED":
                return _error(
                    400,
                    1301,
                    f"Cancellation {cancel_id} is {cancel_request['cancelRequestState']}: nothing to approve",
                    domain="API_POSTORDER",
                )
            order = self.state.orders[order_id]
            blocker = self._cancel_blocker(order)
            if blocker:
                return _error(400, 1204, f"The order is not eligible for cancellation: {blocker}")
            cancel_request["cancelRequestState"] = "COMPLETED"
            cancel_request["cancelCompletedDate"] = iso_ms(self.state.stamp())
            self.state.cancel(order, "BUYER_ASKED_CANCEL")
            self.approvals.append(cancel_id)
            self.state.cancellations.append(
                {
                    "order_id": order_id,
                    "reason": cancel_request["cancelReason"],
                    "cancelId": cancel_id,
                    "approved": True,
                }
            )
        return Response(200, raw=b"")

    # --- inventory -----------------------------------------------------------------------------

    def bulk_update_price_quantity(self, request: Request) -> Response:
        """Per SKU: 200 when eBay has the inventory item, an error (25702) when it does not; 207 when the
        answers differ. The request was checked against the model (1 to 25 distinct SKUs, quantities >= 0)."""
        responses = []
        with self.state.lock:
            for item in request.json()["requests"]:
                sku = item["sku"]
                if sku not in self.catalog:
                    responses.append({"sku": sku, "statusCode": 404, "errors": [_not_found(sku)]})
                    continue
                quantity = item["shipToLocationAvailability"]["quantity"]
                self.state.inventory[sku] = quantity
                self.state.inventory_log.append({"sku": sku, "quantity": quantity, "at": time.time()})
                responses.append({"sku": sku, "statusCode": 200})
        status = 200 if all(r["statusCode"] == 200 for r in responses) else 207
        return Response(status, {"responses": responses})

    def _inventory_item(self, sku: str) -> dict:
        return {
            "sku": sku,
            "locale": "en_US",
            "condition": "NEW",
            "availability": {"shipToLocationAvailability": {"quantity": self.state.inventory.get(sku, 0)}},
            "product": {"title": f"Waybill sandbox item {sku}"},
        }

    def bulk_get_inventory_item(self, request: Request) -> Response:
        responses = []
        with self.state.lock:
            for item in request.json()["requests"]:
                sku = item["sku"]
                if sku in self.catalog:
                    responses.append({"sku": sku, "statusCode": 200, "inventoryItem": self._inventory_item(sku)})
                else:
                    responses.append({"sku": sku, "statusCode": 404, "errors": [_not_found(sku)]})
        status = 200 if all(r["statusCode"] == 200 for r in responses) else 207
        return Response(status, {"responses": responses})

    def get_inventory_item(self, request: Request, sku: str) -> Response:
        sku = unquote(sku)
        with self.state.lock:
            if sku not in self.catalog:
                return Response(404, {"errors": [_not_found(sku)]})
            return Response(200, self._inventory_item(sku))


def _not_found(sku: str) -> dict:
    return _error_body(
        25702,
        f"{sku} could not be found or is not available in the system.",
        domain="API_INVENTORY",
        parameters=[{"name": "sku", "value": sku}],
    )


def _parse_filter(text: str) -> tuple[dict[str, Any], list[ContractViolation]]:
    """getOrders' filter: comma-separated ``name:value`` criteria as the model describes them."""
    criteria: dict[str, Any] = {}
    out: list[ContractViolation] = []
    if not text:
        return criteria, out
    for part in text.split(","):
        name, sep, value = part.partition(":")
        if not sep or name not in ("creationdate", "lastmodifieddate", "orderfulfillmentstatus"):
            out.append(EbayViolation("query.filter", f"Invalid filter name: {name}", 30700))
            continue
        if name == "orderfulfillmentstatus":
            if value not in FULFILLMENT_FILTERS:
                out.append(EbayViolation("query.filter", f"Invalid filter value {value} for filter {name}", 30800))
            else:
                criteria[name] = FULFILLMENT_FILTERS[value]
            continue
        match = DATE_FILTER.match(value)
        if not match:
            out.append(EbayViolation("query.filter", f"Invalid filter value {value} for filter {name}", 30800))
            continue
        if not match.group(1):
            out.append(EbayViolation("query.filter", "Start date is missing", 30820))
            continue
        start, end = _parse_iso(match.group(1)), _parse_iso(match.group(2)) if match.group(2) else None
        if start is None or (match.group(2) and end is None):
            out.append(EbayViolation("query.filter", f"Invalid filter value {value} for filter {name}", 30800))
            continue
        now = datetime.now(UTC) + timedelta(minutes=5)
        if start > now or (end is not None and end > now):
            out.append(EbayViolation("query.filter", "Start and end dates can't be in the future", 30850))
        elif end is not None and end < start:
            out.append(EbayViolation("query.filter", "Start date should be before end date", 30840))
        criteria[name] = (start, end)
    return criteria, out


def _matches(criteria: dict[str, Any], order: SandboxOrder, render) -> bool:
    # creationdate wins over lastmodifieddate when both are given (the model says so).
    if "creationdate" in criteria:
        start, end = criteria["creationdate"]
        stamp = order.created_at
    elif "lastmodifieddate" in criteria:
        start, end = criteria["lastmodifieddate"]
        stamp = order.updated_at
    else:
        start, end, stamp = None, None, None
    if start is not None and (stamp < start or (end is not None and stamp > end)):
        return False
    if "orderfulfillmentstatus" in criteria:
        return render(order)["orderFulfillmentStatus"] in criteria["orderfulfillmentstatus"]
    return True


def _orders_query_violations(request: Request) -> list[ContractViolation]:
    _, out = _parse_filter(request.arg("filter") or "")
    limit, offset = request.arg("limit"), request.arg("offset")
    if limit is not None and (not limit.isdigit() or not 1 <= int(limit) <= 200):
        out.append(EbayViolation("query.limit", f"Invalid limit: {limit} (1 to 200)", 31100))
    if offset is not None and not offset.isdigit():
        out.append(EbayViolation("query.offset", f"Invalid offset: {offset}", 31000))
    ids = [i for i in (request.arg("orderIds") or "").split(",") if i]
    if len(ids) > 50:
        out.append(
            EbayViolation("query.orderIds", "Exceeded maximum number of order IDs (the current limit is 50)", 30900)
        )
    return out


def _inventory_request_violations(template: str, body: Any) -> list[ContractViolation]:
    requests = body.get("requests") or []
    out: list[ContractViolation] = []
    if not 1 <= len(requests) <= 25:
        out.append(EbayViolation("body.requests", "The number of requests must be 1 to 25", 25727))
    skus = [item.get("sku") for item in requests]
    for index, item in enumerate(requests):
        sku = item.get("sku")
        if not sku:
            out.append(EbayViolation(f"body.requests[{index}].sku", "Invalid SKU.", 25708))
        elif len(sku) > 50:
            out.append(EbayViolation(f"body.requests[{index}].sku", "SKU is longer than 50 characters", 25708))
        if template == "/bulk_update_price_quantity":
            quantity = (item.get("shipToLocationAvailability") or {}).get("quantity")
            if quantity is None or quantity < 0:
                out.append(
                    EbayViolation(
                        f"body.requests[{index}].shipToLocationAvailability.quantity",
                        "Invalid value for quantity: a whole number, 0 or more",
                        25709,
                    )
                )
    if len(set(skus)) != len(skus):
        out.append(EbayViolation("body.requests", "SKU should be unique in the request.", 25734))
    return out
