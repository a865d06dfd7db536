"""The exception queue's retry fix for channel cases: parked outbox messages are queued again, failed
syncs started again, other cases named as having nothing to retry."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from channels import views
from channels.models import OutboxKind, OutboxMessage, OutboxStatus
from orders import services
from orders.models import CaseStatus, ExceptionCase, ExceptionKind
from tests.factories import ChannelAccountFactory

pytestmark = pytest.mark.django_db


def test_bulk_retry_requeues_parked_messages_restarts_syncs_and_names_the_rest(
    client, manager, monkeypatch, django_capture_on_commit_callbacks
):
    started = []
    monkeypatch.setattr(views.channels_sync_account_task, "delay", started.append)
    account = ChannelAccountFactory(kind="walmart", name="walmart-us")
    message = OutboxMessage.objects.create(
        account=account, kind=OutboxKind.INVENTORY, dedupe_key="inv:1", payload={}, status=OutboxStatus.PARKED
    )
    parked, _ = services.exception_case_open(
        kind=ExceptionKind.OUTBOX_PARKED, title="parked", account_id=account.pk, actor="relay",
        dedupe_key=f"outbox_parked:{message.pk}",
    )  # fmt: skip
    sync, _ = services.exception_case_open(
        kind=ExceptionKind.SYNC_FAILURE, title="sync failing", account_id=account.pk, actor="sync"
    )
    other, _ = services.exception_case_open(kind=ExceptionKind.OTHER, title="other", actor="t")
    client.force_login(manager)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("channels:cases-retry"), {"ids": [parked.pk, sync.pk, other.pk]}, follow=True)
    page = response.content.decode()
    assert "retry: 2 of 3 case(s) done" in page and f"#{other.pk}: case #{other.pk} is a other case" in page
    message.refresh_from_db()
    # queued again (the eager relay in tests then tries it at once against a channel that is not there)
    assert message.status in (OutboxStatus.PENDING, OutboxStatus.FAILED) and message.attempts <= 1
    assert started == [account.pk]
    assert set(ExceptionCase.objects.filter(pk__in=[parked.pk, sync.pk]).values_list("status", flat=True)) == {
        CaseStatus.RESOLVED
    }
    assert ExceptionCase.objects.get(pk=other.pk).status == CaseStatus.OPEN


def test_pushes_failing_repeatedly_open_one_case_per_account_and_resolve_when_they_recover():
    from channels.fixes import push_failures_detect

    account = ChannelAccountFactory(kind="tiktok", name="tiktok-us")
    messages = [
        OutboxMessage.objects.create(
            account=account, kind=OutboxKind.INVENTORY, dedupe_key=f"inv:{i}", payload={},
            status=OutboxStatus.FAILED, attempts=attempts,
        )
        for i, attempts in enumerate((3, 5, 1))
    ]  # fmt: skip
    found = push_failures_detect()
    [case_id] = found["opened"]
    case = ExceptionCase.objects.get(pk=case_id)
    assert (case.kind, case.account_id) == (ExceptionKind.PUSH_FAILING, account.pk)
    assert case.title == "tiktok-us: 2 push(es) failing repeatedly" and case.due_at is not None
    assert push_failures_detect()["opened"] == []  # one case per account, refreshed
    OutboxMessage.objects.filter(pk__in=[m.pk for m in messages]).update(
        status=OutboxStatus.SENT, sent_at=timezone.now()
    )
    assert push_failures_detect()["resolved"] == [case_id]


def test_discarding_a_parked_message_never_sends_it_and_resolves_its_case(client, manager):
    from channels.outbox import outbox_claim

    account = ChannelAccountFactory(kind="walmart", name="walmart-us")
    message = OutboxMessage.objects.create(
        account=account, kind=OutboxKind.INVENTORY, dedupe_key="inv:9", payload={}, status=OutboxStatus.PARKED
    )
    case, _ = services.exception_case_open(
        kind=ExceptionKind.OUTBOX_PARKED, title="parked", account_id=account.pk, actor="relay",
        dedupe_key=f"outbox_parked:{message.pk}",
    )  # fmt: skip
    client.force_login(manager)
    refused = client.post(reverse("channels:outbox-discard", args=[message.pk]), {"reason": ""}, follow=True)
    assert "needs a reason" in refused.content.decode()
    message.refresh_from_db()
    assert message.status == OutboxStatus.PARKED
    client.post(reverse("channels:outbox-discard", args=[message.pk]), {"reason": "listing deleted at Walmart"})
    message.refresh_from_db()
    case.refresh_from_db()
    assert message.status == OutboxStatus.DISCARDED and "listing deleted" in message.last_error
    assert case.status == CaseStatus.RESOLVED
    assert message.pk not in outbox_claim(account_id=account.pk, now=timezone.now())
    again = client.post(reverse("channels:outbox-discard", args=[message.pk]), {"reason": "x"}, follow=True)
    assert "only failed or parked messages are discarded" in again.content.decode()
