"""Inventory pushes never lie, over real HTTP: a listing whose channel id is unknown is looked up first, one the
channel does not have opens a case and is never recorded as pushed, and only what the channel acknowledged,
item by item, counts as pushed.

The channel-side lookups (Shopify productVariants by SKU) and per-item answers belong to each connector; the
small subclasses here give the sandboxes a catalogue and the connectors those answers, so the outbox's part
is tested on its own."""

from __future__ import annotations

import logging

import pytest
from django.urls import reverse

from channels.connectors.base import ChannelError, ListingIds, SendResult
from channels.connectors.shopify import ShopifyConnector
from channels.connectors.walmart import WalmartConnector
from channels.models import (
    ChannelAccount,
    ChannelAccountEvent,
    ChannelKind,
    Listing,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
)
from channels.outbox import inventory_push_plan, outbox_claim, outbox_retry_now, outbox_send
from channels.sandbox.base import SKU_CODES, Response
from channels.sandbox.shopify import ShopifySandbox, variant_ids
from channels.sandbox.walmart import WalmartSandbox, _error
from channels.services import channel_account_set_credentials
from inventory.models import ChannelAvailability, Sku
from orders.models import CaseStatus, ExceptionCase, ExceptionKind
from tests.channels.conftest import SHOPIFY_CREDENTIALS

pytestmark = pytest.mark.django_db

NEW_SKU = "WB-NEVER-ORDERED-1"


class CatalogShopifySandbox(ShopifySandbox):
    """Shopify whose store lists ``catalog``: productVariants(query: "sku:A OR sku:B") finds only those."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.catalog = set(SKU_CODES)

    def _known_skus(self) -> set[str]:
        return set(self.catalog)

    def _query_root(self) -> dict:
        return {**super()._query_root(), "productVariants": self._product_variants}

    def _product_variants(self, info, first=None, query=None, **_):
        terms = [term.strip() for term in (query or "").split(" OR ")]
        wanted = {term.removeprefix("sku:") for term in terms if term.startswith("sku:")}
        with self.state.lock:
            found = sorted(wanted & self.catalog)[: first or 0]
        nodes = [
            {"id": variant_ids(sku)[0], "sku": sku, "inventoryItem": {"id": variant_ids(sku)[1], "tracked": True}}
            for sku in found
        ]
        return {
            "nodes": nodes,
            "edges": [{"cursor": sku, "node": node} for sku, node in zip(found, nodes, strict=True)],
            "pageInfo": {"hasNextPage": False, "hasPreviousPage": False, "startCursor": None, "endCursor": None},
        }


class ResolvingShopifyConnector(ShopifyConnector):
    push_needs_listing_ids = True

    def resolve_listings(self, channel_skus: list[str]) -> dict[str, ListingIds]:
        query = (
            "query($q: String!, $n: Int!) { productVariants(first: $n, query: $q) "
            "{ nodes { id sku inventoryItem { id } } } }"
        )
        data = self.graphql(query, {"q": " OR ".join(f"sku:{sku}" for sku in channel_skus), "n": len(channel_skus)})
        return {
            node["sku"]: ListingIds(node["id"], node["inventoryItem"]["id"])
            for node in data["productVariants"]["nodes"]
            if node["sku"] in channel_skus
        }


class CatalogWalmartSandbox(WalmartSandbox):
    """Walmart refusing an inventory update for an item the seller has not listed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.catalog = set(SKU_CODES)

    def put_inventory(self, request) -> Response:
        sku = request.arg("sku")
        if sku and sku not in self.catalog:
            return _error(404, "CONTENT_NOT_FOUND.GMP_INVENTORY_API", f"Item {sku} is not in your catalog", "sku")
        return super().put_inventory(request)


class DetailedWalmartConnector(WalmartConnector):
    """Keeps Walmart's whole error answer on the ChannelError, as a connector must."""

    def _fail(self, what, response) -> ChannelError:
        error = super()._fail(what, response)
        error.detail = response.json()
        return error


