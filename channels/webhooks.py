"""Webhooks: verified, stored and answered at once; processed in batches by a task.

A webhook is a fast path, never the only path: the scheduled poll reconciles what a lost delivery
missed. Processing is idempotent by state: the order is re-read from the channel and upserted
through the same page ingest as the poll, so duplicates and out-of-order deliveries are harmless.
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import partial

from django.contrib.auth.decorators import login_not_required
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from channels.connectors.base import ChannelError, ChannelUnsupported, Connector, PayloadError, WebhookRejected
from channels.inbound import inbound_orders_process
from channels.models import ChannelAccount, InboundEvent, InboundKind, InboundStatus
from channels.registry import BY_KIND
from channels.services import connector_for
from channels.signals import webhook_events_stored
from channels.sync import account_lock
from orders.models import Order

log = logging.getLogger(__name__)

BATCH = 200


def _kick(account_id: int) -> None:
    # channels.tasks listens and enqueues the processing for the account.
    webhook_events_stored.send(sender=InboundEvent, account_id=account_id)


def _store(
    account: ChannelAccount, *, dedupe_key: str, external_id: str, payload: dict, updated_at, error: str
) -> bool:
    """Insert the webhook event unless its delivery id was seen; True when it is new."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO channels_inboundevent (account_id, kind, dedupe_key, external_id, payload, received_at,"
            " source_updated_at, status, error, attempts) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, 0)"
            " ON CONFLICT (account_id, dedupe_key) DO NOTHING RETURNING id",
            [
                account.pk,
                InboundKind.WEBHOOK,
                dedupe_key,
                external_id,
                json.dumps(payload, ensure_ascii=False),
                timezone.now(),
                updated_at,
                InboundStatus.FAILED if error else InboundStatus.RECEIVED,
                error,
            ],
        )
        return cursor.fetchone() is not None


def _refused() -> JsonResponse:
    return JsonResponse({"error": "invalid signature"}, status=401)


def _accepts_webhooks(channel: str) -> bool:
    """Whether the channel kind's connector verifies webhooks (decided by the kind, never by an account)."""
    marketplace = BY_KIND.get(channel)
    if marketplace is None:
        return False
    return import_string(marketplace.connector).verify_webhook is not Connector.verify_webhook


@csrf_exempt
@login_not_required
@require_POST
def webhook_receive(request: HttpRequest, channel: str, account_id: int) -> HttpResponse:
    """Verify the signature over the raw body; 401 stores nothing. Answer 200 before any processing.

    An unknown account and a bad signature get the same answer (``_refused``), and a channel without
    webhooks answers 404 whatever the id: account ids cannot be enumerated. A stale replay (signed, so
    from the channel) is told why. The log says which it was."""
    if not _accepts_webhooks(channel):
        return JsonResponse({"error": f"{channel[:32]} webhooks are not supported"}, status=404)
    account = ChannelAccount.objects.filter(pk=account_id, kind=channel).first()
    if account is None:
        log.warning("webhook for %s account %s refused: unknown account", channel[:16], account_id)
        return _refused()
    body = request.body
    try:
        connector = connector_for(account)
    except ChannelUnsupported:
        log.warning("webhook for %s refused: the channel has no webhooks", account.name)
        return _refused()
    try:
        if not connector.verify_webhook(request.headers, body):
            log.warning("webhook for %s rejected: bad signature", account.name)
            return _refused()
    except ChannelUnsupported:
        log.warning("webhook for %s refused: the channel has no webhooks", account.name)
        return _refused()
    except WebhookRejected as exc:
        # Signed but stale (a replay): refused, nothing stored; only a holder of the secret gets here.
        log.warning("webhook for %s rejected: %s", account.name, exc)
        return JsonResponse({"error": str(exc)}, status=401)
    finally:
        connector.close()
    try:
        event = connector.parse_webhook(request.headers, body)
        fields = dict(
            dedupe_key=event.dedupe_key,
            external_id=event.external_id,
            payload=event.payload,
            updated_at=event.updated_at,
            error="",
        )
    except PayloadError as exc:
        # Signed by the channel but unreadable: kept, failed and visible, never dropped.
        digest = hashlib.sha256(body).hexdigest()[:40]
        fields = dict(
            dedupe_key=f"webhook:unreadable:{digest}",
            external_id="",
            payload={"_raw": body[:65536].decode("utf-8", "replace")},
            updated_at=None,
            error=str(exc),
        )
    with transaction.atomic():
        new = _store(account, **fields)
        if new and not fields["error"]:
            transaction.on_commit(partial(_kick, account.pk))
    return JsonResponse({"ok": True, "duplicate": not new})


def webhook_events_process(*, account_id: int) -> int | None:
    """Re-read the orders named by received webhooks and ingest them. None: a sync holds the lock."""
    with account_lock(account_id) as acquired:
        if not acquired:
            return None
        account = ChannelAccount.objects.get(pk=account_id)
        events = list(
            InboundEvent.objects.filter(account=account, kind=InboundKind.WEBHOOK, status=InboundStatus.RECEIVED)
            .order_by("pk")
            .only("pk", "external_id")[:BATCH]
        )
        if not events:
            return 0
        connector = connector_for(account)
        raws, errors = [], {}
        try:
            for external_id in dict.fromkeys(e.external_id for e in events):
                try:
                    raws.append(connector.get_order(external_id))
                except ChannelError as exc:
                    if exc.retryable:
                        raise
                    errors[external_id] = str(exc)
            inbound_orders_process(
                account=account, connector=connector, raw_orders=raws, actor=f"webhook:{account.name}"
            )
        finally:
            connector.close()
        orders = dict(
            Order.objects.filter(account=account, external_id__in=[e.external_id for e in events]).values_list(
                "external_id", "pk"
            )
        )
        now = timezone.now()
        for event in events:
            event.processed_at = now
            event.order_id = orders.get(event.external_id)
            event.error = errors.get(event.external_id, "")
            event.status = InboundStatus.FAILED if event.error else InboundStatus.PROCESSED
        InboundEvent.objects.bulk_update(events, ["processed_at", "order_id", "error", "status"])
        return len(events)
