"""Inventory console: the stock grid, a SKU's page (ledger, reservations, inbound), adjustments and
receiving. Thin: parse, call a selector or a service, render (the partial when request.htmx)."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from config.kernel.console import ConsoleView, console_page
from config.kernel.errors import DomainError
from config.kernel.exports import csv_export
from inventory import selectors, services
from inventory.filters import InboundShipmentFilter, StockLevelFilter
from inventory.forms import AdjustmentForm, ReceiveForm
from inventory.models import InboundLine, InboundShipment, InboundStatus, Location, Sku
from inventory.pagination import InboundCursorPagination, StockLevelCursorPagination


class StockGridView(ConsoleView):
    permission_required = "inventory.view_stocklevel"

    def get(self, request):
        filterset = StockLevelFilter(request.GET, queryset=selectors.stock_level_grid(), request=request)
        rows, next_url, previous_url = [], None, None
        if filterset.is_valid():
            rows, next_url, previous_url = console_page(request, filterset.qs, StockLevelCursorPagination)
        context = {
            "filter": filterset,
            "levels": rows,
            "next_url": next_url,
            "previous_url": previous_url,
            "section": "inventory",
            "export_url": reverse("inventory:export") + "?" + request.GET.urlencode(),
        }
        template = "inventory/_grid_results.html" if request.htmx else "inventory/grid.html"
        return render(request, template, context)


STOCK_CSV_COLUMNS = [
    ("sku", "sku__code"),
    ("name", "sku__name"),
    ("location", "location__code"),
    ("on_hand", "on_hand"),
    ("reserved", "reserved"),
    ("safety_stock", "safety_stock"),
    ("atp", "atp_units"),
    ("inbound", "inbound_units"),
    ("receiving", "receiving"),
    ("damaged", "damaged"),
    ("quarantine", "quarantine"),
    ("refurbish", "refurbish"),
]
INBOUND_CSV_COLUMNS = [
    ("id", "pk"),
    ("reference", "reference"),
    ("kind", "kind"),
    ("supplier", "supplier"),
    ("location", "location__code"),
    ("status", "status"),
    ("expected_at", "expected_at"),
]


def _filters_refused(request, filterset, list_name: str):
    messages.error(request, "Check the filters before exporting: " + "; ".join(filterset.errors))
    return HttpResponseRedirect(reverse(list_name) + "?" + request.GET.urlencode())


class StockExportView(ConsoleView):
    """The stock grid as CSV with the grid's current filters, streamed."""

    permission_required = "inventory.view_stocklevel"

    def get(self, request):
        filterset = StockLevelFilter(request.GET, queryset=selectors.stock_level_grid(), request=request)
        if not filterset.is_valid():
            return _filters_refused(request, filterset, "inventory:grid")
        levels = filterset.qs.order_by("sku_id", "location_id")
        return csv_export(filename="stock", queryset=levels, columns=STOCK_CSV_COLUMNS)


class SkuDetailView(ConsoleView):
    permission_required = "inventory.view_stocklevel"

    def get(self, request, code: str):
        return self.render_page(request, code)

    def render_page(self, request, code: str, *, form=None, status=200):
        sku = get_object_or_404(Sku, code=code)
        context = {
            "sku": sku,
            "levels": list(selectors.sku_levels(sku)),
            "movements": list(selectors.sku_ledger(sku)),
            "reservations": list(selectors.sku_active_reservations(sku)),
            "inbound": list(selectors.sku_inbound(sku)),
            "form": form or AdjustmentForm(),
            "can_adjust": request.user.has_perm("inventory.add_stockmovement"),
            "section": "inventory",
        }
        return render(request, "inventory/sku_detail.html", context, status=status)


class AdjustmentView(ConsoleView):
    permission_required = "inventory.add_stockmovement"

    def post(self, request, code: str):
        sku = get_object_or_404(Sku, code=code)
        form = AdjustmentForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                movement = services.stock_adjust(
                    sku=sku,
                    location=data["location"],
                    delta=data["delta"],
                    reason=data["reason"],
                    reference=data["reference"],
                    idempotency_key=data["idempotency_key"],
                    actor=request.user,
                )
            except DomainError as exc:
                form.add_error(None, str(exc))
        if form.errors:
            return SkuDetailView().render_page(request, code, form=form, status=400)
        messages.success(
            request,
            f"Adjusted {sku.code} at {data['location'].code} by {movement.delta:+d}: {movement.balance_after} on hand.",
        )
        return HttpResponseRedirect(reverse("inventory:sku", args=[sku.code]))


class InboundListView(ConsoleView):
    permission_required = "inventory.view_inboundshipment"

    def get(self, request):
        filterset = InboundShipmentFilter(_inbound_params(request), queryset=selectors.inbound_list(), request=request)
        rows, next_url, previous_url = [], None, None
        if filterset.is_valid():
            rows, next_url, previous_url = console_page(request, filterset.qs, InboundCursorPagination)
        context = {
            "filter": filterset,
            "shipments": rows,
            "next_url": next_url,
            "previous_url": previous_url,
            "section": "inventory",
            "export_url": reverse("inventory:inbound-export") + "?" + request.GET.urlencode(),
        }
        template = "inventory/_inbound_results.html" if request.htmx else "inventory/inbound_list.html"
        return render(request, template, context)


