"""Background work that keeps up: one pending task per key, webhook drains, the sweep, the relay's breaker."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from types import SimpleNamespace

import psycopg
import pytest
from celery.beat import ScheduleEntry
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from channels import tasks
from channels.models import (
    ChannelAccount,
    InboundEvent,
    InboundKind,
    InboundStatus,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    SyncKind,
    SyncRun,
    SyncStatus,
)
from channels.outbox import outbox_circuit, outbox_enqueue, outbox_relay
from channels.sync import LOCK_NAMESPACE, sync_runs_sweep, syncs_due
from channels.webhooks import webhook_backlog_check, webhook_events_drain
from config.beat import Scheduler
from config.celery import app as celery_app
from config.kernel.dispatch import HEADER, is_pending, task_started
from orders.models import CaseStatus, ExceptionCase, Order
from orders.tasks import heartbeat_task
from tests.channels.test_shopify import _signed

# --- one pending task per key --------------------------------------------------------------------------


@pytest.fixture
def sent(monkeypatch):
    """Messages the tasks would put on the broker: (task name, args, pending key, countdown)."""
    calls = []
    for task in (tasks.channels_sync_account_task, tasks.channels_webhooks_process_task, tasks.outbox_relay_task):

        def record(*args, _name=task.name, **kwargs):
            calls.append((_name.rsplit(".", 1)[-1], kwargs["args"], kwargs["headers"][HEADER], kwargs["countdown"]))

        monkeypatch.setattr(task, "apply_async", record)
    return calls


def _account(name: str, **fields) -> ChannelAccount:
    return ChannelAccount.objects.create(
        kind="walmart", name=name, api_base_url="http://127.0.0.1:1", sync_interval_seconds=30, **fields
    )


@pytest.mark.django_db
def test_the_dispatcher_queues_a_due_sync_once_until_a_worker_starts_it(sent):
    # given: two accounts due for a sync
    first, second = _account("wm-a"), _account("wm-b")
    # when: beat's dispatcher ticks three times while no worker takes anything
    for _ in range(3):
        tasks.channels_dispatch_syncs_task()
    # then: one sync waits per account
    assert sorted(call[1][0] for call in sent) == [first.pk, second.pk]
    # when: a worker starts the first one, and the dispatcher ticks again
    task_started(SimpleNamespace(**{HEADER: f"sync:{first.pk}", "headers": None}))
    tasks.channels_dispatch_syncs_task()
    # then: only that account is queued again
    assert [call[1][0] for call in sent[2:]] == [first.pk]


@pytest.fixture
def other_session():
    """A second database session (another worker), connected to the test database."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as conn:
        yield conn


@pytest.mark.django_db
def test_an_account_whose_sync_is_running_is_not_due_and_its_run_is_not_swept(other_session):
    # given: an account due, whose sync lock another worker holds, with its run
    account = _account("wm-running")
    run = SyncRun.objects.create(account=account, kind=SyncKind.POLL)
    other_session.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_NAMESPACE, account.pk])
    # then: the dispatcher leaves it alone, and the sweep leaves its run running
    assert account.pk not in syncs_due()
    assert sync_runs_sweep() == 0
    run.refresh_from_db()
    assert run.status == SyncStatus.RUNNING
    # when: that worker dies (its session ends, the server releases the lock)
    other_session.execute("SELECT pg_advisory_unlock_all()")
    # then: the account is due again and its run is failed by the sweep, with the reason
    assert account.pk in syncs_due()
    assert sync_runs_sweep() == 1
    run.refresh_from_db()
    assert run.status == SyncStatus.FAILED and run.finished_at and "stopped" in run.error


def test_beat_does_not_send_an_entry_whose_last_message_is_still_waiting(monkeypatch):
    # given: beat's scheduler and a five-second entry
    sent_headers = []
    monkeypatch.setattr(heartbeat_task, "apply_async", lambda *a, **kw: sent_headers.append(kw["headers"]))
    scheduler = Scheduler.__new__(Scheduler)
    scheduler.app = celery_app
    scheduler._tasks_since_sync = 0
    scheduler.should_sync = lambda: False
    entry = ScheduleEntry(name="heartbeat", task=heartbeat_task.name, schedule=timedelta(seconds=5), app=celery_app)
    # when: it comes due three times before a worker takes the first message
    for _ in range(3):
        scheduler.apply_async(entry, advance=False)
    # then: one message was sent, marked
    assert len(sent_headers) == 1 and sent_headers[0][HEADER] == "beat:heartbeat"
    assert is_pending("beat:heartbeat")
    # when: a worker starts it; then the next tick sends again
    task_started(SimpleNamespace(headers=sent_headers[0]))
    scheduler.apply_async(entry, advance=False)
    assert len(sent_headers) == 2


