"""The order state machine against an independent golden table: the legal moves and the forward order of the
statuses are written out here by hand, never derived from orders/status.py, so an edit of the table in the
code (a move added, one removed, a rank changed) fails a test. Then the paths: one order, many orders."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from config.kernel.errors import DomainError, InvalidTransition
from orders import services
from orders.models import Order, OrderEvent, OrderStatus
from orders.services import IngestAddress, IngestLine, IngestOrder, SkuRef, UnknownStatus, orders_ingest_batch
from orders.status import can_transition
from tests.factories import ChannelAccountFactory, OrderFactory, OrderLineFactory, SkuFactory

PENDING, OPEN, BACKORDERED, ALLOCATED, RELEASED = "pending", "open", "backordered", "allocated", "released"
PARTIALLY_SHIPPED, SHIPPED, DELIVERED, RETURNED, CANCELLED = (
    "partially_shipped",
    "shipped",
    "delivered",
    "returned",
    "cancelled",
)
PARTIALLY_RETURNED = "partially_returned"

# Every legal move, by hand. Shipping and cancelling are reachable from each stage before shipping (channel
# truth may arrive at any of them); routing may fall back (allocated/released -> open/backordered) when a
# node comes up short; nothing leaves cancelled or returned.
GOLDEN: dict[str, set[str]] = {
    PENDING: {OPEN, CANCELLED, PARTIALLY_SHIPPED, SHIPPED},
    OPEN: {ALLOCATED, BACKORDERED, PARTIALLY_SHIPPED, SHIPPED, CANCELLED},
    BACKORDERED: {OPEN, ALLOCATED, PARTIALLY_SHIPPED, SHIPPED, CANCELLED},
    ALLOCATED: {RELEASED, OPEN, BACKORDERED, PARTIALLY_SHIPPED, SHIPPED, CANCELLED},
    RELEASED: {ALLOCATED, OPEN, BACKORDERED, PARTIALLY_SHIPPED, SHIPPED, CANCELLED},
    PARTIALLY_SHIPPED: {SHIPPED, DELIVERED, PARTIALLY_RETURNED, RETURNED},
    SHIPPED: {DELIVERED, PARTIALLY_RETURNED, RETURNED},
    DELIVERED: {PARTIALLY_RETURNED, RETURNED},
    # some units came back; the rest may follow
    PARTIALLY_RETURNED: {RETURNED},
    CANCELLED: set(),
    RETURNED: set(),
}
# How far along each status is, by hand: a channel payload never moves an order to an earlier one.
FORWARD = [
    PENDING,
    OPEN,
    BACKORDERED,
    ALLOCATED,
    RELEASED,
    PARTIALLY_SHIPPED,
    SHIPPED,
    DELIVERED,
    PARTIALLY_RETURNED,
    RETURNED,
    CANCELLED,
]
ALL = sorted(GOLDEN)
PAIRS = [(a, b) for a, b in itertools.product(ALL, ALL) if a != b]


def test_the_golden_table_names_every_status():
    assert set(GOLDEN) == set(OrderStatus.values) == set(FORWARD)


@pytest.mark.parametrize(("from_status", "to_status"), PAIRS)
def test_can_transition_agrees_with_the_golden_table(from_status, to_status):
    assert can_transition(from_status, to_status) is (to_status in GOLDEN[from_status])


def test_an_unknown_status_can_go_nowhere():
    assert not can_transition("teleported", OPEN)
    assert not can_transition(OPEN, "teleported")


@pytest.mark.django_db
def test_order_transition_follows_the_golden_table_for_every_pair():
    # given one order in each from-status of each pair
    orders = {pair: OrderFactory(status=pair[0]) for pair in PAIRS}
    moved, refused = [], []
    # when each is asked to move to the pair's to-status
    for (from_status, to_status), order in orders.items():
        try:
            returned = services.order_transition(
                order=order, to_status=to_status, actor="ops", reason="golden", data={"pair": [from_status, to_status]}
            )
        except InvalidTransition as exc:
            refused.append((from_status, to_status, exc.from_status, exc.to_status, str(exc)))
        else:
            moved.append((from_status, to_status))
            assert returned.status == to_status == order.status
    # then every refusal names both states
    assert [refusal[2:] for refusal in refused] == [
        (a, b, f"order {orders[(a, b)]} cannot move from {a!r} to {b!r}") for a, b, *_ in refused
    ]
    refused = [(a, b) for a, b, *_ in refused]
    # then exactly the golden moves happened, each with one event carrying its data
    assert sorted(moved) == sorted((a, b) for a, b in PAIRS if b in GOLDEN[a])
    assert sorted(refused) == sorted((a, b) for a, b in PAIRS if b not in GOLDEN[a])
    stored = dict(Order.objects.filter(pk__in=[o.pk for o in orders.values()]).values_list("pk", "status"))
    assert {pair: stored[o.pk] for pair, o in orders.items()} == {
        (a, b): (b if (a, b) in moved else a) for a, b in PAIRS
    }
    events = {
        e.order_id: (e.kind, e.from_status, e.to_status, e.actor, e.reason, e.data)
        for e in OrderEvent.objects.filter(order__in=list(orders.values()))
    }
    assert OrderEvent.objects.filter(order__in=list(orders.values())).count() == len(moved)
    assert {pair: events[orders[pair].pk] for pair in moved} == {
        (a, b): ("status_changed", a, b, "ops", "golden", {"pair": [a, b]}) for a, b in moved
    }


@pytest.mark.django_db
def test_order_transition_by_id_returns_the_saved_order_and_a_same_status_move_changes_nothing():
    order = OrderFactory(status=OPEN)
    returned = services.order_transition(order=order.pk, to_status=ALLOCATED, actor="router")
    assert isinstance(returned, Order) and returned.pk == order.pk and returned.status == ALLOCATED
    order.refresh_from_db()
    assert order.status == ALLOCATED
    assert list(OrderEvent.objects.filter(order=order).values_list("data", "reason")) == [({}, "")]
    again = services.order_transition(order=order, to_status=ALLOCATED, actor="router")
    assert again.status == ALLOCATED and OrderEvent.objects.filter(order=order).count() == 1
    with pytest.raises(UnknownStatus, match=r"unknown order status 'nowhere'; expected one of pending, open"):
        services.order_transition(order=order, to_status="nowhere", actor="router")


# --- a channel payload never moves an order backwards (the forward order, via ingest) ------------------

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
HOME = IngestAddress(name="Ann", line1="1 Market St", city="San Francisco", postal_code="94105", country_code="US")


def _payload(external_id: str, status: str, at: datetime) -> IngestOrder:
    return IngestOrder(
        external_id=external_id,
        status=status,
        channel_status=status.upper(),
        placed_at=T0 - timedelta(hours=1),
        source_updated_at=at,
        currency="USD",
        lines=[IngestLine(external_id="L1", channel_sku="SKU-G", quantity=1, unit_price=Decimal("5.00"))],
        ship_to=HOME,
        ship_by=T0 + timedelta(days=2),
    )


@pytest.mark.django_db
def test_a_channel_payload_moves_an_order_only_forward_along_a_legal_move():
    # given, for every legal move, an order ingested and then put in the move's from-status
    account = ChannelAccountFactory(name="golden-account")
    sku_map = {"SKU-G": SkuRef(SkuFactory(code="SKU-G").pk)}
    legal = [(a, b) for a, b in PAIRS if b in GOLDEN[a]]
    first = [_payload(f"G-{n}", PENDING, T0) for n, _ in enumerate(legal)]
    created = orders_ingest_batch(account_id=account.pk, orders=first, sku_map=sku_map, actor="sync:golden")
    for result, (from_status, _) in zip(created, legal, strict=True):
        Order.objects.filter(pk=result.order_id).update(status=from_status)
    # when the channel reports each move's to-status in a newer payload
    later = [_payload(f"G-{n}", to_status, T0 + timedelta(hours=1)) for n, (_, to_status) in enumerate(legal)]
    results = orders_ingest_batch(account_id=account.pk, orders=later, sku_map=sku_map, actor="sync:golden")
    # then the order follows exactly when the to-status is further along than the from-status
    outcome = {pair: Order.objects.get(pk=r.order_id).status for pair, r in zip(legal, results, strict=True)}
    expected = {(a, b): (b if FORWARD.index(b) > FORWARD.index(a) else a) for a, b in legal}
    assert outcome == expected


# --- the path of one order ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_path_ends_in_its_last_status_and_returns_its_events_as_stored():
    user = get_user_model().objects.create_user(username="ops-bo", password="x")
    order = OrderFactory(status=BACKORDERED)
    path = [BACKORDERED, OPEN, ALLOCATED, RELEASED]
    events = services.order_transition_path(
        order=order, path=path, actor=user, reason=["stock arrived", "order routing", "released"], data={"k": 1}
    )
    assert order.status == RELEASED
    order.refresh_from_db()
    assert order.status == RELEASED
    stored = list(OrderEvent.objects.filter(order=order).order_by("pk"))
    fields = ("pk", "order_id", "kind", "actor", "actor_user_id", "reason", "from_status", "to_status", "data")
    assert [tuple(getattr(e, f) for f in fields) for e in events] == [
        tuple(getattr(e, f) for f in fields) for e in stored
    ]
    assert [(e.from_status, e.to_status, e.reason, e.actor, e.actor_user_id, e.data) for e in stored] == [
        (BACKORDERED, OPEN, "stock arrived", "ops-bo", user.pk, {"k": 1}),
        (OPEN, ALLOCATED, "order routing", "ops-bo", user.pk, {"k": 1}),
        (ALLOCATED, RELEASED, "released", "ops-bo", user.pk, {"k": 1}),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        [SHIPPED, OPEN],
        [DELIVERED, SHIPPED],
        [OPEN, RELEASED],
        [PENDING, ALLOCATED],
        [CANCELLED, OPEN],
        [OPEN, ALLOCATED, RELEASED, DELIVERED],
    ],
)
def test_a_path_with_a_move_missing_from_the_golden_table_is_refused_before_anything_changes(path):
    order = OrderFactory(status=path[0])
    bad = next((a, b) for a, b in itertools.pairwise(path) if b not in GOLDEN[a])
    with pytest.raises(InvalidTransition) as caught:
        services.order_transition_path(order=order, path=path, actor="router")
    assert (caught.value.from_status, caught.value.to_status) == bad
    assert str(caught.value) == f"order #{order.pk} cannot move from {bad[0]!r} to {bad[1]!r}"
    order.refresh_from_db()
    assert order.status == path[0] and not order.events.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", [[SHIPPED, DELIVERED], [RELEASED, SHIPPED], [PARTIALLY_SHIPPED, SHIPPED, DELIVERED, RETURNED]]
)
def test_a_path_of_golden_moves_is_taken(path):
    order = OrderFactory(status=path[0])
    events = services.order_transition_path(order=order.pk, path=path, actor="tracking")
    order.refresh_from_db()
    assert order.status == path[-1]
    assert [(e.from_status, e.to_status) for e in events] == list(itertools.pairwise(path))
    assert list(order.events.order_by("pk").values_list("from_status", "to_status", "reason", "data")) == [
        (a, b, "", {}) for a, b in itertools.pairwise(path)
    ]


@pytest.mark.django_db
def test_a_path_for_an_order_no_longer_in_its_first_status_names_the_status_it_is_in():
    order = OrderFactory(status=SHIPPED)
    with pytest.raises(InvalidTransition) as caught:
        services.order_transition_path(order=order, path=[OPEN, ALLOCATED], actor="router")
    assert str(caught.value) == f"order #{order.pk} cannot move from 'shipped' to 'allocated'"


@pytest.mark.django_db
def test_a_path_refuses_bad_input_with_a_clear_message():
    order = OrderFactory(status=OPEN)
    with pytest.raises(DomainError, match=r"^a transition path needs a start status and at least one step$"):
        services.order_transition_path(order=order, path=[OPEN], actor="router")
    with pytest.raises(UnknownStatus, match=r"^unknown order status 'lost'; expected one of pending, open, "):
        services.order_transition_path(order=order, path=[OPEN, "lost"], actor="router")
    with pytest.raises(DomainError, match=r"^2 step\(s\) but 1 reason\(s\)$"):
        services.order_transition_path(order=order, path=[OPEN, ALLOCATED, RELEASED], actor="router", reason=["x"])
    with pytest.raises(Order.DoesNotExist, match=r"^order #987654321 does not exist$"):
        services.order_transition_path(order=987654321, path=[OPEN, ALLOCATED], actor="router")
    assert not OrderEvent.objects.exists()


# --- the path of many orders ------------------------------------------------------------------------


@pytest.mark.django_db
def test_many_orders_move_along_a_path_and_only_those_still_in_its_first_status():
    # given three open orders, one already allocated by someone else, one cancelled
    user = get_user_model().objects.create_user(username="ops-many", password="x")
    open_orders = [OrderFactory(status=OPEN) for _ in range(3)]
    allocated, cancelled = OrderFactory(status=ALLOCATED), OrderFactory(status=CANCELLED)
    untouched = OrderFactory(status=OPEN)
    ids = [o.pk for o in [*open_orders, allocated, cancelled]]
    # when
    moved = services.orders_transition_path(
        order_ids=ids, path=[OPEN, ALLOCATED, RELEASED], actor=user, reason=["order routing", "released to node"]
    )
    # then the open ones moved with two events each; the others (and orders not named) are left as they are
    assert moved == {o.pk for o in open_orders}
    statuses = dict(Order.objects.values_list("pk", "status"))
    assert [statuses[o.pk] for o in open_orders] == [RELEASED] * 3
    assert (statuses[allocated.pk], statuses[cancelled.pk], statuses[untouched.pk]) == (ALLOCATED, CANCELLED, OPEN)
    rows = list(
        OrderEvent.objects.order_by("order_id", "pk").values_list(
            "order_id", "kind", "from_status", "to_status", "reason", "actor", "actor_user_id", "data"
        )
    )
    assert rows == [
        row
        for o in open_orders
        for row in [
            (o.pk, "status_changed", OPEN, ALLOCATED, "order routing", "ops-many", user.pk, {}),
            (o.pk, "status_changed", ALLOCATED, RELEASED, "released to node", "ops-many", user.pk, {}),
        ]
    ]


@pytest.mark.django_db
def test_many_orders_path_checks_the_golden_table_and_its_input_first():
    order = OrderFactory(status=SHIPPED)
    with pytest.raises(InvalidTransition) as caught:
        services.orders_transition_path(order_ids=[order.pk], path=[SHIPPED, OPEN], actor="router")
    assert str(caught.value) == "orders cannot move from 'shipped' to 'open'"
    with pytest.raises(DomainError, match=r"needs a start status"):
        services.orders_transition_path(order_ids=[order.pk], path=[SHIPPED], actor="router")
    assert services.orders_transition_path(order_ids=[], path=[SHIPPED, DELIVERED], actor="router") == set()
    moved = services.orders_transition_path(order_ids=[order.pk], path=[SHIPPED, DELIVERED], actor="carrier")
    assert moved == {order.pk}
    assert list(OrderEvent.objects.values_list("from_status", "to_status", "actor", "reason")) == [
        (SHIPPED, DELIVERED, "carrier", "")
    ]


# --- the status the line quantities imply -----------------------------------------------------------


@pytest.mark.django_db
def test_status_refresh_without_a_change_writes_nothing_and_with_one_writes_its_reason():
    order = OrderFactory(status=RELEASED)
    OrderLineFactory(order=order, quantity=2)
    unchanged = services.order_status_refresh(order=order.pk, actor="wms:dal1")
    assert unchanged.status == RELEASED and not OrderEvent.objects.exists()
    other = OrderFactory(status=RELEASED)
    OrderLineFactory(order=other, quantity=1, quantity_shipped=1)
    services.order_status_refresh(order=other, actor="wms:dal1")
    assert list(OrderEvent.objects.filter(order=other).values_list("to_status", "reason")) == [(SHIPPED, "")]
    order.lines.update(quantity_shipped=2)
    refreshed = services.order_status_refresh(order=order, actor="wms:dal1", reason="all shipped")
    assert refreshed.status == SHIPPED
    order.refresh_from_db()
    assert order.status == SHIPPED
    assert list(OrderEvent.objects.filter(order=order).values_list("from_status", "to_status", "reason", "actor")) == [
        (RELEASED, SHIPPED, "all shipped", "wms:dal1")
    ]
