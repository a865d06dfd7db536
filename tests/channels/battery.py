"""The fault battery every channel's sync faces, shared by the channel test modules.

``generate(sandbox, count)`` makes ``count`` orders in that channel's sandbox; the sandbox's fault
switches are the same for every channel. Each check returns the sync run it judged, for a channel's
own further assertions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from channels.models import InboundEvent, InboundStatus, SyncStatus
from channels.sync import sync_account_run
from orders.models import ExceptionCase, ExceptionKind, Order, OrderLine

Generate = Callable[..., Any]


def replayed_pages_create_nothing_new(sandbox, account, generate: Generate, count: int, *, also: Iterable = ()):
    # given a window already ingested
    generate(sandbox, count)
    sync_account_run(account_id=account.pk)
    models = (InboundEvent, Order, OrderLine, *also)
    counts = [model.objects.count() for model in models]
    # when every page is polled again
    run = sync_account_run(account_id=account.pk)
    # then nothing new is written
    assert run.progress["replayed"] == count
    assert run.orders_created == 0 and run.orders_updated == 0
    assert [model.objects.count() for model in models] == counts
    return run


def duplicates_across_pages_are_ingested_once(sandbox, account, generate: Generate, count: int):
    # given: the second page repeats two orders of the first
    generate(sandbox, count)
    sandbox.state.faults.duplicate_next = 1
    # when
    run = sync_account_run(account_id=account.pk)
    # then
    assert run.orders_seen == count + 2
    assert Order.objects.count() == count and InboundEvent.objects.count() == count
    return run


def throttling_storm_is_honoured(sandbox, account, generate: Generate, count: int):
    # given five throttled answers in a row
    generate(sandbox, count)
    sandbox.state.faults.throttle_next = 5
    # when
    run = sync_account_run(account_id=account.pk)
    # then the sync waited them out and lost nothing
    assert run.status == SyncStatus.SUCCEEDED
    assert run.progress["throttled"] >= 5 and Order.objects.count() == count
    return run


def throttling_beyond_patience_keeps_the_cursor(
    sandbox, account, generate: Generate, first: int, then: int, *, throttled_as: str = "429"
):
    # given an ingested window, new orders, and a channel that keeps throttling
    generate(sandbox, first)
    sync_account_run(account_id=account.pk)
    account.refresh_from_db()
    cursor = account.sync_cursor
    generate(sandbox, then)
    sandbox.state.faults.throttle_next = 100
    # when
    run = sync_account_run(account_id=account.pk)
    # then the run fails without moving the cursor past what it did not read
    assert run.status == SyncStatus.FAILED and throttled_as in run.error
    account.refresh_from_db()
    assert account.sync_cursor == cursor
    # when the channel calms down, the next poll catches up
    sandbox.state.faults.throttle_next = 0
    sync_account_run(account_id=account.pk)
    assert Order.objects.count() == first + then


def server_errors_are_retried(sandbox, account, generate: Generate, count: int):
    # given three 500s in a row
    generate(sandbox, count)
    sandbox.state.faults.error_500_next = 3
    # when
    run = sync_account_run(account_id=account.pk)
    # then
    assert run.status == SyncStatus.SUCCEEDED and Order.objects.count() == count
    return run


def malformed_orders_fail_naming_the_field(sandbox, account, generate: Generate, count: int, field_for: dict):
    # given three malformed orders among ``count`` (field_for: the sandbox's defect -> the field named)
    sandbox.state.faults.malformed_next = 3
    generate(sandbox, count)
    bad = {o.order_id: o.malformed for o in sandbox.state.orders.values() if o.malformed}
    # when
    run = sync_account_run(account_id=account.pk)
    # then the rest of the page is ingested, each bad order is a failed event naming its field
    assert run.status == SyncStatus.PARTIAL and run.orders_failed == 3
    assert Order.objects.count() == count - 3
    failed = {e.external_id: e.error for e in InboundEvent.objects.filter(status=InboundStatus.FAILED)}
    assert set(failed) == set(bad)
    for order_id, defect in bad.items():
        assert field_for[defect] in failed[order_id]
    # and ops get one case for the account, not one per order
    assert ExceptionCase.objects.filter(kind=ExceptionKind.INBOUND_FAILED, account_id=account.pk).count() == 1
    return run
