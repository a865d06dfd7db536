"""`make soak`: the demo left running under its own load, with a burst of 500 signed Shopify webhooks.

Runs `python -m config.stack` (migrate, demo data, web + worker + beat + sandboxes, supervised) on ports of
its own (web :8700, sandboxes :8701-8705; WAYBILL_SOAK_PORT and WAYBILL_DEMO_PORT_OFFSET move them) and a
broker folder of its own, in a database of its own made anew each run (WAYBILL_DATABASE_NAME, default
waybill_soak) on the server the environment names (the embedded one under `make soak`). For
WAYBILL_SOAK_MINUTES (30) it samples every 5 s: the Celery queue depth, each account's time since its last
successful sync, and the memory of every process of the demo.
At minute WAYBILL_SOAK_BURST_AT (9) it sends 500 signed Shopify webhooks (distinct delivery ids) 50 at a
time, after 20 sent one at a time, while 50 orders change at the Shopify sandbox (which sends its own).
At the end it waits for the drains, checks that nothing was duplicated
(orders, lines, inbound events, outbox messages, shipments and cancellations recorded at the sandboxes) and
that no outbox message is parked or stuck (a send the channel refused because it had changed the order first,
by the sandboxes' injected drift or a buyer's cancel, is counted apart: parking it with a case is right),
prints the figures and exits 1 when one misses its goal:

- queue depth at most SOAK_MAX_QUEUE (50) messages;
- every account's last successful sync within twice its interval (after its first one);
- webhook p99 under 1 s at 50 concurrent deliveries;
- memory at the end within 1.5x the memory at minute 2 (after start-up) and nothing duplicated or lost.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import hmac
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

BASE_DIR = Path(__file__).resolve().parents[2]
SOAK_DIR = BASE_DIR / "var" / "soak"
PORT = os.environ.setdefault("WAYBILL_SOAK_PORT", "8700")
os.environ["WAYBILL_PORT"] = PORT
os.environ.setdefault("WAYBILL_DEMO_PORT_OFFSET", "600")
os.environ.setdefault("WAYBILL_BROKER_DIR", str(SOAK_DIR / "broker"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# A database of its own, made anew each run: the sandboxes keep their orders in memory and start anew too, so
# orders an earlier run ingested would meet different orders under the same ids there (and the demo's data stays).
os.environ.setdefault("WAYBILL_DATABASE_NAME", "waybill_soak")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.pop("WAYBILL_TESTING", None)

MINUTES = float(os.environ.get("WAYBILL_SOAK_MINUTES", "30"))
BURST_AT = float(os.environ.get("WAYBILL_SOAK_BURST_AT", "9"))
BURST = int(os.environ.get("WAYBILL_SOAK_BURST", "500"))
CHANGED = 50
CONCURRENCY = 50
SAMPLE_EVERY = 5.0
MAX_QUEUE = int(os.environ.get("SOAK_MAX_QUEUE", "50"))
WEBHOOK_SECRET = "demo-webhook-secret"  # seed_demo's Shopify account


def say(text: str) -> None:
    print(f"[soak {datetime.now(UTC):%H:%M:%S}] {text}", flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))] if ordered else float("nan")


class Queue:
    """Messages waiting in the broker: files in the filesystem broker's folder, or the Redis list."""

    def __init__(self) -> None:
        from django.conf import settings

        self.name = settings.CELERY_TASK_DEFAULT_QUEUE
        self.redis = None
        if settings.CELERY_BROKER_URL.startswith("redis"):
            import redis

            self.redis = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        else:
            self.folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])

    def depth(self) -> int:
        if self.redis is not None:
            return int(self.redis.llen(self.name))
        return sum(1 for name in os.listdir(self.folder) if name.endswith(".msg"))


def memory_mb(root: psutil.Process) -> float:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def staleness(since) -> dict[str, float | None]:
    """Seconds since each enabled account's last successful sync (None before its first one after ``since``,
    the soak's start: a database left by an earlier run starts stale)."""
    from django.db.models import Max
    from django.utils import timezone

    from channels.models import ChannelAccount, SyncRun, SyncStatus

    last = dict(
        SyncRun.objects.filter(status__in=[SyncStatus.SUCCEEDED, SyncStatus.PARTIAL])
        .values("account_id")
        .annotate(last=Max("finished_at"))
        .values_list("account_id", "last")
    )
    now = timezone.now()
    out = {}
    for pk, name in ChannelAccount.objects.filter(is_enabled=True).values_list("pk", "name"):
        out[name] = (now - last[pk]).total_seconds() if pk in last and last[pk] >= since else None
    return out


