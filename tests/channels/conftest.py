"""Sandbox marketplaces on free loopback ports, and accounts pointed at them."""

from __future__ import annotations

import pytest

from channels.models import ChannelAccount, ChannelKind
from channels.sandbox.amazon import AmazonSandbox
from channels.services import channel_account_set_credentials

AMAZON_CREDENTIALS = {
    "lwa_client_id": "amzn1.application-oa2-client.demo",
    "lwa_client_secret": "demo-secret",
    "refresh_token": "Atzr|demo",
}


@pytest.fixture(autouse=True)
def fast_backoff(settings):
    # Real backoff shape, test-sized waits.
    settings.WAYBILL_CHANNEL_HTTP = {"backoff_base": 0.01, "backoff_cap": 0.05, "timeout": 5.0}


@pytest.fixture
def amazon_sandbox():
    app = AmazonSandbox(rate=1000.0, burst=1000)
    server = app.serve("127.0.0.1", 0)
    yield app
    server.stop()


@pytest.fixture
def amazon_account(db, amazon_sandbox):
    account = ChannelAccount.objects.create(
        kind=ChannelKind.AMAZON,
        name="amazon-test",
        api_base_url=amazon_sandbox.base_url,
        marketplace_ids=["ATVPDKIKX0DER"],
        seller_id="A2TESTSELLER",
    )
    channel_account_set_credentials(account=account, credentials=AMAZON_CREDENTIALS, actor="test")
    return account


SHOPIFY_CREDENTIALS = {"access_token": "shpat_test", "webhook_secret": "whsec-current"}


@pytest.fixture(scope="session")
def shopify_schema_built():
    from channels.sandbox.shopify import shopify_schema

    return shopify_schema()


@pytest.fixture
def shopify_sandbox(shopify_schema_built):
    from channels.sandbox.shopify import ShopifySandbox

    # A big, fast-refilling bucket keeps tests quick; throttling tests inject THROTTLED faults.
    app = ShopifySandbox(
        access_token="shpat_test", webhook_secret="whsec-current", restore_rate=100_000.0, maximum_available=20_000.0
    )
    server = app.serve("127.0.0.1", 0)
    yield app
    server.stop()


@pytest.fixture
def shopify_account(db, shopify_sandbox):
    from channels.sandbox.shopify import LOCATION_ID

    account = ChannelAccount.objects.create(
        kind=ChannelKind.SHOPIFY,
        name="shopify-test",
        api_base_url=shopify_sandbox.base_url,
        api_version="2026-10",
        inventory_location_id=LOCATION_ID,
        timezone="America/New_York",
    )
    channel_account_set_credentials(account=account, credentials=SHOPIFY_CREDENTIALS, actor="test")
    return account


@pytest.fixture
def skus(db):
    from inventory.models import Sku

    return Sku.objects.bulk_create([Sku(code=f"WB-{1000 + i}", name=f"Product {i}") for i in range(200)])


WALMART_CREDENTIALS = {"client_id": "wm-client", "client_secret": "wm-secret"}
EBAY_CREDENTIALS = {"client_id": "eb-client", "client_secret": "eb-secret", "refresh_token": "v^1.1#test"}


@pytest.fixture
def walmart_sandbox():
    from channels.sandbox.walmart import WalmartSandbox

    app = WalmartSandbox(client_id="wm-client", client_secret="wm-secret", rate=10_000.0, burst=10_000)
    server = app.serve("127.0.0.1", 0)
    yield app
    server.stop()


@pytest.fixture
def walmart_account(db, walmart_sandbox):
    account = ChannelAccount.objects.create(
        kind=ChannelKind.WALMART, name="walmart-test", api_base_url=walmart_sandbox.base_url
    )
    channel_account_set_credentials(account=account, credentials=WALMART_CREDENTIALS, actor="test")
    return account


@pytest.fixture
def ebay_sandbox():
    from channels.sandbox.ebay import EbaySandbox

    app = EbaySandbox(
        client_id="eb-client", client_secret="eb-secret", refresh_token="v^1.1#test", rate=10_000.0, burst=10_000
    )
    server = app.serve("127.0.0.1", 0)
    yield app
    server.stop()


