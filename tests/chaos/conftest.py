"""Chaos scenarios (issue #22): processes killed, the database restarted, the broker stopped, two beats.

Tests marked ``chaos`` take minutes and run with `make chaos` (WAYBILL_CHAOS=1) only; the others in this folder
are short enough for every CI run. Each prints its figures (lost, duplicated, effects counted at the sandbox).
"""

from __future__ import annotations

import os

import pytest

from tests.channels.conftest import fast_backoff, serve_sandbox  # noqa: F401 - fixtures shared with channels


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
