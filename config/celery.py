"""The Celery app. Tasks live in <app>/tasks.py, are idempotent and named *_task."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_prerun, worker_ready, worker_shutting_down

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
        # Exceptions detected in seconds (ship-by at risk, late, stalled tracking): settings.WAYBILL_DETECT_SECONDS.
        "fulfillment-detect-exceptions": {
            "task": "fulfillment.tasks.exceptions_detect_task",
            "schedule": float(os.environ.get("WAYBILL_DETECT_SECONDS", "15")),
        },
        "channels-detect-push-failures": {
            "task": "channels.tasks.push_failures_detect_task",
            "schedule": float(os.environ.get("WAYBILL_DETECT_SECONDS", "15")),
        },
        # Syncs that are due, webhook drains for received events, the sweep of runs whose worker died. Every
        # 5 s: an account's sync starts at most 5 s after its interval (a 30 s interval stays well within 60 s).
        "channels-dispatch-syncs": {"task": "channels.tasks.channels_dispatch_syncs_task", "schedule": 5.0},
        "channels-relay-outbox": {"task": "channels.tasks.outbox_relay_task", "schedule": 5.0},
        # Safety net behind the per-change recompute: every advertised quantity re-derived from stock.
        "channels-reconcile-availability": {
            "task": "channels.tasks.channel_availability_reconcile_task",
            "schedule": 900.0,
        },
        # Reconciliation (channels/reconcile.py): the dispatcher starts each account's run once an interval
        # (WAYBILL_RECONCILE_INTERVAL_SECONDS, an hour) has passed since its last scheduled one.
        "channels-dispatch-reconciliations": {
            "task": "channels.tasks.channels_dispatch_reconciliations_task",
            "schedule": 60.0,
        },
        # --- scorecards ---
        "scorecards-refresh": {"task": "scorecards.tasks.scorecards_refresh_task", "schedule": 300.0},
        # Asks every 5 minutes; each Amazon account is fetched once a day (or an hour after a failure).
        "scorecards-account-health": {"task": "scorecards.tasks.account_health_fetch_task", "schedule": 300.0},
        # A safety sweep: each stock change queues its own push (channels.tasks.channel_availability_recompute_task).
        "channels-plan-inventory-pushes": {
            "task": "channels.tasks.channels_plan_inventory_pushes_task",
            "schedule": 30.0,
        },
        # Returns (issue #18): every account's returns read; refunds' channel answers caught up.
        "returns-sync-all": {"task": "returns.tasks.returns_sync_all_task", "schedule": 60.0},
        "returns-refund-answers": {"task": "returns.tasks.refunds_answers_sweep_task", "schedule": 60.0},
        # Data protection: buyers' PII purged after each account's retention period (hourly; idempotent).
        "channels-pii-purge": {"task": "channels.tasks.pii_purge_task", "schedule": 3600.0},
        # The API's stored idempotent answers (copies of what it returned, buyer names included) kept for
        # WAYBILL_IDEMPOTENCY_KEEP_HOURS only.
        "fulfillment-idempotency-prune": {
            "task": "fulfillment.tasks.idempotency_records_prune_task",
            "schedule": 3600.0,
        },
    },
)
app.autodiscover_tasks()


@task_prerun.connect
def _task_started(sender=None, task=None, **kwargs) -> None:
    # The task left the queue: its pending marker goes, so its key can be queued once more.
    from config.kernel.dispatch import task_started

    if task is not None:
        task_started(task.request)


@worker_ready.connect
def _worker_ready(sender=None, **kwargs) -> None:
    from config.kernel.dispatch import worker_stopping_set

    worker_stopping_set(sender.hostname, False)
    # The console's "worker: ok" right away, not after beat's first 30 s tick (a restarted demo would
    # otherwise show the previous run's last heartbeat as a worker silent for minutes).
    try:
        app.send_task("orders.tasks.heartbeat_task")
    except Exception:  # the broker is not there yet: beat's own tick sends the next one
        return


@worker_shutting_down.connect
def _worker_shutting_down(sender=None, **kwargs) -> None:
    # Long loops (the outbox relay) see this between two items and return: shutdown waits seconds, not minutes.
    from config.kernel.dispatch import worker_stopping_set

    try:
        worker_stopping_set(str(sender), True)
    except Exception:  # the cache is down: the loops end at their time budget
        return
