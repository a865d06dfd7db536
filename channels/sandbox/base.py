"""What every sandbox marketplace shares: the HTTP server, generated orders, recorded writes, faults.

A sandbox is a ``SandboxApp`` subclass in its own module (channels/sandbox/<kind>.py) that turns
``SandboxOrder`` rows into the channel's wire format and answers the channel's paths; adding a
channel is one module plus a line in channels/sandbox/__init__.py.

Admin endpoints, the same on every sandbox (no auth: loopback only):
  POST /_sandbox/faults   {"throttle_next": 5, "error_500_next": 2, "malformed_next": 1,
                           "duplicate_next": 1, "drop_webhooks": true, "slow_ms": 300}
  POST /_sandbox/generate {"count": 10}          new orders now
  POST /_sandbox/mutate   {"count": 5}           advance / cancel some existing orders
  GET  /_sandbox/state                            orders, shipments, cancellations, inventory, webhooks
  POST /_sandbox/reset
  POST /_sandbox/drift    drift injected behind the sync's back (reconciliation tests and the demo):
                          {"stock": {sku: quantity}}      the seller edits quantities in the channel's tools
                          {"cancel": [order id, …]}       the marketplace cancels; no poll or webhook sees it
                          {"cancel_lines": {order id: {line id: units}}}  it cancels units of some lines
                          {"ship": [order id, …]}         the seller ships in the channel's tools, unseen
                          {"forget_shipments": [id, …]}   the channel loses confirmations it had applied
                                                          (their records in state stay, marked forgotten)
                          {"unseen": {"count": 2, "hours_ago": 6}}  orders placed hours ago that no poll
                                                          from the current cursor returns
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx

from channels.sandbox.contract import ContractViolation, operation, template_for

log = logging.getLogger("waybill.sandbox")

SKU_CODES = [f"WB-{1000 + i}" for i in range(200)]
UNKNOWN_SKUS = ["WB-9001", "ZZ-UNLISTED-7", "LEGACY-000"]
FIRST_NAMES = ["José", "Zoë", "Amélie", "Siobhán", "Łukasz", "Ngozi", "Björn", "Priya", "Chloé", "Kenji", "Fatima"]
LAST_NAMES = ["Müller", "Ōtani", "Dubois", "O'Neill", "Zieliński", "Okafor", "Åkesson", "Raman", "Martin", "Watanabe"]
CJK_NAMES = ["李雷", "韩梅梅", "山田 太郎", "김민준"]
CITIES = [
    ("Austin", "TX", "78701"),
    ("Brooklyn", "NY", "11201"),
    ("Portland", "OR", "97205"),
    ("Chicago", "IL", "60614"),
    ("Denver", "CO", "80202"),
    ("Miami", "FL", "33130"),
    ("Seattle", "WA", "98101"),
    ("São Paulo Street, Oakland", "CA", "94612"),
]
PRODUCTS = ["Canvas Backpack", "Merino Beanie", "Trail Bottle", "Cedar Tote", "Harbor Jacket", "Nordic Mug"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_z(value: datetime | None) -> str | None:
    """UTC to the second with a Z, as Amazon and Shopify GraphQL send it."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class SandboxLine:
    line_id: str
    sku: str
    title: str
    quantity: int
    unit_price: Decimal
    shipped: int = 0
    cancelled: int = 0

    @property
    def remaining(self) -> int:
        return self.quantity - self.shipped - self.cancelled


@dataclass
class SandboxOrder:
    number: int
    order_id: str
    created_at: datetime
    updated_at: datetime
    # pending | unshipped | partially_shipped | shipped | cancelled
    status: str
    lines: list[SandboxLine]
    buyer_name: str
    address: dict[str, str]
    currency: str = "USD"
    paid: bool = True
    fulfilled_by: str = "MERCHANT"
    ship_by: datetime | None = None
    deliver_by: datetime | None = None
    cancel_reason: str = ""
    # A fault: the order is served with this defect until reset.
    malformed: str = ""
    packages: list[dict] = field(default_factory=list)
    version: int = 1
    # Store pickup: the channel's id of the store the buyer chose ("" = ship to the address).
    pickup_location: str = ""

    def recompute(self) -> None:
        if self.status == "cancelled":
            return
        if all(line.cancelled >= line.quantity for line in self.lines):
            self.status = "cancelled"
        elif all(line.remaining == 0 for line in self.lines):
            self.status = "shipped"
        elif any(line.shipped for line in self.lines):
            self.status = "partially_shipped"


