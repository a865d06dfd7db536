"""Deploy checks of our own (``manage.py check --deploy``): the keys production cannot run without.

With DEBUG off, a missing or weak SECRET_KEY and a missing or invalid FIELD_ENCRYPTION_KEY are errors.
The messages name the setting, never its value."""

from __future__ import annotations

import os

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import Error, Tags, register

WEAK_SECRET_MIN_LENGTH = 50
WEAK_SECRET_MIN_UNIQUE = 5


@register(Tags.security, deploy=True)
def secret_key_check(app_configs=None, **kwargs) -> list[Error]:
    if settings.DEBUG:
        return []
    if not os.environ.get("SECRET_KEY"):
        return [
            Error(
                "SECRET_KEY is not set in the environment: production must not use the key generated under var/.",
                hint='Set SECRET_KEY to a long random value, e.g. python -c "import secrets; '
                'print(secrets.token_urlsafe(64))".',
                id="waybill.E001",
            )
        ]
    key = settings.SECRET_KEY
    if (
        len(key) < WEAK_SECRET_MIN_LENGTH
        or len(set(key)) < WEAK_SECRET_MIN_UNIQUE
        or key.startswith("django-insecure-")
    ):
        return [
            Error(
                f"SECRET_KEY is weak: it needs at least {WEAK_SECRET_MIN_LENGTH} characters and "
                f"{WEAK_SECRET_MIN_UNIQUE} different ones, and no 'django-insecure-' prefix.",
                hint="Generate a new one with secrets.token_urlsafe(64).",
                id="waybill.E002",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def field_encryption_key_check(app_configs=None, **kwargs) -> list[Error]:
    if settings.DEBUG:
        return []
    keys = getattr(settings, "FIELD_ENCRYPTION_KEY", None) or []
    if isinstance(keys, (str, bytes)):
        keys = [keys]
    keys = [k for k in keys if k]
    if not keys:
        return [
            Error(
                "FIELD_ENCRYPTION_KEY is not set: channel credentials would be encrypted with a key derived from "
                "SECRET_KEY.",
                hint="Set FIELD_ENCRYPTION_KEY to one or more Fernet keys, newest first "
                '(python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())").',
                id="waybill.E003",
            )
        ]
    errors = []
    for position, key in enumerate(keys):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            errors.append(
                Error(
                    f"FIELD_ENCRYPTION_KEY entry {position} is not a valid Fernet key "
                    "(32 url-safe base64-encoded bytes).",
                    hint="Generate one with Fernet.generate_key(); keep old keys after the new one until "
                    "manage.py rotate_credentials has run.",
                    id="waybill.E004",
                )
            )
    return errors
