"""Inbound orders: raw payloads kept as InboundEvents, parsed, and ingested one page at a time.

One page is one transaction: its new events, its orders (orders.services.orders_ingest_batch) and
the events' outcomes commit together, so a sync killed mid-page leaves nothing half written, and
a replayed page finds its events already stored and skips them in one query. A malformed order
becomes a failed event naming the field; the rest of the page goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Value
from django.db.models.functions import Concat
from django.utils import timezone

from channels.connectors.base import ChannelError, Connector, NormalizedOrder, PayloadError
from channels.models import (
    BuyerCancelPolicy,
    ChannelAccount,
    ChannelAccountEvent,
    ChannelAvailability,
    ChannelLocation,
    InboundEvent,
    InboundKind,
    InboundStatus,
    Listing,
)
from channels.outbox import acknowledgements_enqueue
from config.kernel.actors import Actor, actor_resolve
from config.kernel.errors import DomainError
from fulfillment import services as fulfillment_services
from inventory.models import Sku
from orders import services as order_services
from orders.models import ExceptionKind, HoldKind, OrderLine, Severity
from orders.services.ingest import IngestError, IngestResult, SkuRef, orders_ingest_batch

log = logging.getLogger(__name__)

# Bigger raw orders are kept truncated and failed: no marketplace order is this large.
MAX_PAYLOAD_BYTES = 512 * 1024


@dataclass
class PageOutcome:
    seen: int = 0
    replayed: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    newest: datetime | None = None

    def add(self, other: PageOutcome) -> None:
        for name in ("seen", "replayed", "created", "updated", "unchanged", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.newest and (self.newest is None or other.newest > self.newest):
            self.newest = other.newest


def _dedupe_key(connector: Connector, raw: Any, text: str) -> tuple[str, str]:
    """Channel id + update time + a digest of the content: a replay matches, a same-second change does not."""
    external_id, updated = connector.order_identity(raw)
    digest = hashlib.sha256(text.encode()).hexdigest()
    if external_id and updated:
        return f"order:{external_id[:120]}:{updated[:40]}:{digest[:16]}", external_id
    return f"order:{external_id[:120] or '?'}:sha256:{digest[:40]}", external_id


def _insert_events(account_id: int, kind: str, rows: list[tuple[str, str, str]]) -> dict[str, int]:
    """Insert events that are not stored yet; returns {dedupe_key: id} of the new ones only."""
    if not rows:
        return {}
    now = timezone.now()
    values = ", ".join(["(%s, %s, %s, %s, %s::jsonb, %s, %s, '', 0)"] * len(rows))
    params: list[Any] = []
    for key, external_id, text in rows:
        params += [account_id, kind, key, external_id[:128], text, now, InboundStatus.RECEIVED]
    with connection.cursor() as cursor:
        # Only placeholders are formatted into the statement; every value travels as a parameter.
        cursor.execute(
            "INSERT INTO channels_inboundevent "  # noqa: S608
            "(account_id, kind, dedupe_key, external_id, payload, received_at, status, error, attempts) "
            f"VALUES {values} ON CONFLICT (account_id, dedupe_key) DO NOTHING RETURNING dedupe_key, id",
            params,
        )
        return dict(cursor.fetchall())


def _payload_text(raw: Any) -> tuple[str, str]:
    """(JSON text to store, an error if the payload is refused before parsing)."""
    text = json.dumps(raw, ensure_ascii=False, separators=(",", ":"), default=str)
    if len(text) > MAX_PAYLOAD_BYTES:
        kept = json.dumps({"_truncated": text[:65536], "_bytes": len(text)})
        return kept, f"payload: {len(text)} bytes is larger than the {MAX_PAYLOAD_BYTES}-byte limit (kept truncated)"
    return text.replace("\\u0000", ""), ""


def sku_map_for(account: ChannelAccount, channel_skus: set[str]) -> dict[str, SkuRef]:
    """Channel SKU → Sku via the account's Listings; a Sku with the same code is mapped on first sight,
    anything else gets an unmapped Listing (sku empty) for ops to map."""
    if not channel_skus:
        return {}
    found: dict[str, SkuRef] = {}
    listed: set[str] = set()
    for channel_sku, sku_id, backorder in Listing.objects.filter(
        account=account, channel_sku__in=list(channel_skus)
    ).values_list("channel_sku", "sku_id", "sku__allow_backorder"):
        listed.add(channel_sku)
        if sku_id:
            found[channel_sku] = SkuRef(sku_id=sku_id, allow_backorder=bool(backorder))
    missing = channel_skus - listed
    if missing:
        by_code = {
            code: (pk, bo)
            for pk, code, bo in Sku.objects.filter(code__in=list(missing)).values_list("pk", "code", "allow_backorder")
        }
        Listing.objects.bulk_create(
            [Listing(account=account, channel_sku=code, sku_id=by_code.get(code, (None,))[0]) for code in missing],
            ignore_conflicts=True,
        )
        for code, (pk, backorder) in by_code.items():
            found[code] = SkuRef(sku_id=pk, allow_backorder=backorder)
    return found


def pickup_locations_for(account: ChannelAccount, orders: list[NormalizedOrder]) -> dict[str, int]:
    """The channel's pickup store ids → Location ids through the account's ChannelLocations; a store
    seen for the first time gets an unmapped ChannelLocation for ops to map."""
    names = {o.pickup_location_ref: o.pickup_location_name for o in orders if o.pickup_location_ref}
    if not names:
        return {}
    known = dict(
        ChannelLocation.objects.filter(account=account, external_id__in=list(names)).values_list(
            "external_id", "location_id"
        )
    )
    ChannelLocation.objects.bulk_create(
        [
            ChannelLocation(account=account, external_id=ref[:255], name=names[ref][:255])
            for ref in names
            if ref not in known
        ],
        ignore_conflicts=True,
    )
    return {ref: location_id for ref, location_id in known.items() if location_id}


def _learn_variant_ids(account: ChannelAccount, orders: list[NormalizedOrder]) -> None:
    learnt = {
        line.channel_sku: line.external_variant_id for o in orders for line in o.lines if line.external_variant_id
    }
    if not learnt:
        return
    for listing in Listing.objects.filter(account=account, channel_sku__in=list(learnt), external_variant_id=""):
        Listing.objects.filter(pk=listing.pk).update(external_variant_id=learnt[listing.channel_sku][:255])


def _hold_for_mapping(
    account: ChannelAccount, order: NormalizedOrder, order_id: int, *, kind: str, what: str, fix: str, actor: str
) -> None:
    """Hold the order and open one exception case until ops map what the channel sent."""
    try:
        order_services.hold_place(order=order_id, kind=kind, reason=f"{what} not mapped: {fix}", actor=actor)
    except DomainError:
        return  # a cancelled order cannot be held, and needs no mapping either
    order_services.exception_case_open(
        kind=ExceptionKind(kind),  # the hold kinds for mappings are exception kinds too
        title=f"Order {order.external_reference or order.external_id}: unmapped {what}",
        detail=f"{fix}, then release the hold.",
        severity=Severity.HIGH,
        order_id=order_id,
        account_id=account.pk,
        actor=actor,
    )


def oversells_report(account: ChannelAccount, *, order_ids: list[int], actor: Actor) -> list[int]:
    """New orders of this account for a SKU whose last quantity the channel acknowledged was 0 before the order
    was placed: the channel sold what it was told it did not have (its own stock edit, a listing we do not
    push, a lag on its side). Each opens (or refreshes) one OVERSELL case per order and SKU, within the
    sync or webhook drain that brought the order. Returns the case ids."""
    if not order_ids:
        return []
    sold_out = ChannelAvailability.objects.filter(
        account_id=account.pk,
        sku_id=OuterRef("sku_id"),
        last_pushed_quantity__lte=0,
        last_pushed_at__lt=OuterRef("order__placed_at"),
    )
    lines = (
        OrderLine.objects.filter(order_id__in=order_ids, order__account_id=account.pk, sku__isnull=False)
        .filter(Exists(sold_out))
        .values("order_id", "order__external_id", "sku_id", "sku__code", "channel_sku", "quantity")
        .order_by("order_id", "sku_id")
    )
    cases = []
    for line in lines:
        case, _ = order_services.exception_case_open(
            kind=ExceptionKind.OVERSELL,
            title=f"{account.name} sold {line['sku__code']} at 0 (order {line['order__external_id']})",
            detail=(
                f"The channel accepted an available quantity of 0 for {line['channel_sku']} before this order was "
                f"placed, and sold {line['quantity']} all the same. Check the listing's stock at {account.name} "
                "(an edit made there, or a listing Waybill does not push) and decide: ship from another node, "
                "backorder, or cancel the line with reason NoInventory."
            ),
            severity=Severity.HIGH,
            order_id=line["order_id"],
            sku_id=line["sku_id"],
            account_id=account.pk,
            actor=actor,
        )
        cases.append(case.pk)
    return cases


def _after_ingest(
    account: ChannelAccount,
    parsed: dict[int, NormalizedOrder],
    results: dict[int, IngestResult],
    actor: str,
    stores: dict[str, int] | None = None,
) -> None:
    """Unknown SKUs and unmapped pickup stores hold the order and open an exception case (never for
    marketplace-fulfilled orders); units the channel cancelled or shipped leave the order's shipments
    and reservations; a buyer's new cancel request (the ingest held the order) is accepted per the
    account's policy, or put to a person; a withdrawn one needs nothing more (the ingest released it). An
    order the channel sold against a quantity of 0 it had accepted from us is an oversell (oversells_report)."""
    oversells_report(
        account,
        order_ids=[
            r.order_id
            for event_id, r in results.items()
            if r.outcome == "created" and r.order_id is not None and not parsed[event_id].marketplace_fulfilled
        ],
        actor=actor,
    )
    for event_id, result in results.items():
        normalized = parsed[event_id]
        if result.cancel_requested and result.order_id is not None and not normalized.marketplace_fulfilled:
            _buyer_cancel_request(account, normalized, result, actor)
        if (
            normalized.pickup_location_ref
            and normalized.pickup_location_ref not in (stores or {})
            and result.order_id is not None
            and result.outcome == "created"
        ):
            store = normalized.pickup_location_name or normalized.pickup_location_ref
            _hold_for_mapping(
                account,
                normalized,
                result.order_id,
                kind=HoldKind.UNMAPPED_LOCATION,
                what=f"pickup store {store}",
                fix=f"Map the channel location {normalized.pickup_location_ref} ({store}) on {account.name} "
                "to a Waybill store (Channel locations in admin) and re-process the order's inbound event",
                actor=actor,
            )
        if result.order_id is not None and not parsed[event_id].marketplace_fulfilled:
            if result.cancelled_lines:
                _apply_upstream(
                    account,
                    result,
                    partial(
                        fulfillment_services.order_lines_cancelled_upstream,
                        cancelled=dict(result.cancelled_lines),
                    ),
                    what="a channel cancellation",
                    fix="Cancel the units on the order's shipments by hand so the node does not ship them.",
                    actor=actor,
                )
            if result.shipped_lines:
                _apply_upstream(
                    account,
                    result,
                    partial(fulfillment_services.order_lines_shipped_upstream, shipped=dict(result.shipped_lines)),
                    what="units shipped outside Waybill",
                    fix="Cancel those units on the order's shipments so the node does not ship them twice, "
                    "and correct on-hand at the node that shipped them.",
                    actor=actor,
                )
        if not result.unmapped_skus or result.order_id is None or normalized.marketplace_fulfilled:
            continue
        skus = ", ".join(result.unmapped_skus)
        _hold_for_mapping(
            account,
            normalized,
            result.order_id,
            kind=HoldKind.UNMAPPED_SKU,
            what=f"SKU {skus}",
            fix=f"Map the channel SKU(s) {skus} on {account.name} to a Waybill SKU",
            actor=actor,
        )


def _buyer_cancel_request(account: ChannelAccount, order: NormalizedOrder, result: IngestResult, actor: str) -> None:
    """Auto-accept: while nothing is picked, every open unit is cancelled for the buyer (stock released, the
    channel told through the outbox) and the hold released. Otherwise, or if that is refused, an exception
    case asks a person; the hold stays, so the node may not ship meanwhile."""
    ref = order.external_reference or order.external_id
    why = order.cancel_request_reason or "no reason given"
    if account.buyer_cancel_policy == BuyerCancelPolicy.AUTO_ACCEPT:
        try:
            # A savepoint: a refusal leaves the page's transaction usable for the other orders.
            with transaction.atomic():
                fulfillment_services.order_buyer_cancel_accept(
                    order_id=result.order_id,
                    reason=f"buyer requested cancellation ({why})",
                    # Not a "sync:" actor: the channel asked, Waybill cancels, and the channel must hear it.
                    actor=f"auto-accept:{account.name}"[:150],
                )
            return
        except DomainError as exc:
            decision = f"It could not be accepted automatically: {exc}."
    else:
        decision = f"{account.name} asks a person to review buyer cancel requests."
    order_services.exception_case_open(
        kind=ExceptionKind.CANCEL_REQUEST,
        title=f"Order {ref}: the buyer asked to cancel",
        detail=f"Reason: {why}. {decision} The order is held and its node may not ship it. Cancel its units "
        "(the channel is told) and release the hold, or refuse the request at the channel and release the hold.",
        severity=Severity.HIGH,
        order_id=result.order_id,
        account_id=account.pk,
        actor=actor,
    )


def _apply_upstream(
    account: ChannelAccount, result: IngestResult, apply: Callable[..., Any], *, what: str, fix: str, actor: str
) -> None:
    """Apply a change the channel made (cancelled or shipped units) to the order's shipments and stock.
    A refusal opens a critical exception case instead of failing the page."""
    try:
        # A savepoint: a refusal leaves the page's transaction usable for the other orders.
        with transaction.atomic():
            apply(order_id=result.order_id, actor=actor)
    except DomainError as exc:
        order_services.exception_case_open(
            kind=ExceptionKind.OTHER,
            title=f"Order {result.external_id}: {what} could not be applied to its shipments",
            detail=f"{exc}. {fix}",
            severity=Severity.CRITICAL,
            order_id=result.order_id,
            account_id=account.pk,
            actor=actor,
        )


def _process_events(
    account: ChannelAccount, connector: Connector, events: list[tuple[int, Any, str]], actor: str
) -> PageOutcome:
    """Parse and ingest stored events [(event id, raw payload, refusal error)]; record each outcome."""
    outcome = PageOutcome()
    parsed: dict[int, NormalizedOrder] = {}
    failures: dict[int, str] = {}
    for event_id, raw, refusal in events:
        if refusal:
            failures[event_id] = refusal
            continue
        try:
            parsed[event_id] = connector.parse_order(raw)
        except PayloadError as exc:
            failures[event_id] = str(exc)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            failures[event_id] = f"payload: {type(exc).__name__}: {exc}"
    results: dict[int, IngestResult] = {}
    if parsed:
        ids = list(parsed)
        sku_map = sku_map_for(account, {line.channel_sku for o in parsed.values() for line in o.lines})
        stores = pickup_locations_for(account, list(parsed.values()))
        try:
            with transaction.atomic():
                batch = orders_ingest_batch(
                    account_id=account.pk,
                    orders=[parsed[i].to_ingest(stores) for i in ids],
                    sku_map=sku_map,
                    actor=actor,
                )
            results = dict(zip(ids, batch, strict=True))
        except Exception:
            # One order the batch could not write: write them one by one so only that one fails.
            log.warning("batch ingest failed for %s; retrying order by order", account.name, exc_info=True)
            for event_id in ids:
                try:
                    with transaction.atomic():
                        (results[event_id],) = orders_ingest_batch(
                            account_id=account.pk,
                            orders=[parsed[event_id].to_ingest(stores)],
                            sku_map=sku_map,
                            actor=actor,
                        )
                except (IngestError, DomainError, ValueError) as exc:
                    failures[event_id] = str(exc)
                except Exception as exc:
                    failures[event_id] = f"could not be written: {type(exc).__name__}: {exc}"[:2000]
        _learn_variant_ids(account, list(parsed.values()))
        _after_ingest(account, parsed, {k: v for k, v in results.items() if v.outcome != "failed"}, actor, stores)
        acknowledgements_enqueue(
            account_id=account.pk,
            orders=[
                (result.order_id, parsed[event_id].external_id)
                for event_id, result in results.items()
                if result.order_id and result.outcome != "failed" and parsed[event_id].needs_acknowledgement
            ],
        )
    now = timezone.now()
    updates = []
    for event_id, _, _ in events:
        result = results.get(event_id)
        event = InboundEvent(pk=event_id, processed_at=now)
        if event_id in parsed:
            event.source_updated_at = parsed[event_id].updated_at
            if outcome.newest is None or parsed[event_id].updated_at > outcome.newest:
                outcome.newest = parsed[event_id].updated_at
        if result is not None and result.outcome != "failed":
            event.status = InboundStatus.PROCESSED
            event.order_id = result.order_id
            event.error = ""
            setattr(outcome, result.outcome, getattr(outcome, result.outcome) + 1)
        else:
            event.status = InboundStatus.FAILED
            event.error = (failures.get(event_id) or (result.error if result else "not processed"))[:4000]
            outcome.failed += 1
        updates.append(event)
    _record_outcomes(updates, now)
    if outcome.failed:
        first_error = next(e.error for e in updates if e.status == InboundStatus.FAILED)
        order_services.exception_case_open(
            kind=ExceptionKind.INBOUND_FAILED,
            title=f"{account.name}: inbound orders failed to process",
            detail=f"Latest: {first_error[:500]}. Fix the data or the mapping and re-process on the Channels screen.",
            severity=Severity.MEDIUM,
            account_id=account.pk,
            actor=actor,
        )
    return outcome


def _record_outcomes(events: list[InboundEvent], now) -> None:
    """One UPDATE … FROM (VALUES …) for the page: Django's bulk_update builds a CASE per column,
    which cost half of the ingest time at 100 rows."""
    if not events:
        return
    values = ", ".join(["(%s::bigint, %s, %s::bigint, %s, %s::timestamptz)"] * len(events))
    params: list[Any] = []
    for event in events:
        params += [event.pk, event.status, event.order_id, event.error, event.source_updated_at]
    with connection.cursor() as cursor:
        # Only placeholders are formatted into the statement; every value travels as a parameter.
        cursor.execute(
            "UPDATE channels_inboundevent AS e SET status = v.status, order_id = v.order_id, error = v.error,"  # noqa: S608
            " source_updated_at = COALESCE(v.updated, e.source_updated_at), processed_at = %s,"
            " attempts = e.attempts + 1"
            f" FROM (VALUES {values}) AS v(id, status, order_id, error, updated) WHERE e.id = v.id",
            [now, *params],
        )


def inbound_orders_process(
    *, account: ChannelAccount, connector: Connector, raw_orders: list[Any], actor: str
) -> PageOutcome:
    """Store a page of raw orders as events (deduped) and ingest the new ones, in one transaction."""
    rows: list[tuple[str, str, str]] = []
    refusals: dict[str, str] = {}
    raw_by_key: dict[str, Any] = {}
    for raw in raw_orders:
        text, refusal = _payload_text(raw)
        key, external_id = _dedupe_key(connector, raw, text)
        if key in raw_by_key:
            continue
        raw_by_key[key] = raw
        if refusal:
            refusals[key] = refusal
        rows.append((key, external_id, text))
    with transaction.atomic():
        inserted = _insert_events(account.pk, InboundKind.ORDER, rows)
        outcome = _process_events(
            account,
            connector,
            [(inserted[k], raw_by_key[k], refusals.get(k, "")) for k, *_ in rows if k in inserted],
            actor,
        )
    outcome.seen = len(raw_orders)
    outcome.replayed = len(raw_orders) - len(inserted)
    return outcome


def inbound_order_reread(
    *, account: ChannelAccount, connector: Connector, external_id: str, actor: str
) -> InboundEvent:
    """Read one order again from the channel by its id and ingest it like a page of one order.

    The fresh payload is stored as a new event, unless it is the very payload already stored (same
    dedupe key): that event is then processed again in place (a mapping may have been fixed since).
    Raises ChannelError when the channel cannot answer (or does not know the order)."""
    raw = connector.get_order(external_id)
    text, refusal = _payload_text(raw)
    key, _ = _dedupe_key(connector, raw, text)
    outcome = inbound_orders_process(account=account, connector=connector, raw_orders=[raw], actor=actor)
    if outcome.replayed:
        with transaction.atomic():
            stored = InboundEvent.objects.select_for_update().get(account=account, dedupe_key=key)
            if stored.status in (InboundStatus.FAILED, InboundStatus.RECEIVED):
                _process_events(account, connector, [(stored.pk, raw, refusal)], actor)
    fresh = InboundEvent.objects.get(account=account, dedupe_key=key)
    if fresh.status == InboundStatus.PROCESSED and fresh.external_id:
        _supersede(account.pk, fresh.external_id, fresh, actor)
    return fresh


EARLIER = "\nEarlier: "


def _first_error(error: str) -> str:
    """The event's own first error, without the notes of later re-reads."""
    return error.rsplit(EARLIER, 1)[-1]


