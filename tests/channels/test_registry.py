"""The marketplace registry is the one list of channels: kinds, connectors and sandboxes agree with it."""

from __future__ import annotations

from channels.connectors import connector_class
from channels.models import ChannelAccount, ChannelKind
from channels.registry import MARKETPLACES, kind_choices
from channels.sandbox import sandbox_class
from orders.filters import OrderFilter
from scorecards.models import MetricDefinition


def test_every_marketplace_has_a_connector_and_a_sandbox_of_its_kind():
    for marketplace in MARKETPLACES:
        assert connector_class(marketplace.kind).kind == marketplace.kind
        assert sandbox_class(marketplace.kind).kind == marketplace.kind


def test_channel_kinds_everywhere_are_the_registry():
    expected = [
        ("amazon", "Amazon"),
        ("walmart", "Walmart"),
        ("shopify", "Shopify"),
        ("ebay", "eBay"),
        ("tiktok", "TikTok Shop"),
    ]
    assert kind_choices() == expected
    assert ChannelKind.choices == expected and ChannelKind.EBAY == "ebay"
    assert ChannelAccount._meta.get_field("kind").choices == expected
    assert MetricDefinition._meta.get_field("channel_kind").choices == expected
    assert list(OrderFilter({}).form.fields["channel"].choices)[1:] == expected