def wait_for_web(stack: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.poll() is not None:
            raise SystemExit(f"the demo stopped during start-up (exit {stack.returncode}); see {SOAK_DIR}/stack.log")
        try:
            httpx.get(f"http://127.0.0.1:{PORT}/login/", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(2)
    raise SystemExit("the demo did not answer within 10 minutes")


def shopify() -> tuple[int, str]:
    from channels.models import ChannelAccount, ChannelKind
    from channels.registry import BY_KIND

    account = ChannelAccount.objects.get(kind=ChannelKind.SHOPIFY, name__startswith="shopify")
    return account.pk, f"http://127.0.0.1:{BY_KIND[ChannelKind.SHOPIFY].demo_port}"


def webhook(order_id: int, updated_at: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {"id": order_id, "admin_graphql_api_id": f"gid://shopify/Order/{order_id}", "updated_at": updated_at}
    ).encode()
    digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).digest()
    return body, {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/updated",
        "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
        "X-Shopify-Shop-Domain": "waybill-sandbox.myshopify.com",
        "X-Shopify-API-Version": "2026-10",
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
    }


def shopify_orders() -> list[tuple[int, str]]:
    """(Shopify order id, the update Waybill holds, as the webhook states it) for the demo's Shopify orders."""
    from orders.models import Order

    account_id, _ = shopify()
    rows = Order.objects.filter(account_id=account_id, source_updated_at__isnull=False).values_list(
        "external_id", "source_updated_at"
    )
    out = []
    for external_id, updated in rows:
        number = external_id.rsplit("/", 1)[-1]
        if number.isdigit():
            out.append((int(number), updated.isoformat()))
    return out


def burst() -> dict:
    """20 webhooks one at a time, then BURST at CONCURRENCY at once (latencies in ms): deliveries with
    distinct ids of updates Waybill already holds (what a channel re-sends after an outage, the usual
    burst); and, at the same moment, CHANGED orders changed at the Shopify sandbox, whose own webhooks need a
    read from the channel each."""
    account_id, sandbox = shopify()
    url = f"http://127.0.0.1:{PORT}/webhooks/shopify/{account_id}/"
    orders = shopify_orders()
    client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=CONCURRENCY))

    def send(index: int) -> tuple[float, int]:
        order_id, updated = orders[index % len(orders)]
        body, headers = webhook(order_id, updated)
        start = time.perf_counter()
        response = client.post(url, content=body, headers=headers)
        return (time.perf_counter() - start) * 1000, response.status_code

    single = [send(i) for i in range(20)]
    changed = httpx.post(f"{sandbox}/_sandbox/mutate", json={"count": CHANGED}, timeout=30).status_code
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(pool.map(send, range(20, 20 + BURST)))
    elapsed = time.perf_counter() - started
    client.close()
    codes = Counter(code for _, code in single + results)
    return {
        "single_p50": percentile([ms for ms, _ in single], 50),
        "p50": percentile([ms for ms, _ in results], 50),
        "p99": percentile([ms for ms, _ in results], 99),
        "max": max(ms for ms, _ in results),
        "seconds": elapsed,
        "codes": dict(codes),
        "sent": len(single) + len(results),
        "orders_changed_at_sandbox": CHANGED if changed == 200 else f"mutate answered {changed}",
    }


def duplicates() -> dict[str, int]:
    """Rows or effects found more than once (0 everywhere is the goal)."""
    from django.db import connection

    from channels.registry import MARKETPLACES

    found: dict[str, int] = {}
    checks = {
        "orders": "SELECT count(*) - count(DISTINCT (account_id, external_id)) FROM orders_order",
        "lines": "SELECT count(*) - count(DISTINCT (order_id, external_id)) FROM orders_orderline",
        "inbound events": "SELECT count(*) - count(DISTINCT (account_id, dedupe_key)) FROM channels_inboundevent",
        "outbox messages": "SELECT count(*) - count(DISTINCT (account_id, kind, dedupe_key))"
        " FROM channels_outboxmessage",
        "acknowledgements queued": "SELECT count(*) - count(DISTINCT (account_id, payload->>'order_external_id'))"
        " FROM channels_outboxmessage WHERE kind = 'acknowledge'",
    }
    with connection.cursor() as cursor:
        for name, sql in checks.items():
            cursor.execute(sql)
            found[name] = cursor.fetchone()[0]
    for marketplace in MARKETPLACES:
        try:
            state = httpx.get(f"http://127.0.0.1:{marketplace.demo_port}/_sandbox/state", timeout=10).json()
        except (httpx.HTTPError, ValueError):
            found[f"{marketplace.kind} sandbox unreachable"] = 1
            continue
        for what in ("shipments", "cancellations"):
            records = Counter(json.dumps(record, sort_keys=True, default=str) for record in state.get(what) or [])
            found[f"{marketplace.kind} {what} at the sandbox"] = sum(n - 1 for n in records.values() if n > 1)
    return found


