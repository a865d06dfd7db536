"""TikTok Shop Open API (202309): signed requests, orders/search, packages, cancellations, inventory, webhooks.

Every request carries ``app_key``, ``timestamp`` (unix s), ``shop_cipher`` and ``sign`` in the query
and the access token in ``x-tts-access-token``; ``sign`` is ``tiktok_sign`` below, exactly as
../shared/CHANNELS.md gives it. Replies are ``{code, message, request_id, data}``; code != 0 is an
error whatever the HTTP status.

A line item is one unit: lines are grouped per ``sku_id`` into one Waybill line whose
``external_unit_ids`` keep every unit's id, used to ship and cancel. UNPAID and ON_HOLD (the
buyer-remorse window) map to pending, so nothing is routed before AWAITING_SHIPMENT.
Learnt and resolved Listing.external_variant_id is ``product_id:sku_id`` (external_listing_id the
product id): the inventory call needs both. A SKU never ordered is resolved by Search Products (202502,
the current version) filtered on seller SKUs, at most 10 per call as the reference says.

Access tokens (TikTok: 7 days) are renewed through Get Refresh Token (``GET /api/v2/token/refresh`` on
the auth host) ten minutes before ``access_token_expires_at`` and whenever TikTok answers 105002
(expired) or 36009004 about the token; the new access and refresh tokens are stored at once through
``channel_account_refresh_credentials`` (the refresh token may rotate). Credentials: app_key,
app_secret, access_token, shop_cipher, and for renewal refresh_token, access_token_expires_at and
refresh_token_expires_at (unix seconds). The auth host is ``auth_base_url`` in the credentials when
set; else https://auth.tiktok-shops.com for TikTok's own API host, and the account's API base URL
otherwise (a sandbox serves both).

Buyer cancellation requests: an order with ``is_buyer_request_cancel`` is parsed as cancel_requested
with its ``cancel_reason``; cancelled units carry who cancelled (``cancellation_initiator``). A
cancellation queued with reason BuyerCanceled for an order whose buyer asked approves the buyer's
request (Search Cancellations → Approve Cancellation), which TikTok does not count against the seller;
any other cancellation is the seller's (Cancel Order).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import httpx

from channels.connectors.base import (
    CancelRequest,
    ChannelError,
    ChannelRefund,
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
    WebhookEvent,
    WebhookRejected,
    json_body,
    normalized_address,
    parse_decimal,
    require_list,
    require_obj,
    require_str,
)
from channels.connectors.tokens import TokenGrant
from orders.models import CancelInitiator, OrderStatus

STATUS_MAP = {
    "UNPAID": OrderStatus.PENDING,
    "ON_HOLD": OrderStatus.PENDING,
    "AWAITING_SHIPMENT": OrderStatus.OPEN,
    "AWAITING_COLLECTION": OrderStatus.OPEN,
    "PARTIALLY_SHIPPING": OrderStatus.PARTIALLY_SHIPPED,
    "IN_TRANSIT": OrderStatus.SHIPPED,
    "DELIVERED": OrderStatus.DELIVERED,
    "COMPLETED": OrderStatus.DELIVERED,
    "CANCELLED": OrderStatus.CANCELLED,
}
SHIPPED_UNITS = {"IN_TRANSIT", "DELIVERED", "COMPLETED"}
OPEN_UNITS = {"AWAITING_SHIPMENT", "AWAITING_COLLECTION"}
CANCEL_REASONS = {
    "NoInventory": "seller_cancel_reason_out_of_stock",
    "PricingError": "seller_cancel_reason_wrong_price",
    "ShippingAddressUndeliverable": "seller_cancel_reason_address_not_deliver",
    "BuyerCanceled": "seller_cancel_reason_buyer_requested",
}
SIGN_EXCLUDED = {"sign", "access_token"}
INITIATORS = {
    "BUYER": CancelInitiator.BUYER,
    "SELLER": CancelInitiator.SELLER,
    "SYSTEM": CancelInitiator.MARKETPLACE,
}
PRODUCTION_API_HOST = "open-api.tiktokglobalshop.com"
PRODUCTION_AUTH_BASE = "https://auth.tiktok-shops.com"
# Token answers TikTok's common errors give for an access token that is expired (105002) or not
# accepted (36009004 naming the token header): renew once and retry.
TOKEN_EXPIRED = 105002
GATEWAY_INVALID = 36009004
# Search Products takes at most 10 seller SKUs per filter; Update Inventory at most 100 SKUs.
SKUS_PER_SEARCH = 10
SKUS_PER_INVENTORY_UPDATE = 100


TIKTOK_RETURN_STATUS = {
    "RETURN_OR_REFUND_REQUEST_PENDING": "requested",
    "AWAITING_BUYER_SHIP": "authorized",
    "BUYER_SHIPPED_ITEM": "in_transit",
    "REJECT_RECEIVE_PACKAGE": "in_transit",
    "RETURN_OR_REFUND_REQUEST_SUCCESS": "authorized",
    "RETURN_OR_REFUND_REQUEST_COMPLETE": "authorized",
    "REFUND_OR_RETURN_REQUEST_REJECT": "rejected",
    "RETURN_OR_REFUND_REQUEST_CANCEL": "cancelled",
}
TIKTOK_RETURN_REASON = {
    "defective": "defective",
    "damaged": "damaged",
    "wrong_item": "wrong_item",
    "not_as_described": "not_as_described",
    "unwanted": "no_longer_needed",
}


def _tiktok_return(row: dict) -> NormalizedReturn:
    """A return of Search Returns: its line items are units, grouped by SKU id (Waybill's line id)."""
    units: dict[str, int] = {}
    skus: dict[str, str] = {}
    for item in require_list(row.get("return_line_items") or [], "return_line_items"):
        sku_id = str(item.get("sku_id") or "")
        if sku_id:
            units[sku_id] = units.get(sku_id, 0) + 1
            skus[sku_id] = str(item.get("seller_sku") or "")
    status = str(row.get("return_status") or "")
    refunds = []
    if status in ("RETURN_OR_REFUND_REQUEST_SUCCESS", "RETURN_OR_REFUND_REQUEST_COMPLETE"):
        amount = row.get("refund_amount") or {}
        refunds.append(
            ChannelRefund(
                external_id=f"return:{row.get('return_id')}",
                amount=parse_decimal(amount.get("refund_total") or "0", "refund_amount.refund_total"),
                currency=str(amount.get("currency") or ""),
            )
        )
    reason = TIKTOK_RETURN_REASON.get(str(row.get("return_reason") or "").lower(), "other")
    return NormalizedReturn(
        external_id=require_str(row, "return_id", "return"),
        order_external_id=require_str(row, "order_id", "return"),
        status=TIKTOK_RETURN_STATUS.get(status, "requested"),
        channel_status=status,
        lines=[
            ReturnedLine(external_line_id=sku_id, quantity=n, reason=reason, channel_sku=skus[sku_id])
            for sku_id, n in units.items()
        ],
        reason=reason,
        updated_at=from_seconds(row.get("update_time"), "update_time", required=False),
        refunds=refunds,
        note=str(row.get("return_reason_text") or "")[:500],
    )


def tiktok_sign(app_secret: str, path: str, params: Mapping[str, Any], body: bytes = b"") -> str:
    """hex HMAC-SHA256 keyed with app_secret of app_secret + path + sorted key+value pairs + body + app_secret."""
    pairs = "".join(f"{key}{params[key]}" for key in sorted(params) if key not in SIGN_EXCLUDED)
    message = app_secret.encode() + path.encode() + pairs.encode() + body + app_secret.encode()
    return hmac.new(app_secret.encode(), message, hashlib.sha256).hexdigest()


def from_seconds(value: Any, path: str, *, required: bool = True) -> datetime | None:
    if value is None or value == "":
        if required:
            raise PayloadError(path, "is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(path, f"expected unix seconds, got {str(value)[:40]!r}")
    if not 10**8 <= value < 10**11:
        raise PayloadError(path, f"not a plausible unix time in seconds: {value}")
    return datetime.fromtimestamp(value, tz=UTC)


class TikTokConnector(Connector):
    kind = "tiktok"
    identity_fields = ("id", "update_time")
    overlap = timedelta(minutes=5)
    idempotent_kinds = frozenset({"inventory", "refund", "return_decision"})
    page_size: ClassVar[int] = 100
    # Webhooks older or newer than this (by their own timestamp) are refused as replays.
    replay_window: ClassVar[timedelta] = timedelta(minutes=5)

    # --- transport -----------------------------------------------------------------------------

    # Tokens live in the credentials and are renewed ten minutes before they expire.
    stores_tokens = True
    token_margin = 600.0

    def token_key(self) -> str:
        return self.credentials.get("app_key", "")

    def stored_grant(self) -> TokenGrant:
        return self._grant_from(self.credentials)

    def _credential(self, key: str) -> str:
        value = self.credentials.get(key)
        if not value:
            raise ChannelError(f"TikTok credentials lack {key}", retryable=False)
        return value

    @staticmethod
    def _grant_from(credentials: Mapping[str, str]) -> TokenGrant:
        def seconds(key: str) -> float | None:
            value = str(credentials.get(key) or "").strip()
            return float(value) if value.isdigit() else None

        return TokenGrant(
            access_token=str(credentials.get("access_token") or ""),
            expires_at=seconds("access_token_expires_at"),
            refresh_token=str(credentials.get("refresh_token") or ""),
            refresh_expires_at=seconds("refresh_token_expires_at"),
        )

    def auth_base_url(self) -> str:
        configured = self.credentials.get("auth_base_url")
        if configured:
            return configured.rstrip("/")
        if PRODUCTION_API_HOST in self.account.api_base_url:
            return PRODUCTION_AUTH_BASE
        return self.account.api_base_url.rstrip("/")

    def exchange_token(self, grant: TokenGrant) -> TokenGrant:
        """Get Refresh Token: unsigned, app_key + app_secret + refresh_token in the query."""
        if not grant.refresh_token:
            raise ChannelError(
                "TikTok access token expired and the credentials hold no refresh_token: re-authorise the shop",
                retryable=False,
            )
        if grant.refresh_expires_at is not None and grant.refresh_expires_at <= time.time():
            raise ChannelError("TikTok refresh token expired: re-authorise the shop", retryable=False)
        response = self.http.request(
            "GET",
            f"{self.auth_base_url()}/api/v2/token/refresh",
            params={
                "app_key": self._credential("app_key"),
                "app_secret": self._credential("app_secret"),
                "refresh_token": grant.refresh_token,
                "grant_type": "refresh_token",
            },
        )
        reply = json_body(response, "TikTok token refresh")
        if not isinstance(reply, dict) or reply.get("code") != 0 or not isinstance(reply.get("data"), dict):
            code = reply.get("code") if isinstance(reply, dict) else None
            message = str(reply.get("message") if isinstance(reply, dict) else reply)[:300]
            raise ChannelError(
                f"TikTok token refresh refused: HTTP {response.status_code}, code {code}: {message}",
                retryable=response.status_code >= 500,
                status=response.status_code,
                detail=reply if isinstance(reply, dict) else None,
            )
        data = reply["data"]
        token, expires = data.get("access_token"), data.get("access_token_expire_in")
        if not token or not isinstance(expires, int):
            raise ChannelError("TikTok token refresh answer lacks access_token or its expiry", retryable=False)
        refresh_expires = data.get("refresh_token_expire_in")
        return TokenGrant(
            access_token=str(token),
            expires_at=float(expires),
            refresh_token=str(data.get("refresh_token") or grant.refresh_token),
            refresh_expires_at=float(refresh_expires) if isinstance(refresh_expires, int) else None,
        )

    def store_grant(self, decide: Any) -> TokenGrant:
        """Renew under the account's row lock and store the new tokens with the other credentials (through the
        ``credentials_refresh`` option channels.services.connector_for gives every connector)."""
        store = self.options.get("credentials_refresh")
        if store is None:
            raise ChannelError("TikTok token renewal needs a credential store (use connector_for)", retryable=False)

        def refresh(stored: dict) -> dict | None:
            renewed = decide(self._grant_from(stored))
            if renewed is None:
                return None
            values = {**stored, "access_token": renewed.access_token, "refresh_token": renewed.refresh_token}
            for key, value in (
                ("access_token_expires_at", renewed.expires_at),
                ("refresh_token_expires_at", renewed.refresh_expires_at),
            ):
                if value is not None:
                    values[key] = str(int(value))
            return values

        stored = store(refresh=refresh, actor="system:tiktok", reason="access token renewed")
        return self._grant_from(stored)

    def signed_params(self, path: str, params: Mapping[str, Any], body: bytes) -> dict[str, Any]:
        query = {
            **{k: v for k, v in params.items() if v is not None},
            "app_key": self._credential("app_key"),
            "timestamp": int(time.time()),
            "shop_cipher": self._credential("shop_cipher"),
        }
        query["sign"] = tiktok_sign(self._credential("app_secret"), path, query, body)
        return query

    @staticmethod
    def _token_refused(code: Any, message: str) -> bool:
        return code == TOKEN_EXPIRED or (code == GATEWAY_INVALID and "access-token" in message.replace("_", "-"))

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None) -> dict:
        raw = json.dumps(body, separators=(",", ":")).encode() if body is not None and method != "GET" else b""

        def send(token: str) -> tuple[httpx.Response, dict]:
            response = self.http.request(
                method,
                path,
                params=self.signed_params(path, params or {}, raw),
                content=raw or None,
                headers={"x-tts-access-token": token, "Content-Type": "application/json"},
            )
            reply = json_body(response, f"TikTok {path}")
            if not isinstance(reply, dict):
                raise ChannelError(
                    f"TikTok {path}: HTTP {response.status_code}, reply is not an object", retryable=False
                )
            return response, reply

        def refused(sent: tuple[httpx.Response, dict]) -> bool:
            return self._token_refused(sent[1].get("code"), str(sent[1].get("message")).lower())

        response, reply = self.with_token(send, refused)
        code = reply.get("code")
        if response.status_code != 200 or code != 0:
            raise ChannelError(
                f"TikTok {path}: HTTP {response.status_code}, code {code}: {str(reply.get('message'))[:300]}",
                retryable=response.status_code >= 500,
                status=response.status_code,
                detail={k: reply.get(k) for k in ("code", "message", "request_id", "data")},
            )
        data = reply.get("data")
        return data if isinstance(data, dict) else {}

    # --- reading orders ------------------------------------------------------------------------

    def fetch_orders(self, *, since: datetime, backfill: bool = False) -> Iterator[OrderPage]:
        token = ""
        page = 0
        while True:
            data = self.request(
                "POST",
                "/order/202309/orders/search",
                params={
                    "page_size": self.page_size,
                    "page_token": token or None,
                    "sort_field": "update_time",
                    "sort_order": "ASC",
                },
                body={"update_time_ge": int(since.timestamp())},
            )
            orders = data.get("orders", [])
            if not isinstance(orders, list):
                raise ChannelError("orders/search: data.orders is not a list", retryable=False)
            token = data.get("next_page_token") or ""
            page += 1
            yield OrderPage(raw_orders=orders, progress={"page": page, "has_next": bool(token)})
            if not token:
                return

    def get_order(self, external_id: str) -> dict:
        data = self.request("GET", "/order/202309/orders", params={"ids": external_id})
        found = [o for o in data.get("orders") or [] if isinstance(o, dict) and str(o.get("id")) == external_id]
        if not found:
            raise ChannelError(f"TikTok order {external_id} not found", retryable=False)
        return found[0]

    def parse_order(self, raw: dict) -> NormalizedOrder:
        raw = require_obj(raw, "order")
        order_id = require_str(raw, "id", "", max_length=128)
        status_code = require_str(raw, "status", "")
        if status_code not in STATUS_MAP:
            raise PayloadError("status", f"unknown value {status_code!r}")
        placed = from_seconds(raw.get("create_time"), "create_time")
        updated = from_seconds(raw.get("update_time"), "update_time")
        fulfillment_type = str(raw.get("fulfillment_type") or "FULFILLMENT_BY_SELLER")
        if fulfillment_type not in ("FULFILLMENT_BY_SELLER", "FULFILLMENT_BY_TIKTOK"):
            raise PayloadError("fulfillment_type", f"unknown value {fulfillment_type!r}")
        payment = require_obj(raw.get("payment"), "payment", required=False)
        items = require_list(raw.get("line_items"), "line_items")
        if not items:
            raise PayloadError("line_items", "is empty")
        groups: dict[str, dict] = {}
        for index, item in enumerate(items):
            path = f"line_items[{index}]"
            item = require_obj(item, path)
            unit_id = require_str(item, "id", path, max_length=64)
            sku_id = require_str(item, "sku_id", path, max_length=64)
            state = require_str(item, "display_status", path, required=False) or status_code
            if state not in STATUS_MAP:
                raise PayloadError(f"{path}.display_status", f"unknown value {state!r}")
            price = parse_decimal(item.get("sale_price"), f"{path}.sale_price", default=Decimal("0"))
            group = groups.setdefault(
                sku_id,
                {
                    "sku": require_str(item, "seller_sku", path, required=False, max_length=128) or f"NOSKU:{sku_id}",
                    "product": str(item.get("product_id") or ""),
                    "title": str(item.get("product_name") or "")[:500],
                    "price": price,
                    "units": [],
                    "states": {},
                },
            )
            group["units"].append(unit_id)
            group["states"][state] = group["states"].get(state, 0) + 1
        ship_by = from_seconds(raw.get("rts_sla_time"), "rts_sla_time", required=False)
        deliver_by = from_seconds(raw.get("delivery_due_time"), "delivery_due_time", required=False)
        lines = [
            NormalizedLine(
                external_id=sku_id,
                channel_sku=group["sku"],
                quantity=len(group["units"]),
                unit_price=group["price"],
                title=group["title"],
                channel_status=",".join(f"{k}:{v}" for k, v in sorted(group["states"].items()))[:64],
                quantity_shipped=sum(n for s, n in group["states"].items() if s in SHIPPED_UNITS),
                quantity_cancelled=group["states"].get("CANCELLED", 0),
                ship_by=ship_by,
                deliver_by=deliver_by,
                external_unit_ids=list(group["units"]),
                external_variant_id=f"{group['product']}:{sku_id}" if group["product"] else "",
            )
            for sku_id, group in groups.items()
        ]
        currency = str(payment.get("currency") or "")
        if len(currency) != 3:
            raise PayloadError("payment.currency", f"not a currency code: {currency!r}")
        total = (
            parse_decimal(payment.get("total_amount"), "payment.total_amount") if "total_amount" in payment else None
        )
        address = require_obj(raw.get("recipient_address"), "recipient_address", required=False)
        district = {
            str(d.get("address_level_name")): str(d.get("address_name") or "")
            for d in address.get("district_info") or []
            if isinstance(d, dict)
        }
        full_name = " ".join(str(address.get(k) or "") for k in ("first_name", "last_name")).strip()
        ship_to = normalized_address(
            name=address.get("name") or full_name,
            line1=address.get("address_line1"),
            line2=address.get("address_line2"),
            city=district.get("City"),
            region=district.get("State"),
            postal_code=address.get("postal_code"),
            country_code=address.get("region_code"),
            phone=address.get("phone_number"),
        )
        cancelled_units = any(group["states"].get("CANCELLED") for group in groups.values())
        initiator = str(raw.get("cancellation_initiator") or "")
        if not initiator and cancelled_units:
            initiator = next(
                (str(i.get("cancel_user") or "") for i in items if isinstance(i, dict) and i.get("cancel_user")), ""
            )
        if initiator and initiator not in INITIATORS:
            raise PayloadError("cancellation_initiator", f"unknown value {initiator!r}")
        is_buyer_request = raw.get("is_buyer_request_cancel")
        if is_buyer_request is not None and not isinstance(is_buyer_request, bool):
            raise PayloadError("is_buyer_request_cancel", f"expected a boolean, got {type(is_buyer_request).__name__}")
        # A request is open while units can still be cancelled; TikTok keeps the flag on a cancelled order.
        cancel_requested = bool(is_buyer_request) and status_code not in SHIPPED_UNITS | {"CANCELLED"}
        return NormalizedOrder(
            cancel_requested=cancel_requested,
            cancel_request_reason=str(raw.get("cancel_reason") or "")[:255] if cancel_requested else "",
            cancelled_by=INITIATORS[initiator] if initiator and cancelled_units else "",
            external_id=order_id,
            placed_at=placed,
            updated_at=updated,
            currency=currency,
            status=STATUS_MAP[status_code],
            channel_status=status_code,
            lines=lines,
            total_amount=total,
            ship_to=ship_to if address else None,
            ship_by=ship_by,
            deliver_by=deliver_by,
            paid_at=from_seconds(raw.get("paid_time"), "paid_time", required=False),
            shipping_method=str(raw.get("delivery_option_name") or raw.get("shipping_type") or "")[:64],
            marketplace_fulfilled=fulfillment_type == "FULFILLMENT_BY_TIKTOK",
        )

    # --- writes --------------------------------------------------------------------------------

    def _units(self, order: dict, wanted: list[tuple[str, int]], states: set[str]) -> list[str]:
        """Unit line item ids for (sku_id, quantity) pairs, taken from units in one of ``states``."""
        free: dict[str, list[str]] = {}
        for item in order.get("line_items") or []:
            if item.get("display_status") in states:
                free.setdefault(str(item.get("sku_id")), []).append(str(item["id"]))
        chosen = []
        for sku_id, quantity in wanted:
            available = free.get(sku_id, [])
            if len(available) < quantity:
                raise ChannelError(
                    f"TikTok order {order.get('id')}: {quantity} unit(s) of SKU {sku_id} wanted, "
                    f"{len(available)} in {'/'.join(sorted(states))}",
                    retryable=False,
                )
            chosen += available[:quantity]
            free[sku_id] = available[quantity:]
        return chosen

    def _shipping_provider(self, order: dict, shipment: ShipmentConfirmation) -> str:
        option = order.get("delivery_option_id")
        if not option:
            raise ChannelError(f"TikTok order {order.get('id')} has no delivery_option_id", retryable=False)
        data = self.request("GET", f"/logistics/202309/delivery_options/{option}/shipping_providers")
        names = {shipment.carrier_code.lower(), (shipment.carrier_name or shipment.carrier_code).lower()}
        for provider in data.get("shipping_providers") or []:
            if str(provider.get("name", "")).lower() in names:
                return str(provider["id"])
        raise ChannelError(f"carrier {shipment.carrier_code!r} is not a TikTok shipping provider", retryable=False)

    def confirm_shipment(self, shipment: ShipmentConfirmation, *, state: dict) -> SendResult:
        order = self.get_order(shipment.order_external_id)
        units = self._units(order, [(line.external_line_id, line.quantity) for line in shipment.lines], OPEN_UNITS)
        data = self.request(
            "POST",
            f"/fulfillment/202309/orders/{shipment.order_external_id}/packages",
            body={
                "tracking_number": shipment.tracking_number,
                "shipping_provider_id": self._shipping_provider(order, shipment),
                "order_line_item_ids": units,
            },
        )
        return SendResult(response={"package_id": data.get("package_id"), "units": units})

    def cancel_lines(self, cancel: CancelRequest, *, state: dict) -> SendResult:
        order = self.get_order(cancel.order_external_id)
        if cancel.reason == "BuyerCanceled" and order.get("is_buyer_request_cancel") is True:
            return self._approve_buyer_cancellation(order)
        if cancel.lines:
            wanted = [(line.external_line_id, line.quantity) for line in cancel.lines]
            units = self._units(order, wanted, OPEN_UNITS | {"UNPAID", "ON_HOLD"})
        else:
            done = SHIPPED_UNITS | {"CANCELLED"}
            units = [str(i["id"]) for i in order.get("line_items") or [] if i.get("display_status") not in done]
        reason = CANCEL_REASONS.get(cancel.reason, cancel.reason if cancel.reason in CANCEL_REASONS.values() else "")
        data = self.request(
            "POST",
            "/return_refund/202309/cancellations",
            body={
                "order_id": cancel.order_external_id,
                "order_line_item_ids": units,
                "cancel_reason": reason or "seller_cancel_reason_out_of_stock",
            },
        )
        return SendResult(response={"cancel_id": data.get("cancel_id"), "units": units})

    def pending_buyer_cancellations(self, order_id: str) -> list[dict]:
        """The buyer's cancellation requests on the order that wait for the seller (Search Cancellations)."""
        data = self.request(
            "POST",
            "/return_refund/202309/cancellations/search",
            params={"page_size": 50},
            body={"order_ids": [order_id], "cancel_status": ["CANCELLATION_REQUEST_PENDING"]},
        )
        found = data.get("cancellations") or []
        if not isinstance(found, list):
            raise ChannelError("cancellations/search: data.cancellations is not a list", retryable=False)
        return [
            c
            for c in found
            if isinstance(c, dict)
            and str(c.get("order_id")) == order_id
            and c.get("cancel_status") == "CANCELLATION_REQUEST_PENDING"
            and (c.get("role") == "BUYER" or c.get("cancel_type") == "BUYER_CANCEL")
        ]

    def _approve_buyer_cancellation(self, order: dict) -> SendResult:
        """Accept what the buyer asked: Approve Cancellation, so TikTok records it as the buyer's cancel,
        not a seller-fault one. The idempotency key is the cancellation's own id, so a resend is harmless."""
        order_id = str(order.get("id"))
        pending = self.pending_buyer_cancellations(order_id)
        if not pending:
            raise ChannelError(
                f"TikTok order {order_id} has no pending buyer cancellation to approve (withdrawn or already decided)",
                retryable=False,
            )
        approved = []
        for cancellation in pending:
            cancel_id = str(cancellation.get("cancel_id") or "")
            self.request(
                "POST",
                f"/return_refund/202309/cancellations/{cancel_id}/approve",
                params={"idempotency_key": f"waybill-approve-{cancel_id}"},
            )
            approved.append(cancel_id)
        return SendResult(response={"approved_cancellations": approved, "buyer_requested": True})

    def is_applied(self, kind: str, payload: dict, state: dict) -> bool:
        if kind == "ship_confirmation":
            order = self.get_order(payload["order_external_id"])
            return any(i.get("tracking_number") == payload["tracking_number"] for i in order.get("line_items") or [])
        if kind == "cancellation":
            order = self.get_order(payload["order_external_id"])
            if order.get("status") == "CANCELLED":
                return True
            wanted = payload.get("lines") or []
            cancelled: dict[str, int] = {}
            for item in order.get("line_items") or []:
                if item.get("display_status") == "CANCELLED":
                    cancelled[str(item.get("sku_id"))] = cancelled.get(str(item.get("sku_id")), 0) + 1
            return bool(wanted) and all(cancelled.get(w["external_line_id"], 0) >= w["quantity"] for w in wanted)
        return False

    # --- returns and refunds (issue #18): Search Returns, Approve Return -----------------------------------
    # TikTok publishes no model: the shapes follow "Search Returns 202309" and "Approve Return 202309"
    # (channels/sandbox/tiktok_contract.py holds them as schemas).

    @classmethod
    def refund_unavailable(cls, *, marketplace_fulfilled: bool, channel_return_id: str) -> str:
        if not channel_return_id:
            return "TikTok Shop refunds by approving the buyer's return or refund request, and this refund settles none"
        return ""

    def refund(self, refund: RefundRequest, *, state: dict) -> SendResult:
        """Approve the buyer's return so TikTok refunds it: APPROVE_RECEIVED_PACKAGE once the item is on its
        way or back, APPROVE_REFUND for a refund-only request. The idempotency key is the refund's own."""
        rows = self._returns({"return_ids": [refund.channel_return_id]})
        if not rows:
            raise ChannelError(f"TikTok return {refund.channel_return_id} not found", retryable=False)
        row = rows[0]
        if "decision" not in state:  # a resend repeats the first decision under the same key
            status = row.get("return_status")
            pending = row.get("return_type") == "REFUND" or status == "RETURN_OR_REFUND_REQUEST_PENDING"
            state["decision"] = "APPROVE_REFUND" if pending else "APPROVE_RECEIVED_PACKAGE"
        decision = state["decision"]
        data = self.request(
            "POST",
            f"/return_refund/202309/returns/{refund.channel_return_id}/approve",
            params={"idempotency_key": f"waybill-{refund.reference}"},
            body={"decision": decision},
        )
        # TikTok's refund is the return's: Waybill knows it as "return:<id>" (what a returns read reports too).
        return SendResult(
            response={
                "refund_id": f"return:{refund.channel_return_id}",
                "tiktok_refund_id": str(data.get("refund_id") or ""),
                "decision": decision,
            }
        )

    decides_returns = True

    def return_decision(self, *, channel_return_id: str, approve: bool, reason: str, state: dict) -> SendResult:
        """Approve Return with APPROVE_RETURN (the buyer ships it back), under an idempotency key. Declining
        (Reject Return) is left to the seller centre: it needs TikTok's own reject reason keys."""
        if not approve:
            raise ChannelError(
                "decline the request in TikTok Shop's seller centre: Waybill does not send Reject Return",
                retryable=False,
            )
        data = self.request(
            "POST",
            f"/return_refund/202309/returns/{channel_return_id}/approve",
            params={"idempotency_key": f"waybill-approve-return-{channel_return_id}"},
            body={"decision": "APPROVE_RETURN"},
        )
        return SendResult(
            response={"return_id": str(data.get("return_id") or channel_return_id), "decision": "APPROVE_RETURN"}
        )

    def _returns(self, body: dict, page_token: str = "") -> list[dict]:
        return self._returns_page(body, page_token)[0]

    def _returns_page(self, body: dict, page_token: str = "") -> tuple[list[dict], str]:
        params: dict[str, Any] = {"page_size": 50, "sort_field": "update_time", "sort_order": "ASC"}
        if page_token:
            params["page_token"] = page_token
        data = self.request("POST", "/return_refund/202309/returns/search", params=params, body=body)
        rows = data.get("return_orders") or []
        if not isinstance(rows, list):
            raise ChannelError("returns/search: data.return_orders is not a list", retryable=False)
        return [r for r in rows if isinstance(r, dict)], str(data.get("next_page_token") or "")

    def fetch_returns(self, *, since: datetime) -> Iterator[list[NormalizedReturn]]:
        body = {"update_time_ge": int(since.timestamp())}
        token = ""
        while True:
            rows, token = self._returns_page(body, token)
            yield [_tiktok_return(row) for row in rows]
            if not token:
                return

    # --- inventory -----------------------------------------------------------------------------

    push_needs_listing_ids = True

    def resolve_listings(self, channel_skus: list[str]) -> dict[str, ListingIds]:
        """Search Products filtered on seller SKUs (10 per call): {seller SKU: product id, product:sku id}.
        A SKU on several products resolves to an active one first; deleted products don't count."""
        wanted = list(dict.fromkeys(sku for sku in channel_skus if sku))
        found: dict[str, tuple[bool, ListingIds]] = {}
        for start in range(0, len(wanted), SKUS_PER_SEARCH):
            chunk = wanted[start : start + SKUS_PER_SEARCH]
            token = ""
            while True:
                data = self.request(
                    "POST",
                    "/product/202502/products/search",
                    params={"page_size": 100, "page_token": token or None},
                    body={"seller_skus": chunk},
                )
                products = data.get("products") or []
                if not isinstance(products, list):
                    raise ChannelError("products/search: data.products is not a list", retryable=False)
                for product in products:
                    if not isinstance(product, dict) or product.get("status") == "DELETED":
                        continue
                    product_id = str(product.get("id") or "")
                    active = product.get("status") == "ACTIVATE"
                    for sku in product.get("skus") or []:
                        seller_sku = str(sku.get("seller_sku") or "") if isinstance(sku, dict) else ""
                        if seller_sku not in chunk or not product_id or not sku.get("id"):
                            continue
                        if seller_sku in found and (found[seller_sku][0] or not active):
                            continue
                        ids = ListingIds(product_id, f"{product_id}:{sku['id']}")
                        found[seller_sku] = (active, ids)
                token = data.get("next_page_token") or ""
                if not token:
                    break
        return {sku: ids for sku, (_, ids) in found.items()}

    def push_inventory(self, quantities: list[InventoryQuantity], *, idempotency_key: str, state: dict) -> SendResult:
        """Update Inventory per product; TikTok answers success with ``data.errors`` naming each SKU it
        refused, so every SKU is acknowledged or rejected on its own."""
        warehouse = self.account.inventory_location_id
        if not warehouse:
            raise ChannelError("TikTok account has no inventory_location_id (a warehouse id)", retryable=False)
        acknowledged: dict[str, int] = {}
        rejected: dict[str, str] = {}
        by_product: dict[str, list[tuple[str, InventoryQuantity]]] = {}
        for q in quantities:
            product, _, sku_id = q.external_variant_id.partition(":")
            if not product or not sku_id:
                rejected[q.channel_sku] = "no TikTok product and SKU id known for this listing"
                continue
            by_product.setdefault(product, []).append((sku_id, q))
        responses = []
        for product, items in by_product.items():
            for start in range(0, len(items), SKUS_PER_INVENTORY_UPDATE):
                batch = items[start : start + SKUS_PER_INVENTORY_UPDATE]
                body = {
                    "skus": [
                        {"id": sku_id, "inventory": [{"warehouse_id": warehouse, "quantity": q.quantity}]}
                        for sku_id, q in batch
                    ]
                }
                try:
                    data = self.request("POST", f"/product/202309/products/{product}/inventory/update", body=body)
                except ChannelError as exc:
                    if exc.retryable:
                        raise
                    for _, q in batch:
                        rejected[q.channel_sku] = str(exc)[:500]
                    responses.append({"product_id": product, "error": exc.detail or str(exc)})
                    continue
                refused = self._inventory_errors(data)
                for sku_id, q in batch:
                    if sku_id in refused:
                        rejected[q.channel_sku] = refused[sku_id]
                    else:
                        acknowledged[q.channel_sku] = q.quantity
                responses.append({"product_id": product, "errors": data.get("errors") or []})
        return SendResult(response={"products": responses}, acknowledged=acknowledged, rejected=rejected)

    @staticmethod
    def _inventory_errors(data: dict) -> dict[str, str]:
        """{sku id: why} from Update Inventory's ``data.errors`` (code, message, detail{sku_id, extra_errors})."""
        refused = {}
        for error in data.get("errors") or []:
            if not isinstance(error, dict):
                continue
            detail = error.get("detail") if isinstance(error.get("detail"), dict) else {}
            sku_id = str(detail.get("sku_id") or "")
            extra = "; ".join(
                f"{e.get('code')}: {e.get('message')}" for e in detail.get("extra_errors") or [] if isinstance(e, dict)
            )
            reason = f"{error.get('code')}: {error.get('message')}" + (f" ({extra})" if extra else "")
            if sku_id:
                refused[sku_id] = reason[:500]
        return refused

    # --- webhooks ------------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        """The Authorization HMAC over app_key + raw body; then the replay window on the body's timestamp."""
        secret, app_key = self.credentials.get("app_secret"), self.credentials.get("app_key")
        if not secret or not app_key:
            return False
        expected = hmac.new(secret.encode(), app_key.encode() + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), (headers.get("Authorization") or "").encode()):
            return False
        try:
            sent = int(json.loads(body).get("timestamp"))
        except (ValueError, TypeError, AttributeError):
            raise WebhookRejected("webhook body has no timestamp") from None
        if abs(time.time() - sent) > self.replay_window.total_seconds():
            raise WebhookRejected(f"webhook timestamp {sent} is outside the {self.replay_window} replay window")
        return True

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        try:
            payload = json.loads(body)
        except ValueError:
            raise PayloadError("body", "not JSON") from None
        payload = require_obj(payload, "body")
        data = require_obj(payload.get("data"), "data")
        order_id = require_str(data, "order_id", "data", max_length=128)
        update_time = data.get("update_time")
        updated = from_seconds(update_time, "data.update_time", required=False)
        parts = (payload.get("shop_id"), payload.get("type"), order_id, data.get("order_status"), update_time)
        key = "webhook:" + ":".join(str(part) for part in parts)
        return WebhookEvent(
            dedupe_key=key[:255],
            topic=f"type:{payload.get('type')}",
            external_id=order_id,
            payload=payload,
            updated_at=updated,
        )
