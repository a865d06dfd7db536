"""Fulfilment console: the board per node, shipment detail with its tracking timeline, manual reroute and
the routing simulator. Thin: parse, call a service or selector, render (full page or the HTMX partial)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from rest_framework.pagination import CursorPagination

from config.kernel.console import ConsoleView, bulk_selection, console_page
from config.kernel.errors import DomainError
from config.kernel.exports import csv_export
from config.kernel.redirects import safe_next
from fulfillment import selectors, services
from fulfillment.filters import ShipmentFilter
from fulfillment.forms import CancelUnitsForm, CaseFixForm, ReasonForm, RerouteForm, SimulatorForm
from fulfillment.models import SHIPMENT_SHIP_BY_KEY, Shipment
from fulfillment.services import overrides
from fulfillment.simulator import simulate
from inventory.models import Location
from orders.filters import OrderFilter
from orders.selectors import order_list
from orders.services import bulk_apply
from orders.views import case_matching


class ShipmentQueuePagination(CursorPagination):
    """Newest first, or by urgency: ship-by soonest (none last), each backed by an index."""

    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"
    ordering = ("-id",)
    ordering_param = "ordering"
    allowed_orderings = {"-id": ("-id",), "ship_by": ("ship_by_key", "id")}

    def get_ordering(self, request, queryset, view):
        return self.allowed_orderings.get(request.query_params.get(self.ordering_param, ""), self.ordering)

    def paginate_queryset(self, queryset, request, view=None):
        if request.query_params.get(self.ordering_param, "") == "ship_by":
            queryset = queryset.annotate(ship_by_key=SHIPMENT_SHIP_BY_KEY)
        return super().paginate_queryset(queryset, request, view)


class BoardView(ConsoleView):
    permission_required = "fulfillment.view_shipment"

    def get(self, request):
        nodes = list(Location.objects.filter(is_active=True).order_by("code").only("id", "code", "name"))
        code = request.GET.get("node") or (nodes[0].code if nodes else "")
        location = next((n for n in nodes if n.code == code), None)
        if location is not None:
            location = Location.objects.get(pk=location.pk)
        context = {
            "section": "fulfillment",
            "nodes": nodes,
            "location": location,
            "board": selectors.node_board(location=location) if location else None,
        }
        template = "fulfillment/_board.html" if request.htmx else "fulfillment/board.html"
        return render(request, template, context)


class ShipmentDetailView(ConsoleView):
    permission_required = "fulfillment.view_shipment"

    def get(self, request, pk: int):
        shipment = get_object_or_404(selectors.shipment_detail(), pk=pk)
        return render(request, "fulfillment/shipment_detail.html", {"section": "fulfillment", "shipment": shipment})


class RerouteView(ConsoleView):
    permission_required = "orders.override_order"

    def post(self, request, pk: int):
        form = RerouteForm(request.POST)
        if not form.is_valid():
            messages.error(
                request,
                "A reroute needs a reason: "
                + "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()),
            )
            return HttpResponseRedirect(reverse("orders:detail", args=[pk]))
        location = form.cleaned_data["location"]
        try:
            result = services.order_reroute(
                order_id=pk,
                reason=form.cleaned_data["reason"],
                location_id=location.pk if location else None,
                actor=request.user,
            )
            messages.success(request, f"Rerouted: {len(result.shipment_ids)} shipment(s) released.")
        except DomainError as exc:
            messages.error(request, f"Not rerouted: {exc}")
        return HttpResponseRedirect(reverse("orders:detail", args=[pk]))


class SimulatorView(ConsoleView):
    permission_required = "fulfillment.view_routingdecision"

    def get(self, request):
        form = SimulatorForm(request.GET or None)
        report = simulate(days=form.cleaned_data["days"]) if form.is_valid() else None
        return render(
            request,
            "fulfillment/simulator.html",
            {"section": "fulfillment", "form": form, "report": report},
            status=400 if form.is_bound and not form.is_valid() else 200,
        )


# ---- Overrides and the shipments queue of the ops console (exceptions at scale) --------------------------


def _back(request, fallback: str) -> str:
    return safe_next(request, fallback)


class OrderCancelView(ConsoleView):
    """Cancel units of an order (or the whole order) with a reason the channel is told through the outbox."""

    permission_required = "orders.override_order"

    def post(self, request, pk: int):
        back = reverse("orders:detail", args=[pk])
        form = CancelUnitsForm(request.POST)
        if not form.is_valid():
            messages.error(request, "A cancellation needs a reason; it is sent to the channel.")
            return HttpResponseRedirect(back)
        try:
            quantities = None if form.cleaned_data["whole_order"] else form.line_quantities(request.POST)
            if quantities == {}:
                raise DomainError("enter the units to cancel on at least one line, or tick the whole order")
            result = overrides.order_units_cancel(
                order_id=pk,
                quantities=quantities,
                reason=form.cleaned_data["reason"],
                initiator=form.cleaned_data["initiator"],
                actor=request.user,
            )
        except (DomainError, ValidationError) as exc:
            messages.error(request, f"Nothing cancelled: {'; '.join(getattr(exc, 'messages', [str(exc)]))}")
            return HttpResponseRedirect(back)
        units = sum(result.cancelled.values())
        messages.success(
            request,
            f"Cancelled {units} unit(s); the channel is told through the outbox. Order is {result.order_status}.",
        )
        return HttpResponseRedirect(back)


class OrderBackorderView(ConsoleView):
    permission_required = "orders.override_order"

    def post(self, request, pk: int):
        back = reverse("orders:detail", args=[pk])
        form = ReasonForm(request.POST)
        if not form.is_valid():
            messages.error(request, "A backorder needs a reason.")
            return HttpResponseRedirect(back)
        try:
            lines = overrides.order_backorder(order_id=pk, reason=form.cleaned_data["reason"], actor=request.user)
            messages.success(request, f"Backorder allowed; {len(lines)} line(s) wait for stock, the rest is routed.")
        except DomainError as exc:
            messages.error(request, f"Not backordered: {exc}")
        return HttpResponseRedirect(back)


class ResendConfirmationView(ConsoleView):
    permission_required = "orders.override_order"

    def post(self, request, pk: int):
        shipment = get_object_or_404(Shipment.objects.only("pk", "order_id"), pk=pk)
        back = _back(request, reverse("orders:detail", args=[shipment.order_id]))
        form = ReasonForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Resending a ship confirmation needs a reason.")
            return HttpResponseRedirect(back)
        try:
            overrides.shipment_confirmation_resend(
                shipment_id=pk, reason=form.cleaned_data["reason"], actor=request.user
            )
            messages.success(request, f"Ship confirmation of shipment {pk} queued again for the channel.")
        except DomainError as exc:
            messages.error(request, f"Not resent: {exc}")
        return HttpResponseRedirect(back)


def _order_matching(query):
    filterset = OrderFilter(query, queryset=order_list())
    if not filterset.is_valid():
        raise DomainError("the list's filters are not valid")
    return filterset.qs.order_by("pk")


def _shipment_matching(query):
    filterset = ShipmentFilter(query, queryset=Shipment.objects.all())
    if not filterset.is_valid():
        raise DomainError("the list's filters are not valid")
    return filterset.qs.order_by("pk")


def _bulk_message(request, result, noun: str) -> None:
    level = (
        messages.error if result.failed and not result.done else messages.warning if result.failed else messages.success
    )
    level(request, result.summary(noun))


class BulkRerouteView(ConsoleView):
    """Reroute the ticked orders, or every order the list's filters match; refusals are named."""

    permission_required = "orders.override_order"

    def post(self, request):
        back = _back(request, reverse("orders:list"))
        form = ReasonForm(request.POST)
        if not form.is_valid():
            messages.error(request, "A reroute needs a reason.")
            return HttpResponseRedirect(back)
        try:
            ids, _ = bulk_selection(request, _order_matching)
            result = overrides.orders_reroute_bulk(
                order_ids=ids, reason=form.cleaned_data["reason"], actor=request.user
            )
        except DomainError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(back)
        _bulk_message(request, result, "order")
        return HttpResponseRedirect(back)


