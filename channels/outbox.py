"""The outbox: pushes to channels written in the same transaction as the change, sent by a relay.

A message is claimed (status ``sending``, a lease in ``next_attempt_at``, ``attempts`` + 1) in a
short transaction, sent outside any transaction, then marked sent, failed (retried with
exponential backoff that honours the channel's throttling signal) or parked after
WAYBILL_OUTBOX_MAX_ATTEMPTS (an ExceptionCase for a person). A worker that dies after sending and
before marking leaves the lease to expire; the resend then never double-applies: the channel's
idempotency key where it has one (Shopify ``@idempotent``), or a read-before-retry where it has
none (``Connector.is_applied``: the order's packages, fulfilment orders or cancellation state).

Inventory pushes are planned from ChannelAvailability rows flagged ``needs_push``
(debounced: one plan per tick coalesces every change since the last one; diffed: only quantities
different from ``last_pushed_quantity`` go out). The quantity sent is the one current at send
time, so a late or retried message never pushes a stale number.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from channels.availability import channel_availabilities_mark_pushed, channel_availability_claim_due
from channels.connectors import CONNECTORS
from channels.connectors.base import (
    CancelRequest,
    ChannelError,
    ChannelThrottled,
    Connector,
    InventoryQuantity,
    SendResult,
    ShipmentConfirmation,
    ShipmentLine,
)
from channels.models import ChannelAccount, ChannelAvailability, Listing, OutboxKind, OutboxMessage, OutboxStatus
from channels.services import connector_for, listing_ids_record
from channels.signals import outbox_messages_queued
from config.kernel.errors import DomainError
from orders import services as order_services
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, Order, Severity

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
INVENTORY_BATCH = 250  # Shopify's input array cap; Amazon switches to a feed above 10


class OutboxError(DomainError):
    code = "outbox_error"


def _max_attempts() -> int:
    return int(getattr(settings, "WAYBILL_OUTBOX_MAX_ATTEMPTS", 8))


def _backoff(attempts: int, retry_after: float | None) -> timedelta:
    base = float(getattr(settings, "WAYBILL_OUTBOX_BACKOFF_SECONDS", 5.0))
    delay = min(base * 2 ** max(attempts - 1, 0), 3600.0)
    return timedelta(seconds=max(delay, retry_after or 0.0))


def _kick_relay(account_id: int) -> None:
    # channels.tasks listens and enqueues the relay for the account.
    outbox_messages_queued.send(sender=OutboxMessage, account_id=account_id)


# --- writing messages (inside the caller's transaction) -----------------------------------------


def outbox_enqueue(
    *, account_id: int, kind: str, dedupe_key: str, payload: dict, order_id: int | None = None
) -> tuple[OutboxMessage, bool]:
    """Add a message unless one with the same (account, kind, dedupe key) exists; (message, created)."""
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
) -> OutboxMessage:
    """Queue a ship confirmation: ``lines`` are (order line external id, quantity), ``shipped_at`` the real time."""
    if not lines or any(quantity <= 0 for _, quantity in lines):
        raise OutboxError("a ship confirmation needs lines with positive quantities")
    if order.marketplace_fulfilled:
        raise OutboxError(f"order {order} is fulfilled by the marketplace; Waybill does not confirm its shipments")
    message, _ = outbox_enqueue(
        account_id=order.account_id,
        kind=OutboxKind.SHIP_CONFIRMATION,
        dedupe_key=f"ship:{order.external_id}:{package_reference}",
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


def inventory_push_plan(*, now: datetime | None = None) -> int:
    """Turn flagged ChannelAvailability rows into inventory messages (changed quantities only)."""
    now = now or timezone.now()
    created = 0
    with transaction.atomic():
        rows = channel_availability_claim_due(kinds=CONNECTORS)
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
                )
                created += made
    return created


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
                status=OutboxStatus.SENDING, next_attempt_at=now + LEASE, attempts=F("attempts") + 1, updated_at=now
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
    raise ChannelError(f"outbox kind {kind!r} has no sender", retryable=False)


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


def _park_or_retry(message: OutboxMessage, exc: ChannelError, state: dict, now: datetime) -> str:
    retryable = exc.retryable and message.attempts < _max_attempts()
    message.last_error = str(exc)[:4000]
    message.last_error_detail = _error_detail(exc)
    message.response = {**(message.response or {}), "state": state}
    if retryable:
        message.status = OutboxStatus.FAILED
        message.next_attempt_at = now + _backoff(message.attempts, exc.retry_after)
    else:
        message.status = OutboxStatus.PARKED
    message.save(
        update_fields=["status", "next_attempt_at", "last_error", "last_error_detail", "response", "updated_at"]
    )
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
    return message.status


def outbox_send(*, message_id: int, connector: Connector | None = None) -> str:
    """Send one claimed message; returns its new status."""
    return _deliver(message_id, connector)[0]


TAKEN_OVER = "taken_over"


def _deliver(message_id: int, connector: Connector | None, claimed: int | None = None) -> tuple[str, datetime | None]:
    """(new status, until when the channel asked us to hold off if it throttled us).

    ``claimed``: the attempt number the relay's claim gave the message. A batch is leased at claim time; when its
    earlier sends outlast the lease, another relay may claim the message (one attempt more) and send it: then it
    is theirs, and this relay leaves it (TAKEN_OVER) instead of sending it a second time. Otherwise the lease is
    renewed for this send."""
    message = OutboxMessage.objects.select_related("account").get(pk=message_id)
    if message.status != OutboxStatus.SENDING:
        return message.status, None
    if claimed is not None:
        renewed = OutboxMessage.objects.filter(pk=message.pk, status=OutboxStatus.SENDING, attempts=claimed).update(
            next_attempt_at=timezone.now() + LEASE
        )
        if not renewed:
            return TAKEN_OVER, None
    state = dict((message.response or {}).get("state") or {})
    own = connector is None
    try:
        connector = connector or connector_for(message.account)
        result = _send(connector, message, state)
    except ChannelError as exc:
        status = _park_or_retry(message, exc, state, timezone.now())
        return status, message.next_attempt_at if isinstance(exc, ChannelThrottled) else None
    except Exception as exc:
        log.exception("outbox message %s failed unexpectedly", message.pk)
        error = ChannelError(f"{type(exc).__name__}: {exc}", retryable=True)
        return _park_or_retry(message, error, state, timezone.now()), None
    finally:
        if own and connector is not None:
            connector.close()
    now = timezone.now()
    message.status = OutboxStatus.SENT
    message.sent_at = now
    message.last_error = ""
    message.last_error_detail = {}
    message.response = {
        **result.response,
        "state": {**state, **result.state},
        "already_applied": result.already_applied,
    }
    message.save(update_fields=["status", "sent_at", "last_error", "last_error_detail", "response", "updated_at"])
    return message.status, None


def outbox_relay(*, account_id: int | None = None, budget_seconds: float = 50.0, batch: int = 50) -> dict[str, int]:
    """Send due messages in batches until none are due or the time budget is spent."""
    counts: dict[str, int] = defaultdict(int)
    connectors: dict[int, Connector] = {}
    throttled_until: dict[int, datetime] = {}
    deadline = time.monotonic() + budget_seconds
    try:
        while time.monotonic() < deadline:
            ids = outbox_claim(account_id=account_id, limit=batch)
            if not ids:
                break
            for message in OutboxMessage.objects.filter(pk__in=ids).select_related("account").order_by("pk"):
                now = timezone.now()
                if throttled_until.get(message.account_id, now) > now:
                    # The channel said slow down: give the lease back without spending an attempt.
                    # (unless another relay has claimed it since: then it is theirs)
                    OutboxMessage.objects.filter(
                        pk=message.pk, status=OutboxStatus.SENDING, attempts=message.attempts
                    ).update(
                        status=OutboxStatus.FAILED,
                        attempts=message.attempts - 1,
                        next_attempt_at=throttled_until[message.account_id],
                    )
                    counts["deferred"] += 1
                    continue
                if message.account_id not in connectors:
                    connectors[message.account_id] = connector_for(message.account)
                status, hold_off = _deliver(message.pk, connectors[message.account_id], message.attempts)
                counts[status] += 1
                if hold_off is not None:
                    throttled_until[message.account_id] = hold_off
    finally:
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
