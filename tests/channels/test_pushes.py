"""Inventory pushes never lie, over real HTTP against the sandboxes: a listing whose channel id is unknown is looked
up first (Shopify productVariants by SKU), one the channel does not have opens a case and is never recorded as
pushed, and only what the channel acknowledged, item by item, counts as pushed (Walmart answers per item). A message
the channel refuses for good is parked with the channel's whole error answer, shown in the console."""

from __future__ import annotations

import logging

import httpx
import pytest
from django.urls import reverse

from channels.connectors.shopify import ShopifyConnector
from channels.connectors.walmart import WalmartConnector
from channels.models import ChannelAccountEvent, ChannelAvailability, Listing, OutboxKind, OutboxMessage, OutboxStatus
from channels.outbox import (
    acknowledgement_enqueue,
    inventory_push_plan,
    outbox_claim,
    outbox_retry_now,
    outbox_send,
)
from channels.sandbox.shopify import variant_ids
from inventory.models import Sku
from orders.models import CaseStatus, ExceptionCase, ExceptionKind
from tests.channels.conftest import SHOPIFY_CREDENTIALS, WALMART_CREDENTIALS
from tests.factories import OrderFactory

pytestmark = pytest.mark.django_db

NEW_SKU = "WB-NEVER-ORDERED-1"


def _list_at_channel(sandbox, *skus: str) -> None:
    """The seller lists ``skus`` at the channel (the sandbox's catalog admin endpoint)."""
    httpx.post(f"{sandbox.base_url}/_sandbox/catalog", json={"add": list(skus)}).raise_for_status()


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
    return _send_due(account, connector_class, credentials)


def _send_due(account, connector_class, credentials) -> list[str]:
    connector = connector_class(account, credentials)
    try:
        return [outbox_send(message_id=pk, connector=connector) for pk in outbox_claim(account_id=account.pk)]
    finally:
        connector.close()


def _pushed() -> dict[str, int | None]:
    return dict(ChannelAvailability.objects.values_list("sku__code", "last_pushed_quantity"))


def test_a_sku_never_ordered_and_unknown_at_the_channel_opens_a_case_and_is_pushed_once_listed(
    shopify_sandbox, shopify_account
):
    # given: two SKUs never ordered on Shopify (no inventory item id known); the store lists only the first
    shop = shopify_account
    _stock(shop, {"WB-1000": 7, NEW_SKU: 5})
    # when
    statuses = _push(shop, ShopifyConnector, SHOPIFY_CREDENTIALS)
    # then: the listed one was looked up, remembered and pushed; the other is not pushed and has a case
    assert statuses == [OutboxStatus.SENT]
    assert shopify_sandbox.state.inventory == {"WB-1000": 7}
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
    _push(shop, ShopifyConnector, SHOPIFY_CREDENTIALS)
    # then: still not pushed, still one case
    assert _pushed()[NEW_SKU] is None and NEW_SKU not in shopify_sandbox.state.inventory
    assert ExceptionCase.objects.filter(kind=ExceptionKind.LISTING_NOT_FOUND).count() == 1

    # when: the seller lists it at the channel and the next push goes out
    _list_at_channel(shopify_sandbox, NEW_SKU)
    ChannelAvailability.objects.filter(sku__code=NEW_SKU).update(needs_push=True)
    _push(shop, ShopifyConnector, SHOPIFY_CREDENTIALS)
    # then: pushed, recorded from the acknowledgement, and the case resolved by itself
    assert shopify_sandbox.state.inventory == {"WB-1000": 7, NEW_SKU: 4}
    assert _pushed() == {"WB-1000": 7, NEW_SKU: 4}
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED and "acknowledged 4" in case.resolution_note
    assert Listing.objects.get(channel_sku=NEW_SKU).external_variant_id == variant_ids(NEW_SKU)[1]


def test_known_listing_ids_are_not_looked_up_again(shopify_sandbox, shopify_account):
    # given: a listing whose inventory item was learnt from an order
    _stock(shopify_account, {"WB-1001": 3})
    Listing.objects.filter(channel_sku="WB-1001").update(external_variant_id=variant_ids("WB-1001")[1])
    requests_before = shopify_sandbox.state.requests
    # when
    _push(shopify_account, ShopifyConnector, SHOPIFY_CREDENTIALS)
    # then: one call (the push), no lookup, and no audit of learnt ids
    assert shopify_sandbox.state.requests - requests_before == 1
    assert shopify_sandbox.state.inventory == {"WB-1001": 3}
    assert not ChannelAccountEvent.objects.filter(kind="listing_ids_resolved").exists()


