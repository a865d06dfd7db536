"""The Scorecards console: every account's tile, one page per account (value, threshold, lines, state,
90-day trend, Amazon's own numbers), the orders behind a metric (HTML or CSV), backfill and report fetch."""

from __future__ import annotations

import csv
from datetime import date, timedelta

from django.contrib import messages
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone

from channels.models import ChannelAccount
from config.kernel.console import ConsoleView
from config.kernel.errors import DomainError
from scorecards import compute, selectors, tasks
from scorecards.models import MetricDefinition

VIEW = "scorecards.view_metricsnapshot"
MANAGE = "scorecards.change_metricdefinition"


def _day(request) -> date:
    raw = request.GET.get("day", "")
    today = compute.utc_day(timezone.now())
    if not raw:
        return today
    try:
        day = date.fromisoformat(raw)
    except ValueError as exc:
        raise Http404(f"day {raw!r} is not a date (YYYY-MM-DD)") from exc
    return min(day, today)


class ScorecardIndexView(ConsoleView):
    permission_required = VIEW

    def get(self, request):
        accounts = list(ChannelAccount.objects.order_by("name"))
        ids = [a.pk for a in accounts]
        names = {a.pk: a.name for a in accounts}
        context = {
            "section": "scorecards",
            "tiles": selectors.scorecard_tiles(),
            "leakage": selectors.revenue_leakage(account_ids=ids),
            "touches": selectors.manual_touches(account_ids=ids),
            "names": names,
            "backfill": selectors.backfill_latest(),
            "can_manage": request.user.has_perm(MANAGE),
        }
        return render(request, "scorecards/index.html", context)


class TilesView(ConsoleView):
    """The tiles alone, for a page that loads them after itself (``{% scorecard_tiles_lazy %}``)."""

    permission_required = VIEW

    def get(self, request):
        return render(request, "scorecards/_tiles.html", {"tiles": selectors.scorecard_tiles(), "allowed": True})


class AccountScorecardView(ConsoleView):
    permission_required = VIEW

    def get(self, request, account_id: int):
        account = get_object_or_404(ChannelAccount, pk=account_id)
        card = selectors.account_scorecard(account=account, day=_day(request))
        context = {
            "section": "scorecards",
            "card": card,
            "account": account,
            "can_manage": request.user.has_perm(MANAGE),
        }
        return render(request, "scorecards/account.html", context)


class MetricOrdersView(ConsoleView):
    permission_required = VIEW

    def get(self, request, account_id: int, code: str):
        account = get_object_or_404(ChannelAccount, pk=account_id)
        day = _day(request)
        definitions = {d.code: d for d in selectors.definitions_in_force(account.kind, day)}
        definition = definitions.get(code)
        if definition is None:
            raise Http404(f"no metric {code!r} in force for {account.name} on {day}")
        keep = request.GET.get("keep") or None
        if keep not in (None, "all", "numerator", "not_numerator"):
            keep = None
        orders, facts = selectors.metric_order_facts(account=account, definition=definition, day=day, keep=keep)
        orders = list(orders[:5000])
        for order in orders:
            order.metric_facts = facts[order.pk]
        if request.GET.get("format") == "csv":
            return self.csv(account, definition, day, orders)
        context = {
            "section": "scorecards",
            "account": account,
            "definition": definition,
            "day": day,
            "window_from": day - timedelta(days=definition.window_days - 1),
            "orders": orders,
            "keep": keep or ("numerator" if definition.lower_is_better else "not_numerator"),
        }
        return render(request, "scorecards/metric_orders.html", context)

    @staticmethod
    def csv(account, definition: MetricDefinition, day: date, orders) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{account.name}-{definition.code}-{day}.csv"'
        writer = csv.writer(response)
        writer.writerow(
            [
                "order_id",
                "external_id",
                "reference",
                "status",
                "placed_at",
                "ship_by",
                "deliver_by",
                "cancel_initiator",
                "confirmation_accepted_at",
                "first_carrier_scan_at",
                "promise",
                "delivered_at",
                "counts_in_numerator",
            ]
        )

        def moment(value) -> str:
            return value.isoformat() if value else ""

        for o in orders:
            f = o.metric_facts
            writer.writerow(
                [
                    o.pk,
                    o.external_id,
                    o.external_reference,
                    o.status,
                    o.placed_at.isoformat(),
                    o.ship_by.isoformat() if o.ship_by else "",
                    o.deliver_by.isoformat() if o.deliver_by else "",
                    o.cancel_initiator,
                    moment(f.confirmed_at),
                    moment(f.scan_at),
                    moment(f.promise),
                    moment(f.delivered_at),
                    "yes" if f.in_numerator else "no",
                ]
            )
        return response


class BackfillView(ConsoleView):
    permission_required = MANAGE

    def post(self, request):
        try:
            days = int(request.POST.get("days", "90"))
        except ValueError:
            days = 0
        if not 1 <= days <= 3 * 366:
            messages.error(request, f"A backfill covers 1 to {3 * 366} days; {request.POST.get('days')!r} is not that.")
        else:
            tasks.scorecards_backfill_task.delay(days, request.user.get_username())
            messages.success(request, f"Backfill of {days} days started; its progress shows below.")
        return HttpResponseRedirect(reverse("scorecards:index"))


class AccountHealthFetchView(ConsoleView):
    permission_required = MANAGE

    def post(self, request, account_id: int):
        account = get_object_or_404(ChannelAccount, pk=account_id)
        from scorecards.services import account_health_fetch

        try:
            account_health_fetch(account=account, actor=request.user)
            messages.success(request, "Amazon's Account Health report fetched.")
        except DomainError as exc:
            messages.error(request, str(exc))
        except Exception as exc:  # the channel's own failure: say it, lose nothing
            messages.error(request, f"Amazon's Account Health report could not be fetched: {exc}")
        return HttpResponseRedirect(reverse("scorecards:account", args=[account.pk]))
