"""Amazon Selling Partner API: Orders v2026-01-01 reads, v0 confirmShipment, Feeds, Listings Items.

Auth is LWA: a refresh token is exchanged for an access token (1 h), cached per process until a
minute before it expires and sent as ``x-amz-access-token``. A 403 drops the cached token and
retries once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote
from xml.etree import ElementTree

from defusedxml import ElementTree as SafeElementTree

from channels.connectors.amazon_reports import AmazonReportsMixin  # scorecards: the Reports API calls
from channels.connectors.base import (
    AdvertisedStock,
    CancelRequest,
    ChannelError,
    Connector,
    InventoryQuantity,
    ListingIds,
    NormalizedLine,
    NormalizedOrder,
    NormalizedReturn,
    OrderPage,
    PayloadError,
    RefundRequest,
    ReturnedLine,
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
from channels.connectors.tokens import TokenGrant
from orders.models import CancelInitiator, OrderStatus

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
INCLUDED_DATA = "BUYER,FULFILLMENT,RECIPIENT,PROCEEDS,CANCELLATION,PACKAGES"
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


# Waybill's return reasons as the adjustment feed's AdjustmentReason.
AMAZON_ADJUSTMENT_REASONS = {
    "damaged": "CustomerReturn",
    "defective": "CustomerReturn",
    "wrong_item": "DifferentItem",
    "not_as_described": "CustomerReturn",
    "no_longer_needed": "CustomerReturn",
    "goodwill": "GeneralAdjustment",
}
RETURNS_REPORT = "GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE"
AMAZON_RETURN_STATUS = {
    "pending": "requested",
    "requested": "requested",
    "authorized": "authorized",
    "approved": "authorized",
    "closed": "authorized",
    "declined": "rejected",
    "rejected": "rejected",
}
AMAZON_RETURN_REASONS = {
    "DEFECTIVE": "defective",
    "DAMAGED_BY_CARRIER": "damaged",
    "DAMAGED_BY_FC": "damaged",
    "WRONG_ITEM": "wrong_item",
    "NOT_AS_DESCRIBED": "not_as_described",
    "UNWANTED_ITEM": "no_longer_needed",
    "NO_REASON_GIVEN": "other",
}
# The processing report's code for an adjustment item id Amazon processed already (unverified: configurable).
AMAZON_DUPLICATE_ADJUSTMENT = "13013"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Waybill's package reference for a shipment ("shipment-28", or the shipment's number alone) to
# Amazon's packageReferenceId, which takes positive numbers only (amazon-orders-v0.json).
_PACKAGE_REFERENCE = re.compile(r"^(?:shipment-)?0*([1-9][0-9]{0,17})$")
# ItemCancellationExecution.cancelledBy → who the cancellation is charged to.
CANCELLED_BY = {
    "BUYER": CancelInitiator.BUYER,
    "AMAZON": CancelInitiator.MARKETPLACE,
    "MERCHANT": CancelInitiator.SELLER,
}


def package_reference_id(reference: str) -> str:
    """Amazon's packageReferenceId for a Waybill package reference: the shipment's number, so it is the
    same on every attempt. Refused (not retried) when the reference carries no positive number."""
    match = _PACKAGE_REFERENCE.match(str(reference or "").strip())
    if match is None:
        raise ChannelError(
            f"package reference {reference!r} has no positive number: Amazon takes only positive numeric "
            "packageReferenceId values",
            retryable=False,
        )
    return match.group(1)


def _describe(body: Any) -> str:
    """Every error of an SP-API envelope as 'code: message (details)'; "" when it names none."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for error in errors:
        if not isinstance(error, dict):
            parts.append(str(error)[:300])
            continue
        text = f"{error.get('code')}: {error.get('message')}"
        if error.get("details"):
            text += f" (details: {error['details']})"
        parts.append(text)
    return "; ".join(parts)


def _error_issues(issues: Any) -> list[str]:
    """The listings issues of severity ERROR (what made Amazon refuse the submission), as text."""
    return [
        f"{issue.get('code')}: {issue.get('message')}"
        for issue in issues or []
        if isinstance(issue, dict) and issue.get("severity") == "ERROR"
    ]


