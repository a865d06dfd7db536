"""What returns hears from the apps it builds on: the channel's answer to a refund (channels' outbox)."""

from __future__ import annotations

import logging

from django.dispatch import receiver

from channels.models import OutboxKind
from channels.signals import outbox_message_answered
from returns.services.refunds import refund_answer_record

log = logging.getLogger(__name__)


@receiver(outbox_message_answered, dispatch_uid="returns.refund_answer")
def record_refund_answer(sender, *, message_id: int, kind: str, **kwargs) -> None:
    if kind == OutboxKind.REFUND:
        refund_answer_record(outbox_message_id=message_id)
