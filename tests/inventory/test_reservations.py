from __future__ import annotations

import pytest

from inventory import services
from inventory.errors import InsufficientStock, InvalidQuantity, ReservationError, UnknownStockItem
from inventory.models import MovementReason, Reservation, ReservationStatus, StockLevel, StockMovement
from inventory.services import LineDemand
from tests.factories import LocationFactory, OrderFactory, OrderLineFactory, SkuFactory

from .helpers import assert_stock_invariants

pytestmark = pytest.mark.django_db


def test_reserve_one_row_in_one_statement(sku, location, stock, line_for):
    # given 5 on hand, 1 safety stock
    level = stock(sku, location, 5)
    StockLevel.objects.filter(pk=level.pk).update(safety_stock=1)
    line = line_for(sku, quantity=4)
    # when
    [reservation] = services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: 4})], actor="router")
    # then
    level.refresh_from_db()
    assert (level.on_hand, level.reserved, level.atp) == (5, 4, 0)
    stored = Reservation.objects.get(pk=reservation.pk)
    assert (stored.order_line_id, stored.location_id, stored.quantity, stored.status) == (
        line.pk,
        location.pk,
        4,
        ReservationStatus.ACTIVE,
    )
    assert_stock_invariants()


def test_short_reservation_names_sku_location_wanted_available(sku, location, stock, line_for):
    # given 3 on hand with 1 held as safety stock
    level = stock(sku, location, 3)
    StockLevel.objects.filter(pk=level.pk).update(safety_stock=1)
    line = line_for(sku, quantity=3)
    # when / then
    with pytest.raises(InsufficientStock) as caught:
        services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: 3})], actor="router")
    assert (caught.value.sku, caught.value.location, caught.value.wanted, caught.value.available) == (
        sku.code,
        location.code,
        3,
        2,
    )
    assert not Reservation.objects.exists()
    assert StockLevel.objects.get(pk=level.pk).reserved == 0


def test_two_lines_of_one_sku_cannot_both_pass_on_the_same_units(sku, location, stock):
    # given 3 units and two lines wanting 2 each
    stock(sku, location, 3)
    order = OrderFactory()
    a, b = OrderLineFactory(order=order, sku=sku, quantity=2), OrderLineFactory(order=order, sku=sku, quantity=2)
    # when / then: demand is summed per (sku, location) first
    with pytest.raises(InsufficientStock) as caught:
        services.stock_reserve(
            lines=[LineDemand(a.pk, sku.pk, {location.pk: 2}), LineDemand(b.pk, sku.pk, {location.pk: 2})],
            actor="router",
        )
    assert (caught.value.wanted, caught.value.available) == (4, 3)
    assert not Reservation.objects.exists()


def test_multi_row_reservation_is_all_or_nothing(stock):
    # given two SKUs at two nodes; the second SKU is short at the second node
    east, west = LocationFactory(), LocationFactory()
    tee, mug = SkuFactory(), SkuFactory()
    stock(tee, east, 5)
    stock(tee, west, 5)
    stock(mug, west, 1)
    order = OrderFactory()
    tee_line = OrderLineFactory(order=order, sku=tee, quantity=6)
    mug_line = OrderLineFactory(order=order, sku=mug, quantity=2)
    # when
    with pytest.raises(InsufficientStock) as caught:
        services.stock_reserve(
            lines=[
                LineDemand(tee_line.pk, tee.pk, {east.pk: 3, west.pk: 3}),
                LineDemand(mug_line.pk, mug.pk, {west.pk: 2}),
            ],
            actor="router",
        )
    # then nothing was reserved anywhere
    assert [str(s) for s in caught.value.shortages] == [f"{mug.code} at {west.code}: wanted 2, available 1"]
    assert not Reservation.objects.exists()
    assert set(StockLevel.objects.values_list("reserved", flat=True)) == {0}
    # and with enough stock the same call reserves across both nodes
    services.stock_receive(sku=mug, location=west, quantity=1, actor="test")
    reservations = services.stock_reserve(
        lines=[
            LineDemand(tee_line.pk, tee.pk, {east.pk: 3, west.pk: 3}),
            LineDemand(mug_line.pk, mug.pk, {west.pk: 2}),
        ],
        actor="router",
    )
    assert sorted((r.sku_id, r.location_id, r.quantity) for r in reservations) == sorted(
        [(tee.pk, east.pk, 3), (tee.pk, west.pk, 3), (mug.pk, west.pk, 2)]
    )
    assert_stock_invariants()


