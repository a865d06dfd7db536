"""Quarantine without loss on channels other than Amazon (test_quarantine.py follows Amazon): an order
served malformed once is read again by id by the next scheduled sync, after the cursor moved past it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from channels.models import InboundEvent, InboundStatus, SyncStatus
from channels.sync import sync_account_run
from orders.models import Order
from tests.channels.e2e_helpers import external_id

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["walmart", "ebay", "tiktok"])
def channel(request):
    return request.getfixturevalue(f"{request.param}_sandbox"), request.getfixturevalue(f"{request.param}_account")


def test_an_order_served_malformed_once_is_recovered_by_the_next_scheduled_sync(channel, skus):
    sandbox, account = channel
    # given: an order placed two hours ago served malformed, and a fresh one; the first sync moves past both
    (bad,) = sandbox.state.generate(
        1,
        lines=1,
        status="unshipped",
        fulfilled_by="MERCHANT",
        unknown_sku=False,
        created_at=timezone.now().replace(microsecond=0) - timedelta(hours=2),
    )
    bad.malformed = "bad_quantity"
    sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    first = sync_account_run(account_id=account.pk)
    assert first.status == SyncStatus.PARTIAL and first.orders_failed == 1
    failed = InboundEvent.objects.get(status=InboundStatus.FAILED)
    # when: the channel serves it right again, without a newer update time, and the next sync runs
    with sandbox.state.lock:
        bad.malformed = ""
    run = sync_account_run(account_id=account.pk)
    # then: the retry by id brought it in
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert run.progress["quarantine"] == {"retried": 1, "recovered": 1, "still_failed": 0}
    order = Order.objects.get(account_id=account.pk, external_id=external_id(account, bad))
    assert order.lines.get().quantity == bad.lines[0].quantity
    failed.refresh_from_db()
    assert failed.status == InboundStatus.PROCESSED and failed.order_id == order.pk
    assert "quarantine" not in sync_account_run(account_id=account.pk).progress
