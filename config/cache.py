"""The cache of local runs (no REDIS_URL): Django's file-based cache, made fit for Waybill's keys.

Waybill keeps small, short-lived keys in the cache that several processes share: dispatch markers, circuit
breaker and throttle counters, the worker heartbeat, push coalescing. Django's ``FileBasedCache`` lists its
whole directory on every write to decide whether to cull, and once 300 entries (its default) are there it
deletes a random third of them: a write cost that grows with the keys, and markers lost at random. Here the
directory is looked at once a minute at most, expired entries go first, and the limit is 50,000 entries.
Production uses Redis (``REDIS_URL``).
"""

from __future__ import annotations

import random
import time

from django.core.cache.backends.filebased import FileBasedCache

CULL_INTERVAL_SECONDS = 60.0


class FileCache(FileBasedCache):
    def __init__(self, dir, params):
        options = {"MAX_ENTRIES": 50_000, **params.get("OPTIONS", {})}
        super().__init__(dir, {**params, "OPTIONS": options})
        self._next_cull = 0.0

    def _cull(self) -> None:
        now = time.monotonic()
        if now < self._next_cull:
            return
        self._next_cull = now + CULL_INTERVAL_SECONDS
        live = []
        for fname in self._list_cache_files():
            try:
                with open(fname, "rb") as f:
                    if not self._is_expired(f):  # deletes the file when it has expired
                        live.append(fname)
            except FileNotFoundError:
                continue  # another process removed it meanwhile
        if len(live) < self._max_entries:
            return
        if self._cull_frequency == 0:
            self.clear()
            return
        for fname in random.sample(live, len(live) // self._cull_frequency):
            self._delete(fname)

    def cull_now(self) -> None:
        """Run the next write's cull check at once (tests, and an operator clearing old keys)."""
        self._next_cull = 0.0
        self._cull()


__all__ = ["FileCache"]
