from __future__ import annotations

import pytest

from inventory import services
from tests.factories import LocationFactory, OrderLineFactory, SkuFactory


@pytest.fixture
def stock():
    """stock(sku, location, units): put units on hand through the ledger (so the invariants hold)."""

    def put(sku, location, units: int):
        services.stock_receive(sku=sku, location=location, quantity=units, actor="test:setup")
        return sku.stock_levels.get(location=location)

    return put


@pytest.fixture
def sku(db):
    return SkuFactory()


@pytest.fixture
def location(db):
    return LocationFactory()


@pytest.fixture
def line_for():
    def make(sku, quantity: int = 1, **kwargs):
        return OrderLineFactory(sku=sku, quantity=quantity, **kwargs)

    return make
