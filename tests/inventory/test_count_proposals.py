"""Reconciliation of nodes: a WMS snapshot's counts against Waybill's on-hand. Within the node's tolerance a
difference is applied at once; beyond it nothing moves, a proposal waits with an exception case listing the
ledger lines to check, and a person applies or rejects it. Every difference is one row, found once."""

from __future__ import annotations

import pytest

from inventory import services
from inventory.errors import InvalidQuantity
from inventory.models import CountProposalStatus, MovementReason, StockCountProposal, StockLevel, StockMovement
from orders.models import CaseStatus, ExceptionCase, ExceptionKind
from tests.factories import LocationFactory, SkuFactory

from .helpers import assert_stock_invariants

pytestmark = pytest.mark.django_db


def _on_hand() -> dict[str, int]:
    return dict(StockLevel.objects.values_list("sku__code", "on_hand"))


@pytest.fixture
def node(stock):
    node = LocationFactory(code="DAL", count_tolerance_units=2)
    for code, units in (("TEE", 10), ("MUG", 20), ("CAP", 5)):
        stock(SkuFactory(code=code), node, units)
    return node


def _snapshot(key: str, counts: dict[str, int]):
    rows = [{"sku": code, "location": "DAL", "on_hand": n} for code, n in counts.items()]
    return services.stock_snapshot_apply(rows=rows, idempotency_key=key, actor="wms:dallas", source="wms:dallas")


def test_a_miscount_beyond_the_tolerance_is_proposed_with_the_ledger_and_the_rest_applies(node):
    # when: the node counts TEE one short (within 2) and MUG eight short (beyond), CAP right
    result = _snapshot("count-1", {"TEE": 9, "MUG": 12, "CAP": 5})
    # then: TEE is applied, MUG is only proposed
    assert _on_hand() == {"TEE": 9, "MUG": 20, "CAP": 5}
    assert (result.changed, result.proposed) == (1, 1)
    rows = {p.sku.code: p for p in StockCountProposal.objects.select_related("sku")}
    assert set(rows) == {"TEE", "MUG"}
    tee, mug = rows["TEE"], rows["MUG"]
    assert (tee.counted, tee.on_hand, tee.delta, tee.status) == (9, 10, -1, CountProposalStatus.AUTO_APPLIED)
    assert tee.movement.reason == MovementReason.ADJUST and tee.movement.delta == -1
    assert (mug.counted, mug.on_hand, mug.delta, mug.status) == (12, 20, -8, CountProposalStatus.PROPOSED)
    case = mug.case
    assert case.kind == ExceptionKind.STOCK_COUNT and case.status == CaseStatus.OPEN
    assert "Ledger lines to check" in case.detail and "+20" in case.detail
    # when: the next count says the same: nothing new is found
    again = _snapshot("count-2", {"TEE": 9, "MUG": 12, "CAP": 5})
    assert (again.changed, again.proposed) == (0, 1)
    assert StockCountProposal.objects.count() == 2 and ExceptionCase.objects.count() == 1
    # when: a person applies it
    applied = services.stock_count_proposal_apply(proposal=mug.pk, actor="ops", note="recounted: 12 on the shelf")
    # then: one adjustment moves on-hand, the case is resolved, and a replayed decision changes nothing
    assert applied.status == CountProposalStatus.APPLIED and applied.movement.delta == -8
    assert _on_hand()["MUG"] == 12
    assert ExceptionCase.objects.get(pk=case.pk).status == CaseStatus.RESOLVED
    with pytest.raises(InvalidQuantity):
        services.stock_count_proposal_apply(proposal=mug.pk, actor="ops")
    assert StockMovement.objects.filter(reference=f"count:{mug.pk}").count() == 1
    # and a count that agrees finds nothing
    last = _snapshot("count-3", {"TEE": 9, "MUG": 12, "CAP": 5})
    assert (last.changed, last.proposed) == (0, 0) and StockCountProposal.objects.count() == 2
    assert_stock_invariants()


