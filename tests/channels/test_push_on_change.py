"""Event-driven inventory pushes: a stock change is announced after commit, coalesced into one pending drain
(Redis) or one recompute per SKU (file cache), recomputed and pushed at once when the account's rate budget
allows, else held, flagged, for the account's next slot. Over real HTTP against the Shopify sandbox."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from channels import availability, outbox, tasks
from channels.models import ChannelAccount, ChannelAvailability, Listing, OutboxKind, OutboxMessage, OutboxStatus
from channels.sandbox.shopify import variant_ids
from inventory import services as inventory_services
from inventory.models import Location, Sku

pytestmark = pytest.mark.django_db

needs_redis = pytest.mark.skipif(availability._redis() is None, reason="the pending set lives in Redis")


@pytest.fixture
def queued(monkeypatch):
    """Tasks sent to the broker, recorded instead of sent: (task name, kwargs, countdown)."""
    calls = []
    for name in ("channel_availability_recompute_task", "inventory_push_account_task"):
        task = getattr(tasks, name)
        monkeypatch.setattr(
            task,
            "apply_async",
            lambda args=None, kwargs=None, countdown=None, _n=name, **_: calls.append((_n, args, kwargs, countdown)),
        )
    return calls


@pytest.fixture
def clean_pending():
    if availability._redis() is not None:
        availability._redis().delete(*availability._pending_keys())
    availability._covered_until.clear()
    availability._covered_skus.clear()
    yield
    if availability._redis() is not None:
        availability._redis().delete(*availability._pending_keys())
    availability._covered_until.clear()
    availability._covered_skus.clear()


@needs_redis
def test_a_burst_of_changes_queues_one_drain_that_reads_every_changed_sku(settings, queued, clean_pending):
    # given: production's window
    settings.INVENTORY_AVAILABILITY_DEBOUNCE_SECONDS = 0.05
    # when: three announcements of four SKUs before a worker starts the drain
    tasks.channel_availability_schedule(sku_ids=[5, 2])
    tasks.channel_availability_schedule(sku_ids=[2, 9])
    tasks.channel_availability_schedule(sku_ids=[11])
    # then: one drain queued at once, and it reads every SKU
    assert queued == [("channel_availability_recompute_task", None, {"sku_ids": None}, None)]
    sku_ids, cutoff = availability.channel_availability_drain_started()
    assert sku_ids == [2, 5, 9, 11]
    # when: a SKU changes again after the drain started, before its recompute committed
    availability._covered_until.clear()
    availability._covered_skus.clear()
    tasks.channel_availability_schedule(sku_ids=[5])
    availability.channel_availability_drained(cutoff=cutoff)
    # then: the next drain is queued (a window after the last start) and still reads it
    assert len(queued) == 2 and queued[1][3] is not None and 0 < queued[1][3] <= 0.05
    assert availability.channel_availability_drain_started()[0] == [5]


@needs_redis
def test_a_drain_that_dies_leaves_its_skus_for_the_next_one(settings, queued, clean_pending):
    settings.INVENTORY_AVAILABILITY_DEBOUNCE_SECONDS = 0.05
    tasks.channel_availability_schedule(sku_ids=[3, 4])
    # when: a drain reads them and dies before channel_availability_drained
    assert availability.channel_availability_drain_started()[0] == [3, 4]
    # then: they are still pending, and the beat sweep queues a drain for them
    assert availability.channel_availability_pending() == 2
    tasks.channels_plan_inventory_pushes_task()
    assert ("channel_availability_recompute_task", None, {"sku_ids": None}, None) in queued
    assert availability.channel_availability_drain_started()[0] == [3, 4]


def test_without_a_window_each_change_is_recomputed_at_once(settings, queued, clean_pending):
    settings.INVENTORY_AVAILABILITY_DEBOUNCE_SECONDS = 0
    tasks.channel_availability_schedule(sku_ids=[7, 1, 7])
    assert queued == [("channel_availability_recompute_task", None, {"sku_ids": [1, 7]}, None)]


def _shop(shopify_account, codes: list[str], quantity: int) -> tuple[Location, list[Sku]]:
    node = Location.objects.create(code="PUSH-1", name="Push node")
    shopify_account.eligible_locations.add(node)
    skus = [Sku.objects.create(code=code, name=code) for code in codes]
    for sku in skus:
        Listing.objects.create(
            account=shopify_account, sku=sku, channel_sku=sku.code, external_variant_id=variant_ids(sku.code)[1]
        )
        inventory_services.stock_receive(sku=sku, location=node, quantity=quantity, actor="test")
    return node, skus


def test_a_change_is_recomputed_and_pushed_in_one_task_when_the_budget_allows(
    shopify_sandbox, shopify_account, settings, queued
):
    # given: two listed SKUs with stock (recomputed eagerly, not pushed: the tests' default)
    node, skus = _shop(shopify_account, ["WB-1101", "WB-1102"], 10)
    settings.WAYBILL_INVENTORY_PUSH_ON_CHANGE = True
    settings.WAYBILL_INVENTORY_PUSH_INTERVAL = 60.0
    settings.WAYBILL_INVENTORY_PUSH_BURST = 1
    # when: the recompute task of a change runs (the worker's one hop)
    tasks.channel_availability_recompute_task(sku_ids=[s.pk for s in skus])
    # then: both quantities are at the channel, in one inventory call, recorded as pushed
    pushed = {e["sku"]: e["quantity"] for e in shopify_sandbox.state.inventory_log}
    assert pushed == {"WB-1101": 10, "WB-1102": 10}
    assert set(ChannelAvailability.objects.values_list("last_pushed_quantity", "needs_push")) == {(10, False)}
    message = OutboxMessage.objects.get(kind=OutboxKind.INVENTORY)
    assert message.status == OutboxStatus.SENT
    # when: stock moves again inside the account's interval (its slot is taken)
    inventory_services.stock_receive(sku=skus[0], location=node, quantity=5, actor="test")
    tasks.channel_availability_recompute_task(sku_ids=[skus[0].pk])
    # then: nothing more is sent; the row stays flagged and a push waits for the next slot
    assert len(shopify_sandbox.state.inventory_log) == 2
    row = ChannelAvailability.objects.get(sku=skus[0])
    assert (row.quantity, row.last_pushed_quantity, row.needs_push) == (15, 10, True)
    [(args, countdown)] = [(a, c) for name, a, _, c in queued if name == "inventory_push_account_task"]
    assert args == [shopify_account.pk] and 0 < countdown <= 60
    # when: the slot comes (time moves on) after two more changes, and the account's push runs
    inventory_services.stock_receive(sku=skus[0], location=node, quantity=1, actor="test")
    ChannelAccount.objects.filter(pk=shopify_account.pk).update(
        inventory_push_next_at=timezone.now() - timedelta(seconds=1)
    )
    tasks.inventory_push_account_task(shopify_account.pk)
    # then: one more call, with the newest quantity only
    assert [(e["sku"], e["quantity"]) for e in shopify_sandbox.state.inventory_log[2:]] == [("WB-1101", 16)]
    assert ChannelAvailability.objects.get(sku=skus[0]).last_pushed_quantity == 16


def test_a_slot_is_taken_once_and_given_back_when_nothing_differs(shopify_account):
    now = timezone.now()
    # given: a free slot, taken
    assert outbox.inventory_push_slot_claim(account_id=shopify_account.pk, interval=0.5, now=now) == 0.0
    # then: a second claim waits the rest of the interval
    wait = outbox.inventory_push_slot_claim(account_id=shopify_account.pk, interval=0.5, now=now)
    assert 0.49 < wait <= 0.5
    # and: once the interval passed, it is free again
    later = now + timedelta(seconds=0.5)
    assert outbox.inventory_push_slot_claim(account_id=shopify_account.pk, interval=0.5, now=later) == 0.0
    # given: nothing flagged on another account: no slot is spent
    ChannelAccount.objects.filter(pk=shopify_account.pk).update(inventory_push_next_at=None)
    assert outbox.inventory_push_now(account_id=shopify_account.pk) == (0, 0.0)
    assert ChannelAccount.objects.get(pk=shopify_account.pk).inventory_push_next_at is None


@needs_redis
def test_a_change_while_a_later_drain_waits_still_reaches_it(settings, queued, clean_pending):
    # given: a drain just started, so the next one is queued a window later
    settings.INVENTORY_AVAILABILITY_DEBOUNCE_SECONDS = 0.5
    tasks.channel_availability_schedule(sku_ids=[1])
    availability.channel_availability_drained(cutoff=availability.channel_availability_drain_started()[1])
    tasks.channel_availability_schedule(sku_ids=[2])
    assert len(queued) == 2 and queued[1][3] > 0.4
    # when: this process changes another SKU, and the first one again, before that drain starts
    tasks.channel_availability_schedule(sku_ids=[3])
    tasks.channel_availability_schedule(sku_ids=[2])
    # then: no other drain is queued, and the waiting one reads both SKUs
    assert len(queued) == 2
    assert availability.channel_availability_drain_started()[0] == [2, 3]


def test_an_account_sends_its_burst_at_once_then_one_push_per_interval(
    shopify_sandbox, shopify_account, settings, queued
):
    # given: a listed SKU with stock, an account allowed 3 pushes at once and one a minute after that
    node, [sku] = _shop(shopify_account, ["WB-1103"], 10)
    settings.WAYBILL_INVENTORY_PUSH_ON_CHANGE = True
    settings.WAYBILL_INVENTORY_PUSH_INTERVAL = 60.0
    settings.WAYBILL_INVENTORY_PUSH_BURST = 3
    # when: the stock changes four times in a row, each change's recompute running at once
    tasks.channel_availability_recompute_task(sku_ids=[sku.pk])
    for quantity in (1, 1, 1):
        inventory_services.stock_receive(sku=sku, location=node, quantity=quantity, actor="test")
        tasks.channel_availability_recompute_task(sku_ids=[sku.pk])
    # then: the first three went out at once, each with its quantity; the fourth waits for the bucket's refill
    assert [e["quantity"] for e in shopify_sandbox.state.inventory_log] == [10, 11, 12]
    row = ChannelAvailability.objects.get(sku=sku)
    assert (row.quantity, row.last_pushed_quantity, row.needs_push) == (13, 12, True)
    [countdown] = [c for name, _, _, c in queued if name == "inventory_push_account_task"]
    assert 59 < countdown <= 60  # one interval after the first push
