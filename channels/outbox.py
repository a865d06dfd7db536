"""The outbox: pushes to channels written in the same transaction as the change, sent by a relay.

A message is claimed (status ``sending``, a lease in ``next_attempt_at``, ``attempts`` + 1) in a
short transaction, sent outside any transaction, then marked sent, failed (retried with
exponential backoff that honours the channel's throttling signal) or parked after
WAYBILL_OUTBOX_MAX_ATTEMPTS (an ExceptionCase for a person). A worker that dies after sending and
before marking leaves the lease to expire; the resend then never double-applies: the channel's
idempotency key where it has one (Shopify ``@idempotent``), or a read-before-retry where it has
none (``Connector.is_applied``: the order's packages, fulfilment orders or cancellation state).

**Leases are short while the worker lives**: a claim leases its messages for WAYBILL_OUTBOX_LEASE_SECONDS
(30 s) and a keeper thread of the relay renews the lease of every message it still holds a third of the way
through, however long a send takes; a worker that dies stops renewing, and its messages are due again within
the lease. **A channel that is down does not hold workers**: after WAYBILL_OUTBOX_BREAKER_FAILURES (3)
consecutive connection failures to an account the relay opens its circuit (kept in the cache, so every
relay sees it), gives the account's claimed messages back without spending an attempt and moves on; once
the circuit's cool-down has passed (30 s, doubling to 10 minutes while it keeps failing) one message goes
as a probe: its success closes the circuit, its failure opens it again. A relay also returns between two
sends when its worker is asked to stop (``should_stop``).

Inventory pushes are planned from ChannelAvailability rows flagged ``needs_push`` as soon as the stock
change's recompute flags them (channels.tasks), one account at a time, when the account's rate budget allows
(``inventory_push_now``: one slot per connector ``inventory_push_interval``, claimed in the database); changes
inside the interval stay flagged and coalesce per (account, SKU) into the next slot's push. Diffed: only
quantities different from ``last_pushed_quantity`` go out. The quantity sent is the one current at send
time, so a late or retried message never pushes a stale number.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from channels.availability import channel_availabilities_mark_pushed, channel_availability_claim_due
from channels.connectors import CONNECTORS, connector_class
from channels.connectors.base import (
    CancelRequest,
    ChannelError,
    ChannelThrottled,
    Connector,
    InventoryQuantity,
    RefundLine,
    RefundRequest,
    SendResult,
    ShipmentConfirmation,
    ShipmentLine,
)
from channels.models import ChannelAccount, ChannelAvailability, Listing, OutboxKind, OutboxMessage, OutboxStatus
from channels.services import connector_for, listing_ids_record
from channels.signals import outbox_message_answered, outbox_messages_queued
from config.kernel.chaos import crash_point
from config.kernel.errors import DomainError
from orders import services as order_services
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, Order, Severity

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0
INVENTORY_BATCH = 250  # Shopify's input array cap; Amazon switches to a feed above 10


class OutboxError(DomainError):
    code = "outbox_error"


def _max_attempts() -> int:
    return int(getattr(settings, "WAYBILL_OUTBOX_MAX_ATTEMPTS", 8))


def _backoff(attempts: int, retry_after: float | None) -> timedelta:
    base = float(getattr(settings, "WAYBILL_OUTBOX_BACKOFF_SECONDS", 5.0))
    delay = min(base * 2 ** max(attempts - 1, 0), 3600.0)
    return timedelta(seconds=max(delay, retry_after or 0.0))


def _lease() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "WAYBILL_OUTBOX_LEASE_SECONDS", LEASE_SECONDS)))


def _kick_relay(account_id: int) -> None:
    # channels.tasks listens and enqueues the relay for the account.
    outbox_messages_queued.send(sender=OutboxMessage, account_id=account_id)


# --- writing messages (inside the caller's transaction) -----------------------------------------


def outbox_enqueue(
    *, account_id: int, kind: str, dedupe_key: str, payload: dict, order_id: int | None = None, kick: bool = True
) -> tuple[OutboxMessage, bool]:
    """Add a message unless one with the same (account, kind, dedupe key) exists; (message, created).
    ``kick=False``: the caller relays the account itself right after its commit (no relay task is queued)."""
    if kind not in OutboxKind.values:
        raise OutboxError(f"unknown outbox kind {kind!r}")
    if not dedupe_key or len(dedupe_key) > 255:
        raise OutboxError("an outbox message needs a dedupe key of 1 to 255 characters")
    try:
        with transaction.atomic():
            message = OutboxMessage.objects.create(
                account_id=account_id, kind=kind, dedupe_key=dedupe_key, payload=payload, order_id=order_id
            )
    except IntegrityError:
        return OutboxMessage.objects.get(account_id=account_id, kind=kind, dedupe_key=dedupe_key), False
    if kick:
        transaction.on_commit(partial(_kick_relay, account_id))
    return message, True


def ship_confirmation_enqueue(
    *,
    order: Order,
    package_reference: str,
    carrier_code: str,
    tracking_number: str,
    shipped_at: datetime,
    lines: list[tuple[str, int]],
    carrier_name: str = "",
    shipping_method: str = "",
    tracking_url: str = "",
    resend: str = "",
) -> OutboxMessage:
    """Queue a ship confirmation: ``lines`` are (order line external id, quantity), ``shipped_at`` the real time.
    ``resend`` (a person asked to send it again) makes a new message rather than finding the first one."""
    if not lines or any(quantity <= 0 for _, quantity in lines):
        raise OutboxError("a ship confirmation needs lines with positive quantities")
    if order.marketplace_fulfilled:
        raise OutboxError(f"order {order} is fulfilled by the marketplace; Waybill does not confirm its shipments")
    message, _ = outbox_enqueue(
        account_id=order.account_id,
        kind=OutboxKind.SHIP_CONFIRMATION,
        dedupe_key=f"ship:{order.external_id}:{package_reference}" + (f":resend-{resend}" if resend else ""),
        order_id=order.pk,
        payload={
            "order_external_id": order.external_id,
            "package_reference": package_reference,
            "carrier_code": carrier_code,
            "carrier_name": carrier_name,
            "tracking_number": tracking_number,
            "tracking_url": tracking_url,
            "shipping_method": shipping_method,
            "shipped_at": shipped_at.isoformat(),
            "lines": [{"external_line_id": line_id, "quantity": quantity} for line_id, quantity in lines],
            "marketplace_id": order.channel_marketplace_id,
        },
    )
    return message


def cancellation_enqueue(
    *,
    order: Order,
    lines: list[tuple[str, int]],
    reason: str,
    dedupe_key: str,
    keep: dict[str, int] | None = None,
) -> OutboxMessage:
    """Queue a cancellation of ``lines`` (all open lines when empty) with the channel's reason code.

    ``keep`` ({external line id: units}): how many units of each line the order keeps once this
    cancellation is applied, for channels that cancel part of a line by setting its quantity (an absolute
    target makes a resend harmless)."""
    message, _ = outbox_enqueue(
        account_id=order.account_id,
        kind=OutboxKind.CANCELLATION,
        dedupe_key=f"cancel:{order.external_id}:{dedupe_key}",
        order_id=order.pk,
        payload={
            "order_external_id": order.external_id,
            "reason": reason,
            "lines": [
                {"external_line_id": line_id, "quantity": quantity}
                | ({"keep": keep[line_id]} if keep and line_id in keep else {})
                for line_id, quantity in lines
            ],
            "marketplace_id": order.channel_marketplace_id,
        },
    )
    return message


def _order_notice_enqueue(*, order: Order, kind: str, dedupe_key: str) -> OutboxMessage:
    """A message whose payload is the order's channel id alone."""
    message, _ = outbox_enqueue(
        account_id=order.account_id,
        kind=kind,
        dedupe_key=dedupe_key,
        order_id=order.pk,
        payload={"order_external_id": order.external_id},
    )
    return message


