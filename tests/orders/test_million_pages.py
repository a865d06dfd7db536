"""The pages the million-order benchmark measures, at small scale: `seed_million`'s data, each page's query
count, and that the count stays the same when the tables grow (tests/benchmarks/test_bench_million.py times
them at a million orders). Also the exception queue's sort keys, kept by the database."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from inventory.models import Location, Sku
from orders.models import FAR_FUTURE, CaseStatus, ExceptionCase, ExceptionKind, Order, OrderLine, Severity
from tests.factories import ChannelAccountFactory, OrderFactory, OrderLineFactory

pytestmark = pytest.mark.django_db

SEED = {"orders": 60, "lines_per_order": 3, "nodes": 3, "skus": 20, "cases": 12, "no_vacuum": True}


def _seed() -> str:
    out = StringIO()
    call_command("seed_million", stdout=out, **SEED)
    return out.getvalue()


def test_seed_million_loads_orders_lines_nodes_skus_and_open_cases_then_refuses_to_load_twice():
    # when
    output = _seed()
    # then
    assert "order lines (180 rows)" in output and "seeded in" in output
    assert Order.objects.count() == 60 and OrderLine.objects.count() == 180
    assert Location.objects.filter(code__startswith="SM-").count() == 3
    assert Sku.objects.filter(code__startswith="SM-").count() == 20
    assert ExceptionCase.objects.exclude(status=CaseStatus.RESOLVED).count() == 12
    # every line names a seeded SKU by its code, every order has a ship-to whose name is the customer's
    line = OrderLine.objects.select_related("sku", "order__ship_to").first()
    assert line.channel_sku == line.sku.code and line.order.customer_name == line.order.ship_to.name
    # the indexes and foreign keys dropped for the load are all back
    with connection.cursor() as c:
        c.execute("SELECT count(*) FROM pg_indexes WHERE indexname IN ('order_placed_at', 'exceptioncase_urgency')")
        assert c.fetchone()[0] == 2
        c.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'orders_orderline'::regclass")
        assert c.fetchone()[0] == 2
    # a second run changes nothing
    assert _seed().startswith("already seeded: 60 orders")
    assert Order.objects.count() == 60


def test_seed_million_refuses_a_database_holding_other_orders():
    OrderFactory()
    with pytest.raises(CommandError, match="not the seed's"):
        _seed()
    assert Order.objects.count() == 1


def test_seed_million_refuses_impossible_sizes():
    with pytest.raises(CommandError, match="--cases"):
        call_command("seed_million", orders=5, cases=6, stdout=StringIO())


def _pages(client) -> dict[str, str]:
    order = Order.objects.filter(exception_cases__isnull=False).order_by("-pk").first()
    name = Order.objects.order_by("pk").first().customer_name.split()[-1][:5].lower()
    now = timezone.now()
    window = f"ship_by_after={(now - timedelta(days=400)):%Y-%m-%dT%H:%M}&ship_by_before={now:%Y-%m-%dT%H:%M}"
    pages = {
        "list": reverse("orders:list"),
        "filtered": f"{reverse('orders:list')}?status=open&status=delivered&channel=amazon&{window}",
        "search number": f"{reverse('orders:list')}?q={re.sub(r'[^0-9]', '', order.external_id)[-5:]}",
        "search name": f"{reverse('orders:list')}?q={name}",
        "detail": reverse("orders:detail", args=[order.pk]),
        "queue": reverse("orders:exceptions"),
        "groups": reverse("orders:exception-groups"),
        "api": "/api/v1/orders/",
    }
    first = client.get(pages["list"]).content.decode()
    pages["next page"] = re.search(r'href="([^"]*cursor=[^"]*)"', first).group(1).replace("&amp;", "&")
    return pages


def _query_counts(client) -> dict[str, int]:
    counts = {}
    for page, url in _pages(client).items():
        assert client.get(url).status_code == 200, page  # warm: per-process caches (the trigram check)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, page
        counts[page] = len(queries)
    return counts


def test_each_page_takes_a_fixed_number_of_queries_whatever_the_number_of_rows(client, agent):
    # given: the seed's 60 orders, 12 cases
    _seed()
    client.force_login(agent)
    before = _query_counts(client)
    # when: four times the orders, more lines on the order shown, four times the cases
    account = ChannelAccountFactory(kind="amazon", name="more")
    grown = []
    for i in range(180):
        order = OrderFactory(account=account, status="open", customer_name=f"Grown Customer{i}")
        OrderLineFactory(order=order)
        grown.append(order)
    shown = Order.objects.filter(exception_cases__isnull=False).order_by("-pk").first()
    for _ in range(6):
        OrderLineFactory(order=shown)
    for i, order in enumerate(grown[:36]):
        ExceptionCase.objects.create(
            kind=ExceptionKind.NO_NODE, title=f"grown {i}", dedupe_key=f"grown:{i}", opened_by="t", order=order
        )
    after = _query_counts(client)
    # then
    assert after == before
    assert max(before.values()) <= 12, before


def test_the_status_filter_is_one_in_list_without_distinct(client, agent):
    open_order, allocated = OrderFactory(status="open"), OrderFactory(status="allocated")
    OrderFactory(status="shipped")
    client.force_login(agent)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("orders:list") + "?status=open&status=allocated")
    page_query = next(q["sql"] for q in queries if 'FROM "orders_order"' in q["sql"])
    assert "DISTINCT" not in page_query and '"orders_order"."status" IN (' in page_query
    assert {o.pk for o in response.context["orders"]} == {open_order.pk, allocated.pk}


def test_urgency_is_the_due_time_else_the_orders_ship_by_and_follows_a_changed_ship_by():
    ship_by = timezone.now() + timedelta(hours=6)
    order = OrderFactory(ship_by=ship_by)
    # when: a case without a due time
    case = ExceptionCase.objects.create(
        kind=ExceptionKind.OTHER, severity=Severity.LOW, title="t", dedupe_key="k1", opened_by="t", order=order
    )
    case.refresh_from_db()
    # then
    assert case.urgency_at == ship_by and case.impact == 13
    # when: the order's ship-by moves (a bulk update, no model save)
    Order.objects.filter(pk=order.pk).update(ship_by=ship_by - timedelta(hours=2))
    case.refresh_from_db()
    assert case.urgency_at == ship_by - timedelta(hours=2)
    # when: the case gets a due time, it wins
    due = timezone.now() + timedelta(hours=1)
    ExceptionCase.objects.filter(pk=case.pk).update(due_at=due)
    case.refresh_from_db()
    assert case.urgency_at == due
    # a case with neither sorts last
    lone = ExceptionCase.objects.create(
        kind=ExceptionKind.LATE_SHIPMENT, severity=Severity.HIGH, title="t", dedupe_key="k2", opened_by="t"
    )
    lone.refresh_from_db()
    assert lone.urgency_at == FAR_FUTURE and lone.impact == 1
