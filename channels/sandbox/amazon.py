"""Amazon SP-API sandbox: LWA tokens, Orders 2026-01-01 reads, v0 confirmShipment, Feeds, Listings.

Wire format per ../shared/channel-specs (amazon-orders-2026-01-01.json, amazon-orders-v0.json,
amazon-feeds-2021-06-30.json, amazon-listings-items-2021-08-01.json). Every call is checked against
those models (body schema, declared query parameters) and against what they state in prose
(``prose_violations``); a refusal is Amazon's ``{"errors":[{"code","message","details"}]}`` with
HTTP 400 InvalidInput. Throttling answers 429 with ``x-amzn-RateLimit-Limit`` and an SP-API error
body; the token bucket's rate is an option.

Admin hooks beyond the shared ones (no auth, loopback only):
  POST /_sandbox/amazon/orders                        {"count", "status", "marketplace_id", "lines"}
  POST /_sandbox/amazon/orders/{order_id}/release      {"address": {...}, "withhold_recipient": false}: a
                                                      PENDING order becomes UNSHIPPED with an address
  POST /_sandbox/amazon/orders/{order_id}/cancel_request {"reason", "line_ids"}: the buyer asks to cancel
  POST /_sandbox/amazon/listings                      {"skus": [...], "listed": true|false, "error": "…"}
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote
from xml.etree import ElementTree

from defusedxml import ElementTree as SafeElementTree

# --- scorecards: the Reports API (Account Health) lives in its own module ---
from channels.sandbox.amazon_reports import SPEC_REPORTS, AmazonReportsMixin
from channels.sandbox.base import (
    SKU_CODES,
    Request,
    Response,
    SandboxApp,
    SandboxOrder,
    SandboxState,
    TokenBucket,
    iso_z,
    utcnow,
)
from channels.sandbox.contract import ContractViolation

MARKETPLACE_ID = "ATVPDKIKX0DER"
# marketplaceId → (marketplaceName, currency, country)
MARKETPLACES = {
    "ATVPDKIKX0DER": ("Amazon.com", "USD", "US"),
    "A2EUQ1WTGCTBG2": ("Amazon.ca", "CAD", "CA"),
    "A1AM78C64UM0Y8": ("Amazon.com.mx", "MXN", "MX"),
}
SPEC_ORDERS = "amazon-orders-2026-01-01.json"
SPEC_ORDERS_V0 = "amazon-orders-v0.json"
SPEC_FEEDS = "amazon-feeds-2021-06-30.json"
SPEC_LISTINGS = "amazon-listings-items-2021-08-01.json"
# confirmShipment's orderId: "An Amazon-defined order identifier, in 3-7-7 format."
ORDER_ID_3_7_7 = re.compile(r"^\d{3}-\d{7}-\d{7}$")
# PackageReferenceId: "Only positive numeric values are supported."
POSITIVE_NUMBER = re.compile(r"^0*[1-9]\d*$")
# patchListingsItem: "Only top-level listings item attributes can be patched."
TOP_LEVEL_ATTRIBUTE = re.compile(r"^/attributes/[^/]+$")
STATUS = {
    "pending": "PENDING",
    "unshipped": "UNSHIPPED",
    "partially_shipped": "PARTIALLY_SHIPPED",
    "shipped": "SHIPPED",
    "cancelled": "CANCELLED",
}
INCLUDED_DATA = {
    "BUYER",
    "RECIPIENT",
    "PROCEEDS",
    "EXPENSE",
    "PROMOTION",
    "CANCELLATION",
    "FULFILLMENT",
    "PACKAGES",
    "TAX",
    "PAYMENT",
    "FULFILLMENT_ORDERS",
}


def _error(status: int, code: str, message: str, details: str = "", headers: dict | None = None) -> Response:
    error = {"code": code, "message": message}
    if details:
        error["details"] = details
    return Response(status, {"errors": [error]}, headers=headers or {})


def _digest(text: str, size: int) -> str:
    """A stable made-up id derived from ``text`` (the sandbox's buyer e-mails and ASINs)."""
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:size]


class AmazonState(SandboxState):
    """What Amazon knows beyond the shared order rows: each order's marketplace, who cancelled it, the
    buyer's cancellation requests, and which SKUs the seller has listed."""

    def reset(self) -> None:
        with self.lock:
            super().reset()
            self.marketplace_of: dict[str, str] = {}
            self.cancelled_by: dict[str, str] = {}
            # {order id: {order item id: the buyer's reason}}
            self.cancel_requests: dict[str, dict[str, str]] = {}
            self.listed: set[str] = set(SKU_CODES)
            # Orders whose recipient Amazon withholds (the application lacks the role for the address).
            self.recipient_withheld: set[str] = set()
            # {SKU: message}: Amazon takes the submission (ACCEPTED) but reports an ERROR issue with it and
            # does not apply it (e.g. a listing suppressed for a missing attribute).
            self.listing_errors: dict[str, str] = {}

    def order_id_for(self, number: int) -> str:
        return f"114-{number:07d}-{(number * 7919) % 10_000_000:07d}"

    def generate(self, count: int = 1, *, marketplace_id: str | None = None, **kwargs: Any) -> list[SandboxOrder]:
        with self.lock:
            made = super().generate(count, **kwargs)
            marketplace = marketplace_id or MARKETPLACE_ID
            _, currency, country = MARKETPLACES[marketplace]
            for order in made:
                self.marketplace_of[order.order_id] = marketplace
                order.currency = currency
                order.address["country_code"] = country
                if order.status == "cancelled":
                    self.cancelled_by[order.order_id] = "BUYER"
        return made

    distinct_stamps = True

    def marketplace(self, order: SandboxOrder) -> str:
        return self.marketplace_of.get(order.order_id, MARKETPLACE_ID)

    def cancel(
        self,
        order: SandboxOrder,
        reason: str,
        *,
        lines: dict[str, int] | None = None,
        topic="cancel",
        by: str | None = None,
    ) -> None:
        """As the shared cancel; ``by`` is Amazon's cancelledBy (BUYER, MERCHANT, AMAZON). A buyer's cancel
        at Amazon carries BuyerCanceled; any other reason without ``by`` is Amazon's own cancel."""
        with self.lock:
            self.cancelled_by[order.order_id] = by or ("BUYER" if reason == "BuyerCanceled" else "AMAZON")
            super().cancel(order, reason, lines=lines, topic=topic)

    def request_cancel(self, order: SandboxOrder, reason: str, line_ids: list[str] | None = None) -> None:
        """The buyer asks to cancel (all open items, or ``line_ids``): Amazon shows a cancellationRequest."""
        with self.lock:
            requested = self.cancel_requests.setdefault(order.order_id, {})
            for line in order.lines:
                if (line_ids is None or line.line_id in line_ids) and line.remaining > 0:
                    requested[line.line_id] = reason
            self.touch(order)

    def release(
        self, order: SandboxOrder, address: dict[str, str] | None = None, *, withhold_recipient: bool = False
    ) -> None:
        """Payment cleared: a PENDING order becomes UNSHIPPED, its address and buyer now shown (unless
        ``withhold_recipient``), and its ship and delivery windows set from now."""
        with self.lock:
            if order.status != "pending":
                raise ValueError(f"order {order.order_id} is {order.status}, not pending")
            unknown = set(address or {}) - set(order.address)
            if unknown:
                raise ValueError(f"unknown address field(s): {', '.join(sorted(unknown))}")
            order.status = "unshipped"
            order.paid = True
            if address:
                order.address.update(address)
            if withhold_recipient:
                self.recipient_withheld.add(order.order_id)
            else:
                self.recipient_withheld.discard(order.order_id)
            # Amazon sets the promise again from the payment: a window the pending order did not have.
            stamp = self.stamp()
            order.ship_by = stamp + timedelta(days=3)
            order.deliver_by = stamp + timedelta(days=8)
            self.touch(order)


