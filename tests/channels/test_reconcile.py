"""Reconciliation against the real sandboxes, on every channel: drift injected at the channel behind the
sync's back (a confirmation the channel lost after applying it, a marketplace-side cancel, units shipped in
the channel's own tools, an order the sync never saw, quantities edited at the channel) is found once and
healed once through the paths everything else uses; a second run finds nothing; a run interrupted half-way
and started again heals nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import F

import channels.reconcile as reconcile
from channels.availability import channel_availability_recompute
from channels.models import (
    ChannelAvailability,
    Drift,
    DriftKind,
    DriftStatus,
    Listing,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    SyncStatus,
)
from channels.outbox import inventory_push_plan
from channels.reconcile import reconcile_orders_run, reconcile_stock_run
from fulfillment.models import Shipment, ShipmentStatus
from inventory import services as inventory
from inventory.models import Reservation, Sku
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, Order, OrderStatus
from tests.channels.e2e_helpers import (
    admin,
    external_id,
    node_client,
    node_for,
    relay,
    route,
    ship_at_node,
    sync,
)
from tests.factories import LocationFactory

pytestmark = pytest.mark.django_db

KINDS = ["amazon", "walmart", "shopify", "ebay", "tiktok"]


@pytest.fixture(autouse=True)
def settled_at_once(settings):
    # The channels' reads lag their writes by minutes in production; the sandboxes' do not.
    settings.WAYBILL_RECONCILE_SETTLE_SECONDS = 0


@pytest.fixture(params=KINDS)
def channel(request):
    """(sandbox, account) of each channel."""
    return request.getfixturevalue(f"{request.param}_sandbox"), request.getfixturevalue(f"{request.param}_account")


def _drifts(account) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for drift in Drift.objects.filter(account=account).order_by("pk"):
        out.setdefault(drift.subject, []).append((drift.kind, drift.status))
    return out


def _an_hour_passes(sandbox, account) -> None:
    """The orders' last changes (acknowledgements, shipments) fall an hour behind the sync's cursor, on both
    sides: the channel's update times and what Waybill ingested of them."""
    with sandbox.state.lock:
        for order in sandbox.state.orders.values():
            order.updated_at -= timedelta(hours=1)
    Order.objects.filter(account_id=account.pk).update(source_updated_at=F("source_updated_at") - timedelta(hours=1))


def _orders_with_drift(sandbox, account, api_client):
    """Four orders synced and routed, then drift injected at the channel: A shipped here and confirmed, then
    lost by the channel; B cancelled by the marketplace; C shipped in the channel's tools; D placed hours ago,
    never seen by a poll. Returns the sandbox orders A, B, C and D's channel id."""
    # Placed two hours ago: once the cursor has moved on, a quiet change to them is outside every poll.
    placed = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    made = sandbox.state.generate(
        3, lines=2, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False, created_at=placed
    )
    node = node_for(account, made)
    sync(account)
    orders = [Order.objects.get(account_id=account.pk, external_id=external_id(account, m)) for m in made]
    shipments = [route(order) for order in orders]
    # A ships through Waybill: the channel applies the confirmation...
    answer = ship_at_node(node_client(api_client, node), shipments[0])
    assert answer.status_code == 200, answer.content
    relay(account)
    confirmation = OutboxMessage.objects.get(order=orders[0], kind=OutboxKind.SHIP_CONFIRMATION)
    assert confirmation.status == OutboxStatus.SENT, confirmation.last_error
    sync(account)
    _an_hour_passes(sandbox, account)
    # ...then drift at the channel, quietly.
    a, b, c = made
    done = admin(
        sandbox,
        "/_sandbox/drift",
        {
            "forget_shipments": [a.order_id],
            "cancel": [b.order_id],
            "ship": [c.order_id],
            "unseen": {"count": 1, "hours_ago": 6},
        },
    )
    (unseen,) = done["unseen"]
    d = sandbox.state.orders[unseen]
    # The sync does not see any of it.
    sync(account)
    assert not Order.objects.filter(account_id=account.pk, external_id=external_id(account, d)).exists()
    assert Order.objects.get(pk=orders[1].pk).status != OrderStatus.CANCELLED
    return orders, (a, b, c, d)


