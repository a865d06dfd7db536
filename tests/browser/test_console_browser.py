"""The ops console in a real browser (chromium at 1366x768): log in, bulk-resolve 50 cases, map an unmapped
SKU from its case and see its orders released, cancel a line and see the outbox message, reroute an order,
search a partial order number, export a CSV, and every page no wider than the viewport."""

from __future__ import annotations

import csv
import re

import pytest
from playwright.sync_api import expect

from channels.models import Listing, OutboxKind, OutboxMessage
from fulfillment import services as fulfillment
from fulfillment.models import Shipment
from inventory import services as inventory
from orders import services
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, HoldKind, Order
from tests.browser.conftest import VIEWPORT, page_width, shot
from tests.factories import ChannelAccountFactory, LocationFactory, OrderFactory, OrderLineFactory, SkuFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def routed_order(transactional_db):
    account = ChannelAccountFactory(kind="amazon", name="amazon-us")
    dc = LocationFactory(code="DC", postal_code="94107", cutoff_time=None)
    alt = LocationFactory(code="ALT", postal_code="10001", cutoff_time=None)
    account.eligible_locations.add(dc, alt)
    skus = [SkuFactory(code="WB-1041"), SkuFactory(code="WB-2002")]
    for location in (dc, alt):
        for sku in skus:
            inventory.stock_receive(sku=sku, location=location, quantity=5, actor="test:setup")
    order = OrderFactory(account=account, external_id="111-0001065-0000001", ship_to__postal_code="94105")
    OrderLineFactory(order=order, sku=skus[0], quantity=2, external_id="L1")
    OrderLineFactory(order=order, sku=skus[1], quantity=1, external_id="L2")
    fulfillment.order_route(order_id=order.pk, actor="router")
    assert Shipment.objects.get(order=order).location == dc
    return order, dc, alt


def _assert_fits_with_one_h1_and_labelled_fields(page, path: str) -> None:
    """The open page is no wider than the viewport, has one h1 and a label (or aria-label) on every field."""
    assert page_width(page) <= VIEWPORT["width"], f"{path} is wider than the viewport ({page_width(page)} px)"
    assert page.locator("h1").count() == 1, f"{path} has {page.locator('h1').count()} h1"
    unlabeled = page.evaluate(
        """() => Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
            .map(el => el.name || el.id)"""
    )
    assert unlabeled == [], f"{path}: fields without a label: {unlabeled}"


def test_login_lands_on_the_dashboard_and_every_page_fits_1366_px(page, live_server, routed_order):
    order, _, _ = routed_order
    services.exception_case_open(kind=ExceptionKind.NO_NODE, title="no node for WB-1041", order_id=order.pk, actor="t")
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    for path in [
        "/",
        "/orders/",
        f"/orders/{order.pk}/",
        "/orders/exceptions/",
        "/fulfillment/shipments/",
        "/fulfillment/",
        "/channels/",
        "/inventory/",
    ]:
        page.goto(f"{live_server.url}{path}")
        _assert_fits_with_one_h1_and_labelled_fields(page, path)
        shot(page, "page" + path.replace("/", "_"))


def test_every_other_console_page_fits_1366_px_with_one_h1_and_labelled_fields(page, live_server, routed_order):
    # given an order with a shipment, an unmapped-SKU case and an account with a scorecard page
    order, _, _ = routed_order
    shipment = Shipment.objects.get(order=order)
    unmapped, _ = services.exception_case_open(
        kind=ExceptionKind.UNMAPPED_SKU,
        title="unmapped EB-1",
        order_id=order.pk,
        account_id=order.account_id,
        actor="t",
    )
    paths = [
        f"/fulfillment/shipments/{shipment.pk}/",
        "/fulfillment/simulator/",
        f"/channels/{order.account_id}/",
        "/channels/runs/",
        "/channels/inbound/",
        "/channels/outbox/",
        "/channels/reconciliation/",
        f"/channels/cases/{unmapped.pk}/map-sku/",
        "/inventory/skus/WB-1041/",
        "/inventory/inbound/",
        "/returns/",
        "/returns/scan/",
        "/returns/report/",
        "/scorecards/",
        f"/scorecards/{order.account_id}/",
        "/orders/?q=1065",
        "/orders/exceptions/?kind=unmapped_sku",
    ]
    for path in paths:
        # when each page opens at 1366x768
        response = page.goto(f"{live_server.url}{path}")
        # then it answers, fits the viewport, has one h1 and labels every field
        assert response.status < 400, f"{path} answered {response.status}"
        _assert_fits_with_one_h1_and_labelled_fields(page, path)
        shot(page, "page" + path.split("?")[0].replace("/", "_"))


