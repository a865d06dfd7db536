"""Integration API tokens: hashed, shown once, expiring, scoped per resource and access, never more than the
user's role allows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from config.security.models import IntegrationToken
from config.security.tokens import TokenInputError, integration_token_create, integration_token_revoke
from tests.factories import LocationFactory, OrderFactory, SkuFactory, StockLevelFactory

pytestmark = pytest.mark.django_db


def _bearer(api_client, key: str):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api_client


def _adjust(client, key: str):
    return client.post(
        "/api/v1/stock-adjustments/",
        {"sku": "TEE", "location": "DAL", "delta": 1, "reason": "count", "idempotency_key": key},
        format="json",
    )


@pytest.fixture
def stock(db):
    return StockLevelFactory(sku=SkuFactory(code="TEE"), location=LocationFactory(code="DAL"), on_hand=10)


def test_only_the_hash_is_stored_and_the_key_is_returned_once(manager):
    token, key = integration_token_create(user_id=manager.pk, name="ERP", scopes=["orders:read"], days=30, actor="a")
    stored = IntegrationToken.objects.get(pk=token.pk)
    assert key not in stored.key_hash and len(stored.key_hash) == 64
    assert stored.key_prefix == key[:8]
    assert not IntegrationToken.objects.filter(key_hash=key).exists()


def test_a_read_scope_reads_its_resource_only(api_client, manager, stock):
    OrderFactory()
    _, key = integration_token_create(user_id=manager.pk, name="BI", scopes=["orders:read"], days=30, actor="a")
    client = _bearer(api_client, key)
    assert client.get("/api/v1/orders/").status_code == 200
    # another resource, and writing: refused even though the user's role could
    refused = client.get("/api/v1/stock-levels/")
    assert refused.status_code == 403 and "inventory:read" in refused.json()["detail"]
    assert _adjust(client, "k1").status_code == 403


def test_a_write_scope_writes_within_the_users_role(api_client, agent, viewer, stock):
    _, agent_key = integration_token_create(
        user_id=agent.pk, name="WMS sync", scopes=["inventory:write"], days=30, actor="a"
    )
    assert _adjust(_bearer(api_client, agent_key), "k2").status_code == 201
    # a viewer's token with the same scope cannot do what the viewer cannot
    _, viewer_key = integration_token_create(
        user_id=viewer.pk, name="script", scopes=["inventory:write"], days=30, actor="a"
    )
    assert _adjust(_bearer(api_client, viewer_key), "k3").status_code == 403


def test_an_expired_or_revoked_token_is_a_401(api_client, manager):
    token, key = integration_token_create(user_id=manager.pk, name="old", scopes=["orders:read"], days=1, actor="a")
    IntegrationToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = _bearer(api_client, key).get("/api/v1/orders/")
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    token2, key2 = integration_token_create(user_id=manager.pk, name="new", scopes=["orders:read"], days=1, actor="a")
    integration_token_revoke(token_id=token2.pk, actor="admin")
    assert _bearer(api_client, key2).get("/api/v1/orders/").status_code == 401
    assert _bearer(api_client, "wbt_unknown").get("/api/v1/orders/").status_code == 401


def test_node_endpoints_need_the_fulfillment_scope(api_client, manager):
    _, key = integration_token_create(user_id=manager.pk, name="x", scopes=["orders:write"], days=1, actor="a")
    assert _bearer(api_client, key).get("/api/v1/fulfillment/shipments/").status_code == 403
    _, key = integration_token_create(user_id=manager.pk, name="y", scopes=["fulfillment:read"], days=1, actor="a")
    assert _bearer(api_client, key).get("/api/v1/fulfillment/shipments/").status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scopes": []}, "at least one scope"),
        ({"scopes": ["orders:admin"]}, "unknown scope"),
        ({"scopes": ["secrets:read"]}, "unknown scope"),
        ({"days": 0}, "1 to 365 days"),
        ({"days": 1000}, "1 to 365 days"),
        ({"name": " "}, "needs a name"),
    ],
)
def test_a_token_request_that_cannot_be_granted_says_why(manager, kwargs, message):
    arguments = {"user_id": manager.pk, "name": "t", "scopes": ["orders:read"], "days": 30, "actor": "a", **kwargs}
    with pytest.raises(TokenInputError, match=message):
        integration_token_create(**arguments)


def test_the_admin_shows_the_key_once(client, admin_user, manager):
    client.force_login(admin_user)
    response = client.post(
        "/admin/security/integrationtoken/add/",
        {"name": "ERP", "user": manager.pk, "scopes": ["orders:read", "inventory:read"], "days": 30},
        follow=True,
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"] if "shown once" in str(m)]
    assert len(shown) == 1
    key = shown[0].rsplit(" ", 1)[-1]
    token = IntegrationToken.objects.get(name="ERP")
    assert token.scopes == ["inventory:read", "orders:read"]
    assert key.startswith(token.key_prefix)
    page = client.get(f"/admin/security/integrationtoken/{token.pk}/change/")
    assert key.encode() not in page.content


def test_the_order_override_and_exception_endpoints_take_integration_tokens_scoped_to_orders(api_client, agent):
    # given an agent's tokens: one that may write orders, one that may only read them, one for inventory
    from orders.models import Hold

    order = OrderFactory()
    tokens = {
        scope: integration_token_create(user_id=agent.pk, name=scope, scopes=[scope], days=30, actor="a")[1]
        for scope in ("orders:write", "orders:read", "inventory:write")
    }
    hold = {"kind": "manual", "reason": "the buyer called"}
    # when each places a hold through the override API and reads the exception queue
    url = f"/api/v1/orders/{order.pk}/holds/"
    placed = _bearer(api_client, tokens["orders:write"]).post(url, hold, format="json")
    read_only = _bearer(api_client, tokens["orders:read"]).post(url, hold, format="json")
    other = _bearer(api_client, tokens["inventory:write"]).post(url, hold, format="json")
    queue = _bearer(api_client, tokens["orders:read"]).get("/api/v1/exception-cases/")
    # then only the orders:write token placed it, under the agent's name
    assert placed.status_code == 201, placed.content
    assert read_only.status_code == 403 and "orders:write" in read_only.json()["detail"]
    assert other.status_code == 403
    assert queue.status_code == 200
    assert list(Hold.objects.filter(order=order).values_list("placed_by", flat=True)) == [agent.get_username()]
