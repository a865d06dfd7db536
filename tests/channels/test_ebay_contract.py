"""The exact bodies the eBay connector sends validate against ebay-sell-fulfillment-v1.json and
ebay-sell-inventory-v1.json (channels.sandbox.contract), for varied orders; wrong bodies fail the same check."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from django.utils import timezone

from channels.connectors.base import CancelRequest, InventoryQuantity, ShipmentConfirmation, ShipmentLine
from channels.sandbox.contract import operation, template_for
from channels.services import connector_for

pytestmark = pytest.mark.django_db

MODELS = (
    ("ebay-sell-fulfillment-v1.json", "/sell/fulfillment/v1"),
    ("ebay-sell-inventory-v1.json", "/sell/inventory/v1"),
)


def _violations(method: str, path: str, query: dict, body) -> list | None:
    """The model's verdict on one request; None for calls outside the models (OAuth, Post-Order)."""
    for spec_name, prefix in MODELS:
        if path.startswith(prefix):
            template = template_for(spec_name, path[len(prefix) :])
            assert template is not None, path
            return operation(spec_name, method, template).violations(body=body, query=query)
    return None


def test_every_body_the_connector_sends_is_valid_for_the_models(ebay_sandbox, ebay_account, sent_requests):
    # given: a three-line order with Unicode names shipped in two packages, a cancelled one, and SKUs to push
    state = ebay_sandbox.state
    multi, other = state.generate(2, status="unshipped", unknown_sku=False, lines=3)
    with state.lock:
        multi.buyer_name = "Łukasz Zieliński — 李雷"
        multi.lines[0].quantity = 4
    ebay_sandbox.catalog |= {"ÉTÉ-Ω-1", "WB 1000/B"}
    connector = connector_for(ebay_account)
    sent = sent_requests(connector)
    now = timezone.now() - timedelta(minutes=3)
    first, second, third = (line.line_id for line in multi.lines)
    # when
    connector.confirm_shipment(
        ShipmentConfirmation(multi.order_id, "1", "USPS", "9400 1118-9922", now, [ShipmentLine(first, 2)]), state={}
    )
    connector.confirm_shipment(
        ShipmentConfirmation(
            multi.order_id,
            "2",
            "UPS",
            "1Z999AA10123456784",
            now,
            [ShipmentLine(first, 2), ShipmentLine(second, multi.lines[1].quantity), ShipmentLine(third, 1)],
        ),
        state={},
    )
    connector.cancel_lines(CancelRequest(other.order_id, [], reason="NoInventory"), state={})
    connector.push_inventory(
        [InventoryQuantity("ÉTÉ-Ω-1", 3), InventoryQuantity("WB 1000/B", 0)]
        + [InventoryQuantity(f"WB-{1000 + i}", i) for i in range(30)],
        idempotency_key="k",
        state={},
    )
    connector.resolve_listings(["ÉTÉ-Ω-1", "NOT-AT-EBAY"] + [f"WB-{1000 + i}" for i in range(30)])
    list(connector.fetch_orders(since=now - timedelta(days=1)))
    # then
    checked = {
        path.rsplit("/", 1)[-1] for method, path, query, body in sent if _violations(method, path, query, body) == []
    }
    assert {"shipping_fulfillment", "bulk_update_price_quantity", "bulk_get_inventory_item", "order"} <= checked
    for method, path, query, body in sent:
        assert _violations(method, path, query, body) in (None, []), (method, path, body)
    assert ebay_sandbox.state.contract_violations == []
    assert [f["shipmentTrackingNumber"] for f in ebay_sandbox.fulfillments[multi.order_id]] == [
        "940011189922",
        "1Z999AA10123456784",
    ]