class CaseFixBulkView(ConsoleView):
    """One fix for a root-cause group: the ticked (or all matching) cases' orders rerouted, backordered or
    cancelled, each in its own transaction; the cases settled are resolved, the refused named."""

    permission_required = "orders.override_order"

    def post(self, request):
        back = _back(request, reverse("orders:exceptions"))
        form = CaseFixForm(request.POST)
        if not form.is_valid():
            messages.error(
                request,
                "Not fixed: " + "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()),
            )
            return HttpResponseRedirect(back)
        location = form.cleaned_data["location"]
        try:
            ids, _ = bulk_selection(request, case_matching(request))
            result = overrides.exception_cases_fix_bulk(
                case_ids=ids,
                action=form.cleaned_data["action"],
                reason=form.cleaned_data["reason"],
                location_id=location.pk if location else None,
                actor=request.user,
            )
        except DomainError as exc:
            messages.error(request, f"Not fixed: {exc}")
            return HttpResponseRedirect(back)
        _bulk_message(request, result, "case")
        return HttpResponseRedirect(back)


class ShipmentListView(ConsoleView):
    """Every shipment across nodes, filtered like the node API; bulk reroute of their orders or resend of
    their ship confirmations, CSV export."""

    permission_required = "fulfillment.view_shipment"

    def get(self, request):
        filterset = ShipmentFilter(request.GET, queryset=selectors.shipment_queue())
        rows, next_url, previous_url = [], None, None
        if filterset.is_valid():
            rows, next_url, previous_url = console_page(request, filterset.qs, ShipmentQueuePagination)
        context = {
            "section": "fulfillment",
            "filter": filterset,
            "shipments": rows,
            "next_url": next_url,
            "previous_url": previous_url,
            "query": request.GET.urlencode(),
            "ordering": request.GET.get("ordering", "-id"),
        }
        template = "fulfillment/_shipment_results.html" if request.htmx else "fulfillment/shipment_list.html"
        return render(request, template, context)