def _tail(external_id: str | None) -> str:
    """The sandbox's order id in Waybill's external id (Shopify's is a gid://shopify/Order/<id>)."""
    return (external_id or "").rsplit("/", 1)[-1]


def drifted_orders() -> dict[str, set[str]]:
    """Per channel kind, the orders its sandbox shipped or cancelled behind Waybill's back."""
    from channels.registry import MARKETPLACES

    out: dict[str, set[str]] = {}
    for marketplace in MARKETPLACES:
        try:
            state = httpx.get(f"http://127.0.0.1:{marketplace.demo_port}/_sandbox/state", timeout=10).json()
        except (httpx.HTTPError, ValueError):
            continue
        drifted = state.get("drifted") or {}
        out[marketplace.kind] = {
            _tail(str(i)) for name in ("cancel", "cancel_lines", "ship") for i in drifted.get(name) or []
        }
    return out


def outbox_health() -> dict[str, int]:
    from datetime import timedelta

    from django.db.models import Count
    from django.utils import timezone

    from channels.models import InboundEvent, InboundKind, InboundStatus, OutboxMessage, OutboxStatus

    by_status = dict(OutboxMessage.objects.values_list("status").annotate(n=Count("pk")).order_by())
    # A send about an order the channel changed first is refused there, as the marketplace would, and parked with
    # a case for ops: the order shipped or cancelled behind Waybill's back (the sandboxes' injected drift), or
    # cancelled by its buyer at the channel while Waybill shipped it (the sync saw the cancel after the send).
    # Counted apart from the others, which would be Waybill's own failures.
    drifted = drifted_orders()
    parked = list(
        OutboxMessage.objects.filter(status=OutboxStatus.PARKED).values_list(
            "account__kind", "order__external_id", "order__channel_status"
        )
    )
    after_drift = sum(1 for kind, external_id, _ in parked if _tail(external_id) in drifted.get(kind, set()))
    cancelled_there = sum(
        1
        for kind, external_id, status in parked
        if _tail(external_id) not in drifted.get(kind, set()) and "CANCEL" in (status or "").upper()
    )
    for name, count in (
        ("parked after drift", after_drift),
        ("parked, cancelled at the channel first", cancelled_there),
    ):
        if count:
            by_status[OutboxStatus.PARKED] -= count
            by_status[name] = count
    stuck = OutboxMessage.objects.filter(
        status__in=[OutboxStatus.PENDING, OutboxStatus.SENDING],
        next_attempt_at__lt=timezone.now() - timedelta(minutes=2),
    ).count()
    # The demo keeps running: an event that arrived a moment ago is not waiting, one older than 2 minutes is.
    waiting = InboundEvent.objects.filter(
        kind=InboundKind.WEBHOOK,
        status=InboundStatus.RECEIVED,
        received_at__lt=timezone.now() - timedelta(minutes=2),
    ).count()
    return {
        **{f"outbox {k}": v for k, v in by_status.items()},
        "outbox stuck": stuck,
        "webhooks received over 2 minutes ago": waiting,
    }


def _stop(*_) -> None:
    raise SystemExit(1)


def fresh_database() -> str:
    """Drop and create the soak's database (WAYBILL_DATABASE_NAME) on the server the environment names."""
    import django

    django.setup()
    from django.db import connection

    name = connection.settings_dict["NAME"]
    with connection._nodb_cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    return name


