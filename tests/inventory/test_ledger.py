from __future__ import annotations

import pytest

from inventory import services
from inventory.errors import IdempotencyConflict, InvalidQuantity, StockConflict
from inventory.models import MovementReason, StockBucket, StockLevel, StockMovement
from inventory.services import LineDemand
from tests.factories import LocationFactory

from .helpers import assert_stock_invariants

pytestmark = pytest.mark.django_db


def test_every_change_is_a_movement_and_on_hand_equals_the_ledger(sku, location):
    # given / when: receive, adjust, damage, restock, quarantine and back
    services.stock_receive(sku=sku, location=location, quantity=10, reference="PO-1", actor="wms")
    services.stock_adjust(sku=sku, location=location, delta=-2, reason="found broken seal", actor="agent")
    services.stock_damage(sku=sku, location=location, quantity=1, reason="crushed box", actor="wms")
    services.stock_restock(sku=sku, location=location, quantity=1, reference="RMA-1", actor="returns")
    services.stock_restock(sku=sku, location=location, quantity=1, sellable=False, actor="returns")
    services.stock_quarantine(sku=sku, location=location, quantity=2, reason="recall check", actor="qa")
    services.stock_quarantine_release(sku=sku, location=location, quantity=1, reason="cleared", actor="qa")
    # then
    level = StockLevel.objects.get(sku=sku, location=location)
    assert (level.on_hand, level.damaged, level.quarantine, level.receiving) == (7, 2, 1, 0)
    assert level.atp == 7  # damaged and quarantined units are never available
    assert_stock_invariants()
    adjustment = StockMovement.objects.get(reason=MovementReason.ADJUST)
    assert (adjustment.actor, adjustment.note, adjustment.delta, adjustment.balance_after) == (
        "agent",
        "found broken seal",
        -2,
        8,
    )


def test_receive_into_receiving_then_put_away(sku, location):
    services.stock_receive(sku=sku, location=location, quantity=4, bucket=StockBucket.RECEIVING, actor="wms")
    level = StockLevel.objects.get(sku=sku, location=location)
    assert (level.on_hand, level.receiving, level.atp) == (0, 4, 0)
    services.stock_putaway(sku=sku, location=location, quantity=4, actor="wms")
    level.refresh_from_db()
    assert (level.on_hand, level.receiving) == (4, 0)
    assert_stock_invariants()


def test_transfer_moves_units_between_nodes(sku, location):
    other = LocationFactory()
    services.stock_receive(sku=sku, location=location, quantity=5, actor="wms")
    out, into = services.stock_transfer(
        sku=sku, from_location=location, to_location=other, quantity=3, reference="TR-1", actor="agent"
    )
    assert (out.reason, out.delta, into.reason, into.delta) == (
        MovementReason.TRANSFER_OUT,
        -3,
        MovementReason.TRANSFER_IN,
        3,
    )
    assert dict(StockLevel.objects.filter(sku=sku).values_list("location_id", "on_hand")) == {
        location.pk: 2,
        other.pk: 3,
    }
    assert_stock_invariants()


def test_a_replayed_adjustment_changes_nothing(sku, location):
    # given an adjustment with a key
    services.stock_receive(sku=sku, location=location, quantity=5, actor="wms")
    first = services.stock_adjust(
        sku=sku, location=location, delta=3, reason="count", idempotency_key="adj-1", actor="agent"
    )
    # when replayed
    again = services.stock_adjust(
        sku=sku, location=location, delta=3, reason="count", idempotency_key="adj-1", actor="agent"
    )
    # then
    assert again.pk == first.pk
    assert StockLevel.objects.get(sku=sku).on_hand == 8
    assert StockMovement.objects.filter(reason=MovementReason.ADJUST).count() == 1
    # and the key on another SKU/location is refused
    with pytest.raises(IdempotencyConflict):
        services.stock_adjust(
            sku=sku, location=LocationFactory(), delta=3, reason="count", idempotency_key="adj-1", actor="agent"
        )


def test_stock_cannot_go_below_zero_or_below_reserved(sku, location, line_for):
    services.stock_receive(sku=sku, location=location, quantity=3, actor="wms")
    line = line_for(sku, quantity=2)
    services.stock_reserve(lines=[LineDemand(line.pk, sku.pk, {location.pk: 2})], actor="router")
    with pytest.raises(StockConflict, match="below the 2 reserved"):
        services.stock_adjust(sku=sku, location=location, delta=-2, reason="lost", actor="agent")
    with pytest.raises(StockConflict, match="below zero"):
        services.stock_quarantine_release(sku=sku, location=location, quantity=5, reason="x", actor="qa")
    with pytest.raises(InvalidQuantity):
        services.stock_adjust(sku=sku, location=location, delta=0, reason="nothing", actor="agent")
    with pytest.raises(InvalidQuantity, match="reason"):
        services.stock_adjust(sku=sku, location=location, delta=1, reason=" ", actor="agent")
    assert_stock_invariants()


def test_refurbished_returned_units_leave_the_refurbish_bucket_sellable_or_damaged(sku, location):
    # given 3 returned units inspected as refurbish
    services.stock_returns_apply(
        units=[services.ReturnedUnits(sku_id=sku.pk, location_id=location.pk, quantity=3, target="refurbish")],
        reference="RMA-7-1",
        actor="returns",
    )
    level = StockLevel.objects.get(sku=sku, location=location)
    assert (level.refurbish, level.on_hand, level.atp) == (3, 0, 0)
    # when 2 are repaired and 1 cannot be
    services.stock_refurbish_complete(
        sku=sku, location=location, quantity=2, reason="repaired", actor="bench", idempotency_key="rf-1"
    )
    services.stock_refurbish_complete(
        sku=sku, location=location, quantity=2, reason="repaired", actor="bench", idempotency_key="rf-1"
    )
    services.stock_refurbish_complete(
        sku=sku, location=location, quantity=1, reason="beyond repair", sellable=False, actor="bench"
    )
    # then 2 are sellable and available, 1 damaged, none left to refurbish; the ledger agrees
    level.refresh_from_db()
    assert (level.refurbish, level.on_hand, level.damaged, level.atp) == (0, 2, 1, 2)
    assert_stock_invariants()
    # and more than the bucket holds, or no reason, is refused
    with pytest.raises(StockConflict, match="below zero"):
        services.stock_refurbish_complete(sku=sku, location=location, quantity=1, reason="again", actor="bench")
    with pytest.raises(InvalidQuantity, match="reason"):
        services.stock_refurbish_complete(sku=sku, location=location, quantity=1, reason=" ", actor="bench")
    assert StockMovement.objects.filter(bucket=StockBucket.REFURBISH).count() == 3
