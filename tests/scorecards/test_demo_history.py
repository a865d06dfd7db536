"""The demo's 90 days of history: scorecards for every account with trends that have shape, and the Amazon
sandbox's Account Health report computed from the same orders as Waybill's numbers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from channels.demo_history import amazon_history_orders, seed_history
from channels.models import ChannelKind
from orders.models import Order
from scorecards.models import MarketplaceMetric, MetricSnapshot
from scorecards.services import account_health_fetch, scorecards_refresh
from tests.factories import ChannelAccountFactory, LocationFactory, SkuFactory

pytestmark = pytest.mark.django_db


def test_history_gives_every_account_a_scorecard_with_shape(amazon_sandbox, amazon_account):
    # given the five accounts (Amazon's pointed at its sandbox) with a small catalogue and two nodes
    SkuFactory.create_batch(5)
    LocationFactory.create_batch(2)
    accounts = [amazon_account] + [
        ChannelAccountFactory(kind=kind, name=f"{kind}-demo")
        for kind in (ChannelKind.WALMART, ChannelKind.SHOPIFY, ChannelKind.EBAY, ChannelKind.TIKTOK)
    ]
    made = seed_history(accounts=accounts, seed=7, days=40, per_day=8)
    assert seed_history(accounts=accounts, seed=7, days=40, per_day=8) == 0  # once
    assert made == Order.objects.count()
    assert Order.objects.filter(status="cancelled", cancel_initiator="seller").exists()
    assert Order.objects.filter(marketplace_fulfilled=True).exists()
    # when the beat's refresh finds no history snapshots, it backfills 90 days
    result = scorecards_refresh()
    assert result["backfilled"] > 0
    today = timezone.now().date()
    for account in accounts:
        days = set(MetricSnapshot.objects.filter(account=account).values_list("day", flat=True))
        assert len(days) == 90 and max(days) == today
        # the trend moves: a bad fortnight shows up in the late-shipment-like metrics
    lsr = list(
        MetricSnapshot.objects.filter(
            account=amazon_account, code="late_shipment_rate_30d", day__gte=today - timedelta(days=30)
        )
        .exclude(value=None)
        .values_list("value", flat=True)
    )
    assert len(set(lsr)) > 3
    # and Amazon, having recorded the same orders, reports the same late-shipment numbers
    with amazon_sandbox.state.lock:
        for order in amazon_history_orders(amazon_account):
            amazon_sandbox.state.orders[order.order_id] = order
    account_health_fetch(account=amazon_account)
    theirs = MarketplaceMetric.objects.get(metric="lateShipmentRate")
    assert theirs.denominator > 50
    assert theirs.ours_rate is not None and not theirs.diverges, (theirs.rate, theirs.ours_rate)


def test_make_demo_loads_the_history_once_for_all_five_accounts_and_amazon_records_it(amazon_sandbox):
    from django.core.management import call_command

    from channels.demo_history import PREFIX
    from channels.management.commands.seed_demo import plant_demo_orders
    from channels.models import ChannelAccount

    call_command("seed_demo")
    call_command("seed_demo_history", days=5)
    history = Order.objects.filter(external_reference__startswith=PREFIX)
    kinds = ChannelAccount.objects.filter(pk__in=history.values("account_id")).values_list("kind", flat=True)
    assert set(kinds) == {"amazon", "walmart", "shopify", "ebay", "tiktok"}
    count = history.count()
    call_command("seed_demo_history", days=5)
    assert history.count() == count
    amazon = ChannelAccount.objects.get(kind="amazon")
    planted = plant_demo_orders(amazon_sandbox, amazon)
    assert planted == Order.objects.filter(account_id=amazon.pk).count()
    seller_cancelled = history.filter(account_id=amazon.pk, cancel_initiator="seller").values_list(
        "external_id", flat=True
    )
    assert all(amazon_sandbox.state.cancelled_by[order_id] == "MERCHANT" for order_id in seller_cancelled)
