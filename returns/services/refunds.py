"""Refunds: an amount per line plus shipping and a reason, never above what was paid minus earlier refunds,
pushed to the channel through the outbox (exactly once: the channel's idempotency key or a read before a
retry), with the channel's answer recorded on the refund. A channel whose refund call is not available
for this order opens an exception case "refund at the channel by hand" with the amount instead.

Refunds seen at the channel (made in the seller centre) are recorded once each (``refund_record_from_channel``).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from channels import outbox as channel_outbox
from channels.connectors import connector_class
from channels.models import OutboxKind, OutboxMessage, OutboxStatus
from config.kernel.actors import Actor, actor_resolve
from orders import services as order_services
from orders.models import ExceptionKind, Order, OrderLine, Severity
from returns.models import Refund, RefundLine, RefundStatus, ReturnAuthorization
from returns.services.common import ReturnConflict, ReturnError, order_returns_lock, rma_event_record

log = logging.getLogger(__name__)

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("1e10")
COUNTED = (RefundStatus.PENDING, RefundStatus.SENT, RefundStatus.CONFIRMED, RefundStatus.MANUAL)


@dataclass(frozen=True)
class RefundLineInput:
    order_line_id: int
    amount: Decimal | str | int
    quantity: int = 0


def money(value, what: str) -> Decimal:
    if isinstance(value, bool):
        raise ReturnError(f"{what}: {value!r} is not an amount")
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ReturnError(f"{what}: {str(value)[:40]!r} is not an amount") from None
    if not amount.is_finite():
        raise ReturnError(f"{what}: {value!r} is not an amount")
    if amount < 0:
        raise ReturnError(f"{what}: an amount cannot be negative ({amount})")
    if amount >= MAX_AMOUNT:
        raise ReturnError(f"{what}: {amount} is implausibly large")
    if amount != amount.quantize(CENT):
        raise ReturnError(f"{what}: {amount} has more than two decimals")
    return amount.quantize(CENT)


def refunded_so_far(order_id: int) -> tuple[Decimal, dict[int, Decimal]]:
    """(total refunded, {order line id: refunded}) over refunds that count (not failed)."""
    total = Refund.objects.filter(order_id=order_id, status__in=COUNTED).aggregate(s=Sum("amount"))["s"] or Decimal(0)
    per_line = dict(
        RefundLine.objects.filter(refund__order_id=order_id, refund__status__in=COUNTED)
        .values("order_line_id")
        .annotate(s=Sum("amount"))
        .values_list("order_line_id", "s")
    )
    return total, per_line


def refund_unavailable_reason(order: Order, rma: ReturnAuthorization | None) -> str:
    """Why the channel's refund call cannot be used for this order ("" when it can)."""
    cls = connector_class(order.account.kind)
    return cls.refund_unavailable(
        marketplace_fulfilled=order.marketplace_fulfilled, channel_return_id=rma.external_id if rma else ""
    )