@dataclass
class SandboxReturn:
    """A buyer's return at the marketplace (issue #18): ``lines`` {line_id: units}; ``status`` one of
    requested, approved, shipped (by the buyer), received, closed, declined."""

    return_id: str
    order_id: str
    lines: dict[str, int]
    reason: str
    status: str
    created_at: datetime
    updated_at: datetime
    # Amounts refunded for it at the marketplace, by refund id.
    refunds: dict[str, Decimal] = field(default_factory=dict)


RETURN_REASONS = ["DEFECTIVE", "WRONG_ITEM", "NOT_AS_DESCRIBED", "UNWANTED", "DAMAGED"]


@dataclass
class Faults:
    throttle_next: int = 0
    error_500_next: int = 0
    malformed_next: int = 0
    duplicate_next: int = 0
    drop_webhooks: bool = False
    slow_ms: int = 0

    def take(self, name: str) -> bool:
        value = getattr(self, name)
        if value > 0:
            setattr(self, name, value - 1)
            return True
        return False


class SandboxState:
    """Everything a sandbox knows; every access goes through ``lock``."""

    def __init__(self, *, seed: int = 7, prefix: str = "", unknown_sku_rate: float = 0.02):
        self.lock = threading.RLock()
        self.seed = seed
        self.prefix = prefix
        self.unknown_sku_rate = unknown_sku_rate
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.rng = random.Random(self.seed)
            self.orders: dict[str, SandboxOrder] = {}
            self.counter = 0
            self.last_stamp = utcnow() - timedelta(days=1)
            self.faults = Faults()
            self.shipments: list[dict] = []
            self.cancellations: list[dict] = []
            self.inventory: dict[str, int] = {}
            self.inventory_log: list[dict] = []
            self.webhooks: list[dict] = []
            self.requests = 0
            # Requests refused because they break the published model: what a test reads back.
            self.contract_violations: list[dict] = []
            self.extra: dict[str, Any] = {}
            # Returns the buyers opened at the marketplace (issue #18), by return id.
            self.returns: dict[str, SandboxReturn] = {}
            # Orders changed behind the sync's back (/_sandbox/drift), by kind: a send Waybill makes for one of
            # them before reconciliation finds the change may be refused, as the marketplace would.
            self.drifted: dict[str, list[str]] = {}

    def stamp(self) -> datetime:
        """Now, to the second, never earlier than the last stamp handed out."""
        now = utcnow().replace(microsecond=0)
        if now < self.last_stamp:
            now = self.last_stamp
        self.last_stamp = now
        return now

    def _line(self, order_number: int, index: int, unknown: bool) -> SandboxLine:
        rng = self.rng
        sku = rng.choice(UNKNOWN_SKUS) if unknown else rng.choice(SKU_CODES)
        return SandboxLine(
            line_id=f"{order_number}{index:02d}",
            sku=sku,
            title=f"{rng.choice(PRODUCTS)} — {sku}",
            quantity=rng.choice([1, 1, 1, 2, 2, 3, 5]),
            unit_price=Decimal(rng.randint(599, 15999)) / 100,
        )

    def generate(
        self,
        count: int = 1,
        *,
        lines: int | None = None,
        status: str | None = None,
        fulfilled_by: str | None = None,
        unknown_sku: bool | None = None,
        created_at: datetime | None = None,
    ) -> list[SandboxOrder]:
        made = []
        with self.lock:
            for _ in range(count):
                rng = self.rng
                self.counter += 1
                number = 1000 + self.counter
                stamp = created_at or self.stamp()
                line_count = lines or rng.choice([1, 1, 2, 2, 3, 4, 5])
                has_unknown = unknown_sku if unknown_sku is not None else rng.random() < self.unknown_sku_rate
                order_lines = [
                    self._line(number, i + 1, unknown=has_unknown and i == line_count - 1) for i in range(line_count)
                ]
                # Repeated SKUs in one order are merged as a real cart would.
                seen: dict[str, SandboxLine] = {}
                for line in order_lines:
                    if line.sku in seen:
                        seen[line.sku].quantity += line.quantity
                    else:
                        seen[line.sku] = line
                city, region, postal = rng.choice(CITIES)
                name = (
                    rng.choice(CJK_NAMES)
                    if rng.random() < 0.15
                    else f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
                )
                initial = status or ("pending" if rng.random() < 0.2 else "unshipped")
                order = SandboxOrder(
                    number=number,
                    order_id=self.order_id_for(number),
                    created_at=stamp,
                    updated_at=stamp,
                    status=initial,
                    lines=list(seen.values()),
                    buyer_name=name,
                    address={
                        "line1": f"{rng.randint(1, 999)} Calle Mayor",
                        "line2": rng.choice(["", "Apt 4B", "Suite 210"]),
                        "city": city,
                        "region": region,
                        "postal_code": postal,
                        "country_code": "US",
                        "phone": f"+1 555 01{rng.randint(10, 99)}",
                    },
                    paid=initial != "pending",
                    fulfilled_by=fulfilled_by or ("AMAZON" if rng.random() < 0.1 else "MERCHANT"),
                    ship_by=stamp + timedelta(days=2),
                    deliver_by=stamp + timedelta(days=6),
                )
                if self.faults.take("malformed_next"):
                    order.malformed = rng.choice(["bad_quantity", "bad_date", "missing_items"])
                if initial == "cancelled":
                    for line in order.lines:
                        line.cancelled = line.quantity
                    order.cancel_reason = "BuyerCanceled"
                self.orders[order.order_id] = order
                made.append(order)
                self.on_change(order, "create")
        return made

    def order_id_for(self, number: int) -> str:
        return f"{self.prefix}{number}"

    # Marketplaces whose polls tell two versions of an order apart by its modified time (to the second) move
    # that time forward on every change, even twice within one second.
    distinct_stamps: bool = False

    def touch(self, order: SandboxOrder, topic: str = "update") -> None:
        with self.lock:
            previous = order.updated_at
            order.updated_at = self.stamp()
            if self.distinct_stamps and previous is not None and order.updated_at <= previous:
                order.updated_at = previous + timedelta(seconds=1)
                self.last_stamp = max(self.last_stamp, order.updated_at)
            order.version += 1
            self.on_change(order, topic)

    def mutate(self, count: int = 1) -> list[SandboxOrder]:
        """What happens to orders after creation: payment clears, buyers cancel, lines change."""
        changed = []
        with self.lock:
            open_orders = [o for o in self.orders.values() if o.status in ("pending", "unshipped")]
            for order in self.rng.sample(open_orders, min(count, len(open_orders))):
                roll = self.rng.random()
                if order.status == "pending":
                    order.status = "unshipped"
                    order.paid = True
                elif roll < 0.4:
                    self.cancel(order, "BuyerCanceled", topic=None)
                else:
                    order.buyer_name = order.buyer_name + " Jr."
                self.touch(order, "cancel" if order.status == "cancelled" else "update")
                changed.append(order)
        return changed

    def cancel(self, order: SandboxOrder, reason: str, *, lines: dict[str, int] | None = None, topic="cancel") -> None:
        """Cancel what is still open: every line, or ``lines`` {line_id: quantity}."""
        for line in order.lines:
            if lines is None:
                line.cancelled += line.remaining
            elif line.line_id in lines:
                line.cancelled += min(lines[line.line_id], line.remaining)
        order.cancel_reason = reason
        order.recompute()
        if topic:
            self.touch(order, topic)

    def ship(self, order: SandboxOrder, *, lines: dict[str, int] | None = None, topic="update") -> None:
        """The seller ships units in the marketplace's own tools (not through Waybill): every open unit,
        or ``lines`` {line_id: quantity}."""
        for line in order.lines:
            if lines is None:
                line.shipped += line.remaining
            elif line.line_id in lines:
                line.shipped += min(lines[line.line_id], line.remaining)
        order.recompute()
        if topic:
            self.touch(order, topic)

    # --- returns (issue #18) ---------------------------------------------------------------------------

    def open_return(
        self, order: SandboxOrder, *, lines: dict[str, int] | None = None, reason: str = "", status: str = "requested"
    ) -> SandboxReturn | str:
        """The buyer returns shipped units (every shipped unit not under return yet when ``lines`` is None).
        Returns the return, or why it is refused."""
        with self.lock:
            taken: dict[str, int] = {}
            for existing in self.returns.values():
                if existing.order_id == order.order_id and existing.status != "declined":
                    for line_id, units in existing.lines.items():
                        taken[line_id] = taken.get(line_id, 0) + units
            shipped = {line.line_id: line.shipped - taken.get(line.line_id, 0) for line in order.lines}
            wanted = lines if lines is not None else {k: v for k, v in shipped.items() if v > 0}
            if not wanted:
                return f"order {order.order_id} has no shipped units to return"
            for line_id, units in wanted.items():
                if line_id not in shipped or units < 1 or units > shipped[line_id]:
                    return f"line {line_id}: {units} unit(s) cannot be returned ({shipped.get(line_id, 0)} returnable)"
            stamp = self.stamp()
            made = SandboxReturn(
                return_id=f"{self.prefix}R{len(self.returns) + 1:06d}",
                order_id=order.order_id,
                lines=dict(wanted),
                reason=reason or self.rng.choice(RETURN_REASONS),
                status=status,
                created_at=stamp,
                updated_at=stamp,
            )
            self.returns[made.return_id] = made
            self.touch(order, "return")
            return made

    def return_advance(self, made: SandboxReturn, status: str) -> None:
        with self.lock:
            made.status = status
            made.updated_at = self.stamp()
            order = self.orders.get(made.order_id)
            if order is not None:
                self.touch(order, "return")

    def on_change(self, order: SandboxOrder, topic: str) -> None:
        """Hook for webhooks; the base sandbox sends none."""

    def summary(self) -> dict:
        with self.lock:
            return {
                "orders": len(self.orders),
                "by_status": _count(o.status for o in self.orders.values()),
                "shipments": self.shipments,
                "cancellations": self.cancellations,
                "inventory": self.inventory,
                "inventory_log": self.inventory_log[-200:],
                "webhooks": self.webhooks[-200:],
                "requests": self.requests,
                "contract_violations": self.contract_violations[-200:],
                "returns": [
                    {
                        "return_id": r.return_id,
                        "order_id": r.order_id,
                        "lines": r.lines,
                        "status": r.status,
                        "refunds": {k: str(v) for k, v in r.refunds.items()},
                    }
                    for r in list(self.returns.values())[-200:]
                ],
                "faults": self.faults.__dict__,
                "drifted": self.drifted,
            }


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return out


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.body is None:
            return b""
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode()


