"""The sales account provider: how orders, fulfilment, returns and scorecards read a channel account
without importing channels (config.kernel.accounts, registered in channels.apps).

Accounts are few and read on every order page, so the provider keeps them for ``CACHE_SECONDS`` in this
process: a page's accounts cost no query once read. Every write of an account in this process empties the
cache (ChannelAccount.save and delete through post_save and post_delete, a queryset's update through
channels.signals.channel_accounts_updated): the writing process never reads an account older than its write;
another process sees it at most ``CACHE_SECONDS`` later. Each read gets its own copy of the account.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from django.db.models import OuterRef, Subquery

from channels.models import ChannelAccount, ChannelKind

CACHE_SECONDS = 10.0


class ChannelAccountProvider:
    def __init__(self, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[float, ChannelAccount]] = {}
        self._generation = 0

    def forget(self) -> None:
        """Empty the cache (an account was written in this process)."""
        with self._lock:
            self._cache.clear()
            self._generation += 1

    def get_many(self, ids: list[int]) -> dict[int, ChannelAccount]:
        now = time.monotonic()
        found: dict[int, ChannelAccount] = {}
        missing = []
        with self._lock:
            generation = self._generation
            for pk in ids:
                hit = self._cache.get(pk)
                if hit is not None and now - hit[0] < self.cache_seconds:
                    found[pk] = copy.copy(hit[1])
                else:
                    missing.append(pk)
        if missing:
            fetched = ChannelAccount.objects.in_bulk(missing)
            with self._lock:
                # Not kept when an account was written while they were read: the next read fetches again.
                if generation == self._generation:
                    for pk, account in fetched.items():
                        self._cache[pk] = (now, copy.copy(account))
            found.update(fetched)
        return found

    def ids(self, **filters: Any) -> Any:
        return ChannelAccount.objects.filter(**filters).values("id")

    def value(self, field: str, outer: str) -> Any:
        return Subquery(ChannelAccount.objects.filter(pk=OuterRef(outer)).values(field)[:1])

    def kinds(self) -> list[tuple[str, str]]:
        return list(ChannelKind.choices)

    def choices(self) -> list[tuple[int, str]]:
        return list(ChannelAccount.objects.order_by("name").values_list("id", "name"))

    def seed(self, *, kind: str, name: str) -> int:
        return ChannelAccount.objects.create(
            kind=kind, name=name, api_base_url="http://127.0.0.1:9", is_enabled=False
        ).pk


provider = ChannelAccountProvider()


def accounts_forget(**kwargs: Any) -> None:
    """Receiver of ChannelAccount's post_save and post_delete, and of channel_accounts_updated (a queryset's update)."""
    provider.forget()
