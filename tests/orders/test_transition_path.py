"""order_transition_path: several steps of the state machine in one guarded statement."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from config.kernel.errors import ActorRequired, DomainError, InvalidTransition
from orders import services
from orders.models import OrderEvent, OrderStatus
from tests.factories import OrderFactory

pytestmark = pytest.mark.django_db


def test_a_path_moves_the_order_once_and_writes_one_event_per_step_with_the_actor():
    # given an open order
    order = OrderFactory(status=OrderStatus.OPEN)
    # when it goes open -> allocated -> released
    with CaptureQueriesContext(connection) as ctx:
        events = services.order_transition_path(
            order=order,
            path=[OrderStatus.OPEN, OrderStatus.ALLOCATED, OrderStatus.RELEASED],
            actor="router",
            reason=["order routing", "released to node"],
            data={"decision_id": 7},
        )
    # then one statement, the order released, and two events in step order
    assert len(ctx.captured_queries) == 1
    order.refresh_from_db()
    assert order.status == OrderStatus.RELEASED
    rows = list(order.events.order_by("pk").values_list("kind", "from_status", "to_status", "actor", "reason", "data"))
    assert rows == [
        ("status_changed", "open", "allocated", "router", "order routing", {"decision_id": 7}),
        ("status_changed", "allocated", "released", "router", "released to node", {"decision_id": 7}),
    ]
    assert [e.pk for e in events] == list(order.events.order_by("pk").values_list("pk", flat=True))


def test_a_user_actor_is_recorded_on_every_event():
    user = get_user_model().objects.create_user(username="ops-ann", password="x")
    order = OrderFactory(status=OrderStatus.OPEN)
    services.order_transition_path(
        order=order.pk, path=[OrderStatus.OPEN, OrderStatus.ALLOCATED, OrderStatus.RELEASED], actor=user, reason="x"
    )
    assert set(OrderEvent.objects.filter(order=order).values_list("actor", "actor_user_id")) == {("ops-ann", user.pk)}


def test_an_illegal_step_raises_naming_both_states_and_changes_nothing():
    order = OrderFactory(status=OrderStatus.OPEN)
    with pytest.raises(InvalidTransition) as err:
        services.order_transition_path(
            order=order, path=[OrderStatus.OPEN, OrderStatus.ALLOCATED, OrderStatus.DELIVERED], actor="router"
        )
    assert (err.value.from_status, err.value.to_status) == ("allocated", "delivered")
    assert "'allocated'" in str(err.value) and "'delivered'" in str(err.value)
    order.refresh_from_db()
    assert order.status == OrderStatus.OPEN and not order.events.exists()


def test_an_order_no_longer_in_the_first_status_raises_naming_the_status_it_is_in():
    # given an order someone already cancelled
    order = OrderFactory(status=OrderStatus.CANCELLED)
    with pytest.raises(InvalidTransition) as err:
        services.order_transition_path(
            order=order.pk, path=[OrderStatus.OPEN, OrderStatus.ALLOCATED], actor="router", reason="order routing"
        )
    assert (err.value.from_status, err.value.to_status) == ("cancelled", "allocated")
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED and not order.events.exists()


def test_a_blank_actor_or_a_one_status_path_is_refused():
    order = OrderFactory(status=OrderStatus.OPEN)
    with pytest.raises(ActorRequired):
        services.order_transition_path(order=order, path=[OrderStatus.OPEN, OrderStatus.ALLOCATED], actor=" ")
    with pytest.raises(DomainError):
        services.order_transition_path(order=order, path=[OrderStatus.OPEN], actor="router")
    with pytest.raises(DomainError):
        services.order_transition_path(
            order=order, path=[OrderStatus.OPEN, OrderStatus.ALLOCATED], actor="router", reason=["a", "b"]
        )
    assert not order.events.exists()
