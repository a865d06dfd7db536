"""Channel account services: credentials (set, read, re-encrypt with the newest key); location mapping;
listing ids learnt from the channel."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels.connectors import connector_class
from channels.connectors.base import Connector, ListingIds
from channels.crypto import CredentialsError, decrypt_json, encrypt_json, rotate_token
from channels.models import ChannelAccount, ChannelAccountEvent, ChannelLocation, Listing
from orders import services as order_services


class InvalidCredentials(ValueError):
    """Credentials must be a non-empty JSON object of non-empty strings keyed by strings."""


def credentials_validate(credentials: object) -> dict[str, str]:
    """Check the shape of a credentials dict. Messages name keys, never values."""
    if not isinstance(credentials, dict):
        raise InvalidCredentials("Credentials must be a JSON object of string keys to string values.")
    if not credentials:
        raise InvalidCredentials("Credentials must contain at least one key.")
    for key, value in credentials.items():
        if not isinstance(key, str) or not key.strip():
            raise InvalidCredentials("Every credential key must be a non-empty string.")
        if not isinstance(value, str):
            raise InvalidCredentials(f"Credential {key!r} must be a string.")
        if not value.strip():
            raise InvalidCredentials(f"Credential {key!r} is empty.")
    return dict(credentials)


def _key_names(account: ChannelAccount) -> list[str] | None:
    if not account.credentials_encrypted:
        return []
    try:
        return sorted(decrypt_json(account.credentials_encrypted))
    except CredentialsError:
        return None  # unreadable with the current keys: recorded as unknown


def channel_account_set_credentials(
    *, account: ChannelAccount, credentials: dict, actor: str, reason: str = ""
) -> None:
    """Replace an account's credentials; writes one audit event (key names only)."""
    if not actor:
        raise ValueError("actor is required")
    credentials = credentials_validate(credentials)
    with transaction.atomic():
        locked = ChannelAccount.objects.select_for_update().get(pk=account.pk)
        before = _key_names(locked)
        now = timezone.now()
        account.credentials_encrypted = encrypt_json(credentials)
        account.credentials_rotated_at = now
        account.save(update_fields=["credentials_encrypted", "credentials_rotated_at", "updated_at"])
        ChannelAccountEvent.objects.create(
            account=account,
            kind="credentials_changed",
            actor=actor,
            reason=reason,
            data={"keys_before": before, "keys_after": sorted(credentials), "rotated_at": now.isoformat()},
        )


def channel_account_refresh_credentials(
    *, account: ChannelAccount, refresh: Callable[[dict], dict | None], actor: str, reason: str = ""
) -> dict:
    """Renew an account's credentials under its row lock: ``refresh(stored)`` returns the credentials to
    store, or None when the stored ones are already fresh (another worker renewed them). The channel's
    refresh call runs inside the lock, so two workers never spend the same rotating refresh token.
    Returns the credentials stored when it ends; one audit event (key names only) when they changed."""
    if not actor:
        raise ValueError("actor is required")
    with transaction.atomic():
        locked = ChannelAccount.objects.select_for_update().get(pk=account.pk)
        stored = channel_account_get_credentials(account=locked)
        renewed = refresh(dict(stored))
        if renewed is None or renewed == stored:
            return stored
        renewed = credentials_validate(renewed)
        now = timezone.now()
        locked.credentials_encrypted = encrypt_json(renewed)
        locked.credentials_rotated_at = now
        locked.save(update_fields=["credentials_encrypted", "credentials_rotated_at", "updated_at"])
        account.credentials_encrypted = locked.credentials_encrypted
        account.credentials_rotated_at = now
        ChannelAccountEvent.objects.create(
            account=locked,
            kind="credentials_refreshed",
            actor=actor,
            reason=reason,
            data={"keys_before": sorted(stored), "keys_after": sorted(renewed), "rotated_at": now.isoformat()},
        )
    return renewed