def pickup_ready_enqueue(*, order: Order, shipment_id: int) -> OutboxMessage:
    """Queue the notice that the order's store pickup is ready (the channel tells the buyer)."""
    return _order_notice_enqueue(
        order=order,
        kind=OutboxKind.PICKUP_READY,
        dedupe_key=f"pickup_ready:{order.external_id}:shipment-{shipment_id}",
    )


def acknowledgement_enqueue(*, order: Order) -> OutboxMessage:
    return _order_notice_enqueue(order=order, kind=OutboxKind.ACKNOWLEDGE, dedupe_key=f"ack:{order.external_id}")


def acknowledgements_enqueue(*, account_id: int, orders: list[tuple[int, str]]) -> int:
    """Bulk acknowledgement_enqueue for an ingested page: (order id, external id) pairs; known keys are skipped."""
    if not orders:
        return 0
    now = timezone.now()
    values = ", ".join(["(%s, %s, %s, %s::jsonb, %s, 0, %s, '', '{}'::jsonb, '{}'::jsonb, %s, %s, %s)"] * len(orders))
    params: list[Any] = []
    for order_id, external_id in orders:
        payload = json.dumps({"order_external_id": external_id})
        params += [account_id, OutboxKind.ACKNOWLEDGE, f"ack:{external_id}", payload, OutboxStatus.PENDING]
        params += [now, order_id, now, now]
    with connection.cursor() as cursor:
        # Only placeholders are formatted into the statement; every value travels as a parameter.
        cursor.execute(
            "INSERT INTO channels_outboxmessage (account_id, kind, dedupe_key, payload, status, attempts,"  # noqa: S608
            " next_attempt_at, last_error, last_error_detail, response, order_id, created_at, updated_at)"
            f" VALUES {values} ON CONFLICT (account_id, kind, dedupe_key) DO NOTHING RETURNING id",
            params,
        )
        created = len(cursor.fetchall())
    if created:
        transaction.on_commit(partial(_kick_relay, account_id))
    return created


def inventory_push_plan(*, now: datetime | None = None, account_id: int | None = None, kick: bool = True) -> int:
    """Turn flagged ChannelAvailability rows (of every account, or of one) into inventory messages (changed
    quantities only). The rate budget is the caller's: see inventory_push_now."""
    now = now or timezone.now()
    created = 0
    with transaction.atomic():
        rows = channel_availability_claim_due(kinds=CONNECTORS, account_id=account_id)
        if not rows:
            return 0
        changed: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for _, account_id, sku_id, quantity, pushed in rows:
            if quantity != pushed:
                changed[account_id].append((sku_id, quantity))
        for account_id, items in changed.items():
            for start in range(0, len(items), INVENTORY_BATCH):
                chunk = items[start : start + INVENTORY_BATCH]
                digest = hashlib.sha256(json.dumps(chunk).encode()).hexdigest()[:24]
                _, made = outbox_enqueue(
                    account_id=account_id,
                    kind=OutboxKind.INVENTORY,
                    dedupe_key=f"inventory:{now.isoformat()}:{digest}",
                    payload={"sku_ids": [sku_id for sku_id, _ in chunk], "planned": dict(chunk)},
                    kick=kick,
                )
                created += made
    return created