def test_order_drift_is_found_once_healed_once_and_a_second_run_finds_nothing(channel, skus, api_client):
    sandbox, account = channel
    orders, (a, b, c, d) = _orders_with_drift(sandbox, account, api_client)
    ids = [external_id(account, m) for m in (a, b, c, d)]
    # when: the account's orders are reconciled
    run = reconcile_orders_run(account_id=account.pk, trigger="manual")
    # then: each drift is one row, classified and healed
    assert run.status == SyncStatus.SUCCEEDED, (run.error, run.progress)
    assert _drifts(account) == {
        ids[0]: [(DriftKind.SHIPPED_HERE_NOT_THERE, DriftStatus.HEALED)],
        ids[1]: [(DriftKind.CANCELLED_THERE, DriftStatus.HEALED)],
        ids[2]: [(DriftKind.SHIPPED_THERE, DriftStatus.HEALED)],
        ids[3]: [(DriftKind.MISSING_HERE, DriftStatus.HEALED)],
    }
    assert (run.found, run.healed, run.unhealed) == (4, 4, 0)
    assert run.calls > 0 and run.compared >= 4
    # B: cancelled here, its reservations released
    b_order = Order.objects.get(pk=orders[1].pk)
    assert b_order.status == OrderStatus.CANCELLED
    assert not Reservation.objects.filter(order_line__order=b_order, status="active").exists()
    # and its shipment, released to the node but not picked, recalled
    assert Shipment.objects.get(order=b_order).status == ShipmentStatus.CANCELLED
    # C: shipped here through the shipped-upstream path
    assert Order.objects.get(pk=orders[2].pk).status == OrderStatus.SHIPPED
    # D: ingested
    assert Order.objects.filter(account_id=account.pk, external_id=ids[3]).exists()
    # A: the confirmation goes again through the outbox, once
    resent = OutboxMessage.objects.filter(order=orders[0], kind=OutboxKind.SHIP_CONFIRMATION).exclude(
        pk=Drift.objects.get(subject=ids[0]).outbox_message.pk
    )
    assert resent.count() == 1  # the original
    # when: a replayed run comes before the relay: the resend is in flight, nothing is found again
    again = reconcile_orders_run(account_id=account.pk)
    assert (again.found, again.healed) == (0, 0)
    relay(account)
    assert sandbox.state.orders[a.order_id].status == "shipped"
    # and the channel's log keeps the lost confirmation marked forgotten beside the resent one: a heal is not
    # a duplicate effect (the soak counts identical records)
    records = [record for record in sandbox.state.shipments if record["order_id"] == a.order_id]
    assert [bool(record.get("forgotten")) for record in records] == [True, False]
    # then: after the relay a further run finds nothing, and no row was added
    last = reconcile_orders_run(account_id=account.pk)
    assert (last.status, last.found, last.healed, last.unhealed) == (SyncStatus.SUCCEEDED, 0, 0, 0)
    assert Drift.objects.filter(account=account).count() == 4
    assert OutboxMessage.objects.filter(order=orders[0], kind=OutboxKind.SHIP_CONFIRMATION).count() == 2
    assert not ExceptionCase.objects.filter(kind=ExceptionKind.RECONCILE_DRIFT).exists()


