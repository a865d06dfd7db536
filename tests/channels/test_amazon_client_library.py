"""python-amazon-sp-api, the widely used SP-API client, drives the Amazon sandbox over loopback.

The library is pointed at the sandbox through its own extension points: ``Client`` takes the
marketplace object it reads ``endpoint``/``marketplace_id``/``region`` from, and an
``auth_token_client_class`` (here an ``AccessTokenClient`` whose scheme and host are the
sandbox's), so the LWA refresh-token exchange goes to the sandbox's ``/auth/o2/token``. The
library keeps access tokens in a module-wide cache keyed by refresh token; each test gets a fresh
one so a token from another test's sandbox is never reused. Every request the library sends is
checked to be for the sandbox: nothing may reach amazon.com.

Orders: the library has an Orders 2026-01-01 client (``Orders(version="2026-01-01")``) with
``search_orders``, used below; of Orders v0 only ``confirm_shipment`` is used (v0 ``getOrders``
and the other v0 reads are deprecated and not exercised).
"""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from cachetools import TTLCache
from sp_api.api import ListingsItems, Orders
from sp_api.auth import AccessTokenClient, access_token_client
from sp_api.base import SellingApiBadRequestException, _transport_httpx
from sp_api.base.credential_provider import FromCodeCredentialProvider

from tests.channels.conftest import AMAZON_CREDENTIALS

pytestmark = pytest.mark.django_db

MARKETPLACE_ID = "ATVPDKIKX0DER"
SELLER_ID = "A2TESTSELLER"


@pytest.fixture
def sp_client(amazon_sandbox, monkeypatch):
    """Build a python-amazon-sp-api client class pointed at the sandbox: ``sp_client(Orders, version=...)``."""
    base = amazon_sandbox.base_url
    monkeypatch.delenv("SP_API_DEFAULT_MARKETPLACE", raising=False)
    monkeypatch.setattr(access_token_client, "cache", TTLCache(maxsize=10, ttl=3200))
    real_request = _transport_httpx.HttpxTransport.request

    def loopback_only(self, method, url, **kwargs):
        assert str(url).startswith(base + "/"), f"python-amazon-sp-api tried to reach {url}"
        return real_request(self, method, url, **kwargs)

    monkeypatch.setattr(_transport_httpx.HttpxTransport, "request", loopback_only)
    token_client = type(
        "SandboxAccessTokenClient", (AccessTokenClient,), {"scheme": "http://", "host": urlsplit(base).netloc}
    )
    marketplace = SimpleNamespace(endpoint=base, marketplace_id=MARKETPLACE_ID, region="us-east-1")
    credentials = {
        "lwa_app_id": AMAZON_CREDENTIALS["lwa_client_id"],
        "lwa_client_secret": AMAZON_CREDENTIALS["lwa_client_secret"],
        "refresh_token": AMAZON_CREDENTIALS["refresh_token"],
    }
    made = []

    def build(api_class, **kwargs):
        client = api_class(
            marketplace,
            credentials=credentials,
            credential_providers=[FromCodeCredentialProvider],
            auth_token_client_class=token_client,
            timeout=5.0,
            **kwargs,
        )
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


def _package(order, *, reference: str, **overrides) -> dict:
    detail = {
        "packageReferenceId": reference,
        "carrierCode": "UPS",
        "shippingMethod": "Ground",
        "trackingNumber": f"1Z999AA1{reference.zfill(10)}",
        "shipDate": "2026-03-02T15:00:00Z",
        "orderItems": [{"orderItemId": line.line_id, "quantity": line.quantity} for line in order.lines],
    }
    detail.update(overrides)
    return {k: v for k, v in detail.items() if v is not None}


