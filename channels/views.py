"""Channel screens: account health and one account's page, sync runs (live), failed inbound events
(re-process, discard), the outbox (a message's page shows the channel's whole error answer)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone

from channels import selectors
from channels.connectors.base import ChannelError
from channels.fixes import exception_case_retry, outbox_message_discard
from channels.inbound import inbound_event_discard, inbound_event_reprocess
from channels.models import (
    ChannelAccount,
    InboundEvent,
    InboundStatus,
    OutboxMessage,
    OutboxStatus,
    ReconcileScope,
    SyncStatus,
)
from channels.outbox import outbox_retry_now
from channels.services import connector_for, listing_map
from channels.sync import account_lock
from channels.tasks import channels_reconcile_account_task, channels_sync_account_task
from config.kernel.console import ConsoleView, bulk_selection
from config.kernel.errors import DomainError
from config.kernel.exports import csv_export
from config.kernel.redirects import safe_next
from inventory import selectors as inventory_selectors
from inventory.models import Sku
from orders.models import ExceptionCase, ExceptionKind, OrderLine
from orders.services import bulk_apply
from orders.views import case_matching

PAGE = 100
MAX_REASON = 2000


def _next(request, fallback: str) -> str:
    """The page to go back to: a local path only (never another site)."""
    return safe_next(request, fallback)


def pretty_json(value) -> str:
    """Indented JSON for a <pre> block (the template escapes it)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


class AccountListView(ConsoleView):
    permission_required = "channels.view_channelaccount"

    def get(self, request):
        context = {
            "section": "channels",
            "rows": selectors.account_health(),
            "can_sync": request.user.has_perm("channels.add_syncrun"),
        }
        template = "channels/_accounts.html" if request.htmx else "channels/accounts.html"
        return render(request, template, context)


class SyncNowView(ConsoleView):
    permission_required = "channels.add_syncrun"

    def post(self, request, pk: int):
        account = get_object_or_404(ChannelAccount, pk=pk)
        channels_sync_account_task.delay(account.pk)
        messages.success(request, f"Sync of {account.name} started.")
        return HttpResponseRedirect(reverse("channels:runs") + f"?account={account.pk}")


def _inbound_filters(request) -> tuple[str | None, int | None]:
    """The inbound list's filters: a status (failed when none is given; an empty one means all), an account."""
    status = request.GET.get("status", InboundStatus.FAILED)
    return (status if status in InboundStatus.values else None), _int(request.GET.get("account"))


def _outbox_filters(request) -> tuple[str | None, int | None]:
    status = request.GET.get("status") or None
    return (status if status in OutboxStatus.values else None), _int(request.GET.get("account"))


def _export_url(name: str, **params) -> str:
    """The list's CSV export with the filters it shows (an inbound status of "" keeps meaning all)."""
    query = urlencode({key: value for key, value in params.items() if value is not None})
    return reverse(name) + (f"?{query}" if query else "")


SYNC_RUN_CSV_COLUMNS = [
    ("id", "pk"),
    ("account", "account__name"),
    ("kind", "kind"),
    ("status", "status"),
    ("started_at", "started_at"),
    ("finished_at", "finished_at"),
    ("cursor_from", "cursor_from"),
    ("cursor_to", "cursor_to"),
    ("pages", "pages"),
    ("orders_seen", "orders_seen"),
    ("orders_created", "orders_created"),
    ("orders_updated", "orders_updated"),
    ("orders_failed", "orders_failed"),
    ("error", "error"),
]
INBOUND_CSV_COLUMNS = [
    ("id", "pk"),
    ("account", "account__name"),
    ("kind", "kind"),
    ("external_id", "external_id"),
    ("status", "status"),
    ("attempts", "attempts"),
    ("received_at", "received_at"),
    ("processed_at", "processed_at"),
    ("error", "error"),
]
OUTBOX_CSV_COLUMNS = [
    ("id", "pk"),
    ("account", "account__name"),
    ("kind", "kind"),
    ("dedupe_key", "dedupe_key"),
    ("order", "order__external_id"),
    ("status", "status"),
    ("attempts", "attempts"),
    ("next_attempt_at", "next_attempt_at"),
    ("sent_at", "sent_at"),
    ("created_at", "created_at"),
    ("last_error", "last_error"),
]


class SyncRunExportView(ConsoleView):
    """The sync runs as CSV with the list's account filter, streamed."""

    permission_required = "channels.view_syncrun"

    def get(self, request):
        runs = selectors.sync_run_list(account_id=_int(request.GET.get("account")))
        return csv_export(filename="sync-runs", queryset=runs, columns=SYNC_RUN_CSV_COLUMNS)


