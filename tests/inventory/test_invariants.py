"""A Hypothesis state machine over the stock services: after every step the DESIGN.md invariants hold
(0 <= reserved <= on_hand, reserved == Σ active reservations, every bucket == Σ its ledger) and the
database agrees with a plain Python model of what each step should have done."""

from __future__ import annotations

from collections import defaultdict

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from inventory import services
from inventory.errors import InsufficientStock, StockConflict
from inventory.models import Reservation, ReservationStatus, StockLevel
from inventory.services import LineDemand
from tests.factories import LocationFactory, OrderFactory, OrderLineFactory, SkuFactory

from .helpers import assert_stock_invariants

STOCK_MACHINE = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

ACTOR = "test:machine"


class StockMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        # Each example runs in a savepoint that teardown rolls back: examples never see each other.
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.nodes = [LocationFactory(), LocationFactory()]
        self.skus = [SkuFactory(), SkuFactory()]
        order = OrderFactory()
        self.lines = {sku.pk: OrderLineFactory(order=order, sku=sku, quantity=10_000) for sku in self.skus}
        self.on_hand = defaultdict(int)
        self.reserved = defaultdict(int)
        self.damaged = defaultdict(int)
        self.active: dict[int, tuple[tuple[int, int], int]] = {}

    def teardown(self):
        if hasattr(self, "atomic"):
            transaction.set_rollback(True)
            self.atomic.__exit__(None, None, None)

    def _key(self, s, n):
        return (self.skus[s].pk, self.nodes[n].pk)

    def _atp(self, key):
        return self.on_hand[key] - self.reserved[key]

    @rule(s=st.integers(0, 1), n=st.integers(0, 1), q=st.integers(1, 6))
    def receive(self, s, n, q):
        services.stock_receive(sku=self.skus[s], location=self.nodes[n], quantity=q, actor=ACTOR)
        self.on_hand[self._key(s, n)] += q

    @rule(s=st.integers(0, 1), split=st.lists(st.tuples(st.integers(0, 1), st.integers(1, 4)), min_size=1, max_size=3))
    def reserve(self, s, split):
        # One line over one or two nodes; a repeated node is summed (two lines of one SKU on one row).
        sku = self.skus[s]
        line = self.lines[sku.pk]
        demands = [LineDemand(line.pk, sku.pk, {self.nodes[n].pk: q}) for n, q in split]
        wanted = defaultdict(int)
        for n, q in split:
            wanted[self._key(s, n)] += q
        fits = all(q <= self._atp(k) for k, q in wanted.items())
        try:
            created = services.stock_reserve(lines=demands, actor=ACTOR)
        except InsufficientStock:
            assert not fits
            return
        assert fits
        for r in created:
            key = (r.sku_id, r.location_id)
            self.reserved[key] += r.quantity
            self.active[r.pk] = (key, r.quantity)

    @rule(data=st.data())
    def release(self, data):
        if not self.active:
            return
        pk = data.draw(st.sampled_from(sorted(self.active)))
        services.stock_release(reservation_ids=[pk], actor=ACTOR)
        key, q = self.active.pop(pk)
        self.reserved[key] -= q

    @rule(data=st.data(), part=st.booleans())
    def consume(self, data, part):
        if not self.active:
            return
        pk = data.draw(st.sampled_from(sorted(self.active)))
        key, q = self.active[pk]
        ship = max(q - 1, 1) if part else q
        services.stock_consume(reservation_ids=[pk], quantities={pk: ship}, actor=ACTOR)
        self.on_hand[key] -= ship
        self.reserved[key] -= ship
        if ship == q:
            del self.active[pk]
        else:
            self.active[pk] = (key, q - ship)

    @rule(s=st.integers(0, 1), n=st.integers(0, 1), delta=st.integers(-5, 5).filter(bool))
    def adjust(self, s, n, delta):
        key = self._key(s, n)
        allowed = self.on_hand[key] + delta >= max(self.reserved[key], 0)
        try:
            services.stock_adjust(sku=self.skus[s], location=self.nodes[n], delta=delta, reason="count", actor=ACTOR)
        except StockConflict:
            assert not allowed
            return
        assert allowed
        self.on_hand[key] += delta

    @rule(s=st.integers(0, 1), q=st.integers(1, 4), forward=st.booleans())
    def transfer(self, s, q, forward):
        a, b = (0, 1) if forward else (1, 0)
        src, dst = self._key(s, a), self._key(s, b)
        allowed = self._atp(src) >= q
        try:
            services.stock_transfer(
                sku=self.skus[s], from_location=self.nodes[a], to_location=self.nodes[b], quantity=q, actor=ACTOR
            )
        except StockConflict:
            assert not allowed
            return
        assert allowed
        self.on_hand[src] -= q
        self.on_hand[dst] += q

    @rule(s=st.integers(0, 1), n=st.integers(0, 1), q=st.integers(1, 3), sellable=st.booleans())
    def restock(self, s, n, q, sellable):
        services.stock_restock(sku=self.skus[s], location=self.nodes[n], quantity=q, sellable=sellable, actor=ACTOR)
        if sellable:
            self.on_hand[self._key(s, n)] += q
        else:
            self.damaged[self._key(s, n)] += q

    @invariant()
    def invariants_hold(self):
        if not hasattr(self, "skus"):
            return
        assert_stock_invariants([s.pk for s in self.skus])
        for level in StockLevel.objects.filter(sku__in=self.skus):
            key = (level.sku_id, level.location_id)
            assert (level.on_hand, level.reserved, level.damaged) == (
                self.on_hand[key],
                self.reserved[key],
                self.damaged[key],
            )
        active = dict(
            Reservation.objects.filter(sku__in=self.skus, status=ReservationStatus.ACTIVE).values_list("pk", "quantity")
        )
        assert active == {pk: q for pk, (_, q) in self.active.items()}


@pytest.mark.django_db
def test_stock_services_keep_the_invariants():
    run_state_machine_as_test(StockMachine, settings=STOCK_MACHINE)
