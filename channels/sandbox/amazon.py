"""Amazon SP-API sandbox: LWA tokens, Orders 2026-01-01 reads, v0 confirmShipment, Feeds, Listings.

Wire format per ../shared/channel-specs (amazon-orders-2026-01-01.json, amazon-orders-v0.json,
amazon-feeds-2021-06-30.json, amazon-listings-items-2021-08-01.json). Throttling answers 429 with
``x-amzn-RateLimit-Limit`` and an SP-API error body; the token bucket's rate is an option.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from datetime import timedelta
from urllib.parse import parse_qs
from xml.etree import ElementTree

from channels.sandbox.base import (
    Request,
    Response,
    SandboxApp,
    SandboxOrder,
    SandboxState,
    TokenBucket,
    iso_z,
    utcnow,
)

MARKETPLACE_ID = "ATVPDKIKX0DER"
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


class AmazonState(SandboxState):
    def order_id_for(self, number: int) -> str:
        return f"114-{number:07d}-{(number * 7919) % 10_000_000:07d}"


class AmazonSandbox(SandboxApp):
    kind = "amazon"

    def __init__(self, state: SandboxState | None = None, *, rate: float = 20.0, burst: int = 20, **options):
        super().__init__(state or AmazonState(), **options)
        self.rate = rate
        self.burst = burst
        self._bucket = TokenBucket(rate, burst)
        self.access_tokens: dict[str, float] = {}
        self.snapshots: dict[str, tuple[list[str], str]] = {}
        self.documents: dict[str, dict] = {}
        self.feeds: dict[str, dict] = {}
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
            ("PUT", "/_sandbox/documents/{document_id}", self.upload_document),
            ("GET", "/_sandbox/documents/{document_id}", self.download_document),
        ]

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
                "channelName": "Amazon.com",
                "marketplaceId": MARKETPLACE_ID,
                "marketplaceName": "Amazon.com",
            },
            "orderItems": [],
        }
        if "FULFILLMENT" in included:
            body["fulfillment"] = {
                "fulfillmentStatus": STATUS[order.status],
                "fulfilledBy": order.fulfilled_by,
                "fulfillmentServiceLevel": "Standard",
                "shipByWindow": {
                    "earliestDateTime": iso_z(order.created_at),
                    "latestDateTime": iso_z(order.ship_by),
                },
                "deliverByWindow": {
                    "earliestDateTime": iso_z(order.ship_by),
                    "latestDateTime": iso_z(order.deliver_by),
                },
            }
        if "RECIPIENT" in included and order.status != "pending":
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
                    "asin": "B0" + hashlib.sha1(line.sku.encode()).hexdigest()[:8].upper(),
                    "title": line.title,
                    "sellerSku": line.sku,
                    "price": {"unitPrice": {"amount": f"{line.unit_price:.2f}", "currencyCode": order.currency}},
                },
            }
            if "FULFILLMENT" in included:
                item["fulfillment"] = {"quantityFulfilled": line.shipped, "quantityUnfulfilled": line.remaining}
            if "CANCELLATION" in included and line.cancelled:
                item["cancellation"] = {
                    "cancellationExecution": {"cancelledBy": "MERCHANT", "cancelReason": order.cancel_reason}
                }
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
        filters = {
            key: request.arg(key) or ""
            for key in ("createdAfter", "lastUpdatedAfter", "marketplaceIds", "fulfillmentStatuses", "includedData")
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
            statuses = {s for s in filters["fulfillmentStatuses"].split(",") if s}
            with self.state.lock:
                # The window ends just after the newest stamp handed out, so every order so far is in it.
                now = self.state.stamp() + timedelta(seconds=1)
                rows = [
                    o
                    for o in self.state.orders.values()
                    if (o.created_at if by_created else o.updated_at) >= after
                    and (o.created_at if by_created else o.updated_at) < now
                    and (not statuses or STATUS[o.status] in statuses)
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
        body = request.json()
        detail = body.get("packageDetail") or {}
        missing = [
            k
            for k in ("packageReferenceId", "carrierCode", "trackingNumber", "shipDate", "orderItems")
            if not detail.get(k)
        ]
        if not body.get("marketplaceId") or missing:
            return _error(400, "InvalidInput", f"Missing required field(s): {', '.join(missing or ['marketplaceId'])}")
        if detail["carrierCode"] == "Other" and not detail.get("carrierName"):
            return _error(400, "InvalidInput", "carrierName is required when carrierCode is Other.")
        if _parse_iso(detail["shipDate"]) is None:
            return _error(400, "InvalidInput", "shipDate is not a valid ISO 8601 date-time.")
        with self.state.lock:
            order = self.state.orders.get(order_id)
            if order is None:
                return _error(404, "NotFound", f"Order {order_id} was not found.")
            if order.fulfilled_by != "MERCHANT" or order.status in ("cancelled", "pending"):
                return _error(400, "InvalidInput", f"Order {order_id} cannot be confirmed in its current state.")
            if any(p["packageReferenceId"] == str(detail["packageReferenceId"]) for p in order.packages):
                return _error(400, "InvalidInput", "A package with this packageReferenceId was already confirmed.")
            lines = {line.line_id: line for line in order.lines}
            for item in detail["orderItems"]:
                line = lines.get(str(item.get("orderItemId")))
                if (
                    line is None
                    or not isinstance(item.get("quantity"), int)
                    or not 0 < item["quantity"] <= line.remaining
                ):
                    return _error(400, "InvalidInput", f"Invalid orderItem {item.get('orderItemId')!r} or quantity.")
            for item in detail["orderItems"]:
                lines[str(item["orderItemId"])].shipped += item["quantity"]
            order.packages.append(
                {
                    "packageReferenceId": str(detail["packageReferenceId"]),
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
            self.state.shipments.append({"order_id": order_id, **detail})
        return Response(204)

    # --- feeds ---------------------------------------------------------------------------------

    def create_document(self, request: Request) -> Response:
        content_type = request.json().get("contentType")
        if not content_type:
            return _error(400, "InvalidInput", "contentType is required.")
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
        missing = [k for k in ("feedType", "marketplaceIds", "inputFeedDocumentId") if not body.get(k)]
        if missing:
            return _error(400, "InvalidInput", f"Missing required field(s): {', '.join(missing)}")
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
            return self._process_acknowledgements(feed["feedId"], content), "text/xml; charset=UTF-8"
        if feed["feedType"] == "JSON_LISTINGS_FEED":
            return self._process_listings_feed(feed["feedId"], content), "application/json; charset=UTF-8"
        return json.dumps({"error": f"unsupported feedType {feed['feedType']}"}).encode(), "application/json"

    def _process_acknowledgements(self, feed_id: str, content: bytes) -> bytes:
        processed = errors = 0
        results = []
        root = ElementTree.fromstring(content)
        for message in root.iter("Message"):
            processed += 1
            message_id = message.findtext("MessageID") or ""
            ack = message.find("OrderAcknowledgement")
            order_id = ack.findtext("AmazonOrderID") if ack is not None else None
            with self.state.lock:
                order = self.state.orders.get(order_id or "")
                if ack is None or order is None:
                    errors += 1
                    results.append((message_id, "25", f"Order {order_id} not found"))
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
                    self.state.cancel(order, reason, lines=wanted)
                    self.state.cancellations.append({"order_id": order_id, "lines": wanted, "reason": reason})
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

    def _process_listings_feed(self, feed_id: str, content: bytes) -> bytes:
        data = json.loads(content)
        issues = []
        accepted = 0
        for message in data.get("messages", []):
            problem = self._apply_patches(message.get("sku"), message.get("productType"), message.get("patches"))
            if problem:
                issues.append(
                    {"messageId": message.get("messageId"), "code": "90220", "severity": "ERROR", "message": problem}
                )
            else:
                accepted += 1
        total = len(data.get("messages", []))
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

    def _apply_patches(self, sku, product_type, patches) -> str:
        if not sku or not product_type or not isinstance(patches, list) or not patches:
            return "sku, productType and patches are required"
        for patch in patches:
            if patch.get("path") != "/attributes/fulfillment_availability" or patch.get("op") not in (
                "replace",
                "merge",
            ):
                return f"unsupported patch {patch.get('op')} {patch.get('path')}"
            for value in patch.get("value") or []:
                quantity = value.get("quantity")
                if not isinstance(quantity, int) or quantity < 0:
                    return "fulfillment_availability.quantity must be a non-negative integer"
                with self.state.lock:
                    self.state.inventory[sku] = quantity
                    self.state.inventory_log.append({"sku": sku, "quantity": quantity, "at": time.time()})
        return ""

    def patch_listing(self, request: Request, seller_id: str, sku: str) -> Response:
        if not request.arg("marketplaceIds"):
            return _error(400, "InvalidInput", "marketplaceIds is required.")
        body = request.json()
        problem = self._apply_patches(sku, body.get("productType"), body.get("patches"))
        submission = uuid.uuid4().hex
        if problem:
            return Response(
                200,
                {
                    "sku": sku,
                    "status": "INVALID",
                    "submissionId": submission,
                    "issues": [{"code": "90220", "message": problem, "severity": "ERROR"}],
                },
            )
        return Response(200, {"sku": sku, "status": "ACCEPTED", "submissionId": submission, "issues": []})


def _parse_iso(value: str):
    from datetime import datetime

    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return parsed if parsed.tzinfo else None
