"""Real OS processes against PostgreSQL, released together by a barrier: the concurrency tests' runner."""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from typing import Any

from django.db import connections

PROCESSES = 8


def _worker(barrier, results, jobs, call) -> None:
    # A forked child: its own connection, opened on first use.
    try:
        barrier.wait(timeout=60)
        for job_id, payload in jobs:
            try:
                outcome, detail = call(payload)
            except Exception as exc:  # reported, and fails the test
                outcome, detail = "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            results.put((job_id, outcome, detail))
    finally:
        connections.close_all()


def run_in_processes(
    call: Callable[[Any], tuple[str, Any]], jobs: list[tuple[int, Any]], processes: int = PROCESSES
) -> dict[int, tuple[str, Any]]:
    """Deal the jobs [(job id, payload)] round-robin to ``processes`` forked processes, each running
    ``call(payload) -> (outcome, detail)`` on its jobs; an exception is the outcome "error" with its
    traceback. Returns {job id: (outcome, detail)}."""
    ctx = multiprocessing.get_context("fork")
    connections.close_all()  # never share the parent's socket with a child
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(barrier, results, jobs[i::processes], call), daemon=True)
        for i in range(processes)
    ]
    for w in workers:
        w.start()
    outcomes = {}
    for _ in jobs:
        job_id, outcome, detail = results.get(timeout=180)
        outcomes[job_id] = (outcome, detail)
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0, f"worker exited with {w.exitcode}"
    return outcomes