def _inbound_params(request):
    """The receiving list's filters: open and partly received shipments when no status is asked for."""
    params = request.GET.copy()
    if "status" not in params:
        params.setlist("status", [InboundStatus.OPEN, InboundStatus.PARTIALLY_RECEIVED])
    return params


class InboundExportView(ConsoleView):
    """The inbound shipments (POs, ASNs) as CSV with the list's current filters, streamed."""

    permission_required = "inventory.view_inboundshipment"

    def get(self, request):
        filterset = InboundShipmentFilter(_inbound_params(request), queryset=selectors.inbound_list(), request=request)
        if not filterset.is_valid():
            return _filters_refused(request, filterset, "inventory:inbound")
        shipments = filterset.qs.order_by("expected_at", "id")
        return csv_export(filename="inbound-shipments", queryset=shipments, columns=INBOUND_CSV_COLUMNS)


class InboundDetailView(ConsoleView):
    permission_required = "inventory.view_inboundshipment"

    def get(self, request, pk: int):
        return self.render_page(request, pk)

    def render_page(self, request, pk: int, *, form=None, status=200):
        shipment = get_object_or_404(selectors.inbound_detail(), pk=pk)
        lines = list(InboundLine.objects.filter(shipment=shipment).select_related("sku").order_by("id"))
        context = {
            "shipment": shipment,
            "lines": lines,
            "form": form or ReceiveForm(lines=lines),
            "can_receive": request.user.has_perm("inventory.change_inboundshipment")
            and shipment.status in (InboundStatus.OPEN, InboundStatus.PARTIALLY_RECEIVED),
            "section": "inventory",
        }
        return render(request, "inventory/inbound_detail.html", context, status=status)


class InboundReceiveView(ConsoleView):
    permission_required = "inventory.change_inboundshipment"

    def post(self, request, pk: int):
        shipment = get_object_or_404(InboundShipment, pk=pk)
        lines = list(InboundLine.objects.filter(shipment=shipment).select_related("sku").order_by("id"))
        form = ReceiveForm(request.POST, lines=lines)
        if form.is_valid():
            try:
                outcome = services.inbound_receive(
                    shipment_id=shipment.pk,
                    quantities=form.cleaned_data["quantities"],
                    idempotency_key=form.cleaned_data["idempotency_key"],
                    actor=request.user,
                )
            except DomainError as exc:
                form.add_error(None, str(exc))
        if form.errors:
            return InboundDetailView().render_page(request, pk, form=form, status=400)
        received = sum(m.delta for m in outcome.movements)
        note = f" {len(outcome.allocated_lines)} backordered line(s) allocated." if outcome.allocated_lines else ""
        messages.success(request, f"Received {received} unit(s) on {shipment.reference}.{note}")
        return HttpResponseRedirect(reverse("inventory:inbound-detail", args=[shipment.pk]))


# --- reconciliation of nodes: count proposals -------------------------------------------------------


class NodeCountsView(ConsoleView):
    """A node's reconciliation: its last snapshot, the counts that differed by direction and how each was settled,
    the trend, the proposals waiting for a person (apply or reject) and every differing count with its case and
    the movement it made."""

    permission_required = "inventory.view_stocklevel"

    def get(self, request, code: str):
        return self.render_page(request, code)

    def render_page(self, request, code: str, *, status: int = 200):
        location = get_object_or_404(Location, code=code)
        proposals = list(selectors.node_count_proposals(location_id=location.pk)[:200])
        page = selectors.node_reconcile_page(location=location)
        context = {
            "section": "inventory",
            "location": location,
            "proposals": proposals,
            "page": page,
            "waiting": len(page.waiting),
            "can_decide": request.user.has_perm("inventory.add_stockmovement"),
        }
        return render(request, "inventory/node_counts.html", context, status=status)


class NodeCountDecideView(ConsoleView):
    permission_required = "inventory.add_stockmovement"

    def post(self, request, code: str, pk: int, decision: str):
        if decision not in ("apply", "reject"):
            raise Http404(f"No such decision {decision!r}: apply or reject.")
        note = (request.POST.get("note") or "").strip()[:2000]
        try:
            if decision == "apply":
                services.stock_count_proposal_apply(proposal=pk, actor=request.user, note=note)
                messages.success(request, f"Count proposal #{pk} applied: one adjustment movement.")
            else:
                services.stock_count_proposal_reject(proposal=pk, actor=request.user, note=note)
                messages.success(request, f"Count proposal #{pk} rejected; nothing moved.")
        except DomainError as exc:
            messages.error(request, str(exc))
            return NodeCountsView().render_page(request, code, status=409)
        return HttpResponseRedirect(reverse("inventory:node-counts", args=[code]))


# --- end of reconciliation ---------------------------------------------------------------------------
