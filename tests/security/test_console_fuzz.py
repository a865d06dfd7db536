"""Every console form and list page, fuzzed: whatever is posted or put in the query string, the answer is a
page or a clear 4xx, never a 500 (ASVS 5.1.3, 5.1.4). The examples are bounded (WAYBILL_FUZZ_EXAMPLES)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fulfillment import services as fulfillment_services
from fulfillment.models import Shipment
from orders.models import ExceptionCase, ExceptionKind, Hold, HoldKind
from tests.factories import InboundLineFactory

pytestmark = pytest.mark.django_db
EXAMPLES = int(os.environ.get("WAYBILL_FUZZ_EXAMPLES", "5")) * 3

# Values a careless or hostile user types: numbers at and past the integer columns' range, signs, blanks,
# long and non-Latin text, markup, the names of other fields' choices, off-site URLs.
NASTY = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "2147483648",
            "9223372036854775808",
            "1e309",
            "NaN",
            "manual",
            "fraud",
            "EAST",
            "<script>alert(1)</script>",
            "https://evil.example/",
            "//evil.example",
            "x" * 5000,
            "\uff11\uff12\uff13",
            "2026-13-45T25:61:00Z",
            "0001-01-01T00:00:00-17:01",
        ]
    ),
    st.text(max_size=300),
)
FIELDS = [
    "kind",
    "reason",
    "note",
    "location",
    "delta",
    "reference",
    "idempotency_key",
    "days",
    "next",
    "line_1",
    "node",
    "status",
    "account",
    "cursor",
    "ordering",
    "q",
    "page_size",
    "action",
    "ids",
    "select_all",
    "query",
    "assignee",
    "shipping_method",
    "whole_order",
    "initiator",
    "postal_code",
    "country_code",
    "channel_sku",
    "sku",
    "shipment",
    "lines",
]
FORM = st.dictionaries(st.sampled_from(FIELDS), NASTY, max_size=8)
HYPOTHESIS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture
def world(node, put_stock, order_for, skus):
    east = node("EAST", "10001")
    put_stock(skus[0], east, 5)
    order = order_for([(skus[0], 1)], postal_code="10001")
    fulfillment_services.orders_route(order_ids=[order.pk], actor="router")
    hold = Hold.objects.create(order=order, kind=HoldKind.MANUAL, reason="r", placed_by="t")
    case = ExceptionCase.objects.create(kind=ExceptionKind.OTHER, title="t", dedupe_key="fuzz", opened_by="t")
    inbound = InboundLineFactory(sku=skus[1], shipment__location=east).shipment
    return {
        "order": order.pk,
        "hold": hold.pk,
        "case": case.pk,
        "sku": skus[0].code,
        "inbound": inbound.pk,
        "shipment": Shipment.objects.get(order=order).pk,
        "account": order.account_id,
    }


POSTS = [
    "/orders/{order}/holds/",
    "/orders/holds/{hold}/release/",
    "/orders/exceptions/{case}/acknowledge/",
    "/orders/exceptions/{case}/resolve/",
    "/orders/exceptions/{case}/no-such-action/",
    "/inventory/skus/{sku}/adjust/",
    "/inventory/inbound/{inbound}/receive/",
    "/fulfillment/orders/{order}/reroute/",
    "/fulfillment/simulator/",
    "/channels/inbound/1/reprocess/",
    "/channels/inbound/1/discard/",
    "/channels/outbox/1/retry/",
    "/orders/999999999/holds/",
    "/inventory/skus/NO-SUCH-SKU/adjust/",
    # the ops console's bulk actions, fixes and overrides
    "/orders/bulk/",
    "/orders/exceptions/bulk/",
    "/orders/{order}/ship-to/",
    "/orders/{order}/service-level/",
    "/fulfillment/orders/{order}/cancel/",
    "/fulfillment/orders/{order}/backorder/",
    "/fulfillment/orders/bulk-reroute/",
    "/fulfillment/cases/fix/",
    "/fulfillment/shipments/bulk/",
    "/fulfillment/shipments/{shipment}/resend-confirmation/",
    "/fulfillment/shipments/{shipment}/split/",
    "/fulfillment/orders/{order}/merge-shipments/",
    "/channels/cases/retry/",
    "/channels/cases/{case}/map-sku/",
    "/channels/outbox/1/discard/",
]
GETS = [
    "/orders/",
    "/orders/{order}/",
    "/orders/exceptions/",
    "/inventory/",
    "/inventory/skus/{sku}/",
    "/inventory/inbound/",
    "/inventory/inbound/{inbound}/",
    "/fulfillment/",
    "/fulfillment/shipments/{shipment}/",
    "/fulfillment/simulator/",
    "/channels/",
    "/channels/{account}/",
    "/channels/runs/",
    "/channels/inbound/",
    "/channels/outbox/",
    "/",
    "/fulfillment/shipments/",
    "/orders/exceptions/groups/",
    "/channels/skus/search/",
    "/channels/cases/{case}/map-sku/",
    "/orders/export.csv",
    "/orders/exceptions/export.csv",
    "/fulfillment/shipments/export.csv",
    "/channels/outbox/export.csv",
    "/channels/inbound/export.csv",
    "/channels/runs/export.csv",
    "/inventory/export.csv",
    "/inventory/inbound/export.csv",
    "/returns/export.csv",
]


@pytest.mark.parametrize("path", POSTS)
def test_no_form_post_gets_a_500(client, admin_user, world, path):
    client.force_login(admin_user)
    url = path.format(**world)

    @HYPOTHESIS
    @given(form=FORM)
    def post(form):
        response = client.post(url, form)
        assert response.status_code < 500, (url, form, response.status_code)

    post()


@pytest.mark.parametrize("path", GETS)
def test_no_query_string_gets_a_500(client, admin_user, world, path):
    client.force_login(admin_user)
    url = path.format(**world)

    @HYPOTHESIS
    @given(params=FORM)
    def get(params):
        response = client.get(url, params)
        assert response.status_code < 500, (url, params, response.status_code)
        if response.streaming:  # a CSV export: its rows are read as they stream, so read them all
            b"".join(response.streaming_content)

    get()
