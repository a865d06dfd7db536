"""Shopify: the connector (connector.py) and the GraphQL documents it sends (graphql/*.graphql)."""

from channels.connectors.shopify.connector import (
    BULK_RUN,
    INVENTORY_SET,
    ORDER_IDS_QUERY,
    ShopifyConnector,
    ShopifyError,
    assemble_bulk_orders,
    bulk_orders_query,
    graphql_order_from_rest,
)
from channels.connectors.shopify.documents import DOCUMENTS, ORDER_FRAGMENT, orders_by_id

__all__ = [
    "BULK_RUN",
    "DOCUMENTS",
    "INVENTORY_SET",
    "ORDER_FRAGMENT",
    "ORDER_IDS_QUERY",
    "ShopifyConnector",
    "ShopifyError",
    "assemble_bulk_orders",
    "bulk_orders_query",
    "graphql_order_from_rest",
    "orders_by_id",
]
