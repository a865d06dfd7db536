"""The connector interface every channel implements, its normalised dataclasses and the HTTP client.

A connector speaks one marketplace's wire format and nothing else: it never touches the database.
The sync engine (channels/sync.py) and the outbox relay (channels/outbox.py) drive it.

Normalised shapes fit all five channels: status and ship-by per line (Walmart, eBay), one-unit
lines grouped by SKU (TikTok: ``external_unit_ids``), marketplace-fulfilled orders (Amazon AFN,
Walmart WFS, TikTok FBT).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any, ClassVar, TypeVar

import httpx

from channels.connectors.tokens import RefreshingToken, TokenGrant
from orders.models import OrderStatus, ShipToAddress
from orders.services.ingest import IngestAddress, IngestLine, IngestOrder

# --- errors ------------------------------------------------------------------------------------


class ChannelError(Exception):
    """A call to the channel failed. ``retryable`` says whether the same call may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        status: int = 0,
        detail: Any = None,
    ):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        # The channel's whole error answer as it sent it (errors with code, message and details),
        # kept on the outbox message so ops see the channel's own words.
        self.detail = detail


class ChannelThrottled(ChannelError):
    """The channel asked us to slow down and the client ran out of patience for this call."""


class ChannelUnsupported(ChannelError):
    """The channel has no such operation (e.g. Amazon has no acknowledge in the 2026 API)."""

    def __init__(self, message: str):
        super().__init__(message, retryable=False)


class WebhookRejected(ChannelError):
    """A webhook whose signature is valid but which is refused (outside the replay window)."""

    def __init__(self, message: str):
        super().__init__(message, retryable=False)


class PayloadError(ValueError):
    """A channel payload is malformed. ``field`` is the dotted path of the offending field."""

    def __init__(self, field_path: str, message: str):
        super().__init__(f"{field_path}: {message}")
        self.field = field_path


# --- normalised shapes -------------------------------------------------------------------------


@dataclass(frozen=True)
class NormalizedLine(IngestLine):
    """A line as ingest takes it, plus what the sync learns about the channel's listing."""

    # Shopify inventoryItem GID, TikTok sku_id: learnt into Listing.external_variant_id.
    external_variant_id: str = ""


# The buyer's address has one shape from the wire to the order row.
NormalizedAddress = IngestAddress
_ADDRESS_SIZES = {f.name: f.max_length for f in ShipToAddress._meta.get_fields() if getattr(f, "max_length", None)}


def normalized_address(**values: Any) -> NormalizedAddress:
    """A channel's address values as text, missing ones empty, each cut to its ship-to column's size."""
    return NormalizedAddress(**{name: str(value or "")[: _ADDRESS_SIZES[name]] for name, value in values.items()})


@dataclass(frozen=True)
class NormalizedOrder:
    external_id: str
    placed_at: datetime
    updated_at: datetime
    currency: str
    # An orders.models.OrderStatus value the channel's state maps to (pending, open, shipped…).
    status: str
    channel_status: str
    lines: list[NormalizedLine]
    external_reference: str = ""
    total_amount: Decimal | None = None
    ship_to: NormalizedAddress | None = None
    ship_by: datetime | None = None
    deliver_by: datetime | None = None
    paid_at: datetime | None = None
    shipping_method: str = ""
    marketplace_fulfilled: bool = False
    # The channel expects an acknowledgement (Walmart's Created lines): queued with the ingest.
    needs_acknowledgement: bool = False
    # ship | pickup | ship_from_store; a store pickup names the channel's id of the store chosen.
    service_level: str = "ship"
    pickup_location_ref: str = ""
    pickup_location_name: str = ""
    # The buyer asked the channel to cancel (Walmart intentToCancel, Amazon cancellationRequest by
    # BUYER, eBay cancelRequests, TikTok cancel request): held at once, accepted per account policy.
    cancel_requested: bool = False
    cancel_request_reason: str = ""
    # Who cancelled what the channel reports cancelled: an orders.models.CancelInitiator value, or "".
    cancelled_by: str = ""
    # The channel's marketplace of the order (Amazon salesChannel.marketplaceId).
    marketplace_id: str = ""

    def to_ingest(self, pickup_locations: Mapping[str, int] | None = None) -> IngestOrder:
        """``pickup_locations``: the account's mapped locations {channel location id: Location id}."""
        return IngestOrder(
            service_level=self.service_level,
            pickup_location_ref=self.pickup_location_ref,
            pickup_location_id=(pickup_locations or {}).get(self.pickup_location_ref)
            if self.pickup_location_ref
            else None,
            external_id=self.external_id,
            external_reference=self.external_reference,
            status=self.status,
            channel_status=self.channel_status,
            placed_at=self.placed_at,
            source_updated_at=self.updated_at,
            currency=self.currency,
            total_amount=self.total_amount,
            ship_by=self.ship_by,
            deliver_by=self.deliver_by,
            paid_at=self.paid_at,
            shipping_method=self.shipping_method,
            marketplace_fulfilled=self.marketplace_fulfilled,
            ship_to=self.ship_to,
            lines=list(self.lines),  # NormalizedLine is an IngestLine
            cancel_requested=self.cancel_requested,
            cancel_request_reason=self.cancel_request_reason,
            cancelled_by=self.cancelled_by,
            marketplace_id=self.marketplace_id,
        )