def _supersede(account_id: int, external_id: str, by: InboundEvent, actor: str) -> int:
    """Every other failed event of the order is done: a newer read of the order went in."""
    return (
        InboundEvent.objects.filter(
            account_id=account_id, kind=InboundKind.ORDER, external_id=external_id, status=InboundStatus.FAILED
        )
        .exclude(pk=by.pk)
        .update(
            status=InboundStatus.PROCESSED,
            order_id=by.order_id,
            processed_at=timezone.now(),
            error=Concat(Value(f"Superseded by event #{by.pk} (order read again by {actor}).{EARLIER}"), F("error")),
        )
    )


def inbound_failed_superseded_close(*, account_id: int) -> int:
    """Failed order events older than a processed event of the same order are done: close them."""
    newer = InboundEvent.objects.filter(
        account_id=account_id,
        kind=InboundKind.ORDER,
        external_id=OuterRef("external_id"),
        status=InboundStatus.PROCESSED,
        pk__gt=OuterRef("pk"),
    )
    return (
        InboundEvent.objects.filter(account_id=account_id, kind=InboundKind.ORDER, status=InboundStatus.FAILED)
        .exclude(external_id="")
        .filter(Exists(newer))
        .update(
            status=InboundStatus.PROCESSED,
            processed_at=timezone.now(),
            error=Concat(Value(f"Superseded by a newer event of this order, processed.{EARLIER}"), F("error")),
        )
    )