def main() -> int:
    # Ctrl-C or a TERM stops the demo it started (a background job starts with SIGINT ignored).
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    shutil.rmtree(SOAK_DIR / "broker", ignore_errors=True)
    SOAK_DIR.mkdir(parents=True, exist_ok=True)
    log = (SOAK_DIR / "stack.log").open("w")
    say(f"a fresh database: {fresh_database()}")
    say(f"starting the demo on :{PORT} for {MINUTES:g} minutes (burst of {BURST} webhooks at minute {BURST_AT:g})")
    stack = subprocess.Popen(
        [sys.executable, "-m", "config.stack"],
        cwd=BASE_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_web(stack)
        import django

        django.setup()
        from django.db import connection

        from channels.models import ChannelAccount, InboundEvent, InboundKind, InboundStatus

        root = psutil.Process(stack.pid)
        queue = Queue()
        interval = {a.name: a.sync_interval_seconds for a in ChannelAccount.objects.filter(is_enabled=True)}
        started = time.monotonic()
        from django.utils import timezone

        since = timezone.now()
        say(f"demo up after start-up; sampling every {SAMPLE_EVERY:g} s")
        depths: list[tuple[float, int]] = []
        worst: dict[str, float] = {}
        memory: list[tuple[float, float]] = []
        webhook_figures = None
        burst_events_before = 0
        while (elapsed := time.monotonic() - started) < MINUTES * 60:
            if stack.poll() is not None:
                say(f"the demo stopped (exit {stack.returncode})")
                return 1
            depths.append((elapsed, queue.depth()))
            memory.append((elapsed, memory_mb(root)))
            for name, seconds in staleness(since).items():
                if seconds is not None:
                    worst[name] = max(worst.get(name, 0.0), seconds)
            connection.close()
            if webhook_figures is None and elapsed >= BURST_AT * 60:
                burst_events_before = InboundEvent.objects.filter(kind=InboundKind.WEBHOOK).count()
                say("sending the webhook burst")
                webhook_figures = burst()
                say(f"burst sent: {webhook_figures}")
            if int(elapsed) % 60 < SAMPLE_EVERY:
                say(
                    f"minute {elapsed / 60:4.1f}: queue {depths[-1][1]}, memory {memory[-1][1]:.0f} MB, "
                    f"worst staleness so far {max(worst.values(), default=0):.0f} s"
                )
            time.sleep(SAMPLE_EVERY)
        # Drains finish: wait up to 2 minutes for every received webhook event.
        deadline = time.monotonic() + 120
        while (
            time.monotonic() < deadline
            and InboundEvent.objects.filter(kind=InboundKind.WEBHOOK, status=InboundStatus.RECEIVED).exists()
        ):
            time.sleep(5)
        webhook_events = InboundEvent.objects.filter(kind=InboundKind.WEBHOOK).count() - burst_events_before
        dupes = duplicates()
        health = outbox_health()
        at_start = next((mb for t, mb in memory if t >= 120), memory[0][1])
        max_depth = max(depth for _, depth in depths)
        goals = {
            f"max queue depth {max_depth} <= {MAX_QUEUE}": max_depth <= MAX_QUEUE,
            "every account's staleness within twice its interval": all(
                name in worst and worst[name] <= 2 * interval[name] for name in interval
            ),
            "webhook p99 < 1 s at 50 concurrent": bool(webhook_figures) and webhook_figures["p99"] < 1000,
            "every burst webhook answered 200": bool(webhook_figures) and webhook_figures["codes"] == {200: 20 + BURST},
            f"the burst stored {20 + BURST} events": webhook_events >= 20 + BURST,
            "memory at the end <= 1.5x after start-up": memory[-1][1] <= 1.5 * at_start,
            "nothing duplicated": not any(dupes.values()),
            "no process died": "starting it again" not in (SOAK_DIR / "stack.log").read_text(errors="replace"),
            "no outbox message parked or stuck, no webhook left received": not health.get("outbox parked")
            and not health["outbox stuck"]
            and not health["webhooks received over 2 minutes ago"],
        }
        print("\n== soak figures ==")
        print(f"duration: {MINUTES:g} min; samples: {len(depths)}")
        print(f"queue depth: max {max_depth}, median {statistics.median(d for _, d in depths):.0f}")
        print("max sync staleness per account (s, interval):")
        for name in sorted(interval):
            print(f"  {name}: {worst.get(name, float('nan')):.0f} (interval {interval[name]})")
        if webhook_figures:
            print(
                f"webhooks: one at a time p50 {webhook_figures['single_p50']:.0f} ms; {BURST} at {CONCURRENCY} "
                f"concurrent: p50 {webhook_figures['p50']:.0f} ms, p99 {webhook_figures['p99']:.0f} ms, "
                f"max {webhook_figures['max']:.0f} ms, {webhook_figures['seconds']:.1f} s in all; "
                f"codes {webhook_figures['codes']}; events stored {webhook_events}"
            )
        print(f"memory (all demo processes): {at_start:.0f} MB at minute 2, {memory[-1][1]:.0f} MB at the end")
        per_minute = Counter(
            line[1:17]
            for line in (SOAK_DIR / "stack.log").read_text(errors="replace").splitlines()
            if line.startswith("[") and "] received" in line
        )
        if per_minute:
            rates = sorted(n / 60 for n in list(per_minute.values())[1:-1] or per_minute.values())
            print(
                f"messages taken by the worker: median {statistics.median(rates):.1f}/s,"
                f" busiest minute {rates[-1]:.1f}/s"
            )
        restarts = (SOAK_DIR / "stack.log").read_text(errors="replace").count("starting it again")
        print(f"processes restarted by the supervisor: {restarts}")
        print(f"duplicates: {dupes}")
        print(f"outbox and webhooks at the end: {health}")
        print("goals:")
        for goal, met in goals.items():
            print(f"  [{'ok' if met else 'MISSED'}] {goal}")
        return 0 if all(goals.values()) else 1
    finally:
        if stack.poll() is None:
            stack.send_signal(signal.SIGTERM)
            try:
                stack.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(stack.pid, signal.SIGKILL)
        say(f"demo stopped; its log is {SOAK_DIR / 'stack.log'}")


if __name__ == "__main__":
    sys.exit(main())