# --- webhook drains ---------------------------------------------------------------------------------


def _deliver(client, sandbox, account, order, webhook_id, **kwargs):
    body, headers = _signed(sandbox, order, "whsec-current", webhook_id=webhook_id, **kwargs)
    response = client.post(f"/webhooks/shopify/{account.pk}/", body, content_type="application/json", **headers)
    assert response.status_code == 200
    return response


def _reads(sandbox) -> int:
    return sandbox.state.requests


@pytest.mark.django_db
def test_a_burst_for_one_order_is_one_read_and_repeats_of_a_known_update_are_none(
    client, shopify_sandbox, shopify_account, skus
):
    # given: 30 deliveries (distinct ids) about one order, then the drain
    (made,) = shopify_sandbox.state.generate(1, unknown_sku=False)
    for n in range(30):
        _deliver(client, shopify_sandbox, shopify_account, made, f"burst-{n}")
    before = _reads(shopify_sandbox)
    drain = webhook_events_drain(account_id=shopify_account.pk)
    # then: all 30 processed with one read of the order
    assert (drain.processed, drain.failed, drain.more) == (30, 0, False)
    assert _reads(shopify_sandbox) - before == 1
    order = Order.objects.get(account_id=shopify_account.pk)
    assert set(InboundEvent.objects.filter(kind=InboundKind.WEBHOOK).values_list("status", "order_id")) == {
        (InboundStatus.PROCESSED, order.pk)
    }
    # when: the channel re-sends the same update 20 times (new delivery ids)
    for n in range(20):
        _deliver(client, shopify_sandbox, shopify_account, made, f"again-{n}")
    before = _reads(shopify_sandbox)
    drain = webhook_events_drain(account_id=shopify_account.pk)
    # then: processed without reading the channel at all
    assert drain.processed == 20 and _reads(shopify_sandbox) == before


@pytest.mark.django_db
def test_many_orders_to_read_are_read_by_one_sync_pass(client, shopify_sandbox, shopify_account, skus, settings):
    # given: webhooks for 12 new orders, above the threshold
    settings.WAYBILL_WEBHOOK_SYNC_THRESHOLD = 10
    made = shopify_sandbox.state.generate(12, unknown_sku=False)
    for n, order in enumerate(made):
        _deliver(client, shopify_sandbox, shopify_account, order, f"new-{n}")
    # when
    drain = webhook_events_drain(account_id=shopify_account.pk)
    # then: a webhook sync ran, and every event is processed with its order
    assert drain.synced and drain.processed == 12
    assert SyncRun.objects.filter(account=shopify_account, kind=SyncKind.WEBHOOK, status=SyncStatus.SUCCEEDED).exists()
    assert not InboundEvent.objects.filter(status=InboundStatus.RECEIVED).exists()
    assert Order.objects.filter(account_id=shopify_account.pk).count() == 12


@pytest.mark.django_db
def test_a_retryable_channel_error_leaves_events_received_and_comes_back_with_backoff(
    client, shopify_sandbox, shopify_account, skus, sent, settings
):
    # given: two orders' webhooks, and a channel answering 500 to everything for now
    settings.WAYBILL_WEBHOOK_MAX_ATTEMPTS = 3
    first, second = shopify_sandbox.state.generate(2, unknown_sku=False)
    _deliver(client, shopify_sandbox, shopify_account, first, "a")
    _deliver(client, shopify_sandbox, shopify_account, second, "b")
    shopify_sandbox.state.faults.error_500_next = 10_000
    # when: the drain task runs
    tasks.channels_webhooks_process_task(shopify_account.pk)
    # then: nothing is lost: both stay received, the one tried counts an attempt with the error
    events = list(InboundEvent.objects.order_by("pk"))
    assert [e.status for e in events] == [InboundStatus.RECEIVED, InboundStatus.RECEIVED]
    assert events[0].attempts == 1 and "500" in events[0].error and events[1].attempts == 0
    # and: the drain comes back after a backoff, once
    assert sent == [("channels_webhooks_process_task", [shopify_account.pk], f"webhooks:{shopify_account.pk}", 5.0)]
    # when: it keeps failing up to the last attempt
    for _ in range(2):
        cache.clear()
        tasks.channels_webhooks_process_task(shopify_account.pk)
    # then: the event is failed for good and visible; its order is left to the sync's retry by id
    events[0].refresh_from_db()
    assert events[0].status == InboundStatus.FAILED and events[0].attempts == 3
    assert [call[3] for call in sent] == [5.0, 10.0, 20.0]
    # when: the channel answers again
    shopify_sandbox.state.faults.error_500_next = 0
    tasks.channels_webhooks_process_task(shopify_account.pk)
    events[1].refresh_from_db()
    assert events[1].status == InboundStatus.PROCESSED


