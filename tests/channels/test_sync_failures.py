"""A failing sync is never silent, over real HTTP against the Amazon sandbox: a failed first backfill (or polls
failing three times in a row) opens one sync-failure case for the account, the account backs off instead of
hammering the channel every tick, the console shows it, and the first sync that succeeds resolves the case."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from channels.models import SyncKind, SyncStatus
from channels.sync import sync_account_run, sync_backoff, syncs_due
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, Severity

pytestmark = pytest.mark.django_db


def _in(seconds: int):
    return timezone.now() + timedelta(seconds=seconds)


def test_a_failing_first_backfill_opens_one_case_backs_off_and_is_resolved_by_success(
    client, viewer, amazon_sandbox, amazon_account, skus
):
    # given: a new account whose channel answers 500 to everything
    amazon_sandbox.state.generate(2, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    amazon_sandbox.state.faults.error_500_next = 10_000
    # when: the first sync
    first = sync_account_run(account_id=amazon_account.pk)
    # then: failed, with a case at once, naming the channel's error
    assert first.kind == SyncKind.BACKFILL and first.status == SyncStatus.FAILED
    (case,) = ExceptionCase.objects.filter(kind=ExceptionKind.SYNC_FAILURE)
    assert case.account_id == amazon_account.pk and case.severity == Severity.CRITICAL
    assert "HTTP 500" in case.detail and "backfill" in case.title
    assert first.progress["consecutive_failures"] == 1 and first.progress["backoff_seconds"] == 60
    assert syncs_due() == [] and syncs_due(now=_in(61)) == [amazon_account.pk]
    # when: it fails again
    second = sync_account_run(account_id=amazon_account.pk)
    # then: the wait doubles: the dispatcher holds the account although its interval has passed
    assert second.progress["consecutive_failures"] == 2 and second.progress["backoff_seconds"] == 120
    assert syncs_due(now=_in(61)) == [] and syncs_due(now=_in(121)) == [amazon_account.pk]
    # and still one case
    assert ExceptionCase.objects.filter(kind=ExceptionKind.SYNC_FAILURE).count() == 1
    # and the console shows it
    client.force_login(viewer)
    page = client.get(reverse("channels:account", args=[amazon_account.pk]))
    assert page.status_code == 200
    assert "backing off" in page.text and case.title in page.text
    listing = client.get(reverse("channels:accounts"))
    assert reverse("channels:account", args=[amazon_account.pk]) in listing.text and "next try" in listing.text
    # when: the channel recovers
    amazon_sandbox.state.faults.error_500_next = 0
    run = sync_account_run(account_id=amazon_account.pk)
    # then: ingested, the case resolved by itself, the backoff gone
    assert run.status == SyncStatus.SUCCEEDED and run.orders_created == 2
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED and f"#{run.pk}" in case.resolution_note
    assert run.progress["consecutive_failures"] == 0
    assert syncs_due(now=_in(61)) == [amazon_account.pk]


def test_polls_open_a_case_only_after_three_failures_in_a_row(amazon_sandbox, amazon_account, skus):
    # given: an account that has synced once
    amazon_sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    assert sync_account_run(account_id=amazon_account.pk).status == SyncStatus.SUCCEEDED
    amazon_sandbox.state.faults.error_500_next = 10_000
    # when: two failed polls
    runs = [sync_account_run(account_id=amazon_account.pk) for _ in range(2)]
    # then: no case yet (a blip is not a case)
    assert [r.kind for r in runs] == [SyncKind.POLL, SyncKind.POLL]
    assert not ExceptionCase.objects.filter(kind=ExceptionKind.SYNC_FAILURE).exists()
    # when: a third
    third = sync_account_run(account_id=amazon_account.pk)
    # then
    assert third.progress["consecutive_failures"] == 3
    (case,) = ExceptionCase.objects.filter(kind=ExceptionKind.SYNC_FAILURE)
    assert "3 syncs in a row" in case.title and case.severity == Severity.HIGH
    # when: the channel recovers
    amazon_sandbox.state.faults.error_500_next = 0
    sync_account_run(account_id=amazon_account.pk)
    # then
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED


def test_a_success_between_failures_starts_the_count_again(amazon_sandbox, amazon_account, skus):
    # given
    assert sync_account_run(account_id=amazon_account.pk).status == SyncStatus.SUCCEEDED
    amazon_sandbox.state.faults.error_500_next = 10_000
    sync_account_run(account_id=amazon_account.pk)
    sync_account_run(account_id=amazon_account.pk)
    amazon_sandbox.state.faults.error_500_next = 0
    sync_account_run(account_id=amazon_account.pk)
    amazon_sandbox.state.faults.error_500_next = 10_000
    # when
    run = sync_account_run(account_id=amazon_account.pk)
    # then
    assert run.progress["consecutive_failures"] == 1
    assert not ExceptionCase.objects.filter(kind=ExceptionKind.SYNC_FAILURE).exists()


def test_the_backoff_doubles_up_to_an_hour(settings):
    settings.WAYBILL_SYNC_BACKOFF_CAP_SECONDS = 3600
    waits = [sync_backoff(interval_seconds=60, failures=n).total_seconds() for n in range(1, 9)]
    assert waits == [60, 120, 240, 480, 960, 1920, 3600, 3600]
