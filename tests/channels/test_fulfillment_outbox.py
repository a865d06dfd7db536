"""Fulfilment → channel: ship confirmations and seller cancellations are queued in the outbox in the
same transaction as the shipment change, and never for marketplace-fulfilled or channel-made changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from channels.models import OutboxKind, OutboxMessage
from fulfillment import services
from fulfillment.models import Shipment
from tests.fulfillment.conftest import account, node, order_for, skus, stock, ups  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture
def released(node, stock, order_for, skus):  # noqa: F811
    dc = node("DC", "94107")
    stock(skus[0], dc, 5)
    stock(skus[1], dc, 5)
    order = order_for([(skus[0], 2), (skus[1], 1)])
    services.order_route(order_id=order.pk, actor="router")
    return order, Shipment.objects.get(order=order)


def _ship(shipment, **kwargs):
    services.shipment_ship(
        shipment=shipment.pk,
        carrier_code="UPS",
        tracking_number="1Z999AA10123456784",
        shipped_at=timezone.now() - timedelta(minutes=3),
        actor="wms:dc",
        **kwargs,
    )


def test_shipping_queues_one_ship_confirmation_with_the_channel_carrier_code_and_lines(released, ups):  # noqa: F811
    # given
    order, shipment = released
    # when
    _ship(shipment)
    # then
    message = OutboxMessage.objects.get(kind=OutboxKind.SHIP_CONFIRMATION)
    assert message.account_id == order.account_id and message.order_id == order.pk
    payload = message.payload
    assert payload["order_external_id"] == order.external_id
    assert payload["carrier_code"] == "UPS" and payload["tracking_number"] == "1Z999AA10123456784"
    assert sorted((line["external_line_id"], line["quantity"]) for line in payload["lines"]) == sorted(
        (line.external_id, line.quantity) for line in order.lines.all()
    )
    assert message.dedupe_key.endswith(f"shipment-{shipment.pk}")


def test_a_shipment_rolled_back_queues_nothing(released, ups):  # noqa: F811
    _, shipment = released

    class Boom(Exception):
        pass

    def ship_then_fail():
        with transaction.atomic():
            _ship(shipment)
            raise Boom

    with pytest.raises(Boom):
        ship_then_fail()
    assert not OutboxMessage.objects.exists()


def test_marketplace_fulfilled_orders_never_get_a_confirmation(released, ups):  # noqa: F811
    order, shipment = released
    type(order).objects.filter(pk=order.pk).update(marketplace_fulfilled=True)
    _ship(shipment)
    assert not OutboxMessage.objects.exists()


def test_a_seller_line_cancel_queues_a_cancellation_but_a_channel_cancel_does_not(released):
    # given
    order, shipment = released
    first, second = order.lines.order_by("pk")
    # when ops cancel one line (out of stock) and the sync applies the channel's own cancel of the other
    services.shipment_line_cancel(
        shipment=shipment.pk, order_line_id=first.pk, quantity=1, reason="Damaged stock, none left", actor="ops"
    )
    services.shipment_line_cancel(
        shipment=shipment.pk, order_line_id=second.pk, quantity=1, reason="Buyer cancelled", actor="sync:amazon-us"
    )
    # then only the seller's cancel goes to the channel, with a channel reason code
    message = OutboxMessage.objects.get(kind=OutboxKind.CANCELLATION)
    # with what the line keeps, for channels that cancel units by setting the line's quantity
    keep = first.quantity - first.quantity_cancelled - 1
    assert message.payload["lines"] == [{"external_line_id": first.external_id, "quantity": 1, "keep": keep}]
    assert message.payload["reason"] == "NoInventory"


def test_a_ready_pickup_is_told_only_to_channels_that_tell_the_buyer(node, stock, order_for, skus, account):  # noqa: F811
    # given a store pickup on an Amazon account (Amazon has no ready-for-pickup call)
    store = node("STORE", kind="store", can_pickup=True)
    stock(skus[0], store, 3)
    order = order_for([(skus[0], 1)], service_level="pickup")
    services.order_route(order_id=order.pk, actor="router")
    shipment = Shipment.objects.get(order=order)
    # when the store has it ready
    services.shipment_ready_for_pickup(shipment=shipment.pk, actor="store")
    # then nothing is queued for Amazon
    assert not OutboxMessage.objects.filter(kind=OutboxKind.PICKUP_READY).exists()
    # and on a Shopify account the same step queues the notice, once per shipment
    account.kind = "shopify"
    account.save(update_fields=["kind"])
    second = order_for([(skus[0], 1)], service_level="pickup")
    services.order_route(order_id=second.pk, actor="router")
    services.shipment_ready_for_pickup(shipment=Shipment.objects.get(order=second).pk, actor="store")
    (notice,) = OutboxMessage.objects.filter(kind=OutboxKind.PICKUP_READY)
    assert notice.order_id == second.pk and notice.payload == {"order_external_id": second.external_id}
