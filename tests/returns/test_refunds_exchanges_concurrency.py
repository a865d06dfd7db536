"""Refund limits and routes, exchanges, channel availability after a restock, and receipts racing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from channels.models import ChannelAvailability, ChannelKind, OutboxKind, OutboxMessage
from inventory import services as inventory_services
from inventory.models import Reservation, StockLevel
from orders.models import ExceptionCase, ExceptionKind, HoldKind, Order, OrderStatus
from returns import services
from returns.models import ExchangePolicy, Refund, RefundStatus, ReturnPolicy, ReturnReceipt
from returns.services import ExchangeLineInput, ReceiveItem, RefundLineInput, ReturnConflict, ReturnLineInput
from tests.factories import ChannelAccountFactory, ListingFactory, LocationFactory, SkuFactory
from tests.processes import run_in_processes

from .helpers import node, shipped_order

ACTOR = "test:returns"


@pytest.mark.django_db
def test_a_refund_above_what_was_paid_is_refused_and_earlier_refunds_count():
    # given an order of 2 x 25.00 plus 5.00 shipping (55.00 paid)
    order, (line,) = shipped_order(units=2, account=ChannelAccountFactory(kind=ChannelKind.WALMART))
    # when a line is refunded above its price
    with pytest.raises(ReturnConflict, match="above what is left to refund"):
        services.refund_create(
            order_id=order.pk, lines=[RefundLineInput(line.pk, "50.01")], reason="damaged", actor=ACTOR
        )
    assert not Refund.objects.exists() and not OutboxMessage.objects.exists()
    # then 30.00 goes through the outbox, and only 25.00 is left after it
    first = services.refund_create(
        order_id=order.pk, lines=[RefundLineInput(line.pk, "25.00", 1)], shipping_amount="5.00", reason="r", actor=ACTOR
    )
    assert first.amount == Decimal("30.00") and first.status == RefundStatus.PENDING
    message = OutboxMessage.objects.get(kind=OutboxKind.REFUND)
    assert first.outbox_message_id == message.pk and message.payload["amount"] == "30.00"
    with pytest.raises(ReturnConflict, match=r"above what is left to refund \(25.00 of 55.00 paid"):
        services.refund_create(
            order_id=order.pk,
            lines=[RefundLineInput(line.pk, "25.00")],
            shipping_amount="0.01",
            reason="r",
            actor=ACTOR,
        )
    assert Refund.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("amount", ["-1", "abc", "1e30", "0.001", True])
def test_bad_refund_amounts_are_refused(amount):
    order, (line,) = shipped_order(units=1)
    with pytest.raises(services.ReturnError):
        services.refund_create(order_id=order.pk, lines=[RefundLineInput(line.pk, amount)], reason="r", actor=ACTOR)
    assert not Refund.objects.exists()


@pytest.mark.django_db
def test_the_same_refund_key_twice_is_one_refund():
    order, (line,) = shipped_order(units=1, account=ChannelAccountFactory(kind=ChannelKind.WALMART))
    kwargs = {"order_id": order.pk, "lines": [RefundLineInput(line.pk, "10")], "reason": "r", "actor": ACTOR}
    a = services.refund_create(**kwargs, idempotency_key="form-1")
    b = services.refund_create(**kwargs, idempotency_key="form-1")
    assert a.pk == b.pk and Refund.objects.count() == 1 and OutboxMessage.objects.count() == 1


@pytest.mark.django_db
def test_a_channel_without_a_usable_refund_call_gets_an_exception_case_with_the_amount():
    # given a TikTok order whose refund settles no TikTok return (TikTok refunds by approving a return)
    order, (line,) = shipped_order(units=1, account=ChannelAccountFactory(kind=ChannelKind.TIKTOK))
    refund = services.refund_create(
        order_id=order.pk, lines=[RefundLineInput(line.pk, "12.50")], reason="goodwill", actor=ACTOR
    )
    case = ExceptionCase.objects.get(kind=ExceptionKind.REFUND_MANUAL)
    assert refund.status == RefundStatus.MANUAL and refund.exception_case == case
    assert "12.50 USD" in case.title and case.order == order
    assert not OutboxMessage.objects.filter(kind=OutboxKind.REFUND).exists()
    # when the person refunds at TikTok and records TikTok's reference, the refund is confirmed, the case resolved
    services.refund_manual_record(refund_id=refund.pk, external_id="TT-REF-1", actor=ACTOR)
    refund.refresh_from_db()
    case.refresh_from_db()
    assert (refund.status, refund.external_id, case.status) == (RefundStatus.CONFIRMED, "TT-REF-1", "resolved")
    with pytest.raises(ReturnConflict):
        services.refund_manual_record(refund_id=refund.pk, external_id="TT-REF-2", actor=ACTOR)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("policy", [ExchangePolicy.BEFORE_RETURN, ExchangePolicy.AFTER_RECEIPT])
def test_an_exchange_reserves_and_routes_its_replacement_as_the_policy_says(policy):
    # given stock of the new SKU at a node the account ships from
    account = ChannelAccountFactory(kind=ChannelKind.WALMART)
    ReturnPolicy.objects.create(account=account, exchange_policy=policy)
    dc = LocationFactory()
    account.eligible_locations.add(dc)
    new_sku = SkuFactory()
    inventory_services.stock_receive(sku=new_sku, location=dc, quantity=5, actor=ACTOR)
    order, (line,) = shipped_order(units=1, account=account)
    rma = services.rma_create(order_id=order.pk, lines=[ReturnLineInput(line.pk, 1)], actor=ACTOR)
    # when the exchange is made
    replacement = services.exchange_create(rma_id=rma.pk, lines=[ExchangeLineInput(new_sku.pk, 1)], actor=ACTOR)
    replacement.refresh_from_db()
    assert replacement.replaces_order_id == order.pk and replacement.lines.get().unit_price == 0
    reserved = Reservation.objects.filter(order_line__order=replacement, status="active")
    if policy == ExchangePolicy.AFTER_RECEIPT:
        # then it waits, held, until the return is received
        assert replacement.on_hold and replacement.holds.get().kind == HoldKind.AWAITING_RETURN
        assert not reserved.exists()
        services.rma_receive(
            rma_id=rma.pk, location_id=dc.pk, items=[ReceiveItem(1, "restock", sku=line.sku.code)], actor=ACTOR
        )
        replacement.refresh_from_db()
        assert not replacement.on_hold
    # then it is reserved and routed like any order
    assert replacement.status in (OrderStatus.ALLOCATED, OrderStatus.RELEASED)
    assert reserved.get().quantity == 1 and StockLevel.objects.get(sku=new_sku, location=dc).reserved == 1


@pytest.mark.django_db(transaction=True)
def test_a_restocked_unit_raises_the_channels_advertised_quantity_and_a_damaged_one_does_not():
    account = ChannelAccountFactory(kind=ChannelKind.WALMART)
    store = LocationFactory()
    account.eligible_locations.add(store)
    order, (line,) = shipped_order(units=2, account=account)
    ListingFactory(account=account, sku=line.sku)
    rma = services.rma_create(order_id=order.pk, lines=[ReturnLineInput(line.pk, 2)], actor=ACTOR)
    services.rma_receive(
        rma_id=rma.pk, location_id=store.pk, items=[ReceiveItem(1, "damaged", sku=line.sku.code)], actor=ACTOR
    )
    assert ChannelAvailability.objects.filter(account=account, sku=line.sku, quantity__gt=0).count() == 0
    services.rma_receive(
        rma_id=rma.pk, location_id=store.pk, items=[ReceiveItem(1, "restock", sku=line.sku.code)], actor=ACTOR
    )
    row = ChannelAvailability.objects.get(account=account, sku=line.sku)
    assert row.quantity == 1 and row.needs_push


def _receive(payload):
    rma_id, location_id, key = payload
    try:
        result = services.rma_receive(
            rma_id=rma_id,
            location_id=location_id,
            items=[ReceiveItem(2, "restock", return_line_id=None, sku=key[1])],
            actor="test:racer",
            idempotency_key=key[0],
        )
    except ReturnConflict as exc:
        return "refused", str(exc)
    return ("replayed" if result.replayed else "applied"), result.receipt.pk


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("same_key", [True, False])
def test_two_processes_receiving_the_same_rma_at_once_restock_once(same_key):
    # given an RMA of 2 units
    order, (line,) = shipped_order(units=2)
    rma = services.rma_create(order_id=order.pk, lines=[ReturnLineInput(line.pk, 2)], actor=ACTOR)
    dc = node()
    # when two processes post the whole receipt at once (the same receipt twice, or two receipts)
    jobs = [(i, (rma.pk, dc.pk, ("same" if same_key else f"scan-{i}", line.sku.code))) for i in range(2)]
    outcomes = run_in_processes(_receive, jobs, processes=2)
    # then the units are restocked once
    kinds = sorted(outcome for outcome, _ in outcomes.values())
    assert kinds == (["applied", "replayed"] if same_key else ["applied", "refused"])
    assert StockLevel.objects.get(sku=line.sku, location=dc).on_hand == 2
    assert ReturnReceipt.objects.count() == 1
    assert Order.objects.get(pk=order.pk).lines.get().quantity_returned == 2
