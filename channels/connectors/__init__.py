"""Connectors: one module per channel, all implementing channels.connectors.base.Connector.

A connector for an account, with its decrypted credentials, comes from channels.services.connector_for."""

from __future__ import annotations

from importlib import import_module

from channels.connectors.base import ChannelError, Connector
from channels.registry import MARKETPLACES

CONNECTORS = {marketplace.kind: marketplace.connector for marketplace in MARKETPLACES}


def connector_class(kind: str) -> type[Connector]:
    path = CONNECTORS.get(kind)
    if path is None:
        raise ChannelError(f"no connector for channel kind {kind!r} yet", retryable=False)
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)
