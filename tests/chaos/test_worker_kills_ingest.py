"""A worker SIGKILLed 5 s after each start (once ready) through a 10,000-order ingest: the demo's supervisor,
worker and beat as real processes against the test database, a Walmart sandbox over HTTP receiving 10,000 new
orders over about a minute. Every order arrives once, every raw payload is stored once, and every acknowledgement
reaches Walmart.

Runs with `make chaos` (several minutes).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from channels.models import ChannelKind, InboundEvent, OutboxKind, OutboxMessage, OutboxStatus, SyncStatus
from channels.sync import sync_account_run
from orders.models import Order
from tests.background import running_stack, wait_for
from tests.channels.conftest import WALMART_CREDENTIALS, CountingWalmart, sandbox_account
from tests.chaos.conftest import figures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.chaos]

ORDERS = int(os.environ.get("WAYBILL_CHAOS_INGEST_ORDERS", "10000"))
KILL_EVERY = 5.0
ARRIVAL_SECONDS = 60.0
DONE_WITHIN = 900.0


def _ready_count(stack) -> int:
    """How many times a worker of the stack said it was ready to take tasks."""
    return stack.log.read_text(errors="replace").count(" ready.")


def test_worker_killed_every_five_seconds_through_an_ingest(serve_sandbox, tmp_path):
    # given: a Walmart account already backfilled (empty), polled every 10 s (the shortest interval allowed)
    walmart = serve_sandbox(CountingWalmart(client_id="wm-client", client_secret="wm-secret", rate=1e5, burst=100_000))
    account = sandbox_account(
        walmart,
        kind=ChannelKind.WALMART,
        name="walmart-chaos",
        credentials=WALMART_CREDENTIALS,
        sync_interval_seconds=10,
    )
    assert sync_account_run(account_id=account.pk).status == SyncStatus.SUCCEEDED
    # and: ORDERS new orders arrive at the channel over about a minute
    arriving = threading.Event()

    def arrive() -> None:
        batch = max(ORDERS // int(ARRIVAL_SECONDS * 4), 1)
        made = 0
        while made < ORDERS:
            count = min(batch, ORDERS - made)
            walmart.state.generate(count, unknown_sku=False, fulfilled_by="MERCHANT", status="unshipped")
            made += count
            time.sleep(0.25)
        arriving.set()

    kills = 0
    with running_stack(tmp_path, WAYBILL_RESTART_MAX_DELAY="2") as stack:
        threading.Thread(target=arrive, daemon=True).start()
        started = time.monotonic()

        def done() -> bool:
            return (
                arriving.is_set()
                and Order.objects.filter(account_id=account.pk).count() == ORDERS
                and not OutboxMessage.objects.filter(account=account).exclude(status=OutboxStatus.SENT).exists()
            )

        # when: the worker's main process is SIGKILLed 5 s after each start until everything is in
        while not done():
            assert time.monotonic() - started < DONE_WITHIN, (
                f"not done after {DONE_WITHIN:.0f} s: {Order.objects.filter(account_id=account.pk).count()} orders\n"
                + stack.output()
            )
            # 5 s of work per life: counted from the worker's "ready" (its boot takes seconds on a busy machine)
            lives = _ready_count(stack)
            wait_for(
                lambda lives=lives: _ready_count(stack) > lives or done(), timeout=120, what="the worker to be ready"
            )
            pid = stack.pid("worker")
            time.sleep(KILL_EVERY)
            if done():
                break
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
        elapsed = time.monotonic() - started
        assert stack.alive(), stack.output()
    # then: every order once, every payload once, every acknowledgement at Walmart
    orders = Order.objects.filter(account_id=account.pk).count()
    distinct = Order.objects.filter(account_id=account.pk).values("external_id").distinct().count()
    # (an order's payload changes once Walmart has acknowledged it: that update is a second raw event of it)
    events = InboundEvent.objects.filter(account=account).values("external_id").distinct().count()
    acks = OutboxMessage.objects.filter(account=account, kind=OutboxKind.ACKNOWLEDGE).count()
    repeated = sum(calls - 1 for calls in walmart.ack_calls.values())
    figures(
        "worker SIGKILLed every 5 s through an ingest",
        orders_at_channel=ORDERS,
        kills=kills,
        seconds=round(elapsed),
        orders=orders,
        lost=ORDERS - orders,
        duplicated=orders - distinct,
        orders_with_raw_events=events,
        acknowledgements=acks,
        acknowledged_at_channel=len(walmart.acknowledged),
        acknowledge_calls_repeated_in_flight=repeated,
    )
    assert kills >= 3
    assert orders == distinct == ORDERS
    assert events == ORDERS
    assert acks == ORDERS == len(walmart.acknowledged)
