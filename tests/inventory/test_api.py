from __future__ import annotations

import pytest
from django.urls import reverse

from inventory import services
from inventory.models import InboundShipment, InboundStatus, MovementReason, StockLevel, StockMovement, StockSnapshot
from tests.factories import InboundLineFactory, InboundShipmentFactory, LocationFactory, SkuFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def dal(db):
    return LocationFactory(code="DAL")


@pytest.fixture
def tee(db):
    return SkuFactory(code="TEE")


def test_stock_levels_list_and_filter(api_client, viewer, dal, tee, stock):
    # given
    stock(tee, dal, 5)
    stock(SkuFactory(code="MUG"), LocationFactory(code="RNO"), 2)
    api_client.force_authenticate(viewer)
    # when
    response = api_client.get(reverse("stock-level-list"), {"location": "DAL"})
    # then
    assert response.status_code == 200
    [row] = response.json()["results"]
    assert (row["sku_code"], row["location_code"], row["on_hand"], row["reserved"], row["atp"], row["inbound"]) == (
        "TEE",
        "DAL",
        5,
        0,
        5,
        0,
    )


def test_stock_levels_need_a_login(api_client):
    assert api_client.get(reverse("stock-level-list")).status_code == 401


def test_snapshot_applies_and_a_replay_changes_nothing(api_client, agent, dal, tee, stock):
    # given
    stock(tee, dal, 10)
    api_client.force_authenticate(agent)
    body = {
        "idempotency_key": "wms-7",
        "source": "wms:dallas",
        "rows": [{"sku": "TEE", "location": "DAL", "on_hand": 8}],
    }
    # when
    first = api_client.post(reverse("stock-level-snapshot"), body, format="json")
    services.stock_receive(sku=tee, location=dal, quantity=1, actor="wms")
    again = api_client.post(reverse("stock-level-snapshot"), body, format="json")
    # then
    assert first.status_code == 200 and first.json()["changed"] == 1 and not first.json()["replayed"]
    assert again.status_code == 200 and again.json()["replayed"]
    assert again.json()["rows"] == first.json()["rows"]
    assert StockLevel.objects.get(sku=tee, location=dal).on_hand == 9
    assert StockSnapshot.objects.get().actor == "agent"


def test_a_bad_snapshot_is_400_naming_the_rows_and_applies_nothing(api_client, agent, dal, tee, stock):
    # given
    stock(tee, dal, 10)
    api_client.force_authenticate(agent)
    body = {
        "idempotency_key": "wms-8",
        "rows": [
            {"sku": "TEE", "location": "DAL", "on_hand": 4},
            {"sku": "TEE", "location": "DAL", "on_hand": 4},
            {"sku": "GHOST", "location": "DAL", "on_hand": 1},
            {"sku": "TEE", "location": "DAL", "on_hand": -1},
            {"sku": "TEE", "location": "DAL", "on_hand": 2.5},
            {"sku": "TEE"},
        ],
    }
    # when
    response = api_client.post(reverse("stock-level-snapshot"), body, format="json")
    # then
    assert response.status_code == 400
    payload = response.json()
    assert payload["code"] == "snapshot_invalid"
    assert [r["row"] for r in payload["rows"]] == [1, 2, 3, 4, 5]
    assert StockLevel.objects.get(sku=tee, location=dal).on_hand == 10
    assert not StockSnapshot.objects.exists()


def test_snapshot_needs_an_idempotency_key(api_client, agent, dal, tee):
    api_client.force_authenticate(agent)
    response = api_client.post(
        reverse("stock-level-snapshot"), {"rows": [{"sku": "TEE", "location": "DAL", "on_hand": 1}]}, format="json"
    )
    assert response.status_code == 400
    assert "idempotency_key" in response.json()


def test_a_viewer_cannot_apply_a_snapshot(api_client, viewer, dal, tee):
    api_client.force_authenticate(viewer)
    body = {"idempotency_key": "k", "rows": [{"sku": "TEE", "location": "DAL", "on_hand": 1}]}
    assert api_client.post(reverse("stock-level-snapshot"), body, format="json").status_code == 403
    assert not StockMovement.objects.exists()


