"""Keyset (cursor) paging shared by the console and the API: no COUNT(*), constant cost per page."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property
from rest_framework.pagination import CursorPagination


class OrderCursorPagination(CursorPagination):
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"
    ordering = ("-placed_at", "-id")
    ordering_param = "ordering"
    # Orderings the console offers; each is backed by an index.
    allowed_orderings = {
        "-placed_at": ("-placed_at", "-id"),
        "placed_at": ("placed_at", "id"),
        "ship_by": ("ship_by", "id"),
        "-ship_by": ("-ship_by", "-id"),
    }

    def get_ordering(self, request, queryset, view):
        requested = request.query_params.get(self.ordering_param, "")
        return self.allowed_orderings.get(requested, self.ordering)


class ExceptionCaseCursorPagination(CursorPagination):
    page_size = 50
    ordering = ("-created_at", "-id")


def console_page(request, queryset, paginator_class=OrderCursorPagination) -> tuple[list, str | None, str | None]:
    """Keyset-page a queryset for an HTMX console list: (rows, next_url, previous_url)."""
    from rest_framework.request import Request

    paginator = paginator_class()
    rows = paginator.paginate_queryset(queryset, Request(request), view=None)
    return list(rows or []), paginator.get_next_link(), paginator.get_previous_link()


# --- Django admin: paging for very large tables (a full COUNT(*) per page costs x25 at 1M rows) ---
EXACT_COUNT_CAP = 10_000


class EstimatedCountPaginator(Paginator):
    """Admin changelist paginator: planner estimate for an unfiltered table, a capped count otherwise.

    Pair with ``show_full_result_count = False`` on the ModelAdmin.
    """

    @cached_property
    def count(self) -> int:
        query = self.object_list.query
        if not query.where:
            table = self.object_list.model._meta.db_table
            with connection.cursor() as cursor:
                cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
                row = cursor.fetchone()
            if row and row[0] and row[0] > EXACT_COUNT_CAP:
                return int(row[0])
        # A filtered list: count at most CAP rows (the page links stop there).
        capped = self.object_list.values("pk")[: EXACT_COUNT_CAP + 1]
        return capped.count()


class BigTableAdminMixin:
    """ModelAdmin settings for tables that grow to millions of rows."""

    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
