"""The Shopify sandbox refuses, over HTTP and in Shopify's own envelope, what Shopify refuses: documents
that break the schema, variables that do not coerce, connections without first/last or above 250, a
query above 1,000 points, input arrays above 250, and bulk queries beyond the bulk limits."""

from __future__ import annotations

import httpx
import pytest

from channels.connectors.shopify import BULK_RUN, INVENTORY_SET

TOKEN = {"X-Shopify-Access-Token": "shpat_test"}


def _post(sandbox, query: str, variables: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{sandbox.base_url}/admin/api/2026-10/graphql.json",
        json={"query": query, "variables": variables or {}},
        headers=TOKEN,
        timeout=10,
    )


def _codes(response: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json()["errors"]]


def test_a_misspelt_field_is_a_validation_error_with_shopifys_code(shopify_sandbox):
    # when
    response = _post(shopify_sandbox, "{ orders(first: 1) { nodes { id updatedAtt } } }")
    # then
    assert response.status_code == 200
    assert _codes(response) == ["undefinedField"]
    assert "data" not in response.json()
    assert shopify_sandbox.state.contract_violations


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('{ orders(query: "x") { nodes { id } } }', "you must provide one of first or last"),
        ("{ orders(first: 251) { nodes { id } } }", "first cannot exceed 250"),
        ('{ order(id: "gid://shopify/Order/1") { lineItems { nodes { id } } } }', "you must provide one of first"),
    ],
)
def test_connections_need_first_or_last_of_at_most_250(shopify_sandbox, query, message):
    # when
    response = _post(shopify_sandbox, query)
    # then
    body = response.json()
    assert response.status_code == 200 and "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert message in body["errors"][0]["message"]


def test_a_query_above_1000_points_is_refused_before_it_runs(shopify_sandbox):
    # given 50 orders x 50 line items with a variant and its inventory item: 2 + 50 x (1 + 2 + 50 x 3)
    query = (
        "{ orders(first: 50) { nodes { id lineItems(first: 50) { nodes { id "
        "variant { id inventoryItem { id } } } } } } }"
    )
    # when
    response = _post(shopify_sandbox, query)
    # then: Shopify's MAX_COST_EXCEEDED, with no cost block and no data
    body = response.json()
    assert body["errors"][0]["extensions"] == {
        "code": "MAX_COST_EXCEEDED",
        "cost": 7652,
        "maxCost": 1000,
        "documentation": "https://shopify.dev/api/usage/rate-limits",
    }
    assert "extensions" not in body and "data" not in body


def test_a_query_within_the_cost_limit_runs_and_reports_its_cost(shopify_sandbox):
    # given 2 + 10 x (1 + 2 + 5 x 3) = 182
    shopify_sandbox.state.generate(3)
    query = (
        "{ orders(first: 10) { nodes { id lineItems(first: 5) { nodes { id "
        "variant { id inventoryItem { id } } } } } } }"
    )
    # when
    body = _post(shopify_sandbox, query).json()
    # then
    assert "errors" not in body and len(body["data"]["orders"]["nodes"]) == 3
    assert body["extensions"]["cost"]["requestedQueryCost"] == 182


def test_variables_that_do_not_coerce_are_refused_like_shopify_does(shopify_sandbox):
    # given the 2025 inventory input (ignoreCompareQuantity was removed in 2026-04)
    variables = {
        "key": "k-1",
        "input": {
            "name": "available",
            "reason": "correction",
            "ignoreCompareQuantity": True,
            "quantities": [
                {
                    "inventoryItemId": "gid://shopify/InventoryItem/1",
                    "locationId": "gid://shopify/Location/1",
                    "quantity": 1,
                }
            ],
        },
    }
    # when
    response = _post(shopify_sandbox, INVENTORY_SET, variables)
    # then
    (error,) = response.json()["errors"]
    assert response.status_code == 200 and "data" not in response.json()
    assert error["extensions"]["code"] == "INVALID_VARIABLE"
    assert error["message"] == (
        "Variable $input of type InventorySetQuantitiesInput! was provided invalid value for ignoreCompareQuantity "
        "(Field is not defined on InventorySetQuantitiesInput)"
    )
    assert error["extensions"]["problems"] == [
        {"path": ["ignoreCompareQuantity"], "explanation": "Field is not defined on InventorySetQuantitiesInput"}
    ]
    assert shopify_sandbox.state.inventory_log == []


def test_a_missing_required_variable_is_refused(shopify_sandbox):
    # when
    response = _post(shopify_sandbox, "query($id: ID!) { order(id: $id) { id } }", {})
    # then
    assert _codes(response) == ["INVALID_VARIABLE"]


def test_an_input_array_above_250_is_refused(shopify_sandbox):
    # given 251 quantities in one set
    quantities = [
        {
            "inventoryItemId": f"gid://shopify/InventoryItem/{i}",
            "locationId": "gid://shopify/Location/1",
            "quantity": 1,
            "changeFromQuantity": None,
        }
        for i in range(251)
    ]
    variables = {"key": "k-2", "input": {"name": "available", "reason": "correction", "quantities": quantities}}
    # when
    response = _post(shopify_sandbox, INVENTORY_SET, variables)
    # then
    assert _codes(response) == ["MAX_INPUT_SIZE_EXCEEDED"]