def _reread(event: InboundEvent, connector: Connector, actor: str) -> tuple[InboundEvent, ChannelError | None]:
    """Re-read a failed event's order from the channel; (the event afterwards, the channel's error if any)."""
    try:
        fresh = inbound_order_reread(
            account=event.account, connector=connector, external_id=event.external_id, actor=actor
        )
    except ChannelError as exc:
        _reread_failed(event, f"Re-read from the channel failed ({actor}): {exc}")
        return event, exc
    event.refresh_from_db()
    if event.status == InboundStatus.FAILED and fresh.pk != event.pk:
        _reread_failed(event, f"Re-read from the channel as event #{fresh.pk}, which failed too: {fresh.error}"[:2000])
    return event, None


def _reread_failed(event: InboundEvent, note: str) -> None:
    """Note on a still-failed event why the re-read did not help (its first error kept), one more attempt."""
    InboundEvent.objects.filter(pk=event.pk, status=InboundStatus.FAILED).update(
        error=f"{note}{EARLIER}{_first_error(event.error)}"[:4000],
        attempts=F("attempts") + 1,
        processed_at=timezone.now(),
    )
    event.refresh_from_db()


def inbound_event_reprocess(*, event: InboundEvent, connector: Connector, actor: str) -> InboundEvent:
    """Process a failed order event again from the order as the channel has it now (``get_order``), not
    from the stored payload: a fixed order then goes in, and the failed event is marked superseded. If
    the channel cannot find the order or fails, the event stays failed and its error says so. An event
    with no channel id (its payload named none) is parsed again from the stored payload."""
    if event.kind != InboundKind.ORDER:
        raise DomainError(f"event #{event.pk} is a {event.kind} event; only order events are re-processed")
    locked = InboundEvent.objects.select_related("account").get(pk=event.pk)
    if locked.status == InboundStatus.PROCESSED:
        return locked
    if locked.status == InboundStatus.DISCARDED:
        raise DomainError(f"event #{locked.pk} was discarded; the order is no longer read again")
    if locked.external_id:
        return _reread(locked, connector, actor)[0]
    with transaction.atomic():
        locked = InboundEvent.objects.select_for_update().get(pk=event.pk)
        truncated = isinstance(locked.payload, dict) and "_truncated" in locked.payload
        refusal = "payload: truncated when received (too large), cannot be processed" if truncated else ""
        _process_events(locked.account, connector, [(locked.pk, locked.payload, refusal)], actor)
    locked.refresh_from_db()
    return locked


