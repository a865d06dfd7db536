"""Ingest → reserved → routed in one worker process, then in two worker processes on different accounts.

Each worker process is a real OS process (forked, its own connection) that serves its own TikTok Shop
sandbox over loopback HTTP, polls its account with ``channels.sync.sync_account_run`` (the orders
persisted with their lines, addresses, events) and then routes and reserves the account's open orders
with ``fulfillment.services.orders_route`` in batches of 100, earliest ship-by first, as the routing task
does (one account's pages in order). One process does one account alone; then two processes do two
other accounts of the same size at the same time. Printed beside the raw limit of the same run: the same
two-process scale-up of a plain psycopg multi-row ``INSERT … ON CONFLICT`` (LIMITS.md's ingest shape).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest

from channels import outbox as outbox_module
from channels import tasks as channel_tasks
from channels.models import ChannelAccount, ChannelKind, Listing
from channels.sandbox.tiktok import TikTokSandbox
from channels.services import channel_account_set_credentials
from channels.sync import sync_account_run
from fulfillment import services as fulfillment_services
from inventory import services as inventory_services
from inventory.models import Location, Sku
from orders.models import Order, OrderStatus
from tests.benchmarks.results import write_section
from tests.benchmarks.test_bench_ingest import _raw_limit
from tests.processes import run_in_processes

# ruff: noqa: E501 - the results table is Markdown, one row per line
pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True)]

ORDERS = int(os.environ.get("WAYBILL_BENCH_WORKER_ORDERS", "3000"))
BATCH = 100
SECTION = "two-workers"
CREDENTIALS = {"app_key": "demoappkey", "app_secret": "demoappsecret", "access_token": "TTP_demo",
               "shop_cipher": "ROW_demo"}  # fmt: skip


def _account(name: str, skus: list[Sku], node: Location, n: int) -> int:
    account = ChannelAccount.objects.create(
        kind=ChannelKind.TIKTOK, name=name, api_base_url="http://127.0.0.1:9", seller_id=f"74950000000000{n:05d}"
    )
    channel_account_set_credentials(account=account, credentials=CREDENTIALS, actor="bench")
    Listing.objects.bulk_create([Listing(account=account, sku=sku, channel_sku=sku.code) for sku in skus])
    account.eligible_locations.add(node)
    return account.pk


def _ingest_and_route(account_id: int) -> tuple[str, dict]:
    """One worker: its sandbox (generated before the clock starts), one poll of the account, then every open
    order of the account routed in batches of 100. Returns wall-clock stamps and counts."""
    sandbox = TikTokSandbox(rate=100_000.0, burst=100_000)
    sandbox.state.unknown_sku_rate = 0.0
    sandbox.state.generate(ORDERS, fulfilled_by="MERCHANT")
    server = sandbox.serve("127.0.0.1", 0)
    ChannelAccount.objects.filter(pk=account_id).update(api_base_url=sandbox.base_url)
    try:
        began = time.time()
        run = sync_account_run(account_id=account_id)
        ingested = time.time()
        routable = Order.objects.filter(account_id=account_id, status=OrderStatus.OPEN, on_hold=False).count()
        routed, seen = 0, set()
        while True:
            ids = [
                i
                for i in Order.objects.filter(account_id=account_id, status=OrderStatus.OPEN, on_hold=False)
                .order_by("ship_by", "pk")
                .values_list("pk", flat=True)[: BATCH + len(seen)]
                if i not in seen
            ][:BATCH]
            if not ids:
                break
            seen.update(ids)
            results = fulfillment_services.orders_route(order_ids=ids, actor="router")
            routed += sum(1 for r in results if r.routed)
        ended = time.time()
    finally:
        server.stop()
    if run is None or run.status != "succeeded":
        return "error", f"sync: {run and run.error}"
    orders = Order.objects.filter(account_id=account_id).count()
    return "ok", {
        "began": began, "ingested": ingested, "ended": ended, "orders": orders, "routable": routable, "routed": routed
    }  # fmt: skip


def _raw(payloads: list[str]) -> tuple[str, dict]:
    began = time.time()
    rate = _raw_limit(payloads)
    return "ok", {"began": began, "ended": time.time(), "rows": len(payloads), "rate": rate}


def _wall(outcomes: dict) -> tuple[float, list[dict]]:
    details = []
    for outcome, detail in outcomes.values():
        assert outcome == "ok", detail
        details.append(detail)
    return max(d["ended"] for d in details) - min(d["began"] for d in details), details


def test_ingest_and_route_in_one_and_in_two_worker_processes(settings, monkeypatch):
    settings.WAYBILL_CHANNEL_HTTP = {"backoff_base": 0.05, "timeout": 30.0}
    # The broker is outside the project: the relay kick and the availability recompute are not sent
    # (the forked workers inherit these patches), as in the ingest and routing benchmarks.
    monkeypatch.setattr(outbox_module, "_kick_relay", lambda account_id: None)
    monkeypatch.setattr(channel_tasks.channel_availability_recompute_task, "apply_async", lambda *a, **k: None)
    skus = Sku.objects.bulk_create([Sku(code=f"WB-{1000 + i}", name=f"Product {i}") for i in range(200)])
    node = Location.objects.create(code="BENCH-DC", name="Bench DC", postal_code="75261", country_code="US")
    for sku in skus:
        inventory_services.stock_receive(sku=sku, location=node, quantity=1_000_000, actor="bench")
    solo, left, right = (_account(f"tiktok-{name}", skus, node, n) for n, name in enumerate(["solo", "a", "b"]))
    payloads = [f'{{"order": {i}, "lines": [{{"sku": "WB-{1000 + i % 200}", "qty": 1}}], "pad": "{"x" * 2000}"}}'
                for i in range(10_000)]  # fmt: skip

    # when: the raw limit alone and two at once, then one worker alone, then two workers at once
    raw_one, _ = _wall(run_in_processes(_raw, [(0, payloads)], processes=1))
    raw_two, _ = _wall(run_in_processes(_raw, [(1, payloads), (2, payloads)], processes=2))
    one_wall, [one] = _wall(run_in_processes(_ingest_and_route, [(0, solo)], processes=1))
    two_wall, two = _wall(run_in_processes(_ingest_and_route, [(1, left), (2, right)], processes=2))

    # then every order of every account was persisted and routed
    for detail in [one, *two]:
        assert detail["orders"] == ORDERS and detail["routed"] == detail["routable"] > 0.5 * ORDERS, detail
    one_rate = ORDERS / one_wall
    two_rate = 2 * ORDERS / two_wall
    raw_one_rate = len(payloads) / raw_one
    raw_two_rate = 2 * len(payloads) / raw_two
    figures = {
        "one_rate": one_rate,
        "one_ingest": ORDERS / (one["ingested"] - one["began"]),
        "one_route": ORDERS / (one["ended"] - one["ingested"]),
        "two_rate": two_rate,
        "ratio": two_rate / one_rate,
        "raw_one": raw_one_rate,
        "raw_two": raw_two_rate,
        "raw_ratio": raw_two_rate / raw_one_rate,
        "routed": [d["routed"] for d in [one, *two]],
    }
    print(figures)
    _write(figures)


def _write(f: dict) -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = f"""## Ingest → reserved → routed: one worker process and two (issue #22)

