"""The worker's main process SIGKILLed during a sync and during a relay, with the demo's supervisor, worker and
beat as real processes against the test database and a Walmart sandbox over HTTP.

The demo keeps running (the supervisor and beat are untouched), the worker is back within seconds, the lost
work completes within a minute (the sync by the dispatcher's next tick once the dead worker's lock is gone,
the relay's messages once their short lease expires), and nothing is duplicated at the sandbox.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from channels import tasks
from channels.models import ChannelKind, OutboxKind, OutboxMessage, OutboxStatus, SyncRun, SyncStatus
from channels.sync import sync_account_run
from orders.models import Order
from tests.background import running_stack, wait_for
from tests.channels.conftest import WALMART_CREDENTIALS, CountingWalmart, sandbox_account

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]

BACK_WITHIN = 20.0  # seconds for the supervisor to notice, wait its first back-off and Celery to boot
LOST_WORK_WITHIN = 60.0


@pytest.fixture
def walmart(serve_sandbox):
    sandbox = serve_sandbox(
        CountingWalmart(client_id="wm-client", client_secret="wm-secret", rate=10_000.0, burst=10_000)
    )
    sandbox.state.generate(150, unknown_sku=False, fulfilled_by="MERCHANT", status="unshipped")
    return sandbox


def _faults(sandbox, **faults) -> None:
    for name, value in faults.items():
        setattr(sandbox.state.faults, name, value)


def _kill_worker(stack) -> tuple[int, int]:
    worker = wait_for(lambda: stack.pid("worker"), timeout=30, what="the worker")
    beat = stack.pid("beat")
    os.kill(worker, signal.SIGKILL)
    return worker, beat


def _assert_healed(stack, killed: int, beat: int) -> None:
    back = wait_for(
        lambda: (pid := stack.pid("worker")) and pid != killed and pid,
        timeout=BACK_WITHIN,
        what="the supervisor to start the worker again",
    )
    assert back != killed
    assert stack.alive(), stack.output()
    assert stack.pid("beat") == beat, "beat was restarted or stopped: the demo did not keep running"
    assert "worker exited with -9" in stack.output()


def test_worker_killed_during_a_sync(tmp_path, walmart):
    # given: a Walmart account never synced; every channel call is slow, so a sync of its 150 orders takes a while
    account = sandbox_account(
        walmart,
        kind=ChannelKind.WALMART,
        name="walmart-kill",
        credentials=WALMART_CREDENTIALS,
        sync_interval_seconds=10,
    )
    _faults(walmart, slow_ms=1500)
    with running_stack(tmp_path) as stack:
        # when: beat's dispatcher queues the sync, a worker runs it, and its main process is killed mid-sync
        wait_for(
            lambda: SyncRun.objects.filter(account=account, status=SyncStatus.RUNNING).exists(),
            timeout=90,
            what="the sync to start",
        )
        killed_run = SyncRun.objects.get(account=account, status=SyncStatus.RUNNING)
        killed, beat = _kill_worker(stack)
        killed_at = time.monotonic()
        _faults(walmart, slow_ms=0)
        # then: the worker is back within seconds and the demo kept running
        _assert_healed(stack, killed, beat)
        # and: the sync runs again and completes within a minute; the dead run is failed, not left running
        wait_for(
            lambda: SyncRun.objects.filter(account=account, status=SyncStatus.SUCCEEDED, pk__gt=killed_run.pk).exists(),
            timeout=LOST_WORK_WITHIN,
            what="a sync to complete after the kill",
        )
        assert time.monotonic() - killed_at < LOST_WORK_WITHIN
        killed_run.refresh_from_db()
        assert killed_run.status == SyncStatus.FAILED and "stopped" in killed_run.error
        # and: every order is there once, and every acknowledgement reaches the channel once
        assert Order.objects.filter(account_id=account.pk).count() == 150
        wait_for(
            lambda: not OutboxMessage.objects.filter(account=account).exclude(status=OutboxStatus.SENT).exists(),
            timeout=LOST_WORK_WITHIN,
            what="the acknowledgements to be sent",
        )
    assert OutboxMessage.objects.filter(account=account, kind=OutboxKind.ACKNOWLEDGE).count() == 150
    assert len(walmart.acknowledged) == 150
    assert set(walmart.ack_calls.values()) == {1}, "an acknowledgement was sent twice"


def test_worker_killed_during_a_relay(tmp_path, walmart, monkeypatch):
    # given: the account synced here, with 150 acknowledgements waiting in the outbox (nothing sent yet)
    monkeypatch.setattr(tasks, "outbox_relay_dispatch", lambda *args, **kwargs: False)
    account = sandbox_account(
        walmart,
        kind=ChannelKind.WALMART,
        name="walmart-kill",
        credentials=WALMART_CREDENTIALS,
        sync_interval_seconds=3600,
    )
    run = sync_account_run(account_id=account.pk)
    assert run.status == SyncStatus.SUCCEEDED
    waiting = OutboxMessage.objects.filter(account=account, kind=OutboxKind.ACKNOWLEDGE, status=OutboxStatus.PENDING)
    assert waiting.count() == 150
    # and: the channel is slowish, so the relay takes several seconds
    _faults(walmart, slow_ms=80)
    with running_stack(tmp_path) as stack:
        # when: beat's relay is sending, and the worker's main process is killed between two acknowledgements
        wait_for(lambda: len(walmart.acknowledged) >= 15, timeout=90, what="the relay to send")
        killed, beat = _kill_worker(stack)
        killed_at = time.monotonic()
        in_flight = OutboxMessage.objects.filter(account=account, status=OutboxStatus.SENDING).count()
        # then: the worker is back within seconds and the demo kept running
        _assert_healed(stack, killed, beat)
        # and: the messages the dead relay held are sent within a minute (their lease is short)
        wait_for(
            lambda: not OutboxMessage.objects.filter(account=account).exclude(status=OutboxStatus.SENT).exists(),
            timeout=LOST_WORK_WITHIN,
            what="every acknowledgement to be sent after the kill",
        )
        assert time.monotonic() - killed_at < LOST_WORK_WITHIN
    # and: each order is acknowledged at the channel once; only a send in flight at the kill may be repeated
    # (acknowledge is idempotent at Walmart, so the repeat changes nothing there)
    assert len(walmart.acknowledged) == 150 == len(walmart.state.extra["acknowledgements"])
    repeated = sum(calls - 1 for calls in walmart.ack_calls.values())
    assert repeated <= 2, f"{repeated} acknowledgements repeated; at most the sends in flight may be"
    assert in_flight >= 0
    assert OutboxMessage.objects.filter(account=account, status=OutboxStatus.PARKED).count() == 0