def test_confirm_shipment_through_the_library_is_recorded_by_the_sandbox(amazon_sandbox, sp_client):
    # given: an unshipped merchant-fulfilled order the sandbox generated
    (order,) = amazon_sandbox.state.generate(1, lines=2, status="unshipped", fulfilled_by="MERCHANT")
    orders = sp_client(Orders, version="v0")
    # when
    response = orders.confirm_shipment(
        order.order_id, marketplaceId=MARKETPLACE_ID, packageDetail=_package(order, reference="1")
    )
    # then: the sandbox answered 204 and recorded the package; the token came from its /auth/o2/token
    assert response.payload == {"status_code": 204}
    (shipment,) = amazon_sandbox.state.shipments
    assert shipment["order_id"] == order.order_id
    assert shipment["carrierCode"] == "UPS" and shipment["trackingNumber"] == "1Z999AA10000000001"
    assert {(i["orderItemId"], i["quantity"]) for i in shipment["orderItems"]} == {
        (line.line_id, line.quantity) for line in order.lines
    }
    assert amazon_sandbox.state.orders[order.order_id].status == "shipped"
    assert len(amazon_sandbox.access_tokens) == 1


def test_bad_confirm_shipment_body_raises_the_library_exception_with_the_sandbox_error(amazon_sandbox, sp_client):
    # given
    (order,) = amazon_sandbox.state.generate(1, lines=1, status="unshipped", fulfilled_by="MERCHANT")
    orders = sp_client(Orders, version="v0")
    # when: the tracking number is missing
    with pytest.raises(SellingApiBadRequestException) as raised:
        orders.confirm_shipment(
            order.order_id,
            marketplaceId=MARKETPLACE_ID,
            packageDetail=_package(order, reference="1", trackingNumber=None),
        )
    # then: the SP-API error envelope reaches the caller, and nothing was recorded
    assert raised.value.code == 400
    assert raised.value.amzn_code == "InvalidInput"
    assert "trackingNumber" in raised.value.message
    assert raised.value.error == [
        {"code": "InvalidInput", "message": raised.value.message, "details": "body.packageDetail"}
    ]
    assert amazon_sandbox.state.shipments == []
    assert amazon_sandbox.state.orders[order.order_id].status == "unshipped"


def test_listing_quantity_patch_through_the_library_is_recorded_by_the_sandbox(amazon_sandbox, sp_client):
    # given
    listings = sp_client(ListingsItems, version="2021-08-01")

    def patch(quantity):
        return listings.patch_listings_item(
            SELLER_ID,
            "WB-1000",
            marketplaceIds=[MARKETPLACE_ID],
            body={
                "productType": "PRODUCT",
                "patches": [
                    {
                        "op": "replace",
                        "path": "/attributes/fulfillment_availability",
                        "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": quantity}],
                    }
                ],
            },
        )

    # when
    accepted = patch(7)
    invalid = patch(-1)
    # then
    assert accepted.payload["status"] == "ACCEPTED" and accepted.payload["sku"] == "WB-1000"
    assert invalid.payload["status"] == "INVALID" and invalid.payload["issues"][0]["code"] == "90220"
    assert amazon_sandbox.state.inventory == {"WB-1000": 7}
    assert [(e["sku"], e["quantity"]) for e in amazon_sandbox.state.inventory_log] == [("WB-1000", 7)]


def test_search_orders_2026_through_the_library_pages_through_every_order(amazon_sandbox, sp_client):
    # given: five orders, read two a page
    made = amazon_sandbox.state.generate(5, status="unshipped", fulfilled_by="MERCHANT")
    orders = sp_client(Orders, version="2026-01-01")
    filters = {
        "lastUpdatedAfter": "2020-01-01T00:00:00Z",
        "marketplaceIds": [MARKETPLACE_ID],
        "includedData": ["FULFILLMENT"],
        "maxResultsPerPage": 2,
    }
    # when
    pages = [orders.search_orders(**filters)]
    while pages[-1].next_token:
        pages.append(orders.search_orders(**filters, paginationToken=pages[-1].next_token))
    # then
    seen = [o["orderId"] for page in pages for o in page.payload["orders"]]
    assert seen == [o.order_id for o in made]
    assert len(pages) == 3
    assert all(o["fulfillment"]["fulfillmentStatus"] == "UNSHIPPED" for page in pages for o in page.payload["orders"])
    assert pages[0].rate_limit == "1000.0"
    assert len(amazon_sandbox.access_tokens) == 1
