"""`make demo`: migrate, create the admin login, load demo data, then run web + worker + beat
(and the sandbox channel servers, where they exist) together until Ctrl-C; stop everything after.

The embedded database is started and stopped around this by `python -m config.embedded_pg run`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent
HOST = os.environ.get("WAYBILL_HOST", "127.0.0.1")
PORT = os.environ.get("WAYBILL_PORT", "8000")


def _manage(*args: str) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=BASE_DIR, check=True)


def _processes() -> dict[str, list[str]]:
    procs = {
        "web": [
            str(BIN / "gunicorn"),
            "config.wsgi",
            "--bind",
            f"{HOST}:{PORT}",
            "--workers",
            "2",
            "--access-logfile",
            "-",
            "--graceful-timeout",
            "5",
        ],
        "worker": [str(BIN / "celery"), "-A", "config", "worker", "--loglevel", "INFO", "--concurrency", "2"],
        "beat": [str(BIN / "celery"), "-A", "config", "beat", "--loglevel", "INFO"],
    }
    sandbox = BASE_DIR / "channels" / "management" / "commands" / "run_sandboxes.py"
    if sandbox.exists():
        procs["sandboxes"] = [PY, "manage.py", "run_sandboxes", "--webhook-base", f"http://{HOST}:{PORT}"]
    return procs


def main() -> int:
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")  # a local demo over plain HTTP
    os.chdir(BASE_DIR)
    _manage("migrate", "--noinput")
    _manage("collectstatic", "--noinput", "--verbosity", "0")
    _manage("ensure_admin")
    _manage("seed_demo")
    _manage("seed_demo_history")  # scorecards: 90 days of finished orders, so the trends have shape
    children: dict[str, subprocess.Popen] = {}
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for name, cmd in _processes().items():
        # A process group of its own: Ctrl-C reaches us once, and we stop each child in order.
        children[name] = subprocess.Popen(cmd, cwd=BASE_DIR, start_new_session=True)
        print(f"[demo] started {name} (pid {children[name].pid})", flush=True)
    print(f"[demo] Waybill is running at http://{HOST}:{PORT}/  (Ctrl-C stops everything)", flush=True)
    exit_code = 0
    while not stopping:
        for name, proc in children.items():
            if proc.poll() is not None:
                print(f"[demo] {name} exited with {proc.returncode}; stopping the rest", flush=True)
                exit_code = proc.returncode or 1
                stopping = True
                break
        time.sleep(0.5)
    for proc in children.values():
        if proc.poll() is None:
            # The leader only: gunicorn and Celery stop their own workers (a warm shutdown).
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for name, proc in children.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        print(f"[demo] stopped {name}", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
