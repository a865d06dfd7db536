from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from config.kernel.errors import ActorRequired, InvalidTransition
from orders import services
from orders.models import OrderEvent, OrderStatus
from orders.services import UnknownStatus
from orders.status import TRANSITIONS, determine_order_status
from tests.factories import OrderFactory

ALL = [s.value for s in OrderStatus]
LEGAL = [(a, b) for a in ALL for b in sorted(TRANSITIONS[a])]
ILLEGAL = [(a, b) for a, b in itertools.product(ALL, ALL) if a != b and b not in TRANSITIONS[a]]


def test_transition_table_covers_every_status():
    assert set(TRANSITIONS) == set(ALL)
    # Terminal states go nowhere; everything else can at least be cancelled or moved on.
    assert TRANSITIONS[OrderStatus.CANCELLED] == frozenset()
    assert TRANSITIONS[OrderStatus.RETURNED] == frozenset()


@pytest.mark.django_db
@pytest.mark.parametrize(("from_status", "to_status"), LEGAL)
def test_every_legal_transition_saves_and_writes_an_event(from_status, to_status):
    # given
    order = OrderFactory(status=from_status)
    # when
    services.order_transition(order=order, to_status=to_status, actor="sync:amazon-us", reason="channel update")
    # then
    order.refresh_from_db()
    assert order.status == to_status
    event = OrderEvent.objects.get(order=order, kind="status_changed")
    assert (event.from_status, event.to_status, event.actor) == (from_status, to_status, "sync:amazon-us")
    assert event.reason == "channel update"


@pytest.mark.django_db
@pytest.mark.parametrize(("from_status", "to_status"), ILLEGAL)
def test_every_illegal_transition_raises_and_changes_nothing(from_status, to_status):
    # given
    order = OrderFactory(status=from_status)
    # when
    with pytest.raises(InvalidTransition) as excinfo:
        services.order_transition(order=order, to_status=to_status, actor="ops")
    # then
    assert from_status in str(excinfo.value) and to_status in str(excinfo.value)
    order.refresh_from_db()
    assert order.status == from_status
    assert not OrderEvent.objects.filter(order=order).exists()


@pytest.mark.django_db
def test_event_records_the_user_as_actor(agent):
    order = OrderFactory(status=OrderStatus.OPEN)
    services.order_transition(order=order, to_status=OrderStatus.CANCELLED, actor=agent, reason="buyer asked")
    event = OrderEvent.objects.get(order=order)
    assert event.actor == "agent"
    assert event.actor_user == agent


@pytest.mark.django_db
@pytest.mark.parametrize("actor", [None, "", "   "])
def test_missing_actor_is_refused(actor):
    order = OrderFactory(status=OrderStatus.OPEN)
    with pytest.raises(ActorRequired):
        services.order_transition(order=order, to_status=OrderStatus.ALLOCATED, actor=actor)
    order.refresh_from_db()
    assert order.status == OrderStatus.OPEN
    assert not OrderEvent.objects.exists()


@pytest.mark.django_db
def test_unknown_status_is_refused_with_a_clear_message():
    order = OrderFactory(status=OrderStatus.OPEN)
    with pytest.raises(UnknownStatus, match="'teleported'"):
        services.order_transition(order=order, to_status="teleported", actor="ops")
    order.refresh_from_db()
    assert order.status == OrderStatus.OPEN


@pytest.mark.django_db
def test_same_status_is_a_no_op_without_an_event():
    order = OrderFactory(status=OrderStatus.OPEN)
    services.order_transition(order=order, to_status=OrderStatus.OPEN, actor="sync:amazon-us")
    assert not OrderEvent.objects.exists()


def _line(q, cancelled=0, shipped=0, returned=0):
    return SimpleNamespace(
        quantity=q, quantity_cancelled=cancelled, quantity_shipped=shipped, quantity_returned=returned
    )


@pytest.mark.parametrize(
    ("lines", "current", "expected"),
    [
        ([_line(2)], OrderStatus.ALLOCATED, OrderStatus.ALLOCATED),
        ([_line(2, shipped=1)], OrderStatus.RELEASED, OrderStatus.PARTIALLY_SHIPPED),
        ([_line(2, shipped=2), _line(1)], OrderStatus.RELEASED, OrderStatus.PARTIALLY_SHIPPED),
        ([_line(2, shipped=2), _line(1, cancelled=1)], OrderStatus.RELEASED, OrderStatus.SHIPPED),
        ([_line(2, shipped=1, cancelled=1)], OrderStatus.PARTIALLY_SHIPPED, OrderStatus.SHIPPED),
        ([_line(2, cancelled=2), _line(1, cancelled=1)], OrderStatus.OPEN, OrderStatus.CANCELLED),
        ([_line(2, cancelled=1)], OrderStatus.OPEN, OrderStatus.OPEN),
        ([_line(2, shipped=2, returned=2)], OrderStatus.DELIVERED, OrderStatus.RETURNED),
        ([_line(2, shipped=2, returned=1)], OrderStatus.DELIVERED, OrderStatus.PARTIALLY_RETURNED),
        ([_line(2, shipped=2, returned=1)], OrderStatus.PARTIALLY_RETURNED, OrderStatus.PARTIALLY_RETURNED),
        ([_line(1, shipped=1)], OrderStatus.SHIPPED, OrderStatus.SHIPPED),
        ([], OrderStatus.OPEN, OrderStatus.OPEN),
    ],
)
def test_determine_order_status_from_line_quantities(lines, current, expected):
    assert determine_order_status(lines, current) == expected


@pytest.mark.django_db
def test_status_refresh_applies_the_derived_partial_state():
    # given an order released to a node with one of two lines shipped
    order = OrderFactory(status=OrderStatus.RELEASED)
    from tests.factories import OrderLineFactory

    OrderLineFactory(order=order, quantity=2, quantity_shipped=2)
    OrderLineFactory(order=order, quantity=1)
    # when
    services.order_status_refresh(order=order, actor="wms:dal1")
    # then
    order.refresh_from_db()
    assert order.status == OrderStatus.PARTIALLY_SHIPPED
    assert OrderEvent.objects.get(order=order).actor == "wms:dal1"