class ShipmentBulkView(ConsoleView):
    permission_required = "orders.override_order"

    def post(self, request):
        back = _back(request, reverse("fulfillment:shipments"))
        form = ReasonForm(request.POST)
        action = request.POST.get("action")
        if not form.is_valid() or action not in ("reroute", "resend"):
            messages.error(request, "Choose reroute or resend, and give a reason.")
            return HttpResponseRedirect(back)
        reason = form.cleaned_data["reason"]
        try:
            ids, _ = bulk_selection(request, _shipment_matching)
            if action == "reroute":
                order_ids = list(Shipment.objects.filter(pk__in=ids).values_list("order_id", flat=True).distinct())
                result = overrides.orders_reroute_bulk(order_ids=order_ids, reason=reason, actor=request.user)
                noun = "order"
            else:
                result = bulk_apply(
                    ids=ids,
                    action="resend ship confirmation",
                    apply=lambda pk: overrides.shipment_confirmation_resend(
                        shipment_id=pk, reason=reason, actor=request.user
                    ),
                )
                noun = "shipment"
        except DomainError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(back)
        _bulk_message(request, result, noun)
        return HttpResponseRedirect(back)


SHIPMENT_CSV_COLUMNS = [
    ("id", "pk"),
    ("order", "order__external_id"),
    ("node", "location__code"),
    ("kind", "kind"),
    ("status", "status"),
    ("carrier", "carrier__code"),
    ("service_level", "service_level"),
    ("tracking_number", "tracking_number"),
    ("ship_by", "ship_by"),
    ("shipped_at", "shipped_at"),
    ("promised_delivery_at", "promised_delivery_at"),
    ("delivered_at", "delivered_at"),
]


class ShipmentExportView(ConsoleView):
    permission_required = "fulfillment.view_shipment"

    def get(self, request):
        filterset = ShipmentFilter(request.GET, queryset=Shipment.objects.all())
        if not filterset.is_valid():
            messages.error(request, "Check the filters before exporting.")
            return HttpResponseRedirect(reverse("fulfillment:shipments"))
        shipments = filterset.qs.order_by("pk")
        return csv_export(filename="shipments", queryset=shipments, columns=SHIPMENT_CSV_COLUMNS)


class CarrierDashboardView(ConsoleView):
    """The dashboard's carrier tile: on-time delivery by carrier and service level (a bar chart)."""

    permission_required = "fulfillment.view_shipment"

    def get(self, request):
        return render(request, "fulfillment/_carrier_tile.html", {"rows": selectors.carrier_performance()})


class ShipmentSplitView(ConsoleView):
    """Move the ticked lines of a shipment the node has not started to a new shipment at the same node."""

    permission_required = "orders.override_order"

    def post(self, request, pk: int):
        shipment = get_object_or_404(Shipment.objects.only("pk", "order_id"), pk=pk)
        back = reverse("orders:detail", args=[shipment.order_id])
        form = ReasonForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Splitting a shipment needs a reason.")
            return HttpResponseRedirect(back)
        lines = [int(v) for v in request.POST.getlist("order_lines") if v.isdigit()]
        try:
            new = overrides.shipment_split(
                shipment_id=pk, order_line_ids=lines, reason=form.cleaned_data["reason"], actor=request.user
            )
            messages.success(request, f"Shipment {pk} split: the lines moved to shipment {new.pk}.")
        except DomainError as exc:
            messages.error(request, f"Not split: {exc}")
        return HttpResponseRedirect(back)


class ShipmentsMergeView(ConsoleView):
    permission_required = "orders.override_order"

    def post(self, request, pk: int):
        back = reverse("orders:detail", args=[pk])
        form = ReasonForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Merging shipments needs a reason.")
            return HttpResponseRedirect(back)
        ids = [int(v) for v in request.POST.getlist("shipments") if v.isdigit()]
        if ids and Shipment.objects.filter(pk__in=ids).exclude(order_id=pk).exists():
            messages.error(request, "Not merged: every shipment must be this order's.")
            return HttpResponseRedirect(back)
        try:
            kept = overrides.shipments_merge(shipment_ids=ids, reason=form.cleaned_data["reason"], actor=request.user)
            messages.success(request, f"Merged into shipment {kept.pk}.")
        except DomainError as exc:
            messages.error(request, f"Not merged: {exc}")
        return HttpResponseRedirect(back)