RETURNS_REPORT = "GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE"


class AmazonSandbox(AmazonReportsMixin, SandboxApp):
    kind = "amazon"
    contracts = [(SPEC_ORDERS, ""), (SPEC_ORDERS_V0, ""), (SPEC_FEEDS, ""), (SPEC_LISTINGS, ""), (SPEC_REPORTS, "")]

    def __init__(self, state: SandboxState | None = None, *, rate: float = 20.0, burst: int = 20, **options):
        super().__init__(state or AmazonState(), **options)
        self.rate = rate
        self.burst = burst
        self._bucket = TokenBucket(rate, burst)
        self.access_tokens: dict[str, float] = {}
        self.snapshots: dict[str, tuple[list[str], str]] = {}
        self.documents: dict[str, dict] = {}
        self.feeds: dict[str, dict] = {}
        self.reports_init()
        self.credentials = options.get(
            "credentials",
            {
                "client_id": "amzn1.application-oa2-client.demo",
                "client_secret": "demo-secret",
                "refresh_token": "Atzr|demo",
            },
        )

    def routes(self):
        return [
            ("POST", "/auth/o2/token", self.token),
            ("GET", "/orders/2026-01-01/orders", self.search_orders),
            ("GET", "/orders/2026-01-01/orders/{order_id}", self.get_order),
            ("POST", "/orders/v0/orders/{order_id}/shipmentConfirmation", self.confirm_shipment),
            ("POST", "/feeds/2021-06-30/documents", self.create_document),
            ("GET", "/feeds/2021-06-30/documents/{document_id}", self.get_document),
            ("POST", "/feeds/2021-06-30/feeds", self.create_feed),
            ("GET", "/feeds/2021-06-30/feeds/{feed_id}", self.get_feed),
            ("PATCH", "/listings/2021-08-01/items/{seller_id}/{sku}", self.patch_listing),
            ("GET", "/listings/2021-08-01/items/{seller_id}/{sku}", self.get_listing),
            ("PUT", "/_sandbox/documents/{document_id}", self.upload_document),
            ("GET", "/_sandbox/documents/{document_id}", self.download_document),
            ("POST", "/_sandbox/amazon/orders", self.admin_orders),
            ("POST", "/_sandbox/amazon/orders/{order_id}/release", self.admin_release),
            ("POST", "/_sandbox/amazon/orders/{order_id}/cancel_request", self.admin_cancel_request),
            ("POST", "/_sandbox/amazon/listings", self.admin_listings),
            *self.report_routes(),  # Account Health and the returns report (channels/sandbox/amazon_reports.py)
        ]

    # --- scorecards: the Reports API's hooks into this sandbox ---
    def known_marketplaces(self) -> dict:
        return MARKETPLACES

    def report_error(self, status: int, code: str, message: str) -> Response:
        return _error(status, code, message)

    # --- the published models: what they state in prose, and Amazon's refusal -------------------

    def contract_error(self, request: Request, violations: list[ContractViolation]) -> Response:
        errors = [{"code": "InvalidInput", "message": str(v), "details": v.where} for v in violations]
        return Response(400, {"errors": errors}, headers={"x-amzn-RequestId": str(uuid.uuid4())})

    def prose_violations(self, request: Request, template: str, body: Any) -> list[ContractViolation]:
        if template == "/orders/2026-01-01/orders" and request.method == "GET":
            return _search_prose(request)
        if template == "/orders/v0/orders/{orderId}/shipmentConfirmation" and request.method == "POST":
            return _confirm_prose(request, body)
        if template == "/listings/2021-08-01/items/{sellerId}/{sku}" and request.method == "PATCH":
            return _patch_prose(request, body)
        return []

    # --- auth and throttling -------------------------------------------------------------------

    def before(self, request: Request) -> Response | None:
        early = super().before(request)
        if early is not None or request.path == "/auth/o2/token":
            return early
        token = request.header("x-amz-access-token")
        expires = self.access_tokens.get(token or "")
        if not expires or expires < time.monotonic():
            return _error(
                403, "Unauthorized", "Access to requested resource is denied.", "The access token is invalid."
            )
        limit = {"x-amzn-RateLimit-Limit": f"{self.rate}", "x-amzn-RequestId": str(uuid.uuid4())}
        if self.state.faults.take("throttle_next") or not self._take_token():
            return _error(429, "QuotaExceeded", "You exceeded your quota for the requested resource.", headers=limit)
        return None

    def _take_token(self) -> bool:
        return self._bucket.take()

    def token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "refresh_token":
            return Response(400, {"error": "unsupported_grant_type", "error_description": "grant_type"})
        expected = self.credentials
        if (
            form.get("client_id") != expected["client_id"]
            or form.get("client_secret") != expected["client_secret"]
            or form.get("refresh_token") != expected["refresh_token"]
        ):
            return Response(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
        access = "Atza|" + secrets.token_urlsafe(24)
        lifetime = int(self.options.get("token_lifetime", 3600))
        self.access_tokens[access] = time.monotonic() + lifetime
        return Response(200, {"access_token": access, "token_type": "bearer", "expires_in": lifetime})

    # --- orders --------------------------------------------------------------------------------

    def render(self, order: SandboxOrder, included: set[str]) -> dict:
        body: dict = {
            "orderId": order.order_id,
            "createdTime": iso_z(order.created_at),
            "lastUpdatedTime": iso_z(order.updated_at),
            "salesChannel": {
                "channelName": "AMAZON",
                "marketplaceId": self.state.marketplace(order),
                "marketplaceName": MARKETPLACES[self.state.marketplace(order)][0],
            },
            "orderItems": [],
        }
        if "BUYER" in included and order.status != "pending":
            body["buyer"] = {
                "buyerName": order.buyer_name,
                "buyerEmail": f"{_digest(order.order_id, 16)}@marketplace.amazon.com",
            }
        if "FULFILLMENT" in included:
            body["fulfillment"] = {
                "fulfillmentStatus": STATUS[order.status],
                "fulfilledBy": order.fulfilled_by,
                "fulfillmentServiceLevel": "STANDARD",
                "shipByWindow": {
                    "earliestDateTime": iso_z(order.created_at),
                    "latestDateTime": iso_z(order.ship_by),
                },
                "deliverByWindow": {
                    "earliestDateTime": iso_z(order.ship_by),
                    "latestDateTime": iso_z(order.deliver_by),
                },
            }
        if (
            "RECIPIENT" in included
            and order.status != "pending"
            and order.order_id not in self.state.recipient_withheld
        ):
            a = order.address
            body["recipient"] = {
                "deliveryAddress": {
                    "name": order.buyer_name,
                    "addressLine1": a["line1"],
                    "addressLine2": a["line2"],
                    "city": a["city"],
                    "stateOrRegion": a["region"],
                    "postalCode": a["postal_code"],
                    "countryCode": a["country_code"],
                    "phone": a["phone"],
                    "addressType": "RESIDENTIAL",
                }
            }
        if "PROCEEDS" in included:
            total = sum((line.unit_price * line.quantity for line in order.lines), start=0)
            body["proceeds"] = {"grandTotal": {"amount": f"{total:.2f}", "currencyCode": order.currency}}
        for line in order.lines:
            item = {
                "orderItemId": line.line_id,
                "quantityOrdered": line.quantity,
                "product": {
                    "asin": "B0" + _digest(line.sku, 8).upper(),
                    "title": line.title,
                    "sellerSku": line.sku,
                    "price": {"unitPrice": {"amount": f"{line.unit_price:.2f}", "currencyCode": order.currency}},
                },
            }
            if "FULFILLMENT" in included:
                item["fulfillment"] = {"quantityFulfilled": line.shipped, "quantityUnfulfilled": line.remaining}
            requested = self.state.cancel_requests.get(order.order_id, {})
            if "CANCELLATION" in included and (line.cancelled or line.line_id in requested):
                cancellation: dict = {}
                if line.line_id in requested:
                    cancellation["cancellationRequest"] = {
                        "requester": "BUYER",
                        "cancelReason": requested[line.line_id],
                    }
                if line.cancelled:
                    cancellation["cancellationExecution"] = {
                        "cancelledBy": self.state.cancelled_by.get(order.order_id, "AMAZON"),
                        "cancelReason": order.cancel_reason,
                    }
                item["cancellation"] = cancellation
            body["orderItems"].append(item)
        if "PACKAGES" in included and order.packages:
            body["packages"] = order.packages
        if order.malformed == "bad_quantity":
            body["orderItems"][0]["quantityOrdered"] = "many"
        elif order.malformed == "bad_date":
            body["createdTime"] = "31/12/2025 10:00"
        elif order.malformed == "missing_items":
            del body["orderItems"]
        return body

    def _included(self, request: Request) -> set[str] | Response:
        raw = request.arg("includedData") or ""
        included = {part for part in raw.split(",") if part}
        unknown = included - INCLUDED_DATA
        if unknown:
            return _error(400, "InvalidInput", f"Invalid includedData value(s): {', '.join(sorted(unknown))}")
        return included

    def search_orders(self, request: Request) -> Response:
        included = self._included(request)
        if isinstance(included, Response):
            return included
        # A page token carries every filter but maxResultsPerPage and includedData, which may change.
        filters = {
            key: request.arg(key) or ""
            for key in (
                "createdAfter",
                "createdBefore",
                "lastUpdatedAfter",
                "lastUpdatedBefore",
                "marketplaceIds",
                "fulfillmentStatuses",
                "fulfilledBy",
            )
        }
        if bool(filters["createdAfter"]) == bool(filters["lastUpdatedAfter"]):
            return _error(400, "InvalidInput", "Exactly one of createdAfter and lastUpdatedAfter must be specified.")
        try:
            size = int(request.arg("maxResultsPerPage") or 100)
        except ValueError:
            return _error(400, "InvalidInput", "maxResultsPerPage must be an integer.")
        if not 1 <= size <= 100:
            return _error(400, "InvalidInput", "maxResultsPerPage must be between 1 and 100.")
        signature = hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:16]
        token = request.arg("paginationToken")
        by_created = bool(filters["createdAfter"])
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                snapshot_id, offset, token_signature = state["s"], int(state["o"]), state["f"]
            except (ValueError, KeyError, TypeError):
                return _error(400, "InvalidInput", "Invalid paginationToken.")
            if token_signature != signature or snapshot_id not in self.snapshots:
                return _error(400, "InvalidInput", "The paginationToken does not match the original request filters.")
            ids, before = self.snapshots[snapshot_id]
        else:
            field = "createdAfter" if by_created else "lastUpdatedAfter"
            after = _parse_iso(filters[field])
            if after is None:
                return _error(400, "InvalidInput", f"{field} is not a valid ISO 8601 date-time.")
            bound = filters["createdBefore" if by_created else "lastUpdatedBefore"]
            until = _parse_iso(bound) if bound else None
            statuses = {s for s in filters["fulfillmentStatuses"].split(",") if s}
            marketplaces = {m for m in filters["marketplaceIds"].split(",") if m}
            fulfilled_by = {f for f in filters["fulfilledBy"].split(",") if f}
            with self.state.lock:
                # The window ends just after the newest stamp handed out, so every order so far is in it.
                now = self.state.stamp() + timedelta(seconds=1)
                if until is not None:
                    now = min(now, until + timedelta(seconds=1))
                rows = [
                    o
                    for o in self.state.orders.values()
                    if (o.created_at if by_created else o.updated_at) >= after
                    and (o.created_at if by_created else o.updated_at) < now
                    and (not statuses or STATUS[o.status] in statuses)
                    and (not marketplaces or self.state.marketplace(o) in marketplaces)
                    and (not fulfilled_by or o.fulfilled_by in fulfilled_by)
                ]
                rows.sort(key=lambda o: ((o.created_at if by_created else o.updated_at), o.order_id))
                ids = [o.order_id for o in rows]
            before = iso_z(now)
            snapshot_id = uuid.uuid4().hex
            self.snapshots[snapshot_id] = (ids, before)
            offset = 0
        with self.state.lock:
            page_ids = ids[offset : offset + size]
            orders = [self.render(self.state.orders[i], included) for i in page_ids]
            next_offset = offset + size
            if self.state.faults.take("duplicate_next") and len(page_ids) > 2:
                next_offset -= 2
        body: dict = {"orders": orders, "createdBefore" if by_created else "lastUpdatedBefore": before}
        if next_offset < len(ids):
            next_token = {"s": snapshot_id, "o": next_offset, "f": signature}
            body["pagination"] = {"nextToken": base64.urlsafe_b64encode(json.dumps(next_token).encode()).decode()}
        return Response(200, body, headers={"x-amzn-RateLimit-Limit": f"{self.rate}"})

    def get_order(self, request: Request, order_id: str) -> Response:
        included = self._included(request)
        if isinstance(included, Response):
            return included
        with self.state.lock:
            order = self.state.orders.get(order_id)
            if order is None:
                return _error(404, "NotFound", f"Order {order_id} was not found.")
            return Response(200, {"order": self.render(order, included)})

    # --- v0 ship confirmation -------------------------------------------------------------------

    def confirm_shipment(self, request: Request, order_id: str) -> Response:
        # The body's shape, the numeric packageReferenceId and carrierName-with-Other were checked
        # against the model before this handler; what is left depends on the order.
        body = request.json()
        detail = body["packageDetail"]
        with self.state.lock:
            order = self.state.orders.get(order_id)
            if order is None:
                return _error(404, "NotFound", f"Order {order_id} was not found.")
            marketplace = self.state.marketplace(order)
            if body["marketplaceId"] != marketplace:
                return _error(
                    400,
                    "InvalidInput",
                    f"Order {order_id} was not placed in marketplace {body['marketplaceId']}.",
                    f"marketplaceId must be the order's marketplace {marketplace}.",
                )
            if order.fulfilled_by != "MERCHANT" or order.status in ("cancelled", "pending"):
                return _error(400, "InvalidInput", f"Order {order_id} cannot be confirmed in its current state.")
            reference = str(int(detail["packageReferenceId"]))
            if any(p["packageReferenceId"] == reference for p in order.packages):
                return _error(400, "InvalidInput", "A package with this packageReferenceId was already confirmed.")
            if not detail["orderItems"]:
                return _error(400, "InvalidInput", "packageDetail.orderItems is empty.")
            lines = {line.line_id: line for line in order.lines}
            wanted: dict[str, int] = {}
            for item in detail["orderItems"]:
                line = lines.get(item["orderItemId"])
                if line is None:
                    return _error(
                        400, "InvalidInput", f"orderItemId {item['orderItemId']!r} is not an item of order {order_id}."
                    )
                wanted[line.line_id] = wanted.get(line.line_id, 0) + item["quantity"]
            for line_id, quantity in wanted.items():
                if not 0 < quantity <= lines[line_id].remaining:
                    return _error(
                        400,
                        "InvalidInput",
                        f"Invalid quantity {quantity} for orderItemId {line_id!r}.",
                        f"{lines[line_id].remaining} unit(s) of this item are unshipped.",
                    )
            for line_id, quantity in wanted.items():
                lines[line_id].shipped += quantity
            order.packages.append(
                {
                    "packageReferenceId": reference,
                    "createdTime": iso_z(utcnow()),
                    "packageStatus": {"status": "SHIPPED"},
                    "carrier": detail.get("carrierName") or detail["carrierCode"],
                    "shipTime": detail["shipDate"],
                    "trackingNumber": detail["trackingNumber"],
                    "packageItems": [
                        {"orderItemId": str(i["orderItemId"]), "quantity": i["quantity"]} for i in detail["orderItems"]
                    ],
                }
            )
            order.recompute()
            self.state.touch(order)
            self.state.shipments.append({"order_id": order_id, "marketplaceId": body["marketplaceId"], **detail})
        return Response(204)

    # --- feeds ---------------------------------------------------------------------------------

    def create_document(self, request: Request) -> Response:
        content_type = request.json()["contentType"]
        document_id = f"amzn1.tortuga.4.na.{uuid.uuid4()}"
        self.documents[document_id] = {"contentType": content_type, "content": None}
        return Response(
            201, {"feedDocumentId": document_id, "url": f"{self.base_url}/_sandbox/documents/{document_id}"}
        )

    def upload_document(self, request: Request, document_id: str) -> Response:
        document = self.documents.get(document_id)
        if document is None:
            return Response(
                404, raw=b"<Error><Code>NoSuchKey</Code></Error>", headers={"Content-Type": "application/xml"}
            )
        document["content"] = request.body
        return Response(200, raw=b"")

    def download_document(self, request: Request, document_id: str) -> Response:
        document = self.documents.get(document_id)
        if document is None or document["content"] is None:
            return Response(
                404, raw=b"<Error><Code>NoSuchKey</Code></Error>", headers={"Content-Type": "application/xml"}
            )
        return Response(200, raw=document["content"], headers={"Content-Type": document["contentType"]})

    def get_document(self, request: Request, document_id: str) -> Response:
        if document_id not in self.documents:
            return _error(404, "NotFound", "Feed document not found.")
        return Response(
            200, {"feedDocumentId": document_id, "url": f"{self.base_url}/_sandbox/documents/{document_id}"}
        )

    def create_feed(self, request: Request) -> Response:
        body = request.json()
        unknown = [m for m in body["marketplaceIds"] if m not in MARKETPLACES]
        if unknown:
            return _error(400, "InvalidInput", f"Invalid marketplaceIds: {', '.join(unknown)}")
        document = self.documents.get(body["inputFeedDocumentId"])
        if document is None or document["content"] is None:
            return _error(400, "InvalidInput", "inputFeedDocumentId has no uploaded content.")
        feed_id = str(50_000_000_000 + len(self.feeds) + 1)
        self.feeds[feed_id] = {
            "feedId": feed_id,
            "feedType": body["feedType"],
            "marketplaceIds": body["marketplaceIds"],
            "createdTime": iso_z(utcnow()),
            "processingStatus": "IN_QUEUE",
            "document": body["inputFeedDocumentId"],
        }
        return Response(202, {"feedId": feed_id})

    def get_feed(self, request: Request, feed_id: str) -> Response:
        feed = self.feeds.get(feed_id)
        if feed is None:
            return _error(404, "NotFound", "Feed not found.")
        # Each read moves the feed one step: IN_QUEUE → IN_PROGRESS → DONE (processed then).
        if feed["processingStatus"] == "IN_QUEUE":
            feed["processingStatus"] = "IN_PROGRESS"
            feed["processingStartTime"] = iso_z(utcnow())
        elif feed["processingStatus"] == "IN_PROGRESS":
            report, content_type = self._process_feed(feed)
            report_id = f"amzn1.tortuga.4.na.{uuid.uuid4()}"
            self.documents[report_id] = {"contentType": content_type, "content": report}
            feed["processingStatus"] = "DONE"
            feed["processingEndTime"] = iso_z(utcnow())
            feed["resultFeedDocumentId"] = report_id
        return Response(200, {k: v for k, v in feed.items() if k != "document"})

    def _process_feed(self, feed: dict) -> tuple[bytes, str]:
        content = self.documents[feed["document"]]["content"]
        if feed["feedType"] == "POST_ORDER_ACKNOWLEDGEMENT_DATA":
            return (
                self._process_acknowledgements(feed["feedId"], content, feed["marketplaceIds"]),
                "text/xml; charset=UTF-8",
            )
        if feed["feedType"] == "POST_PAYMENT_ADJUSTMENT_DATA":
            return self._process_adjustments(feed["feedId"], content, feed["marketplaceIds"]), "text/xml; charset=UTF-8"
        if feed["feedType"] == "JSON_LISTINGS_FEED":
            return (
                self._process_listings_feed(feed["feedId"], content, feed["marketplaceIds"]),
                "application/json; charset=UTF-8",
            )
        return json.dumps({"error": f"unsupported feedType {feed['feedType']}"}).encode(), "application/json"

    def _process_acknowledgements(self, feed_id: str, content: bytes, marketplaces: list[str]) -> bytes:
        processed = errors = 0
        results = []
        root = SafeElementTree.fromstring(content)
        for message in root.iter("Message"):
            processed += 1
            message_id = message.findtext("MessageID") or ""
            ack = message.find("OrderAcknowledgement")
            order_id = ack.findtext("AmazonOrderID") if ack is not None else None
            with self.state.lock:
                order = self.state.orders.get(order_id or "")
                if ack is None or order is None or self.state.marketplace(order) not in marketplaces:
                    errors += 1
                    results.append((message_id, "25", f"Order {order_id} not found in {', '.join(marketplaces)}"))
                    continue
                if ack.findtext("StatusCode") == "Failure":
                    items = {
                        item.findtext("AmazonOrderItemCode"): item.findtext("CancelReason") or "GeneralAdjustment"
                        for item in ack.findall("Item")
                    }
                    open_lines = {line.line_id: line.remaining for line in order.lines}
                    wanted = {k: open_lines[k] for k in items if k in open_lines} if items else None
                    reason = next(iter(items.values()), None) or ack.findtext("CancelReason") or "GeneralAdjustment"
                    if order.status in ("shipped",):
                        errors += 1
                        results.append((message_id, "18", f"Order {order_id} has shipped and cannot be cancelled"))
                        continue
                    self.state.cancel(order, reason, lines=wanted, by="MERCHANT")
                    self.state.cancellations.append({"order_id": order_id, "lines": wanted, "reason": reason})
        return _processing_report(feed_id, processed, errors, results)

    # --- refunds (issue #18): POST_PAYMENT_ADJUSTMENT_DATA ---------------------------------------------------

    ADJUSTMENT_REASONS = frozenset(
        {
            "NoInventory",
            "CustomerReturn",
            "GeneralAdjustment",
            "CouldNotShip",
            "DifferentItem",
            "Abandoned",
            "CustomerCancel",
            "PriceError",
            "ProductOutofStock",
            "CustomerAddressIncorrect",
            "Exchange",
            "Other",
            "CarrierCreditDecision",
            "RiskAssessmentInformationNotValid",
            "CarrierCoverageFailure",
            "TransactionRecord",
            "Undeliverable",
            "RefusedDelivery",
        }
    )

    def _process_adjustments(self, feed_id: str, content: bytes, marketplaces: list[str]) -> bytes:
        """Each AdjustedItem refunds its Principal and Shipping components; an item whose
        MerchantAdjustmentItemID was processed before is refused (13013), as are unknown items, reasons
        and amounts above what is left to refund."""
        processed = errors = 0
        results = []
        root = SafeElementTree.fromstring(content)
        log = self.state.extra.setdefault("refund_log", [])
        seen = self.state.extra.setdefault("adjustment_ids", set())
        for message in root.iter("Message"):
            processed += 1
            message_id = message.findtext("MessageID") or ""
            adjustment = message.find("OrderAdjustment")
            order_id = adjustment.findtext("AmazonOrderID") if adjustment is not None else None
            with self.state.lock:
                order = self.state.orders.get(order_id or "")
                if adjustment is None or order is None or self.state.marketplace(order) not in marketplaces:
                    errors += 1
                    results.append((message_id, "25", f"Order {order_id} not found in {', '.join(marketplaces)}"))
                    continue
                lines = {line.line_id: line for line in order.lines}
                refunded = self.state.extra.setdefault("refunded", {})
                problems = []
                items = adjustment.findall("AdjustedItem")
                if not items:
                    problems.append(("8560", "an OrderAdjustment needs at least one AdjustedItem"))
                planned = []
                for item in items:
                    code = item.findtext("AmazonOrderItemCode") or ""
                    adjustment_id = item.findtext("MerchantAdjustmentItemID") or ""
                    reason = item.findtext("AdjustmentReason") or ""
                    amount = sum(
                        (Decimal(c.findtext("Amount") or "0") for c in item.iter("Component")), start=Decimal(0)
                    )
                    if adjustment_id in seen:
                        problems.append(("13013", f"MerchantAdjustmentItemID {adjustment_id} was already processed"))
                    elif code not in lines or not lines[code].shipped:
                        problems.append(("18", f"Order item {code} of {order_id} has not shipped"))
                    elif reason not in self.ADJUSTMENT_REASONS:
                        problems.append(("8560", f"AdjustmentReason {reason!r} is not valid"))
                    elif amount <= 0 or refunded.get(code, Decimal(0)) + amount > lines[code].unit_price * lines[
                        code
                    ].quantity + Decimal("50"):
                        problems.append(("8560", f"adjustment {amount} is above what is left to refund on {code}"))
                    else:
                        planned.append((code, adjustment_id, amount))
                if problems:
                    errors += 1
                    results.extend((message_id, c, d) for c, d in problems)
                    continue
                for code, adjustment_id, amount in planned:
                    seen.add(adjustment_id)
                    refunded[code] = refunded.get(code, Decimal(0)) + amount
                    log.append(
                        {
                            "order_id": order_id,
                            "item": code,
                            "id": adjustment_id,
                            "amount": str(amount),
                            "feed": feed_id,
                        }
                    )
                self.state.touch(order)
        return _processing_report(feed_id, processed, errors, results)

    # --- returns report (issue #18): createReport → getReport → getReportDocument ---------------------------

    RETURNS_COLUMNS = [
        "Order ID",
        "Order date",
        "Return request date",
        "Return request status",
        "Amazon RMA ID",
        "Merchant RMA ID",
        "Label type",
        "Label cost",
        "Currency code",
        "Return carrier",
        "Tracking ID",
        "Label to be paid by",
        "A-to-Z claim",
        "Is prime",
        "ASIN",
        "Merchant SKU",
        "Item Name",
        "Return quantity",
        "Return reason",
        "In policy",
        "Return type",
        "Resolution",
        "Order Amount",
        "Order quantity",
        "Refunded Amount",
    ]
    RETURN_STATUS = {
        "requested": "Pending",
        "approved": "Approved",
        "shipped": "Approved",
        "received": "Closed",
        "closed": "Closed",
        "declined": "Declined",
        "refunded": "Closed",
    }
    RETURN_REASON = {
        "DEFECTIVE": "DEFECTIVE",
        "WRONG_ITEM": "WRONG_ITEM",
        "NOT_AS_DESCRIBED": "NOT_AS_DESCRIBED",
        "UNWANTED": "UNWANTED_ITEM",
        "DAMAGED": "DAMAGED_BY_CARRIER",
    }

    @property
    def report_generators(self) -> dict:
        """The Reports API's generators (amazon_reports.py) plus the returns report, a tab-separated flat file."""
        return {**super().report_generators, RETURNS_REPORT: self.returns_report_document}

    def returns_report_document(self, report: dict) -> tuple[bytes, str]:
        start = report.get("dataStartTime")
        content = self._returns_tsv(report["marketplaceIds"], _parse_iso(start) if start else None)
        return content, "text/tab-separated-values; charset=UTF-8"

    def _returns_tsv(self, marketplaces: list[str], start) -> bytes:
        rows = ["\t".join(self.RETURNS_COLUMNS)]
        with self.state.lock:
            for made in self.state.returns.values():
                order = self.state.orders.get(made.order_id)
                if order is None or self.state.marketplace(order) not in marketplaces:
                    continue
                if start is not None and made.updated_at < start:
                    continue
                for line in order.lines:
                    units = made.lines.get(line.line_id)
                    if not units:
                        continue
                    values = {
                        "Order ID": order.order_id,
                        "Order date": order.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "Return request date": made.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "Return request status": self.RETURN_STATUS.get(made.status, "Pending"),
                        "Amazon RMA ID": "".join(c for c in made.return_id if c.isdigit()),
                        "Merchant SKU": line.sku,
                        "Item Name": line.title.replace("\t", " "),
                        "Return quantity": str(units),
                        "Return reason": self.RETURN_REASON.get(made.reason, "NO_REASON_GIVEN"),
                        "Currency code": order.currency,
                        "Order Amount": f"{line.unit_price * line.quantity:.2f}",
                        "Order quantity": str(line.quantity),
                        "Resolution": "StandardRefund",
                        "Return type": "C-Returns",
                        "In policy": "Y",
                    }
                    rows.append("\t".join(values.get(column, "") for column in self.RETURNS_COLUMNS))
        return ("\n".join(rows) + "\n").encode()

    def _process_listings_feed(self, feed_id: str, content: bytes, marketplaces: list[str]) -> bytes:
        data = json.loads(content)
        issues = []
        accepted = 0
        messages = data.get("messages", [])
        for message in messages:
            if message.get("sku") in self.state.listing_errors:
                code, problem, categories = "8541", self.state.listing_errors[message["sku"]], ["MISSING_ATTRIBUTE"]
            else:
                code, problem, categories = self._apply_patches(
                    message.get("sku"), message.get("productType"), message.get("patches"), marketplaces
                )
            if code:
                issues.append(
                    {
                        "messageId": message.get("messageId"),
                        "code": code,
                        "severity": "ERROR",
                        "message": problem,
                        "categories": categories,
                    }
                )
            else:
                accepted += 1
        total = len(messages)
        return json.dumps(
            {
                "header": {"sellerId": data.get("header", {}).get("sellerId"), "version": "2.0", "feedId": feed_id},
                "issues": issues,
                "summary": {
                    "errors": len(issues),
                    "warnings": 0,
                    "messagesProcessed": total,
                    "messagesAccepted": accepted,
                    "messagesInvalid": total - accepted,
                },
            }
        ).encode()

    # --- listings ------------------------------------------------------------------------------

    def _apply_patches(self, sku, product_type, patches, marketplaces: list[str]) -> tuple[str, str, list[str]]:
        """("", "", []) when applied, else (issue code, message, categories) of the ERROR issue."""
        if not sku or not product_type or not isinstance(patches, list) or not patches:
            return "4000001", "sku, productType and patches are required", ["MISSING_ATTRIBUTE"]
        with self.state.lock:
            if sku not in self.state.listed:
                where = ", ".join(marketplaces) or MARKETPLACE_ID
                return "NOT_FOUND", f"No listings item with SKU '{sku}' exists in marketplace {where}.", []
        quantities = []
        for patch in patches:
            if not isinstance(patch, dict) or patch.get("path") != "/attributes/fulfillment_availability":
                path = patch.get("path") if isinstance(patch, dict) else patch
                message = f"The sandbox patches only fulfillment_availability, not {path!r}"
                return "90220", message, ["INVALID_ATTRIBUTE"]
            if patch.get("op") not in ("replace", "merge", "add"):
                return "90220", f"fulfillment_availability cannot be {patch.get('op')!r}d", ["INVALID_ATTRIBUTE"]
            for value in patch.get("value") or []:
                quantity = value.get("quantity")
                if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 0:
                    return (
                        "90220",
                        "fulfillment_availability.quantity must be a non-negative integer",
                        ["INVALID_ATTRIBUTE"],
                    )
                if not value.get("fulfillment_channel_code"):
                    return (
                        "90220",
                        "fulfillment_availability.fulfillment_channel_code is required",
                        ["MISSING_ATTRIBUTE"],
                    )
                quantities.append(quantity)
        with self.state.lock:
            for quantity in quantities:
                self.state.inventory[sku] = quantity
                self.state.inventory_log.append({"sku": sku, "quantity": quantity, "at": time.time()})
        return "", "", []

    def patch_listing(self, request: Request, seller_id: str, sku: str) -> Response:
        sku = unquote(sku)
        body = request.json()
        marketplaces = [m for m in (request.arg("marketplaceIds") or "").split(",") if m]
        submission = uuid.uuid4().hex
        unknown = [m for m in marketplaces if m not in MARKETPLACES]
        if unknown:
            return _error(400, "InvalidInput", f"Invalid marketplaceIds: {', '.join(unknown)}")
        if request.arg("mode") == "VALIDATION_PREVIEW":
            code, message, categories = "", "", []
            with self.state.lock:
                if sku not in self.state.listed:
                    code, message = "NOT_FOUND", f"No listings item with SKU '{sku}' exists."
            status = "INVALID" if code else "VALID"
        elif sku in self.state.listing_errors:
            code, message, categories = "8541", self.state.listing_errors[sku], ["MISSING_ATTRIBUTE"]
            status = "ACCEPTED"
        else:
            code, message, categories = self._apply_patches(sku, body["productType"], body["patches"], marketplaces)
            status = "INVALID" if code else "ACCEPTED"
        issues = []
        if code:
            issues.append(
                {
                    "code": code,
                    "message": message,
                    "severity": "ERROR",
                    "attributeNames": ["fulfillment_availability"] if code != "NOT_FOUND" else [],
                    "categories": categories,
                }
            )
        return Response(200, {"sku": sku, "status": status, "submissionId": submission, "issues": issues})

    def get_listing(self, request: Request, seller_id: str, sku: str) -> Response:
        sku = unquote(sku)
        with self.state.lock:
            if sku not in self.state.listed:
                return _error(404, "NOT_FOUND", f"SKU '{sku}' not found in marketplace {request.arg('marketplaceIds')}")
            quantity = self.state.inventory.get(sku)
        item: dict = {"sku": sku}
        included = (request.arg("includedData") or "summaries").split(",")
        if "fulfillmentAvailability" in included:
            item["fulfillmentAvailability"] = [
                {"fulfillmentChannelCode": "DEFAULT", **({"quantity": quantity} if quantity is not None else {})}
            ]
        return Response(200, item)

    # --- admin hooks ---------------------------------------------------------------------------

    def admin_orders(self, request: Request) -> Response:
        data = request.json()
        marketplace = data.get("marketplace_id") or MARKETPLACE_ID
        if marketplace not in MARKETPLACES:
            return Response(400, {"error": f"unknown marketplace {marketplace!r}"})
        made = self.state.generate(
            int(data.get("count", 1)),
            status=data.get("status"),
            lines=data.get("lines"),
            fulfilled_by=data.get("fulfilled_by", "MERCHANT"),
            unknown_sku=data.get("unknown_sku", False),
            marketplace_id=marketplace,
        )
        return Response(200, {"created": [o.order_id for o in made]})

    def admin_release(self, request: Request, order_id: str) -> Response:
        order = self.state.orders.get(order_id)
        if order is None:
            return Response(404, {"error": f"no order {order_id}"})
        data = request.json()
        try:
            self.state.release(order, data.get("address"), withhold_recipient=bool(data.get("withhold_recipient")))
        except ValueError as exc:
            return Response(409, {"error": str(exc)})
        return Response(200, {"order_id": order_id, "status": STATUS[order.status]})

    def admin_cancel_request(self, request: Request, order_id: str) -> Response:
        order = self.state.orders.get(order_id)
        if order is None:
            return Response(404, {"error": f"no order {order_id}"})
        data = request.json()
        self.state.request_cancel(order, str(data.get("reason") or "BuyerCanceled"), data.get("line_ids"))
        return Response(200, {"order_id": order_id, "requested": self.state.cancel_requests.get(order_id, {})})

    def admin_listings(self, request: Request) -> Response:
        data = request.json()
        skus = [str(sku) for sku in data.get("skus") or []]
        with self.state.lock:
            if data.get("listed", True):
                self.state.listed.update(skus)
            else:
                self.state.listed.difference_update(skus)
            for sku in skus:
                if data.get("error"):
                    self.state.listing_errors[sku] = str(data["error"])
                else:
                    self.state.listing_errors.pop(sku, None)
        return Response(200, {"listed": len(self.state.listed)})


