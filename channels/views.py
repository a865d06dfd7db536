"""Channel screens: account health, sync runs (live), failed inbound events, the outbox."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from channels import selectors
from channels.connectors import connector_for
from channels.connectors.base import ChannelError
from channels.inbound import inbound_event_reprocess
from channels.models import ChannelAccount, InboundEvent, InboundStatus, OutboxMessage, OutboxStatus, SyncStatus
from channels.outbox import outbox_retry_now
from channels.sync import account_lock
from channels.tasks import channels_sync_account_task
from orders.errors import DomainError
from orders.views import ConsoleView

PAGE = 100


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
        event = get_object_or_404(InboundEvent.objects.select_related("account"), pk=pk)
        try:
            with account_lock(event.account_id) as acquired:
                if not acquired:
                    raise DomainError(f"{event.account.name} is syncing right now; try again in a moment")
                connector = connector_for(event.account)
                try:
                    event = inbound_event_reprocess(event=event, connector=connector, actor=request.user.get_username())
                finally:
                    connector.close()
            if event.status == InboundStatus.PROCESSED:
                messages.success(request, f"Event #{event.pk} processed.")
            else:
                messages.error(request, f"Event #{event.pk} failed again: {event.error}")
        except (DomainError, ChannelError) as exc:
            messages.error(request, str(exc))
        return HttpResponseRedirect(request.POST.get("next") or reverse("channels:inbound"))


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


class OutboxRetryView(ConsoleView):
    permission_required = "channels.change_outboxmessage"

    def post(self, request, pk: int):
        message = get_object_or_404(OutboxMessage, pk=pk)
        try:
            outbox_retry_now(message=message, actor=request.user.get_username())
            messages.success(request, f"Message #{message.pk} queued again.")
        except DomainError as exc:
            messages.error(request, str(exc))
        return HttpResponseRedirect(request.POST.get("next") or reverse("channels:outbox"))
