"""The locked fallback under real contention: the fast statement is made to fail in every process (as when
concurrent commits keep it short), so every reservation is decided by the retry-then-locked path."""

from __future__ import annotations

import pytest

from inventory import services
from inventory.errors import InsufficientStock
from inventory.models import Reservation, ReservationStatus, StockLevel
from inventory.services import LineDemand
from inventory.services import reservations as reservation_service
from tests.factories import LocationFactory, OrderFactory, OrderLineFactory, SkuFactory
from tests.processes import run_in_processes

from .helpers import assert_stock_invariants

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]


def _reserve(lines: list[LineDemand]) -> tuple[str, str]:
    try:
        services.stock_reserve(lines=lines, actor="test:worker")
    except InsufficientStock as exc:
        return "short", str(exc)
    return "ok", ""


@pytest.mark.parametrize("shape", ["one-row", "several-rows"])
def test_the_locked_fallback_reserves_exactly_the_free_units_under_contention(monkeypatch, shape):
    # given 10 units of a hot SKU, 2 of them held as safety stock, plus 2 already reserved: 6 free
    node = LocationFactory()
    hot, filler = SkuFactory(), SkuFactory()
    services.stock_receive(sku=hot, location=node, quantity=10, actor="test:setup")
    services.stock_receive(sku=filler, location=node, quantity=1000, actor="test:setup")
    StockLevel.objects.filter(sku=hot).update(safety_stock=2)
    earlier = OrderLineFactory(sku=hot, quantity=2)
    services.stock_reserve(lines=[LineDemand(earlier.pk, hot.pk, {node.pk: 2})], actor="test")
    jobs = []
    for i in range(40):
        order = OrderFactory()
        lines = [LineDemand(OrderLineFactory(order=order, sku=hot).pk, hot.pk, {node.pk: 1})]
        if shape == "several-rows":
            lines.append(LineDemand(OrderLineFactory(order=order, sku=filler).pk, filler.pk, {node.pk: 1}))
        jobs.append((i, lines))
    attempts = []
    monkeypatch.setattr(reservation_service, "_execute_hot", lambda sql, params: attempts.append(1) or [])

    # when 40 one-unit orders race from 8 processes, each decided on the locked path
    outcomes = run_in_processes(_reserve, jobs)

    # then exactly the 6 free units were reserved, no order got part of its lines, nothing else went wrong
    assert [d for o, d in outcomes.values() if o not in ("ok", "short")] == []
    assert sum(1 for o, _ in outcomes.values() if o == "ok") == 6
    level = StockLevel.objects.get(sku=hot, location=node)
    assert (level.on_hand, level.reserved) == (10, 8)
    active = Reservation.objects.filter(sku=hot, status=ReservationStatus.ACTIVE)
    assert sum(active.values_list("quantity", flat=True)) == 8
    if shape == "several-rows":
        assert StockLevel.objects.get(sku=filler, location=node).reserved == 6
    # and one more order, here, is refused on the same path
    line = OrderLineFactory(sku=hot)
    with pytest.raises(InsufficientStock) as caught:
        services.stock_reserve(lines=[LineDemand(line.pk, hot.pk, {node.pk: 1})], actor="test")
    assert (caught.value.wanted, caught.value.available) == (1, 0)
    assert attempts == [1]  # the read explained the shortage after the first failed statement
    assert_stock_invariants()
