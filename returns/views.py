"""Returns console: the queue, the RMA page, the scanner receive page, RMA creation from an order, and the
return-reasons report. Thin: parse, call a service or a selector, render."""

from __future__ import annotations

import csv
import uuid
from decimal import Decimal

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from config.kernel import accounts
from config.kernel.console import ConsoleView
from config.kernel.errors import DomainError
from config.kernel.exports import csv_export
from inventory.models import Sku
from orders.models import Order
from returns import selectors, services
from returns.charts import weekly_chart_svg
from returns.forms import (
    CloseForm,
    CreateRmaForm,
    ExchangeForm,
    InspectForm,
    QueueFilterForm,
    ReceiveForm,
    RefundForm,
)
from returns.models import Disposition, ReturnAuthorization, ReturnStatus

PAGE = 100


def _key() -> str:
    return f"console:{uuid.uuid4()}"


def _queue_filters(request) -> tuple[QueueFilterForm, str, str, str]:
    """The queue's filters (open RMAs when none is given): the form, the bucket, the channel and the search."""
    form = QueueFilterForm(request.GET or None)
    bucket, channel, query = "open", "", ""
    if form.is_valid():
        bucket = form.cleaned_data["bucket"] or "open"
        channel = form.cleaned_data["channel"]
        query = form.cleaned_data["q"]
    return form, bucket, channel, query


RMA_CSV_COLUMNS = [
    ("rma", "rma_number"),
    ("order", "order__external_id"),
    ("channel", "account_kind"),
    ("account", "account_name"),
    ("status", "status"),
    ("reason", "reason"),
    ("channel_return_id", "external_id"),
    ("return_tracking", "return_tracking_number"),
    ("created_at", "created_at"),
    ("received_at", "received_at"),
    ("closed_at", "closed_at"),
]


class QueueExportView(ConsoleView):
    """The returns queue as CSV with its current filters (bucket, channel, search), streamed."""

    permission_required = "returns.view_returnauthorization"

    def get(self, request):
        _, bucket, channel, query = _queue_filters(request)
        rmas = selectors.rma_queue_filtered(
            bucket="" if bucket == "all" else bucket, channel=channel, query=query
        ).order_by("pk")
        # The order's account kind and name as subqueries of the same statement (config.kernel.accounts).
        rmas = rmas.prefetch_related(None).annotate(
            account_kind=accounts.account_value("kind", outer="order__account_id"),
            account_name=accounts.account_value("name", outer="order__account_id"),
        )
        return csv_export(filename="returns", queryset=rmas, columns=RMA_CSV_COLUMNS)


class QueueView(ConsoleView):
    permission_required = "returns.view_returnauthorization"

    def get(self, request):
        form, bucket, channel, query = _queue_filters(request)
        rows = list(
            selectors.rma_queue_filtered(bucket="" if bucket == "all" else bucket, channel=channel, query=query)[:PAGE]
        )
        if query and len(rows) == 1:
            return HttpResponseRedirect(reverse("returns:detail", args=[rows[0].pk]))
        context = {
            "form": form if form.is_bound else QueueFilterForm(initial={"bucket": "open"}),
            "rmas": rows,
            "bucket": bucket,
            "counts": selectors.queue_counts(),
            "section": "returns",
            "page_size": PAGE,
            "export_url": reverse("returns:export") + "?" + request.GET.urlencode(),
        }
        template = "returns/_queue_results.html" if request.htmx else "returns/queue.html"
        return render(request, template, context)


class DetailView(ConsoleView):
    permission_required = "returns.view_returnauthorization"

    def get(self, request, pk: int):
        return render_detail(request, pk)


