"""Buyers' PII purged after each account's retention period, with a legal hold, an audit event and a beat
job; no PII in the logs, and none in a database dump outside the order tables (Amazon DPP; ASVS 8.3)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
from datetime import timedelta
from importlib import import_module

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from channels.models import ChannelAccountEvent, InboundEvent
from channels.sync import sync_account_run
from channels.tasks import pii_purge_task
from config import embedded_pg
from config.celery import app as celery_app
from orders.models import Order, OrderEvent, OrderStatus, ShipToAddress
from tests.channels.conftest import (  # noqa: F401
    serve_sandbox,
    shopify_schema_built,
    skus,
    walmart_account,
    walmart_sandbox,
)
from tests.factories import ChannelAccountFactory, OrderFactory, OrderLineFactory

# Tables that hold a buyer's PII until the purge: the address, the order's search name, the raw payloads.
ORDER_TABLES = {"orders_shiptoaddress", "orders_order", "channels_inboundevent"}


def _done_long_ago(order: Order, days: int, status=OrderStatus.DELIVERED) -> None:
    OrderEvent.objects.create(order=order, kind="status", actor="test", from_status="shipped", to_status=status)
    when = timezone.now() - timedelta(days=days)
    Order.objects.filter(pk=order.pk).update(status=status, updated_at=when)
    OrderEvent.objects.filter(order=order).update(created_at=when)


@pytest.mark.django_db
def test_pii_is_purged_after_the_retention_period_and_the_order_still_counts():
    # given an account keeping PII 30 days, one order delivered 31 days ago, one 5 days ago, one still open
    account = ChannelAccountFactory(name="amazon-dpp", pii_retention_days=30)
    old, recent, open_order = (OrderFactory(account=account) for _ in range(3))
    OrderLineFactory(order=old)
    _done_long_ago(old, 31)
    _done_long_ago(recent, 5)
    OrderEvent.objects.create(
        order=old, kind="address_changed", actor="sync", data={"before": {"name": "Zoë Ōtani", "city": "SF"}}
    )
    # when the beat job runs
    result = pii_purge_task()
    # then only the old order's buyer is gone: replaced, not deleted
    assert result == {"purged": {"amazon-dpp": 1}, "held": []}
    address = ShipToAddress.objects.get(order__pk=old.pk)
    assert address.purged_at is not None
    assert (address.name, address.line1, address.postal_code, address.phone, address.email) == ("", "", "", "", "")
    assert address.country_code == "US" and address.region == "CA"
    assert Order.objects.get(pk=old.pk).customer_name == ""
    assert Order.objects.get(pk=old.pk).lines.count() == 1
    assert "Zoë" not in str(OrderEvent.objects.get(order=old, kind="address_changed").data)
    for kept in (recent, open_order):
        assert ShipToAddress.objects.get(order__pk=kept.pk).name == "Zoë Ōtani"
    # and the purge is audited without the purged values
    event = OrderEvent.objects.get(order=old, kind="pii_purged")
    assert event.actor == "privacy:retention" and "30 days" in event.reason and "Zoë" not in str(event.data)
    assert ChannelAccountEvent.objects.get(account=account, kind="pii_purged").data["orders"] == 1
    # and a second run changes nothing
    assert pii_purge_task() == {"purged": {}, "held": []}


@pytest.mark.django_db
def test_a_legal_hold_keeps_the_pii_and_a_shorter_period_applies_per_account():
    held = ChannelAccountFactory(name="walmart-held", pii_legal_hold=True)
    short = ChannelAccountFactory(name="shopify-short", pii_retention_days=3)
    held_order, short_order = OrderFactory(account=held), OrderFactory(account=short)
    _done_long_ago(held_order, 400)
    _done_long_ago(short_order, 4, status=OrderStatus.CANCELLED)
    result = pii_purge_task()
    assert result == {"purged": {"shopify-short": 1}, "held": ["walmart-held"]}
    assert ShipToAddress.objects.get(order__pk=held_order.pk).purged_at is None
    assert ShipToAddress.objects.get(order__pk=short_order.pk).purged_at is not None


@pytest.mark.django_db
def test_raw_payloads_that_never_became_an_order_are_emptied_after_the_retention_period():
    # given an account's unreadable webhook body and a failed order payload, received 31 days ago, a failed one
    # from yesterday, and one still waiting to be processed
    account = ChannelAccountFactory(name="shopify-raw", pii_retention_days=30)
    buyer = {"shipping_address": {"name": "Zoë Ōtani", "address1": "1 Market St"}}

    def event(key, status, days):
        made = InboundEvent.objects.create(
            account=account, kind="webhook", dedupe_key=key, external_id="", payload=buyer, status=status
        )
        InboundEvent.objects.filter(pk=made.pk).update(received_at=timezone.now() - timedelta(days=days))
        return made.pk

    unreadable = event("webhook:unreadable:1", "failed", 31)
    discarded = event("order-1", "discarded", 31)
    recent = event("order-2", "failed", 1)
    waiting = event("order-3", "received", 31)
    # when the beat job runs
    pii_purge_task()
    # then the old ones that no order's purge reaches are emptied, the others kept, and the run is audited
    payloads = dict(InboundEvent.objects.values_list("pk", "payload"))
    assert "Zoë" not in str(payloads[unreadable]) and "Zoë" not in str(payloads[discarded])
    assert payloads[recent] == buyer and payloads[waiting] == buyer
    audit = ChannelAccountEvent.objects.get(account=account, kind="pii_purged")
    assert audit.data["payloads_without_order"] == 2
    # and a second run changes nothing
    assert pii_purge_task() == {"purged": {}, "held": []}
    assert ChannelAccountEvent.objects.filter(account=account, kind="pii_purged").count() == 1


def test_the_purge_runs_on_the_beat_schedule():
    entries = {e["task"] for e in celery_app.conf.beat_schedule.values()}
    assert "channels.tasks.pii_purge_task" in entries
    assert "fulfillment.tasks.idempotency_records_prune_task" in entries


@pytest.mark.django_db
def test_the_apis_stored_answers_with_a_buyers_name_are_deleted_after_the_retry_window(api_client, admin_user):
    # given an override through the API with an Idempotency-Key: its answer copies the buyer's name
    from fulfillment.models import IdempotencyRecord
    from fulfillment.services import idempotency_records_prune

    order = OrderFactory()
    api_client.force_authenticate(admin_user)
    hold = {"kind": "manual", "reason": "buyer called"}
    placed = api_client.post(f"/api/v1/orders/{order.pk}/holds/", hold, format="json", HTTP_IDEMPOTENCY_KEY="h-1")
    assert placed.status_code == 201, placed.content
    assert "Zoë Ōtani" in placed.content.decode()
    # and it is stored encrypted
    record = IdempotencyRecord.objects.get(key="h-1")
    assert "Zoë" not in str(record.response_body) and set(record.response_body) == {"sealed"}
    # when the prune runs within the window, then 25 hours later
    assert idempotency_records_prune(keep_hours=24, actor="test") == 0
    replay = api_client.post(f"/api/v1/orders/{order.pk}/holds/", hold, format="json", HTTP_IDEMPOTENCY_KEY="h-1")
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json() == placed.json()
    later = timezone.now() + timedelta(hours=25)
    assert idempotency_records_prune(keep_hours=24, actor="test", now=later) == 1
    # then no stored answer holds the buyer's name any more, and the order and its hold are untouched
    assert not IdempotencyRecord.objects.exists()
    assert Order.objects.get(pk=order.pk).customer_name == "Zoë Ōtani"
    assert order.holds.count() == 1


@pytest.mark.django_db
def test_a_stored_answer_sealed_with_a_removed_key_gets_a_clear_conflict(api_client, admin_user, settings):
    from cryptography.fernet import Fernet

    from fulfillment.models import IdempotencyRecord

    # given an answer stored under a key that is then removed from FIELD_ENCRYPTION_KEY
    order = OrderFactory()
    api_client.force_authenticate(admin_user)
    hold = {"kind": "manual", "reason": "buyer called"}
    settings.FIELD_ENCRYPTION_KEY = [Fernet.generate_key().decode()]
    placed = api_client.post(f"/api/v1/orders/{order.pk}/holds/", hold, format="json", HTTP_IDEMPOTENCY_KEY="h-2")
    assert placed.status_code == 201, placed.content
    settings.FIELD_ENCRYPTION_KEY = [Fernet.generate_key().decode()]
    # when the request is replayed
    replay = api_client.post(f"/api/v1/orders/{order.pk}/holds/", hold, format="json", HTTP_IDEMPOTENCY_KEY="h-2")
    # then it is refused with a clear answer, and nothing is done twice or lost
    assert replay.status_code == 409 and replay.json()["code"] == "idempotency_answer_unreadable"
    assert order.holds.count() == 1 and IdempotencyRecord.objects.filter(key="h-2").count() == 1


def test_the_stored_answers_are_kept_at_least_an_hour():
    from fulfillment.errors import InvalidInput
    from fulfillment.services import idempotency_records_prune

    with pytest.raises(InvalidInput, match="at least one hour"):
        idempotency_records_prune(keep_hours=0, actor="test")


def _dump() -> dict[str, str]:
    """A data-only pg_dump of the test database: {table: its COPY rows}."""
    db = connection.settings_dict
    env = {**os.environ, "PGPASSWORD": db.get("PASSWORD") or ""}
    out = subprocess.run(
        [
            str(embedded_pg._bin("pg_dump")),
            "--data-only",
            "-h",
            db.get("HOST") or "127.0.0.1",
            "-p",
            str(db.get("PORT") or 5432),
            "-U",
            db.get("USER") or "postgres",
            db["NAME"],
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    tables: dict[str, list[str]] = {}
    current = None
    for line in out.stdout.splitlines():
        if line.startswith("COPY "):
            current = line.split()[1].split(".")[-1]
            tables[current] = []
        elif line == "\\.":
            current = None
        elif current is not None:
            tables[current].append(line)
    return {table: "\n".join(rows) for table, rows in tables.items()}


@pytest.mark.django_db(transaction=True)
def test_no_buyer_pii_in_the_logs_or_a_dump_outside_the_order_tables(walmart_sandbox, walmart_account, skus):  # noqa: F811
    # given a sync of real orders over HTTP, with every log line captured
    made = walmart_sandbox.state.generate(12, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    names = {order.buyer_name for order in made}
    streets = {order.address["line1"] for order in made}
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    try:
        run = sync_account_run(account_id=walmart_account.pk)
        assert run.status == "succeeded", run.error
        assert Order.objects.filter(account_id=walmart_account.pk).count() == 12
        # then no log line carries a buyer's name or street
        logged = stream.getvalue()
        assert logged
        assert [n for n in names | streets if n in logged] == []
        # and a dump holds them only in the order tables
        dump = _dump()
        leaks = {
            t: sorted(n for n in names | streets if n in rows) for t, rows in dump.items() if t not in ORDER_TABLES
        }
        assert {t: found for t, found in leaks.items() if found} == {}
        assert any(n in dump["orders_shiptoaddress"] for n in names)
        # when the orders are delivered and their retention period passes, and the beat job runs
        for order in Order.objects.filter(account_id=walmart_account.pk):
            _done_long_ago(order, walmart_account.pii_retention_days + 1)
        assert pii_purge_task()["purged"] == {walmart_account.name: 12}
        # then no table holds them any more, and the purge logged none of them either
        dump = _dump()
        assert {
            t: [n for n in names | streets if n in rows]
            for t, rows in dump.items()
            if any(n in rows for n in names | streets)
        } == {}
        assert [n for n in names | streets if n in stream.getvalue()] == []
        assert InboundEvent.objects.filter(account=walmart_account).exclude(payload__has_key="purged_at").count() == 0
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    assert settings.DATABASES["default"]["NAME"].startswith("test_")


def _found(needles: set[str], text: str) -> list[str]:
    """The needles that occur in ``text`` as whole values (``1 Market St`` is not found in ``21 Market St``)."""
    alternatives = "|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w@+.-])(?:{alternatives})(?![\w@.-])")
    return sorted({match.group() for match in pattern.finditer(text)})


@pytest.mark.django_db(transaction=True)
def test_no_demo_buyer_pii_in_the_logs_or_a_dump_outside_the_order_tables_after_a_demo_run(
    serve_sandbox,  # noqa: F811
    shopify_schema_built,  # noqa: F811
    live_server,
    settings,
):
    """What `make demo` does to the data, in-process and over HTTP: the demo data and its history, the five
    sandboxes with the demo orders planted, a sync of every account, the simulated warehouse shipping through the
    node API and the carrier's tracking webhook, the outbox relayed to every channel, a returns read, a
    scorecards refresh and a reconciliation of each account."""
    from channels.management.commands.run_sandboxes import Command as RunSandboxes
    from channels.management.commands.seed_demo import plant_demo_orders
    from channels.models import ChannelAccount, OutboxMessage
    from channels.outbox import outbox_relay
    from channels.reconcile import reconcile_account
    from fulfillment.models import Carrier, Shipment
    from fulfillment.services import node_token_create
    from fulfillment.tasks import route_releasable_task
    from fulfillment.warehouse_sim import SimConfig, WarehouseSimulator
    from inventory.models import Location
    from returns.models import ReturnAuthorization
    from returns.services.channel import returns_sync_account
    from scorecards.services import scorecards_refresh
    from tests.channels.test_seed_demo import _demo_sandbox

    settings.TRACKING_WEBHOOK_SECRET = "demo-tracking-secret"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    try:
        # given: the demo data and its history, and its five sandboxes served with the demo orders planted,
        # some orders of their own and the buyers' first returns, as run_sandboxes starts them
        for code, name, template, channel_codes in import_module("fulfillment.migrations.0003_carriers").CARRIERS:
            # the migration's carriers (a transactional test before this one may have flushed them)
            Carrier.objects.get_or_create(
                code=code, defaults={"name": name, "tracking_url_template": template, "channel_codes": channel_codes}
            )
        call_command("seed_demo")
        call_command("seed_demo_history")
        apps = {}
        for account in ChannelAccount.objects.order_by("kind"):
            app = serve_sandbox(_demo_sandbox(account.kind))
            app.state.generate(8)
            ChannelAccount.objects.filter(pk=account.pk).update(api_base_url=app.base_url)
            assert plant_demo_orders(app) > 0
            RunSandboxes._open_demo_returns(app)
            apps[account.pk] = app
        # when: every account is synced
        for account_id in apps:
            run = sync_account_run(account_id=account_id)
            assert run.status == "succeeded", run.error
        # and the open orders are routed, as the beat routes them
        assert route_releasable_task() > 0
        # and a warehouse ships some orders through the node API (released, acknowledged, picking, packed, shipped:
        # a step a tick), the carrier scanning the parcels in transit over the tracking webhook
        # (one node's WMS: the others' would only repeat it, and the carrier's scans of every parcel the demo
        # data has in transit take a while)
        node = Location.objects.get(code="DAL1")
        keys = {node.code: node_token_create(location=node, name="demo-wms", actor="test")[1]}
        config = SimConfig(
            base_url=live_server.url,
            step_seconds=0,
            short_pick_rate=0,
            webhook_secret=settings.TRACKING_WEBHOOK_SECRET,
            seed=7,
        )
        sim = WarehouseSimulator(config, keys)
        shipped = 0
        for tick in range(5):
            stats = sim.tick(now=float(tick))
            assert stats.errors == [], stats.errors[:5]
            shipped += stats.shipped
        assert shipped > 0 and Shipment.objects.filter(tracking_number__gt="").exists()
        # and the outbox is relayed to every channel, each account's returns read, the scorecards refreshed
        # and each account reconciled
        outbox_relay()
        assert OutboxMessage.objects.filter(status="sent").exists()
        for account_id in apps:
            returns_sync_account(account_id=account_id, force=True)
        assert ReturnAuthorization.objects.exists()
        scorecards_refresh()
        for account_id in apps:
            reconcile_account(account_id=account_id, trigger="manual")
        # then: the demo buyers' names, emails, phones and streets, as seeded, synced and at the channels ...
        pii: set[str] = set()
        for row in ShipToAddress.objects.values("name", "email", "phone", "line1"):
            pii |= {value for value in row.values() if value}
        for app in apps.values():
            for order in app.state.orders.values():
                pii |= {v for v in (order.buyer_name, order.address.get("line1"), order.address.get("phone")) if v}
        assert len(pii) > 100
        pii |= {json.dumps(value)[1:-1] for value in pii}  # and as JSON escapes them (a CJK name: \\u738b...)
        # ... are in no log line
        logged = stream.getvalue()
        assert len(logged.splitlines()) > 100
        assert _found(pii, logged) == []
        # ... and in no table of a data-only dump but the order tables
        dump = _dump()
        leaks = {table: _found(pii, rows) for table, rows in dump.items() if table not in ORDER_TABLES}
        assert {table: found for table, found in leaks.items() if found} == {}
        assert _found(pii, dump["orders_shiptoaddress"])
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
