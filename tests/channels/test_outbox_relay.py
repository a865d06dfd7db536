"""The outbox relay's promises, by behaviour: only due messages are claimed (never a sent or parked one), a lease
keeps a message in flight from being claimed twice until it expires, a failure is retried or parked (a case
only on park), an unexpected exception is a retry, and every step is scoped to its account."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from channels.connectors.base import ChannelError
from channels.models import ChannelKind, OutboxKind, OutboxMessage, OutboxStatus
from channels.outbox import (
    OutboxError,
    _send,
    acknowledgement_enqueue,
    outbox_claim,
    outbox_enqueue,
    outbox_relay,
    outbox_retry_now,
    outbox_send,
    ship_confirmation_enqueue,
)
from channels.services import connector_for
from channels.signals import outbox_messages_queued
from channels.sync import sync_account_run
from orders.models import ExceptionCase, ExceptionKind, Order
from tests.factories import ChannelAccountFactory

from .conftest import AMAZON_CREDENTIALS, AMAZON_US, sandbox_account

# How long a claim leases a message (channels.outbox reads the same setting).
LEASE = timedelta(seconds=float(getattr(settings, "WAYBILL_OUTBOX_LEASE_SECONDS", 30.0)))

pytestmark = pytest.mark.django_db


def _message(account, key: str, *, status=OutboxStatus.PENDING, at=None, attempts: int = 0) -> OutboxMessage:
    return OutboxMessage.objects.create(
        account=account,
        kind=OutboxKind.ACKNOWLEDGE,
        dedupe_key=key,
        payload={"order_external_id": key},
        status=status,
        next_attempt_at=at or timezone.now(),
        attempts=attempts,
        sent_at=timezone.now() if status == OutboxStatus.SENT else None,
    )


def _amazon_account(sandbox, name: str):
    return sandbox_account(
        sandbox,
        kind=ChannelKind.AMAZON,
        name=name,
        credentials=AMAZON_CREDENTIALS,
        marketplace_ids=[AMAZON_US],
        seller_id="A2TESTSELLER",
    )


def _order_at(sandbox, account) -> Order:
    """One new seller-fulfilled order at the sandbox, synced into ``account``."""
    (made,) = sandbox.state.generate(1, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)
    sync_account_run(account_id=account.pk)
    return Order.objects.get(account_id=account.pk, external_id=made.order_id)


def _ship(order, package: str = "shipment-1") -> OutboxMessage:
    return ship_confirmation_enqueue(
        order=order,
        package_reference=package,
        carrier_code="UPS",
        tracking_number=f"1Z{order.pk:016d}",
        shipped_at=timezone.now() - timedelta(minutes=3),
        lines=[(line.external_id, line.quantity) for line in order.lines.all()],
    )


@contextmanager
def relay_not_kicked():
    """The relay task is not started by new messages (whoever listens): the test drives the relay itself."""
    saved = list(outbox_messages_queued.receivers)
    outbox_messages_queued.receivers = []
    outbox_messages_queued.sender_receivers_cache.clear()
    try:
        yield
    finally:
        outbox_messages_queued.receivers = saved
        outbox_messages_queued.sender_receivers_cache.clear()


def _fresh(*messages) -> list[tuple]:
    by_pk = {m.pk: m for m in OutboxMessage.objects.filter(pk__in=[m.pk for m in messages])}
    return [(by_pk[m.pk].status, by_pk[m.pk].attempts) for m in messages]


# --- claiming ---------------------------------------------------------------------------------------


def test_claim_takes_only_due_messages_oldest_first_and_leases_them():
    # given messages in every state, some due and some not
    account = ChannelAccountFactory(name="claims")
    t = timezone.now()
    pending = _message(account, "pending-due", at=t - timedelta(seconds=30))
    failed = _message(account, "failed-due", status=OutboxStatus.FAILED, at=t - timedelta(seconds=20), attempts=2)
    expired = _message(account, "lease-expired", status=OutboxStatus.SENDING, at=t - timedelta(seconds=1), attempts=1)
    not_yet = [
        _message(account, "pending-later", at=t + timedelta(seconds=5)),
        _message(account, "failed-later", status=OutboxStatus.FAILED, at=t + timedelta(seconds=5), attempts=1),
        _message(account, "in-flight", status=OutboxStatus.SENDING, at=t + timedelta(seconds=5), attempts=1),
    ]
    done = [
        _message(account, "sent", status=OutboxStatus.SENT, at=t - timedelta(hours=1), attempts=1),
        _message(account, "parked", status=OutboxStatus.PARKED, at=t - timedelta(hours=1), attempts=8),
    ]
    # when
    first = outbox_claim(account_id=account.pk, limit=2, now=t)
    rest = outbox_claim(account_id=account.pk, limit=50, now=t)
    # then oldest first, within the limit; each leased (WAYBILL_OUTBOX_LEASE_SECONDS) with one more attempt
    assert first == [pending.pk, failed.pk] and rest == [expired.pk]
    rows = {m.pk: m for m in OutboxMessage.objects.all()}
    assert [
        (rows[m.pk].status, rows[m.pk].attempts, rows[m.pk].next_attempt_at) for m in (pending, failed, expired)
    ] == [
        (OutboxStatus.SENDING, 1, t + LEASE),
        (OutboxStatus.SENDING, 3, t + LEASE),
        (OutboxStatus.SENDING, 2, t + LEASE),
    ]
    assert all(rows[m.pk].updated_at == t for m in (pending, failed, expired))
    # and nothing else is due, not even sent or parked messages whose time is long past
    assert outbox_claim(account_id=account.pk, now=t) == []
    assert [(rows[m.pk].status, rows[m.pk].attempts) for m in not_yet + done] == [
        (OutboxStatus.PENDING, 0),
        (OutboxStatus.FAILED, 1),
        (OutboxStatus.SENDING, 1),
        (OutboxStatus.SENT, 1),
        (OutboxStatus.PARKED, 8),
    ]
    assert outbox_claim(account_id=account.pk, now=t + timedelta(seconds=10)) == [m.pk for m in not_yet]


def test_a_message_in_flight_is_not_claimed_again_until_its_lease_expires():
    account = ChannelAccountFactory(name="lease")
    t = timezone.now()
    message = _message(account, "one", at=t - timedelta(seconds=1))
    assert outbox_claim(account_id=account.pk, now=t) == [message.pk]
    # a second relay, a moment later and just before the lease ends, finds nothing
    assert outbox_claim(account_id=account.pk, now=t + timedelta(seconds=1)) == []
    assert outbox_claim(account_id=account.pk, now=t + LEASE - timedelta(seconds=1)) == []
    assert _fresh(message) == [(OutboxStatus.SENDING, 1)]
    # once it has expired (the worker died), the message is claimed again, one attempt more
    assert outbox_claim(account_id=account.pk, now=t + LEASE + timedelta(seconds=1)) == [message.pk]
    assert _fresh(message) == [(OutboxStatus.SENDING, 2)]


def test_claim_is_scoped_to_its_account_and_without_one_takes_every_account():
    a, b = ChannelAccountFactory(name="claim-a"), ChannelAccountFactory(name="claim-b")
    t = timezone.now()
    a1, b1 = _message(a, "x", at=t - timedelta(seconds=2)), _message(b, "x", at=t - timedelta(seconds=3))
    a2 = _message(a, "y", at=t - timedelta(seconds=1))
    assert outbox_claim(account_id=a.pk, now=t) == [a1.pk, a2.pk]
    assert _fresh(b1) == [(OutboxStatus.PENDING, 0)]
    b2 = _message(b, "y", at=t - timedelta(seconds=1))
    assert outbox_claim(now=t) == [b1.pk, b2.pk]


# --- writing messages ---------------------------------------------------------------------------------


def test_enqueue_dedupes_per_account_and_kicks_the_relay_of_that_account(django_capture_on_commit_callbacks):
    a, b = ChannelAccountFactory(name="enqueue-a"), ChannelAccountFactory(name="enqueue-b")
    kicked: list[int] = []

    def receiver(sender, account_id, **kwargs):
        kicked.append(account_id)

    with relay_not_kicked(), django_capture_on_commit_callbacks(execute=True):
        outbox_messages_queued.connect(receiver, dispatch_uid="test-outbox-relay-kick")
        first, made_first = outbox_enqueue(account_id=a.pk, kind=OutboxKind.ACKNOWLEDGE, dedupe_key="k", payload={})
        again, made_again = outbox_enqueue(
            account_id=a.pk, kind=OutboxKind.ACKNOWLEDGE, dedupe_key="k", payload={"x": 1}
        )
        other, made_other = outbox_enqueue(account_id=b.pk, kind=OutboxKind.ACKNOWLEDGE, dedupe_key="k", payload={})
        kind, made_kind = outbox_enqueue(account_id=a.pk, kind=OutboxKind.CANCELLATION, dedupe_key="k", payload={})
    assert (made_first, made_again, made_other, made_kind) == (True, False, True, True)
    assert again.pk == first.pk and again.payload == {} and len({first.pk, other.pk, kind.pk}) == 3
    assert (first.account_id, other.account_id, kind.account_id) == (a.pk, b.pk, a.pk)
    assert sorted(kicked) == sorted([a.pk, b.pk, a.pk])
    assert OutboxMessage.objects.count() == 3


def test_enqueueing_again_returns_the_message_of_that_account_kind_and_key_among_many():
    # given messages that share an account, a kind or a key with each other
    a, b = ChannelAccountFactory(name="again-a"), ChannelAccountFactory(name="again-b")
    ack, cancel = OutboxKind.ACKNOWLEDGE, OutboxKind.CANCELLATION
    made = {
        (account.pk, kind, key): outbox_enqueue(account_id=account.pk, kind=kind, dedupe_key=key, payload={"n": n})[0]
        for n, (account, kind, key) in enumerate(
            [(a, ack, "k"), (b, ack, "k"), (a, cancel, "k"), (a, ack, "k2"), (b, cancel, "k2")]
        )
    }
    # when each is enqueued again, then the existing message of exactly that account, kind and key comes back
    for (account_id, kind, key), message in made.items():
        again, created = outbox_enqueue(account_id=account_id, kind=kind, dedupe_key=key, payload={"n": -1})
        assert (again.pk, again.payload, created) == (message.pk, message.payload, False)
    assert OutboxMessage.objects.count() == 5


@pytest.mark.parametrize(
    ("kind", "key", "error"),
    [
        ("fax", "k", "unknown outbox kind 'fax'"),
        (OutboxKind.ACKNOWLEDGE, "", "an outbox message needs a dedupe key of 1 to 255 characters"),
        (OutboxKind.ACKNOWLEDGE, "k" * 256, "an outbox message needs a dedupe key of 1 to 255 characters"),
    ],
)
def test_enqueue_refuses_bad_input_with_a_clear_message(kind, key, error):
    account = ChannelAccountFactory(name="enqueue-bad")
    with pytest.raises(OutboxError) as caught:
        outbox_enqueue(account_id=account.pk, kind=kind, dedupe_key=key, payload={})
    assert str(caught.value) == error
    assert not OutboxMessage.objects.exists()
    outbox_enqueue(account_id=account.pk, kind=OutboxKind.ACKNOWLEDGE, dedupe_key="k" * 255, payload={})


# --- sending: retry, park, unexpected errors, several accounts -----------------------------------------


def test_a_retryable_failure_backs_off_without_a_case_and_parks_with_one_at_the_limit(
    settings, amazon_sandbox, amazon_account, skus
):
    # given Amazon answering 500 to everything, a 5 s backoff base and three attempts allowed
    settings.WAYBILL_OUTBOX_MAX_ATTEMPTS = 3
    settings.WAYBILL_OUTBOX_BACKOFF_SECONDS = 5.0
    message = _ship(_order_at(amazon_sandbox, amazon_account))
    amazon_sandbox.state.faults.error_500_next = 10_000
    backoffs = []
    for attempt in (1, 2):
        # when the relay tries
        before = timezone.now()
        counts = outbox_relay(account_id=amazon_account.pk)
        after = timezone.now()
        # then failed, retried later (5 s, then 10 s), with the channel's answer kept, and no case
        message.refresh_from_db()
        assert counts == {"failed": 1}
        assert (message.status, message.attempts) == (OutboxStatus.FAILED, attempt)
        assert (
            before + timedelta(seconds=5 * attempt) <= message.next_attempt_at <= after + timedelta(seconds=5 * attempt)
        )
        assert "HTTP 500" in message.last_error and message.last_error_detail["status"] == 500
        assert not ExceptionCase.objects.filter(kind=ExceptionKind.OUTBOX_PARKED).exists()
        backoffs.append(message.next_attempt_at)
        # and it is not due again before its backoff ends
        assert outbox_relay(account_id=amazon_account.pk) == {}
        OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    # when the last allowed attempt fails too
    assert outbox_relay(account_id=amazon_account.pk) == {"parked": 1}
    # then parked, with one case for a person naming the account, the kind, the attempts and the channel's words
    message.refresh_from_db()
    assert (message.status, message.attempts) == (OutboxStatus.PARKED, 3)
    case = ExceptionCase.objects.get(kind=ExceptionKind.OUTBOX_PARKED)
    assert case.title == "amazon-test: ship confirmation not delivered after 3 attempt(s)"
    assert case.detail.startswith(f"Outbox message #{message.pk} ({message.dedupe_key}): ")
    assert "\nThe channel answered: {" in case.detail and '"status": 500' in case.detail
    assert (case.order_id, case.account_id, case.dedupe_key) == (
        message.order_id,
        amazon_account.pk,
        f"outbox_parked:{message.pk}",
    )
    # and a parked message is never claimed again on its own
    assert outbox_claim(account_id=amazon_account.pk, now=timezone.now() + timedelta(days=1)) == []


def test_a_refusal_that_cannot_succeed_later_is_parked_at_once_and_defers_nothing_else(
    amazon_sandbox, amazon_account, skus, django_capture_on_commit_callbacks
):
    # given an acknowledgement Amazon has no call for (refused for good), queued before a ship confirmation
    order = _order_at(amazon_sandbox, amazon_account)
    ack = acknowledgement_enqueue(order=order)
    OutboxMessage.objects.filter(pk=ack.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=5))
    ship = _ship(order)
    # when
    counts = outbox_relay(account_id=amazon_account.pk)
    # then the acknowledgement is parked after one attempt with a case, and the ship confirmation still went out
    assert counts == {"parked": 1, "sent": 1}
    assert _fresh(ack, ship) == [(OutboxStatus.PARKED, 1), (OutboxStatus.SENT, 1)]
    assert len(amazon_sandbox.state.shipments) == 1
    case = ExceptionCase.objects.get(kind=ExceptionKind.OUTBOX_PARKED)
    assert case.title == "amazon-test: acknowledge not delivered after 1 attempt(s)"
    assert "\nThe channel answered" not in case.detail and "has no order acknowledgement" in case.detail
    # and an agent's retry gives it its attempts back, keeps the error (cut to 4,000 characters) and kicks the relay
    OutboxMessage.objects.filter(pk=ack.pk).update(last_error="e" * 3990)
    ack.refresh_from_db()
    kicked: list[int] = []
    with relay_not_kicked(), django_capture_on_commit_callbacks(execute=True):
        outbox_messages_queued.connect(lambda sender, account_id, **kw: kicked.append(account_id), weak=False)
        retried = outbox_retry_now(message=ack, actor="agent")
    assert kicked == [amazon_account.pk]
    assert retried.last_error == ("e" * 3990 + "\n[retry requested by agent]")[:4000]
    assert OutboxMessage.objects.get(pk=ack.pk).last_error == retried.last_error
    assert (retried.status, retried.attempts) == (OutboxStatus.PENDING, 0)
    assert retried.next_attempt_at <= timezone.now()
    with pytest.raises(OutboxError, match=rf"^message #{ship.pk} is sent; only failed or parked messages are retried$"):
        outbox_retry_now(message=ship, actor="agent")


def test_an_unexpected_exception_is_a_retry_and_the_next_send_clears_the_error(
    settings, caplog, amazon_sandbox, amazon_account, skus
):
    settings.WAYBILL_OUTBOX_BACKOFF_SECONDS = 30.0
    message = _ship(_order_at(amazon_sandbox, amazon_account))
    (claimed,) = outbox_claim(account_id=amazon_account.pk)
    connector = connector_for(amazon_account)

    def broken(shipment, *, state):
        raise KeyError("carrier")

    connector.confirm_shipment = broken
    # when the connector fails with something that is not a channel error
    before = timezone.now()
    assert outbox_send(message_id=claimed, connector=connector) == OutboxStatus.FAILED
    # then the message waits for a retry, with the error named, and no case
    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_error) == (OutboxStatus.FAILED, 1, "KeyError: 'carrier'")
    assert message.next_attempt_at >= before + timedelta(seconds=30)
    assert not ExceptionCase.objects.exists()
    assert f"outbox message {message.pk} failed unexpectedly" in caplog.text
    connector.close()
    # when it is due again and the channel answers
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    assert outbox_relay(account_id=amazon_account.pk) == {"sent": 1}
    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_error, message.last_error_detail) == (
        OutboxStatus.SENT,
        2,
        "",
        {},
    )
    assert message.sent_at is not None and message.response["already_applied"] is False
    assert len(amazon_sandbox.state.shipments) == 1


def test_sending_a_message_that_is_not_claimed_changes_nothing(amazon_sandbox, amazon_account, skus):
    message = _ship(_order_at(amazon_sandbox, amazon_account))
    assert outbox_send(message_id=message.pk) == OutboxStatus.PENDING
    assert _fresh(message) == [(OutboxStatus.PENDING, 0)]
    assert amazon_sandbox.state.shipments == []


def test_the_relay_serves_several_accounts_and_a_throttled_one_defers_only_its_own(
    serve_sandbox, amazon_sandbox, amazon_account, skus
):
    # given a second Amazon account on its own sandbox, two ship confirmations in each
    from channels.sandbox.amazon import AmazonSandbox

    other_sandbox = serve_sandbox(AmazonSandbox(rate=1000.0, burst=1000))
    other = _amazon_account(other_sandbox, "amazon-other")
    mine = [_ship(_order_at(amazon_sandbox, amazon_account)) for _ in range(2)]
    theirs = [_ship(_order_at(other_sandbox, other)) for _ in range(2)]
    # when the first account's channel keeps throttling and one relay serves every account
    amazon_sandbox.state.faults.throttle_next = 10_000
    counts = outbox_relay()
    # then the first account's first message was throttled (no attempt spent), its second was given back
    # untouched, the other account sent
    assert counts == {"failed": 1, "deferred": 1, "sent": 2}
    assert _fresh(*mine) == [(OutboxStatus.FAILED, 0), (OutboxStatus.FAILED, 0)]
    assert _fresh(*theirs) == [(OutboxStatus.SENT, 1), (OutboxStatus.SENT, 1)]
    assert len(other_sandbox.state.shipments) == 2 and amazon_sandbox.state.shipments == []
    # and a relay scoped to the first account leaves the other's new messages alone
    amazon_sandbox.state.faults.throttle_next = 0
    later = _ship(_order_at(other_sandbox, other))
    OutboxMessage.objects.filter(pk__in=[m.pk for m in mine]).update(next_attempt_at=timezone.now())
    assert outbox_relay(account_id=amazon_account.pk) == {"sent": 2}
    assert _fresh(later) == [(OutboxStatus.PENDING, 0)]
    assert len(amazon_sandbox.state.shipments) == 2


def test_the_relay_stops_when_its_time_budget_is_spent_and_sends_in_batches(amazon_sandbox, amazon_account, skus):
    messages = [_ship(_order_at(amazon_sandbox, amazon_account)) for _ in range(3)]
    assert outbox_relay(account_id=amazon_account.pk, budget_seconds=0) == {}
    assert _fresh(*messages) == [(OutboxStatus.PENDING, 0)] * 3
    assert outbox_relay(account_id=amazon_account.pk, batch=1) == {"sent": 3}
    assert _fresh(*messages) == [(OutboxStatus.SENT, 1)] * 3


# --- two relays racing ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_relays_and_an_expired_lease_race_and_every_message_is_applied_once(amazon_sandbox, amazon_account, skus):
    # given five ship confirmations, and a sixth whose first send reached Amazon before its worker died
    orders = [_order_at(amazon_sandbox, amazon_account) for _ in range(6)]
    with relay_not_kicked():
        for order in orders:
            _ship(order)
    (claimed,) = outbox_claim(account_id=amazon_account.pk, limit=1, now=timezone.now() + timedelta(hours=1))
    OutboxMessage.objects.filter(pk=claimed).update(next_attempt_at=timezone.now() + timedelta(hours=2))
    crashed = OutboxMessage.objects.select_related("account").get(pk=claimed)
    connector = connector_for(crashed.account)
    _send(connector, crashed, {})
    connector.close()
    OutboxMessage.objects.filter(pk=crashed.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert len(amazon_sandbox.state.shipments) == 1
    # when two relays run at once
    results: list[dict] = []
    start = threading.Barrier(2)

    def relay():
        try:
            start.wait(timeout=10)
            results.append(outbox_relay(account_id=amazon_account.pk, batch=2))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=relay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then every message was sent by exactly one of them, and Amazon holds one shipment per order
    assert sum(r.get("sent", 0) for r in results) == 6 and all(set(r) <= {"sent"} for r in results)
    assert set(OutboxMessage.objects.values_list("status", flat=True)) == {OutboxStatus.SENT}
    assert sorted(OutboxMessage.objects.values_list("attempts", flat=True)) == [1, 1, 1, 1, 1, 2]
    assert len(amazon_sandbox.state.shipments) == 6
    assert OutboxMessage.objects.get(pk=crashed.pk).response["already_applied"] is True


def _failing_send(account, error: Exception, *, attempts: int = 0) -> tuple[OutboxMessage, str, tuple]:
    """Claim one acknowledgement with ``attempts`` spent and send it with a connector that raises ``error``."""
    message = _message(account, f"fail-{attempts}-{type(error).__name__}", attempts=attempts)
    (claimed,) = outbox_claim(account_id=account.pk)
    connector = connector_for(account)

    def refuse(external_id):
        raise error

    connector.acknowledge = refuse
    before = timezone.now()
    status = outbox_send(message_id=claimed, connector=connector)
    after = timezone.now()
    connector.close()
    message.refresh_from_db()
    return message, status, (before, after)


def test_by_default_the_eighth_failed_attempt_parks_and_backoff_starts_at_five_seconds(amazon_account):
    from channels.connectors.base import ChannelError

    # given no outbox settings: eight attempts, a 5 s backoff base doubling up to an hour
    seventh, status, (before, after) = _failing_send(amazon_account, ChannelError("HTTP 503"), attempts=6)
    assert (status, seventh.attempts) == (OutboxStatus.FAILED, 7)
    assert before + timedelta(seconds=5 * 2**6) <= seventh.next_attempt_at <= after + timedelta(seconds=5 * 2**6)
    first, _, (before, after) = _failing_send(amazon_account, ChannelError("HTTP 503"), attempts=0)
    assert before + timedelta(seconds=5) <= first.next_attempt_at <= after + timedelta(seconds=5)
    eighth, status, _ = _failing_send(amazon_account, ChannelError("HTTP 503"), attempts=7)
    assert (status, eighth.attempts) == (OutboxStatus.PARKED, 8)
    assert ExceptionCase.objects.filter(kind=ExceptionKind.OUTBOX_PARKED).count() == 1


def test_a_throttled_send_spends_no_attempt_never_parks_and_is_due_when_the_channel_said(amazon_account):
    from channels.connectors.base import ChannelThrottled

    # given a message with seven of its eight attempts spent
    # when the channel throttles its eighth
    message, status, (before, after) = _failing_send(
        amazon_account, ChannelThrottled("budget spent", retry_after=12.0), attempts=7
    )
    # then it is not parked: the attempt is given back and it is due when the channel said, not after a back-off
    assert (status, message.attempts) == (OutboxStatus.FAILED, 7)
    assert before + timedelta(seconds=12) <= message.next_attempt_at <= after + timedelta(seconds=12)
    assert "budget spent" in message.last_error
    assert not ExceptionCase.objects.filter(kind=ExceptionKind.OUTBOX_PARKED).exists()


def test_backoff_is_capped_at_an_hour_and_honours_a_longer_wait_the_channel_asked_for(settings, amazon_account):
    from channels.connectors.base import ChannelError, ChannelThrottled

    settings.WAYBILL_OUTBOX_MAX_ATTEMPTS = 30
    late, _, (before, after) = _failing_send(amazon_account, ChannelError("HTTP 502"), attempts=20)
    assert before + timedelta(hours=1) <= late.next_attempt_at <= after + timedelta(hours=1)
    asked, status, (before, after) = _failing_send(
        amazon_account, ChannelThrottled("HTTP 429", retry_after=600.0), attempts=0
    )
    assert status == OutboxStatus.FAILED
    assert before + timedelta(seconds=600) <= asked.next_attempt_at <= after + timedelta(seconds=600)
    detail = _failing_send(amazon_account, ChannelError("HTTP 503", status=503, detail=["busy"]), attempts=1)[0]
    assert detail.last_error_detail == {"status": 503, "body": ["busy"]}
    assert not ExceptionCase.objects.exists()


def test_a_relay_whose_lease_was_taken_over_mid_batch_leaves_the_message_to_its_new_holder(
    monkeypatch, amazon_sandbox, amazon_account, skus
):
    # given two ship confirmations claimed in one batch, and a first send slow enough that the batch's lease
    # expires meanwhile and another relay claims what is left
    import channels.outbox as outbox

    _first, second = (_ship(_order_at(amazon_sandbox, amazon_account)) for _ in range(2))
    taken: list[int] = []
    real = outbox.connector_for

    def slow_channel(account, **options):
        connector = real(account)
        send = connector.confirm_shipment

        def confirm(shipment, *, state):
            result = send(shipment, state=state)
            if not taken:
                taken.extend(outbox_claim(account_id=account.pk, now=timezone.now() + timedelta(minutes=3)))
            return result

        connector.confirm_shipment = confirm
        return connector

    monkeypatch.setattr(outbox, "connector_for", slow_channel)
    # when the first relay goes on with its batch
    counts = outbox_relay(account_id=amazon_account.pk)
    # then it left the second message to the relay that holds it now: never sent twice
    assert second.pk in taken
    assert counts == {"sent": 1, "taken_over": 1}
    assert _fresh(second) == [(OutboxStatus.SENDING, 2)]
    assert len(amazon_sandbox.state.shipments) == 1
    # and the new holder sends it, once
    monkeypatch.undo()
    assert outbox_send(message_id=second.pk) == OutboxStatus.SENT
    assert len(amazon_sandbox.state.shipments) == 2
    second.refresh_from_db()
    assert second.response["already_applied"] is False


def test_a_throttled_relay_does_not_give_back_a_message_another_relay_has_claimed_since(
    monkeypatch, amazon_sandbox, amazon_account, skus
):
    # given two messages in one batch, a channel that keeps throttling, and a first send slow enough that
    # another relay claims the second message meanwhile
    import channels.outbox as outbox

    _first, second = (_ship(_order_at(amazon_sandbox, amazon_account)) for _ in range(2))
    amazon_sandbox.state.faults.throttle_next = 10_000
    taken: list[int] = []
    real = outbox.connector_for

    def slow_channel(account, **options):
        connector = real(account)
        send = connector.confirm_shipment

        def confirm(shipment, *, state):
            if not taken:
                taken.extend(outbox_claim(account_id=account.pk, now=timezone.now() + timedelta(minutes=3)))
            return send(shipment, state=state)

        connector.confirm_shipment = confirm
        return connector

    monkeypatch.setattr(outbox, "connector_for", slow_channel)
    # when the first relay, throttled, gives back the rest of its batch
    outbox_relay(account_id=amazon_account.pk)
    # then the second message is still the other relay's claim, untouched
    assert second.pk in taken
    assert _fresh(second) == [(OutboxStatus.SENDING, 2)]
    assert amazon_sandbox.state.shipments == []


@pytest.mark.parametrize(
    ("error_kwargs", "kept"),
    [
        ({"status": 503, "detail": {}}, {"status": 503}),
        ({"status": 503, "detail": []}, {"status": 503}),
        ({"status": 0, "detail": None}, {}),
        ({"status": 400, "detail": {"errors": [{"code": "X"}]}}, {"status": 400, "errors": [{"code": "X"}]}),
        ({"status": 400, "detail": {"status": "REJECTED"}}, {"status": "REJECTED"}),
        ({"status": 0, "detail": {"errors": []}}, {"errors": []}),
        ({"status": 502, "detail": "Bad gateway"}, {"status": 502, "body": "Bad gateway"}),
        ({"status": 502, "detail": {1, 2}}, {"status": 502, "body": "{1, 2}"}),
    ],
)
def test_the_channels_whole_answer_is_kept_with_its_status(amazon_account, error_kwargs, kept):
    from channels.connectors.base import ChannelError

    message, _, _ = _failing_send(amazon_account, ChannelError("refused", **error_kwargs))
    assert message.last_error_detail == kept


def test_a_backoff_base_under_a_second_is_kept_when_the_channel_names_no_wait(settings, amazon_account):
    from channels.connectors.base import ChannelError

    settings.WAYBILL_OUTBOX_BACKOFF_SECONDS = 0.2
    message, _, (before, after) = _failing_send(amazon_account, ChannelError("HTTP 503"))
    assert before + timedelta(seconds=0.2) <= message.next_attempt_at <= after + timedelta(seconds=0.2)


def test_a_parked_case_shows_ops_the_error_and_the_channels_answer_cut_to_their_stated_lengths(amazon_account):
    from channels.connectors.base import ChannelError
    from orders.models import Severity

    # given a refusal for good whose message is longer than any limit, and an answer with non-ASCII text whose
    # keys came in no particular order, from a send that had already got part of the way (its state kept)
    error = "refusé: " + "".join(f"{n:05d}" for n in range(1000))
    answer = {"zeta": "z" * 3500, "alpha": "café crème"}
    message = _message(amazon_account, "parked-words")
    OutboxMessage.objects.filter(pk=message.pk).update(response={"state": {"step": 2}, "earlier": "kept"})
    (claimed,) = outbox_claim(account_id=amazon_account.pk)
    connector = connector_for(amazon_account)

    def refuse(external_id):
        raise ChannelError(error, retryable=False, status=422, detail=answer)

    connector.acknowledge = refuse
    # when
    assert outbox_send(message_id=claimed, connector=connector) == OutboxStatus.PARKED
    connector.close()
    # then the message keeps the first 4,000 characters of the error, the whole answer, and the send's state
    message.refresh_from_db()
    assert (message.status, message.attempts) == (OutboxStatus.PARKED, 1)
    assert message.last_error == error[:4000] and len(message.last_error) == 4000
    assert message.last_error_detail == {"status": 422, **answer}
    assert message.response == {"earlier": "kept", "state": {"step": 2}}
    # and the case reads: the account, the kind and the attempts; the message, its key, the error's first 1,000
    # characters, then the channel's answer as sorted JSON, readable (not \u-escaped), cut at 3,000 characters
    case = ExceptionCase.objects.get(kind=ExceptionKind.OUTBOX_PARKED)
    said = '{"alpha": "café crème", "status": 422, "zeta": "' + "z" * 3500 + '"}'
    assert case.title == f"{amazon_account.name}: acknowledge not delivered after 1 attempt(s)"
    assert case.detail == (
        f"Outbox message #{message.pk} (parked-words): {error[:1000]}\nThe channel answered: {said[:3000]}"
    )
    assert (case.severity, case.opened_by, case.status) == (Severity.HIGH, "outbox", "open")
    assert (case.account_id, case.order_id, case.dedupe_key) == (amazon_account.pk, None, f"outbox_parked:{message.pk}")


def test_a_parked_case_without_an_answer_from_the_channel_says_only_the_error(amazon_account):
    # given a refusal for good with no answer body and no HTTP status (the channel said nothing more)
    message = _message(amazon_account, "parked-bare")
    (claimed,) = outbox_claim(account_id=amazon_account.pk)
    connector = connector_for(amazon_account)

    def refuse(external_id):
        raise ChannelError("the order is unknown to the channel", retryable=False)

    connector.acknowledge = refuse
    # when
    assert outbox_send(message_id=claimed, connector=connector) == OutboxStatus.PARKED
    connector.close()
    # then the case says the error and nothing about an answer
    case = ExceptionCase.objects.get(kind=ExceptionKind.OUTBOX_PARKED)
    assert case.detail == f"Outbox message #{message.pk} (parked-bare): the order is unknown to the channel"


def test_a_relay_closes_the_connectors_it_opened_unless_asked_to_keep_them(monkeypatch, amazon_account):
    # given a due message and a channel whose connectors note when they are closed
    import channels.outbox as outbox

    _message(amazon_account, "close-me")
    closed: list[int] = []
    real = outbox.connector_for

    def channel(account, **options):
        connector = real(account, **options)
        connector.acknowledge = lambda external_id: outbox.SendResult(response={})
        close = connector.close
        connector.close = lambda: (closed.append(account.pk), close())
        return connector

    monkeypatch.setattr(outbox, "connector_for", channel)
    # when a relay runs with its defaults
    assert outbox_relay(account_id=amazon_account.pk) == {"sent": 1}
    # then the connector it opened for the account was closed when it returned
    assert closed == [amazon_account.pk]


def test_a_parked_case_for_an_order_is_on_the_orders_history_as_the_outbox(amazon_sandbox, amazon_account, skus):
    from channels.connectors.base import ChannelError
    from orders.models import OrderEvent, Severity

    # given a ship confirmation the channel refuses for good
    order = _order_at(amazon_sandbox, amazon_account)
    message = _ship(order)
    (claimed,) = outbox_claim(account_id=amazon_account.pk)
    connector = connector_for(amazon_account)

    def refuse(shipment, *, state):
        raise ChannelError("HTTP 400: InvalidInput", retryable=False, status=400)

    connector.confirm_shipment = refuse
    # when
    assert outbox_send(message_id=claimed, connector=connector) == OutboxStatus.PARKED
    connector.close()
    # then one high case on the order, opened by the outbox, and the order's history says so
    case = ExceptionCase.objects.get(kind=ExceptionKind.OUTBOX_PARKED)
    assert (case.order_id, case.severity, case.opened_by) == (order.pk, Severity.HIGH, "outbox")
    assert case.detail == (
        f"Outbox message #{message.pk} ({message.dedupe_key}): HTTP 400: InvalidInput"
        '\nThe channel answered: {"status": 400}'
    )
    event = OrderEvent.objects.get(order=order, kind="exception_opened")
    assert (event.actor, event.data["severity"]) == ("outbox", Severity.HIGH)


# --- the relay's limits: its batch, its time budget, its HTTP settings ---------------------------------


def test_a_relay_holds_at_most_its_batch_at_once_and_a_stopping_worker_gives_all_of_it_back():
    # given 52 due acknowledgements
    account = ChannelAccountFactory(name="batches")
    t = timezone.now() - timedelta(minutes=1)
    messages = [_message(account, f"batch-{n:02d}", at=t + timedelta(milliseconds=n)) for n in range(52)]
    held: list[int] = []

    def stopping() -> bool:
        held.append(OutboxMessage.objects.filter(status=OutboxStatus.SENDING).count())
        return True

    # when a relay starts while its worker is being stopped
    counts = outbox_relay(account_id=account.pk, should_stop=stopping)
    # then it had claimed 50 (its default batch), gave each back unspent and due now, and left the rest alone
    assert held[0] == 50
    assert counts == {"stopped": 50}
    assert _fresh(*messages) == [(OutboxStatus.FAILED, 0)] * 50 + [(OutboxStatus.PENDING, 0)] * 2
    # and a relay with a batch of two claims the two oldest due messages, and no more
    held.clear()
    assert outbox_relay(account_id=account.pk, batch=2, should_stop=stopping) == {"stopped": 2}
    assert held[0] == 2
    assert _fresh(*messages[50:]) == [(OutboxStatus.FAILED, 0)] * 2


def test_a_relay_sends_for_fifty_seconds_by_default_and_leaves_the_rest_to_its_next_run(monkeypatch, amazon_account):
    # given seven due acknowledgements, and a channel that takes ten seconds (of the relay's clock) per call
    from types import SimpleNamespace

    import channels.outbox as outbox
    from channels.connectors.base import SendResult

    clock = [1000.0]
    monkeypatch.setattr(outbox, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    real = outbox.connector_for

    def slow_channel(account, **options):
        connector = real(account, **options)

        def acknowledge(external_id):
            clock[0] += 10.0
            return SendResult(response={"acknowledged": external_id})

        connector.acknowledge = acknowledge
        return connector

    monkeypatch.setattr(outbox, "connector_for", slow_channel)
    t = timezone.now() - timedelta(minutes=1)
    messages = [_message(amazon_account, f"budget-{n}", at=t + timedelta(seconds=n)) for n in range(7)]
    # when the relay runs one message at a time
    counts = outbox_relay(account_id=amazon_account.pk, batch=1)
    # then it sent five (the fifth ended at exactly 50 s) and left the other two due for its next run
    assert counts == {"sent": 5}
    assert _fresh(*messages) == [(OutboxStatus.SENT, 1)] * 5 + [(OutboxStatus.PENDING, 0)] * 2
    # and with a budget of 15 s it sends two
    assert outbox_relay(account_id=amazon_account.pk, batch=1, budget_seconds=15) == {"sent": 2}


def test_the_relays_sends_follow_the_channel_http_settings(settings, amazon_sandbox, amazon_account, skus):
    # given a ship confirmation, a channel answering 500, and HTTP settings allowing two retries per call
    message = _ship(_order_at(amazon_sandbox, amazon_account))
    settings.WAYBILL_CHANNEL_HTTP = {**settings.WAYBILL_CHANNEL_HTTP, "max_retries": 2}
    amazon_sandbox.state.faults.error_500_next = 10
    # when
    assert outbox_relay(account_id=amazon_account.pk) == {"failed": 1}
    # then the send made three calls (one and two retries), no more, and waits for the relay's next attempt
    assert amazon_sandbox.state.faults.error_500_next == 7
    message.refresh_from_db()
    assert message.last_error.endswith("HTTP 500 after 3 attempts")
    assert (message.status, message.attempts) == (OutboxStatus.FAILED, 1)
    # and with no HTTP settings at all (as in production) it sends with the client's defaults
    del settings.WAYBILL_CHANNEL_HTTP
    amazon_sandbox.state.faults.error_500_next = 0
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    assert outbox_relay(account_id=amazon_account.pk) == {"sent": 1}
    assert len(amazon_sandbox.state.shipments) == 1


@contextmanager
def hanging_up_channel():
    """A channel address that accepts each connection and closes it at once; yields (url, connections made)."""
    import socket

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    accepted: list[int] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.mark.parametrize(("configured", "connections"), [(None, 2), (0, 1), (2, 3)])
def test_a_connection_failure_is_retried_once_within_a_send_by_default_and_as_configured(
    settings, walmart_sandbox, walmart_account, configured, connections
):
    from channels.models import ChannelAccount

    # given an acknowledgement for a channel that hangs up on every connection
    if configured is not None:
        settings.WAYBILL_OUTBOX_TRANSPORT_RETRIES = configured
    (order,) = walmart_sandbox.state.generate(1, unknown_sku=False, fulfilled_by="MERCHANT", status="unshipped")
    message, _ = outbox_enqueue(
        account_id=walmart_account.pk,
        kind=OutboxKind.ACKNOWLEDGE,
        dedupe_key=f"ack:{order.order_id}",
        payload={"order_external_id": order.order_id},
    )
    with hanging_up_channel() as (url, accepted):
        ChannelAccount.objects.filter(pk=walmart_account.pk).update(api_base_url=url)
        # when the relay sends it
        counts = outbox_relay(account_id=walmart_account.pk)
    # then the send tried the connection once plus WAYBILL_OUTBOX_TRANSPORT_RETRIES (1) times, then failed
    assert len(accepted) == connections
    assert counts == {"failed": 1}
    assert _fresh(message) == [(OutboxStatus.FAILED, 1)]


def test_a_send_failing_after_another_relay_claimed_the_message_leaves_that_claims_attempt_count(
    monkeypatch, amazon_sandbox, amazon_account, skus
):
    # given a ship confirmation whose send outlasts its lease: another relay claims it meanwhile, then the call fails
    import channels.outbox as outbox
    from channels.connectors.base import ChannelError

    message = _ship(_order_at(amazon_sandbox, amazon_account))
    taken: list[int] = []
    real = outbox.connector_for

    def slow_failing_channel(account, **options):
        connector = real(account, **options)

        def confirm(shipment, *, state):
            taken.extend(outbox_claim(account_id=account.pk, now=timezone.now() + timedelta(minutes=3)))
            raise ChannelError("HTTP 503", status=503)

        connector.confirm_shipment = confirm
        return connector

    monkeypatch.setattr(outbox, "connector_for", slow_failing_channel)
    # when the first relay records its failure
    outbox_relay(account_id=amazon_account.pk)
    # then the other relay's claim (its second attempt) is not counted back to the first
    assert taken == [message.pk]
    assert OutboxMessage.objects.get(pk=message.pk).attempts == 2
    assert amazon_sandbox.state.shipments == []


def _claimed_by_another_during_send(monkeypatch, outcome):
    """A channel whose send lets another relay claim the message first (the lease lapsed), then ``outcome``."""
    import channels.outbox as outbox

    taken: list[int] = []
    real = outbox.connector_for

    def slow_channel(account, **options):
        connector = real(account)
        send = connector.confirm_shipment

        def confirm(shipment, *, state):
            taken.extend(outbox_claim(account_id=account.pk, now=timezone.now() + timedelta(minutes=3)))
            return outcome(send, shipment, state)

        connector.confirm_shipment = confirm
        return connector

    monkeypatch.setattr(outbox, "connector_for", slow_channel)
    return taken


def _refused(send, shipment, state):
    raise ChannelError("HTTP 400: InvalidInput", status=400, retryable=False, detail={"errors": [{"code": "X"}]})


def test_a_failed_send_whose_claim_passed_to_another_relay_records_nothing_and_opens_no_case(
    monkeypatch, caplog, amazon_sandbox, amazon_account, skus
):
    # given a ship confirmation whose send is refused for good, after the message's lease lapsed and another
    # relay claimed it (one attempt more)
    message = _ship(_order_at(amazon_sandbox, amazon_account))
    taken = _claimed_by_another_during_send(monkeypatch, _refused)
    # when the first relay records its failure
    counts = outbox_relay(account_id=amazon_account.pk)
    # then it records nothing: the message is the other relay's claim, untouched, and no case is opened
    assert taken == [message.pk]
    assert counts == {"taken_over": 1}
    assert _fresh(message) == [(OutboxStatus.SENDING, 2)]
    message.refresh_from_db()
    assert message.last_error == ""
    assert not ExceptionCase.objects.filter(kind=ExceptionKind.OUTBOX_PARKED).exists()
    # and the relay's log says which message it left, and why
    assert (
        f"outbox message {message.pk}: its failed send is not recorded, another relay holds it now" in caplog.messages
    )


def test_a_send_the_channel_took_is_recorded_sent_even_when_another_relay_claimed_it_meanwhile(
    monkeypatch, amazon_sandbox, amazon_account, skus
):
    # given a ship confirmation the channel accepts, after the message's lease lapsed and another relay claimed it
    message = _ship(_order_at(amazon_sandbox, amazon_account))
    taken = _claimed_by_another_during_send(monkeypatch, lambda send, shipment, state: send(shipment, state=state))
    # when the first relay records its send
    counts = outbox_relay(account_id=amazon_account.pk)
    # then the message is sent (the channel has it), so the other relay does not send it a second time
    assert taken == [message.pk]
    assert counts == {"sent": 1}
    assert _fresh(message) == [(OutboxStatus.SENT, 2)]
    monkeypatch.undo()
    assert outbox_send(message_id=message.pk) == OutboxStatus.SENT
    assert len(amazon_sandbox.state.shipments) == 1


def test_a_send_that_lands_after_another_relay_parked_the_message_leaves_the_park_standing(
    monkeypatch, amazon_sandbox, amazon_account, skus
):
    # given a message another relay parked (with its case) while this relay's send was in flight
    message = _ship(_order_at(amazon_sandbox, amazon_account))

    def parked_meanwhile(send, shipment, state):
        result = send(shipment, state=state)
        OutboxMessage.objects.filter(pk=message.pk).update(status=OutboxStatus.PARKED)
        return result

    _claimed_by_another_during_send(monkeypatch, parked_meanwhile)
    # when this relay records its send
    counts = outbox_relay(account_id=amazon_account.pk)
    # then it does not overwrite what the other relay recorded, and says so
    assert counts == {"taken_over": 1}
    assert _fresh(message)[0][0] == OutboxStatus.PARKED


def test_a_failed_send_keeps_what_this_attempt_recorded_and_stamps_the_change(
    monkeypatch, amazon_sandbox, amazon_account, skus
):
    # given a ship confirmation whose earlier attempt recorded progress, and a send that records more, then fails
    import channels.outbox as outbox

    message = _ship(_order_at(amazon_sandbox, amazon_account))
    OutboxMessage.objects.filter(pk=message.pk).update(response={"state": {"step": 1}, "request_id": "r-1"})
    real = outbox.connector_for

    def channel(account, **options):
        connector = real(account)

        def confirm(shipment, *, state):
            state["feed_id"] = "F-2"
            failing.append(timezone.now())
            raise ChannelError("HTTP 503", status=503)

        connector.confirm_shipment = confirm
        return connector

    failing: list = []
    monkeypatch.setattr(outbox, "connector_for", channel)
    before = timezone.now()
    # when the relay sends it and the channel fails
    assert outbox_relay(account_id=amazon_account.pk) == {"failed": 1}
    # then both attempts' state is kept for the retry (it resumes from it), and the row says when it changed
    message.refresh_from_db()
    assert message.status == OutboxStatus.FAILED
    assert message.response == {"state": {"step": 1, "feed_id": "F-2"}, "request_id": "r-1"}
    assert message.updated_at >= before
    assert message.updated_at >= failing[0]  # the failure's own time, not the claim's


def test_a_failed_send_does_not_overwrite_a_message_ops_parked_meanwhile(
    monkeypatch, amazon_sandbox, amazon_account, skus
):
    # given a ship confirmation an operator parked while its send was in flight (same attempt, no other relay)
    message = _ship(_order_at(amazon_sandbox, amazon_account))

    def parked_then_refused(send, shipment, state):
        OutboxMessage.objects.filter(pk=message.pk).update(status=OutboxStatus.PARKED)
        return _refused(send, shipment, state)

    import channels.outbox as outbox

    real = outbox.connector_for

    def channel(account, **options):
        connector = real(account)
        send = connector.confirm_shipment
        connector.confirm_shipment = lambda shipment, *, state: parked_then_refused(send, shipment, state)
        return connector

    monkeypatch.setattr(outbox, "connector_for", channel)
    # when the send's failure is recorded
    counts = outbox_relay(account_id=amazon_account.pk)
    # then the operator's park stands and no second case is opened by the relay
    assert counts == {"taken_over": 1}
    assert _fresh(message) == [(OutboxStatus.PARKED, 1)]
    assert not ExceptionCase.objects.filter(kind=ExceptionKind.OUTBOX_PARKED).exists()


def test_a_send_that_succeeds_after_a_failure_clears_the_error_and_records_when_and_what(
    amazon_sandbox, amazon_account, skus
):
    # given a ship confirmation whose first attempt failed
    message = _ship(_order_at(amazon_sandbox, amazon_account))
    OutboxMessage.objects.filter(pk=message.pk).update(
        last_error="HTTP 503", last_error_detail={"status": 503}, response={"state": {"step": 1}}
    )
    before = timezone.now()
    # when the relay sends it
    assert outbox_relay(account_id=amazon_account.pk) == {"sent": 1}
    # then it is sent now, with no error left, and keeps the attempts' state beside the channel's answer
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT
    assert message.sent_at >= before and message.updated_at >= before
    assert (message.last_error, message.last_error_detail) == ("", {})
    assert message.response["state"]["step"] == 1
    assert message.response["already_applied"] is False


def test_a_claim_takes_fifty_by_default_and_breaks_ties_by_age_of_the_row():
    # given 52 messages all due at the same moment
    account = ChannelAccountFactory(name="claim-default")
    t = timezone.now()
    messages = [_message(account, f"same-{i}", at=t - timedelta(seconds=1)) for i in range(52)]
    # (the oldest ten rewritten since, so the table's physical order is no longer the rows' age)
    OutboxMessage.objects.filter(pk__in=[m.pk for m in messages[:10]]).update(payload={"order_external_id": "x"})
    # when a relay claims without naming a batch
    claimed = outbox_claim(account_id=account.pk, now=t)
    # then it takes 50, the oldest rows first, and leaves the newest two for the next claim
    assert claimed == [m.pk for m in messages[:50]]
    assert outbox_claim(account_id=account.pk, now=t) == [m.pk for m in messages[50:]]


@pytest.mark.django_db(transaction=True)
def test_a_claim_skips_a_message_another_relay_is_claiming_instead_of_waiting_for_it():
    # given two due messages, the first row locked by another relay's claim still in progress
    account = ChannelAccountFactory(name="claim-locked")
    t = timezone.now()
    first, second = (_message(account, key, at=t - timedelta(seconds=1)) for key in ("locked", "free"))
    locked, release = threading.Event(), threading.Event()

    def other_relay():
        try:
            with transaction.atomic():
                OutboxMessage.objects.select_for_update().get(pk=first.pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_relay)
    thread.start()
    try:
        assert locked.wait(timeout=10)
        # when this relay claims meanwhile
        claimed = outbox_claim(account_id=account.pk, now=t)
    finally:
        release.set()
        thread.join(timeout=30)
    # then it took the free one at once and left the locked one to its holder
    assert claimed == [second.pk]
    assert _fresh(first, second) == [(OutboxStatus.PENDING, 0), (OutboxStatus.SENDING, 1)]


def test_a_message_taken_over_mid_batch_does_not_stop_the_rest_of_the_batch(
    monkeypatch, amazon_sandbox, amazon_account, skus
):
    # given three ship confirmations in one batch, the second claimed by another relay while the first is sent
    import channels.outbox as outbox

    with relay_not_kicked():
        first, second, third = (_ship(_order_at(amazon_sandbox, amazon_account)) for _ in range(3))
    real = outbox.connector_for

    def channel(account, **options):
        connector = real(account)
        send = connector.confirm_shipment

        def confirm(shipment, *, state):
            OutboxMessage.objects.filter(pk=second.pk).update(attempts=F("attempts") + 1)  # the other relay's claim
            return send(shipment, state=state)

        connector.confirm_shipment = confirm
        return connector

    monkeypatch.setattr(outbox, "connector_for", channel)
    # when the relay goes through its batch
    counts = outbox_relay(account_id=amazon_account.pk)
    # then it leaves the second to its new holder and still sends the third
    assert counts == {"sent": 2, "taken_over": 1}
    assert [status for status, _ in _fresh(first, second, third)] == [
        OutboxStatus.SENT,
        OutboxStatus.SENDING,
        OutboxStatus.SENT,
    ]