def refund_create(
    *,
    order_id: int,
    lines: list[RefundLineInput],
    actor: Actor,
    reason: str,
    shipping_amount: Decimal | str | int = Decimal("0"),
    rma_id: int | None = None,
    idempotency_key: str | None = None,
) -> Refund:
    """Refund lines of an order (plus shipping). Refused, writing nothing, above what was paid minus earlier
    refunds, per line and in total. The refund goes to the channel through the outbox, or to an exception
    case when the channel's call is not available. The same idempotency key again returns the same refund."""
    name, _ = actor_resolve(actor)
    reason = (reason or "").strip()
    if not reason:
        raise ReturnError("a refund needs a reason")
    if len(reason) > 255:
        raise ReturnError("a refund reason has at most 255 characters")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
        raise ReturnError("an idempotency key has 1 to 255 characters")
    shipping = money(shipping_amount, "shipping")
    amounts: dict[int, tuple[Decimal, int]] = {}
    for item in lines:
        if item.order_line_id in amounts:
            raise ReturnError(f"order line #{item.order_line_id} is named twice")
        amount = money(item.amount, f"order line #{item.order_line_id}")
        if isinstance(item.quantity, bool) or not isinstance(item.quantity, int) or item.quantity < 0:
            raise ReturnError(f"order line #{item.order_line_id}: quantity must be a whole number, 0 or more")
        if amount > 0:
            amounts[item.order_line_id] = (amount, item.quantity)
    total = sum((a for a, _ in amounts.values()), Decimal("0")) + shipping
    if total <= 0:
        raise ReturnError("a refund needs an amount above zero")
    if idempotency_key and (found := Refund.objects.filter(idempotency_key=idempotency_key).first()):
        if found.order_id != order_id or found.amount != total or found.shipping_amount != shipping:
            raise ReturnConflict(f"idempotency key {idempotency_key!r} was already used for a different refund")
        return found
    try:
        order = Order.objects.get(pk=order_id)
    except Order.DoesNotExist:
        raise ReturnError(f"order #{order_id} does not exist") from None
    rma = None
    if rma_id is not None:
        rma = ReturnAuthorization.objects.filter(pk=rma_id, order_id=order.pk).first()
        if rma is None:
            raise ReturnError(f"RMA #{rma_id} is not a return of order {order}")
    try:
        with transaction.atomic():
            order_returns_lock(order.pk)
            order_lines = {line.pk: line for line in OrderLine.objects.filter(order=order, pk__in=list(amounts))}
            done, per_line = refunded_so_far(order.pk)
            for line_id, (amount, quantity) in amounts.items():
                line = order_lines.get(line_id)
                if line is None:
                    raise ReturnError(f"order line #{line_id} is not a line of order {order}")
                paid = line.unit_price * (line.quantity - line.quantity_cancelled)
                left = paid - per_line.get(line_id, Decimal("0"))
                if amount > left:
                    raise ReturnConflict(
                        f"line {line.external_id} ({line.channel_sku}) of order {order}: refund {amount} is above "
                        f"what is left to refund ({left} of {paid} paid)"
                    )
                if quantity > line.quantity_shipped + line.quantity_cancelled:
                    raise ReturnConflict(
                        f"line {line.external_id}: {quantity} unit(s) refunded, more than the line had"
                    )
            left_total = order.total_amount - done
            if total > left_total:
                raise ReturnConflict(
                    f"order {order}: refund {total} {order.currency} is above what is left to refund "
                    f"({left_total} of {order.total_amount} paid, {done} refunded before)"
                )
            refund = Refund.objects.create(
                order=order,
                rma=rma,
                amount=total,
                shipping_amount=shipping,
                currency=order.currency,
                reason=reason,
                status=RefundStatus.PENDING,
                idempotency_key=idempotency_key,
                created_by=name,
            )
            RefundLine.objects.bulk_create(
                RefundLine(refund=refund, order_line_id=line_id, amount=amount, quantity=quantity)
                for line_id, (amount, quantity) in amounts.items()
            )
            unavailable = refund_unavailable_reason(order, rma)
            if unavailable:
                case, _ = order_services.exception_case_open(
                    kind=ExceptionKind.REFUND_MANUAL,
                    title=f"Refund {total} {order.currency} at {order.account.name} by hand: order {order}",
                    detail=(
                        f"Refund #{refund.pk} ({reason}) cannot be sent to {order.account.name}: {unavailable}. "
                        f"Refund {total} {order.currency} in the channel's seller centre "
                        + (f"(shipping {shipping}) " if shipping else "")
                        + "and resolve this case with the channel's refund reference."
                    ),
                    severity=Severity.HIGH,
                    order_id=order.pk,
                    account_id=order.account_id,
                    dedupe_key=f"refund_manual:refund={refund.pk}",
                    actor=actor,
                )
                refund.status = RefundStatus.MANUAL
                refund.exception_case = case
                refund.save(update_fields=["status", "exception_case"])
            else:
                message, _ = channel_outbox.outbox_enqueue(
                    account_id=order.account_id,
                    kind=OutboxKind.REFUND,
                    dedupe_key=f"refund:{refund.pk}",
                    order_id=order.pk,
                    payload=refund_payload(refund, order, order_lines, rma),
                )
                refund.outbox_message = message
                refund.save(update_fields=["outbox_message"])
            order_services.order_event_record(
                order=order,
                kind="refund_requested",
                actor=actor,
                reason=reason,
                data={
                    "refund_id": refund.pk,
                    "amount": str(total),
                    "shipping": str(shipping),
                    "status": refund.status,
                    **({"rma": rma.rma_number} if rma else {}),
                },
            )
            if rma is not None:
                rma_event_record(
                    rma=rma,
                    kind="refund_requested",
                    actor=actor,
                    reason=reason,
                    data={"refund_id": refund.pk, "amount": str(total), "status": refund.status},
                )
    except IntegrityError as exc:
        if idempotency_key and "idempotency_key" in str(exc):
            return Refund.objects.get(idempotency_key=idempotency_key)
        raise
    return refund


