"""Revenue leakage per account and month in money, and manual touches before the ship confirmation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from channels.models import ChannelKind
from orders.models import OrderEvent
from scorecards.selectors import manual_touches, revenue_leakage
from tests.factories import ChannelAccountFactory, LocationFactory
from tests.scorecards.history import OrderSpec, ShipmentSpec, write

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_leakage_counts_oversells_late_shipments_refunds_and_returns_marketplace_fulfilled_excluded():
    account = ChannelAccountFactory(kind=ChannelKind.AMAZON, name="amazon-leak")
    placed = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
    ship_by = placed + timedelta(days=1)
    orders = {
        "on_time": OrderSpec(account=account, placed_at=placed, ship_by=ship_by, confirmations=[("sent", ship_by)]),
        "late": OrderSpec(
            account=account, placed_at=placed, ship_by=ship_by, confirmations=[("sent", ship_by + timedelta(seconds=1))]
        ),
        "oversold": OrderSpec(
            account=account, placed_at=placed, ship_by=ship_by, status="cancelled", cancel_initiator="seller"
        ),
        "buyer_cancel": OrderSpec(
            account=account, placed_at=placed, ship_by=ship_by, status="cancelled", cancel_initiator="buyer"
        ),
        "refunded": OrderSpec(
            account=account,
            placed_at=placed,
            ship_by=ship_by,
            confirmations=[("sent", ship_by)],
            refunds=[("confirmed", None), ("failed", None)],
        ),
        "afn_late_oversold": OrderSpec(
            account=account,
            placed_at=placed,
            ship_by=ship_by,
            mfn=False,
            cancel_initiator="seller",
            confirmations=[("sent", ship_by + timedelta(days=2))],
        ),
        "last_month": OrderSpec(
            account=account,
            placed_at=datetime(2026, 10, 30, tzinfo=UTC),
            ship_by=None,
            status="cancelled",
            cancel_initiator="seller",
        ),
    }
    write(list(orders.values()), LocationFactory())
    months = {m.month.month: m for m in revenue_leakage(account_ids=[account.pk], months=2, now=NOW)}
    november = months[11]
    # every line is 2 units at 10.00 (tests.scorecards.history.write)
    assert november.orders == 5 and november.gross == Decimal("100.00")
    assert (november.oversold_orders, november.oversold) == (1, Decimal("20.00"))
    assert (november.late_orders, november.late) == (1, Decimal("20.00"))
    assert (november.refunded_orders, november.refunded) == (1, Decimal("5.00"))
    assert november.total == Decimal("45.00") and november.share == Decimal("0.4500")
    assert months[10].oversold == Decimal("20.00")


def test_manual_touches_before_the_confirmation_flag_more_than_two_with_the_top_cause():
    account = ChannelAccountFactory(kind=ChannelKind.WALMART, name="walmart-touch")
    person = get_user_model().objects.create_user(username="ops-person")
    placed = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)  # a Monday
    confirmed = placed + timedelta(days=1)
    specs = [
        OrderSpec(
            account=account,
            placed_at=placed,
            ship_by=confirmed,
            confirmations=[("sent", confirmed)],
            shipments=[ShipmentSpec()],
        )
        for _ in range(3)
    ]
    write(specs, LocationFactory())
    heavy, light, after = (s.order_id for s in specs)

    def touch(order_id, kind, at, user=person):
        event = OrderEvent.objects.create(
            order_id=order_id, kind=kind, actor=user.username if user else "router", actor_user=user
        )
        OrderEvent.objects.filter(pk=event.pk).update(created_at=at)

    before = placed + timedelta(hours=2)
    for kind in ("hold_placed", "hold_released", "rerouted", "hold_placed"):
        touch(heavy, kind, before)
    touch(heavy, "rerouted", before, user=None)  # the system's reroute is not a manual touch
    touch(light, "address_changed", before)
    touch(light, "stock_allocated", before)
    for kind in ("hold_placed", "hold_released", "address_changed"):
        touch(after, kind, confirmed + timedelta(hours=1))  # after the confirmation: not counted
    weeks = manual_touches(account_ids=[account.pk], weeks=4, now=NOW)
    assert len(weeks) == 1
    week = weeks[0]
    assert week.week.isoformat() == "2026-11-16"
    assert (week.orders_touched, week.touches) == (2, 6)
    assert week.flagged_orders == [heavy]
    assert week.top_cause == "hold" and week.causes == {"hold": 3, "reroute": 1}


def test_leakage_counts_returns_without_a_refund_once_and_never_a_marketplace_fulfilled_refund():
    from orders.models import OrderLine

    account = ChannelAccountFactory(kind=ChannelKind.WALMART, name="walmart-leak")
    placed = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
    ship_by = placed + timedelta(days=1)
    orders = {
        # one of two units returned, no refund yet: the returned unit's value
        "returned": OrderSpec(account=account, placed_at=placed, ship_by=ship_by, confirmations=[("sent", ship_by)]),
        # returned and refunded: the refund counts, not the return a second time
        "returned_refunded": OrderSpec(
            account=account,
            placed_at=placed,
            ship_by=ship_by,
            confirmations=[("sent", ship_by)],
            refunds=[("confirmed", "damaged")],
        ),
        # a WFS order refunded and returned: the marketplace's, not the seller's
        "wfs": OrderSpec(
            account=account,
            placed_at=placed,
            ship_by=ship_by,
            mfn=False,
            refunds=[("confirmed", None)],
        ),
    }
    write(list(orders.values()), LocationFactory())
    OrderLine.objects.filter(
        order_id__in=[orders[k].order_id for k in ("returned", "returned_refunded", "wfs")]
    ).update(quantity_shipped=2, quantity_returned=1)
    [november] = revenue_leakage(account_ids=[account.pk], months=1, now=NOW)
    assert november.orders == 2 and november.gross == Decimal("40.00")
    assert november.returned == Decimal("10.00")
    assert (november.refunded_orders, november.refunded) == (1, Decimal("5.00"))
    assert november.total == Decimal("15.00") and november.share == Decimal("0.3750")