class InboundEventExportView(ConsoleView):
    """The inbound events as CSV with the list's status and account filters, streamed (payloads left out)."""

    permission_required = "channels.view_inboundevent"

    def get(self, request):
        status, account_id = _inbound_filters(request)
        events = selectors.inbound_event_list(status=status, account_id=account_id)
        return csv_export(filename="inbound-events", queryset=events, columns=INBOUND_CSV_COLUMNS)


class OutboxExportView(ConsoleView):
    """The outbox as CSV with the list's status and account filters, streamed (payloads left out)."""

    permission_required = "channels.view_outboxmessage"

    def get(self, request):
        status, account_id = _outbox_filters(request)
        outbox = selectors.outbox_list(status=status, account_id=account_id)
        return csv_export(filename="outbox", queryset=outbox, columns=OUTBOX_CSV_COLUMNS)


class SyncRunListView(ConsoleView):
    permission_required = "channels.view_syncrun"

    def get(self, request):
        account_id = _int(request.GET.get("account"))
        runs = list(selectors.sync_run_list(account_id=account_id)[:PAGE])
        export = reverse("channels:runs-export") + (f"?account={account_id}" if account_id else "")
        context = {
            "section": "channels",
            "runs": runs,
            "account_id": account_id,
            "accounts": ChannelAccount.objects.order_by("name"),
            "live": any(run.status == SyncStatus.RUNNING for run in runs),
            "export_url": export,
        }
        template = "channels/_runs.html" if request.htmx else "channels/runs.html"
        return render(request, template, context)


class InboundEventListView(ConsoleView):
    permission_required = "channels.view_inboundevent"

    def get(self, request):
        status, account_id = _inbound_filters(request)
        context = {
            "section": "channels",
            "events": list(selectors.inbound_event_list(status=status, account_id=account_id)[:PAGE]),
            "status": status or "",
            "statuses": InboundStatus.choices,
            "account_id": account_id,
            "accounts": ChannelAccount.objects.order_by("name"),
            "can_change": request.user.has_perm("channels.change_inboundevent"),
            "export_url": _export_url("channels:inbound-export", status=status or "", account=account_id),
        }
        template = "channels/_inbound.html" if request.htmx else "channels/inbound.html"
        return render(request, template, context)


class InboundReprocessView(ConsoleView):
    permission_required = "channels.change_inboundevent"

    def post(self, request, pk: int):
        event = get_object_or_404(InboundEvent.objects.select_related("account").defer("payload"), pk=pk)
        back = _next(request, reverse("channels:inbound"))
        try:
            with account_lock(event.account_id) as acquired:
                if not acquired:
                    raise DomainError(f"{event.account.name} is syncing right now; try again in a moment")
                connector = connector_for(event.account)
                try:
                    event = inbound_event_reprocess(event=event, connector=connector, actor=request.user.get_username())
                finally:
                    connector.close()
        except (DomainError, ChannelError) as exc:
            messages.error(request, str(exc))
            return AccountDetailView().render_page(request, event.account_id, status=409)
        if event.status == InboundStatus.PROCESSED:
            messages.success(request, f"Event #{event.pk} processed: the order was read again from the channel.")
        else:
            messages.error(request, f"Event #{event.pk} failed again: {event.error}")
        return HttpResponseRedirect(back)


class InboundDiscardView(ConsoleView):
    """A person gives up on a failed order: the sync stops reading it again. Needs a reason."""

    permission_required = "channels.change_inboundevent"

    def post(self, request, pk: int):
        event = get_object_or_404(InboundEvent.objects.defer("payload"), pk=pk)
        reason = (request.POST.get("reason") or "").strip()
        if not reason or len(reason) > MAX_REASON:
            messages.error(request, f"Discarding event #{event.pk} needs a reason of 1 to {MAX_REASON} characters.")
            return AccountDetailView().render_page(request, event.account_id, status=400)
        try:
            discarded = inbound_event_discard(event=event.pk, reason=reason, actor=request.user)
        except DomainError as exc:
            messages.error(request, str(exc))
            return AccountDetailView().render_page(request, event.account_id, status=409)
        messages.success(
            request,
            f"Discarded {len(discarded)} failed event(s) of order {event.external_id or event.pk}; "
            "the sync no longer reads it again.",
        )
        return HttpResponseRedirect(_next(request, reverse("channels:account", args=[event.account_id])))


class AccountDetailView(ConsoleView):
    """One account: sync state and backoff, sync-failure cases, parked messages with the channel's
    error, failed inbound events (re-process, discard), listing-not-found cases, recent runs."""

    permission_required = "channels.view_channelaccount"

    def get(self, request, pk: int):
        return self.render_page(request, pk)

    def render_page(self, request, pk: int, *, status: int = 200):
        account = get_object_or_404(ChannelAccount, pk=pk)
        page = selectors.account_page(account=account)
        for message in page.attention:
            message.detail_pretty = pretty_json(message.last_error_detail) if message.last_error_detail else ""
        context = {
            "section": "channels",
            "page": page,
            "account": account,
            "runs": page.runs,
            "live": False,
            "can_sync": request.user.has_perm("channels.add_syncrun"),
            "can_change_events": request.user.has_perm("channels.change_inboundevent"),
            "can_change_outbox": request.user.has_perm("channels.change_outboxmessage"),
        }
        return render(request, "channels/account.html", context, status=status)