def inbound_orders_retry(
    *, account: ChannelAccount, connector: Connector, actor: str, limit: int = 25, tried_before: datetime | None = None
) -> dict[str, int]:
    """Read again, by id, the orders whose newest event failed (not discarded), least recently tried
    first, at most ``limit`` (only those last tried before ``tried_before``): a cursor that moved past
    a quarantined order loses nothing. Each order is retried until it goes in or a person discards it;
    after the first retry an order waits longer between tries (the account's interval, doubling, at
    most an hour). A channel error that may pass (throttling, outage) ends this round."""
    from channels.selectors import inbound_orders_to_retry

    inbound_failed_superseded_close(account_id=account.pk)
    counts = {"retried": 0, "recovered": 0, "still_failed": 0}
    for event in inbound_orders_to_retry(account=account, limit=limit, tried_before=tried_before):
        counts["retried"] += 1
        try:
            event, error = _reread(event, connector, actor)
        except Exception:
            log.exception("re-reading order %s of %s failed", event.external_id, account.name)
            counts["still_failed"] += 1
            continue
        if event.status == InboundStatus.PROCESSED:
            counts["recovered"] += 1
        else:
            counts["still_failed"] += 1
        if error is not None and error.retryable:
            break
    return counts


def inbound_event_discard(*, event: InboundEvent | int, reason: str, actor: Actor) -> list[int]:
    """A person gives up on a failed order: its failed events are discarded and the sync stops reading
    it again. One audit event on the account with the reason. Returns the ids discarded."""
    name, _ = actor_resolve(actor)
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("discarding an inbound event needs a reason")
    pk = event if isinstance(event, int) else event.pk
    with transaction.atomic():
        locked = InboundEvent.objects.select_for_update().get(pk=pk)
        if locked.kind != InboundKind.ORDER or locked.status != InboundStatus.FAILED:
            raise DomainError(
                f"event #{locked.pk} is a {locked.get_status_display().lower()} {locked.kind} event; "
                "only failed order events are discarded"
            )
        same_order = InboundEvent.objects.filter(
            account_id=locked.account_id, kind=InboundKind.ORDER, status=InboundStatus.FAILED
        )
        if locked.external_id:
            same_order = same_order.filter(external_id=locked.external_id)
        else:
            same_order = same_order.filter(pk=pk)
        ids = list(same_order.select_for_update().order_by("pk").values_list("pk", flat=True))
        InboundEvent.objects.filter(pk__in=ids).update(status=InboundStatus.DISCARDED, processed_at=timezone.now())
        ChannelAccountEvent.objects.create(
            account_id=locked.account_id,
            kind="inbound_discarded",
            actor=name,
            reason=reason[:2000],
            data={"external_id": locked.external_id, "event_ids": ids, "error": _first_error(locked.error)[:1000]},
        )
    return ids