def test_adjustment_is_audited_and_replay_safe(api_client, agent, dal, tee, stock):
    # given
    stock(tee, dal, 3)
    api_client.force_authenticate(agent)
    body = {"sku": "TEE", "location": "DAL", "delta": -1, "reason": "cracked", "idempotency_key": "adj-9"}
    # when
    first = api_client.post(reverse("stock-adjustment"), body, format="json")
    again = api_client.post(reverse("stock-adjustment"), body, format="json")
    # then
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    movement = StockMovement.objects.get(reason=MovementReason.ADJUST)
    assert (movement.actor, movement.actor_user, movement.note, movement.balance_after) == (
        "agent",
        agent,
        "cracked",
        2,
    )
    assert StockLevel.objects.get(sku=tee, location=dal).on_hand == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"delta": 0}, "delta"),
        ({"delta": "x"}, "delta"),
        ({"sku": "GHOST"}, "sku"),
        ({"location": "MARS"}, "location"),
        ({"reason": ""}, "reason"),
    ],
)
def test_bad_adjustments_are_400_and_change_nothing(api_client, agent, dal, tee, stock, change, field):
    stock(tee, dal, 3)
    api_client.force_authenticate(agent)
    body = {"sku": "TEE", "location": "DAL", "delta": 1, "reason": "count", "idempotency_key": "adj-x", **change}
    response = api_client.post(reverse("stock-adjustment"), body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert StockLevel.objects.get(sku=tee, location=dal).on_hand == 3


def test_adjustment_below_reserved_is_409(api_client, agent, dal, tee, stock, line_for):
    stock(tee, dal, 2)
    services.stock_reserve(lines=[services.LineDemand(line_for(tee, 2).pk, tee.pk, {dal.pk: 2})], actor="router")
    api_client.force_authenticate(agent)
    body = {"sku": "TEE", "location": "DAL", "delta": -1, "reason": "lost", "idempotency_key": "adj-y"}
    response = api_client.post(reverse("stock-adjustment"), body, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "stock_conflict"


def test_create_and_receive_an_inbound_shipment(api_client, manager, agent, dal, tee):
    # given a manager records a PO
    api_client.force_authenticate(manager)
    created = api_client.post(
        reverse("inbound-shipment-list"),
        {
            "reference": "PO-42",
            "location": "DAL",
            "expected_at": "2030-01-01T00:00:00Z",
            "lines": [{"sku": "TEE", "quantity_expected": 6}],
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    shipment_id, line_id = created.json()["id"], created.json()["lines"][0]["id"]
    # when an agent receives 4, twice with the same key
    api_client.force_authenticate(agent)
    url = reverse("inbound-shipment-receive", args=[shipment_id])
    body = {"lines": [{"line": line_id, "quantity": 4}], "idempotency_key": "rcv-42"}
    first = api_client.post(url, body, format="json")
    again = api_client.post(url, body, format="json")
    # then
    assert first.status_code == 200 and not first.json()["replayed"]
    assert again.status_code == 200 and again.json()["replayed"]
    assert first.json()["shipment"]["status"] == InboundStatus.PARTIALLY_RECEIVED
    assert StockLevel.objects.get(sku=tee, location=dal).on_hand == 4
    assert InboundShipment.objects.get(pk=shipment_id).lines.get().quantity_received == 4


@pytest.mark.parametrize("quantity", [0, -3])
def test_receiving_zero_or_negative_is_400(api_client, agent, dal, tee, quantity):
    line = InboundLineFactory(shipment=InboundShipmentFactory(location=dal), sku=tee)
    api_client.force_authenticate(agent)
    response = api_client.post(
        reverse("inbound-shipment-receive", args=[line.shipment_id]),
        {"lines": [{"line": line.pk, "quantity": quantity}], "idempotency_key": "r"},
        format="json",
    )
    assert response.status_code == 400
    assert "lines" in response.json()
    assert not StockLevel.objects.exists()


def test_receiving_a_line_of_another_shipment_is_400(api_client, agent, dal, tee):
    line = InboundLineFactory(shipment=InboundShipmentFactory(location=dal), sku=tee)
    other = InboundShipmentFactory(location=dal)
    api_client.force_authenticate(agent)
    response = api_client.post(
        reverse("inbound-shipment-receive", args=[other.pk]),
        {"lines": [{"line": line.pk, "quantity": 1}], "idempotency_key": "r2"},
        format="json",
    )
    assert response.status_code == 400
    assert str(line.pk) in response.json()["detail"]


def test_the_schema_documents_the_inventory_endpoints(api_client, viewer):
    api_client.force_authenticate(viewer)
    response = api_client.get(reverse("api-schema"), {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/v1/stock-levels/",
        "/api/v1/stock-levels/snapshot/",
        "/api/v1/stock-adjustments/",
        "/api/v1/inbound-shipments/",
        "/api/v1/inbound-shipments/{id}/receive/",
    ):
        assert path in paths
