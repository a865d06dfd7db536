"""Relays in real processes claiming from one queue: each due message is leased to exactly one of them."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from channels.models import OutboxKind, OutboxMessage, OutboxStatus
from channels.outbox import outbox_claim
from tests.factories import ChannelAccountFactory
from tests.processes import run_in_processes

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]


def _claim(account_id: int) -> tuple[str, list[int]]:
    claimed: list[int] = []
    while batch := outbox_claim(account_id=account_id, limit=3):
        claimed += batch
    return "ok", claimed


def test_eight_relays_claiming_at_once_lease_each_due_message_once():
    # given 40 due messages of one account (some pending, some failed, some with an expired lease), 10 of
    # another account, and 5 of the first that are not due
    account, other = ChannelAccountFactory(name="race-a"), ChannelAccountFactory(name="race-b")
    now = timezone.now()
    statuses = [OutboxStatus.PENDING, OutboxStatus.FAILED, OutboxStatus.SENDING]
    due = [
        OutboxMessage.objects.create(
            account=account,
            kind=OutboxKind.ACKNOWLEDGE,
            dedupe_key=f"due-{n}",
            payload={},
            status=statuses[n % 3],
            attempts=n % 3,
            next_attempt_at=now - timedelta(seconds=n + 1),
        )
        for n in range(40)
    ]
    for n in range(10):
        OutboxMessage.objects.create(account=other, kind=OutboxKind.ACKNOWLEDGE, dedupe_key=f"o-{n}", payload={})
    for n in range(5):
        OutboxMessage.objects.create(
            account=account,
            kind=OutboxKind.ACKNOWLEDGE,
            dedupe_key=f"later-{n}",
            payload={},
            next_attempt_at=now + timedelta(minutes=10),
        )
    # when 8 processes claim in small batches until nothing is left
    outcomes = run_in_processes(_claim, [(i, account.pk) for i in range(8)])
    # then every due message was claimed by exactly one process, once, and nothing else was claimed
    assert {outcome for outcome, _ in outcomes.values()} == {"ok"}
    counted = Counter(pk for _, claimed in outcomes.values() for pk in claimed)
    assert sorted(counted) == sorted(m.pk for m in due) and set(counted.values()) == {1}
    rows = {m.pk: m for m in OutboxMessage.objects.filter(account=account)}
    assert all(rows[m.pk].status == OutboxStatus.SENDING and rows[m.pk].attempts == m.attempts + 1 for m in due)
    assert OutboxMessage.objects.filter(account=other, status=OutboxStatus.PENDING).count() == 10
    assert OutboxMessage.objects.filter(account=account, status=OutboxStatus.PENDING, attempts=0).count() == 5
    # and one more claim here finds nothing due
    assert outbox_claim(account_id=account.pk) == []