def inventory_push_interval(kind: str) -> float:
    """Seconds between two inventory pushes to an account of this kind: the connector's
    ``inventory_push_interval`` (its channel's rate limit), or WAYBILL_INVENTORY_PUSH_INTERVAL when set."""
    value = getattr(settings, "WAYBILL_INVENTORY_PUSH_INTERVAL", None)
    return float(value) if value is not None else float(connector_class(kind).inventory_push_interval)


def inventory_push_burst(kind: str) -> int:
    """How many inventory pushes an account of this kind may send at once after a quiet spell (the connector's
    ``inventory_push_burst``, within its channel's published burst; WAYBILL_INVENTORY_PUSH_BURST when set); one
    per interval after that."""
    value = getattr(settings, "WAYBILL_INVENTORY_PUSH_BURST", None)
    return max(int(value if value is not None else connector_class(kind).inventory_push_burst), 1)


def inventory_push_slot_claim(*, account_id: int, interval: float, now: datetime, burst: int = 1) -> float:
    """Take an inventory-push slot of the account if its rate budget allows one now: 0.0; else the seconds
    until it does. The budget is a token bucket of ``burst`` pushes refilled one per ``interval`` (GCRA:
    ``inventory_push_next_at`` is the bucket's theoretical arrival time; a push is allowed while it is at most
    (burst - 1) intervals ahead of now, and moves it one interval on). One guarded UPDATE, so two workers never
    take the same slot; runs in the caller's transaction (a rollback gives the slot back)."""
    ahead = timedelta(seconds=interval * (burst - 1))
    taken = (
        ChannelAccount.objects.filter(pk=account_id)
        .filter(Q(inventory_push_next_at__isnull=True) | Q(inventory_push_next_at__lte=now + ahead))
        # PostgreSQL's GREATEST skips NULL: a first push starts from now.
        .update(inventory_push_next_at=Greatest("inventory_push_next_at", Value(now)) + timedelta(seconds=interval))
    )
    if taken:
        return 0.0
    next_at = ChannelAccount.objects.values_list("inventory_push_next_at", flat=True).get(pk=account_id)
    return max((next_at - ahead - now).total_seconds(), 0.001) if next_at else 0.001


def inventory_push_now(*, account_id: int) -> tuple[int, float]:
    """Plan the account's flagged quantities into an inventory message now if its rate budget allows:
    (messages created, seconds until the caller should come back: 0.0 when no row is left flagged). When the
    budget does not allow it: (0, seconds until its next slot), the rows staying flagged (coalesced: the push
    then sends each SKU's quantity as it is at that time). The caller relays the account right after (no
    relay task is queued for these messages)."""
    account = ChannelAccount.objects.values("kind", "is_enabled").get(pk=account_id)
    if not account["is_enabled"]:
        return 0, 0.0
    interval = inventory_push_interval(account["kind"])
    burst = inventory_push_burst(account["kind"])
    now = timezone.now()
    with transaction.atomic():
        if not ChannelAvailability.objects.filter(account_id=account_id, needs_push=True).exists():
            return 0, 0.0
        wait = inventory_push_slot_claim(account_id=account_id, interval=interval, now=now, burst=burst)
        if wait > 0:
            return 0, wait
        created = inventory_push_plan(now=now, account_id=account_id, kick=False)
        if not created:
            # Nothing differed from what the channel holds: the slot goes back to the bucket.
            ChannelAccount.objects.filter(pk=account_id).update(
                inventory_push_next_at=F("inventory_push_next_at") - timedelta(seconds=interval)
            )
    if ChannelAvailability.objects.filter(account_id=account_id, needs_push=True).exists():
        # Rows another transaction held (a recompute, a push being recorded) were skipped, or flagged since:
        # come back for them at the next slot.
        return created, max(interval, 0.05)
    return created, 0.0


# --- the relay ------------------------------------------------------------------------------------


