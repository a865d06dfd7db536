"""The channels console's lists (outbox, inbound events, sync runs) export as streamed CSV with the filters
the list shows, and the list links to its export."""

from __future__ import annotations

import csv
import io

import pytest
from django.utils import timezone

from channels.models import InboundEvent, InboundKind, InboundStatus, OutboxKind, OutboxMessage, OutboxStatus, SyncRun
from tests.factories import ChannelAccountFactory, OrderFactory

pytestmark = pytest.mark.django_db


def _csv(response) -> list[list[str]]:
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response.streaming
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def accounts(db):
    return ChannelAccountFactory(kind="shopify", name="shop-a"), ChannelAccountFactory(kind="ebay", name="ebay-b")


def test_outbox_export_keeps_the_status_and_account_filters(client, agent, accounts):
    # given parked and sent messages on two accounts
    shop, ebay = accounts
    order = OrderFactory(account=shop, external_id="SHOP-1")
    parked = OutboxMessage.objects.create(
        account=shop,
        kind=OutboxKind.CANCELLATION,
        dedupe_key="c:1",
        payload={},
        status=OutboxStatus.PARKED,
        order=order,
        last_error="=HYPERLINK(evil) refused: line already shipped",
    )
    OutboxMessage.objects.create(
        account=shop, kind=OutboxKind.INVENTORY, dedupe_key="i:1", payload={}, status="sent", sent_at=timezone.now()
    )
    OutboxMessage.objects.create(account=ebay, kind=OutboxKind.INVENTORY, dedupe_key="i:2", payload={}, status="parked")
    client.force_login(agent)
    # when the list filtered to shop-a's parked messages is shown and exported
    page = client.get("/channels/outbox/", {"status": "parked", "account": shop.pk}).content.decode()
    rows = _csv(client.get("/channels/outbox/export.csv", {"status": "parked", "account": shop.pk}))
    # then the page links to the export with its filters, and the CSV holds that one message
    assert f'href="/channels/outbox/export.csv?status=parked&amp;account={shop.pk}"' in page
    assert rows[0][:6] == ["id", "account", "kind", "dedupe_key", "order", "status"]
    assert [r[0] for r in rows[1:]] == [str(parked.pk)]
    assert rows[1][1:6] == ["shop-a", "cancellation", "c:1", "SHOP-1", "parked"]
    assert rows[1][-1].startswith("'=HYPERLINK")  # a formula is never run by a spreadsheet


def test_inbound_export_defaults_to_failed_events_like_the_list(client, agent, accounts):
    shop, _ = accounts
    failed = InboundEvent.objects.create(
        account=shop, kind=InboundKind.ORDER, dedupe_key="o:1", external_id="A1", payload={}, status="failed"
    )
    done = InboundEvent.objects.create(
        account=shop, kind=InboundKind.ORDER, dedupe_key="o:2", external_id="A2", payload={}, status="processed"
    )
    client.force_login(agent)
    by_default = _csv(client.get("/channels/inbound/export.csv"))
    assert [r[0] for r in by_default[1:]] == [str(failed.pk)]
    page = client.get("/channels/inbound/", {"status": InboundStatus.PROCESSED}).content.decode()
    assert 'href="/channels/inbound/export.csv?status=processed"' in page
    processed = _csv(client.get("/channels/inbound/export.csv", {"status": InboundStatus.PROCESSED}))
    assert [r[0] for r in processed[1:]] == [str(done.pk)] and processed[1][3] == "A2"


def test_sync_run_export_keeps_the_account_filter(client, agent, accounts):
    shop, ebay = accounts
    run = SyncRun.objects.create(
        account=shop, kind="poll", status="failed", error="HTTP 503", finished_at=timezone.now()
    )
    SyncRun.objects.create(account=ebay, kind="poll", status="succeeded", finished_at=timezone.now())
    client.force_login(agent)
    page = client.get("/channels/runs/", {"account": shop.pk}).content.decode()
    assert f'href="/channels/runs/export.csv?account={shop.pk}"' in page
    rows = _csv(client.get("/channels/runs/export.csv", {"account": shop.pk}))
    assert [r[0] for r in rows[1:]] == [str(run.pk)]
    assert rows[1][1:4] == ["shop-a", "poll", "failed"] and rows[1][-1] == "HTTP 503"


def test_exports_need_the_list_permission(client, accounts):
    from django.contrib.auth import get_user_model

    nobody = get_user_model().objects.create_user(username="nobody", password="x-very-long-pw-1")
    client.force_login(nobody)
    for path in ("/channels/outbox/export.csv", "/channels/inbound/export.csv", "/channels/runs/export.csv"):
        assert client.get(path).status_code == 403, path
