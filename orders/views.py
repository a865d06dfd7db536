"""Console views: thin. Parse, call a service or selector, render (full page, or the partial for HTMX)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.urls import reverse

from config.kernel import accounts
from config.kernel.console import ConsoleView, bulk_selection, console_page
from config.kernel.errors import DomainError
from config.kernel.exports import csv_export
from config.kernel.redirects import safe_next
from inventory.models import Location
from orders import selectors, services
from orders.filters import ExceptionCaseFilter, OrderFilter
from orders.forms import (
    BulkCaseForm,
    BulkHoldReleaseForm,
    HoldPlaceForm,
    ReasonForm,
    ResolveCaseForm,
    ServiceLevelForm,
    ShipToForm,
)
from orders.models import ExceptionCase, Hold, HoldKind
from orders.pagination import ExceptionCaseCursorPagination, OrderCursorPagination
from orders.rows import case_rows, order_rows, row_form_inputs
from orders.services.overrides import SHIP_TO_FIELDS

# The scorecards app renders its dashboard tiles from this template when it offers them; until then the
# dashboard's scorecard place renders nothing. (A template include: only scorecards imports scorecards.)
SCORECARD_TILES_TEMPLATE = "scorecards/_dashboard_tiles.html"


def _next(request, fallback: str) -> str:
    return safe_next(request, fallback)


def _bulk_message(request, result, noun: str) -> None:
    if result.failed and not result.done:
        messages.error(request, result.summary(noun))
    elif result.failed:
        messages.warning(request, result.summary(noun))
    else:
        messages.success(request, result.summary(noun))


def order_matching(query):
    filterset = OrderFilter(query, queryset=selectors.order_list())
    if not filterset.is_valid():
        raise DomainError("the list's filters are not valid: " + "; ".join(filterset.errors))
    return filterset.qs.order_by("pk")


def case_matching(request):
    def matching(query):
        base = selectors.exception_cases_by_urgency(include_resolved=bool(query.get("status")))
        filterset = ExceptionCaseFilter(query, queryset=base, request=request)
        if not filterset.is_valid():
            raise DomainError("the queue's filters are not valid: " + "; ".join(filterset.errors))
        return filterset.qs.order_by("pk")

    return matching


class DashboardView(ConsoleView):
    """The console's home: today's orders, what is due to ship, what is at risk, open exceptions by kind
    and age, each account's sync and push lag, carrier performance, scorecard tiles. Polled by HTMX."""

    permission_required = "orders.view_order"

    def get(self, request):
        try:
            get_template(SCORECARD_TILES_TEMPLATE)
            scorecard_tiles = SCORECARD_TILES_TEMPLATE
        except TemplateDoesNotExist:
            scorecard_tiles = None
        context = {
            "section": "dashboard",
            "board": selectors.orders_dashboard(),
            "groups": selectors.exception_case_groups(limit=5),
            "scorecard_tiles": scorecard_tiles,
        }
        template = "orders/_dashboard_tiles.html" if request.htmx else "orders/dashboard.html"
        return render(request, template, context)


class OrderListView(ConsoleView):
    permission_required = "orders.view_order"

    def get(self, request):
        filterset = OrderFilter(request.GET, queryset=selectors.order_list(), request=request)
        rows, next_url, previous_url = [], None, None
        if filterset.is_valid():
            rows, next_url, previous_url = console_page(request, filterset.qs, OrderCursorPagination)
        context = {
            "filter": filterset,
            "orders": rows,
            "rows": order_rows(rows, can_tick=request.user.has_perm("orders.change_hold")),
            "next_url": next_url,
            "previous_url": previous_url,
            "section": "orders",
            "ordering": request.GET.get("ordering", "-placed_at"),
            "search": filterset.search_info,
            "query": request.GET.urlencode(),
            "release_form": BulkHoldReleaseForm(),
            "hold_kinds": HoldKind.choices,
        }
        template = "orders/_order_results.html" if request.htmx else "orders/order_list.html"
        return render(request, template, context)