def outbox_claim(*, account_id: int | None = None, limit: int = 50, now: datetime | None = None) -> list[int]:
    """Lease up to ``limit`` due messages (oldest first); expired leases of dead workers count as due."""
    now = now or timezone.now()
    due = Q(status__in=[OutboxStatus.PENDING, OutboxStatus.FAILED]) | Q(status=OutboxStatus.SENDING)
    with transaction.atomic():
        queryset = OutboxMessage.objects.filter(due, next_attempt_at__lte=now)
        if account_id is not None:
            queryset = queryset.filter(account_id=account_id)
        ids = list(
            queryset.select_for_update(skip_locked=True)
            .order_by("next_attempt_at", "pk")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            OutboxMessage.objects.filter(pk__in=ids).update(
                status=OutboxStatus.SENDING, next_attempt_at=now + _lease(), attempts=F("attempts") + 1, updated_at=now
            )
    return ids


def _send(connector: Connector, message: OutboxMessage, state: dict[str, Any]) -> SendResult:
    payload = message.payload
    kind = message.kind
    if message.attempts > 1 and kind not in connector.idempotent_kinds and connector.is_applied(kind, payload, state):
        return SendResult(response={"read_before_retry": "already applied"}, already_applied=True)
    if kind == OutboxKind.SHIP_CONFIRMATION:
        shipment = ShipmentConfirmation(
            order_external_id=payload["order_external_id"],
            package_reference=payload["package_reference"],
            carrier_code=payload["carrier_code"],
            carrier_name=payload.get("carrier_name", ""),
            tracking_number=payload["tracking_number"],
            tracking_url=payload.get("tracking_url", ""),
            shipping_method=payload.get("shipping_method", ""),
            shipped_at=datetime.fromisoformat(payload["shipped_at"]),
            lines=[ShipmentLine(line["external_line_id"], line["quantity"]) for line in payload["lines"]],
            marketplace_id=payload.get("marketplace_id") or "",
        )
        return connector.confirm_shipment(shipment, state=state)
    if kind == OutboxKind.CANCELLATION:
        cancel = CancelRequest(
            order_external_id=payload["order_external_id"],
            reason=payload.get("reason", ""),
            lines=[ShipmentLine(line["external_line_id"], line["quantity"]) for line in payload.get("lines") or []],
            keep={line["external_line_id"]: line["keep"] for line in payload.get("lines") or [] if "keep" in line},
            marketplace_id=payload.get("marketplace_id") or "",
        )
        return connector.cancel_lines(cancel, state=state)
    if kind == OutboxKind.ACKNOWLEDGE:
        return connector.acknowledge(payload["order_external_id"])
    if kind == OutboxKind.PICKUP_READY:
        return connector.pickup_ready(payload["order_external_id"], state=state)
    if kind == OutboxKind.INVENTORY:
        return _send_inventory(connector, message, state)
    if kind == OutboxKind.REFUND:
        return connector.refund(refund_request(payload), state=state)
    if kind == OutboxKind.RETURN_DECISION:
        return connector.return_decision(
            channel_return_id=payload["channel_return_id"],
            approve=payload["decision"] == "approve",
            reason=payload.get("reason", ""),
            state=state,
        )
    raise ChannelError(f"outbox kind {kind!r} has no sender", retryable=False)


# --- refunds (issue #18): the returns app queues them (kind "refund") and records the answer ----------------


def refund_request(payload: dict) -> RefundRequest:
    return RefundRequest(
        order_external_id=payload["order_external_id"],
        reference=payload["reference"],
        currency=payload["currency"],
        amount=Decimal(payload["amount"]),
        shipping=Decimal(payload.get("shipping") or "0"),
        reason=payload.get("reason", ""),
        lines=[
            RefundLine(
                external_line_id=line["external_line_id"],
                amount=Decimal(line["amount"]),
                quantity=int(line.get("quantity") or 0),
                channel_sku=line.get("channel_sku", ""),
                external_unit_ids=tuple(line.get("external_unit_ids") or ()),
            )
            for line in payload.get("lines") or []
        ],
        channel_return_id=payload.get("channel_return_id") or "",
        marketplace_id=payload.get("marketplace_id") or "",
    )


def _answered(message: OutboxMessage) -> None:
    """Tell the apps that queued a message that the channel answered (sent, or parked for good)."""
    if message.kind == OutboxKind.REFUND and message.status in (OutboxStatus.SENT, OutboxStatus.PARKED):
        outbox_message_answered.send_robust(sender=OutboxMessage, message_id=message.pk, kind=message.kind)


def _send_inventory(connector: Connector, message: OutboxMessage, state: dict) -> SendResult:
    """Push the current quantity of each listed SKU whose quantity differs from what was last pushed.

    Listings whose channel ids are unknown are looked up first where the channel pushes by its own id;
    one that is not found opens a "listing not found at channel" case and is not pushed. Only what the
    channel acknowledged, item by item, is recorded as pushed; a refused item opens the same case.
    An item neither pushed nor refused keeps its old ``last_pushed_quantity``: the availability
    reconciliation flags it again, and the next plan pushes it (a later success resolves its case)."""
    rows = {
        row.sku_id: row
        for row in ChannelAvailability.objects.filter(
            account_id=message.account_id, sku_id__in=message.payload["sku_ids"]
        )
    }
    listings: dict[int, Listing] = {}
    for listing in (
        Listing.objects.filter(account_id=message.account_id, sku_id__in=list(rows), is_active=True)
        .only("pk", "sku_id", "channel_sku", "external_listing_id", "external_variant_id")
        .order_by("-pk")
    ):
        listings[listing.sku_id] = listing  # the oldest listing of a SKU wins, as before
    due = [
        (row, listings[sku_id])
        for sku_id, row in sorted(rows.items())
        if row.quantity != row.last_pushed_quantity and sku_id in listings
    ]
    if not due:
        return SendResult(response={"unchanged": len(rows)})
    not_found = _resolve_listings(connector, message, [listing for _, listing in due])
    quantities = []
    sent: dict[str, tuple[ChannelAvailability, Listing]] = {}
    for row, listing in due:
        if listing.channel_sku in not_found or listing.channel_sku in sent:
            continue
        quantities.append(
            InventoryQuantity(listing.channel_sku, row.quantity, listing.external_variant_id, row.last_pushed_quantity)
        )
        sent[listing.channel_sku] = (row, listing)
    result = SendResult()
    wire = [(q.channel_sku, q.quantity) for q in quantities]
    if quantities:
        key = hashlib.sha256(f"{message.pk}:{json.dumps(wire)}".encode()).hexdigest()
        result = connector.push_inventory(quantities, idempotency_key=key, state=state)
    acknowledged = {sku: quantity for sku, quantity in result.acknowledged.items() if sku in sent}
    rejected = {sku: str(reason) for sku, reason in result.rejected.items() if sku in sent and sku not in acknowledged}
    unanswered = sorted(set(sent) - set(acknowledged) - set(rejected))
    if unanswered:
        log.error(
            "%s answered neither acknowledged nor rejected for %s in outbox message %s: not recorded as pushed",
            type(connector).__name__,
            ", ".join(unanswered),
            message.pk,
        )
    channel_availabilities_mark_pushed(
        pushed={sent[channel_sku][0].pk: quantity for channel_sku, quantity in acknowledged.items()}
    )
    account = message.account
    by_sku = {listing.channel_sku: listing for _, listing in due}
    for channel_sku, reason in not_found.items():
        title = f"listing not found at channel: {account.name} {channel_sku}"
        _listing_case_open(account, by_sku[channel_sku], message, title, reason)
    for channel_sku, reason in rejected.items():
        title = f"inventory push refused by channel: {account.name} {channel_sku}"
        _listing_case_open(account, by_sku[channel_sku], message, title, f"the channel refused it: {reason}")
    _listing_cases_resolve(account, [sent[sku][1] for sku in acknowledged], acknowledged, message)
    result.response = {
        **result.response,
        "pushed": acknowledged,
        **({"rejected": rejected} if rejected else {}),
        **({"not_found": sorted(not_found)} if not_found else {}),
        **({"unanswered": unanswered} if unanswered else {}),
    }
    return result


def _resolve_listings(connector: Connector, message: OutboxMessage, listings: list[Listing]) -> dict[str, str]:
    """Look up listings with no channel id where the channel pushes by id; store what is learnt.
    Returns {channel SKU: why not pushable} for those the channel does not have."""
    if not connector.push_needs_listing_ids:
        return {}
    unknown = sorted({listing.channel_sku for listing in listings if not listing_ids_known(listing)})
    if not unknown:
        return {}
    found = connector.resolve_listings(unknown)  # a ChannelError fails the message: retried as a whole
    learnt = {
        sku: ids
        for sku, ids in found.items()
        if sku in unknown and (ids.external_listing_id or ids.external_variant_id)
    }
    if learnt:
        listing_ids_record(account_id=message.account_id, ids=learnt, actor="outbox")
        for listing in listings:
            ids = learnt.get(listing.channel_sku)
            if ids is not None:
                listing.external_listing_id = ids.external_listing_id or listing.external_listing_id
                listing.external_variant_id = ids.external_variant_id or listing.external_variant_id
    return {
        sku: "the channel has no listing with this SKU (looked up by SKU before the push)"
        for sku in unknown
        if sku not in learnt
    }


def listing_ids_known(listing: Listing) -> bool:
    return bool(listing.external_listing_id or listing.external_variant_id)


def _listing_case_dedupe_key(listing: Listing) -> str:
    return f"listing_not_found:listing={listing.pk}"


def _listing_case_open(account: ChannelAccount, listing: Listing, message: OutboxMessage, title: str, reason: str):
    order_services.exception_case_open(
        kind=ExceptionKind.LISTING_NOT_FOUND,
        title=title,
        detail=(
            f"The inventory push (outbox message #{message.pk}) did not reach {account.name} for channel SKU "
            f"{listing.channel_sku}: {reason[:1000]}. Waybill keeps it as not pushed. List the SKU at the "
            "channel (or fix its mapping); the next push that the channel acknowledges resolves this case."
        ),
        severity=Severity.HIGH,
        account_id=account.pk,
        sku_id=listing.sku_id,
        dedupe_key=_listing_case_dedupe_key(listing),
        actor="outbox",
    )


def _listing_cases_resolve(
    account: ChannelAccount, listings: list[Listing], acknowledged: dict[str, int], message: OutboxMessage
) -> None:
    if not listings:
        return
    keys = {_listing_case_dedupe_key(listing): listing for listing in listings}
    open_cases = ExceptionCase.objects.filter(
        kind=ExceptionKind.LISTING_NOT_FOUND, account_id=account.pk, dedupe_key__in=list(keys)
    ).exclude(status=CaseStatus.RESOLVED)
    for case in open_cases:
        listing = keys[case.dedupe_key]
        try:
            order_services.exception_case_resolve(
                case=case.pk,
                note=f"{account.name} acknowledged {acknowledged[listing.channel_sku]} unit(s) of "
                f"{listing.channel_sku} (outbox message #{message.pk}).",
                actor="outbox",
            )
        except DomainError:
            continue  # resolved by a person meanwhile


def _error_detail(exc: ChannelError) -> dict:
    """The channel's whole error answer as a JSON object (with the HTTP status when known)."""
    detail = exc.detail
    if detail is None or detail == {} or detail == []:
        return {"status": exc.status} if exc.status else {}
    try:
        json.dumps(detail)
    except (TypeError, ValueError):
        detail = str(detail)
    body = detail if isinstance(detail, dict) else {"body": detail}
    return {**({"status": exc.status} if exc.status and "status" not in body else {}), **body}


# What a relay's send returns when the message's claim passed to another relay meanwhile (its lease lapsed).
TAKEN_OVER = "taken_over"


def _park_or_retry(message: OutboxMessage, exc: ChannelError, state: dict, now: datetime) -> str:
    """Record a failed send: failed (retried after a back-off) or parked (a case for ops).

    Fenced like the lease: only while the message is still this send's claim (sending, at the attempt this
    relay claimed). A send that outlasted its lease, the message claimed meanwhile by another relay, leaves it
    to that relay (TAKEN_OVER): its outcome is not overwritten and no case is opened for it."""
    # A throttle is the channel's budget, not the message's failure: it spends no attempt (it never parks a
    # message) and the message is due again when the channel said, not after a growing back-off.
    throttled = isinstance(exc, ChannelThrottled)
    claimed = message.attempts
    retryable = throttled or (exc.retryable and message.attempts < _max_attempts())
    message.last_error = str(exc)[:4000]
    message.last_error_detail = _error_detail(exc)
    message.response = {**(message.response or {}), "state": state}
    if throttled:
        message.status = OutboxStatus.FAILED
        message.attempts = max(claimed - 1, 0)
        message.next_attempt_at = now + timedelta(seconds=max(exc.retry_after or 0.0, 1.0))
    elif retryable:
        message.status = OutboxStatus.FAILED
        message.next_attempt_at = now + _backoff(message.attempts, exc.retry_after)
    else:
        message.status = OutboxStatus.PARKED
    recorded = OutboxMessage.objects.filter(pk=message.pk, status=OutboxStatus.SENDING, attempts=claimed).update(
        attempts=message.attempts,
        status=message.status,
        next_attempt_at=message.next_attempt_at,
        last_error=message.last_error,
        last_error_detail=message.last_error_detail,
        response=message.response,
        updated_at=now,
    )
    if not recorded:
        log.warning("outbox message %s: its failed send is not recorded, another relay holds it now", message.pk)
        return TAKEN_OVER
    if message.status == OutboxStatus.PARKED:
        account = ChannelAccount.objects.only("name").get(pk=message.account_id)
        said = json.dumps(message.last_error_detail, ensure_ascii=False, sort_keys=True, default=str)
        order_services.exception_case_open(
            kind=ExceptionKind.OUTBOX_PARKED,
            title=f"{account.name}: {message.get_kind_display().lower()} not delivered "
            f"after {message.attempts} attempt(s)",
            detail=f"Outbox message #{message.pk} ({message.dedupe_key}): {message.last_error[:1000]}"
            + (f"\nThe channel answered: {said[:3000]}" if message.last_error_detail else ""),
            severity=Severity.HIGH,
            order_id=message.order_id,
            account_id=message.account_id,
            dedupe_key=f"outbox_parked:{message.pk}",
            actor="outbox",
        )
        _answered(message)
    return message.status


def outbox_send(*, message_id: int, connector: Connector | None = None) -> str:
    """Send one claimed message; returns its new status."""
    return _deliver(message_id, connector)[0]


def _unreachable(exc: ChannelError) -> bool:
    """The channel could not be reached at all (refused, reset, timed out): what the circuit breaker counts."""
    return isinstance(exc.__cause__, httpx.TransportError)


def _deliver(
    message_id: int, connector: Connector | None, claimed: int | None = None
) -> tuple[str, datetime | None, bool]:
    """(new status, until when the channel asked us to hold off if it throttled us, channel unreachable).

    ``claimed``: the attempt number the relay's claim gave the message. The lease keeper renews a batch's leases
    while its worker lives; should a lease lapse all the same (the keeper could not reach the database), another
    relay may claim the message (one attempt more) and send it: then it is theirs, and this relay leaves it
    (TAKEN_OVER) instead of sending it a second time. Otherwise the lease is renewed for this send."""
    message = OutboxMessage.objects.select_related("account").get(pk=message_id)
    if message.status != OutboxStatus.SENDING:
        return message.status, None, False
    if claimed is not None:
        renewed = OutboxMessage.objects.filter(pk=message.pk, status=OutboxStatus.SENDING, attempts=claimed).update(
            next_attempt_at=timezone.now() + _lease()
        )
        if not renewed:
            return TAKEN_OVER, None, False
    state = dict((message.response or {}).get("state") or {})
    own = connector is None
    try:
        connector = connector or connector_for(message.account)
        result = _send(connector, message, state)
    except ChannelError as exc:
        status = _park_or_retry(message, exc, state, timezone.now())
        return status, message.next_attempt_at if isinstance(exc, ChannelThrottled) else None, _unreachable(exc)
    except Exception as exc:
        log.exception("outbox message %s failed unexpectedly", message.pk)
        error = ChannelError(f"{type(exc).__name__}: {exc}", retryable=True)
        return _park_or_retry(message, error, state, timezone.now()), None, False
    finally:
        if own and connector is not None:
            connector.close()
    crash_point("outbox.sent")  # the chaos scenarios' kill between the send and the mark (tests/chaos)
    now = timezone.now()
    sent = {
        "status": OutboxStatus.SENT,
        "sent_at": now,
        "last_error": "",
        "last_error_detail": {},
        "response": {**result.response, "state": {**state, **result.state}, "already_applied": result.already_applied},
        "updated_at": now,
    }
    # The channel took it: that is a fact even if the lease lapsed meanwhile and another relay claimed the
    # message (sending, one attempt more) or failed it for a retry; marking it sent keeps that relay from
    # sending it again. Only a message already sent or parked is left as it is.
    recorded = OutboxMessage.objects.filter(
        pk=message.pk, status__in=(OutboxStatus.SENDING, OutboxStatus.FAILED)
    ).update(**sent)
    for field, value in sent.items():
        setattr(message, field, value)
    if not recorded:
        log.warning("outbox message %s was sent, but another relay had already recorded its outcome", message.pk)
        return TAKEN_OVER, None, False
    _answered(message)
    return message.status, None, False


# --- the circuit breaker: per account, in the cache so every relay on every worker sees it -----------

CIRCUIT_PREFIX = "waybill:outbox-circuit:"


def _breaker_failures() -> int:
    return int(getattr(settings, "WAYBILL_OUTBOX_BREAKER_FAILURES", 3))


def _breaker_cooldown(opened: int) -> timedelta:
    base = float(getattr(settings, "WAYBILL_OUTBOX_BREAKER_SECONDS", 30.0))
    return timedelta(seconds=min(base * 2 ** max(opened - 1, 0), 600.0))


def outbox_circuit(account_id: int) -> dict:
    """The account's breaker: {"failures": consecutive connection failures, "open_until": ISO time or
    absent, "opened": how many times in a row it opened}. Empty: closed, nothing failing."""
    return cache.get(f"{CIRCUIT_PREFIX}{account_id}") or {}


def _circuit_save(account_id: int, state: dict) -> None:
    if state:
        cache.set(f"{CIRCUIT_PREFIX}{account_id}", state, timeout=24 * 3600)
    else:
        cache.delete(f"{CIRCUIT_PREFIX}{account_id}")


def _circuit_open_until(state: dict) -> datetime | None:
    value = state.get("open_until")
    return datetime.fromisoformat(value) if value else None


def _circuit_record(account_id: int, *, unreachable: bool, now: datetime) -> datetime | None:
    """Count one send's outcome; returns until when the circuit is open if this outcome opened it."""
    state = outbox_circuit(account_id)
    if not unreachable:
        if state:
            if state.get("opened"):
                log.warning("outbox circuit of account %s closed: the channel answers again", account_id)
            _circuit_save(account_id, {})
        return None
    failures = int(state.get("failures", 0)) + 1
    probing = _circuit_open_until(state) is not None  # a failed half-open probe opens it again at once
    if failures < _breaker_failures() and not probing:
        _circuit_save(account_id, {**state, "failures": failures})
        return None
    opened = int(state.get("opened", 0)) + 1
    until = now + _breaker_cooldown(opened)
    _circuit_save(account_id, {"failures": failures, "opened": opened, "open_until": until.isoformat()})
    log.warning(
        "outbox circuit of account %s open until %s after %s connection failure(s) in a row",
        account_id,
        until.isoformat(timespec="seconds"),
        failures,
    )
    return until


class _Leases:
    """Renews the lease of every message the relays of this process still hold, a third of the way through
    the lease, from one daemon thread per process (started on first use, on its own database connection,
    closed after each renewal); it dies with the worker, so a dead worker's messages are due again soon.
    One thread per process rather than per relay: a relay that sends one push does not start and join one."""

    def __init__(self) -> None:
        self.held: dict[int, int] = defaultdict(int)
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = 0

    def hold(self, ids: list[int]) -> None:
        with self.lock:
            for message_id in ids:
                self.held[message_id] += 1
            if self.thread is None or not self.thread.is_alive() or self.pid != os.getpid():
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self._run, name="outbox-lease-keeper", daemon=True)
                self.thread.start()
        self.wake.set()

    def release(self, message_id: int) -> None:
        with self.lock:
            if self.held.get(message_id, 0) > 1:
                self.held[message_id] -= 1
            else:
                self.held.pop(message_id, None)

    def _run(self) -> None:
        renew_at: float | None = None
        while True:
            try:
                interval = _lease().total_seconds() / 3
                with self.lock:
                    ids = sorted(self.held)
                now = time.monotonic()
                if not ids:
                    renew_at = None
                    self.wake.wait()
                    self.wake.clear()
                    continue
                renew_at = min(renew_at or now + interval, now + interval)
                if now >= renew_at:
                    try:
                        OutboxMessage.objects.filter(pk__in=ids, status=OutboxStatus.SENDING).update(
                            next_attempt_at=timezone.now() + _lease()
                        )
                    finally:
                        connections.close_all()
                    renew_at = now + interval
                    continue
                self.wake.wait(timeout=renew_at - now)
                self.wake.clear()
            except Exception:
                log.exception("the outbox lease keeper could not renew; leases expire on their own")
                time.sleep(1.0)


