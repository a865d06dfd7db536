"""TikTok Shop over real HTTP against the sandbox: signing, paging, throttling, replays, one-unit lines
grouped per SKU, the buyer-remorse window, packages, cancellations, inventory and signed webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from channels.connectors.base import ChannelError
from channels.connectors.tiktok import tiktok_sign
from channels.inbound import inbound_orders_process
from channels.models import (
    ChannelAvailability,
    InboundEvent,
    InboundKind,
    InboundStatus,
    Listing,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    SyncStatus,
)
from channels.outbox import cancellation_enqueue, inventory_push_plan, outbox_relay, ship_confirmation_enqueue
from channels.sandbox.base import SandboxLine
from channels.sandbox.tiktok import product_id_for, sku_id_for
from channels.services import channel_account_set_credentials, connector_for
from channels.sync import sync_account_run
from channels.webhooks import webhook_events_process
from orders.models import Order, OrderLine, OrderStatus
from tests.channels import battery
from tests.channels.conftest import TIKTOK_CREDENTIALS as CREDENTIALS

pytestmark = pytest.mark.django_db


def _awaiting(sandbox, count=1, **kwargs):
    kwargs.setdefault("unknown_sku", False)
    return sandbox.state.generate(count, status="unshipped", fulfilled_by="MERCHANT", **kwargs)


def _synced(sandbox, account, **kwargs):
    (made,) = _awaiting(sandbox, **kwargs)
    sync_account_run(account_id=account.pk)
    return made, Order.objects.get(account_id=account.pk, external_id=made.order_id)


def test_sign_matches_a_worked_example_computed_by_hand():
    # given: app_secret + path + sorted key+value pairs (no sign, no access_token) + body + app_secret
    secret = "s3cr3t"
    path = "/order/202309/orders/search"
    params = {
        "timestamp": 1700000000,
        "shop_cipher": "ROW_x",
        "app_key": "ak123",
        "page_size": 10,
        "sign": "not-signed",
        "access_token": "not-signed",
    }
    body = b'{"update_time_ge":1700000000}'
    by_hand = (
        "s3cr3t"
        "/order/202309/orders/search"
        "app_keyak123"
        "page_size10"
        "shop_cipherROW_x"
        "timestamp1700000000"
        '{"update_time_ge":1700000000}'
        "s3cr3t"
    )
    expected = hmac.new(b"s3cr3t", by_hand.encode(), hashlib.sha256).hexdigest()
    # then
    assert expected == "2f7062c5788e23646a5a17ba718438283a4a64ee1445ccd053e85f17bf5aa438"
    assert tiktok_sign(secret, path, params, body) == expected


def test_a_bad_sign_is_answered_with_tiktoks_error_envelope(tiktok_sandbox, tiktok_account):
    # given: a connector signing with the wrong secret
    _awaiting(tiktok_sandbox, 2)
    channel_account_set_credentials(account=tiktok_account, credentials={**CREDENTIALS, "app_secret": "x"}, actor="t")
    # when
    run = sync_account_run(account_id=tiktok_account.pk)
    # then
    assert run.status == SyncStatus.FAILED
    assert "HTTP 401, code 106001" in run.error
    assert tiktok_sandbox.bad_signs == 1 and not InboundEvent.objects.exists()


def test_a_clock_more_than_five_minutes_off_is_refused(tiktok_sandbox, tiktok_account, monkeypatch):
    # given
    connector = connector_for(tiktok_account)
    monkeypatch.setattr("channels.connectors.tiktok.time", SimpleNamespace(time=lambda: time.time() - 600))
    # then
    with pytest.raises(ChannelError, match="code 36009004: Invalid timestamp: more than 5 minutes old"):
        connector.get_order("1")


def test_a_clock_more_than_thirty_seconds_ahead_is_refused(tiktok_sandbox, tiktok_account, monkeypatch):
    # given: TikTok takes timestamps up to 30 s in the future only
    connector = connector_for(tiktok_account)
    monkeypatch.setattr("channels.connectors.tiktok.time", SimpleNamespace(time=lambda: time.time() + 60))
    # then
    with pytest.raises(ChannelError, match="code 36009004: Invalid timestamp: more than 30 seconds ahead"):
        connector.get_order("1")


def test_full_ingest_pages_with_page_token_and_groups_units_per_sku(tiktok_sandbox, tiktok_account, skus):
    # given: 230 orders, pages of 100
    _awaiting(tiktok_sandbox, 230)
    # when
    run = sync_account_run(account_id=tiktok_account.pk)
    # then
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert (run.pages, run.orders_seen, run.orders_created) == (3, 230, 230)
    lines = sum(len(o.lines) for o in tiktok_sandbox.state.orders.values())
    assert OrderLine.objects.filter(order__account_id=tiktok_account.pk).count() == lines


def test_one_unit_line_items_become_quantities_keeping_every_unit_id(tiktok_sandbox, tiktok_account, skus):
    # given: 3 units of one SKU and 1 of another
    (made,) = _awaiting(tiktok_sandbox)
    made.lines = [SandboxLine("a", "WB-1001", "Mug", 3, 12), SandboxLine("b", "WB-1002", "Cap", 1, 9)]
    # when
    sync_account_run(account_id=tiktok_account.pk)
    # then
    order = Order.objects.get(external_id=made.order_id)
    mug = order.lines.get(channel_sku="WB-1001")
    assert mug.external_id == sku_id_for("WB-1001") and mug.quantity == 3
    assert mug.external_unit_ids == [f"{made.number}01{u:03d}" for u in (1, 2, 3)]
    assert order.lines.get(channel_sku="WB-1002").quantity == 1
    assert Listing.objects.get(account=tiktok_account, channel_sku="WB-1001").external_variant_id == (
        f"{product_id_for('WB-1001')}:{sku_id_for('WB-1001')}"
    )


def test_unpaid_and_on_hold_stay_pending_until_awaiting_shipment(tiktok_sandbox, tiktok_account, skus):
    # given: one UNPAID and one ON_HOLD order
    from fulfillment.selectors import releasable_order_ids

    made = tiktok_sandbox.state.generate(2, status="pending", fulfilled_by="MERCHANT", unknown_sku=False)
    statuses = {tiktok_sandbox.order_status(o) for o in made}
    sync_account_run(account_id=tiktok_account.pk)
    orders = Order.objects.filter(external_id__in=[o.order_id for o in made])
    # then
    assert statuses == {"UNPAID", "ON_HOLD"}
    assert {o.status for o in orders} == {OrderStatus.PENDING}
    assert not set(releasable_order_ids(limit=100)) & {o.pk for o in orders}
    # when: the remorse window ends
    with tiktok_sandbox.state.lock:
        for order in made:
            order.status, order.paid = "unshipped", True
            tiktok_sandbox.state.touch(order)
    sync_account_run(account_id=tiktok_account.pk)
    # then
    assert {o.status for o in orders.all()} == {OrderStatus.OPEN}
    assert {o.pk for o in orders} <= set(releasable_order_ids(limit=100))


def test_fulfilled_by_tiktok_is_recorded_as_marketplace_fulfilled(tiktok_sandbox, tiktok_account, skus):
    # given
    (made,) = tiktok_sandbox.state.generate(1, status="unshipped", fulfilled_by="TIKTOK", unknown_sku=False)
    # when
    sync_account_run(account_id=tiktok_account.pk)
    # then
    assert Order.objects.get(external_id=made.order_id).marketplace_fulfilled


def test_replayed_pages_create_nothing_new(tiktok_sandbox, tiktok_account, skus):
    battery.replayed_pages_create_nothing_new(tiktok_sandbox, tiktok_account, _awaiting, 120)


def test_duplicates_across_pages_are_ingested_once(tiktok_sandbox, tiktok_account, skus):
    battery.duplicates_across_pages_are_ingested_once(tiktok_sandbox, tiktok_account, _awaiting, 150)


def test_throttling_storm_is_honoured(tiktok_sandbox, tiktok_account, skus):
    battery.throttling_storm_is_honoured(tiktok_sandbox, tiktok_account, _awaiting, 40)


def test_throttling_beyond_patience_keeps_the_cursor(tiktok_sandbox, tiktok_account, skus):
    battery.throttling_beyond_patience_keeps_the_cursor(tiktok_sandbox, tiktok_account, _awaiting, 5, 3)


def test_server_errors_are_retried(tiktok_sandbox, tiktok_account, skus):
    battery.server_errors_are_retried(tiktok_sandbox, tiktok_account, _awaiting, 20)


def test_out_of_order_updates_never_regress_status(tiktok_sandbox, tiktok_account, skus):
    # given: the order is cancelled in Waybill's view, then an older AWAITING_SHIPMENT payload arrives
    (made,) = _awaiting(tiktok_sandbox)
    connector = connector_for(tiktok_account)
    old_payload = connector.get_order(made.order_id)
    old_payload["update_time"] -= 3600
    with tiktok_sandbox.state.lock:
        tiktok_sandbox.state.cancel(made, "BuyerCanceled")
    sync_account_run(account_id=tiktok_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    assert order.status == OrderStatus.CANCELLED
    # when
    outcome = inbound_orders_process(account=tiktok_account, connector=connector, raw_orders=[old_payload], actor="t")
    # then
    order.refresh_from_db()
    assert outcome.unchanged == 1 and order.status == OrderStatus.CANCELLED


def test_malformed_orders_fail_naming_the_field(tiktok_sandbox, tiktok_account, skus):
    field_for = {"bad_quantity": "line_items[0].sale_price", "bad_date": "create_time", "missing_items": "line_items"}
    battery.malformed_orders_fail_naming_the_field(tiktok_sandbox, tiktok_account, _awaiting, 30, field_for)


def test_shipping_creates_a_package_with_the_unit_ids(tiktok_sandbox, tiktok_account, skus):
    # given: 3 units of one SKU, 2 of them shipped in this package
    (made,) = _awaiting(tiktok_sandbox)
    made.lines = [SandboxLine("a", "WB-1001", "Mug", 3, 12)]
    sync_account_run(account_id=tiktok_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    line = order.lines.get()
    message = ship_confirmation_enqueue(
        order=order,
        package_reference="PKG-1",
        carrier_code="USPS",
        tracking_number="9400TT",
        shipped_at=timezone.now(),
        lines=[(line.external_id, 2)],
    )
    # when
    outbox_relay(account_id=tiktok_account.pk)
    sync_account_run(account_id=tiktok_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT, message.last_error
    (shipment,) = tiktok_sandbox.state.shipments
    assert shipment["order_line_item_ids"] == line.external_unit_ids[:2]
    assert shipment["shipping_provider_id"] == "6617675021119455233"
    order.refresh_from_db()
    line.refresh_from_db()
    assert order.status == OrderStatus.PARTIALLY_SHIPPED and line.quantity_shipped == 2


def test_ship_resend_after_a_crash_is_found_by_tracking_number(tiktok_sandbox, tiktok_account, skus):
    # given
    _, order = _synced(tiktok_sandbox, tiktok_account)
    message = ship_confirmation_enqueue(
        order=order,
        package_reference="PKG-2",
        carrier_code="UPS",
        tracking_number="1ZTT",
        shipped_at=timezone.now(),
        lines=[(line.external_id, line.quantity) for line in order.lines.all()],
    )
    from channels.outbox import _send, outbox_claim

    (claimed,) = outbox_claim(account_id=tiktok_account.pk)
    _send(connector_for(tiktok_account), OutboxMessage.objects.get(pk=claimed), {})
    OutboxMessage.objects.filter(pk=claimed).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    # when
    outbox_relay(account_id=tiktok_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT and message.response["already_applied"] is True
    assert len(tiktok_sandbox.state.shipments) == 1


def test_cancelling_one_unit_of_a_grouped_line(tiktok_sandbox, tiktok_account, skus):
    # given
    (made,) = _awaiting(tiktok_sandbox)
    made.lines = [SandboxLine("a", "WB-1001", "Mug", 3, 12)]
    sync_account_run(account_id=tiktok_account.pk)
    order = Order.objects.get(external_id=made.order_id)
    line = order.lines.get()
    message = cancellation_enqueue(order=order, lines=[(line.external_id, 1)], reason="NoInventory", dedupe_key="u1")
    # when
    outbox_relay(account_id=tiktok_account.pk)
    sync_account_run(account_id=tiktok_account.pk)
    # then
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT, message.last_error
    (cancel,) = tiktok_sandbox.state.cancellations
    assert cancel["units"] == line.external_unit_ids[:1]
    assert cancel["reason"] == "seller_cancel_reason_out_of_stock"
    line.refresh_from_db()
    assert line.quantity_cancelled == 1


def test_inventory_update_per_product_and_warehouse(tiktok_sandbox, tiktok_account, skus):
    # given: listings whose product and SKU ids were learnt from orders
    for index, quantity in {0: 7, 1: 0}.items():
        code = skus[index].code
        Listing.objects.create(
            account=tiktok_account,
            sku=skus[index],
            channel_sku=code,
            external_variant_id=f"{product_id_for(code)}:{sku_id_for(code)}",
        )
        ChannelAvailability.objects.create(account=tiktok_account, sku=skus[index], quantity=quantity, needs_push=True)
    # when
    inventory_push_plan()
    outbox_relay(account_id=tiktok_account.pk)
    # then
    assert OutboxMessage.objects.get(kind=OutboxKind.INVENTORY).status == OutboxStatus.SENT
    assert tiktok_sandbox.state.inventory == {
        f"{product_id_for(skus[0].code)}:{sku_id_for(skus[0].code)}": 7,
        f"{product_id_for(skus[1].code)}:{sku_id_for(skus[1].code)}": 0,
    }


# --- webhooks -----------------------------------------------------------------------------------


def _webhook(sandbox, order, *, secret="as-test", sent_at=None):
    body = json.loads(sandbox.webhook_body(order))
    if sent_at is not None:
        body["timestamp"] = sent_at
    raw = json.dumps(body, separators=(",", ":")).encode()
    digest = hmac.new(secret.encode(), b"ak-test" + raw, hashlib.sha256).hexdigest()
    return raw, {"HTTP_AUTHORIZATION": digest}


def test_webhook_is_verified_deduped_and_processed(client, tiktok_sandbox, tiktok_account, skus):
    # given
    (made,) = _awaiting(tiktok_sandbox)
    body, headers = _webhook(tiktok_sandbox, made)
    url = f"/webhooks/tiktok/{tiktok_account.pk}/"
    # when: delivered twice (TikTok retries at least once)
    first = client.post(url, body, content_type="application/json", **headers)
    again = client.post(url, body, content_type="application/json", **headers)
    # then
    assert first.status_code == 200 and first.json() == {"ok": True, "duplicate": False}
    assert again.json()["duplicate"] is True
    event = InboundEvent.objects.get(kind=InboundKind.WEBHOOK)
    assert event.external_id == made.order_id and event.status == InboundStatus.RECEIVED
    # when
    assert webhook_events_process(account_id=tiktok_account.pk) == 1
    # then
    event.refresh_from_db()
    assert event.status == InboundStatus.PROCESSED
    assert event.order_id == Order.objects.get(external_id=made.order_id).pk


def test_webhook_with_a_bad_hmac_is_rejected_and_stores_nothing(client, tiktok_sandbox, tiktok_account):
    # given
    (made,) = _awaiting(tiktok_sandbox)
    body, headers = _webhook(tiktok_sandbox, made, secret="wrong")
    # when
    response = client.post(f"/webhooks/tiktok/{tiktok_account.pk}/", body, content_type="application/json", **headers)
    # then
    assert response.status_code == 401 and not InboundEvent.objects.exists()


def test_webhook_outside_the_replay_window_is_rejected(client, tiktok_sandbox, tiktok_account):
    # given: a correctly signed delivery captured ten minutes ago
    (made,) = _awaiting(tiktok_sandbox)
    body, headers = _webhook(tiktok_sandbox, made, sent_at=int(time.time()) - 600)
    # when
    response = client.post(f"/webhooks/tiktok/{tiktok_account.pk}/", body, content_type="application/json", **headers)
    # then
    assert response.status_code == 401 and "replay window" in response.json()["error"]
    assert not InboundEvent.objects.exists()


def test_webhook_delivered_by_the_sandbox_over_http(live_server, tiktok_sandbox, tiktok_account, skus):
    # given
    tiktok_sandbox.webhook_url = f"{live_server.url}/webhooks/tiktok/{tiktok_account.pk}/"
    # when
    _awaiting(tiktok_sandbox, 3)
    deadline = time.monotonic() + 10
    while len(tiktok_sandbox.state.webhooks) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    # then
    assert [w["status"] for w in tiktok_sandbox.state.webhooks] == [200, 200, 200]
    assert InboundEvent.objects.filter(kind=InboundKind.WEBHOOK).count() == 3
