"""The returns console (queue, RMA page, scanner receive page, creation from an order, report) and the
returns 3PL API (node token + Idempotency-Key, in the OpenAPI schema)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from fulfillment.services import node_token_create
from inventory.models import StockLevel
from returns import services
from returns.models import ReturnAuthorization, ReturnReceipt
from returns.services import ReturnLineInput

from .helpers import node, shipped_order

pytestmark = pytest.mark.django_db

ACTOR = "test:returns"


def _rma(units=2):
    order, (line,) = shipped_order(units=units)
    rma = services.rma_create(order_id=order.pk, lines=[ReturnLineInput(line.pk, units)], actor=ACTOR)
    return order, line, rma


def test_a_person_opens_an_rma_from_the_order_page_and_the_queue_shows_it(client, agent):
    order, (line,) = shipped_order(units=2)
    client.force_login(agent)
    page = client.get(reverse("orders:detail", args=[order.pk]))
    assert reverse("returns:create", args=[order.pk]) in page.content.decode()
    response = client.post(
        reverse("returns:create", args=[order.pk]), {f"qty-{line.pk}": "1", "reason": "defective", "authorize": "on"}
    )
    rma = ReturnAuthorization.objects.get(order=order)
    assert response.status_code == 302 and rma.status == "authorized"
    queue = client.get(reverse("returns:queue") + "?bucket=awaiting_receipt")
    assert rma.rma_number in queue.content.decode()


def test_creating_an_rma_for_more_than_shipped_shows_the_refusal_and_writes_nothing(client, agent):
    order, (line,) = shipped_order(units=1)
    client.force_login(agent)
    response = client.post(reverse("returns:create", args=[order.pk]), {f"qty-{line.pk}": "5", "reason": "other"})
    assert response.status_code == 400 and "only 1 can be returned" in response.content.decode()
    assert not ReturnAuthorization.objects.exists()


def test_the_scanner_page_receives_a_scan_and_a_double_submit_restocks_once(client, agent):
    _order, line, rma = _rma(units=2)
    store = node()
    client.force_login(agent)
    page = client.get(reverse("returns:receive", args=[rma.pk]))
    assert page.status_code == 200 and b"autofocus" in page.content
    key = page.context["form"].initial["key"]
    form = {"sku": line.sku.code, "quantity": "1", "disposition": "restock", "location": store.pk, "key": key}
    first = client.post(reverse("returns:receive", args=[rma.pk]), form)
    again = client.post(reverse("returns:receive", args=[rma.pk]), form)
    assert first.status_code == again.status_code == 302
    assert StockLevel.objects.get(sku=line.sku, location=store).on_hand == 1
    unknown = client.post(reverse("returns:receive", args=[rma.pk]), {**form, "sku": "NOPE", "key": "k2"})
    assert unknown.status_code == 400 and "is not on RMA" in unknown.content.decode()
    bad = client.post(reverse("returns:receive", args=[rma.pk]), {**form, "disposition": "resell", "key": "k3"})
    assert bad.status_code == 400
    assert ReturnReceipt.objects.count() == 1


def test_the_rma_page_shows_its_timeline_and_the_report_exports_csv(client, agent, manager):
    _order, line, rma = _rma(units=1)
    services.rma_receive(
        rma_id=rma.pk, location_id=node().pk, items=[services.ReceiveItem(1, "damaged", sku=line.sku.code)], actor=ACTOR
    )
    client.force_login(agent)
    page = client.get(reverse("returns:detail", args=[rma.pk])).content.decode()
    assert "Received" in page and "Damaged" in page and "Status changed" in page
    report = client.get(reverse("returns:report"))
    assert report.status_code == 200 and b"<svg" in report.content
    exported = client.get(reverse("returns:report") + "?format=csv&days=30")
    text = exported.content.decode()
    assert exported["Content-Type"].startswith("text/csv") and f"sku,{line.sku.code},1," in text
    assert "reason,defective,1" in text or "reason,other,1" in text


def test_a_returns_3pl_posts_a_receipt_with_its_node_token_and_a_replay_changes_nothing(api_client):
    _order, line, rma = _rma(units=2)
    threepl = node()
    _token, key = node_token_create(location=threepl, name="returns 3PL", actor=ACTOR)
    api_client.credentials(HTTP_AUTHORIZATION=f"Node {key}")
    url = f"/api/v1/returns/rmas/{rma.rma_number}/receipts/"
    body = {"items": [{"sku": line.sku.code, "quantity": 2, "disposition": "restock"}]}
    refused = api_client.post(url, body, format="json")
    assert refused.status_code == 400 and "Idempotency-Key" in refused.json()
    first = api_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="r-1")
    replay = api_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="r-1")
    assert first.status_code == 200 and replay.status_code == 200, first.content
    assert first.json()["rma"]["status"] == "inspected" and replay.headers.get("Idempotent-Replayed") == "true"
    assert StockLevel.objects.get(sku=line.sku, location=threepl).on_hand == 2
    listed = api_client.get("/api/v1/returns/rmas/")
    assert listed.status_code == 200
    bad = api_client.post(
        url,
        {"items": [{"sku": line.sku.code, "quantity": 0, "disposition": "nope"}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="r-2",
    )
    errors = bad.json()["items"]
    first_item = errors[0] if isinstance(errors, list) else errors["0"]
    assert bad.status_code == 400 and set(first_item) == {"quantity", "disposition"}, bad.json()


def test_the_returns_endpoints_are_in_the_openapi_schema(client, admin_user):
    client.force_login(admin_user)
    schema = client.get("/api/schema/").content.decode()
    assert "/api/v1/returns/rmas/{rma_number}/receipts/" in schema
    assert "Idempotency-Key" in schema


def test_a_person_receives_inspects_and_refunds_a_return_in_the_console(client, agent, manager):
    from decimal import Decimal

    from channels.models import ChannelKind, OutboxKind, OutboxMessage
    from returns.models import Refund
    from tests.factories import ChannelAccountFactory

    # given an authorised return of 2 units of a Walmart order (25.00 each, 55.00 paid)
    order, (line,) = shipped_order(units=2, account=ChannelAccountFactory(kind=ChannelKind.WALMART))
    rma = services.rma_create(order_id=order.pk, lines=[ReturnLineInput(line.pk, 2)], actor=ACTOR)
    dc = node()
    receive = reverse("returns:receive", args=[rma.pk])
    client.force_login(agent)
    # when an agent scans both units in to inspect later, then inspects one as restock and one as damaged
    key = client.get(receive).context["form"].initial["key"]
    scan = {"sku": line.sku.code, "quantity": "2", "disposition": "pending", "location": dc.pk, "key": key}
    assert client.post(receive, scan).status_code == 302
    level = StockLevel.objects.get(sku=line.sku, location=dc)
    assert (level.receiving, level.on_hand) == (2, 0)
    page = client.get(receive)
    assert page.context["pending"] and line.sku.code in page.content.decode()
    for disposition in ("restock", "damaged"):
        key = client.get(receive).context["inspect_form"].initial["key"]
        inspect = {"mode": "inspect", "sku": line.sku.code, "quantity": "1", "disposition": disposition, "key": key}
        assert client.post(receive, inspect).status_code == 302
        assert client.post(receive, inspect).status_code == 302  # a double submit inspects once
    refused = client.post(
        receive, {"mode": "inspect", "sku": line.sku.code, "quantity": "1", "disposition": "restock", "key": "i-9"}
    )
    assert refused.status_code == 400 and "await inspection" in refused.content.decode()
    zero = client.post(receive, {"mode": "inspect", "sku": line.sku.code, "quantity": "0", "disposition": "x"})
    assert zero.status_code == 400 and "greater than or equal to 1" in zero.content.decode()
    assert "Select a valid choice" in zero.content.decode()
    level.refresh_from_db()
    assert (level.receiving, level.on_hand, level.damaged) == (0, 1, 1)
    rma.refresh_from_db()
    assert rma.status == "inspected"
    # then an agent may not refund; a manager refunds one unit plus shipping from the RMA page, once
    refund_url = reverse("returns:refund", args=[rma.pk])
    form = {f"amount-{rma.lines.get().pk}": "25.00", f"quantity-{rma.lines.get().pk}": "1", "reason": "defective"}
    assert client.post(refund_url, {**form, "key": "f-0"}).status_code == 403
    client.force_login(manager)
    detail = client.get(reverse("returns:detail", args=[rma.pk]))
    assert refund_url in detail.content.decode()
    key = detail.context["refund_form"].initial["key"]
    too_much = client.post(refund_url, {**form, f"amount-{rma.lines.get().pk}": "50.01", "key": "f-1"}, follow=True)
    assert "above what is left to refund" in too_much.content.decode()
    assert not Refund.objects.exists()
    client.post(refund_url, {**form, "shipping": "5.00", "key": key})
    client.post(refund_url, {**form, "shipping": "5.00", "key": key})
    refund = Refund.objects.get()
    assert (refund.amount, refund.shipping_amount, refund.rma_id) == (Decimal("30.00"), Decimal("5.00"), rma.pk)
    assert OutboxMessage.objects.filter(kind=OutboxKind.REFUND).count() == 1
    page = client.get(reverse("returns:detail", args=[rma.pk])).content.decode()
    assert "30.00" in page and "Refund requested" in page
    # and the return is completed from its page
    client.post(reverse("returns:action", args=[rma.pk, "complete"]), {"reason": ""})
    rma.refresh_from_db()
    assert rma.status == "completed" and rma.closed_at is not None


def _first_item_errors(response) -> dict:
    errors = response.json()["items"]
    return errors[0] if isinstance(errors, list) else errors["0"]


def test_a_returns_3pl_inspects_the_units_it_holds_and_bad_input_writes_nothing(api_client):
    from inventory.models import StockMovement
    from returns.models import ReturnUnit

    # given 2 units received at a returns 3PL, pending inspection
    _order, line, rma = _rma(units=2)
    threepl, store = node(), node()
    _token, key = node_token_create(location=threepl, name="returns 3PL", actor=ACTOR)
    _other, other_key = node_token_create(location=store, name="store", actor=ACTOR)
    base = f"/api/v1/returns/rmas/{rma.rma_number}"
    api_client.credentials(HTTP_AUTHORIZATION=f"Node {key}")
    received = api_client.post(
        f"{base}/receipts/",
        {"items": [{"sku": line.sku.code, "quantity": 2}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="in-1",
    )
    assert received.status_code == 200 and received.json()["rma"]["status"] == "received", received.content
    movements = StockMovement.objects.count()
    units = ReturnUnit.objects.count()
    # when bad input arrives: a quantity of 10^12, an unknown SKU, a disposition that does not exist, and a
    # node that does not hold the units
    body = {"items": [{"sku": line.sku.code, "quantity": 1, "disposition": "restock"}]}
    huge = api_client.post(
        f"{base}/inspections/",
        {"items": [{"sku": line.sku.code, "quantity": 10**12, "disposition": "restock"}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="x-1",
    )
    unknown = api_client.post(
        f"{base}/inspections/",
        {"items": [{"sku": "NOPE-9", "quantity": 1, "disposition": "restock"}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="x-2",
    )
    no_such = api_client.post(
        f"{base}/inspections/",
        {"items": [{"sku": line.sku.code, "quantity": 1, "disposition": "resell"}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="x-3",
    )
    api_client.credentials(HTTP_AUTHORIZATION=f"Node {other_key}")
    elsewhere = api_client.post(f"{base}/inspections/", body, format="json", HTTP_IDEMPOTENCY_KEY="x-4")
    # then each is refused with a message and nothing is written
    assert huge.status_code == 400 and "quantity" in _first_item_errors(huge)
    assert unknown.status_code == 400 and "is not on RMA" in str(unknown.json()), unknown.content
    assert no_such.status_code == 400 and "disposition" in _first_item_errors(no_such)
    assert elsewhere.status_code == 409 and f"await inspection at {store.code}" in str(elsewhere.json())
    assert (StockMovement.objects.count(), ReturnUnit.objects.count()) == (movements, units)
    # and the 3PL's inspection is applied once, however often it is posted
    api_client.credentials(HTTP_AUTHORIZATION=f"Node {key}")
    first = api_client.post(f"{base}/inspections/", body, format="json", HTTP_IDEMPOTENCY_KEY="insp-1")
    again = api_client.post(f"{base}/inspections/", body, format="json", HTTP_IDEMPOTENCY_KEY="insp-1")
    assert first.status_code == again.status_code == 200, first.content
    assert again.headers.get("Idempotent-Replayed") == "true"
    level = StockLevel.objects.get(sku=line.sku, location=threepl)
    assert (level.receiving, level.on_hand) == (1, 1)
    assert first.json()["rma"]["lines"][0]["quantity_inspected"] == 1


def test_the_queue_sorts_returns_into_awaiting_receipt_inspection_overdue_and_by_channel(client, agent):
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from channels.models import ChannelKind
    from returns.models import ReturnPolicy
    from tests.factories import ChannelAccountFactory

    # given an Amazon return 15 days old (overdue by the 14-day default), a Walmart one 5 days old on an account
    # whose policy says 3 days, a fresh eBay one, and a Walmart one received and waiting for inspection
    amazon, walmart, ebay = (ChannelAccountFactory(kind=k) for k in (ChannelKind.AMAZON, "walmart", "ebay"))
    ReturnPolicy.objects.create(account=walmart, overdue_after_days=3)
    made = {}
    for name, account, age in (("old", amazon, 15), ("late", walmart, 5), ("new", ebay, 0), ("in", walmart, 0)):
        order, (line,) = shipped_order(units=1, account=account)
        made[name] = services.rma_create(order_id=order.pk, lines=[ReturnLineInput(line.pk, 1)], actor=ACTOR)
        ReturnAuthorization.objects.filter(pk=made[name].pk).update(created_at=timezone.now() - timedelta(days=age))
        if name == "in":
            services.rma_receive(
                rma_id=made[name].pk,
                location_id=node().pk,
                items=[services.ReceiveItem(1, sku=line.sku.code)],
                actor=ACTOR,
            )
    client.force_login(agent)

    def shown(query: str) -> set[str]:
        page = client.get(reverse("returns:queue") + query)
        assert page.status_code == 200
        return {name for name, rma in made.items() if rma.rma_number in page.content.decode()}

    # then each bucket and channel shows its returns
    assert shown("?bucket=awaiting_receipt") == {"old", "late", "new"}
    assert shown("?bucket=awaiting_inspection") == {"in"}
    assert shown("?bucket=overdue") == {"old", "late"}
    assert shown("?bucket=open&channel=walmart") == {"late", "in"}
    assert shown("?bucket=overdue&channel=amazon") == {"old"}
    # and the queue's queries do not grow with its rows
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("returns:queue") + "?bucket=all")
    for _ in range(5):
        order, (line,) = shipped_order(units=1, account=ebay)
        services.rma_create(order_id=order.pk, lines=[ReturnLineInput(line.pk, 1)], actor=ACTOR)
    with CaptureQueriesContext(connection) as more:
        client.get(reverse("returns:queue") + "?bucket=all")
    assert len(more.captured_queries) == len(few.captured_queries)


@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        ("0", "at least one line"),
        (str(10**12), "implausibly large"),
        ("two", "whole number"),
        ("-1", "at least 1"),
    ],
)
def test_the_create_rma_form_refuses_bad_quantities_and_cancelled_lines_writing_nothing(
    client, agent, quantity, message
):
    from orders.models import LineStatus, OrderEvent
    from tests.factories import OrderLineFactory

    order, (line,) = shipped_order(units=2)
    cancelled = OrderLineFactory(order=order, quantity=1, quantity_cancelled=1, status=LineStatus.CANCELLED)
    client.force_login(agent)
    url = reverse("returns:create", args=[order.pk])
    bad = client.post(url, {f"qty-{line.pk}": quantity, "reason": "defective"})
    assert bad.status_code == 400 and message in bad.content.decode()
    on_cancelled = client.post(url, {f"qty-{cancelled.pk}": "1", "reason": "defective"})
    assert on_cancelled.status_code == 400 and "is cancelled" in on_cancelled.content.decode()
    assert not ReturnAuthorization.objects.exists()
    assert not OrderEvent.objects.filter(order=order, kind="return_requested").exists()
