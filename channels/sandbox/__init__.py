"""Sandbox marketplaces: local HTTP servers speaking each channel's wire format.

One module per channel kind; register it here with its demo port (the ports the demo accounts use).
"""

from __future__ import annotations

from importlib import import_module

SANDBOXES: dict[str, tuple[str, int]] = {
    "amazon": ("channels.sandbox.amazon.AmazonSandbox", 8101),
    "shopify": ("channels.sandbox.shopify.ShopifySandbox", 8103),
    "walmart": ("channels.sandbox.walmart.WalmartSandbox", 8102),
    "ebay": ("channels.sandbox.ebay.EbaySandbox", 8104),
    "tiktok": ("channels.sandbox.tiktok.TikTokSandbox", 8105),
}


def sandbox_class(kind: str):
    path, _ = SANDBOXES[kind]
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)
