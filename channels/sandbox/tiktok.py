"""TikTok Shop Open API sandbox: signed requests, token refresh, orders/search, order detail, packages,
cancellations (seller cancels, buyers' requests and their approval), product search, inventory update,
and signed order-status webhooks.

There is no saved model for TikTok: every request is checked against ``tiktok_contract`` (the request
shapes from TikTok's public API reference, the same schemas the contract tests use) and against the
gateway rules of TikTok's "Common errors" reference, in its order: app_key, sign present, timestamp
(at most 5 minutes old, at most 30 s ahead), sign, access token, shop_cipher. Errors come in TikTok's
envelope ``{code, message, request_id, data: null}``.

Codes from TikTok's references: 106001 (bad sign), 36009004 (missing sign, bad app_key, bad timestamp,
bad access token, and the gateway's request validation), 105002 (expired access token), 106013 (missing
shop_cipher), 101000 (token not for this shop), 36009002 (throttled, HTTP 429), 36009003 (internal
error), 36009009 (no such path), 36009014 (unsupported version), 36009022 (body not JSON), 12019027
(more than 10 seller SKUs), 12052260 (no such product), 12052990 / 12052097 / 12052036 (Update
Inventory's per-SKU errors). The sandbox's own (not in the saved references): HTTP statuses other than
401 for 106001 and 429 for 36009002, 21001001 / 21011xxx (order not found, package refused), 25001xxx
(cancel refused), 25002001 (cancellation not pending), 36004005 (refresh token invalid).

Tokens: the access token given at construction never expires unless ``access_token_expires_at`` is
given; Get Refresh Token (``GET /api/v2/token/refresh``, served on this base URL) issues a new access
token living ``token_lifetime`` seconds and a new refresh token (the old one stops working).

Admin hooks besides the common ones (loopback only, no auth):
  POST /_sandbox/tiktok/tokens        {"expire": true}             the current access token expires now
  POST /_sandbox/tiktok/buyer_cancel  {"order_id", "reason"}       the buyer asks to cancel
  POST /_sandbox/tiktok/pay           {"order_id"}                  UNPAID → AWAITING_SHIPMENT with ship-by
  POST /_sandbox/tiktok/address       {"order_id", "name"?, "line1"?, "city"?, …}  the buyer edits the address
  POST /_sandbox/tiktok/catalog       {"remove": [sku…], "add": [sku…]}  products listed in the shop

Webhooks ``{type, shop_id, timestamp, data{order_id, order_status, update_time}}`` go to
``webhook_url`` with ``Authorization`` = hex HMAC-SHA256(app_secret, app_key + raw body).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from channels.sandbox import tiktok_contract
from channels.sandbox.base import (
    Request,
    Response,
    SandboxApp,
    SandboxLine,
    SandboxOrder,
    SandboxState,
    TokenBucket,
)
from channels.sandbox.contract import ContractViolation

SHIPPING_PROVIDERS = [
    {"id": "6617675021119438849", "name": "UPS"},
    {"id": "6617675021119455233", "name": "USPS"},
    {"id": "6617675021119471617", "name": "FedEx"},
    {"id": "6617675021119488001", "name": "DHL eCommerce"},
]
DELIVERY_OPTION_ID = "7091146663229654785"
CANCEL_REASONS = {
    "seller_cancel_reason_out_of_stock",
    "seller_cancel_reason_wrong_price",
    "seller_cancel_reason_address_not_deliver",
    "seller_cancel_reason_buyer_requested",
}
SIGNED_OUT = {"sign", "access_token"}
SHIPPED_UNIT = "IN_TRANSIT"
TOKEN_PATH = "/api/v2/token/refresh"
# Calls made on behalf of the shop need shop_cipher; the token refresh is the app's own.
SHOP_PREFIXES = ("/order/", "/fulfillment/", "/logistics/", "/return_refund/", "/product/")
VERSION = re.compile(r"^/([a-z_]+)/(\d{6})/")


def tiktok_sign(app_secret: str, path: str, params: dict[str, str], body: bytes) -> str:
    """The sandbox's own implementation of CHANNELS.md's recipe (the connector has its own)."""
    text = path + "".join(f"{k}{params[k]}" for k in sorted(params) if k not in SIGNED_OUT)
    message = (app_secret + text).encode() + body + app_secret.encode()
    return hmac.new(app_secret.encode(), message, hashlib.sha256).hexdigest()


def envelope(data: Any = None, *, code: int = 0, message: str = "Success", status: int = 200, headers=None):
    body = {
        "code": code,
        "message": message,
        "request_id": uuid.uuid4().hex.upper(),
        "data": (data or {}) if code == 0 else None,
    }
    return Response(status, body, headers=headers or {})


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit()) or "0"


def sku_id_for(sku: str) -> str:
    return str(1_729_000_000_000_000_000 + int(hashlib.sha256(sku.encode()).hexdigest()[:12], 16) % 10**15)


def product_id_for(sku: str) -> str:
    return str(1_731_000_000_000_000_000 + int(hashlib.sha256(b"p" + sku.encode()).hexdigest()[:12], 16) % 10**15)


# The sandbox shop's one warehouse (the demo account pushes stock to it).
WAREHOUSE_ID = "7068517275539719942"


class TikTokState(SandboxState):
    def order_id_for(self, number: int) -> str:
        return str(576_000_000_000_000_000 + number * 1_000_003)


class TikTokSandbox(SandboxApp):
    kind = "tiktok"

    def __init__(
        self,
        state: SandboxState | None = None,
        *,
        app_key: str = "demoappkey",
        app_secret: str = "demoappsecret",
        access_token: str = "TTP_demo",
        access_token_expires_at: float | None = None,
        refresh_token: str = "TTR_demo",
        token_lifetime: int = 7 * 86400,
        shop_cipher: str = "ROW_demo",
        shop_id: str = "7495000000000000001",
        warehouse_id: str = WAREHOUSE_ID,
        webhook_url: str = "",
        rate: float = 50.0,
        burst: int = 50,
        **options: Any,
    ):
        super().__init__(state or TikTokState(), **options)
        self.app_key = app_key
        self.app_secret = app_secret
        # {access token: unix expiry or None}; {refresh token: unix expiry}
        self.access_tokens: dict[str, float | None] = {access_token: access_token_expires_at}
        self.refresh_tokens: dict[str, float] = {refresh_token: time.time() + 365 * 86400}
        self.token_lifetime = token_lifetime
        self.refreshes = 0
        self.expired_refusals = 0
        self.shop_cipher = shop_cipher
        self.shop_id = shop_id
        self.warehouse_id = warehouse_id
        self.webhook_url = webhook_url
        self.rate = rate
        self.burst = burst
        self._bucket = TokenBucket(rate, burst)
        # order id -> {unit line item id: display status} for units shipped or cancelled by id
        self.units: dict[str, dict[str, str]] = {}
        self.tracking: dict[str, dict[str, str]] = {}
        self.packages: list[dict] = []
        # order id -> who cancelled: BUYER | SELLER | SYSTEM
        self.initiators: dict[str, str] = {}
        # cancel id -> the buyer's or seller's cancellation record
        self.cancel_records: dict[str, dict] = {}
        self.approvals: dict[str, str] = {}  # idempotency key -> cancel id
        self.return_approvals: dict[str, dict] = {}  # idempotency key -> the answer (issue #18)
        self.updated_addresses: set[str] = set()
        self.bad_signs = 0
        self.state.on_change = self._on_change
        self.webhooks_start()

    @property
    def access_token(self) -> str:
        """The newest access token issued."""
        return next(reversed(self.access_tokens))

    def routes(self):
        return [
            ("GET", TOKEN_PATH, self.refresh_token),
            ("POST", "/order/202309/orders/search", self.search_orders),
            ("GET", "/order/202309/orders", self.get_orders),
            ("POST", "/fulfillment/202309/orders/{order_id}/packages", self.create_package),
            ("GET", "/logistics/202309/delivery_options/{option_id}/shipping_providers", self.shipping_providers),
            ("POST", "/return_refund/202309/cancellations", self.cancel),
            ("POST", "/return_refund/202309/cancellations/search", self.search_cancellations),
            ("POST", "/return_refund/202309/cancellations/{cancel_id}/approve", self.approve_cancellation),
            ("POST", "/return_refund/202309/returns/search", self.search_returns),
            ("POST", "/return_refund/202309/returns/{return_id}/approve", self.approve_return),
            ("POST", "/product/202502/products/search", self.search_products),
            ("POST", "/product/202309/products/{product_id}/inventory/update", self.update_inventory),
        ]

    def admin_routes(self):
        return [
            *super().admin_routes(),
            ("POST", "/_sandbox/tiktok/tokens", self.admin_tokens),
            ("POST", "/_sandbox/tiktok/buyer_cancel", self.admin_buyer_cancel),
            ("POST", "/_sandbox/tiktok/pay", self.admin_pay),
            ("POST", "/_sandbox/tiktok/address", self.admin_address),
            ("POST", "/_sandbox/tiktok/catalog", self.admin_catalog),
        ]

    def server_error(self) -> Response:
        return envelope(code=36009003, message="Internal error. Please try again.", status=500)

    def dispatch(self, request: Request) -> Response:
        response = super().dispatch(request)
        if response.status == 404 and isinstance(response.body, dict) and "errors" in response.body:
            return self._no_route(request)
        if response.status == 400 and isinstance(response.body, dict) and "errors" in response.body:
            return envelope(code=36009022, message="Invalid request format: the body must be JSON", status=400)
        return response

    def _no_route(self, request: Request) -> Response:
        """An unknown path, or a known one at a version TikTok doesn't serve."""
        match = VERSION.match(request.path)
        if match:
            for _, pattern, _ in self._routes:
                known = "/" + "/".join(pattern)
                other = VERSION.match(known)
                if other and other.group(1) == match.group(1):
                    candidate = known.replace(other.group(2), match.group(2), 1)
                    regex = "^" + re.sub(r"\{[^/]+\}", "[^/]+", candidate) + "$"
                    if re.match(regex, request.path):
                        return envelope(
                            code=36009014,
                            message=f"Invalid API version. Version {match.group(2)} is invalid or unsupported.",
                            status=404,
                        )
        return envelope(code=36009009, message="Invalid path. No endpoint answers this path.", status=404)

    # --- signing, auth, throttling -------------------------------------------------------------

    def before(self, request: Request) -> Response | None:
        early = super().before(request)
        if early is not None:
            return early
        if request.path == TOKEN_PATH:
            return None
        params = {key: values[0] for key, values in request.query.items()}
        if params.get("app_key") != self.app_key:
            return envelope(code=36009004, message="Invalid credentials. The app_key is invalid.", status=401)
        if not params.get("sign"):
            return envelope(code=36009004, message="Missing credentials. The query has no sign.", status=401)
        stamp = params.get("timestamp") or ""
        if not re.fullmatch(r"-?[0-9]+", stamp) or int(stamp) < 0:
            return envelope(code=36009004, message="Invalid timestamp: it must be unix seconds >= 0.", status=401)
        if int(stamp) < time.time() - 300:
            return envelope(code=36009004, message="Invalid timestamp: more than 5 minutes old.", status=401)
        if int(stamp) > time.time() + 30:
            return envelope(code=36009004, message="Invalid timestamp: more than 30 seconds ahead.", status=401)
        body = request.body if request.method != "GET" else b""
        if not hmac.compare_digest(params["sign"], tiktok_sign(self.app_secret, request.path, params, body)):
            self.bad_signs += 1
            return envelope(code=106001, message="Invalid credentials. The sign is invalid.", status=401)
        token = request.header("x-tts-access-token") or ""
        with self.state.lock:
            if token not in self.access_tokens:
                return envelope(
                    code=36009004, message="Invalid credentials. The x-tts-access-token is invalid.", status=401
                )
            expires = self.access_tokens[token]
            if expires is not None and expires <= time.time():
                self.expired_refusals += 1
                return envelope(code=105002, message="Expired credentials. The x-tts-access-token expired.", status=401)
        if request.path.startswith(SHOP_PREFIXES):
            cipher = params.get("shop_cipher")
            if not cipher:
                return envelope(code=106013, message="Missing identifier. shop_cipher is required.", status=400)
            if cipher != self.shop_cipher:
                return envelope(code=101000, message="Invalid query or header: the token has no such shop.", status=401)
        if request.method == "POST" and request.body and "json" not in (request.header("content-type") or ""):
            return envelope(code=36009022, message="Invalid request format: the body must be JSON.", status=400)
        if self.state.faults.take("throttle_next") or not self._take_token():
            return envelope(code=36009002, message="Too many requests.", status=429)
        return None

    def _take_token(self) -> bool:
        return self._bucket.take()

    # --- the request shapes TikTok documents (tiktok_contract) ---------------------------------

    def request_violations(self, request: Request) -> list[ContractViolation]:
        query = {name: values[0] for name, values in request.query.items() if values}
        body = request.json() if request.body else None
        if request.method == "POST" and body is None and request.path != TOKEN_PATH:
            op = tiktok_contract.operation_for(request.method, request.path)
            if op is not None and op.body is not None:
                body = {}
        return tiktok_contract.request_violations(request.method, request.path, query=query, body=body)

    def contract_error(self, request: Request, violations: list[ContractViolation]) -> Response:
        return envelope(
            code=36009004, message="Invalid params. " + "; ".join(str(v) for v in violations)[:900], status=400
        )

    # --- tokens --------------------------------------------------------------------------------

    def refresh_token(self, request: Request) -> Response:
        if request.arg("app_key") != self.app_key or request.arg("app_secret") != self.app_secret:
            return envelope(code=36009004, message="Invalid credentials. The app_key is invalid.", status=401)
        old = request.arg("refresh_token") or ""
        with self.state.lock:
            expires = self.refresh_tokens.get(old)
            if expires is None or expires <= time.time():
                return envelope(code=36004005, message="The refresh_token is invalid or expired.", status=400)
            del self.refresh_tokens[old]
            access, refresh = f"TTP_{secrets.token_urlsafe(24)}", f"TTR_{secrets.token_urlsafe(24)}"
            access_expires = int(time.time()) + self.token_lifetime
            refresh_expires = int(time.time()) + 365 * 86400
            self.access_tokens[access] = access_expires
            self.refresh_tokens[refresh] = refresh_expires
            self.refreshes += 1
        return envelope(
            {
                "access_token": access,
                "access_token_expire_in": access_expires,
                "refresh_token": refresh,
                "refresh_token_expire_in": refresh_expires,
                "open_id": "7010736057180325637",
                "seller_name": "Waybill Sandbox",
                "seller_base_region": "US",
                "user_type": 0,
                "granted_scopes": ["seller.order.info", "seller.fulfillment.basic", "seller.product.write"],
            }
        )

    def admin_tokens(self, request: Request) -> Response:
        data = request.json()
        with self.state.lock:
            if data.get("expire"):
                for token in self.access_tokens:
                    self.access_tokens[token] = time.time() - 1
            return Response(200, {"access_token": self.access_token, "refreshes": self.refreshes})

    # --- admin hooks: what buyers and TikTok do --------------------------------------------------

    def _bump(self, order: SandboxOrder, topic: str) -> None:
        """A change TikTok reports with a later update_time (to the second) than the one before."""
        before = order.updated_at
        self.state.touch(order, topic)
        if order.updated_at <= before:
            order.updated_at = before + timedelta(seconds=1)
            self.state.last_stamp = max(self.state.last_stamp, order.updated_at)

    def _order(self, request: Request) -> tuple[SandboxOrder | None, dict]:
        data = request.json()
        return self.state.orders.get(str(data.get("order_id") or "")), data

    def admin_buyer_cancel(self, request: Request) -> Response:
        with self.state.lock:
            order, data = self._order(request)
            if order is None or order.status not in ("pending", "unshipped"):
                return Response(400, {"error": "no such order awaiting shipment"})
            cancel_id = f"58{len(self.cancel_records) + 1:016d}"
            now = int(self.state.stamp().timestamp())
            self.cancel_records[cancel_id] = {
                "cancel_id": cancel_id,
                "order_id": order.order_id,
                "cancel_type": "BUYER_CANCEL",
                "role": "BUYER",
                "cancel_status": "CANCELLATION_REQUEST_PENDING",
                "cancel_reason": "ecom_order_to_ship_canceled_reason_change_payment_method",
                "cancel_reason_text": str(data.get("reason") or "Changed my mind"),
                "create_time": now,
                "update_time": now,
            }
            self._bump(order, "cancel_request")
        return Response(200, {"cancel_id": cancel_id})

    def admin_pay(self, request: Request) -> Response:
        """Payment clears: TikTok sets the ship-by (rts_sla_time) now, and bumps update_time."""
        with self.state.lock:
            order, _ = self._order(request)
            if order is None or order.status != "pending":
                return Response(400, {"error": "no such unpaid order"})
            order.status, order.paid = "unshipped", True
            now = self.state.stamp()
            order.ship_by = now + timedelta(days=2)
            order.deliver_by = now + timedelta(days=6)
            self._bump(order, "update")
        return Response(200, {"order_id": order.order_id})

    def admin_address(self, request: Request) -> Response:
        with self.state.lock:
            order, data = self._order(request)
            if order is None:
                return Response(400, {"error": "no such order"})
            if "name" in data:
                order.buyer_name = str(data["name"])
            for key in ("line1", "line2", "city", "region", "postal_code", "country_code", "phone"):
                if key in data:
                    order.address[key] = str(data[key])
            self.updated_addresses.add(order.order_id)
            self._bump(order, "address")
        return Response(200, {"order_id": order.order_id})

    # --- rendering -----------------------------------------------------------------------------

    def order_status(self, order: SandboxOrder) -> str:
        if order.status == "pending":
            return "UNPAID" if not order.paid and order.number % 2 else "ON_HOLD"
        return {
            "unshipped": "AWAITING_SHIPMENT",
            "partially_shipped": "PARTIALLY_SHIPPING",
            "shipped": "IN_TRANSIT",
            "cancelled": "CANCELLED",
        }[order.status]

    def pending_buyer_request(self, order_id: str) -> dict | None:
        return next(
            (
                c
                for c in self.cancel_records.values()
                if c["order_id"] == order_id
                and c["role"] == "BUYER"
                and c["cancel_status"] == "CANCELLATION_REQUEST_PENDING"
            ),
            None,
        )

    def initiator(self, order: SandboxOrder) -> str:
        if order.order_id in self.initiators:
            return self.initiators[order.order_id]
        if order.cancel_reason == "BuyerCanceled":
            return "BUYER"
        return "SELLER" if order.cancel_reason.startswith("seller_") else "SYSTEM"

    def unit_states(self, order: SandboxOrder) -> list[tuple[SandboxLine, str, str]]:
        """(line, unit id, display status) for every unit; units not marked by id follow the counts."""
        marked = self.units.get(order.order_id, {})
        open_status = self.order_status(order)
        if open_status in ("PARTIALLY_SHIPPING", "IN_TRANSIT", "CANCELLED"):
            open_status = "AWAITING_SHIPMENT"
        out = []
        for index, line in enumerate(order.lines, start=1):
            ids = [f"{order.number}{index:02d}{unit:03d}" for unit in range(1, line.quantity + 1)]
            shipped = line.shipped - sum(1 for i in ids if marked.get(i) == SHIPPED_UNIT)
            cancelled = line.cancelled - sum(1 for i in ids if marked.get(i) == "CANCELLED")
            for unit_id in ids:
                state = marked.get(unit_id)
                if state is None and shipped > 0:
                    state, shipped = SHIPPED_UNIT, shipped - 1
                elif state is None and cancelled > 0:
                    state, cancelled = "CANCELLED", cancelled - 1
                out.append((line, unit_id, state or open_status))
        return out

    def render(self, order: SandboxOrder) -> dict:
        """One order as Get Order List and Get Order Detail (202309) both give it. TikTok omits what it
        doesn't know yet: an UNPAID order has no paid_time and no ship-by (rts_sla_time) until paid."""
        total = sum((line.unit_price * line.quantity for line in order.lines), start=0)
        tracking = self.tracking.get(order.order_id, {})
        status = self.order_status(order)
        initiator = self.initiator(order)
        items = []
        for line, unit_id, unit_status in self.unit_states(order):
            item = {
                "id": unit_id,
                "sku_id": sku_id_for(line.sku),
                "seller_sku": line.sku,
                "product_id": product_id_for(line.sku),
                "product_name": line.title,
                "sku_name": "Default",
                "sale_price": f"{line.unit_price:.2f}",
                "original_price": f"{line.unit_price:.2f}",
                "currency": order.currency,
                "display_status": unit_status,
                "is_gift": False,
            }
            if unit_status == "CANCELLED":
                item["cancel_user"] = initiator
                item["cancel_reason"] = order.cancel_reason
            if unit_id in tracking:
                item["tracking_number"] = tracking[unit_id]
                item["package_id"] = next(p["id"] for p in self.packages if unit_id in p["order_line_item_ids"])
            items.append(item)
        a = order.address
        body: dict[str, Any] = {
            "id": order.order_id,
            "status": status,
            "create_time": int(order.created_at.timestamp()),
            "update_time": int(order.updated_at.timestamp()),
            "fulfillment_type": "FULFILLMENT_BY_SELLER"
            if order.fulfilled_by == "MERCHANT"
            else "FULFILLMENT_BY_TIKTOK",
            "delivery_option_id": DELIVERY_OPTION_ID,
            "delivery_option_name": "Standard Shipping",
            "payment": {"currency": order.currency, "total_amount": f"{total:.2f}", "sub_total": f"{total:.2f}"},
            "recipient_address": {
                "name": order.buyer_name,
                "phone_number": a["phone"],
                "address_line1": a["line1"],
                "address_line2": a["line2"],
                "postal_code": a["postal_code"],
                "region_code": a["country_code"],
                "district_info": [
                    {"address_level_name": "State", "address_name": a["region"]},
                    {"address_level_name": "City", "address_name": a["city"]},
                ],
            },
            "has_updated_recipient_address": order.order_id in self.updated_addresses,
            "is_buyer_request_cancel": False,
            "line_items": items,
            "packages": [{"id": p["id"]} for p in self.packages if p["order_id"] == order.order_id],
        }
        if status != "UNPAID":
            body["paid_time"] = int(order.created_at.timestamp()) + 30
            if order.ship_by:
                body["rts_sla_time"] = int(order.ship_by.timestamp())
            if order.deliver_by:
                body["delivery_due_time"] = int(order.deliver_by.timestamp())
        request = self.pending_buyer_request(order.order_id) or next(
            (c for c in self.cancel_records.values() if c["order_id"] == order.order_id and c["role"] == "BUYER"),
            None,
        )
        if request is not None:
            body["is_buyer_request_cancel"] = True
            body["request_cancel_time"] = request["create_time"]
            body["cancel_order_sla_time"] = request["create_time"] + 48 * 3600
            body["cancel_reason"] = request["cancel_reason_text"]
        if status == "CANCELLED" or any(s == "CANCELLED" for _, _, s in self.unit_states(order)):
            body["cancellation_initiator"] = initiator
            body.setdefault("cancel_reason", order.cancel_reason)
        if order.malformed == "bad_quantity":
            items[0]["sale_price"] = "many"
        elif order.malformed == "bad_date":
            body["create_time"] = "2025-12-31 10:00"
        elif order.malformed == "missing_items":
            del body["line_items"]
        return body

    # --- orders --------------------------------------------------------------------------------

    def search_orders(self, request: Request) -> Response:
        size = int(request.arg("page_size") or 0)
        body = request.json() if request.body else {}
        since = body.get("update_time_ge")
        before = body.get("update_time_lt")
        descending = request.arg("sort_order") == "DESC"
        field = request.arg("sort_field") or "create_time"
        token = request.arg("page_token") or ""
        if token and not token.isdigit():
            return envelope(
                code=36009004, message="Invalid params. page_token is not one this search gave.", status=400
            )
        offset = int(token) if token else 0
        with self.state.lock:
            rows = sorted(
                (
                    o
                    for o in self.state.orders.values()
                    if (since is None or o.updated_at.timestamp() >= since)
                    and (before is None or o.updated_at.timestamp() < before)
                    and (not body.get("order_status") or self.order_status(o) == body["order_status"])
                    and (
                        body.get("is_buyer_request_cancel") is None
                        or (self.pending_buyer_request(o.order_id) is not None) == body["is_buyer_request_cancel"]
                    )
                ),
                key=lambda o: ((o.updated_at if field == "update_time" else o.created_at), o.order_id),
                reverse=descending,
            )
            page = [self.render(o) for o in rows[offset : offset + size]]
            next_offset = offset + size
            if self.state.faults.take("duplicate_next") and len(page) > 2:
                next_offset -= 2
        next_token = str(next_offset) if next_offset < len(rows) else ""
        return envelope({"orders": page, "total_count": len(rows), "next_page_token": next_token})

    def get_orders(self, request: Request) -> Response:
        ids = (request.arg("ids") or "").split(",")
        with self.state.lock:
            found = [self.render(self.state.orders[i]) for i in ids if i in self.state.orders]
        return envelope({"orders": found})

    def shipping_providers(self, request: Request, option_id: str) -> Response:
        if option_id != DELIVERY_OPTION_ID:
            return envelope(code=21001001, message="Unknown delivery option", status=400)
        return envelope({"shipping_providers": SHIPPING_PROVIDERS})

    def create_package(self, request: Request, order_id: str) -> Response:
        body = request.json()
        unit_ids = body["order_line_item_ids"]
        if body["shipping_provider_id"] not in {p["id"] for p in SHIPPING_PROVIDERS}:
            return envelope(code=21011001, message="shipping_provider_id is not a provider of this delivery option")
        with self.state.lock:
            order = self.state.orders.get(order_id)
            if order is None:
                return envelope(code=21001001, message=f"Order {order_id} not found", status=404)
            if self.order_status(order) not in ("AWAITING_SHIPMENT", "PARTIALLY_SHIPPING"):
                return envelope(code=21011002, message=f"Order is {self.order_status(order)}: it cannot be shipped")
            if self.pending_buyer_request(order_id) is not None:
                return envelope(code=21011005, message="The buyer asked to cancel: decide on the request first")
            states = {unit_id: (line, status) for line, unit_id, status in self.unit_states(order)}
            for unit_id in unit_ids:
                if unit_id not in states or states[unit_id][1] != "AWAITING_SHIPMENT":
                    return envelope(code=21011003, message=f"Line item {unit_id} cannot be shipped")
            marked = self.units.setdefault(order_id, {})
            for unit_id in unit_ids:
                marked[unit_id] = SHIPPED_UNIT
                states[unit_id][0].shipped += 1
                self.tracking.setdefault(order_id, {})[unit_id] = body["tracking_number"]
            package = {"id": f"11{len(self.packages) + 1:016d}", "order_id": order_id, "order_line_item_ids": unit_ids}
            self.packages.append(package)
            order.recompute()
            self.state.touch(order)
            self.state.shipments.append({"order_id": order_id, **body, "package_id": package["id"]})
        return envelope({"package_id": package["id"], "order_id": order_id, "order_line_item_ids": unit_ids})

    # --- cancellations -------------------------------------------------------------------------

    def cancel(self, request: Request) -> Response:
        """Cancel Order: the seller cancels (counted against the seller)."""
        body = request.json()
        order_id = body["order_id"]
        reason = body["cancel_reason"]
        if reason not in CANCEL_REASONS:
            return envelope(code=25001001, message=f"Invalid cancel_reason {reason!r}")
        with self.state.lock:
            order = self.state.orders.get(order_id)
            if order is None:
                return envelope(code=21001001, message=f"Order {order_id} not found", status=404)
            states = {unit_id: (line, status) for line, unit_id, status in self.unit_states(order)}
            if body.get("skus"):
                unit_ids = []
                for wanted in body["skus"]:
                    free = [
                        u
                        for u, (line, s) in states.items()
                        if sku_id_for(line.sku) == wanted["sku_id"] and s not in (SHIPPED_UNIT, "CANCELLED")
                    ]
                    if len(free) < wanted["quantity"]:
                        return envelope(code=25001002, message=f"SKU {wanted['sku_id']}: not enough open units")
                    unit_ids += free[: wanted["quantity"]]
            else:
                unit_ids = body.get("order_line_item_ids") or [
                    u for u, (_, s) in states.items() if s not in (SHIPPED_UNIT, "CANCELLED")
                ]
            for unit_id in unit_ids:
                if unit_id not in states or states[unit_id][1] in (SHIPPED_UNIT, "CANCELLED"):
                    return envelope(code=25001002, message=f"Line item {unit_id} cannot be cancelled")
            cancel_id = self._cancel_units(order, unit_ids, reason, "SELLER")
            now = int(order.updated_at.timestamp())
            self.cancel_records[cancel_id] = {
                "cancel_id": cancel_id,
                "order_id": order_id,
                "cancel_type": "CANCEL",
                "role": "SELLER",
                "cancel_status": "CANCELLATION_REQUEST_COMPLETE",
                "cancel_reason": reason,
                "cancel_reason_text": reason,
                "create_time": now,
                "update_time": now,
            }
        return envelope({"cancel_id": cancel_id, "cancel_status": "CANCELLATION_REQUEST_COMPLETE"})

    def _cancel_units(self, order: SandboxOrder, unit_ids: list[str], reason: str, initiator: str) -> str:
        states = {unit_id: line for line, unit_id, _ in self.unit_states(order)}
        marked = self.units.setdefault(order.order_id, {})
        for unit_id in unit_ids:
            marked[unit_id] = "CANCELLED"
            states[unit_id].cancelled += 1
        order.cancel_reason = reason
        self.initiators[order.order_id] = initiator
        order.recompute()
        self._bump(order, "cancel")
        cancel_id = f"57{len(self.state.cancellations) + 1:016d}"
        self.state.cancellations.append(
            {"order_id": order.order_id, "units": unit_ids, "reason": reason, "cancel_id": cancel_id, "by": initiator}
        )
        return cancel_id

    def search_cancellations(self, request: Request) -> Response:
        body = request.json() if request.body else {}
        size = int(request.arg("page_size") or 0)
        with self.state.lock:
            rows = [
                dict(c)
                for c in self.cancel_records.values()
                if (not body.get("order_ids") or c["order_id"] in body["order_ids"])
                and (not body.get("cancel_ids") or c["cancel_id"] in body["cancel_ids"])
                and (not body.get("cancel_status") or c["cancel_status"] in body["cancel_status"])
                and (not body.get("cancel_types") or c["cancel_type"] in body["cancel_types"])
            ]
        return envelope({"cancellations": rows[:size], "total_count": len(rows), "next_page_token": ""})

    def approve_cancellation(self, request: Request, cancel_id: str) -> Response:
        """Approve Cancellation: the buyer's request is granted; TikTok records the buyer as the canceller."""
        key = request.arg("idempotency_key")
        with self.state.lock:
            if key and self.approvals.get(key) == cancel_id:
                return envelope({})
            record = self.cancel_records.get(cancel_id)
            if record is None:
                return envelope(code=25002002, message=f"Cancellation {cancel_id} not found", status=404)
            if record["cancel_status"] != "CANCELLATION_REQUEST_PENDING":
                return envelope(code=25002001, message=f"Cancellation {cancel_id} is {record['cancel_status']}")
            order = self.state.orders[record["order_id"]]
            units = [u for _, u, s in self.unit_states(order) if s not in (SHIPPED_UNIT, "CANCELLED")]
            record["cancel_status"] = "CANCELLATION_REQUEST_COMPLETE"
            record["update_time"] = int(self.state.stamp().timestamp())
            self._cancel_units(order, units, record["cancel_reason"], "BUYER")
            self.state.cancellations[-1]["approved"] = cancel_id
            if key:
                self.approvals[key] = cancel_id
        return envelope({})

    # --- returns and refunds (issue #18): Search Returns, Approve Return --------------------------------

    RETURN_STATUS = {
        "requested": "RETURN_OR_REFUND_REQUEST_PENDING",
        "approved": "AWAITING_BUYER_SHIP",
        "shipped": "BUYER_SHIPPED_ITEM",
        "received": "BUYER_SHIPPED_ITEM",
        "refunded": "RETURN_OR_REFUND_REQUEST_SUCCESS",
        "closed": "RETURN_OR_REFUND_REQUEST_COMPLETE",
        "declined": "REFUND_OR_RETURN_REQUEST_REJECT",
    }

    def _return_row(self, made) -> dict:
        order = self.state.orders[made.order_id]
        units = {}
        for line, unit_id, state in self.unit_states(order):
            units.setdefault(line.line_id, []).append((line, unit_id, state))
        items = []
        total = Decimal(0)
        for line_id, count in made.lines.items():
            shipped = [u for u in units.get(line_id, []) if u[2] == SHIPPED_UNIT][:count]
            for line, unit_id, _ in shipped:
                total += line.unit_price
                items.append(
                    {
                        "return_line_item_id": f"{_digits(made.return_id)}{unit_id}",
                        "order_line_item_id": unit_id,
                        "sku_id": sku_id_for(line.sku),
                        "seller_sku": line.sku,
                        "product_name": line.title,
                        "refund_amount": {"currency": order.currency, "refund_total": f"{line.unit_price:.2f}"},
                    }
                )
        return {
            "return_id": _digits(made.return_id),
            "order_id": made.order_id,
            "return_type": "RETURN_AND_REFUND",
            "return_status": self.RETURN_STATUS.get(made.status, "RETURN_OR_REFUND_REQUEST_PENDING"),
            "return_reason": made.reason.lower(),
            "return_reason_text": made.reason.replace("_", " ").capitalize(),
            "create_time": int(made.created_at.timestamp()),
            "update_time": int(made.updated_at.timestamp()),
            "refund_amount": {"currency": order.currency, "refund_total": f"{total:.2f}"},
            "return_line_items": items,
        }

    def search_returns(self, request: Request) -> Response:
        body = request.json() if request.body else {}
        size = int(request.arg("page_size") or 0)
        offset = int(request.arg("page_token") or 0)
        with self.state.lock:
            rows = [
                self._return_row(r)
                for r in self.state.returns.values()
                if (not body.get("order_ids") or r.order_id in body["order_ids"])
                and (not body.get("return_ids") or _digits(r.return_id) in body["return_ids"])
                and int(r.updated_at.timestamp()) >= int(body.get("update_time_ge") or 0)
            ]
            if body.get("return_status"):
                rows = [row for row in rows if row["return_status"] in body["return_status"]]
        rows.sort(key=lambda row: (row["update_time"], row["return_id"]))
        page = rows[offset : offset + size]
        token = str(offset + size) if offset + size < len(rows) else ""
        return envelope({"return_orders": page, "total_count": len(rows), "next_page_token": token})

    def approve_return(self, request: Request, return_id: str) -> Response:
        """Approve Return: APPROVE_RETURN lets the buyer ship it back; APPROVE_RECEIVED_PACKAGE (or APPROVE_REFUND
        for a refund-only request) refunds the buyer. The idempotency key makes a resend answer the same."""
        key = request.arg("idempotency_key")
        decision = request.json()["decision"]
        with self.state.lock:
            if key and key in self.return_approvals:
                return envelope(self.return_approvals[key])
            made = next((r for r in self.state.returns.values() if _digits(r.return_id) == return_id), None)
            if made is None:
                return envelope(code=25004002, message=f"Return {return_id} not found", status=404)
            allowed = {
                "APPROVE_RETURN": {"requested"},
                "APPROVE_REFUND": {"requested", "approved", "shipped", "received"},
                "APPROVE_RECEIVED_PACKAGE": {"shipped", "received", "approved"},
                "APPROVE_REPLACEMENT": {"requested"},
            }[decision]
            if made.status not in allowed:
                status = self.RETURN_STATUS.get(made.status, made.status)
                return envelope(code=25004001, message=f"Return {return_id} is {status}: {decision} is not allowed")
            data: dict = {"return_id": return_id}
            if decision == "APPROVE_RETURN":
                self.state.return_advance(made, "approved")
            else:
                refund_id = f"58{len(self.state.extra.setdefault('refund_log', [])) + 1:016d}"
                amount = Decimal(self._return_row(made)["refund_amount"]["refund_total"])
                made.refunds[refund_id] = amount
                self.state.extra["refund_log"].append(
                    {
                        "return_id": return_id,
                        "decision": decision,
                        "refund_id": refund_id,
                        "amount": str(amount),
                        "key": key,
                    }
                )
                self.state.return_advance(made, "refunded")
                data["refund_id"] = refund_id
            if key:
                self.return_approvals[key] = data
        return envelope(data)

    # --- drift behind the sync's back (reconciliation) -------------------------------------------

    def drift_stock(self, sku: str, quantity: int) -> None:
        self.state.inventory[f"{product_id_for(sku)}:{sku_id_for(sku)}"] = quantity

    def _advertised_skus(self) -> list[str]:
        return [sku for sku in self.catalog if f"{product_id_for(sku)}:{sku_id_for(sku)}" in self.state.inventory]

    def drift_forget_shipments(self, order: SandboxOrder) -> None:
        marked = self.units.get(order.order_id, {})
        for unit_id in [u for u, state in marked.items() if state == SHIPPED_UNIT]:
            del marked[unit_id]
        self.tracking.pop(order.order_id, None)
        self.packages = [p for p in self.packages if p["order_id"] != order.order_id]

    # --- end of drift ------------------------------------------------------------------------------

    # --- products and inventory ----------------------------------------------------------------

    def product(self, sku: str) -> dict:
        stock = self.state.inventory.get(f"{product_id_for(sku)}:{sku_id_for(sku)}", 0)
        return {
            "id": product_id_for(sku),
            "title": f"Product {sku}",
            "status": "ACTIVATE",
            "skus": [
                {
                    "id": sku_id_for(sku),
                    "seller_sku": sku,
                    "price": {"currency": "USD", "sale_price": "19.99", "tax_exclusive_price": "19.99"},
                    "inventory": [{"warehouse_id": self.warehouse_id, "quantity": stock}],
                }
            ],
            "sales_regions": ["US"],
            "create_time": 1_735_689_600,
            "update_time": 1_735_689_600,
        }

    def search_products(self, request: Request) -> Response:
        body = request.json() if request.body else {}
        size = int(request.arg("page_size") or 0)
        token = request.arg("page_token") or ""
        offset = int(token) if token.isdigit() else 0
        with self.state.lock:
            listed = sorted(self.catalog)
            if body.get("seller_skus"):
                listed = [sku for sku in listed if sku in body["seller_skus"]]
            rows = [self.product(sku) for sku in listed]
        page = rows[offset : offset + size]
        next_token = str(offset + size) if offset + size < len(rows) else ""
        return envelope({"products": page, "total_count": len(rows), "next_page_token": next_token})

    def update_inventory(self, request: Request, product_id: str) -> Response:
        """Update Inventory: a product that isn't the shop's is refused whole (12052260); a SKU of another
        product or a warehouse the shop lacks is refused per SKU in ``data.errors``, the rest applied."""
        body = request.json()
        with self.state.lock:
            skus_of_product = {sku_id_for(sku): sku for sku in self.catalog if product_id_for(sku) == product_id}
            if not skus_of_product:
                return envelope(code=12052260, message=f"The product ID {product_id} does not exist")
            errors = []
            for sku in body["skus"]:
                if sku["id"] not in skus_of_product:
                    errors.append(
                        {
                            "code": 12052036,
                            "message": "The SKU ID does not belong to the product",
                            "detail": {"sku_id": sku["id"]},
                        }
                    )
                    continue
                bad = [s for s in sku["inventory"] if s.get("warehouse_id", self.warehouse_id) != self.warehouse_id]
                if bad:
                    errors.append(
                        {
                            "code": 12052990,
                            "message": "Check failed",
                            "detail": {
                                "sku_id": sku["id"],
                                "extra_errors": [
                                    {
                                        "warehouse_id": s["warehouse_id"],
                                        "code": 12052097,
                                        "message": "No such warehouse",
                                    }
                                    for s in bad
                                ],
                            },
                        }
                    )
                    continue
                quantity = sum(s["quantity"] for s in sku["inventory"])
                key = f"{product_id}:{sku['id']}"
                self.state.inventory[key] = quantity
                self.state.inventory_log.append({"sku": key, "quantity": quantity, "at": time.time()})
        return envelope({"errors": errors} if errors else {})

    # --- webhooks ------------------------------------------------------------------------------

    def webhook_body(self, order: SandboxOrder) -> bytes:
        payload = {
            "type": 1,
            "shop_id": self.shop_id,
            "timestamp": int(time.time()),
            "data": {
                "order_id": order.order_id,
                "order_status": self.order_status(order),
                "update_time": int(order.updated_at.timestamp()),
            },
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    def signed_headers(self, delivery: dict) -> dict[str, str]:
        body = delivery["body"]
        digest = hmac.new(self.app_secret.encode(), self.app_key.encode() + body, hashlib.sha256).hexdigest()
        return {"Content-Type": "application/json", "Authorization": digest}

    def _on_change(self, order: SandboxOrder, topic: str) -> None:
        if not self.webhook_url:
            return
        self.webhook_queue_put({"body": self.webhook_body(order), "record": {"order_id": order.order_id}})
