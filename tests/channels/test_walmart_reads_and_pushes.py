"""Walmart over HTTP: an order read by id has the shape of a list element, an order edited at Walmart
carries everything an edit can change, and inventory pushes report each SKU acknowledged or rejected."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from channels.connectors.base import InventoryQuantity
from channels.services import connector_for
from tests.channels.helpers import listed_order

pytestmark = pytest.mark.django_db


def test_get_order_has_the_shape_of_a_list_element(walmart_sandbox, walmart_account):
    # given
    (made,) = walmart_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False, lines=3)
    connector = connector_for(walmart_account)
    # when
    by_id = connector.get_order(made.order_id)
    # then
    assert by_id == listed_order(walmart_account, made.order_id, id_field="purchaseOrderId")
    assert connector.parse_order(by_id).external_id == made.order_id


def test_an_order_edited_at_walmart_carries_what_an_edit_changes(walmart_sandbox, walmart_account):
    # given: an order, then the customer corrects the address and Walmart moves the promise
    (made,) = walmart_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False, lines=2)
    before = connector_for(walmart_account).parse_order(connector_for(walmart_account).get_order(made.order_id))
    ship_by = (made.ship_by + timedelta(days=1)).replace(microsecond=0)
    response = httpx.post(
        f"{walmart_sandbox.base_url}/_sandbox/edit",
        json={
            "order_id": made.order_id,
            "buyer_name": "Zoë Ōtani",
            "address": {
                "line1": "500 Rue de la Paix",
                "city": "Austin",
                "postal_code": "78702",
                "phone": "+1 555 0199",
            },
            "ship_by": ship_by.isoformat(),
        },
    )
    assert response.status_code == 200
    # when
    after = connector_for(walmart_account).parse_order(
        listed_order(walmart_account, made.order_id, id_field="purchaseOrderId")
    )
    # then
    assert after.updated_at > before.updated_at
    assert (after.ship_to.name, after.ship_to.line1, after.ship_to.postal_code) == (
        "Zoë Ōtani",
        "500 Rue de la Paix",
        "78702",
    )
    assert after.ship_to.phone == "5550199" and after.ship_to.email.endswith("@relay.walmart.com")
    assert after.ship_by == ship_by and all(line.ship_by == ship_by for line in after.lines)
    assert after.deliver_by and all(line.deliver_by == after.deliver_by for line in after.lines)
    assert after.shipping_method == "Standard"
    assert [line.channel_sku for line in after.lines] == [line.sku for line in made.lines]
    assert after.total_amount == sum(line.unit_price * line.quantity for line in made.lines)


def test_push_acknowledges_listed_skus_and_rejects_unknown_ones_with_walmarts_words(walmart_sandbox, walmart_account):
    # given: a SKU Walmart lists but nobody ordered, and one Walmart does not list
    never_ordered = "WB-1199"
    assert all(line.sku != never_ordered for o in walmart_sandbox.state.orders.values() for line in o.lines)
    connector = connector_for(walmart_account)
    # when
    result = connector.push_inventory(
        [InventoryQuantity(never_ordered, 7), InventoryQuantity("ZZ-UNLISTED-7", 3), InventoryQuantity("WB-1000", 0)],
        idempotency_key="k",
        state={},
    )
    # then
    assert result.acknowledged == {never_ordered: 7, "WB-1000": 0}
    assert set(result.rejected) == {"ZZ-UNLISTED-7"} and "CONTENT_NOT_FOUND" in result.rejected["ZZ-UNLISTED-7"]
    assert walmart_sandbox.state.inventory == {never_ordered: 7, "WB-1000": 0}


def test_resolve_listings_tells_which_skus_walmart_lists(walmart_sandbox, walmart_account):
    # given
    walmart_sandbox.catalog.add("NEW SKU/1")
    # when
    found = connector_for(walmart_account).resolve_listings(["WB-1150", "NEW SKU/1", "LEGACY-000"])
    # then
    assert set(found) == {"WB-1150", "NEW SKU/1"}
