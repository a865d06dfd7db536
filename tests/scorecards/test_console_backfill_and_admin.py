"""The console around the numbers: "no data" on the page and the tiles (never 0%), the tiles on the console's
front page, the backfill's progress, an ops manager versioning a definition in the admin, and the
higher-is-better lines switching exactly at their thresholds in the SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from channels.models import ChannelKind
from scorecards.models import BackfillRun, MetricDefinition, MetricSnapshot
from scorecards.services import ScorecardError, scorecards_backfill, snapshots_recompute
from tests.factories import ChannelAccountFactory, LocationFactory
from tests.scorecards.history import OrderSpec, Scan, ShipmentSpec, one_late_of_forty, released, write

pytestmark = pytest.mark.django_db

AS_OF = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
TODAY = AS_OF.date()


def test_a_metric_without_orders_shows_no_data_on_the_page_and_the_tile(client, viewer):
    # given a Walmart account with no orders at all, recomputed
    walmart = ChannelAccountFactory(kind=ChannelKind.WALMART, name="walmart-empty")
    snapshots_recompute(account_ids=[walmart.pk])
    definitions = MetricDefinition.objects.filter(channel_kind="walmart", is_active=True).count()
    client.force_login(viewer)
    # when
    page = client.get(reverse("scorecards:account", args=[walmart.pk]))
    tiles = client.get(reverse("scorecards:tiles")).content.decode()
    # then every metric reads "no data", never 0% or an error
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("Waybill: <strong>no data</strong>") == definitions
    assert html.count('<span class="badge state-no_data">no data</span>') == definitions
    assert "Waybill: <strong>0.00%" not in html and "nodata" not in html
    assert tiles.count("<strong>no data</strong>") == definitions and "0.00%" not in tiles
    assert set(MetricSnapshot.objects.filter(account=walmart).values_list("state", flat=True)) == {"no_data"}


def test_the_console_front_page_places_a_scorecard_tile_per_account(client, viewer):
    # given two accounts with snapshots
    amazon = ChannelAccountFactory(kind=ChannelKind.AMAZON, name="amazon-front")
    walmart = ChannelAccountFactory(kind=ChannelKind.WALMART, name="walmart-front")
    snapshots_recompute()
    client.force_login(viewer)
    # when the dashboard (the console's home) loads
    home = client.get(reverse("dashboard")).content.decode()
    # then it fetches the tiles after itself, and the tiles name every account with a link to its page
    assert f'hx-get="{reverse("scorecards:tiles")}"' in home
    tiles = client.get(reverse("scorecards:tiles")).content.decode()
    for account in (amazon, walmart):
        assert f'href="{reverse("scorecards:account", args=[account.pk])}"' in tiles
        assert account.name in tiles


def test_the_backfill_records_its_progress_chunk_by_chunk_and_the_page_shows_it(client, manager):
    # given two accounts and a few orders
    amazon = ChannelAccountFactory(kind=ChannelKind.AMAZON, name="amazon-backfill")
    walmart = ChannelAccountFactory(kind=ChannelKind.WALMART, name="walmart-backfill")
    ship_by = AS_OF - timedelta(days=3)
    write(
        [
            OrderSpec(
                account=amazon,
                placed_at=ship_by - timedelta(days=1),
                ship_by=ship_by,
                confirmations=[("sent", ship_by + timedelta(hours=2))],
            )
        ],
        LocationFactory(),
    )
    seen: list[tuple[int, int]] = []
    # when 40 days are backfilled 15 at a time
    run = scorecards_backfill(
        actor="ops-lead",
        days=40,
        account_ids=[amazon.pk, walmart.pk],
        as_of=AS_OF,
        chunk_days=15,
        on_progress=lambda r: seen.append((r.days_done, r.snapshots)),
    )
    # then progress was saved after each chunk, and the run is done with every snapshot counted
    per_day = sum(
        MetricDefinition.objects.filter(channel_kind=kind, is_active=True).count() for kind in ("amazon", "walmart")
    )
    assert [done for done, _ in seen] == [15, 30, 40]
    assert [snaps for _, snaps in seen] == [15 * per_day, 30 * per_day, 40 * per_day]
    run.refresh_from_db()
    assert (run.status, run.days_done, run.days_total, run.started_by) == ("done", 40, 40, "ops-lead")
    assert run.first_day == TODAY - timedelta(days=39) and run.last_day == TODAY and run.finished_at
    assert MetricSnapshot.objects.count() == run.snapshots == 40 * per_day
    late = MetricSnapshot.objects.get(account=amazon, code="late_shipment_rate", day=TODAY)
    assert (late.numerator, late.denominator) == (1, 1)
    # and the page shows it
    client.force_login(manager)
    index = client.get(reverse("scorecards:index")).content.decode()
    assert '<progress value="40" max="40">100%</progress>' in index and "40 of 40 days" in index


def test_a_backfill_derives_the_facts_once_not_per_chunk(monkeypatch):
    # given an account with an order written just before the backfill (a fresh history)
    from scorecards import compute

    amazon = ChannelAccountFactory(kind=ChannelKind.AMAZON, name="amazon-facts-once")
    ship_by = AS_OF - timedelta(days=3)
    write([OrderSpec(account=amazon, placed_at=ship_by - timedelta(days=1), ship_by=ship_by)], LocationFactory())
    refreshes: list[bool] = []
    real = compute.facts_refresh
    monkeypatch.setattr(compute, "facts_refresh", lambda *, full=False: refreshes.append(full) or real(full=full))
    # when 40 days are backfilled 15 at a time
    scorecards_backfill(actor="ops-lead", days=40, account_ids=[amazon.pk], as_of=AS_OF, chunk_days=15)
    # then the facts were rebuilt once (a refresh per chunk re-read every just-written order as changed)
    assert refreshes == [True]
    assert MetricSnapshot.objects.filter(account=amazon, day=TODAY).exists()


def test_a_backfill_out_of_range_is_refused_with_a_message_and_nothing_runs(client, manager, viewer):
    with pytest.raises(ScorecardError, match="1 to 1098 days"):
        scorecards_backfill(actor="ops-lead", days=0)
    client.force_login(manager)
    response = client.post(reverse("scorecards:backfill"), {"days": "ninety"})
    assert response.status_code == 302
    assert any("1 to 1098 days" in str(m) for m in get_messages(response.wsgi_request))
    assert not BackfillRun.objects.exists()
    # a viewer may not start one
    client.force_login(viewer)
    assert client.post(reverse("scorecards:backfill"), {"days": "3"}).status_code == 403
    assert not BackfillRun.objects.exists()
    # a manager's valid request runs (Celery eager in tests) and records who asked
    client.force_login(manager)
    client.post(reverse("scorecards:backfill"), {"days": "3"})
    run = BackfillRun.objects.get()
    assert (run.status, run.days_done, run.started_by) == ("done", 3, "backfill:manager")


def test_an_ops_manager_versions_a_definition_in_the_admin(client, manager, viewer):
    # given the seeded LSR v1 and an ops manager with admin access
    manager.is_staff = True
    manager.save(update_fields=["is_staff"])
    v1 = MetricDefinition.objects.get(channel_kind="amazon", code="late_shipment_rate", version=1)
    client.force_login(manager)
    change = reverse("admin:scorecards_metricdefinition_change", args=[v1.pk])
    assert client.get(change).status_code == 200
    form = {
        "channel_kind": "amazon",
        "code": "late_shipment_rate",
        "name": "Late Shipment Rate (10 days)",
        "version": 2,
        "formula": "late_confirmation",
        "window_days": 10,
        "comparison": "lt",
        "threshold": "0.04",
        "seller_threshold": "0.02",
        "divergence_tolerance": "0.005",
        "is_active": "on",
        "effective_from": TODAY.isoformat(),
        "_saveasnew": "Save as new",
    }
    # when a warning line outside the threshold is tried, then refused with a message and nothing saved
    refused = client.post(change, {**form, "warning_threshold": "0.05"})
    assert refused.status_code == 200
    assert "for a lower-is-better metric the line must be at or below 0.04" in refused.content.decode()
    assert not MetricDefinition.objects.filter(code="late_shipment_rate", version=2).exists()
    # when saved as a new version, then v1 stands unchanged beside v2 and each day takes the one in force
    assert client.post(change, form).status_code == 302
    v2 = MetricDefinition.objects.get(channel_kind="amazon", code="late_shipment_rate", version=2)
    assert (v2.seller_threshold, v2.warning_threshold) == (Decimal("0.0200"), Decimal("0.0340"))
    v1.refresh_from_db()
    assert (v1.version, v1.seller_threshold, v1.warning_threshold) == (1, Decimal("0.0250"), Decimal("0.0340"))
    amazon = ChannelAccountFactory(kind=ChannelKind.AMAZON, name="amazon-versions")
    snapshots_recompute(account_ids=[amazon.pk], first_day=TODAY - timedelta(days=1), last_day=TODAY, as_of=AS_OF)
    versions = dict(
        MetricSnapshot.objects.filter(account=amazon, code="late_shipment_rate").values_list(
            "day", "definition__version"
        )
    )
    assert versions == {TODAY - timedelta(days=1): 1, TODAY: 2}
    # a viewer, even with admin access, may not change a definition
    viewer.is_staff = True
    viewer.save(update_fields=["is_staff"])
    client.force_login(viewer)
    assert client.post(change, form).status_code == 403


@pytest.mark.parametrize(
    ("scanned", "total", "comparison", "state"),
    [
        (19, 20, "gt", "breach"),  # 95.00% is not above 95%
        (19, 20, "gte", "warning"),  # 95.00% is at least 95%, below the 95.75% warning line
        (383, 400, "gte", "warning"),  # 95.75%: on the warning line, below the 98% seller line
        (49, 50, "gte", "ok"),  # 98.00%: on the seller line, above the warning line
        (195, 199, "gte", "warning"),  # 97.99%: below the seller line
        (20, 20, "gt", "ok"),
    ],
)
def test_higher_is_better_lines_switch_exactly_at_their_thresholds(scanned, total, comparison, state):
    # given valid tracking v2 in force today: threshold 95%, default warning 95.75%, seller line 98%
    amazon = ChannelAccountFactory(kind=ChannelKind.AMAZON, name="amazon-vtr")
    MetricDefinition.objects.create(
        channel_kind="amazon",
        code="valid_tracking_rate",
        name="VTR v2",
        version=2,
        formula="valid_tracking",
        window_days=30,
        comparison=comparison,
        threshold=Decimal("0.95"),
        seller_threshold=Decimal("0.98"),
        effective_from=TODAY,
    )
    confirmed = AS_OF - timedelta(hours=6)
    write(
        [
            OrderSpec(
                account=amazon,
                placed_at=confirmed - timedelta(days=1),
                ship_by=confirmed + timedelta(hours=1),
                confirmations=[("sent", confirmed)],
                shipments=[
                    ShipmentSpec(scans=[Scan("in_transit", confirmed + timedelta(hours=1))] if i < scanned else [])
                ],
            )
            for i in range(total)
        ],
        LocationFactory(),
    )
    # when
    snapshots_recompute(account_ids=[amazon.pk], first_day=TODAY, last_day=TODAY, as_of=AS_OF)
    # then the SQL's state is the rule's, on the line itself
    snap = MetricSnapshot.objects.get(account=amazon, code="valid_tracking_rate", day=TODAY)
    assert (snap.numerator, snap.denominator) == (scanned, total)
    assert snap.definition.version == 2 and snap.definition.warning_threshold == Decimal("0.9575")
    assert snap.state == state == snap.definition.state_for(snap.value)


def test_the_trend_places_each_day_where_it_falls_in_the_ninety(client, viewer):
    # given an account whose history starts 10 days ago
    amazon = ChannelAccountFactory(kind=ChannelKind.AMAZON, name="amazon-young")
    today = timezone.now().date()
    ship_by = timezone.now() - timedelta(days=2)
    write(
        [
            OrderSpec(
                account=amazon,
                placed_at=ship_by - timedelta(days=1),
                ship_by=ship_by,
                confirmations=[("sent", ship_by)],
            )
        ],
        LocationFactory(),
    )
    snapshots_recompute(account_ids=[amazon.pk], first_day=today - timedelta(days=9), last_day=today)
    client.force_login(viewer)
    # when
    page = client.get(reverse("scorecards:account", args=[amazon.pk])).content.decode()
    # then the chart spans the 90 days ending today, and the first point is not at the left edge
    assert f"{today - timedelta(days=89):%Y-%m-%d}" in page and f"{today:%Y-%m-%d}" in page
    chart = page.split('id="metric-late_shipment_rate_30d"', 1)[1].split("</svg>", 1)[0]
    points = chart.split('<polyline fill="none" stroke="#2c3e50" stroke-width="2" points="', 1)[1].split('"', 1)[0]
    xs = [float(p.split(",")[0]) for p in points.split()]
    assert xs and min(xs) > 28 + (560 - 56) * 79 / 89 - 0.1


def test_account_health_is_fetched_when_due_daily_and_an_hour_after_a_failure(amazon_sandbox, amazon_account):
    from scorecards.models import AccountHealthReport
    from scorecards.selectors import account_health_due
    from scorecards.tasks import account_health_fetch_task

    # given the sandbox-backed Amazon account never fetched, and other accounts in other states
    now = timezone.now()

    def amazon(name, *, status=None, hours_ago=0.0, enabled=True):
        account = ChannelAccountFactory(kind=ChannelKind.AMAZON, name=name, is_enabled=enabled)
        if status:
            AccountHealthReport.objects.create(
                account=account,
                report_type="GET_V2_SELLER_PERFORMANCE_REPORT",
                status=status,
                requested_at=now - timedelta(hours=hours_ago),
            )
        return account

    fresh = amazon("amazon-fresh", status="done", hours_ago=23)
    stale = amazon("amazon-stale", status="done", hours_ago=24.5)
    failed_now = amazon("amazon-failed-now", status="failed", hours_ago=0.5)
    failed_before = amazon("amazon-failed-before", status="failed", hours_ago=1.5)
    abandoned = amazon("amazon-abandoned", status="requested", hours_ago=2)
    amazon("amazon-off", enabled=False)
    ChannelAccountFactory(kind=ChannelKind.WALMART, name="walmart-never")
    # then the due ones are those never fetched, fetched a day ago, or failed (or abandoned) an hour ago
    due = {a.pk for a in account_health_due(now=now)}
    assert due == {amazon_account.pk, stale.pk, failed_before.pk, abandoned.pk}
    assert fresh.pk not in due and failed_now.pk not in due
    # when the beat's task runs for the sandbox account alone, it fetches it once; asked again, it does nothing
    for other in (stale, failed_before, abandoned):
        other.is_enabled = False
        other.save(update_fields=["is_enabled"])
    assert account_health_fetch_task() == 1
    report = AccountHealthReport.objects.filter(account=amazon_account).get()
    assert report.status == "done" and report.metrics.exists()
    assert account_health_fetch_task() == 0
    assert AccountHealthReport.objects.filter(account=amazon_account).count() == 1


def test_the_drilldown_shows_why_each_order_counts_on_the_page_and_in_the_csv(client, viewer):
    import csv
    import io

    # given an Amazon order confirmed one second after its ship-by and one never scanned
    amazon = ChannelAccountFactory(kind=ChannelKind.AMAZON, name="amazon-why")
    ship_by = (timezone.now() - timedelta(days=2)).replace(microsecond=0)
    late = OrderSpec(
        account=amazon,
        placed_at=ship_by - timedelta(days=1),
        ship_by=ship_by,
        confirmations=[("sent", ship_by + timedelta(seconds=1))],
        shipments=[ShipmentSpec(scans=[Scan("in_transit", ship_by + timedelta(hours=4))])],
    )
    unscanned = OrderSpec(
        account=amazon,
        placed_at=ship_by - timedelta(days=1),
        ship_by=ship_by,
        confirmations=[("sent", ship_by - timedelta(hours=1))],
        shipments=[ShipmentSpec(scans=[Scan("label_created", ship_by - timedelta(hours=2))])],
    )
    write([late, unscanned], LocationFactory())
    snapshots_recompute(account_ids=[amazon.pk])
    client.force_login(viewer)
    url = reverse("scorecards:metric-orders", args=[amazon.pk, "late_shipment_rate"])
    # when
    page = client.get(url).content.decode()
    rows = list(csv.DictReader(io.StringIO(client.get(url + "?format=csv").content.decode())))
    # then the late order shows its ship-by and the second after it when the channel accepted the confirmation
    assert f"{ship_by:%Y-%m-%d %H:%M:%S}" in page and f"{ship_by + timedelta(seconds=1):%Y-%m-%d %H:%M:%S}" in page
    assert [(int(r["order_id"]), r["counts_in_numerator"]) for r in rows] == [(late.order_id, "yes")]
    assert rows[0]["confirmation_accepted_at"] == (ship_by + timedelta(seconds=1)).isoformat()
    assert rows[0]["first_carrier_scan_at"] == (ship_by + timedelta(hours=4)).isoformat()
    # and valid tracking's misses show the order with no carrier scan (a label is not a scan)
    vtr = reverse("scorecards:metric-orders", args=[amazon.pk, "valid_tracking_rate"])
    missed = list(csv.DictReader(io.StringIO(client.get(vtr + "?format=csv").content.decode())))
    assert [(int(r["order_id"]), r["first_carrier_scan_at"]) for r in missed] == [(unscanned.order_id, "")]


def test_the_backfill_command_prints_its_progress(capsys):
    from django.core.management import call_command

    ChannelAccountFactory(kind=ChannelKind.TIKTOK, name="tiktok-cli")
    call_command("scorecards_backfill", "--days", "20")
    out = capsys.readouterr().out
    run = BackfillRun.objects.get()
    assert "15/20 days" in out and "20/20 days" in out and f"{run.snapshots} snapshots." in out
    assert (run.status, run.days_done, run.started_by) == ("done", 20, "manage:scorecards_backfill")


def test_the_at_risk_case_follows_its_orders_and_is_resolved_when_the_risk_passes():
    from channels.models import OutboxMessage
    from orders.models import ExceptionCase, Order
    from scorecards.projection import at_risk_cases_open

    # given an Amazon account at 1 late of 40 and two released orders due before their node's next cutoff
    amazon = ChannelAccountFactory(kind=ChannelKind.AMAZON, name="amazon-follow")
    node = LocationFactory(cutoff_time=None, timezone="UTC")
    amazon.eligible_locations.add(node)
    now, history = one_late_of_forty(amazon)
    first, second, third = (
        released(amazon, placed_at=now - timedelta(hours=5), ship_by=now + timedelta(hours=hours))
        for hours in (1, 2, 72)  # the third has days to spare
    )
    write([*history, first, second, third], node)
    snapshots_recompute(first_day=now.date(), last_day=now.date(), as_of=now)
    assert at_risk_cases_open(as_of=now) >= 1
    key = f"metric_warning:account={amazon.pk}:metric=late_shipment_rate"
    case = ExceptionCase.objects.get(dedupe_key=key)
    assert "if these 2 orders ship late" in case.title
    assert f"(order {third.order_id})" not in case.detail
    # when the third's ship-by moves before the cutoff, then the open case names it too (no second case)
    Order.objects.filter(pk=third.order_id).update(ship_by=now + timedelta(hours=3))
    at_risk_cases_open(as_of=now)
    case.refresh_from_db()
    assert ExceptionCase.objects.filter(dedupe_key=key).count() == 1
    assert "if these 3 orders ship late" in case.title and f"(order {third.order_id})" in case.detail
    # when all three are confirmed on time, then the case is resolved with the reason
    for n, spec in enumerate((first, second, third)):
        OutboxMessage.objects.create(
            account=amazon,
            kind="ship_confirmation",
            dedupe_key=f"on-time-{n}",
            payload={},
            status="sent",
            sent_at=now - timedelta(minutes=5),
            order_id=spec.order_id,
        )
    snapshots_recompute(first_day=now.date(), last_day=now.date(), as_of=now)
    assert at_risk_cases_open(as_of=now) == 0
    case.refresh_from_db()
    assert case.status == "resolved" and case.resolved_by == "scorecards"
    assert case.resolution_note.startswith("No longer at risk")


def test_ebays_twelve_month_definitions_are_seeded_inactive_and_count_a_year_once_turned_on():
    # given an eBay seller with a stock cancel 200 days ago and a clean order 10 days ago
    ebay = ChannelAccountFactory(kind=ChannelKind.EBAY, name="ebay-year")
    write(
        [
            OrderSpec(
                account=ebay,
                placed_at=AS_OF - timedelta(days=200),
                ship_by=None,
                status="cancelled",
                cancel_initiator="seller",
            ),
            OrderSpec(account=ebay, placed_at=AS_OF - timedelta(days=10), ship_by=None),
        ],
        LocationFactory(),
    )
    twelve = MetricDefinition.objects.get(channel_kind="ebay", code="transaction_defect_rate_12m")
    assert not twelve.is_active and twelve.window_days == 365 and "400 transactions" in twelve.notes
    snapshots_recompute(account_ids=[ebay.pk], first_day=TODAY, last_day=TODAY, as_of=AS_OF)
    assert not MetricSnapshot.objects.filter(code="transaction_defect_rate_12m").exists()
    # when an ops manager turns the 12-month version on
    twelve.is_active = True
    twelve.save(update_fields=["is_active"])
    snapshots_recompute(account_ids=[ebay.pk], first_day=TODAY, last_day=TODAY, as_of=AS_OF)
    # then it counts the year, and the 3-month version only its 90 days
    year = MetricSnapshot.objects.get(account=ebay, code="transaction_defect_rate_12m", day=TODAY)
    quarter = MetricSnapshot.objects.get(account=ebay, code="transaction_defect_rate", day=TODAY)
    assert (year.numerator, year.denominator, year.state) == (1, 2, "breach")
    assert (quarter.numerator, quarter.denominator, quarter.state) == (0, 1, "ok")
