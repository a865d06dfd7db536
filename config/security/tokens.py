"""Integration API tokens at the REST edge: ``Authorization: Bearer <key>``.

The key is looked up by its sha256; an unknown, revoked or expired key is a 401. The token acts as its
user (model permissions still apply) and, before any view runs, its scopes must cover the view's
resource (the app that owns the view) and the access (read for GET/HEAD/OPTIONS, write otherwise):
anything else is a 403. Deny by default: a view of an unknown resource is refused to every token.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from config.security.models import ACCESS_READ, ACCESS_WRITE, IntegrationToken, token_key_hash

KEYWORD = "Bearer"
RESOURCES = ("orders", "inventory", "fulfillment", "channels", "returns", "scorecards")
MAX_LIFETIME_DAYS = 365
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class TokenInputError(ValueError):
    """A token request that cannot be granted; the message says why in the caller's words."""


def scopes_validate(scopes: list[str]) -> list[str]:
    allowed = {f"{r}:{a}" for r in RESOURCES for a in (ACCESS_READ, ACCESS_WRITE)}
    if not scopes:
        raise TokenInputError("a token needs at least one scope, e.g. orders:read")
    unknown = sorted(set(scopes) - allowed)
    if unknown:
        raise TokenInputError(
            f"unknown scope(s) {', '.join(unknown)}; use <resource>:read or <resource>:write with a resource among "
            f"{', '.join(RESOURCES)}"
        )
    return sorted(set(scopes))


def integration_token_create(
    *, user_id: int, name: str, scopes: list[str], days: int, actor: str
) -> tuple[IntegrationToken, str]:
    """A new token; returns (token, key). The key is shown once: only its hash is kept."""
    if not actor:
        raise TokenInputError("an actor is required")
    if not name or not name.strip():
        raise TokenInputError("a token needs a name, e.g. the system that uses it")
    if not 1 <= days <= MAX_LIFETIME_DAYS:
        raise TokenInputError(f"a token lives 1 to {MAX_LIFETIME_DAYS} days")
    if not get_user_model().objects.filter(pk=user_id, is_active=True).exists():
        raise TokenInputError(f"user {user_id} does not exist or is inactive")
    key = IntegrationToken.generate_key()
    token = IntegrationToken.objects.create(
        name=name.strip()[:100],
        user_id=user_id,
        scopes=scopes_validate(scopes),
        key_prefix=key[:8],
        key_hash=token_key_hash(key),
        expires_at=timezone.now() + timedelta(days=days),
        created_by=actor[:150],
    )
    return token, key


def integration_token_revoke(*, token_id: int, actor: str) -> IntegrationToken:
    with transaction.atomic():
        token = IntegrationToken.objects.select_for_update().get(pk=token_id)
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
    return token


# The API's description (OpenAPI schema, docs, DRF's root list): readable with any valid token.
META_MODULES = ("drf_spectacular", "rest_framework.routers")
META = "meta"


def view_resource(view) -> str | None:
    """The resource a view belongs to: its ``token_resource``, else the app its class is defined in."""
    explicit = getattr(view, "token_resource", None)
    if explicit:
        return explicit
    module = type(view).__module__
    if module.startswith(META_MODULES):
        return META
    app = module.split(".")[0]
    return app if app in RESOURCES else None


class IntegrationTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() != KEYWORD.lower().encode():
            return None
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed("Authorization: Bearer <token>, one token and no spaces")
        try:
            key = auth[1].decode("ascii")
        except UnicodeError:
            raise exceptions.AuthenticationFailed("the token must be ASCII") from None
        token = IntegrationToken.objects.select_related("user").filter(key_hash=token_key_hash(key)).first()
        now = timezone.now()
        if token is None or token.revoked_at is not None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("unknown or revoked token")
        if token.expires_at <= now:
            raise exceptions.AuthenticationFailed("this token has expired: ask an admin for a new one")
        view = (getattr(request, "parser_context", None) or {}).get("view")
        resource = view_resource(view) if view is not None else None
        access = ACCESS_READ if request.method in SAFE_METHODS else ACCESS_WRITE
        allowed = resource == META and access == ACCESS_READ
        if resource is None or not (allowed or token.allows(resource, access)):
            raise exceptions.PermissionDenied(
                f"this token's scopes do not include {resource or 'this endpoint'}:{access}"
            )
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            IntegrationToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return KEYWORD


class IntegrationTokenScheme(OpenApiAuthenticationExtension):
    target_class = "config.security.tokens.IntegrationTokenAuthentication"
    name = "integrationToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An integration token (admin: Integration API tokens): acts as its user, within its "
            "scopes (<resource>:read or :write), until it expires.",
        }
