"""Beat's scheduler: django-celery-beat's database scheduler that sends what is due, not what is waiting, from
one beat process at a time.

A periodic task whose previous message has not started yet is not sent again (config.kernel.dispatch:
a marker per entry, cleared when a worker starts the task). A slow or stopped worker then finds one
message per entry in the queue, not one per tick. The marker of an entry lives three intervals, between
20 and 60 seconds: a message lost with a dead worker is sent again within a minute.

**One beat sends** (``BeatLeadership``): a second beat process started by mistake (two machines deployed with
beat, a restart that overlaps the old process) would otherwise send every entry a second time per tick, once
the first message has started. Each beat asks for a PostgreSQL session advisory lock on a connection of its
own; the one holding it schedules, the others stand by and ask again every STANDBY_POLL_SECONDS. The server
releases the lock when its holder's connection closes (the process died or the database restarted), so a
standby takes over within seconds, re-reading every entry's last run from the database first.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psycopg
from django.db import connections
from django_celery_beat.schedulers import DatabaseScheduler

from config.kernel.dispatch import HEADER, pending_clear, pending_mark

log = logging.getLogger(__name__)

MARKER_MIN_SECONDS = 20.0
MARKER_MAX_SECONDS = 60.0
# A single-key advisory lock (the sync locks use two keys: channels.sync.LOCK_NAMESPACE and the account id).
LEADER_LOCK_KEY = 0x5742_BEA7
STANDBY_POLL_SECONDS = 2.0


def marker_ttl(entry) -> float:
    every = getattr(entry.schedule, "run_every", None)
    seconds = every.total_seconds() if every is not None else MARKER_MAX_SECONDS
    return min(max(3 * seconds, MARKER_MIN_SECONDS), MARKER_MAX_SECONDS)


class BeatLeadership:
    """The beat leader lock on a connection of its own (Django's may be closed between ticks)."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self.conn: psycopg.Connection | None = None
        self.held = False

    def _connect(self) -> psycopg.Connection:
        params = connections[self.alias].get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params["application_name"] = "waybill-beat-leader"
        return psycopg.connect(**params, autocommit=True, connect_timeout=5)

    def acquire(self) -> bool:
        """True while this process holds the lock (taking it if it is free); never waits."""
        try:
            if self.conn is None or self.conn.closed:
                self.held = False
                self.conn = self._connect()
            if self.held:
                self.conn.execute("SELECT 1")  # still connected, so still holding it
                return True
            row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", [LEADER_LOCK_KEY]).fetchone()
            self.held = bool(row and row[0])
        except psycopg.Error as exc:
            log.warning("beat: the leader lock's connection failed (%s); standing by until it is back", exc)
            self.release()
            return False
        return self.held

    def release(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()  # closing the session releases the lock
        self.conn = None
        self.held = False


class Scheduler(DatabaseScheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.leadership = BeatLeadership()
        self._leading = False
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self.leadership.acquire():
            if self._leading or not hasattr(self, "_said_standby"):
                log.warning("Scheduler: another beat process holds the leader lock; standing by")
                self._said_standby = True
            self._leading = False
            return STANDBY_POLL_SECONDS
        if not self._leading:
            log.warning("Scheduler: this beat process holds the leader lock and schedules")
            self._leading = True
            self._initial_read = True  # every entry's last run as the previous leader left it
            self._heap = None
        return super().tick(*args, **kwargs)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leadership.release()

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        key = f"beat:{entry.name}"
        if not pending_mark(key, ttl=marker_ttl(entry)):
            log.info("Scheduler: %s is still waiting in the queue; not sent again", entry.name)
            return None
        headers = {**(entry.options.get("headers") or {}), HEADER: key}
        entry.options = {**entry.options, "headers": headers}
        try:
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        except Exception:
            pending_clear(key)
            raise
