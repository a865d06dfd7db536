from __future__ import annotations

from decimal import Decimal

import pytest

from channels import availability
from channels.availability import advertised_quantity
from channels.models import BufferPolicy, ChannelAvailability
from inventory import services
from inventory.services import LineDemand
from tests.factories import ChannelAccountFactory, ListingFactory, LocationFactory, OrderLineFactory, SkuFactory


@pytest.mark.parametrize(
    ("policy", "value", "velocity", "lag", "expected"),
    [
        ("none", 0, 0, 0, 10),
        ("fixed", 3, 0, 0, 7),
        ("fixed", 30, 0, 0, 0),
        ("percent", 25, 0, 0, 7),  # 2.5 units held back, rounded up to 3
        ("dynamic", 0, 0.01, 300, 7),  # 3 units sell during one sync lag
        ("dynamic", 5, 0.001, 300, 5),  # the floor wins
    ],
)
def test_advertised_quantity(policy, value, velocity, lag, expected):
    assert (
        advertised_quantity(atp=10, policy=policy, value=Decimal(value), velocity_per_second=velocity, lag_seconds=lag)
        == expected
    )


@pytest.mark.django_db(transaction=True)
def test_every_stock_change_recomputes_what_each_listing_account_should_advertise():
    # given a SKU listed on two accounts; A ships from both nodes with a 2-unit buffer, B from one node
    east, west = LocationFactory(), LocationFactory()
    sku = SkuFactory()
    a = ChannelAccountFactory(buffer_policy=BufferPolicy.FIXED, buffer_value=Decimal(2))
    b = ChannelAccountFactory()
    a.eligible_locations.add(east, west)
    b.eligible_locations.add(west)
    ListingFactory(account=a, sku=sku)
    ListingFactory(account=b, sku=sku)
    # when stock arrives (each service commits: the recompute runs after commit)
    services.stock_receive(sku=sku, location=east, quantity=5, actor="wms")
    services.stock_receive(sku=sku, location=west, quantity=4, actor="wms")
    # then
    rows = {r.account_id: r for r in ChannelAvailability.objects.filter(sku=sku)}
    assert (rows[a.pk].quantity, rows[b.pk].quantity) == (7, 4)
    assert rows[a.pk].needs_push and rows[a.pk].last_pushed_quantity is None
    # when the connector pushes A's figure, then a reservation at west moves both
    availability.channel_availability_mark_pushed(availability_id=rows[a.pk].pk, quantity=7)
    line = OrderLineFactory(sku=sku, quantity=3)
    services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {west.pk: 3})], actor="router")
    rows = {r.account_id: r for r in ChannelAvailability.objects.filter(sku=sku)}
    assert (rows[a.pk].quantity, rows[b.pk].quantity) == (4, 1)
    assert rows[a.pk].needs_push and rows[a.pk].last_pushed_quantity == 7
    # when A's new figure is pushed and nothing moves, there is nothing to push
    availability.channel_availability_mark_pushed(availability_id=rows[a.pk].pk, quantity=4)
    availability.channel_availability_recompute(sku_ids=[sku.pk])
    assert not ChannelAvailability.objects.get(account=a, sku=sku).needs_push


@pytest.mark.django_db
def test_dynamic_buffer_uses_sales_velocity_and_sync_lag():
    node = LocationFactory()
    sku = SkuFactory()
    services.stock_receive(sku=sku, location=node, quantity=20, actor="test:setup")
    account = ChannelAccountFactory(buffer_policy=BufferPolicy.DYNAMIC, sync_lag_seconds=3600.0)
    account.eligible_locations.add(node)
    ListingFactory(account=account, sku=sku)
    # 48 units in the last 24 h on this account: 2 per hour, one hour of lag -> hold back 2
    from tests.factories import OrderFactory

    OrderLineFactory(order=OrderFactory(account=account), sku=sku, quantity=48)
    [row] = availability.channel_availability_recompute(sku_ids=[sku.pk])
    assert row.quantity == 18