@pytest.mark.django_db
def test_webhooks_waiting_too_long_open_one_case_resolved_when_they_are_processed(
    client, shopify_sandbox, shopify_account, skus
):
    # given: a webhook event received 11 minutes ago and still waiting
    (made,) = shopify_sandbox.state.generate(1, unknown_sku=False)
    _deliver(client, shopify_sandbox, shopify_account, made, "old")
    InboundEvent.objects.update(received_at=timezone.now() - timedelta(minutes=11))
    # when: the age check runs twice
    assert webhook_backlog_check() == {shopify_account.pk: 1}
    webhook_backlog_check()
    # then: one open case for the account says so
    (case,) = ExceptionCase.objects.filter(account_id=shopify_account.pk)
    assert case.status != CaseStatus.RESOLVED and "1 webhook event(s) waiting more than 10 minutes" in case.title
    # when: the events are processed and the check runs again; then the case is resolved
    webhook_events_drain(account_id=shopify_account.pk)
    assert webhook_backlog_check() == {}
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED


# --- the relay: circuit breaker, stopping, leases ------------------------------------------------------


def _acks(sandbox, account: ChannelAccount, count: int) -> list[OutboxMessage]:
    """Acknowledgements of ``count`` new purchase orders at the Walmart sandbox, queued (no relay kicked)."""
    made = sandbox.state.generate(count, unknown_sku=False, fulfilled_by="MERCHANT", status="unshipped")
    return [
        outbox_enqueue(
            account_id=account.pk,
            kind=OutboxKind.ACKNOWLEDGE,
            dedupe_key=f"ack:{order.order_id}",
            payload={"order_external_id": order.order_id},
        )[0]
        for order in made
    ]


@pytest.fixture
def no_relay_kicks(monkeypatch):
    monkeypatch.setattr(tasks, "outbox_relay_dispatch", lambda *args, **kwargs: False)


@pytest.mark.django_db
def test_a_channel_that_is_down_opens_the_circuit_and_the_relay_returns(walmart_sandbox, walmart_account, settings):
    # given: ten acknowledgements for an account whose channel refuses connections
    settings.WAYBILL_OUTBOX_BREAKER_FAILURES = 3
    messages = _acks(walmart_sandbox, walmart_account, 10)
    ChannelAccount.objects.filter(pk=walmart_account.pk).update(api_base_url="http://127.0.0.1:1")
    # when: the relay runs
    started = time.monotonic()
    counts = outbox_relay(account_id=walmart_account.pk)
    # then: three sends failed (an attempt each), the circuit opened, the other seven were given back unspent
    assert counts == {"failed": 3, "circuit_opened": 1, "deferred": 7}
    assert time.monotonic() - started < 10
    state = outbox_circuit(walmart_account.pk)
    assert state["failures"] == 3 and state["opened"] == 1
    rows = list(OutboxMessage.objects.filter(pk__in=[m.pk for m in messages]).order_by("pk"))
    assert [m.attempts for m in rows] == [1, 1, 1] + [0] * 7
    assert all(m.status == OutboxStatus.FAILED for m in rows)
    assert all(m.next_attempt_at >= timezone.now() + timedelta(seconds=20) for m in rows[3:])
    # when: the relay runs again before the cool-down ends; then it sends nothing
    assert outbox_relay(account_id=walmart_account.pk) == {}
    # when: the cool-down has passed and the channel is back
    ChannelAccount.objects.filter(pk=walmart_account.pk).update(api_base_url=walmart_sandbox.base_url)
    OutboxMessage.objects.update(next_attempt_at=timezone.now())
    cache.set(
        f"waybill:outbox-circuit:{walmart_account.pk}",
        {**state, "open_until": (timezone.now() - timedelta(seconds=1)).isoformat()},
    )
    counts = outbox_relay(account_id=walmart_account.pk)
    # then: the probe went through, the circuit closed, and everything was sent
    assert counts == {"sent": 10}
    assert outbox_circuit(walmart_account.pk) == {}


