"""At most one pending unit of work per key: a marker with an expiry, set when a task is queued and
cleared when a worker starts it.

``dispatch_once(task, key="sync:7", args=[7])`` queues the task unless a task with the same key is
already waiting; the marker travels with the message (a header) and the task_prerun receiver in
config/celery.py clears it when the task starts, so a unit of work that is running can be queued once
more (it will see what arrived meanwhile). Beat's scheduler (config/beat.py) does the same for every
periodic entry: it sends what is due, not what is already waiting.

The marker expires (``WAYBILL_PENDING_MARKER_SECONDS``, 45 s by default, plus any countdown): a message
lost with a dead worker (the filesystem broker deletes a message as it hands it over, so ``acks_late``
cannot bring it back) blocks its key for at most that long, after which the next dispatch queues it again.
A queue that is slower than the expiry gets at most one more message per key per expiry, not one per tick.

Markers live in the cache (Redis in production: SET NX with an expiry; the file cache locally, where two
processes racing for one key can both win once, which the tasks' idempotency absorbs).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

log = logging.getLogger(__name__)

HEADER = "waybill_pending"
PREFIX = "waybill:pending:"


def marker_seconds() -> float:
    return float(getattr(settings, "WAYBILL_PENDING_MARKER_SECONDS", 45))


def _cache_key(key: str) -> str:
    return f"{PREFIX}{key}"


def pending_mark(key: str, *, ttl: float | None = None) -> bool:
    """Set the marker for ``key``; False when one is already set (the work is already waiting)."""
    timeout = max(1, round(ttl if ttl is not None else marker_seconds()))
    return bool(cache.add(_cache_key(key), timezone.now().isoformat(), timeout=timeout))


def pending_clear(key: str) -> None:
    cache.delete(_cache_key(key))


def is_pending(key: str) -> bool:
    return cache.get(_cache_key(key)) is not None


def pending_keys(keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` have a task waiting (one cache round trip)."""
    keys = list(keys)
    if not keys:
        return set()
    found = cache.get_many([_cache_key(key) for key in keys])
    return {key for key in keys if _cache_key(key) in found}


def dispatch_once(
    task: Any,
    *,
    key: str,
    args: Iterable[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    countdown: float | None = None,
    ttl: float | None = None,
) -> bool:
    """Queue ``task`` unless work with ``key`` is already waiting; True when a message was sent.

    The marker lives ``ttl`` seconds (default: the marker expiry) after the task is due to start."""
    ttl = (ttl if ttl is not None else marker_seconds()) + (countdown or 0)
    if not pending_mark(key, ttl=ttl):
        return False
    try:
        task.apply_async(args=list(args), kwargs=dict(kwargs or {}), countdown=countdown, headers={HEADER: key})
    except Exception:
        pending_clear(key)
        raise
    return True


def request_pending_key(request: Any) -> str | None:
    """The marker a task's request carries: a message header on a worker, inside ``headers`` when eager."""
    key = getattr(request, HEADER, None)
    if key:
        return str(key)
    headers = getattr(request, "headers", None) or {}
    key = headers.get(HEADER) if isinstance(headers, Mapping) else None
    return str(key) if key else None


def task_started(request: Any) -> None:
    """task_prerun: the task is running, so it is no longer waiting; its key may be queued again."""
    key = request_pending_key(request)
    if key:
        try:
            pending_clear(key)
        except Exception:  # the cache is down: the marker expires on its own
            log.warning("could not clear the pending marker %s", key, exc_info=True)


# --- a worker that is stopping: long loops (the outbox relay) return between two sends -----------------

STOPPING_PREFIX = "waybill:worker-stopping:"


def worker_stopping_set(hostname: str, stopping: bool) -> None:
    """Called in the worker's main process (worker_shutting_down / worker_ready in config/celery.py)."""
    if stopping:
        cache.set(f"{STOPPING_PREFIX}{hostname}", timezone.now().isoformat(), timeout=300)
    else:
        cache.delete(f"{STOPPING_PREFIX}{hostname}")


def worker_stopping(hostname: str) -> bool:
    """True once the worker named ``hostname`` was asked to stop: finish the item in hand and return."""
    try:
        return cache.get(f"{STOPPING_PREFIX}{hostname}") is not None
    except Exception:
        return False
