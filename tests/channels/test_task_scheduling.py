"""channels' services never import channels.tasks (no import circle): they announce what happened and
the tasks module enqueues. These check that each announcement reaches its task."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from channels import tasks
from channels.models import InboundEvent, OutboxMessage
from channels.signals import outbox_messages_queued, webhook_events_stored
from config.kernel.dispatch import task_started


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    for name in (
        "outbox_relay_task",
        "channels_webhooks_process_task",
        "channel_availability_recompute_task",
        "channels_reconcile_account_task",
    ):
        task = getattr(tasks, name)
        monkeypatch.setattr(task, "delay", lambda *a, _n=name, **k: calls.append((_n, a, k)))
        monkeypatch.setattr(task, "apply_async", lambda *a, _n=name, **k: calls.append((_n, a, k)))
    return calls


def _queued(calls):
    return [(name, kwargs["args"], kwargs["headers"]["waybill_pending"]) for name, _, kwargs in calls]


def test_queued_outbox_messages_enqueue_the_relay_for_the_account_once(enqueued):
    # when the outbox announces messages for account 7, three times before a worker starts the relay
    for _ in range(3):
        outbox_messages_queued.send(sender=OutboxMessage, account_id=7)
    # then one relay task waits for it, marked with the account's key
    assert _queued(enqueued) == [("outbox_relay_task", [7], "relay:7")]


def test_stored_webhook_events_enqueue_one_drain_per_account(enqueued):
    # when webhooks announce stored events for account 3 (a burst) and for account 4
    for _ in range(50):
        webhook_events_stored.send(sender=InboundEvent, account_id=3)
    webhook_events_stored.send(sender=InboundEvent, account_id=4)
    # then one drain waits per account
    assert _queued(enqueued) == [
        ("channels_webhooks_process_task", [3], "webhooks:3"),
        ("channels_webhooks_process_task", [4], "webhooks:4"),
    ]


def test_a_started_task_can_be_queued_again(enqueued):
    # given a relay waiting for account 7
    outbox_messages_queued.send(sender=OutboxMessage, account_id=7)
    # when a worker starts it (task_prerun sees the marker in the message's headers)
    task_started(SimpleNamespace(waybill_pending="relay:7", headers=None))
    # then the next announcement queues it again
    outbox_messages_queued.send(sender=OutboxMessage, account_id=7)
    assert len(enqueued) == 2


def test_availability_schedule_enqueues_the_recompute_at_once_without_a_window(enqueued, settings):
    # given no debounce window
    settings.INVENTORY_AVAILABILITY_DEBOUNCE_SECONDS = 0
    # when SKUs change
    tasks.channel_availability_schedule(sku_ids=[5, 2, 5])
    # then one recompute of each SKU is enqueued at once
    assert enqueued == [("channel_availability_recompute_task", (), {"kwargs": {"sku_ids": [2, 5]}})]


def test_a_due_reconciliation_is_queued_once_while_it_waits(enqueued, monkeypatch):
    # given two accounts due for their scheduled reconciliation and a worker too busy to start it yet
    monkeypatch.setattr(tasks.reconcile, "reconciliations_due", lambda: [5, 6])
    # when beat's dispatcher ticks three times
    sent = [tasks.channels_dispatch_reconciliations_task() for _ in range(3)]
    # then one run waits per account, queued by the first tick only
    assert sent == [2, 0, 0]
    assert _queued(enqueued) == [
        ("channels_reconcile_account_task", [5], "reconcile:5"),
        ("channels_reconcile_account_task", [6], "reconcile:6"),
    ]
