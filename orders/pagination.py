"""Keyset (cursor) paging shared by the console and the API: no COUNT(*), constant cost per page."""

from __future__ import annotations

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