@dataclass
class OrderPage:
    """One page of raw orders as the channel sent them, and what is needed to resume after it."""

    raw_orders: list[dict]
    # Resumable state after this page (page token, cursor…), recorded on the SyncRun.
    progress: dict[str, Any] = field(default_factory=dict)
    # The channel's own upper bound of the search window (Amazon lastUpdatedBefore), if it has one.
    window_end: datetime | None = None


@dataclass(frozen=True)
class ShipmentLine:
    external_line_id: str
    quantity: int
    # Shopify: the fulfillment order line item that carries this line, when known.
    fulfillment_line_id: str = ""


@dataclass(frozen=True)
class ShipmentConfirmation:
    order_external_id: str
    package_reference: str
    carrier_code: str
    tracking_number: str
    shipped_at: datetime
    lines: list[ShipmentLine]
    carrier_name: str = ""
    shipping_method: str = ""
    tracking_url: str = ""
    # The order's own marketplace at the channel (Order.channel_marketplace_id), "" when unknown.
    marketplace_id: str = ""


@dataclass(frozen=True)
class CancelRequest:
    order_external_id: str
    # An empty list cancels every open line.
    lines: list[ShipmentLine]
    reason: str
    # {external line id: units the line keeps after this cancellation}, where Waybill knows it.
    keep: dict[str, int] = field(default_factory=dict)
    # The order's own marketplace at the channel (Order.channel_marketplace_id), "" when unknown.
    marketplace_id: str = ""


@dataclass(frozen=True)
class InventoryQuantity:
    channel_sku: str
    quantity: int
    # Shopify inventoryItem GID (Listing.external_variant_id); unused elsewhere.
    external_variant_id: str = ""
    previous_quantity: int | None = None


@dataclass(frozen=True)
class ListingIds:
    """A listing's ids at the channel, resolved from its SKU (Listing.external_listing_id / _variant_id)."""

    external_listing_id: str = ""
    external_variant_id: str = ""


@dataclass
class SendResult:
    """What the channel answered; ``state`` is kept on the outbox row for the next attempt."""

    response: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    already_applied: bool = False
    # Inventory pushes, per item: {channel SKU: quantity the channel acknowledged} and
    # {channel SKU: why the channel refused it}. Only acknowledged quantities count as pushed.
    acknowledged: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)


# --- reconciliation reads (channels/reconcile.py) ----------------------------------------------


@dataclass
class AdvertisedStock:
    """What a channel advertises now, read back from it: {channel SKU: quantity}, and the SKUs it has no
    listing for (nothing advertised; the push's "listing not found" case covers them)."""

    quantities: dict[str, int] = field(default_factory=dict)
    not_listed: set[str] = field(default_factory=set)


# --- end of reconciliation reads --------------------------------------------------------------


@dataclass(frozen=True)
class WebhookEvent:
    dedupe_key: str
    topic: str
    external_id: str
    payload: dict
    updated_at: datetime | None = None


