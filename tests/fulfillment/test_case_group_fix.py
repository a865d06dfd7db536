"""One fix applied to a root-cause group of exception cases: every ticked (or matching) case's order
rerouted to a named node, backordered or cancelled, each in its own transaction; the cases it settles are
resolved, the ones it does not apply to are named and left as they were."""

from __future__ import annotations

import pytest

from channels.models import OutboxKind, OutboxMessage
from fulfillment import services
from fulfillment.errors import InvalidInput
from fulfillment.models import Shipment, ShipmentStatus
from fulfillment.services import overrides
from orders import services as order_services
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, OrderEvent, OrderStatus
from tests.inventory.helpers import assert_stock_invariants

pytestmark = pytest.mark.django_db


@pytest.fixture
def stranded(node, stock, order_for, skus):
    """Three orders of one SKU that no node could ship: each has an open routing case."""
    dc = node("DC", "94107")
    stock(skus[1], dc, 5)  # DC carries another SKU, none of skus[0]
    orders = [order_for([(skus[0], 1)]) for _ in range(3)]
    for order in orders:
        services.order_route(order_id=order.pk, actor="router")
    cases = list(
        ExceptionCase.objects.filter(order__in=orders, kind__in=overrides.CASE_FIX_KINDS)
        .exclude(status=CaseStatus.RESOLVED)
        .order_by("pk")
    )
    assert len(cases) == 3
    return orders, cases, dc


def test_a_group_rerouted_to_a_named_node_settles_its_cases_and_names_the_case_it_does_not_fix(
    stranded, node, stock, skus, manager
):
    # given three orders stranded for one SKU, a node that now has it, and an unrelated case in the selection
    orders, cases, _ = stranded
    alt = node("ALT", "10001")
    stock(skus[0], alt, 10)
    other, _ = order_services.exception_case_open(kind=ExceptionKind.OTHER, title="carrier call", actor="t")
    # when the group is rerouted to ALT in one action
    result = overrides.exception_cases_fix_bulk(
        case_ids=[c.pk for c in cases] + [other.pk],
        action="reroute",
        location_id=alt.pk,
        reason="ALT received the SKU",
        actor=manager,
    )
    # then each order ships from ALT, its case is resolved, and the unrelated case is named and still open
    assert result.done == [c.pk for c in cases]
    assert list(result.failed) == [other.pk] and "not fixed by a reroute" in result.failed[other.pk]
    for order in orders:
        assert Shipment.objects.filter(order=order, location=alt, status=ShipmentStatus.RELEASED).count() == 1
        assert OrderEvent.objects.filter(order=order, kind="rerouted").count() == 1
    assert set(ExceptionCase.objects.filter(pk__in=[c.pk for c in cases]).values_list("status", flat=True)) == {
        CaseStatus.RESOLVED
    }
    other.refresh_from_db()
    assert other.status == CaseStatus.OPEN
    assert_stock_invariants()


def test_a_reroute_that_still_cannot_ship_is_named_and_changes_nothing(stranded, manager):
    # given three stranded orders and still no node with their SKU
    orders, cases, _ = stranded
    # when the group is rerouted to the best node
    result = overrides.exception_cases_fix_bulk(
        case_ids=[c.pk for c in cases], action="reroute", reason="try again", actor=manager
    )
    # then every case is named, still open, and no order was rerouted
    assert result.done == [] and sorted(result.failed) == [c.pk for c in cases]
    assert all("still cannot ship" in why for why in result.failed.values())
    assert not ExceptionCase.objects.filter(pk__in=[c.pk for c in cases], status=CaseStatus.RESOLVED).exists()
    assert not OrderEvent.objects.filter(order__in=orders, kind="rerouted").exists()
    assert not Shipment.objects.filter(order__in=orders).exists()


def test_a_group_cancelled_tells_the_channel_and_names_a_resolved_case(stranded, manager):
    # given three stranded orders, one of whose cases someone already resolved
    orders, cases, _ = stranded
    order_services.exception_case_resolve(case=cases[2].pk, note="handled by phone", actor=manager)
    # when the group is cancelled with a reason
    result = overrides.exception_cases_fix_bulk(
        case_ids=[c.pk for c in cases], action="cancel", reason="discontinued", actor=manager
    )
    # then two orders are cancelled with a cancellation queued to the channel; the resolved case is named
    assert result.done == [cases[0].pk, cases[1].pk]
    assert result.failed == {cases[2].pk: "already resolved"}
    for order in orders[:2]:
        order.refresh_from_db()
        assert order.status == OrderStatus.CANCELLED
        assert OutboxMessage.objects.filter(order=order, kind=OutboxKind.CANCELLATION).count() == 1
    orders[2].refresh_from_db()
    assert orders[2].status != OrderStatus.CANCELLED
    assert not OutboxMessage.objects.filter(order=orders[2], kind=OutboxKind.CANCELLATION).exists()
    assert_stock_invariants()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": "explode", "reason": "x"}, "expected one of reroute, backorder, cancel"),
        ({"action": "reroute", "reason": "  "}, "needs a reason"),
        ({"action": "backorder", "reason": "x", "location_id": 1}, "only for a reroute"),
    ],
)
def test_bad_group_fix_input_gets_a_clear_error_and_changes_nothing(stranded, manager, kwargs, message):
    orders, cases, _ = stranded
    with pytest.raises(InvalidInput, match=message):
        overrides.exception_cases_fix_bulk(case_ids=[c.pk for c in cases], actor=manager, **kwargs)
    assert not ExceptionCase.objects.filter(pk__in=[c.pk for c in cases], status=CaseStatus.RESOLVED).exists()
    assert not OrderEvent.objects.filter(order__in=orders, kind__in=["rerouted", "backorder_allowed"]).exists()


