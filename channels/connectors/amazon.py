"""Amazon Selling Partner API: Orders v2026-01-01 reads, v0 confirmShipment, Feeds, Listings Items.

Auth is LWA: a refresh token is exchanged for an access token (1 h), cached per process until a
minute before it expires and sent as ``x-amz-access-token``. A 403 drops the cached token and
retries once.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from xml.etree import ElementTree

import httpx

from channels.connectors.base import (
    CancelRequest,
    ChannelError,
    Connector,
    InventoryQuantity,
    NormalizedLine,
    NormalizedOrder,
    OrderPage,
    PayloadError,
    SendResult,
    ShipmentConfirmation,
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

STATUS_MAP = {
    "PENDING_AVAILABILITY": OrderStatus.PENDING,
    "PENDING": OrderStatus.PENDING,
    "UNSHIPPED": OrderStatus.OPEN,
    "PARTIALLY_SHIPPED": OrderStatus.PARTIALLY_SHIPPED,
    "SHIPPED": OrderStatus.SHIPPED,
    "CANCELLED": OrderStatus.CANCELLED,
    # AFN only (not placed on Amazon's retail site): recorded, nothing for Waybill to do.
    "UNFULFILLABLE": OrderStatus.PENDING,
}
MARKETPLACE_CURRENCY = {
    "ATVPDKIKX0DER": "USD",
    "A2EUQ1WTGCTBG2": "CAD",
    "A1AM78C64UM0Y8": "MXN",
    "A1F83G8C2ARO7P": "GBP",
    "A1PA6795UKMFR9": "EUR",
}
INCLUDED_DATA = "FULFILLMENT,RECIPIENT,PROCEEDS,CANCELLATION,PACKAGES"
CANCEL_REASONS = {
    "NoInventory",
    "ShippingAddressUndeliverable",
    "CustomerExchange",
    "BuyerCanceled",
    "GeneralAdjustment",
    "CarrierCreditDecision",
    "RiskAssessmentInformationNotValid",
    "CarrierCoverageFailure",
    "CustomerReturn",
    "MerchandiseNotReceived",
}
# Above this many SKUs one JSON_LISTINGS_FEED replaces per-SKU PATCH calls (5 rps each).
LISTINGS_FEED_THRESHOLD = 10

_token_cache: dict[tuple, tuple[str, float]] = {}
_token_lock = threading.Lock()


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _errors(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors) or response.text[:200]
    except (ValueError, AttributeError):
        return response.text[:200]


class AmazonConnector(Connector):
    kind = "amazon"
    overlap = timedelta(minutes=5)
    feed_poll_attempts: ClassVar[int] = 20
    feed_poll_interval: ClassVar[float] = 0.5

    # --- auth ----------------------------------------------------------------------------------

    def _token_url(self) -> str:
        if "amazon.com" in self.account.api_base_url:
            return "https://api.amazon.com/auth/o2/token"
        return self.account.api_base_url.rstrip("/") + "/auth/o2/token"

    def _cache_key(self) -> tuple:
        digest = hashlib.sha256(self.credentials.get("refresh_token", "").encode()).hexdigest()
        return (self.account.pk, digest)

    def access_token(self, *, refresh: bool = False) -> str:
        key = self._cache_key()
        with _token_lock:
            cached = _token_cache.get(key)
            if cached and not refresh and cached[1] > time.monotonic():
                return cached[0]
        missing = [k for k in ("lwa_client_id", "lwa_client_secret", "refresh_token") if not self.credentials.get(k)]
        if missing:
            raise ChannelError(f"Amazon credentials lack {', '.join(missing)}", retryable=False)
        response = self.http.request(
            "POST",
            self._token_url(),
            data={
                "grant_type": "refresh_token",
                "refresh_token": self.credentials["refresh_token"],
                "client_id": self.credentials["lwa_client_id"],
                "client_secret": self.credentials["lwa_client_secret"],
            },
        )
        if response.status_code != 200:
            # Never echo the body: an auth server may repeat what it was sent.
            raise ChannelError(f"LWA token refresh failed: HTTP {response.status_code}", retryable=False)
        data = json_body(response, "LWA token")
        token, lifetime = data.get("access_token"), data.get("expires_in", 3600)
        if not token:
            raise ChannelError("LWA token response has no access_token", retryable=False)
        with _token_lock:
            _token_cache[key] = (token, time.monotonic() + max(float(lifetime) - 60, 1))
        return token

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(2):
            headers = {"x-amz-access-token": self.access_token(refresh=attempt > 0), **kwargs.pop("headers", {})}
            response = self.http.request(method, path, headers=headers, **kwargs)
            if response.status_code != 403:
                return response
        return response

    def _marketplace(self) -> str:
        ids = self.account.marketplace_ids or []
        if not ids:
            raise ChannelError("Amazon account has no marketplace_ids", retryable=False)
        return ids[0]

    # --- reading orders ------------------------------------------------------------------------

    def fetch_orders(self, *, since: datetime, backfill: bool = False) -> Iterator[OrderPage]:
        params: dict[str, Any] = {
            "lastUpdatedAfter": _iso(since),
            "marketplaceIds": ",".join(self.account.marketplace_ids or []),
            "includedData": INCLUDED_DATA,
            "maxResultsPerPage": 100,
        }
        token = None
        page = 0
        while True:
            query = dict(params, paginationToken=token) if token else params
            response = self.call("GET", "/orders/2026-01-01/orders", params=query)
            if response.status_code != 200:
                raise ChannelError(
                    f"searchOrders page {page + 1}: HTTP {response.status_code}: {_errors(response)}",
                    retryable=response.status_code >= 500,
                    status=response.status_code,
                )
            data = json_body(response, "searchOrders")
            if not isinstance(data, dict) or not isinstance(data.get("orders"), list):
                raise ChannelError("searchOrders: response has no orders list", retryable=False)
            page += 1
            token = (data.get("pagination") or {}).get("nextToken")
            window_end = None
            if data.get("lastUpdatedBefore"):
                try:
                    window_end = parse_datetime(data["lastUpdatedBefore"], "lastUpdatedBefore")
                except PayloadError:
                    window_end = None
            yield OrderPage(
                raw_orders=data["orders"], progress={"page": page, "has_next": bool(token)}, window_end=window_end
            )
            if not token:
                return

    def get_order(self, external_id: str) -> dict:
        response = self.call("GET", f"/orders/2026-01-01/orders/{external_id}", params={"includedData": INCLUDED_DATA})
        if response.status_code != 200:
            raise ChannelError(
                f"getOrder {external_id}: HTTP {response.status_code}: {_errors(response)}",
                retryable=response.status_code >= 500 or response.status_code == 429,
                status=response.status_code,
            )
        data = json_body(response, "getOrder")
        return require_obj(data.get("order") if isinstance(data, dict) else None, "order")

    def order_identity(self, raw: Any) -> tuple[str, str]:
        if not isinstance(raw, dict):
            return "", ""
        return str(raw.get("orderId") or "")[:128], str(raw.get("lastUpdatedTime") or "")[:64]

    def parse_order(self, raw: dict) -> NormalizedOrder:
        raw = require_obj(raw, "order")
        order_id = require_str(raw, "orderId", "", max_length=128)
        placed = parse_datetime(raw.get("createdTime"), "createdTime")
        updated = parse_datetime(raw.get("lastUpdatedTime"), "lastUpdatedTime")
        channel = require_obj(raw.get("salesChannel"), "salesChannel")
        marketplace = require_str(channel, "marketplaceId", "salesChannel", required=False)
        fulfillment = require_obj(raw.get("fulfillment"), "fulfillment")
        status_code = require_str(fulfillment, "fulfillmentStatus", "fulfillment")
        if status_code not in STATUS_MAP:
            raise PayloadError("fulfillment.fulfillmentStatus", f"unknown value {status_code!r}")
        fulfilled_by = require_str(fulfillment, "fulfilledBy", "fulfillment", required=False) or "MERCHANT"
        if fulfilled_by not in ("MERCHANT", "AMAZON"):
            raise PayloadError("fulfillment.fulfilledBy", f"unknown value {fulfilled_by!r}")
        ship_window = require_obj(fulfillment.get("shipByWindow"), "fulfillment.shipByWindow", required=False)
        deliver_window = require_obj(fulfillment.get("deliverByWindow"), "fulfillment.deliverByWindow", required=False)
        ship_by = parse_datetime(
            ship_window.get("latestDateTime"), "fulfillment.shipByWindow.latestDateTime", required=False
        )
        deliver_by = parse_datetime(
            deliver_window.get("latestDateTime"), "fulfillment.deliverByWindow.latestDateTime", required=False
        )
        items = require_list(raw.get("orderItems"), "orderItems")
        if not items:
            raise PayloadError("orderItems", "is empty")
        currency = ""
        lines = []
        cancelled_order = STATUS_MAP[status_code] == OrderStatus.CANCELLED
        for index, item in enumerate(items):
            path = f"orderItems[{index}]"
            item = require_obj(item, path)
            product = require_obj(item.get("product"), f"{path}.product")
            quantity = parse_int(item.get("quantityOrdered"), f"{path}.quantityOrdered", minimum=1)
            price = require_obj(product.get("price"), f"{path}.product.price", required=False)
            unit = require_obj(price.get("unitPrice"), f"{path}.product.price.unitPrice", required=False)
            unit_price = parse_decimal(unit.get("amount"), f"{path}.product.price.unitPrice.amount", default=0)
            currency = currency or str(unit.get("currencyCode") or "")
            item_fulfillment = require_obj(item.get("fulfillment"), f"{path}.fulfillment", required=False)
            shipped = parse_int(
                item_fulfillment.get("quantityFulfilled"), f"{path}.fulfillment.quantityFulfilled", default=0
            )
            if shipped > quantity:
                raise PayloadError(
                    f"{path}.fulfillment.quantityFulfilled", f"{shipped} exceeds quantityOrdered {quantity}"
                )
            unfulfilled_raw = item_fulfillment.get("quantityUnfulfilled")
            unfulfilled = (
                parse_int(unfulfilled_raw, f"{path}.fulfillment.quantityUnfulfilled")
                if unfulfilled_raw is not None
                else None
            )
            if cancelled_order:
                cancelled = quantity - shipped
            elif unfulfilled is not None and item.get("cancellation"):
                cancelled = max(quantity - shipped - unfulfilled, 0)
            else:
                cancelled = 0
            lines.append(
                NormalizedLine(
                    external_id=require_str(item, "orderItemId", path, max_length=128),
                    channel_sku=require_str(product, "sellerSku", f"{path}.product", max_length=128),
                    quantity=quantity,
                    unit_price=unit_price,
                    title=str(product.get("title") or "")[:500],
                    quantity_shipped=shipped,
                    quantity_cancelled=cancelled,
                    ship_by=ship_by,
                    deliver_by=deliver_by,
                    external_variant_id=str(product.get("asin") or ""),
                )
            )
        proceeds = require_obj(raw.get("proceeds"), "proceeds", required=False)
        grand = require_obj(proceeds.get("grandTotal"), "proceeds.grandTotal", required=False)
        total = (
            parse_decimal(grand.get("amount"), "proceeds.grandTotal.amount")
            if grand.get("amount") is not None
            else None
        )
        currency = str(grand.get("currencyCode") or currency or MARKETPLACE_CURRENCY.get(marketplace, ""))
        if len(currency) != 3:
            raise PayloadError(
                "orderItems[].product.price.unitPrice.currencyCode", f"not a currency code: {currency!r}"
            )
        recipient = require_obj(raw.get("recipient"), "recipient", required=False)
        address = require_obj(recipient.get("deliveryAddress"), "recipient.deliveryAddress", required=False)
        ship_to = None
        if address:
            ship_to = normalized_address(
                name=address.get("name"),
                line1=address.get("addressLine1"),
                line2=address.get("addressLine2"),
                city=address.get("city"),
                region=address.get("stateOrRegion"),
                postal_code=address.get("postalCode"),
                country_code=address.get("countryCode"),
                phone=address.get("phone"),
            )
        return NormalizedOrder(
            external_id=order_id,
            placed_at=placed,
            updated_at=updated,
            currency=currency,
            status=STATUS_MAP[status_code],
            channel_status=status_code,
            lines=lines,
            total_amount=total,
            ship_to=ship_to,
            ship_by=ship_by,
            deliver_by=deliver_by,
            shipping_method=str(fulfillment.get("fulfillmentServiceLevel") or "")[:64],
            marketplace_fulfilled=fulfilled_by == "AMAZON",
        )

    # --- writes --------------------------------------------------------------------------------

    def confirm_shipment(self, shipment: ShipmentConfirmation, *, state: dict) -> SendResult:
        detail: dict[str, Any] = {
            "packageReferenceId": shipment.package_reference,
            "carrierCode": shipment.carrier_code,
            "trackingNumber": shipment.tracking_number,
            "shipDate": _iso(shipment.shipped_at),
            "orderItems": [
                {"orderItemId": line.external_line_id, "quantity": line.quantity} for line in shipment.lines
            ],
        }
        if shipment.carrier_name or shipment.carrier_code == "Other":
            detail["carrierName"] = shipment.carrier_name or shipment.carrier_code
        if shipment.shipping_method:
            detail["shippingMethod"] = shipment.shipping_method
        response = self.call(
            "POST",
            f"/orders/v0/orders/{shipment.order_external_id}/shipmentConfirmation",
            json={"marketplaceId": self._marketplace(), "packageDetail": detail},
        )
        if response.status_code == 204:
            return SendResult(response={"status": 204})
        raise ChannelError(
            f"confirmShipment {shipment.order_external_id}: HTTP {response.status_code}: {_errors(response)}",
            retryable=response.status_code >= 500,
            status=response.status_code,
        )

    def is_applied(self, kind: str, payload: dict, state: dict) -> bool:
        if kind == "ship_confirmation":
            order = self.get_order(payload["order_external_id"])
            return any(p.get("packageReferenceId") == payload["package_reference"] for p in order.get("packages") or [])
        if kind == "cancellation":
            order = self.get_order(payload["order_external_id"])
            if (order.get("fulfillment") or {}).get("fulfillmentStatus") == "CANCELLED":
                return True
            wanted = {line["external_line_id"] for line in payload.get("lines") or []}
            return bool(wanted) and all(
                item.get("cancellation") for item in order.get("orderItems") or [] if item.get("orderItemId") in wanted
            )
        return False

    def _feed(self, feed_type: str, content: bytes, content_type: str, state: dict) -> bytes:
        """Create document, upload, create feed, poll; returns the processing report. Resumable via state."""
        if not state.get("feed_id"):
            response = self.call("POST", "/feeds/2021-06-30/documents", json={"contentType": content_type})
            if response.status_code not in (200, 201):
                raise ChannelError(f"createFeedDocument: HTTP {response.status_code}: {_errors(response)}")
            document = json_body(response, "createFeedDocument")
            upload = self.http.request("PUT", document["url"], content=content, headers={"Content-Type": content_type})
            if upload.status_code not in (200, 201, 204):
                raise ChannelError(f"feed document upload: HTTP {upload.status_code}")
            response = self.call(
                "POST",
                "/feeds/2021-06-30/feeds",
                json={
                    "feedType": feed_type,
                    "marketplaceIds": [self._marketplace()],
                    "inputFeedDocumentId": document["feedDocumentId"],
                },
            )
            if response.status_code not in (200, 202):
                raise ChannelError(f"createFeed: HTTP {response.status_code}: {_errors(response)}")
            state["feed_id"] = json_body(response, "createFeed")["feedId"]
        for _ in range(self.feed_poll_attempts):
            response = self.call("GET", f"/feeds/2021-06-30/feeds/{state['feed_id']}")
            if response.status_code != 200:
                raise ChannelError(f"getFeed {state['feed_id']}: HTTP {response.status_code}: {_errors(response)}")
            feed = json_body(response, "getFeed")
            status = feed.get("processingStatus")
            if status == "DONE":
                response = self.call("GET", f"/feeds/2021-06-30/documents/{feed['resultFeedDocumentId']}")
                report_url = json_body(response, "getFeedDocument")["url"]
                return self.http.request("GET", report_url).content
            if status in ("CANCELLED", "FATAL"):
                state.pop("feed_id", None)
                raise ChannelError(f"feed {feed.get('feedId')} ended {status}", retryable=False)
            time.sleep(self.feed_poll_interval)
        raise ChannelError(f"feed {state['feed_id']} still processing; will poll again", retryable=True)

    def cancel_lines(self, cancel: CancelRequest, *, state: dict) -> SendResult:
        reason = cancel.reason if cancel.reason in CANCEL_REASONS else "GeneralAdjustment"
        envelope = ElementTree.Element("AmazonEnvelope")
        header = ElementTree.SubElement(envelope, "Header")
        ElementTree.SubElement(header, "DocumentVersion").text = "1.01"
        ElementTree.SubElement(header, "MerchantIdentifier").text = self.account.seller_id or "MERCHANT"
        ElementTree.SubElement(envelope, "MessageType").text = "OrderAcknowledgement"
        message = ElementTree.SubElement(envelope, "Message")
        ElementTree.SubElement(message, "MessageID").text = "1"
        ack = ElementTree.SubElement(message, "OrderAcknowledgement")
        ElementTree.SubElement(ack, "AmazonOrderID").text = cancel.order_external_id
        ElementTree.SubElement(ack, "StatusCode").text = "Failure"
        for line in cancel.lines:
            item = ElementTree.SubElement(ack, "Item")
            ElementTree.SubElement(item, "AmazonOrderItemCode").text = line.external_line_id
            ElementTree.SubElement(item, "CancelReason").text = reason
        if not cancel.lines:
            ElementTree.SubElement(ack, "CancelReason").text = reason
        content = ElementTree.tostring(envelope, encoding="utf-8", xml_declaration=True)
        report = self._feed("POST_ORDER_ACKNOWLEDGEMENT_DATA", content, "text/xml; charset=UTF-8", state)
        try:
            root = ElementTree.fromstring(report)
        except ElementTree.ParseError:
            raise ChannelError("processing report is not XML", retryable=False) from None
        errors = int(root.findtext(".//MessagesWithError") or 0)
        if errors:
            descriptions = [r.findtext("ResultDescription") or "" for r in root.iter("Result")]
            raise ChannelError(f"cancellation rejected: {'; '.join(descriptions)}", retryable=False)
        return SendResult(response={"feed_id": state["feed_id"], "messages_with_error": 0}, state=state)

    def push_inventory(self, quantities: list[InventoryQuantity], *, idempotency_key: str, state: dict) -> SendResult:
        seller = self.account.seller_id
        if not seller:
            raise ChannelError("Amazon account has no seller_id", retryable=False)

        def patches(quantity: int) -> list[dict]:
            value = [{"fulfillment_channel_code": "DEFAULT", "quantity": quantity}]
            return [{"op": "replace", "path": "/attributes/fulfillment_availability", "value": value}]

        if len(quantities) <= LISTINGS_FEED_THRESHOLD:
            accepted = []
            for item in quantities:
                response = self.call(
                    "PATCH",
                    f"/listings/2021-08-01/items/{seller}/{item.channel_sku}",
                    params={"marketplaceIds": self._marketplace()},
                    json={"productType": "PRODUCT", "patches": patches(item.quantity)},
                )
                if response.status_code != 200:
                    raise ChannelError(
                        f"patchListingsItem {item.channel_sku}: HTTP {response.status_code}: {_errors(response)}",
                        retryable=response.status_code >= 500,
                    )
                data = json_body(response, "patchListingsItem")
                if data.get("status") == "INVALID":
                    issues = "; ".join(i.get("message", "") for i in data.get("issues") or [])
                    raise ChannelError(f"listing {item.channel_sku} rejected: {issues}", retryable=False)
                accepted.append(item.channel_sku)
            return SendResult(
                response={"accepted": accepted}, acknowledged={q.channel_sku: q.quantity for q in quantities}
            )
        feed = {
            "header": {"sellerId": seller, "version": "2.0", "issueLocale": "en_US"},
            "messages": [
                {
                    "messageId": index + 1,
                    "sku": item.channel_sku,
                    "operationType": "PATCH",
                    "productType": "PRODUCT",
                    "patches": patches(item.quantity),
                }
                for index, item in enumerate(quantities)
            ],
        }
        report = self._feed("JSON_LISTINGS_FEED", json.dumps(feed).encode(), "application/json; charset=UTF-8", state)
        try:
            summary = json.loads(report)["summary"]
        except (ValueError, KeyError, TypeError):
            raise ChannelError("listings feed report is not the expected JSON", retryable=False) from None
        if summary.get("errors"):
            raise ChannelError(f"listings feed: {summary['errors']} message(s) rejected", retryable=False)
        return SendResult(
            response={"feed_id": state["feed_id"], "summary": summary},
            state=state,
            acknowledged={q.channel_sku: q.quantity for q in quantities},
        )
