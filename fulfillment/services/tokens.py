"""Node API tokens, the API's stored idempotent answers, and the routing configuration's versioning."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from config.kernel.actors import Actor, actor_resolve
from fulfillment.errors import InvalidInput
from fulfillment.models import IdempotencyRecord, NodeApiToken, RoutingConfig, api_key_hash
from inventory.models import Location

log = logging.getLogger(__name__)
PRUNE_BATCH = 5000


def node_token_create(*, location: Location | int, name: str, actor: Actor) -> tuple[NodeApiToken, str]:
    """A new token for one node. Returns (token, key): the key is shown once and only its hash is kept."""
    actor_name, _ = actor_resolve(actor)
    if not name or not name.strip():
        raise InvalidInput("name", "a token needs a name, e.g. the WMS it is for")
    location_id = location if isinstance(location, int) else location.pk
    if not Location.objects.filter(pk=location_id).exists():
        raise InvalidInput("location", f"location {location_id} does not exist")
    key = NodeApiToken.generate_key()
    token = NodeApiToken.objects.create(
        location_id=location_id,
        name=name.strip()[:100],
        key_prefix=key[:8],
        key_hash=api_key_hash(key),
        created_by=actor_name,
    )
    return token, key


def node_token_revoke(*, token: NodeApiToken | int, actor: Actor) -> NodeApiToken:
    actor_resolve(actor)
    token_id = token if isinstance(token, int) else token.pk
    with transaction.atomic():
        locked = NodeApiToken.objects.select_for_update().get(pk=token_id)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.save(update_fields=["revoked_at"])
    return locked


def routing_config_bump(*, config: RoutingConfig | int, actor: Actor) -> RoutingConfig:
    """A change to the rules (or their channel policies): the next decision uses and records the new version."""
    name, _ = actor_resolve(actor)
    config_id = config if isinstance(config, int) else config.pk
    RoutingConfig.objects.filter(pk=config_id).update(version=F("version") + 1, updated_by=name)
    return RoutingConfig.objects.get(pk=config_id)


def idempotency_records_prune(*, keep_hours: int, actor: Actor, now=None) -> int:
    """Delete the stored answers to Idempotency-Key calls older than ``keep_hours``; returns how many.

    A stored answer replays a retried call, so it is needed for the retry window only. Past it, the row
    is a copy of what the API returned, an order's buyer name and address changes included, which would
    otherwise outlive the buyer-PII purge of the order tables. A key used again after the window is a new
    call (the state machines refuse a step done twice)."""
    actor_name, _ = actor_resolve(actor)
    if keep_hours < 1:
        raise InvalidInput("keep_hours", "keep the answers at least one hour (a client's retries need them)")
    cutoff = (now or timezone.now()) - timedelta(hours=keep_hours)
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(
                IdempotencyRecord.objects.filter(created_at__lt=cutoff)
                .order_by("pk")
                .values_list("pk", flat=True)[:PRUNE_BATCH]
            )
            if not ids:
                break
            deleted += IdempotencyRecord.objects.filter(pk__in=ids).delete()[0]
    if deleted:
        log.info("%s deleted %d stored idempotent answer(s) older than %d hours", actor_name, deleted, keep_hours)
    return deleted
