"""Shopify contract: every GraphQL document the connector sends, with the variables it sends for varied
orders (multi-line, partial, Unicode), checked against the saved Admin schema and Shopify's limits.

The requests are captured on the wire while the connector works against the sandbox; each is then
checked with graphql-core (``validate``, variable coercion) and the documented limits (page sizes,
single-query cost, bulk query shape). Deliberately wrong documents and variables fail the same checks.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from graphql import OperationDefinitionNode, parse, validate
from graphql.execution.values import get_variable_values

from channels.connectors.base import (
    CancelRequest,
    InventoryQuantity,
    RefundLine,
    RefundRequest,
    ShipmentConfirmation,
    ShipmentLine,
)
from channels.connectors.shopify import ShopifyConnector, bulk_orders_query
from channels.connectors.shopify.documents import DOCUMENTS as connector_documents
from channels.connectors.shopify.documents import GRAPHQL_DIR, ORDER_FRAGMENT, load, orders_by_id
from channels.sandbox.base import SandboxLine
from channels.sandbox.shopify import (
    MAX_QUERY_COST,
    STORE_LOCATION_ID,
    bulk_query_problems,
    catalog_entry,
    page_size_problems,
    requested_cost,
    variable_problems,
)
from channels.services import connector_for

pytestmark = pytest.mark.django_db

# The documents as the connector loads them from its .graphql files.
DOCUMENTS = {path.stem: load(path.stem) for path in sorted(GRAPHQL_DIR.glob("*.graphql"))}
DOCUMENTS.pop("order_fragment")
DOCUMENTS.pop("returns_fragment")
DOCUMENTS.pop("bulk_orders")
ORDER_IDS_QUERY = DOCUMENTS["order_ids"]
INVENTORY_SET = DOCUMENTS["inventory_set"]

UNICODE_SKU = 'ÉTÉ-Ünï "quoted" 7'


def _operation(document):
    return next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))


def _problems(schema, query: str, variables: dict) -> list[str]:
    """Everything Shopify would refuse in one request: schema, variables, page sizes, cost, bulk shape."""
    document = parse(query)
    found = [f"validate: {p.message}" for p in validate(schema, document)]
    if found:
        return found
    operation = _operation(document)
    coerced = get_variable_values(schema, operation.variable_definitions or (), variables)
    if isinstance(coerced, list):
        return [f"variables: {e.message}" for e in coerced]
    found += [f"variables: {e['message']}" for e in variable_problems(schema, operation, variables)]
    found += [f"page size: {e['message']}" for e in page_size_problems(schema, document, operation, coerced.coerced)]
    cost = requested_cost(schema, document, operation, coerced.coerced)
    if cost > MAX_QUERY_COST:
        found.append(f"cost {cost} > {MAX_QUERY_COST}")
    if operation.name and operation.name.value == "BulkOrders":
        bulk = parse(variables["query"])
        found += [f"bulk: {p.message}" for p in validate(schema, bulk)]
        found += [f"bulk: {p}" for p in bulk_query_problems(schema, bulk)]
    return found


@pytest.fixture
def wire(shopify_sandbox, shopify_account, monkeypatch):
    """A connector whose every GraphQL request is recorded as (query, variables)."""
    monkeypatch.setattr(ShopifyConnector, "bulk_poll_interval", 0.01)
    connector = connector_for(shopify_account)
    sent: list[tuple[str, dict]] = []

    def record(request):
        if request.url.path.endswith("/graphql.json"):
            body = json.loads(request.content)
            sent.append((body["query"], body.get("variables") or {}))

    connector.http.client.event_hooks["request"].append(record)
    yield connector, sent
    connector.close()


def _varied_orders(sandbox):
    state = sandbox.state
    (single,) = state.generate(1, lines=1, unknown_sku=False, status="unshipped")
    (multi,) = state.generate(1, lines=4, unknown_sku=False, status="unshipped")
    (big,) = state.generate(1, unknown_sku=False, status="unshipped")
    (pickup,) = state.generate(1, lines=2, unknown_sku=False, status="unshipped", pickup_location=STORE_LOCATION_ID)
    (partial,) = state.generate(1, lines=3, unknown_sku=False, status="unshipped")
    with state.lock:
        # More lines than one nested page holds, Unicode names and SKUs.
        big.lines = [
            SandboxLine(f"{big.number}{i:02d}", f"WB-{1000 + i}", f"Écharpe №{i} — 雪", 1, 1) for i in range(60)
        ]
        big.lines.append(SandboxLine(f"{big.number}60", UNICODE_SKU, "Ünïcode ☃", 2, 3))
        big.buyer_name = "Zoë Łukasz-Ōtani 山田"
        state.catalog.setdefault(UNICODE_SKU, catalog_entry(UNICODE_SKU))
        partial.lines[0].quantity = 3
        state.touch(big)
        state.touch(partial)
    return single, multi, big, pickup, partial


def test_every_request_the_connector_sends_fits_the_schema_and_shopifys_limits(
    shopify_sandbox, shopify_schema_built, wire
):
    # given varied orders, and a connector recording its requests
    connector, sent = wire
    single, multi, big, pickup, partial = _varied_orders(shopify_sandbox)
    since = datetime(2020, 1, 1, tzinfo=UTC)
    gid = "gid://shopify/Order/{}".format

    # when it does everything it can do
    list(connector.fetch_orders(since=since, backfill=True))
    list(connector.fetch_orders(since=since))
    for made in (single, multi, big, pickup, partial):
        connector.get_order(gid(made.order_id))
    connector.graphql(DOCUMENTS["order_fulfillment_orders"], {"id": gid(big.order_id), "after": None})
    connector.confirm_shipment(
        ShipmentConfirmation(
            order_external_id=gid(big.order_id),
            package_reference="PKG-1",
            carrier_code="other",
            carrier_name="Société Nationale de Transports — 顺丰",
            tracking_number="TRK-ÜNÏ-1",
            tracking_url="https://track.example.com/TRK-1",
            shipped_at=datetime.now(UTC),
            lines=[ShipmentLine(f"gid://shopify/LineItem/{line.line_id}", 1) for line in big.lines[:55]],
        ),
        state={},
    )
    payload = {"order_external_id": gid(big.order_id), "tracking_number": "TRK-ÜNÏ-1"}
    assert connector.is_applied("ship_confirmation", payload, {})
    connector.cancel_lines(CancelRequest(gid(single.order_id), [], "BuyerCanceled"), state={})
    connector.is_applied("cancellation", {"order_external_id": gid(single.order_id)}, {})
    first_line = f"gid://shopify/LineItem/{partial.lines[0].line_id}"
    connector.cancel_lines(
        CancelRequest(gid(partial.order_id), [ShipmentLine(first_line, 1)], "NoInventory — stock épuisé"), state={}
    )
    connector.pickup_ready(gid(pickup.order_id), state={})
    skus = [line.sku for line in multi.lines] + [UNICODE_SKU, "NEVER-LISTED-Ω"]
    resolved = connector.resolve_listings(skus)
    connector.push_inventory(
        [InventoryQuantity(sku, 7 + i, resolved[sku].external_variant_id) for i, sku in enumerate(resolved)]
        + [InventoryQuantity("NEVER-LISTED-Ω", 3, "")],
        idempotency_key="contract-1",
        state={},
    )
    # returns and refunds (issue #18): a return opened at Shopify is read back, a refund is sent
    with shopify_sandbox.state.lock:
        multi.lines[0].shipped = multi.lines[0].quantity
    shopify_sandbox.state.open_return(multi, lines={multi.lines[0].line_id: 1}, reason="DEFECTIVE")
    returns = [r for page in connector.fetch_returns(since=since) for r in page]
    assert any(r.order_external_id == gid(multi.order_id) and r.lines[0].quantity == 1 for r in returns)
    shopify_return = next(r for r in returns if r.order_external_id == gid(multi.order_id)).external_id
    assert not connector.is_applied("return_decision", {"channel_return_id": shopify_return}, {})
    connector.return_decision(channel_return_id=shopify_return, approve=True, reason="", state={})
    assert connector.is_applied("return_decision", {"channel_return_id": shopify_return}, {})
    with shopify_sandbox.state.lock:
        single.lines[0].shipped = single.lines[0].quantity
    declined = shopify_sandbox.state.open_return(single, reason="UNWANTED")
    connector.return_decision(
        channel_return_id=f"gid://shopify/Return/{''.join(c for c in declined.return_id if c.isdigit())}",
        approve=False,
        reason="outside the return window — hors délai",
        state={},
    )
    connector.refund(
        RefundRequest(
            order_external_id=gid(multi.order_id),
            reference="WB-REFUND-1",
            currency="USD",
            amount=Decimal("1.00"),
            shipping=Decimal("0.50"),
            reason="défectueux",
            lines=[RefundLine(f"gid://shopify/LineItem/{multi.lines[0].line_id}", Decimal("0.50"), 1)],
        ),
        state={},
    )
    # a refund of the approved Shopify return processes it (returnProcess), and a resend finds it applied
    return_refund = RefundRequest(
        order_external_id=gid(multi.order_id),
        reference="WB-REFUND-2",
        currency="USD",
        amount=Decimal("1.00"),
        shipping=Decimal("0.25"),
        reason="retour — défectueux",
        lines=[RefundLine(f"gid://shopify/LineItem/{multi.lines[0].line_id}", Decimal("0.75"), 1)],
        channel_return_id=shopify_return,
    )
    processed = connector.refund(return_refund, state={})
    assert processed.response["return_status"] == "CLOSED" and processed.response["refund_id"]
    again = connector.refund(return_refund, state={})
    assert again.already_applied and again.response["refund_id"] == processed.response["refund_id"]
    # reconciliation reads what the shop advertises
    advertised = connector.read_stock(skus, listings={})
    assert advertised.not_listed == {"NEVER-LISTED-Ω"} and set(advertised.quantities) == set(resolved)

    # then every document was sent, and every request fits
    names = {_operation(parse(query)).name.value for query, _ in sent}
    expected = {_operation(parse(text)).name.value for text in DOCUMENTS.values()}
    assert expected | {"OrdersById", "OrderReturnsById"} <= names, f"never exercised: {sorted(expected - names)}"
    refused = {}
    for query, variables in sent:
        problems = _problems(shopify_schema_built, query, variables)
        if problems:
            refused[_operation(parse(query)).name.value] = problems
    assert refused == {}
    assert shopify_sandbox.state.contract_violations == []


def test_the_bulk_backfill_fits_the_bulk_limits_and_asks_for_the_list_pages_fields(shopify_schema_built):
    # given
    document = parse(bulk_orders_query(datetime(2026, 11, 1, tzinfo=UTC)))
    # then
    assert validate(shopify_schema_built, document) == []
    assert bulk_query_problems(shopify_schema_built, document) == []
    plumbing = {"fragment", "WaybillOrder", "on", "Order", "first", "pageInfo", "hasNextPage", "endCursor", "nodes"}
    for name in set(re.findall(r"(?<![$\w])[A-Za-z_]\w*", ORDER_FRAGMENT)) - plumbing:
        assert name in bulk_orders_query(datetime(2026, 11, 1, tzinfo=UTC))


def test_every_graphql_file_is_a_valid_document_of_the_schema(shopify_schema_built):
    # given every .graphql file as the connector loads it (the bulk query with its date filled in)
    files = sorted(GRAPHQL_DIR.glob("*.graphql"))
    documents = {
        path.stem: load(path.stem) for path in files if path.stem not in ("order_fragment", "returns_fragment")
    }
    documents["bulk_orders"] = bulk_orders_query(datetime(2026, 11, 1, tzinfo=UTC))
    # then each parses and validates against the saved Admin schema, and the connector sends them all
    assert set(documents) == {*connector_documents, "bulk_orders"}
    for name, text in documents.items():
        assert validate(shopify_schema_built, parse(text)) == [], name


# --- the checks catch what is wrong -----------------------------------------------------------


def test_a_misspelt_field_fails_the_schema_check(shopify_schema_built):
    wrong = orders_by_id(2).replace("displayFulfillmentStatus", "displayFulfilmentStatus")
    variables = {"id0": "gid://shopify/Order/1", "id1": "gid://shopify/Order/2", "lineCount": 5}
    variables["fulfillmentOrderCount"] = 1
    assert any("displayFulfilmentStatus" in p for p in _problems(shopify_schema_built, wrong, variables))


def test_wrong_variables_fail_coercion(shopify_schema_built):
    # given the 2025 inventory input shape and a quantity as text
    variables = {
        "key": "k-1",
        "input": {
            "name": "available",
            "reason": "correction",
            "ignoreCompareQuantity": True,
            "quantities": [{"inventoryItemId": "gid://shopify/InventoryItem/1", "locationId": "x", "quantity": "5"}],
        },
    }
    # then
    problems = _problems(shopify_schema_built, INVENTORY_SET, variables)
    assert any("ignoreCompareQuantity" in p for p in problems)
    assert any("quantity" in p for p in problems)


def test_a_page_too_large_and_a_query_too_costly_fail(shopify_schema_built):
    listing = {"q": "x", "after": None}
    assert any(
        "cannot exceed 250" in p for p in _problems(shopify_schema_built, ORDER_IDS_QUERY, {**listing, "first": 251})
    )
    assert _problems(shopify_schema_built, ORDER_IDS_QUERY, {**listing, "first": 250}) == []
    # 67 points an order: the connector's 14 fit, 15 do not
    sizes = {"lineCount": 10, "fulfillmentOrderCount": 2}
    ids = {f"id{i}": f"gid://shopify/Order/{i + 1}" for i in range(15)}
    assert _problems(shopify_schema_built, orders_by_id(14), {**dict(list(ids.items())[:14]), **sizes}) == []
    assert any(p.startswith("cost 1005 ") for p in _problems(shopify_schema_built, orders_by_id(15), {**ids, **sizes}))


def test_the_old_three_level_backfill_fails_the_bulk_limits(shopify_schema_built):
    # given the backfill as it was: orders > fulfillmentOrders > lineItems
    old = """{ orders(query: "updated_at:>='2026-01-01T00:00:00Z'") { edges { node { id
      lineItems { edges { node { id sku } } }
      fulfillmentOrders { edges { node { id lineItems { edges { node { id remainingQuantity } } } } } } } } } }"""
    problems = _problems(
        shopify_schema_built,
        DOCUMENTS["bulk_run"],
        {"query": old},
    )
    assert any("nesting depth greater than 2" in p for p in problems)
