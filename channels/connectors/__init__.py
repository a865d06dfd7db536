"""Connectors: one module per channel, all implementing channels.connectors.base.Connector."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings

from channels.connectors.base import ChannelError, Connector
from channels.registry import MARKETPLACES

CONNECTORS = {marketplace.kind: marketplace.connector for marketplace in MARKETPLACES}


def connector_class(kind: str) -> type[Connector]:
    path = CONNECTORS.get(kind)
    if path is None:
        raise ChannelError(f"no connector for channel kind {kind!r} yet", retryable=False)
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)


def connector_for(account: Any, **options: Any) -> Connector:
    """A connector for the account with its decrypted credentials; HTTP options come from settings."""
    from channels.services import channel_account_get_credentials

    options.setdefault("http_options", dict(getattr(settings, "WAYBILL_CHANNEL_HTTP", {})))
    return connector_class(account.kind)(account, channel_account_get_credentials(account=account), **options)
