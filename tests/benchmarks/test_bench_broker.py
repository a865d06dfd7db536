"""The embedded broker's headroom: how many tasks a second one demo worker takes through Kombu's filesystem
transport (the broker when REDIS_URL is unset), with Kombu's default polling interval (1 s) and the one
settings.py sets (0.1 s), and through Redis when REDIS_URL is set, beside the demo's steady load.

Each run starts a real worker (``celery -A config worker --concurrency 2``, as the demo's) on a broker
folder or queue of its own, publishes N no-op tasks (``celery.accumulate``) and times how long the queue
takes to empty: throughput through the broker and Celery, not the tasks' own work.

The demo's steady load (beat's entries plus each account's sync, drains and relays; tests/benchmarks/soak.py
counts it from the worker's log) is about 3 messages a second; 5x headroom asks for 15 a second.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.background import BASE_DIR, wait_for

pytestmark = pytest.mark.benchmark

TASKS = 2000
DEMO_STEADY_LOAD = 3.0  # messages a second, counted in the soak's worker log


def _worker(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--concurrency",
            "2",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _measure(env: dict, depth) -> dict:
    script = (
        "import os, sys, time\n"
        "from config.celery import app\n"
        "n = int(sys.argv[1])\n"
        "with app.producer_or_acquire() as producer:\n"
        "    for _ in range(n):\n"
        "        app.send_task('celery.accumulate', args=[1], producer=producer)\n"
    )
    worker = _worker(env)
    try:
        # The worker is up once it takes a first message.
        subprocess.run([sys.executable, "-c", script, "1"], cwd=BASE_DIR, env=env, check=True)
        wait_for(lambda: depth() == 0, timeout=120, what="the worker to start")
        subprocess.run([sys.executable, "-c", script, str(TASKS)], cwd=BASE_DIR, env=env, check=True)
        start = time.perf_counter()
        wait_for(lambda: depth() == 0, timeout=600, every=0.05)
        elapsed = time.perf_counter() - start
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    return {"per_second": TASKS / elapsed}


def _base_env(tmp: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "WAYBILL_TESTING"}
    env.update(WAYBILL_CELERY_QUEUE=f"bench-{uuid.uuid4().hex[:8]}", WAYBILL_BROKER_DIR=str(tmp), **extra)
    return env


def _folder_depth(tmp: Path):
    queue = tmp / "queue"
    return lambda: sum(1 for name in os.listdir(queue) if name.endswith(".msg"))


def test_broker_throughput(tmp_path):
    rows = []
    for polling in ("1.0", "0.1"):
        folder = tmp_path / f"fs-{polling}"
        env = _base_env(folder, WAYBILL_BROKER_POLLING_INTERVAL=polling)
        env.pop("REDIS_URL", None)
        figures = _measure(env, _folder_depth(folder))
        rows.append((f"filesystem, polling {polling} s", figures))
    if os.environ.get("REDIS_URL"):
        import redis

        env = _base_env(tmp_path / "unused")
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        figures = _measure(env, lambda: client.llen(env["WAYBILL_CELERY_QUEUE"]))
        rows.append(("redis", figures))
    print(f"\nBroker throughput: {TASKS} no-op tasks through one worker (--concurrency 2)")
    print(f"{'transport':<28} {'tasks/s':>9} {'headroom vs the demo':>21}")
    for name, figures in rows:
        print(f"{name:<28} {figures['per_second']:>9.0f} {figures['per_second'] / DEMO_STEADY_LOAD:>20.0f}x")
    assert rows
