"""Console views: thin. Parse, call a service or selector, render (full page, or the partial for HTMX)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from config.kernel.console import ConsoleView, console_page
from config.kernel.errors import DomainError
from config.kernel.redirects import safe_next
from orders import selectors, services
from orders.filters import ExceptionCaseFilter, OrderFilter
from orders.forms import HoldPlaceForm, ReasonForm, ResolveCaseForm
from orders.models import ExceptionCase, Hold
from orders.pagination import ExceptionCaseCursorPagination, OrderCursorPagination


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
            "next_url": next_url,
            "previous_url": previous_url,
            "section": "orders",
            "ordering": request.GET.get("ordering", "-placed_at"),
        }
        template = "orders/_order_results.html" if request.htmx else "orders/order_list.html"
        return render(request, template, context)


class OrderDetailView(ConsoleView):
    permission_required = "orders.view_order"

    def get(self, request, pk: int):
        return self.render_page(request, pk)

    def render_page(self, request, pk: int, *, hold_form=None, status=200):
        order = get_object_or_404(selectors.order_detail(), pk=pk)
        context = {
            "order": order,
            "section": "orders",
            "hold_form": hold_form or HoldPlaceForm(),
            "release_form": ReasonForm(),
            "can_hold": request.user.has_perm("orders.add_hold"),
        }
        return render(request, "orders/order_detail.html", context, status=status)


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
    permission_required = "orders.view_exceptioncase"

    def get(self, request):
        params = request.GET.copy()
        base = (
            selectors.exception_case_queue()
            if not params.get("status")
            else ExceptionCase.objects.select_related("order", "owner", "account", "sku")
        )
        filterset = ExceptionCaseFilter(params, queryset=base, request=request)
        rows, next_url, previous_url = [], None, None
        if filterset.is_valid():
            rows, next_url, previous_url = console_page(request, filterset.qs, ExceptionCaseCursorPagination)
        context = {
            "filter": filterset,
            "cases": rows,
            "next_url": next_url,
            "previous_url": previous_url,
            "section": "exceptions",
            "resolve_form": ResolveCaseForm(),
            "can_change": request.user.has_perm("orders.change_exceptioncase"),
        }
        template = "orders/_exception_results.html" if request.htmx else "orders/exception_list.html"
        return render(request, template, context)


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
    "returns": (
        "returns.view_returnauthorization",
        "Returns",
        "Return authorisations linked to their orders, receiving with a disposition per line, "
        "restocking, refunds and exchanges.",
    ),
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