# --- parsing helpers shared by connectors ------------------------------------------------------


def parse_datetime(value: Any, path: str, *, required: bool = True) -> datetime | None:
    """An ISO-8601 timestamp with a zone; the error names the field and what was sent."""
    if value is None or value == "":
        if required:
            raise PayloadError(path, "is missing")
        return None
    if not isinstance(value, str):
        raise PayloadError(path, f"expected an ISO-8601 string, got {type(value).__name__}")
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(path, f"not an ISO-8601 date-time: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise PayloadError(path, f"date-time has no time zone: {value[:40]!r}")
    return parsed


def order_status_from(*, cancelled: bool, fulfilled: bool, partly_fulfilled: bool, releasable: bool) -> str:
    """The order status an order-level channel state maps to (Shopify and eBay report one per order):
    cancelled, then shipped, partly shipped, releasable (paid), else pending."""
    if cancelled:
        return OrderStatus.CANCELLED
    if fulfilled:
        return OrderStatus.SHIPPED
    if partly_fulfilled:
        return OrderStatus.PARTIALLY_SHIPPED
    return OrderStatus.OPEN if releasable else OrderStatus.PENDING


def parse_decimal(value: Any, path: str, *, default: Decimal | None = None) -> Decimal:
    if value is None:
        if default is not None:
            return default
        raise PayloadError(path, "is missing")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PayloadError(path, f"expected a decimal string, got {type(value).__name__}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise PayloadError(path, f"not a decimal: {str(value)[:40]!r}") from None
    if not amount.is_finite():
        raise PayloadError(path, f"not a finite decimal: {str(value)[:40]!r}")
    if amount < 0:
        raise PayloadError(path, f"must not be negative, got {amount}")
    if amount >= Decimal("1e12"):
        raise PayloadError(path, f"is implausibly large: {amount}")
    return amount.quantize(Decimal("0.01"))


def parse_int(value: Any, path: str, *, minimum: int = 0, default: int | None = None) -> int:
    if value is None:
        if default is not None:
            return default
        raise PayloadError(path, "is missing")
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value.strip())
        else:
            raise PayloadError(path, f"expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise PayloadError(path, f"must be at least {minimum}, got {value}")
    if value > 1_000_000:
        raise PayloadError(path, f"is implausibly large: {value}")
    return value


def require_str(obj: Mapping, key: str, path: str, *, max_length: int = 255, required: bool = True) -> str:
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise PayloadError(f"{path}.{key}" if path else key, "is missing")
        return ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise PayloadError(f"{path}.{key}" if path else key, f"expected a string, got {type(value).__name__}")
    text = str(value)
    if len(text) > max_length:
        raise PayloadError(f"{path}.{key}" if path else key, f"longer than {max_length} characters")
    return text


def require_obj(obj: Any, path: str, *, required: bool = True) -> dict:
    if obj is None and not required:
        return {}
    if not isinstance(obj, dict):
        raise PayloadError(path, f"expected an object, got {type(obj).__name__}")
    return obj


def require_list(obj: Any, path: str) -> list:
    if not isinstance(obj, list):
        raise PayloadError(path, f"expected a list, got {type(obj).__name__}")
    return obj


# --- HTTP ---------------------------------------------------------------------------------------

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


class ChannelHttp:
    """httpx with timeouts, and retries with capped exponential backoff and jitter.

    429 and 5xx and transport errors are retried up to ``max_retries`` times, honouring
    Retry-After; anything else is returned to the connector, which knows the channel's error body.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 15.0,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport_retries: int | None = None,
    ):
        # Built on first use: a webhook's signature check needs the connector's credentials, not a client
        # (whose TLS context costs more than the rest of the request).
        self._client: httpx.Client | None = None
        self._client_options = {
            "base_url": base_url.rstrip("/"),
            "timeout": httpx.Timeout(timeout, connect=5.0),
            "headers": {"User-Agent": "Waybill/1.0 (Language=Python)"},
        }
        self.max_retries = max_retries
        # Connection failures (refused, reset, timed out) may be retried fewer times than 429/5xx: the outbox
        # relay counts them in its circuit breaker instead (None: max_retries).
        self.transport_retries = max_retries if transport_retries is None else transport_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        self.retries = 0
        self.throttled = 0

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_cap)
        delay = min(self.backoff_base * (2**attempt), self.backoff_cap)
        return delay * (0.5 + random.random() / 2)  # noqa: S311 (jitter, not a secret)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self.client.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= self.transport_retries:
                    raise ChannelError(f"{method} {url}: {type(exc).__name__}: {exc}", retryable=True) from exc
                self.sleep(self.backoff(attempt))
                attempt += 1
                self.retries += 1
                continue
            if response.status_code not in RETRYABLE_STATUS:
                return response
            if response.status_code == 429:
                self.throttled += 1
            retry_after = self.retry_after(response)
            if attempt >= self.max_retries:
                error = ChannelThrottled if response.status_code == 429 else ChannelError
                raise error(
                    f"{method} {url}: HTTP {response.status_code} after {attempt + 1} attempts",
                    retryable=True,
                    retry_after=retry_after,
                    status=response.status_code,
                )
            self.sleep(self.backoff(attempt, retry_after))
            attempt += 1
            self.retries += 1

    def retry_after(self, response: httpx.Response) -> float | None:
        """Seconds the channel asked us to wait; channels with their own header override this."""
        return _retry_after(response)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(**self._client_options)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def json_body(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ChannelError(
            f"{what}: HTTP {response.status_code}, body is not JSON: {response.text[:200]!r}",
            retryable=response.status_code >= 500,
            status=response.status_code,
        ) from None


def error_detail(response: httpx.Response) -> Any:
    """The channel's error answer as it sent it: the parsed JSON, or the status and text when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return {"status": response.status_code, "body": response.text[:2000]}


Sent = TypeVar("Sent")

# --- the interface ------------------------------------------------------------------------------


class Connector:
    """One channel account's connection. Subclasses set ``kind`` and implement the operations."""

    kind: ClassVar[str] = ""
    # How far before the cursor a poll starts again: the channel's own update lag plus clock skew.
    overlap: ClassVar[timedelta] = timedelta(minutes=5)
    # How far back the first sync of an account looks.
    initial_lookback: ClassVar[timedelta] = timedelta(days=30)
    # True where the channel deduplicates a resend itself (an idempotency key) for this outbox kind.
    # The channel tells the buyer a store pickup is ready (Shopify local pickup); others have no such call.
    supports_pickup_ready: ClassVar[bool] = False
    idempotent_kinds: ClassVar[frozenset[str]] = frozenset()
    http_class: ClassVar[type[ChannelHttp]] = ChannelHttp
    # The shortest time between two reads of the channel's returns (Amazon's returns report: 15 minutes); the
    # others are read on every tick of the returns beat.
    returns_read_interval: ClassVar[timedelta] = timedelta(0)
    # The shortest time between two inventory pushes to one account (one push: one call of push_inventory, up
    # to INVENTORY_BATCH items): what the channel's rate limit for its inventory call allows. Changes in between
    # coalesce per (account, SKU) and go out, newest quantity, in the next push.
    inventory_push_interval: ClassVar[float] = 0.2
    # Pushes an account may send at once after a quiet spell, one per interval after that (a token bucket):
    # 1 keeps to the interval alone, for channels that publish no burst.
    inventory_push_burst: ClassVar[int] = 1

    def __init__(
        self,
        account: Any,
        credentials: dict[str, str],
        *,
        http: ChannelHttp | None = None,
        http_options: dict | None = None,
        **options: Any,
    ):
        self.account = account
        self.credentials = credentials
        self.options = options
        self.http = http or self.http_class(account.api_base_url, **(http_options or {}))

    def close(self) -> None:
        self.http.close()

    # Reading orders.
    def fetch_orders(self, *, since: datetime, backfill: bool = False) -> Iterator[OrderPage]:
        """Pages of orders updated since ``since``; ``backfill`` is the account's first sync (no cursor
        yet, a long window), where a channel may read in bulk."""
        raise NotImplementedError

    def get_order(self, external_id: str) -> dict:
        raise NotImplementedError

    # Set by the sync for the length of a poll: {external id: the source update Waybill holds, settled} for
    # the ids given (an id absent: not held, or possibly missing a same-second change). A connector whose
    # channel lists ids and update times cheaply (Shopify's query cost) reads in full only the orders
    # changed since; the others ignore it.
    held_versions: Callable[[list[str]], Mapping[str, datetime | None]] | None = None

    def parse_order(self, raw: dict) -> NormalizedOrder:
        raise NotImplementedError

    # The order payload's id and last-updated fields, read by order_identity.
    identity_fields: ClassVar[tuple[str, str]] = ("", "")

    def order_identity(self, raw: Any) -> tuple[str, str]:
        """(external id, source updated time as sent) read leniently, for the dedupe key of any payload."""
        id_field, updated_field = self.identity_fields
        if not id_field:
            raise NotImplementedError(f"{type(self).__name__} names no identity_fields")
        if not isinstance(raw, dict):
            return "", ""
        return str(raw.get(id_field) or "")[:128], str(raw.get(updated_field) or "")[:64]

    # Writing to the channel.
    def acknowledge(self, external_id: str) -> SendResult:
        raise ChannelUnsupported(f"{self.kind} has no order acknowledgement")

    def confirm_shipment(self, shipment: ShipmentConfirmation, *, state: dict) -> SendResult:
        raise NotImplementedError

    def cancel_lines(self, cancel: CancelRequest, *, state: dict) -> SendResult:
        raise NotImplementedError

    def push_inventory(self, quantities: list[InventoryQuantity], *, idempotency_key: str, state: dict) -> SendResult:
        """Set each quantity at the channel; the result names, per channel SKU, what the channel
        acknowledged and what it refused (``acknowledged`` / ``rejected``)."""
        raise NotImplementedError

    # True where a push addresses the channel's own id of the listing (Shopify inventory item, TikTok
    # product and SKU id), which must be resolved from the SKU before a first push.
    push_needs_listing_ids: ClassVar[bool] = False

    # True where the channel cancels whole orders only (eBay's Post-Order API): a buyer's accepted cancel
    # request reaches it as one cancellation of every open line, not one per line.
    cancels_whole_orders_only: ClassVar[bool] = False

    def resolve_listings(self, channel_skus: list[str]) -> dict[str, ListingIds]:
        """Look the SKUs up at the channel: {channel SKU: its ids} for those found; absent ones are
        not listed there (the caller opens a "listing not found at channel" case)."""
        return {}

    # --- reconciliation reads (channels/reconcile.py) ------------------------------------------
    # How many SKUs one read_stock call reads at most (the reconciler batches by it).
    stock_read_batch: ClassVar[int] = 50
    # True where fetch_orders pages come in ascending update time over a live list (Shopify's sortKey
    # UPDATED_AT, TikTok's sort_field update_time ASC): a page of orders all changed after a moment means every
    # later page is newer still, so a reader that wants nothing newer may stop there.
    pages_in_update_order: ClassVar[bool] = False
    # True where the channel exports a whole window as one bulk operation for a few points (Shopify), far
    # cheaper than reading it page by page at query cost: reconciliation then reads its window as a backfill
    # does, leaving the account's rate budget to the sync.
    reconcile_in_bulk: ClassVar[bool] = False
    # The share of the channel's reported rate budget this client leaves to the account's other clients (a
    # reconciliation leaves it to the sync and the sends): its calls wait while the budget, as last reported and
    # refilled since, holds less than that share plus their cost. Only a channel that reports its budget
    # (Shopify's throttleStatus) can honour it; elsewhere the reconciler's pace and its yielding to a running
    # sync keep it out of the sync's way.
    budget_reserve: float = 0.0
    # The longest a call waits inside the worker for the channel's rate budget (as the channel last reported
    # it). A longer wait raises ChannelThrottled with the wait as its retry_after instead: the worker slot goes
    # back to the queue, and the sync, drain, relay or reconciliation comes back once the budget has refilled.
    longest_wait: float = 5.0
    # And the most it waits for it in any minute, however short each wait: a sync or drain reading more than the
    # budget restores would otherwise sleep in slices of up to ``longest_wait`` for minutes, holding the worker
    # slot that routing and the stock pushes of every channel need (a flash sale: both slots asleep for 4 min).
    longest_waits_per_minute: float = 10.0

    def read_stock(self, channel_skus: list[str], *, listings: Mapping[str, ListingIds]) -> AdvertisedStock:
        """The quantity the channel advertises now for each SKU (its available-to-sell at the account's
        location or warehouse). ``listings``: the channel ids Waybill knows per SKU, for channels that
        address listings by their own id. Raises ChannelError when the channel cannot answer."""
        raise ChannelUnsupported(f"{self.kind} has no stock read")

    # --- end of reconciliation reads -----------------------------------------------------------

    def pickup_ready(self, order_external_id: str, *, state: dict) -> SendResult:
        """Tell the channel the order's store pickup is ready (only where supports_pickup_ready)."""
        raise ChannelError(f"{type(self).__name__} has no ready-for-pickup call", retryable=False)

    def is_applied(self, kind: str, payload: dict, state: dict) -> bool:
        """Read-before-retry for channels without an idempotency key: did an earlier send land?"""
        return False

    # Auth: tokens renewed once per process and key, and once more when the channel refuses one.
    # Statuses meaning "this access token is refused" (Amazon answers 403, Walmart and eBay 401).
    token_refused_statuses: ClassVar[frozenset[int]] = frozenset({401})
    # How long before its expiry a token is renewed (a channel's option ``token_margin_seconds`` wins).
    token_margin: ClassVar[float] = 0.0

    @cached_property
    def tokens(self) -> RefreshingToken:
        pk = getattr(self.account, "pk", None)
        return RefreshingToken(
            key=(self.kind, pk, self.token_key()),
            current=self.stored_grant,
            exchange=self.exchange_token,
            store=self.store_grant if pk and self.stores_tokens else None,
            margin=float(self.options.get("token_margin_seconds", self.token_margin)),
        )

    # True where the channel's tokens live in the account's credentials (renewed under its row lock);
    # False where they are minted from client credentials or a refresh token and only cached.
    stores_tokens: ClassVar[bool] = False

    def token_key(self) -> Hashable:
        """What the token is minted from, so new credentials never reuse an old token."""
        raise NotImplementedError

    def stored_grant(self) -> TokenGrant:
        """The grant kept in the credentials; minted tokens are not kept there."""
        return TokenGrant(access_token="")

    def exchange_token(self, grant: TokenGrant) -> TokenGrant:
        """The channel's token call: a new grant from ``grant`` (or from the client credentials)."""
        raise NotImplementedError

    def store_grant(self, decide: Callable[[TokenGrant], TokenGrant | None]) -> TokenGrant:
        raise NotImplementedError

    def mint_token(
        self,
        name: str,
        url: str,
        *,
        data: dict[str, str],
        headers: dict[str, str] | None = None,
        default_lifetime: float,
        verb: str = "refresh",
    ) -> TokenGrant:
        """POST an OAuth token request; the grant is used until a minute before the channel's expiry."""
        response = self.http.request("POST", url, data=data, headers=headers or {})
        if response.status_code != 200:
            # Never echo the body: an auth server may repeat what it was sent.
            raise ChannelError(f"{name} token {verb} failed: HTTP {response.status_code}", retryable=False)
        answer = json_body(response, f"{name} token")
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            raise ChannelError(f"{name} token response has no access_token", retryable=False)
        lifetime = float(answer.get("expires_in") or default_lifetime)
        return TokenGrant(access_token=str(token), expires_at=time.time() + max(lifetime - 60, 1))

    def access_token(self) -> str:
        return self.tokens.access_token()

    def with_token(self, send: Callable[[str], Sent], refused: Callable[[Sent], bool]) -> Sent:
        """``send(token)``; when the channel refuses the token, once more with a renewed one."""
        token = self.tokens.access_token()
        sent = send(token)
        if refused(sent):
            sent = send(self.tokens.refresh(token))
        return sent

    def auth_headers(self, token: str, path: str) -> dict[str, str]:
        """The headers that carry ``token`` (and any others every call sends)."""
        raise NotImplementedError

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authorised request; a refused token is renewed and the request sent once more."""
        extra = kwargs.pop("headers", {})

        def send(token: str) -> httpx.Response:
            return self.http.request(method, path, headers={**self.auth_headers(token, path), **extra}, **kwargs)

        return self.with_token(send, lambda response: response.status_code in self.token_refused_statuses)

    # Errors: each channel reads its own error envelope; the message and detail are built here.
    def describe_errors(self, body: Any) -> str:
        """The errors of the channel's error envelope as one line, "" when it names none."""
        return ""

    def describe(self, response: httpx.Response) -> str:
        """The channel's errors in an answer, or its text when it names none."""
        try:
            body = response.json()
        except ValueError:
            body = None
        return (self.describe_errors(body) if body is not None else "") or response.text[:300] or "(empty body)"

    def failure(self, what: str, response: httpx.Response, *, retryable: bool | None = None) -> ChannelError:
        """A ChannelError for a refused call, naming the channel's errors and carrying its whole answer."""
        status = response.status_code
        return ChannelError(
            f"{what}: HTTP {status}: {self.describe(response)}",
            retryable=status >= 500 or status == 429 if retryable is None else retryable,
            status=status,
            detail=error_detail(response),
        )

    # Webhooks.
    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        raise ChannelUnsupported(f"{self.kind} webhooks are not supported")

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        raise ChannelUnsupported(f"{self.kind} webhooks are not supported")

    # --- returns and refunds (issue #18) ------------------------------------------------------------
    # Channels answer refunds through the outbox (kind "refund") and report returns through fetch_returns.

    @classmethod
    def refund_unavailable(cls, *, marketplace_fulfilled: bool, channel_return_id: str) -> str:
        """Why this channel's refund call can't be used for an order ("" when it can): the refund then
        goes to a person as an exception case."""
        return f"{cls.kind or 'this channel'} has no refund call Waybill can use"

    def refund(self, refund: RefundRequest, *, state: dict) -> SendResult:
        """Send a refund; the result's response carries the channel's refund id as ``refund_id``."""
        raise ChannelUnsupported(f"{self.kind} has no refund call")

    def fetch_returns(self, *, since: datetime) -> Iterator[list[NormalizedReturn]]:
        """Pages of the channel's returns (and refunds) changed since ``since``."""
        raise ChannelUnsupported(f"{self.kind} returns are not read")


# --- returns and refunds (issue #18): refunds out through the outbox, channel returns in ------------------


@dataclass(frozen=True)
class RefundLine:
    external_line_id: str
    amount: Decimal
    quantity: int = 0
    channel_sku: str = ""
    # TikTok: one line item per unit.
    external_unit_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class RefundRequest:
    """A refund Waybill sends: ``reference`` (WB-REFUND-<id>) travels in the channel's note/comment field
    so a read before a retry can recognise it."""

    order_external_id: str
    reference: str
    currency: str
    amount: Decimal
    shipping: Decimal
    reason: str
    lines: list[RefundLine]
    # The channel's return this refund settles, where the channel keeps one (Shopify, TikTok).
    channel_return_id: str = ""
    marketplace_id: str = ""


@dataclass(frozen=True)
class ReturnedLine:
    external_line_id: str
    quantity: int
    reason: str = ""
    external_id: str = ""
    channel_sku: str = ""


@dataclass(frozen=True)
class ChannelRefund:
    external_id: str
    amount: Decimal
    currency: str = ""


@dataclass(frozen=True)
class NormalizedReturn:
    """A return as a channel reports it. ``status`` is a returns.models.ReturnStatus value
    (requested, authorized, in_transit, received, completed, rejected, cancelled)."""

    external_id: str
    order_external_id: str
    status: str
    channel_status: str
    lines: list[ReturnedLine]
    reason: str = "other"
    updated_at: datetime | None = None
    refunds: list[ChannelRefund] = field(default_factory=list)
    note: str = ""
    # A return inferred from a refund the channel shows (Walmart lines in status Refund, eBay line refunds):
    # opened only when that refund is not one Waybill sent.
    inferred_from_refund: bool = False
