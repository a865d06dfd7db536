"""Reads from a streaming replica where staleness of a second cannot hurt: console lists and scorecards.

With ``DATABASE_REPLICA_URL`` set, settings define a ``replica`` database alias and install ``ReplicaRouter``.
Reads go to the replica only inside ``replica_reads()`` (entered by ``ReplicaReadsMiddleware`` for a GET or
HEAD of a view named in ``WAYBILL_REPLICA_VIEWS``), and even there they stay on the primary when:

- the primary connection is inside a transaction (a service's reads before its writes, row locks);
- something was written earlier in the same request or task (``db_for_write`` pins the rest of it to the
  primary: a read after a write is never stale);
- the browser wrote within the last ``WAYBILL_REPLICA_PIN_SECONDS`` (a short cookie set by the middleware
  after a request that wrote): the list a person lands on after saving shows what they saved, whatever the
  replica's lag.

Writes always go to the primary (the router never names the replica for a write), and migrations run on the
primary alone: the replica follows it by streaming replication.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

REPLICA = "replica"
PRIMARY = "default"
PIN_COOKIE = "waybill_primary"

_reads_from_replica: ContextVar[bool] = ContextVar("waybill_replica_reads", default=False)
_wrote: ContextVar[bool] = ContextVar("waybill_replica_wrote", default=False)


def replica_configured() -> bool:
    return REPLICA in connections.settings


@contextlib.contextmanager
def replica_reads() -> Iterator[None]:
    """Reads in this block may come from the replica (until something is written in it)."""
    reads = _reads_from_replica.set(True)
    wrote = _wrote.set(False)
    try:
        yield
    finally:
        _wrote.reset(wrote)
        _reads_from_replica.reset(reads)


def wrote_in_block() -> bool:
    return _wrote.get()


class ReplicaRouter:
    """Routes reads inside ``replica_reads()`` to the replica; everything else to the primary."""

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        if not _reads_from_replica.get() or _wrote.get() or not replica_configured():
            return None
        if connections[PRIMARY].in_atomic_block:
            return None
        return REPLICA

    def db_for_write(self, model: type, **hints: Any) -> str:
        _wrote.set(True)  # pins the rest of this request (or replica_reads block) to the primary
        return PRIMARY

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # one database, two ways to read it

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        return db == PRIMARY


def _pin_seconds() -> int:
    return int(getattr(settings, "WAYBILL_REPLICA_PIN_SECONDS", 5))


def _replica_view(request: HttpRequest) -> bool:
    if request.method not in ("GET", "HEAD") or PIN_COOKIE in request.COOKIES or not replica_configured():
        return False
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return False
    return match.view_name in set(getattr(settings, "WAYBILL_REPLICA_VIEWS", ()))


class ReplicaReadsMiddleware:
    """Serves safe requests to the views of WAYBILL_REPLICA_VIEWS inside ``replica_reads()``; sets the pin
    cookie on the response to a request that wrote, so that browser's next requests read the primary."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        wrote = _wrote.set(False)
        try:
            if _replica_view(request):
                with replica_reads():
                    response = self.get_response(request)
                    wrote_here = _wrote.get()
            else:
                response = self.get_response(request)
                wrote_here = _wrote.get()
            if wrote_here and _pin_seconds() > 0 and replica_configured():
                response.set_cookie(PIN_COOKIE, "1", max_age=_pin_seconds(), httponly=True, samesite="Lax")
            return response
        finally:
            _wrote.reset(wrote)
