"""Amazon inventory pushes answer per SKU from Amazon's own answer: acknowledged, or rejected with the reason
(a SKU the seller has not listed, or a submission Amazon took with an ERROR issue). Over HTTP against the
sandbox, by listings PATCH (few SKUs) and by JSON_LISTINGS_FEED (many)."""

from __future__ import annotations

import httpx
import pytest

from channels.connectors.base import InventoryQuantity
from channels.services import connector_for

pytestmark = pytest.mark.django_db

NOT_LISTED = "WB-9001"  # one of the sandbox's SKUs that no seller lists


def _suppress(sandbox, sku: str, message: str) -> None:
    """Over HTTP: Amazon takes submissions for ``sku`` but reports an ERROR issue with them."""
    answer = httpx.post(f"{sandbox.base_url}/_sandbox/amazon/listings", json={"skus": [sku], "error": message})
    assert answer.status_code == 200


def test_a_patch_push_acknowledges_what_amazon_accepted_and_rejects_the_rest(amazon_sandbox, amazon_account):
    # given: two listed SKUs, one SKU the seller never listed, one listing Amazon flags with an error
    _suppress(amazon_sandbox, "WB-1002", "'item_name' is required but not supplied.")
    connector = connector_for(amazon_account)
    quantities = [
        InventoryQuantity("WB-1000", 5),
        InventoryQuantity(NOT_LISTED, 3),
        InventoryQuantity("WB-1001", 0),
        InventoryQuantity("WB-1002", 8),
    ]
    # when
    result = connector.push_inventory(quantities, idempotency_key="k", state={})
    connector.close()
    # then
    assert result.acknowledged == {"WB-1000": 5, "WB-1001": 0}
    assert set(result.rejected) == {NOT_LISTED, "WB-1002"}
    assert result.rejected[NOT_LISTED].startswith("NOT_FOUND: No listings item with SKU 'WB-9001'")
    assert result.rejected["WB-1002"] == "8541: 'item_name' is required but not supplied."
    assert amazon_sandbox.state.inventory == {"WB-1000": 5, "WB-1001": 0}
    assert amazon_sandbox.state.contract_violations == []


def test_an_invalid_submission_is_rejected_with_amazons_issue(amazon_sandbox, amazon_account):
    # given: a quantity Amazon cannot take
    connector = connector_for(amazon_account)
    # when
    result = connector.push_inventory([InventoryQuantity("WB-1003", -2)], idempotency_key="k", state={})
    connector.close()
    # then
    assert result.acknowledged == {}
    assert result.rejected == {"WB-1003": "90220: fulfillment_availability.quantity must be a non-negative integer"}


def test_a_feed_push_answers_per_sku_from_the_processing_report(amazon_sandbox, amazon_account):
    # given: twelve SKUs (a JSON_LISTINGS_FEED), two of them not listed at Amazon, one flagged
    unlisted = {"WB-1003", "WB-1007"}
    httpx.post(f"{amazon_sandbox.base_url}/_sandbox/amazon/listings", json={"skus": sorted(unlisted), "listed": False})
    _suppress(amazon_sandbox, "WB-1010", "Listing suppressed: missing main image.")
    connector = connector_for(amazon_account)
    connector.feed_poll_interval = 0
    quantities = [InventoryQuantity(f"WB-{1000 + i}", i + 1) for i in range(12)]
    # when
    result = connector.push_inventory(quantities, idempotency_key="k", state={})
    connector.close()
    # then
    rejected = unlisted | {"WB-1010"}
    assert set(result.rejected) == rejected
    assert all(result.rejected[sku].startswith("NOT_FOUND:") for sku in unlisted)
    assert result.rejected["WB-1010"] == "8541: Listing suppressed: missing main image."
    assert result.acknowledged == {q.channel_sku: q.quantity for q in quantities if q.channel_sku not in rejected}
    assert result.response["summary"]["messagesAccepted"] == 9
    assert amazon_sandbox.state.inventory == result.acknowledged


def test_a_listed_sku_can_be_looked_up_and_an_unlisted_one_is_not_found(amazon_sandbox, amazon_account):
    # given
    connector = connector_for(amazon_account)
    token = connector.access_token()
    connector.push_inventory([InventoryQuantity("WB-1000", 4)], idempotency_key="k", state={})
    connector.close()
    base = f"{amazon_sandbox.base_url}/listings/2021-08-01/items/A2TESTSELLER"
    headers = {"x-amz-access-token": token}
    params = {"marketplaceIds": "ATVPDKIKX0DER", "includedData": "fulfillmentAvailability"}
    # when
    listed = httpx.get(f"{base}/WB-1000", params=params, headers=headers)
    unlisted = httpx.get(f"{base}/{NOT_LISTED}", params=params, headers=headers)
    # then: getListingsItem's 200 and 404 as the model has them
    assert listed.status_code == 200
    assert listed.json() == {
        "sku": "WB-1000",
        "fulfillmentAvailability": [{"fulfillmentChannelCode": "DEFAULT", "quantity": 4}],
    }
    assert unlisted.status_code == 404 and unlisted.json()["errors"][0]["code"] == "NOT_FOUND"