@pytest.mark.parametrize("kind", ["amazon", "shopify"])
def test_a_run_interrupted_half_way_and_restarted_heals_nothing_twice(kind, request, skus, api_client, monkeypatch):
    sandbox, account = request.getfixturevalue(f"{kind}_sandbox"), request.getfixturevalue(f"{kind}_account")
    orders, (*_, d) = _orders_with_drift(sandbox, account, api_client)
    real = reconcile._heal_by_ingest

    # given: a run that dies after healing the first page's ingest heals (the resend is committed too)
    def crash_after(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("worker lost")

    monkeypatch.setattr(reconcile, "_heal_by_ingest", crash_after)
    first = reconcile_orders_run(account_id=account.pk)
    assert first.status in (SyncStatus.FAILED, SyncStatus.PARTIAL) and "worker lost" in first.error
    monkeypatch.setattr(reconcile, "_heal_by_ingest", real)
    # when: it starts again
    second = reconcile_orders_run(account_id=account.pk)
    # then: every drift has exactly one row, healed once, and no heal was applied twice
    assert second.status == SyncStatus.SUCCEEDED, second.error
    assert second.found == 0
    rows = _drifts(account)
    assert len(rows) == 4 and all(len(v) == 1 and v[0][1] == DriftStatus.HEALED for v in rows.values())
    assert OutboxMessage.objects.filter(order=orders[0], kind=OutboxKind.SHIP_CONFIRMATION).count() == 2
    b_order = Order.objects.get(pk=orders[1].pk)
    assert b_order.events.filter(to_status=OrderStatus.CANCELLED).count() == 1
    assert Order.objects.filter(account_id=account.pk, external_id=external_id(account, d)).count() == 1


def test_a_lost_confirmation_that_the_channel_loses_again_goes_to_a_person(
    amazon_sandbox, amazon_account, skus, api_client
):
    sandbox, account = amazon_sandbox, amazon_account
    orders, (a, *_rest) = _orders_with_drift(sandbox, account, api_client)
    reconcile_orders_run(account_id=account.pk)
    relay(account)
    sync(account)
    _an_hour_passes(sandbox, account)
    # given: the channel loses the resent confirmation too
    admin(sandbox, "/_sandbox/drift", {"forget_shipments": [a.order_id]})
    # when: the next run finds the same drift
    run = reconcile_orders_run(account_id=account.pk)
    # then: it is not resent a third time; a person gets a case
    assert (run.found, run.healed, run.unhealed) == (1, 0, 1)
    drift = Drift.objects.get(subject=a.order_id, status=DriftStatus.UNHEALED)
    assert drift.case.kind == ExceptionKind.RECONCILE_DRIFT and drift.case.status == CaseStatus.OPEN
    assert OutboxMessage.objects.filter(order=orders[0], kind=OutboxKind.SHIP_CONFIRMATION).count() == 2
    # and a run after that finds it still unsettled, without a second row or case
    later = reconcile_orders_run(account_id=account.pk)
    assert later.found == 0 and Drift.objects.filter(subject=a.order_id).count() == 2
    assert ExceptionCase.objects.filter(kind=ExceptionKind.RECONCILE_DRIFT).count() == 1


def test_bad_input_during_reconciliation_is_quarantined_and_heals_nothing(amazon_sandbox, amazon_account, skus):
    sandbox, account = amazon_sandbox, amazon_account
    # given: an order the sync never saw, served malformed, and a throttling storm
    admin(sandbox, "/_sandbox/faults", {"malformed_next": 1})
    done = admin(sandbox, "/_sandbox/drift", {"unseen": {"count": 1, "hours_ago": 6}})
    (bad,) = done["unseen"]
    admin(sandbox, "/_sandbox/faults", {"throttle_next": 3, "duplicate_next": 1})
    # when: the account is reconciled
    run = reconcile_orders_run(account_id=account.pk)
    # then: the malformed order is a failed inbound event with its case, as the sync leaves it; no drift row
    assert run.status == SyncStatus.PARTIAL and run.progress["quarantined"] == 1
    assert not Order.objects.filter(external_id=bad).exists()
    assert not Drift.objects.exists()
    assert ExceptionCase.objects.filter(kind=ExceptionKind.INBOUND_FAILED, account_id=account.pk).exists()
    assert account.inbound_events.get(external_id=bad).status == "failed"


# --- advertised stock ----------------------------------------------------------------------------


def _listed_with_stock(account, quantities: dict[str, int]):
    """Listings of known SKUs stocked at a node the account ships from; advertised and pushed once."""
    node = LocationFactory(code=f"N-{account.kind}")
    account.eligible_locations.add(node)
    for code, units in quantities.items():
        sku = Sku.objects.get(code=code)
        Listing.objects.create(account=account, sku=sku, channel_sku=code)
        inventory.stock_receive(sku=sku, location=node, quantity=units, actor="setup")
    channel_availability_recompute(sku_ids=list(Sku.objects.filter(code__in=quantities).values_list("pk", flat=True)))
    inventory_push_plan()
    relay(account)
    assert (
        dict(ChannelAvailability.objects.filter(account=account).values_list("sku__code", "last_pushed_quantity"))
        == quantities
    )
    return node


def _advertised(sandbox, account, code: str) -> int:
    if account.kind == "tiktok":
        from channels.sandbox.tiktok import product_id_for, sku_id_for

        return sandbox.state.inventory[f"{product_id_for(code)}:{sku_id_for(code)}"]
    return sandbox.state.inventory[code]


def test_stock_drift_is_read_back_and_healed_by_pushing_over_advertised_first(channel, skus):
    sandbox, account = channel
    _listed_with_stock(account, {"WB-1001": 12, "WB-1002": 30, "WB-1003": 5})
    # given: quantities edited at the channel: one above what Waybill would push, one below
    admin(sandbox, "/_sandbox/drift", {"stock": {"WB-1002": 7, "WB-1001": 40}})
    # when: stock is reconciled
    run = reconcile_stock_run(account_id=account.pk, trigger="manual")
    # then: two drifts, with their three values, healed by a push each, the over-advertised one first
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert (run.compared, run.found, run.healed) == (3, 2, 2)
    over = Drift.objects.get(kind=DriftKind.OVER_ADVERTISED)
    under = Drift.objects.get(kind=DriftKind.UNDER_ADVERTISED)
    assert (over.subject, over.theirs, over.ours) == (
        "WB-1001",
        {"advertised": 40},
        {"last_pushed": 12, "would_push": 12},
    )
    assert (under.subject, under.theirs, under.ours) == (
        "WB-1002",
        {"advertised": 7},
        {"last_pushed": 30, "would_push": 30},
    )
    assert over.status == under.status == DriftStatus.HEALED
    assert over.outbox_message.pk < under.outbox_message.pk
    # when: the pushes are relayed
    relay(account)
    # then: the channel advertises what Waybill would push, and a second run finds nothing
    assert _advertised(sandbox, account, "WB-1001") == 12 and _advertised(sandbox, account, "WB-1002") == 30
    again = reconcile_stock_run(account_id=account.pk)
    assert (again.compared, again.found, again.healed) == (3, 0, 0)
    assert Drift.objects.count() == 2
    # and every read was as the published model has it (the sandbox refuses and records anything else)
    assert sandbox.state.contract_violations == []


def test_a_write_the_channel_acknowledged_moments_ago_is_not_drift_yet(
    settings, amazon_sandbox, amazon_account, skus, api_client
):
    # given: a confirmation the channel acknowledged a minute ago, not showing in its reads yet (its lag)
    settings.WAYBILL_RECONCILE_SETTLE_SECONDS = 900
    _orders_with_drift(amazon_sandbox, amazon_account, api_client)
    # when: reconciled
    run = reconcile_orders_run(account_id=amazon_account.pk)
    # then: the lost confirmation is not resent yet; the channel's own changes are healed
    assert DriftKind.SHIPPED_HERE_NOT_THERE not in {d.kind for d in Drift.objects.all()}
    assert run.healed == 3
    # and once the window has passed it is
    settings.WAYBILL_RECONCILE_SETTLE_SECONDS = 0
    assert reconcile_orders_run(account_id=amazon_account.pk).healed == 1


def test_a_stock_run_before_the_relay_finds_its_pushes_in_flight(walmart_sandbox, walmart_account, skus):
    sandbox, account = walmart_sandbox, walmart_account
    _listed_with_stock(account, {"WB-1001": 12})
    admin(sandbox, "/_sandbox/drift", {"stock": {"WB-1001": 3}})
    assert reconcile_stock_run(account_id=account.pk).found == 1
    # when: a replayed run comes before the push is sent
    again = reconcile_stock_run(account_id=account.pk)
    # then: nothing found twice, nothing pushed twice
    assert again.found == 0
    assert OutboxMessage.objects.filter(kind=OutboxKind.INVENTORY, dedupe_key__startswith="reconcile:").count() == 1


@pytest.fixture
def other_session():
    """A second database session (another worker), closed at the end."""
    from django.db import connections

    other = connections.create_connection("default")
    yield other
    other.close()


def test_runs_refuse_to_overlap_and_never_wait_for_or_block_the_sync(
    walmart_sandbox, walmart_account, skus, other_session, settings
):
    settings.WAYBILL_RECONCILE_SYNC_YIELD_SECONDS = 0.5
    account = walmart_account
    an_hour_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    walmart_sandbox.state.generate(
        2, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False, created_at=an_hour_ago
    )
    with other_session.cursor() as cursor:
        # given: another worker reconciles the account's orders
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [reconcile.LOCK_KEYS["orders"], account.pk])
        # then: a second reconciliation of them does not start
        assert reconcile_orders_run(account_id=account.pk) is None
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [reconcile.LOCK_KEYS["orders"], account.pk])
        # given: a sync of the account is running in another worker
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [reconcile.SYNC_LOCK_NAMESPACE, account.pk])
        assert reconcile.sync_running(account.pk)
        # when: reconciliation runs meanwhile, it yields to the sync, then reads; the heals wait for the lock
        settings.WAYBILL_RECONCILE_SYNC_WAIT_SECONDS = 0.5
        run = reconcile_orders_run(account_id=account.pk)
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [reconcile.SYNC_LOCK_NAMESPACE, account.pk])
    # then: the orders it could not ingest under the sync's lock are deferred, not healed, and the run says so
    assert run.status == SyncStatus.PARTIAL and run.progress["deferred"] == 2
    assert run.progress["yielded_seconds"] >= 0.5 and run.progress["pages"] >= 1
    assert not Drift.objects.exists() and not Order.objects.exists()
    # and the next run, with the sync done, heals them
    assert reconcile_orders_run(account_id=account.pk).healed == 2


