"""Beat's scheduler: django-celery-beat's database scheduler that sends what is due, not what is waiting.

A periodic task whose previous message has not started yet is not sent again (config.kernel.dispatch:
a marker per entry, cleared when a worker starts the task). A slow or stopped worker then finds one
message per entry in the queue, not one per tick. The marker of an entry lives three intervals, between
20 and 60 seconds: a message lost with a dead worker is sent again within a minute.
"""

from __future__ import annotations

import logging

from django_celery_beat.schedulers import DatabaseScheduler

from config.kernel.dispatch import HEADER, pending_clear, pending_mark

log = logging.getLogger(__name__)

MARKER_MIN_SECONDS = 20.0
MARKER_MAX_SECONDS = 60.0


def marker_ttl(entry) -> float:
    every = getattr(entry.schedule, "run_every", None)
    seconds = every.total_seconds() if every is not None else MARKER_MAX_SECONDS
    return min(max(3 * seconds, MARKER_MIN_SECONDS), MARKER_MAX_SECONDS)


class Scheduler(DatabaseScheduler):
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
