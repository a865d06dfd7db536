"""`make demo`: migrate, create the admin login, load demo data, then run web + worker + beat
(and the sandbox channel servers, where they exist) together until Ctrl-C; stop everything after.

The embedded database is started and stopped around this by `python -m config.embedded_pg run`.

A process that dies is started again (after 1 s, doubling to 30 s while it keeps dying within a minute
of its start), with a message; the others keep running. Celery's pool processes of a worker whose main
process was killed are stopped first (each child runs in a process group of its own), so they cannot hold
an account's lock or a task after their parent is gone.

The stock pushes have a worker of their own ("pusher", settings.WAYBILL_PUSH_QUEUE); without it in --only
they run on the one worker's queue.

`python -m config.stack --only worker,beat --no-setup` runs just those processes, supervised the same way,
against whatever database and broker the environment names (the kill tests and the soak use it).
WAYBILL_PORT moves the web server; WAYBILL_DEMO_PORT_OFFSET moves the sandboxes (channels.registry).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent
HOST = os.environ.get("WAYBILL_HOST", "127.0.0.1")
PORT = os.environ.get("WAYBILL_PORT", "8000")

# Web capacity for webhooks: a burst of deliveries waits on the database, not on the CPU, so each web
# process serves several requests at once (threads); README's production section sizes it per core.
WEB_WORKERS = os.environ.get("WAYBILL_WEB_WORKERS", "2")
WEB_THREADS = os.environ.get("WAYBILL_WEB_THREADS", "8")
WORKER_CONCURRENCY = os.environ.get("WAYBILL_WORKER_CONCURRENCY", "3")


def push_queue() -> str:
    """The stock pushes' own queue (settings.WAYBILL_PUSH_QUEUE), served by the "pusher" worker alone: a
    channel read asleep in its rate-limit wait, or a long sync, never holds up the push of a sold-out SKU."""
    return os.environ.get("WAYBILL_PUSH_QUEUE") or f"{os.environ.get('WAYBILL_CELERY_QUEUE', 'celery')}.push"


RESTART_FIRST_DELAY = 1.0
RESTART_MAX_DELAY = 30.0
# A process that ran this long before dying starts again after the first delay.
HEALTHY_AFTER = 60.0


def _manage(*args: str) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=BASE_DIR, check=True)


def processes() -> dict[str, list[str]]:
    procs: dict[str, list[str]] = {}
    sandbox = BASE_DIR / "channels" / "management" / "commands" / "run_sandboxes.py"
    if sandbox.exists():
        # First: the sandboxes point the demo accounts at themselves (webhooks, locations) before any push.
        procs["sandboxes"] = [PY, "manage.py", "run_sandboxes", "--webhook-base", f"http://{HOST}:{PORT}"]
    procs |= {
        "web": [
            str(BIN / "gunicorn"),
            "config.wsgi",
            "--bind",
            f"{HOST}:{PORT}",
            "--workers",
            WEB_WORKERS,
            "--threads",
            WEB_THREADS,
            "--worker-class",
            "gthread",
            "--access-logfile",
            "-",
            "--graceful-timeout",
            "5",
        ],
        "worker": [
            str(BIN / "celery"),
            "-A",
            "config",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            WORKER_CONCURRENCY,
            "--without-gossip",
            "--without-mingle",
        ],
        "pusher": [
            str(BIN / "celery"),
            "-A",
            "config",
            "worker",
            "--queues",
            push_queue(),
            "--hostname",
            "push@%h",
            "--loglevel",
            "INFO",
            "--concurrency",
            "1",
            "--without-gossip",
            "--without-mingle",
        ],
        "beat": [str(BIN / "celery"), "-A", "config", "beat", "--loglevel", "INFO"],
    }
    # The demo's warehouse: a simulated WMS and carrier acting through the node API and the signed tracking
    # webhook (fulfillment/warehouse_sim.py), so orders reach Delivered and exceptions arise on their own.
    os.environ.setdefault("TRACKING_WEBHOOK_SECRET", secrets.token_hex(24))  # shared by web and the carrier
    procs["warehouse"] = [PY, "manage.py", "run_warehouse", "--base-url", f"http://{HOST}:{PORT}"]
    return procs


@dataclass
class Child:
    name: str
    cmd: list[str]
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_deaths: int = 0
    restart_at: float | None = None
    history: list[int] = field(default_factory=list)  # every pid it ran as


class Supervisor:
    """Runs named commands, each in a process group of its own, and starts again any that dies."""

    def __init__(
        self,
        commands: dict[str, list[str]],
        *,
        say: Callable[[str], None] | None = None,
        first_delay: float = RESTART_FIRST_DELAY,
        max_delay: float = RESTART_MAX_DELAY,
    ) -> None:
        self.children = {name: Child(name, cmd) for name, cmd in commands.items()}
        self.say = say or (lambda text: print(f"[demo] {text}", flush=True))
        self.first_delay = first_delay
        self.max_delay = max_delay

    def _start(self, child: Child) -> None:
        # A process group of its own: Ctrl-C reaches us once, and we stop each child in order.
        child.proc = subprocess.Popen(child.cmd, cwd=BASE_DIR, start_new_session=True)
        child.started_at = time.monotonic()
        child.restart_at = None
        child.history.append(child.proc.pid)
        self.say(f"started {child.name} (pid {child.proc.pid})")

    def start(self) -> None:
        for child in self.children.values():
            self._start(child)

    @staticmethod
    def _kill_group(pid: int) -> None:
        """What is left of a dead leader's group (Celery's pool processes) goes too."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)

    def check(self) -> None:
        """One round: notice deaths, schedule restarts with a back-off, start what is due."""
        now = time.monotonic()
        for child in self.children.values():
            if child.proc is not None and child.proc.poll() is not None:
                code = child.proc.returncode
                self._kill_group(child.proc.pid)
                ran = now - child.started_at
                child.quick_deaths = child.quick_deaths + 1 if ran < HEALTHY_AFTER else 1
                delay = min(self.first_delay * 2 ** (child.quick_deaths - 1), self.max_delay)
                child.proc = None
                child.restart_at = now + delay
                self.say(f"{child.name} exited with {code} after {ran:.0f} s; starting it again in {delay:g} s")
            if child.proc is None and child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._start(child)

    def stop(self, timeout: float = 15.0) -> None:
        for child in self.children.values():
            if child.proc is not None and child.proc.poll() is None:
                # The leader only: gunicorn and Celery stop their own workers (a warm shutdown).
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children.values():
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop within {timeout:.0f} s; killing it")
            self._kill_group(child.proc.pid)
            child.proc.wait()
            self.say(f"stopped {child.name}")

    def run(self, should_stop: Callable[[], bool], interval: float = 0.5) -> None:
        self.start()
        while not should_stop():
            self.check()
            time.sleep(interval)
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default="", help="comma-separated: web,worker,pusher,beat,sandboxes,warehouse (default: all)"
    )
    parser.add_argument("--no-setup", action="store_true", help="skip migrate, collectstatic and the demo data")
    options = parser.parse_args(argv)
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")  # a local demo over plain HTTP
    # Every demo caller (sandbox webhooks, the simulated warehouse, the browser) is 127.0.0.1: a per-address
    # lock after failed API authentications would shut them all out together.
    os.environ.setdefault("WAYBILL_API_AUTH_FAILURE_LIMIT", "0")
    # The demo reconciles every five minutes, so the drift its sandboxes inject shows soon.
    os.environ.setdefault("WAYBILL_RECONCILE_INTERVAL_SECONDS", "300")
    os.chdir(BASE_DIR)
    if not options.no_setup:
        _manage("migrate", "--noinput")
        _manage("collectstatic", "--noinput", "--verbosity", "0")
        _manage("ensure_admin")
        _manage("seed_demo")
        _manage("seed_demo_history")  # scorecards: 90 days of finished orders, so the trends have shape
        # ... and their 90 days of snapshots now, so the first page shows them (the beat keeps them current).
        _manage("scorecards_backfill", "--days", "90")
    commands = processes()
    if options.only:
        wanted = [name.strip() for name in options.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(commands))
        if unknown:
            parser.error(f"unknown process(es) {', '.join(unknown)}; choose from {', '.join(commands)}")
        commands = {name: commands[name] for name in wanted}
    if "pusher" in commands:
        # Every process started below (web, worker, beat) sends the pushes' tasks to the pusher's queue.
        os.environ["WAYBILL_PUSH_QUEUE"] = push_queue()
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    # WAYBILL_RESTART_MAX_DELAY caps the back-off (the chaos scenario that kills a worker every few seconds).
    supervisor = Supervisor(commands, max_delay=float(os.environ.get("WAYBILL_RESTART_MAX_DELAY", RESTART_MAX_DELAY)))
    supervisor.start()
    if "web" in commands:
        print(f"[demo] Waybill is running at http://{HOST}:{PORT}/  (Ctrl-C stops everything)", flush=True)
    while not stopping:
        supervisor.check()
        time.sleep(0.5)
    supervisor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
