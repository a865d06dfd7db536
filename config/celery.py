"""The Celery app. Tasks live in <app>/tasks.py, are idempotent and named *_task."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("waybill")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_time_limit=300,
    task_soft_time_limit=240,
    # acks_late is set per task (only idempotent tasks opt in); a lost worker then redelivers.
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    timezone="UTC",
    # Redis redelivers an unacknowledged message after visibility_timeout: CELERY_BROKER_TRANSPORT_OPTIONS
    # in settings keeps it (2 h) above the longest retry countdown (1 h) and the task time limit.
    beat_schedule={
        "heartbeat": {"task": "orders.tasks.heartbeat_task", "schedule": 30.0},
        "fulfillment-route-releasable": {"task": "fulfillment.tasks.route_releasable_task", "schedule": 5.0},
        "fulfillment-route-retry": {"task": "fulfillment.tasks.route_retry_task", "schedule": 300.0},
        "fulfillment-expire-pickups": {"task": "fulfillment.tasks.pickups_expire_task", "schedule": 300.0},
        "fulfillment-tracking-checks": {"task": "fulfillment.tasks.tracking_checks_task", "schedule": 900.0},
        "channels-dispatch-syncs": {"task": "channels.tasks.channels_dispatch_syncs_task", "schedule": 10.0},
        "channels-relay-outbox": {"task": "channels.tasks.outbox_relay_task", "schedule": 5.0},
        # Safety net behind the per-change recompute: every advertised quantity re-derived from stock.
        "channels-reconcile-availability": {
            "task": "channels.tasks.channel_availability_reconcile_task",
            "schedule": 900.0,
        },
        "channels-plan-inventory-pushes": {
            "task": "channels.tasks.channels_plan_inventory_pushes_task",
            "schedule": 1.0,
        },
        # Data protection: buyers' PII purged after each account's retention period (hourly; idempotent).
        "channels-pii-purge": {"task": "channels.tasks.pii_purge_task", "schedule": 3600.0},
    },
)
app.autodiscover_tasks()