ORDER_CSV_COLUMNS = [
    ("id", "pk"),
    ("channel", "account_kind"),
    ("account", "account_name"),
    ("order", "external_reference"),
    ("channel_order_id", "external_id"),
    ("status", "status"),
    ("on_hold", "on_hold"),
    ("customer", "customer_name"),
    ("placed_at", "placed_at"),
    ("ship_by", "ship_by"),
    ("total", "total_amount"),
    ("currency", "currency"),
]
CASE_CSV_COLUMNS = [
    ("id", "pk"),
    ("kind", "kind"),
    ("severity", "severity"),
    ("status", "status"),
    ("title", "title"),
    ("order", "order__external_id"),
    ("owner", "owner__username"),
    ("due_at", "due_at"),
    ("created_at", "created_at"),
    ("resolved_at", "resolved_at"),
]


class OrderExportView(ConsoleView):
    """The order list as CSV with the list's current filters, streamed."""

    permission_required = "orders.view_order"

    def get(self, request):
        filterset = OrderFilter(request.GET, queryset=selectors.order_list(), request=request)
        if not filterset.is_valid():
            messages.error(request, "Check the filters before exporting: " + "; ".join(filterset.errors))
            return HttpResponseRedirect(reverse("orders:list") + "?" + request.GET.urlencode())
        # The account's kind and name as subqueries in the same statement (config.kernel.accounts).
        orders = (
            filterset.qs.prefetch_related(None)
            .annotate(account_kind=accounts.account_value("kind"), account_name=accounts.account_value("name"))
            .order_by("-placed_at", "-id")
        )
        return csv_export(filename="orders", queryset=orders, columns=ORDER_CSV_COLUMNS)


class OrderBulkView(ConsoleView):
    """Bulk actions on the order list: release holds (all, or of one kind) with a reason."""

    permission_required = "orders.change_hold"

    def post(self, request):
        back = _next(request, reverse("orders:list"))
        form = BulkHoldReleaseForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Releasing holds needs a reason.")
            return HttpResponseRedirect(back)
        try:
            ids, _ = bulk_selection(request, order_matching)
            result = services.orders_holds_release_bulk(
                order_ids=ids,
                reason=form.cleaned_data["reason"],
                kind=form.cleaned_data["kind"] or None,
                actor=request.user,
            )
        except DomainError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(back)
        _bulk_message(request, result, "order")
        return HttpResponseRedirect(back)


class OrderDetailView(ConsoleView):
    permission_required = "orders.view_order"

    def get(self, request, pk: int):
        return self.render_page(request, pk)

    def render_page(self, request, pk: int, *, hold_form=None, ship_to_form=None, service_form=None, status=200):
        order = get_object_or_404(selectors.order_detail(), pk=pk)
        address = order.ship_to
        context = {
            "order": order,
            "section": "orders",
            "hold_form": hold_form or HoldPlaceForm(),
            "release_form": ReasonForm(),
            "ship_to_form": ship_to_form
            or ShipToForm(initial={f: getattr(address, f) for f in SHIP_TO_FIELDS} if address else None),
            "service_form": service_form or ServiceLevelForm(initial={"shipping_method": order.shipping_method}),
            "can_hold": request.user.has_perm("orders.add_hold"),
            "can_override": request.user.has_perm("orders.override_order"),
            "open_lines": [line for line in order.lines.all() if line.quantity_open > 0],
            "nodes": Location.objects.filter(is_active=True, can_ship=True).order_by("code").only("pk", "code", "name"),
            "unstarted_shipments": [
                s for s in order.shipments.all() if s.status in ("released", "acknowledged") and s.kind == "ship"
            ],
        }
        return render(request, "orders/order_detail.html", context, status=status)


