"""The returns queue exports as streamed CSV with its filters (bucket, channel, search)."""

from __future__ import annotations

import csv
import io

import pytest

from returns import services
from returns.services import ReturnLineInput

from .helpers import shipped_order

pytestmark = pytest.mark.django_db


def _rma(**order_kwargs):
    order, (line,) = shipped_order(units=1, **order_kwargs)
    return services.rma_create(order_id=order.pk, lines=[ReturnLineInput(line.pk, 1)], actor="test:returns")


def test_returns_queue_export_keeps_the_channel_filter(client, agent):
    # given an open RMA on an eBay order and one on a Walmart order
    from tests.factories import ChannelAccountFactory

    ebay = _rma(account=ChannelAccountFactory(kind="ebay", name="ebay-us"))
    _rma(account=ChannelAccountFactory(kind="walmart", name="walmart-us"))
    client.force_login(agent)
    # when the queue filtered to eBay is shown and exported
    page = client.get("/returns/", {"bucket": "open", "channel": "ebay"}).content.decode()
    response = client.get("/returns/export.csv", {"bucket": "open", "channel": "ebay"})
    # then the page links to the filtered export and the CSV holds only the eBay RMA
    assert 'href="/returns/export.csv?bucket=open&amp;channel=ebay"' in page
    assert response.status_code == 200 and response.streaming
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:5] == ["rma", "order", "channel", "account", "status"]
    assert [r[0] for r in rows[1:]] == [ebay.rma_number]
    assert rows[1][2:4] == ["ebay", "ebay-us"]
