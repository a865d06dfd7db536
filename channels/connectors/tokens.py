"""OAuth access tokens that renew themselves: a margin before they expire, and when the channel refuses one.

Channel-neutral: a connector gives ``RefreshingToken`` three functions and asks it for a token.

- ``current()``: the grant the connector was built with (its decrypted credentials); no I/O.
- ``exchange(grant)``: the channel's refresh call; returns the new grant (the refresh token may rotate).
- ``store(decide)``: runs ``decide(stored grant)`` while holding the account's credentials, persisting
  what it returns (``None`` = nothing to change) and returning the grant now stored. With the channel
  account's row lock around it, two workers never both spend the same refresh token: the second finds
  the first one's fresh grant stored and adopts it.

Grants are cached per process under ``key``, so a connector built a moment later reuses a renewed token
without reading the database; a grant the account's credentials no longer descend from (a person
re-authorised the shop) is dropped from the cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    # Unix seconds; None when the channel (or the stored credentials) did not say.
    expires_at: float | None = None
    refresh_token: str = ""
    refresh_expires_at: float | None = None


@dataclass(frozen=True)
class _Cached:
    # The access token of the credentials this grant was renewed from.
    source: str
    grant: TokenGrant


_cache: dict[Hashable, _Cached] = {}
_cache_lock = threading.Lock()
_key_locks: dict[Hashable, threading.Lock] = {}


def _lock_for(key: Hashable) -> threading.Lock:
    with _cache_lock:
        return _key_locks.setdefault(key, threading.Lock())


def forget(key: Hashable) -> None:
    """Drop a cached grant (credentials replaced by a person)."""
    with _cache_lock:
        _cache.pop(key, None)


class RefreshingToken:
    def __init__(
        self,
        *,
        key: Hashable,
        current: Callable[[], TokenGrant],
        exchange: Callable[[TokenGrant], TokenGrant],
        store: Callable[[Callable[[TokenGrant], TokenGrant | None]], TokenGrant] | None = None,
        margin: float = 600.0,
        clock: Callable[[], float] = time.time,
    ):
        self.key = key
        self._current = current
        self._exchange = exchange
        self._store = store or self._unstored
        self.margin = margin
        self.clock = clock
        self.refreshes = 0

    def _unstored(self, decide: Callable[[TokenGrant], TokenGrant | None]) -> TokenGrant:
        stored = self._current()
        return decide(stored) or stored

    def usable(self, grant: TokenGrant) -> bool:
        """Has a token and is not within ``margin`` of its expiry (an unknown expiry counts as usable)."""
        if not grant.access_token:
            return False
        return grant.expires_at is None or grant.expires_at - self.margin > self.clock()

    def grant(self) -> TokenGrant:
        """The newest grant this process knows for the key that the credentials descend from."""
        current = self._current()
        with _cache_lock:
            cached = _cache.get(self.key)
        if cached and current.access_token in (cached.source, cached.grant.access_token):
            return cached.grant
        return current

    def access_token(self) -> str:
        """A token to send now: renewed first when it is missing or about to expire."""
        grant = self.grant()
        if self.usable(grant):
            return grant.access_token
        return self.refresh(grant.access_token)

    def refresh(self, stale: str) -> str:
        """Renew because ``stale`` was refused or is about to expire; a grant another worker renewed
        meanwhile is adopted instead of spending the refresh token again."""
        with _lock_for(self.key):
            known = self.grant()
            if known.access_token != stale and self.usable(known):
                return known.access_token

            def decide(stored: TokenGrant) -> TokenGrant | None:
                if stored.access_token != stale and self.usable(stored):
                    return None
                self.refreshes += 1
                return self._exchange(stored)

            renewed = self._store(decide)
            with _cache_lock:
                _cache[self.key] = _Cached(source=self._current().access_token, grant=renewed)
            return renewed.access_token
