from __future__ import annotations

import pytest

from inventory import services
from inventory.errors import SnapshotInvalid
from inventory.models import MovementReason, StockLevel, StockMovement, StockSnapshot
from inventory.services import LineDemand
from tests.factories import LocationFactory, SkuFactory

from .helpers import assert_stock_invariants

pytestmark = pytest.mark.django_db


def test_snapshot_counts_become_adjustments_and_a_replay_changes_nothing(stock):
    # given two SKUs, one stocked, one never seen at this node
    node = LocationFactory(code="DAL")
    tee = SkuFactory(code="TEE")
    SkuFactory(code="MUG")
    stock(tee, node, 10)
    rows = [{"sku": "TEE", "location": "DAL", "on_hand": 7}, {"sku": "MUG", "location": "DAL", "on_hand": 4}]
    # when applied
    result = services.stock_snapshot_apply(rows=rows, idempotency_key="wms-1", actor="wms:dallas")
    # then the counts are on hand and each difference is an adjustment movement
    assert not result.replayed
    assert [(r["sku"], r["before"], r["after"], r["delta"]) for r in result.rows] == [
        ("TEE", 10, 7, -3),
        ("MUG", 0, 4, 4),
    ]
    assert dict(StockLevel.objects.values_list("sku__code", "on_hand")) == {"TEE": 7, "MUG": 4}
    assert StockMovement.objects.filter(reason=MovementReason.ADJUST, reference="snapshot:wms-1").count() == 2
    # when stock moves on and the same snapshot is replayed
    services.stock_receive(sku=tee, location=node, quantity=5, actor="wms")
    replay = services.stock_snapshot_apply(rows=rows, idempotency_key="wms-1", actor="wms:dallas")
    # then nothing changed and the original result came back
    assert replay.replayed and replay.rows == result.rows and replay.snapshot_id == result.snapshot_id
    assert dict(StockLevel.objects.values_list("sku__code", "on_hand")) == {"TEE": 12, "MUG": 4}
    assert StockSnapshot.objects.count() == 1
    assert_stock_invariants()


def test_a_bad_snapshot_names_every_offending_row_and_applies_nothing(stock):
    # given
    node = LocationFactory(code="DAL")
    tee = SkuFactory(code="TEE")
    stock(tee, node, 10)
    rows = [
        {"sku": "TEE", "location": "DAL", "on_hand": 3},
        {"sku": "TEE", "location": "DAL", "on_hand": 4},  # duplicate
        {"sku": "NOPE", "location": "DAL", "on_hand": 1},  # unknown SKU
        {"sku": "TEE", "location": "MARS", "on_hand": 1},  # unknown location
        {"sku": "TEE", "location": "DAL", "on_hand": -2},  # negative
        {"sku": "TEE", "location": "DAL", "on_hand": "5"},  # malformed
        "TEE,DAL,5",  # not an object
    ]
    # when
    with pytest.raises(SnapshotInvalid) as caught:
        services.stock_snapshot_apply(rows=rows, idempotency_key="wms-bad", actor="wms:dallas")
    # then
    assert caught.value.http_status == 400
    reasons = {e["row"]: " ".join(e["errors"]) for e in caught.value.rows}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6]
    assert "duplicate of row 0" in reasons[1]
    assert "unknown SKU 'NOPE'" in reasons[2]
    assert "unknown location 'MARS'" in reasons[3]
    assert "negative" in reasons[4]
    assert "whole number" in reasons[5]
    assert StockLevel.objects.get(sku=tee).on_hand == 10
    assert not StockSnapshot.objects.exists()
    assert StockMovement.objects.filter(reason=MovementReason.ADJUST).count() == 0


def test_a_count_below_what_is_reserved_is_a_conflict(stock, line_for):
    node = LocationFactory(code="DAL")
    tee = SkuFactory(code="TEE")
    stock(tee, node, 10)
    line = line_for(tee, quantity=6)
    services.stock_reserve(lines=[LineDemand(line.pk, tee.pk, {node.pk: 6})], actor="router")
    with pytest.raises(SnapshotInvalid) as caught:
        services.stock_snapshot_apply(
            rows=[{"sku": "TEE", "location": "DAL", "on_hand": 5}], idempotency_key="wms-2", actor="wms"
        )
    assert caught.value.http_status == 409
    assert caught.value.rows[0]["row"] == 0
    assert StockLevel.objects.get(sku=tee).on_hand == 10
    assert not StockSnapshot.objects.exists()