_leases = _Leases()


class _LeaseKeeper:
    """What one relay holds, renewed by the process's lease thread until released or closed."""

    def __init__(self) -> None:
        self.held: set[int] = set()

    def hold(self, ids: list[int]) -> None:
        fresh = [message_id for message_id in ids if message_id not in self.held]
        self.held.update(fresh)
        _leases.hold(fresh)

    def release(self, message_id: int) -> None:
        if message_id in self.held:
            self.held.discard(message_id)
            _leases.release(message_id)

    def close(self) -> None:
        for message_id in list(self.held):
            self.release(message_id)


def _give_back(message: OutboxMessage, until: datetime) -> None:
    """Return a claimed message unsent, without spending its attempt, due again at ``until``."""
    # Unless another relay has claimed it since (one attempt more): then it is theirs.
    OutboxMessage.objects.filter(pk=message.pk, status=OutboxStatus.SENDING, attempts=message.attempts).update(
        status=OutboxStatus.FAILED, attempts=message.attempts - 1, next_attempt_at=until, updated_at=timezone.now()
    )


# account id -> (what the connector was built from, connector): the inventory pushes queued by stock changes
# reuse one connection per account and worker process instead of a new client (and TLS context) per push.
_kept_connectors: dict[int, tuple[tuple, Connector]] = {}