def render_detail(request, pk: int, *, status: int = 200, **forms):
    rma = get_object_or_404(selectors.rma_detail(), pk=pk)
    lines = list(rma.lines.all())
    context = {
        "rma": rma,
        "lines": lines,
        "units": list(selectors.rma_units(rma)),
        "events": list(rma.events.all()),
        "refunds": list(rma.refunds.all()),
        "refund_form": forms.get("refund_form") or RefundForm(initial={"key": _key(), "shipping": 0}),
        "exchange_form": forms.get("exchange_form") or ExchangeForm(),
        "close_form": CloseForm(),
        "suggested_refund": {
            line.pk: line.order_line.unit_price * (line.quantity_received or line.quantity) for line in lines
        },
        "section": "returns",
        "can_change": request.user.has_perm("returns.change_returnauthorization"),
        "can_refund": request.user.has_perm("returns.add_refund"),
        "open": rma.status not in (ReturnStatus.COMPLETED, ReturnStatus.REJECTED, ReturnStatus.CANCELLED),
    }
    return render(request, "returns/detail.html", context, status=status)


class ActionView(ConsoleView):
    """authorize, in-transit, complete, reject, cancel."""

    permission_required = "returns.change_returnauthorization"

    def post(self, request, pk: int, action: str):
        form = CloseForm(request.POST)
        reason = form.data.get("reason", "")[:500]
        try:
            if action == "authorize":
                services.rma_authorize(rma_id=pk, actor=request.user, reason=reason)
            elif action == "in-transit":
                services.rma_in_transit(
                    rma_id=pk, actor=request.user, tracking_number=request.POST.get("tracking", "")[:128]
                )
            elif action in ("complete", "reject", "cancel"):
                target = {"complete": "completed", "reject": "rejected", "cancel": "cancelled"}[action]
                services.rma_close(rma_id=pk, to_status=target, actor=request.user, reason=reason)
            else:
                messages.error(request, f"Unknown action {action!r}.")
                return HttpResponseRedirect(reverse("returns:detail", args=[pk]))
            messages.success(request, f"RMA updated: {action.replace('-', ' ')}.")
        except DomainError as exc:
            messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("returns:detail", args=[pk]))


class ReceiveView(ConsoleView):
    """Built for a scanner: the SKU field has the focus, Enter posts, the page comes back ready for the next
    scan with the last location and disposition kept. Every render carries a fresh receipt key, so a
    double-submitted scan is applied once."""

    permission_required = "returns.change_returnline"

    def get(self, request, pk: int):
        rma = get_object_or_404(selectors.rma_detail(), pk=pk)
        initial = {
            "key": _key(),
            "quantity": 1,
            "disposition": request.GET.get("disposition") or Disposition.RESTOCK,
            "location": request.GET.get("location") or rma.return_location_id,
        }
        return self.render_page(request, rma, ReceiveForm(initial=initial), InspectForm(initial={"key": _key()}))

    def render_page(self, request, rma, form, inspect_form, status=200):
        context = {
            "rma": rma,
            "lines": list(rma.lines.all()),
            "pending": [
                u
                for u in selectors.rma_units(rma)
                if u.disposition == Disposition.PENDING and u.quantity_inspected < u.quantity
            ],
            "form": form,
            "inspect_form": inspect_form,
            "section": "returns",
        }
        return render(request, "returns/receive.html", context, status=status)

    def post(self, request, pk: int):
        rma = get_object_or_404(selectors.rma_detail(), pk=pk)
        if request.POST.get("mode") == "inspect":
            inspect_form = InspectForm(request.POST)
            if not inspect_form.is_valid():
                return self.render_page(request, rma, ReceiveForm(initial={"key": _key()}), inspect_form, status=400)
            data = inspect_form.cleaned_data
            try:
                services.rma_inspect(
                    rma_id=rma.pk,
                    items=[services.InspectItem(data["quantity"], data["disposition"], sku=data["sku"])],
                    actor=request.user,
                    idempotency_key=data["key"],
                )
            except DomainError as exc:
                inspect_form.add_error(None, str(exc))
                return self.render_page(request, rma, ReceiveForm(initial={"key": _key()}), inspect_form, status=400)
            messages.success(request, f"Inspected {data['quantity']} x {data['sku']}: {data['disposition']}.")
            return HttpResponseRedirect(reverse("returns:receive", args=[rma.pk]))
        form = ReceiveForm(request.POST)
        if not form.is_valid():
            return self.render_page(request, rma, form, InspectForm(initial={"key": _key()}), status=400)
        data = form.cleaned_data
        try:
            result = services.rma_receive(
                rma_id=rma.pk,
                location_id=data["location"].pk,
                items=[services.ReceiveItem(data["quantity"], data["disposition"], sku=data["sku"], note=data["note"])],
                actor=request.user,
                idempotency_key=data["key"],
            )
        except DomainError as exc:
            form.add_error(None, str(exc))
            return self.render_page(request, rma, form, InspectForm(initial={"key": _key()}), status=400)
        said = "already received (the same scan was posted twice)" if result.replayed else "received"
        messages.success(
            request, f"{data['quantity']} x {data['sku']} {said}: {data['disposition']} at {data['location'].code}."
        )
        url = reverse("returns:receive", args=[rma.pk])
        return HttpResponseRedirect(f"{url}?location={data['location'].pk}&disposition={data['disposition']}")