@pytest.mark.parametrize("quantity", [0, -1, 1.5, True, "2"])
def test_zero_negative_or_non_integer_quantities_are_refused(sku, location, stock, line_for, quantity):
    stock(sku, location, 5)
    line = line_for(sku)
    with pytest.raises(InvalidQuantity):
        services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: quantity})], actor="router")
    assert not Reservation.objects.exists()


def test_unknown_location_or_wrong_sku_is_refused(sku, location, stock, line_for):
    stock(sku, location, 5)
    line = line_for(sku)
    with pytest.raises(UnknownStockItem):
        services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {999_999: 1})], actor="router")
    other = SkuFactory()
    stock(other, location, 5)
    with pytest.raises(ReservationError, match="another SKU"):
        services.stock_reserve(lines=[LineDemand(line.pk, other.pk, {location.pk: 1})], actor="router")
    assert not Reservation.objects.exists()


def test_marketplace_fulfilled_lines_are_never_reserved(sku, location, stock):
    stock(sku, location, 5)
    line = OrderLineFactory(sku=sku, order=OrderFactory(marketplace_fulfilled=True))
    with pytest.raises(ReservationError, match="marketplace-fulfilled"):
        services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: 1})], actor="router")
    assert StockLevel.objects.get(sku=sku).reserved == 0


def test_release_is_idempotent(sku, location, stock, line_for):
    # given a reservation of 2
    stock(sku, location, 5)
    line = line_for(sku, quantity=2)
    [r] = services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: 2})], actor="router")
    # when released twice
    first = services.stock_release(reservation_ids=[r.pk], actor="orders:cancel")
    second = services.stock_release(reservation_ids=[r.pk], actor="orders:cancel")
    # then the stock came back once
    assert [x.pk for x in first] == [r.pk] and second == []
    assert Reservation.objects.get(pk=r.pk).status == ReservationStatus.RELEASED
    assert StockLevel.objects.get(sku=sku).reserved == 0
    assert_stock_invariants()


def test_consume_ships_part_of_a_reservation(sku, location, stock, line_for):
    # given 3 reserved of 5
    stock(sku, location, 5)
    line = line_for(sku, quantity=3)
    [r] = services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: 3})], actor="router")
    # when 2 ship
    [movement] = services.stock_consume(
        reservation_ids=[r.pk], quantities={r.pk: 2}, reference="SHP-1", actor="wms:dallas"
    )
    # then
    level = StockLevel.objects.get(sku=sku)
    assert (level.on_hand, level.reserved) == (3, 1)
    assert (movement.delta, movement.reason, movement.balance_after, movement.reference) == (
        -2,
        MovementReason.SHIP,
        3,
        "SHP-1",
    )
    assert Reservation.objects.get(pk=r.pk).quantity == 1
    assert Reservation.objects.filter(order_line=line, status=ReservationStatus.CONSUMED).get().quantity == 2
    # and the rest ships; a replay changes nothing
    services.stock_consume(reservation_ids=[r.pk], actor="wms:dallas")
    assert services.stock_consume(reservation_ids=[r.pk], actor="wms:dallas") == []
    level.refresh_from_db()
    assert (level.on_hand, level.reserved) == (2, 0)
    assert StockMovement.objects.filter(reason=MovementReason.SHIP).count() == 2
    assert_stock_invariants()


def test_actor_is_required(sku, location, stock, line_for):
    stock(sku, location, 1)
    line = line_for(sku)
    from config.kernel.errors import ActorRequired

    with pytest.raises(ActorRequired):
        services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: 1})], actor="  ")
