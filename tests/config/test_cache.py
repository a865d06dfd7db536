"""The local-run cache (config/cache.py): no key lost at random, no directory listing on every write."""

from __future__ import annotations

import time

import pytest

from config import cache as cache_module
from config.cache import FileCache


@pytest.fixture
def file_cache(tmp_path):
    return FileCache(str(tmp_path / "cache"), {})


def test_a_thousand_live_keys_all_stay(file_cache):
    # given more keys than Django's file cache keeps (300) before deleting a third at random
    for i in range(1_000):
        file_cache.set(f"marker:{i}", i, timeout=300)
    # then every one is still there
    assert all(file_cache.get(f"marker:{i}") == i for i in range(1_000))


def test_writes_look_at_the_directory_once_an_interval(file_cache, monkeypatch):
    listings = []
    real = FileCache._list_cache_files

    def counting(self):
        listings.append(1)
        return real(self)

    monkeypatch.setattr(FileCache, "_list_cache_files", counting)
    # when 500 keys are written within the interval
    for i in range(500):
        file_cache.set(f"k:{i}", i)
    # then the directory was listed once, not once a write
    assert len(listings) == 1
    # and again once the interval has passed
    later = time.monotonic() + 2 * cache_module.CULL_INTERVAL_SECONDS
    monkeypatch.setattr(cache_module.time, "monotonic", lambda: later)
    file_cache.set("k:late", 1)
    assert len(listings) == 2


def test_a_cull_removes_expired_entries_first_and_keeps_live_ones(file_cache):
    file_cache.set("live", "yes", timeout=300)
    file_cache.set("gone", "no", timeout=1)
    time.sleep(1.1)
    file_cache.cull_now()
    assert len(file_cache._list_cache_files()) == 1
    assert file_cache.get("live") == "yes"


def test_the_limit_still_holds_beyond_its_entries(tmp_path):
    small = FileCache(str(tmp_path / "small"), {"OPTIONS": {"MAX_ENTRIES": 10, "CULL_FREQUENCY": 2}})
    for i in range(10):
        small.set(f"k:{i}", i)
    small.cull_now()
    assert len(small._list_cache_files()) == 5
