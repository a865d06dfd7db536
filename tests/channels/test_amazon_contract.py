"""The bodies the Amazon connector puts on the wire, checked against the published SP-API models.

Every request below is the connector's own, captured on the way out while it talks to the sandbox over
HTTP: confirmShipment for varied orders (a US+MX account, an MX order, several lines, partial quantities,
Unicode carrier names), listings patches, feed documents and feeds, and the searchOrders query. Each is
validated with ``channels.sandbox.contract.operation`` (the model's JSON Schema and declared query
parameters) and with the limits the models state in prose (the sandbox's ``prose_violations``). Then
deliberately wrong bodies are shown to fail the same checks.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from channels.connectors.base import CancelRequest, InventoryQuantity, ShipmentConfirmation, ShipmentLine
from channels.sandbox.amazon import AmazonSandbox
from channels.sandbox.base import Request
from channels.sandbox.contract import operation, template_for
from channels.services import connector_for
from tests.channels.conftest import AMAZON_MX, AMAZON_US

pytestmark = pytest.mark.django_db

ORDERS_V0 = "amazon-orders-v0.json"
ORDERS = "amazon-orders-2026-01-01.json"
FEEDS = "amazon-feeds-2021-06-30.json"
LISTINGS = "amazon-listings-items-2021-08-01.json"
CONFIRM = "/orders/v0/orders/{orderId}/shipmentConfirmation"


def _problems(spec: str, method: str, path: str, body=None, query: dict | None = None) -> list[str]:
    """Schema violations (contract.operation) plus the models' prose limits, for one request."""
    template = template_for(spec, path)
    assert template is not None, f"{path} is not a path of {spec}"
    found = operation(spec, method, template).violations(body=body, query=query or {})
    request = Request(method=method, path=path, query={k: [v] for k, v in (query or {}).items()}, headers={}, body=b"")
    found += AmazonSandbox().prose_violations(request, template, body)
    return [str(v) for v in found]


def _order(sandbox, quantities: list[int], marketplace_id: str = AMAZON_US):
    """An unshipped merchant-fulfilled order with one line per quantity (distinct SKUs)."""
    (made,) = sandbox.state.generate(
        1,
        lines=len(quantities),
        status="unshipped",
        fulfilled_by="MERCHANT",
        unknown_sku=False,
        marketplace_id=marketplace_id,
    )
    with sandbox.state.lock:
        for index, line in enumerate(made.lines):
            line.sku = f"WB-{1100 + index}"
            line.quantity = quantities[index] if index < len(quantities) else 1
    return made


def _shipment(made, lines: list[tuple[int, int]], number: int, **kwargs) -> ShipmentConfirmation:
    return ShipmentConfirmation(
        order_external_id=made.order_id,
        package_reference=f"shipment-{number}",
        carrier_code=kwargs.pop("carrier_code", "UPS"),
        tracking_number=kwargs.pop("tracking_number", f"1Z999AA1{number:010d}"),
        shipped_at=datetime.now(UTC) - timedelta(minutes=5),
        lines=[ShipmentLine(made.lines[index].line_id, quantity) for index, quantity in lines],
        **kwargs,
    )


def _confirmations(sent) -> list[tuple[str, dict]]:
    return [
        (path, body) for method, path, _, body in sent if method == "POST" and path.endswith("/shipmentConfirmation")
    ]


