"""Channel returns in: each return a channel reports becomes one RMA (or updates the one it became), matched
to its order lines, so the warehouse knows what is coming back. Refunds the channel reports (made in its
seller centre) are recorded once each; Waybill's own refunds, echoed back, are recognised by their id.

A channel speaks for the stages before the parcel reaches a node (requested, authorized, in transit) and for
its end (rejected, cancelled); receiving and inspecting are the warehouse's, never taken from a channel.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from channels.connectors import connector_class
from channels.connectors.base import (
    ChannelError,
    ChannelRefund,
    ChannelUnsupported,
    NormalizedReturn,
    ReturnedLine,
)
from channels.models import ChannelAccount
from channels.services import connector_for
from config.kernel.actors import Actor
from orders import services as order_services
from orders.models import ExceptionKind, Order, Severity
from orders.services import ExceptionCaseError
from returns.models import (
    Refund,
    ReturnAuthorization,
    ReturnReason,
    ReturnSource,
    ReturnStatus,
    ReturnSyncState,
    WaitingChannelReturn,
)
from returns.services.common import ReturnConflict, ReturnError, rma_event_record, rma_lock
from returns.services.lifecycle import (
    RANK,
    ReturnLineInput,
    can_transition,
    line_units_held,
    rma_create,
    rma_transition_locked,
)
from returns.services.refunds import refund_record_from_channel

log = logging.getLogger(__name__)

SYNC_LOCK_NAMESPACE = 7319
OVERLAP = timedelta(minutes=10)
FIRST_LOOKBACK = timedelta(days=30)
CHANNEL_SETS = (ReturnStatus.REQUESTED, ReturnStatus.AUTHORIZED, ReturnStatus.IN_TRANSIT)
# A return whose order is not in Waybill yet waits for it (retried at each read of the account's returns);
# past this, a case asks a person to look (the order sync reads orders within minutes of their change).
WAIT_BEFORE_CASE = timedelta(hours=6)


@dataclass
class IngestOutcome:
    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    unchanged: int = 0
    refunds_recorded: int = 0
    skipped: list[str] = field(default_factory=list)
    # The return's order is not in Waybill yet: the return is kept (WaitingChannelReturn) until it is.
    waiting: bool = False


def _order_lines(order: Order, wanted) -> list[ReturnLineInput]:
    """The channel's returned lines as RMA lines: matched by the channel's line id, else by its SKU; units
    above what can still be returned are left out (the channel may count a line Waybill already has under return)."""
    lines = list(order.lines.all())
    by_id = {line.external_id: line for line in lines}
    by_sku = {line.channel_sku: line for line in lines}
    held = line_units_held([line.pk for line in lines])
    out: dict[int, ReturnLineInput] = {}
    for item in wanted:
        line = by_id.get(item.external_line_id) or (by_sku.get(item.channel_sku) if item.channel_sku else None)
        if line is None:
            continue
        room = line.quantity_shipped - held[line.pk] - (out[line.pk].quantity if line.pk in out else 0)
        units = min(item.quantity, room)
        if units <= 0:
            continue
        reason = item.reason if item.reason in ReturnReason.values else ""
        previous = out.get(line.pk)
        out[line.pk] = ReturnLineInput(
            line.pk, units + (previous.quantity if previous else 0), reason, item.external_id[:128]
        )
    return list(out.values())


def channel_return_ingest(
    *, account_id: int, returned: NormalizedReturn, actor: Actor, now: datetime | None = None
) -> IngestOutcome:
    """One channel return (and the refunds reported with it): an RMA opened once, then updated. A return whose
    order is not in Waybill yet is kept, as reported, until its order arrives (``channel_returns_retry``)."""
    order = Order.objects.filter(account_id=account_id, external_id=returned.order_external_id).first()
    if order is None:
        channel_return_wait(account_id=account_id, returned=returned, now=now or timezone.now())
        return IngestOutcome(waiting=True)
    return _ingest(order, returned, actor)


def _ingest(order: Order, returned: NormalizedReturn, actor: Actor) -> IngestOutcome:
    outcome = IngestOutcome()
    rma = None
    ours = set(
        Refund.objects.filter(order=order, from_channel=False)
        .exclude(external_id="")
        .values_list("external_id", flat=True)
    )
    if returned.inferred_from_refund and any(r.external_id in ours for r in returned.refunds):
        outcome.unchanged += 1  # Waybill's own refund, seen on the order: its RMA (if any) is Waybill's
        return outcome
    if returned.external_id:
        rma = ReturnAuthorization.objects.filter(order=order, external_id=returned.external_id[:128]).first()
        if rma is None:
            rma = _open(order, returned, actor, outcome)
        else:
            _update(rma, returned, actor, outcome)
    for refund in returned.refunds:
        if refund.external_id in ours:
            continue
        _, made = refund_record_from_channel(
            order=order,
            external_id=refund.external_id,
            amount=refund.amount,
            currency=refund.currency,
            reason=f"refunded at {order.account.name}" + (f" ({returned.note})" if returned.note else ""),
            actor=actor,
            rma=rma,
        )
        outcome.refunds_recorded += int(made)
    return outcome


def _open(order: Order, returned: NormalizedReturn, actor: Actor, outcome: IngestOutcome):
    if returned.status not in CHANNEL_SETS:
        outcome.skipped.append(f"return {returned.external_id} is {returned.status or 'unknown'} at the channel")
        return None
    lines = _order_lines(order, returned.lines)
    if not lines:
        outcome.skipped.append(f"return {returned.external_id}: no line of order {order} can still be returned")
        return None
    reason = returned.reason if returned.reason in ReturnReason.values else ReturnReason.OTHER
    try:
        rma = rma_create(
            order_id=order.pk,
            lines=lines,
            actor=actor,
            reason=reason,
            customer_note=returned.note,
            status=returned.status,
            source=ReturnSource.CHANNEL,
            external_id=returned.external_id[:128],
            channel_status=returned.channel_status[:64],
        )
    except ReturnConflict:
        # Ingested at the same moment by another reader (the unique (order, channel id) won): update that one.
        rma = ReturnAuthorization.objects.filter(order=order, external_id=returned.external_id[:128]).first()
        if rma is None:
            raise
        _update(rma, returned, actor, outcome)
        return rma
    outcome.created.append(rma.pk)
    return rma


def _update(rma: ReturnAuthorization, returned: NormalizedReturn, actor: Actor, outcome: IngestOutcome) -> None:
    with transaction.atomic():
        locked = rma_lock(rma.pk)
        changed = False
        if returned.channel_status and locked.channel_status != returned.channel_status[:64]:
            before = locked.channel_status
            locked.channel_status = returned.channel_status[:64]
            locked.save(update_fields=["channel_status", "updated_at"])
            rma_event_record(
                rma=locked,
                kind="channel_status",
                actor=actor,
                data={"before": before, "after": locked.channel_status},
            )
            changed = True
        target = returned.status
        moves_forward = target in CHANNEL_SETS and RANK.get(target, -1) > RANK.get(locked.status, 99)
        ends = (
            target in (ReturnStatus.REJECTED, ReturnStatus.CANCELLED)
            and not locked.lines.filter(quantity_received__gt=0).exists()
        )
        if (moves_forward or ends) and can_transition(locked.status, target):
            rma_transition_locked(locked, target, actor=actor, reason=f"the channel reports {returned.channel_status}")
            changed = True
    if changed:
        outcome.updated.append(rma.pk)
    else:
        outcome.unchanged += 1


# --- returns whose order is not in Waybill yet ----------------------------------------------------------


def return_to_json(returned: NormalizedReturn) -> dict:
    data = asdict(returned)
    data["updated_at"] = returned.updated_at.isoformat() if returned.updated_at else None
    data["refunds"] = [{**r, "amount": str(r["amount"])} for r in data["refunds"]]
    return data


def return_from_json(data: dict) -> NormalizedReturn:
    return NormalizedReturn(
        **{
            **data,
            "lines": [ReturnedLine(**line) for line in data.get("lines") or []],
            "refunds": [ChannelRefund(**{**r, "amount": Decimal(r["amount"])}) for r in data.get("refunds") or []],
            "updated_at": datetime.fromisoformat(data["updated_at"]) if data.get("updated_at") else None,
        }
    )


def _waiting_key(returned: NormalizedReturn) -> str:
    if returned.external_id:
        return returned.external_id[:255]
    digest = hashlib.sha256(json.dumps(return_to_json(returned), sort_keys=True).encode()).hexdigest()[:32]
    return f"order:{returned.order_external_id[:128]}:{digest}"


def channel_return_wait(*, account_id: int, returned: NormalizedReturn, now: datetime) -> WaitingChannelReturn:
    """Keep a channel return whose order is not in Waybill yet: once per (account, channel return id), its
    payload the latest the channel reported."""
    waiting, created = WaitingChannelReturn.objects.update_or_create(
        account_id=account_id,
        key=_waiting_key(returned),
        defaults={
            "order_external_id": returned.order_external_id[:128],
            "payload": return_to_json(returned),
            "last_seen_at": now,
        },
        create_defaults={
            "order_external_id": returned.order_external_id[:128],
            "payload": return_to_json(returned),
            "first_seen_at": now,
            "last_seen_at": now,
        },
    )
    if created:
        log.info("return %s waits for order %s (account %s)", waiting.key, waiting.order_external_id, account_id)
    return waiting


def channel_returns_retry(*, account_id: int, actor: Actor, now: datetime | None = None) -> dict:
    """The account's waiting returns whose order has arrived become RMAs (or update theirs), each once; a
    return still without its order after ``WAIT_BEFORE_CASE`` opens one case naming the channel return and the
    order. A case of a return ingested since is resolved."""
    now = now or timezone.now()
    waiting = list(WaitingChannelReturn.objects.filter(account_id=account_id, resolved_at__isnull=True).order_by("pk"))
    totals = {"ingested": 0, "waiting": 0, "cases": 0, "created": 0, "updated": 0, "refunds": 0}
    if not waiting:
        return totals
    orders = {
        order.external_id: order
        for order in Order.objects.filter(
            account_id=account_id, external_id__in={row.order_external_id for row in waiting}
        ).prefetch_related("account")
    }
    for row in waiting:
        order = orders.get(row.order_external_id)
        if order is None:
            totals["waiting"] += 1
            if row.case_id is None and now - row.first_seen_at >= WAIT_BEFORE_CASE:
                _waiting_case(row, actor, "its order is not in Waybill")
                totals["cases"] += 1
            continue
        returned = return_from_json(row.payload)
        update = {"last_tried_at": now, "attempts": row.attempts + 1}
        try:
            outcome = _ingest(order, returned, actor)
        except (ReturnError, ReturnConflict) as exc:
            log.warning("waiting return %s of order %s not ingested: %s", row.key, order, exc)
            WaitingChannelReturn.objects.filter(pk=row.pk).update(**update, last_error=str(exc)[:2000])
            totals["waiting"] += 1
            if row.case_id is None and now - row.first_seen_at >= WAIT_BEFORE_CASE:
                row.last_error = str(exc)[:2000]
                _waiting_case(row, actor, f"it cannot become an RMA: {exc}")
                totals["cases"] += 1
            continue
        rma_id = next(iter(outcome.created + outcome.updated), None)
        if rma_id is None and returned.external_id:
            rma_id = (
                ReturnAuthorization.objects.filter(order=order, external_id=returned.external_id[:128])
                .values_list("pk", flat=True)
                .first()
            )
        WaitingChannelReturn.objects.filter(pk=row.pk).update(**update, resolved_at=now, rma_id=rma_id, last_error="")
        totals["ingested"] += 1
        totals["created"] += len(outcome.created)
        totals["updated"] += len(outcome.updated)
        totals["refunds"] += outcome.refunds_recorded
        if row.case_id is not None:
            with contextlib.suppress(ExceptionCaseError):  # a person resolved it already
                order_services.exception_case_resolve(
                    case=row.case_id,
                    note=f"order {order} arrived; return {row.key} ingested" + (f" as RMA #{rma_id}" if rma_id else ""),
                    actor=actor,
                )
    return totals


def _waiting_case(row: WaitingChannelReturn, actor: Actor, why: str) -> None:
    account = ChannelAccount.objects.only("name").get(pk=row.account_id)
    case, _ = order_services.exception_case_open(
        kind=ExceptionKind.OTHER,
        title=f"Return {row.key} at {account.name} waits: {why} (order {row.order_external_id})"[:255],
        detail=(
            f"{account.name} reports return {row.key} of order {row.order_external_id}, first seen "
            f"{row.first_seen_at:%Y-%m-%d %H:%M} UTC; {why}. Waybill keeps it and turns it into an RMA as soon as "
            "the order is here (each read of the account's returns tries again). Check the order sync of this "
            "account, or import the order; an RMA can also be opened by hand from the order page."
            + (f" Last error: {row.last_error}" if row.last_error else "")
        ),
        severity=Severity.MEDIUM,
        account_id=row.account_id,
        dedupe_key=f"return_waiting:{row.account_id}:{row.key}"[:255],
        actor=actor,
    )
    WaitingChannelReturn.objects.filter(pk=row.pk).update(case_id=case.pk)
    row.case_id = case.pk


def returns_sync_account(*, account_id: int, now: datetime | None = None, force: bool = False) -> dict:
    """Read an account's returns changed since its cursor (minus an overlap) and ingest each. One reader per
    account at a time: a second caller returns at once. Not more often than the channel's
    ``returns_read_interval`` unless ``force``."""
    now = now or timezone.now()
    account = ChannelAccount.objects.get(pk=account_id)
    last = ReturnSyncState.objects.filter(account=account).values_list("last_run_at", flat=True).first()
    if not force and last and now - last < connector_class(account.kind).returns_read_interval:
        return {"skipped": "read recently"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [SYNC_LOCK_NAMESPACE, account_id])
        if not cursor.fetchone()[0]:
            return {"skipped": "another read of this account's returns is running"}
    try:
        state, _ = ReturnSyncState.objects.get_or_create(account=account)
        since = (state.cursor - OVERLAP) if state.cursor else now - FIRST_LOOKBACK
        actor = f"sync:{account.name}"
        totals = {"seen": 0, "created": 0, "updated": 0, "refunds": 0, "skipped": 0, "waiting": 0}
        newest = state.cursor
        error = ""
        try:
            connector = connector_for(account)
        except ChannelError as exc:  # no credentials yet, or no connector for this kind
            state.last_run_at, state.last_error = now, str(exc)[:2000]
            state.save(update_fields=["last_run_at", "last_error"])
            return {"skipped": str(exc)[:200]}
        try:
            for page in connector.fetch_returns(since=since):
                for returned in page:
                    totals["seen"] += 1
                    try:
                        outcome = channel_return_ingest(account_id=account.pk, returned=returned, actor=actor, now=now)
                    except (ReturnError, ReturnConflict) as exc:
                        log.warning("return %s of %s not ingested: %s", returned.external_id, account.name, exc)
                        totals["skipped"] += 1
                        continue
                    totals["created"] += len(outcome.created)
                    totals["updated"] += len(outcome.updated)
                    totals["refunds"] += outcome.refunds_recorded
                    totals["skipped"] += len(outcome.skipped)
                    totals["waiting"] += int(outcome.waiting)
                    if returned.updated_at and (newest is None or returned.updated_at > newest):
                        newest = returned.updated_at
        except ChannelUnsupported:
            return {"skipped": f"{account.kind} returns are not read"}
        except ChannelError as exc:
            error = str(exc)[:2000]
        finally:
            connector.close()
        # Returns kept for want of their order, this read's included: those whose order has arrived are ingested.
        retried = channel_returns_retry(account_id=account.pk, actor=actor, now=now)
        for name in ("created", "updated", "refunds"):
            totals[name] += retried[name]
        totals["waiting"] = retried["waiting"]
        totals["waiting_cases"] = retried["cases"]
        state.cursor = min(newest or now, now) if not error else state.cursor
        state.last_run_at = now
        state.last_error = error
        state.seen = totals["seen"]
        state.created = totals["created"]
        state.save()
        return {**totals, **({"error": error} if error else {})}
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [SYNC_LOCK_NAMESPACE, account_id])
