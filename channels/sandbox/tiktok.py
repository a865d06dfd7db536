"""TikTok Shop Open API (202309) sandbox: signed requests, orders/search, order detail, packages,
cancellations, inventory update, and signed order-status webhooks.

Per ../shared/CHANNELS.md (there is no saved model for TikTok): every call carries ``app_key``,
``timestamp`` (unix s), ``sign`` and ``shop_cipher`` in the query and ``x-tts-access-token`` in a
header; the sandbox recomputes the sign and answers a bad one with HTTP 401 and code 106001 in
TikTok's envelope ``{code, message, request_id, data}``. A timestamp more than 5 minutes off is
refused. A line item is one unit. Codes other than 106001 (an expired timestamp, a bad token,
throttling, a refused write) are the sandbox's own: TikTok's are not in the saved references.

Webhooks ``{type, shop_id, timestamp, data{order_id, order_status, update_time}}`` go to
``webhook_url`` with ``Authorization`` = hex HMAC-SHA256(app_secret, app_key + raw body).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from channels.sandbox.base import Request, Response, SandboxApp, SandboxLine, SandboxOrder, SandboxState, TokenBucket

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


def tiktok_sign(app_secret: str, path: str, params: dict[str, str], body: bytes) -> str:
    """The sandbox's own implementation of CHANNELS.md's recipe (the connector has its own)."""
    text = path + "".join(f"{k}{params[k]}" for k in sorted(params) if k not in SIGNED_OUT)
    message = (app_secret + text).encode() + body + app_secret.encode()
    return hmac.new(app_secret.encode(), message, hashlib.sha256).hexdigest()


def envelope(data: Any = None, *, code: int = 0, message: str = "Success", status: int = 200, headers=None):
    body = {"code": code, "message": message, "request_id": uuid.uuid4().hex.upper(), "data": data or {}}
    return Response(status, body, headers=headers or {})


def sku_id_for(sku: str) -> str:
    return str(1_729_000_000_000_000_000 + int(hashlib.sha256(sku.encode()).hexdigest()[:12], 16) % 10**15)


def product_id_for(sku: str) -> str:
    return str(1_731_000_000_000_000_000 + int(hashlib.sha256(b"p" + sku.encode()).hexdigest()[:12], 16) % 10**15)


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
        shop_cipher: str = "ROW_demo",
        shop_id: str = "7495000000000000001",
        warehouse_id: str = "7068517275539719942",
        webhook_url: str = "",
        rate: float = 50.0,
        burst: int = 50,
        **options: Any,
    ):
        super().__init__(state or TikTokState(), **options)
        self.app_key = app_key
        self.app_secret = app_secret
        self.access_token = access_token
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
        self.bad_signs = 0
        self.state.on_change = self._on_change
        self.webhooks_start()

    def routes(self):
        return [
            ("POST", "/order/202309/orders/search", self.search_orders),
            ("GET", "/order/202309/orders", self.get_orders),
            ("POST", "/fulfillment/202309/orders/{order_id}/packages", self.create_package),
            ("GET", "/logistics/202309/delivery_options/{option_id}/shipping_providers", self.shipping_providers),
            ("POST", "/return_refund/202309/cancellations", self.cancel),
            ("POST", "/product/202309/products/{product_id}/inventory/update", self.update_inventory),
        ]

    def server_error(self) -> Response:
        return envelope(code=36009999, message="Internal error", status=500)

    # --- signing, auth, throttling -------------------------------------------------------------

    def before(self, request: Request) -> Response | None:
        early = super().before(request)
        if early is not None:
            return early
        params = {key: values[0] for key, values in request.query.items()}
        if params.get("app_key") != self.app_key:
            return envelope(code=106001, message="Invalid credentials: app_key", status=401)
        sign = params.get("sign") or ""
        expected = tiktok_sign(self.app_secret, request.path, params, request.body if request.method != "GET" else b"")
        if not hmac.compare_digest(sign, expected):
            self.bad_signs += 1
            return envelope(code=106001, message="Invalid credentials: the sign is invalid", status=401)
        try:
            skew = abs(time.time() - int(params.get("timestamp") or 0))
        except ValueError:
            skew = float("inf")
        if skew > 300:
            return envelope(code=106002, message="The timestamp is more than 5 minutes off", status=401)
        if request.header("x-tts-access-token") != self.access_token:
            return envelope(code=105002, message="Expired or invalid access token", status=401)
        if params.get("shop_cipher") != self.shop_cipher:
            return envelope(code=106011, message="Invalid shop_cipher", status=400)
        if self.state.faults.take("throttle_next") or not self._take_token():
            return envelope(code=36009004, message="Too many requests", status=429)
        return None

    def _take_token(self) -> bool:
        return self._bucket.take()

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
        total = sum((line.unit_price * line.quantity for line in order.lines), start=0)
        tracking = self.tracking.get(order.order_id, {})
        items = []
        for line, unit_id, status in self.unit_states(order):
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
                "display_status": status,
                "is_gift": False,
            }
            if unit_id in tracking:
                item["tracking_number"] = tracking[unit_id]
                item["package_id"] = next(p["id"] for p in self.packages if unit_id in p["order_line_item_ids"])
            items.append(item)
        a = order.address
        body: dict[str, Any] = {
            "id": order.order_id,
            "status": self.order_status(order),
            "create_time": int(order.created_at.timestamp()),
            "update_time": int(order.updated_at.timestamp()),
            "rts_sla_time": int(order.ship_by.timestamp()) if order.ship_by else None,
            "delivery_due_time": int(order.deliver_by.timestamp()) if order.deliver_by else None,
            "fulfillment_type": "FULFILLMENT_BY_SELLER"
            if order.fulfilled_by == "MERCHANT"
            else "FULFILLMENT_BY_TIKTOK",
            "delivery_option_id": DELIVERY_OPTION_ID,
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
            "line_items": items,
            "packages": [{"id": p["id"]} for p in self.packages if p["order_id"] == order.order_id],
        }
        if order.paid:
            body["paid_time"] = int(order.created_at.timestamp()) + 30
        if order.malformed == "bad_quantity":
            items[0]["sale_price"] = "many"
        elif order.malformed == "bad_date":
            body["create_time"] = "2025-12-31 10:00"
        elif order.malformed == "missing_items":
            del body["line_items"]
        return body

    # --- orders --------------------------------------------------------------------------------

    def search_orders(self, request: Request) -> Response:
        try:
            size = int(request.arg("page_size") or 20)
            body = request.json() if request.body else {}
        except ValueError:
            return envelope(code=36009001, message="Invalid page_size or body", status=400)
        if not 1 <= size <= 100:
            return envelope(code=36009001, message="page_size must be 1 to 100", status=400)
        since = body.get("update_time_ge")
        before = body.get("update_time_lt")
        if since is not None and not isinstance(since, int):
            return envelope(code=36009001, message="update_time_ge must be unix seconds", status=400)
        token = request.arg("page_token") or ""
        offset = int(token) if token.isdigit() else 0
        with self.state.lock:
            rows = sorted(
                (
                    o
                    for o in self.state.orders.values()
                    if (since is None or o.updated_at.timestamp() >= since)
                    and (before is None or o.updated_at.timestamp() < before)
                    and (not body.get("order_status") or self.order_status(o) == body["order_status"])
                ),
                key=lambda o: (o.updated_at, o.order_id),
            )
            page = [self.render(o) for o in rows[offset : offset + size]]
            next_offset = offset + size
            if self.state.faults.take("duplicate_next") and len(page) > 2:
                next_offset -= 2
        next_token = str(next_offset) if next_offset < len(rows) else ""
        return envelope({"orders": page, "total_count": len(rows), "next_page_token": next_token})

    def get_orders(self, request: Request) -> Response:
        ids = [i for i in (request.arg("ids") or "").split(",") if i]
        if not 0 < len(ids) <= 50:
            return envelope(code=36009001, message="ids must list 1 to 50 orders", status=400)
        with self.state.lock:
            found = [self.render(self.state.orders[i]) for i in ids if i in self.state.orders]
        return envelope({"orders": found})

    def shipping_providers(self, request: Request, option_id: str) -> Response:
        if option_id != DELIVERY_OPTION_ID:
            return envelope(code=36009001, message="Unknown delivery option", status=400)
        return envelope({"shipping_providers": SHIPPING_PROVIDERS})

    def create_package(self, request: Request, order_id: str) -> Response:
        body = request.json()
        unit_ids = body.get("order_line_item_ids")
        provider = body.get("shipping_provider_id")
        if not body.get("tracking_number") or provider not in {p["id"] for p in SHIPPING_PROVIDERS}:
            return envelope(code=21011001, message="tracking_number and a valid shipping_provider_id are required")
        if not isinstance(unit_ids, list) or not unit_ids:
            return envelope(code=21011001, message="order_line_item_ids is required")
        with self.state.lock:
            order = self.state.orders.get(order_id)
            if order is None:
                return envelope(code=21001001, message=f"Order {order_id} not found", status=404)
            if self.order_status(order) not in ("AWAITING_SHIPMENT", "PARTIALLY_SHIPPING"):
                return envelope(code=21011002, message=f"Order is {self.order_status(order)}: it cannot be shipped")
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

    def cancel(self, request: Request) -> Response:
        body = request.json()
        order_id = str(body.get("order_id") or "")
        reason = body.get("cancel_reason")
        if reason not in CANCEL_REASONS:
            return envelope(code=25001001, message=f"Invalid cancel_reason {reason!r}")
        with self.state.lock:
            order = self.state.orders.get(order_id)
            if order is None:
                return envelope(code=21001001, message=f"Order {order_id} not found", status=404)
            states = {unit_id: (line, status) for line, unit_id, status in self.unit_states(order)}
            unit_ids = body.get("order_line_item_ids") or [u for u, (_, s) in states.items() if s != SHIPPED_UNIT]
            for unit_id in unit_ids:
                if unit_id not in states or states[unit_id][1] in (SHIPPED_UNIT, "CANCELLED"):
                    return envelope(code=25001002, message=f"Line item {unit_id} cannot be cancelled")
            marked = self.units.setdefault(order_id, {})
            for unit_id in unit_ids:
                marked[unit_id] = "CANCELLED"
                states[unit_id][0].cancelled += 1
            order.cancel_reason = reason
            order.recompute()
            self.state.touch(order, "cancel")
            cancel_id = f"57{len(self.state.cancellations) + 1:016d}"
            self.state.cancellations.append(
                {"order_id": order_id, "units": unit_ids, "reason": reason, "cancel_id": cancel_id}
            )
        return envelope({"cancel_id": cancel_id, "cancel_status": "CANCELLATION_REQUEST_COMPLETE"})

    def update_inventory(self, request: Request, product_id: str) -> Response:
        body = request.json()
        skus = body.get("skus")
        if not isinstance(skus, list) or not skus:
            return envelope(code=12019001, message="skus is required")
        applied = []
        for sku in skus:
            for stock in sku.get("inventory") or []:
                if stock.get("warehouse_id") != self.warehouse_id or not isinstance(stock.get("quantity"), int):
                    return envelope(code=12019002, message="Invalid warehouse_id or quantity")
            applied.append((sku.get("id"), sum(s["quantity"] for s in sku.get("inventory") or [])))
        with self.state.lock:
            for sku_id, quantity in applied:
                self.state.inventory[f"{product_id}:{sku_id}"] = quantity
                self.state.inventory_log.append(
                    {"sku": f"{product_id}:{sku_id}", "quantity": quantity, "at": time.time()}
                )
        return envelope({})

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