class ScanRmaView(ConsoleView):
    """The scanner's start: scan an RMA number (or the order's, or the return's tracking number)."""

    permission_required = "returns.change_returnline"

    def get(self, request):
        query = (request.GET.get("q") or "").strip()
        if query:
            rows = list(selectors.rma_queue_filtered(query=query)[:2])
            if len(rows) == 1:
                return HttpResponseRedirect(reverse("returns:receive", args=[rows[0].pk]))
            messages.error(
                request, f"No single RMA matches {query!r}." if not rows else f"Several RMAs match {query!r}: pick one."
            )
        return render(request, "returns/scan.html", {"section": "returns", "q": query})


class RefundView(ConsoleView):
    permission_required = "returns.add_refund"

    def post(self, request, pk: int):
        rma = get_object_or_404(ReturnAuthorization.objects.select_related("order"), pk=pk)
        form = RefundForm(request.POST)
        if not form.is_valid():
            messages.error(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
            return HttpResponseRedirect(reverse("returns:detail", args=[pk]))
        lines = []
        for line in rma.lines.select_related("order_line"):
            amount = (request.POST.get(f"amount-{line.pk}") or "").strip()
            quantity = (request.POST.get(f"quantity-{line.pk}") or "0").strip()
            if not amount or amount in ("0", "0.00"):
                continue
            if not quantity.isdigit():
                messages.error(request, f"Line {line.order_line.external_id}: quantity must be a whole number.")
                return HttpResponseRedirect(reverse("returns:detail", args=[pk]))
            lines.append(services.RefundLineInput(line.order_line_id, amount, int(quantity)))
        try:
            refund = services.refund_create(
                order_id=rma.order_id,
                rma_id=rma.pk,
                lines=lines,
                shipping_amount=form.cleaned_data["shipping"] or Decimal(0),
                reason=form.cleaned_data["reason"],
                actor=request.user,
                idempotency_key=form.cleaned_data["key"],
            )
        except DomainError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(reverse("returns:detail", args=[pk]))
        where = (
            "sent to the channel"
            if refund.outbox_message_id
            else "left to a person: refund it at the channel by hand (an exception case is open)"
        )
        messages.success(request, f"Refund of {refund.amount} {refund.currency} {where}.")
        return HttpResponseRedirect(reverse("returns:detail", args=[pk]))


class RefundRecordView(ConsoleView):
    """A refund left to a person was made at the channel: record its reference (resolves the case)."""

    permission_required = "returns.change_refund"

    def post(self, request, pk: int, refund_id: int):
        try:
            services.refund_manual_record(
                refund_id=refund_id,
                external_id=request.POST.get("reference", ""),
                note=request.POST.get("note", "")[:500],
                actor=request.user,
            )
            messages.success(request, "Refund recorded as made at the channel.")
        except DomainError as exc:
            messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("returns:detail", args=[pk]))


