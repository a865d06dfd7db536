"""Every path of the reservation service, driven on purpose: the one-statement fast paths (and proof that the
uncontended call takes them), the retry-then-locked fallback (by an injected failure of the fast statement),
multi-line / multi-row / safety-stock / wrong-line cases for each statement, and release by line."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inventory import services
from inventory.errors import InsufficientStock, ReservationError, UnknownStockItem
from inventory.models import Reservation, ReservationStatus, StockLevel
from inventory.services import LineDemand
from inventory.services import reservations as reservation_service
from inventory.signals import stock_changed
from tests.factories import LocationFactory, OrderFactory, OrderLineFactory, SkuFactory

from .helpers import assert_stock_invariants

pytestmark = pytest.mark.django_db


@pytest.fixture
def hot_statements(monkeypatch):
    """Counts the calls of the one-statement fast path (the statement runs as it is)."""
    real = reservation_service._execute_hot
    calls: list[str] = []

    def counting(sql, params):
        calls.append(sql)
        return real(sql, params)

    monkeypatch.setattr(reservation_service, "_execute_hot", counting)
    return calls


@pytest.fixture
def fast_statement_fails(monkeypatch):
    """An injected failure of the fast statement: it matches no row, as when a concurrent commit keeps it short
    while the explaining read (taken later) finds enough. ``before_lock`` (if set) runs just before the locked
    path takes its row locks: a concurrent change landing then. Returns the list of attempts."""
    attempts: list[int] = []

    def failing(sql, params):
        attempts.append(1)
        return []

    real_lock = reservation_service.lock_levels

    def lock_levels(pairs, *, create):
        if failing.before_lock is not None:
            failing.before_lock()
        return real_lock(pairs, create=create)

    monkeypatch.setattr(reservation_service, "_execute_hot", failing)
    monkeypatch.setattr(reservation_service, "lock_levels", lock_levels)
    failing.attempts = attempts
    failing.before_lock = None
    return failing


@pytest.fixture
def announced():
    """The sku_ids of every stock_changed announcement sent during the test."""
    seen: list[list[int]] = []

    def receiver(sender, sku_ids, **kwargs):
        seen.append(list(sku_ids))

    stock_changed.connect(receiver, dispatch_uid="test-reservation-paths")
    yield seen
    stock_changed.disconnect(dispatch_uid="test-reservation-paths")


def _stored(reservations) -> list[tuple]:
    return [
        (r.pk, r.order_line_id, r.sku_id, r.location_id, r.quantity, r.status, r.created_at, r.updated_at)
        for r in reservations
    ]


def _rows(pks) -> list[tuple]:
    by_pk = {r.pk: r for r in Reservation.objects.filter(pk__in=list(pks))}
    return _stored([by_pk[pk] for pk in pks])


def _level(sku, location) -> tuple[int, int]:
    level = StockLevel.objects.get(sku=sku, location=location)
    return level.on_hand, level.reserved


def _drain(sku, location, units: int):
    """Someone else takes ``units`` of free stock (a committed adjustment, through the ledger)."""
    return lambda: services.stock_adjust(sku=sku, location=location, delta=-units, reason="count", actor="test:other")


# --- the fast paths are taken when nothing contends ---------------------------------------------------


def test_one_line_on_one_row_is_one_statement_and_returns_what_it_stored(
    sku, location, stock, line_for, hot_statements, announced, django_capture_on_commit_callbacks
):
    stock(sku, location, 5)
    line = line_for(sku, quantity=5)
    # when
    with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as queries:
        reservations = services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: 5})], actor="router")
    # then one statement and no other query; the objects returned are the rows stored
    assert len(hot_statements) == 1 and len(queries) == 0
    assert _stored(reservations) == _rows([r.pk for r in reservations])
    assert [(r.order_line_id, r.sku_id, r.location_id, r.quantity, r.status) for r in reservations] == [
        (line.pk, sku.pk, location.pk, 5, ReservationStatus.ACTIVE)
    ]
    assert _level(sku, location) == (5, 5)
    assert announced == [[sku.pk]]
    assert_stock_invariants()


def test_two_lines_of_one_order_on_one_row_are_one_statement_and_two_reservations(
    sku, location, stock, hot_statements, announced, django_capture_on_commit_callbacks
):
    stock(sku, location, 7)
    order = OrderFactory()
    a, b = OrderLineFactory(order=order, sku=sku, quantity=3), OrderLineFactory(order=order, sku=sku, quantity=4)
    # when both lines reserve on the same stock row
    with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as queries:
        reservations = services.stock_reserve(
            lines=[LineDemand(a.pk, sku.pk, {location.pk: 3}), LineDemand(b.pk, sku.pk, {location.pk: 4})],
            actor="router",
        )
    # then one statement, and each line keeps its own reservation (never merged into one)
    assert len(hot_statements) == 1 and len(queries) == 0
    assert _stored(reservations) == _rows([r.pk for r in reservations])
    assert sorted((r.order_line_id, r.sku_id, r.location_id, r.quantity) for r in reservations) == sorted(
        [(a.pk, sku.pk, location.pk, 3), (b.pk, sku.pk, location.pk, 4)]
    )
    assert Reservation.objects.filter(order_line=a).get().quantity == 3
    assert Reservation.objects.filter(order_line=b).get().quantity == 4
    assert _level(sku, location) == (7, 7)
    assert announced == [[sku.pk]]
    assert_stock_invariants()


def test_two_lines_on_one_row_keep_safety_stock_and_take_exactly_what_is_free(sku, location, stock):
    # given 9 on hand, 2 held as safety stock: 7 free
    level = stock(sku, location, 9)
    StockLevel.objects.filter(pk=level.pk).update(safety_stock=2)
    order = OrderFactory()
    a, b = OrderLineFactory(order=order, sku=sku, quantity=4), OrderLineFactory(order=order, sku=sku, quantity=4)
    # when two lines want 4 each: short
    with pytest.raises(InsufficientStock) as caught:
        services.stock_reserve(
            lines=[LineDemand(a.pk, sku.pk, {location.pk: 4}), LineDemand(b.pk, sku.pk, {location.pk: 4})],
            actor="router",
        )
    assert (caught.value.wanted, caught.value.available) == (8, 7)
    assert not Reservation.objects.exists()
    # and 4 + 3 take the last free unit
    services.stock_reserve(
        lines=[LineDemand(a.pk, sku.pk, {location.pk: 4}), LineDemand(b.pk, sku.pk, {location.pk: 3})], actor="router"
    )
    assert _level(sku, location) == (9, 7)
    assert_stock_invariants()


@pytest.mark.parametrize("service", ["stock_reserve", "stock_reserve_order"])
def test_several_rows_are_one_statement_returning_reservations_in_demand_order(
    stock, hot_statements, announced, django_capture_on_commit_callbacks, service
):
    east, west = LocationFactory(), LocationFactory()
    tee, mug = SkuFactory(), SkuFactory()
    stock(tee, east, 2)
    stock(tee, west, 3)
    stock(mug, west, 4)
    order = OrderFactory()
    tee_line, mug_line = OrderLineFactory(order=order, sku=tee, quantity=5), OrderLineFactory(order=order, sku=mug)
    demands = [LineDemand(mug_line.pk, mug.pk, {west.pk: 4}), LineDemand(tee_line.pk, tee.pk, {west.pk: 3, east.pk: 2})]
    # when
    with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as queries:
        if service == "stock_reserve":
            reservations = services.stock_reserve(lines=demands, actor="router")
        else:
            reservations = services.stock_reserve_order(demands=demands, actor="router")
    # then
    assert len(hot_statements) == 1 and len(queries) == 0
    assert _stored(reservations) == _rows([r.pk for r in reservations])
    assert [(r.order_line_id, r.sku_id, r.location_id, r.quantity, r.status) for r in reservations] == [
        (mug_line.pk, mug.pk, west.pk, 4, ReservationStatus.ACTIVE),
        (tee_line.pk, tee.pk, west.pk, 3, ReservationStatus.ACTIVE),
        (tee_line.pk, tee.pk, east.pk, 2, ReservationStatus.ACTIVE),
    ]
    assert (_level(tee, east), _level(tee, west), _level(mug, west)) == ((2, 2), (3, 3), (4, 4))
    assert announced == [sorted([tee.pk, mug.pk])]
    assert_stock_invariants()


def test_the_hot_statement_is_prepared_on_the_connection(sku, location, stock, line_for):
    stock(sku, location, 5)
    services.stock_reserve(lines=[LineDemand(line_for(sku).pk, sku.pk, {location.pk: 1})], actor="router")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql AND statement LIKE %s",
            [f"%INSERT INTO {Reservation._meta.db_table}%"],
        )
        (prepared,) = cursor.fetchone()
    assert prepared == 1


def test_a_plain_shortage_is_decided_by_the_statement_and_one_read_without_a_row_lock(
    sku, location, stock, line_for, hot_statements
):
    # given plenty of another SKU at the node and of this SKU at another node (rows made first)
    stock(SkuFactory(), location, 50)
    stock(sku, LocationFactory(), 50)
    # and here 10 on hand, 4 reserved by another order, 3 held as safety stock: 3 free
    level = stock(sku, location, 10)
    StockLevel.objects.filter(pk=level.pk).update(safety_stock=3)
    services.stock_reserve(lines=[LineDemand(line_for(sku, 4).pk, sku.pk, {location.pk: 4})], actor="router")
    hot_statements.clear()
    line = line_for(sku, quantity=4)
    # when 4 are wanted
    with CaptureQueriesContext(connection) as queries, pytest.raises(InsufficientStock) as caught:
        services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: 4})], actor="router")
    # then the statement ran once, the explaining read named the figures, and no row was locked
    assert len(hot_statements) == 1
    assert not any("FOR UPDATE" in q["sql"] for q in queries.captured_queries)
    assert [str(s) for s in caught.value.shortages] == [f"{sku.code} at {location.code}: wanted 4, available 3"]
    assert _level(sku, location) == (10, 4)


def test_safety_stock_above_free_stock_counts_as_none_available(sku, location, stock, line_for, hot_statements):
    level = stock(sku, location, 4)
    StockLevel.objects.filter(pk=level.pk).update(safety_stock=6)
    line = line_for(sku)
    with pytest.raises(InsufficientStock) as caught:
        services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: 1})], actor="router")
    assert (caught.value.wanted, caught.value.available) == (1, 0)
    assert len(hot_statements) == 1


def test_a_node_without_a_stock_row_is_short_with_none_available(sku, location, line_for, hot_statements):
    # given a known SKU and node, but no stock of it there ever
    line = line_for(sku, quantity=2)
    with pytest.raises(InsufficientStock) as caught:
        services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: 2})], actor="router")
    assert str(caught.value) == f"insufficient stock: {sku.code} at {location.code}: wanted 2, available 0"
    assert len(hot_statements) == 1
    assert not StockLevel.objects.filter(sku=sku).exists()


def test_a_multi_row_shortage_names_every_short_row_and_is_decided_without_a_row_lock(stock, hot_statements):
    # given tee: 10 at east with 3 reserved and 2 safety (5 free); none ever at west; mug: 1 at west
    east, west = LocationFactory(), LocationFactory()
    tee, mug, cap = SkuFactory(), SkuFactory(), SkuFactory()
    level = stock(tee, east, 10)
    StockLevel.objects.filter(pk=level.pk).update(safety_stock=2)
    stock(mug, west, 1)
    stock(cap, east, 9)
    hat = SkuFactory()
    hat_level = stock(hat, east, 2)
    StockLevel.objects.filter(pk=hat_level.pk).update(safety_stock=5)
    earlier = OrderLineFactory(sku=tee, quantity=3)
    services.stock_reserve(lines=[LineDemand(earlier.pk, tee.pk, {east.pk: 3})], actor="router")
    hot_statements.clear()
    order = OrderFactory()
    tee_line = OrderLineFactory(order=order, sku=tee, quantity=9)
    mug_line = OrderLineFactory(order=order, sku=mug, quantity=3)
    cap_line = OrderLineFactory(order=order, sku=cap, quantity=9)
    mug_east = OrderLineFactory(order=order, sku=mug, quantity=1)
    hat_line = OrderLineFactory(order=order, sku=hat, quantity=1)
    # when
    with CaptureQueriesContext(connection) as queries, pytest.raises(InsufficientStock) as caught:
        services.stock_reserve_order(
            demands=[
                LineDemand(tee_line.pk, tee.pk, {east.pk: 6, west.pk: 3}),
                LineDemand(mug_line.pk, mug.pk, {west.pk: 3}),
                LineDemand(cap_line.pk, cap.pk, {east.pk: 9}),
                LineDemand(mug_east.pk, mug.pk, {east.pk: 1}),
                LineDemand(hat_line.pk, hat.pk, {east.pk: 1}),
            ],
            actor="router",
        )
    # then every short row is named, in (sku, location) order, the rows that fit too are untouched
    shortages = sorted(str(s) for s in caught.value.shortages)
    assert shortages == sorted(
        [
            f"{tee.code} at {east.code}: wanted 6, available 5",
            f"{tee.code} at {west.code}: wanted 3, available 0",
            f"{mug.code} at {west.code}: wanted 3, available 1",
            f"{mug.code} at {east.code}: wanted 1, available 0",
            f"{hat.code} at {east.code}: wanted 1, available 0",
        ]
    )
    assert len(hot_statements) == 1
    assert not any("FOR UPDATE" in q["sql"] for q in queries.captured_queries)
    assert _level(tee, east) == (10, 3) and _level(cap, east) == (9, 0) and _level(mug, west) == (1, 0)
    assert not Reservation.objects.filter(order_line__order=order).exists()


# --- each statement checks safety stock, the line's SKU and seller-fulfilment -----------------------


def test_the_multi_row_statement_keeps_safety_stock(stock):
    east, west = LocationFactory(), LocationFactory()
    tee = SkuFactory()
    stock(tee, east, 5)
    level = stock(tee, west, 5)
    StockLevel.objects.filter(pk=level.pk).update(safety_stock=2)
    line = OrderLineFactory(sku=tee, quantity=8)
    with pytest.raises(InsufficientStock) as caught:
        services.stock_reserve_order(demands=[LineDemand(line.pk, tee.pk, {east.pk: 4, west.pk: 4})], actor="router")
    assert [str(s) for s in caught.value.shortages] == [f"{tee.code} at {west.code}: wanted 4, available 3"]
    assert set(StockLevel.objects.filter(sku=tee).values_list("reserved", flat=True)) == {0}
    # and exactly what safety stock leaves free is reservable
    services.stock_reserve_order(demands=[LineDemand(line.pk, tee.pk, {east.pk: 5, west.pk: 3})], actor="router")
    assert (_level(tee, east), _level(tee, west)) == ((5, 5), (5, 3))
    assert_stock_invariants()


def test_the_multi_row_statement_sums_two_lines_on_one_row(stock, hot_statements):
    east, west = LocationFactory(), LocationFactory()
    tee, mug = SkuFactory(), SkuFactory()
    stock(tee, east, 5)
    stock(mug, west, 5)
    order = OrderFactory()
    a, b = OrderLineFactory(order=order, sku=tee, quantity=3), OrderLineFactory(order=order, sku=tee, quantity=3)
    m = OrderLineFactory(order=order, sku=mug, quantity=1)
    demands = [
        LineDemand(a.pk, tee.pk, {east.pk: 3}),
        LineDemand(b.pk, tee.pk, {east.pk: 3}),
        LineDemand(m.pk, mug.pk, {west.pk: 1}),
    ]
    with pytest.raises(InsufficientStock) as caught:
        services.stock_reserve_order(demands=demands, actor="router")
    assert [str(s) for s in caught.value.shortages] == [f"{tee.code} at {east.code}: wanted 6, available 5"]
    assert not Reservation.objects.exists()
    assert len(hot_statements) == 1  # the explaining read summed the two lines too


@pytest.mark.parametrize("rows", ["one row", "several rows"])
def test_a_line_for_another_sku_is_refused_by_every_statement_and_nothing_is_reserved(stock, rows):
    # given two lines of one order; the second line is for the mug but the demand says tee
    east, west = LocationFactory(), LocationFactory()
    tee, mug = SkuFactory(), SkuFactory()
    for sku in (tee, mug):
        stock(sku, east, 10)
        stock(sku, west, 10)
    order = OrderFactory()
    good, wrong = OrderLineFactory(order=order, sku=tee, quantity=2), OrderLineFactory(order=order, sku=mug)
    demands = [LineDemand(good.pk, tee.pk, {east.pk: 2}), LineDemand(wrong.pk, tee.pk, {east.pk: 1})]
    if rows == "several rows":
        demands.append(LineDemand(good.pk, tee.pk, {west.pk: 1}))
    # when / then
    with pytest.raises(ReservationError, match=rf"order line\(s\) \[{wrong.pk}\] don't exist or are for another SKU"):
        services.stock_reserve(lines=demands, actor="router")
    assert not Reservation.objects.exists()
    assert set(StockLevel.objects.values_list("reserved", flat=True)) == {0}


def test_an_unknown_order_line_is_refused_by_the_multi_row_statement(stock):
    east, west = LocationFactory(), LocationFactory()
    tee = SkuFactory()
    stock(tee, east, 5)
    stock(tee, west, 5)
    with pytest.raises(ReservationError, match=r"\[987654321\] don't exist"):
        services.stock_reserve_order(demands=[LineDemand(987654321, tee.pk, {east.pk: 1, west.pk: 1})], actor="r")
    assert not Reservation.objects.exists()


@pytest.mark.parametrize("rows", ["one line", "one row", "several rows"])
def test_a_marketplace_fulfilled_order_is_refused_by_every_statement(stock, rows):
    east, west = LocationFactory(), LocationFactory()
    tee = SkuFactory()
    stock(tee, east, 10)
    stock(tee, west, 10)
    afn = OrderFactory(marketplace_fulfilled=True)
    a, b = OrderLineFactory(order=afn, sku=tee, quantity=2), OrderLineFactory(order=afn, sku=tee, quantity=2)
    demands = [LineDemand(a.pk, tee.pk, {east.pk: 2})]
    if rows != "one line":
        demands.append(LineDemand(b.pk, tee.pk, {east.pk: 2}))
    if rows == "several rows":
        demands.append(LineDemand(b.pk, tee.pk, {west.pk: 1}))
    with pytest.raises(ReservationError, match=r"are marketplace-fulfilled: never reserved"):
        services.stock_reserve(lines=demands, actor="router")
    assert not Reservation.objects.exists()
    assert set(StockLevel.objects.values_list("reserved", flat=True)) == {0}


def test_bad_demand_shapes_are_refused_with_the_line_named(sku, location, stock, line_for):
    line = line_for(sku)
    with pytest.raises(ReservationError, match=r"^nothing to reserve$"):
        services.stock_reserve(lines=[], actor="router")
    with pytest.raises(ReservationError, match=rf"^order line {line.pk}: no location quantities$"):
        services.stock_reserve_order(demands=[LineDemand(line.pk, sku.pk, {})], actor="router")
    with pytest.raises(Exception, match=rf"order line {line.pk} quantity must be positive, got 0"):
        services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: 0})], actor="router")
    with pytest.raises(UnknownStockItem, match=r"unknown location id\(s\) \[999999\]"):
        services.stock_reserve_order(demands=[LineDemand(line.pk, sku.pk, {999_999: 1})], actor="router")


def test_unknown_nodes_in_a_multi_row_demand_are_named(stock):
    east = LocationFactory()
    tee = SkuFactory()
    stock(tee, east, 5)
    line = OrderLineFactory(sku=tee)
    with pytest.raises(UnknownStockItem, match=r"^unknown location id\(s\) \[777777, 777778\]$"):
        services.stock_reserve_order(
            demands=[LineDemand(line.pk, tee.pk, {east.pk: 1, 777778: 1, 777777: 1})], actor="router"
        )
    assert not Reservation.objects.exists()


# --- the fallback: the fast statement keeps failing, the locked path decides ------------------------


def test_one_line_falls_back_to_the_locked_path_after_three_tries(sku, location, stock, line_for, fast_statement_fails):
    stock(sku, location, 4)
    line = line_for(sku, quantity=4)
    # when the statement keeps matching nothing while the read finds 4 free
    reservations = services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: 4})], actor="router")
    # then three tries, then the locked path reserved exactly what fits
    assert len(fast_statement_fails.attempts) == 3
    assert _stored(reservations) == _rows([r.pk for r in reservations])
    assert [(r.order_line_id, r.sku_id, r.location_id, r.quantity, r.status) for r in reservations] == [
        (line.pk, sku.pk, location.pk, 4, ReservationStatus.ACTIVE)
    ]
    assert _level(sku, location) == (4, 4)
    assert_stock_invariants()


def test_two_lines_on_one_row_fall_back_all_or_nothing(sku, location, stock, fast_statement_fails):
    # given 6 free, two lines of 3; a concurrent change takes 1 unit just before the locked path locks the row
    stock(sku, location, 6)
    order = OrderFactory()
    a, b = OrderLineFactory(order=order, sku=sku, quantity=3), OrderLineFactory(order=order, sku=sku, quantity=3)
    fast_statement_fails.before_lock = _drain(sku, location, 1)
    demands = [LineDemand(a.pk, sku.pk, {location.pk: 3}), LineDemand(b.pk, sku.pk, {location.pk: 3})]
    # when / then the locked path sums both lines on the row and refuses the whole order
    with pytest.raises(InsufficientStock) as caught:
        services.stock_reserve(lines=demands, actor="router")
    assert [str(s) for s in caught.value.shortages] == [f"{sku.code} at {location.code}: wanted 6, available 5"]
    assert len(fast_statement_fails.attempts) == 3
    assert not Reservation.objects.exists() and _level(sku, location)[1] == 0
    # and when what is left is exactly enough, both lines are reserved on the locked path, one reservation each
    fast_statement_fails.attempts.clear()
    fast_statement_fails.before_lock = None
    # (the concurrent change rolled back with the refused call here: 6 free again)
    reservations = services.stock_reserve(lines=demands, actor="router")
    assert sorted((r.order_line_id, r.quantity) for r in reservations) == sorted([(a.pk, 3), (b.pk, 3)])
    assert _stored(reservations) == _rows([r.pk for r in reservations])
    assert _level(sku, location) == (6, 6)
    assert_stock_invariants()


def test_several_rows_fall_back_all_or_nothing_after_three_tries(stock, fast_statement_fails):
    # given two rows with exactly what the order wants, and a concurrent change taking 1 of B's units
    # just before the locked path
    node = LocationFactory()
    a, b, c = SkuFactory(), SkuFactory(), SkuFactory()
    stock(a, node, 2)
    level_b = stock(b, node, 5)
    StockLevel.objects.filter(pk=level_b.pk).update(safety_stock=1)
    stock(c, node, 3)
    order = OrderFactory()
    line_a = OrderLineFactory(order=order, sku=a, quantity=2)
    line_b = OrderLineFactory(order=order, sku=b, quantity=3)
    line_c = OrderLineFactory(order=order, sku=c, quantity=3)
    fast_statement_fails.before_lock = _drain(b, node, 2)
    demands = [
        LineDemand(line_a.pk, a.pk, {node.pk: 2}),
        LineDemand(line_b.pk, b.pk, {node.pk: 3}),
        LineDemand(line_c.pk, c.pk, {node.pk: 3}),
    ]
    # when
    with pytest.raises(InsufficientStock) as caught:
        services.stock_reserve_order(demands=demands, actor="router")
    # then the locked path found B short (3 on hand, 1 safety) and reserved nothing, not even A and C
    assert [str(s) for s in caught.value.shortages] == [f"{b.code} at {node.code}: wanted 3, available 2"]
    assert len(fast_statement_fails.attempts) == 3
    assert not Reservation.objects.exists()
    assert (_level(a, node), _level(b, node), _level(c, node)) == ((2, 0), (5, 0), (3, 0))
    # and with B's units back the locked path reserves every row exactly to the last free unit
    fast_statement_fails.attempts.clear()
    fast_statement_fails.before_lock = _drain(b, node, 1)
    # (the first change rolled back with the refused call; this one leaves B exactly 3 free)
    reservations = services.stock_reserve_order(demands=demands, actor="router")
    assert len(fast_statement_fails.attempts) == 3
    assert _stored(reservations) == _rows([r.pk for r in reservations])
    assert sorted((r.order_line_id, r.sku_id, r.quantity) for r in reservations) == sorted(
        [(line_a.pk, a.pk, 2), (line_b.pk, b.pk, 3), (line_c.pk, c.pk, 3)]
    )
    assert (_level(a, node), _level(b, node), _level(c, node)) == ((2, 2), (4, 3), (3, 3))
    assert_stock_invariants()


def test_the_locked_path_names_a_row_that_does_not_exist(sku, location, line_for):
    # stock_reserve_locked is inventory's partial-shape entry point (backorder allocation) and the fallback
    line = line_for(sku, quantity=2)
    with pytest.raises(InsufficientStock) as caught:
        reservation_service.stock_reserve_locked([(line.pk, sku.pk, location.pk, 2)], all_or_nothing=True)
    assert str(caught.value) == f"insufficient stock: {sku.code} at {location.code}: wanted 2, available 0"
    with pytest.raises(UnknownStockItem, match=r"unknown location id\(s\) \[424242\]"):
        reservation_service.stock_reserve_locked([(line.pk, sku.pk, 424242, 1)], all_or_nothing=True)
    assert not StockLevel.objects.filter(sku=sku).exists()  # the locked path creates no stock row


def test_the_locked_path_partial_shape_reserves_the_lines_that_fit_in_order(stock):
    # given 5 free (1 more held as safety stock); three lines of 3, 2 and 1
    node = LocationFactory()
    sku = SkuFactory()
    level = stock(sku, node, 7)
    StockLevel.objects.filter(pk=level.pk).update(safety_stock=2)
    order = OrderFactory()
    a, b, c = (OrderLineFactory(order=order, sku=sku, quantity=q) for q in (3, 3, 1))
    flat = [(a.pk, sku.pk, node.pk, 3), (b.pk, sku.pk, node.pk, 3), (c.pk, sku.pk, node.pk, 1)]
    # when
    reservations, short = reservation_service.stock_reserve_locked(flat, all_or_nothing=False)
    # then a and c fit (3 + 1 of 5), b is short
    assert sorted((r.order_line_id, r.quantity) for r in reservations) == sorted([(a.pk, 3), (c.pk, 1)])
    assert short == [b.pk]
    assert _level(sku, node) == (7, 4)
    assert_stock_invariants()


# --- release --------------------------------------------------------------------------------------


def test_release_by_order_line_frees_every_active_reservation_of_those_lines(
    stock, announced, django_capture_on_commit_callbacks
):
    # given line a holds 2 at east and 3 at west; line b holds 1 at west; line c (another order) 4 at west
    east, west = LocationFactory(), LocationFactory()
    sku = SkuFactory()
    stock(sku, east, 10)
    stock(sku, west, 10)
    order = OrderFactory()
    a, b = OrderLineFactory(order=order, sku=sku, quantity=5), OrderLineFactory(order=order, sku=sku)
    c = OrderLineFactory(sku=sku, quantity=4)
    services.stock_reserve_order(
        demands=[LineDemand(a.pk, sku.pk, {east.pk: 2, west.pk: 3}), LineDemand(b.pk, sku.pk, {west.pk: 1})],
        actor="router",
    )
    [kept] = services.stock_reserve(lines=[LineDemand(c.pk, sku.pk, {west.pk: 4})], actor="router")
    # when a and b are released
    with django_capture_on_commit_callbacks(execute=True):
        released = services.stock_release(order_line_ids=[a.pk, b.pk], actor="orders:cancel")
    # then their three reservations are released; west gives back 3 + 1 at once, c keeps its 4
    assert sorted((r.order_line_id, r.location_id, r.quantity, r.status) for r in released) == sorted(
        [
            (a.pk, east.pk, 2, ReservationStatus.RELEASED),
            (a.pk, west.pk, 3, ReservationStatus.RELEASED),
            (b.pk, west.pk, 1, ReservationStatus.RELEASED),
        ]
    )
    assert set(Reservation.objects.filter(order_line__in=[a, b]).values_list("status", flat=True)) == {
        ReservationStatus.RELEASED
    }
    assert Reservation.objects.get(pk=kept.pk).status == ReservationStatus.ACTIVE
    assert (_level(sku, east), _level(sku, west)) == ((10, 0), (10, 4))
    assert announced == [[sku.pk]]
    # and releasing them again changes nothing
    assert services.stock_release(order_line_ids=[a.pk, b.pk], actor="orders:cancel") == []
    assert (_level(sku, east), _level(sku, west)) == ((10, 0), (10, 4))
    assert_stock_invariants()


def test_release_of_several_reservations_on_one_row_gives_back_their_sum(sku, location, stock):
    stock(sku, location, 9)
    lines = [OrderLineFactory(sku=sku, quantity=q) for q in (2, 3, 4)]
    held = [
        services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: line.quantity})], actor="r")[0]
        for line in lines
    ]
    released = services.stock_release(reservation_ids=[held[0].pk, held[2].pk], actor="orders:cancel")
    assert sorted(r.pk for r in released) == sorted([held[0].pk, held[2].pk])
    assert _level(sku, location) == (9, 3)
    assert_stock_invariants()


def test_release_needs_exactly_one_way_of_naming_reservations_and_known_ids(sku, location, stock, line_for):
    stock(sku, location, 2)
    line = line_for(sku)
    [held] = services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: 1})], actor="router")
    message = r"^pass reservation ids or order line ids, not both$"
    with pytest.raises(ReservationError, match=message):
        services.stock_release(reservation_ids=[held.pk], order_line_ids=[line.pk], actor="ops")
    with pytest.raises(ReservationError, match=message):
        services.stock_release(actor="ops")
    with pytest.raises(UnknownStockItem, match=r"^unknown reservation id\(s\) \[123456789\]$"):
        services.stock_release(reservation_ids=[held.pk, 123456789], actor="ops")
    assert Reservation.objects.get(pk=held.pk).status == ReservationStatus.ACTIVE
    assert _level(sku, location) == (2, 1)


def test_consume_of_several_reservations_on_one_row_ships_their_sum(sku, location, stock):
    stock(sku, location, 10)
    lines = [OrderLineFactory(sku=sku, quantity=q) for q in (2, 3)]
    held = [
        services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: line.quantity})], actor="r")[0]
        for line in lines
    ]
    with pytest.raises(ReservationError, match=rf"^reservation {held[0].pk} holds 2, cannot ship 3$"):
        services.stock_consume(reservation_ids=[held[0].pk], quantities={held[0].pk: 3}, actor="wms")
    movements = services.stock_consume(reservation_ids=[r.pk for r in held], actor="wms", reference="SHP-9")
    assert [(m.delta, m.balance_after, m.reference) for m in movements] == [(-2, 8, "SHP-9"), (-3, 5, "SHP-9")]
    assert _level(sku, location) == (5, 0)
    assert set(Reservation.objects.values_list("status", flat=True)) == {ReservationStatus.CONSUMED}
    assert_stock_invariants()


def test_consume_records_who_shipped_and_a_reference_that_fits(sku, location, stock, line_for, agent):
    stock(sku, location, 5)
    held = [
        services.stock_reserve(lines=[LineDemand(line_for(sku).pk, sku.pk, {location.pk: 1})], actor="router")[0]
        for _ in range(3)
    ]
    with pytest.raises(Exception, match=rf"^reservation {held[0].pk} quantity must be positive, got 0$"):
        services.stock_consume(reservation_ids=[held[0].pk], quantities={held[0].pk: 0}, actor=agent)
    # when one ships without a reference, and one with a reference longer than the column
    [plain] = services.stock_consume(reservation_ids=[held[0].pk], actor=agent)
    [long] = services.stock_consume(reservation_ids=[held[1].pk], actor=agent, reference="R" * 200)
    # then the reservation names the movement, a long reference is cut to fit, and the user is recorded
    assert (plain.reference, plain.actor, plain.actor_user_id) == (f"reservation:{held[0].pk}", "agent", agent.pk)
    assert long.reference == "R" * 128
    assert _level(sku, location) == (3, 1)
    assert_stock_invariants()


def test_the_locked_path_partial_shape_counts_what_is_reserved_and_held_back(stock):
    # given 12 on hand, 3 reserved by another order, 4 held as safety stock: 5 free
    node = LocationFactory()
    sku = SkuFactory()
    level = stock(sku, node, 12)
    StockLevel.objects.filter(pk=level.pk).update(safety_stock=4)
    services.stock_reserve(
        lines=[LineDemand(OrderLineFactory(sku=sku, quantity=3).pk, sku.pk, {node.pk: 3})], actor="r"
    )
    order = OrderFactory()
    a, b, c, d = (OrderLineFactory(order=order, sku=sku, quantity=q) for q in (3, 3, 2, 2))
    # line d is listed twice at the node: 2 + 2 units, more than what is left for it after a
    flat = [
        (a.pk, sku.pk, node.pk, 3),
        (d.pk, sku.pk, node.pk, 2),
        (b.pk, sku.pk, node.pk, 3),
        (c.pk, sku.pk, node.pk, 2),
        (d.pk, sku.pk, node.pk, 2),
    ]
    # when
    reservations, short = reservation_service.stock_reserve_locked(flat, all_or_nothing=False)
    # then a (3) and c (2) take exactly the 5 free units; b and d are short
    assert sorted((r.order_line_id, r.quantity) for r in reservations) == sorted([(a.pk, 3), (c.pk, 2)])
    assert short == [d.pk, b.pk]
    assert _level(sku, node) == (12, 8)
    # and with nothing free (safety stock covers the rest), a one-unit line is short too
    e = OrderLineFactory(order=order, sku=sku, quantity=1)
    assert reservation_service.stock_reserve_locked([(e.pk, sku.pk, node.pk, 1)], all_or_nothing=False) == ([], [e.pk])
    # and the all-or-nothing shape reports no short line when it reserves
    StockLevel.objects.filter(pk=level.pk).update(safety_stock=0)
    made, none_short = reservation_service.stock_reserve_locked([(e.pk, sku.pk, node.pk, 1)], all_or_nothing=True)
    assert [(r.order_line_id, r.quantity) for r in made] == [(e.pk, 1)] and none_short == []
    assert_stock_invariants()