class PerItemWalmartConnector(DetailedWalmartConnector):
    """Answers per item: what Walmart took is acknowledged, what it refused is rejected with its reason."""

    def push_inventory(self, quantities, *, idempotency_key, state):
        acknowledged, rejected = {}, {}
        for item in quantities:
            try:
                acknowledged |= (
                    super().push_inventory([item], idempotency_key=idempotency_key, state=state).acknowledged
                )
            except ChannelError as exc:
                if exc.retryable:
                    raise
                rejected[item.channel_sku] = str(exc)
        return SendResult(response={"per_item": True}, acknowledged=acknowledged, rejected=rejected)


@pytest.fixture
def catalog_shopify(shopify_schema_built):
    app = CatalogShopifySandbox(
        access_token="shpat_test", webhook_secret="whsec-current", restore_rate=100_000.0, maximum_available=20_000.0
    )
    server = app.serve("127.0.0.1", 0)
    yield app
    server.stop()


@pytest.fixture
def shop(db, catalog_shopify):
    from channels.sandbox.shopify import LOCATION_ID

    account = ChannelAccount.objects.create(
        kind=ChannelKind.SHOPIFY,
        name="shopify-test",
        api_base_url=catalog_shopify.base_url,
        api_version="2026-10",
        inventory_location_id=LOCATION_ID,
    )
    channel_account_set_credentials(account=account, credentials=SHOPIFY_CREDENTIALS, actor="test")
    return account


@pytest.fixture
def catalog_walmart():
    app = CatalogWalmartSandbox(client_id="wm-client", client_secret="wm-secret", rate=10_000.0, burst=10_000)
    server = app.serve("127.0.0.1", 0)
    yield app
    server.stop()


@pytest.fixture
def walmart(db, catalog_walmart):
    account = ChannelAccount.objects.create(
        kind=ChannelKind.WALMART, name="walmart-test", api_base_url=catalog_walmart.base_url
    )
    channel_account_set_credentials(
        account=account, credentials={"client_id": "wm-client", "client_secret": "wm-secret"}, actor="test"
    )
    return account


def _stock(account, quantities: dict[str, int]) -> dict[str, Sku]:
    """Listings with no channel ids (never ordered), and the quantities to advertise, flagged for a push."""
    made = {}
    for code, quantity in quantities.items():
        sku, _ = Sku.objects.get_or_create(code=code, defaults={"name": code})
        Listing.objects.get_or_create(account=account, channel_sku=code, defaults={"sku": sku})
        ChannelAvailability.objects.update_or_create(
            account=account, sku=sku, defaults={"quantity": quantity, "needs_push": True}
        )
        made[code] = sku
    return made


def _push(account, connector_class, credentials) -> list[str]:
    """Plan, then send every due message of the account through ``connector_class`` (as the relay would)."""
    inventory_push_plan()
    connector = connector_class(account, credentials)
    try:
        return [outbox_send(message_id=pk, connector=connector) for pk in outbox_claim(account_id=account.pk)]
    finally:
        connector.close()


def _pushed() -> dict[str, int | None]:
    return dict(ChannelAvailability.objects.values_list("sku__code", "last_pushed_quantity"))


