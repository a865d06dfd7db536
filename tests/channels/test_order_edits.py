"""Order edits at the channel flow in until the order ships, over HTTP against the Amazon sandbox: an
order first seen PENDING (Amazon sends no address yet) gets its address when it becomes UNSHIPPED and only
then is routed; an address edited after release reaches the node through the node API; an order with no
usable address waits, held, until the channel sends one."""

from __future__ import annotations

import pytest

from channels.sync import sync_account_run
from fulfillment import services as fulfillment
from fulfillment.models import Shipment
from inventory import services as inventory
from inventory.models import Reservation, Sku
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, HoldKind, Order, OrderEvent, OrderStatus
from tests.factories import LocationFactory
from tests.nodes import node_client_for

pytestmark = pytest.mark.django_db
SHIPMENTS = "/api/v1/fulfillment/shipments/"


@pytest.fixture
def dal(amazon_account):
    node = LocationFactory(code="DAL1")
    amazon_account.eligible_locations.add(node)
    return node


def _stock(node, made):
    for line in made.lines:
        inventory.stock_receive(sku=Sku.objects.get(code=line.sku), location=node, quantity=50, actor="setup")


def _change(sandbox, made, **fields):
    with sandbox.state.lock:
        for name, value in fields.items():
            if name == "address":
                made.address = {**made.address, **value}
            else:
                setattr(made, name, value)
        sandbox.state.touch(made)


def test_an_order_first_seen_pending_gets_its_address_before_it_is_routed(amazon_sandbox, amazon_account, dal, skus):
    # given an Amazon order first seen PENDING: Amazon sends no recipient yet
    (made,) = amazon_sandbox.state.generate(1, status="pending", fulfilled_by="MERCHANT", unknown_sku=False)
    _stock(dal, made)
    sync_account_run(account_id=amazon_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    assert order.status == OrderStatus.PENDING and order.ship_to is None and not order.on_hold
    assert not fulfillment.order_route(order_id=order.pk, actor="router").routed
    # when it is paid and becomes UNSHIPPED, with the address
    _change(amazon_sandbox, made, status="unshipped", paid=True)
    sync_account_run(account_id=amazon_account.pk)
    # then the order has the address and the buyer's name, is open, unheld, and routes with it
    order.refresh_from_db()
    assert order.status == OrderStatus.OPEN and not order.on_hold
    assert order.ship_to.line1 == made.address["line1"] and order.ship_to.postal_code == made.address["postal_code"]
    assert order.customer_name == made.buyer_name
    event = OrderEvent.objects.get(order=order, kind="channel_edited")
    assert event.data["before"]["ship_to"]["line1"] == "" and event.data["after"]["ship_to"]["city"]
    assert fulfillment.order_route(order_id=order.pk, actor="router").routed


def test_an_unshipped_order_with_no_usable_address_waits_held_until_the_channel_sends_one(
    amazon_sandbox, amazon_account, dal, skus
):
    # given an UNSHIPPED order whose address has no street line
    (made,) = amazon_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    with amazon_sandbox.state.lock:
        made.address["line1"] = ""
    _stock(dal, made)
    sync_account_run(account_id=amazon_account.pk)
    # then it is held with an address case and the router leaves it alone
    order = Order.objects.get(external_id=made.order_id)
    assert order.status == OrderStatus.OPEN and order.on_hold
    assert order.holds.get(released_at__isnull=True).kind == HoldKind.ADDRESS
    case = ExceptionCase.objects.get(order=order, kind=ExceptionKind.ADDRESS)
    assert not fulfillment.order_route(order_id=order.pk, actor="router").routed
    assert not Reservation.objects.filter(order_line__order=order).exists()
    # when the buyer completes the address at the channel
    _change(amazon_sandbox, made, address={"line1": "12 Elm St"})
    sync_account_run(account_id=amazon_account.pk)
    # then the hold is released, the case resolved, and the order routes
    order.refresh_from_db()
    case.refresh_from_db()
    assert not order.on_hold and order.ship_to.line1 == "12 Elm St"
    assert case.status == CaseStatus.RESOLVED
    assert fulfillment.order_route(order_id=order.pk, actor="router").routed


def test_an_address_edited_after_release_reaches_the_node(amazon_sandbox, amazon_account, dal, skus, api_client):
    # given an order released to DAL1, packed at the node
    (made,) = amazon_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    _stock(dal, made)
    sync_account_run(account_id=amazon_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    assert fulfillment.order_route(order_id=order.pk, actor="router").routed
    shipment = Shipment.objects.get(order=order)
    client = node_client_for(api_client, dal)
    before = client.get(f"{SHIPMENTS}{shipment.pk}/").json()["ship_to"]
    assert before["line1"] == made.address["line1"]
    assert client.post(f"{SHIPMENTS}{shipment.pk}/packed/").status_code == 200
    # when the buyer changes the street and the postcode at the channel
    _change(amazon_sandbox, made, address={"line1": "500 Howard St", "postal_code": "94107"})
    sync_account_run(account_id=amazon_account.pk)
    # then the node reads the new address and an address_changed event with the before and after
    shown = client.get(f"{SHIPMENTS}{shipment.pk}/").json()
    assert (shown["ship_to"]["line1"], shown["ship_to"]["postal_code"]) == ("500 Howard St", "94107")
    (event,) = shown["events"]
    assert event["kind"] == "address_changed"
    assert event["before"] == {"line1": before["line1"], "postal_code": before["postal_code"]}
    assert event["after"] == {"line1": "500 Howard St", "postal_code": "94107"}
    # and, the parcel being packed with the old label, a case says to redo it
    case = ExceptionCase.objects.get(order=order, kind=ExceptionKind.ADDRESS)
    assert "packed" in case.title and case.status == CaseStatus.OPEN
    # when the channel shows the same order again, nothing is told twice
    _change(amazon_sandbox, made)
    sync_account_run(account_id=amazon_account.pk)
    assert len(client.get(f"{SHIPMENTS}{shipment.pk}/").json()["events"]) == 1


def test_a_buyer_name_change_updates_the_order_and_records_only_the_name(amazon_sandbox, amazon_account, skus):
    (made,) = amazon_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    sync_account_run(account_id=amazon_account.pk)
    old = made.buyer_name
    _change(amazon_sandbox, made, buyer_name=f"{old} Jr.")
    sync_account_run(account_id=amazon_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    assert order.customer_name == f"{old} Jr." and order.ship_to.name == f"{old} Jr."
    event = OrderEvent.objects.get(order=order, kind="channel_edited")
    assert event.data["before"] == {"ship_to": {"name": old}, "customer_name": old}
    assert event.data["after"] == {"ship_to": {"name": f"{old} Jr."}, "customer_name": f"{old} Jr."}
