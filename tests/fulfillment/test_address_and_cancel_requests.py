"""Fulfilment's side of channel edits and buyer cancel requests: an order with no usable ship-to is never
routed however it gets to the router; a new ship-to reaches the node through the node API (the address,
an "address_changed" event, a changed-since filter) and a packed parcel opens a relabel case; a buyer's
cancel request stops the node from shipping; accepting one cancels every open unit for the buyer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from fulfillment import services
from fulfillment.errors import CancelRefused, RerouteRefused
from fulfillment.models import Shipment, ShipmentStatus
from inventory.models import Reservation, ReservationStatus, StockLevel
from orders import services as order_services
from orders.models import (
    CancelInitiator,
    CaseStatus,
    ExceptionCase,
    ExceptionKind,
    Hold,
    HoldKind,
    LineStatus,
    Order,
    OrderEvent,
    OrderStatus,
    ShipToAddress,
)
from orders.services import IngestAddress, IngestLine, IngestOrder, SkuRef, orders_ingest_batch
from orders.services.ingest import NO_SHIP_TO
from tests.inventory.helpers import assert_stock_invariants
from tests.nodes import node_client

pytestmark = pytest.mark.django_db
SHIPMENTS = "/api/v1/fulfillment/shipments/"


def _payload(order: Order, *, at, ship_to: IngestAddress | None, **fields) -> IngestOrder:
    """The order as its channel would send it now (same lines), with another ship-to."""
    return IngestOrder(
        external_id=order.external_id,
        status=order.status,
        channel_status="Unshipped",
        placed_at=order.placed_at,
        source_updated_at=at,
        currency="USD",
        lines=[
            IngestLine(
                external_id=line.external_id,
                channel_sku=line.channel_sku,
                quantity=line.quantity,
                unit_price=line.unit_price,
                ship_by=order.ship_by,
            )
            for line in order.lines.order_by("pk")
        ],
        ship_by=order.ship_by,
        total_amount=order.total_amount,
        ship_to=ship_to,
        **fields,
    )


def _ingest(order: Order, **kwargs):
    sku_map = {line.channel_sku: SkuRef(line.sku_id) for line in order.lines.all()}
    (result,) = orders_ingest_batch(
        account_id=order.account_id,
        orders=[_payload(order, at=timezone.now(), **kwargs)],
        sku_map=sku_map,
        actor="sync:amazon-us",
    )
    return result


NEW_ADDRESS = IngestAddress(
    name="Zoë Ōtani", line1="77 Mass Ave", city="Cambridge", region="MA", postal_code="02139", country_code="US"
)


@pytest.fixture
def released(node, stock, order_for, skus, ups):
    """An order of 2 + 1 units released to DAL1, with a node token for DAL1."""
    dal = node("DAL1")
    stock(skus[0], dal, 10)
    stock(skus[1], dal, 10)
    order = order_for([(skus[0], 2), (skus[1], 1)])
    assert services.order_route(order_id=order.pk, actor="router").routed
    key = services.node_token_create(location=dal, name="dal wms", actor="admin")[1]
    return order, Shipment.objects.get(order=order), key, dal


# --- no usable ship-to: never routed ----------------------------------------------------------------------


def test_an_order_without_a_usable_ship_to_is_never_routed_and_waits_held(node, stock, order_for, skus):
    dal = node("DAL1")
    stock(skus[0], dal, 10)
    order = order_for([(skus[0], 1)])
    ShipToAddress.objects.filter(pk=order.ship_to_id).update(line1="")  # reached the router anyway
    # when the router gets it, alone or in a batch
    (result,) = services.orders_route(order_ids=[order.pk], actor="router")
    other = order_for([(skus[0], 1)])
    Order.objects.filter(pk=other.pk).update(ship_to=None)
    results = services.orders_route(order_ids=[order.pk, other.pk], actor="router")
    # then nothing is reserved or released, and each waits held with an address case
    assert not result.routed and "ship-to" in result.skipped
    assert not any(r.routed for r in results)
    assert not Shipment.objects.exists() and not Reservation.objects.exists()
    for held in (order, other):
        held.refresh_from_db()
        assert held.status == OrderStatus.OPEN and held.on_hold
        assert Hold.objects.get(order=held, kind=HoldKind.ADDRESS).reason == NO_SHIP_TO
        assert ExceptionCase.objects.filter(order=held, kind=ExceptionKind.ADDRESS, status=CaseStatus.OPEN).exists()


def test_a_pickup_order_needs_no_address(node, stock, order_for, skus):
    store = node("STORE1", kind="store", can_pickup=True)
    stock(skus[0], store, 5)
    order = order_for([(skus[0], 1)], service_level="pickup")
    Order.objects.filter(pk=order.pk).update(ship_to=None)
    assert services.order_route(order_id=order.pk, actor="router").routed


def test_a_reroute_of_an_order_without_a_usable_ship_to_is_refused(released):
    order, shipment, _, _ = released
    ShipToAddress.objects.filter(pk=order.ship_to_id).update(postal_code="")
    with pytest.raises(RerouteRefused, match="ship-to"):
        services.order_reroute(order_id=order.pk, reason="closer node", actor="agent")
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.RELEASED


def test_a_held_order_is_routed_once_its_address_arrives(node, stock, order_for, skus):
    dal = node("DAL1")
    stock(skus[0], dal, 10)
    order = order_for([(skus[0], 1)])
    ShipToAddress.objects.filter(pk=order.ship_to_id).update(line1="", city="")
    services.order_route(order_id=order.pk, actor="router")
    # when the channel sends the address
    result = _ingest(order, ship_to=NEW_ADDRESS)
    assert "ship_to" in result.edited
    order.refresh_from_db()
    assert not order.on_hold
    assert services.order_route(order_id=order.pk, actor="router").routed


# --- a new ship-to reaches the node ----------------------------------------------------------------------


def test_the_node_api_shows_the_ship_to_and_a_new_one_with_an_event_to_poll(api_client, released):
    order, shipment, key, _ = released
    client = node_client(api_client, key)
    first = client.get(f"{SHIPMENTS}{shipment.pk}/").json()
    assert first["ship_to"]["line1"] == "1 Market St" and first["ship_to"]["postal_code"] == "94105"
    assert first["events"] == [] and first["holds"] == [] and first["may_ship"] is True
    since = timezone.now()
    assert client.get(SHIPMENTS, {"changed_since": since.isoformat()}).json()["results"] == []
    # when the buyer changes the address at the channel after the release
    _ingest(order, ship_to=NEW_ADDRESS)
    # then the node reads the new address and an address_changed event with before and after
    shown = client.get(f"{SHIPMENTS}{shipment.pk}/").json()
    assert (shown["ship_to"]["line1"], shown["ship_to"]["city"]) == ("77 Mass Ave", "Cambridge")
    (event,) = shown["events"]
    assert event["kind"] == "address_changed"
    assert event["before"]["line1"] == "1 Market St" and event["after"]["line1"] == "77 Mass Ave"
    assert event["after"]["postal_code"] == "02139" and "name" not in event["after"]
    # and the shipment is in the list of what changed since the last poll, the other way of finding it
    changed = client.get(SHIPMENTS, {"changed_since": since.isoformat()}).json()["results"]
    assert [s["id"] for s in changed] == [shipment.pk] and changed[0]["events"][0]["kind"] == "address_changed"
    # and no case: nothing was packed yet
    assert not ExceptionCase.objects.filter(kind=ExceptionKind.ADDRESS).exists()


def test_a_new_ship_to_after_packing_opens_a_relabel_case(api_client, released):
    order, shipment, key, _ = released
    client = node_client(api_client, key)
    assert client.post(f"{SHIPMENTS}{shipment.pk}/packed/").status_code == 200
    _ingest(order, ship_to=NEW_ADDRESS)
    case = ExceptionCase.objects.get(kind=ExceptionKind.ADDRESS, order=order)
    assert "packed" in case.title and "Redo the label" in case.detail
    assert case.status == CaseStatus.OPEN
    # the same change seen again opens no second case and no second event
    _ingest(order, ship_to=NEW_ADDRESS)
    assert ExceptionCase.objects.filter(kind=ExceptionKind.ADDRESS).count() == 1
    assert OrderEvent.objects.filter(order=order, kind="address_changed").count() == 1


def test_the_node_list_reads_holds_and_events_in_a_constant_number_of_queries(
    api_client, released, order_for, skus, django_assert_max_num_queries
):
    order, _, key, _ = released
    _ingest(order, ship_to=NEW_ADDRESS)
    for _ in range(5):
        services.order_route(order_id=order_for([(skus[0], 1)]).pk, actor="router")
    client = node_client(api_client, key)
    with django_assert_max_num_queries(9):
        listed = client.get(SHIPMENTS).json()["results"]
    assert len(listed) == 6


# --- a buyer's cancel request ------------------------------------------------------------------------------


def test_the_node_may_not_ship_an_order_held_for_a_cancel_request(api_client, released):
    order, shipment, key, _ = released
    order_services.hold_place(
        order=order, kind=HoldKind.CANCEL_REQUEST, reason="The buyer asked the channel to cancel", actor="sync:x"
    )
    client = node_client(api_client, key)
    listed = client.get(SHIPMENTS).json()["results"][0]
    assert listed["may_ship"] is False and listed["holds"][0]["kind"] == "cancel_request"
    body = {"carrier": "UPS", "tracking_number": "1ZHELD", "shipped_at": timezone.now().isoformat()}
    refused = client.post(f"{SHIPMENTS}{shipment.pk}/shipped/", body, format="json")
    assert refused.status_code == 409 and refused.json()["code"] == "ship_refused"
    assert "the buyer asked to cancel" in refused.json()["detail"]
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.RELEASED
    assert Reservation.objects.filter(order_line__order=order, status=ReservationStatus.ACTIVE).count() == 2
    # once a person releases the hold (the request refused), the node ships
    hold = Hold.objects.get(order=order, kind=HoldKind.CANCEL_REQUEST)
    order_services.hold_release(hold=hold, reason="refused at the channel", actor="agent")
    assert client.post(f"{SHIPMENTS}{shipment.pk}/shipped/", body, format="json").status_code == 200


def test_accepting_a_cancel_request_cancels_every_open_unit_for_the_buyer(released):
    order, shipment, _, dal = released
    order_services.hold_place(order=order, kind=HoldKind.CANCEL_REQUEST, reason="buyer asked", actor="sync:x")
    result = services.order_buyer_cancel_accept(order_id=order.pk, reason="buyer requested cancellation", actor="auto")
    order.refresh_from_db()
    shipment.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED and order.cancel_initiator == CancelInitiator.BUYER
    assert shipment.status == ShipmentStatus.CANCELLED and result.shipments == [shipment.pk]
    assert result.hold_released and not order.on_hold
    assert all(line.status == LineStatus.CANCELLED for line in order.lines.all())
    assert sum(StockLevel.objects.filter(location=dal).values_list("reserved", flat=True)) == 0
    assert_stock_invariants()


def test_a_cancel_request_on_a_picked_order_is_refused_and_changes_nothing(released):
    order, shipment, _, _ = released
    services.shipment_pick_start(shipment=shipment.pk, actor="wms")
    with pytest.raises(CancelRefused, match="picking"):
        services.order_buyer_cancel_accept(order_id=order.pk, reason="buyer", actor="auto")
    order.refresh_from_db()
    assert order.status == OrderStatus.RELEASED and order.cancel_initiator == ""


def test_a_seller_cancel_is_charged_to_the_seller(released):
    order, shipment, _, _ = released
    line = shipment.lines.order_by("pk").first()
    services.shipment_line_cancel(
        shipment=shipment.pk, order_line_id=line.order_line_id, quantity=1, reason="no stock after count", actor="agent"
    )
    order.refresh_from_db()
    assert order.cancel_initiator == CancelInitiator.SELLER
    assert OrderEvent.objects.filter(order=order, kind="cancel_initiator_set").count() == 1


def test_an_expired_pickup_is_charged_to_the_buyer(node, stock, order_for, skus):
    store = node("STORE1", kind="store", can_pickup=True)
    stock(skus[0], store, 5)
    order = order_for([(skus[0], 1)], service_level="pickup")
    services.order_route(order_id=order.pk, actor="router")
    shipment = Shipment.objects.get(order=order)
    services.shipment_ready_for_pickup(shipment=shipment.pk, actor="store")
    later = timezone.now() + timedelta(days=30)
    assert services.pickup_expire(shipment=shipment.pk, actor="clock", now=later)
    order.refresh_from_db()
    assert order.cancel_initiator == CancelInitiator.BUYER
