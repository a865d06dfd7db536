"""The ops console's base view and its keyset paging (no COUNT(*), constant cost per page)."""

from __future__ import annotations

from django.contrib.auth.mixins import PermissionRequiredMixin
from django.views import View


class ConsoleView(PermissionRequiredMixin, View):
    """Every console view names its permission (PermissionRequiredMixin refuses a view that doesn't).

    Anonymous users never get here (LoginRequiredMiddleware sends them to the login page);
    a signed-in user without the permission gets 403.
    """

    raise_exception = True


def console_page(request, queryset, paginator_class) -> tuple[list, str | None, str | None]:
    """Keyset-page a queryset for an HTMX console list with a DRF CursorPagination class:
    (rows, next_url, previous_url)."""
    from rest_framework.exceptions import NotFound
    from rest_framework.request import Request

    paginator = paginator_class()
    try:
        rows = paginator.paginate_queryset(queryset, Request(request), view=None)
    except NotFound:
        # A garbled or stale cursor (hand-edited link): show the first page rather than fail.
        params = request.GET.copy()
        params.pop(paginator.cursor_query_param, None)
        request.GET = params
        paginator = paginator_class()
        rows = paginator.paginate_queryset(queryset, Request(request), view=None)
    return list(rows or []), paginator.get_next_link(), paginator.get_previous_link()


def bulk_selection(request, matching) -> tuple[list[int], bool]:
    """The ids a bulk action applies to: the ticked rows (``ids``), or, with ``select_all=matching``, every
    row the list's filters match: ``matching(QueryDict of the list's query string)`` returns that queryset.
    Returns (ids, whether select-all-matching was used). Ids that are not whole numbers are ignored."""
    from django.http import QueryDict

    if request.POST.get("select_all") == "matching":
        query = QueryDict(request.POST.get("query", ""), mutable=False)
        return [int(pk) for pk in matching(query).values_list("pk", flat=True)[:100_000]], True
    ids = []
    for raw in request.POST.getlist("ids"):
        try:
            ids.append(int(raw))
        except (TypeError, ValueError):
            continue
    return ids, False
