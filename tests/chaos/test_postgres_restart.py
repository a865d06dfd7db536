"""PostgreSQL restarted in the middle of a sync (the embedded server: never a machine's shared one): the worker's
run fails cleanly (recorded failed with the reason, the cursor where it was, the process alive to take the next
task) and the next run resumes, so every order is there once.

Runs with `make chaos` on the embedded server (it restarts the server the test database lives on).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings
from django.db import connection, connections

from channels.models import ChannelKind, InboundEvent, SyncRun, SyncStatus
from channels.sandbox.walmart import WalmartSandbox
from config import embedded_pg
from orders.models import Order
from tests.background import BASE_DIR
from tests.channels.conftest import WALMART_CREDENTIALS, sandbox_account
from tests.chaos.conftest import figures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.chaos]

ORDERS = 3_000

# A worker's pool process: runs the sync task twice, as two deliveries of the task would, in one process.
WORKER = """
import json, os, sys, traceback
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from channels.tasks import channels_sync_account_task
from channels.models import SyncRun
for attempt in ("during the restart", "after it"):
    if attempt == "after it":
        sys.stdin.readline()  # the test says when the server is back
    try:
        run_id = channels_sync_account_task(int(sys.argv[1]))
        run = SyncRun.objects.get(pk=run_id)
        print(json.dumps({"attempt": attempt, "status": run.status, "error": run.error}), flush=True)
    except Exception as exc:
        traceback.print_exc()
        print(json.dumps({"attempt": attempt, "raised": f"{type(exc).__name__}: {exc}"}), flush=True)
"""


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # the server is restarting
            connections.close_all()
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_postgres_restarted_mid_sync_fails_the_run_cleanly_and_the_next_resumes(serve_sandbox, tmp_path):
    if not settings.EMBEDDED_DATABASE:
        pytest.skip("restarts the database server: runs on the embedded server only (make chaos), never a shared one")
    # given: a Walmart backfill of ORDERS orders, slow enough at the channel to be caught halfway
    walmart = serve_sandbox(WalmartSandbox(client_id="wm-client", client_secret="wm-secret", rate=1e5, burst=100_000))
    walmart.state.generate(ORDERS, unknown_sku=False, fulfilled_by="MERCHANT", status="unshipped")
    account = sandbox_account(
        walmart, kind=ChannelKind.WALMART, name="walmart-restart", credentials=WALMART_CREDENTIALS
    )
    walmart.state.faults.slow_ms = 400
    connections.close_all()
    env = {key: value for key, value in os.environ.items() if key not in {"WAYBILL_TESTING", "REDIS_URL"}}
    env.update(
        WAYBILL_DATABASE_NAME=connection.settings_dict["NAME"],
        WAYBILL_BROKER_DIR=str(tmp_path / "broker"),
        WAYBILL_CELERY_QUEUE=f"chaos-{uuid.uuid4().hex[:8]}",
        CELERY_TASK_ALWAYS_EAGER="0",
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(account.pk)],
        cwd=BASE_DIR,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # when: the server restarts while the sync is on its third page
        _wait(
            lambda: SyncRun.objects.filter(account=account, status=SyncStatus.RUNNING, pages__gte=2).exists(),
            timeout=120,
            what="the sync to be halfway",
        )
        connections.close_all()
        embedded_pg.stop()
        embedded_pg.ensure_running()
        restarted_at = time.monotonic()
        walmart.state.faults.slow_ms = 0
        first = json.loads(worker.stdout.readline())
        # then: the worker's run ended failed with the reason, and the worker lives to run the next one
        assert worker.poll() is None, worker.stderr.read()[-3000:]
        connections.close_all()
        failed = SyncRun.objects.filter(account=account).order_by("pk").first()
        account.refresh_from_db()
        orders_then = Order.objects.filter(account_id=account.pk).count()
        assert first.get("status") in (SyncStatus.FAILED, SyncStatus.PARTIAL), first
        assert failed.status in (SyncStatus.FAILED, SyncStatus.PARTIAL) and "database" in failed.error
        assert account.sync_cursor is None, "a failed backfill moved the cursor"
        # when: the next run (the dispatcher's next tick) in the same worker
        worker.stdin.write("go\n")
        worker.stdin.flush()
        second = json.loads(worker.stdout.readline())
    finally:
        worker.stdin.close()
        try:
            worker.wait(timeout=300)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise
    # then: it resumes and completes; every order once, every raw payload once
    account.refresh_from_db()
    orders = Order.objects.filter(account_id=account.pk).count()
    events = InboundEvent.objects.filter(account=account).count()
    figures(
        "PostgreSQL restarted mid-sync",
        orders=ORDERS,
        stored_before_restart=orders_then,
        first_run=first.get("status"),
        next_run=second.get("status"),
        seconds_to_complete_after_restart=round(time.monotonic() - restarted_at, 1),
        orders_after=orders,
        events_after=events,
        lost=ORDERS - orders,
    )
    assert second["status"] == SyncStatus.SUCCEEDED, second
    assert orders == ORDERS and events == ORDERS
    assert account.sync_cursor is not None
    assert 0 < orders_then < ORDERS