class AmazonConnector(AmazonReportsMixin, Connector):
    kind = "amazon"
    # patchListingsItem: 5 requests a second, one request per SKU (a feed above 10): a push of a few SKUs
    # every half second stays within it.
    inventory_push_interval: ClassVar[float] = 0.5
    identity_fields = ("orderId", "lastUpdatedTime")
    overlap = timedelta(minutes=5)
    feed_poll_attempts: ClassVar[int] = 20
    feed_poll_interval: ClassVar[float] = 0.5

    # --- auth ----------------------------------------------------------------------------------

    token_refused_statuses = frozenset({403})

    def _token_url(self) -> str:
        if "amazon.com" in self.account.api_base_url:
            return "https://api.amazon.com/auth/o2/token"
        return self.account.api_base_url.rstrip("/") + "/auth/o2/token"

    def token_key(self) -> str:
        return hashlib.sha256(self.credentials.get("refresh_token", "").encode()).hexdigest()

    def exchange_token(self, grant: TokenGrant) -> TokenGrant:
        """LWA: the refresh token exchanged for an access token (1 h)."""
        missing = [k for k in ("lwa_client_id", "lwa_client_secret", "refresh_token") if not self.credentials.get(k)]
        if missing:
            raise ChannelError(f"Amazon credentials lack {', '.join(missing)}", retryable=False)
        data = {
            "grant_type": "refresh_token",
            "refresh_token": self.credentials["refresh_token"],
            "client_id": self.credentials["lwa_client_id"],
            "client_secret": self.credentials["lwa_client_secret"],
        }
        return self.mint_token("LWA", self._token_url(), data=data, default_lifetime=3600)

    def auth_headers(self, token: str, path: str) -> dict[str, str]:
        return {"x-amz-access-token": token}

    def describe_errors(self, body: Any) -> str:
        return _describe(body)

    def _marketplace(self) -> str:
        ids = self.account.marketplace_ids or []
        if not ids:
            raise ChannelError("Amazon account has no marketplace_ids", retryable=False)
        return ids[0]

    def _order_marketplace(self, order_external_id: str, marketplace_id: str) -> str:
        """The marketplace a write about this order goes to: the order's own (``salesChannel.marketplaceId``).
        A message queued without it is answered by reading the order; the account's first marketplace is
        used only when Amazon names none for the order."""
        if marketplace_id:
            return marketplace_id
        order = self.get_order(order_external_id)
        sales_channel = order.get("salesChannel")
        marketplace = sales_channel.get("marketplaceId") if isinstance(sales_channel, dict) else None
        return str(marketplace) if marketplace else self._marketplace()

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
                raise self.failure(f"searchOrders page {page + 1}", response)
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
        """One order by id (getOrder), with the same datasets as a searchOrders page: the same shape."""
        response = self.call(
            "GET", f"/orders/2026-01-01/orders/{quote(external_id, safe='')}", params={"includedData": INCLUDED_DATA}
        )
        if response.status_code != 200:
            raise self.failure(f"getOrder {external_id}", response)
        data = json_body(response, "getOrder")
        return require_obj(data.get("order") if isinstance(data, dict) else None, "order")

    def parse_order(self, raw: dict) -> NormalizedOrder:
        raw = require_obj(raw, "order")
        order_id = require_str(raw, "orderId", "", max_length=128)
        placed = parse_datetime(raw.get("createdTime"), "createdTime")
        updated = parse_datetime(raw.get("lastUpdatedTime"), "lastUpdatedTime")
        channel = require_obj(raw.get("salesChannel"), "salesChannel")
        marketplace = require_str(channel, "marketplaceId", "salesChannel", required=False, max_length=64)
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
        status = STATUS_MAP[status_code]
        cancelled_order = status == OrderStatus.CANCELLED
        open_order = status not in (OrderStatus.CANCELLED, OrderStatus.SHIPPED)
        request_reasons: list[str] = []
        cancelled_by: list[str] = []
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
            cancellation = require_obj(item.get("cancellation"), f"{path}.cancellation", required=False)
            request = require_obj(
                cancellation.get("cancellationRequest"), f"{path}.cancellation.cancellationRequest", required=False
            )
            execution = require_obj(
                cancellation.get("cancellationExecution"), f"{path}.cancellation.cancellationExecution", required=False
            )
            buyer_asked = request.get("requester") == "BUYER"
            if execution:
                executor = str(execution.get("cancelledBy") or "")
                initiator = CANCELLED_BY.get(executor, "")
                # The seller accepting the buyer's request cancels on the buyer's behalf: not a seller fault.
                if initiator == CancelInitiator.SELLER and (
                    buyer_asked or execution.get("cancelReason") == "BuyerCanceled"
                ):
                    initiator = CancelInitiator.BUYER
                if initiator:
                    cancelled_by.append(initiator)
            elif buyer_asked and open_order:
                request_reasons.append(str(request.get("cancelReason") or "").strip())
            if cancelled_order:
                cancelled = quantity - shipped
            elif unfulfilled is not None and execution:
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
        buyer = require_obj(raw.get("buyer"), "buyer", required=False)
        recipient = require_obj(raw.get("recipient"), "recipient", required=False)
        address = require_obj(recipient.get("deliveryAddress"), "recipient.deliveryAddress", required=False)
        ship_to = None
        if address:
            line2 = ", ".join(str(part) for part in (address.get("addressLine2"), address.get("addressLine3")) if part)
            ship_to = normalized_address(
                name=address.get("name") or buyer.get("buyerName"),
                line1=address.get("addressLine1"),
                line2=line2,
                city=address.get("city"),
                region=address.get("stateOrRegion"),
                postal_code=address.get("postalCode"),
                country_code=address.get("countryCode"),
                phone=address.get("phone"),
                email=buyer.get("buyerEmail"),
            )
        if CancelInitiator.SELLER in cancelled_by:
            initiator = CancelInitiator.SELLER
        elif cancelled_by:
            initiator = cancelled_by[0]
        else:
            initiator = ""
        return NormalizedOrder(
            external_id=order_id,
            placed_at=placed,
            updated_at=updated,
            currency=currency,
            status=status,
            channel_status=status_code,
            lines=lines,
            total_amount=total,
            ship_to=ship_to,
            ship_by=ship_by,
            deliver_by=deliver_by,
            shipping_method=str(fulfillment.get("fulfillmentServiceLevel") or "")[:64],
            marketplace_fulfilled=fulfilled_by == "AMAZON",
            cancel_requested=bool(request_reasons),
            cancel_request_reason="; ".join(dict.fromkeys(r for r in request_reasons if r))[:255],
            cancelled_by=str(initiator),
            marketplace_id=marketplace,
        )

    # --- writes --------------------------------------------------------------------------------

    def confirm_shipment_body(self, shipment: ShipmentConfirmation) -> dict[str, Any]:
        """The confirmShipment request body (v0): the order's own marketplace, the shipment's number."""
        detail: dict[str, Any] = {
            "packageReferenceId": package_reference_id(shipment.package_reference),
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
        marketplace = self._order_marketplace(shipment.order_external_id, shipment.marketplace_id)
        return {"marketplaceId": marketplace, "packageDetail": detail}

    def confirm_shipment(self, shipment: ShipmentConfirmation, *, state: dict) -> SendResult:
        body = self.confirm_shipment_body(shipment)
        response = self.call(
            "POST",
            f"/orders/v0/orders/{quote(shipment.order_external_id, safe='')}/shipmentConfirmation",
            json=body,
        )
        if response.status_code == 204:
            return SendResult(
                response={
                    "status": 204,
                    "marketplaceId": body["marketplaceId"],
                    "packageReferenceId": body["packageDetail"]["packageReferenceId"],
                }
            )
        raise self.failure(f"confirmShipment {shipment.order_external_id}", response)

    def is_applied(self, kind: str, payload: dict, state: dict) -> bool:
        if kind == "ship_confirmation":
            reference = package_reference_id(payload["package_reference"])
            order = self.get_order(payload["order_external_id"])
            return any(str(p.get("packageReferenceId")) == reference for p in order.get("packages") or [])
        if kind == "cancellation":
            order = self.get_order(payload["order_external_id"])
            if (order.get("fulfillment") or {}).get("fulfillmentStatus") == "CANCELLED":
                return True
            wanted = {line["external_line_id"] for line in payload.get("lines") or []}
            return bool(wanted) and all(
                (item.get("cancellation") or {}).get("cancellationExecution")
                for item in order.get("orderItems") or []
                if item.get("orderItemId") in wanted
            )
        return False

    def feed_document_body(self, content_type: str) -> dict[str, Any]:
        return {"contentType": content_type}

    def feed_body(self, feed_type: str, document_id: str, marketplace_id: str = "") -> dict[str, Any]:
        return {
            "feedType": feed_type,
            "marketplaceIds": [marketplace_id or self._marketplace()],
            "inputFeedDocumentId": document_id,
        }

    def _feed(self, feed_type: str, content: bytes, content_type: str, state: dict, marketplace_id: str = "") -> bytes:
        """Create document, upload, create feed, poll; returns the processing report. Resumable via state."""
        if not state.get("feed_id"):
            response = self.call("POST", "/feeds/2021-06-30/documents", json=self.feed_document_body(content_type))
            if response.status_code not in (200, 201):
                raise self.failure("createFeedDocument", response)
            document = json_body(response, "createFeedDocument")
            upload = self.http.request("PUT", document["url"], content=content, headers={"Content-Type": content_type})
            if upload.status_code not in (200, 201, 204):
                raise ChannelError(f"feed document upload: HTTP {upload.status_code}", status=upload.status_code)
            response = self.call(
                "POST",
                "/feeds/2021-06-30/feeds",
                json=self.feed_body(feed_type, document["feedDocumentId"], marketplace_id),
            )
            if response.status_code not in (200, 202):
                raise self.failure("createFeed", response)
            state["feed_id"] = json_body(response, "createFeed")["feedId"]
        for _ in range(self.feed_poll_attempts):
            response = self.call("GET", f"/feeds/2021-06-30/feeds/{state['feed_id']}")
            if response.status_code != 200:
                raise self.failure(f"getFeed {state['feed_id']}", response)
            feed = json_body(response, "getFeed")
            status = feed.get("processingStatus")
            if status == "DONE":
                response = self.call("GET", f"/feeds/2021-06-30/documents/{feed['resultFeedDocumentId']}")
                if response.status_code != 200:
                    raise self.failure(f"getFeedDocument {feed['resultFeedDocumentId']}", response)
                report_url = json_body(response, "getFeedDocument")["url"]
                return self.http.request("GET", report_url).content
            if status in ("CANCELLED", "FATAL"):
                state.pop("feed_id", None)
                raise ChannelError(f"feed {feed.get('feedId')} ended {status}", retryable=False, detail=feed)
            time.sleep(self.feed_poll_interval)
        raise ChannelError(f"feed {state['feed_id']} still processing; will poll again", retryable=True)

    def cancellation_feed(self, cancel: CancelRequest) -> bytes:
        """The POST_ORDER_ACKNOWLEDGEMENT_DATA document that cancels ``cancel``'s lines (all when none)."""
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
        return ElementTree.tostring(envelope, encoding="utf-8", xml_declaration=True)

    def cancel_lines(self, cancel: CancelRequest, *, state: dict) -> SendResult:
        marketplace = state.get("marketplace_id") or self._order_marketplace(
            cancel.order_external_id, cancel.marketplace_id
        )
        state["marketplace_id"] = marketplace
        content = self.cancellation_feed(cancel)
        report = self._feed("POST_ORDER_ACKNOWLEDGEMENT_DATA", content, "text/xml; charset=UTF-8", state, marketplace)
        try:
            # The report comes from the channel: parsed without entity expansion or external references.
            root = SafeElementTree.fromstring(report)
        except (ElementTree.ParseError, ValueError):
            raise ChannelError("processing report is not XML", retryable=False) from None
        errors = int(root.findtext(".//MessagesWithError") or 0)
        if errors:
            results = [
                {
                    "code": r.findtext("ResultMessageCode") or "",
                    "message": r.findtext("ResultDescription") or "",
                    "details": f"feed {state['feed_id']} message {r.findtext('MessageID') or ''}",
                }
                for r in root.iter("Result")
            ]
            raise ChannelError(
                f"cancellation rejected: {_describe({'errors': results})}",
                retryable=False,
                detail={"errors": results},
            )
        return SendResult(response={"feed_id": state["feed_id"], "messages_with_error": 0}, state=state)

    # --- refunds (issue #18): the POST_PAYMENT_ADJUSTMENT_DATA feed -----------------------------------------
    # No machine-readable model of the feed document: its shape follows Amazon's XSD for OrderAdjustment
    # (AdjustedItem, AdjustmentReason, ItemPriceAdjustments Component Principal/Shipping).

    @classmethod
    def refund_unavailable(cls, *, marketplace_fulfilled: bool, channel_return_id: str) -> str:
        return ""

    def adjustment_feed(self, refund: RefundRequest) -> bytes:
        """One OrderAdjustment: an AdjustedItem per line (its MerchantAdjustmentItemID is the refund's
        reference and the line: Amazon refuses one it processed already), shipping on the first."""
        reason = AMAZON_ADJUSTMENT_REASONS.get(refund.reason.strip().lower(), "CustomerReturn")
        envelope = ElementTree.Element("AmazonEnvelope")
        header = ElementTree.SubElement(envelope, "Header")
        ElementTree.SubElement(header, "DocumentVersion").text = "1.01"
        ElementTree.SubElement(header, "MerchantIdentifier").text = self.account.seller_id or "MERCHANT"
        ElementTree.SubElement(envelope, "MessageType").text = "OrderAdjustment"
        message = ElementTree.SubElement(envelope, "Message")
        ElementTree.SubElement(message, "MessageID").text = "1"
        adjustment = ElementTree.SubElement(message, "OrderAdjustment")
        ElementTree.SubElement(adjustment, "AmazonOrderID").text = refund.order_external_id
        for index, line in enumerate(refund.lines):
            item = ElementTree.SubElement(adjustment, "AdjustedItem")
            ElementTree.SubElement(item, "AmazonOrderItemCode").text = line.external_line_id
            ElementTree.SubElement(item, "MerchantAdjustmentItemID").text = f"{refund.reference}-{index + 1}"
            ElementTree.SubElement(item, "AdjustmentReason").text = reason
            prices = ElementTree.SubElement(item, "ItemPriceAdjustments")
            parts = [("Principal", line.amount)]
            if index == 0 and refund.shipping > 0:
                parts.append(("Shipping", refund.shipping))
            for kind, amount in parts:
                component = ElementTree.SubElement(prices, "Component")
                ElementTree.SubElement(component, "Type").text = kind
                ElementTree.SubElement(component, "Amount", currency=refund.currency).text = f"{amount:.2f}"
            if line.quantity:
                ElementTree.SubElement(item, "QuantityCancelled").text = str(line.quantity)
        return ElementTree.tostring(envelope, encoding="utf-8", xml_declaration=True)

    def refund(self, refund: RefundRequest, *, state: dict) -> SendResult:
        if not refund.lines:
            raise ChannelError("Amazon adjusts per order item: name at least one line", retryable=False)
        marketplace = state.get("marketplace_id") or self._order_marketplace(
            refund.order_external_id, refund.marketplace_id
        )
        state["marketplace_id"] = marketplace
        report = self._feed(
            "POST_PAYMENT_ADJUSTMENT_DATA", self.adjustment_feed(refund), "text/xml; charset=UTF-8", state, marketplace
        )
        try:
            root = SafeElementTree.fromstring(report)
        except (ElementTree.ParseError, ValueError):
            raise ChannelError("processing report is not XML", retryable=False) from None
        results = [
            {"code": r.findtext("ResultMessageCode") or "", "message": r.findtext("ResultDescription") or ""}
            for r in root.iter("Result")
            if r.findtext("ResultCode") == "Error"
        ]
        # A resend of a feed Amazon processed already (the answer was lost) is refused as a duplicate: applied.
        fresh = [r for r in results if r["code"] != AMAZON_DUPLICATE_ADJUSTMENT]
        if fresh:
            raise ChannelError(
                f"payment adjustment rejected: {_describe({'errors': fresh})}",
                retryable=False,
                detail={"errors": fresh},
            )
        return SendResult(
            response={"refund_id": f"feed:{state['feed_id']}", "feed_id": state["feed_id"], "duplicate": bool(results)},
            state=state,
            already_applied=bool(results),
        )

    # --- returns in (issue #18): the GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE report (Reports API) ---------
    # The report's columns follow Amazon's report documentation (no machine-readable model): tab-separated,
    # one row per returned item, matched to the order's line by the merchant SKU.

    returns_read_interval: ClassVar[timedelta] = timedelta(minutes=15)
    returns_report_poll_attempts: ClassVar[int] = 20
    returns_report_poll_interval: ClassVar[float] = 0.5

    def _returns_report(self, since: datetime) -> str:
        body = {
            "reportType": RETURNS_REPORT,
            "marketplaceIds": [self._marketplace()],
            "dataStartTime": _iso(since),
        }
        response = self.call("POST", "/reports/2021-06-30/reports", json=body)
        if response.status_code != 202:
            raise self.failure("createReport", response)
        report_id = json_body(response, "createReport")["reportId"]
        for _ in range(self.returns_report_poll_attempts):
            response = self.call("GET", f"/reports/2021-06-30/reports/{report_id}")
            if response.status_code != 200:
                raise self.failure(f"getReport {report_id}", response)
            report = json_body(response, "getReport")
            status = report.get("processingStatus")
            if status == "DONE":
                document_id = report["reportDocumentId"]
                response = self.call("GET", f"/reports/2021-06-30/documents/{document_id}")
                if response.status_code != 200:
                    raise self.failure(f"getReportDocument {document_id}", response)
                url = json_body(response, "getReportDocument")["url"]
                return self.http.request("GET", url).content.decode("utf-8-sig", errors="replace")
            if status in ("CANCELLED", "FATAL"):
                # CANCELLED: no data for the window (Amazon's answer to an empty report).
                return ""
            time.sleep(self.returns_report_poll_interval)
        raise ChannelError(f"returns report {report_id} still processing; will read again", retryable=True)

    def fetch_returns(self, *, since: datetime) -> Iterator[list[NormalizedReturn]]:
        text = self._returns_report(since)
        rows = list(csv.DictReader(io.StringIO(text), delimiter="\t")) if text.strip() else []
        grouped: dict[tuple[str, str], list[dict]] = {}
        for row in rows:
            key = (row.get("Order ID") or "", row.get("Amazon RMA ID") or "")
            if all(key):
                grouped.setdefault(key, []).append(row)
        found = []
        for (order_id, rma_id), items in grouped.items():
            status = items[0].get("Return request status") or ""
            reason = AMAZON_RETURN_REASONS.get((items[0].get("Return reason") or "").upper(), "other")
            found.append(
                NormalizedReturn(
                    external_id=rma_id,
                    order_external_id=order_id,
                    status=AMAZON_RETURN_STATUS.get(status.lower(), "requested"),
                    channel_status=status,
                    lines=[
                        ReturnedLine(
                            external_line_id="",
                            channel_sku=row.get("Merchant SKU") or "",
                            quantity=parse_int(row.get("Return quantity"), "Return quantity", minimum=1),
                            reason=reason,
                        )
                        for row in items
                    ],
                    reason=reason,
                    updated_at=parse_datetime(
                        items[0].get("Return request date"), "Return request date", required=False
                    ),
                    note=(items[0].get("Item Name") or "")[:200],
                )
            )
        yield found

    @staticmethod
    def listing_patches(quantity: int) -> list[dict]:
        value = [{"fulfillment_channel_code": "DEFAULT", "quantity": quantity}]
        return [{"op": "replace", "path": "/attributes/fulfillment_availability", "value": value}]

    def listings_feed(self, quantities: list[InventoryQuantity]) -> dict[str, Any]:
        """The JSON_LISTINGS_FEED document: one PATCH message per SKU, numbered from 1."""
        return {
            "header": {"sellerId": self.account.seller_id, "version": "2.0", "issueLocale": "en_US"},
            "messages": [
                {
                    "messageId": index + 1,
                    "sku": item.channel_sku,
                    "operationType": "PATCH",
                    "productType": "PRODUCT",
                    "patches": self.listing_patches(item.quantity),
                }
                for index, item in enumerate(quantities)
            ],
        }

    def push_inventory(self, quantities: list[InventoryQuantity], *, idempotency_key: str, state: dict) -> SendResult:
        """Set each SKU's quantity: acknowledged are the SKUs Amazon accepted without an ERROR issue; a SKU
        Amazon refuses (not listed, invalid) is rejected with Amazon's reason."""
        if not self.account.seller_id:
            raise ChannelError("Amazon account has no seller_id", retryable=False)
        if len(quantities) <= LISTINGS_FEED_THRESHOLD:
            return self._push_by_patch(quantities)
        return self._push_by_feed(quantities, state)

    def _push_by_patch(self, quantities: list[InventoryQuantity]) -> SendResult:
        acknowledged: dict[str, int] = {}
        rejected: dict[str, str] = {}
        submissions: dict[str, dict] = {}
        seller = quote(self.account.seller_id, safe="")
        for item in quantities:
            response = self.call(
                "PATCH",
                f"/listings/2021-08-01/items/{seller}/{quote(item.channel_sku, safe='')}",
                params={"marketplaceIds": self._marketplace()},
                json={"productType": "PRODUCT", "patches": self.listing_patches(item.quantity)},
            )
            if response.status_code == 400:
                # This SKU's request was refused as it stands: sending it again changes nothing.
                rejected[item.channel_sku] = self.describe(response)[:500]
                continue
            if response.status_code != 200:
                raise self.failure(f"patchListingsItem {item.channel_sku}", response)
            data = json_body(response, "patchListingsItem")
            if not isinstance(data, dict):
                raise ChannelError(f"patchListingsItem {item.channel_sku}: answer is not an object", retryable=False)
            errors = _error_issues(data.get("issues"))
            submissions[item.channel_sku] = {"status": data.get("status"), "submissionId": data.get("submissionId")}
            if data.get("status") == "ACCEPTED" and not errors:
                acknowledged[item.channel_sku] = item.quantity
            else:
                rejected[item.channel_sku] = ("; ".join(errors) or f"submission {data.get('status')}")[:500]
        return SendResult(
            response={"accepted": list(acknowledged), "submissions": submissions},
            acknowledged=acknowledged,
            rejected=rejected,
        )

    def _push_by_feed(self, quantities: list[InventoryQuantity], state: dict) -> SendResult:
        feed = self.listings_feed(quantities)
        report = self._feed("JSON_LISTINGS_FEED", json.dumps(feed).encode(), "application/json; charset=UTF-8", state)
        try:
            data = json.loads(report)
            summary = data["summary"]
            issues = data.get("issues") or []
        except (ValueError, KeyError, TypeError):
            raise ChannelError("listings feed report is not the expected JSON", retryable=False) from None
        sku_for = {message["messageId"]: message["sku"] for message in feed["messages"]}
        reasons: dict[str, list[str]] = {}
        for issue in issues:
            if isinstance(issue, dict) and issue.get("severity") == "ERROR":
                sku = sku_for.get(issue.get("messageId"))
                if sku is not None:
                    reasons.setdefault(sku, []).append(f"{issue.get('code')}: {issue.get('message')}")
        acknowledged = {item.channel_sku: item.quantity for item in quantities if item.channel_sku not in reasons}
        rejected = {sku: "; ".join(texts)[:500] for sku, texts in reasons.items()}
        return SendResult(
            response={"feed_id": state["feed_id"], "summary": summary},
            state=state,
            acknowledged=acknowledged,
            rejected=rejected,
        )

    # --- reconciliation reads (channels/reconcile.py) ------------------------------------------

    stock_read_batch = 20

    def read_stock(self, channel_skus: list[str], *, listings: Mapping[str, ListingIds]) -> AdvertisedStock:
        """getListingsItem per SKU with ``includedData=fulfillmentAvailability`` (5 rps): the quantity of the
        DEFAULT (merchant-fulfilled) channel; a listing with none set advertises nothing (0). 404: not listed."""
        if not self.account.seller_id:
            raise ChannelError("Amazon account has no seller_id", retryable=False)
        seller = quote(self.account.seller_id, safe="")
        stock = AdvertisedStock()
        for sku in channel_skus:
            response = self.call(
                "GET",
                f"/listings/2021-08-01/items/{seller}/{quote(sku, safe='')}",
                params={"marketplaceIds": self._marketplace(), "includedData": "fulfillmentAvailability"},
            )
            if response.status_code == 404:
                stock.not_listed.add(sku)
                continue
            if response.status_code != 200:
                raise self.failure(f"getListingsItem {sku}", response)
            data = require_obj(json_body(response, "getListingsItem"), "getListingsItem")
            quantity = 0
            for entry in require_list(data.get("fulfillmentAvailability") or [], "fulfillmentAvailability"):
                if isinstance(entry, dict) and entry.get("fulfillmentChannelCode") == "DEFAULT":
                    quantity = parse_int(entry.get("quantity"), "fulfillmentAvailability[].quantity", default=0)
            stock.quantities[sku] = quantity
        return stock

    # --- end of reconciliation reads -----------------------------------------------------------
