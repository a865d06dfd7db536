"""Sandbox marketplaces on free loopback ports, accounts pointed at them, and what connectors put on the wire."""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import parse_qsl

import pytest

from channels.models import ChannelAccount, ChannelKind
from channels.sandbox.walmart import WalmartSandbox
from channels.services import channel_account_set_credentials

AMAZON_CREDENTIALS = {
    "lwa_client_id": "amzn1.application-oa2-client.demo",
    "lwa_client_secret": "demo-secret",
    "refresh_token": "Atzr|demo",
}
SHOPIFY_CREDENTIALS = {"access_token": "shpat_test", "webhook_secret": "whsec-current"}
WALMART_CREDENTIALS = {"client_id": "wm-client", "client_secret": "wm-secret"}
EBAY_CREDENTIALS = {"client_id": "eb-client", "client_secret": "eb-secret", "refresh_token": "v^1.1#test"}
TIKTOK_CREDENTIALS = {
    "app_key": "ak-test",
    "app_secret": "as-test",
    "access_token": "TTP_test",
    "shop_cipher": "ROW_test",
}
TIKTOK_WAREHOUSE = "7068517275539719942"
AMAZON_US = "ATVPDKIKX0DER"
AMAZON_MX = "A1AM78C64UM0Y8"


@pytest.fixture(autouse=True)
def fast_backoff(settings):
    # Real backoff shape, test-sized waits.
    settings.WAYBILL_CHANNEL_HTTP = {"backoff_base": 0.01, "backoff_cap": 0.05, "timeout": 5.0}


@pytest.fixture
def serve_sandbox():
    """``serve_sandbox(app)`` serves a sandbox app on a free loopback port and returns it; every server started
    this way is stopped when the test ends."""
    servers = []

    def serve(app):
        servers.append(app.serve("127.0.0.1", 0))
        return app

    yield serve
    for server in reversed(servers):
        server.stop()


def sandbox_account(sandbox, *, kind: str, name: str, credentials: dict, **fields) -> ChannelAccount:
    """A channel account whose API is ``sandbox``, holding ``credentials``."""
    account = ChannelAccount.objects.create(kind=kind, name=name, api_base_url=sandbox.base_url, **fields)
    channel_account_set_credentials(account=account, credentials=credentials, actor="test")
    return account


@pytest.fixture
def amazon_sandbox(serve_sandbox):
    from channels.sandbox.amazon import AmazonSandbox

    return serve_sandbox(AmazonSandbox(rate=1000.0, burst=1000))


@pytest.fixture
def amazon_account(db, amazon_sandbox):
    return sandbox_account(
        amazon_sandbox,
        kind=ChannelKind.AMAZON,
        name="amazon-test",
        credentials=AMAZON_CREDENTIALS,
        marketplace_ids=[AMAZON_US],
        seller_id="A2TESTSELLER",
    )


@pytest.fixture
def amazon_us_mx_account(db, amazon_sandbox):
    """An Amazon account selling on Amazon.com and Amazon.com.mx (US first)."""
    return sandbox_account(
        amazon_sandbox,
        kind=ChannelKind.AMAZON,
        name="amazon-us-mx",
        credentials=AMAZON_CREDENTIALS,
        marketplace_ids=[AMAZON_US, AMAZON_MX],
        seller_id="A2TESTSELLER",
    )


@pytest.fixture(scope="session")
def shopify_schema_built():
    from channels.sandbox.shopify import shopify_schema

    return shopify_schema()


@pytest.fixture
def shopify_sandbox(serve_sandbox, shopify_schema_built):
    from channels.sandbox.shopify import ShopifySandbox

    # A big, fast-refilling bucket keeps tests quick; throttling tests inject THROTTLED faults.
    return serve_sandbox(
        ShopifySandbox(
            access_token="shpat_test",
            webhook_secret="whsec-current",
            restore_rate=100_000.0,
            maximum_available=20_000.0,
        )
    )