def test_confirm_shipment_bodies_for_varied_orders_match_the_model(amazon_sandbox, amazon_us_mx_account, sent_requests):
    # given: a US+MX account; a three-line US order, a two-line MX order shipped in two packages, and a
    # US order whose marketplace the outbox already knows
    us = _order(amazon_sandbox, [1, 2, 3])
    mx = _order(amazon_sandbox, [3, 1], marketplace_id=AMAZON_MX)
    known = _order(amazon_sandbox, [2])
    connector = connector_for(amazon_us_mx_account)
    sent = sent_requests(connector)
    shipments = [
        _shipment(us, [(0, 1), (1, 2), (2, 3)], 101, shipping_method="Ground"),
        _shipment(
            mx,
            [(0, 1)],
            102,
            carrier_code="Other",
            carrier_name="Estafeta Mexicana — Envíos Ñandú",
            shipping_method="Día siguiente",
        ),
        _shipment(mx, [(0, 2), (1, 1)], 103, carrier_code="Other", carrier_name="Paquetería Łódź & Søn 配送"),
        _shipment(known, [(0, 2)], 104, carrier_code="USPS", marketplace_id=AMAZON_US, shipping_method="Priority"),
    ]
    # when
    for shipment in shipments:
        connector.confirm_shipment(shipment, state={})
    # then: every body the connector sent passes the model, schema and prose
    confirmations = _confirmations(sent)
    assert len(confirmations) == 4
    for path, body in confirmations:
        assert _problems(ORDERS_V0, "POST", path, body) == [], body
    # and each carries the order's own marketplace and the shipment's number
    by_order = [(path.split("/")[4], body["marketplaceId"], body["packageDetail"]) for path, body in confirmations]
    assert [(order, marketplace) for order, marketplace, _ in by_order] == [
        (us.order_id, AMAZON_US),
        (mx.order_id, AMAZON_MX),
        (mx.order_id, AMAZON_MX),
        (known.order_id, AMAZON_US),
    ]
    assert [detail["packageReferenceId"] for _, _, detail in by_order] == ["101", "102", "103", "104"]
    assert by_order[1][2]["carrierName"] == "Estafeta Mexicana — Envíos Ñandú"
    assert by_order[2][2]["orderItems"] == [
        {"orderItemId": mx.lines[0].line_id, "quantity": 2},
        {"orderItemId": mx.lines[1].line_id, "quantity": 1},
    ]
    # and Amazon (the sandbox) took all four: the MX order is fully shipped, in two packages
    assert amazon_sandbox.state.contract_violations == []
    assert [p["packageReferenceId"] for p in mx.packages] == ["102", "103"]
    assert mx.status == "shipped" and us.status == "shipped"
    connector.close()


def test_wrong_confirm_shipment_bodies_fail_the_model(amazon_sandbox, amazon_account, sent_requests):
    # given: a body the connector really sent
    made = _order(amazon_sandbox, [2])
    connector = connector_for(amazon_account)
    sent = sent_requests(connector)
    connector.confirm_shipment(_shipment(made, [(0, 1)], 28), state={})
    ((path, body),) = _confirmations(sent)
    assert _problems(ORDERS_V0, "POST", path, body) == []

    def broken(change) -> list[str]:
        wrong = copy.deepcopy(body)
        change(wrong)
        return _problems(ORDERS_V0, "POST", path, wrong)

    # then: each deliberate mistake is caught, naming what is wrong
    assert any("marketplaceId" in p for p in broken(lambda b: b.pop("marketplaceId")))
    shipment_28 = broken(lambda b: b["packageDetail"].update(packageReferenceId="shipment-28"))
    assert shipment_28 == [
        "body.packageDetail.packageReferenceId: 'shipment-28': only positive numeric values are supported"
    ]
    assert broken(lambda b: b["packageDetail"].update(packageReferenceId="0"))
    assert any("trackingNumber" in p for p in broken(lambda b: b["packageDetail"].pop("trackingNumber")))
    assert any("shipDate" in p for p in broken(lambda b: b["packageDetail"].update(shipDate="02/21/2026")))
    assert any("quantity" in p for p in broken(lambda b: b["packageDetail"]["orderItems"][0].update(quantity="1")))
    assert any("carrierName" in p for p in broken(lambda b: b["packageDetail"].update(carrierCode="Other")))
    assert _problems(ORDERS_V0, "POST", "/orders/v0/orders/ABC/shipmentConfirmation", body) == [
        "path.orderId: 'ABC' is not an Amazon order id in 3-7-7 format"
    ]
    connector.close()