def test_a_sku_never_ordered_and_unknown_at_the_channel_opens_a_case_and_is_pushed_once_listed(catalog_shopify, shop):
    # given: two SKUs never ordered on Shopify (no inventory item id known); the store lists only the first
    _stock(shop, {"WB-1000": 7, NEW_SKU: 5})
    # when
    statuses = _push(shop, ResolvingShopifyConnector, SHOPIFY_CREDENTIALS)
    # then: the listed one was looked up, remembered and pushed; the other is not pushed and has a case
    assert statuses == [OutboxStatus.SENT]
    assert catalog_shopify.state.inventory == {"WB-1000": 7}
    listing = Listing.objects.get(channel_sku="WB-1000")
    assert (listing.external_listing_id, listing.external_variant_id) == variant_ids("WB-1000")
    assert ChannelAccountEvent.objects.filter(account=shop, kind="listing_ids_resolved").count() == 1
    assert _pushed() == {"WB-1000": 7, NEW_SKU: None}
    (case,) = ExceptionCase.objects.filter(kind=ExceptionKind.LISTING_NOT_FOUND)
    assert case.title == f"listing not found at channel: shopify-test {NEW_SKU}"
    assert case.status == CaseStatus.OPEN and case.account_id == shop.pk and case.sku.code == NEW_SKU
    message = OutboxMessage.objects.get(kind=OutboxKind.INVENTORY)
    assert message.response["not_found"] == [NEW_SKU] and message.response["pushed"] == {"WB-1000": 7}

    # when: the stock changes again while the SKU is still not listed
    ChannelAvailability.objects.filter(sku__code=NEW_SKU).update(quantity=4, needs_push=True)
    _push(shop, ResolvingShopifyConnector, SHOPIFY_CREDENTIALS)
    # then: still not pushed, still one case
    assert _pushed()[NEW_SKU] is None and NEW_SKU not in catalog_shopify.state.inventory
    assert ExceptionCase.objects.filter(kind=ExceptionKind.LISTING_NOT_FOUND).count() == 1

    # when: the seller lists it at the channel and the next push goes out
    catalog_shopify.catalog.add(NEW_SKU)
    ChannelAvailability.objects.filter(sku__code=NEW_SKU).update(needs_push=True)
    _push(shop, ResolvingShopifyConnector, SHOPIFY_CREDENTIALS)
    # then: pushed, recorded from the acknowledgement, and the case resolved by itself
    assert catalog_shopify.state.inventory == {"WB-1000": 7, NEW_SKU: 4}
    assert _pushed() == {"WB-1000": 7, NEW_SKU: 4}
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED and "acknowledged 4" in case.resolution_note
    assert Listing.objects.get(channel_sku=NEW_SKU).external_variant_id == variant_ids(NEW_SKU)[1]


def test_known_listing_ids_are_not_looked_up_again(catalog_shopify, shop):
    # given: a listing whose inventory item was learnt from an order
    _stock(shop, {"WB-1001": 3})
    Listing.objects.filter(channel_sku="WB-1001").update(external_variant_id=variant_ids("WB-1001")[1])
    requests_before = catalog_shopify.state.requests
    # when
    _push(shop, ResolvingShopifyConnector, SHOPIFY_CREDENTIALS)
    # then: one call (the push), no lookup, and no audit of learnt ids
    assert catalog_shopify.state.requests - requests_before == 1
    assert catalog_shopify.state.inventory == {"WB-1001": 3}
    assert not ChannelAccountEvent.objects.filter(kind="listing_ids_resolved").exists()


def test_only_acknowledged_items_are_recorded_and_a_refused_item_opens_a_case(catalog_walmart, walmart):
    # given: Walmart lists WB-1002 but not the new SKU
    _stock(walmart, {"WB-1002": 6, NEW_SKU: 9})
    credentials = {"client_id": "wm-client", "client_secret": "wm-secret"}
    # when
    _push(walmart, PerItemWalmartConnector, credentials)
    # then: the refused item keeps needing a push and its case carries Walmart's reason
    assert catalog_walmart.state.inventory == {"WB-1002": 6}
    assert _pushed() == {"WB-1002": 6, NEW_SKU: None}
    (case,) = ExceptionCase.objects.filter(kind=ExceptionKind.LISTING_NOT_FOUND)
    assert case.title == f"inventory push refused by channel: walmart-test {NEW_SKU}"
    assert "is not in your catalog" in case.detail
    message = OutboxMessage.objects.get(kind=OutboxKind.INVENTORY)
    assert message.status == OutboxStatus.SENT and NEW_SKU in message.response["rejected"]
    # when: the item is set up at Walmart and pushed again
    catalog_walmart.catalog.add(NEW_SKU)
    ChannelAvailability.objects.filter(sku__code=NEW_SKU).update(needs_push=True)
    _push(walmart, PerItemWalmartConnector, credentials)
    # then
    assert _pushed() == {"WB-1002": 6, NEW_SKU: 9}
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED


