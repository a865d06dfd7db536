"""An inventory push to a SKU never ordered reaches the channel or opens a case, on every channel, through
the outbox against the real sandboxes: Shopify and TikTok resolve the listing's ids from the channel first;
Walmart, eBay and Amazon push by SKU and the channel refuses a SKU it does not have. Either way only what
the channel acknowledged is recorded as pushed."""

from __future__ import annotations

import pytest

from channels.models import ChannelAvailability, Listing, OutboxKind, OutboxMessage, OutboxStatus
from channels.outbox import inventory_push_plan
from inventory.models import Sku
from orders.models import CaseStatus, ExceptionCase, ExceptionKind
from tests.channels.e2e_helpers import admin, relay

pytestmark = pytest.mark.django_db

LISTED, MISSING = "WB-1150", "WB-9001"

# How the seller takes a SKU off each channel (the sandboxes' admin hooks).
DELIST = {
    "shopify": ("/_sandbox/catalog", lambda sku: {"remove": [sku]}),
    "tiktok": ("/_sandbox/tiktok/catalog", lambda sku: {"remove": [sku]}),
    "walmart": ("/_sandbox/catalog", lambda sku: {"remove": [sku]}),
    "ebay": ("/_sandbox/catalog", lambda sku: {"remove": [sku]}),
    "amazon": ("/_sandbox/amazon/listings", lambda sku: {"skus": [sku], "listed": False}),
}


@pytest.fixture(params=["shopify", "tiktok", "walmart", "ebay", "amazon"])
def channel(request):
    """(sandbox, account) of each channel."""
    return request.getfixturevalue(f"{request.param}_sandbox"), request.getfixturevalue(f"{request.param}_account")


def _never_ordered(account, quantities: dict[str, int]) -> None:
    """Listings known only by SKU (never ordered: no channel ids), with stock to advertise."""
    for code, quantity in quantities.items():
        sku, _ = Sku.objects.get_or_create(code=code, defaults={"name": code})
        Listing.objects.create(account=account, sku=sku, channel_sku=code)
        ChannelAvailability.objects.create(account=account, sku=sku, quantity=quantity, needs_push=True)


def _pushed() -> dict[str, int | None]:
    return dict(ChannelAvailability.objects.values_list("sku__code", "last_pushed_quantity"))


def test_a_sku_never_ordered_reaches_the_channel_or_opens_a_case(channel):
    sandbox, account = channel
    # given: two SKUs never ordered; the channel lists the first only
    path, body = DELIST[account.kind]
    admin(sandbox, path, body(MISSING))
    _never_ordered(account, {LISTED: 23, MISSING: 34})
    # when: the push is planned and relayed
    assert inventory_push_plan() == 1
    relay(account)
    # then: the listed SKU reached the channel with its quantity and is recorded as pushed
    message = OutboxMessage.objects.get(kind=OutboxKind.INVENTORY)
    assert message.status == OutboxStatus.SENT, message.last_error
    assert message.response["pushed"] == {LISTED: 23}
    assert 23 in sandbox.state.inventory.values() and 34 not in sandbox.state.inventory.values()
    assert sandbox.state.contract_violations == []
    # and the other is not recorded as pushed: a case says why
    assert _pushed() == {LISTED: 23, MISSING: None}
    (case,) = ExceptionCase.objects.filter(kind=ExceptionKind.LISTING_NOT_FOUND)
    assert case.status == CaseStatus.OPEN and case.sku.code == MISSING and case.account_id == account.pk
    if account.kind in ("shopify", "tiktok"):
        # looked up by SKU at the channel, the ids kept for the next push
        assert message.response["not_found"] == [MISSING]
        listed = Listing.objects.get(channel_sku=LISTED)
        assert listed.external_listing_id or listed.external_variant_id
    else:
        assert set(message.response["rejected"]) == {MISSING}
    # when: the next push changes nothing, nothing more is sent nor a second case opened
    ChannelAvailability.objects.update(needs_push=True)
    inventory_push_plan()
    relay(account)
    assert _pushed() == {LISTED: 23, MISSING: None}
    assert ExceptionCase.objects.filter(kind=ExceptionKind.LISTING_NOT_FOUND).count() == 1
