"""The replica router (config/kernel/replica.py) with a ``replica`` alias pointing at the primary's test database:
a second connection, so every query shows which alias it went through.

Console lists and scorecards read through the replica; writes, transactions, a read after a write in the same
request, and a browser's requests just after it wrote stay on the primary.
"""

from __future__ import annotations

import copy

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from config.kernel.replica import PIN_COOKIE, ReplicaRouter, replica_reads
from orders.models import Order
from tests.factories import OrderFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def replica(transactional_db):
    """A ``replica`` alias: the primary's settings on a connection of its own (what DATABASE_REPLICA_URL adds)."""
    connections.settings["replica"] = copy.deepcopy(connections["default"].settings_dict)
    # Connected here: pytest-django's test case allows only the aliases it knew when the test started.
    connections["replica"].connect()
    try:
        yield connections["replica"]
    finally:
        connections["replica"].close()
        del connections["replica"]
        del connections.settings["replica"]


def _touched(queries: CaptureQueriesContext, table: str) -> bool:
    return any(f'"{table}"' in query["sql"] for query in queries.captured_queries)


def test_the_order_list_reads_orders_from_the_replica(client, viewer, replica):
    # given: an order, and a signed-in person
    order = OrderFactory()
    client.force_login(viewer)
    # when: they open the order list
    with CaptureQueriesContext(replica) as on_replica, CaptureQueriesContext(connections["default"]) as on_primary:
        response = client.get(reverse("orders:list"))
    # then: the orders were read through the replica, not the primary
    assert response.status_code == 200
    assert order.external_id in response.content.decode()
    assert _touched(on_replica, "orders_order")
    assert not _touched(on_primary, "orders_order")
    assert PIN_COOKIE not in response.cookies


def test_a_read_after_a_write_in_the_same_block_goes_to_the_primary(replica):
    # given: reads may come from the replica
    with replica_reads():
        with CaptureQueriesContext(replica) as before:
            assert not Order.objects.exists()
        assert _touched(before, "orders_order")
        # when: something is written, then read back
        order = OrderFactory()
        with CaptureQueriesContext(replica) as after, CaptureQueriesContext(connections["default"]) as primary:
            found = Order.objects.filter(pk=order.pk).exists()
    # then: the read after the write went to the primary (a lagging replica could not have it yet)
    assert found
    assert not _touched(after, "orders_order")
    assert _touched(primary, "orders_order")


def test_reads_inside_a_transaction_and_every_write_stay_on_the_primary(replica):
    order = OrderFactory()
    with replica_reads(), CaptureQueriesContext(replica) as on_replica:
        with transaction.atomic():
            Order.objects.select_for_update().get(pk=order.pk)
            Order.objects.filter(pk=order.pk).count()
        Order.objects.filter(pk=order.pk).update(customer_name="Changed")
    assert not _touched(on_replica, "orders_order")
    order.refresh_from_db()
    assert order.customer_name == "Changed"


def test_reads_outside_replica_views_stay_on_the_primary(replica):
    OrderFactory()
    with CaptureQueriesContext(replica) as on_replica:
        assert Order.objects.count() == 1
    assert on_replica.captured_queries == []


def test_a_request_that_wrote_pins_the_browser_to_the_primary_for_a_moment(client, agent, replica):
    # given: an order an agent holds from the console (a POST that writes)
    order = OrderFactory()
    client.force_login(agent)
    response = client.post(reverse("orders:hold-place", args=[order.pk]), {"reason": "Address check", "kind": "manual"})
    assert response.status_code in (200, 302), response.content[:500]
    # then: the response pins the browser to the primary for a few seconds
    assert PIN_COOKIE in response.cookies
    assert 0 < int(response.cookies[PIN_COOKIE]["max-age"]) <= 5
    # and: the list it lands on next reads the primary (a replica lagging behind would show the order unheld)
    with CaptureQueriesContext(replica) as on_replica:
        listed = client.get(reverse("orders:list"))
    assert listed.status_code == 200
    assert not _touched(on_replica, "orders_order")


def test_migrations_run_on_the_primary_only():
    router = ReplicaRouter()
    assert router.allow_migrate("default", "orders") is True
    assert router.allow_migrate("replica", "orders") is False
    assert router.db_for_write(Order) == "default"
