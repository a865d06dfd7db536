from __future__ import annotations

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

HEARTBEAT_KEY = "waybill:worker-heartbeat"


@shared_task(acks_late=True, ignore_result=True)
def heartbeat_task() -> str:
    """Beat schedules this every 30 s; the console shows how long ago a worker last ran it."""
    now = timezone.now().isoformat()
    cache.set(HEARTBEAT_KEY, now, timeout=None)
    return now
