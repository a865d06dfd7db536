"""The demo's simulated WMS cycle-counts its nodes over HTTP (the stock snapshot API, an integration token), now
and then miscounting one SKU, so the nodes' reconciliation has drift to show: a unit off is applied within the
node's tolerance, several wait for a person with a case."""

from __future__ import annotations

import pytest

from config.security.tokens import integration_token_create
from fulfillment import services
from fulfillment.warehouse_sim import SimConfig, WarehouseSimulator
from inventory import services as inventory
from inventory.models import CountProposalStatus, StockCountProposal, StockLevel, StockSnapshot
from orders.models import CaseStatus, ExceptionKind
from tests.factories import LocationFactory, SkuFactory
from tests.inventory.helpers import assert_stock_invariants


@pytest.mark.django_db(transaction=True)
def test_the_simulated_wms_posts_cycle_counts_with_a_miscount_now_and_then(live_server, django_user_model):
    # given: a node with a tolerance of 3 units, eight SKUs on its shelves, and the simulator's tokens
    node = LocationFactory(code="DAL", count_tolerance_units=3)
    for index in range(8):
        inventory.stock_receive(sku=SkuFactory(code=f"SKU-{index}"), location=node, quantity=20, actor="setup")
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "a long enough password")
    _, stock_key = integration_token_create(
        user_id=admin.pk, name="sim", scopes=["inventory:read", "inventory:write"], days=1, actor="test"
    )
    node_key = services.node_token_create(location=node, name="sim", actor="test")[1]
    config = SimConfig(
        base_url=live_server.url, count_every_seconds=60, stock_token=stock_key, miscount_rate=1.0, seed=3
    )
    sim = WarehouseSimulator(config, {"DAL": node_key})
    # when: the WMS ticks, then ticks again before the next count is due
    first = sim.tick(now=0.0)
    second = sim.tick(now=10.0)
    # then: one count of five SKUs posted, with one miscounted
    assert first.errors == [] and (first.counts, first.miscounts) == (1, 1)
    assert (second.counts, second.errors) == (0, [])
    snapshot = StockSnapshot.objects.get()
    assert snapshot.source == "wms:dal" and snapshot.row_count == 5
    # and the miscount is one row of the node's reconciliation, settled as the tolerance says
    proposal = StockCountProposal.objects.get()
    assert proposal.location == node and proposal.on_hand == 20 and abs(proposal.delta) in (1, 2, 6, 8)
    on_hand = StockLevel.objects.get(sku=proposal.sku, location=node).on_hand
    if abs(proposal.delta) <= 3:
        assert proposal.status == CountProposalStatus.AUTO_APPLIED and on_hand == proposal.counted
    else:
        assert proposal.status == CountProposalStatus.PROPOSED and on_hand == 20
        assert proposal.case.kind == ExceptionKind.STOCK_COUNT and proposal.case.status == CaseStatus.OPEN
    assert_stock_invariants()
    # when: the next count is due
    third = sim.tick(now=61.0)
    # then: it is posted too
    assert third.errors == [] and third.counts == 1 and StockSnapshot.objects.count() == 2


@pytest.mark.django_db
def test_the_warehouse_command_gives_the_counts_a_token_of_their_own_and_revokes_the_last_one(django_user_model):
    from config.security.models import IntegrationToken
    from fulfillment.management.commands.run_warehouse import SIMULATOR_NAME, Command

    # given: no superuser yet: no counts
    assert Command()._stock_token() == ""
    django_user_model.objects.create_superuser("root", "root@example.com", "a long enough password")
    # when: the simulator starts twice
    first, second = Command()._stock_token(), Command()._stock_token()
    # then: each start has its own key, scoped to inventory, and only the last one is live
    assert first and second and first != second
    tokens = IntegrationToken.objects.filter(name=SIMULATOR_NAME).order_by("pk")
    assert [t.revoked_at is None for t in tokens] == [False, True]
    assert tokens.last().scopes == ["inventory:read", "inventory:write"]


def test_the_carrier_scans_only_parcels_with_a_tracking_number():
    # given: the node's shipped shipments, one with a tracking number and one shipped without (in the
    # channel's own tools), served by a node API that records what the simulator posts
    import httpx

    posted: list[str] = []

    def node_api(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            shipped = {"kind": "ship", "status": "shipped", "lines": [], "ship_to": {}}
            return httpx.Response(
                200,
                json={
                    "results": [
                        {**shipped, "id": 1, "tracking_number": "1Z0001", "carrier": "ups"},
                        {**shipped, "id": 2, "tracking_number": "", "carrier": ""},
                    ]
                },
            )
        posted.append(request.content.decode())
        return httpx.Response(200, json={})

    client = httpx.Client(base_url="http://node.test", transport=httpx.MockTransport(node_api))
    sim = WarehouseSimulator(SimConfig(base_url="http://node.test", seed=3), {"DAL": "key"}, client=client)
    # when: the simulator sees them, then ticks a step later
    sim.tick(now=0.0)
    stats = sim.tick(now=1000.0)
    # then: one scan went out, for the parcel with a number, and nothing was refused
    assert stats.errors == [] and stats.scans == 1
    assert len(posted) == 1 and "1Z0001" in posted[0]
