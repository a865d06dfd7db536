"""The WMS/3PL/TMS API: node-scoped tokens, idempotency, bad input, the tracking webhook."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from fulfillment import services
from fulfillment.models import IdempotencyRecord, NodeApiToken, Shipment, ShipmentStatus, TrackingEvent
from fulfillment.webhooks import signature_for
from orders.models import OrderEvent
from tests.nodes import node_client

pytestmark = pytest.mark.django_db
SECRET = "test-tracking-secret"


@pytest.fixture
def two_nodes(node, stock, order_for, skus):
    east, west = node("EAST", "10001"), node("WEST", "94107")
    stock(skus[0], east, 5)
    stock(skus[1], west, 5)
    east_order, west_order = order_for([(skus[0], 1)]), order_for([(skus[1], 1)])
    services.orders_route(order_ids=[east_order.pk, west_order.pk], actor="router")
    east_key = services.node_token_create(location=east, name="east wms", actor="admin")[1]
    west_key = services.node_token_create(location=west, name="west wms", actor="admin")[1]
    return {
        "east": (east, Shipment.objects.get(order=east_order), east_key),
        "west": (west, Shipment.objects.get(order=west_order), west_key),
    }


def test_a_nodes_token_sees_only_its_own_shipments(api_client, two_nodes):
    _, east_shipment, east_key = two_nodes["east"]
    _, west_shipment, _ = two_nodes["west"]
    client = node_client(api_client, east_key)
    # when east lists its released shipments
    listed = client.get("/api/v1/fulfillment/shipments/", {"status": "released"})
    # then only its own
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()["results"]] == [east_shipment.pk]
    # and west's shipment is not there for it, to read or to change
    assert client.get(f"/api/v1/fulfillment/shipments/{west_shipment.pk}/").status_code == 404
    assert client.post(f"/api/v1/fulfillment/shipments/{west_shipment.pk}/acknowledge/", {}).status_code == 404
    west_shipment.refresh_from_db()
    assert west_shipment.status == ShipmentStatus.RELEASED


def test_only_the_key_hash_is_stored_and_a_revoked_token_is_refused(api_client, two_nodes):
    _, _, east_key = two_nodes["east"]
    token = NodeApiToken.objects.get(name="east wms")
    assert east_key not in token.key_hash and len(token.key_hash) == 64
    services.node_token_revoke(token=token, actor="admin")
    response = node_client(api_client, east_key).get("/api/v1/fulfillment/shipments/")
    assert response.status_code == 401
    assert api_client.credentials(HTTP_AUTHORIZATION="Node nope") is None
    assert api_client.get("/api/v1/fulfillment/shipments/").status_code == 401


def test_the_node_reports_pick_pack_ship_and_the_order_ships(api_client, two_nodes, ups):
    _, shipment, key = two_nodes["east"]
    client = node_client(api_client, key)
    base = f"/api/v1/fulfillment/shipments/{shipment.pk}"
    assert client.post(f"{base}/acknowledge/", {"external_reference": "W-9"}, format="json").status_code == 200
    assert client.post(f"{base}/picking/").status_code == 200
    assert client.post(f"{base}/packed/").status_code == 200
    shipped_at = (timezone.now() - timedelta(minutes=3)).isoformat()
    response = client.post(
        f"{base}/shipped/", {"carrier": "UPS", "tracking_number": "1ZEAST", "shipped_at": shipped_at}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "shipped" and response.json()["external_reference"] == "W-9"
    event = OrderEvent.objects.get(order_id=shipment.order_id, kind="shipped")
    assert event.actor == "wms:EAST"


def test_an_idempotency_key_replay_returns_the_first_answer_and_changes_nothing(api_client, two_nodes, ups):
    _, shipment, key = two_nodes["east"]
    client = node_client(api_client, key)
    body = {"carrier": "UPS", "tracking_number": "1ZONCE", "shipped_at": timezone.now().isoformat()}
    url = f"/api/v1/fulfillment/shipments/{shipment.pk}/shipped/"
    first = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="ship-1")
    events = OrderEvent.objects.count()
    # when the WMS retries the same call
    again = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="ship-1")
    # then the same answer, flagged as a replay, and nothing new written
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert OrderEvent.objects.count() == events
    assert IdempotencyRecord.objects.filter(key="ship-1").count() == 1
    # the same key with a different body is refused
    other = client.post(url, {**body, "tracking_number": "1ZOTHER"}, format="json", HTTP_IDEMPOTENCY_KEY="ship-1")
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"


def test_bad_input_is_a_400_naming_the_field_and_loses_nothing(api_client, two_nodes, ups):
    _, shipment, key = two_nodes["east"]
    client = node_client(api_client, key)
    url = f"/api/v1/fulfillment/shipments/{shipment.pk}/shipped/"
    missing = client.post(url, {"carrier": "UPS", "shipped_at": timezone.now().isoformat()}, format="json")
    assert missing.status_code == 400 and "tracking_number" in missing.json()
    unknown = client.post(
        url, {"carrier": "NOPE", "tracking_number": "1", "shipped_at": timezone.now().isoformat()}, format="json"
    )
    assert unknown.status_code == 400 and unknown.json()["detail"].startswith("carrier:")
    short = client.post(
        f"/api/v1/fulfillment/shipments/{shipment.pk}/short-pick/",
        {"lines": [{"order_line": 999999, "quantity": 1}]},
        format="json",
    )
    assert short.status_code == 400 and short.json()["detail"].startswith("lines:")
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.RELEASED and not IdempotencyRecord.objects.exists()


def test_a_short_pick_over_the_api_reroutes(api_client, two_nodes, stock, skus):
    _, shipment, key = two_nodes["east"]
    west, _, _ = two_nodes["west"]
    stock(skus[0], west, 3)
    line = shipment.lines.get()
    response = node_client(api_client, key).post(
        f"/api/v1/fulfillment/shipments/{shipment.pk}/short-pick/",
        {"lines": [{"order_line": line.order_line_id, "quantity": 1}], "reason": "damaged"},
        format="json",
    )
    assert response.status_code == 200, response.content
    [new_id] = response.json()["rerouted_to"]
    assert Shipment.objects.get(pk=new_id).location == west
    assert response.json()["shipment"]["status"] == "cancelled"


def test_staff_need_the_fulfilment_permissions(client, viewer, agent, two_nodes):
    _, shipment, _ = two_nodes["east"]
    client.force_login(viewer)
    assert client.get("/api/v1/fulfillment/shipments/").status_code == 200
    assert client.post(f"/api/v1/fulfillment/shipments/{shipment.pk}/picking/").status_code == 403
    client.force_login(agent)
    assert client.post(f"/api/v1/fulfillment/shipments/{shipment.pk}/picking/").status_code == 200


def _ship(shipment, number="1ZTRACK"):
    services.shipment_ship(shipment=shipment.pk, carrier_code="UPS", tracking_number=number, actor="wms")


def _feed(number, *events):
    return {
        "tracking_number": number,
        "carrier": "UPS",
        "events": [
            {"id": eid, "status": status, "occurred_at": at.isoformat(), "location": "Memphis, TN"}
            for eid, status, at in events
        ],
    }


@override_settings(TRACKING_WEBHOOK_SECRET=SECRET)
def test_webhook_verifies_hmac_and_a_replayed_feed_changes_nothing(client, two_nodes, ups):
    _, shipment, _ = two_nodes["east"]
    _ship(shipment)
    now = timezone.now()
    body = json.dumps(
        _feed("1ZTRACK", ("e1", "in_transit", now - timedelta(hours=2)), ("e2", "delivered", now - timedelta(hours=1)))
    ).encode()
    headers = {"HTTP_X_WAYBILL_SIGNATURE": signature_for(body, SECRET)}
    first = client.post("/webhooks/tracking/", body, content_type="application/json", **headers)
    assert first.status_code == 200, first.content
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.DELIVERED and shipment.delivered_at == now - timedelta(hours=1)
    events, order_events = TrackingEvent.objects.count(), OrderEvent.objects.count()
    # when the carrier delivers the same feed again
    again = client.post("/webhooks/tracking/", body, content_type="application/json", **headers)
    # then nothing changes
    assert again.status_code == 200 and again.json()["results"][0] == {
        "shipment": shipment.pk,
        "created": 0,
        "duplicates": 2,
    }
    assert (TrackingEvent.objects.count(), OrderEvent.objects.count()) == (events, order_events)


@override_settings(TRACKING_WEBHOOK_SECRET=SECRET)
def test_webhook_with_a_bad_signature_is_401_and_stores_nothing(client, two_nodes, ups):
    _, shipment, _ = two_nodes["east"]
    _ship(shipment)
    body = json.dumps(_feed("1ZTRACK", ("e1", "in_transit", timezone.now()))).encode()
    for signature in ("", "sha256=" + "0" * 64, signature_for(body, "wrong-secret")):
        response = client.post(
            "/webhooks/tracking/", body, content_type="application/json", HTTP_X_WAYBILL_SIGNATURE=signature
        )
        assert response.status_code == 401
    assert not TrackingEvent.objects.exists()


@override_settings(TRACKING_WEBHOOK_SECRET=SECRET)
def test_webhook_bad_input_names_the_field(client, two_nodes, ups):
    body = json.dumps({"tracking_number": "1ZTRACK", "events": [{"status": "teleported"}]}).encode()
    response = client.post(
        "/webhooks/tracking/",
        body,
        content_type="application/json",
        HTTP_X_WAYBILL_SIGNATURE=signature_for(body, SECRET),
    )
    assert response.status_code == 400 and "events" in response.json()["errors"]
    assert not TrackingEvent.objects.exists()


def test_rest_tracking_feed_for_a_node_only_touches_its_own(api_client, two_nodes, ups):
    _, _, east_key = two_nodes["east"]
    _, west_shipment, _ = two_nodes["west"]
    _ship(west_shipment, "1ZWEST")
    response = node_client(api_client, east_key).post(
        "/api/v1/fulfillment/tracking/", _feed("1ZWEST", ("x", "in_transit", timezone.now())), format="json"
    )
    assert response.status_code == 404 and not TrackingEvent.objects.exists()


def test_the_openapi_schema_documents_the_node_api(client, admin_user):
    client.force_login(admin_user)
    schema = client.get("/api/schema/", {"format": "json"}).json()
    assert "/api/v1/fulfillment/shipments/{id}/shipped/" in schema["paths"]
    assert "nodeToken" in schema["components"]["securitySchemes"]