@pytest.fixture
def shopify_account(db, shopify_sandbox):
    from channels.sandbox.shopify import LOCATION_ID

    return sandbox_account(
        shopify_sandbox,
        kind=ChannelKind.SHOPIFY,
        name="shopify-test",
        credentials=SHOPIFY_CREDENTIALS,
        api_version="2026-10",
        inventory_location_id=LOCATION_ID,
        timezone="America/New_York",
    )


@pytest.fixture
def walmart_sandbox(serve_sandbox):
    from channels.sandbox.walmart import WalmartSandbox

    return serve_sandbox(WalmartSandbox(client_id="wm-client", client_secret="wm-secret", rate=10_000.0, burst=10_000))


@pytest.fixture
def walmart_account(db, walmart_sandbox):
    return sandbox_account(
        walmart_sandbox, kind=ChannelKind.WALMART, name="walmart-test", credentials=WALMART_CREDENTIALS
    )


@pytest.fixture
def ebay_sandbox(serve_sandbox):
    from channels.sandbox.ebay import EbaySandbox

    return serve_sandbox(
        EbaySandbox(
            client_id="eb-client", client_secret="eb-secret", refresh_token="v^1.1#test", rate=10_000.0, burst=10_000
        )
    )


@pytest.fixture
def ebay_account(db, ebay_sandbox):
    return sandbox_account(
        ebay_sandbox,
        kind=ChannelKind.EBAY,
        name="ebay-test",
        credentials=EBAY_CREDENTIALS,
        marketplace_ids=["EBAY_US"],
    )


@pytest.fixture
def tiktok_sandbox(serve_sandbox):
    from channels.sandbox.tiktok import TikTokSandbox

    return serve_sandbox(
        TikTokSandbox(
            app_key="ak-test",
            app_secret="as-test",
            access_token="TTP_test",
            refresh_token="TTR_test",
            shop_cipher="ROW_test",
            warehouse_id=TIKTOK_WAREHOUSE,
            rate=10_000.0,
            burst=10_000,
        )
    )


@pytest.fixture
def tiktok_account(db, tiktok_sandbox):
    return sandbox_account(
        tiktok_sandbox,
        kind=ChannelKind.TIKTOK,
        name="tiktok-test",
        credentials=TIKTOK_CREDENTIALS,
        seller_id="7495000000000000001",
        inventory_location_id=TIKTOK_WAREHOUSE,
    )


@pytest.fixture
def skus(db):
    from inventory.models import Sku

    return Sku.objects.bulk_create([Sku(code=f"WB-{1000 + i}", name=f"Product {i}") for i in range(200)])


def record_requests(connector) -> list[tuple[str, str, dict, object]]:
    """Record what ``connector`` puts on the wire: the returned list fills with (method, path as sent with its
    percent-escapes, query, JSON body or None) for every request the connector makes."""
    sent: list[tuple[str, str, dict, object]] = []

    def record(request) -> None:
        content = request.read()
        body = json.loads(content) if content and "json" in request.headers.get("content-type", "") else None
        query = dict(parse_qsl(request.url.query.decode(), keep_blank_values=True))
        sent.append((request.method, request.url.raw_path.decode().split("?")[0], query, body))

    connector.http.client.event_hooks["request"].append(record)
    return sent


@pytest.fixture
def sent_requests():
    """``sent_requests(connector)``: see record_requests."""
    return record_requests


class CountingWalmart(WalmartSandbox):
    """The Walmart sandbox counting every acknowledge and ship call per purchase order, whatever the answer:
    what the kill and chaos tests check "sent once" against."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ack_calls: Counter[str] = Counter()
        self.ship_calls: Counter[str] = Counter()

    def acknowledge(self, request, po):
        with self.state.lock:
            self.ack_calls[po] += 1
        return super().acknowledge(request, po)

    def ship(self, request, po):
        with self.state.lock:
            self.ship_calls[po] += 1
        return super().ship(request, po)