@pytest.mark.parametrize(
    ("bulk_query", "message"),
    [
        (
            "{ orders { edges { node { id fulfillmentOrders { edges { node { id "
            "lineItems { edges { node { id } } } } } } } } } }",
            "nesting depth greater than 2",
        ),
        (
            "{ products { edges { node { id variants { edges { node { id } } } media { edges { node { id } } } "
            "collections { edges { node { id } } } metafields { edges { node { id } } } "
            "sellingPlanGroups { edges { node { id } } } } } } }",
            "more than 5 connections",
        ),
        ('{ nodes(ids: ["gid://shopify/Order/1"]) { id } }', "top-level `nodes`"),
        ('{ order(id: "gid://shopify/Order/1") { id name } }', "at least one connection"),
    ],
)
def test_bulk_queries_beyond_the_bulk_limits_get_userErrors(shopify_sandbox, bulk_query, message):
    # when
    response = _post(shopify_sandbox, BULK_RUN, {"query": bulk_query})
    # then: the mutation answers, refusing the query in userErrors
    result = response.json()["data"]["bulkOperationRunQuery"]
    assert result["bulkOperation"] is None
    assert result["userErrors"][0]["field"] == ["query"] and result["userErrors"][0]["code"] == "INVALID"
    assert any(message in e["message"] for e in result["userErrors"])
    assert shopify_sandbox.bulk_operations == {}


def test_a_two_level_bulk_query_is_accepted(shopify_sandbox):
    # when
    query = "{ orders { edges { node { id lineItems { edges { node { id sku } } } } } } }"
    result = _post(shopify_sandbox, BULK_RUN, {"query": query}).json()["data"]["bulkOperationRunQuery"]
    # then
    assert result["userErrors"] == [] and result["bulkOperation"]["status"] in ("CREATED", "RUNNING")


def test_return_process_refuses_what_the_schema_describes_and_closes_the_return_once_all_is_processed(
    shopify_sandbox,
):
    from channels.connectors.shopify.connector import RETURN_PROCESS

    # given a shipped order whose buyer asked to return one unit, not approved yet
    state = shopify_sandbox.state
    (made,) = state.generate(1, lines=1, unknown_sku=False, status="unshipped")
    state.ship(made)
    line_id = made.lines[0].line_id
    opened = state.open_return(made, lines={line_id: 1}, reason="DEFECTIVE")
    number = "".join(c for c in opened.return_id if c.isdigit())
    item = f"gid://shopify/ReturnLineItem/{number}{line_id}"
    reverse_item = f"gid://shopify/ReverseFulfillmentOrderLineItem/{number}{line_id}"
    sale = f"gid://shopify/OrderTransaction/{made.order_id}1"

    def process(**changes):
        value = {
            "returnId": f"gid://shopify/Return/{number}",
            "returnLineItems": [
                {
                    "id": item,
                    "quantity": 1,
                    "dispositions": [
                        {"reverseFulfillmentOrderLineItemId": reverse_item, "quantity": 1, "dispositionType": "MISSING"}
                    ],
                }
            ],
            "financialTransfer": {
                "issueRefund": {
                    "orderTransactions": [
                        {"transactionAmount": {"amount": "1.00", "currencyCode": made.currency}, "parentId": sale}
                    ]
                }
            },
            **changes,
        }
        response = _post(shopify_sandbox, RETURN_PROCESS, {"input": value})
        assert "errors" not in response.json(), response.json()
        payload = response.json()["data"]["returnProcess"]
        return [e["code"] for e in payload["userErrors"]], payload["return"]

    # when it is processed while REQUESTED, then (approved) with refusals of each kind, then as it should be
    requested = process()
    state.return_advance(opened, "approved")
    refusals = [
        process(returnLineItems=[{"id": f"{item}9", "quantity": 1}]),
        process(returnLineItems=[{"id": item, "quantity": 2}]),
        process(
            returnLineItems=[
                {
                    "id": item,
                    "quantity": 1,
                    "dispositions": [
                        {
                            "reverseFulfillmentOrderLineItemId": reverse_item,
                            "quantity": 1,
                            "dispositionType": "RESTOCKED",
                        }
                    ],
                }
            ]
        ),
        process(
            financialTransfer={
                "issueRefund": {
                    "orderTransactions": [
                        {"transactionAmount": {"amount": "1.00", "currencyCode": made.currency}, "parentId": f"{sale}9"}
                    ]
                }
            }
        ),
        process(
            financialTransfer={
                "issueRefund": {
                    "orderTransactions": [
                        {"transactionAmount": {"amount": "999999.00", "currencyCode": made.currency}, "parentId": sale}
                    ]
                }
            }
        ),
    ]
    done = process()
    again = process()
    # then only the last valid one was applied: the return CLOSED, one refund, and a closed return refuses more
    assert requested == (["INVALID_STATE"], None)
    assert [codes for codes, _ in refusals] == [["NOT_FOUND"], ["INVALID"], ["BLANK"], ["INVALID"], ["INVALID"]]
    assert done == ([], {"id": f"gid://shopify/Return/{number}", "status": "CLOSED"})
    assert again == (["INVALID_STATE"], None)
    assert len(state.extra["return_process_log"]) == 1 and len(state.extra["refund_log"]) == 1
    assert opened.status == "closed" and state.contract_violations == []
