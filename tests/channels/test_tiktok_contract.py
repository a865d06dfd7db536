"""Contract tests: the exact requests the TikTok connector sends, for varied orders (multi-unit lines,
partial shipments and cancels, Unicode), validate against TikTok's documented request shapes
(channels/sandbox/tiktok_contract.py, the schemas the sandbox refuses with); deliberately wrong bodies
fail them."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from channels.connectors.base import CancelRequest, InventoryQuantity, ShipmentConfirmation, ShipmentLine
from channels.sandbox import tiktok_contract
from channels.sandbox.base import SandboxLine
from channels.sandbox.tiktok import product_id_for, sku_id_for
from channels.services import channel_account_set_credentials, connector_for
from tests.channels.conftest import TIKTOK_CREDENTIALS

pytestmark = pytest.mark.django_db


@pytest.fixture
def recorded(tiktok_sandbox, tiktok_account, sent_requests):
    """A connector whose every request (method, path, query, body as sent) is kept."""
    channel_account_set_credentials(
        account=tiktok_account,
        credentials={
            **TIKTOK_CREDENTIALS,
            "refresh_token": "TTR_test",
            "access_token_expires_at": str(int(time.time())),
        },
        actor="test",
    )
    connector = connector_for(tiktok_account)
    connector.sent = sent_requests(connector)
    return connector


def _order(sandbox, lines):
    (made,) = sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    made.lines = lines
    return made


def _violations(sent):
    return {
        f"{method} {path}": [str(v) for v in tiktok_contract.request_violations(method, path, query=query, body=body)]
        for method, path, query, body in sent
    }


def test_every_request_of_ship_cancel_approve_push_resolve_and_refresh_fits_the_documented_shapes(
    tiktok_sandbox, recorded
):
    # given: a multi-unit multi-line order, a Unicode SKU listed but never ordered, a buyer's cancel request
    sandbox, connector = tiktok_sandbox, recorded
    mug, cap = SandboxLine("a", "WB-1001", "Mug — 杯", 3, Decimal("12.50")), SandboxLine("b", "WB-1002", "Cap", 2, 9)
    shipped = _order(sandbox, [mug, cap])
    cancelled = _order(sandbox, [SandboxLine("a", "WB-1003", "Écharpe", 4, 20)])
    asked = _order(sandbox, [SandboxLine("a", "WB-1004", "Bottle", 1, 5)])
    httpx.post(f"{sandbox.base_url}/_sandbox/tiktok/buyer_cancel", json={"order_id": asked.order_id})
    httpx.post(f"{sandbox.base_url}/_sandbox/tiktok/catalog", json={"add": ["ZÜ-杯-1"]})
    # when: the connector does everything it does (the token is due, so it is renewed first)
    pages = list(connector.fetch_orders(since=datetime(2020, 1, 1, tzinfo=UTC)))
    connector.confirm_shipment(
        ShipmentConfirmation(
            order_external_id=shipped.order_id,
            package_reference="PKG-1",
            carrier_code="USPS",
            tracking_number="9400ÜNICODE-1",
            shipped_at=datetime.now(UTC),
            lines=[ShipmentLine(sku_id_for("WB-1001"), 2), ShipmentLine(sku_id_for("WB-1002"), 1)],
        ),
        state={},
    )
    connector.cancel_lines(
        CancelRequest(cancelled.order_id, [ShipmentLine(sku_id_for("WB-1003"), 3)], "NoInventory"), state={}
    )
    connector.cancel_lines(CancelRequest(asked.order_id, [], "BuyerCanceled"), state={})
    resolved = connector.resolve_listings(["WB-1001", "ZÜ-杯-1", *[f"WB-{1100 + i}" for i in range(12)], "NOPE-1"])
    result = connector.push_inventory(
        [
            InventoryQuantity(sku, 7 + index, ids.external_variant_id)
            for index, (sku, ids) in enumerate(resolved.items())
        ],
        idempotency_key="k",
        state={},
    )
    # then: every request fits, and every operation was exercised
    assert pages and not any(_violations(connector.sent).values()), _violations(connector.sent)
    paths = {f"{method} {path}" for method, path, _, _ in connector.sent}
    assert {
        "GET /api/v2/token/refresh",
        "POST /order/202309/orders/search",
        "GET /order/202309/orders",
        f"POST /fulfillment/202309/orders/{shipped.order_id}/packages",
        "POST /return_refund/202309/cancellations",
        "POST /return_refund/202309/cancellations/search",
        "POST /product/202502/products/search",
        f"POST /product/202309/products/{product_id_for('WB-1001')}/inventory/update",
    } <= paths
    assert any(path.endswith("/approve") for path in paths)
    assert len(resolved) == 14 and "NOPE-1" not in resolved
    assert set(result.acknowledged) == set(resolved) and not result.rejected
    assert not sandbox.state.contract_violations


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "where"),
    [
        (
            "POST",
            "/fulfillment/202309/orders/576000000001001003/packages",
            {},
            {"tracking_number": 9400, "shipping_provider_id": "6617675021119455233", "order_line_item_ids": ["1"]},
            "body.tracking_number",
        ),
        (
            "POST",
            "/fulfillment/202309/orders/576000000001001003/packages",
            {},
            {"tracking_number": "9400", "shipping_provider_id": "USPS", "order_line_item_ids": []},
            "body.order_line_item_ids",
        ),
        (
            "POST",
            "/return_refund/202309/cancellations",
            {},
            {"order_id": "576000000001001003", "order_line_item_ids": ["100101001"]},
            "body",
        ),
        (
            "POST",
            "/return_refund/202309/cancellations",
            {},
            {
                "order_id": "1",
                "order_line_item_ids": ["2"],
                "skus": [{"sku_id": "3", "quantity": 1}],
                "cancel_reason": "x",
            },
            "body",
        ),
        (
            "POST",
            "/product/202309/products/1731000000000000001/inventory/update",
            {},
            {"skus": [{"id": "1729", "inventory": [{"warehouse_id": "7068517275539719942", "quantity": -1}]}]},
            "body.skus.0.inventory.0.quantity",
        ),
        (
            "POST",
            "/product/202502/products/search",
            {"page_size": "100"},
            {"seller_skus": [f"WB-{i}" for i in range(11)]},
            "body.seller_skus",
        ),
        ("POST", "/order/202309/orders/search", {"page_size": "101"}, {}, "query.page_size"),
        ("POST", "/order/202309/orders/search", {"page_size": "10", "sort_order": "UP"}, {}, "query.sort_order"),
        ("POST", "/order/202309/orders/search", {"page_size": "10"}, {"update_time_ge": "yesterday"}, "body"),
        ("GET", "/order/202309/orders", {"ids": "abc"}, None, "query.ids"),
        ("GET", "/api/v2/token/refresh", {"app_key": "a", "app_secret": "b", "refresh_token": "c"}, None, "query"),
    ],
)
def test_a_deliberately_wrong_request_fails_the_contract(method, path, query, body, where):
    # when
    violations = tiktok_contract.request_violations(method, path, query=query, body=body)
    # then
    assert violations and any(v.where.startswith(where) for v in violations), violations