def test_bulk_resolve_50_cases_from_the_queue(page, live_server):
    for i in range(50):
        services.exception_case_open(kind=ExceptionKind.OTHER, title=f"case {i}", dedupe_key=f"b:{i}", actor="t")
    page.goto(f"{live_server.url}/orders/exceptions/")
    # keyboard: j moves to the first row, x ticks it
    page.keyboard.press("j")
    page.keyboard.press("x")
    expect(page.locator(".bulk-bar .ticked")).to_have_text("1 ticked")
    page.get_by_label("Tick every row on this page").check()
    expect(page.locator(".bulk-bar .ticked")).to_have_text("50 ticked")
    page.get_by_label("Bulk action").select_option("resolve")
    page.get_by_label("Resolution note").first.fill("carrier outage over")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(".messages")).to_contain_text("resolve: 50 of 50 case(s) done")
    assert ExceptionCase.objects.filter(status=CaseStatus.RESOLVED, resolution_note="carrier outage over").count() == 50
    assert page_width(page) <= VIEWPORT["width"]


def test_select_all_matching_reaches_past_the_page(page, live_server):
    for i in range(55):
        services.exception_case_open(kind=ExceptionKind.NO_NODE, title=f"no node {i}", dedupe_key=f"m:{i}", actor="t")
    services.exception_case_open(kind=ExceptionKind.OTHER, title="another kind", dedupe_key="other", actor="t")
    page.goto(f"{live_server.url}/orders/exceptions/?kind=no_node")
    page.get_by_label("Tick every row on this page").check()
    page.get_by_role("button", name="Select all cases matching the filters").click()
    expect(page.locator(".bulk-bar .ticked")).to_have_text("all matching")
    page.get_by_label("Bulk action").select_option("acknowledge")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(".messages")).to_contain_text("acknowledge: 55 of 55 case(s) done")
    assert ExceptionCase.objects.filter(kind=ExceptionKind.OTHER, status=CaseStatus.OPEN).count() == 1


def test_map_an_unmapped_sku_from_its_case_and_see_the_orders_released(page, live_server):
    account = ChannelAccountFactory(kind="ebay", name="ebay-us")
    SkuFactory(code="WB-3003", name="Canvas tote")
    Listing.objects.create(account=account, channel_sku="EB-TOTE", sku=None)
    orders = []
    for _ in range(3):
        order = OrderFactory(account=account)
        OrderLineFactory(order=order, sku=None, channel_sku="EB-TOTE")
        services.hold_place(order=order.pk, kind=HoldKind.UNMAPPED_SKU, reason="unmapped", actor="sync")
        services.exception_case_open(
            kind=ExceptionKind.UNMAPPED_SKU,
            title=f"Order {order.external_id}: unmapped SKU EB-TOTE",
            order_id=order.pk,
            account_id=account.pk,
            actor="sync",
        )
        orders.append(order)
    page.goto(f"{live_server.url}/orders/exceptions/")
    expect(page.get_by_text("3 cases: unmapped sku, all for channel SKU EB-TOTE on ebay-us")).to_be_visible()
    page.get_by_role("link", name="Map SKU").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Map an unmapped SKU")
    expect(page.get_by_label("Channel SKU")).to_contain_text("EB-TOTE (3 orders held)")
    page.get_by_label("Waybill SKU (type to search by code or name)").fill("WB-3003")
    page.get_by_role("button", name="Map and release the held orders").click()
    expect(page.locator(".messages")).to_contain_text("3 order(s) released for routing")
    page.goto(f"{live_server.url}/orders/?on_hold=true")
    expect(page.get_by_text("No orders match these filters.")).to_be_visible()
    assert not Order.objects.filter(pk__in=[o.pk for o in orders], on_hold=True).exists()


def test_cancel_a_line_and_see_the_outbox_message(page, live_server, routed_order):
    order, _, _ = routed_order
    line = order.lines.get(external_id="L1")
    page.goto(f"{live_server.url}/orders/{order.pk}/")
    page.get_by_text("Cancel lines or the order").click()
    page.get_by_label("Units of WB-1041 to cancel").fill("1")
    page.get_by_label("Reason (sent to the channel)").fill("customer changed size")
    page.get_by_role("button", name="Cancel units").click()
    expect(page.locator(".messages")).to_contain_text("Cancelled 1 unit(s)")
    line.refresh_from_db()
    assert line.quantity_cancelled == 1
    message = OutboxMessage.objects.get(order=order, kind=OutboxKind.CANCELLATION)
    page.goto(f"{live_server.url}/channels/outbox/")
    row = page.locator("tr", has=page.get_by_role("link", name=str(message.pk), exact=True))
    expect(row).to_contain_text("Cancellation")
    expect(row).to_contain_text(order.external_id)
    shot(page, "outbox-after-cancel")


def test_reroute_an_order_to_a_named_node(page, live_server, routed_order):
    order, _, alt = routed_order
    page.goto(f"{live_server.url}/orders/{order.pk}/")
    page.get_by_text("Reroute or force a node").click()
    page.get_by_label("Node").select_option(label=f"ALT · {alt.name}")
    page.locator("form[action$='/reroute/'] textarea[name=reason]").fill("DC short on labour today")
    page.get_by_role("button", name="Reroute", exact=True).click()
    expect(page.locator(".messages")).to_contain_text("Rerouted: 1 shipment(s) released")
    expect(page.locator("table").nth(1)).to_contain_text("ALT")
    assert Shipment.objects.filter(order=order, location=alt, status="released").count() == 1


