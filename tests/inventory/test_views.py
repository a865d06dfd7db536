from __future__ import annotations

import pytest
from django.urls import reverse

from inventory import services
from inventory.models import InboundStatus, MovementReason, StockLevel, StockMovement
from tests.factories import InboundLineFactory, InboundShipmentFactory, LocationFactory, SkuFactory

pytestmark = pytest.mark.django_db


def _grid(client, params=None, **headers):
    return client.get(reverse("inventory:grid"), params or {}, **headers)


def test_grid_shows_on_hand_reserved_atp_and_inbound(client, viewer, stock, line_for):
    # given 5 on hand with 2 reserved and 4 inbound
    node, sku = LocationFactory(code="DAL"), SkuFactory(code="TEE-RED")
    stock(sku, node, 5)
    services.stock_reserve(lines=[services.LineDemand(line_for(sku, 2).pk, sku.pk, {node.pk: 2})], actor="router")
    InboundLineFactory(shipment=InboundShipmentFactory(location=node), sku=sku, quantity_expected=4)
    client.force_login(viewer)
    # when
    response = _grid(client, {"q": "TEE"})
    # then
    assert response.status_code == 200
    [level] = response.context["levels"]
    assert (level.on_hand, level.reserved, level.atp_units, level.inbound_units) == (5, 2, 3, 4)
    assert b"TEE-RED" in response.content


def test_grid_query_count_does_not_grow_with_rows(client, viewer, django_assert_max_num_queries):
    # given 60 stock rows (more than a page)
    nodes = [LocationFactory() for _ in range(3)]
    for _ in range(20):
        sku = SkuFactory()
        StockLevel.objects.bulk_create(StockLevel(sku=sku, location=n, on_hand=3) for n in nodes)
    client.force_login(viewer)
    # when / then: one query for the page (keyset: no COUNT), plus session/user/filter choices
    with django_assert_max_num_queries(8):
        response = _grid(client)
    assert len(response.context["levels"]) == 50
    assert response.context["next_url"]
    with django_assert_max_num_queries(8):
        response = client.get(response.context["next_url"])
    assert len(response.context["levels"]) == 10


def test_grid_htmx_renders_the_partial(client, viewer):
    client.force_login(viewer)
    response = _grid(client, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b"<html" not in response.content


def test_grid_needs_the_view_permission(client, django_user_model):
    user = django_user_model.objects.create_user(username="nobody", password="pw-not-used-1")
    client.force_login(user)
    assert _grid(client).status_code == 403


def test_sku_page_shows_ledger_and_reservations(client, viewer, stock, line_for):
    node, sku = LocationFactory(code="DAL"), SkuFactory(code="MUG")
    stock(sku, node, 5)
    services.stock_reserve(lines=[services.LineDemand(line_for(sku, 1).pk, sku.pk, {node.pk: 1})], actor="router")
    client.force_login(viewer)
    response = client.get(reverse("inventory:sku", args=["MUG"]))
    assert response.status_code == 200
    assert len(response.context["movements"]) == 1 and len(response.context["reservations"]) == 1
    assert not response.context["can_adjust"]


def test_adjustment_form_needs_a_reason_and_is_audited(client, agent, stock):
    # given
    node, sku = LocationFactory(code="DAL"), SkuFactory(code="MUG")
    stock(sku, node, 5)
    client.force_login(agent)
    url = reverse("inventory:adjust", args=["MUG"])
    # when the reason is missing
    missing = client.post(url, {"location": "DAL", "delta": "-1", "reason": "", "idempotency_key": "k1"})
    # then nothing changes
    assert missing.status_code == 400
    assert "reason" in missing.context["form"].errors
    assert StockLevel.objects.get(sku=sku).on_hand == 5
    # when posted with a reason, twice (a double submit)
    for _ in range(2):
        done = client.post(url, {"location": "DAL", "delta": "-1", "reason": "dropped", "idempotency_key": "k2"})
        assert done.status_code == 302
    # then one audited movement
    movement = StockMovement.objects.get(reason=MovementReason.ADJUST)
    assert (movement.actor_user, movement.note, movement.delta, movement.balance_after) == (agent, "dropped", -1, 4)
    assert StockLevel.objects.get(sku=sku).on_hand == 4


def test_a_viewer_cannot_adjust(client, viewer):
    SkuFactory(code="MUG")
    client.force_login(viewer)
    response = client.post(reverse("inventory:adjust", args=["MUG"]), {"delta": "1", "reason": "x"})
    assert response.status_code == 403


def test_receiving_an_inbound_shipment(client, agent):
    # given a PO line for 6
    node, sku = LocationFactory(code="DAL"), SkuFactory(code="CAP")
    line = InboundLineFactory(
        shipment=InboundShipmentFactory(location=node, reference="PO-9"), sku=sku, quantity_expected=6
    )
    client.force_login(agent)
    page = client.get(reverse("inventory:inbound-detail", args=[line.shipment_id]))
    assert page.status_code == 200 and page.context["can_receive"]
    key = page.context["form"].initial["idempotency_key"]
    # when 6 are received
    response = client.post(
        reverse("inventory:inbound-receive", args=[line.shipment_id]), {f"line_{line.pk}": "6", "idempotency_key": key}
    )
    # then
    assert response.status_code == 302
    line.refresh_from_db(), line.shipment.refresh_from_db()
    assert (line.quantity_received, line.shipment.status) == (6, InboundStatus.RECEIVED)
    assert StockLevel.objects.get(sku=sku, location=node).on_hand == 6
    # and the inbound list shows open shipments by default
    assert client.get(reverse("inventory:inbound")).context["shipments"] == []


def test_receiving_nothing_is_a_form_error(client, agent):
    line = InboundLineFactory()
    client.force_login(agent)
    response = client.post(
        reverse("inventory:inbound-receive", args=[line.shipment_id]), {f"line_{line.pk}": "", "idempotency_key": "k"}
    )
    assert response.status_code == 400
    assert not StockLevel.objects.exists()