class ShipToEditView(ConsoleView):
    permission_required = "orders.override_order"

    def post(self, request, pk: int):
        form = ShipToForm(request.POST)
        if form.is_valid():
            changes = {k: v for k, v in form.cleaned_data.items() if k != "reason"}
            try:
                services.order_ship_to_edit(
                    order=pk, changes=changes, reason=form.cleaned_data["reason"], actor=request.user
                )
            except DomainError as exc:
                form.add_error(None, str(exc))
        if form.errors:
            return OrderDetailView().render_page(request, pk, ship_to_form=form, status=400)
        messages.success(request, "Ship-to updated; the old address is kept in the timeline.")
        return HttpResponseRedirect(reverse("orders:detail", args=[pk]))


class ServiceLevelView(ConsoleView):
    permission_required = "orders.override_order"

    def post(self, request, pk: int):
        form = ServiceLevelForm(request.POST)
        if form.is_valid():
            try:
                services.order_shipping_method_set(
                    order=pk,
                    shipping_method=form.cleaned_data["shipping_method"],
                    reason=form.cleaned_data["reason"],
                    actor=request.user,
                )
            except DomainError as exc:
                form.add_error(None, str(exc))
        if form.errors:
            return OrderDetailView().render_page(request, pk, service_form=form, status=400)
        messages.success(request, "Service level changed.")
        return HttpResponseRedirect(reverse("orders:detail", args=[pk]))


class HoldPlaceView(ConsoleView):
    permission_required = "orders.add_hold"

    def post(self, request, pk: int):
        form = HoldPlaceForm(request.POST)
        if form.is_valid():
            try:
                services.hold_place(
                    order=pk,
                    kind=form.cleaned_data["kind"],
                    reason=form.cleaned_data["reason"],
                    actor=request.user,
                )
            except DomainError as exc:
                form.add_error(None, str(exc))
        if form.errors:
            return OrderDetailView().render_page(request, pk, hold_form=form, status=400)
        messages.success(request, "Hold placed.")
        return HttpResponseRedirect(reverse("orders:detail", args=[pk]))


class HoldReleaseView(ConsoleView):
    permission_required = "orders.change_hold"

    def post(self, request, pk: int):
        hold = get_object_or_404(Hold, pk=pk)
        form = ReasonForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Releasing a hold needs a reason.")
            return HttpResponseRedirect(reverse("orders:detail", args=[hold.order_id]))
        try:
            services.hold_release(hold=hold.pk, reason=form.cleaned_data["reason"], actor=request.user)
            messages.success(request, "Hold released.")
        except DomainError as exc:
            messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("orders:detail", args=[hold.order_id]))


class ExceptionListView(ConsoleView):
    """The exception queue, most urgent first (time left to the due time or ship-by, then scorecard impact),
    with the open cases grouped by root cause above it and bulk actions on the ticked or all matching."""

    permission_required = "orders.view_exceptioncase"

    def get(self, request):
        params = request.GET.copy()
        base = selectors.exception_case_queue_rows(include_resolved=bool(params.get("status")))
        filterset = ExceptionCaseFilter(params, queryset=base, request=request)
        rows, next_url, previous_url = [], None, None
        if filterset.is_valid():
            rows, next_url, previous_url = console_page(request, filterset.qs, ExceptionCaseCursorPagination)
        csrf_input, next_input = row_form_inputs(request)
        can_change = request.user.has_perm("orders.change_exceptioncase")
        context = {
            "filter": filterset,
            "cases": rows,
            "rows": case_rows(
                rows,
                can_map_sku=request.user.has_perm("channels.change_listing"),
                can_change=can_change,
                csrf_input=csrf_input,
                next_input=next_input,
            ),
            "csrf_input": csrf_input,
            "next_input": next_input,
            "next_url": next_url,
            "previous_url": previous_url,
            "section": "exceptions",
            "resolve_form": ResolveCaseForm(),
            "can_change": can_change,
            "query": request.GET.urlencode(),
            "filtered": any(v for k, v in request.GET.items() if k not in ("cursor",)),
            "assignees": get_user_model()
            .objects.filter(is_active=True, groups__isnull=False)
            .distinct()
            .order_by("username")
            .only("pk", "username")[:200],
            "can_fix": request.user.has_perm("orders.override_order"),
            "nodes": Location.objects.filter(is_active=True, can_ship=True).order_by("code").only("pk", "code", "name"),
        }
        template = "orders/_exception_results.html" if request.htmx else "orders/exception_list.html"
        return render(request, template, context)