def _processing_report(feed_id: str, processed: int, errors: int, results: list[tuple[str, str, str]]) -> bytes:
    """A feed's processing report document: the summary counts and one Result per message in error."""
    report = ElementTree.Element("AmazonEnvelope")
    ElementTree.SubElement(report, "MessageType").text = "ProcessingReport"
    msg = ElementTree.SubElement(report, "Message")
    ElementTree.SubElement(msg, "MessageID").text = "1"
    pr = ElementTree.SubElement(msg, "ProcessingReport")
    ElementTree.SubElement(pr, "DocumentTransactionID").text = feed_id
    ElementTree.SubElement(pr, "StatusCode").text = "Complete"
    summary = ElementTree.SubElement(pr, "ProcessingSummary")
    ElementTree.SubElement(summary, "MessagesProcessed").text = str(processed)
    ElementTree.SubElement(summary, "MessagesSuccessful").text = str(processed - errors)
    ElementTree.SubElement(summary, "MessagesWithError").text = str(errors)
    ElementTree.SubElement(summary, "MessagesWithWarning").text = "0"
    for message_id, code, description in results:
        result = ElementTree.SubElement(pr, "Result")
        ElementTree.SubElement(result, "MessageID").text = message_id
        ElementTree.SubElement(result, "ResultCode").text = "Error"
        ElementTree.SubElement(result, "ResultMessageCode").text = code
        ElementTree.SubElement(result, "ResultDescription").text = description
    return ElementTree.tostring(report, encoding="utf-8", xml_declaration=True)


