"""Shopify over real HTTP against the GraphQL sandbox: backfill, paging, throttling, webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest
from django.utils import timezone
from graphql import parse, validate

from channels.connectors.shopify import DOCUMENTS, ShopifyConnector, assemble_bulk_orders, bulk_orders_query
from channels.models import InboundEvent, InboundKind, InboundStatus, SyncKind, SyncStatus
from channels.services import connector_for
from channels.sync import sync_account_run
from channels.webhooks import webhook_events_process
from orders.models import Order, OrderLine, OrderStatus
from tests.channels import battery

pytestmark = pytest.mark.django_db


def test_every_document_the_connector_sends_validates_against_the_schema(shopify_schema_built):
    # given
    from datetime import UTC, datetime

    documents = {**DOCUMENTS, "bulk_inner": bulk_orders_query(datetime(2026, 11, 1, tzinfo=UTC))}
    # when
    problems = {name: validate(shopify_schema_built, parse(text)) for name, text in documents.items()}
    # then
    assert {name: [p.message for p in found] for name, found in problems.items() if found} == {}


def test_a_misspelt_field_is_caught_by_the_validation(shopify_schema_built):
    # given
    document = parse("{ orders(first: 1) { nodes { id updatedAtt } } }")
    # then
    assert validate(shopify_schema_built, document)


def test_first_sync_backfills_through_a_bulk_operation(shopify_sandbox, shopify_account, skus, monkeypatch):
    # given: 130 orders, no cursor yet
    shopify_sandbox.state.generate(130, unknown_sku=False)
    monkeypatch.setattr(ShopifyConnector, "bulk_poll_interval", 0.01)
    # when
    run = sync_account_run(account_id=shopify_account.pk)
    # then
    assert run.kind == SyncKind.BACKFILL and run.status == SyncStatus.SUCCEEDED
    assert run.progress["bulk_operation"].startswith("gid://shopify/BulkOperation/")
    assert Order.objects.filter(account_id=shopify_account.pk).count() == 130
    lines = sum(len(o.lines) for o in shopify_sandbox.state.orders.values())
    assert OrderLine.objects.filter(order__account_id=shopify_account.pk).count() == lines
    order = Order.objects.exclude(external_reference="").first()
    assert order.external_reference.startswith("#") and order.ship_by is not None


def test_incremental_sync_pages_with_nested_connections(shopify_sandbox, shopify_account, skus, monkeypatch):
    # given: a cursor (no backfill), small pages, and an order with more lines than one nested page

    shopify_account.sync_cursor = timezone.now()
    shopify_account.save()
    monkeypatch.setattr(ShopifyConnector, "page_size", 7)
    shopify_sandbox.state.generate(30, unknown_sku=False)
    (big,) = shopify_sandbox.state.generate(1, unknown_sku=False)
    from channels.sandbox.base import SandboxLine

    big.lines = [SandboxLine(f"{big.number}{i:02d}", f"WB-{1000 + i}", "Item", 1, 1) for i in range(60)]
    # when
    run = sync_account_run(account_id=shopify_account.pk)
    # then
    assert run.kind == SyncKind.POLL and run.status == SyncStatus.SUCCEEDED
    assert run.pages == 5
    assert Order.objects.count() == 31
    assert Order.objects.get(external_id=f"gid://shopify/Order/{big.order_id}").lines.count() == 60


def test_throttled_storm_is_honoured(shopify_sandbox, shopify_account, skus):
    # given: the next six requests come back THROTTLED (HTTP 200, no Retry-After)

    shopify_account.sync_cursor = timezone.now()
    shopify_account.save()
    shopify_sandbox.state.generate(40)
    shopify_sandbox.state.faults.throttle_next = 6
    # when
    run = sync_account_run(account_id=shopify_account.pk)
    # then
    assert run.status == SyncStatus.SUCCEEDED
    assert run.progress["throttled"] >= 6
    assert Order.objects.count() == 40


def test_unpaid_order_is_pending_then_open_when_paid(shopify_sandbox, shopify_account, skus):
    # given

    shopify_account.sync_cursor = timezone.now()
    shopify_account.save()
    (made,) = shopify_sandbox.state.generate(1, status="pending", unknown_sku=False)
    sync_account_run(account_id=shopify_account.pk)
    order = Order.objects.get(external_id=f"gid://shopify/Order/{made.order_id}")
    assert order.status == OrderStatus.PENDING
    # when
    with shopify_sandbox.state.lock:
        made.paid, made.status = True, "unshipped"
        shopify_sandbox.state.touch(made)
    sync_account_run(account_id=shopify_account.pk)
    # then
    order.refresh_from_db()
    assert order.status == OrderStatus.OPEN
    assert order.channel_status == "PAID/UNFULFILLED"


def test_bulk_jsonl_children_in_any_order_are_joined_on_parent_id():
    # given: children before their parents
    rows = [
        {"id": "gid://shopify/FulfillmentOrder/5", "status": "OPEN", "__parentId": "gid://shopify/Order/1"},
        {"id": "gid://shopify/LineItem/7", "sku": "A", "__parentId": "gid://shopify/Order/1"},
        {"id": "gid://shopify/Order/1", "name": "#1"},
        {"id": "gid://shopify/LineItem/8", "sku": "B", "__parentId": "gid://shopify/Order/1"},
    ]
    # when
    (order,) = assemble_bulk_orders("\n".join(json.dumps(r) for r in rows))
    # then: the shape of a completed list page's order
    assert [n["id"] for n in order["lineItems"]["nodes"]] == ["gid://shopify/LineItem/7", "gid://shopify/LineItem/8"]
    assert order["lineItems"]["pageInfo"] == {"hasNextPage": False, "endCursor": None}
    assert [n["id"] for n in order["fulfillmentOrders"]["nodes"]] == ["gid://shopify/FulfillmentOrder/5"]


def test_bulk_jsonl_with_an_orphan_row_is_refused_not_ingested_short():
    # given: a line item whose order is not in the file (a cut download)
    rows = [{"id": "gid://shopify/LineItem/7", "sku": "A", "__parentId": "gid://shopify/Order/404"}]
    # then
    from channels.connectors.base import ChannelError

    with pytest.raises(ChannelError, match="parent"):
        assemble_bulk_orders(json.dumps(rows[0]))


# --- webhooks -----------------------------------------------------------------------------------


def _signed(app, order, secret: str, *, webhook_id: str = "wh-1", topic: str = "orders/create"):
    body = json.dumps(app.rest_payload(order)).encode()
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    headers = {
        "HTTP_X_SHOPIFY_HMAC_SHA256": digest,
        "HTTP_X_SHOPIFY_TOPIC": topic,
        "HTTP_X_SHOPIFY_WEBHOOK_ID": webhook_id,
        "HTTP_X_SHOPIFY_SHOP_DOMAIN": "waybill-sandbox.myshopify.com",
        "HTTP_X_SHOPIFY_API_VERSION": "2026-10",
        "HTTP_X_SHOPIFY_TRIGGERED_AT": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    return body, headers


def test_webhook_is_verified_stored_and_processed(client, shopify_sandbox, shopify_account, skus):
    # given
    (made,) = shopify_sandbox.state.generate(1, unknown_sku=False)
    body, headers = _signed(shopify_sandbox, made, "whsec-current")
    url = f"/webhooks/shopify/{shopify_account.pk}/"
    # when
    response = client.post(url, body, content_type="application/json", **headers)
    # then: answered at once, stored, not processed yet
    assert response.status_code == 200 and response.json() == {"ok": True, "duplicate": False}
    event = InboundEvent.objects.get(kind=InboundKind.WEBHOOK)
    assert event.status == InboundStatus.RECEIVED
    assert event.external_id == f"gid://shopify/Order/{made.order_id}"
    # when: the task runs
    assert webhook_events_process(account_id=shopify_account.pk) == 1
    # then
    event.refresh_from_db()
    order = Order.objects.get(external_id=f"gid://shopify/Order/{made.order_id}")
    assert event.status == InboundStatus.PROCESSED and event.order_id == order.pk


def test_replayed_webhook_creates_nothing_new(client, shopify_sandbox, shopify_account, skus):
    # given: a delivered and processed webhook
    (made,) = shopify_sandbox.state.generate(1, unknown_sku=False)
    body, headers = _signed(shopify_sandbox, made, "whsec-current")
    url = f"/webhooks/shopify/{shopify_account.pk}/"
    client.post(url, body, content_type="application/json", **headers)
    webhook_events_process(account_id=shopify_account.pk)
    counts = (InboundEvent.objects.count(), Order.objects.count(), OrderLine.objects.count())
    # when: the same delivery again, and another delivery for the same unchanged order
    again = client.post(url, body, content_type="application/json", **headers)
    body2, headers2 = _signed(shopify_sandbox, made, "whsec-current", webhook_id="wh-2", topic="orders/updated")
    client.post(url, body2, content_type="application/json", **headers2)
    webhook_events_process(account_id=shopify_account.pk)
    # then: one more webhook event (the new delivery id), no new order event, order or line
    assert again.json()["duplicate"] is True
    assert (InboundEvent.objects.count(), Order.objects.count(), OrderLine.objects.count()) == (
        counts[0] + 1,
        counts[1],
        counts[2],
    )


def test_bad_hmac_is_rejected_and_stores_nothing(client, shopify_sandbox, shopify_account):
    # given
    (made,) = shopify_sandbox.state.generate(1)
    body, headers = _signed(shopify_sandbox, made, "not-the-secret")
    # when
    response = client.post(f"/webhooks/shopify/{shopify_account.pk}/", body, content_type="application/json", **headers)
    # then
    assert response.status_code == 401
    assert not InboundEvent.objects.exists()


def test_previous_secret_is_accepted_during_a_rotation(client, shopify_sandbox, shopify_account):
    # given: the secret was rotated; Shopify may still sign with the old one for a while
    from channels.services import channel_account_set_credentials

    channel_account_set_credentials(
        account=shopify_account,
        credentials={
            "access_token": "shpat_test",
            "webhook_secret": "whsec-new",
            "webhook_secret_previous": "whsec-current",
        },
        actor="test",
    )
    (made,) = shopify_sandbox.state.generate(1)
    body, headers = _signed(shopify_sandbox, made, "whsec-current")
    # when
    response = client.post(f"/webhooks/shopify/{shopify_account.pk}/", body, content_type="application/json", **headers)
    # then
    assert response.status_code == 200


def test_webhook_delivered_by_the_sandbox_over_http(live_server, shopify_sandbox, shopify_account, skus):
    # given: the sandbox posts webhooks to the running Waybill
    shopify_sandbox.webhook_url = f"{live_server.url}/webhooks/shopify/{shopify_account.pk}/"
    # when
    shopify_sandbox.state.generate(3)
    deadline = time.monotonic() + 10
    while len(shopify_sandbox.state.webhooks) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    # then
    assert [w["status"] for w in shopify_sandbox.state.webhooks] == [200, 200, 200]
    assert InboundEvent.objects.filter(kind=InboundKind.WEBHOOK).count() == 3


def test_dropped_webhook_is_caught_by_the_next_poll(client, shopify_sandbox, shopify_account, skus):
    # given: webhooks are being dropped and an order is cancelled

    shopify_account.sync_cursor = timezone.now()
    shopify_account.save()
    shopify_sandbox.webhook_url = "http://127.0.0.1:9/never"
    (made,) = shopify_sandbox.state.generate(1, unknown_sku=False)
    sync_account_run(account_id=shopify_account.pk)
    shopify_sandbox.state.faults.drop_webhooks = True
    with shopify_sandbox.state.lock:
        shopify_sandbox.state.cancel(made, "BuyerCanceled")
    assert shopify_sandbox.state.webhooks[-1]["status"] == "dropped"
    assert not InboundEvent.objects.filter(kind=InboundKind.WEBHOOK).exists()
    # when: the scheduled poll runs
    sync_account_run(account_id=shopify_account.pk)
    # then
    assert Order.objects.get(external_id=f"gid://shopify/Order/{made.order_id}").status == OrderStatus.CANCELLED


def test_connector_refuses_a_wrong_access_token(shopify_sandbox, shopify_account):
    # given
    from channels.connectors.base import ChannelError

    connector = connector_for(shopify_account)
    connector.credentials = {"access_token": "wrong"}
    # then
    with pytest.raises(ChannelError, match="401"):
        connector.get_order("gid://shopify/Order/1")


def test_a_local_pickup_order_waits_for_its_store_mapping_then_goes_only_to_that_store(
    shopify_sandbox, shopify_account, skus, monkeypatch
):
    from channels.models import ChannelLocation
    from channels.sandbox.shopify import STORE_LOCATION_ID, STORE_LOCATION_NAME
    from channels.services import channel_location_map
    from fulfillment import services as fulfillment
    from fulfillment.models import Shipment
    from inventory import services as inventory
    from inventory.models import Sku
    from orders.models import ExceptionCase, ExceptionKind, Hold, HoldKind
    from tests.factories import LocationFactory

    # given two pickup stores with stock, the nearer one not the store the buyer chose
    monkeypatch.setattr(ShopifyConnector, "bulk_poll_interval", 0.01)
    nearer = LocationFactory(code="NEAR", kind="store", can_pickup=True, postal_code="94105")
    chosen = LocationFactory(code="SFO-STORE", kind="store", can_pickup=True, postal_code="10001")
    shopify_account.eligible_locations.add(nearer, chosen)
    (made,) = shopify_sandbox.state.generate(
        1, status="unshipped", unknown_sku=False, pickup_location=STORE_LOCATION_ID
    )
    for line in made.lines:
        for store in (nearer, chosen):
            inventory.stock_receive(sku=Sku.objects.get(code=line.sku), location=store, quantity=9, actor="test:setup")

    # when the order arrives naming a store Waybill has never seen
    sync_account_run(account_id=shopify_account.pk)

    # then it is a pickup order, held, with a case saying what to map; the store waits unmapped in admin
    order = Order.objects.get(external_id=f"gid://shopify/Order/{made.order_id}")
    assert (order.service_level, order.pickup_location_ref, order.pickup_location) == (
        "pickup",
        STORE_LOCATION_ID,
        None,
    )
    hold = Hold.objects.get(order=order, kind=HoldKind.UNMAPPED_LOCATION, released_at__isnull=True)
    case = ExceptionCase.objects.get(order=order, kind=ExceptionKind.UNMAPPED_LOCATION)
    assert STORE_LOCATION_ID in case.detail and STORE_LOCATION_NAME in case.title
    mapping = ChannelLocation.objects.get(account=shopify_account, external_id=STORE_LOCATION_ID)
    assert mapping.location is None and mapping.name == STORE_LOCATION_NAME
    assert not fulfillment.order_route(order_id=order.pk, actor="router").routed

    # when ops map the channel's store to the Waybill store
    changed = channel_location_map(channel_location=mapping, location_id=chosen.pk, actor="manager")

    # then the order has its store, its hold is released, and routing sends it there and nowhere else
    assert changed == [order.pk]
    order.refresh_from_db()
    hold.refresh_from_db()
    assert order.pickup_location == chosen and not order.on_hold and hold.released_by == "manager"
    assert fulfillment.order_route(order_id=order.pk, actor="router").routed
    shipment = Shipment.objects.get(order=order)
    assert (shipment.location, shipment.kind) == (chosen, "pickup")

    # when the store has it ready, Shopify is told (it tells the buyer), once
    from channels.models import OutboxKind, OutboxMessage, OutboxStatus
    from channels.outbox import outbox_relay

    fulfillment.shipment_ready_for_pickup(shipment=shipment.pk, actor="store")
    outbox_relay(account_id=shopify_account.pk)
    notice = OutboxMessage.objects.get(kind=OutboxKind.PICKUP_READY, order=order)
    assert notice.status == OutboxStatus.SENT, notice.last_error
    assert shopify_sandbox.state.extra["prepared_for_pickup"] == [made.order_id]
    # and the buyer collecting it is confirmed to Shopify as a fulfilment of every unit
    fulfillment.shipment_picked_up(shipment=shipment.pk, actor="store")
    outbox_relay(account_id=shopify_account.pk)
    confirmation = OutboxMessage.objects.get(kind=OutboxKind.SHIP_CONFIRMATION, order=order)
    assert confirmation.status == OutboxStatus.SENT, confirmation.last_error
    assert all(line.remaining == 0 for line in made.lines)

    # and a later poll of the same order keeps it (a routed order's store does not move)
    with shopify_sandbox.state.lock:
        shopify_sandbox.state.touch(made)
    sync_account_run(account_id=shopify_account.pk)
    order.refresh_from_db()
    assert order.pickup_location == chosen
    assert Hold.objects.filter(order=order, released_at__isnull=True).count() == 0


# --- the fault battery every channel faces --------------------------------------------------------
# Not the duplicate-across-pages check: Shopify pages by cursor, so its sandbox's duplicate_next ends a
# page early (the next page starts after the last order sent) instead of repeating orders.


def _generate(sandbox, count: int):
    return sandbox.state.generate(count)


def test_battery_replayed_pages_create_nothing_new(shopify_sandbox, shopify_account, skus):
    battery.replayed_pages_create_nothing_new(shopify_sandbox, shopify_account, _generate, 40)


def test_battery_throttling_storm_is_honoured(shopify_sandbox, shopify_account, skus):
    battery.throttling_storm_is_honoured(shopify_sandbox, shopify_account, _generate, 40)


def test_battery_throttling_beyond_patience_keeps_the_cursor(shopify_sandbox, shopify_account, skus):
    # Shopify throttles with HTTP 200 and THROTTLED, not 429
    battery.throttling_beyond_patience_keeps_the_cursor(
        shopify_sandbox, shopify_account, _generate, 10, 5, throttled_as="THROTTLED"
    )


def test_battery_server_errors_are_retried(shopify_sandbox, shopify_account, skus):
    battery.server_errors_are_retried(shopify_sandbox, shopify_account, _generate, 30)
