"""The retry fix of the exception queue's channel cases (a parked outbox message, a failed sync).

Its own module: it uses the outbox, which the services module's importers already depend on."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from django.db import transaction

from channels.models import OutboxMessage
from channels.outbox import outbox_retry_now
from config.kernel.actors import Actor, actor_resolve
from config.kernel.errors import DomainError
from orders import services as order_services
from orders.models import CaseStatus, ExceptionCase, ExceptionKind


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