class OutboxListView(ConsoleView):
    permission_required = "channels.view_outboxmessage"

    def get(self, request):
        status, account_id = _outbox_filters(request)
        context = {
            "section": "channels",
            "messages_list": list(selectors.outbox_list(status=status, account_id=account_id)[:PAGE]),
            "status": status or "",
            "statuses": OutboxStatus.choices,
            "account_id": account_id,
            "accounts": ChannelAccount.objects.order_by("name"),
            "can_change": request.user.has_perm("channels.change_outboxmessage"),
            "export_url": _export_url("channels:outbox-export", status=status, account=account_id),
        }
        template = "channels/_outbox.html" if request.htmx else "channels/outbox.html"
        return render(request, template, context)


class OutboxDetailView(ConsoleView):
    permission_required = "channels.view_outboxmessage"

    def get(self, request, pk: int):
        message = get_object_or_404(OutboxMessage.objects.select_related("account"), pk=pk)
        context = {
            "section": "channels",
            "message": message,
            "payload_pretty": pretty_json(message.payload),
            "detail_pretty": pretty_json(message.last_error_detail) if message.last_error_detail else "",
            "response_pretty": pretty_json(message.response) if message.response else "",
            "can_change": request.user.has_perm("channels.change_outboxmessage"),
        }
        template = "channels/_outbox_message.html" if request.htmx else "channels/outbox_message.html"
        return render(request, template, context)


class OutboxRetryView(ConsoleView):
    permission_required = "channels.change_outboxmessage"

    def post(self, request, pk: int):
        message = get_object_or_404(OutboxMessage, pk=pk)
        try:
            outbox_retry_now(message=message, actor=request.user.get_username())
            messages.success(request, f"Message #{message.pk} queued again.")
        except DomainError as exc:
            messages.error(request, str(exc))
        return HttpResponseRedirect(_next(request, reverse("channels:outbox")))


# --- reconciliation (channels/reconcile.py) ---------------------------------------------------------


class ReconcileOverviewView(ConsoleView):
    """Every account's last reconciliation of orders and stock, and every node's counts."""

    permission_required = "channels.view_channelaccount"

    def get(self, request):
        context = {
            "section": "channels",
            "rows": selectors.reconcile_overview(),
            "nodes": inventory_selectors.node_count_overview(),
            "can_sync": request.user.has_perm("channels.add_syncrun"),
        }
        return render(request, "channels/reconciliation.html", context)


class AccountReconcileView(ConsoleView):
    """One account's reconciliation: runs (live while one works), drift by kind, the trend, the drifts that
    wait for a person (each linked to its case and order) and the latest ones."""

    permission_required = "channels.view_channelaccount"

    def get(self, request, pk: int):
        return self.render_page(request, pk)

    def render_page(self, request, pk: int, *, status: int = 200):
        account = get_object_or_404(ChannelAccount, pk=pk)
        page = selectors.reconcile_page(account=account)
        context = {
            "section": "channels",
            "account": account,
            "page": page,
            "can_sync": request.user.has_perm("channels.add_syncrun"),
        }
        if request.htmx and request.GET.get("part") == "runs":
            return render(request, "channels/_reconcile_runs.html", context)
        return render(request, "channels/account_reconciliation.html", context, status=status)


class ReconcileNowView(ConsoleView):
    permission_required = "channels.add_syncrun"

    def post(self, request, pk: int):
        account = get_object_or_404(ChannelAccount, pk=pk)
        scope = request.POST.get("scope") or "all"
        if scope not in ("all", *ReconcileScope.values):
            messages.error(request, f"Unknown reconciliation scope {scope[:40]!r}: choose orders, stock or both.")
            return AccountReconcileView().render_page(request, account.pk, status=400)
        channels_reconcile_account_task.delay(account.pk, trigger="manual", scope=scope)
        messages.success(request, f"Reconciliation of {account.name} started; its progress shows below.")
        return HttpResponseRedirect(reverse("channels:account-reconciliation", args=[account.pk]))


# --- end of reconciliation ---------------------------------------------------------------------------


# ---- Ops console: the unmapped-SKU fix and the dashboard's lag tile (exceptions at scale) -----------------


