"""The stock grid and the receiving list export as streamed CSV with the filters the list shows."""

from __future__ import annotations

import csv
import io

import pytest

from inventory import services
from inventory.models import InboundStatus
from tests.factories import InboundShipmentFactory, LocationFactory, SkuFactory

pytestmark = pytest.mark.django_db


def _csv(response) -> list[list[str]]:
    assert response.status_code == 200 and response.streaming
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_stock_export_keeps_the_grid_filters_and_its_figures(client, agent):
    # given two SKUs at two nodes
    east, west = LocationFactory(code="EAST"), LocationFactory(code="WEST")
    tote, mug = SkuFactory(code="WB-TOTE"), SkuFactory(code="WB-MUG")
    for sku in (tote, mug):
        for node in (east, west):
            services.stock_receive(sku=sku, location=node, quantity=4, actor="test:setup")
    client.force_login(agent)
    # when the grid filtered to EAST is shown and exported
    page = client.get("/inventory/", {"location": "EAST"}).content.decode()
    rows = _csv(client.get("/inventory/export.csv", {"location": "EAST"}))
    # then the page links to the filtered export, and the CSV has EAST's rows with on hand and ATP
    assert 'href="/inventory/export.csv?location=EAST"' in page
    assert rows[0][:7] == ["sku", "name", "location", "on_hand", "reserved", "safety_stock", "atp"]
    assert sorted((r[0], r[2], r[3], r[6]) for r in rows[1:]) == [
        ("WB-MUG", "EAST", "4", "4"),
        ("WB-TOTE", "EAST", "4", "4"),
    ]


def test_stock_export_with_bad_filters_says_so_and_sends_no_file(client, agent):
    client.force_login(agent)
    response = client.get("/inventory/export.csv", {"availability": "bogus"}, follow=True)
    assert response.redirect_chain and "Check the filters before exporting" in response.content.decode()


def test_receiving_export_defaults_to_open_shipments_like_the_list(client, agent):
    open_po = InboundShipmentFactory(reference="PO-OPEN")
    InboundShipmentFactory(reference="PO-DONE", status=InboundStatus.RECEIVED)
    client.force_login(agent)
    by_default = _csv(client.get("/inventory/inbound/export.csv"))
    assert [r[1] for r in by_default[1:]] == ["PO-OPEN"] and by_default[1][0] == str(open_po.pk)
    received = _csv(client.get("/inventory/inbound/export.csv", {"status": InboundStatus.RECEIVED}))
    assert [r[1] for r in received[1:]] == ["PO-DONE"]
    assert (
        'href="/inventory/inbound/export.csv?status=received"'
        in client.get("/inventory/inbound/", {"status": InboundStatus.RECEIVED}).content.decode()
    )
