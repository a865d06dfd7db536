"""channels' services never import channels.tasks (no import circle): they announce what happened and
the tasks module enqueues. These check that each announcement reaches its task."""

from __future__ import annotations

import pytest

from channels import tasks
from channels.models import InboundEvent, OutboxMessage
from channels.signals import outbox_messages_queued, webhook_events_stored


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    for name in ("outbox_relay_task", "channels_webhooks_process_task", "channel_availability_recompute_task"):
        task = getattr(tasks, name)
        monkeypatch.setattr(task, "delay", lambda *a, _n=name, **k: calls.append((_n, a, k)))
        monkeypatch.setattr(task, "apply_async", lambda *a, _n=name, **k: calls.append((_n, a, k)))
    return calls


def test_queued_outbox_messages_enqueue_the_relay_for_the_account(enqueued):
    # when the outbox announces messages for account 7
    outbox_messages_queued.send(sender=OutboxMessage, account_id=7)
    # then the relay task is enqueued for it
    assert enqueued == [("outbox_relay_task", (7,), {})]


def test_stored_webhook_events_enqueue_their_processing(enqueued):
    # when webhooks announce stored events for account 3
    webhook_events_stored.send(sender=InboundEvent, account_id=3)
    # then the processing task is enqueued for it
    assert enqueued == [("channels_webhooks_process_task", (3,), {})]


def test_availability_schedule_enqueues_the_recompute_at_once_without_a_window(enqueued, settings):
    # given no debounce window
    settings.INVENTORY_AVAILABILITY_DEBOUNCE_SECONDS = 0
    # when SKUs change
    tasks.channel_availability_schedule(sku_ids=[5, 2, 5])
    # then one recompute of each SKU is enqueued at once
    assert enqueued == [("channel_availability_recompute_task", (), {"kwargs": {"sku_ids": [2, 5]}})]