def _kept_connector(account: ChannelAccount, http: dict) -> Connector:
    made_from = (account.updated_at, account.credentials_rotated_at, account.api_base_url, sorted(http.items()))
    kept = _kept_connectors.get(account.pk)
    if kept is not None and kept[0] == made_from:
        return kept[1]
    if kept is not None:
        kept[1].close()
    connector = connector_for(account, http_options=http)
    _kept_connectors[account.pk] = (made_from, connector)
    return connector


def outbox_relay(
    *,
    account_id: int | None = None,
    budget_seconds: float = 50.0,
    batch: int = 50,
    should_stop: Callable[[], bool] | None = None,
    keep_connectors: bool = False,
) -> dict[str, int]:
    """Send due messages in batches until none are due, the time budget is spent or ``should_stop()``
    says the worker is stopping (checked between two sends; what is still claimed is given back).
    ``keep_connectors``: the accounts' connectors (and their open connections) stay for the next relay of
    this process."""
    counts: dict[str, int] = defaultdict(int)
    connectors: dict[int, Connector] = {}
    held_off: dict[int, datetime] = {}  # throttled, or its circuit is open
    checked: set[int] = set()
    keeper = _LeaseKeeper()
    deadline = time.monotonic() + budget_seconds
    # Connection failures are counted by the breaker rather than retried at length inside one send.
    transport_retries = int(getattr(settings, "WAYBILL_OUTBOX_TRANSPORT_RETRIES", 1))
    try:
        while time.monotonic() < deadline:
            ids = outbox_claim(account_id=account_id, limit=batch)
            if not ids:
                break
            keeper.hold(ids)
            for message in OutboxMessage.objects.filter(pk__in=ids).select_related("account").order_by("pk"):
                now = timezone.now()
                if should_stop is not None and should_stop():
                    _give_back(message, now)
                    keeper.release(message.pk)
                    counts["stopped"] += 1
                    continue
                if message.account_id not in checked:
                    checked.add(message.account_id)
                    until = _circuit_open_until(outbox_circuit(message.account_id))
                    if until is not None and until > now:
                        held_off[message.account_id] = until
                if held_off.get(message.account_id, now) > now:
                    # Throttled, or the channel is down: give the lease back without spending an attempt.
                    _give_back(message, held_off[message.account_id])
                    keeper.release(message.pk)
                    counts["deferred"] += 1
                    continue
                if message.account_id not in connectors:
                    http = {**getattr(settings, "WAYBILL_CHANNEL_HTTP", {}), "transport_retries": transport_retries}
                    connectors[message.account_id] = (
                        _kept_connector(message.account, http)
                        if keep_connectors
                        else connector_for(message.account, http_options=http)
                    )
                status, hold_off, unreachable = _deliver(message.pk, connectors[message.account_id], message.attempts)
                keeper.release(message.pk)
                counts[status] += 1
                if status == TAKEN_OVER:
                    continue  # another relay holds it now: says nothing of the channel's health
                if hold_off is not None:
                    held_off[message.account_id] = hold_off
                opened = _circuit_record(message.account_id, unreachable=unreachable, now=timezone.now())
                if opened is not None:
                    held_off[message.account_id] = opened
                    counts["circuit_opened"] += 1
            if should_stop is not None and should_stop():
                break
    finally:
        keeper.close()
        if not keep_connectors:
            for connector in connectors.values():
                connector.close()
    return dict(counts)


def outbox_retry_now(*, message: OutboxMessage, actor: str) -> OutboxMessage:
    """Put a failed or parked message back in the queue now (from the console)."""
    with transaction.atomic():
        locked = OutboxMessage.objects.select_for_update().get(pk=message.pk)
        if locked.status not in (OutboxStatus.FAILED, OutboxStatus.PARKED):
            raise OutboxError(f"message #{locked.pk} is {locked.status}; only failed or parked messages are retried")
        if locked.status == OutboxStatus.PARKED:
            locked.attempts = 0
        locked.status = OutboxStatus.PENDING
        locked.next_attempt_at = timezone.now()
        locked.last_error = f"{locked.last_error}\n[retry requested by {actor}]".strip()[:4000]
        locked.save(update_fields=["status", "attempts", "next_attempt_at", "last_error", "updated_at"])
        transaction.on_commit(partial(_kick_relay, locked.account_id))
    return locked