@pytest.mark.django_db
def test_a_failed_probe_opens_the_circuit_again_for_longer(walmart_sandbox, walmart_account, settings):
    # given: an open circuit whose cool-down has passed, and a channel still down
    settings.WAYBILL_OUTBOX_BREAKER_FAILURES = 3
    _acks(walmart_sandbox, walmart_account, 4)
    ChannelAccount.objects.filter(pk=walmart_account.pk).update(api_base_url="http://127.0.0.1:1")
    past = (timezone.now() - timedelta(seconds=1)).isoformat()
    cache.set(f"waybill:outbox-circuit:{walmart_account.pk}", {"failures": 3, "opened": 1, "open_until": past})
    # when
    counts = outbox_relay(account_id=walmart_account.pk)
    # then: one probe, then the rest given back; the circuit is open for twice as long
    assert counts == {"failed": 1, "circuit_opened": 1, "deferred": 3}
    state = outbox_circuit(walmart_account.pk)
    until = timezone.datetime.fromisoformat(state["open_until"])
    assert state["opened"] == 2 and until > timezone.now() + timedelta(seconds=50)


@pytest.mark.django_db
def test_a_stopping_worker_relay_gives_its_messages_back_and_returns(walmart_sandbox, walmart_account):
    # given: five acknowledgements, and a worker asked to stop after the first send
    messages = _acks(walmart_sandbox, walmart_account, 5)
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 1

    # when
    counts = outbox_relay(account_id=walmart_account.pk, should_stop=should_stop)
    # then: one sent, four given back without spending an attempt, due now
    assert counts == {"sent": 1, "stopped": 4}
    rows = OutboxMessage.objects.filter(pk__in=[m.pk for m in messages]).order_by("pk")
    assert [(m.status, m.attempts) for m in rows] == [(OutboxStatus.SENT, 1)] + [(OutboxStatus.FAILED, 0)] * 4


@pytest.mark.django_db(transaction=True)
def test_the_relay_keeps_renewing_the_lease_of_what_it_holds(
    walmart_sandbox, walmart_account, settings, no_relay_kicks
):
    # given: a short lease, and a channel slower than it
    settings.WAYBILL_OUTBOX_LEASE_SECONDS = 0.9
    walmart_sandbox.state.faults.slow_ms = 700
    _, second = _acks(walmart_sandbox, walmart_account, 2)
    seen = []
    done = threading.Event()

    def watch():
        try:
            while not done.is_set():
                seen.append(OutboxMessage.objects.values_list("next_attempt_at", flat=True).get(pk=second.pk))
                time.sleep(0.1)
        finally:
            connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    # when: the relay sends both (the first takes longer than the lease: its token, then the call)
    try:
        counts = outbox_relay(account_id=walmart_account.pk)
    finally:
        done.set()
        watcher.join()
    # then: both sent, and the second's lease moved forward while it waited
    assert counts == {"sent": 2}
    claimed = [at for at in seen if at is not None]
    assert len(set(claimed)) >= 3, "the lease of the waiting message was not renewed"


@pytest.mark.django_db
def test_the_interval_counts_from_the_start_of_the_last_run():
    # given: a 30 s account whose last sync started 35 s ago and took 25 s
    account = _account("wm-slow")
    now = timezone.now()
    SyncRun.objects.create(
        account=account,
        kind=SyncKind.POLL,
        status=SyncStatus.SUCCEEDED,
        started_at=now - timedelta(seconds=35),
        finished_at=now - timedelta(seconds=10),
    )
    ChannelAccount.objects.filter(pk=account.pk).update(last_synced_at=now - timedelta(seconds=10))
    # then: it is due now, not 20 s from now
    assert account.pk in syncs_due(now=now)
    # and: one whose last run started 20 s ago is not
    assert account.pk not in syncs_due(now=now - timedelta(seconds=15))


@pytest.mark.django_db
def test_a_relay_sends_nothing_to_an_account_whose_circuit_is_open_and_gives_its_messages_back(
    walmart_sandbox, walmart_account
):
    # given: four due acknowledgements, and the account's circuit opened a moment ago for another minute
    messages = _acks(walmart_sandbox, walmart_account, 4)
    until = timezone.now() + timedelta(minutes=1)
    circuit = {"failures": 3, "opened": 1, "open_until": until.isoformat()}
    cache.set(f"waybill:outbox-circuit:{walmart_account.pk}", circuit)
    # when: the relay runs
    counts = outbox_relay(account_id=walmart_account.pk)
    # then: nothing reached the channel; each message is given back, unspent, for when the circuit half-opens
    assert counts == {"deferred": 4}
    assert walmart_sandbox.acknowledged == set()
    rows = OutboxMessage.objects.filter(pk__in=[m.pk for m in messages])
    assert {(m.status, m.attempts, m.next_attempt_at) for m in rows} == {(OutboxStatus.FAILED, 0, until)}
