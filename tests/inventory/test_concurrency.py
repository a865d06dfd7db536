"""Oversell and deadlock proofs: real OS processes against PostgreSQL, released together by a barrier."""

from __future__ import annotations

import random
import threading

import pytest
from django.db import connections, transaction

from inventory import services
from inventory.errors import InsufficientStock
from inventory.models import Reservation, ReservationStatus, StockLevel
from inventory.services import LineDemand
from tests.factories import LocationFactory, OrderFactory, OrderLineFactory, SkuFactory
from tests.processes import run_in_processes

from .helpers import assert_stock_invariants

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]


def _reserve(service: str):
    def call(lines: list[LineDemand]) -> tuple[str, str]:
        try:
            if service == "stock_reserve_order":
                services.stock_reserve_order(demands=lines, actor="test:worker")
            else:
                services.stock_reserve(lines=lines, actor="test:worker")
        except InsufficientStock as exc:
            return "short", str(exc)
        return "ok", ""

    return call


def _one_line_orders(sku, count: int) -> list:
    return [OrderLineFactory(sku=sku, quantity=1) for _ in range(count)]


@pytest.mark.parametrize(
    "shape",
    [
        "one-row",  # one guarded UPDATE … INSERT statement per reservation
        "locked-rows",  # two stock rows per call: one statement locking ORDER BY id, checking every row in SQL
        "order-statement",  # the same two rows through stock_reserve_order (the routing path)
    ],
)
def test_64_one_unit_reservations_on_10_units_reserve_exactly_10(shape):
    # given 10 units of a hot SKU (and, for the locked shape, plenty of a second SKU on every order)
    node = LocationFactory()
    hot, filler = SkuFactory(), SkuFactory()
    services.stock_receive(sku=hot, location=node, quantity=10, actor="test:setup")
    services.stock_receive(sku=filler, location=node, quantity=1000, actor="test:setup")
    jobs = []
    for i in range(64):
        order = OrderFactory()
        hot_line = OrderLineFactory(order=order, sku=hot, quantity=1)
        lines = [LineDemand(hot_line.pk, hot.pk, {node.pk: 1})]
        if shape in ("locked-rows", "order-statement"):
            filler_line = OrderLineFactory(order=order, sku=filler, quantity=1)
            lines.append(LineDemand(filler_line.pk, filler.pk, {node.pk: 1}))
        jobs.append((i, lines))

    # when 64 reservations race from 8 processes
    service = "stock_reserve_order" if shape == "order-statement" else "stock_reserve"
    outcomes = run_in_processes(_reserve(service), jobs)

    # then exactly 10 succeed and 54 are refused with InsufficientStock, nothing else
    errors = [detail for outcome, detail in outcomes.values() if outcome == "error"]
    assert errors == []
    assert sum(1 for o, _ in outcomes.values() if o == "ok") == 10
    assert sum(1 for o, _ in outcomes.values() if o == "short") == 54
    level = StockLevel.objects.get(sku=hot, location=node)
    active = Reservation.objects.filter(sku=hot, status=ReservationStatus.ACTIVE)
    assert level.reserved == 10 == sum(active.values_list("quantity", flat=True)) == active.count()
    assert level.on_hand == 10
    assert_stock_invariants()


@pytest.mark.parametrize("service", ["stock_reserve", "stock_reserve_order"])
def test_64_multi_sku_orders_with_shuffled_lines_commit_without_deadlock(service):
    # given 6 SKUs at 3 nodes with enough stock for every order
    nodes = [LocationFactory() for _ in range(3)]
    skus = [SkuFactory() for _ in range(6)]
    for sku in skus:
        for node in nodes:
            services.stock_receive(sku=sku, location=node, quantity=200, actor="test:setup")
    rng = random.Random(3)
    jobs, expected = [], {}
    for i in range(64):
        order = OrderFactory()
        lines = []
        for sku in rng.sample(skus, rng.randint(2, 5)):
            quantities = {node.pk: rng.randint(1, 3) for node in rng.sample(nodes, rng.randint(1, 3))}
            line = OrderLineFactory(order=order, sku=sku, quantity=sum(quantities.values()))
            lines.append(LineDemand(line.pk, sku.pk, quantities))
            for node_id, q in quantities.items():
                expected[(sku.pk, node_id)] = expected.get((sku.pk, node_id), 0) + q
        rng.shuffle(lines)  # a different lock order in every order, unless the service sorts
        jobs.append((i, lines))

    # when they race from 8 processes
    outcomes = run_in_processes(_reserve(service), jobs)

    # then every order committed: no deadlock, no error, no shortage
    assert {o for o, _ in outcomes.values()} == {"ok"}, [d for o, d in outcomes.values() if o != "ok"][:3]
    reserved = {(lv.sku_id, lv.location_id): lv.reserved for lv in StockLevel.objects.filter(sku__in=skus)}
    assert {k: v for k, v in reserved.items() if v} == expected
    assert_stock_invariants()


def test_an_order_waiting_on_a_row_drained_by_a_concurrent_commit_reserves_nothing():
    # given 5 units of A and of B, and a transaction holding A's row after reserving 4 of A
    node = LocationFactory()
    a, b = SkuFactory(), SkuFactory()
    services.stock_receive(sku=a, location=node, quantity=5, actor="test:setup")
    services.stock_receive(sku=b, location=node, quantity=5, actor="test:setup")
    first = OrderLineFactory(sku=a, quantity=4)
    order = OrderFactory()
    line_a, line_b = OrderLineFactory(order=order, sku=a, quantity=2), OrderLineFactory(order=order, sku=b, quantity=1)
    holding, release = threading.Event(), threading.Event()

    def blocker():
        try:
            with transaction.atomic():
                services.stock_reserve(lines=[LineDemand(first.pk, a.pk, {node.pk: 4})], actor="test:first")
                holding.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=blocker)
    thread.start()
    assert holding.wait(timeout=30)
    outcome = []

    def second():
        try:
            services.stock_reserve_order(
                demands=[LineDemand(line_b.pk, b.pk, {node.pk: 1}), LineDemand(line_a.pk, a.pk, {node.pk: 2})],
                actor="test:second",
            )
            outcome.append("ok")
        except InsufficientStock as exc:
            outcome.append((exc.sku, exc.location, exc.wanted, exc.available))
        finally:
            connections.close_all()

    waiter = threading.Thread(target=second)
    waiter.start()
    waiter.join(timeout=0.5)  # it waits on A's row lock (the snapshot it started with still shows 5 free)
    # when the first commits
    release.set()
    thread.join(timeout=30)
    waiter.join(timeout=30)
    # then the waiting statement judged A on the committed row: short, and B untouched
    assert outcome == [(a.code, node.code, 2, 1)]
    assert StockLevel.objects.get(sku=b, location=node).reserved == 0
    assert StockLevel.objects.get(sku=a, location=node).reserved == 4
    assert not Reservation.objects.filter(order_line__in=[line_a, line_b]).exists()
    assert_stock_invariants()
