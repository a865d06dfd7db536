"""Two beat processes started by mistake: one holds the leader lock and sends the schedule, the other stands by
and takes over when the first dies (config/beat.py), so every entry is sent once per tick, not twice."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from django.db import connection, connections

from config.beat import BeatLeadership
from tests.background import BASE_DIR, wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]

SENT = re.compile(r"Scheduler: Sending due task (\S+)")


def test_one_process_holds_the_leader_lock_and_another_takes_it_when_it_is_released():
    first, second = BeatLeadership(), BeatLeadership()
    try:
        assert first.acquire() is True
        assert second.acquire() is False
        assert first.acquire() is True  # held, not taken twice
        # when the leader's session ends (its process died, or the server dropped it)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [first.conn.info.backend_pid])
        # then the standby takes the lock, and the old leader finds it lost rather than believing it leads
        assert wait_for(second.acquire, timeout=10, what="the standby to take the lock")
        assert first.acquire() is False
    finally:
        first.release()
        second.release()


def _beat(tmp_path: Path, name: str, queue: str) -> tuple[subprocess.Popen, Path]:
    env = {key: value for key, value in os.environ.items() if key not in {"WAYBILL_TESTING", "REDIS_URL"}}
    env.update(
        WAYBILL_DATABASE_NAME=connection.settings_dict["NAME"],
        WAYBILL_BROKER_DIR=str(tmp_path / "broker"),
        WAYBILL_CELERY_QUEUE=queue,
        CELERY_TASK_ALWAYS_EAGER="0",
    )
    log = tmp_path / f"{name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO", "-s", str(tmp_path / name)],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log


def _sent(log: Path) -> list[str]:
    return SENT.findall(log.read_text(errors="replace"))


@pytest.mark.concurrency
def test_two_beat_processes_send_the_schedule_once(tmp_path):
    connections.close_all()
    queue = f"test-beat-{uuid.uuid4().hex[:8]}"
    procs = []
    try:
        # given: two beat processes on one database, started a moment apart
        first, first_log = _beat(tmp_path, "beat-a", queue)
        procs.append(first)
        wait_for(lambda: _sent(first_log), timeout=60, what="the first beat to send")
        second, second_log = _beat(tmp_path, "beat-b", queue)
        procs.append(second)
        wait_for(lambda: "standing by" in second_log.read_text(), timeout=60, what="the second beat to stand by")
        # when: both run past the markers' expiry (20 s), after which a second sender would send again
        time.sleep(25)
        # then: the schedule came from the first alone
        assert len(_sent(first_log)) > 10
        assert _sent(second_log) == [], "the second beat sent while the first held the lock"
        # and: when the first dies, the second takes over within seconds and sends
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        wait_for(lambda: _sent(second_log), timeout=30, what="the standby to take over")
        assert "holds the leader lock and schedules" in second_log.read_text()
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
            with contextlib.suppress(psutil.Error):
                psutil.Process(proc.pid).kill()
        connections.close_all()