def refund_payload(refund: Refund, order: Order, order_lines: dict[int, OrderLine], rma) -> dict:
    """What the relay hands the connector: everything the channel's refund call needs, as JSON."""
    return {
        "refund_id": refund.pk,
        "reference": f"WB-REFUND-{refund.pk}",
        "order_external_id": order.external_id,
        "currency": order.currency,
        "amount": str(refund.amount),
        "shipping": str(refund.shipping_amount),
        "reason": refund.reason,
        "channel_return_id": rma.external_id if rma else "",
        "marketplace_id": order.channel_marketplace_id,
        "lines": [
            {
                "external_line_id": order_lines[line.order_line_id].external_id,
                "channel_sku": order_lines[line.order_line_id].channel_sku,
                "external_unit_ids": order_lines[line.order_line_id].external_unit_ids,
                "quantity": line.quantity,
                "amount": str(line.amount),
            }
            for line in refund.lines.all().order_by("pk")
        ],
    }


def refund_answer_record(*, outbox_message_id: int) -> Refund | None:
    """Copy the outcome of a refund's outbox message onto the refund: confirmed with the channel's refund
    id and answer, or failed with the channel's error (parked). Idempotent; called when the relay answers
    and by the periodic sweep."""
    with transaction.atomic():
        refund = Refund.objects.select_for_update().filter(outbox_message_id=outbox_message_id).first()
        if refund is None or refund.status not in (RefundStatus.PENDING, RefundStatus.SENT):
            return refund
        message = OutboxMessage.objects.get(pk=outbox_message_id)
        if message.status == OutboxStatus.SENT:
            response = dict(message.response or {})
            state = response.pop("state", None) or {}
            refund.status = RefundStatus.CONFIRMED
            # A read before a retry finds the refund the lost answer named: its id is in the message's state.
            refund.external_id = str(response.get("refund_id") or state.get("refund_id") or "")[:128]
            refund.channel_response = response
        elif message.status == OutboxStatus.PARKED:
            refund.status = RefundStatus.FAILED
            refund.channel_response = {"error": message.last_error[:2000], "detail": message.last_error_detail}
        elif message.status in (OutboxStatus.SENDING, OutboxStatus.FAILED) and message.attempts:
            refund.status = RefundStatus.SENT
            refund.channel_response = {"last_error": message.last_error[:2000]} if message.last_error else {}
            refund.save(update_fields=["status", "channel_response"])
            return refund
        else:
            return refund
        refund.answered_at = timezone.now()
        refund.save(update_fields=["status", "external_id", "channel_response", "answered_at"])
        if refund.rma_id:
            rma_event_record(
                rma=refund.rma,
                kind="refund_" + refund.status,
                actor="outbox",
                data={"refund_id": refund.pk, "external_id": refund.external_id},
            )
        order_services.order_event_record(
            order=refund.order,
            kind="refund_" + refund.status,
            actor="outbox",
            reason=refund.channel_response.get("error", "") if refund.status == RefundStatus.FAILED else "",
            data={"refund_id": refund.pk, "external_id": refund.external_id, "amount": str(refund.amount)},
        )
    return refund