def test_an_item_the_connector_answers_nothing_for_is_not_recorded_and_is_logged(catalog_walmart, walmart, caplog):
    # given: a connector that pushes but forgets to say what the channel acknowledged
    class SilentWalmart(WalmartConnector):
        def push_inventory(self, quantities, *, idempotency_key, state):
            result = super().push_inventory(quantities, idempotency_key=idempotency_key, state=state)
            result.acknowledged = {}
            return result

    _stock(walmart, {"WB-1003": 2})
    # when
    with caplog.at_level(logging.ERROR, logger="channels.outbox"):
        _push(walmart, SilentWalmart, {"client_id": "wm-client", "client_secret": "wm-secret"})
    # then: it reached Walmart, but Waybill does not claim it did
    assert catalog_walmart.state.inventory == {"WB-1003": 2}
    assert _pushed() == {"WB-1003": None}
    assert "answered neither acknowledged nor rejected for WB-1003" in caplog.text
    assert OutboxMessage.objects.get(kind=OutboxKind.INVENTORY).response["unanswered"] == ["WB-1003"]


def test_a_parked_message_keeps_the_channels_whole_error_and_shows_it(catalog_walmart, walmart, client, viewer):
    # given: a push Walmart refuses, sent by a connector that keeps Walmart's error answer
    _stock(walmart, {NEW_SKU: 1})
    # when
    (status,) = _push(walmart, DetailedWalmartConnector, {"client_id": "wm-client", "client_secret": "wm-secret"})
    # then: parked, with Walmart's own error body stored whole
    assert status == OutboxStatus.PARKED
    message = OutboxMessage.objects.get(kind=OutboxKind.INVENTORY)
    (error,) = message.last_error_detail["errors"]
    assert error["code"] == "CONTENT_NOT_FOUND.GMP_INVENTORY_API" and error["field"] == "sku"
    assert message.last_error_detail["status"] == 404
    case = ExceptionCase.objects.get(kind=ExceptionKind.OUTBOX_PARKED)
    assert "CONTENT_NOT_FOUND.GMP_INVENTORY_API" in case.detail and "is not in your catalog" in case.detail
    # and the console's message page and the account page show it, escaped
    client.force_login(viewer)
    page = client.get(reverse("channels:outbox-detail", args=[message.pk]))
    assert page.status_code == 200
    assert "CONTENT_NOT_FOUND.GMP_INVENTORY_API" in page.text and "&quot;field&quot;: &quot;sku&quot;" in page.text
    account_page = client.get(reverse("channels:account", args=[walmart.pk]))
    assert account_page.status_code == 200 and "CONTENT_NOT_FOUND.GMP_INVENTORY_API" in account_page.text


def test_a_later_success_clears_the_stored_error(catalog_walmart, walmart):
    # given: a parked push with Walmart's answer stored
    _stock(walmart, {NEW_SKU: 1})
    credentials = {"client_id": "wm-client", "client_secret": "wm-secret"}
    _push(walmart, DetailedWalmartConnector, credentials)
    message = OutboxMessage.objects.get(kind=OutboxKind.INVENTORY)
    assert message.last_error_detail
    # when: the item is listed and an agent retries
    catalog_walmart.catalog.add(NEW_SKU)
    outbox_retry_now(message=message, actor="agent")
    (status,) = _push(walmart, DetailedWalmartConnector, credentials)
    # then
    message.refresh_from_db()
    assert status == OutboxStatus.SENT and message.last_error_detail == {} and message.last_error == ""
    assert _pushed() == {NEW_SKU: 1}
