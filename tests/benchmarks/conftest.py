"""Benchmarks run only when asked for: `make bench` (-m benchmark, WAYBILL_BENCH=1). `make test` skips them."""

from __future__ import annotations

import os

import pytest


def _asked_for(config) -> bool:
    markexpr = config.getoption("-m") or ""
    return os.environ.get("WAYBILL_BENCH") == "1" or ("benchmark" in markexpr and "not benchmark" not in markexpr)


def pytest_collection_modifyitems(config, items):
    if _asked_for(config):
        return
    skip = pytest.mark.skip(reason="benchmark: run with `make bench`")
    for item in items:
        if item.get_closest_marker("benchmark") is not None:
            item.add_marker(skip)