def _violation(where: str, message: str) -> ContractViolation:
    return ContractViolation(where, message)


def _search_prose(request: Request) -> list[ContractViolation]:
    """searchOrders: the date filters' pairing and order, and maxResultsPerPage's range."""
    arg = request.arg
    found = []
    created, updated = arg("createdAfter"), arg("lastUpdatedAfter")
    if bool(created) == bool(updated):
        found.append(_violation("query", "exactly one of createdAfter and lastUpdatedAfter must be provided"))
    if created and arg("lastUpdatedBefore"):
        found.append(_violation("query.lastUpdatedBefore", "may not be provided with createdAfter"))
    if updated and arg("createdBefore"):
        found.append(_violation("query.createdBefore", "may not be provided with lastUpdatedAfter"))
    latest = utcnow() - timedelta(minutes=2)
    for after_name, before_name in (("createdAfter", "createdBefore"), ("lastUpdatedAfter", "lastUpdatedBefore")):
        after, before = _parse_iso(arg(after_name) or ""), _parse_iso(arg(before_name) or "")
        if before is not None:
            if after is not None and before < after:
                found.append(_violation(f"query.{before_name}", f"must be equal to or after {after_name}"))
            if before > latest:
                found.append(
                    _violation(f"query.{before_name}", "must be at least two minutes before the time of the request")
                )
    size = arg("maxResultsPerPage")
    if size is not None and size.lstrip("-").isdigit() and not 1 <= int(size) <= 100:
        found.append(_violation("query.maxResultsPerPage", f"{size} is not between 1 and 100"))
    return found


