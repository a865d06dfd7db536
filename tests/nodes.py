"""The node API as a fulfilment node calls it."""

from __future__ import annotations

from fulfillment import services as fulfillment


def node_client(api_client, key: str):
    """``api_client`` authenticated as the fulfilment node whose token is ``key``."""
    api_client.credentials(HTTP_AUTHORIZATION=f"Node {key}")
    return api_client


def node_client_for(api_client, node):
    """``api_client`` authenticated with a new token of ``node`` (a fulfilment location)."""
    key = fulfillment.node_token_create(location=node, name="wms", actor="admin")[1]
    return node_client(api_client, key)