class ExceptionGroupsView(ConsoleView):
    """The open cases grouped by root cause, loaded by the queue page after it answers: the groups aggregate
    every open case (100,000 at scale), the queue's page reads 50 rows of an index."""

    permission_required = "orders.view_exceptioncase"

    def get(self, request):
        return render(request, "orders/_exception_groups.html", {"groups": selectors.exception_case_groups()})


class ExceptionExportView(ConsoleView):
    permission_required = "orders.view_exceptioncase"

    def get(self, request):
        base = selectors.exception_cases_by_urgency(include_resolved=bool(request.GET.get("status")))
        filterset = ExceptionCaseFilter(request.GET, queryset=base, request=request)
        if not filterset.is_valid():
            messages.error(request, "Check the filters before exporting: " + "; ".join(filterset.errors))
            return HttpResponseRedirect(reverse("orders:exceptions"))
        cases = filterset.qs.order_by("urgency_at", "impact", "id")
        return csv_export(filename="exceptions", queryset=cases, columns=CASE_CSV_COLUMNS)


class ExceptionBulkView(ConsoleView):
    """Assign, acknowledge or resolve the ticked cases or every case the queue's filters match. Each case is
    its own transaction: the ones refused are named, the others are done."""

    permission_required = "orders.change_exceptioncase"

    def post(self, request):
        back = _next(request, reverse("orders:exceptions"))
        form = BulkCaseForm(request.POST)
        if not form.is_valid():
            messages.error(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
            return HttpResponseRedirect(back)
        action = form.cleaned_data["action"]
        owner = None
        if action == "assign":
            assignee = form.cleaned_data["assignee"]
            if assignee == "me":
                owner = request.user
            elif assignee:
                owner = get_user_model().objects.filter(pk=int(assignee), is_active=True).first()
                if owner is None:
                    messages.error(request, f"No active user #{assignee} to assign to.")
                    return HttpResponseRedirect(back)
        try:
            ids, _ = bulk_selection(request, case_matching(request))
            result = services.exception_cases_bulk(
                case_ids=ids, action=action, note=form.cleaned_data["note"], owner=owner, actor=request.user
            )
        except DomainError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(back)
        _bulk_message(request, result, "case")
        return HttpResponseRedirect(back)


class ExceptionActionView(ConsoleView):
    permission_required = "orders.change_exceptioncase"

    def post(self, request, pk: int, action: str):
        case = get_object_or_404(ExceptionCase, pk=pk)
        try:
            if action == "acknowledge":
                services.exception_case_acknowledge(case=case.pk, actor=request.user)
            elif action == "assign-to-me":
                services.exception_case_assign(case=case.pk, owner=request.user, actor=request.user)
            elif action == "resolve":
                form = ResolveCaseForm(request.POST)
                if not form.is_valid():
                    raise DomainError("resolving a case needs a resolution note")
                services.exception_case_resolve(case=case.pk, note=form.cleaned_data["note"], actor=request.user)
            else:
                raise DomainError(f"unknown action {action!r}")
            messages.success(request, f"Case #{case.pk}: {action.replace('-', ' ')} done.")
        except DomainError as exc:
            messages.error(request, str(exc))
        return HttpResponseRedirect(safe_next(request, reverse("orders:exceptions")))


SECTIONS = {
    "scorecards": (
        "scorecards.view_metricsnapshot",
        "Scorecards",
        "Each channel's seller metrics computed from Waybill's own data, against versioned thresholds, "
        "with trends and early warnings before a penalty.",
    ),
}


class SectionView(ConsoleView):
    """A console section whose screens come with a later piece of work: it says what will be here."""

    section = ""

    def get_permission_required(self):
        return (SECTIONS[self.section][0],)

    def get(self, request):
        _, title, coming = SECTIONS[self.section]
        return render(request, "console/section.html", {"section": self.section, "title": title, "coming": coming})
