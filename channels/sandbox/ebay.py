"""eBay sandbox: OAuth refresh, Sell Fulfillment orders and shipping fulfillments, Post-Order
cancellation, Inventory API quantity updates.

Wire format per ../shared/channel-specs/ebay-sell-fulfillment-v1.json and ebay-sell-inventory-v1.json
(ISO times with milliseconds and Z, per-line ship-by, offset paging with ``next`` hrefs). The
``filter`` query must arrive percent-encoded as eBay documents it (``[`` as %5B, ``]`` as %5D): a raw
bracket is refused with error 30810. The Post-Order API is not in the saved models; its shapes follow
../shared/CHANNELS.md (check_eligibility first, whole-order cancellation, ``X-EBAY-C-MARKETPLACE-ID``).
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

from channels.sandbox.base import Request, Response, SandboxApp, SandboxOrder, SandboxState, TokenBucket

FILTER = re.compile(r"^lastmodifieddate:\[([^\]]+?)\.\.\]$")
SELLER_REASONS = {"OUT_OF_STOCK_OR_CANNOT_FULFILL", "ADDRESS_ISSUES", "BUYER_ASKED_CANCEL"}


def iso_ms(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _error(status: int, error_id: int, message: str, category: str = "REQUEST", headers: dict | None = None):
    error = {"errorId": error_id, "domain": "API_FULFILLMENT", "category": category, "message": message}
    return Response(status, {"errors": [error]}, headers=headers or {})


def _parse_iso(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return parsed if parsed.tzinfo else None


class EbayState(SandboxState):
    def order_id_for(self, number: int) -> str:
        return f"{10 + number % 90:02d}-{10000 + number:05d}-{(number * 7919) % 100000:05d}"


class EbaySandbox(SandboxApp):
    kind = "ebay"

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

    def routes(self):
        return [
            ("POST", "/identity/v1/oauth2/token", self.token),
            ("GET", "/sell/fulfillment/v1/order", self.get_orders),
            ("GET", "/sell/fulfillment/v1/order/{order_id}", self.get_order),
            ("GET", "/sell/fulfillment/v1/order/{order_id}/shipping_fulfillment", self.get_fulfillments),
            ("POST", "/sell/fulfillment/v1/order/{order_id}/shipping_fulfillment", self.create_fulfillment),
            ("POST", "/post-order/v2/cancellation/check_eligibility", self.check_eligibility),
            ("POST", "/post-order/v2/cancellation", self.create_cancellation),
            ("POST", "/sell/inventory/v1/bulk_update_price_quantity", self.bulk_update_price_quantity),
        ]

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

    def render(self, order: SandboxOrder) -> dict:
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
                    "lineItemId": f"{order.number}{index + 1:04d}",
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
                    "refunds": [],
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
                "cancelState": "CANCELED" if cancelled else "NONE_REQUESTED",
                "cancelRequests": [],
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

    def get_orders(self, request: Request) -> Response:
        raw = getattr(getattr(self, "_local", None), "raw", "")
        self.raw_queries.append(raw)
        if "[" in raw or "]" in raw:
            return _error(400, 30810, "Invalid date format")
        filter_text = request.arg("filter") or ""
        match = FILTER.match(filter_text)
        since = _parse_iso(match.group(1)) if match else None
        if filter_text and since is None:
            return _error(400, 30800, f"Invalid filter value {filter_text} for filter lastmodifieddate")
        try:
            limit = int(request.arg("limit") or 50)
            offset = int(request.arg("offset") or 0)
        except ValueError:
            return _error(400, 30850, "Invalid limit or offset")
        if not 1 <= limit <= 200 or offset < 0:
            return _error(400, 30850, "The limit must be between 1 and 200")
        with self.state.lock:
            rows = sorted(
                (o for o in self.state.orders.values() if since is None or o.updated_at >= since),
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
            return order if isinstance(order, Response) else Response(200, self.render(order))

    def get_fulfillments(self, request: Request, order_id: str) -> Response:
        with self.state.lock:
            order = self._order(order_id)
            if isinstance(order, Response):
                return order
            found = self.fulfillments.get(order_id, [])
            return Response(200, {"fulfillments": found, "total": len(found)})

    def create_fulfillment(self, request: Request, order_id: str) -> Response:
        body = request.json()
        items = body.get("lineItems") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return _error(400, 32600, "Invalid input data")
        shipped_date = body.get("shippedDate")
        if shipped_date is not None and not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(shipped_date)):
            return _error(400, 32500, "Invalid shipped date")
        if not body.get("trackingNumber") or not body.get("shippingCarrierCode"):
            return _error(400, 32300, "Invalid shipment tracking number or carrier")
        with self.state.lock:
            order = self._order(order_id)
            if isinstance(order, Response):
                return order
            if order.status == "cancelled":
                return _error(409, 32600, "The order is cancelled")
            by_id = {f"{order.number}{i + 1:04d}": line for i, line in enumerate(order.lines)}
            seen = set()
            for item in items:
                line = by_id.get(str(item.get("lineItemId")))
                if line is None:
                    return _error(400, 32200, f"Invalid line item id: {item.get('lineItemId')}")
                if item["lineItemId"] in seen:
                    return _error(400, 32210, "Duplicate line item in the request")
                seen.add(item["lineItemId"])
                quantity = item.get("quantity", 1)
                if not isinstance(quantity, int) or not 0 < quantity <= line.remaining:
                    return _error(400, 32600, f"Invalid quantity for line item {item['lineItemId']}")
            for item in items:
                by_id[str(item["lineItemId"])].shipped += item.get("quantity", 1)
            fulfillment_id = f"94055{len(self.state.shipments) + 1:017d}"
            record = {
                "fulfillmentId": fulfillment_id,
                "lineItems": [{"lineItemId": i["lineItemId"], "quantity": i.get("quantity", 1)} for i in items],
                "shipmentTrackingNumber": body["trackingNumber"],
                "shippingCarrierCode": body["shippingCarrierCode"],
                "shippedDate": shipped_date or iso_ms(datetime.now(UTC)),
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
            self.state.cancel(order, reason)
            cancel_id = f"5{len(self.state.cancellations) + 1:09d}"
            self.state.cancellations.append({"order_id": order_id, "reason": reason, "cancelId": cancel_id})
        return Response(201, {"cancelId": cancel_id})

    # --- inventory -----------------------------------------------------------------------------

    def bulk_update_price_quantity(self, request: Request) -> Response:
        body = request.json()
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not 0 < len(requests) <= 25:
            return _error(400, 25709, "requests must hold 1 to 25 items")
        responses = []
        for item in requests:
            sku = item.get("sku")
            quantity = (item.get("shipToLocationAvailability") or {}).get("quantity")
            if not sku or not isinstance(quantity, int) or quantity < 0:
                error = {"errorId": 25702, "message": "Invalid quantity or SKU"}
                responses.append({"sku": sku, "statusCode": 400, "errors": [error]})
                continue
            with self.state.lock:
                self.state.inventory[sku] = quantity
                self.state.inventory_log.append({"sku": sku, "quantity": quantity, "at": time.time()})
            responses.append({"sku": sku, "statusCode": 200})
        return Response(200, {"responses": responses})
