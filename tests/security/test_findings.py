"""One test per finding of the security review (issue #21): each failed before its fix."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from channels.models import ChannelKind, InboundEvent
from channels.services import channel_account_set_credentials
from fulfillment import services as fulfillment_services
from fulfillment.models import Shipment, ShipmentStatus
from inventory.models import StockLevel, StockMovement
from orders.models import ExceptionCase, ExceptionKind, Hold
from tests.factories import (
    ChannelAccountFactory,
    LocationFactory,
    OrderFactory,
    OrderLineFactory,
    SkuFactory,
    StockLevelFactory,
)
from tests.nodes import node_client

pytestmark = pytest.mark.django_db
INT32 = 2**31


@pytest.fixture
def stock(db):
    return StockLevelFactory(sku=SkuFactory(code="TEE"), location=LocationFactory(code="DAL"), on_hand=10)


# --- integers beyond the column's range, NUL bytes, deep JSON, unknown ids, bad cursors: 4xx, never 500 ---


@pytest.mark.parametrize("delta", [INT32, -INT32, 2**63, 10**30])
def test_a_stock_adjustment_beyond_the_column_range_is_a_400(api_client, admin_user, stock, delta):
    api_client.force_authenticate(admin_user)
    response = api_client.post(
        "/api/v1/stock-adjustments/",
        {"sku": "TEE", "location": "DAL", "delta": delta, "reason": "count", "idempotency_key": f"k{delta}"},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "delta" in response.json()
    assert StockLevel.objects.get(pk=stock.pk).on_hand == 10


def test_an_adjustment_that_would_overflow_on_hand_is_a_400_and_changes_nothing(api_client, admin_user, stock):
    api_client.force_authenticate(admin_user)
    response = api_client.post(
        "/api/v1/stock-adjustments/",
        {"sku": "TEE", "location": "DAL", "delta": INT32 - 1, "reason": "count", "idempotency_key": "big"},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert StockLevel.objects.get(pk=stock.pk).on_hand == 10
    assert not StockMovement.objects.filter(idempotency_key="big").exists()


def test_a_snapshot_on_hand_beyond_the_column_range_is_a_400_naming_the_row(api_client, admin_user, stock):
    api_client.force_authenticate(admin_user)
    response = api_client.post(
        "/api/v1/stock-levels/snapshot/",
        {"idempotency_key": "snap", "rows": [{"sku": "TEE", "location": "DAL", "on_hand": INT32}]},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "on_hand" in json.dumps(response.json())
    assert StockLevel.objects.get(pk=stock.pk).on_hand == 10


def test_the_console_adjust_form_refuses_a_delta_beyond_the_range(client, admin_user, stock):
    client.force_login(admin_user)
    response = client.post(
        "/inventory/skus/TEE/adjust/",
        {"location": "DAL", "delta": str(INT32), "reason": "count", "idempotency_key": "console:1"},
    )
    assert response.status_code == 400
    assert b"less than or equal to" in response.content
    assert StockLevel.objects.get(pk=stock.pk).on_hand == 10


@pytest.mark.parametrize("path", ["/inventory/skus/TE%00E/", "/api/v1/stock-levels/?sku=TE%00E", "/orders/?q=a%00b"])
def test_a_nul_byte_in_a_lookup_is_a_400(client, admin_user, stock, path):
    client.force_login(admin_user)
    response = client.get(path)
    assert response.status_code == 400
    assert b"NUL" in response.content


def test_json_nested_thousands_deep_is_a_400(api_client, admin_user, stock):
    api_client.force_authenticate(admin_user)
    body = "[" * 5000 + "]" * 5000
    response = api_client.post("/api/v1/stock-adjustments/", body, content_type="application/json")
    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]


def test_a_body_over_the_limit_is_refused(api_client, admin_user, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    api_client.force_authenticate(admin_user)
    response = api_client.post("/api/v1/stock-adjustments/", "x" * 2000, content_type="application/json")
    assert response.status_code == 413


def test_a_hold_on_an_unknown_order_is_a_404(client, admin_user):
    client.force_login(admin_user)
    response = client.post("/orders/999999999/holds/", {"kind": "manual", "reason": "check"})
    assert response.status_code == 404
    assert not Hold.objects.exists()


def test_a_garbage_cursor_on_the_console_order_list_shows_the_first_page(client, admin_user):
    OrderFactory()
    client.force_login(admin_user)
    response = client.get("/orders/", {"cursor": "not-a-cursor%%"})
    assert response.status_code == 200
    assert response.context["orders"]


def test_a_garbage_cursor_on_the_api_is_a_4xx(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    assert api_client.get("/api/v1/orders/", {"cursor": "garbage"}).status_code in (400, 404)


# --- safe `next` redirects ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/", "/\\evil.example/", "javascript:alert(1)", "http:evil.example"],
)
def test_console_actions_never_redirect_off_site(client, admin_user, target):
    client.force_login(admin_user)
    case = ExceptionCase.objects.create(kind=ExceptionKind.OTHER, title="t", dedupe_key="k", opened_by="test")
    response = client.post(f"/orders/exceptions/{case.pk}/acknowledge/", {"next": target})
    assert response.status_code == 302
    assert response["Location"] == "/orders/exceptions/"
    event = InboundEvent.objects.create(
        account=ChannelAccountFactory(), kind="order", dedupe_key="d", external_id="X-1", payload={}, status="failed"
    )
    response = client.post(f"/channels/inbound/{event.pk}/discard/", {"next": target, "reason": "junk"})
    assert response.status_code == 302
    assert "evil" not in response["Location"] and not response["Location"].startswith("javascript")


def test_a_local_next_is_followed(client, admin_user):
    client.force_login(admin_user)
    case = ExceptionCase.objects.create(kind=ExceptionKind.OTHER, title="t", dedupe_key="k", opened_by="test")
    response = client.post(f"/orders/exceptions/{case.pk}/acknowledge/", {"next": "/orders/exceptions/?kind=other"})
    assert response["Location"] == "/orders/exceptions/?kind=other"


def test_no_view_reads_next_without_the_safe_helper():
    # every `next` a view reads goes through config.kernel.redirects.safe_next
    from pathlib import Path

    from django.conf import settings

    offenders = []
    for path in Path(settings.BASE_DIR).glob("*/**/*.py"):
        if ".venv" in path.parts or "tests" in path.parts or path.name == "redirects.py":
            continue
        text = path.read_text(errors="replace")
        if re.search(r"""request\.(POST|GET|data|query_params)(\.get\(|\[)["']next["']""", text):
            offenders.append(str(path))
    assert offenders == []


# --- webhooks: Triggered-At window, one answer for every refusal -------------------------------------


def _shopify_account():
    account = ChannelAccountFactory(kind=ChannelKind.SHOPIFY, name="shopify-sec")
    channel_account_set_credentials(
        account=account, credentials={"access_token": "shpat_x", "webhook_secret": "whsec"}, actor="test"
    )
    return account


def _shopify_post(client, account_id: int, *, secret="whsec", triggered_at: datetime | None, webhook_id="wh-1"):
    body = json.dumps({"id": 4242, "admin_graphql_api_id": "gid://shopify/Order/4242"}).encode()
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    headers = {
        "HTTP_X_SHOPIFY_HMAC_SHA256": digest,
        "HTTP_X_SHOPIFY_TOPIC": "orders/updated",
        "HTTP_X_SHOPIFY_WEBHOOK_ID": webhook_id,
        "HTTP_X_SHOPIFY_SHOP_DOMAIN": "waybill-sandbox.myshopify.com",
    }
    if triggered_at is not None:
        headers["HTTP_X_SHOPIFY_TRIGGERED_AT"] = triggered_at.isoformat().replace("+00:00", "Z")
    return client.post(f"/webhooks/shopify/{account_id}/", body, content_type="application/json", **headers)


def test_a_signed_shopify_body_replayed_later_under_a_new_id_is_refused(client):
    account = _shopify_account()
    now = datetime.now(UTC)
    # a fresh delivery is accepted
    assert _shopify_post(client, account.pk, triggered_at=now).status_code == 200
    # the same signed body, fired an hour ago, under a new webhook id: refused, nothing stored
    stale = _shopify_post(client, account.pk, triggered_at=now - timedelta(hours=1), webhook_id="wh-2")
    missing = _shopify_post(client, account.pk, triggered_at=None, webhook_id="wh-3")
    future = _shopify_post(client, account.pk, triggered_at=now + timedelta(hours=1), webhook_id="wh-4")
    assert stale.status_code == missing.status_code == future.status_code == 401
    assert InboundEvent.objects.filter(account=account).count() == 1


def test_unknown_account_and_bad_signature_get_the_same_answer(client):
    account = _shopify_account()
    now = datetime.now(UTC)
    bad_signature = _shopify_post(client, account.pk, secret="wrong", triggered_at=now)
    unknown = _shopify_post(client, account.pk + 1000, triggered_at=now)
    assert bad_signature.status_code == unknown.status_code == 401
    assert bad_signature.content == unknown.content
    # a channel without webhooks answers the same for an existing and a missing account
    amazon = ChannelAccountFactory(kind=ChannelKind.AMAZON, name="amazon-sec")
    existing = client.post(f"/webhooks/amazon/{amazon.pk}/", b"{}", content_type="application/json")
    missing = client.post(f"/webhooks/amazon/{amazon.pk + 1000}/", b"{}", content_type="application/json")
    assert existing.status_code == missing.status_code == 404 and existing.content == missing.content
    assert not InboundEvent.objects.exists()


# --- node API: shipped_at bounds, carrier codes, user-worded errors ------------------------------------


@pytest.fixture
def packed(node, put_stock, order_for, skus, ups):
    east = node("EAST", "10001")
    put_stock(skus[0], east, 5)
    order = order_for([(skus[0], 1)])
    fulfillment_services.orders_route(order_ids=[order.pk], actor="router")
    shipment = Shipment.objects.get(order=order)
    for step in (fulfillment_services.shipment_acknowledge, fulfillment_services.shipment_pick_start):
        step(shipment=shipment.pk, actor="wms:EAST")
    fulfillment_services.shipment_pack(shipment=shipment.pk, actor="wms:EAST")
    key = fulfillment_services.node_token_create(location=east, name="wms", actor="admin")[1]
    return shipment, key


def _ship(api_client, shipment, key, **body):
    payload = {"carrier": "UPS", "tracking_number": "1ZSEC", **body}
    return node_client(api_client, key).post(
        f"/api/v1/fulfillment/shipments/{shipment.pk}/shipped/", payload, format="json"
    )


def test_shipped_at_before_the_order_was_placed_is_refused(api_client, packed):
    shipment, key = packed
    years_ago = (shipment.order.placed_at - timedelta(days=3 * 365)).isoformat()
    response = _ship(api_client, shipment, key, shipped_at=years_ago)
    assert response.status_code == 400, response.content
    assert "before order" in json.dumps(response.json())
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.PACKED


def test_shipped_at_in_the_future_beyond_clock_skew_is_refused(api_client, packed):
    shipment, key = packed
    response = _ship(api_client, shipment, key, shipped_at=(timezone.now() + timedelta(minutes=30)).isoformat())
    assert response.status_code == 400
    assert "in the future" in json.dumps(response.json())
    # a node clock a minute ahead is fine
    ok = _ship(api_client, shipment, key, shipped_at=(timezone.now() + timedelta(minutes=1)).isoformat())
    assert ok.status_code == 200, ok.content


def test_carrier_codes_are_case_insensitive(api_client, packed):
    shipment, key = packed
    response = _ship(api_client, shipment, key, carrier="ups", shipped_at=timezone.now().isoformat())
    assert response.status_code == 200, response.content
    assert response.json()["carrier"] == "UPS"


def test_an_illegal_step_says_the_statuses_in_plain_words(api_client, packed):
    shipment, key = packed
    response = node_client(api_client, key).post(f"/api/v1/fulfillment/shipments/{shipment.pk}/picking/")
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "'packed'" in detail and "'picking'" in detail
    assert "ShipmentStatus" not in detail and "<" not in detail


# --- 403s logged as one line ---------------------------------------------------------------------------


def test_a_403_is_logged_in_one_line_without_a_traceback(client, viewer, caplog):
    from config.security.log_filters import OneLineForbidden

    # the filter sits on the handler every log line goes through (settings.LOGGING), not only in this test
    installed = [f for h in logging.getLogger().handlers for f in h.filters if isinstance(f, OneLineForbidden)]
    assert installed
    client.force_login(viewer)
    handler_filter = installed[0]
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client.post("/orders/1/holds/", {"kind": "manual", "reason": "x"})
    assert response.status_code == 403
    records = [r for r in caplog.records if getattr(r, "status_code", None) == 403]
    assert records
    for record in records:
        handler_filter.filter(record)
        line = logging.Formatter("%(levelname)s %(name)s %(message)s").format(record)
        assert "\n" not in line and "Traceback" not in line
        assert "user=viewer" in line and "/orders/1/holds/" in line


def test_an_unknown_count_decision_is_a_404_and_leaves_the_proposal_open(client, admin_user, put_stock):
    # given a node count beyond the node's tolerance, proposed for a decision
    from inventory import services as inventory_services
    from inventory.models import CountProposalStatus, StockCountProposal

    node = LocationFactory(code="CNT", count_tolerance_units=0)
    sku = SkuFactory(code="CNT-SKU")
    put_stock(sku, node, 10)
    inventory_services.stock_snapshot_apply(
        rows=[{"sku": "CNT-SKU", "location": "CNT", "on_hand": 4}], idempotency_key="count", actor="wms", source="wms"
    )
    proposal = StockCountProposal.objects.get(location=node)
    client.force_login(admin_user)
    # when a decision the console never offers is posted
    response = client.post(f"/inventory/nodes/CNT/counts/{proposal.pk}/approve-all/", {"note": "x"})
    # then it is a 404 and the proposal is neither applied nor rejected
    assert response.status_code == 404
    proposal.refresh_from_db()
    assert proposal.status == CountProposalStatus.PROPOSED
    assert StockLevel.objects.get(sku=sku, location=node).on_hand == 10


BIG = 2**63
OVERRIDE_BODIES = [
    ("cancel", {"reason": "r", "lines": [{"order_line": BIG, "quantity": 1}]}, "order_line"),
    ("cancel", {"reason": "r", "lines": [{"order_line": 1, "quantity": 10**30}]}, "quantity"),
    ("reroute", {"reason": "r", "location": BIG}, "location"),
    ("reroute", {"reason": "r", "location": -BIG}, "location"),
    ("resend-confirmation", {"reason": "r", "shipment": BIG}, "shipment"),
    ("split-shipment", {"reason": "r", "shipment": BIG, "order_lines": [1]}, "shipment"),
    ("split-shipment", {"reason": "r", "shipment": 1, "order_lines": [BIG]}, "order_lines"),
    ("merge-shipments", {"reason": "r", "shipments": [1, BIG]}, "shipments"),
]


@pytest.mark.parametrize(("action", "body", "field"), OVERRIDE_BODIES, ids=[f"{a}-{f}" for a, _, f in OVERRIDE_BODIES])
def test_an_override_with_an_id_or_quantity_beyond_the_column_range_is_a_400_naming_the_field(
    api_client, admin_user, action, body, field
):
    # given an order
    order = OrderFactory()
    OrderLineFactory(order=order)
    api_client.force_authenticate(admin_user)
    # when an override names an id or a quantity no column can hold
    response = api_client.post(
        f"/api/v1/orders/{order.pk}/{action}/", body, format="json", HTTP_IDEMPOTENCY_KEY=f"{action}-{field}"
    )
    # then the field is named in a 400 (before, an unknown-id answer or, in a test's transaction, a 500)
    assert response.status_code == 400, response.content
    assert field in json.dumps(response.json())
    assert not Hold.objects.exists()


def _integers_without_bounds(schema: dict) -> list[str]:
    components = schema["components"]["schemas"]

    def resolve(node):
        while "$ref" in node:
            node = components[node["$ref"].rsplit("/", 1)[-1]]
        return node

    found = []

    def walk(node, where):
        node = resolve(node)
        for key in ("allOf", "oneOf", "anyOf"):
            for part in node.get(key, []):
                walk(part, where)
        if node.get("type") == "integer" and ("minimum" not in node or "maximum" not in node):
            found.append(where)
        for name, prop in node.get("properties", {}).items():
            if not resolve(prop).get("readOnly"):
                walk(prop, f"{where}.{name}")
        if "items" in node:
            walk(node["items"], f"{where}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{where}{{}}")

    for url, operations in schema["paths"].items():
        for method, operation in operations.items():
            for content_type, content in (operation.get("requestBody") or {}).get("content", {}).items():
                if "json" in content_type:
                    walk(content["schema"], f"{method.upper()} {url} body")
    return found


def test_every_integer_an_api_client_sends_is_bounded():
    # Every integer in a request body names its range in the schema (and the serializer refuses beyond it), so
    # no value past a column's range reaches SQL. Query ``page_size`` is not listed: the paginator clamps it.
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert _integers_without_bounds(schema) == []


@pytest.mark.parametrize("path", ["/api/v1/orders/{order}/holds/", "/api/v1/exception-cases/bulk/"])
def test_a_plaintext_drf_token_header_is_a_401_not_a_500(api_client, path):
    # The override endpoints named DRF's TokenAuthentication, whose table is not installed: "Token x" was a 500.
    order = OrderFactory()
    api_client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef")
    response = api_client.post(path.format(order=order.pk), {"kind": "manual", "reason": "x"}, format="json")
    assert response.status_code == 401
    assert not Hold.objects.exists()


@pytest.mark.parametrize("action", ["holds", "reroute", "ship-to", "split-shipment", "cancel", "backorder"])
@pytest.mark.parametrize("order_id", ["false", "%C2%B8%C3%8B", "1e3"])
def test_an_override_on_an_id_that_is_not_a_number_is_a_404(api_client, admin_user, action, order_id):
    # Found by Schemathesis: the order's id went to the lookup as written and a word was a 500.
    api_client.force_authenticate(admin_user)
    response = api_client.post(f"/api/v1/orders/{order_id}/{action}/", {"reason": "x"}, format="json")
    assert response.status_code == 404
    assert not Hold.objects.exists()