def test_only_acknowledged_items_are_recorded_and_a_refused_item_opens_a_case(walmart_sandbox, walmart_account):
    # given: Walmart lists WB-1002 but not the new SKU
    _stock(walmart_account, {"WB-1002": 6, NEW_SKU: 9})
    # when
    _push(walmart_account, WalmartConnector, WALMART_CREDENTIALS)
    # then: the refused item keeps needing a push and its case carries Walmart's reason
    assert walmart_sandbox.state.inventory == {"WB-1002": 6}
    assert _pushed() == {"WB-1002": 6, NEW_SKU: None}
    (case,) = ExceptionCase.objects.filter(kind=ExceptionKind.LISTING_NOT_FOUND)
    assert case.title == f"inventory push refused by channel: walmart-test {NEW_SKU}"
    assert f"CONTENT_NOT_FOUND.GMP_INVENTORY_API: Item not found for sku '{NEW_SKU}'" in case.detail
    message = OutboxMessage.objects.get(kind=OutboxKind.INVENTORY)
    assert message.status == OutboxStatus.SENT and NEW_SKU in message.response["rejected"]
    # when: the item is set up at Walmart and pushed again
    _list_at_channel(walmart_sandbox, NEW_SKU)
    ChannelAvailability.objects.filter(sku__code=NEW_SKU).update(needs_push=True)
    _push(walmart_account, WalmartConnector, WALMART_CREDENTIALS)
    # then
    assert _pushed() == {"WB-1002": 6, NEW_SKU: 9}
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED


def test_an_item_the_connector_answers_nothing_for_is_not_recorded_and_is_logged(
    walmart_sandbox, walmart_account, caplog
):
    # given: a connector that pushes but forgets to say what the channel acknowledged
    class SilentWalmart(WalmartConnector):
        def push_inventory(self, quantities, *, idempotency_key, state):
            result = super().push_inventory(quantities, idempotency_key=idempotency_key, state=state)
            result.acknowledged = {}
            return result

    _stock(walmart_account, {"WB-1003": 2})
    # when
    with caplog.at_level(logging.ERROR, logger="channels.outbox"):
        _push(walmart_account, SilentWalmart, WALMART_CREDENTIALS)
    # then: it reached Walmart, but Waybill does not claim it did
    assert walmart_sandbox.state.inventory == {"WB-1003": 2}
    assert _pushed() == {"WB-1003": None}
    assert "answered neither acknowledged nor rejected for WB-1003" in caplog.text
    assert OutboxMessage.objects.get(kind=OutboxKind.INVENTORY).response["unanswered"] == ["WB-1003"]


def _acknowledge_unknown_purchase_order(sandbox, account) -> tuple[str, OutboxMessage]:
    """An acknowledgement of a purchase order Walmart does not have (yet): refused for good with a 404."""
    purchase_order = sandbox.state.order_id_for(1001 + sandbox.state.counter)
    message = acknowledgement_enqueue(order=OrderFactory(account=account, external_id=purchase_order))
    (status,) = _send_due(account, WalmartConnector, WALMART_CREDENTIALS)
    assert status == OutboxStatus.PARKED
    message.refresh_from_db()
    return purchase_order, message


def test_a_parked_message_keeps_the_channels_whole_error_and_shows_it(walmart_sandbox, walmart_account, client, viewer):
    # given/when: an acknowledgement Walmart refuses (a purchase order it does not have)
    purchase_order, message = _acknowledge_unknown_purchase_order(walmart_sandbox, walmart_account)
    # then: parked, with Walmart's own error body stored whole
    (error,) = message.last_error_detail["errors"]
    assert error["code"] == "CONTENT_NOT_FOUND.GMP_ORDER_API" and error["field"] == "purchaseOrderId"
    assert error["description"] == f"Purchase order {purchase_order} not found"
    assert message.last_error_detail["status"] == 404
    case = ExceptionCase.objects.get(kind=ExceptionKind.OUTBOX_PARKED)
    assert "CONTENT_NOT_FOUND.GMP_ORDER_API" in case.detail
    assert f"Purchase order {purchase_order} not found" in case.detail
    # and the console's message page and the account page show it, escaped
    client.force_login(viewer)
    page = client.get(reverse("channels:outbox-detail", args=[message.pk]))
    assert page.status_code == 200
    assert "CONTENT_NOT_FOUND.GMP_ORDER_API" in page.text
    assert "&quot;field&quot;: &quot;purchaseOrderId&quot;" in page.text
    account_page = client.get(reverse("channels:account", args=[walmart_account.pk]))
    assert account_page.status_code == 200 and "CONTENT_NOT_FOUND.GMP_ORDER_API" in account_page.text


def test_a_later_success_clears_the_stored_error(walmart_sandbox, walmart_account):
    # given: a parked acknowledgement with Walmart's answer stored
    purchase_order, message = _acknowledge_unknown_purchase_order(walmart_sandbox, walmart_account)
    assert message.last_error_detail
    # when: the purchase order reaches Walmart's order API and an agent retries
    (order,) = walmart_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT")
    assert order.order_id == purchase_order
    outbox_retry_now(message=message, actor="agent")
    (status,) = _send_due(walmart_account, WalmartConnector, WALMART_CREDENTIALS)
    # then
    message.refresh_from_db()
    assert status == OutboxStatus.SENT and message.last_error_detail == {} and message.last_error == ""
    assert purchase_order in walmart_sandbox.state.extra["acknowledgements"]
