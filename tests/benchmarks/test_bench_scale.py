"""Beyond one machine: the single-primary write ceiling, and a worker's memory through a 100,000-order backfill.

**Write ceiling.** Waybill scales out in web and worker processes (README: production); what it cannot multiply is
the one PostgreSQL primary every write goes to. Raw limits of this primary, measured in the same run with plain
psycopg: commits per second (one-row transactions from 8 sessions: the WAL flush rate), row writes per second
(multi-row INSERTs, 1,000 per transaction) and WAL bytes per second. Waybill's cost per order, from the server's
own counters (pg_stat_database, the WAL position) around a Walmart first pass over HTTP (ingest, acknowledgement
queued) and the routing and reservation of those orders: commits, row writes and WAL bytes per order. The ceiling
is the lowest of raw limit / cost, in orders per second and per day.

**Memory.** A worker process (a child process, as a Celery worker's pool process runs the sync task) backfills
100,000 Walmart orders from the sandbox over HTTP; its RSS is sampled every 50 ms. Goal: peak below 300 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid

import psutil
import psycopg
import pytest
from django.db import connection, connections

from channels import outbox as outbox_module
from channels import tasks as channel_tasks
from channels.models import ChannelAccount, ChannelKind, Listing
from channels.sandbox.walmart import WalmartSandbox
from channels.services import channel_account_set_credentials
from channels.sync import sync_account_run
from fulfillment import services as fulfillment_services
from fulfillment.selectors import releasable_order_ids
from inventory import services as inventory_services
from inventory.models import Location, Sku
from orders.models import Order
from tests.background import BASE_DIR
from tests.benchmarks.results import write_section

# ruff: noqa: E501 - the results table is Markdown, one row per line
pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True)]

CEILING_ORDERS = int(os.environ.get("WAYBILL_BENCH_CEILING_ORDERS", "3000"))
BACKFILL_ORDERS = int(os.environ.get("WAYBILL_BENCH_BACKFILL_ORDERS", "100000"))
RSS_GOAL_MB = 300
WALMART = {"client_id": "demo-walmart-client", "client_secret": "demo-walmart-secret"}


def _psycopg_params() -> dict:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return params


# --- the write ceiling -----------------------------------------------------------------------------


def _commit_rate(sessions: int = 8, seconds: float = 5.0) -> float:
    """One-row INSERT transactions per second from ``sessions`` sessions (synchronous_commit as configured)."""
    with psycopg.connect(**_psycopg_params(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_commits")
        conn.execute("CREATE UNLOGGED TABLE IF NOT EXISTS bench_commits_probe (n int)")  # warms the catalog
        conn.execute("CREATE TABLE bench_commits (id bigserial PRIMARY KEY, payload text)")
    counts = [0] * sessions
    stop = time.monotonic() + seconds

    def run(slot: int) -> None:
        with psycopg.connect(**_psycopg_params(), autocommit=True) as conn:
            while time.monotonic() < stop:
                conn.execute("INSERT INTO bench_commits (payload) VALUES (%s)", ["x" * 200])
                counts[slot] += 1

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(sessions)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert all(counts), "a session wrote nothing"
    with psycopg.connect(**_psycopg_params(), autocommit=True) as conn:
        conn.execute("DROP TABLE bench_commits")
        conn.execute("DROP TABLE bench_commits_probe")
    return sum(counts) / elapsed


def _row_rate(sessions: int = 4, rows: int = 200_000, per_transaction: int = 1_000) -> tuple[float, float]:
    """(rows/s, WAL bytes/s) of ~400-byte rows with a primary key, 1,000 per transaction, from ``sessions`` sessions
    at once; the rows are made by the server (generate_series), so the figure is the server's, not the client's."""
    with psycopg.connect(**_psycopg_params(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_rows")
        conn.execute("CREATE TABLE bench_rows (id bigint PRIMARY KEY, account int, payload text)")
        wal_before = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]

    def run(slot: int) -> None:
        with psycopg.connect(**_psycopg_params()) as conn:
            base = slot * rows
            for start in range(base, base + rows, per_transaction):
                conn.execute(
                    "INSERT INTO bench_rows SELECT g, g %% 50, repeat('y', 400) FROM generate_series(%s::bigint, %s::bigint) g",
                    [start, start + per_transaction - 1],
                )
                conn.commit()

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(sessions)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    with psycopg.connect(**_psycopg_params(), autocommit=True) as conn:
        wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [wal_before]).fetchone()[0]
        written = conn.execute("SELECT count(*) FROM bench_rows").fetchone()[0]
        conn.execute("DROP TABLE bench_rows")
    assert written == sessions * rows, f"{written} rows written of {sessions * rows}"
    return sessions * rows / elapsed, float(wal) / elapsed


def _server_counters() -> dict[str, float]:
    with psycopg.connect(**_psycopg_params(), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
    time.sleep(1.2)  # the statistics of every other session reach the view within a second
    with psycopg.connect(**_psycopg_params(), autocommit=True) as conn:
        commits, inserted, updated, deleted = conn.execute(
            "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
        wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')").fetchone()[0]
    return {"commits": commits, "rows": inserted + updated + deleted, "wal": float(wal)}


def _walmart_account(sandbox: WalmartSandbox, name: str, skus: list[Sku]) -> ChannelAccount:
    account = ChannelAccount.objects.create(kind=ChannelKind.WALMART, name=name, api_base_url=sandbox.base_url)
    channel_account_set_credentials(account=account, credentials=WALMART, actor="bench")
    Listing.objects.bulk_create([Listing(account=account, sku=sku, channel_sku=sku.code) for sku in skus])
    return account


def _ingest_and_route(orders: int, skus: list[Sku]) -> int:
    """A Walmart first pass of ``orders`` over HTTP, then every ingested order routed and reserved in batches of 100,
    as the worker does; the after-commit task sends are counted, not run (they are the broker's work)."""
    sandbox = WalmartSandbox(rate=100_000.0, burst=100_000, **WALMART)
    sandbox.state.unknown_sku_rate = 0.0
    sandbox.state.generate(orders, fulfilled_by="MERCHANT", status="unshipped")
    server = sandbox.serve("127.0.0.1", 0)
    account = _walmart_account(sandbox, "walmart-ceiling", skus)
    node = Location.objects.create(code="CEIL-DC", name="Ceiling DC", postal_code="75261", country_code="US")
    account.eligible_locations.add(node)
    for sku in skus:
        inventory_services.stock_receive(sku=sku, location=node, quantity=1_000_000, actor="bench")
    task = channel_tasks.channel_availability_recompute_task
    real_kick = outbox_module._kick_relay
    task.apply_async = lambda *args, **kwargs: None
    outbox_module._kick_relay = lambda account_id: None
    try:
        run = sync_account_run(account_id=account.pk)
        assert run.status == "succeeded", run.error
        routed = 0
        while True:
            ids = releasable_order_ids(limit=100)
            if not ids:
                break
            routed += sum(
                1 for result in fulfillment_services.orders_route(order_ids=ids, actor="router") if result.routed
            )
    finally:
        del task.apply_async
        outbox_module._kick_relay = real_kick
        server.stop()
    assert Order.objects.filter(account_id=account.pk).count() == orders
    return routed


def ceiling_wal_mb(per_order: dict[str, float], bounds: dict[str, float]) -> float:
    return min(bounds.values()) * per_order["wal"] / 1e6


def test_single_primary_write_ceiling():
    skus = Sku.objects.bulk_create([Sku(code=f"WB-{1000 + i}", name=f"Product {i}") for i in range(200)])
    # raw limits of this primary, this run
    commit_rate = _commit_rate()
    row_rate, wal_rate = _row_rate()
    # Waybill's writes per order
    before = _server_counters()
    routed = _ingest_and_route(CEILING_ORDERS, skus)
    after = _server_counters()
    per_order = {key: (after[key] - before[key]) / CEILING_ORDERS for key in before}
    bounds = {
        "commits": commit_rate / per_order["commits"],
        "row writes": row_rate / per_order["rows"],
        "WAL bytes": wal_rate / per_order["wal"],
    }
    limit_name, ceiling = min(bounds.items(), key=lambda item: item[1])
    per_day = ceiling * 86_400
    lines = [
        f"Single-primary write ceiling ({CEILING_ORDERS:,} Walmart orders ingested over HTTP, {routed:,} routed and reserved):",
        f"  raw limits, this run: {commit_rate:,.0f} commits/s (8 sessions, one-row transactions); {row_rate:,.0f} row writes/s and {wal_rate / 1e6:,.1f} MB/s of WAL (1,000-row INSERT … SELECT, 4 sessions)",
        f"  Waybill per order: {per_order['commits']:.2f} commits, {per_order['rows']:.1f} row writes, {per_order['wal'] / 1024:.1f} KB of WAL"
        f" (a replica streams {ceiling_wal_mb(per_order, bounds):,.1f} MB/s of WAL at the ceiling)",
        "  bound by each: " + "; ".join(f"{name} {value:,.0f} orders/s" for name, value in bounds.items()),
        f"  ceiling: {ceiling:,.0f} orders/s ({limit_name}) = {per_day / 1e6:,.1f} million orders a day on this primary",
    ]
    print("\n" + "\n".join(lines))
    write_section(
        "scale-ceiling",
        "## Beyond one machine: the single-primary write ceiling (`tests/benchmarks/test_bench_scale.py`)\n\n"
        + "| Measure | Figure |\n|---|---|\n"
        + f"| Raw: one-row commits/s (8 sessions) | {commit_rate:,.0f} |\n"
        + f"| Raw: row writes/s (1,000-row INSERT … SELECT, 4 sessions) | {row_rate:,.0f} |\n"
        + f"| Raw: WAL MB/s (same) | {wal_rate / 1e6:,.1f} |\n"
        + f"| Waybill per order (Walmart first pass over HTTP + routing and reservation, {CEILING_ORDERS:,} orders) | {per_order['commits']:.2f} commits, {per_order['rows']:.1f} row writes, {per_order['wal'] / 1024:.1f} KB WAL |\n"
        + "".join(f"| Bound by {name} | {value:,.0f} orders/s |\n" for name, value in bounds.items())
        + f"| **Ceiling** | **{ceiling:,.0f} orders/s ({limit_name}), {per_day / 1e6:,.1f} M orders/day** |\n",
    )
    assert routed == CEILING_ORDERS


# --- memory through a backfill ---------------------------------------------------------------------

BACKFILL_CHILD = """
import json, os, sys, time, psutil
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from channels.sync import sync_account_run
me = psutil.Process()
print(json.dumps({"start_rss": me.memory_info().rss}), flush=True)
started = time.perf_counter()
run = sync_account_run(account_id=int(sys.argv[1]))
print(json.dumps({"status": run.status, "error": run.error, "orders": run.orders_created, "pages": run.pages,
                  "seconds": time.perf_counter() - started, "end_rss": me.memory_info().rss}), flush=True)
"""


def test_backfill_memory(tmp_path):
    skus = Sku.objects.bulk_create([Sku(code=f"WB-{1000 + i}", name=f"Product {i}") for i in range(200)])
    sandbox = WalmartSandbox(rate=100_000.0, burst=100_000, **WALMART)
    sandbox.state.unknown_sku_rate = 0.0
    sandbox.state.generate(BACKFILL_ORDERS, fulfilled_by="MERCHANT", status="unshipped")
    server = sandbox.serve("127.0.0.1", 0)
    account = _walmart_account(sandbox, "walmart-backfill", skus)
    connections.close_all()
    env = {key: value for key, value in os.environ.items() if key not in {"WAYBILL_TESTING", "REDIS_URL"}}
    # As a worker: the tasks the sync queues go to a broker folder of their own, not run inline.
    env.update(
        WAYBILL_DATABASE_NAME=connection.settings_dict["NAME"],
        WAYBILL_BROKER_DIR=str(tmp_path / "broker"),
        WAYBILL_CELERY_QUEUE=f"bench-{uuid.uuid4().hex[:8]}",
        CELERY_TASK_ALWAYS_EAGER="0",
    )
    peak = [0]
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", BACKFILL_CHILD, str(account.pk)],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        watched = psutil.Process(proc.pid)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], watched.memory_info().rss)
                except psutil.Error:
                    return
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        out, err = proc.communicate(timeout=3600)
        done.set()
        sampler.join()
    finally:
        server.stop()
    assert proc.returncode == 0, err[-3000:]
    first, last = (json.loads(line) for line in out.strip().splitlines()[-2:])
    assert last["status"] == "succeeded", last["error"]
    assert Order.objects.filter(account_id=account.pk).count() == BACKFILL_ORDERS
    mb = 1024 * 1024
    line = (
        f"Backfill of {BACKFILL_ORDERS:,} Walmart orders in one worker process ({last['pages']} pages over HTTP, "
        f"{BACKFILL_ORDERS / last['seconds']:,.0f} orders/s): RSS at start {first['start_rss'] / mb:,.0f} MB, "
        f"peak {peak[0] / mb:,.0f} MB (goal < {RSS_GOAL_MB} MB: {peak[0] / mb / RSS_GOAL_MB:.2f}x), at the end {last['end_rss'] / mb:,.0f} MB"
    )
    print("\n" + line)
    write_section(
        "scale-memory",
        "## Memory through a backfill (`tests/benchmarks/test_bench_scale.py`)\n\n" + line + "\n",
    )
    assert last["orders"] == BACKFILL_ORDERS
