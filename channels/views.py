"""Channel screens: account health and one account's page, sync runs (live), failed inbound events
(re-process, discard), the outbox (a message's page shows the channel's whole error answer)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from channels import selectors
from channels.connectors.base import ChannelError
from channels.inbound import inbound_event_discard, inbound_event_reprocess
from channels.models import ChannelAccount, InboundEvent, InboundStatus, OutboxMessage, OutboxStatus, SyncStatus
from channels.outbox import outbox_retry_now
from channels.services import connector_for
from channels.sync import account_lock
from channels.tasks import channels_sync_account_task
from config.kernel.console import ConsoleView
from config.kernel.errors import DomainError
from config.kernel.redirects import safe_next

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


class SyncRunListView(ConsoleView):
    permission_required = "channels.view_syncrun"

    def get(self, request):
        account_id = _int(request.GET.get("account"))
        runs = list(selectors.sync_run_list(account_id=account_id)[:PAGE])
        context = {
            "section": "channels",
            "runs": runs,
            "account_id": account_id,
            "accounts": ChannelAccount.objects.order_by("name"),
            "live": any(run.status == SyncStatus.RUNNING for run in runs),
        }
        template = "channels/_runs.html" if request.htmx else "channels/runs.html"
        return render(request, template, context)


class InboundEventListView(ConsoleView):
    permission_required = "channels.view_inboundevent"

    def get(self, request):
        status = request.GET.get("status", InboundStatus.FAILED)
        status = status if status in InboundStatus.values else None
        account_id = _int(request.GET.get("account"))
        context = {
            "section": "channels",
            "events": list(selectors.inbound_event_list(status=status, account_id=account_id)[:PAGE]),
            "status": status or "",
            "statuses": InboundStatus.choices,
            "account_id": account_id,
            "accounts": ChannelAccount.objects.order_by("name"),
            "can_change": request.user.has_perm("channels.change_inboundevent"),
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
        status = request.GET.get("status") or None
        status = status if status in OutboxStatus.values else None
        account_id = _int(request.GET.get("account"))
        context = {
            "section": "channels",
            "messages_list": list(selectors.outbox_list(status=status, account_id=account_id)[:PAGE]),
            "status": status or "",
            "statuses": OutboxStatus.choices,
            "account_id": account_id,
            "accounts": ChannelAccount.objects.order_by("name"),
            "can_change": request.user.has_perm("channels.change_outboxmessage"),
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
