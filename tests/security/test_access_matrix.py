"""Role x endpoint x object: every role, each node token and an anonymous caller against the API and the
console, on objects of two channel accounts and two nodes (ASVS 4.1, 4.2).

Roles are not per account (one seller, every account is theirs): a role sees both accounts' orders alike.
A node token sees its own node's shipments only: another node's id is a 404, as if it did not exist."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from fulfillment import services as fulfillment_services
from fulfillment.models import Shipment
from orders.roles import ADMIN, OPS_AGENT, OPS_MANAGER, VIEWER
from tests.factories import ChannelAccountFactory, OrderFactory, OrderLineFactory

pytestmark = pytest.mark.django_db

USERS = (ADMIN, OPS_MANAGER, OPS_AGENT, VIEWER)
PRINCIPALS = (*USERS, "node:EAST", "node:WEST", "anonymous")
WRITERS = {ADMIN, OPS_MANAGER, OPS_AGENT}
MANAGERS = {ADMIN, OPS_MANAGER}

# (name, method, path template, body, who may): objects are {order_a}, {order_b} (two accounts),
# {shipment} (EAST's), {account_b}. "node:EAST" may use EAST's shipment only.
ENDPOINTS = [
    ("api order, account A", "get", "/api/v1/orders/{order_a}/", None, set(USERS)),
    ("api order, account B", "get", "/api/v1/orders/{order_b}/", None, set(USERS)),
    ("api stock levels", "get", "/api/v1/stock-levels/", None, set(USERS)),
    (
        "api stock adjustment",
        "post",
        "/api/v1/stock-adjustments/",
        {"sku": "{sku}", "location": "EAST", "delta": 1, "reason": "count", "idempotency_key": "m"},
        WRITERS,
    ),
    ("api shipment (EAST)", "get", "/api/v1/fulfillment/shipments/{shipment}/", None, {*USERS, "node:EAST"}),
    (
        "api acknowledge (EAST)",
        "post",
        "/api/v1/fulfillment/shipments/{shipment}/acknowledge/",
        {},
        {*WRITERS, "node:EAST"},
    ),
    ("api hold, account B", "post", "/api/v1/orders/{order_b}/holds/", {"kind": "manual", "reason": "check"}, WRITERS),
    ("api exception queue", "get", "/api/v1/exception-cases/", None, set(USERS)),
    ("api rmas", "get", "/api/v1/returns/rmas/", None, {*USERS, "node:EAST", "node:WEST"}),
    ("console order, account B", "get", "/orders/{order_b}/", None, set(USERS)),
    ("console hold", "post", "/orders/{order_a}/holds/", {"kind": "manual", "reason": "check"}, WRITERS),
    ("console account B", "get", "/channels/{account_b}/", None, set(USERS)),
    ("console sync now", "post", "/channels/{account_b}/sync/", {}, MANAGERS),
    ("console reroute", "post", "/fulfillment/orders/{order_a}/reroute/", {"reason": "x"}, MANAGERS),
    ("console stock grid", "get", "/inventory/", None, set(USERS)),
]


@pytest.fixture
def world(node, put_stock, order_for, skus, django_user_model):
    east, west = node("EAST", "10001"), node("WEST", "94107")
    put_stock(skus[0], east, 5)
    put_stock(skus[0], west, 5)
    order_a = order_for([(skus[0], 1)], postal_code="10001")
    fulfillment_services.orders_route(order_ids=[order_a.pk], actor="router")
    account_b = ChannelAccountFactory(name="shopify-b", kind="shopify")
    order_b = OrderFactory(account=account_b)
    OrderLineFactory(order=order_b, sku=skus[1])
    shipment = Shipment.objects.get(order=order_a)
    keys = {
        "node:EAST": fulfillment_services.node_token_create(location=east, name="east", actor="t")[1],
        "node:WEST": fulfillment_services.node_token_create(location=west, name="west", actor="t")[1],
    }
    users = {}
    for role in USERS:
        user = django_user_model.objects.create_user(username=role.replace(" ", "-").lower(), password=None)
        user.groups.add(Group.objects.get(name=role))
        users[role] = user
    ids = {
        "order_a": order_a.pk,
        "order_b": order_b.pk,
        "shipment": shipment.pk if shipment.location_id == east.pk else None,
        "account_b": account_b.pk,
        "sku": skus[0].code,
    }
    assert ids["shipment"], "the order was expected to route to EAST (nearest to its buyer)"
    return ids, users, keys


def _fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize(("name", "method", "path", "body", "allowed"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_matrix(client, api_client, world, principal, name, method, path, body, allowed):
    ids, users, keys = world
    url = _fill(path, ids)
    data = _fill(body, ids)
    is_api = url.startswith("/api/")
    if principal in users:
        (api_client.force_authenticate if is_api else client.force_login)(users[principal])
    elif principal.startswith("node:"):
        api_client.credentials(HTTP_AUTHORIZATION=f"Node {keys[principal]}")
    caller = api_client if is_api else client
    kwargs = {"format": "json"} if is_api and data is not None else {}
    response = getattr(caller, method)(url, data, **kwargs) if data is not None else getattr(caller, method)(url)
    status = response.status_code
    assert status < 500, f"{principal} {name}: {status}"
    if principal in allowed:
        assert status not in (401, 403, 404), f"{principal} may {name} but got {status}: {response.content[:200]}"
    elif principal == "anonymous":
        expected = (401,) if is_api else (302,)
        assert status in expected, f"anonymous {name}: {status}"
        if not is_api:
            assert response["Location"].startswith("/login/")
    elif principal.startswith("node:") and "shipment" in path:
        # another node's shipment does not exist for this token
        assert status == 404, f"{principal} {name}: {status}"
    elif principal.startswith("node:") and not is_api:
        # a node token means nothing to the console: it is an anonymous visitor there
        assert status == 302
    elif principal.startswith("node:"):
        # nor to the rest of the API: not a credential there
        assert status == 401, f"{principal} {name}: {status}"
    else:
        assert status == 403, f"{principal} must not {name}: {status}"