def refunds_answers_sweep() -> int:
    """Record the answers of refunds whose outbox message finished (a missed signal is caught up here)."""
    ids = list(
        Refund.objects.filter(
            status__in=[RefundStatus.PENDING, RefundStatus.SENT],
            outbox_message__status__in=[OutboxStatus.SENT, OutboxStatus.PARKED],
        ).values_list("outbox_message_id", flat=True)[:500]
    )
    for message_id in ids:
        refund_answer_record(outbox_message_id=message_id)
    return len(ids)


def refund_record_from_channel(
    *,
    order: Order,
    external_id: str,
    amount: Decimal,
    currency: str,
    reason: str,
    actor: Actor,
    rma: ReturnAuthorization | None = None,
) -> tuple[Refund | None, bool]:
    """A refund the channel reports (made in its seller centre, or one of ours echoed back): recorded once
    per (order, channel refund id). Our own refunds, recognised by their channel id, are not recorded twice."""
    if not external_id:
        return None, False
    existing = Refund.objects.filter(order=order, external_id=external_id[:128]).first()
    if existing is not None:
        return existing, False
    if amount <= 0:
        return None, False
    name, _ = actor_resolve(actor)
    try:
        with transaction.atomic():
            refund = Refund.objects.create(
                order=order,
                rma=rma,
                amount=amount,
                currency=currency or order.currency,
                reason=(reason or "refunded at the channel")[:255],
                status=RefundStatus.CONFIRMED,
                external_id=external_id[:128],
                from_channel=True,
                created_by=name,
                answered_at=timezone.now(),
            )
            order_services.order_event_record(
                order=order,
                kind="refund_seen_at_channel",
                actor=actor,
                reason=refund.reason,
                data={"refund_id": refund.pk, "external_id": external_id, "amount": str(amount)},
            )
    except IntegrityError:
        return Refund.objects.filter(order=order, external_id=external_id[:128]).first(), False
    return refund, True


def refund_manual_record(*, refund_id: int, external_id: str, actor: Actor, note: str = "") -> Refund:
    """A refund left to a person (the channel had no usable call) was made in the channel's seller centre:
    record the channel's reference, confirm the refund and resolve its case."""
    name, _ = actor_resolve(actor)
    reference = (external_id or "").strip()
    if not reference or len(reference) > 128:
        raise ReturnError("give the channel's refund reference (1 to 128 characters)")
    with transaction.atomic():
        refund = Refund.objects.select_for_update().filter(pk=refund_id).first()
        if refund is None:
            raise ReturnError(f"refund #{refund_id} does not exist")
        if refund.status != RefundStatus.MANUAL:
            raise ReturnConflict(
                f"refund #{refund.pk} is {refund.status}: only a refund left to a person is recorded so"
            )
        if Refund.objects.filter(order_id=refund.order_id, external_id=reference).exclude(pk=refund.pk).exists():
            raise ReturnConflict(f"reference {reference!r} is already recorded on another refund of this order")
        refund.status = RefundStatus.CONFIRMED
        refund.external_id = reference
        refund.answered_at = timezone.now()
        refund.channel_response = {"recorded_by": name, "note": note[:500]}
        refund.save(update_fields=["status", "external_id", "answered_at", "channel_response"])
        if refund.exception_case_id:
            # A case a person resolved meanwhile stays as they left it.
            with contextlib.suppress(order_services.ExceptionCaseError):
                order_services.exception_case_resolve(
                    case=refund.exception_case_id,
                    note=f"Refunded at the channel by hand, reference {reference}" + (f": {note}" if note else ""),
                    actor=actor,
                )
        if refund.rma_id:
            rma_event_record(
                rma=refund.rma,
                kind="refund_recorded",
                actor=actor,
                data={"refund_id": refund.pk, "external_id": reference},
            )
    return refund