def test_listings_patch_bodies_match_the_model(amazon_sandbox, amazon_account, sent_requests):
    # given
    connector = connector_for(amazon_account)
    sent = sent_requests(connector)
    # when: a few SKUs, one of them with characters a path must escape
    amazon_sandbox.state.listed.add("TEE/ÄÖ #7")
    connector.push_inventory(
        [InventoryQuantity("WB-1000", 0), InventoryQuantity("WB-1001", 17), InventoryQuantity("TEE/ÄÖ #7", 3)],
        idempotency_key="k",
        state={},
    )
    # then
    patches = [(path, query, body) for method, path, query, body in sent if method == "PATCH"]
    assert len(patches) == 3
    for path, query, body in patches:
        assert _problems(LISTINGS, "PATCH", path, body, query) == [], (path, body)
        assert query == {"marketplaceIds": AMAZON_US}
    assert patches[2][0] == "/listings/2021-08-01/items/A2TESTSELLER/TEE%2F%C3%84%C3%96%20%237"
    assert amazon_sandbox.state.inventory == {"WB-1000": 0, "WB-1001": 17, "TEE/ÄÖ #7": 3}
    # and wrong ones fail
    path, query, body = patches[0]
    assert any("patches" in p for p in _problems(LISTINGS, "PATCH", path, {**body, "patches": []}, query))
    assert any("productType" in p for p in _problems(LISTINGS, "PATCH", path, {"patches": body["patches"]}, query))
    assert any("marketplaceIds" in p for p in _problems(LISTINGS, "PATCH", path, body, {}))
    nested = copy.deepcopy(body)
    nested["patches"][0]["path"] = "/attributes/fulfillment_availability/0/quantity"
    assert _problems(LISTINGS, "PATCH", path, nested, query) == [
        "body.patches.0.path: '/attributes/fulfillment_availability/0/quantity': only top-level listings item "
        "attributes can be patched"
    ]
    bad_op = copy.deepcopy(body)
    bad_op["patches"][0]["op"] = "upsert"
    assert any("upsert" in p for p in _problems(LISTINGS, "PATCH", path, bad_op, query))
    connector.close()


def test_feed_bodies_match_the_model(amazon_sandbox, amazon_us_mx_account, sent_requests):
    # given: an MX order to cancel, and more SKUs than go by PATCH
    mx = _order(amazon_sandbox, [2, 1], marketplace_id=AMAZON_MX)
    connector = connector_for(amazon_us_mx_account)
    connector.feed_poll_interval = 0
    sent = sent_requests(connector)
    # when
    connector.cancel_lines(CancelRequest(mx.order_id, [ShipmentLine(mx.lines[1].line_id, 1)], "NoInventory"), state={})
    connector.push_inventory([InventoryQuantity(f"WB-{1000 + i}", i) for i in range(12)], idempotency_key="k", state={})
    # then
    documents = [body for method, path, _, body in sent if method == "POST" and path == "/feeds/2021-06-30/documents"]
    feeds = [body for method, path, _, body in sent if method == "POST" and path == "/feeds/2021-06-30/feeds"]
    assert len(documents) == len(feeds) == 2
    for body in documents:
        assert _problems(FEEDS, "POST", "/feeds/2021-06-30/documents", body) == []
    for body in feeds:
        assert _problems(FEEDS, "POST", "/feeds/2021-06-30/feeds", body) == []
    assert [(f["feedType"], f["marketplaceIds"]) for f in feeds] == [
        ("POST_ORDER_ACKNOWLEDGEMENT_DATA", [AMAZON_MX]),
        ("JSON_LISTINGS_FEED", [AMAZON_US]),
    ]
    for method, path, query, _ in sent:
        if method == "GET" and path.startswith("/feeds/"):
            assert _problems(FEEDS, "GET", path, None, query) == []
    assert mx.lines[1].cancelled == 1 and len(amazon_sandbox.state.inventory) == 12
    # and wrong ones fail
    feed = feeds[0]
    assert any(
        "marketplaceIds" in p
        for p in _problems(FEEDS, "POST", "/feeds/2021-06-30/feeds", {**feed, "marketplaceIds": []})
    )
    assert any(
        "feedType" in p
        for p in _problems(FEEDS, "POST", "/feeds/2021-06-30/feeds", {k: v for k, v in feed.items() if k != "feedType"})
    )
    assert any("contentType" in p for p in _problems(FEEDS, "POST", "/feeds/2021-06-30/documents", {}))
    connector.close()