def test_a_negative_quantity_at_the_channel_is_an_oversell_case(shopify_sandbox, shopify_account, skus):
    # given: Shopify shows -3 available for a SKU Waybill advertises (the shop sold 3 more than it had)
    _listed_with_stock(shopify_account, {"WB-1001": 4, "WB-1002": 6})
    admin(shopify_sandbox, "/_sandbox/drift", {"stock": {"WB-1001": -3}})
    # when: stock is reconciled, twice
    reconcile_stock_run(account_id=shopify_account.pk, trigger="manual")
    reconcile_stock_run(account_id=shopify_account.pk, trigger="manual")
    # then: one oversell case for that account and SKU, and the push heals the quantity
    case = ExceptionCase.objects.get(kind=ExceptionKind.OVERSELL)
    assert (case.account_id, case.sku.code, case.status) == (shopify_account.pk, "WB-1001", CaseStatus.OPEN)
    assert "-3 available" in case.title
    relay(shopify_account)
    assert _advertised(shopify_sandbox, shopify_account, "WB-1001") == 4


def test_a_malformed_stock_answer_heals_nothing_from_it(walmart_sandbox, walmart_account, skus):
    sandbox, account = walmart_sandbox, walmart_account
    _listed_with_stock(account, {"WB-1001": 12, "WB-1002": 30})
    # given: the channel over-advertises one SKU and answers garbage for the other, in the same read
    admin(sandbox, "/_sandbox/drift", {"stock": {"WB-1001": 40}})
    with sandbox.state.lock:
        sandbox.state.inventory["WB-1002"] = "lots"
    # when: stock is reconciled
    run = reconcile_stock_run(account_id=account.pk)
    # then: the read that failed validation is skipped whole and the run says why: no drift row, no push
    assert run.status == SyncStatus.PARTIAL and run.progress["quarantined"] == 2
    assert "quantity.amount" in run.progress["last_bad_answer"]
    assert (run.compared, run.found, run.healed) == (0, 0, 0)
    assert not Drift.objects.exists()
    assert not OutboxMessage.objects.filter(kind=OutboxKind.INVENTORY, dedupe_key__startswith="reconcile:").exists()
    assert ChannelAvailability.objects.get(account=account, sku__code="WB-1001").last_pushed_quantity == 12
    # when: the channel answers properly again
    with sandbox.state.lock:
        sandbox.state.inventory["WB-1002"] = 30
    again = reconcile_stock_run(account_id=account.pk)
    # then: the drift is found and healed once
    assert again.status == SyncStatus.SUCCEEDED and (again.compared, again.found, again.healed) == (2, 1, 1)
    assert Drift.objects.get().subject == "WB-1001"


