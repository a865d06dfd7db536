"""Chaos scenarios (issue #22): processes killed, the database restarted, the broker stopped, two beats.

Tests marked ``chaos`` take minutes and run with `make chaos` (WAYBILL_CHAOS=1) only; the others in this folder
are short enough for every CI run. Each prints its figures (lost, duplicated, effects counted at the sandbox).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.channels.conftest import (  # noqa: F401 - fixtures shared with channels
    fast_backoff,
    serve_sandbox,
    shopify_account,
    shopify_sandbox,
    shopify_schema_built,
    skus,
)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("WAYBILL_CHAOS") == "1":
        return
    skip = pytest.mark.skip(reason="chaos: run with `make chaos`")
    for item in items:
        if item.get_closest_marker("chaos") is not None:
            item.add_marker(skip)


def figures(name: str, **values: object) -> None:
    """One line a person (and RESULTS.md) can read: the scenario's counts."""
    print(f"\n[chaos] {name}: " + ", ".join(f"{key}={value}" for key, value in values.items()), flush=True)


class OwnRedis:
    """A redis-server of the test's own on a free port (never the machine's shared one), stopped and started."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        server = shutil.which("redis-server") or "redis-server"
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def own_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed for the broker scenarios (apt-get install redis-server)")
    redis = OwnRedis(tmp_path)
    redis.start()
    yield redis
    redis.stop()