class ExchangeView(ConsoleView):
    permission_required = "returns.change_returnauthorization"

    def post(self, request, pk: int):
        form = ExchangeForm(request.POST)
        if not form.is_valid():
            messages.error(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
            return HttpResponseRedirect(reverse("returns:detail", args=[pk]))
        data = form.cleaned_data
        sku = (
            Sku.objects.filter(code=data["sku"].strip()).first()
            or Sku.objects.filter(barcode=data["sku"].strip()).exclude(barcode="").first()
        )
        if sku is None:
            messages.error(request, f"Unknown SKU {data['sku']!r}.")
            return HttpResponseRedirect(reverse("returns:detail", args=[pk]))
        try:
            order = services.exchange_create(
                rma_id=pk,
                lines=[services.ExchangeLineInput(sku.pk, data["quantity"], data["unit_price"])],
                actor=request.user,
            )
        except DomainError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(reverse("returns:detail", args=[pk]))
        messages.success(request, f"Replacement order {order.external_id} created.")
        return HttpResponseRedirect(reverse("returns:detail", args=[pk]))


class CreateView(ConsoleView):
    """Open an RMA from an order: per line, how many units come back (at most what can still be returned)."""

    permission_required = "returns.add_returnauthorization"

    def get(self, request, order_id: int):
        return self.render_page(request, order_id, CreateRmaForm(initial={"authorize": True}))

    def render_page(self, request, order_id, form, status=200):
        order = get_object_or_404(Order, pk=order_id)
        context = {"order": order, "rows": selectors.returnable_lines(order.pk), "form": form, "section": "returns"}
        return render(request, "returns/create.html", context, status=status)

    def post(self, request, order_id: int):
        form = CreateRmaForm(request.POST)
        if not form.is_valid():
            return self.render_page(request, order_id, form, status=400)
        lines = []
        for key, value in request.POST.items():
            if not key.startswith("qty-") or not value.strip() or value.strip() == "0":
                continue
            try:
                line_id = int(key[4:])
            except ValueError:
                continue
            quantity = int(value) if value.strip().lstrip("-").isdigit() else value
            lines.append(services.ReturnLineInput(line_id, quantity))
        data = form.cleaned_data
        try:
            rma = services.rma_create(
                order_id=order_id,
                lines=lines,
                actor=request.user,
                reason=data["reason"],
                customer_note=data["customer_note"],
                return_location_id=data["return_location"].pk if data["return_location"] else None,
                status=ReturnStatus.AUTHORIZED if data["authorize"] else ReturnStatus.REQUESTED,
            )
        except DomainError as exc:
            form.add_error(None, str(exc))
            return self.render_page(request, order_id, form, status=400)
        messages.success(request, f"{rma.rma_number} opened.")
        return HttpResponseRedirect(reverse("returns:detail", args=[rma.pk]))


class ReportView(ConsoleView):
    permission_required = "returns.view_returnauthorization"

    def get(self, request):
        try:
            days = min(max(int(request.GET.get("days") or 90), 7), 730)
        except ValueError:
            days = 90
        report = selectors.return_reasons_report(days=days)
        if request.GET.get("format") == "csv":
            return _report_csv(report, days)
        context = {
            "report": report,
            "days": days,
            "chart": weekly_chart_svg(report.weekly),
            "section": "returns",
        }
        return render(request, "returns/report.html", context)


def _report_csv(report, days: int) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="return-reasons-{days}d.csv"'
    writer = csv.writer(response)
    writer.writerow(["section", "key", "returned_units", "shipped_units", "return_rate_percent", "rmas"])
    for row in report.by_sku:
        writer.writerow(
            [
                "sku",
                row["sku"],
                row["returned"],
                row["shipped"],
                row["rate"] if row["rate"] is not None else "",
                row["rmas"],
            ]
        )
    for row in report.by_reason:
        writer.writerow(
            ["reason", row["reason"], row["returned"], "", row["share"] if row["share"] is not None else "", ""]
        )
    for row in report.by_channel:
        writer.writerow(
            [
                "channel",
                row["channel"],
                row["returned"],
                row["shipped"],
                row["rate"] if row["rate"] is not None else "",
                "",
            ]
        )
    for row in report.weekly:
        writer.writerow(["week", f"{row['week']:%Y-%m-%d} {row['channel']}", row["returned"], "", "", ""])
    return response
