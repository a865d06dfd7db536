"""The console lists' rows, prepared once per page in Python: each value a row shows is formatted here
(links, dates, money, the case's one-click fix), so the templates' row loops only print strings. A template
row loop that resolves lookups, filters, ``{% url %}`` and includes per cell was most of a list request at a
million orders; the output is the same."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from django.middleware.csrf import get_token
from django.template.defaultfilters import timesince_filter
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from orders.models import CaseStatus, ExceptionCase, ExceptionKind, Order, OrderStatus, Severity

_SENTINEL = 2147483647
EMPTY_HTML = SafeString("")
# Kinds whose fix is to reroute or cancel the order.
REROUTE_KINDS = frozenset(
    {
        ExceptionKind.NO_NODE,
        ExceptionKind.INSUFFICIENT_STOCK,
        ExceptionKind.SHORT_PICK,
        ExceptionKind.SHIP_BY_UNREACHABLE,
        ExceptionKind.OVER_CAPACITY,
        ExceptionKind.SHIP_BY_AT_RISK,
        ExceptionKind.LATE_SHIPMENT,
    }
)


def format_time(value, fmt: str) -> str:
    """The ``date`` filter's output for the formats the lists use, in the current time zone."""
    return timezone.localtime(value).strftime(fmt) if value is not None else ""


def truncatechars(value: str, length: int) -> str:
    """The ``truncatechars`` filter: at most ``length`` characters, the last one an ellipsis when cut."""
    return value if len(value) <= length else value[: length - 1] + "…"


def pk_url(name: str, *after: str) -> Callable[[int], str]:
    """``reverse(name, args=[pk, *after])`` for many pks at the cost of one reverse."""
    head, tail = reverse(name, args=[_SENTINEL, *after]).split(str(_SENTINEL), 1)
    return lambda pk: f"{head}{pk}{tail}"


@dataclass(frozen=True, slots=True)
class OrderRow:
    pk: int
    label: str
    url: str
    account_name: str
    customer: str
    status: str
    status_label: str
    marketplace_fulfilled: bool
    placed: str
    ship_by: str
    total: str
    on_hold: bool
    html: SafeString


ORDER_ROW = (
    '<tr data-row="{pk}">{tick}<td><a class="open" href="{url}">{label}</a></td><td>{account}</td>'
    '<td>{customer}</td><td><span class="badge status-{status}">{status_label}</span>{marketplace}</td>'
    "<td>{placed}</td><td>{ship_by}</td><td>{total}</td><td>{hold}</td></tr>"
)
ORDER_TICK = (
    '<td><input type="checkbox" form="order-bulk" name="ids" value="{}" class="row-check"'
    ' aria-label="Tick order {}"></td>'
)
MARKETPLACE_BADGE = mark_safe(' <span class="badge">marketplace</span>')
HOLD_BADGE = mark_safe('<span class="badge hold">on hold</span>')


def order_rows(orders: Iterable[Order], *, can_tick: bool = False) -> list[OrderRow]:
    """The order list's rows; ``html`` is the row's ``<tr>`` (with the tick box when ``can_tick``)."""
    detail = pk_url("orders:detail")
    labels = dict(OrderStatus.choices)
    rows = []
    for o in orders:
        values = {
            "pk": o.pk,
            "label": str(o),
            "url": detail(o.pk),
            "account_name": o.account.name,
            "customer": truncatechars(o.customer_name, 28),
            "status": o.status,
            "status_label": labels.get(o.status, o.status),
            "marketplace_fulfilled": o.marketplace_fulfilled,
            "placed": format_time(o.placed_at, "%Y-%m-%d %H:%M"),
            "ship_by": format_time(o.ship_by, "%Y-%m-%d %H:%M") or "—",
            "total": f"{o.total_amount:,} {o.currency}",
            "on_hold": o.on_hold,
        }
        html = format_html(
            ORDER_ROW,
            pk=o.pk,
            tick=format_html(ORDER_TICK, o.pk, values["label"]) if can_tick else "",
            url=values["url"],
            label=values["label"],
            account=values["account_name"],
            customer=values["customer"],
            status=o.status,
            status_label=values["status_label"],
            marketplace=MARKETPLACE_BADGE if o.marketplace_fulfilled else "",
            placed=values["placed"],
            ship_by=values["ship_by"],
            total=values["total"],
            hold=HOLD_BADGE if o.on_hold else "",
        )
        rows.append(OrderRow(**values, html=html))
    return rows


@dataclass(frozen=True, slots=True)
class CaseFix:
    label: str
    url: str


def case_fix(case: ExceptionCase, *, can_map_sku: bool) -> CaseFix | None:
    """The one-click fix a case offers, by kind: where the case says what is wrong, the fix is one call."""
    if case.status == CaseStatus.RESOLVED:
        return None
    if case.kind == ExceptionKind.UNMAPPED_SKU and can_map_sku:
        return CaseFix("Map SKU", reverse("channels:map-sku", args=[case.pk]))
    if case.kind == ExceptionKind.OUTBOX_PARKED and case.outbox_message_id:
        return CaseFix("Answer · retry · discard", reverse("channels:outbox-detail", args=[case.outbox_message_id]))
    if case.kind == ExceptionKind.SYNC_FAILURE and case.account_id:
        return CaseFix("Retry sync", reverse("channels:account", args=[case.account_id]))
    if case.kind == ExceptionKind.ADDRESS and case.order_id:
        return CaseFix("Edit address", reverse("orders:detail", args=[case.order_id]) + "#ship-to")
    if case.kind in REROUTE_KINDS and case.order_id:
        return CaseFix("Reroute · cancel", reverse("orders:detail", args=[case.order_id]) + "#fix")
    if case.shipment_id:
        return CaseFix("Tracking", reverse("fulfillment:shipment", args=[case.shipment_id]))
    if case.order_id:
        return CaseFix("Order", reverse("orders:detail", args=[case.order_id]))
    return None


