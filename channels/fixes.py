"""The retry fix of the exception queue's channel cases (a parked outbox message, a failed sync), and the
detection of pushes failing repeatedly.

Its own module: it uses the outbox, which the services module's importers already depend on."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from django.contrib.postgres.aggregates import ArrayAgg
from django.db import transaction
from django.db.models import Count, Min

from channels.models import ChannelAccountEvent, OutboxMessage, OutboxStatus
from channels.outbox import outbox_retry_now
from config.kernel.actors import Actor, actor_resolve
from config.kernel.errors import DomainError
from orders import services as order_services
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, Severity


def exception_case_retry(*, case_id: int, actor: Actor, start_sync: Callable[[int], None]) -> str:
    """The retry fix of a channel case: a parked outbox message is queued again; a failed sync is started
    again (``start_sync(account_id)`` after commit: the caller's task dispatch). The case is resolved with
    what was done; if the retry fails too, the next failure opens a new case. Returns what was done."""
    name, _ = actor_resolve(actor)
    case = ExceptionCase.objects.filter(pk=case_id).first()
    if case is None:
        raise DomainError(f"case #{case_id} does not exist")
    if case.status == CaseStatus.RESOLVED:
        raise DomainError(f"case #{case_id} is already resolved")
    with transaction.atomic():
        if case.kind == ExceptionKind.OUTBOX_PARKED and case.outbox_message_id:
            message = OutboxMessage.objects.filter(pk=case.outbox_message_id).first()
            if message is None:
                raise DomainError(f"case #{case_id}: outbox message #{case.outbox_message_id} no longer exists")
            outbox_retry_now(message=message, actor=name)
            done = f"outbox message #{message.pk} queued again"
        elif case.kind == ExceptionKind.SYNC_FAILURE and case.account_id:
            transaction.on_commit(partial(start_sync, case.account_id))
            done = "sync started again"
        else:
            raise DomainError(f"case #{case_id} is a {case.get_kind_display().lower()} case: nothing to retry")
        order_services.exception_case_resolve(case=case.pk, note=f"retried by {name}: {done}", actor=actor)
    return done


PUSH_FAILING_AFTER = 3  # failed attempts of one message before the account's push counts as failing


def push_failing_key(account_id: int) -> str:
    return f"push_failing:account={account_id}"


def push_failures_detect(*, actor: Actor = "detector", min_attempts: int = PUSH_FAILING_AFTER) -> dict[str, list[int]]:
    """Detection in seconds for pushes: an account with messages that failed ``min_attempts`` times or more
    (retrying, not parked yet) gets one "push failing" case naming how many and since when; the case is
    resolved once none is failing any more. Returns {"opened": [...], "resolved": [...]} case ids."""
    actor_resolve(actor)
    failing = {
        row["account_id"]: row
        for row in OutboxMessage.objects.filter(status=OutboxStatus.FAILED, attempts__gte=min_attempts)
        .values("account_id", "account__name")
        .annotate(n=Count("id"), oldest=Min("created_at"), kinds=ArrayAgg("kind", distinct=True))
    }
    opened, resolved = [], []
    for account_id, row in failing.items():
        case, created = order_services.exception_case_open(
            kind=ExceptionKind.PUSH_FAILING,
            title=f"{row['account__name']}: {row['n']} push(es) failing repeatedly",
            detail=f"{row['n']} outbox message(s) ({', '.join(sorted(row['kinds']))}) failed {min_attempts}+ times, "
            f"the oldest queued {row['oldest']:%Y-%m-%d %H:%M %Z}. See the outbox for the channel's answers.",
            severity=Severity.HIGH,
            account_id=account_id,
            dedupe_key=push_failing_key(account_id),
            actor=actor,
        )
        if created:
            opened.append(case.pk)
    stale = ExceptionCase.objects.filter(kind=ExceptionKind.PUSH_FAILING).exclude(status=CaseStatus.RESOLVED)
    for case in stale.exclude(account_id__in=list(failing)).order_by("pk"):
        order_services.exception_case_resolve(case=case.pk, note="no push is failing any more", actor=actor)
        resolved.append(case.pk)
    return {"opened": opened, "resolved": resolved}


def outbox_message_discard(*, message_id: int, reason: str, actor: Actor) -> OutboxMessage:
    """Give up on a failed or parked message: it is never sent (the relay only claims pending and failed
    ones). One account event records who and why; the message's parked case is resolved."""
    name, _ = actor_resolve(actor)
    if not reason or not reason.strip():
        raise DomainError("discarding a message needs a reason")
    with transaction.atomic():
        locked = OutboxMessage.objects.select_for_update().filter(pk=message_id).first()
        if locked is None:
            raise DomainError(f"outbox message #{message_id} does not exist")
        if locked.status not in (OutboxStatus.FAILED, OutboxStatus.PARKED):
            raise DomainError(f"message #{locked.pk} is {locked.status}; only failed or parked messages are discarded")
        before = locked.status
        locked.status = OutboxStatus.DISCARDED
        locked.last_error = f"{locked.last_error}\n[discarded by {name}: {reason.strip()}]".strip()[:4000]
        locked.save(update_fields=["status", "last_error", "updated_at"])
        ChannelAccountEvent.objects.create(
            account_id=locked.account_id,
            kind="outbox_discarded",
            actor=name,
            reason=reason.strip(),
            data={
                "message_id": locked.pk,
                "kind": locked.kind,
                "before": {"status": before},
                "after": {"status": "discarded"},
            },
        )
        for case_id in (
            ExceptionCase.objects.filter(kind=ExceptionKind.OUTBOX_PARKED, dedupe_key=f"outbox_parked:{locked.pk}")
            .exclude(status=CaseStatus.RESOLVED)
            .values_list("pk", flat=True)
        ):
            order_services.exception_case_resolve(
                case=case_id, note=f"message discarded: {reason.strip()}", actor=actor
            )
    return locked
