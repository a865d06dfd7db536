"""Shopify, GraphQL Admin API only (REST is legacy): orders, fulfilment, cancel, inventory, webhooks.

Throttling is cost-based and arrives as HTTP 200 with ``errors[].extensions.code == "THROTTLED"``
and no Retry-After: the client waits (requested cost - currently available) / restore rate and
sends the same request again. Real 429/5xx are retried by ChannelHttp. Shopify sends no ship-by:
it is computed from the account's handling time and cutoff (business days, the account's zone).

Every document fits Shopify's limits as documented: connections carry first/last of at most 250, each
query's requested cost (2 + first x one node per connection, 1 per object) stays under 1,000, and the
bulk backfill nests connections at most two levels. An order has one raw shape (the WaybillOrder fragment, nested
connections completed) whether it came from a list page, order(id:) or the bulk JSONL. The documents are
``.graphql`` files beside this module (graphql/), loaded by channels.connectors.shopify.documents. Inventory is
pushed by inventory item: ``resolve_listings`` finds the variant and inventory item of a SKU with
productVariants(query: "sku:…"), and ``push_inventory`` answers per item.

The query budget (a Standard shop: 2,000 points, refilled 100 a second) is shared by polls, webhook reads,
returns reads, reconciliation and sends. A poll lists the window's ids and update times first (102 points per
100 orders) and reads in full only the orders Waybill does not hold settled at that update (``held_versions``),
several per query (aliased ``order(id:)``, 67 points each), so its overlap window costs a point an order. Each
query waits until the bucket last reported (``throttleStatus``), refilled since, holds its cost, and a read asks
for no more orders than the bucket holds: a 938-point query never waits behind a stream of small ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from channels.connectors.base import (
    AdvertisedStock,
    CancelRequest,
    ChannelError,
    ChannelRefund,
    ChannelThrottled,
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
    order_status_from,
    parse_datetime,
    parse_decimal,
    parse_int,
    require_list,
    require_obj,
    require_str,
)
from channels.connectors.shopify.documents import BULK_ORDERS, DOCUMENTS, orders_by_id, returns_by_id

log = logging.getLogger("waybill.channels.shopify")

# Page sizes sent as variables. Those written into the documents (graphql/*.graphql) and these are chosen
# so that every query's requested cost, computed as Shopify documents it (2 + first x the cost of one node
# for a connection, 1 per object), stays within the 1,000-point single-query limit.
# A full order costs 1 + 4 (money, address, shipping line) + lineItems (2 + 10 x 5) + fulfillmentOrders
# (2 + 2 x 4) = 67 points; 14 of them, 938. Larger nested connections are completed by follow-up reads, so a
# single read asks for the same sizes as a page (it used to ask for 100 lines and 10 fulfillment orders: 549).
ORDER_PAGE_SIZE = 14
LIST_LINE_COUNT = 10
LIST_FULFILLMENT_ORDER_COUNT = 2
GET_LINE_COUNT = LIST_LINE_COUNT
GET_FULFILLMENT_ORDER_COUNT = LIST_FULFILLMENT_ORDER_COUNT
# Ids and update times listed per query in a poll's first step: 2 + 100 x 1 = 102 points.
ORDER_ID_PAGE_SIZE = 100
VARIANT_PAGE = 250
SKUS_PER_LOOKUP = 50

ORDER_IDS_QUERY = DOCUMENTS["order_ids"]
ORDER_QUERY = DOCUMENTS["order"]
ORDER_LINES_QUERY = DOCUMENTS["order_lines"]
ORDER_FULFILLMENT_ORDERS_QUERY = DOCUMENTS["order_fulfillment_orders"]
# What shipping needs: the order's fulfillment orders and their line items with remaining quantities.
FULFILLMENT_PLAN_QUERY = DOCUMENTS["fulfillment_plan"]
FULFILLMENT_ORDER_LINES_QUERY = DOCUMENTS["fulfillment_order_lines"]
# Listings by SKU: the variant (external_listing_id) and its inventory item (external_variant_id).
VARIANTS_BY_SKU_QUERY = DOCUMENTS["variants_by_sku"]
ORDER_FULFILLMENTS_QUERY = DOCUMENTS["order_fulfillments"]
FULFILLMENT_CREATE = DOCUMENTS["fulfillment_create"]
ORDER_CANCEL = DOCUMENTS["order_cancel"]
PREPARED_FOR_PICKUP = DOCUMENTS["prepared_for_pickup"]
# Cancelling part of an order is an order edit: begin, set the lines' new quantities, commit.
ORDER_EDIT_BEGIN = DOCUMENTS["order_edit_begin"]
ORDER_EDIT_SET_QUANTITY = DOCUMENTS["order_edit_set_quantity"]
ORDER_EDIT_COMMIT = DOCUMENTS["order_edit_commit"]
ORDER_CANCELLED_QUERY = DOCUMENTS["order_cancelled"]
INVENTORY_SET = DOCUMENTS["inventory_set"]
REFUND_CREATE = DOCUMENTS["refund_create"]
# Returns: the window's orders listed with whether they have any return or refund (5 points an order), then
# those that have, read by id (84 points each).
ORDER_RETURN_IDS_QUERY = DOCUMENTS["order_return_ids"]
RETURN_APPROVE = DOCUMENTS["return_approve"]
RETURN_DECLINE = DOCUMENTS["return_decline"]
RETURN_STATUS_QUERY = DOCUMENTS["return_status"]
# A refund of a Shopify return processes the return (dispositions and the refund in one call): the return is
# read first (what is processable, the order's sale, and the refunds already made for it).
RETURN_TO_PROCESS = DOCUMENTS["return_to_process"]
RETURN_PROCESS = DOCUMENTS["return_process"]
# Orders listed per query of the returns read (2 + 100 x 5 = 502 points), and read in full per query:
# 11 orders x (1 + returns 2 + 2 x (1 + 2 + 10 x 3) + refunds 5 x 3) = 924 points, under the 1,000 limit.
RETURNS_LIST_SIZE = 100
RETURNS_PAGE_SIZE = 11
INVENTORY_LEVELS = DOCUMENTS["inventory_levels"]  # reconciliation reads
BULK_RUN = DOCUMENTS["bulk_run"]
BULK_POLL = DOCUMENTS["bulk_poll"]


def bulk_orders_query(since: datetime) -> str:
    """The bulk export of orders, the same fields as the order fragment: no ``first`` on connections,
    three connections, nested two levels (orders, then their line items and fulfillment orders)."""
    return BULK_ORDERS.replace("{since}", _iso(since))


RELEASABLE_FINANCIAL = {"PAID", "AUTHORIZED", "PARTIALLY_PAID", "PARTIALLY_REFUNDED", "REFUNDED"}
# Who cancelled, from Shopify's OrderCancelReason: the buyer asked (CUSTOMER), the merchant could not or
# would not fill it (INVENTORY, STAFF, OTHER), or the payment side refused it (FRAUD, DECLINED).
CANCELLED_BY = {
    "CUSTOMER": "buyer",
    "INVENTORY": "seller",
    "STAFF": "seller",
    "OTHER": "seller",
    "FRAUD": "marketplace",
    "DECLINED": "marketplace",
}
CANCEL_REASON = {
    "BuyerCanceled": "CUSTOMER",
    "CustomerExchange": "CUSTOMER",
    "NoInventory": "INVENTORY",
    "Fraud": "FRAUD",
    "PaymentDeclined": "DECLINED",
}


class ShopifyError(ChannelError):
    """Top-level GraphQL errors; ``code`` is the first errors[].extensions.code (MAX_COST_EXCEEDED…)."""

    def __init__(self, message: str, *, code: str = "", **kwargs: Any):
        super().__init__(message, **kwargs)
        self.code = code


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _nodes(connection: Any, path: str) -> list:
    connection = require_obj(connection, path)
    return require_list(connection.get("nodes"), f"{path}.nodes")


class ShopifyConnector(Connector):
    kind = "shopify"
    # GraphQL cost: a mutation costs 10 points, the standard plan restores 100 a second: 10 pushes a second.
    inventory_push_interval: ClassVar[float] = 0.1
    # 5 mutations (50 points) at once of the standard plan's 2,000-point bucket (restored at 100 a second): the
    # rest of the bucket stays for the reads, which spend it far faster.
    inventory_push_burst: ClassVar[int] = 5
    identity_fields = ("id", "updatedAt")
    overlap = timedelta(minutes=2)
    idempotent_kinds = frozenset({"inventory", "refund"})
    supports_pickup_ready = True
    push_needs_listing_ids = True
    page_size: ClassVar[int] = ORDER_PAGE_SIZE
    id_page_size: ClassVar[int] = ORDER_ID_PAGE_SIZE
    list_line_count: ClassVar[int] = LIST_LINE_COUNT
    list_fulfillment_order_count: ClassVar[int] = LIST_FULFILLMENT_ORDER_COUNT
    max_throttle_waits: ClassVar[int] = 40
    least_orders_per_read: ClassVar[int] = 4
    # Every stored webhook nudges a returns read (at most one per 5 s): on a busy shop that alone would spend
    # the whole restore rate (a read lists its 10-minute window: 502 points). The beat reads every minute.
    returns_read_interval: ClassVar[timedelta] = timedelta(seconds=30)
    bulk_poll_interval: ClassVar[float] = 0.5
    bulk_poll_attempts: ClassVar[int] = 1200
    cancel_confirm_attempts: ClassVar[int] = 10

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.throttled = 0
        self.last_cost: dict = {}
        # Pacing by Shopify's throttleStatus: each query's last requested cost, the bucket last reported
        # (available, restore rate, maximum, when), and how many times a query waited for it.
        self._query_costs: dict[tuple, float] = {}
        self._bucket: tuple[float, float, float, float] | None = None
        self.paced = 0
        self._waits: list[tuple[float, float]] = []  # (monotonic start, seconds) of the last minute's waits
        # Orders listed by polls and left unread because Waybill held them at that update already.
        self.poll_stats: dict[str, int] = {"listed": 0, "skipped_held": 0}

    # --- transport -----------------------------------------------------------------------------

    def graphql(self, document: str, variables: dict | None = None) -> dict:
        token = self.credentials.get("access_token")
        if not token:
            raise ChannelError("Shopify credentials lack access_token", retryable=False)
        version = self.account.api_version or "2026-10"
        wait = 1.0
        key = (document, tuple(sorted((k, v) for k, v in (variables or {}).items() if isinstance(v, int))))
        for _ in range(self.max_throttle_waits):
            self._pace(self._query_costs.get(key))
            response = self.http.request(
                "POST",
                f"/admin/api/{version}/graphql.json",
                json={"query": document, "variables": variables or {}},
                headers={"X-Shopify-Access-Token": token},
            )
            if response.status_code in (401, 402, 403, 404, 423):
                raise ChannelError(
                    f"Shopify GraphQL: HTTP {response.status_code}", retryable=False, status=response.status_code
                )
            if response.status_code != 200:
                raise ChannelError(
                    f"Shopify GraphQL: HTTP {response.status_code}: {response.text[:200]}",
                    retryable=response.status_code >= 500,
                    status=response.status_code,
                    detail={"status": response.status_code, "body": response.text[:4000]},
                )
            body = json_body(response, "Shopify GraphQL")
            if not isinstance(body, dict):
                raise ChannelError("Shopify GraphQL: response is not a JSON object", retryable=False)
            cost = (body.get("extensions") or {}).get("cost") or {}
            self.last_cost = cost
            self._note_cost(key, cost)
            errors = body.get("errors")
            if isinstance(errors, list) and errors:
                codes = {((e.get("extensions") or {}).get("code")) for e in errors if isinstance(e, dict)}
                if "THROTTLED" in codes:
                    status = cost.get("throttleStatus") or {}
                    restore = float(status.get("restoreRate") or 50.0)
                    short = float(cost.get("requestedQueryCost") or 0) - float(status.get("currentlyAvailable") or 0)
                    wait = min(max(short / restore, 0.01), 60.0)
                    self.throttled += 1
                    self._wait_for_budget(wait, f"THROTTLED, {short:.0f} points short")
                    continue
                messages = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
                raise ShopifyError(
                    f"Shopify GraphQL errors: {messages[:1000]}",
                    retryable=bool(codes & {"INTERNAL_SERVER_ERROR", "IDEMPOTENCY_CONCURRENT_REQUEST"}),
                    detail={"errors": errors},
                    code=next((c for c in codes if c), ""),
                )
            if errors:
                raise ChannelError(f"Shopify GraphQL errors: {str(errors)[:500]}", retryable=False, detail=errors)
            data = body.get("data")
            if not isinstance(data, dict):
                raise ChannelError("Shopify GraphQL: response has no data", retryable=False)
            return data
        raise ChannelThrottled(f"Shopify still THROTTLED after {self.max_throttle_waits} waits", retry_after=wait)

    def _note_cost(self, key: tuple, cost: dict) -> None:
        """Remember the query's requested cost and the bucket as Shopify last reported it."""
        requested = cost.get("requestedQueryCost")
        if isinstance(requested, int | float) and requested > 0:
            self._query_costs[key] = float(requested)
        status = cost.get("throttleStatus") or {}
        try:
            available = float(status["currentlyAvailable"])
            restore = float(status["restoreRate"])
            maximum = float(status.get("maximumAvailable") or available)
        except (KeyError, TypeError, ValueError):
            return
        if restore > 0:
            self._bucket = (available, restore, maximum, time.monotonic())

    def _affordable(self, most: int) -> int:
        """How many orders to read in the next query: at most ``most``, and no more than the bucket holds now
        (as last reported, refilled since), but at least ``least_orders_per_read`` (fewer would only multiply
        round trips). A query for 14 orders (938 points) would wait for a bucket that the shop's smaller
        queries (mutations, listings) keep taking from: it could wait minutes."""
        per_order = self._query_costs.get(("order", ()))
        if per_order is None or self._bucket is None:
            return most
        available, restore, maximum, at = self._bucket
        projected = min(maximum, available + (time.monotonic() - at) * restore)
        spendable = max(projected - self.budget_reserve * maximum, 0.0)
        return max(min(most, self.least_orders_per_read), min(most, int(spendable // per_order)))

    def _pace(self, cost: float | None) -> None:
        """Wait until the bucket, as Shopify last reported it and refilled since at its restore rate, holds
        what this query cost last time: a query sent into an empty bucket is refused (THROTTLED) and sent
        again anyway. Other clients of the shop spend from the same bucket: THROTTLED stays handled. With a
        ``budget_reserve`` the query also leaves that share of the bucket to the others."""
        if cost is None or self._bucket is None:
            return
        available, restore, maximum, at = self._bucket
        projected = min(maximum, available + (time.monotonic() - at) * restore)
        need = min(cost + self.budget_reserve * maximum, maximum)
        if projected >= need:
            return
        self.paced += 1
        self._wait_for_budget(min((need - projected) / restore, 60.0), f"{need - projected:.0f} points short")

    def _wait_for_budget(self, seconds: float, why: str) -> None:
        """Wait in the worker for the budget to refill, unless that takes longer than ``longest_wait``, or this
        client has already waited ``longest_waits_per_minute`` in the last minute: then the call gives the worker
        slot back (ChannelThrottled with the wait as its retry_after; the sync, the drain, the relay and the
        reconciliation stop at their next boundary and come back then), so one shop's spent budget never holds
        every worker while the other channels' work waits in the queue."""
        now = time.monotonic()
        self._waits = [(at, slept) for at, slept in self._waits if now - at < 60.0]
        waited = sum(slept for _, slept in self._waits)
        if seconds > self.longest_wait:
            raise ChannelThrottled(
                f"Shopify's query budget is spent ({why}): {seconds:.1f} s to refill, longer than a worker "
                f"waits ({self.longest_wait:.0f} s); the work comes back then",
                retry_after=seconds,
            )
        if waited + seconds > self.longest_waits_per_minute:
            raise ChannelThrottled(
                f"Shopify's query budget is spent ({why}): this client already waited {waited:.1f} s for it in "
                f"the last minute (at most {self.longest_waits_per_minute:.0f} s); the work comes back in "
                f"{seconds:.1f} s",
                retry_after=seconds,
            )
        self._waits.append((now, seconds))
        self.http.sleep(seconds)

    # --- reading orders ------------------------------------------------------------------------

    def _rest_of(self, connection: dict, fetch) -> None:
        """Append the pages of a nested connection cut at ``first`` (``fetch(after)`` → the next page),
        then mark it whole, so a completed order has one shape however many reads it took."""
        info = connection.get("pageInfo") or {}
        after = info.get("endCursor") if info.get("hasNextPage") else None
        while after:
            page = fetch(after) or {}
            connection["nodes"].extend(page.get("nodes") or [])
            info = page.get("pageInfo") or {}
            after = info.get("endCursor") if info.get("hasNextPage") else None
        connection["pageInfo"] = {"hasNextPage": False, "endCursor": None}

    def _complete(self, order: dict) -> dict:
        """Fetch the rest of the order's nested connections, in place."""
        if not isinstance(order, dict) or not isinstance(order.get("id"), str):
            return order
        order_id = order["id"]
        for field, document in (
            ("lineItems", ORDER_LINES_QUERY),
            ("fulfillmentOrders", ORDER_FULFILLMENT_ORDERS_QUERY),
        ):
            connection = order.get(field)
            if isinstance(connection, dict) and isinstance(connection.get("nodes"), list):
                self._rest_of(
                    connection,
                    lambda after, field=field, document=document: (
                        self.graphql(document, {"id": order_id, "after": after}).get("order") or {}
                    ).get(field),
                )
        return order

    def fetch_orders(self, *, since: datetime, backfill: bool = False) -> Iterator[OrderPage]:
        """Orders changed since ``since`` in two steps: the ids and update times of the window (one point an
        order), then in full, several per query, only those Waybill does not already hold at that update
        (``held_versions``, when the caller set it). A poll's overlap window re-lists the orders it read last
        time for a point each instead of re-reading them at some 67 points each."""
        if backfill:
            yield from self._bulk_orders(since)
            return
        query = f"updated_at:>='{_iso(since)}'"
        after = None
        page = 0
        while True:
            self._pace(2 + self.id_page_size)  # the listing's requested cost: a connection of one-point nodes
            data = self.graphql(ORDER_IDS_QUERY, {"q": query, "after": after, "first": self.id_page_size})
            connection = require_obj(data.get("orders"), "orders")
            listed = [
                require_obj(node, "orders.nodes[]") for node in require_list(connection.get("nodes"), "orders.nodes")
            ]
            info = connection.get("pageInfo") or {}
            has_next = bool(info.get("hasNextPage") and info.get("endCursor"))
            wanted = self._not_held(listed)
            self.poll_stats["listed"] += len(listed)
            self.poll_stats["skipped_held"] += len(listed) - len(wanted)
            size = self.page_size
            start = 0
            while start < len(wanted):
                chunk = wanted[start : start + self._affordable(size)]
                try:
                    raws = self.get_orders(chunk)
                except ShopifyError as exc:
                    # Shopify may price fields above what it documents: a smaller page always fits.
                    if exc.code != "MAX_COST_EXCEEDED" or size == 1:
                        raise
                    size = max(size // 2, 1)
                    continue
                start += len(chunk)
                page += 1
                yield OrderPage(
                    raw_orders=raws,
                    progress={
                        "page": page,
                        "has_next": has_next or start < len(wanted),
                        "listed": self.poll_stats["listed"],
                        "skipped_held": self.poll_stats["skipped_held"],
                        "paced": self.paced,
                    },
                )
            if not has_next:
                return
            after = info["endCursor"]

    def _not_held(self, listed: list[dict]) -> list[str]:
        """The listed order ids to read: all, less those Waybill holds at their listed update or newer."""
        ids = [require_str(node, "id", "orders.nodes[]", max_length=128) for node in listed]
        if self.held_versions is None or not ids:
            return ids
        held = self.held_versions(ids)
        wanted = []
        for node, order_id in zip(listed, ids, strict=True):
            updated = parse_datetime(node.get("updatedAt"), "orders.nodes[].updatedAt")
            mine = held.get(order_id)
            if mine is None or mine < updated:
                wanted.append(order_id)
        return wanted

    def get_orders(self, external_ids: list[str]) -> list[dict]:
        """Several orders in one query (aliased ``order(id:)``, each as the fragment, then completed), in the
        order asked; an id Shopify no longer has (deleted) is left out."""
        if not external_ids:
            return []
        variables: dict[str, Any] = {f"id{i}": order_id for i, order_id in enumerate(external_ids)}
        variables["lineCount"] = self.list_line_count
        variables["fulfillmentOrderCount"] = self.list_fulfillment_order_count
        per_order = self._query_costs.get(("order", ()))
        if per_order is not None:
            self._pace(per_order * len(external_ids))
        data = self.graphql(orders_by_id(len(external_ids)), variables)
        requested = self.last_cost.get("requestedQueryCost")
        if isinstance(requested, int | float) and requested > 0:
            self._query_costs[("order", ())] = float(requested) / len(external_ids)
        orders = []
        for i, order_id in enumerate(external_ids):
            order = data.get(f"o{i}")
            if order is None:
                log.info("Shopify order %s listed but no longer readable (deleted)", order_id)
                continue
            orders.append(self._complete(require_obj(order, f"o{i}")))
        return orders

    def _bulk_orders(self, since: datetime) -> Iterator[OrderPage]:
        data = self.graphql(BULK_RUN, {"query": bulk_orders_query(since)})
        run = data.get("bulkOperationRunQuery") or {}
        errors = run.get("userErrors") or []
        if errors:
            # A refused query (INVALID) fails the same way every time; only a busy shop is worth retrying.
            busy = all(e.get("code") in ("OPERATION_IN_PROGRESS", "LIMIT_REACHED") for e in errors)
            raise ChannelError(
                "bulkOperationRunQuery refused the backfill: "
                + "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors),
                retryable=busy,
                detail={"userErrors": errors},
            )
        bulk_id = (run.get("bulkOperation") or {}).get("id")
        if not bulk_id:
            raise ChannelError("bulkOperationRunQuery returned no operation", retryable=True, detail=run)
        for _ in range(self.bulk_poll_attempts):
            status = self.graphql(BULK_POLL, {"id": bulk_id}).get("bulkOperation") or {}
            if status.get("status") == "COMPLETED":
                break
            if status.get("status") in ("FAILED", "CANCELED", "CANCELING", "EXPIRED"):
                raise ChannelError(
                    f"bulk operation {bulk_id} {status.get('status')}: {status.get('errorCode')}", detail=status
                )
            time.sleep(self.bulk_poll_interval)
        else:
            raise ChannelError(f"bulk operation {bulk_id} did not finish in time")
        orders: list[dict] = []
        if status.get("url"):
            response = self.http.request("GET", status["url"])
            if response.status_code != 200:
                raise ChannelError(f"bulk result download: HTTP {response.status_code}")
            orders = assemble_bulk_orders(response.text)
        for start in range(0, max(len(orders), 1), 100):
            yield OrderPage(
                raw_orders=orders[start : start + 100],
                progress={"bulk_operation": bulk_id, "offset": start, "total": len(orders)},
            )

    def get_order(self, external_id: str) -> dict:
        variables = {
            "id": external_id,
            "lineCount": GET_LINE_COUNT,
            "fulfillmentOrderCount": GET_FULFILLMENT_ORDER_COUNT,
        }
        order = self.graphql(ORDER_QUERY, variables).get("order")
        if order is None:
            raise ChannelError(f"order {external_id} not found", retryable=False, status=404)
        return self._complete(order)

    def ship_by(self, placed: datetime) -> datetime:
        """Placed + handling days (business days), at the cutoff in the account's zone."""
        try:
            zone = ZoneInfo(self.account.timezone or "UTC")
        except ZoneInfoNotFoundError:
            zone = ZoneInfo("UTC")
        local = placed.astimezone(zone)
        day: date = local.date()
        cutoff = self.account.cutoff_time
        if cutoff and local.time() > cutoff:
            day += timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        for _ in range(self.account.handling_time_days):
            day += timedelta(days=1)
            while day.weekday() >= 5:
                day += timedelta(days=1)
        return datetime.combine(day, cutoff or clock(23, 59), zone).astimezone(UTC)

    def parse_order(self, raw: dict) -> NormalizedOrder:
        """A GraphQL order (the WaybillOrder fragment), or an orders/* webhook body (REST-shaped) read the same way."""
        raw = require_obj(raw, "order")
        if "admin_graphql_api_id" in raw and "line_items" in raw:
            raw = graphql_order_from_rest(raw)
        order_id = require_str(raw, "id", "", max_length=128)
        if not order_id.startswith("gid://shopify/Order/"):
            raise PayloadError("id", f"not an Order GID: {order_id[:60]!r}")
        placed = parse_datetime(raw.get("createdAt"), "createdAt")
        updated = parse_datetime(raw.get("updatedAt"), "updatedAt")
        cancelled_at = parse_datetime(raw.get("cancelledAt"), "cancelledAt", required=False)
        currency = require_str(raw, "currencyCode", "", max_length=3)
        financial = str(raw.get("displayFinancialStatus") or "")
        fulfillment = require_str(raw, "displayFulfillmentStatus", "", max_length=32)
        nodes = _nodes(raw.get("lineItems"), "lineItems")
        if not nodes:
            raise PayloadError("lineItems.nodes", "is empty")
        ship_by = self.ship_by(placed)
        lines = []
        for index, node in enumerate(nodes):
            path = f"lineItems.nodes[{index}]"
            node = require_obj(node, path)
            line_id = require_str(node, "id", path, max_length=128)
            quantity = parse_int(node.get("quantity"), f"{path}.quantity", minimum=1)
            current = parse_int(node.get("currentQuantity"), f"{path}.currentQuantity", default=quantity)
            unfulfilled = parse_int(node.get("unfulfilledQuantity"), f"{path}.unfulfilledQuantity", default=current)
            if current > quantity:
                raise PayloadError(f"{path}.currentQuantity", f"{current} exceeds quantity {quantity}")
            if unfulfilled > current:
                raise PayloadError(f"{path}.unfulfilledQuantity", f"{unfulfilled} exceeds currentQuantity {current}")
            shipped = current - unfulfilled
            cancelled = quantity - shipped if cancelled_at else quantity - current
            price = require_obj(node.get("originalUnitPriceSet"), f"{path}.originalUnitPriceSet", required=False)
            money = require_obj(price.get("shopMoney"), f"{path}.originalUnitPriceSet.shopMoney", required=False)
            variant = require_obj(node.get("variant"), f"{path}.variant", required=False)
            item = require_obj(variant.get("inventoryItem"), f"{path}.variant.inventoryItem", required=False)
            sku = node.get("sku")
            if sku is not None and not isinstance(sku, str):
                raise PayloadError(f"{path}.sku", f"expected a string, got {type(sku).__name__}")
            lines.append(
                NormalizedLine(
                    external_id=line_id,
                    channel_sku=(sku or f"NOSKU:{line_id.rsplit('/', 1)[-1]}")[:128],
                    quantity=quantity,
                    unit_price=parse_decimal(
                        money.get("amount"), f"{path}.originalUnitPriceSet.shopMoney.amount", default=0
                    ),
                    title=str(node.get("name") or "")[:500],
                    channel_status=fulfillment,
                    quantity_shipped=shipped,
                    quantity_cancelled=cancelled,
                    ship_by=ship_by,
                    external_variant_id=str(item.get("id") or ""),
                )
            )
        status = order_status_from(
            cancelled=bool(cancelled_at),
            fulfilled=fulfillment == "FULFILLED",
            partly_fulfilled=fulfillment == "PARTIALLY_FULFILLED",
            releasable=financial in RELEASABLE_FINANCIAL,
        )
        total_set = require_obj(raw.get("totalPriceSet"), "totalPriceSet", required=False)
        total_money = require_obj(total_set.get("shopMoney"), "totalPriceSet.shopMoney", required=False)
        total = (
            parse_decimal(total_money["amount"], "totalPriceSet.shopMoney.amount") if "amount" in total_money else None
        )
        address = require_obj(raw.get("shippingAddress"), "shippingAddress", required=False)
        ship_to = None
        if address:
            name = address.get("name") or " ".join(
                part for part in (address.get("firstName"), address.get("lastName")) if part
            )
            ship_to = normalized_address(
                name=name,
                line1=address.get("address1"),
                line2=address.get("address2"),
                city=address.get("city"),
                region=address.get("provinceCode"),
                postal_code=address.get("zip"),
                country_code=address.get("countryCodeV2"),
                phone=address.get("phone") or raw.get("phone"),
                email=raw.get("email"),
            )
        shipping_line = require_obj(raw.get("shippingLine"), "shippingLine", required=False)
        shipping_method = str(shipping_line.get("title") or shipping_line.get("code") or "")[:64]
        cancel_reason = raw.get("cancelReason")
        if cancel_reason is not None and cancel_reason not in CANCELLED_BY:
            raise PayloadError("cancelReason", f"not an OrderCancelReason: {str(cancel_reason)[:40]!r}")
        pickup_ref, pickup_name = _pickup_location(raw)
        return NormalizedOrder(
            service_level="pickup" if pickup_ref else "ship",
            pickup_location_ref=pickup_ref,
            pickup_location_name=pickup_name,
            external_id=order_id,
            external_reference=str(raw.get("name") or "")[:128],
            placed_at=placed,
            updated_at=updated,
            currency=currency,
            status=status,
            channel_status=f"{financial or 'NONE'}/{fulfillment}"[:64],
            lines=lines,
            total_amount=total,
            ship_to=ship_to,
            ship_by=ship_by,
            shipping_method=shipping_method,
            cancelled_by=CANCELLED_BY.get(cancel_reason or "", "") if cancelled_at else "",
            # Shopify has no marketplaces within a shop.
            marketplace_id="",
        )

    # --- writes --------------------------------------------------------------------------------

    def _fulfillment_orders(self, order_id: str) -> list[dict]:
        """Every fulfillment order of the order with all its line items (remaining quantities)."""
        connection = {"pageInfo": {"hasNextPage": True, "endCursor": None}, "nodes": []}
        after = None
        while True:
            order = self.graphql(FULFILLMENT_PLAN_QUERY, {"id": order_id, "after": after}).get("order")
            if order is None:
                raise ChannelError(f"order {order_id} not found", retryable=False, status=404)
            page = require_obj(order.get("fulfillmentOrders"), "order.fulfillmentOrders")
            connection["nodes"].extend(_nodes(page, "order.fulfillmentOrders"))
            info = page.get("pageInfo") or {}
            if not info.get("hasNextPage") or not info.get("endCursor"):
                break
            after = info["endCursor"]
        for fo in connection["nodes"]:
            self._rest_of(
                fo["lineItems"],
                lambda after, fo_id=fo["id"]: (
                    self.graphql(FULFILLMENT_ORDER_LINES_QUERY, {"id": fo_id, "after": after}).get("fulfillmentOrder")
                    or {}
                ).get("lineItems"),
            )
        return connection["nodes"]

    def confirm_shipment(self, shipment: ShipmentConfirmation, *, state: dict) -> SendResult:
        wanted = {line.external_line_id: line.quantity for line in shipment.lines}
        by_fo: dict[str, list[dict]] = {}
        for fo in self._fulfillment_orders(shipment.order_external_id):
            if fo.get("status") not in ("OPEN", "IN_PROGRESS") or fo["id"] in state.get("done", []):
                continue
            for item in fo["lineItems"]["nodes"]:
                line_id = item["lineItem"]["id"]
                take = min(wanted.get(line_id, 0), item["remainingQuantity"])
                if take > 0:
                    by_fo.setdefault(fo["id"], []).append({"id": item["id"], "quantity": take})
                    wanted[line_id] -= take
        short = {line: quantity for line, quantity in wanted.items() if quantity > 0}
        if short and not state.get("done"):
            raise ChannelError(
                f"nothing left to fulfil for line(s) {short} on {shipment.order_external_id}", retryable=False
            )
        created = []
        for fo_id, items in by_fo.items():
            tracking = {"company": shipment.carrier_name or shipment.carrier_code, "number": shipment.tracking_number}
            if shipment.tracking_url:
                tracking["url"] = shipment.tracking_url
            data = self.graphql(
                FULFILLMENT_CREATE,
                {
                    "fulfillment": {
                        "lineItemsByFulfillmentOrder": [
                            {"fulfillmentOrderId": fo_id, "fulfillmentOrderLineItems": items}
                        ],
                        "trackingInfo": tracking,
                        "notifyCustomer": True,
                    },
                    "message": f"Waybill package {shipment.package_reference}",
                },
            )
            result = data.get("fulfillmentCreate") or {}
            if result.get("userErrors"):
                raise ChannelError(
                    f"fulfillmentCreate: {'; '.join(e.get('message', '') for e in result['userErrors'])}",
                    retryable=False,
                )
            state.setdefault("done", []).append(fo_id)
            created.append((result.get("fulfillment") or {}).get("id"))
        return SendResult(response={"fulfillments": created}, state=state)

    def is_applied(self, kind: str, payload: dict, state: dict) -> bool:
        if kind == "ship_confirmation":
            order = self.graphql(ORDER_FULFILLMENTS_QUERY, {"id": payload["order_external_id"]}).get("order") or {}
            numbers = {t.get("number") for f in order.get("fulfillments") or [] for t in f.get("trackingInfo") or []}
            return payload["tracking_number"] in numbers
        if kind == "cancellation":
            order = self.graphql(ORDER_CANCELLED_QUERY, {"id": payload["order_external_id"]}).get("order") or {}
            return bool(order.get("cancelledAt"))
        if kind == "return_decision":  # issue #18: decided once the return has left REQUESTED
            found = self.graphql(RETURN_STATUS_QUERY, {"id": payload["channel_return_id"]}).get("return") or {}
            return found.get("status") not in (None, "REQUESTED")
        return False

    def cancel_lines(self, cancel: CancelRequest, *, state: dict) -> SendResult:
        """Every open unit of an order with nothing fulfilled: orderCancel. Anything less (some lines, some
        units of a line, or an order already partly fulfilled): an order edit lowering those lines."""
        if cancel.lines or state.get("targets"):
            order = self.get_order(cancel.order_external_id)
            nodes = order["lineItems"]["nodes"]
            wanted = {line.external_line_id: line.quantity for line in cancel.lines}
            unfulfilled = {n["id"]: n.get("unfulfilledQuantity") or 0 for n in nodes}
            whole = (
                not state.get("targets")
                and {line_id for line_id, units in unfulfilled.items() if units} == set(wanted)
                and all(wanted[line_id] >= unfulfilled[line_id] for line_id in wanted)
                and all((n.get("unfulfilledQuantity") or 0) == (n.get("currentQuantity") or 0) for n in nodes)
            )
            if not whole:
                return self._cancel_by_edit(cancel, nodes, state)
        if not state.get("job_id"):
            data = self.graphql(
                ORDER_CANCEL,
                {
                    "orderId": cancel.order_external_id,
                    "reason": CANCEL_REASON.get(cancel.reason, "OTHER"),
                    # Waybill owns availability and pushes it; Shopify's own restock would double count.
                    "restock": False,
                    "notifyCustomer": True,
                    "staffNote": f"Cancelled by Waybill: {cancel.reason}"[:255],
                },
            )
            result = data.get("orderCancel") or {}
            errors = result.get("orderCancelUserErrors") or []
            if errors:
                if any("already been canceled" in e.get("message", "") for e in errors):
                    return SendResult(response={"already_cancelled": True}, already_applied=True)
                raise ChannelError(f"orderCancel: {'; '.join(e.get('message', '') for e in errors)}", retryable=False)
            state["job_id"] = (result.get("job") or {}).get("id")
        for _ in range(self.cancel_confirm_attempts):
            order = self.graphql(ORDER_CANCELLED_QUERY, {"id": cancel.order_external_id}).get("order") or {}
            if order.get("cancelledAt"):
                return SendResult(
                    response={"cancelled_at": order["cancelledAt"], "job_id": state["job_id"]}, state=state
                )
            time.sleep(0.2)
        raise ChannelError("orderCancel accepted but the order is not cancelled yet; will re-read", retryable=True)

    def pickup_ready(self, order_external_id: str, *, state: dict) -> SendResult:
        """Mark the order's open local-pickup fulfillment orders prepared: Shopify tells the buyer."""
        ready = [
            fo["id"]
            for fo in self._fulfillment_orders(order_external_id)
            if (fo.get("deliveryMethod") or {}).get("methodType") == "PICK_UP"
            and fo.get("status") in ("OPEN", "IN_PROGRESS")
            and fo["id"] not in state.get("done", [])
        ]
        if not ready and not state.get("done"):
            raise ChannelError(f"order {order_external_id} has no open local-pickup fulfillment order", retryable=False)
        if ready:
            result = (
                self.graphql(
                    PREPARED_FOR_PICKUP,
                    {"input": {"lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": fo_id} for fo_id in ready]}},
                ).get("fulfillmentOrderLineItemsPreparedForPickup")
                or {}
            )
            _raise_user_errors("fulfillmentOrderLineItemsPreparedForPickup", result)
            state.setdefault("done", []).extend(ready)
        return SendResult(response={"prepared": state.get("done", [])}, state=state)

    def _cancel_by_edit(self, cancel: CancelRequest, nodes: list[dict], state: dict) -> SendResult:
        """Set each line's quantity to what it keeps. The targets are absolute (Waybill's own count, else
        read once and remembered in ``state``), so a resend after a lost answer lowers nothing twice."""
        by_id = {n["id"]: n for n in nodes}
        targets = dict(state.get("targets") or {})
        for line in cancel.lines:
            if line.external_line_id in targets:
                continue
            node = by_id.get(line.external_line_id)
            if node is None:
                raise ChannelError(
                    f"line {line.external_line_id} is not on order {cancel.order_external_id}", retryable=False
                )
            current = node.get("currentQuantity") or 0
            unfulfilled = node.get("unfulfilledQuantity") or 0
            keep = cancel.keep.get(line.external_line_id, current - line.quantity)
            if current - keep > unfulfilled:
                raise ChannelError(
                    f"line {line.external_line_id}: cannot remove {current - keep} unit(s), only {unfulfilled} "
                    "are unfulfilled on Shopify",
                    retryable=False,
                )
            targets[line.external_line_id] = max(keep, 0)
        state["targets"] = targets
        pending = {
            line_id: keep for line_id, keep in targets.items() if (by_id[line_id].get("currentQuantity") or 0) > keep
        }
        if not pending:
            return SendResult(response={"quantities": targets}, state=state, already_applied=True)
        begin = self.graphql(ORDER_EDIT_BEGIN, {"id": cancel.order_external_id}).get("orderEditBegin") or {}
        _raise_user_errors("orderEditBegin", begin)
        calculated = begin["calculatedOrder"]
        # A calculated line item carries the number of the line item it stands for.
        calc_ids = {node["id"].rsplit("/", 1)[-1]: node["id"] for node in calculated["lineItems"]["nodes"]}
        for line_id, keep in sorted(pending.items()):
            calc_id = calc_ids.get(line_id.rsplit("/", 1)[-1])
            if calc_id is None:
                raise ChannelError(f"line {line_id} is not in Shopify's order edit", retryable=False)
            result = (
                self.graphql(
                    ORDER_EDIT_SET_QUANTITY, {"id": calculated["id"], "lineItemId": calc_id, "quantity": keep}
                ).get("orderEditSetQuantity")
                or {}
            )
            _raise_user_errors("orderEditSetQuantity", result)
        commit = (
            self.graphql(
                ORDER_EDIT_COMMIT,
                {
                    "id": calculated["id"],
                    "notifyCustomer": True,
                    "staffNote": f"Cancelled by Waybill: {cancel.reason}"[:255],
                },
            ).get("orderEditCommit")
            or {}
        )
        _raise_user_errors("orderEditCommit", commit)
        return SendResult(response={"quantities": targets, "edited": sorted(pending)}, state=state)

    def resolve_listings(self, channel_skus: list[str]) -> dict[str, ListingIds]:
        """productVariants(query: "sku:… OR sku:…"), batched. Shopify's search matches loosely (case,
        tokens), so only a variant whose ``sku`` is exactly the channel SKU counts; a SKU carried by
        two variants is left unresolved (a push to one of them would leave the other advertising stale
        stock) and the caller's "not found" case brings it to a person."""
        wanted = [sku for sku in dict.fromkeys(channel_skus) if sku and sku.strip()]
        found: dict[str, list[dict]] = {}
        for start in range(0, len(wanted), SKUS_PER_LOOKUP):
            batch = wanted[start : start + SKUS_PER_LOOKUP]
            query = " OR ".join(f"sku:{_search_value(sku)}" for sku in batch)
            after = None
            while True:
                data = self.graphql(VARIANTS_BY_SKU_QUERY, {"q": query, "first": VARIANT_PAGE, "after": after})
                connection = require_obj(data.get("productVariants"), "productVariants")
                for node in _nodes(connection, "productVariants"):
                    if isinstance(node, dict) and node.get("sku") in batch:
                        found.setdefault(node["sku"], []).append(node)
                info = connection.get("pageInfo") or {}
                if not info.get("hasNextPage") or not info.get("endCursor"):
                    break
                after = info["endCursor"]
        resolved = {}
        for sku, variants in found.items():
            distinct = {v.get("id") for v in variants}
            if len(distinct) != 1:
                log.warning("Shopify SKU %r is on %d variants; not resolved", sku, len(distinct))
                continue
            variant = variants[0]
            item = (variant.get("inventoryItem") or {}).get("id") or ""
            resolved[sku] = ListingIds(external_listing_id=str(variant.get("id") or ""), external_variant_id=str(item))
        return resolved

    def push_inventory(self, quantities: list[InventoryQuantity], *, idempotency_key: str, state: dict) -> SendResult:
        """inventorySetQuantities for every item with an inventory item id; the answer per item.

        Shopify applies a set as a whole: when it refuses some quantities (userErrors naming their
        index) nothing is applied, so those are recorded as rejected and the rest are sent again under
        a key derived from the original and the refused items (a resend of the message derives the
        same keys, so Shopify still applies each set once)."""
        location = self.account.inventory_location_id
        if not location:
            raise ChannelError("Shopify account has no inventory_location_id (a Location GID)", retryable=False)
        rejected: dict[str, str] = {
            q.channel_sku: "no Shopify inventory item id known for this SKU (listing not resolved)"
            for q in quantities
            if not q.external_variant_id
        }
        pending = [q for q in quantities if q.external_variant_id]
        groups: list[str] = []
        key = idempotency_key
        while pending:
            variables = {
                "key": key,
                "input": {
                    "name": "available",
                    "reason": "correction",
                    "referenceDocumentUri": f"gid://waybill/InventoryPush/{idempotency_key[:24]}",
                    # null opts out of compare-and-set: Waybill is the source of truth for availability.
                    "quantities": [
                        {
                            "inventoryItemId": q.external_variant_id,
                            "locationId": location,
                            "quantity": q.quantity,
                            "changeFromQuantity": None,
                        }
                        for q in pending
                    ],
                },
            }
            result = self.graphql(INVENTORY_SET, variables).get("inventorySetQuantities") or {}
            errors = result.get("userErrors") or []
            if not errors:
                groups.append(str((result.get("inventoryAdjustmentGroup") or {}).get("id") or ""))
                break
            refused: dict[int, str] = {}
            for error in errors:
                index = _quantity_index(error.get("field"))
                if index is None or index >= len(pending):
                    retry = error.get("code") == "IDEMPOTENCY_CONCURRENT_REQUEST"
                    raise ChannelError(
                        f"inventorySetQuantities: {'; '.join(str(e.get('message')) for e in errors)}",
                        retryable=retry,
                        detail={"userErrors": errors},
                    )
                message = f"{error.get('code') or 'INVALID'}: {error.get('message')}"
                refused[index] = f"{refused[index]}; {message}" if index in refused else message
            for index, reason in refused.items():
                rejected[pending[index].channel_sku] = reason[:500]
            pending = [q for index, q in enumerate(pending) if index not in refused]
            refused_skus = ",".join(sorted(rejected))
            key = hashlib.sha256(f"{idempotency_key}:without:{refused_skus}".encode()).hexdigest()
        acknowledged = {q.channel_sku: q.quantity for q in pending}
        return SendResult(
            response={"adjustment_groups": [g for g in groups if g], "rejected": rejected},
            acknowledged=acknowledged,
            rejected=rejected,
        )

    # --- returns and refunds (issue #18): returnProcess, refundCreate @idempotent, Order.returns / refunds --

    @classmethod
    def refund_unavailable(cls, *, marketplace_fulfilled: bool, channel_return_id: str) -> str:
        return ""

    def refund(self, refund: RefundRequest, *, state: dict) -> SendResult:
        """A refund of a Shopify return processes that return (``returnProcess``); any other refund, or one
        whose units the return no longer holds, is a ``refundCreate``."""
        if refund.channel_return_id.startswith("gid://shopify/Return/"):
            processed = self._return_process(refund)
            if processed is not None:
                return processed
        return self._refund_create(refund)

    def _return_process(self, refund: RefundRequest) -> SendResult | None:
        """``returnProcess`` of the refund's Shopify return: its return line items for the refunded units, each
        disposed NOT_RESTOCKED (Waybill restocks by its own dispositions and pushes the quantity; a RESTOCKED
        unit at Shopify would count twice), the refund's shipping, and one financial transfer of the whole
        amount against the order's sale. Shopify documents no idempotency key for ``returnProcess``: the
        return is read first, and a refund on it whose note carries this refund's reference means it was
        applied (a resend after a lost answer). None when the return holds none of the refund's units (a
        refund of money only, or units processed otherwise): the caller refunds with ``refundCreate``."""
        found = self.graphql(RETURN_TO_PROCESS, {"id": refund.channel_return_id}).get("return")
        if found is None:
            raise ChannelError(f"Shopify return {refund.channel_return_id} does not exist", retryable=False)
        ret = require_obj(found, "return")
        for node in (require_obj(ret.get("refunds"), "return.refunds", required=False).get("nodes")) or []:
            if str(node.get("note") or "").startswith(f"{refund.reference}:"):
                return SendResult(
                    response={
                        "refund_id": str(node.get("id") or ""),
                        "note": node.get("note"),
                        "return_id": ret.get("id"),
                        "return_status": ret.get("status"),
                        "read_before_retry": "already applied",
                    },
                    already_applied=True,
                )
        processable: dict[str, list[tuple[str, int]]] = {}
        for node in (require_obj(ret.get("returnLineItems"), "return.returnLineItems").get("nodes")) or []:
            line = (((node.get("fulfillmentLineItem") or {}).get("lineItem")) or {}).get("id")
            units = int(node.get("processableQuantity") or 0)
            if line and units > 0:
                processable.setdefault(str(line), []).append((str(node["id"]), units))
        reverse_items: dict[str, str] = {}
        for reverse in (
            require_obj(ret.get("reverseFulfillmentOrders"), "return.reverseFulfillmentOrders").get("nodes")
        ) or []:
            for node in ((reverse.get("lineItems") or {}).get("nodes")) or []:
                line = (((node.get("fulfillmentLineItem") or {}).get("lineItem")) or {}).get("id")
                if line:
                    reverse_items.setdefault(str(line), str(node["id"]))
        items = []
        for wanted in refund.lines:
            left = wanted.quantity
            for item_id, units in processable.get(_line_gid(wanted.external_line_id), []):
                if left <= 0:
                    break
                taken = min(left, units)
                left -= taken
                item: dict[str, Any] = {"id": item_id, "quantity": taken}
                reverse_id = reverse_items.get(_line_gid(wanted.external_line_id))
                if reverse_id:
                    item["dispositions"] = [
                        {
                            "reverseFulfillmentOrderLineItemId": reverse_id,
                            "quantity": taken,
                            "dispositionType": "NOT_RESTOCKED",
                        }
                    ]
                items.append(item)
        if not items:
            return None
        if ret.get("status") != "OPEN":
            raise ChannelError(
                f"Shopify return {refund.channel_return_id} is {ret.get('status')}: only an OPEN return is processed",
                retryable=False,
                detail={"return_status": ret.get("status")},
            )
        order = require_obj(ret.get("order"), "return.order")
        currency = str(order.get("currencyCode") or refund.currency)
        sale = next(
            (
                t
                for t in order.get("transactions") or []
                if t.get("kind") in ("SALE", "CAPTURE") and t.get("status") == "SUCCESS"
            ),
            None,
        )
        process: dict[str, Any] = {
            "returnId": ret["id"],
            "returnLineItems": items,
            "note": f"{refund.reference}: {refund.reason}"[:255],
            "notifyCustomer": False,
        }
        if refund.amount > 0:
            if sale is None:
                raise ChannelError(
                    f"Shopify order of return {refund.channel_return_id} has no successful sale to refund",
                    retryable=False,
                )
            process["financialTransfer"] = {
                "issueRefund": {
                    "orderTransactions": [
                        {
                            "transactionAmount": {"amount": f"{refund.amount:.2f}", "currencyCode": currency},
                            "parentId": sale["id"],
                        }
                    ]
                }
            }
        if refund.shipping > 0:
            process["refundShipping"] = {
                "shippingRefundAmount": {"amount": f"{refund.shipping:.2f}", "currencyCode": currency}
            }
        result = self.graphql(RETURN_PROCESS, {"input": process}).get("returnProcess") or {}
        _raise_user_errors(f"returnProcess {refund.channel_return_id}", result)
        # The payload names the return, not the refund: the refund made is the one carrying the reference.
        after = require_obj(self.graphql(RETURN_TO_PROCESS, {"id": ret["id"]}).get("return"), "return")
        made = next(
            (
                node
                for node in ((after.get("refunds") or {}).get("nodes")) or []
                if str(node.get("note") or "").startswith(f"{refund.reference}:")
            ),
            {},
        )
        return SendResult(
            response={
                "refund_id": str(made.get("id") or ""),
                "note": made.get("note"),
                "return_id": ret["id"],
                "return_status": (result.get("return") or {}).get("status") or after.get("status"),
            }
        )

    def _refund_create(self, refund: RefundRequest) -> SendResult:
        """refundCreate with the outbox message's own idempotency key (Shopify applies a key once): line
        items with units refunded (no restock at Shopify: Waybill restocks by disposition), shipping, and one
        REFUND transaction of the whole amount. ``note`` carries Waybill's reference."""
        order_id = refund.order_external_id
        if not order_id.startswith("gid://"):
            order_id = f"gid://shopify/Order/{order_id}"
        refund_input: dict[str, Any] = {
            "orderId": order_id,
            "note": f"{refund.reference}: {refund.reason}"[:255],
            "notify": False,
            "refundLineItems": [
                {"lineItemId": _line_gid(line.external_line_id), "quantity": line.quantity, "restockType": "NO_RESTOCK"}
                for line in refund.lines
                if line.quantity > 0
            ],
            "transactions": [
                {"orderId": order_id, "amount": f"{refund.amount:.2f}", "gateway": "shopify_payments", "kind": "REFUND"}
            ],
        }
        if refund.shipping > 0:
            refund_input["shipping"] = {"amount": f"{refund.shipping:.2f}"}
        key = f"waybill-{refund.reference}"
        result = self.graphql(REFUND_CREATE, {"input": refund_input, "key": key}).get("refundCreate") or {}
        _raise_user_errors(f"refundCreate {refund.order_external_id}", result)
        made = result.get("refund") or {}
        return SendResult(response={"refund_id": str(made.get("id") or ""), "note": made.get("note")})

    decides_returns = True

    def return_decision(self, *, channel_return_id: str, approve: bool, reason: str, state: dict) -> SendResult:
        """returnApproveRequest / returnDeclineRequest (no idempotency key: the read before a retry looks at
        the return's status)."""
        if approve:
            data = self.graphql(RETURN_APPROVE, {"input": {"id": channel_return_id, "notifyCustomer": True}})
            result = data.get("returnApproveRequest") or {}
        else:
            decline = {
                "id": channel_return_id,
                "declineReason": "OTHER",
                "declineNote": reason[:255],
                "notifyCustomer": True,
            }
            result = self.graphql(RETURN_DECLINE, {"input": decline}).get("returnDeclineRequest") or {}
        _raise_user_errors(f"return decision {channel_return_id}", result)
        made = result.get("return") or {}
        return SendResult(response={"return_id": made.get("id"), "status": made.get("status")})

    def fetch_returns(self, *, since: datetime) -> Iterator[list[NormalizedReturn]]:
        """Orders updated since ``since`` with their returns and refunds (a return or a refund updates the order):
        the window is listed with a flag of each (one return id, one refund id), and only the orders that have
        any are read in full; most orders have neither, and a list page of them in full cost 84 points each."""
        after = None
        while True:
            self._pace(2 + RETURNS_LIST_SIZE * 5)
            variables = {"first": RETURNS_LIST_SIZE, "after": after, "query": f"updated_at:>='{_iso(since)}'"}
            connection = require_obj(self.graphql(ORDER_RETURN_IDS_QUERY, variables).get("orders"), "orders")
            wanted = []
            for index, node in enumerate(require_list(connection.get("nodes"), "orders.nodes")):
                node = require_obj(node, f"orders.nodes[{index}]")
                returns = require_obj(node.get("returns"), f"orders.nodes[{index}].returns", required=False)
                if returns.get("nodes") or node.get("refunds"):
                    wanted.append(require_str(node, "id", f"orders.nodes[{index}]", max_length=128))
            for start in range(0, len(wanted), RETURNS_PAGE_SIZE):
                chunk = wanted[start : start + RETURNS_PAGE_SIZE]
                data = self.graphql(returns_by_id(len(chunk)), {f"id{i}": gid for i, gid in enumerate(chunk)})
                page: list[NormalizedReturn] = []
                for i in range(len(chunk)):
                    node = data.get(f"o{i}")
                    if node is not None:  # deleted since it was listed
                        page.extend(_shopify_returns(require_obj(node, f"o{i}")))
                yield page
            info = connection.get("pageInfo") or {}
            if not info.get("hasNextPage") or not info.get("endCursor"):
                return
            after = info["endCursor"]

    # --- reconciliation reads (channels/reconcile.py) ------------------------------------------

    stock_read_batch = SKUS_PER_LOOKUP
    pages_in_update_order = True
    reconcile_in_bulk = True

    def read_stock(self, channel_skus: list[str], *, listings: Mapping[str, ListingIds]) -> AdvertisedStock:
        """inventoryItems(query: "sku:… OR sku:…") with each item's ``available`` quantity at the account's
        location, batched. Only an item whose ``sku`` is exactly the channel SKU counts (the search matches
        loosely); where Waybill knows the SKU's inventory item, that item's level is the one read. An item not
        stocked at the location advertises nothing there (0); a SKU with no item is not listed."""
        location = self.account.inventory_location_id
        if not location:
            raise ChannelError("Shopify account has no inventory_location_id (a Location GID)", retryable=False)
        wanted = [sku for sku in dict.fromkeys(channel_skus) if sku and sku.strip()]
        stock = AdvertisedStock()
        for start in range(0, len(wanted), SKUS_PER_LOOKUP):
            batch = wanted[start : start + SKUS_PER_LOOKUP]
            query = " OR ".join(f"sku:{_search_value(sku)}" for sku in batch)
            after = None
            while True:
                data = self.graphql(
                    INVENTORY_LEVELS, {"q": query, "first": VARIANT_PAGE, "after": after, "location": location}
                )
                connection = require_obj(data.get("inventoryItems"), "inventoryItems")
                for index, node in enumerate(_nodes(connection, "inventoryItems")):
                    node = require_obj(node, f"inventoryItems.nodes[{index}]")
                    sku = node.get("sku")
                    if sku not in batch:
                        continue
                    known = (listings.get(sku) or ListingIds()).external_variant_id
                    if sku in stock.quantities and known and node.get("id") != known:
                        continue
                    level = require_obj(
                        node.get("inventoryLevel"), f"inventoryItems.nodes[{index}].inventoryLevel", required=False
                    )
                    quantity = 0
                    for entry in require_list(
                        level.get("quantities") or [], f"inventoryItems.nodes[{index}].quantities"
                    ):
                        if isinstance(entry, dict) and entry.get("name") == "available":
                            quantity = parse_int(
                                entry.get("quantity"),
                                f"inventoryItems.nodes[{index}].quantities[].quantity",
                                minimum=-1_000_000,  # Shopify lets available go negative (oversold)
                            )
                    stock.quantities[sku] = quantity
                info = connection.get("pageInfo") or {}
                if not info.get("hasNextPage") or not info.get("endCursor"):
                    break
                after = info["endCursor"]
        stock.not_listed = {sku for sku in wanted if sku not in stock.quantities}
        return stock

    # --- end of reconciliation reads -----------------------------------------------------------

    # --- webhooks ------------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        sent = headers.get("X-Shopify-Hmac-Sha256") or ""
        secrets = [self.credentials.get("webhook_secret"), self.credentials.get("webhook_secret_previous")]
        valid = False
        for secret in secrets:
            if not secret:
                continue
            expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
            valid |= hmac.compare_digest(expected.encode(), sent.encode())
        if valid:
            self._check_triggered_at(headers)
        return valid

    # A validly signed body replayed under a new webhook id is refused once it is older than this.
    replay_window: ClassVar[timedelta] = timedelta(minutes=5)

    def _check_triggered_at(self, headers: Mapping[str, str]) -> None:
        """X-Shopify-Triggered-At (when Shopify fired the event) must be within the replay window."""
        raw = headers.get("X-Shopify-Triggered-At") or ""
        try:
            fired = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise WebhookRejected("webhook has no readable X-Shopify-Triggered-At") from None
        if fired.tzinfo is None:
            raise WebhookRejected("X-Shopify-Triggered-At has no time zone")
        if abs(datetime.now(UTC) - fired) > self.replay_window:
            raise WebhookRejected(f"webhook triggered at {raw} is outside the {self.replay_window} replay window")

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        topic = headers.get("X-Shopify-Topic") or ""
        webhook_id = headers.get("X-Shopify-Webhook-Id") or ""
        shop = headers.get("X-Shopify-Shop-Domain") or ""
        if not topic or not webhook_id:
            raise PayloadError("headers", "X-Shopify-Topic and X-Shopify-Webhook-Id are required")
        try:
            payload = json.loads(body)
        except ValueError:
            raise PayloadError("body", "not JSON") from None
        payload = require_obj(payload, "body")
        gid = payload.get("admin_graphql_api_id") or (
            f"gid://shopify/Order/{payload['id']}" if payload.get("id") else ""
        )
        if topic.startswith(("returns/", "refunds/")):
            # Issue #18: RETURNS_* and REFUNDS_CREATE carry a return or a refund; the order they change is
            # what Waybill reads again (and the returns read the webhook nudges picks up the return itself).
            gid = _webhook_order_gid(payload)
        try:
            updated = parse_datetime(payload.get("updated_at"), "updated_at", required=False)
        except PayloadError:
            updated = None
        return WebhookEvent(
            dedupe_key=f"webhook:{shop}:{topic}:{webhook_id}"[:255],
            topic=topic,
            external_id=str(gid)[:128],
            payload=payload,
            updated_at=updated,
        )


def _webhook_order_gid(payload: dict) -> str:
    order = payload.get("order") if isinstance(payload.get("order"), dict) else {}
    if order.get("admin_graphql_api_id"):
        return str(order["admin_graphql_api_id"])
    order_id = order.get("id") or payload.get("order_id")
    if isinstance(order_id, str) and order_id.startswith("gid://"):
        return order_id
    return f"gid://shopify/Order/{order_id}" if order_id else ""


SHOPIFY_RETURN_STATUS = {
    "REQUESTED": "requested",
    "OPEN": "authorized",
    "CLOSED": "authorized",
    "DECLINED": "rejected",
    "CANCELED": "cancelled",
}
SHOPIFY_RETURN_REASON = {
    "DEFECTIVE": "defective",
    "WRONG_ITEM": "wrong_item",
    "NOT_AS_DESCRIBED": "not_as_described",
    "UNWANTED": "no_longer_needed",
    "SIZE_TOO_SMALL": "no_longer_needed",
    "SIZE_TOO_LARGE": "no_longer_needed",
    "STYLE": "no_longer_needed",
    "COLOR": "no_longer_needed",
}


def _line_gid(line_id: str) -> str:
    return line_id if line_id.startswith("gid://") else f"gid://shopify/LineItem/{line_id}"


def _shopify_returns(node: dict) -> list[NormalizedReturn]:
    """One order's returns (and its refunds, on each return) as normalised returns."""
    order_id = require_str(node, "id", "order", max_length=128)  # Waybill keeps Shopify's GIDs as ids
    refunds = [
        ChannelRefund(
            external_id=str(r.get("id") or ""),
            amount=parse_decimal(
                ((r.get("totalRefundedSet") or {}).get("shopMoney") or {}).get("amount"), "refunds.amount"
            ),
            currency=str(((r.get("totalRefundedSet") or {}).get("shopMoney") or {}).get("currencyCode") or ""),
        )
        for r in node.get("refunds") or []
        if r.get("id")
    ]
    out = []
    for index, ret in enumerate((node.get("returns") or {}).get("nodes") or []):
        path = f"returns[{index}]"
        lines = []
        reasons = []
        for item in (ret.get("returnLineItems") or {}).get("nodes") or []:
            line_gid = (((item.get("fulfillmentLineItem") or {}).get("lineItem")) or {}).get("id")
            if not line_gid:
                continue
            reason = SHOPIFY_RETURN_REASON.get(str(item.get("returnReason") or ""), "other")
            reasons.append(reason)
            lines.append(
                ReturnedLine(
                    external_line_id=str(line_gid),
                    quantity=parse_int(item.get("quantity"), f"{path}.returnLineItems.quantity", minimum=1),
                    reason=reason,
                    external_id=str(item.get("id") or ""),
                )
            )
        status = str(ret.get("status") or "")
        out.append(
            NormalizedReturn(
                external_id=require_str(ret, "id", path),
                order_external_id=order_id,
                status=SHOPIFY_RETURN_STATUS.get(status, "requested"),
                channel_status=status,
                lines=lines,
                reason=reasons[0] if reasons else "other",
                updated_at=parse_datetime(node.get("updatedAt"), "updatedAt", required=False),
                refunds=refunds if index == 0 else [],
                note=str(ret.get("name") or ""),
            )
        )
    if not out and refunds:
        out.append(
            NormalizedReturn(
                external_id="", order_external_id=order_id, status="", channel_status="", lines=[], refunds=refunds
            )
        )
    return out


def _whole() -> dict:
    return {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": []}


def assemble_bulk_orders(jsonl: str) -> list[dict]:
    """Bulk JSONL rows back into the shape one order of a list page has (the WaybillOrder fragment, completed).

    Rows may come in any order (``groupObjects`` is false from 2026-01): children are joined on
    ``__parentId`` once every row is read. A child whose parent is not in the file means the file is
    incomplete: refused rather than ingested with lines missing."""
    orders: dict[str, dict] = {}
    children: list[dict] = []
    for number, text in enumerate(jsonl.splitlines(), start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except ValueError:
            raise ChannelError(f"bulk result line {number} is not JSON", retryable=False) from None
        if not isinstance(row, dict):
            raise ChannelError(f"bulk result line {number} is not an object", retryable=False)
        if "__parentId" in row:
            children.append(row)
        else:
            row["lineItems"] = _whole()
            row["fulfillmentOrders"] = _whole()
            orders[str(row.get("id", ""))] = row
    for row in children:
        parent = orders.get(str(row.pop("__parentId")))
        row_id = str(row.get("id", ""))
        if parent is None:
            raise ChannelError(f"bulk result row {row_id[:80]} names a parent that is not in the file", retryable=True)
        if row_id.startswith("gid://shopify/LineItem/"):
            parent["lineItems"]["nodes"].append(row)
        elif row_id.startswith("gid://shopify/FulfillmentOrder/"):
            parent["fulfillmentOrders"]["nodes"].append(row)
        else:
            raise ChannelError(
                f"bulk result row {row_id[:80]} is of a kind the backfill did not ask for", retryable=False
            )
    return list(orders.values())


REST_FULFILLMENT_STATUS = {None: "UNFULFILLED", "partial": "PARTIALLY_FULFILLED", "fulfilled": "FULFILLED"}


def graphql_order_from_rest(payload: dict) -> dict:
    """An orders/* webhook body (the REST resource, snake_case) in the raw GraphQL order shape, so it
    parses into the same normalised order as a list page's order. What REST does not carry stays
    out: fulfillment orders (a local pickup is only known from GraphQL) and inventory item ids."""
    payload = require_obj(payload, "order")
    gid = require_str(payload, "admin_graphql_api_id", "", max_length=128)
    lines = []
    for index, item in enumerate(require_list(payload.get("line_items"), "line_items")):
        path = f"line_items[{index}]"
        item = require_obj(item, path)
        quantity = item.get("quantity")
        current = item.get("current_quantity", quantity)
        lines.append(
            {
                "id": require_str(item, "admin_graphql_api_id", path, max_length=128),
                "sku": item.get("sku") or None,
                "name": item.get("name") or item.get("title"),
                "quantity": quantity,
                "currentQuantity": current,
                # REST has no unfulfilled count; fulfillable_quantity is its nearest (units still to ship).
                "unfulfilledQuantity": item.get("fulfillable_quantity", current),
                "originalUnitPriceSet": {
                    "shopMoney": {"amount": item.get("price"), "currencyCode": payload.get("currency")}
                },
                "variant": None,
            }
        )
    address = require_obj(payload.get("shipping_address"), "shipping_address", required=False)
    shipping_lines = [s for s in payload.get("shipping_lines") or [] if isinstance(s, dict)]
    cancel_reason = payload.get("cancel_reason")
    fulfillment = payload.get("fulfillment_status")
    if fulfillment not in REST_FULFILLMENT_STATUS:
        raise PayloadError("fulfillment_status", f"unexpected value {str(fulfillment)[:40]!r}")
    return {
        "id": gid,
        "legacyResourceId": str(payload.get("id") or ""),
        "name": payload.get("name"),
        "createdAt": payload.get("created_at"),
        "updatedAt": payload.get("updated_at"),
        "processedAt": payload.get("processed_at") or payload.get("created_at"),
        "cancelledAt": payload.get("cancelled_at"),
        "cancelReason": str(cancel_reason).upper() if cancel_reason else None,
        "closed": bool(payload.get("closed_at")),
        "displayFinancialStatus": str(payload.get("financial_status") or "").upper() or None,
        "displayFulfillmentStatus": REST_FULFILLMENT_STATUS[fulfillment],
        "currencyCode": payload.get("currency"),
        "email": payload.get("email"),
        "phone": payload.get("phone"),
        "totalPriceSet": {"shopMoney": {"amount": payload.get("total_price"), "currencyCode": payload.get("currency")}}
        if payload.get("total_price") is not None
        else None,
        "shippingAddress": {
            "name": address.get("name"),
            "firstName": address.get("first_name"),
            "lastName": address.get("last_name"),
            "company": address.get("company"),
            "address1": address.get("address1"),
            "address2": address.get("address2"),
            "city": address.get("city"),
            "provinceCode": address.get("province_code"),
            "zip": address.get("zip"),
            "countryCodeV2": address.get("country_code"),
            "phone": address.get("phone"),
        }
        if address
        else None,
        "shippingLine": {
            "title": shipping_lines[0].get("title"),
            "code": shipping_lines[0].get("code"),
            "source": shipping_lines[0].get("source"),
        }
        if shipping_lines
        else None,
        "lineItems": {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": lines},
        "fulfillmentOrders": {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": []},
    }


def _pickup_location(raw: dict) -> tuple[str, str]:
    """(Location GID, name) of the store a local-pickup order is to be collected from: the assigned
    location of its first live fulfillment order whose delivery method is PICK_UP; ("", "") to ship."""
    fos = require_obj(raw.get("fulfillmentOrders"), "fulfillmentOrders", required=False)
    for index, fo in enumerate(require_list(fos.get("nodes") or [], "fulfillmentOrders.nodes")):
        path = f"fulfillmentOrders.nodes[{index}]"
        fo = require_obj(fo, path)
        method = require_obj(fo.get("deliveryMethod"), f"{path}.deliveryMethod", required=False)
        if method.get("methodType") != "PICK_UP" or fo.get("status") == "CANCELLED":
            continue
        assigned = require_obj(fo.get("assignedLocation"), f"{path}.assignedLocation")
        location = require_obj(assigned.get("location"), f"{path}.assignedLocation.location")
        gid = require_str(location, "id", f"{path}.assignedLocation.location", max_length=255)
        if not gid.startswith("gid://shopify/Location/"):
            raise PayloadError(f"{path}.assignedLocation.location.id", f"not a Location GID: {gid[:60]!r}")
        return gid, str(assigned.get("name") or "")[:255]
    return "", ""


def _search_value(value: str) -> str:
    """A value for Shopify's search syntax, quoted so hyphens, spaces and colons stay part of it."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quantity_index(field: Any) -> int | None:
    """The quantities[] index a userError names (["input", "quantities", "3", …]), if it names one."""
    if isinstance(field, list) and len(field) >= 3 and field[:2] == ["input", "quantities"]:
        try:
            return int(field[2])
        except (TypeError, ValueError):
            return None
    return None


def _raise_user_errors(mutation: str, result: dict) -> None:
    """A mutation's userErrors as a ChannelError: not retryable (the same input is refused again), the errors
    kept as the detail (the outbox message shows ops the channel's own words)."""
    errors = result.get("userErrors") or []
    if errors:
        raise ChannelError(
            f"{mutation}: {'; '.join(str(e.get('message', '')) for e in errors)}",
            retryable=False,
            detail={"userErrors": errors},
        )