@pytest.fixture
def ebay_account(db, ebay_sandbox):
    account = ChannelAccount.objects.create(
        kind=ChannelKind.EBAY, name="ebay-test", api_base_url=ebay_sandbox.base_url, marketplace_ids=["EBAY_US"]
    )
    channel_account_set_credentials(account=account, credentials=EBAY_CREDENTIALS, actor="test")
    return account


@pytest.fixture
def sent_requests():
    """Every request a connector sends, as sent: ``record(connector)`` starts recording one connector's
    requests into the returned list of (method, path, query, JSON body or None)."""
    import json
    from urllib.parse import parse_qsl

    sent: list[tuple[str, str, dict, object]] = []

    def record(connector):
        def hook(request):
            content = request.content
            body = (
                json.loads(content)
                if content and request.headers.get("content-type", "").startswith("application/json")
                else None
            )
            sent.append((request.method, request.url.path, dict(parse_qsl(request.url.query.decode())), body))

        connector.http.client.event_hooks["request"].append(hook)
        return connector

    return sent, record


TIKTOK_CREDENTIALS = {
    "app_key": "ak-test",
    "app_secret": "as-test",
    "access_token": "TTP_test",
    "shop_cipher": "ROW_test",
}
TIKTOK_WAREHOUSE = "7068517275539719942"


@pytest.fixture
def tiktok_sandbox():
    from channels.sandbox.tiktok import TikTokSandbox

    app = TikTokSandbox(
        app_key="ak-test",
        app_secret="as-test",
        access_token="TTP_test",
        refresh_token="TTR_test",
        shop_cipher="ROW_test",
        warehouse_id=TIKTOK_WAREHOUSE,
        rate=10_000.0,
        burst=10_000,
    )
    server = app.serve("127.0.0.1", 0)
    yield app
    server.stop()


@pytest.fixture
def tiktok_account(db, tiktok_sandbox):
    account = ChannelAccount.objects.create(
        kind=ChannelKind.TIKTOK,
        name="tiktok-test",
        api_base_url=tiktok_sandbox.base_url,
        seller_id="7495000000000000001",
        inventory_location_id=TIKTOK_WAREHOUSE,
    )
    channel_account_set_credentials(account=account, credentials=TIKTOK_CREDENTIALS, actor="test")
    return account


AMAZON_US = "ATVPDKIKX0DER"
AMAZON_MX = "A1AM78C64UM0Y8"


@pytest.fixture
def amazon_us_mx_account(db, amazon_sandbox):
    """An Amazon account selling on Amazon.com and Amazon.com.mx (US first)."""
    account = ChannelAccount.objects.create(
        kind=ChannelKind.AMAZON,
        name="amazon-us-mx",
        api_base_url=amazon_sandbox.base_url,
        marketplace_ids=[AMAZON_US, AMAZON_MX],
        seller_id="A2TESTSELLER",
    )
    channel_account_set_credentials(account=account, credentials=AMAZON_CREDENTIALS, actor="test")
    return account


@pytest.fixture
def amazon_wire():
    """Record what a connector puts on the wire: ``amazon_wire(connector)`` returns a list that fills with
    (method, path, query, JSON body or None) for every SP-API call the connector makes."""

    def attach(connector) -> list[tuple[str, str, dict, object]]:
        import json
        from urllib.parse import parse_qsl

        sent: list[tuple[str, str, dict, object]] = []

        def record(request) -> None:
            content = request.read()
            body = json.loads(content) if content and "json" in request.headers.get("content-type", "") else None
            query = dict(parse_qsl(request.url.query.decode(), keep_blank_values=True))
            # The path as sent (percent-escapes kept), as the channel routes it.
            sent.append((request.method, request.url.raw_path.decode().split("?")[0], query, body))

        connector.http.client.event_hooks["request"].append(record)
        return sent

    return attach
