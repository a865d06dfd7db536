"""eBay over HTTP: an order read by id has the shape of a list element, an order edited at eBay carries
everything an edit can change, and inventory pushes report each SKU acknowledged or rejected (never
creating an inventory item eBay does not have)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from channels.connectors.base import InventoryQuantity
from channels.services import connector_for
from tests.channels.helpers import listed_order

pytestmark = pytest.mark.django_db


def test_get_order_has_the_shape_of_a_list_element(ebay_sandbox, ebay_account):
    # given
    (made,) = ebay_sandbox.state.generate(1, status="unshipped", unknown_sku=False, lines=3)
    connector = connector_for(ebay_account)
    # when
    by_id = connector.get_order(made.order_id)
    # then
    assert by_id == listed_order(ebay_account, made.order_id, id_field="orderId")
    assert [line.external_id for line in connector.parse_order(by_id).lines] == [line.line_id for line in made.lines]


def test_an_order_edited_at_ebay_carries_what_an_edit_changes(ebay_sandbox, ebay_account):
    # given: an order, then the buyer corrects the address and eBay moves the promise
    (made,) = ebay_sandbox.state.generate(1, status="unshipped", unknown_sku=False, lines=2)
    before = connector_for(ebay_account).parse_order(connector_for(ebay_account).get_order(made.order_id))
    deliver_by = (made.deliver_by + timedelta(days=2)).replace(microsecond=0)
    response = httpx.post(
        f"{ebay_sandbox.base_url}/_sandbox/edit",
        json={
            "order_id": made.order_id,
            "buyer_name": "Siobhán O'Neill",
            "address": {"line1": "12 Rue Émile Zola", "line2": "", "region": "CA", "phone": "+1 555 0142"},
            "deliver_by": deliver_by.isoformat(),
        },
    )
    assert response.status_code == 200
    # when
    after = connector_for(ebay_account).parse_order(listed_order(ebay_account, made.order_id, id_field="orderId"))
    # then
    assert after.updated_at > before.updated_at
    assert (after.ship_to.name, after.ship_to.line1, after.ship_to.line2, after.ship_to.region) == (
        "Siobhán O'Neill",
        "12 Rue Émile Zola",
        "",
        "CA",
    )
    assert after.ship_to.phone == "+1 555 0142" and after.ship_to.email.endswith("@members.ebay.com")
    assert after.deliver_by == deliver_by and all(line.deliver_by == deliver_by for line in after.lines)
    assert after.ship_by == min(line.ship_by for line in after.lines)
    assert after.shipping_method == "USPSPriority" and after.marketplace_id == "EBAY_US"
    assert [line.channel_sku for line in after.lines] == [line.sku for line in made.lines]
    assert after.total_amount == sum(line.unit_price * line.quantity for line in made.lines)


def test_push_acknowledges_known_skus_and_never_creates_unknown_ones(ebay_sandbox, ebay_account):
    # given: a SKU eBay has an inventory item for but nobody ordered, and one it has none for
    never_ordered = "WB-1199"
    assert all(line.sku != never_ordered for o in ebay_sandbox.state.orders.values() for line in o.lines)
    # when
    result = connector_for(ebay_account).push_inventory(
        [InventoryQuantity(never_ordered, 9), InventoryQuantity("WB-9001", 4)], idempotency_key="k", state={}
    )
    # then
    assert result.acknowledged == {never_ordered: 9}
    assert set(result.rejected) == {"WB-9001"} and "25702" in result.rejected["WB-9001"]
    assert ebay_sandbox.state.inventory == {never_ordered: 9}
    assert "WB-9001" not in ebay_sandbox.catalog


def test_resolve_listings_tells_which_skus_ebay_has(ebay_sandbox, ebay_account):
    # given: 30 SKUs (two calls of at most 25), some unknown to eBay
    wanted = [f"WB-{1100 + i}" for i in range(27)] + ["WB-9001", "LEGACY-000", "ÉTÉ-1"]
    ebay_sandbox.catalog.add("ÉTÉ-1")
    # when
    found = connector_for(ebay_account).resolve_listings(wanted)
    # then
    assert set(found) == {f"WB-{1100 + i}" for i in range(27)} | {"ÉTÉ-1"}
    assert connector_for(ebay_account).push_needs_listing_ids is False