def _fulfillment_body(ebay_sandbox, ebay_account, sent_requests) -> tuple[str, dict]:
    (order,) = ebay_sandbox.state.generate(1, status="unshipped", unknown_sku=False, lines=2)
    connector = connector_for(ebay_account)
    sent = sent_requests(connector)
    line = order.lines[0]
    connector.confirm_shipment(
        ShipmentConfirmation(order.order_id, "1", "FedEx", "7712", timezone.now(), [ShipmentLine(line.line_id, 1)]),
        state={},
    )
    (body,) = [b for m, p, _, b in sent if p.endswith("/shipping_fulfillment") and m == "POST"]
    return order.order_id, body


@pytest.mark.parametrize(
    "breaks",
    [
        lambda body: body["lineItems"][0].update(quantity="1"),
        lambda body: body.update(lineItems={"lineItemId": "1"}),
        lambda body: body.update(trackingNumber=7712),
        lambda body: body.update(shippedDate=1700000000),
    ],
)
def test_a_wrong_fulfillment_body_fails_the_model(ebay_sandbox, ebay_account, sent_requests, breaks):
    # given
    _order_id, body = _fulfillment_body(ebay_sandbox, ebay_account, sent_requests)
    damaged = copy.deepcopy(body)
    breaks(damaged)
    # then
    shipping = operation("ebay-sell-fulfillment-v1.json", "post", "/order/{orderId}/shipping_fulfillment")
    assert shipping.violations(body=body) == []
    assert shipping.violations(body=damaged)


@pytest.mark.parametrize(
    ("breaks", "error_id"),
    [
        (lambda body: body["lineItems"][0].update(lineItemId="999"), 32200),
        (lambda body: body["lineItems"].append(dict(body["lineItems"][0])), 32210),
        (lambda body: body["lineItems"][0].update(quantity=50), 32600),
        (lambda body: body.update(shippedDate="2026-01-01T10:00:00Z"), 32500),
        (lambda body: body.update(trackingNumber="94 00-11"), 32300),
        (lambda body: body.pop("shippingCarrierCode"), 32300),
    ],
)
def test_the_sandbox_refuses_what_the_model_says_in_prose(ebay_sandbox, ebay_account, sent_requests, breaks, error_id):
    # given
    order_id, body = _fulfillment_body(ebay_sandbox, ebay_account, sent_requests)
    damaged = copy.deepcopy(body)
    breaks(damaged)
    # when
    response = connector_for(ebay_account).call(
        "POST", f"/sell/fulfillment/v1/order/{order_id}/shipping_fulfillment", json=damaged
    )
    # then: eBay's error list, with the model's error id
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert error_id in {e["errorId"] for e in errors}
    assert all({"errorId", "domain", "category", "message", "longMessage", "parameters"} <= set(e) for e in errors)


@pytest.mark.parametrize(
    ("query", "error_id"),
    [
        ("filter=lastmodifieddate:%5B2024-05-15T08:25:43.511Z..%5D&limit=500", 31100),
        ("filter=modifieddate:%5B2024-05-15T08:25:43.511Z..%5D", 30700),
        ("filter=lastmodifieddate:%5Byesterday..%5D", 30800),
        ("filter=lastmodifieddate:%5B..2024-05-15T08:25:43.511Z%5D", 30820),
        ("offset=-5", 31000),
    ],
)
def test_get_orders_query_rules(ebay_sandbox, ebay_account, query, error_id):
    # when
    response = connector_for(ebay_account).call("GET", f"/sell/fulfillment/v1/order?{query}")
    # then
    assert response.status_code == 400 and response.json()["errors"][0]["errorId"] == error_id


def test_a_wrong_inventory_body_fails_the_model():
    bulk = operation("ebay-sell-inventory-v1.json", "post", "/bulk_update_price_quantity")
    good = {"requests": [{"sku": "A", "shipToLocationAvailability": {"quantity": 2}}]}
    assert bulk.violations(body=good) == []
    assert bulk.violations(body={"requests": [{"sku": "A", "shipToLocationAvailability": {"quantity": "2"}}]})
    assert bulk.violations(body={"requests": {"sku": "A"}})
