"""RMAs: creation limits, receiving by disposition, replays, and what the order and stock show after."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from config.kernel.errors import InvalidTransition
from inventory.models import MovementReason, StockLevel, StockMovement
from inventory.selectors import atp_by_sku_location
from orders.models import LineStatus, OrderEvent, OrderStatus
from returns import services
from returns.models import ReturnAuthorization, ReturnEvent, ReturnLine, ReturnReceipt, ReturnStatus, ReturnUnit
from returns.services import ReceiveItem, ReturnConflict, ReturnError, ReturnLineInput
from tests.factories import OrderLineFactory
from tests.inventory.helpers import assert_stock_invariants

from .helpers import node, shipped_order

pytestmark = pytest.mark.django_db

ACTOR = "test:returns"


def _rma(order, line, quantity=2, **kwargs):
    return services.rma_create(
        order_id=order.pk, lines=[ReturnLineInput(line.pk, quantity)], actor=ACTOR, reason="defective", **kwargs
    )


def test_a_return_above_the_shipped_quantity_is_refused_naming_the_line_and_nothing_is_written():
    # given a line of which 2 units shipped
    order, (line,) = shipped_order(units=2)
    # when 3 units are asked back
    with pytest.raises(ReturnConflict) as err:
        _rma(order, line, quantity=3)
    # then the message names the line and nothing was written
    assert line.external_id in str(err.value) and "only 2 can be returned" in str(err.value)
    assert not ReturnAuthorization.objects.exists() and not ReturnLine.objects.exists()
    assert not OrderEvent.objects.filter(order=order).exists()


def test_units_already_under_return_count_against_the_shipped_quantity():
    order, (line,) = shipped_order(units=2)
    _rma(order, line, quantity=1)
    _rma(order, line, quantity=1)
    with pytest.raises(ReturnConflict, match="only 0 can be returned"):
        _rma(order, line, quantity=1)
    assert ReturnAuthorization.objects.count() == 2


def test_the_database_refuses_return_lines_above_the_shipped_quantity_whatever_the_service_says():
    order, (line,) = shipped_order(units=2)
    rma = _rma(order, line, quantity=2)
    with pytest.raises(IntegrityError, match="returnline_exceeds_shipped"), transaction.atomic():
        ReturnLine.objects.filter(rma=rma).update(quantity=3)


def test_a_cancelled_line_cannot_be_returned():
    order, (_line,) = shipped_order(units=1)
    cancelled = OrderLineFactory(order=order, quantity=1, quantity_cancelled=1, status=LineStatus.CANCELLED)
    with pytest.raises(ReturnConflict, match="is cancelled"):
        services.rma_create(order_id=order.pk, lines=[ReturnLineInput(cancelled.pk, 1)], actor=ACTOR)
    assert not ReturnAuthorization.objects.exists()


@pytest.mark.parametrize("quantity", [0, -1, 10**12, "many", True])
def test_bad_quantities_are_refused_with_a_message(quantity):
    order, (line,) = shipped_order(units=2)
    with pytest.raises(ReturnError, match="quantity"):
        services.rma_create(order_id=order.pk, lines=[ReturnLineInput(line.pk, quantity)], actor=ACTOR)
    assert not ReturnAuthorization.objects.exists()


def test_receiving_restocks_the_unit_at_any_node_with_a_return_movement_on_the_ledger():
    # given an authorised return of 2 units, shipped from elsewhere
    order, (line,) = shipped_order(units=2)
    rma = _rma(order, line)
    store = node()
    # when both come back at a store, one restocked and one damaged
    result = services.rma_receive(
        rma_id=rma.pk,
        location_id=store.pk,
        items=[ReceiveItem(1, "restock", sku=line.sku.code), ReceiveItem(1, "damaged", sku=line.sku.code)],
        actor=ACTOR,
        idempotency_key="scan-1",
    )
    # then one unit is sellable, one is on hand in the damaged bucket and never available to promise
    level = StockLevel.objects.get(sku=line.sku, location=store)
    assert (level.on_hand, level.damaged, level.receiving) == (1, 1, 0)
    assert atp_by_sku_location(sku_ids=[line.sku_id], location_ids=[store.pk])[(line.sku_id, store.pk)] == 1
    reasons = set(StockMovement.objects.filter(sku=line.sku).values_list("reason", flat=True))
    assert {MovementReason.RETURN_RECEIVE, MovementReason.RETURN_RESTOCK} <= reasons
    assert_stock_invariants()
    assert sum(StockMovement.objects.filter(sku=line.sku, bucket="sellable").values_list("delta", flat=True)) == 1
    # and the RMA is inspected, the order line returned, the order returned
    rma.refresh_from_db()
    line.refresh_from_db()
    order.refresh_from_db()
    assert rma.status == ReturnStatus.INSPECTED and rma.return_location == store
    assert (line.quantity_returned, line.status) == (2, LineStatus.RETURNED)
    assert order.status == OrderStatus.RETURNED
    assert not result.replayed
    assert ReturnEvent.objects.filter(rma=rma, kind="received").count() == 1


def test_a_replayed_receipt_restocks_once():
    order, (line,) = shipped_order(units=2)
    rma = _rma(order, line)
    store = node()
    items = [ReceiveItem(1, "restock", sku=line.sku.code)]
    first = services.rma_receive(rma_id=rma.pk, location_id=store.pk, items=items, actor=ACTOR, idempotency_key="k1")
    again = services.rma_receive(rma_id=rma.pk, location_id=store.pk, items=items, actor=ACTOR, idempotency_key="k1")
    assert again.replayed and again.receipt.pk == first.receipt.pk
    assert StockLevel.objects.get(sku=line.sku, location=store).on_hand == 1
    assert ReturnReceipt.objects.count() == 1 and ReturnUnit.objects.count() == 1
    line.refresh_from_db()
    order.refresh_from_db()
    assert (line.quantity_returned, line.status) == (1, LineStatus.PARTIALLY_RETURNED)
    assert order.status == OrderStatus.PARTIALLY_RETURNED


def test_pending_units_wait_in_receiving_then_leave_it_by_their_inspected_disposition():
    order, (line,) = shipped_order(units=3)
    rma = _rma(order, line, quantity=3)
    dc = node()
    services.rma_receive(rma_id=rma.pk, location_id=dc.pk, items=[ReceiveItem(3, sku=line.sku.code)], actor=ACTOR)
    level = StockLevel.objects.get(sku=line.sku, location=dc)
    assert (level.receiving, level.on_hand) == (3, 0)
    assert atp_by_sku_location(sku_ids=[line.sku_id], location_ids=[dc.pk])[(line.sku_id, dc.pk)] == 0
    rma.refresh_from_db()
    assert rma.status == ReturnStatus.RECEIVED
    services.rma_inspect(
        rma_id=rma.pk,
        items=[
            services.InspectItem(1, "refurbish", sku=line.sku.code),
            services.InspectItem(1, "destroy", sku=line.sku.code),
            services.InspectItem(1, "restock", sku=line.sku.code),
        ],
        actor=ACTOR,
        idempotency_key="inspect-1",
    )
    level.refresh_from_db()
    assert (level.receiving, level.refurbish, level.on_hand, level.damaged) == (0, 1, 1, 0)
    assert_stock_invariants()
    rma.refresh_from_db()
    assert rma.status == ReturnStatus.INSPECTED
    with pytest.raises(ReturnConflict, match="await inspection"):
        services.rma_inspect(rma_id=rma.pk, items=[services.InspectItem(1, "restock", sku=line.sku.code)], actor=ACTOR)


def test_receiving_more_than_expected_or_an_unknown_sku_or_disposition_writes_nothing():
    order, (line,) = shipped_order(units=1)
    rma = _rma(order, line, quantity=1)
    store = node()
    cases = [
        ([ReceiveItem(2, "restock", sku=line.sku.code)], ReturnConflict, "still expected"),
        ([ReceiveItem(1, "restock", sku="NOPE-1")], ReturnError, "not on RMA"),
        ([ReceiveItem(1, "resell", sku=line.sku.code)], ReturnError, "does not exist"),
        ([ReceiveItem(0, "restock", sku=line.sku.code)], ReturnError, "at least 1"),
        ([ReceiveItem(10**12, "restock", sku=line.sku.code)], ReturnError, "implausibly large"),
    ]
    for items, error, text in cases:
        with pytest.raises(error, match=text):
            services.rma_receive(rma_id=rma.pk, location_id=store.pk, items=items, actor=ACTOR)
    assert not StockMovement.objects.exists() and not ReturnReceipt.objects.exists()
    line.refresh_from_db()
    assert line.quantity_returned == 0


def test_a_barcode_scan_finds_the_line():
    order, (line,) = shipped_order(units=1)
    line.sku.barcode = "0123456789012"
    line.sku.save()
    rma = _rma(order, line, quantity=1)
    services.rma_receive(
        rma_id=rma.pk, location_id=node().pk, items=[ReceiveItem(1, "restock", sku="0123456789012")], actor=ACTOR
    )
    assert ReturnLine.objects.get(rma=rma).quantity_received == 1


def test_the_lifecycle_refuses_illegal_moves_and_needs_reasons():
    order, (line,) = shipped_order(units=1)
    rma = _rma(order, line, quantity=1)
    services.rma_authorize(rma_id=rma.pk, actor=ACTOR)
    services.rma_in_transit(rma_id=rma.pk, actor=ACTOR, tracking_number="1Z999")
    with pytest.raises(InvalidTransition):
        services.rma_transition(rma_id=rma.pk, to_status="inspected", actor=ACTOR)
    with pytest.raises(ReturnError, match="needs a reason"):
        services.rma_close(rma_id=rma.pk, to_status="cancelled", actor=ACTOR, reason=" ")
    services.rma_close(rma_id=rma.pk, to_status="cancelled", actor=ACTOR, reason="buyer kept it")
    rma.refresh_from_db()
    assert rma.status == "cancelled" and rma.closed_at is not None
    # a cancelled RMA's units no longer count: the line can be returned again
    _rma(order, line, quantity=1)
    kinds = list(ReturnEvent.objects.filter(rma=rma).order_by("pk").values_list("to_status", flat=True))
    assert kinds == ["requested", "authorized", "in_transit", "cancelled"]


def test_the_guard_trigger_is_installed():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_trigger WHERE tgname = 'returns_returnline_guard'")
        assert cursor.fetchone()


def test_the_same_receipt_key_with_different_units_is_refused():
    order, (line,) = shipped_order(units=2)
    rma = _rma(order, line)
    store = node()
    services.rma_receive(
        rma_id=rma.pk,
        location_id=store.pk,
        items=[ReceiveItem(1, "restock", sku=line.sku.code)],
        actor=ACTOR,
        idempotency_key="same",
    )
    with pytest.raises(ReturnConflict, match="different receipt"):
        services.rma_receive(
            rma_id=rma.pk,
            location_id=store.pk,
            items=[ReceiveItem(1, "damaged", sku=line.sku.code)],
            actor=ACTOR,
            idempotency_key="same",
        )
    assert StockLevel.objects.get(sku=line.sku, location=store).damaged == 0


def test_every_connector_says_how_often_its_returns_may_be_read():
    from datetime import timedelta

    from channels.connectors import CONNECTORS, connector_class

    intervals = {kind: connector_class(kind).returns_read_interval for kind in CONNECTORS}
    assert intervals["amazon"] == timedelta(minutes=15)
    assert all(isinstance(value, timedelta) for value in intervals.values()) and len(intervals) == 5


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_two_return_lines_written_at_once_past_the_services_cannot_both_exceed_the_shipped_units():
    import threading

    import psycopg

    # given a line of which 2 units shipped, and two RMAs on it (no line yet)
    order, (line,) = shipped_order(units=2)
    first = services.rma_create(order_id=order.pk, lines=[ReturnLineInput(line.pk, 1)], actor=ACTOR)
    second = services.rma_create(order_id=order.pk, lines=[ReturnLineInput(line.pk, 1)], actor=ACTOR)
    ReturnLine.objects.all().delete()
    settings = connection.settings_dict
    dsn = {
        "dbname": settings["NAME"],
        "user": settings["USER"],
        "password": settings["PASSWORD"] or None,
        "host": settings["HOST"] or None,
        "port": settings["PORT"] or None,
    }
    insert = (
        f"INSERT INTO {ReturnLine._meta.db_table} (rma_id, order_line_id, quantity, quantity_received, "
        "quantity_inspected, disposition, reason, external_id, note) VALUES (%s, %s, 2, 0, 0, 'pending', '', '', '')"
    )
    outcome: dict[str, object] = {}
    # when one backend writes a line of 2 units and, before it commits, another writes a line of 2 more
    with psycopg.connect(**dsn) as a, psycopg.connect(**dsn) as b:
        a.execute(insert, [first.pk, line.pk])
        b_pid = b.info.backend_pid

        def write_b():
            try:
                with b.transaction():
                    b.execute(insert, [second.pk, line.pk])
                outcome["b"] = "committed"
            except psycopg.Error as exc:
                outcome["b"] = str(exc)

        writer = threading.Thread(target=write_b)
        writer.start()
        # (the second either finishes at once, unguarded, or waits for the first's lock)
        while writer.is_alive():
            waiting = a.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'", [b_pid]
            ).fetchone()
            if waiting:
                break
            writer.join(0.05)
        a.commit()
        writer.join(60)
    # then the second waited for the first, counted its units and was refused: 2 units under return, not 4
    assert "returnline_exceeds_shipped" in str(outcome.get("b")), outcome
    assert sum(ReturnLine.objects.filter(order_line=line).values_list("quantity", flat=True)) == 2
