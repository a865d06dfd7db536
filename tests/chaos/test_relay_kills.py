"""The outbox relay killed between the channel's answer and the mark-sent commit, once per message, in real
processes against the test database and a Walmart sandbox over HTTP: every ship confirmation reaches the channel
once (Walmart has no idempotency key: the resend reads the order first and finds its tracking number).

WAYBILL_CHAOS_RELAY_KILLS sets the number of kills: 50 on every CI run, 1,000 with `make chaos`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from channels import tasks
from channels.models import ChannelKind, OutboxKind, OutboxMessage, OutboxStatus
from channels.outbox import outbox_relay, ship_confirmation_enqueue
from channels.sync import sync_account_run
from orders.models import Order
from tests.background import BASE_DIR
from tests.channels.conftest import WALMART_CREDENTIALS, CountingWalmart, sandbox_account
from tests.chaos.conftest import figures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]

KILLS = int(os.environ.get("WAYBILL_CHAOS_RELAY_KILLS", "50"))


def test_relay_killed_between_send_and_mark_sends_each_shipment_once(serve_sandbox, monkeypatch):
    monkeypatch.setattr(tasks, "outbox_relay_dispatch", lambda *args, **kwargs: False)  # only our relays send
    # given: KILLS Walmart orders synced, each with a ship confirmation waiting in the outbox
    walmart = serve_sandbox(
        CountingWalmart(client_id="wm-client", client_secret="wm-secret", rate=100_000.0, burst=100_000)
    )
    walmart.state.generate(KILLS, unknown_sku=False, fulfilled_by="MERCHANT", status="unshipped")
    account = sandbox_account(walmart, kind=ChannelKind.WALMART, name="walmart-chaos", credentials=WALMART_CREDENTIALS)
    assert sync_account_run(account_id=account.pk).orders_created == KILLS
    OutboxMessage.objects.filter(account=account, kind=OutboxKind.ACKNOWLEDGE).delete()
    for order in Order.objects.filter(account_id=account.pk).prefetch_related("lines").order_by("pk"):
        ship_confirmation_enqueue(
            order=order,
            package_reference="PKG-1",
            carrier_code="UPS",
            tracking_number=f"1Z{order.pk:010d}",
            shipped_at=timezone.now(),
            lines=[(line.external_id, line.quantity) for line in order.lines.all()],
        )
    # when: a relay process is killed after each send, before it marks the message sent, KILLS times
    connections.close_all()
    env = {**os.environ, "WAYBILL_DATABASE_NAME": connection.settings_dict["NAME"]}
    out = subprocess.run(
        [sys.executable, "-m", "tests.chaos.relay_kills", str(account.pk), str(KILLS)],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert (result["killed"], result["other_exits"]) == (KILLS, []), out.stderr[-3000:]
    # then: every message reached the channel and none is marked: all are held by dead relays' leases
    assert walmart.ship_calls.total() == KILLS
    assert OutboxMessage.objects.filter(account=account, status=OutboxStatus.SENDING).count() == KILLS
    # and when: the leases expire and a relay runs
    OutboxMessage.objects.filter(account=account).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    counts = outbox_relay(account_id=account.pk, budget_seconds=600, batch=100)
    # then: every message is sent, each found already applied at the channel, and no shipment was sent twice
    messages = OutboxMessage.objects.filter(account=account, kind=OutboxKind.SHIP_CONFIRMATION)
    sent = messages.filter(status=OutboxStatus.SENT)
    applied_before = sum(1 for response in sent.values_list("response", flat=True) if response.get("already_applied"))
    effects = Counter(shipment["order_id"] for shipment in walmart.state.shipments)
    figures(
        "relay killed between send and mark-sent",
        kills=result["killed"],
        kill_loop_seconds=result["seconds"],
        messages=messages.count(),
        sent=sent.count(),
        found_applied_on_resend=applied_before,
        shipments_at_sandbox=sum(effects.values()),
        orders_shipped_twice=sum(1 for n in effects.values() if n > 1),
        ship_calls=walmart.ship_calls.total(),
        lost=messages.count() - sent.count(),
    )
    assert counts.get("sent") == KILLS
    assert sent.count() == messages.count() == KILLS
    assert applied_before == KILLS
    assert len(effects) == KILLS and set(effects.values()) == {1}
    assert walmart.ship_calls.total() == KILLS, "a shipment was posted twice"
