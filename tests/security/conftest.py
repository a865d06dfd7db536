from __future__ import annotations

import pytest

from inventory import services as inventory
from tests.fulfillment.conftest import account, node, order_for, skus, ups  # noqa: F401 - shared fixtures


@pytest.fixture
def put_stock():
    def put(sku, location, units: int):
        inventory.stock_receive(sku=sku, location=location, quantity=units, actor="test:setup")

    return put