def test_one_fix_for_a_root_cause_group_reroutes_every_order_to_a_named_node(page, live_server, routed_order):
    # given three orders of WB-1041 that no node could ship, then stock of it at a new node
    order, _, _ = routed_order
    sku = order.lines.get(external_id="L1").sku
    stranded = []
    for i in range(3):
        other = OrderFactory(account=order.account, ship_to__postal_code="94105")
        OrderLineFactory(order=other, sku=sku, quantity=20, external_id=f"G{i}")
        fulfillment.order_route(order_id=other.pk, actor="router")
        stranded.append(other)
    cases = ExceptionCase.objects.filter(order__in=stranded).exclude(status=CaseStatus.RESOLVED)
    assert cases.count() == 3
    big = LocationFactory(code="BIG", postal_code="94110", cutoff_time=None)
    order.account.eligible_locations.add(big)
    inventory.stock_receive(sku=sku, location=big, quantity=100, actor="test:setup")
    page.goto(f"{live_server.url}/orders/exceptions/")
    # when the group's link is followed, every matching case selected and rerouted to BIG
    page.get_by_role("link", name=re.compile(r"^3 cases: .*, all for SKU WB-1041")).click()
    expect(page.locator("#case-results tbody tr")).to_have_count(3)
    page.wait_for_load_state("networkidle")  # the group's queue has settled: its bulk bar is the one to tick
    page.get_by_label("Tick every row on this page").check()
    page.get_by_role("button", name="Select all cases matching the filters").click()
    page.get_by_text("Fix their orders").click()
    page.get_by_label("Fix to apply").select_option("reroute")
    page.get_by_label("Reroute to node").select_option(label=f"BIG · {big.name}")
    page.get_by_label("Fix reason (a cancel's is sent to the channel)").fill("BIG received WB-1041")
    page.get_by_role("button", name="Fix ticked").click()
    # then the three are rerouted in one action and their cases resolved
    expect(page.locator(".messages")).to_contain_text("reroute: 3 of 3 case(s) done")
    assert Shipment.objects.filter(order__in=stranded, location=big, status="released").count() == 3
    assert not cases.exists()
    assert page_width(page) <= VIEWPORT["width"]


def test_search_a_partial_order_number(page, live_server):
    account = ChannelAccountFactory(kind="shopify", name="shop")
    OrderFactory(account=account, external_id="gid-5550001065", external_reference="#1065", customer_name="Ana Ruiz")
    OrderFactory(account=account, external_id="gid-5550002001", external_reference="#2001", customer_name="Bo Lin")
    page.goto(f"{live_server.url}/orders/")
    page.get_by_label("Search").fill("1065")
    page.get_by_role("button", name=re.compile("Filter")).click()
    expect(page.locator("#order-results")).to_contain_text("#1065")
    expect(page.locator("#order-results")).not_to_contain_text("#2001")
    expect(page.locator(".search-info")).to_contain_text("search")


def test_export_the_filtered_list_as_csv(page, live_server, tmp_path):
    account = ChannelAccountFactory(kind="walmart", name="walmart-us")
    held = [OrderFactory(account=account, on_hold=True) for _ in range(3)]
    OrderFactory(account=account, on_hold=False)
    page.goto(f"{live_server.url}/orders/?on_hold=true")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    path = tmp_path / "orders.csv"
    download.value.save_as(path)
    rows = list(csv.reader(path.open()))
    assert rows[0][:3] == ["id", "channel", "account"]
    assert sorted(int(r[0]) for r in rows[1:]) == sorted(o.pk for o in held)


def test_keyboard_shortcuts_assign_and_resolve_on_the_queue(page, live_server, ops_manager):
    first, _ = services.exception_case_open(
        kind=ExceptionKind.OTHER, title="kbd one", dedupe_key="k:1", actor="t", due_at=None
    )
    page.goto(f"{live_server.url}/orders/exceptions/")
    page.keyboard.press("j")
    expect(page.locator("tr.kbd-current")).to_have_count(1)
    page.keyboard.press("a")
    expect(page.locator(".messages")).to_contain_text("assign to me done")
    first.refresh_from_db()
    assert first.owner_id == ops_manager.pk
    page.keyboard.press("j")
    page.keyboard.press("r")
    note = page.locator("tr.kbd-current details.resolve input[name=note]")
    expect(note).to_be_focused()
    note.fill("handled from the keyboard")
    note.press("Enter")
    expect(page.locator(".messages")).to_contain_text("resolve done")
    first.refresh_from_db()
    assert first.status == CaseStatus.RESOLVED
