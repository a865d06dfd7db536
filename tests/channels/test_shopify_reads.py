"""Reading Shopify orders over HTTP against the sandbox: a new store's backfill, one order by id in the
shape of a list page's order, who cancelled, and changes made to an order after it was placed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from channels.connectors.base import ChannelError
from channels.connectors.shopify import ShopifyConnector
from channels.connectors.shopify import connector as shopify_module
from channels.models import SyncKind, SyncStatus
from channels.sandbox.base import SandboxLine
from channels.services import connector_for
from channels.sync import sync_account_run
from orders.models import Order, OrderLine

pytestmark = pytest.mark.django_db

SINCE = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture
def shopify(shopify_account, monkeypatch):
    monkeypatch.setattr(ShopifyConnector, "bulk_poll_interval", 0.01)
    connector = connector_for(shopify_account)
    yield connector
    connector.close()


def _gid(made) -> str:
    return f"gid://shopify/Order/{made.order_id}"


# --- item 1: a new store ingests on its first sync -----------------------------------------------


def test_a_fresh_account_ingests_on_its_first_sync(shopify_sandbox, shopify_account, skus, monkeypatch):
    # given a store with orders and an account that has never synced
    monkeypatch.setattr(ShopifyConnector, "bulk_poll_interval", 0.01)
    shopify_sandbox.state.generate(25, unknown_sku=False)
    assert shopify_account.sync_cursor is None
    # when
    run = sync_account_run(account_id=shopify_account.pk)
    # then: the backfill ran as a bulk operation Shopify accepts, every order is in, the cursor is set
    assert (run.kind, run.status) == (SyncKind.BACKFILL, SyncStatus.SUCCEEDED), run.error
    assert shopify_sandbox.state.contract_violations == []
    assert Order.objects.filter(account_id=shopify_account.pk).count() == 25
    lines = sum(len(o.lines) for o in shopify_sandbox.state.orders.values())
    assert OrderLine.objects.filter(order__account_id=shopify_account.pk).count() == lines
    shopify_account.refresh_from_db()
    assert shopify_account.sync_cursor is not None


def test_a_refused_backfill_is_a_permanent_error_carrying_shopifys_answer(shopify_sandbox, shopify, monkeypatch):
    # given a backfill query beyond the bulk limits (the old orders > fulfillmentOrders > lineItems)
    old = """{ orders { edges { node { id fulfillmentOrders { edges { node { id
      lineItems { edges { node { id } } } } } } } } } }"""
    monkeypatch.setattr(shopify_module, "bulk_orders_query", lambda since: old)
    # when
    with pytest.raises(ChannelError) as raised:
        list(shopify.fetch_orders(since=SINCE, backfill=True))
    # then: not retried as if the shop were busy, and the cause is kept
    assert raised.value.retryable is False
    assert raised.value.detail["userErrors"][0]["code"] == "INVALID"
    assert "nesting depth" in str(raised.value)


# --- item 6 (Shopify part): one order by id, in the shape of a page's order ----------------------


def test_an_order_read_by_id_is_the_order_a_list_page_and_the_backfill_return(shopify_sandbox, shopify):
    # given orders with few lines, and one with more lines than a nested page holds
    small = shopify_sandbox.state.generate(3, unknown_sku=False)
    (big,) = shopify_sandbox.state.generate(1, unknown_sku=False)
    with shopify_sandbox.state.lock:
        big.lines = [SandboxLine(f"{big.number}{i:02d}", f"WB-{1000 + i}", "Item", 1, 2) for i in range(37)]
        shopify_sandbox.state.touch(big)
    # when
    listed = {o["id"]: o for page in shopify.fetch_orders(since=SINCE) for o in page.raw_orders}
    bulk = {o["id"]: o for page in shopify.fetch_orders(since=SINCE, backfill=True) for o in page.raw_orders}
    by_id = {_gid(made): shopify.get_order(_gid(made)) for made in [*small, big]}
    # then: the same raw order, field for field, whichever way it was read
    assert set(listed) == set(bulk) == set(by_id)
    for gid, order in by_id.items():
        assert order == listed[gid] == bulk[gid]
    assert len(by_id[_gid(big)]["lineItems"]["nodes"]) == 37
    # and it parses into the same order
    assert shopify.parse_order(by_id[_gid(big)]) == shopify.parse_order(json.loads(json.dumps(bulk[_gid(big)])))


def test_a_malformed_order_read_again_by_id_once_the_channel_serves_it_right(shopify_sandbox, shopify):
    # given an order served malformed (no line items)
    shopify_sandbox.state.faults.malformed_next = 1
    (made,) = shopify_sandbox.state.generate(1, unknown_sku=False)
    made.malformed = "missing_items"
    with pytest.raises(Exception, match="lineItems"):
        shopify.parse_order(shopify.get_order(_gid(made)))
    # when the channel serves it right again
    made.malformed = ""
    order = shopify.parse_order(shopify.get_order(_gid(made)))
    # then
    assert [line.channel_sku for line in order.lines] == [line.sku for line in made.lines]


def test_an_order_unknown_to_shopify_is_not_found(shopify_sandbox, shopify):
    with pytest.raises(ChannelError) as raised:
        shopify.get_order("gid://shopify/Order/1")
    assert raised.value.status == 404 and raised.value.retryable is False


# --- item 4 (Shopify part): who cancelled --------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "initiator"),
    [
        ("CUSTOMER", "buyer"),
        ("INVENTORY", "seller"),
        ("STAFF", "seller"),
        ("OTHER", "seller"),
        ("FRAUD", "marketplace"),
        ("DECLINED", "marketplace"),
    ],
)
def test_a_cancelled_order_says_who_cancelled_it(shopify_sandbox, shopify, reason, initiator):
    # given an order cancelled at Shopify for this reason
    (made,) = shopify_sandbox.state.generate(1, unknown_sku=False, status="unshipped")
    with shopify_sandbox.state.lock:
        shopify_sandbox.state.cancel(made, reason)
    # when
    raw = shopify.get_order(_gid(made))
    order = shopify.parse_order(raw)
    # then
    assert raw["cancelReason"] == reason
    assert (order.status, order.cancelled_by, order.marketplace_id) == ("cancelled", initiator, "")
    assert order.cancel_requested is False


def test_an_open_order_has_no_cancel_initiator(shopify_sandbox, shopify):
    (made,) = shopify_sandbox.state.generate(1, unknown_sku=False, status="unshipped")
    order = shopify.parse_order(shopify.get_order(_gid(made)))
    assert (order.cancelled_by, order.marketplace_id) == ("", "")


# --- item 3 (Shopify part): what an order edit can change is on the normalised order ---------------


def test_an_edit_at_shopify_reaches_the_normalised_order(shopify_sandbox, shopify):
    # given an order read once
    (made,) = shopify_sandbox.state.generate(1, lines=2, unknown_sku=False, status="unshipped")
    before = shopify.parse_order(shopify.get_order(_gid(made)))
    first, second = made.lines
    # when the merchant corrects the address, the buyer's contact, the shipping method, a SKU and a price
    response = httpx.post(
        f"{shopify_sandbox.base_url}/_sandbox/orders/{made.order_id}/edit",
        json={
            "address": {"line1": "12 Rue de l'Église", "city": "Montréal", "region": "QC", "postal_code": "H2X 1Y4",
                        "country_code": "CA", "phone": "+1 514 555 0199"},
            "buyer_name": "Zoë Ōtani",
            "email": "zoe@example.com",
            "shipping_method": ["Express", "EXPRESS-2D"],
            "lines": {first.line_id: {"sku": "WB-1199"}, second.line_id: {"unit_price": "19.99"}},
        },
    )  # fmt: skip
    assert response.status_code == 200
    after = shopify.parse_order(shopify.get_order(_gid(made)))
    # then
    assert after.updated_at > before.updated_at
    assert after.ship_to.line1 == "12 Rue de l'Église" and after.ship_to.city == "Montréal"
    assert (after.ship_to.region, after.ship_to.postal_code, after.ship_to.country_code) == ("QC", "H2X 1Y4", "CA")
    assert (after.ship_to.name, after.ship_to.phone, after.ship_to.email) == (
        "Zoë Ōtani",
        "+1 514 555 0199",
        "zoe@example.com",
    )
    assert after.shipping_method == "Express"
    assert [line.channel_sku for line in after.lines] == ["WB-1199", second.sku]
    assert after.lines[1].unit_price == Decimal("19.99")
    assert after.total_amount == first.unit_price * first.quantity + Decimal("19.99") * second.quantity


def test_a_webhook_body_parses_into_the_same_order_as_the_graphql_read(shopify_sandbox, shopify):
    # given an order with several lines, partly shipped, and its REST-shaped orders/updated body
    (made,) = shopify_sandbox.state.generate(1, lines=3, unknown_sku=False, status="unshipped")
    with shopify_sandbox.state.lock:
        shopify_sandbox.state.ship(made, lines={made.lines[0].line_id: made.lines[0].quantity})
    body = json.loads(json.dumps(shopify_sandbox.rest_payload(made)))
    # when
    from_graphql = shopify.parse_order(shopify.get_order(_gid(made)))
    from_webhook = shopify.parse_order(body)
    # then: everything an edit can change reads the same (REST carries no inventory item ids)
    assert from_webhook.external_id == from_graphql.external_id
    assert from_webhook.updated_at == from_graphql.updated_at
    assert from_webhook.ship_to == from_graphql.ship_to
    assert (from_webhook.total_amount, from_webhook.shipping_method, from_webhook.status) == (
        from_graphql.total_amount,
        from_graphql.shipping_method,
        from_graphql.status,
    )
    strip = [(x.external_id, x.channel_sku, x.quantity, x.unit_price, x.quantity_shipped) for x in from_graphql.lines]
    assert [
        (x.external_id, x.channel_sku, x.quantity, x.unit_price, x.quantity_shipped) for x in from_webhook.lines
    ] == (strip)


def test_the_sandbox_refuses_an_edit_to_a_shipped_order(shopify_sandbox):
    (made,) = shopify_sandbox.state.generate(1, unknown_sku=False, status="unshipped")
    with shopify_sandbox.state.lock:
        shopify_sandbox.state.ship(made)
    response = httpx.post(
        f"{shopify_sandbox.base_url}/_sandbox/orders/{made.order_id}/edit", json={"address": {"city": "Lyon"}}
    )
    assert response.status_code == 422


def test_a_page_shopify_prices_above_the_limit_is_fetched_in_smaller_pages(shopify_sandbox, shopify, monkeypatch):
    # given nested pages so large that a page of 14 orders costs more than 1,000 points
    monkeypatch.setattr(ShopifyConnector, "list_line_count", 100)
    made = shopify_sandbox.state.generate(9, unknown_sku=False)
    # when
    pages = list(shopify.fetch_orders(since=SINCE))
    # then: Shopify refused the big page (MAX_COST_EXCEEDED) and every order came in smaller ones
    assert any(
        "exceeds the single query max cost" in v["violations"][0] for v in shopify_sandbox.state.contract_violations
    )
    assert sorted(o["id"] for page in pages for o in page.raw_orders) == sorted(_gid(m) for m in made)
    assert max(len(page.raw_orders) for page in pages) < ShopifyConnector.page_size
