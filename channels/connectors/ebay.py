"""eBay: Sell Fulfillment API orders and shipping fulfillments, Post-Order cancellation, Inventory API.

Auth is an OAuth user token minted from the account's refresh token (``POST
/identity/v1/oauth2/token``, Basic client id:secret), 7200 s, cached per process until a minute
before expiry; the Sell APIs take it as ``Bearer``, the Post-Order API as ``IAF``. A 401 drops it
and retries once.

Orders are listed with ``filter=lastmodifieddate:[…..]`` percent-encoded exactly as eBay documents it
(%5B, %5D) and offset paging, following each page's ``next`` href. Ship-by is per line. A
cancellation cancels the whole order through the Post-Order API, after check_eligibility; when the
buyer has asked to cancel (getOrder's ``cancelStatus.cancelRequests``, which getOrders always returns
empty), Waybill approves the buyer's request (``POST /post-order/v2/cancellation/{cancelId}/approve``)
instead of opening a seller cancellation, which eBay would count as a seller defect.

Quantities go through ``bulk_update_price_quantity`` (quantity only, 25 SKUs a call), which addresses an
inventory item by SKU and answers per SKU, so a SKU eBay has no inventory item for is refused, not
created: ``PUT inventory_item/{sku}`` creates a new, empty item for an unknown SKU and replaces the whole
record (product details included) of a known one, per the model. ``resolve_listings`` asks
``bulk_get_inventory_item`` which SKUs eBay has.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx

from channels.connectors.base import (
    CancelRequest,
    ChannelError,
    ChannelRefund,
    Connector,
    InventoryQuantity,
    ListingIds,
    NormalizedAddress,
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
    order_status_from,
    parse_datetime,
    parse_decimal,
    parse_int,
    require_list,
    require_obj,
    require_str,
)
from channels.connectors.tokens import TokenGrant

SCOPES = "https://api.ebay.com/oauth/api_scope/sell.fulfillment https://api.ebay.com/oauth/api_scope/sell.inventory"
LINE_STATES = {"NOT_STARTED", "IN_PROGRESS", "FULFILLED"}
RELEASABLE_PAYMENT = {"PAID", "PARTIALLY_REFUNDED"}
# Waybill's reason vocabulary (Amazon's) to the Post-Order cancelReason.
CANCEL_REASONS = {
    "NoInventory": "OUT_OF_STOCK_OR_CANNOT_FULFILL",
    "BuyerCanceled": "BUYER_ASKED_CANCEL",
    "CustomerExchange": "BUYER_ASKED_CANCEL",
    "ShippingAddressUndeliverable": "ADDRESS_ISSUES",
}
EBAY_REASONS = set(CANCEL_REASONS.values())
INVENTORY_BATCH = 25
# cancelInitiator (the model: "typically either the 'Buyer' or 'Seller'") to orders.models.CancelInitiator.
INITIATORS = {"BUYER": "buyer", "SELLER": "seller"}


# Waybill's return reasons as eBay's ReasonForRefundEnum.
EBAY_REFUND_REASONS = {
    "wrong_item": "SELLER_WRONG_ITEM",
    "no_longer_needed": "BUYER_RETURN",
    "damaged": "BUYER_RETURN",
    "defective": "BUYER_RETURN",
    "not_as_described": "BUYER_RETURN",
    "not received": "ITEM_NOT_RECEIVED",
}


def iso_ms(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def orders_filter(since: datetime) -> str:
    """``lastmodifieddate:%5B2024-05-15T08:25:43.511Z..%5D``: brackets encoded, the rest as eBay shows it."""
    return quote(f"lastmodifieddate:[{iso_ms(since)}..]", safe=":.-")


def tracking_number(value: str) -> str:
    """eBay takes letters and digits only: the spaces and hyphens printed on labels are dropped."""
    return "".join(ch for ch in value if ch.isalnum())


def _open_buyer_request(raw: dict) -> dict | None:
    """The buyer's cancellation request awaiting the seller, from getOrder's cancelStatus."""
    status = raw.get("cancelStatus") if isinstance(raw.get("cancelStatus"), dict) else {}
    for request in status.get("cancelRequests") or []:
        if (
            isinstance(request, dict)
            and str(request.get("cancelInitiator") or "").upper() != "SELLER"
            and request.get("cancelRequestState") == "REQUESTED"
        ):
            return request
    return None


class EbayConnector(Connector):
    kind = "ebay"
    identity_fields = ("orderId", "lastModifiedDate")
    overlap = timedelta(minutes=5)
    # An absolute quantity can be sent twice without harm.
    idempotent_kinds = frozenset({"inventory"})
    page_size: ClassVar[int] = 200
    # The Post-Order API cancels whole orders: a buyer's accepted request is one cancellation.
    cancels_whole_orders_only: ClassVar[bool] = True

    # --- auth ----------------------------------------------------------------------------------

    def token_key(self) -> str:
        return hashlib.sha256(self.credentials.get("refresh_token", "").encode()).hexdigest()

    def exchange_token(self, grant: TokenGrant) -> TokenGrant:
        """A user token minted from the account's refresh token (7200 s)."""
        missing = [k for k in ("client_id", "client_secret", "refresh_token") if not self.credentials.get(k)]
        if missing:
            raise ChannelError(f"eBay credentials lack {', '.join(missing)}", retryable=False)
        basic = base64.b64encode(f"{self.credentials['client_id']}:{self.credentials['client_secret']}".encode())
        return self.mint_token(
            "eBay",
            "/identity/v1/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": self.credentials["refresh_token"], "scope": SCOPES},
            headers={"Authorization": f"Basic {basic.decode()}"},
            default_lifetime=7200,
        )

    def auth_headers(self, token: str, path: str) -> dict[str, str]:
        scheme = "IAF" if path.startswith("/post-order/") else "Bearer"
        return {"Authorization": f"{scheme} {token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if "json" in kwargs:
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
        return super().call(method, path, **kwargs)

    def describe_errors(self, body: Any) -> str:
        errors = body.get("errors") if isinstance(body, dict) else None
        errors = [e for e in errors or [] if isinstance(e, dict)]
        return "; ".join(f"{e.get('errorId')}: {e.get('longMessage') or e.get('message')}" for e in errors)

    def _marketplace(self, order: dict | None = None) -> str:
        """The order's own marketplace (its line items' listingMarketplaceId), else the account's first."""
        for item in (order or {}).get("lineItems") or []:
            if isinstance(item, dict) and item.get("listingMarketplaceId"):
                return str(item["listingMarketplaceId"])
        return (self.account.marketplace_ids or ["EBAY_US"])[0]

    # --- reading orders ------------------------------------------------------------------------

    def fetch_orders(self, *, since: datetime, backfill: bool = False) -> Iterator[OrderPage]:
        url = f"/sell/fulfillment/v1/order?filter={orders_filter(since)}&limit={self.page_size}&offset=0"
        page = 0
        while url:
            response = self.call("GET", url)
            if response.status_code != 200:
                raise self.failure(f"getOrders page {page + 1}", response)
            data = json_body(response, "getOrders")
            if not isinstance(data, dict) or not isinstance(data.get("orders", []), list):
                raise ChannelError("getOrders: response has no orders list", retryable=False)
            page += 1
            following = data.get("next")
            yield OrderPage(
                raw_orders=[self._with_cancel_requests(raw) for raw in data.get("orders", [])],
                progress={"page": page, "offset": data.get("offset"), "total": data.get("total")},
            )
            if not following:
                return
            parts = urlsplit(following)
            url = f"{parts.path}?{parts.query}"

    def _with_cancel_requests(self, raw: Any) -> Any:
        """getOrders leaves cancelStatus.cancelRequests empty; an order with a cancellation in progress is
        read again with getOrder (same Order shape), which has them."""
        if not isinstance(raw, dict) or not isinstance(raw.get("orderId"), str):
            return raw
        status = raw.get("cancelStatus") if isinstance(raw.get("cancelStatus"), dict) else {}
        if status.get("cancelState") not in ("IN_PROGRESS", "CANCELED") or status.get("cancelRequests"):
            return raw
        return self.get_order(raw["orderId"])

    def get_order(self, external_id: str) -> dict:
        """getOrder: the order as one element of a getOrders page (the model's Order), cancel requests included."""
        response = self.call("GET", f"/sell/fulfillment/v1/order/{quote(external_id, safe='')}")
        if response.status_code != 200:
            raise self.failure(f"getOrder {external_id}", response)
        return require_obj(json_body(response, "getOrder"), "order")

    def parse_order(self, raw: dict) -> NormalizedOrder:
        raw = require_obj(raw, "order")
        order_id = require_str(raw, "orderId", "", max_length=128)
        placed = parse_datetime(raw.get("creationDate"), "creationDate")
        updated = parse_datetime(raw.get("lastModifiedDate"), "lastModifiedDate")
        fulfillment = require_str(raw, "orderFulfillmentStatus", "")
        if fulfillment not in LINE_STATES:
            raise PayloadError("orderFulfillmentStatus", f"unknown value {fulfillment!r}")
        payment = require_str(raw, "orderPaymentStatus", "", required=False)
        cancel_state = require_str(
            require_obj(raw.get("cancelStatus"), "cancelStatus", required=False),
            "cancelState",
            "cancelStatus",
            required=False,
        )
        cancelled = cancel_state == "CANCELED"
        items = require_list(raw.get("lineItems"), "lineItems")
        if not items:
            raise PayloadError("lineItems", "is empty")
        lines = []
        currency = ""
        for index, item in enumerate(items):
            path = f"lineItems[{index}]"
            item = require_obj(item, path)
            quantity = parse_int(item.get("quantity"), f"{path}.quantity", minimum=1)
            cost = require_obj(item.get("lineItemCost"), f"{path}.lineItemCost", required=False)
            line_total = parse_decimal(cost.get("value"), f"{path}.lineItemCost.value", default=Decimal("0"))
            currency = currency or str(cost.get("currency") or "")
            state = require_str(item, "lineItemFulfillmentStatus", path, required=False) or "NOT_STARTED"
            if state not in LINE_STATES:
                raise PayloadError(f"{path}.lineItemFulfillmentStatus", f"unknown value {state!r}")
            instructions = require_obj(
                item.get("lineItemFulfillmentInstructions"), f"{path}.lineItemFulfillmentInstructions", required=False
            )
            shipped = quantity if state == "FULFILLED" else 0
            lines.append(
                NormalizedLine(
                    external_id=require_str(item, "lineItemId", path, max_length=128),
                    channel_sku=require_str(item, "sku", path, required=False, max_length=128)
                    or f"NOSKU:{item.get('legacyItemId') or item.get('lineItemId')}"[:128],
                    quantity=quantity,
                    unit_price=(line_total / quantity).quantize(Decimal("0.01")),
                    title=str(item.get("title") or "")[:500],
                    channel_status=state,
                    quantity_shipped=shipped,
                    quantity_cancelled=quantity - shipped if cancelled else 0,
                    ship_by=parse_datetime(
                        instructions.get("shipByDate"),
                        f"{path}.lineItemFulfillmentInstructions.shipByDate",
                        required=False,
                    ),
                    deliver_by=parse_datetime(
                        instructions.get("maxEstimatedDeliveryDate"),
                        f"{path}.lineItemFulfillmentInstructions.maxEstimatedDeliveryDate",
                        required=False,
                    ),
                )
            )
        summary = require_obj(raw.get("pricingSummary"), "pricingSummary", required=False)
        total_money = require_obj(summary.get("total"), "pricingSummary.total", required=False)
        total = parse_decimal(total_money["value"], "pricingSummary.total.value") if "value" in total_money else None
        currency = str(total_money.get("currency") or currency)
        if len(currency) != 3:
            raise PayloadError("pricingSummary.total.currency", f"not a currency code: {currency!r}")
        status = order_status_from(
            cancelled=bool(cancelled),
            fulfilled=fulfillment == "FULFILLED",
            partly_fulfilled=fulfillment == "IN_PROGRESS",
            releasable=payment in RELEASABLE_PAYMENT,
        )
        ship_bys = [line.ship_by for line in lines if line.ship_by]
        deliver_bys = [line.deliver_by for line in lines if line.deliver_by]
        cancel_status = require_obj(raw.get("cancelStatus"), "cancelStatus", required=False)
        requests = require_list(cancel_status.get("cancelRequests") or [], "cancelStatus.cancelRequests")
        buyer_request = _open_buyer_request(raw) if cancel_state == "IN_PROGRESS" else None
        cancelled_by = ""
        if cancelled:
            completed = [r for r in requests if isinstance(r, dict) and r.get("cancelRequestState") == "COMPLETED"]
            if completed:
                cancelled_by = INITIATORS.get(str(completed[-1].get("cancelInitiator") or "").upper(), "")
        step = _shipping_step(raw)
        return NormalizedOrder(
            external_id=order_id,
            external_reference=str(raw.get("salesRecordReference") or "")[:128],
            placed_at=placed,
            updated_at=updated,
            currency=currency,
            status=status,
            channel_status=f"{payment or 'NONE'}/{fulfillment}/{cancel_state or 'NONE_REQUESTED'}"[:64],
            lines=lines,
            total_amount=total,
            ship_to=_ship_to(raw),
            ship_by=min(ship_bys) if ship_bys else None,
            deliver_by=min(deliver_bys) if deliver_bys else None,
            paid_at=placed if payment in RELEASABLE_PAYMENT else None,
            shipping_method=str(step.get("shippingServiceCode") or "")[:64],
            cancel_requested=buyer_request is not None,
            cancel_request_reason=(
                f"The buyer asked eBay to cancel: {buyer_request.get('cancelReason') or 'no reason given'}"
                f" (request {buyer_request.get('cancelRequestId')})"[:255]
                if buyer_request
                else ""
            ),
            cancelled_by=cancelled_by,
            marketplace_id=next(
                (
                    str(i["listingMarketplaceId"])
                    for i in items
                    if isinstance(i, dict) and i.get("listingMarketplaceId")
                ),
                "",
            )[:32],
        )

    # --- writes --------------------------------------------------------------------------------

    def confirm_shipment(self, shipment: ShipmentConfirmation, *, state: dict) -> SendResult:
        tracking = tracking_number(shipment.tracking_number)
        if not tracking or not shipment.carrier_code:
            raise ChannelError(
                f"eBay needs a carrier and a tracking number of letters and digits: {shipment.carrier_code!r}, "
                f"{shipment.tracking_number!r}",
                retryable=False,
            )
        body = {
            "lineItems": [{"lineItemId": line.external_line_id, "quantity": line.quantity} for line in shipment.lines],
            "shippedDate": iso_ms(shipment.shipped_at),
            "shippingCarrierCode": shipment.carrier_code,
            "trackingNumber": tracking,
        }
        response = self.call(
            "POST",
            f"/sell/fulfillment/v1/order/{quote(shipment.order_external_id, safe='')}/shipping_fulfillment",
            json=body,
        )
        if response.status_code != 201:
            raise self.failure(f"createShippingFulfillment {shipment.order_external_id}", response)
        location = response.headers.get("Location", "")
        return SendResult(response={"fulfillment_id": location.rsplit("/", 1)[-1], "location": location})

    def is_applied(self, kind: str, payload: dict, state: dict) -> bool:
        if kind == "ship_confirmation":
            order_id = payload["order_external_id"]
            response = self.call("GET", f"/sell/fulfillment/v1/order/{order_id}/shipping_fulfillment")
            if response.status_code != 200:
                raise self.failure(f"getShippingFulfillments {order_id}", response)
            found = json_body(response, "getShippingFulfillments").get("fulfillments") or []
            wanted = tracking_number(payload["tracking_number"])
            return any(f.get("shipmentTrackingNumber") == wanted for f in found)
        if kind == "cancellation":
            order = self.get_order(payload["order_external_id"])
            return (order.get("cancelStatus") or {}).get("cancelState") == "CANCELED"
        if kind == "refund":  # issue #18: a refund of this amount that was not on the order before the first send
            before = set(state.get("refunds_before") or [])
            wanted = Decimal(payload["amount"])
            for refund_id, amount in self._refunds_seen(payload["order_external_id"]).items():
                if refund_id not in before and amount == wanted:
                    state["refund_id"] = refund_id
                    return True
            return False
        return False

    # --- refunds (issue #18): POST /order/{order_id}/issue_refund (no idempotency key) ------------------------

    @classmethod
    def refund_unavailable(cls, *, marketplace_fulfilled: bool, channel_return_id: str) -> str:
        return ""

    def _refunds_seen(self, order_external_id: str) -> dict[str, Decimal]:
        """{refund id: amount} of every line refund the order shows."""
        seen: dict[str, Decimal] = {}
        for line in self.get_order(order_external_id).get("lineItems") or []:
            for refund in line.get("refunds") or []:
                amount = Decimal(str((refund.get("amount") or {}).get("value") or "0"))
                seen[str(refund.get("refundId"))] = seen.get(str(refund.get("refundId")), Decimal(0)) + amount
        return seen

    def refund(self, refund: RefundRequest, *, state: dict) -> SendResult:
        """issueRefund per line item (shipping folds into the first line: eBay refunds what the line cost the
        buyer). The refunds already on the order are noted first: a retry looks for a new one of this amount."""
        lines = [line for line in refund.lines if line.amount > 0]
        if not lines:
            raise ChannelError("eBay refunds per line item here: name at least one line", retryable=False)
        state.setdefault("refunds_before", sorted(self._refunds_seen(refund.order_external_id)))
        items = []
        for index, line in enumerate(lines):
            amount = line.amount + (refund.shipping if index == 0 else Decimal(0))
            items.append(
                {
                    "lineItemId": line.external_line_id,
                    "refundAmount": {"value": f"{amount:.2f}", "currency": refund.currency},
                }
            )
        body = {
            "reasonForRefund": EBAY_REFUND_REASONS.get(refund.reason.strip().lower(), "BUYER_RETURN"),
            "comment": refund.reference,
            "refundItems": items,
        }
        response = self.call(
            "POST", f"/sell/fulfillment/v1/order/{quote(refund.order_external_id, safe='')}/issue_refund", json=body
        )
        if response.status_code != 200:
            raise self.failure(f"issueRefund {refund.order_external_id}", response)
        answer = json_body(response, "issueRefund")
        return SendResult(
            response={"refund_id": str(answer.get("refundId") or ""), "refund_status": answer.get("refundStatus")}
        )

    def fetch_returns(self, *, since: datetime) -> Iterator[list[NormalizedReturn]]:
        """eBay keeps returns in its Post-Order API (no model here); what the Fulfillment API shows is the
        refunds on each line item. Each refund on an order modified since ``since`` becomes a return of that
        line (units estimated from the amount), unless Waybill sent it."""
        for page in self.fetch_orders(since=since):
            found: list[NormalizedReturn] = []
            for raw in page.raw_orders:
                found.extend(_ebay_refund_returns(raw))
            yield found

    def cancel_lines(self, cancel: CancelRequest, *, state: dict) -> SendResult:
        order_id = cancel.order_external_id
        raw = self.get_order(order_id)
        if cancel.lines:
            order = self.parse_order(raw)
            open_lines = {
                line.external_id
                for line in order.lines
                if line.quantity > line.quantity_shipped + line.quantity_cancelled
            }
            if {line.external_line_id for line in cancel.lines} != open_lines:
                raise ChannelError(
                    "eBay's Post-Order API cancels a whole order, never one line: cancel every open line, "
                    "or refund the line in eBay.",
                    retryable=False,
                )
        headers = {"X-EBAY-C-MARKETPLACE-ID": self._marketplace(raw)}
        buyer_request = _open_buyer_request(raw)
        if buyer_request is not None or state.get("approved_cancel_id"):
            # The buyer asked: approving their request cancels the order as buyer-requested (no seller defect).
            cancel_id = state.get("approved_cancel_id") or str(buyer_request.get("cancelRequestId") or "")
            if not cancel_id:
                raise ChannelError(f"eBay's cancel request on {order_id} has no cancelRequestId", retryable=False)
            state["approved_cancel_id"] = cancel_id
            response = self.call(
                "POST", f"/post-order/v2/cancellation/{quote(cancel_id, safe='')}/approve", headers=headers
            )
            if response.status_code != 200:
                raise self.failure(f"approve cancellation {cancel_id} of {order_id}", response)
            return SendResult(response={"cancel_id": cancel_id, "approved_buyer_request": True}, state=state)
        reason = cancel.reason if cancel.reason in EBAY_REASONS else CANCEL_REASONS.get(cancel.reason)
        reason = reason or "OUT_OF_STOCK_OR_CANNOT_FULFILL"
        if not state.get("cancel_id"):
            response = self.call(
                "POST",
                "/post-order/v2/cancellation/check_eligibility",
                json={"legacyOrderId": order_id},
                headers=headers,
            )
            if response.status_code != 200:
                raise self.failure(f"check_eligibility {order_id}", response)
            eligibility = json_body(response, "check_eligibility")
            if not eligibility.get("eligible"):
                reasons = eligibility.get("failureReason") or []
                if "ORDER_ALREADY_CANCELLED" in reasons:
                    return SendResult(response={"already_cancelled": True}, already_applied=True)
                raise ChannelError(
                    f"eBay says order {order_id} cannot be cancelled: {', '.join(reasons)}",
                    retryable=False,
                    detail=eligibility,
                )
            response = self.call(
                "POST",
                "/post-order/v2/cancellation",
                json={"legacyOrderId": order_id, "cancelReason": reason},
                headers=headers,
            )
            if response.status_code not in (200, 201):
                raise self.failure(f"create cancellation {order_id}", response)
            state["cancel_id"] = json_body(response, "create cancellation").get("cancelId")
        return SendResult(response={"cancel_id": state["cancel_id"], "reason": reason}, state=state)

    def push_inventory(self, quantities: list[InventoryQuantity], *, idempotency_key: str, state: dict) -> SendResult:
        """bulkUpdatePriceQuantity, 25 SKUs a call; eBay answers per SKU (200, or 207 when some fail): each
        SKU is acknowledged or rejected with eBay's words, never assumed."""
        acknowledged: dict[str, int] = {}
        rejected: dict[str, str] = {}
        for start in range(0, len(quantities), INVENTORY_BATCH):
            chunk = quantities[start : start + INVENTORY_BATCH]
            body = {
                "requests": [
                    {"sku": q.channel_sku, "shipToLocationAvailability": {"quantity": q.quantity}} for q in chunk
                ]
            }
            response = self.call("POST", "/sell/inventory/v1/bulk_update_price_quantity", json=body)
            if response.status_code not in (200, 207):
                raise self.failure("bulkUpdatePriceQuantity", response)
            answers = {
                r.get("sku"): r
                for r in json_body(response, "bulkUpdatePriceQuantity").get("responses") or []
                if isinstance(r, dict)
            }
            for item in chunk:
                answer = answers.get(item.channel_sku)
                if answer is None:
                    rejected[item.channel_sku] = "eBay's answer does not name this SKU"
                elif answer.get("statusCode") == 200:
                    acknowledged[item.channel_sku] = item.quantity
                else:
                    errors = answer.get("errors") or []
                    words = "; ".join(
                        f"{e.get('errorId')}: {e.get('longMessage') or e.get('message')}"
                        for e in errors
                        if isinstance(e, dict)
                    )
                    rejected[item.channel_sku] = f"HTTP {answer.get('statusCode')}: {words or 'refused'}"[:500]
        return SendResult(
            response={"accepted": sorted(acknowledged), "rejected": rejected},
            acknowledged=acknowledged,
            rejected=rejected,
        )

    def resolve_listings(self, channel_skus: list[str]) -> dict[str, ListingIds]:
        """bulkGetInventoryItem, 25 SKUs a call: the SKUs eBay has an inventory item for. eBay addresses the
        item by SKU, so no other id is needed to push (``push_needs_listing_ids`` stays False)."""
        found: dict[str, ListingIds] = {}
        for start in range(0, len(channel_skus), INVENTORY_BATCH):
            chunk = channel_skus[start : start + INVENTORY_BATCH]
            response = self.call(
                "POST", "/sell/inventory/v1/bulk_get_inventory_item", json={"requests": [{"sku": s} for s in chunk]}
            )
            if response.status_code not in (200, 207):
                raise self.failure("bulkGetInventoryItem", response)
            for answer in json_body(response, "bulkGetInventoryItem").get("responses") or []:
                if isinstance(answer, dict) and answer.get("statusCode") == 200 and answer.get("sku") in chunk:
                    found[answer["sku"]] = ListingIds()
        return found


def _ebay_refund_returns(raw: dict) -> list[NormalizedReturn]:
    order_id = str(raw.get("orderId") or "")
    out = []
    for line in raw.get("lineItems") or []:
        quantity = int(line.get("quantity") or 0) if str(line.get("quantity") or "").isdigit() else 0
        cost = Decimal(str((line.get("lineItemCost") or {}).get("value") or "0"))
        unit = cost / quantity if quantity else Decimal(0)
        for refund in line.get("refunds") or []:
            refund_id = str(refund.get("refundId") or "")
            amount = Decimal(str((refund.get("amount") or {}).get("value") or "0"))
            if not order_id or not refund_id or amount <= 0:
                continue
            units = max(min(int(amount / unit) if unit else 1, quantity), 1)
            out.append(
                NormalizedReturn(
                    external_id=f"refund:{refund_id}:{line.get('lineItemId')}",
                    order_external_id=order_id,
                    status="authorized",
                    channel_status="REFUNDED",
                    lines=[ReturnedLine(external_line_id=str(line.get("lineItemId") or ""), quantity=units)],
                    updated_at=parse_datetime(refund.get("refundDate"), "refundDate", required=False),
                    refunds=[
                        ChannelRefund(
                            external_id=refund_id,
                            amount=amount.quantize(Decimal("0.01")),
                            currency=str((refund.get("amount") or {}).get("currency") or ""),
                        )
                    ],
                    inferred_from_refund=True,
                )
            )
    return out


def _shipping_step(raw: dict) -> dict:
    instructions = raw.get("fulfillmentStartInstructions")
    if not isinstance(instructions, list) or not instructions or not isinstance(instructions[0], dict):
        return {}
    step = instructions[0].get("shippingStep")
    return step if isinstance(step, dict) else {}


def _ship_to(raw: dict) -> NormalizedAddress | None:
    instructions = require_list(raw.get("fulfillmentStartInstructions") or [], "fulfillmentStartInstructions")
    if not instructions:
        return None
    first = require_obj(instructions[0], "fulfillmentStartInstructions[0]")
    step = require_obj(first.get("shippingStep"), "fulfillmentStartInstructions[0].shippingStep", required=False)
    ship_to = require_obj(step.get("shipTo"), "fulfillmentStartInstructions[0].shippingStep.shipTo", required=False)
    if not ship_to:
        return None
    address = ship_to.get("contactAddress") if isinstance(ship_to.get("contactAddress"), dict) else {}
    phone = ship_to.get("primaryPhone") if isinstance(ship_to.get("primaryPhone"), dict) else {}
    return normalized_address(
        name=ship_to.get("fullName"),
        line1=address.get("addressLine1"),
        line2=address.get("addressLine2"),
        city=address.get("city"),
        region=address.get("stateOrProvince"),
        postal_code=address.get("postalCode"),
        country_code=address.get("countryCode"),
        phone=phone.get("phoneNumber"),
        email=ship_to.get("email"),
    )