def test_the_queue_backorders_every_case_of_a_root_cause_group(client, stranded, skus, manager):
    # given the queue filtered to the group (its kind and SKU), all matching selected
    orders, cases, _ = stranded
    client.force_login(manager)
    query = f"kind={cases[0].kind}&sku={skus[0].pk}"
    page = client.get(f"/orders/exceptions/?{query}")
    assert 'action="/fulfillment/cases/fix/"' in page.content.decode()
    # when the group is backordered from the queue
    response = client.post(
        "/fulfillment/cases/fix/",
        {"action": "backorder", "reason": "PO lands Friday", "select_all": "matching", "query": query},
        follow=True,
    )
    # then every order's lines wait for stock and every case of the group is resolved
    assert "backorder: 3 of 3 case(s) done" in response.content.decode()
    for order in orders:
        assert OrderEvent.objects.filter(order=order, kind="backorder_allowed").count() == 1
        assert order.lines.get().is_backorder_allowed
    assert set(ExceptionCase.objects.filter(pk__in=[c.pk for c in cases]).values_list("status", flat=True)) == {
        CaseStatus.RESOLVED
    }


def test_the_queue_refuses_a_fix_without_a_reason_and_changes_nothing(client, stranded, manager):
    orders, cases, _ = stranded
    client.force_login(manager)
    response = client.post(
        "/fulfillment/cases/fix/", {"action": "cancel", "reason": "", "ids": [c.pk for c in cases]}, follow=True
    )
    assert "Not fixed: reason:" in response.content.decode()
    assert not OrderEvent.objects.filter(order__in=orders).filter(kind__contains="cancel").exists()
    assert not OutboxMessage.objects.filter(order__in=orders).exists()


def test_an_agent_without_the_override_permission_cannot_fix_a_group(client, stranded, agent):
    _, cases, _ = stranded
    client.force_login(agent)
    response = client.post("/fulfillment/cases/fix/", {"action": "cancel", "reason": "x", "ids": [cases[0].pk]})
    assert response.status_code == 403
    cases[0].refresh_from_db()
    assert cases[0].status != CaseStatus.RESOLVED


def test_the_api_fixes_a_group_by_its_filters_once_per_idempotency_key(
    api_client, stranded, node, stock, skus, manager
):
    # given a node that now has the stranded SKU
    orders, cases, _ = stranded
    alt = node("ALT", "10001")
    stock(skus[0], alt, 10)
    api_client.force_authenticate(manager)
    body = {
        "action": "reroute",
        "filters": {"kind": cases[0].kind, "sku": str(skus[0].pk)},
        "reason": "ALT received the SKU",
        "location": alt.pk,
    }
    # when the group is rerouted through the API, and the same call is replayed
    first = api_client.post("/api/v1/exception-cases/fix/", body, format="json", HTTP_IDEMPOTENCY_KEY="fix-1")
    again = api_client.post("/api/v1/exception-cases/fix/", body, format="json", HTTP_IDEMPOTENCY_KEY="fix-1")
    # then the three cases are done once, each order rerouted once
    assert first.status_code == 200 and first.json()["done"] == [c.pk for c in cases]
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    for order in orders:
        assert OrderEvent.objects.filter(order=order, kind="rerouted").count() == 1
        assert Shipment.objects.filter(order=order, location=alt, status=ShipmentStatus.RELEASED).count() == 1


def test_the_api_fix_checks_the_role_and_the_input(api_client, stranded, agent, manager):
    _, cases, _ = stranded
    ids = [c.pk for c in cases]
    api_client.force_authenticate(agent)  # agents triage, managers override
    denied = api_client.post(
        "/api/v1/exception-cases/fix/", {"action": "cancel", "ids": ids, "reason": "x"}, format="json"
    )
    assert denied.status_code == 403
    api_client.force_authenticate(manager)
    bad = api_client.post("/api/v1/exception-cases/fix/", {"action": "explode", "ids": ids}, format="json")
    assert bad.status_code == 400 and {"action", "reason"} <= set(bad.json())
    wrong = api_client.post(
        "/api/v1/exception-cases/fix/", {"action": "backorder", "ids": ids, "reason": "x", "location": 1}, format="json"
    )
    assert wrong.status_code == 400 and "only for a reroute" in wrong.content.decode()
    assert not ExceptionCase.objects.filter(pk__in=ids, status=CaseStatus.RESOLVED).exists()


def test_the_group_fix_is_in_the_openapi_schema(client, manager):
    client.force_login(manager)
    schema = client.get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/v1/exception-cases/fix/"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))


def test_two_cases_of_one_order_take_one_fix_and_both_are_resolved(stranded, node, stock, skus, manager):
    # given a stranded order that is also late: two cases of one order
    orders, cases, _ = stranded
    late, _ = order_services.exception_case_open(
        kind=ExceptionKind.LATE_SHIPMENT, title="late", order_id=orders[0].pk, dedupe_key="late:0", actor="detector"
    )
    alt = node("ALT", "10001")
    stock(skus[0], alt, 10)
    # when both are rerouted to ALT in one call
    result = overrides.exception_cases_fix_bulk(
        case_ids=[cases[0].pk, late.pk], action="reroute", location_id=alt.pk, reason="ALT has it", actor=manager
    )
    # then the order is rerouted once and both its cases are resolved
    assert result.done == [cases[0].pk, late.pk] and not result.failed
    assert OrderEvent.objects.filter(order=orders[0], kind="rerouted").count() == 1
    assert set(ExceptionCase.objects.filter(pk__in=[cases[0].pk, late.pk]).values_list("status", flat=True)) == {
        CaseStatus.RESOLVED
    }