def _confirm_prose(request: Request, body: Any) -> list[ContractViolation]:
    """confirmShipment: a 3-7-7 order id, a positive numeric packageReferenceId, carrierName with Other."""
    found = []
    order_id = unquote(request.path.split("/")[-2])
    if not ORDER_ID_3_7_7.match(order_id):
        found.append(_violation("path.orderId", f"{order_id!r} is not an Amazon order id in 3-7-7 format"))
    detail = body.get("packageDetail") if isinstance(body, dict) else None
    if not isinstance(detail, dict):
        return found
    reference = detail.get("packageReferenceId")
    if isinstance(reference, str) and not POSITIVE_NUMBER.match(reference):
        found.append(
            _violation(
                "body.packageDetail.packageReferenceId",
                f"{reference!r}: only positive numeric values are supported",
            )
        )
    if detail.get("carrierCode") == "Other" and not detail.get("carrierName"):
        found.append(_violation("body.packageDetail.carrierName", 'is required when carrierCode is "Other"'))
    return found


def _patch_prose(request: Request, body: Any) -> list[ContractViolation]:
    """patchListingsItem: top-level attributes only; JSON Patch values for add/replace/merge; identifiers
    only in VALIDATION_PREVIEW mode."""
    found = []
    included = [part for part in (request.arg("includedData") or "").split(",") if part]
    if "identifiers" in included and request.arg("mode") != "VALIDATION_PREVIEW":
        message = "identifiers can only be requested when mode is VALIDATION_PREVIEW"
        found.append(_violation("query.includedData", message))
    patches = body.get("patches") if isinstance(body, dict) else None
    for index, patch in enumerate(patches if isinstance(patches, list) else []):
        if not isinstance(patch, dict):
            continue
        path = patch.get("path")
        if isinstance(path, str) and not TOP_LEVEL_ATTRIBUTE.match(path):
            message = f"{path!r}: only top-level listings item attributes can be patched"
            found.append(_violation(f"body.patches.{index}.path", message))
        if patch.get("op") in ("add", "replace", "merge") and "value" not in patch:
            found.append(_violation(f"body.patches.{index}.value", f"is required for op {patch.get('op')!r}"))
    return found


def _parse_iso(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return parsed if parsed.tzinfo else None