@dataclass(frozen=True, slots=True)
class CaseRow:
    pk: int
    severity: str
    severity_label: str
    kind_label: str
    title: str
    detail: str
    order_url: str
    order_label: str
    status: str
    status_label: str
    owner: str
    due: str
    due_is_ship_by: bool
    age: str
    fix: CaseFix | None
    take_url: str
    acknowledge_url: str
    resolve_url: str
    html: SafeString = EMPTY_HTML


CASE_ROW = (
    '<tr data-row="{pk}">{tick}<td>{pk}</td><td><span class="badge severity-{severity}">{severity_label}</span></td>'
    '<td>{kind_label}</td><td class="wrap" title="{detail}">{title}</td><td>{order}</td><td>{status_label}</td>'
    '<td>{owner}</td><td>{due}</td><td>{age}</td><td>{fix}</td><td class="actions">{actions}</td></tr>'
)
CASE_TICK = (
    '<td><input type="checkbox" form="case-bulk" name="ids" value="{}" aria-label="Tick case {}"'
    ' class="row-check"></td>'
)
CASE_TAKE = (
    '<form method="post" action="{}">{}{}<button class="outline small" type="submit" data-action="assign">Take'
    "</button></form>"
)
CASE_ACK = (
    '<form method="post" action="{}">{}{}<button class="outline secondary small" type="submit" data-action="ack">'
    "Ack</button></form>"
)
CASE_RESOLVE = (
    '<details class="resolve"><summary data-action="resolve">Resolve</summary><form method="post" action="{}">{}{}'
    '<label>Note <input name="note" required maxlength="4000"></label><button type="submit" class="small">Resolve'
    "</button></form></details>"
)


def _case_row_html(row: CaseRow, *, can_change: bool, csrf_input: str, next_input: str) -> SafeString:
    actions = ""
    if can_change and row.status != CaseStatus.RESOLVED:
        ack = format_html(CASE_ACK, row.acknowledge_url, csrf_input, next_input) if row.status == "open" else ""
        actions = format_html(
            "{}{}{}",
            format_html(CASE_TAKE, row.take_url, csrf_input, next_input),
            ack,
            format_html(CASE_RESOLVE, row.resolve_url, csrf_input, next_input),
        )
    return format_html(
        CASE_ROW,
        pk=row.pk,
        tick=format_html(CASE_TICK, row.pk, row.pk) if can_change else "",
        severity=row.severity,
        severity_label=row.severity_label,
        kind_label=row.kind_label,
        detail=row.detail,
        title=row.title,
        order=format_html('<a class="open" href="{}">{}</a>', row.order_url, row.order_label) if row.order_url else "—",
        status_label=row.status_label,
        owner=row.owner,
        due=format_html('<span title="the order\'s ship-by">{}</span>', row.due) if row.due_is_ship_by else row.due,
        age=row.age,
        fix=format_html('<a class="fix" href="{}">{}</a>', row.fix.url, row.fix.label) if row.fix else "",
        actions=actions,
    )


def case_rows(
    cases: Iterable[ExceptionCase],
    *,
    can_map_sku: bool,
    can_change: bool = False,
    csrf_input: str = "",
    next_input: str = "",
) -> list[CaseRow]:
    """Rows of the exception queue; ``cases`` come with their order and owner joined. ``html`` is the row's
    ``<tr>``: the tick box and the Take / Ack / Resolve forms when ``can_change`` (with the forms' hidden
    inputs, ``row_form_inputs``)."""
    detail = pk_url("orders:detail")
    take, acknowledge, resolve = (
        pk_url("orders:exception-action", a) for a in ("assign-to-me", "acknowledge", "resolve")
    )
    severities, kinds, statuses = dict(Severity.choices), dict(ExceptionKind.choices), dict(CaseStatus.choices)
    rows = []
    for case in cases:
        order = case.order
        if case.due_at:
            due, due_is_ship_by = format_time(case.due_at, "%m-%d %H:%M"), False
        elif order is not None and order.ship_by:
            due, due_is_ship_by = format_time(order.ship_by, "%m-%d %H:%M"), True
        else:
            due, due_is_ship_by = "—", False
        row = CaseRow(
            pk=case.pk,
            severity=case.severity,
            severity_label=severities.get(case.severity, case.severity),
            kind_label=kinds.get(case.kind, case.kind),
            title=truncatechars(case.title, 60),
            detail=case.detail,
            order_url=detail(case.order_id) if order is not None else "",
            order_label=truncatechars(str(order), 18) if order is not None else "",
            status=case.status,
            status_label=statuses.get(case.status, case.status),
            owner=str(case.owner) if case.owner is not None else "—",
            due=due,
            due_is_ship_by=due_is_ship_by,
            age=truncatechars(timesince_filter(case.created_at).replace(" ", ""), 12),
            fix=case_fix(case, can_map_sku=can_map_sku),
            take_url=take(case.pk),
            acknowledge_url=acknowledge(case.pk),
            resolve_url=resolve(case.pk),
        )
        html = _case_row_html(row, can_change=can_change, csrf_input=csrf_input, next_input=next_input)
        rows.append(replace(row, html=html))
    return rows


def row_form_inputs(request) -> tuple[SafeString, SafeString]:
    """The hidden inputs every row's forms carry (the CSRF token, the page to come back to), built once."""
    return (
        format_html('<input type="hidden" name="csrfmiddlewaretoken" value="{}">', get_token(request)),
        format_html('<input type="hidden" name="next" value="{}">', request.get_full_path()),
    )