def connector_for(account: ChannelAccount, **options: Any) -> Connector:
    """A connector for the account with its decrypted credentials; HTTP options come from settings. A connector
    that renews its own tokens (TikTok) stores them through ``credentials_refresh``, under the account's lock."""
    options.setdefault("http_options", dict(getattr(settings, "WAYBILL_CHANNEL_HTTP", {})))
    options.setdefault("credentials_refresh", partial(channel_account_refresh_credentials, account=account))
    return connector_class(account.kind)(account, channel_account_get_credentials(account=account), **options)


def channel_account_get_credentials(*, account: ChannelAccount) -> dict:
    """The decrypted credentials ({} when none are set). Raises CredentialsError if unreadable."""
    if not account.credentials_encrypted:
        return {}
    return decrypt_json(account.credentials_encrypted)


def channel_account_rotate_encryption(*, actor: str) -> int:
    """Re-encrypt every account's credentials with the newest FIELD_ENCRYPTION_KEY; returns the count.

    All or nothing: if one account can't be decrypted, CredentialsError rolls the whole run back.
    """
    if not actor:
        raise ValueError("actor is required")
    rotated = 0
    with transaction.atomic():
        accounts = list(ChannelAccount.objects.select_for_update().exclude(credentials_encrypted="").order_by("pk"))
        for account in accounts:
            account.credentials_encrypted = rotate_token(account.credentials_encrypted)
            account.save(update_fields=["credentials_encrypted", "updated_at"])
            ChannelAccountEvent.objects.create(account=account, kind="encryption_rotated", actor=actor)
            rotated += 1
    return rotated


def channel_location_map(*, channel_location: ChannelLocation | int, location_id: int | None, actor: str) -> list[int]:
    """Say which Waybill location a channel's location is. Mapping a pickup store applies it to the
    unrouted orders held for it (their holds are released, so routing takes them on its next run).
    Returns the ids of the orders that got their store."""
    if not actor:
        raise ValueError("actor is required")
    pk = channel_location if isinstance(channel_location, int) else channel_location.pk
    with transaction.atomic():
        locked = ChannelLocation.objects.select_for_update().get(pk=pk)
        if locked.location_id != location_id:
            locked.location_id = location_id
            locked.save(update_fields=["location"])
        if location_id is None:
            return []
        return order_services.orders_pickup_store_set(
            account_id=locked.account_id,
            pickup_location_ref=locked.external_id,
            location_id=location_id,
            actor=actor,
        )


def listing_ids_record(*, account_id: int, ids: Mapping[str, ListingIds], actor: str) -> int:
    """Store the channel's ids of listings looked up by SKU ({channel SKU: ListingIds}); an empty id
    never overwrites a known one. One audit event for the batch. Returns the number of listings changed."""
    if not actor:
        raise ValueError("actor is required")
    if not ids:
        return 0
    changed: dict[str, dict[str, str]] = {}
    with transaction.atomic():
        listings = list(
            Listing.objects.select_for_update().filter(account_id=account_id, channel_sku__in=list(ids)).order_by("pk")
        )
        for listing in listings:
            found = ids[listing.channel_sku]
            listing_id = (found.external_listing_id or listing.external_listing_id)[:255]
            variant_id = (found.external_variant_id or listing.external_variant_id)[:255]
            if (listing_id, variant_id) == (listing.external_listing_id, listing.external_variant_id):
                continue
            changed[listing.channel_sku] = {
                "before": f"{listing.external_listing_id}|{listing.external_variant_id}",
                "after": f"{listing_id}|{variant_id}",
            }
            listing.external_listing_id, listing.external_variant_id = listing_id, variant_id
            listing.save(update_fields=["external_listing_id", "external_variant_id"])
        if changed:
            ChannelAccountEvent.objects.create(
                account_id=account_id,
                kind="listing_ids_resolved",
                actor=actor,
                reason="Looked up at the channel by SKU before an inventory push",
                data={"listings": changed},
            )
    return len(changed)
