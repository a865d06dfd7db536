"""Changes after the first ingest, TikTok side: an order first seen UNPAID has no ship-by until payment,
then AWAITING_SHIPMENT with rts_sla_time and a later update_time; an address the buyer edits comes with
its phone. The order-level tests follow the change from the sync to the stored order."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from channels.services import connector_for
from channels.sync import sync_account_run
from orders.models import Order, OrderStatus

pytestmark = pytest.mark.django_db


def _unpaid(sandbox):
    made = sandbox.state.generate(2, status="pending", fulfilled_by="MERCHANT", unknown_sku=False)
    (order,) = [o for o in made if sandbox.order_status(o) == "UNPAID"]
    return order


def _parsed(account, order_id):
    connector = connector_for(account)
    raw = connector.get_order(order_id)
    return raw, connector.parse_order(raw)


def test_an_unpaid_order_has_no_ship_by_until_payment_sets_it(tiktok_sandbox, tiktok_account):
    # given
    made = _unpaid(tiktok_sandbox)
    raw, before = _parsed(tiktok_account, made.order_id)
    # when: payment clears
    httpx.post(f"{tiktok_sandbox.base_url}/_sandbox/tiktok/pay", json={"order_id": made.order_id})
    raw_after, after = _parsed(tiktok_account, made.order_id)
    # then
    assert raw["status"] == "UNPAID" and "rts_sla_time" not in raw and "paid_time" not in raw
    assert before.ship_by is None and before.status == OrderStatus.PENDING and before.paid_at is None
    assert raw_after["status"] == "AWAITING_SHIPMENT" and after.status == OrderStatus.OPEN
    assert after.ship_by == datetime.fromtimestamp(raw_after["rts_sla_time"], tz=UTC)
    assert all(line.ship_by == after.ship_by for line in after.lines)
    assert after.updated_at > before.updated_at


def test_an_edited_address_is_parsed_with_its_phone_and_the_rest_of_the_order(tiktok_sandbox, tiktok_account):
    # given
    (made,) = tiktok_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    _, before = _parsed(tiktok_account, made.order_id)
    # when: the buyer corrects the address
    httpx.post(
        f"{tiktok_sandbox.base_url}/_sandbox/tiktok/address",
        json={
            "order_id": made.order_id,
            "name": "Zoë Müller",
            "line1": "12 Rue de l'Église",
            "city": "Brooklyn",
            "phone": "+1 555 0199",
        },
    )
    raw, after = _parsed(tiktok_account, made.order_id)
    # then
    assert raw["has_updated_recipient_address"] is True and after.updated_at > before.updated_at
    assert (after.ship_to.name, after.ship_to.line1, after.ship_to.city, after.ship_to.phone) == (
        "Zoë Müller",
        "12 Rue de l'Église",
        "Brooklyn",
        "+1 555 0199",
    )
    assert after.total_amount == before.total_amount and after.currency == "USD"
    assert [(ln.channel_sku, ln.quantity, ln.unit_price) for ln in after.lines] == [
        (ln.channel_sku, ln.quantity, ln.unit_price) for ln in before.lines
    ]


def test_an_order_first_ingested_unpaid_gets_its_ship_by_once_paid(tiktok_sandbox, tiktok_account, skus):
    # given
    made = _unpaid(tiktok_sandbox)
    sync_account_run(account_id=tiktok_account.pk)
    order = Order.objects.get(account_id=tiktok_account.pk, external_id=made.order_id)
    assert order.ship_by is None
    # when
    httpx.post(f"{tiktok_sandbox.base_url}/_sandbox/tiktok/pay", json={"order_id": made.order_id})
    sync_account_run(account_id=tiktok_account.pk)
    # then
    order.refresh_from_db()
    assert order.status == OrderStatus.OPEN
    assert order.ship_by == made.ship_by.replace(microsecond=0)


def test_an_address_edited_after_ingest_reaches_the_order(tiktok_sandbox, tiktok_account, skus):
    # given
    (made,) = tiktok_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    sync_account_run(account_id=tiktok_account.pk)
    # when
    httpx.post(
        f"{tiktok_sandbox.base_url}/_sandbox/tiktok/address",
        json={"order_id": made.order_id, "line1": "500 Nuevo Camino", "phone": "+1 555 0142"},
    )
    sync_account_run(account_id=tiktok_account.pk)
    # then
    order = Order.objects.get(account_id=tiktok_account.pk, external_id=made.order_id)
    assert (order.ship_to.line1, order.ship_to.phone) == ("500 Nuevo Camino", "+1 555 0142")
