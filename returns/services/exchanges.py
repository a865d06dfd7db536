"""Exchanges: a linked replacement order for the new SKU (price zero, or the difference), reserved and
routed like any other order. Whether it ships at once or once the return is received is the account's
return policy (ReturnPolicy.exchange_policy); a waiting replacement is held (awaiting return) and
released by the receipt."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import partial

from django.db import transaction
from django.utils import timezone

from config.kernel.actors import Actor, actor_resolve
from inventory.models import Sku
from orders import services as order_services
from orders.models import Hold, HoldKind, Order, OrderStatus
from returns.models import ExchangePolicy, ReturnAuthorization, ReturnPolicy, ReturnStatus
from returns.services.common import ReturnConflict, ReturnError, rma_event_record, rma_lock, units_checked

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExchangeLineInput:
    sku_id: int
    quantity: int
    # What the buyer pays for the replacement: zero for a like-for-like swap, or the price difference.
    unit_price: Decimal = Decimal("0")


def exchange_policy_for(account_id: int) -> str:
    policy = ReturnPolicy.objects.filter(account_id=account_id).values_list("exchange_policy", flat=True).first()
    return policy or ExchangePolicy.AFTER_RECEIPT


def _route_after_commit(order_id: int) -> None:
    from fulfillment import services as fulfillment_services

    try:
        fulfillment_services.order_route(order_id=order_id, actor="returns:exchange")
    except Exception:  # the routing sweep picks the order up again
        log.exception("routing exchange order %s failed", order_id)


def exchange_create(*, rma_id: int, lines: list[ExchangeLineInput], actor: Actor, reason: str = "") -> Order:
    """Create the replacement order of an RMA (one per RMA), linked to the original order. It is routed
    after commit, or held until the return arrives when the account's policy says so."""
    actor_resolve(actor)
    if not lines:
        raise ReturnError("an exchange needs at least one replacement line")
    checked = []
    for index, line in enumerate(lines, start=1):
        units_checked(line.quantity, f"replacement line {index}")
        try:
            price = Decimal(str(line.unit_price))
        except InvalidOperation:
            raise ReturnError(f"replacement line {index}: price {line.unit_price!r} is not a number") from None
        if not price.is_finite() or price < 0 or price >= Decimal("1e9"):
            raise ReturnError(f"replacement line {index}: price must be 0 or more (the difference the buyer pays)")
        checked.append((line, price.quantize(Decimal("0.01"))))
    skus = {s.pk: s for s in Sku.objects.filter(pk__in=[line.sku_id for line, _ in checked])}
    for index, (line, _) in enumerate(checked, start=1):
        sku = skus.get(line.sku_id)
        if sku is None:
            raise ReturnError(f"replacement line {index}: SKU #{line.sku_id} does not exist")
        if not sku.is_active:
            raise ReturnError(f"replacement line {index}: SKU {sku.code} is inactive")
    with transaction.atomic():
        rma = rma_lock(rma_id)
        if rma.exchange_order_id:
            raise ReturnConflict(f"RMA {rma.rma_number} already has its replacement order")
        if rma.status in (ReturnStatus.REJECTED, ReturnStatus.CANCELLED):
            raise ReturnConflict(f"RMA {rma.rma_number} is {rma.status}: no exchange")
        original: Order = Order.objects.select_related("ship_to").get(pk=rma.order_id)
        policy = exchange_policy_for(original.account_id)
        address = None
        if original.ship_to is not None and original.ship_to.purged_at is None:
            a = original.ship_to
            address = order_services.AddressInput(
                name=a.name,
                line1=a.line1,
                line2=a.line2,
                city=a.city,
                region=a.region,
                postal_code=a.postal_code,
                country_code=a.country_code,
                phone=a.phone,
                email=a.email,
            )
        replacement = order_services.order_create(
            account_id=original.account_id,
            external_id=f"{rma.rma_number}-EXCH",
            external_reference=f"Exchange for {original}",
            placed_at=timezone.now(),
            currency=original.currency,
            status=OrderStatus.OPEN,
            ship_to=address,
            service_level="ship",
            replaces_order_id=original.pk,
            lines=[
                order_services.LineInput(
                    external_id=f"X{index}",
                    channel_sku=skus[line.sku_id].code,
                    sku_id=line.sku_id,
                    title=skus[line.sku_id].name[:500],
                    quantity=line.quantity,
                    unit_price=price,
                )
                for index, (line, price) in enumerate(checked, start=1)
            ],
            actor=actor,
        )
        rma.exchange_order = replacement
        rma.save(update_fields=["exchange_order", "updated_at"])
        waits = policy == ExchangePolicy.AFTER_RECEIPT and not rma.lines.filter(quantity_received__gt=0).exists()
        if waits:
            order_services.hold_place(
                order=replacement.pk,
                kind=HoldKind.AWAITING_RETURN,
                reason=f"exchange for {rma.rma_number}: ships once the return is received",
                actor=actor,
            )
        rma_event_record(
            rma=rma,
            kind="exchange_created",
            actor=actor,
            reason=reason,
            data={"order_id": replacement.pk, "order": replacement.external_id, "policy": policy, "held": waits},
        )
        order_services.order_event_record(
            order=original,
            kind="exchange_created",
            actor=actor,
            reason=f"{rma.rma_number}: replacement order {replacement.external_id}",
            data={"replacement_order_id": replacement.pk},
        )
        if not waits:
            transaction.on_commit(partial(_route_after_commit, replacement.pk), robust=True)
    return replacement


def exchange_release(*, rma: ReturnAuthorization, actor: Actor) -> None:
    """The return arrived: release the replacement's awaiting-return hold and route it after commit."""
    hold = Hold.objects.filter(
        order_id=rma.exchange_order_id, kind=HoldKind.AWAITING_RETURN, released_at__isnull=True
    ).first()
    if hold is None:
        return
    order_services.hold_release(hold=hold.pk, reason=f"{rma.rma_number}: the return was received", actor=actor)
    transaction.on_commit(partial(_route_after_commit, rma.exchange_order_id), robust=True)
