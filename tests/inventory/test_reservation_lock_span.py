"""Where the one-row reservation statement checks the order line: before it waits for the stock row's lock.

The line check (the line exists, is for the SKU, its order is not marketplace-fulfilled) is an
uncorrelated sub-select of the guarded UPDATE; PostgreSQL evaluates it once, as a one-time filter,
before the UPDATE reaches the row. So a refused line never queues behind the hot row's lock, and an
accepted one does the check before taking it (tests/benchmarks/RESULTS.md, hot SKU profile). Proved with a
second connection holding the row lock and ``lock_timeout`` on ours: waiting would raise, not refuse.
"""

from __future__ import annotations

import psycopg
import pytest
from django.db import OperationalError, connection

from inventory import services
from inventory.errors import ReservationError
from inventory.models import Reservation, StockLevel
from inventory.services import LineDemand
from tests.factories import LocationFactory, OrderFactory, OrderLineFactory, SkuFactory

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]


def _conninfo() -> dict:
    s = connection.settings_dict
    params = {"dbname": s["NAME"], "user": s["USER"], "host": s["HOST"], "port": s["PORT"], "password": s["PASSWORD"]}
    return {k: v for k, v in params.items() if v not in (None, "")}


@pytest.fixture
def row_locked_elsewhere():
    """A hot stock row, locked FOR UPDATE by another open transaction for the test's duration."""
    sku, node = SkuFactory(), LocationFactory()
    services.stock_receive(sku=sku, location=node, quantity=10, actor="test:setup")
    level = StockLevel.objects.get(sku=sku, location=node)
    with psycopg.connect(**_conninfo()) as holder:
        holder.execute("SELECT 1 FROM inventory_stocklevel WHERE id = %s FOR UPDATE", [level.pk])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '1s'")
        try:
            yield sku, node
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
            holder.rollback()


@pytest.mark.parametrize("bad", ["marketplace-fulfilled", "another SKU"])
def test_a_refused_line_is_refused_without_waiting_for_the_row_lock(row_locked_elsewhere, bad):
    # given a line the statement must refuse, while another transaction holds the stock row
    sku, node = row_locked_elsewhere
    if bad == "marketplace-fulfilled":
        line = OrderLineFactory(sku=sku, order=OrderFactory(marketplace_fulfilled=True))
    else:
        line = OrderLineFactory(sku=SkuFactory())
    # when / then: refused by the line check (a wait would end in lock_timeout's error instead)
    with pytest.raises(ReservationError):
        services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {node.pk: 1})], actor="test")
    assert not Reservation.objects.exists()


def test_an_accepted_line_waits_for_the_row_lock(row_locked_elsewhere):
    # given a good line while another transaction holds the stock row
    sku, node = row_locked_elsewhere
    line = OrderLineFactory(sku=sku)
    # when / then: it queues behind the lock (here until lock_timeout): the guard is the row's
    with pytest.raises(OperationalError, match="lock timeout"):
        services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {node.pk: 1})], actor="test")
    assert not Reservation.objects.exists()