def test_search_and_get_order_queries_match_the_model(amazon_sandbox, amazon_us_mx_account, sent_requests):
    # given
    made = _order(amazon_sandbox, [1])
    connector = connector_for(amazon_us_mx_account)
    sent = sent_requests(connector)
    # when
    list(connector.fetch_orders(since=datetime.now(UTC) - timedelta(days=2)))
    connector.get_order(made.order_id)
    # then
    (search,) = [(path, query) for method, path, query, _ in sent if path == "/orders/2026-01-01/orders"]
    (one,) = [(path, query) for method, path, query, _ in sent if path.startswith("/orders/2026-01-01/orders/")]
    assert _problems(ORDERS, "GET", search[0], None, search[1]) == []
    assert _problems(ORDERS, "GET", one[0], None, one[1]) == []
    assert one[1] == {"includedData": search[1]["includedData"]}
    assert search[1]["marketplaceIds"] == f"{AMAZON_US},{AMAZON_MX}"
    # and wrong queries fail
    path, query = search
    assert _problems(ORDERS, "GET", path, None, {**query, "createdAfter": query["lastUpdatedAfter"]}) == [
        "query: exactly one of createdAfter and lastUpdatedAfter must be provided"
    ]
    assert _problems(ORDERS, "GET", path, None, {**query, "maxResultsPerPage": "101"}) == [
        "query.maxResultsPerPage: 101 is not between 1 and 100"
    ]
    assert any("EVERYTHING" in p for p in _problems(ORDERS, "GET", path, None, {**query, "includedData": "EVERYTHING"}))
    assert any(
        "createdBefore" in p
        for p in _problems(ORDERS, "GET", path, None, {**query, "createdBefore": query["lastUpdatedAfter"]})
    )
    soon = (datetime.now(UTC) - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _problems(ORDERS, "GET", path, None, {**query, "lastUpdatedBefore": soon}) == [
        "query.lastUpdatedBefore: must be at least two minutes before the time of the request"
    ]
    connector.close()


def test_the_sandbox_refuses_what_the_model_refuses_in_amazons_envelope(amazon_sandbox, amazon_account):
    # given: the connector's token, and a request with the old package reference
    import httpx

    made = _order(amazon_sandbox, [1])
    connector = connector_for(amazon_account)
    headers = {"x-amz-access-token": connector.access_token()}
    body = {
        "marketplaceId": AMAZON_US,
        "packageDetail": {
            "packageReferenceId": "shipment-28",
            "carrierCode": "UPS",
            "trackingNumber": "1Z999AA10123456784",
            "shipDate": "2026-03-02T15:00:00Z",
            "orderItems": [{"orderItemId": made.lines[0].line_id, "quantity": 1}],
        },
    }
    # when
    response = httpx.post(
        f"{amazon_sandbox.base_url}/orders/v0/orders/{made.order_id}/shipmentConfirmation", json=body, headers=headers
    )
    # then: 400 InvalidInput with Amazon's envelope, nothing confirmed, the refusal recorded
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "code": "InvalidInput",
                "message": "body.packageDetail.packageReferenceId: 'shipment-28': only positive numeric values "
                "are supported",
                "details": "body.packageDetail.packageReferenceId",
            }
        ]
    }
    assert made.packages == [] and amazon_sandbox.state.shipments == []
    (refusal,) = amazon_sandbox.state.contract_violations
    assert refusal["path"].endswith("/shipmentConfirmation")
    connector.close()
