"""The console and the REST API at a million orders (issue #22, item 5).

A database of its own on the benchmark's PostgreSQL server (``<database>_1m``) is migrated and seeded by
``manage.py seed_million`` (1,000,000 orders, 3,000,000 lines, 50 nodes, 20,000 SKUs, 100,000 open exception
cases); a database already seeded is reused, and the seeding time of that earlier run is printed. gunicorn
serves it as the demo does (2 gthread workers, 8 threads, persistent connections) with the bare floor added: a
plain Django view listing the same newest 50 orders behind the same middleware. One client with an Ops agent's
session requests every page in turn, round after round (noise hits every page alike), and each page's p50 and
p95 are printed beside the floor's of the same run, as a ratio. A probe process counts each page's queries
and EXPLAINs them: the index each uses, and any sequential scan of an order table.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from django.conf import settings

from tests.benchmarks.results import write_section

pytestmark = [pytest.mark.benchmark]

BASE_DIR = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SECTION = "million-orders"
SEED_RECORD = BASE_DIR / "var" / "bench_million_seed.json"
WARMUP_ROUNDS = 5
ROUNDS = int(os.environ.get("WAYBILL_BENCH_MILLION_ROUNDS", "60"))
FLOOR = "bare list (floor)"
GOAL_RATIO = 2.0


def _db_params(name: str) -> dict:
    db = settings.DATABASES["default"]
    params = {"dbname": name, "user": db.get("USER") or None, "password": db.get("PASSWORD") or None}
    params |= {"host": db.get("HOST") or None, "port": db.get("PORT") or None, "autocommit": True}
    return {k: v for k, v in params.items() if v is not None}


def _ensure_database(name: str) -> None:
    with psycopg.connect(**_db_params("postgres")) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


def _env(name: str) -> dict[str, str]:
    env = dict(os.environ)
    env |= {"WAYBILL_DATABASE_NAME": name, "DJANGO_SETTINGS_MODULE": "tests.benchmarks.million_settings"}
    env |= {"CONN_MAX_AGE": "600", "DEBUG": "0"}
    return env


def _manage(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _seed_streamed(env: dict) -> str:
    """Runs seed_million, printing its progress lines as they come; returns its output."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "seed_million"], cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, text=True
    )
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    if proc.wait():
        raise AssertionError(f"manage.py seed_million failed:\n{''.join(lines)}")
    return "".join(lines)


def _seed(name: str, env: dict) -> str:
    _manage(env, "migrate", "--no-input", "-v0")
    started = time.perf_counter()
    output = _seed_streamed(env)
    if output.startswith("already seeded"):
        if SEED_RECORD.exists() and (record := json.loads(SEED_RECORD.read_text())).get("database") == name:
            return f"reused the database seeded {record['at']} in {record['seconds']:,.0f} s (seed_million)"
        return "reused a database seeded outside this benchmark (its seeding time was not recorded)"
    seconds = time.perf_counter() - started
    SEED_RECORD.parent.mkdir(exist_ok=True)
    at = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    SEED_RECORD.write_text(json.dumps({"database": name, "seconds": seconds, "at": at, "output": output}))
    return f"seeded in this run: {seconds:,.0f} s (seed_million, VACUUM ANALYZE included)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gunicorn(env: dict, port: int) -> subprocess.Popen:
    cmd = [str(BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "8"]
    cmd += ["--worker-class", "gthread", "--graceful-timeout", "5"]
    return subprocess.Popen(cmd, cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_until_up(client: httpx.Client, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("gunicorn exited before answering")
        try:
            client.get("/login/")
            return
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError("gunicorn did not answer within 60 s")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _pg_version(name: str) -> str:
    with psycopg.connect(**_db_params(name)) as conn:
        return conn.execute("SHOW server_version").fetchone()[0].split()[0]


def test_console_and_api_pages_at_a_million_orders():
    name = f"{settings.DATABASES['default']['NAME']}_1m"
    _ensure_database(name)
    env = _env(name)
    seeding = _seed(name, env)
    probe = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.million_probe"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    facts = json.loads(probe.stdout)
    pages = facts["pages"]
    port = _free_port()
    proc = _gunicorn(env, port)
    timings: dict[str, list[float]] = {page: [] for page in pages}
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", cookies={"sessionid": facts["session"]}, timeout=120
        ) as client:
            _wait_until_up(client, proc)
            for round_no in range(WARMUP_ROUNDS + ROUNDS):
                for page, fact in pages.items():
                    started = time.perf_counter()
                    response = client.get(fact["url"])
                    elapsed = (time.perf_counter() - started) * 1000
                    assert response.status_code == 200, (page, response.status_code)
                    if round_no >= WARMUP_ROUNDS:
                        timings[page].append(elapsed)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    floor_p50, floor_p95 = statistics.median(timings[FLOOR]), _pct(timings[FLOOR], 0.95)
    rows = []
    for page, values in timings.items():
        p50, p95 = statistics.median(values), _pct(values, 0.95)
        fact = pages[page]
        seq = ", ".join(fact["seq_scans"]) or "none"
        rows.append(
            f"| {page} | {fact['queries']} | {p50:.1f} ms | {p95:.1f} ms | {p95 / floor_p95:.2f}x "
            f"| {'yes' if p95 <= GOAL_RATIO * floor_p95 else 'no'} | {', '.join(fact['indexes'])} | {seq} |"
        )
    body = f"""## A million orders: console and REST pages (issue #22, item 5)

Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `make bench` (`-k million`), PostgreSQL {_pg_version(name)}.
Data: 1,000,000 orders, 3,000,000 lines, 50 nodes, 20,000 SKUs, 100,000 open exception cases; {seeding}.
gunicorn, 2 gthread workers x 8 threads, persistent connections; one client with an Ops agent's session
requests every page in turn, {ROUNDS} rounds after {WARMUP_ROUNDS} of warm-up. The floor: a plain Django view
listing the same newest 50 orders behind the same middleware (session login), p50 {floor_p50:.1f} ms,
p95 {floor_p95:.1f} ms in this run. Goal: each page's p95 at most {GOAL_RATIO:g}x the floor's, with a constant
number of queries (tests/orders/test_million_pages.py asserts the counts do not grow with rows).

| Page | Queries | p50 | p95 | p95 / floor | <= {GOAL_RATIO:g}x | Indexes in its EXPLAIN | Seq scan of an order table |
|---|---:|---:|---:|---:|:---:|---|---|
{chr(10).join(rows)}

Noise: a shared 2-core machine (client, gunicorn and PostgreSQL on the same cores); compare ratios.
"""
    print("\n" + body)
    for page, fact in pages.items():
        print(f"--- EXPLAIN, heaviest query of {page} ({fact['url']}):\n{fact['heaviest_explain']}\n")
    write_section(SECTION, body)
