"""Shopify pushes never lie: listings resolved from the channel by SKU, and per-item answers from
inventorySetQuantities, over HTTP against the sandbox."""

from __future__ import annotations

import httpx
import pytest

from channels.connectors.base import ChannelError, InventoryQuantity, ListingIds
from channels.connectors.shopify import ShopifyConnector
from channels.sandbox.shopify import catalog_entry
from channels.services import connector_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def shopify(shopify_account):
    connector = connector_for(shopify_account)
    yield connector
    connector.close()


def test_the_connector_says_pushes_need_listing_ids():
    assert ShopifyConnector.push_needs_listing_ids is True


def test_skus_never_ordered_resolve_to_their_variant_and_inventory_item(shopify_sandbox, shopify):
    # given a shop with products but no orders at all
    assert shopify_sandbox.state.orders == {}
    # when
    resolved = shopify.resolve_listings(["WB-1003", "WB-1150", "NOT-IN-THE-SHOP"])
    # then
    assert resolved == {
        sku: ListingIds(
            external_listing_id=catalog_entry(sku)["variant"], external_variant_id=catalog_entry(sku)["item"]
        )
        for sku in ("WB-1003", "WB-1150")
    }


def test_skus_with_quotes_spaces_and_unicode_are_quoted_in_the_search(shopify_sandbox, shopify):
    # given SKUs Shopify's search syntax would split or misread unquoted
    odd = ['ÉTÉ "24" Ünï', "A:B OR C", "back\\slash", "wb-1003"]
    httpx.post(f"{shopify_sandbox.base_url}/_sandbox/catalog", json={"add": odd[:3]})
    # when
    resolved = shopify.resolve_listings(odd)
    # then: each exactly; the lower-case one matches only loosely (Shopify search ignores case), so it is absent
    assert set(resolved) == set(odd[:3])
    assert resolved['ÉTÉ "24" Ünï'].external_variant_id == catalog_entry('ÉTÉ "24" Ünï')["item"]


def test_many_skus_are_looked_up_in_batches_within_the_limits(shopify_sandbox, shopify):
    # given 120 SKUs (more than one search holds)
    skus = [f"WB-{1000 + i}" for i in range(120)]
    # when
    resolved = shopify.resolve_listings(skus)
    # then
    assert set(resolved) == set(skus)
    assert shopify_sandbox.state.contract_violations == []


def test_a_push_answers_per_item_and_drops_nothing(shopify_sandbox, shopify):
    # given one listed SKU, one whose inventory item is unknown to Waybill, one Shopify does not know
    listed = shopify.resolve_listings(["WB-1001"])["WB-1001"]
    quantities = [
        InventoryQuantity("WB-1001", 23, listed.external_variant_id),
        InventoryQuantity("WB-1002", 34, ""),
        InventoryQuantity("WB-GONE", 5, "gid://shopify/InventoryItem/999"),
    ]
    # when
    result = shopify.push_inventory(quantities, idempotency_key="push-1", state={})
    # then: only what Shopify applied is acknowledged; the others say why
    assert result.acknowledged == {"WB-1001": 23}
    assert set(result.rejected) == {"WB-1002", "WB-GONE"}
    assert "not resolved" in result.rejected["WB-1002"]
    assert result.rejected["WB-GONE"].startswith("INVALID_INVENTORY_ITEM")
    assert shopify_sandbox.state.inventory_items == {listed.external_variant_id: 23}


def test_a_resent_push_applies_each_set_once(shopify_sandbox, shopify):
    # given a push with a refused item, sent twice (the answer to the first was lost)
    listed = shopify.resolve_listings(["WB-1001", "WB-1004"])
    quantities = [
        InventoryQuantity("WB-1001", 7, listed["WB-1001"].external_variant_id),
        InventoryQuantity("WB-GONE", 5, "gid://shopify/InventoryItem/999"),
        InventoryQuantity("WB-1004", 9, listed["WB-1004"].external_variant_id),
    ]
    first = shopify.push_inventory(quantities, idempotency_key="push-2", state={})
    # when
    again = shopify.push_inventory(quantities, idempotency_key="push-2", state={})
    # then: the same answer, and the shop applied the set once
    assert first.acknowledged == again.acknowledged == {"WB-1001": 7, "WB-1004": 9}
    assert len(shopify_sandbox.state.inventory_log) == 2


def test_a_push_with_nothing_resolvable_rejects_every_item_without_calling_shopify(shopify_sandbox, shopify):
    # when
    result = shopify.push_inventory([InventoryQuantity("WB-1002", 4, "")], idempotency_key="push-3", state={})
    # then
    assert result.acknowledged == {} and list(result.rejected) == ["WB-1002"]
    assert shopify_sandbox.state.requests == 0


def test_an_account_without_a_location_cannot_push(shopify_sandbox, shopify, shopify_account):
    # given no Shopify location to set the quantities at
    shopify_account.inventory_location_id = ""
    listed = shopify.resolve_listings(["WB-1001"])["WB-1001"]
    # then
    with pytest.raises(ChannelError, match="inventory_location_id"):
        shopify.push_inventory(
            [InventoryQuantity("WB-1001", 1, listed.external_variant_id)], idempotency_key="k", state={}
        )
