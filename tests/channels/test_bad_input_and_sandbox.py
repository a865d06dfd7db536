"""Bad input never crashes a sync nor half-writes an order; sandbox responses match the public models."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jsonschema
import pytest
from django.conf import settings

from channels.inbound import inbound_orders_process
from channels.models import InboundEvent, InboundStatus
from channels.services import connector_for
from orders.models import Order, OrderLine

pytestmark = pytest.mark.django_db

SPECS = Path(settings.CHANNEL_SPECS_DIR)


def _good(connector, sandbox) -> dict:
    (made,) = sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    return connector.get_order(made.order_id)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o["orderItems"][0].update(quantityOrdered=-3), "orderItems[0].quantityOrdered"),
        (lambda o: o["orderItems"][0].update(quantityOrdered="2"), None),
        (lambda o: o["orderItems"][0].update(quantityOrdered=[1]), "orderItems[0].quantityOrdered"),
        (lambda o: o.update(createdTime="2026-13-45"), "createdTime"),
        (lambda o: o.update(lastUpdatedTime="1700000000"), "lastUpdatedTime"),
        (lambda o: o.update(createdTime="2026-01-01T10:00:00"), "createdTime"),
        (lambda o: o.update(orderItems="lots"), "orderItems"),
        (lambda o: o["orderItems"][0]["product"]["price"]["unitPrice"].update(amount="-1.00"), "unitPrice.amount"),
        (lambda o: o["orderItems"][0]["product"]["price"]["unitPrice"].update(amount="NaN"), "unitPrice.amount"),
        (lambda o: o["fulfillment"].update(fulfillmentStatus="TELEPORTED"), "fulfillment.fulfillmentStatus"),
        (lambda o: o.pop("salesChannel"), "salesChannel"),
        (lambda o: o["orderItems"][0]["product"].pop("sellerSku"), "orderItems[0].product.sellerSku"),
        (lambda o: o.update(unknownField={"nested": True}), None),
    ],
)
def test_bad_field_fails_the_event_naming_the_field(amazon_sandbox, amazon_account, skus, mutate, field):
    # given: a good page of two orders, one of them damaged
    connector = connector_for(amazon_account)
    damaged, fine = _good(connector, amazon_sandbox), _good(connector, amazon_sandbox)
    mutate(damaged)
    # when
    outcome = inbound_orders_process(account=amazon_account, connector=connector, raw_orders=[damaged, fine], actor="t")
    # then
    assert Order.objects.filter(external_id=fine["orderId"]).exists()
    if field is None:
        assert outcome.failed == 0
        return
    event = InboundEvent.objects.get(external_id=damaged["orderId"])
    assert event.status == InboundStatus.FAILED and field in event.error
    assert not Order.objects.filter(external_id=damaged["orderId"]).exists()
    assert not OrderLine.objects.filter(order__external_id=damaged["orderId"]).exists()


@pytest.mark.parametrize("garbage", ["garbage", 42, None, [1, 2], {"orderId": None}, {}])
def test_garbage_is_kept_as_a_failed_event(amazon_account, garbage):
    # given
    connector = connector_for(amazon_account)
    # when
    outcome = inbound_orders_process(account=amazon_account, connector=connector, raw_orders=[garbage], actor="t")
    # then
    assert outcome.failed == 1
    event = InboundEvent.objects.get()
    assert event.status == InboundStatus.FAILED and event.error
    assert not Order.objects.exists()


def test_oversized_payload_is_kept_truncated_and_failed(amazon_sandbox, amazon_account, skus):
    # given
    connector = connector_for(amazon_account)
    order = _good(connector, amazon_sandbox)
    order["orderItems"][0]["product"]["title"] = "x" * 600_000
    # when
    inbound_orders_process(account=amazon_account, connector=connector, raw_orders=[order], actor="t")
    # then
    event = InboundEvent.objects.get()
    assert event.status == InboundStatus.FAILED and "payload" in event.error
    assert event.payload["_bytes"] > 600_000
    assert not Order.objects.exists()


def test_truncated_json_page_is_a_failed_sync_not_a_crash(amazon_sandbox, amazon_account, monkeypatch):
    # given: the channel cuts its response short
    from channels.sandbox.base import Response
    from channels.sync import sync_account_run

    monkeypatch.setattr(amazon_sandbox, "search_orders", lambda request: Response(200, raw=b'{"orders": [{"orderId"'))
    amazon_sandbox._routes = [
        (m, p, amazon_sandbox.search_orders if "/".join(p[1:3]) == "2026-01-01/orders" and len(p) == 3 else h)
        for m, p, h in amazon_sandbox._routes
    ]
    # when
    run = sync_account_run(account_id=amazon_account.pk)
    # then
    assert run.status == "failed" and "not JSON" in run.error
    assert not Order.objects.exists()


def _amazon_schema(name: str, definition: str) -> dict:
    spec = json.loads((SPECS / name).read_text())
    return {"$ref": f"#/definitions/{definition}", "definitions": spec["definitions"]}


def test_amazon_sandbox_responses_validate_against_the_public_models(amazon_sandbox, amazon_account):
    # given: orders of every shape
    for status in ("pending", "unshipped", "shipped", "cancelled"):
        amazon_sandbox.state.generate(5, status=status)
    connector = connector_for(amazon_account)
    token = connector.access_token()
    headers = {"x-amz-access-token": token}
    base = amazon_sandbox.base_url
    # when
    search = httpx.get(
        f"{base}/orders/2026-01-01/orders",
        params={
            "lastUpdatedAfter": "2020-01-01T00:00:00Z",
            "includedData": "FULFILLMENT,RECIPIENT,PROCEEDS,CANCELLATION,PACKAGES",
            "maxResultsPerPage": 7,
        },
        headers=headers,
    )
    one = httpx.get(f"{base}/orders/2026-01-01/orders/{search.json()['orders'][0]['orderId']}", headers=headers)
    throttled = httpx.post(f"{base}/_sandbox/faults", json={"throttle_next": 1})
    limited = httpx.get(f"{base}/orders/2026-01-01/orders/x", headers=headers)
    listing = httpx.patch(
        f"{base}/listings/2021-08-01/items/A2TESTSELLER/WB-1000",
        params={"marketplaceIds": "ATVPDKIKX0DER"},
        json={
            "productType": "PRODUCT",
            "patches": [
                {
                    "op": "replace",
                    "path": "/attributes/fulfillment_availability",
                    "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 3}],
                }
            ],
        },
        headers=headers,
    )
    # then
    assert throttled.status_code == 200
    jsonschema.validate(search.json(), _amazon_schema("amazon-orders-2026-01-01.json", "SearchOrdersResponse"))
    assert "nextToken" in search.json()["pagination"]
    jsonschema.validate(one.json(), _amazon_schema("amazon-orders-2026-01-01.json", "GetOrderResponse"))
    assert limited.status_code == 429
    jsonschema.validate(limited.json(), _amazon_schema("amazon-orders-2026-01-01.json", "ErrorList"))
    jsonschema.validate(
        listing.json(), _amazon_schema("amazon-listings-items-2021-08-01.json", "ListingsItemSubmissionResponse")
    )


def test_shopify_sandbox_answers_are_shaped_by_the_schema(shopify_sandbox, shopify_account):
    # given
    shopify_sandbox.state.generate(3)
    connector = connector_for(shopify_account)
    # when: a field the schema lacks
    response = httpx.post(
        f"{shopify_sandbox.base_url}/admin/api/2026-10/graphql.json",
        json={"query": "{ orders(first: 2) { nodes { id notAField } } }"},
        headers={"X-Shopify-Access-Token": "shpat_test"},
    )
    # then: HTTP 200 with a validation error, as Shopify answers
    assert response.status_code == 200
    assert "notAField" in response.json()["errors"][0]["message"]
    assert response.headers["X-Shopify-API-Version"] == "2026-10"
    # and the connector's own query returns cost extensions
    connector.graphql("query($q: String!) { orders(first: 2, query: $q) { nodes { id } } }", {"q": ""})
    assert connector.last_cost["throttleStatus"]["maximumAvailable"] > 0


def test_shopify_python_library_drives_the_sandbox(shopify_sandbox, shopify_account, monkeypatch):
    # given: Shopify's own Python client (ShopifyAPI), pointed at the sandbox. It builds
    # "<shop>.<myshopify_domain>:<port>" from the shop name: "127" + ".0.0.1" is the loopback.
    shopify = pytest.importorskip("shopify")
    monkeypatch.setattr(shopify.Session, "myshopify_domain", "0.0.1")
    monkeypatch.setattr(shopify.Session, "port", int(shopify_sandbox.base_url.rsplit(":", 1)[1]))
    shopify_sandbox.state.generate(2)
    session = shopify.Session("127", "2026-07", "shpat_test")
    session.protocol = "http"
    shopify.ShopifyResource.activate_session(session)
    try:
        # when
        result = json.loads(shopify.GraphQL().execute("{ orders(first: 5) { nodes { id name } } }"))
    finally:
        shopify.ShopifyResource.clear_session()
    # then
    assert len(result["data"]["orders"]["nodes"]) == 2