@pytest.mark.parametrize("kind", ["amazon", "walmart", "shopify", "tiktok"])  # eBay cancels whole orders only
def test_units_of_a_line_cancelled_at_the_channel_are_found_once_and_applied(kind, request, skus, api_client):
    sandbox, account = request.getfixturevalue(f"{kind}_sandbox"), request.getfixturevalue(f"{kind}_account")
    # given: an order of two lines synced and routed, then one unit of its first line cancelled by the
    # marketplace behind the sync's back
    placed = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    (made,) = sandbox.state.generate(
        1, lines=2, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False, created_at=placed
    )
    with sandbox.state.lock:
        first = made.lines[0]
        first.quantity = max(first.quantity, 2)
    node_for(account, [made])
    sync(account)
    order = Order.objects.get(account_id=account.pk, external_id=external_id(account, made))
    route(order)
    # later polls have found nothing new: the order's last change is well behind the sync's cursor
    type(account).objects.filter(pk=account.pk).update(sync_cursor=datetime.now(UTC))
    admin(sandbox, "/_sandbox/drift", {"cancel_lines": {made.order_id: {first.line_id: 1}}})
    sync(account)
    line = order.lines.get(channel_sku=first.sku)  # a sandbox order has one line per SKU
    assert line.quantity_cancelled == 0
    # when: reconciled twice
    run = reconcile_orders_run(account_id=account.pk)
    again = reconcile_orders_run(account_id=account.pk)
    # then: one drift, healed by applying the channel's line: one unit cancelled, the order still open
    assert (run.found, run.healed, run.unhealed) == (1, 1, 0), (run.error, run.progress)
    assert _drifts(account) == {order.external_id: [(DriftKind.CANCELLED_THERE, DriftStatus.HEALED)]}
    line.refresh_from_db()
    assert line.quantity_cancelled == 1
    # and the cancelled unit's reservation released
    active = Reservation.objects.filter(order_line=line, status="active").values_list("quantity", flat=True)
    assert sum(active) == line.quantity - 1
    assert Order.objects.get(pk=order.pk).status != OrderStatus.CANCELLED
    assert (again.found, again.healed) == (0, 0)