Route = tuple[str, str, Callable[..., Response]]


class TokenBucket:
    """A channel's request-rate limit: ``rate`` requests per second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int):
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._refilled = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
            self._refilled = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


class SandboxApp:
    """Routes requests to handlers; subclasses add the channel's routes in ``routes()``."""

    kind = ""

    def __init__(self, state: SandboxState | None = None, **options: Any):
        self.state = state or SandboxState(prefix=self.order_prefix())
        self.options = options
        self.base_url = ""
        # The SKUs the channel lists for the seller, ordered or not (every known sandbox SKU to begin with);
        # a sandbox that routes admin_catalog lets the seller list and delist them.
        self.catalog: set[str] = set(SKU_CODES)
        self._routes: list[tuple[str, list[str], Callable[..., Response]]] = []
        for method, pattern, handler in [*self.admin_routes(), *self.routes()]:
            self._routes.append((method, pattern.strip("/").split("/"), handler))

    def order_prefix(self) -> str:
        return ""

    # --- webhooks: queued by the platform, delivered in order by one thread ---------------------

    webhook_url = ""

    def webhooks_start(self) -> None:
        self.webhook_queue: queue.Queue = queue.Queue()
        self._webhook_thread = threading.Thread(
            target=self._deliver_webhooks, daemon=True, name=f"{self.kind}-webhooks"
        )
        self._webhook_thread.start()

    def webhook_queue_put(self, delivery: dict) -> None:
        """``delivery``: {"body": bytes, "record": what state.webhooks keeps of it, …for signed_headers}."""
        if self.state.faults.drop_webhooks:
            self.state.webhooks.append({**delivery["record"], "status": "dropped"})
            return
        self.webhook_queue.put(delivery)

    def signed_headers(self, delivery: dict) -> dict[str, str]:
        raise NotImplementedError

    def _deliver_webhooks(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0)) as client:
            while (delivery := self.webhook_queue.get()) is not None:
                record = dict(delivery["record"])
                try:
                    response = client.post(
                        self.webhook_url, content=delivery["body"], headers=self.signed_headers(delivery)
                    )
                    record["status"] = response.status_code
                except httpx.HTTPError as exc:
                    record["status"] = f"error: {type(exc).__name__}"
                self.state.webhooks.append(record)

    def close(self) -> None:
        """Stop the background threads (the demo's order generator, webhook delivery)."""
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
        if getattr(self, "_webhook_thread", None) is not None:
            self.webhook_queue.put(None)
            self._webhook_thread.join(timeout=10)

    def routes(self) -> list[Route]:
        return []

    def admin_routes(self) -> list[Route]:
        return [
            ("POST", "/_sandbox/faults", self.admin_faults),
            ("POST", "/_sandbox/generate", self.admin_generate),
            ("POST", "/_sandbox/mutate", self.admin_mutate),
            ("GET", "/_sandbox/state", self.admin_state),
            ("POST", "/_sandbox/reset", self.admin_reset),
            ("POST", "/_sandbox/returns", self.admin_return),
            ("POST", "/_sandbox/drift", self.admin_drift),  # reconciliation
        ]

    def admin_return(self, request: Request) -> Response:
        """{"order_id", "lines": {line_id: units} (every shipped unit when absent), "reason", "status"}: a buyer
        opens a return at the marketplace (issue #18); {"return_id", "status"} moves one along."""
        data = request.json()
        with self.state.lock:
            if data.get("return_id"):
                made = self.state.returns.get(str(data["return_id"]))
                if made is None:
                    return Response(404, {"error": "unknown return_id"})
                self.state.return_advance(made, str(data.get("status") or made.status))
                return Response(200, {"return_id": made.return_id, "status": made.status})
            order = self.state.orders.get(str(data.get("order_id") or ""))
            if order is None:
                return Response(404, {"error": "unknown order_id"})
            lines = data.get("lines")
            made = self.state.open_return(
                order,
                lines={str(k): int(v) for k, v in lines.items()} if isinstance(lines, dict) else None,
                reason=str(data.get("reason") or ""),
                status=str(data.get("status") or "requested"),
            )
            if isinstance(made, str):
                return Response(400, {"error": made})
            return Response(200, {"return_id": made.return_id, "order_id": made.order_id, "lines": made.lines})

    def admin_faults(self, request: Request) -> Response:
        data = request.json()
        with self.state.lock:
            for key, value in data.items():
                if not hasattr(self.state.faults, key):
                    return Response(400, {"error": f"unknown fault {key!r}"})
                setattr(self.state.faults, key, value)
            return Response(200, self.state.faults.__dict__)

    def admin_generate(self, request: Request) -> Response:
        data = request.json()
        made = self.state.generate(int(data.get("count", 1)))
        return Response(200, {"created": [o.order_id for o in made]})

    def admin_mutate(self, request: Request) -> Response:
        made = self.state.mutate(int(request.json().get("count", 1)))
        return Response(200, {"changed": [o.order_id for o in made]})

    def admin_state(self, request: Request) -> Response:
        return Response(200, self.state.summary())

    def admin_reset(self, request: Request) -> Response:
        self.state.reset()
        return Response(200, {"reset": True})

    # --- drift behind the sync's back (reconciliation) -------------------------------------------

    # A marketplace whose available quantity may go below 0 when it sells more than it had (Shopify).
    negative_stock = False

    def admin_drift(self, request: Request) -> Response:
        """Change the channel's side quietly: order times stay as they were (no poll from the cursor and no
        webhook sees the change), stock is set as if in the seller's own tools. Answers what changed."""
        data = request.json()
        known = {"stock", "cancel", "cancel_lines", "ship", "forget_shipments", "unseen"}
        if not isinstance(data, dict) or not set(data) <= known:
            return Response(400, {"error": f"expected any of {', '.join(sorted(known))}"})
        done: dict[str, Any] = {}
        with self.state.lock:
            for name in ("cancel", "cancel_lines", "ship", "forget_shipments"):
                ids = data.get(name) or []
                missing = [i for i in ids if i not in self.state.orders]
                if missing:
                    return Response(404, {"error": f"unknown order(s) {missing[:5]}"})
            partial = data.get("cancel_lines") or {}
            for order_id, lines in partial.items():
                known_lines = {line.line_id for line in self.state.orders[order_id].lines}
                if not isinstance(lines, dict) or not lines or not set(lines) <= known_lines:
                    return Response(400, {"error": f"cancel_lines {order_id}: {{line id: units}} of its lines"})
                if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in lines.values()):
                    return Response(
                        400, {"error": f"cancel_lines {order_id}: units must be whole numbers of 1 or more"}
                    )
            for sku, quantity in (data.get("stock") or {}).items():
                floor = -1_000_000 if self.negative_stock else 0
                if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < floor:
                    return Response(400, {"error": f"stock {sku}: a whole number of at least {floor} is required"})
                self.drift_stock(str(sku), quantity)
            for name in ("cancel", "cancel_lines", "ship", "forget_shipments"):
                self.state.drifted.setdefault(name, []).extend(data.get(name) or [])
            for order_id in data.get("cancel") or []:
                self.state.cancel(self.state.orders[order_id], "GeneralAdjustment", topic=None)
            for order_id, lines in partial.items():
                # Units of some lines cancelled by the marketplace (the buyer asked, or stock ran out there).
                self.state.cancel(self.state.orders[order_id], "BuyerCanceled", lines=lines, topic=None)
            for order_id in data.get("ship") or []:
                self.state.ship(self.state.orders[order_id], topic=None)
            for order_id in data.get("forget_shipments") or []:
                order = self.state.orders[order_id]
                for line in order.lines:
                    line.shipped = 0
                order.packages = []
                order.status = "unshipped"
                order.recompute()
                self.drift_forget_shipments(order)
                # The log keeps what the channel once applied, marked as lost: a confirmation sent again
                # to heal it is a second record, not a duplicate of the first.
                for record in self.state.shipments:
                    if record.get("order_id") == order_id:
                        record["forgotten"] = True
            unseen = data.get("unseen") or {}
            if unseen:
                when = utcnow().replace(microsecond=0) - timedelta(hours=float(unseen.get("hours_ago", 6)))
                made = self.state.generate(
                    int(unseen.get("count", 1)),
                    status="unshipped",
                    fulfilled_by="MERCHANT",
                    unknown_sku=False,
                    created_at=when,
                )
                done["unseen"] = [o.order_id for o in made]
        return Response(200, {**done, **{k: v for k, v in data.items() if k != "unseen"}})

    # Share of demo ticks that inject one drift (run_sandboxes --drift-rate); 0 in tests.
    drift_rate: float = 0.0

    def drift_tick(self) -> dict:
        """One drift of a random kind, as the demo's background life: a quiet marketplace cancel or an
        outside shipment of an open order, a lost confirmation, a quantity edited at the channel, or an
        order placed hours ago that no poll returns. Returns what it did."""
        rng = self.state.rng
        with self.state.lock:
            open_ids = [o.order_id for o in self.state.orders.values() if o.status == "unshipped"]
            confirmed = sorted(
                {
                    s["order_id"]
                    for s in self.state.shipments
                    if s.get("order_id") in self.state.orders and not s.get("forgotten")
                }
            )
            stocked = sorted(self._advertised_skus())
        choices: list[dict] = [{"unseen": {"count": 1, "hours_ago": 3}}]
        if open_ids:
            choices += [{"cancel": [rng.choice(open_ids)]}, {"ship": [rng.choice(open_ids)]}]
        if confirmed:
            choices.append({"forget_shipments": [rng.choice(confirmed)]})
        if stocked:
            choices.append({"stock": {rng.choice(stocked): rng.randint(0, 40)}})
        drift = rng.choice(choices)
        self.admin_drift(Request("POST", "/_sandbox/drift", {}, {}, json.dumps(drift).encode()))
        log.info("%s sandbox: drift %s", type(self).__name__, drift)
        return drift

    def _advertised_skus(self) -> list[str]:
        """SKUs the channel advertises a quantity for (pushed at least once)."""
        return [sku for sku in self.state.inventory if ":" not in sku]

    def drift_stock(self, sku: str, quantity: int) -> None:
        """Set the quantity the channel advertises for a SKU (each sandbox keeps it its own way)."""
        self.state.inventory[sku] = quantity

    def drift_forget_shipments(self, order: SandboxOrder) -> None:
        """Drop the sandbox's own records of the order's shipments (packages, fulfillments)."""

    # --- end of drift ------------------------------------------------------------------------------

    def admin_catalog(self, request: Request) -> Response:
        """{"add": [sku, …], "remove": [sku, …]}: the seller lists or delists SKUs at the channel."""
        data = request.json()
        with self.state.lock:
            self.catalog |= {str(s) for s in data.get("add") or []}
            self.catalog -= {str(s) for s in data.get("remove") or []}
            return Response(200, {"catalog": len(self.catalog)})

    def admin_edit(self, request: Request) -> Response:
        """An order edited at the channel after creation (``sandbox_order_edit``), answered as the channel
        renders the order (``render_edited``)."""
        edited = sandbox_order_edit(self.state, request.json())
        if isinstance(edited, str):
            return Response(400, {"error": edited})
        with self.state.lock:
            return Response(200, self.render_edited(edited))

    def render_edited(self, order: SandboxOrder) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not route admin_edit")

    def before(self, request: Request) -> Response | None:
        """Faults that apply to every channel call (not to the admin endpoints)."""
        faults = self.state.faults
        if faults.slow_ms:
            time.sleep(faults.slow_ms / 1000)
        with self.state.lock:
            self.state.requests += 1
            if faults.take("error_500_next"):
                return self.server_error()
        return None

    def server_error(self) -> Response:
        return Response(500, {"errors": [{"code": "InternalFailure", "message": "We encountered an internal error."}]})

    # --- the published contract ------------------------------------------------------------------

    # (model file in ../shared/channel-specs, the base path the model's paths sit under on the wire).
    contracts: ClassVar[list[tuple[str, str]]] = []

    def request_violations(self, request: Request) -> list[ContractViolation]:
        """What the request breaks in the published model (body schema, query parameters), plus the
        limits the model states only in prose (``prose_violations``)."""
        for spec_name, prefix in self.contracts:
            if not request.path.startswith(prefix):
                continue
            template = template_for(spec_name, request.path[len(prefix) :] or "/")
            if template is None:
                continue
            try:
                op = operation(spec_name, request.method, template)
            except KeyError:
                continue
            body = request.json() if request.body and op.body_schema is not None else None
            query = {name: values[0] for name, values in request.query.items() if values}
            return op.violations(body=body, query=query) + self.prose_violations(request, template, body)
        return []

    def prose_violations(self, request: Request, template: str, body: Any) -> list[ContractViolation]:
        """Constraints the model states in descriptions rather than in its schema."""
        return []

    def contract_error(self, request: Request, violations: list[ContractViolation]) -> Response:
        """The channel's own error envelope for a request the model refuses."""
        return Response(
            400, {"errors": [{"code": "InvalidInput", "message": str(v), "details": v.where} for v in violations]}
        )

    def dispatch(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        for method, pattern, handler in self._routes:
            if method != request.method or len(pattern) != len(parts):
                continue
            kwargs = {}
            for want, got in zip(pattern, parts, strict=True):
                if want.startswith("{") and want.endswith("}"):
                    kwargs[want[1:-1]] = got
                elif want != got:
                    break
            else:
                try:
                    if not request.path.startswith("/_sandbox/"):
                        early = self.before(request)
                        if early is not None:
                            return early
                        violations = self.request_violations(request)
                        if violations:
                            with self.state.lock:
                                self.state.contract_violations.append(
                                    {
                                        "method": request.method,
                                        "path": request.path,
                                        "violations": [str(v) for v in violations],
                                    }
                                )
                            return self.contract_error(request, violations)
                    return handler(request, **kwargs)
                except json.JSONDecodeError:
                    return Response(400, {"errors": [{"code": "InvalidInput", "message": "Body is not JSON"}]})
        return Response(404, {"errors": [{"code": "NotFound", "message": f"No route {request.method} {request.path}"}]})

    def tick(self, rate_per_minute: float) -> None:
        """Background life: new orders and changes to existing ones, for the demo."""
        interval = 60.0 / rate_per_minute
        while not self._stop.wait(interval):
            self.state.generate(1)
            if self.state.rng.random() < 0.3:
                self.state.mutate(1)
            if self.state.rng.random() < self.return_rate:
                self.returns_tick()
            if self.state.rng.random() < self.drift_rate:
                self.drift_tick()  # reconciliation's demo: drift behind the sync's back

    # Share of demo ticks on which a buyer returns a shipped order (issue #18).
    return_rate = 0.15

    def returns_tick(self) -> None:
        """Demo life: a buyer returns units of a shipped order; earlier returns move along."""
        with self.state.lock:
            shipped = [o for o in self.state.orders.values() if any(line.shipped for line in o.lines)]
            if shipped:
                self.state.open_return(self.state.rng.choice(shipped))
            for made in list(self.state.returns.values()):
                if made.status == "requested" and self.state.rng.random() < 0.5:
                    self.state.return_advance(made, "approved")
                elif made.status == "approved" and self.state.rng.random() < 0.5:
                    self.state.return_advance(made, "shipped")

    # --- serving -------------------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0, *, rate_per_minute: float = 0.0) -> SandboxServer:
        server = SandboxServer(self, host, port)
        self.base_url = f"http://{host}:{server.port}"
        self._stop = threading.Event()
        server.start()
        if rate_per_minute:
            threading.Thread(target=self.tick, args=(rate_per_minute,), daemon=True, name=f"{self.kind}-tick").start()
        return server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, each keep-alive response waits for
    # the client's delayed ACK (~40 ms), capping one client at ~20 requests/s.
    disable_nagle_algorithm = True
    app: SandboxApp

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            response = self.app.dispatch(request)
        except Exception:
            log.exception("sandbox %s failed on %s %s", self.app.kind, request.method, request.path)
            response = self.app.server_error()
        payload = response.encode()
        self.send_response(response.status)
        headers = {"Content-Type": "application/json", **response.headers}
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _HTTPServer(ThreadingHTTPServer):
    """Remembers its open connections so that stopping ends them: a client's idle keep-alive connection
    would otherwise keep its handler thread reading after the server is gone."""

    daemon_threads = False  # server_close() joins the handler threads
    block_on_close = True

    def __init__(self, *args: Any, **kwargs: Any):
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            open_now = list(self.connections)
        for request in open_now:
            with contextlib.suppress(OSError):  # already closed by the client
                request.shutdown(socket.SHUT_RDWR)


class SandboxServer:
    """A threading HTTP server running one SandboxApp in a daemon thread."""

    def __init__(self, app: SandboxApp, host: str, port: int):
        handler = type(f"{type(app).__name__}Handler", (_Handler,), {"app": app})
        self.app = app
        self.httpd = _HTTPServer((host, port), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name=f"sandbox-{app.kind}")

    @property
    def url(self) -> str:
        return self.app.base_url

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.app.close()
        self.httpd.shutdown()
        self.httpd.close_connections()
        self.httpd.server_close()
        self.httpd.server_close()


def sandbox_order_edit(state: SandboxState, data: dict) -> SandboxOrder | str:
    """An order edited at the channel after creation (the buyer corrects the address, the marketplace moves
    the promise): ``{"order_id", "address": {line1, line2, city, region, postal_code, country_code, phone},
    "buyer_name", "ship_by", "deliver_by" (ISO)}``. Bumps the order's modified time. Returns the order, or
    why the edit is refused."""
    with state.lock:
        order = state.orders.get(str(data.get("order_id") or ""))
        if order is None:
            return f"unknown order {data.get('order_id')!r}"
        address = data.get("address") or {}
        unknown = set(address) - set(order.address)
        if unknown:
            return f"unknown address fields {sorted(unknown)}"
        dates = {}
        for name in ("ship_by", "deliver_by"):
            if data.get(name):
                try:
                    dates[name] = datetime.fromisoformat(str(data[name]).replace("Z", "+00:00"))
                except ValueError:
                    return f"{name} is not an ISO date-time"
                if dates[name].tzinfo is None:
                    return f"{name} has no time zone"
        order.address.update({key: str(value) for key, value in address.items()})
        if data.get("buyer_name"):
            order.buyer_name = str(data["buyer_name"])
        for name, value in dates.items():
            setattr(order, name, value)
        state.touch(order)
        return order
