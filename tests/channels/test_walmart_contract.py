"""The exact bodies the Walmart connector sends validate against walmart-orders.json, walmart-auth.json and
walmart-inventory.json (channels.sandbox.contract), for varied orders; wrong bodies fail the same check."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from django.utils import timezone

from channels.connectors.base import CancelRequest, InventoryQuantity, ShipmentConfirmation, ShipmentLine
from channels.sandbox.contract import operation, template_for
from channels.services import connector_for

pytestmark = pytest.mark.django_db

SPECS = ("walmart-orders.json", "walmart-auth.json", "walmart-inventory.json")


def _violations(method: str, path: str, query: dict, body) -> list:
    for spec_name in SPECS:
        template = template_for(spec_name, path)
        if template is not None:
            return operation(spec_name, method, template).violations(body=body, query=query)
    raise AssertionError(f"{method} {path} is in none of the Walmart models")


def _orders(sandbox):
    state = sandbox.state
    multi, partial, single = state.generate(3, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False, lines=3)
    with state.lock:
        multi.buyer_name = "Zoë Ōtani 山田"
        multi.address["line1"] = "1 Straße des 17. Juni"
        partial.lines[0].quantity = 3
    return multi, partial, single


def test_every_body_the_connector_sends_is_valid_for_the_models(walmart_sandbox, walmart_account, sent_requests):
    # given: a multi-line order with Unicode names, one shipped in part, one cancelled in part, and SKUs to push
    multi, partial, single = _orders(walmart_sandbox)
    walmart_sandbox.catalog |= {"ÜBER-Ökö 1", "WB 1000/B"}
    connector = connector_for(walmart_account)
    sent = sent_requests(connector)
    now = timezone.now() - timedelta(minutes=3)
    # when: every write the connector makes
    connector.acknowledge(multi.order_id)
    connector.confirm_shipment(
        ShipmentConfirmation(
            order_external_id=multi.order_id,
            package_reference="1",
            carrier_code="UPS",
            tracking_number="1Z 999 AA1",
            shipped_at=now,
            lines=[ShipmentLine(str(i), line.quantity) for i, line in enumerate(multi.lines, start=1)],
            shipping_method="Express",
        ),
        state={},
    )
    connector.confirm_shipment(
        ShipmentConfirmation(
            order_external_id=partial.order_id,
            package_reference="2",
            carrier_code="LASERSHIP-X",
            carrier_name="Lasership Regional",
            tracking_number="LS123",
            tracking_url="https://track.example/LS123",
            shipped_at=now,
            lines=[ShipmentLine("1", 2)],
        ),
        state={},
    )
    connector.cancel_lines(CancelRequest(partial.order_id, [ShipmentLine("2", 1)], reason="NoInventory"), state={})
    connector.cancel_lines(CancelRequest(single.order_id, [], reason="ShippingAddressUndeliverable"), state={})
    connector.push_inventory(
        [InventoryQuantity("ÜBER-Ökö 1", 5), InventoryQuantity("WB 1000/B", 0), InventoryQuantity("WB-1001", 12)],
        idempotency_key="k",
        state={},
    )
    # then: each one validates against its model, and the sandbox refused none
    writes = [(m, p, q, b) for m, p, q, b in sent if m != "GET"]
    assert {p.rsplit("/", 1)[-1] for _, p, _, _ in writes} >= {
        "token",
        "acknowledge",
        "shipping",
        "cancel",
        "inventory",
    }
    for method, path, query, body in sent:
        assert _violations(method, path, query, body) == [], (method, path, body)
    assert walmart_sandbox.state.contract_violations == []


def _shipping_body(walmart_sandbox, walmart_account, sent_requests) -> tuple[str, dict]:
    (order,) = walmart_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    connector = connector_for(walmart_account)
    sent = sent_requests(connector)
    connector.confirm_shipment(
        ShipmentConfirmation(order.order_id, "1", "FedEx", "7712", timezone.now(), [ShipmentLine("1", 1)]), state={}
    )
    (body,) = [b for m, p, _, b in sent if p.endswith("/shipping")]
    return order.order_id, body


@pytest.mark.parametrize(
    ("breaks", "where"),
    [
        (lambda line: line.pop("sellerOrderId"), "sellerOrderId"),
        (lambda line: line["orderLineStatuses"]["orderLineStatus"][0].pop("trackingInfo"), "trackingInfo"),
        (
            lambda line: line["orderLineStatuses"]["orderLineStatus"][0]["trackingInfo"].update(methodCode="Slow"),
            "Slow",
        ),
        (
            lambda line: line["orderLineStatuses"]["orderLineStatus"][0]["trackingInfo"].update(
                carrierName={"carrier": "Pony Express"}
            ),
            "Pony Express",
        ),
        (lambda line: line["orderLineStatuses"]["orderLineStatus"][0]["statusQuantity"].update(amount=1), "amount"),
        (
            lambda line: line["orderLineStatuses"]["orderLineStatus"][0]["trackingInfo"].update(shipDateTime="now"),
            "shipDateTime",
        ),
    ],
)
def test_a_wrong_shipping_body_fails_the_model(walmart_sandbox, walmart_account, sent_requests, breaks, where):
    # given: the body the connector sent, damaged
    _order_id, body = _shipping_body(walmart_sandbox, walmart_account, sent_requests)
    damaged = copy.deepcopy(body)
    breaks(damaged["orderShipment"]["orderLines"]["orderLine"][0])
    # then
    found = operation("walmart-orders.json", "post", "/v3/orders/{purchaseOrderId}/shipping").violations(body=damaged)
    assert found and where in " ".join(str(v) for v in found)


def test_the_shipping_model_is_read_with_its_shipment_line_types(walmart_sandbox, walmart_account, sent_requests):
    # The published reference points the shipping lines at the refund lines (which require "refunds"); the
    # model's own example and its ShippingLineType carry none. The validator reads the shipment line types.
    _order_id, body = _shipping_body(walmart_sandbox, walmart_account, sent_requests)
    shipping = operation("walmart-orders.json", "post", "/v3/orders/{purchaseOrderId}/shipping")
    assert shipping.violations(body=body) == []
    assert all("refunds" not in str(v) for v in shipping.violations(body={"orderShipment": {"orderLines": {}}}))


def test_the_sandbox_answers_a_wrong_body_in_walmarts_error_list(walmart_sandbox, walmart_account, sent_requests):
    # given
    order_id, body = _shipping_body(walmart_sandbox, walmart_account, sent_requests)
    connector = connector_for(walmart_account)
    damaged = copy.deepcopy(body)
    damaged["orderShipment"]["orderLines"]["orderLine"][0]["orderLineStatuses"]["orderLineStatus"][0]["trackingInfo"][
        "methodCode"
    ] = "Teleport"
    # when
    response = connector.call("POST", f"/v3/orders/{order_id}/shipping", json=damaged)
    # then
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["code"] == "INVALID_REQUEST_CONTENT.GMP_ORDER_API" and "Teleport" in error["description"]
    assert {"field", "info", "severity", "category"} <= set(error)
    assert walmart_sandbox.state.contract_violations[-1]["path"] == f"/v3/orders/{order_id}/shipping"


def test_a_wrong_inventory_and_cancel_body_fail_the_models():
    inventory = operation("walmart-inventory.json", "put", "/v3/inventory")
    assert inventory.violations(body={"sku": "A", "quantity": {"unit": "EACH", "amount": 1}}, query={"sku": "A"}) == []
    assert inventory.violations(body={"sku": "A", "quantity": {"unit": "PALLET", "amount": 1}}, query={"sku": "A"})
    assert inventory.violations(body={"sku": "A", "quantity": {"unit": "EACH", "amount": 1}}, query={})
    cancel = operation("walmart-orders.json", "post", "/v3/orders/{purchaseOrderId}/cancel")
    line = {
        "lineNumber": "1",
        "orderLineStatuses": {
            "orderLineStatus": [
                {
                    "status": "Cancelled",
                    "cancellationReason": "SELLER_CANCEL_OUT_OF_STOCK",
                    "statusQuantity": {"unitOfMeasurement": "EACH", "amount": "1"},
                }
            ]
        },
    }
    assert cancel.violations(body={"orderCancellation": {"orderLines": {"orderLine": [line]}}}) == []
    line["orderLineStatuses"]["orderLineStatus"][0]["cancellationReason"] = "CHANGED_MY_MIND"
    assert cancel.violations(body={"orderCancellation": {"orderLines": {"orderLine": [line]}}})


def test_a_list_limit_over_200_is_refused(walmart_sandbox, walmart_account):
    # given
    connector = connector_for(walmart_account)
    # when
    response = connector.call("GET", "/v3/orders", params={"limit": "500"})
    # then
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "query.limit"
