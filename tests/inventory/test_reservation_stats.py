"""The reservation table's statistics follow its growth without autovacuum, and the database holds each
reservation to an existing stock row (issue #22: plans made while a table was tiny must not outlive it)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from inventory import services
from inventory.models import Reservation, StockLevel
from inventory.services import LineDemand
from inventory.services.common import STATS_REFRESH_FROM
from tests.factories import LocationFactory, OrderLineFactory, SkuFactory

pytestmark = pytest.mark.django_db


def _reltuples(table: str) -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        return cursor.fetchone()[0]


def _next_reservation_id(value: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE inventory_reservation ALTER COLUMN id RESTART WITH {value}")


@pytest.fixture
def hot_row():
    sku, node = SkuFactory(), LocationFactory()
    services.stock_receive(sku=sku, location=node, quantity=10, actor="test:setup")
    return sku, node


@pytest.mark.parametrize("several_lines", [False, True])
def test_a_reservation_with_a_power_of_two_id_analyses_the_table(
    hot_row, django_capture_on_commit_callbacks, several_lines
):
    # given a reservation table analysed while empty (as a `VACUUM ANALYZE` at setup leaves it)
    sku, node = hot_row
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE inventory_reservation")
    assert _reltuples("inventory_reservation") == 0
    _next_reservation_id(STATS_REFRESH_FROM - 1)
    lines = [OrderLineFactory(sku=sku, quantity=1) for _ in range(2)]
    demands = [LineDemand(line.pk, sku.pk, {node.pk: 1}) for line in lines]
    # when the reservations take ids STATS_REFRESH_FROM - 1 and STATS_REFRESH_FROM
    with django_capture_on_commit_callbacks(execute=True):
        if several_lines:
            services.stock_reserve(lines=demands, actor="test")
        else:
            for demand in demands:
                services.stock_reserve(lines=[demand], actor="test")
    # then the table was analysed after the write: its statistics count the rows
    assert sorted(Reservation.objects.values_list("pk", flat=True)) == [STATS_REFRESH_FROM - 1, STATS_REFRESH_FROM]
    assert _reltuples("inventory_reservation") == 2


def test_other_ids_leave_the_statistics_alone(hot_row, django_capture_on_commit_callbacks):
    # given
    sku, node = hot_row
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE inventory_reservation")
    _next_reservation_id(STATS_REFRESH_FROM + 1)
    line = OrderLineFactory(sku=sku, quantity=1)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {node.pk: 1})], actor="test")
    # then
    assert Reservation.objects.get().pk == STATS_REFRESH_FROM + 1
    assert _reltuples("inventory_reservation") == 0


def test_a_reservation_needs_an_existing_stock_row(hot_row):
    # given a SKU and a node that both exist, but no stock row for that pair
    sku, _node = hot_row
    other = LocationFactory()
    assert not StockLevel.objects.filter(sku=sku, location=other).exists()
    line = OrderLineFactory(sku=sku, quantity=1)
    # when / then the database refuses the row at the statement
    with pytest.raises(IntegrityError, match="reservation_stocklevel_fk"), transaction.atomic():
        Reservation.objects.create(order_line=line, sku=sku, location=other, quantity=1)
