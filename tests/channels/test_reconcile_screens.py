"""The reconciliation screens: the overview of accounts and nodes, an account's page (runs with a live partial,
drift by kind, the trend chart, the drifts waiting for a person linked to their case), "Reconcile now" for a
manager only, and a node's counts with apply and reject."""

from __future__ import annotations

import pytest
from django.urls import reverse

from channels.models import Drift, DriftStatus, ReconcileRun
from inventory import services as inventory
from inventory.models import CountProposalStatus, StockCountProposal
from orders.models import Order
from tests.channels.e2e_helpers import admin
from tests.factories import LocationFactory, SkuFactory

pytestmark = pytest.mark.django_db


def test_a_manager_reconciles_an_account_and_sees_what_was_found_and_healed(
    client, manager, viewer, walmart_sandbox, walmart_account, skus
):
    # given: an order the sync never saw, at the channel
    (unseen,) = admin(walmart_sandbox, "/_sandbox/drift", {"unseen": {"count": 1, "hours_ago": 6}})["unseen"]
    client.force_login(viewer)
    page = client.get(reverse("channels:account-reconciliation", args=[walmart_account.pk]))
    assert page.status_code == 200 and "Not reconciled yet" in page.text and "Reconcile now" not in page.text
    assert client.post(reverse("channels:reconcile-now", args=[walmart_account.pk])).status_code == 403
    # when: a manager asks for a reconciliation (the task runs eagerly in tests)
    client.force_login(manager)
    answer = client.post(reverse("channels:reconcile-now", args=[walmart_account.pk]), {"scope": "orders"})
    assert answer.status_code == 302
    # then: the run and its drift are on the page, healed
    assert Order.objects.filter(external_id=unseen).exists()
    run = ReconcileRun.objects.get(account=walmart_account)
    assert run.trigger == "manual" and (run.found, run.healed) == (1, 1)
    page = client.get(reverse("channels:account-reconciliation", args=[walmart_account.pk]))
    assert "At the channel, never ingested" in page.text and unseen in page.text and "<svg" in page.text
    partial = client.get(
        reverse("channels:account-reconciliation", args=[walmart_account.pk]) + "?part=runs",
        headers={"HX-Request": "true"},
    )
    assert "<html" not in partial.text and f"<td>{run.pk}</td>" in partial.text
    overview = client.get(reverse("channels:reconciliation"))
    assert overview.status_code == 200 and "walmart-test" in overview.text
    # and garbage gets a clear 4xx
    bad = client.post(reverse("channels:reconcile-now", args=[walmart_account.pk]), {"scope": "everything"})
    assert bad.status_code == 400 and "Unknown reconciliation scope" in bad.text
    assert ReconcileRun.objects.count() == 1
    assert client.get(reverse("channels:account-reconciliation", args=[999999])).status_code == 404


def test_an_unhealed_drift_links_to_its_case(client, viewer, walmart_account):
    drift = Drift.objects.create(account=walmart_account, kind="missing_there", subject="PO-1", theirs={"error": "404"})
    from channels.reconcile import _unhealed

    _unhealed(walmart_account, drift, "the channel does not know this order")
    client.force_login(viewer)
    page = client.get(reverse("channels:account-reconciliation", args=[walmart_account.pk]))
    assert "PO-1" in page.text and "reconcile_drift" in page.text
    assert Drift.objects.get().status == DriftStatus.UNHEALED


def test_an_agent_applies_or_rejects_a_nodes_count(client, agent, viewer):
    node = LocationFactory(code="DAL", count_tolerance_units=0)
    for code in ("TEE", "MUG"):
        inventory.stock_receive(sku=SkuFactory(code=code), location=node, quantity=10, actor="setup")
    inventory.stock_snapshot_apply(
        rows=[{"sku": "TEE", "location": "DAL", "on_hand": 7}, {"sku": "MUG", "location": "DAL", "on_hand": 12}],
        idempotency_key="c1",
        actor="wms",
    )
    tee, mug = (StockCountProposal.objects.get(sku__code=code) for code in ("TEE", "MUG"))
    client.force_login(viewer)
    page = client.get(reverse("inventory:node-counts", args=["DAL"]))
    assert page.status_code == 200 and "2 waiting" in page.text and "Apply" not in page.text
    assert "DAL" in client.get(reverse("channels:reconciliation")).text
    client.force_login(agent)
    applied = client.post(reverse("inventory:node-count-decide", args=["DAL", tee.pk, "apply"]), {"note": "ok"})
    assert applied.status_code == 302
    refused = client.post(reverse("inventory:node-count-decide", args=["DAL", mug.pk, "reject"]), {"note": ""})
    assert refused.status_code == 409 and "needs a note" in refused.text
    rejected = client.post(reverse("inventory:node-count-decide", args=["DAL", mug.pk, "reject"]), {"note": "miscount"})
    assert rejected.status_code == 302
    assert dict(StockCountProposal.objects.values_list("sku__code", "status")) == {
        "TEE": CountProposalStatus.APPLIED,
        "MUG": CountProposalStatus.REJECTED,
    }


def test_a_nodes_page_shows_its_last_snapshot_drift_by_kind_the_trend_and_links_to_each_waiting_count(client, viewer):
    # given: a node with a tolerance of 2; one snapshot counts TEE one over (applied) and MUG five under
    node = LocationFactory(code="DAL", count_tolerance_units=2)
    for code in ("TEE", "MUG", "CAP"):
        inventory.stock_receive(sku=SkuFactory(code=code), location=node, quantity=10, actor="setup")
    inventory.stock_snapshot_apply(
        rows=[
            {"sku": "TEE", "location": "DAL", "on_hand": 11},
            {"sku": "MUG", "location": "DAL", "on_hand": 5},
            {"sku": "CAP", "location": "DAL", "on_hand": 10},
        ],
        idempotency_key="dal-count-7",
        actor="wms",
        source="wms:dallas",
    )
    mug = StockCountProposal.objects.get(sku__code="MUG")
    # when: the node's reconciliation page is read
    client.force_login(viewer)
    page = client.get(reverse("inventory:node-counts", args=["DAL"]))
    # then: the last snapshot with what it found at this node
    assert page.status_code == 200 and page.text.count("<h1") == 1
    assert "dal-count-7" in page.text and "wms:dallas" in page.text
    assert "3 count(s) at this node" in page.text and "2 differed from on-hand, 1 applied, 1 proposed" in page.text
    # the drift by kind and the trend chart
    by_kind = page.context["page"].by_kind
    assert {(r["label"], r["found"], r["auto"], r["waiting"], r["units"]) for r in by_kind} == {
        ("Counted more than on-hand", 1, 1, 0, 1),
        ("Counted fewer than on-hand", 1, 0, 1, -5),
    }
    assert (
        sum(p["found"] for p in page.context["page"].trend),
        sum(p["healed"] for p in page.context["page"].trend),
    ) == (
        2,
        1,
    )
    assert '<figure id="trend">' in page.text and "<svg" in page.text
    # and a link to the waiting count's row and to its case
    assert f'href="#proposal-{mug.pk}"' in page.text and f'id="proposal-{mug.pk}"' in page.text
    assert f"q={mug.case.pk}" in page.text


def test_a_node_never_counted_says_so(client, viewer):
    LocationFactory(code="RNO")
    client.force_login(viewer)
    page = client.get(reverse("inventory:node-counts", args=["RNO"]))
    assert page.status_code == 200 and "No snapshot has counted this node yet." in page.text
    assert "No count differed from on-hand." in page.text
