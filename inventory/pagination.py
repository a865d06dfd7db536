"""Keyset paging for inventory lists: no COUNT(*), constant cost per page."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination


class StockLevelCursorPagination(CursorPagination):
    page_size = 50
    max_page_size = 500
    page_size_query_param = "page_size"
    # (sku, location) is unique and indexed: the grid reads SKU by SKU.
    ordering = ("sku_id", "location_id")


class MovementCursorPagination(CursorPagination):
    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = ("-created_at", "-id")


class InboundCursorPagination(CursorPagination):
    page_size = 50
    ordering = ("expected_at", "id")