def test_a_rejected_count_moves_nothing_and_needs_a_note(node):
    _snapshot("count-1", {"MUG": 3})
    proposal = StockCountProposal.objects.get()
    with pytest.raises(InvalidQuantity):
        services.stock_count_proposal_reject(proposal=proposal, actor="ops", note=" ")
    rejected = services.stock_count_proposal_reject(proposal=proposal, actor="ops", note="a pallet was in receiving")
    assert rejected.status == CountProposalStatus.REJECTED and _on_hand()["MUG"] == 20
    assert rejected.case.status == CaseStatus.RESOLVED


def test_a_new_count_supersedes_the_waiting_one(node):
    _snapshot("count-1", {"MUG": 3})
    _snapshot("count-2", {"MUG": 30})
    old, new = StockCountProposal.objects.order_by("pk")
    assert old.status == CountProposalStatus.REJECTED and "count-2" in old.decision_note
    assert new.status == CountProposalStatus.PROPOSED and new.case_id == old.case_id


def test_a_node_without_a_tolerance_applies_every_count_and_records_it(stock):
    node = LocationFactory(code="DAL")
    stock(SkuFactory(code="TEE"), node, 10)
    _snapshot("count-1", {"TEE": 1})
    assert _on_hand() == {"TEE": 1}
    assert StockCountProposal.objects.get().status == CountProposalStatus.AUTO_APPLIED


def test_a_miscount_through_the_snapshot_api_is_found_once_and_a_retried_post_heals_nothing_twice(
    api_client, agent, node
):
    # given: the node's WMS counts MUG eight short (beyond the tolerance) and TEE one short (within it)
    api_client.force_authenticate(agent)
    body = {
        "idempotency_key": "dal-count-1",
        "source": "wms:dallas",
        "rows": [
            {"sku": "TEE", "location": "DAL", "on_hand": 9},
            {"sku": "MUG", "location": "DAL", "on_hand": 12},
            {"sku": "CAP", "location": "DAL", "on_hand": 5},
        ],
    }
    # when: it posts the snapshot, loses the answer and posts it again
    first = api_client.post("/api/v1/stock-levels/snapshot/", body, format="json")
    retried = api_client.post("/api/v1/stock-levels/snapshot/", body, format="json")
    # then: each difference is one row, found once: TEE applied by one movement, MUG waiting with one case
    assert first.status_code == 200, first.content
    assert (first.json()["changed"], first.json()["proposed"]) == (1, 1)
    assert retried.status_code == 200 and retried.json()["replayed"]
    assert _on_hand() == {"TEE": 9, "MUG": 20, "CAP": 5}
    assert dict(StockCountProposal.objects.values_list("sku__code", "status")) == {
        "TEE": CountProposalStatus.AUTO_APPLIED,
        "MUG": CountProposalStatus.PROPOSED,
    }
    assert StockMovement.objects.filter(reason=MovementReason.ADJUST).count() == 1
    assert ExceptionCase.objects.filter(kind=ExceptionKind.STOCK_COUNT, status=CaseStatus.OPEN).count() == 1
    # when: a person applies MUG's count and the next snapshot (a new key) counts the same
    services.stock_count_proposal_apply(proposal=StockCountProposal.objects.get(sku__code="MUG"), actor="ops")
    body["idempotency_key"] = "dal-count-2"
    second = api_client.post("/api/v1/stock-levels/snapshot/", body, format="json")
    # then: the second run finds nothing: no new row, no movement, no case
    assert second.status_code == 200 and (second.json()["changed"], second.json()["proposed"]) == (0, 0)
    assert StockCountProposal.objects.count() == 2
    assert StockMovement.objects.filter(reason=MovementReason.ADJUST).count() == 2
    assert ExceptionCase.objects.filter(status=CaseStatus.OPEN).count() == 0
    assert_stock_invariants()
