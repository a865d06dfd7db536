"""The ops console at scale: bulk triage (select all matching, refusals named), root-cause groups, urgency
order, search without full scans, streamed CSV, the dashboard, the one-click fixes and the override API."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone

from channels.models import Listing
from orders import services
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, Hold, HoldKind, OrderEvent, Severity
from orders.search import PREFIX, TRIGRAM, order_ids_matching, trigram_installed
from tests.console import page_to_end
from tests.factories import ChannelAccountFactory, OrderFactory, OrderLineFactory, SkuFactory

pytestmark = pytest.mark.django_db


def _cases(n: int, **fields) -> list[ExceptionCase]:
    return [
        services.exception_case_open(
            kind=fields.get("kind", ExceptionKind.OTHER),
            title=f"case {i}",
            actor="test",
            dedupe_key=f"test:{fields.get('prefix', 'c')}:{i}",
            sku_id=fields.get("sku_id"),
            severity=fields.get("severity", Severity.MEDIUM),
            due_at=fields.get("due_at"),
        )[0]
        for i in range(n)
    ]


def test_bulk_resolve_over_100_cases_applies_97_and_names_the_3_refused(agent):
    cases = _cases(100)
    refused = cases[10:13]
    for case in refused:
        services.exception_case_resolve(case=case.pk, note="already done", actor="someone")
    result = services.exception_cases_bulk(
        case_ids=[c.pk for c in cases], action="resolve", note="carrier outage over", actor=agent
    )
    assert len(result.done) == 97
    assert sorted(result.failed) == sorted(c.pk for c in refused)
    assert all("already resolved" in why for why in result.failed.values())
    assert ExceptionCase.objects.filter(status=CaseStatus.RESOLVED, resolution_note="carrier outage over").count() == 97
    summary = result.summary()
    assert "97 of 100" in summary and f"#{refused[0].pk}" in summary


def test_select_all_matching_resolves_every_case_the_filters_match_not_only_the_page(client, agent):
    sku = SkuFactory(code="WB-1041")
    grouped = _cases(60, kind=ExceptionKind.NO_NODE, sku_id=sku.pk, prefix="g")
    others = _cases(5, kind=ExceptionKind.OTHER, prefix="o")
    client.force_login(agent)
    response = client.post(
        reverse("orders:exceptions-bulk"),
        {"action": "resolve", "note": "stock moved", "select_all": "matching", "query": f"kind=no_node&sku={sku.pk}"},
    )
    assert response.status_code == 302
    assert ExceptionCase.objects.filter(pk__in=[c.pk for c in grouped], status=CaseStatus.RESOLVED).count() == 60
    assert not ExceptionCase.objects.filter(pk__in=[c.pk for c in others], status=CaseStatus.RESOLVED).exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "resolve", "note": "", "ids": ["1"]}, "needs a resolution note"),
        ({"action": "explode", "ids": ["1"]}, "Select a valid choice"),
        ({"action": "acknowledge"}, "select at least one item"),
        ({"action": "assign", "assignee": "not-a-user", "ids": ["1"]}, "Choose a person"),
    ],
)
def test_bad_bulk_input_gets_a_clear_message_and_changes_nothing(client, agent, data, message):
    cases = _cases(2)
    client.force_login(agent)
    response = client.post(reverse("orders:exceptions-bulk"), data, follow=True)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ExceptionCase.objects.filter(pk__in=[c.pk for c in cases]).exclude(status=CaseStatus.OPEN).exists()


def test_root_cause_groups_name_the_sku_and_link_to_its_cases(client, agent):
    sku = SkuFactory(code="WB-1041")
    _cases(4, kind=ExceptionKind.NO_NODE, sku_id=sku.pk)
    from orders.selectors import exception_case_groups

    [group] = exception_case_groups()
    assert group.label == "4 cases: no node can ship, all for SKU WB-1041"
    assert group.params == {"kind": "no_node", "sku": sku.pk}
    client.force_login(agent)
    page = client.get(reverse("orders:exceptions")).content.decode()
    assert reverse("orders:exception-groups") in page  # the queue loads its groups after answering
    groups = client.get(reverse("orders:exception-groups")).content.decode()
    assert "4 cases: no node can ship, all for SKU WB-1041" in groups


def test_the_queue_sorts_by_time_left_then_scorecard_impact(client, agent):
    now = timezone.now()
    later = _cases(1, kind=ExceptionKind.OTHER, due_at=now + timedelta(hours=5), prefix="later")[0]
    soon_low = _cases(1, kind=ExceptionKind.OTHER, due_at=now + timedelta(hours=1), prefix="soon-low")[0]
    soon_scorecard = _cases(
        1, kind=ExceptionKind.LATE_SHIPMENT, due_at=now + timedelta(hours=1), severity=Severity.HIGH, prefix="ss"
    )[0]
    client.force_login(agent)
    response = client.get(reverse("orders:exceptions"))
    order = [case.pk for case in response.context["cases"]]
    assert order.index(soon_scorecard.pk) < order.index(soon_low.pk) < order.index(later.pk)


def test_search_finds_partial_numbers_with_or_without_hash_names_emails_and_tracking():
    account = ChannelAccountFactory(kind="shopify", name="shop")
    shopify = OrderFactory(
        account=account, external_id="gid-55501065", external_reference="#1065", ship_to__email="ana@example.com"
    )
    OrderLineFactory(order=shopify, channel_sku="WB-1041-BLK")
    other = OrderFactory(account=account, external_id="gid-77", external_reference="#2001", customer_name="Bo Lin")
    for term in ("1065", "#1065", "ana@example", "WB-1041"):
        ids, info = order_ids_matching(term)
        assert shopify.pk in ids and other.pk not in ids, term
        assert info.mode == (TRIGRAM if trigram_installed() else PREFIX)
    ids, info = order_ids_matching("#2")  # short: a prefix search whatever the extension
    assert ids == {other.pk} and info.mode == PREFIX


def test_the_search_page_says_which_search_ran(client, agent):
    OrderFactory(external_reference="#1065")
    client.force_login(agent)
    page = client.get(reverse("orders:list"), {"q": "1065"}).content.decode()
    assert "search (pg_trgm)" in page if trigram_installed() else "prefix search" in page
    assert "#1065" in page


def test_csv_export_streams_every_row_with_the_filters(client, agent):
    account = ChannelAccountFactory(kind="walmart", name="wm")
    held = [OrderFactory(account=account, on_hold=True) for _ in range(3)]
    OrderFactory(account=account, on_hold=False)
    client.force_login(agent)
    response = client.get(reverse("orders:export"), {"on_hold": "true"})
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][0] == "id" and sorted(int(r[0]) for r in rows[1:]) == sorted(o.pk for o in held)


def test_a_formula_in_a_cell_is_quoted_in_the_export(client, agent):
    OrderFactory(customer_name="=HYPERLINK(1)")
    client.force_login(agent)
    body = b"".join(client.get(reverse("orders:exceptions-export")).streaming_content)
    assert body.startswith(b"id,kind")
    body = b"".join(client.get(reverse("orders:export")).streaming_content).decode()
    assert "'=HYPERLINK(1)" in body


def test_dashboard_is_home_and_polls_its_tiles(client, agent):
    OrderFactory(ship_by=timezone.now() + timedelta(hours=1))
    _cases(2, kind=ExceptionKind.NO_NODE)
    client.force_login(agent)
    page = client.get("/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'hx-trigger="every 15s"' in html and "Open exceptions: 2" in html
    assert html.count("<h1") == 1
    partial = client.get("/", HTTP_HX_REQUEST="true")
    assert "<html" not in partial.content.decode() and "Orders today" in partial.content.decode()
    assert client.get(reverse("channels:dashboard-lag")).status_code == 200
    assert client.get(reverse("fulfillment:dashboard-carriers")).status_code == 200
    assert page.context["scorecard_tiles"] in (None, "scorecards/_dashboard_tiles.html")


def test_editing_the_ship_to_keeps_the_old_value_and_releases_the_address_hold(client, manager):
    order = OrderFactory(ship_to__line1="", ship_to__city="Austin", ship_to__country_code="")
    services.order_address_hold(order=order.pk, actor="ingest")
    client.force_login(manager)
    response = client.post(
        reverse("orders:ship-to", args=[order.pk]),
        {
            "line1": "500 Congress Ave",
            "city": "Austin",
            "postal_code": "78701",
            "country_code": "us",
            "reason": "buyer",
        },
    )
    assert response.status_code == 302
    event = OrderEvent.objects.get(order=order, kind="ship_to_edited")
    assert event.data["before"]["line1"] == "" and event.data["after"]["line1"] == "500 Congress Ave"
    assert event.data["after"]["country_code"] == "US"
    assert not Hold.objects.filter(order=order, released_at__isnull=True).exists()
    assert not ExceptionCase.objects.filter(order=order).exclude(status=CaseStatus.RESOLVED).exists()


def test_a_bad_ship_to_gets_a_clear_error_and_changes_nothing(client, manager):
    order = OrderFactory()
    client.force_login(manager)
    response = client.post(reverse("orders:ship-to", args=[order.pk]), {"country_code": "USA", "reason": "x"})
    assert response.status_code == 400
    assert "at most 2 characters" in response.content.decode() or "two letters" in response.content.decode()
    assert not OrderEvent.objects.filter(order=order, kind="ship_to_edited").exists()


def test_mapping_an_unmapped_sku_from_its_case_releases_every_order_it_held(client, manager):
    account = ChannelAccountFactory(kind="ebay", name="ebay-us")
    sku = SkuFactory(code="WB-2001")
    Listing.objects.create(account=account, channel_sku="EB-77", sku=None)
    orders, cases = [], []
    for _ in range(3):
        order = OrderFactory(account=account)
        OrderLineFactory(order=order, sku=None, channel_sku="EB-77")
        services.hold_place(order=order.pk, kind=HoldKind.UNMAPPED_SKU, reason="unmapped", actor="sync")
        case, _ = services.exception_case_open(
            kind=ExceptionKind.UNMAPPED_SKU, title="unmapped", order_id=order.pk, account_id=account.pk, actor="sync"
        )
        orders.append(order)
        cases.append(case)
    client.force_login(manager)
    assert "EB-77 (3 orders held)" in client.get(reverse("channels:map-sku", args=[cases[0].pk])).content.decode()
    bad = client.post(reverse("channels:map-sku", args=[cases[0].pk]), {"channel_sku": "EB-77", "sku": "NOPE"})
    assert bad.status_code == 400 and "No Waybill SKU with code" in bad.content.decode()
    response = client.post(reverse("channels:map-sku", args=[cases[0].pk]), {"channel_sku": "EB-77", "sku": "WB-2001"})
    assert response.status_code == 302
    assert Listing.objects.get(account=account, channel_sku="EB-77").sku_id == sku.pk
    for order, case in zip(orders, cases, strict=True):
        order.refresh_from_db()
        case.refresh_from_db()
        assert not order.on_hold and order.lines.get().sku_id == sku.pk
        assert case.status == CaseStatus.RESOLVED


def test_override_api_places_a_hold_once_per_idempotency_key(api_client, agent):
    order = OrderFactory()
    api_client.force_authenticate(agent)
    url = f"/api/v1/orders/{order.pk}/holds/"
    body = {"kind": "fraud", "reason": "velocity check"}
    first = api_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201 and again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert Hold.objects.filter(order=order).count() == 1
    assert OrderEvent.objects.filter(order=order, kind="hold_placed").count() == 1
    other = api_client.post(url, {"kind": "payment", "reason": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 422


def test_override_api_checks_roles_and_validates(api_client, viewer, agent):
    order = OrderFactory()
    api_client.force_authenticate(viewer)
    assert api_client.post(f"/api/v1/orders/{order.pk}/cancel/", {"reason": "x"}, format="json").status_code == 403
    api_client.force_authenticate(agent)  # agents may hold but not cancel
    assert api_client.post(f"/api/v1/orders/{order.pk}/cancel/", {"reason": "x"}, format="json").status_code == 403
    bad = api_client.post(f"/api/v1/orders/{order.pk}/holds/", {"kind": "nope"}, format="json")
    assert bad.status_code == 400 and {"kind", "reason"} <= set(bad.json())


def test_exception_case_api_bulk_names_the_refused(api_client, agent):
    cases = _cases(5)
    services.exception_case_resolve(case=cases[0].pk, note="done", actor="x")
    api_client.force_authenticate(agent)
    response = api_client.post(
        "/api/v1/exception-cases/bulk/",
        {"action": "resolve", "ids": [c.pk for c in cases], "note": "bulk"},
        format="json",
    )
    assert response.status_code == 200
    assert len(response.json()["done"]) == 4 and list(response.json()["failed"]) == [str(cases[0].pk)]
    listing = api_client.get("/api/v1/exception-cases/", {"status": "resolved"})
    assert listing.status_code == 200 and len(listing.json()["results"]) == 5


def test_every_search_predicate_has_an_index_so_no_full_table_scan():
    # given the search's queries; when PostgreSQL may not scan whole tables; then each plan uses an index
    from django.db import connection

    OrderFactory(external_reference="#1065")
    terms = ["1065", "ab"] if trigram_installed() else ["ab"]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for term in terms:
            for sql, params in _search_sql(term):
                cursor.execute("EXPLAIN " + sql, params)
                plan = "\n".join(row[0] for row in cursor.fetchall())
                scans = [line for line in plan.splitlines() if "Seq Scan on orders_" in line]
                assert not scans, f"{term!r}: {sql}\n{plan}"


def _search_sql(term: str):
    from orders.models import Order, OrderLine

    lookup = "icontains" if len(term) >= 3 and trigram_installed() else "istartswith"
    querysets = [
        Order.objects.filter(**{f"external_id__{lookup}": term}).values("pk"),
        Order.objects.filter(**{f"external_reference__{lookup}": term}).values("pk"),
        Order.objects.filter(**{f"customer_name__{lookup}": term}).values("pk"),
        OrderLine.objects.filter(**{f"channel_sku__{lookup}": term}).values("order_id"),
    ]
    return [qs.query.sql_with_params() for qs in querysets]


def test_queue_pages_take_a_fixed_number_of_queries(client, agent, django_assert_max_num_queries):
    sku = SkuFactory()
    for n in (5, 40):
        _cases(n, kind=ExceptionKind.NO_NODE, sku_id=sku.pk, prefix=f"q{n}")
        client.force_login(agent)
        with django_assert_max_num_queries(20):
            assert client.get(reverse("orders:exceptions")).status_code == 200
        with django_assert_max_num_queries(20):
            assert client.get("/").status_code == 200


def test_bulk_release_of_holds_names_orders_without_one(client, agent):
    held = [OrderFactory() for _ in range(3)]
    for order in held:
        services.hold_place(order=order.pk, kind=HoldKind.FRAUD, reason="review", actor="t")
    free = OrderFactory()
    client.force_login(agent)
    response = client.post(
        reverse("orders:bulk"), {"ids": [o.pk for o in [*held, free]], "kind": "", "reason": "cleared"}, follow=True
    )
    page = response.content.decode()
    assert "release holds: 3 of 4 order(s) done" in page and f"#{free.pk}: no active hold" in page
    assert not Hold.objects.filter(order__in=held, released_at__isnull=True).exists()


def test_the_ship_by_sort_pages_through_every_order_including_those_without_a_ship_by(client, agent):
    # given 30 orders with a ship-by and 40 without one: the first page of 50 ends among the latter
    now = timezone.now()
    dated = [OrderFactory(ship_by=now + timedelta(hours=i)).pk for i in range(30)]
    undated = {OrderFactory(ship_by=None).pk for _ in range(40)}
    client.force_login(agent)
    # when the list sorted by ship-by soonest is paged to its end
    seen = page_to_end(client, "/orders/?ordering=ship_by", rows="orders")
    # then every order shows once: those with a ship-by first, soonest first, then the rest
    assert len(seen) == len(set(seen)) == 70
    assert seen[:30] == dated and set(seen[30:]) == undated


def test_the_ship_by_sort_reads_an_index_not_the_whole_table():
    from django.db import connection

    from orders.models import SHIP_BY_KEY, Order

    OrderFactory(ship_by=None)
    query = Order.objects.annotate(ship_by_key=SHIP_BY_KEY).order_by("ship_by_key", "id").values("pk")[:51]
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "order_ship_by_key" in plan, plan
