"""The Amazon Account Health report over real HTTP, the at-risk projection, the screens, the CSV, the REST
endpoints, the admin's refusals and the fulfilment board's scorecard order."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import jsonschema
import pytest
from django.urls import reverse
from django.utils import timezone

from channels.models import ChannelKind
from channels.sandbox.contract import spec_path
from fulfillment.models import Shipment
from fulfillment.selectors import node_board
from orders.models import ExceptionCase, Order
from scorecards.models import MarketplaceMetric, MetricDefinition, MetricSnapshot
from scorecards.projection import at_risk_cases_open, at_risk_orders, projections
from scorecards.services import account_health_fetch, snapshots_recompute
from tests.factories import ChannelAccountFactory, LocationFactory
from tests.scorecards.history import OrderSpec, Scan, ShipmentSpec, one_late_of_forty, released, write

pytestmark = pytest.mark.django_db


def _amazon_history(sandbox, account, *, late: int, on_time: int) -> list[str]:
    """Orders confirmed at the sandbox (Amazon records the acceptance time), mirrored in Waybill."""
    now = timezone.now()
    made = sandbox.state.generate(late + on_time, status="unshipped")
    specs = []
    for i, order in enumerate(made):
        ship_by = now - timedelta(days=2, hours=i)
        order.ship_by = ship_by
        order.fulfilled_by = "MERCHANT"
        order.created_at = ship_by - timedelta(days=1)
        accepted = ship_by + timedelta(hours=3) if i < late else ship_by - timedelta(hours=3)
        order.packages.append(
            {
                "packageReferenceId": str(i + 1),
                "createdTime": accepted.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "trackingNumber": f"1ZAMZ{i}",
                "packageItems": [],
            }
        )
        specs.append(
            OrderSpec(
                account=account,
                placed_at=order.created_at,
                ship_by=ship_by,
                confirmations=[("sent", accepted)],
                shipments=[ShipmentSpec(tracking_number=f"1ZAMZ{i}", scans=[Scan("in_transit", accepted)])],
            )
        )
    write(specs, LocationFactory())
    return [o.order_id for o in made]


def test_account_health_report_through_the_connector_beside_ours(amazon_sandbox, amazon_account, client, manager):
    # given 10 confirmed orders, 2 accepted late, and defects only Amazon knows
    ids = _amazon_history(amazon_sandbox, amazon_account, late=2, on_time=8)
    httpx.post(
        f"{amazon_sandbox.base_url}/_sandbox/amazon/account_health",
        json={"defects": {ids[0]: ["claim"], ids[1]: ["chargeback", "negative_feedback"]}},
    ).raise_for_status()
    snapshots_recompute()
    # when
    report = account_health_fetch(account=amazon_account)
    # then the document is the published schema's, fetched through createReport/getReport/getReportDocument
    schema = json.loads(spec_path("amazon-account-health-report-schema.json").read_text())
    jsonschema.validate(report.document, schema)
    assert report.status == "done" and report.report_id
    lsr = MarketplaceMetric.objects.get(report=report, metric="lateShipmentRate")
    assert (lsr.numerator, lsr.denominator, lsr.rate) == (2, 10, Decimal("0.2"))
    assert lsr.ours_rate == Decimal("0.2") and not lsr.diverges
    odr = MarketplaceMetric.objects.get(report=report, metric="orderDefectRate.mfn")
    assert odr.numerator == 2 and odr.details == {"claims": 1, "chargebacks": 1, "negativeFeedback": 1}
    # ODR's numerator is Amazon's: our snapshot takes it, over our own orders
    today = MetricSnapshot.objects.get(account=amazon_account, code="order_defect_rate", day=timezone.now().date())
    assert (today.numerator, today.denominator) == (2, 10)
    # and the page shows both numbers
    client.force_login(manager)
    page = client.get(reverse("scorecards:account", args=[amazon_account.pk])).content.decode()
    assert "Amazon reports: <strong>20.00%</strong>" in page
    assert "Waybill: <strong>20.00%</strong>" in page
    assert "<svg" in page and "claims 1, chargebacks 1, negative feedback 1" in page


def test_a_divergence_beyond_the_tolerance_opens_a_case(amazon_sandbox, amazon_account):
    _amazon_history(amazon_sandbox, amazon_account, late=1, on_time=9)
    # Waybill saw one more late confirmation than Amazon recorded
    order = Order.objects.filter(account_id=amazon_account.pk).order_by("pk")[5]
    from channels.models import OutboxMessage

    OutboxMessage.objects.filter(order=order).update(sent_at=order.ship_by + timedelta(hours=1))
    snapshots_recompute()
    account_health_fetch(account=amazon_account)
    case = ExceptionCase.objects.get(
        dedupe_key=f"metric_divergence:account={amazon_account.pk}:metric=late_shipment_rate_30d"
    )
    assert "Waybill 20.00% but Amazon reports 10.00%" in case.title


def test_the_sandbox_refuses_a_report_request_off_the_model(amazon_sandbox, amazon_account):
    from channels.services import connector_for

    connector = connector_for(amazon_account)
    response = connector.call("POST", "/reports/2021-06-30/reports", json={"reportType": "X"})
    assert response.status_code == 400 and "marketplaceIds" in response.text
    # an unknown report type ends FATAL, and the connector says so
    state = {}
    with pytest.raises(Exception, match="FATAL"):
        connector.report_fetch("GET_NOT_A_REPORT", state=state)


def test_every_outbound_report_body_validates_against_the_spec(amazon_account):
    from channels.sandbox.contract import operation
    from channels.services import connector_for

    body = connector_for(amazon_account).create_report_body(
        "GET_V2_SELLER_PERFORMANCE_REPORT", data_start=datetime(2026, 11, 1, tzinfo=UTC)
    )
    op = operation("amazon-reports-2021-06-30.json", "POST", "/reports/2021-06-30/reports")
    assert op.body_violations(body) == []


# --- the at-risk projection ---------------------------------------------------------------------------


def test_the_projection_names_the_orders_that_decide_it():
    # given an Amazon account at 1 late of 40 (2.5%: not above the 2.5% seller line) and three orders not
    # shipped whose ship-by is before their node's next cutoff
    amazon = ChannelAccountFactory(kind=ChannelKind.AMAZON, name="amazon-risk")
    node = LocationFactory(cutoff_time=None, timezone="UTC")
    amazon.eligible_locations.add(node)
    now, history = one_late_of_forty(amazon)
    risky = [released(amazon, placed_at=now - timedelta(hours=5), ship_by=now + timedelta(hours=h)) for h in (-1, 1, 2)]
    safe = released(amazon, placed_at=now, ship_by=now + timedelta(days=3))
    write(history + risky + [safe], node)
    snapshots_recompute(first_day=now.date(), last_day=now.date(), as_of=now)
    # when
    found = at_risk_orders(as_of=now)
    lsr = next(p for p in projections(as_of=now) if p.definition.code == "late_shipment_rate")
    opened = at_risk_cases_open(as_of=now)
    # then the three (not the one with days to spare) decide it: 1/40 → 4/43
    assert [o.order_id for o in found[amazon.pk]] == [o.order_id for o in risky]
    assert (lsr.value, lsr.projected_value) == (Decimal("0.025"), Decimal("0.093023"))
    assert lsr.deciding == 1 and lsr.projected_state == "breach"
    assert opened >= 1
    case = ExceptionCase.objects.get(dedupe_key=f"metric_warning:account={amazon.pk}:metric=late_shipment_rate")
    assert case.kind == "metric_warning" and "if these 3 orders ship late, 2.50% → 9.30%" in case.title
    for o in risky:
        assert f"(order {o.order_id})" in case.detail
    assert f"(order {safe.order_id})" not in case.detail
    # the same projection again opens nothing new
    assert at_risk_cases_open(as_of=now) == 0


def test_the_board_puts_the_costliest_releasable_pick_first():
    small = ChannelAccountFactory(kind=ChannelKind.AMAZON, name="amazon-small")
    big = ChannelAccountFactory(kind=ChannelKind.WALMART, name="walmart-big")
    node = LocationFactory()
    now = timezone.now()
    big_order = OrderSpec(
        account=big,
        placed_at=now,
        ship_by=now + timedelta(hours=1),
        status="released",
        shipments=[ShipmentSpec(status="released", tracking_number="")],
    )
    small_order = OrderSpec(
        account=small,
        placed_at=now,
        ship_by=now + timedelta(hours=5),
        status="released",
        shipments=[ShipmentSpec(status="released", tracking_number="")],
    )
    write([big_order, small_order], node)
    snapshots_recompute(first_day=now.date(), last_day=now.date())
    released = node_board(location=node)["columns"][0].shipments
    # Amazon's two LSRs cost 100 points each with no history; Walmart has no lateness metric
    assert [s.order_id for s in released] == [small_order.order_id, big_order.order_id]
    assert released[0].scorecard_points == 200.0 and released[1].scorecard_points == 0.0
    assert Shipment.objects.count() == 2


# --- screens, CSV, REST, admin --------------------------------------------------------------------------


@pytest.fixture
def history():
    amazon = ChannelAccountFactory(kind=ChannelKind.AMAZON, name="amazon-screens")
    ship_by = timezone.now() - timedelta(days=1)
    specs = [
        OrderSpec(
            account=amazon,
            placed_at=ship_by - timedelta(days=1),
            ship_by=ship_by,
            confirmations=[("sent", ship_by + timedelta(hours=1 if i < 2 else -1))],
        )
        for i in range(10)
    ]
    write(specs, LocationFactory())
    snapshots_recompute()
    return amazon, specs


def test_pages_render_with_tiles_trends_and_drilldown(client, viewer, history):
    amazon, specs = history
    client.force_login(viewer)
    index = client.get(reverse("scorecards:index"))
    assert index.status_code == 200 and b"amazon-screens" in index.content and b"Revenue leakage" in index.content
    front = client.get(reverse("orders:list")).content.decode()
    assert f'hx-get="{reverse("scorecards:tiles")}"' in front
    tiles = client.get(reverse("scorecards:tiles")).content.decode()
    assert "scorecard-tiles" in tiles and "amazon-screens" in tiles and "20.00%" in tiles
    page = client.get(reverse("scorecards:account", args=[amazon.pk])).content.decode()
    assert page.count("<svg") == MetricDefinition.objects.filter(channel_kind="amazon", is_active=True).count()
    assert "Waybill: <strong>20.00%</strong>" in page  # 2 of 10 late
    drill = client.get(reverse("scorecards:metric-orders", args=[amazon.pk, "late_shipment_rate"]))
    assert drill.status_code == 200 and b"2 orders" in drill.content
    export = client.get(reverse("scorecards:metric-orders", args=[amazon.pk, "late_shipment_rate"]) + "?format=csv")
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    assert sorted(int(r["order_id"]) for r in rows) == sorted(s.order_id for s in specs[:2])
    assert {r["counts_in_numerator"] for r in rows} == {"yes"}
    # bad input is a clear 404, never a 500
    assert client.get(reverse("scorecards:metric-orders", args=[amazon.pk, "nope"])).status_code == 404
    assert client.get(reverse("scorecards:account", args=[amazon.pk]) + "?day=yesterday").status_code == 404


def test_rest_endpoints_and_schema(api_client, viewer, history):
    amazon, _ = history
    api = api_client
    api.force_authenticate(viewer)
    snaps = api.get("/api/v1/scorecards/snapshots/", {"account": amazon.pk, "code": "late_shipment_rate"}).json()
    assert snaps["results"][0]["value"] == "0.200000" and snaps["results"][0]["state"] == "breach"
    defs = api.get("/api/v1/scorecards/definitions/", {"channel_kind": "amazon"}).json()
    assert {d["code"] for d in defs["results"]} >= {"late_shipment_rate", "order_defect_rate"}
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    assert "/api/v1/scorecards/snapshots/" in schema and "/api/v1/scorecards/definitions/" in schema


def test_admin_refuses_impossible_thresholds_and_windows(client, admin_user):
    client.force_login(admin_user)
    url = reverse("admin:scorecards_metricdefinition_add")
    base = {
        "channel_kind": "amazon",
        "code": "late_shipment_rate",
        "name": "LSR",
        "version": 9,
        "formula": "late_confirmation",
        "window_days": 10,
        "comparison": "lt",
        "threshold": "0.04",
        "divergence_tolerance": "0.005",
        "is_active": "on",
        "effective_from": "2026-12-01",
    }
    for field, value, message in (
        ("threshold", "4", "a threshold is a ratio between 0 and 1"),
        ("window_days", "0", "impossible"),
        ("window_days", "400", "a window is 1 to 366 days"),
        ("seller_threshold", "0.05", "must be at or below 0.04"),
    ):
        response = client.post(url, {**base, field: value})
        assert response.status_code == 200, field
        assert message in response.content.decode(), field
    assert not MetricDefinition.objects.filter(version=9).exists()
    assert client.post(url, base).status_code == 302
    created = MetricDefinition.objects.get(version=9)
    assert created.warning_threshold == Decimal("0.0340")  # 15% inside by default
