"""The demo's supervised worker and beat as real processes, in the running test's database: the kill tests' runner.

``running_stack(tmp_path)`` starts ``python -m config.stack --only worker,beat --no-setup`` with a broker
folder and a queue of its own (so it takes only this test's tasks, even beside a running demo or another
test run on the same Redis), not eager, against the test database (committed data: transactional tests);
``StackProcesses`` finds its worker and beat; everything it started is killed when the block ends. ``only`` names
other processes of config.stack to run (the flash-sale benchmark adds ``web``, on WAYBILL_PORT); ``queue`` names
the queue (a caller that sends tasks to the stack's worker itself).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
from django.db import connection, connections

BASE_DIR = Path(__file__).resolve().parent.parent


def wait_for(check: Callable[[], object], *, timeout: float, every: float = 0.25, what: str = "") -> object:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or check}")
        time.sleep(every)


class StackProcesses:
    def __init__(self, proc: subprocess.Popen, log: Path) -> None:
        self.proc = proc
        self.log = log

    def _leader(self, role: str) -> psutil.Process | None:
        """The main process of the supervisor's child ``role`` (worker or beat), if one is alive."""
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return None
        for child in children:
            with contextlib.suppress(psutil.Error):
                # Celery retitles its processes: "[celeryd: …:MainProcess] … worker …", "[celery beat] … beat …".
                cmdline = " ".join(child.cmdline())
                if f" {role} " in f" {cmdline} " and child.status() != psutil.STATUS_ZOMBIE:
                    return child
        return None

    def pid(self, role: str) -> int | None:
        leader = self._leader(role)
        return leader.pid if leader else None

    def pool_pids(self) -> list[int]:
        leader = self._leader("worker")
        return [child.pid for child in leader.children()] if leader else []

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def _everything_under(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@contextlib.contextmanager
def running_stack(
    tmp_path: Path, *, only: str = "worker,beat", queue: str | None = None, **env: str
) -> Iterator[StackProcesses]:
    name = connection.settings_dict["NAME"]
    connections.close_all()
    child_env = {key: value for key, value in os.environ.items() if key not in {"WAYBILL_TESTING"}}
    child_env.update(
        WAYBILL_DATABASE_NAME=name,
        WAYBILL_BROKER_DIR=str(tmp_path / "broker"),
        WAYBILL_CELERY_QUEUE=queue or f"test-{uuid.uuid4().hex[:12]}",
        WAYBILL_WORKER_CONCURRENCY="2",
        CELERY_TASK_ALWAYS_EAGER="0",
        **env,
    )
    log = tmp_path / "stack.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "config.stack", "--only", only, "--no-setup"],
            cwd=BASE_DIR,
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = StackProcesses(proc, log)
    try:
        yield stack
    finally:
        started = _everything_under(proc.pid)
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        for leftover in [*started, *_everything_under(proc.pid)]:
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        connections.close_all()
