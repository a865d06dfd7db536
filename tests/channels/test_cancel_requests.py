"""Buyer cancel requests: the order is held at once; while nothing is picked the request is accepted per the
account's policy (every open unit cancelled for the buyer, stock released, the channel told through the
outbox with the buyer's reason), otherwise a case asks a person and the node may not ship it.

The orders come from the Amazon sandbox over HTTP; the request itself is set on the order as the channel
shows it (the connector's NormalizedOrder with ``cancel_requested``), because no connector on this branch
reads the marketplaces' request fields yet. The accepted cancellation goes back to the sandbox over HTTP.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from channels.connectors.base import NormalizedOrder
from channels.inbound import _after_ingest, sku_map_for
from channels.models import BuyerCancelPolicy, InboundEvent, OutboxKind, OutboxMessage, OutboxStatus
from channels.outbox import outbox_relay
from channels.services import connector_for
from channels.sync import _actor, sync_account_run
from fulfillment import services as fulfillment
from fulfillment.models import Carrier, Shipment, ShipmentStatus
from inventory import services as inventory
from inventory.models import Reservation, ReservationStatus, Sku, StockLevel
from orders.models import (
    CancelInitiator,
    CaseStatus,
    ExceptionCase,
    ExceptionKind,
    Hold,
    HoldKind,
    Order,
    OrderEvent,
    OrderStatus,
)
from orders.services import orders_ingest_batch
from tests.factories import LocationFactory
from tests.inventory.helpers import assert_stock_invariants
from tests.nodes import node_client_for

pytestmark = pytest.mark.django_db


def _synced(amazon_sandbox, account, *, route: bool):
    """An order synced from the Amazon sandbox; routed and released to DAL1 when ``route``."""
    (made,) = amazon_sandbox.state.generate(1, lines=2, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    node = LocationFactory(code="DAL1")
    if route:
        account.eligible_locations.add(node)
        for line in made.lines:
            inventory.stock_receive(sku=Sku.objects.get(code=line.sku), location=node, quantity=50, actor="setup")
    sync_account_run(account_id=account.pk)
    order = Order.objects.get(external_id=made.order_id)
    if route:
        assert fulfillment.order_route(order_id=order.pk, actor="router").routed
    return made, order, node


def _as_the_channel_shows_it(account, order: Order) -> NormalizedOrder:
    raw = InboundEvent.objects.filter(account=account, order=order).latest("pk").payload
    return connector_for(account).parse_order(raw)


def _channel_says(account, normalized: NormalizedOrder):
    """What the inbound pipeline does with a parsed page of one order: ingest, then the follow-up."""
    actor = _actor(account)
    sku_map = sku_map_for(account, {line.channel_sku for line in normalized.lines})
    with transaction.atomic():
        (result,) = orders_ingest_batch(
            account_id=account.pk, orders=[normalized.to_ingest()], sku_map=sku_map, actor=actor
        )
        _after_ingest(account, {1: normalized}, {1: result}, actor)
    return result


def _request(account, order, *, minutes=1, requested=True) -> NormalizedOrder:
    shown = _as_the_channel_shows_it(account, order)
    return replace(
        shown,
        updated_at=shown.updated_at + timedelta(minutes=minutes),
        cancel_requested=requested,
        cancel_request_reason="Ordered by mistake" if requested else "",
    )


def _cancellations(order):
    return list(OutboxMessage.objects.filter(order=order, kind=OutboxKind.CANCELLATION).order_by("pk"))


def test_an_unrouted_order_is_cancelled_for_the_buyer_and_the_channel_told(amazon_sandbox, amazon_account, skus):
    # given an open order nobody routed yet
    made, order, _ = _synced(amazon_sandbox, amazon_account, route=False)
    # when the buyer asks to cancel (the account accepts automatically, the default)
    result = _channel_says(amazon_account, _request(amazon_account, order))
    # then every unit is cancelled for the buyer, the hold placed at once is released again
    order.refresh_from_db()
    assert result.cancel_requested
    assert order.status == OrderStatus.CANCELLED and order.cancel_initiator == CancelInitiator.BUYER
    assert order.cancel_request_reason == "Ordered by mistake" and not order.on_hold
    hold = Hold.objects.get(order=order, kind=HoldKind.CANCEL_REQUEST)
    assert hold.released_at is not None and hold.released_by == f"auto-accept:{amazon_account.name}"
    assert all(line.quantity_cancelled == line.quantity for line in order.lines.all())
    # and one cancellation for the channel, with the buyer's reason code
    (message,) = _cancellations(order)
    assert message.payload["reason"] == "BuyerCanceled"
    assert sorted(line["external_line_id"] for line in message.payload["lines"]) == sorted(
        line.line_id for line in made.lines
    )
    # which reaches the marketplace
    outbox_relay(account_id=amazon_account.pk)
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT, message.last_error
    assert made.status == "cancelled" and amazon_sandbox.state.cancellations[0]["reason"] == "BuyerCanceled"
    # when the channel shows the order again (cancelled now, the request still on it): nothing twice
    events = OrderEvent.objects.filter(order=order).count()
    sync_account_run(account_id=amazon_account.pk)
    _channel_says(amazon_account, _request(amazon_account, order, minutes=5))
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED and len(_cancellations(order)) == 1
    assert OrderEvent.objects.filter(order=order, kind="cancel_requested").count() == 1
    assert OrderEvent.objects.filter(order=order).count() >= events
    assert not ExceptionCase.objects.filter(order=order).exclude(status=CaseStatus.RESOLVED).exists()


def test_a_released_unpicked_order_gives_its_stock_back(amazon_sandbox, amazon_account, skus):
    # given an order released to DAL1, its stock reserved, not picked yet
    made, order, node = _synced(amazon_sandbox, amazon_account, route=True)
    shipment = Shipment.objects.get(order=order)
    # when the buyer asks to cancel
    _channel_says(amazon_account, _request(amazon_account, order))
    # then the node's shipment is cancelled, no unit stays reserved and the order is cancelled for the buyer
    order.refresh_from_db()
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.CANCELLED
    assert order.status == OrderStatus.CANCELLED and order.cancel_initiator == CancelInitiator.BUYER
    assert not Reservation.objects.filter(order_line__order=order, status=ReservationStatus.ACTIVE).exists()
    assert sum(StockLevel.objects.filter(location=node).values_list("reserved", flat=True)) == 0
    assert not Hold.objects.filter(order=order, released_at__isnull=True).exists()
    # and the channel hears one cancellation per line, each with the buyer's reason
    messages = _cancellations(order)
    assert len(messages) == len(made.lines)
    assert {m.payload["reason"] for m in messages} == {"BuyerCanceled"}
    assert_stock_invariants()


def test_a_picked_order_waits_for_a_person_and_the_node_may_not_ship_it(
    amazon_sandbox, amazon_account, skus, api_client
):
    # given an order whose units the node is picking
    _, order, node = _synced(amazon_sandbox, amazon_account, route=True)
    shipment = Shipment.objects.get(order=order)
    client = node_client_for(api_client, node)
    assert client.post(f"/api/v1/fulfillment/shipments/{shipment.pk}/picking/").status_code == 200
    # when the buyer asks to cancel
    _channel_says(amazon_account, _request(amazon_account, order))
    # then nothing is cancelled: the order is held and a case asks a person why
    order.refresh_from_db()
    assert order.status == OrderStatus.RELEASED and order.on_hold
    assert Hold.objects.filter(order=order, kind=HoldKind.CANCEL_REQUEST, released_at__isnull=True).exists()
    case = ExceptionCase.objects.get(order=order, kind=ExceptionKind.CANCEL_REQUEST)
    assert "picking" in case.detail and case.status == CaseStatus.OPEN
    assert not _cancellations(order)
    # and the node sees the hold and is refused when it tries to ship
    shown = client.get(f"/api/v1/fulfillment/shipments/{shipment.pk}/").json()
    assert shown["may_ship"] is False and [h["kind"] for h in shown["holds"]] == ["cancel_request"]
    Carrier.objects.update_or_create(code="UPS", defaults={"name": "UPS", "is_active": True})
    body = {"carrier": "UPS", "tracking_number": "1ZNOPE", "shipped_at": timezone.now().isoformat()}
    refused = client.post(f"/api/v1/fulfillment/shipments/{shipment.pk}/shipped/", body, format="json")
    assert refused.status_code == 409 and "asked to cancel" in refused.json()["detail"]
    assert Reservation.objects.filter(order_line__order=order, status=ReservationStatus.ACTIVE).exists()


def test_policy_review_holds_and_asks_a_person_then_a_withdrawal_settles_it(amazon_sandbox, amazon_account, skus):
    # given an account whose buyer cancel requests a person reviews
    amazon_account.buyer_cancel_policy = BuyerCancelPolicy.REVIEW
    amazon_account.save(update_fields=["buyer_cancel_policy"])
    _, order, _ = _synced(amazon_sandbox, amazon_account, route=False)
    # when the buyer asks to cancel, twice over (a replayed payload)
    _channel_says(amazon_account, _request(amazon_account, order))
    _channel_says(amazon_account, _request(amazon_account, order, minutes=2))
    # then the order is held with one case and one event, and nothing cancelled
    order.refresh_from_db()
    assert order.status == OrderStatus.OPEN and order.on_hold
    (case,) = ExceptionCase.objects.filter(order=order, kind=ExceptionKind.CANCEL_REQUEST)
    assert "review" in case.detail
    assert OrderEvent.objects.filter(order=order, kind="cancel_requested").count() == 1
    assert Hold.objects.filter(order=order).count() == 1 and not _cancellations(order)
    # when the buyer withdraws the request before anyone decided
    result = _channel_says(amazon_account, _request(amazon_account, order, minutes=3, requested=False))
    # then the hold is released and the case resolved
    order.refresh_from_db()
    case.refresh_from_db()
    assert result.cancel_request_withdrawn and not order.on_hold and order.cancel_requested_at is None
    assert case.status == CaseStatus.RESOLVED
    assert order.status == OrderStatus.OPEN and not _cancellations(order)
