"""Fulfilment console: the board per node, shipment detail with its tracking timeline, manual reroute and
the routing simulator. Thin: parse, call a service or selector, render (full page or the HTMX partial)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from config.kernel.console import ConsoleView
from config.kernel.errors import DomainError
from fulfillment import selectors, services
from fulfillment.forms import RerouteForm, SimulatorForm
from fulfillment.simulator import simulate
from inventory.models import Location


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
