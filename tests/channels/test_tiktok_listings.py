"""TikTok pushes never lie, connector side over HTTP: a SKU never ordered is resolved by Search Products
filtered on seller SKUs; Update Inventory's answer acknowledges or rejects each SKU on its own."""

from __future__ import annotations

import httpx
import pytest

from channels.connectors.base import InventoryQuantity, ListingIds
from channels.connectors.tiktok import TikTokConnector
from channels.sandbox.tiktok import product_id_for, sku_id_for
from channels.services import connector_for

pytestmark = pytest.mark.django_db


def _ids(sku: str) -> ListingIds:
    return ListingIds(product_id_for(sku), f"{product_id_for(sku)}:{sku_id_for(sku)}")


def test_inventory_pushes_need_listing_ids():
    assert TikTokConnector.push_needs_listing_ids is True


def test_skus_never_ordered_are_resolved_from_the_shops_catalog(tiktok_sandbox, tiktok_account):
    # given: nothing was ever ordered; WB-1150 is listed, WB-9001 is not, WB-1151 was delisted
    httpx.post(f"{tiktok_sandbox.base_url}/_sandbox/tiktok/catalog", json={"remove": ["WB-1151"]})
    assert not tiktok_sandbox.state.orders
    # when
    resolved = connector_for(tiktok_account).resolve_listings(["WB-1150", "WB-9001", "WB-1151"])
    # then
    assert resolved == {"WB-1150": _ids("WB-1150")}


def test_more_skus_than_one_search_takes_are_resolved_in_several(tiktok_sandbox, tiktok_account):
    # given: 25 SKUs (Search Products takes 10 seller SKUs at a time)
    codes = [f"WB-{1000 + i}" for i in range(25)]
    # when
    resolved = connector_for(tiktok_account).resolve_listings(codes)
    # then
    assert resolved == {code: _ids(code) for code in codes}
    assert not tiktok_sandbox.state.contract_violations


def test_each_sku_of_a_push_is_acknowledged_or_rejected_from_tiktoks_answer(tiktok_sandbox, tiktok_account):
    # given: a good listing, a SKU id paired with another product, a product not in the shop, no ids at all
    good, other = _ids("WB-1010"), _ids("WB-1011")
    quantities = [
        InventoryQuantity("WB-1010", 23, good.external_variant_id),
        InventoryQuantity("WB-1012", 5, f"{good.external_listing_id}:{sku_id_for('WB-1012')}"),
        InventoryQuantity("WB-1011", 34, f"1731999999999999999:{other.external_variant_id.split(':')[1]}"),
        InventoryQuantity("WB-1013", 8, ""),
    ]
    # when
    result = connector_for(tiktok_account).push_inventory(quantities, idempotency_key="k", state={})
    # then
    assert result.acknowledged == {"WB-1010": 23}
    assert set(result.rejected) == {"WB-1012", "WB-1011", "WB-1013"}
    assert "12052036" in result.rejected["WB-1012"] and "12052260" in result.rejected["WB-1011"]
    assert tiktok_sandbox.state.inventory == {good.external_variant_id: 23}


def test_a_warehouse_the_shop_lacks_is_rejected_per_sku(tiktok_sandbox, tiktok_account):
    # given
    tiktok_account.inventory_location_id = "7068517275539719999"
    # when
    result = connector_for(tiktok_account).push_inventory(
        [InventoryQuantity("WB-1010", 3, _ids("WB-1010").external_variant_id)], idempotency_key="k", state={}
    )
    # then
    assert not result.acknowledged and "12052097" in result.rejected["WB-1010"]
    assert not tiktok_sandbox.state.inventory
