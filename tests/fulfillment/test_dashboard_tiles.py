"""The dashboard's figures: orders today by channel, due to ship today against shipped, at risk and late,
open exceptions by kind and age; each account's sync and push lag; on-time delivery by carrier and service."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from channels.models import OutboxKind, OutboxMessage, OutboxStatus
from fulfillment.models import Carrier, Shipment, ShipmentStatus
from orders import selectors
from orders import services as order_services
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, OrderStatus
from tests.factories import ChannelAccountFactory, LocationFactory, OrderFactory

pytestmark = pytest.mark.django_db


def test_order_tiles_count_today_by_channel_due_against_shipped_at_risk_late_and_cases_by_age():
    # given, at noon: orders placed today on two channels and one yesterday; three due today
    now = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    amazon, ebay = ChannelAccountFactory(kind="amazon"), ChannelAccountFactory(kind="ebay")
    OrderFactory(account=amazon, placed_at=now - timedelta(hours=1), ship_by=now + timedelta(hours=3))  # at risk
    OrderFactory(account=amazon, placed_at=now - timedelta(hours=2), ship_by=now - timedelta(hours=2))  # late
    OrderFactory(account=ebay, placed_at=now - timedelta(hours=3), ship_by=now - timedelta(hours=1))  # late
    OrderFactory(account=amazon, placed_at=now - timedelta(days=1), ship_by=now - timedelta(hours=4), status="shipped")
    OrderFactory(account=ebay, placed_at=now - timedelta(days=1), ship_by=now, status=OrderStatus.CANCELLED)
    fresh, _ = order_services.exception_case_open(kind=ExceptionKind.NO_NODE, title="a", dedupe_key="a", actor="t")
    old, _ = order_services.exception_case_open(kind=ExceptionKind.NO_NODE, title="b", dedupe_key="b", actor="t")
    ExceptionCase.objects.filter(pk=old.pk).update(created_at=now - timedelta(hours=30))
    done, _ = order_services.exception_case_open(kind=ExceptionKind.OTHER, title="c", dedupe_key="c", actor="t")
    order_services.exception_case_resolve(case=done.pk, note="ok", actor="t")
    ExceptionCase.objects.filter(pk=fresh.pk).update(created_at=now - timedelta(minutes=10))
    # when the tiles are read at noon
    board = selectors.orders_dashboard(now=now)
    # then
    assert board.today_total == 3
    assert {r["account__kind"]: r["n"] for r in board.today_by_channel} == {"amazon": 2, "ebay": 1}
    assert (board.due_today, board.shipped_of_due_today) == (4, 1)
    assert (board.at_risk, board.late) == (1, 2)
    assert board.exceptions_open == 2
    (row,) = board.exceptions_by_kind
    assert (row["kind"], row["n"], row["under_1h"], row["under_24h"], row["older"]) == ("no_node", 2, 1, 0, 1)
    assert not ExceptionCase.objects.filter(pk=done.pk).exclude(status=CaseStatus.RESOLVED).exists()


def test_lag_tile_shows_each_accounts_sync_lag_push_lag_and_parked(client, agent):
    # given an account synced up to 10 minutes ago, a push waiting for 5 minutes and one parked message
    now = timezone.now()
    shop = ChannelAccountFactory(kind="shopify", name="shop-lag", sync_cursor=now - timedelta(minutes=10))
    waiting = OutboxMessage.objects.create(account=shop, kind=OutboxKind.INVENTORY, dedupe_key="w", payload={})
    OutboxMessage.objects.filter(pk=waiting.pk).update(created_at=now - timedelta(minutes=5))
    OutboxMessage.objects.create(
        account=shop, kind=OutboxKind.INVENTORY, dedupe_key="p", payload={}, status=OutboxStatus.PARKED
    )
    client.force_login(agent)
    # when the tile is polled
    html = client.get("/channels/dashboard/lag/").content.decode()
    # then the account's row shows both lags in seconds and links to its parked message
    row = re.search(r"shop-lag</a></td>(.*?)</tr>", html, re.S).group(1)
    sync_lag, push_lag = (int(n) for n in re.findall(r"(\d+) s", row)[:2])
    assert 600 <= sync_lag < 900 and 300 <= push_lag < 600
    assert f"status=parked&amp;account={shop.pk}" in row


def test_carrier_tile_rates_on_time_delivery_by_carrier_and_service(client, agent):
    # given UPS Ground delivered three parcels, one after its promise, and FedEx Express one on time
    now = timezone.now()
    ups = Carrier.objects.create(code="UPSX", name="UPS-X")
    fedex = Carrier.objects.create(code="FDXX", name="FedEx-X")
    node = LocationFactory()
    parcels = [(ups, "Ground", False), (ups, "Ground", False), (ups, "Ground", True), (fedex, "Express", False)]
    for carrier, service, late in parcels:
        delivered = now - timedelta(days=1)
        Shipment.objects.create(
            order=OrderFactory(),
            location=node,
            status=ShipmentStatus.DELIVERED,
            carrier=carrier,
            service_level=service,
            shipped_at=delivered - timedelta(days=2),
            promised_delivery_at=delivered - timedelta(hours=5) if late else delivered + timedelta(hours=5),
            delivered_at=delivered,
        )
    client.force_login(agent)
    # when the carrier tile is polled
    html = client.get("/fulfillment/dashboard/carriers/").content.decode()
    # then each carrier and service has its delivered count, rate and a bar of that width
    ups_row = re.search(r"<td>UPS-X</td>(.*?)</tr>", html, re.S).group(1)
    fedex_row = re.search(r"<td>FedEx-X</td>(.*?)</tr>", html, re.S).group(1)
    assert "<td>Ground</td><td>3</td>" in ups_row and "66.7%" in ups_row and 'aria-label="66.7% on time"' in ups_row
    assert "<td>Express</td><td>1</td>" in fedex_row and "100.0%" in fedex_row