Each worker is a forked OS process with its own connection that serves its own TikTok Shop sandbox
({ORDERS:,} orders of 1-5 lines) over loopback HTTP, polls its account (`channels.sync.sync_account_run`)
and then routes and reserves the account's open orders (`fulfillment.services.orders_route`, batches of
{BATCH}, earliest ship-by first). One worker on one account; then two workers on two other accounts at
once. Run {when}, `make bench` (`-k workers`).

| Measure | orders/s | x one process | Raw limit, same run (rows/s) | x one process |
|---|---:|---:|---:|---:|
| One worker process: fetched → persisted, then the releasable ones reserved and routed (orders ingested per second) | **{f["one_rate"]:,.0f}** | 1.00 | {f["raw_one"]:,.0f} | 1.00 |
| Two worker processes, different accounts in parallel | **{f["two_rate"]:,.0f}** | **{f["ratio"]:.2f}** | {f["raw_two"]:,.0f} | {f["raw_ratio"]:.2f} |

Orders routed (every order the poll left open and unheld; the sandbox also sends orders that are not
releasable yet): {", ".join(f"{n:,}" for n in f["routed"])} of {ORDERS:,} per account. The one worker's phases: ingest (poll, parse, persist) {f["one_ingest"]:,.0f} orders/s, then routing
{f["one_route"]:,.0f} orders/s. Raw limit: plain psycopg multi-row `INSERT … ON CONFLICT DO UPDATE … WHERE IS
DISTINCT FROM` of 2 KB JSON payloads, 100 per transaction, in one process and then in two at once.
Each worker also serves its sandbox (HTTP and JSON rendering in a thread of the same process), as the
ingest benchmark's end-to-end figure does; the machine has two cores.
"""
    write_section(SECTION, body)
