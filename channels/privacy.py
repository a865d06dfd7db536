"""Data protection per channel account: each account's retention period and legal hold decide when its
buyers' PII is purged (orders.services.orders_pii_purge), and the raw channel payloads kept for those
orders are emptied with it. One ``pii_purged`` account event per run and account (counts only)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from channels.models import ChannelAccount, ChannelAccountEvent, InboundEvent, InboundStatus
from orders import services as order_services

log = logging.getLogger(__name__)
ACTOR = "privacy:retention"


@dataclass
class PurgeRun:
    purged: dict[str, int] = field(default_factory=dict)
    held: list[str] = field(default_factory=list)


def channel_accounts_pii_purge(*, now: datetime | None = None, actor: str = ACTOR) -> PurgeRun:
    """Purge every account's due orders; accounts under a legal hold are skipped (and named)."""
    now = now or timezone.now()
    run = PurgeRun()
    for account in ChannelAccount.objects.order_by("pk"):
        if account.pii_legal_hold:
            run.held.append(account.name)
            continue
        due = list(
            order_services.orders_pii_due(
                account_id=account.pk, retention_days=account.pii_retention_days, now=now
            ).values_list("pk", "external_id")
        )
        # Raw payloads that never became an order (unreadable, failed, skipped, discarded) and are older than
        # the retention period: no order's purge reaches them, and they may carry a buyer's details.
        orphans = (
            InboundEvent.objects.filter(
                account=account,
                order__isnull=True,
                received_at__lt=now - timedelta(days=account.pii_retention_days),
            )
            .filter(status__in=(InboundStatus.FAILED, InboundStatus.SKIPPED, InboundStatus.DISCARDED))
            .exclude(payload__has_key="purged_at")
        )
        if not due and not orphans.exists():
            continue
        reason = f"retention: {account.pii_retention_days} days after the order was done ({account.name})"
        purged = order_services.orders_pii_purge(order_ids=[pk for pk, _ in due], actor=actor, reason=reason)
        external_ids = [external_id for pk, external_id in due if pk in set(purged)]
        with transaction.atomic():
            payloads = InboundEvent.objects.filter(account=account, external_id__in=external_ids).update(
                payload={"purged_at": now.isoformat()}
            )
            orphaned = orphans.update(payload={"purged_at": now.isoformat()})
            ChannelAccountEvent.objects.create(
                account=account,
                kind="pii_purged",
                actor=actor,
                reason=reason,
                data={"orders": len(purged), "raw_payloads": payloads, "payloads_without_order": orphaned},
            )
        if purged:
            run.purged[account.name] = len(purged)
        log.info(
            "purged buyer PII of %d order(s) and %d payload(s) without an order of %s",
            len(purged),
            orphaned,
            account.name,
        )
    return run
