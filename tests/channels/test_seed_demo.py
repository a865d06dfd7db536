"""The demo data set `make demo` loads: what the README promises, consistent with the invariants."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from channels.models import ChannelAccount, Listing
from inventory.models import Location
from orders.models import Order, OrderStatus
from tests.inventory.helpers import assert_stock_invariants


@pytest.mark.django_db
def test_seed_demo_loads_once_and_keeps_the_stock_invariants():
    # when
    call_command("seed_demo")
    # then
    assert sorted(ChannelAccount.objects.values_list("kind", flat=True)) == [
        "amazon",
        "ebay",
        "shopify",
        "tiktok",
        "walmart",
    ]
    assert {"store", "threepl", "warehouse"} <= set(Location.objects.values_list("kind", flat=True))
    assert Location.objects.count() == 4
    statuses = set(Order.objects.values_list("status", flat=True))
    assert {OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.RELEASED, OrderStatus.SHIPPED} <= statuses
    assert 250 <= Order.objects.count() <= 500
    # Shopify and TikTok inventory pushes address items by the channel's ids: every listing has them.
    assert not Listing.objects.filter(account__kind__in=["shopify", "tiktok"], external_variant_id="").exists()
    assert_stock_invariants()
    # and a second run changes nothing
    orders = Order.objects.count()
    call_command("seed_demo")
    assert Order.objects.count() == orders
