"""Quarantine without loss, over real HTTP against the Amazon sandbox: an order that failed once is read
again by id (getOrder), by the scheduled sync after its pages and by re-process in the console, until it goes
in or a person discards it; the cursor moving past it loses nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from channels.inbound import inbound_event_discard, inbound_event_reprocess
from channels.models import ChannelAccountEvent, InboundEvent, InboundStatus, SyncStatus
from channels.services import connector_for
from channels.sync import sync_account_run
from config.kernel.errors import DomainError
from orders.models import Order

pytestmark = pytest.mark.django_db


def _quarantined(sandbox, account, *, count: int = 1):
    """Orders placed two hours ago and served malformed, then a fresh order: the first sync (a backfill)
    fails the old ones and moves the cursor to now, far past them."""
    made = sandbox.state.generate(
        count,
        lines=1,
        status="unshipped",
        fulfilled_by="MERCHANT",
        unknown_sku=False,
        created_at=timezone.now().replace(microsecond=0) - timedelta(hours=2),
    )
    for order in made:
        order.malformed = "bad_quantity"
    sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    run = sync_account_run(account_id=account.pk)
    assert run.status == SyncStatus.PARTIAL and run.orders_failed == count
    return made


def _fix(sandbox, order) -> None:
    """The channel corrects the order without bumping its update time: no incremental poll sees it again."""
    with sandbox.state.lock:
        order.malformed = ""


def test_the_next_scheduled_sync_recovers_a_quarantined_order_by_id(amazon_sandbox, amazon_account, skus):
    # given: a quarantined order, then fixed at the channel with its old update time
    (made,) = _quarantined(amazon_sandbox, amazon_account)
    failed = InboundEvent.objects.get(status=InboundStatus.FAILED)
    _fix(amazon_sandbox, made)
    # when: the next scheduled sync
    run = sync_account_run(account_id=amazon_account.pk)
    # then: its pages did not bring the order back (the cursor moved past it), the by-id retry did
    assert run.status == SyncStatus.SUCCEEDED and run.orders_seen == 1
    assert run.progress["quarantine"] == {"retried": 1, "recovered": 1, "still_failed": 0}
    order = Order.objects.get(account_id=amazon_account.pk, external_id=made.order_id)
    assert order.lines.get().quantity == made.lines[0].quantity
    fresh = InboundEvent.objects.exclude(pk=failed.pk).get(external_id=made.order_id, status=InboundStatus.PROCESSED)
    assert fresh.order_id == order.pk
    failed.refresh_from_db()
    assert failed.status == InboundStatus.PROCESSED and failed.order_id == order.pk
    assert f"Superseded by event #{fresh.pk}" in failed.error and "quantityOrdered" in failed.error
    # when: one more sync
    again = sync_account_run(account_id=amazon_account.pk)
    # then: nothing is left to retry
    assert "quarantine" not in again.progress


def test_a_failed_read_keeps_the_event_failed_and_retries_wait_longer_each_time(amazon_sandbox, amazon_account, skus):
    # given: a quarantined order the channel keeps serving malformed
    (made,) = _quarantined(amazon_sandbox, amazon_account)
    event = InboundEvent.objects.get(status=InboundStatus.FAILED)
    # when: the next sync reads it again
    first = sync_account_run(account_id=amazon_account.pk)
    # then: same payload, so the same event failed again
    assert first.progress["quarantine"] == {"retried": 1, "recovered": 0, "still_failed": 1}
    event.refresh_from_db()
    assert event.status == InboundStatus.FAILED and event.attempts == 2
    assert InboundEvent.objects.filter(external_id=made.order_id).count() == 1
    # when: a sync right after: the retry waits the account's interval first
    assert "quarantine" not in sync_account_run(account_id=amazon_account.pk).progress
    # when: the interval has passed since the last try
    InboundEvent.objects.filter(pk=event.pk).update(processed_at=timezone.now() - timedelta(seconds=61))
    # then
    assert sync_account_run(account_id=amazon_account.pk).progress["quarantine"]["retried"] == 1


def test_retries_are_bounded_per_run_and_take_turns(settings, amazon_sandbox, amazon_account, skus):
    # given: three quarantined orders and two retries allowed per run
    settings.WAYBILL_SYNC_RETRY_FAILED_ORDERS = 2
    made = _quarantined(amazon_sandbox, amazon_account, count=3)
    # when / then: the two least recently tried go first, the third on the next run
    assert sync_account_run(account_id=amazon_account.pk).progress["quarantine"]["retried"] == 2
    tried = set(InboundEvent.objects.filter(attempts=2).values_list("external_id", flat=True))
    for order in made:
        _fix(amazon_sandbox, order)
    assert sync_account_run(account_id=amazon_account.pk).progress["quarantine"] == {
        "retried": 1,
        "recovered": 1,
        "still_failed": 0,
    }
    recovered = set(Order.objects.values_list("external_id", flat=True)) & {o.order_id for o in made}
    assert recovered == {o.order_id for o in made} - tried


def test_an_order_updated_at_the_channel_closes_its_older_failure_without_a_read(amazon_sandbox, amazon_account, skus):
    # given: a quarantined order that the channel later fixes and updates (a poll sees it)
    (made,) = _quarantined(amazon_sandbox, amazon_account)
    with amazon_sandbox.state.lock:
        made.malformed = ""
        amazon_sandbox.state.touch(made)
    # when
    run = sync_account_run(account_id=amazon_account.pk)
    # then: ingested by the poll; the old failure is closed and nothing was re-read by id
    assert run.orders_created == 1 and "quarantine" not in run.progress
    assert not InboundEvent.objects.filter(status=InboundStatus.FAILED).exists()
    old = InboundEvent.objects.filter(external_id=made.order_id).order_by("pk").first()
    assert "Superseded by a newer event" in old.error


def test_reprocess_reads_the_order_from_the_channel_not_the_stored_payload(
    client, agent, amazon_sandbox, amazon_account, skus
):
    # given: a quarantined order fixed at the channel
    (made,) = _quarantined(amazon_sandbox, amazon_account)
    event = InboundEvent.objects.get(status=InboundStatus.FAILED)
    _fix(amazon_sandbox, made)
    client.force_login(agent)
    # when: an agent re-processes it from the console
    response = client.post(reverse("channels:inbound-reprocess", args=[event.pk]))
    # then
    assert response.status_code == 302
    event.refresh_from_db()
    assert event.status == InboundStatus.PROCESSED
    assert event.order_id == Order.objects.get(external_id=made.order_id).pk
    assert InboundEvent.objects.filter(external_id=made.order_id).count() == 2  # the fresh read is kept too


def test_reprocess_of_an_order_the_channel_cannot_find_keeps_it_failed_and_says_so(
    amazon_sandbox, amazon_account, skus
):
    # given: a quarantined order that the channel no longer has
    (made,) = _quarantined(amazon_sandbox, amazon_account)
    event = InboundEvent.objects.get(status=InboundStatus.FAILED)
    with amazon_sandbox.state.lock:
        del amazon_sandbox.state.orders[made.order_id]
    connector = connector_for(amazon_account)
    # when
    again = inbound_event_reprocess(event=event, connector=connector, actor="agent")
    # then
    assert again.status == InboundStatus.FAILED and again.attempts == 2
    assert "Re-read from the channel failed" in again.error and "was not found" in again.error
    assert "quantityOrdered" in again.error  # the first error is kept
    # when: the channel is down
    amazon_sandbox.state.faults.error_500_next = 1000
    again = inbound_event_reprocess(event=again, connector=connector, actor="agent")
    connector.close()
    # then: still failed, saying the channel failed, the first error still there once
    assert again.status == InboundStatus.FAILED and "HTTP 500" in again.error
    assert again.error.count("quantityOrdered") == 1 and "was not found" not in again.error


def test_discard_stops_the_retries_and_is_audited(client, agent, amazon_sandbox, amazon_account, skus):
    # given: a quarantined order the channel keeps serving malformed
    (made,) = _quarantined(amazon_sandbox, amazon_account)
    event = InboundEvent.objects.get(status=InboundStatus.FAILED)
    client.force_login(agent)
    # when: discarded without a reason
    refused = client.post(reverse("channels:inbound-discard", args=[event.pk]), {"reason": "  "})
    # then: refused, nothing changed
    assert refused.status_code == 400 and "needs a reason" in refused.text
    event.refresh_from_db()
    assert event.status == InboundStatus.FAILED
    # when: discarded with a reason
    response = client.post(
        reverse("channels:inbound-discard", args=[event.pk]), {"reason": "Test order, cancelled by phone"}
    )
    # then
    assert response.status_code == 302
    event.refresh_from_db()
    assert event.status == InboundStatus.DISCARDED
    audit = ChannelAccountEvent.objects.get(kind="inbound_discarded")
    assert audit.actor == agent.get_username() and audit.reason == "Test order, cancelled by phone"
    assert audit.data["event_ids"] == [event.pk] and audit.data["external_id"] == made.order_id
    # and the sync no longer reads it, even when a retry would be due
    InboundEvent.objects.filter(pk=event.pk).update(processed_at=timezone.now() - timedelta(days=1))
    requests = amazon_sandbox.state.requests
    run = sync_account_run(account_id=amazon_account.pk)
    assert "quarantine" not in run.progress
    assert amazon_sandbox.state.requests - requests <= 2  # token + one search page, no getOrder
    # and a discarded event is neither discarded again nor re-processed
    with pytest.raises(DomainError):
        inbound_event_discard(event=event, reason="again", actor="agent")
    assert client.post(reverse("channels:inbound-reprocess", args=[event.pk])).status_code == 409
