"""The marketplaces Waybill speaks to: one line each, and everything that lists channels derives from it.

Data only (no imports of models, connectors or sandboxes), so models, migrations, filters and commands
can all read it: ``ChannelKind`` (channels.models), the scorecards' channel kinds, the connector and
sandbox registries (channels.connectors, channels.sandbox) and the demo seeding. A sixth marketplace is
one connector module, one sandbox module, their tests and one line here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# Moves every sandbox's demo port (a second demo or a soak beside a running one): 1000 -> :9101…
DEMO_PORT_OFFSET = int(os.environ.get("WAYBILL_DEMO_PORT_OFFSET", "0") or 0)


@dataclass(frozen=True)
class Marketplace:
    kind: str
    label: str
    # Dotted paths, imported on first use.
    connector: str
    sandbox: str
    # The loopback port its sandbox serves on for the demo (run_sandboxes, seed_demo's accounts).
    demo_port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "demo_port", self.demo_port + DEMO_PORT_OFFSET)


MARKETPLACES: tuple[Marketplace, ...] = (
    Marketplace(
        "amazon", "Amazon", "channels.connectors.amazon.AmazonConnector", "channels.sandbox.amazon.AmazonSandbox", 8101
    ),
    Marketplace(
        "walmart",
        "Walmart",
        "channels.connectors.walmart.WalmartConnector",
        "channels.sandbox.walmart.WalmartSandbox",
        8102,
    ),
    Marketplace(
        "shopify",
        "Shopify",
        "channels.connectors.shopify.ShopifyConnector",
        "channels.sandbox.shopify.ShopifySandbox",
        8103,
    ),
    Marketplace("ebay", "eBay", "channels.connectors.ebay.EbayConnector", "channels.sandbox.ebay.EbaySandbox", 8104),
    Marketplace(
        "tiktok",
        "TikTok Shop",
        "channels.connectors.tiktok.TikTokConnector",
        "channels.sandbox.tiktok.TikTokSandbox",
        8105,
    ),
)

BY_KIND: dict[str, Marketplace] = {marketplace.kind: marketplace for marketplace in MARKETPLACES}


def kind_choices() -> list[tuple[str, str]]:
    """(kind, label) in registry order: the choices of every channel-kind field."""
    return [(marketplace.kind, marketplace.label) for marketplace in MARKETPLACES]
