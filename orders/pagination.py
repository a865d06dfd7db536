"""Keyset (cursor) paging of the orders console and API: no COUNT(*), constant cost per page."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination

from orders.models import SHIP_BY_KEY


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
        # The ship-by with none taken as last (orders.models.SHIP_BY_KEY, index order_ship_by_key).
        "ship_by": ("ship_by_key", "id"),
        "-ship_by": ("-ship_by_key", "-id"),
    }

    def get_ordering(self, request, queryset, view):
        requested = request.query_params.get(self.ordering_param, "")
        return self.allowed_orderings.get(requested, self.ordering)

    def paginate_queryset(self, queryset, request, view=None):
        if request.query_params.get(self.ordering_param, "") in ("ship_by", "-ship_by"):
            queryset = queryset.annotate(ship_by_key=SHIP_BY_KEY)
        return super().paginate_queryset(queryset, request, view)


class ExceptionCaseCursorPagination(CursorPagination):
    """The queue by urgency (orders.selectors.exception_cases_by_urgency annotates both fields)."""

    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"
    ordering = ("urgency_at", "impact", "id")
