"""Every console form and list page, fuzzed: whatever is posted or put in the query string, the answer is a
page or a clear 4xx, never a 500 (ASVS 5.1.3, 5.1.4). The examples are bounded (WAYBILL_FUZZ_EXAMPLES).

The pages come from the URL resolver: a console view added without an entry in CONSOLE below fails
``test_every_console_route_is_fuzzed``, so a new form cannot escape the fuzzing."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.kernel.console import ConsoleView
from fulfillment import services as fulfillment_services
from fulfillment.models import Shipment
from inventory import services as inventory_services
from inventory.models import StockCountProposal
from orders.models import ExceptionCase, ExceptionKind, Hold, HoldKind
from returns import services as returns_services
from tests.factories import InboundLineFactory, LocationFactory
from tests.returns.helpers import shipped_order

pytestmark = pytest.mark.django_db
EXAMPLES = int(os.environ.get("WAYBILL_FUZZ_EXAMPLES", "5")) * 3

# Values a careless or hostile user types: numbers at and past the integer columns' range, signs, blanks,
# long and non-Latin text, digits Python reads but int() does not, markup, the names of other fields'
# choices, off-site URLs.
NASTY = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "1.5",
            "2147483648",
            "9223372036854775808",
            "99999999999999999999999999",
            "1e309",
            "NaN",
            "Infinity",
            "\u00b2",
            "\u0661\u0662",
            "\uff11\uff12\uff13",
            "manual",
            "fraud",
            "inspect",
            "restock",
            "EAST",
            "on",
            "<script>alert(1)</script>",
            "https://evil.example/",
            "//evil.example",
            "x" * 5000,
            "2026-13-45T25:61:00Z",
            "0001-01-01T00:00:00-17:01",
            "9999-12-31",
        ]
    ),
    st.text(max_size=300),
)
# The names the console's forms read (their Form fields and the keys views take from request.POST/GET),
# including the per-row names ({line} and {order_line} stand for a real row's id).
FIELDS = [
    "account",
    "action",
    "assignee",
    "authorize",
    "bucket",
    "channel",
    "channel_sku",
    "city",
    "company",
    "country_code",
    "cursor",
    "customer_note",
    "day",
    "days",
    "delta",
    "disposition",
    "email",
    "exchange_policy",
    "format",
    "idempotency_key",
    "ids",
    "initiator",
    "keep",
    "key",
    "kind",
    "line1",
    "line2",
    "line3",
    "line_{line}",
    "lines",
    "location",
    "mode",
    "name",
    "next",
    "node",
    "note",
    "order_lines",
    "ordering",
    "overdue_after_days",
    "page_size",
    "part",
    "phone",
    "postal_code",
    "q",
    "qty-{order_line}",
    "quantity",
    "query",
    "reason",
    "reference",
    "region",
    "return_location",
    "scope",
    "select_all",
    "shipment",
    "shipments",
    "shipping",
    "shipping_method",
    "sku",
    "status",
    "tracking",
    "unit_price",
    "whole_order",
]
VALUE = st.one_of(NASTY, st.lists(NASTY, min_size=1, max_size=3))
HYPOTHESIS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

# URL name -> the path to fuzz, with {placeholders} filled from the world below. Several actions of one
# route are listed by their own key (name#variant). An unknown id is fuzzed as well where it matters.
CONSOLE = {
    "dashboard": ["/"],
    "orders:list": ["/orders/"],
    "orders:export": ["/orders/export.csv"],
    "orders:bulk": ["/orders/bulk/"],
    "orders:ship-to": ["/orders/{order}/ship-to/"],
    "orders:service-level": ["/orders/{order}/service-level/"],
    "orders:exceptions-export": ["/orders/exceptions/export.csv"],
    "orders:exceptions-bulk": ["/orders/exceptions/bulk/"],
    "orders:detail": ["/orders/{order}/", "/orders/999999999/"],
    "orders:hold-place": ["/orders/{order}/holds/", "/orders/999999999/holds/"],
    "orders:hold-release": ["/orders/holds/{hold}/release/"],
    "orders:exceptions": ["/orders/exceptions/"],
    "orders:exception-groups": ["/orders/exceptions/groups/"],
    "orders:exception-action": [
        "/orders/exceptions/{case}/acknowledge/",
        "/orders/exceptions/{case}/resolve/",
        "/orders/exceptions/{case}/no-such-action/",
    ],
    "inventory:grid": ["/inventory/"],
    "inventory:export": ["/inventory/export.csv"],
    "inventory:inbound-export": ["/inventory/inbound/export.csv"],
    "inventory:sku": ["/inventory/skus/{sku}/"],
    "inventory:adjust": ["/inventory/skus/{sku}/adjust/", "/inventory/skus/NO-SUCH-SKU/adjust/"],
    "inventory:inbound": ["/inventory/inbound/"],
    "inventory:inbound-detail": ["/inventory/inbound/{inbound}/"],
    "inventory:inbound-receive": ["/inventory/inbound/{inbound}/receive/"],
    "inventory:node-counts": ["/inventory/nodes/{count_node}/counts/"],
    "inventory:node-count-decide": [
        "/inventory/nodes/{count_node}/counts/{proposal}/apply/",
        "/inventory/nodes/{count_node}/counts/{proposal}/dismiss/",
        "/inventory/nodes/{count_node}/counts/{proposal}/no-such-decision/",
    ],
    "fulfillment:board": ["/fulfillment/"],
    "fulfillment:shipment": ["/fulfillment/shipments/{shipment}/"],
    "fulfillment:reroute": ["/fulfillment/orders/{order}/reroute/"],
    "fulfillment:simulator": ["/fulfillment/simulator/"],
    "fulfillment:shipments": ["/fulfillment/shipments/"],
    "fulfillment:shipments-bulk": ["/fulfillment/shipments/bulk/"],
    "fulfillment:shipments-export": ["/fulfillment/shipments/export.csv"],
    "fulfillment:resend-confirmation": ["/fulfillment/shipments/{shipment}/resend-confirmation/"],
    "fulfillment:shipment-split": ["/fulfillment/shipments/{shipment}/split/"],
    "fulfillment:shipments-merge": ["/fulfillment/orders/{order}/merge-shipments/"],
    "fulfillment:order-cancel": ["/fulfillment/orders/{order}/cancel/"],
    "fulfillment:order-backorder": ["/fulfillment/orders/{order}/backorder/"],
    "fulfillment:bulk-reroute": ["/fulfillment/orders/bulk-reroute/"],
    "fulfillment:cases-fix": ["/fulfillment/cases/fix/"],
    "fulfillment:dashboard-carriers": ["/fulfillment/dashboard/carriers/"],
    "returns:queue": ["/returns/"],
    "returns:export": ["/returns/export.csv"],
    "returns:scan": ["/returns/scan/"],
    "returns:report": ["/returns/report/"],
    "returns:create": ["/returns/new/{shipped}/", "/returns/new/999999999/"],
    "returns:detail": ["/returns/{rma}/"],
    "returns:receive": ["/returns/{rma}/receive/"],
    "returns:refund": ["/returns/{rma}/refund/"],
    "returns:exchange": ["/returns/{rma}/exchange/"],
    "returns:refund-record": ["/returns/{rma}/refunds/999999999/record/"],
    "returns:action": [
        "/returns/{rma}/authorize/",
        "/returns/{rma}/in-transit/",
        "/returns/{rma}/reject/",
        "/returns/{rma}/no-such-action/",
    ],
    "channels:accounts": ["/channels/"],
    "channels:account": ["/channels/{account}/"],
    "channels:sync-now": ["/channels/{account}/sync/"],
    "channels:runs": ["/channels/runs/"],
    "channels:runs-export": ["/channels/runs/export.csv"],
    "channels:inbound-export": ["/channels/inbound/export.csv"],
    "channels:outbox-export": ["/channels/outbox/export.csv"],
    "channels:inbound": ["/channels/inbound/"],
    "channels:inbound-reprocess": ["/channels/inbound/1/reprocess/"],
    "channels:inbound-discard": ["/channels/inbound/1/discard/"],
    "channels:outbox": ["/channels/outbox/"],
    "channels:outbox-detail": ["/channels/outbox/1/"],
    "channels:outbox-retry": ["/channels/outbox/1/retry/"],
    "channels:outbox-discard": ["/channels/outbox/1/discard/"],
    "channels:reconciliation": ["/channels/reconciliation/"],
    "channels:account-reconciliation": ["/channels/{account}/reconciliation/"],
    "channels:reconcile-now": ["/channels/{account}/reconcile/"],
    "channels:map-sku": ["/channels/cases/{case}/map-sku/"],
    "channels:sku-search": ["/channels/skus/search/"],
    "channels:dashboard-lag": ["/channels/dashboard/lag/"],
    "channels:cases-retry": ["/channels/cases/retry/"],
    "scorecards:index": ["/scorecards/"],
    "scorecards:backfill": ["/scorecards/backfill/"],
    "scorecards:tiles": ["/scorecards/tiles/"],
    "scorecards:account": ["/scorecards/{account}/", "/scorecards/999999999/"],
    "scorecards:account-health": ["/scorecards/{account}/account-health/"],
    "scorecards:metric-orders": ["/scorecards/{account}/late_shipment_rate/orders/"],
    "console-section-scorecards": ["/scorecards/"],
}


def _console_routes(patterns=None, namespace=""):
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            yield from _console_routes(entry.url_patterns, entry.namespace or namespace)
        elif isinstance(entry, URLPattern):
            view_class = getattr(entry.callback, "view_class", None)
            if view_class is not None and issubclass(view_class, ConsoleView):
                name = f"{namespace}:{entry.name}" if namespace else entry.name
                yield name, view_class


ROUTES = dict(_console_routes())
GETS = [(name, path) for name, view in ROUTES.items() if hasattr(view, "get") for path in CONSOLE.get(name, [])]
POSTS = [(name, path) for name, view in ROUTES.items() if hasattr(view, "post") for path in CONSOLE.get(name, [])]


def test_every_console_route_is_fuzzed():
    # A console view added without a path here would escape the fuzzing below.
    assert set(ROUTES) - set(CONSOLE) == set()
    assert set(CONSOLE) - set(ROUTES) == set(), "a fuzzed route is no longer served: remove it"


@pytest.fixture
def world(node, put_stock, order_for, skus):
    east = node("EAST", "10001")
    put_stock(skus[0], east, 5)
    order = order_for([(skus[0], 1)], postal_code="10001")
    fulfillment_services.orders_route(order_ids=[order.pk], actor="router")
    hold = Hold.objects.create(order=order, kind=HoldKind.MANUAL, reason="r", placed_by="t")
    case = ExceptionCase.objects.create(kind=ExceptionKind.OTHER, title="t", dedupe_key="fuzz", opened_by="t")
    inbound_line = InboundLineFactory(sku=skus[1], shipment__location=east)
    # a shipped order with an RMA open on it, and a stock count beyond a node's tolerance (a proposal)
    shipped, shipped_lines = shipped_order(units=2, price="10.00")
    rma = returns_services.rma_create(
        order_id=shipped.pk, lines=[returns_services.ReturnLineInput(shipped_lines[0].pk, 1)], actor="t"
    )
    counted = LocationFactory(code="CNT", count_tolerance_units=0)
    put_stock(skus[0], counted, 10)
    inventory_services.stock_snapshot_apply(
        rows=[{"sku": skus[0].code, "location": "CNT", "on_hand": 3}], idempotency_key="fuzz", actor="t", source="t"
    )
    proposal = StockCountProposal.objects.get(location=counted)
    assert Decimal(shipped.total_amount) > 0
    return {
        "order": order.pk,
        "hold": hold.pk,
        "case": case.pk,
        "sku": skus[0].code,
        "inbound": inbound_line.shipment_id,
        "line": inbound_line.pk,
        "shipment": Shipment.objects.get(order=order).pk,
        "account": order.account_id,
        "shipped": shipped.pk,
        "order_line": shipped_lines[0].pk,
        "rma": rma.pk,
        "count_node": counted.code,
        "proposal": proposal.pk,
    }


def _form(world):
    names = [name.format(**world) for name in FIELDS]
    return st.dictionaries(st.sampled_from(names), VALUE, max_size=8)


@pytest.mark.parametrize(("name", "path"), POSTS, ids=[path for _, path in POSTS])
def test_no_form_post_gets_a_500(client, admin_user, world, name, path):
    client.force_login(admin_user)
    url = path.format(**world)

    @HYPOTHESIS
    @given(form=_form(world))
    def post(form):
        response = client.post(url, form)
        assert response.status_code < 500, (url, form, response.status_code)

    post()


@pytest.mark.parametrize(("name", "path"), GETS, ids=[path for _, path in GETS])
def test_no_query_string_gets_a_500(client, admin_user, world, name, path):
    client.force_login(admin_user)
    url = path.format(**world)

    @HYPOTHESIS
    @given(params=_form(world))
    def get(params):
        response = client.get(url, params)
        assert response.status_code < 500, (url, params, response.status_code)
        if response.streaming:  # a CSV export: its rows are read as they stream, so read them all
            b"".join(response.streaming_content)

    get()
