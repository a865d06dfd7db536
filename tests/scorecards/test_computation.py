"""The heart of the scorecards: the SQL recompute matches a plain-Python computation over a generated order
history, metric by metric, day by day, order by order, for every channel, boundary cases included."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from channels.models import ChannelKind
from scorecards import compute, selectors
from scorecards.models import AccountHealthReport, MarketplaceMetric, MetricDefinition, MetricSnapshot
from scorecards.services import snapshots_recompute
from tests.factories import ChannelAccountFactory, LocationFactory
from tests.scorecards.history import (
    OrderSpec,
    Scan,
    ShipmentSpec,
    expected_counts,
    expected_state,
    random_history,
    ratio,
    write,
)

pytestmark = pytest.mark.django_db

AS_OF = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
TODAY = AS_OF.date()


@pytest.fixture
def accounts():
    return {
        kind: ChannelAccountFactory(kind=kind, name=f"{kind}-score")
        for kind in (ChannelKind.AMAZON, ChannelKind.WALMART, ChannelKind.SHOPIFY, ChannelKind.EBAY, ChannelKind.TIKTOK)
    }


def boundary_cases(accounts) -> dict[str, OrderSpec]:
    amazon, walmart, tiktok = accounts["amazon"], accounts["walmart"], accounts["tiktok"]
    ship_by = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)

    def shipped(account, sent_at, **kw) -> OrderSpec:
        scans = kw.pop("scans", [Scan("in_transit", sent_at + timedelta(hours=3))])
        return OrderSpec(
            account=account,
            placed_at=ship_by - timedelta(days=2),
            ship_by=ship_by,
            confirmations=[("sent", sent_at)],
            shipments=[ShipmentSpec(tracking_number="1ZB", scans=scans)],
            **kw,
        )

    return {
        # Amazon LSR: accepted one second after the ship-by is late; exactly at it is not. The node's own
        # ship time is irrelevant: only the channel's acceptance counts.
        "one_second_late": shipped(amazon, ship_by + timedelta(seconds=1)),
        "exactly_on_time": shipped(amazon, ship_by),
        # Sent to the channel but refused (failed), then accepted late: late.
        "accepted_after_failure": OrderSpec(
            account=amazon,
            placed_at=ship_by - timedelta(days=1),
            ship_by=ship_by,
            confirmations=[("failed", None), ("sent", ship_by + timedelta(hours=5))],
            shipments=[ShipmentSpec(scans=[Scan("in_transit", ship_by - timedelta(hours=1))])],
        ),
        "buyer_cancel": OrderSpec(
            account=amazon,
            placed_at=AS_OF - timedelta(days=2),
            ship_by=None,
            status="cancelled",
            cancel_initiator="buyer",
        ),
        "seller_cancel": OrderSpec(
            account=amazon,
            placed_at=AS_OF - timedelta(days=2),
            ship_by=None,
            status="cancelled",
            cancel_initiator="seller",
        ),
        # AFN: late, seller-cancelled-looking, never scanned: counts nowhere.
        "afn": OrderSpec(
            account=amazon,
            placed_at=AS_OF - timedelta(days=3),
            ship_by=ship_by,
            mfn=False,
            cancel_initiator="seller",
            confirmations=[("sent", ship_by + timedelta(days=1))],
            shipments=[ShipmentSpec(scans=[])],
        ),
        # A tracking number the carrier never scanned (label only): not valid tracking.
        "never_scanned": shipped(amazon, ship_by - timedelta(hours=2), scans=[Scan("label_created", ship_by)]),
        # Walmart on-time delivery uses the channel's estimated delivery date.
        "walmart_delivered_on_date": OrderSpec(
            account=walmart,
            placed_at=ship_by - timedelta(days=2),
            ship_by=ship_by,
            deliver_by=ship_by + timedelta(days=2),
            confirmations=[("sent", ship_by)],
            shipments=[
                ShipmentSpec(
                    delivered_at=ship_by + timedelta(days=2), status="delivered", scans=[Scan("in_transit", ship_by)]
                )
            ],
        ),
        "walmart_delivered_a_second_late": OrderSpec(
            account=walmart,
            placed_at=ship_by - timedelta(days=2),
            ship_by=ship_by,
            deliver_by=ship_by + timedelta(days=2),
            confirmations=[("sent", ship_by)],
            shipments=[
                ShipmentSpec(
                    delivered_at=ship_by + timedelta(days=2, seconds=1),
                    status="delivered",
                    scans=[Scan("in_transit", ship_by)],
                )
            ],
        ),
        # TikTok late dispatch: past the SLA with no scan at all is late; scanned a minute after is late.
        "tiktok_unscanned_past_sla": OrderSpec(
            account=tiktok,
            placed_at=ship_by - timedelta(days=1),
            ship_by=ship_by,
            status="released",
        ),
        "tiktok_scanned_late": shipped(tiktok, ship_by, scans=[Scan("in_transit", ship_by + timedelta(minutes=1))]),
    }


def _check_every_snapshot(orders, accounts, first_day, last_day, as_of) -> int:
    snaps = {(s.account_id, s.code, s.day): s for s in MetricSnapshot.objects.all()}
    checked = 0
    for account in accounts.values():
        day = first_day
        while day <= last_day:
            for definition in selectors.definitions_in_force(account.kind, day):
                num, den, _ = expected_counts(orders, account, definition.formula, day, definition.window_days, as_of)
                if definition.formula == "order_defect_report":
                    num, den = _odr_expected(account, day, den)
                snap = snaps[(account.pk, definition.code, day)]
                value = ratio(num, den)
                where = f"{account.kind} {definition.code} {day}"
                assert (snap.numerator, snap.denominator) == (num, den), where
                assert snap.value == value, where
                assert snap.definition_id == definition.pk, where
                state = expected_state(
                    definition.comparison,
                    definition.threshold,
                    definition.warning_threshold,
                    definition.seller_threshold,
                    value,
                )
                assert snap.state == state, where
                assert snap.window_end - snap.window_start == timedelta(days=definition.window_days)
                checked += 1
            day += timedelta(days=1)
    return checked


def _odr_expected(account, day, our_orders) -> tuple[int, int]:
    best = None
    for m in MarketplaceMetric.objects.filter(account=account, metric="orderDefectRate.mfn"):
        reported = m.reporting_to.astimezone(UTC).date()
        if (
            reported <= day
            and reported > day - timedelta(days=7)
            and (best is None or m.reporting_to > best.reporting_to)
        ):
            best = m
    if best is None:
        return 0, 0
    return best.numerator, our_orders


def _odr_report(account, reporting_to: datetime, defects: int) -> None:
    report = AccountHealthReport.objects.create(
        account=account, report_type="GET_V2_SELLER_PERFORMANCE_REPORT", requested_at=reporting_to, status="done"
    )
    MarketplaceMetric.objects.create(
        report=report,
        account=account,
        marketplace_id="ATVPDKIKX0DER",
        metric="orderDefectRate.mfn",
        reporting_from=reporting_to - timedelta(days=60),
        reporting_to=reporting_to,
        numerator=defects,
        denominator=100,
        rate=Decimal("0.01"),
    )


def test_sql_matches_plain_python_for_every_metric_account_and_day(accounts):
    # given a random history for five accounts plus the boundary cases, and an ODR report
    rng = random.Random(17)
    cases = boundary_cases(accounts)
    orders = random_history(rng, list(accounts.values()), AS_OF, per_account=140) + list(cases.values())
    write(orders, LocationFactory())
    _odr_report(accounts["amazon"], datetime(2026, 11, 15, 23, 59, tzinfo=UTC), defects=1)
    first_day = TODAY - timedelta(days=29)
    # when
    result = snapshots_recompute(first_day=first_day, last_day=TODAY, as_of=AS_OF)
    # then every snapshot matches the plain computation, and there is one per account, metric in force and day
    checked = _check_every_snapshot(orders, accounts, first_day, TODAY, AS_OF)
    assert result.snapshots == checked == MetricSnapshot.objects.count()
    assert checked == 30 * MetricDefinition.objects.filter(is_active=True).count()


def test_a_second_recompute_replaces_rather_than_adds(accounts):
    orders = random_history(random.Random(3), list(accounts.values()), AS_OF, per_account=30)
    write(orders, LocationFactory())
    snapshots_recompute(first_day=TODAY - timedelta(days=4), last_day=TODAY, as_of=AS_OF)
    count = MetricSnapshot.objects.count()
    snapshots_recompute(first_day=TODAY - timedelta(days=4), last_day=TODAY, as_of=AS_OF)
    assert MetricSnapshot.objects.count() == count
    _check_every_snapshot(orders, accounts, TODAY - timedelta(days=4), TODAY, AS_OF)


def test_boundary_cases_land_where_the_channel_rules_say(accounts):
    cases = boundary_cases(accounts)
    write(list(cases.values()), LocationFactory())
    snapshots_recompute(first_day=TODAY, last_day=TODAY, as_of=AS_OF)
    amazon = accounts["amazon"]
    lsr = MetricDefinition.objects.get(channel_kind="amazon", code="late_shipment_rate")

    # the drill-down names exactly the late ones: one second late and accepted after a failure
    late, _ = selectors.metric_orders(account=amazon, definition=lsr, day=TODAY, as_of=AS_OF)
    assert set(late.values_list("pk", flat=True)) == {
        cases["one_second_late"].order_id,
        cases["accepted_after_failure"].order_id,
    }
    snap = MetricSnapshot.objects.get(account=amazon, code="late_shipment_rate", day=TODAY)
    assert (snap.numerator, snap.denominator) == (2, 4)  # one_second_late, exactly, after_failure, never_scanned

    cancels = MetricSnapshot.objects.get(account=amazon, code="pre_fulfillment_cancel_rate", day=TODAY)
    assert cancels.numerator == 1  # the seller's, not the buyer's, not the AFN order's
    cancelled, _ = selectors.metric_orders(
        account=amazon,
        definition=MetricDefinition.objects.get(channel_kind="amazon", code="pre_fulfillment_cancel_rate"),
        day=TODAY,
        as_of=AS_OF,
    )
    assert list(cancelled.values_list("pk", flat=True)) == [cases["seller_cancel"].order_id]

    vtr_def = MetricDefinition.objects.get(channel_kind="amazon", code="valid_tracking_rate")
    missing, _ = selectors.metric_orders(account=amazon, definition=vtr_def, day=TODAY, as_of=AS_OF)
    assert list(missing.values_list("pk", flat=True)) == [cases["never_scanned"].order_id]

    walmart_otd = MetricSnapshot.objects.get(account=accounts["walmart"], code="on_time_delivery", day=TODAY)
    assert (walmart_otd.numerator, walmart_otd.denominator) == (1, 2)
    ldr = MetricSnapshot.objects.get(account=accounts["tiktok"], code="late_dispatch_rate", day=TODAY)
    assert (ldr.numerator, ldr.denominator) == (2, 2)


def test_drilldown_agrees_with_every_snapshot_numerator(accounts):
    orders = random_history(random.Random(5), list(accounts.values()), AS_OF, per_account=80)
    write(orders, LocationFactory())
    snapshots_recompute(first_day=TODAY, last_day=TODAY, as_of=AS_OF)
    for account in accounts.values():
        for definition in selectors.definitions_in_force(account.kind, TODAY):
            if definition.formula == "order_defect_report":
                continue
            snap = MetricSnapshot.objects.get(account=account, code=definition.code, day=TODAY)
            _, rows = selectors.metric_orders(
                account=account, definition=definition, day=TODAY, keep="all", as_of=AS_OF
            )
            num, den, members = expected_counts(
                orders, account, definition.formula, TODAY, definition.window_days, AS_OF
            )
            assert len(rows) == den == snap.denominator, definition.code
            assert sum(rows.values()) == num == snap.numerator, definition.code
            assert {o.order_id for o, _ in members} == set(rows)
            assert {o.order_id for o, in_num in members if in_num} == {pk for pk, n in rows.items() if n}


def test_the_drilldown_of_a_past_day_lists_the_orders_its_snapshot_counted(accounts):
    # given a history backfilled over the last 20 days as of AS_OF (later confirmations, scans and deliveries
    # than some of those days had seen)
    orders = random_history(random.Random(9), list(accounts.values()), AS_OF, per_account=80)
    write(orders, LocationFactory())
    first_day = TODAY - timedelta(days=19)
    snapshots_recompute(first_day=first_day, last_day=TODAY, as_of=AS_OF)
    # when the console asks for the orders behind each metric on each of those days (no "as of" given)
    for day in (first_day, TODAY - timedelta(days=9), TODAY - timedelta(days=3)):
        for account in accounts.values():
            for definition in selectors.definitions_in_force(account.kind, day):
                if definition.formula == "order_defect_report":
                    continue
                snap = MetricSnapshot.objects.get(account=account, code=definition.code, day=day)
                _, rows = selectors.metric_orders(account=account, definition=definition, day=day, keep="all")
                # then they are the snapshot's orders, as of the moment it was computed
                where = f"{account.kind} {definition.code} {day}"
                assert snap.computed_at == AS_OF, where
                assert (sum(rows.values()), len(rows)) == (snap.numerator, snap.denominator), where
                num, den, members = expected_counts(
                    orders, account, definition.formula, day, definition.window_days, AS_OF
                )
                assert (num, den) == (snap.numerator, snap.denominator), where
                assert {o.order_id for o, in_num in members if in_num} == {pk for pk, n in rows.items() if n}, where


def test_no_orders_in_the_window_is_no_data_never_zero(accounts):
    snapshots_recompute(first_day=TODAY, last_day=TODAY, as_of=AS_OF)
    snaps = MetricSnapshot.objects.filter(day=TODAY)
    assert snaps.count() == MetricDefinition.objects.filter(is_active=True).count()
    assert {(s.state, s.value, s.denominator) for s in snaps} == {("no_data", None, 0)}


@pytest.mark.parametrize(
    ("late", "total", "comparison", "state"),
    [
        (1, 25, "lt", "breach"),  # 4.00% is not below 4%
        (1, 25, "lte", "warning"),  # 4.00% is at most 4%, above the 3.4% line
        (1, 26, "lt", "warning"),  # 3.85%
        (1, 50, "lt", "ok"),  # 2.00%: not above the 2.0% seller line
        (1, 49, "lt", "warning"),  # 2.04%: above the 2.0% seller line
    ],
)
def test_warning_and_breach_switch_exactly_at_the_lines(accounts, late, total, comparison, state):
    # given a new version of LSR in force today: threshold 4%, warning 3.4%, seller line 2%
    MetricDefinition.objects.create(
        channel_kind="amazon",
        code="late_shipment_rate",
        name="LSR v2",
        version=2,
        formula="late_confirmation",
        window_days=10,
        comparison=comparison,
        threshold=Decimal("0.04"),
        seller_threshold=Decimal("0.02"),
        effective_from=TODAY,
    )
    ship_by = AS_OF - timedelta(days=1)
    orders = [
        OrderSpec(
            account=accounts["amazon"],
            placed_at=ship_by - timedelta(days=1),
            ship_by=ship_by,
            confirmations=[("sent", ship_by + timedelta(seconds=1 if i < late else 0))],
        )
        for i in range(total)
    ]
    write(orders, LocationFactory())
    snapshots_recompute(first_day=TODAY - timedelta(days=1), last_day=TODAY, as_of=AS_OF)
    snap = MetricSnapshot.objects.get(account=accounts["amazon"], code="late_shipment_rate", day=TODAY)
    assert snap.state == state
    assert snap.definition.version == 2
    # yesterday was still version 1's day
    assert (
        MetricSnapshot.objects.get(
            account=accounts["amazon"], code="late_shipment_rate", day=TODAY - timedelta(days=1)
        ).definition.version
        == 1
    )
    assert snap.definition.state_for(snap.value) == state


def test_the_python_state_rule_and_the_sql_agree_on_a_grid():
    definition = MetricDefinition(comparison="gt", threshold=Decimal("0.95"), warning_threshold=Decimal("0.9575"))
    assert definition.state_for(Decimal("0.95")) == "breach"
    assert definition.state_for(Decimal("0.9575")) == "ok"
    assert definition.state_for(Decimal("0.957499")) == "warning"
    assert definition.state_for(None) == "no_data"
    assert compute.utc_day(datetime(2026, 1, 1, 23, 59, tzinfo=UTC)) == date(2026, 1, 1)


def test_incremental_facts_follow_every_source_changed_since_the_last_refresh(accounts):
    # given a history already computed once
    rng = random.Random(11)
    orders = random_history(rng, list(accounts.values()), AS_OF, per_account=40)
    write(orders, LocationFactory())
    snapshots_recompute(first_day=TODAY - timedelta(days=2), last_day=TODAY, as_of=AS_OF)
    # when orders change afterwards through each source (saved rows bump their change time)
    from channels.models import OutboxMessage
    from fulfillment.models import Shipment, TrackingEvent
    from orders.models import Order
    from returns.models import Refund

    pending = next(o for o in orders if o.mfn and o.ship_by and not o.confirmations and o.status != "cancelled")
    sent_at = pending.ship_by + timedelta(seconds=1)
    OutboxMessage.objects.create(
        account=pending.account,
        kind="ship_confirmation",
        dedupe_key="late-one",
        payload={},
        status="sent",
        sent_at=sent_at,
        order_id=pending.order_id,
    )
    pending.confirmations.append(("sent", sent_at))
    cancelled = next(o for o in orders if o.mfn and o.status not in ("cancelled",) and not o.cancel_initiator)
    row = Order.objects.get(pk=cancelled.order_id)
    row.cancel_initiator = "seller"
    row.save(update_fields=["cancel_initiator", "updated_at"])
    cancelled.cancel_initiator = "seller"
    scanned = next(o for o in orders if o.mfn and o.shipments and len(o.shipments[0].scans) == 1)
    shipment = Shipment.objects.filter(order_id=scanned.order_id).order_by("pk").first()
    at = scanned.shipments[0].scans[0].at + timedelta(minutes=5)
    TrackingEvent.objects.create(shipment=shipment, status="in_transit", occurred_at=at, source="tms", dedupe_key="x")
    scanned.shipments[0].scans.append(Scan("in_transit", at))
    refunded = next(o for o in orders if o.mfn and not o.refunds and not o.returns)
    Refund.objects.create(order_id=refunded.order_id, amount=Decimal("1.00"), currency="USD", created_by="t")
    refunded.refunds.append(("pending", None))
    snapshots_recompute(first_day=TODAY - timedelta(days=2), last_day=TODAY, as_of=AS_OF)
    # then every snapshot still matches the plain computation
    _check_every_snapshot(orders, accounts, TODAY - timedelta(days=2), TODAY, AS_OF)
