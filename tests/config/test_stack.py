"""The demo's supervisor: a process that dies is started again with a back-off and a message; the others run on."""

from __future__ import annotations

import os
import sys
import time

import psutil

from config.stack import Supervisor

DIES = [sys.executable, "-c", "import sys, time; time.sleep(0.1); sys.exit(3)"]
STAYS = [sys.executable, "-c", "import time; time.sleep(60)"]
# Starts a grandchild (as Celery starts its pool) and dies without stopping it.
ORPHANS = [
    sys.executable,
    "-c",
    "import subprocess, sys, time, os; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
    " open(os.environ['ORPHAN_FILE'], 'w').write(str(p.pid)); time.sleep(0.3); os._exit(9)",
]


def _run(supervisor: Supervisor, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        supervisor.check()
        time.sleep(0.05)


def test_a_process_that_dies_is_started_again_with_a_growing_back_off_and_the_others_run_on():
    # given: one process that keeps dying, one that stays
    said = []
    supervisor = Supervisor({"dies": DIES, "stays": STAYS}, say=said.append, first_delay=0.2, max_delay=0.4)
    supervisor.start()
    stays = supervisor.children["stays"].proc.pid
    try:
        # when: it runs a few seconds
        _run(supervisor, 3.0)
        # then: the dying one was started again several times, waiting 0.2 s, then 0.4 s (the cap)
        dies = supervisor.children["dies"]
        assert dies.restarts >= 3 and len(set(dies.history)) == dies.restarts + 1
        exits = [line for line in said if line.startswith("dies exited with 3")]
        assert exits[0].endswith("starting it again in 0.2 s")
        assert all(line.endswith("starting it again in 0.4 s") for line in exits[1:])
        # and: the other one was never touched
        assert supervisor.children["stays"].proc.pid == stays and supervisor.children["stays"].restarts == 0
    finally:
        supervisor.stop(timeout=5)
    assert not psutil.pid_exists(stays) or psutil.Process(stays).status() == psutil.STATUS_ZOMBIE


def test_what_a_dead_process_left_running_in_its_group_is_stopped(tmp_path, monkeypatch):
    # given: a process that starts a child (as Celery's main process starts its pool) and is killed
    orphan_file = tmp_path / "orphan"
    monkeypatch.setenv("ORPHAN_FILE", str(orphan_file))
    supervisor = Supervisor({"worker": ORPHANS}, say=lambda _: None, first_delay=30)
    supervisor.start()
    try:
        deadline = time.monotonic() + 10
        while supervisor.children["worker"].restart_at is None and time.monotonic() < deadline:
            supervisor.check()
            time.sleep(0.05)
        # then: its child did not outlive it
        orphan = int(orphan_file.read_text())
        time.sleep(0.2)
        assert not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE
    finally:
        supervisor.stop(timeout=5)
    assert os.environ["ORPHAN_FILE"]


def test_the_stock_pushes_have_a_worker_of_their_own_and_every_process_sends_them_there(tmp_path):
    import subprocess

    from config.stack import BASE_DIR, processes, push_queue

    # given the demo's processes
    pusher = processes()["pusher"]
    # then the pusher is a Celery worker taking only the pushes' queue, one task at a time
    assert pusher[pusher.index("--queues") + 1] == push_queue() and push_queue().endswith(".push")
    assert pusher[pusher.index("--concurrency") + 1] == "1"
    # and a process started with WAYBILL_PUSH_QUEUE (as the stack starts them) routes the push tasks there and
    # everything else to the default queue, which the main worker takes
    script = (
        "import django; django.setup(); from config.celery import app; r = app.amqp.router.route;"
        "print(r({}, 'channels.tasks.channel_availability_recompute_task')['queue'].name,"
        " r({}, 'channels.tasks.inventory_push_account_task')['queue'].name,"
        " r({}, 'channels.tasks.channels_sync_account_task')['queue'].name)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "WAYBILL_PUSH_QUEUE": "q.push"}
    env.pop("WAYBILL_CELERY_QUEUE", None)
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["q.push", "q.push", "celery"]