class MapSkuView(ConsoleView):
    """An unmapped-SKU case's fix: pick the Waybill SKU (searchable) for the channel SKU the order held, and
    every order it held on that account is released."""

    permission_required = "channels.change_listing"

    def _context(self, request, case: ExceptionCase, **extra):
        channel_skus = sorted(
            set(
                OrderLine.objects.filter(order_id=case.order_id, sku__isnull=True).values_list("channel_sku", flat=True)
            )
        )
        held = {
            code: OrderLine.objects.filter(
                order__account_id=case.account_id, channel_sku=code, sku__isnull=True, order__on_hold=True
            )
            .values("order_id")
            .distinct()
            .count()
            for code in channel_skus
        }
        choices = [(code, held[code]) for code in channel_skus]
        return {"section": "exceptions", "case": case, "channel_skus": choices, **extra}

    def _case(self, pk: int) -> ExceptionCase:
        return get_object_or_404(ExceptionCase.objects.select_related("order"), pk=pk, kind=ExceptionKind.UNMAPPED_SKU)

    def get(self, request, pk: int):
        case = self._case(pk)
        return render(request, "channels/map_sku.html", self._context(request, case))

    def post(self, request, pk: int):
        case = self._case(pk)
        channel_sku = (request.POST.get("channel_sku") or "").strip()
        code = (request.POST.get("sku") or "").strip()
        errors = []
        if not channel_sku:
            errors.append("Choose the channel SKU to map.")
        sku = Sku.objects.filter(code=code).first() if code else None
        if sku is None:
            errors.append(f"No Waybill SKU with code {code!r}: pick one from the list." if code else "Pick a SKU.")
        if case.account_id is None:
            errors.append("This case names no channel account; map the SKU in the admin's listings.")
        if not errors:
            try:
                released = listing_map(
                    account_id=case.account_id, channel_sku=channel_sku, sku_id=sku.pk, actor=request.user
                )
            except DomainError as exc:
                errors.append(str(exc))
        if errors:
            context = self._context(request, case, errors=errors, chosen=code)
            return render(request, "channels/map_sku.html", context, status=400)
        messages.success(
            request,
            f"{channel_sku} on {case.account.name} is now {sku.code}: {len(released)} order(s) released for routing.",
        )
        return HttpResponseRedirect(_next(request, reverse("orders:exceptions")))


class SkuSearchView(ConsoleView):
    """SKU codes and names for the map-SKU form's search (HTMX: <option>s for a datalist)."""

    permission_required = "inventory.view_sku"

    def get(self, request):
        q = (request.GET.get("sku") or request.GET.get("q") or "").strip()
        skus = Sku.objects.order_by("code").only("code", "name")
        if q:
            skus = skus.filter(Q(code__istartswith=q) | Q(name__icontains=q))
        return render(request, "channels/_sku_options.html", {"skus": skus[:30]})


class DashboardLagView(ConsoleView):
    """The dashboard's tile: each account's sync lag (since its cursor) and push lag (the oldest message
    waiting in its outbox), with what is parked."""

    permission_required = "channels.view_channelaccount"

    def get(self, request):
        rows = selectors.account_health()
        oldest = selectors.outbox_oldest_due_by_account()
        now = timezone.now()
        for row in rows:
            since = oldest.get(row.account.pk)
            row.push_lag_seconds = (now - since).total_seconds() if since else None
        return render(request, "channels/_dashboard_lag.html", {"rows": rows})


class CaseRetryBulkView(ConsoleView):
    """Retry the ticked (or all matching) channel cases of the exception queue: parked outbox messages are
    queued again, failed syncs started again; the other cases are named as having nothing to retry."""

    permission_required = "channels.change_outboxmessage"

    def post(self, request):
        back = _next(request, reverse("orders:exceptions"))
        actor = request.user
        try:
            ids, _ = bulk_selection(request, case_matching(request))
            result = bulk_apply(
                ids=ids,
                action="retry",
                apply=lambda pk: exception_case_retry(
                    case_id=pk, actor=actor, start_sync=channels_sync_account_task.delay
                ),
            )
        except DomainError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(back)
        summary = result.summary("case")
        if result.failed and not result.done:
            messages.error(request, summary)
        elif result.failed:
            messages.warning(request, summary)
        else:
            messages.success(request, summary)
        return HttpResponseRedirect(back)


class OutboxDiscardView(ConsoleView):
    """Give up on a failed or parked message (with a reason): it is never sent; its case is resolved."""

    permission_required = "channels.change_outboxmessage"

    def post(self, request, pk: int):
        back = _next(request, reverse("channels:outbox-detail", args=[pk]))
        try:
            outbox_message_discard(message_id=pk, reason=request.POST.get("reason", ""), actor=request.user)
            messages.success(request, f"Message #{pk} discarded: it will not be sent.")
        except DomainError as exc:
            messages.error(request, f"Not discarded: {exc}")
        return HttpResponseRedirect(back)
