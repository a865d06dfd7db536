from __future__ import annotations

from datetime import time
from decimal import Decimal

import pytest

from fulfillment.models import Carrier
from inventory import services as inventory
from tests.factories import ChannelAccountFactory, LocationFactory, OrderFactory, OrderLineFactory, SkuFactory


@pytest.fixture
def account(db):
    return ChannelAccountFactory(name="amazon-us", kind="amazon")


@pytest.fixture
def node(account):
    """node(code, postal_code, **fields): an active node the account may ship from."""

    def make(code: str, postal_code: str = "75261", **fields):
        fields.setdefault("timezone", "America/Chicago")
        fields.setdefault("cutoff_time", None)
        location = LocationFactory(code=code, postal_code=postal_code, **fields)
        account.eligible_locations.add(location)
        return location

    return make


@pytest.fixture
def stock():
    def put(sku, location, units: int):
        inventory.stock_receive(sku=sku, location=location, quantity=units, actor="test:setup")

    return put


@pytest.fixture
def order_for(account):
    """order_for([(sku, qty), …], postal_code="94105", **order fields)"""

    def make(lines, postal_code: str = "94105", **fields):
        order = OrderFactory(account=account, ship_to__postal_code=postal_code, **fields)
        for sku, quantity in lines:
            OrderLineFactory(order=order, sku=sku, quantity=quantity)
        return order

    return make


@pytest.fixture
def skus(db):
    return [SkuFactory() for _ in range(4)]


@pytest.fixture
def ups(db):
    carrier, _ = Carrier.objects.update_or_create(
        code="UPS",
        defaults={
            "name": "UPS",
            "tracking_url_template": "https://www.ups.com/track?tracknum={tracking_number}",
            "channel_codes": {"amazon": "UPS", "walmart": "UPS"},
            "is_active": True,
        },
    )
    return carrier


@pytest.fixture
def cutoff():
    return time(15, 0)


@pytest.fixture
def cheap():
    return Decimal("1.00")
