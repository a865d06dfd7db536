"""Encryption of channel credentials at rest (Fernet, with key rotation).

settings.FIELD_ENCRYPTION_KEY is a list of Fernet keys, newest first. Tokens are written with the
first key; every key in the list decrypts. To rotate: put a new key first, run
channel_account_rotate_encryption (re-encrypts every account with the newest key), then drop the
old key.

**Production must set FIELD_ENCRYPTION_KEY.** When it is empty (local runs, tests) a key is
derived from settings.SECRET_KEY with HKDF, so changing SECRET_KEY then makes stored credentials
unreadable.

Error messages never include keys, tokens or plaintext.
"""

from __future__ import annotations

import base64
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_HKDF_INFO = b"waybill.channels.credentials.v1"


class CredentialsError(Exception):
    """Stored credentials can't be decrypted or aren't a JSON object."""


def derive_key_from_secret(secret_key: str) -> bytes:
    """A Fernet key derived from SECRET_KEY, for local runs without FIELD_ENCRYPTION_KEY."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw)


def _configured_keys() -> tuple[str | bytes, ...]:
    keys = getattr(settings, "FIELD_ENCRYPTION_KEY", None) or []
    if isinstance(keys, (str, bytes)):
        keys = [keys]
    return tuple(k for k in keys if k)


@lru_cache(maxsize=8)
def _fernet_for(keys: tuple[str | bytes, ...]) -> MultiFernet:
    fernets = []
    for position, key in enumerate(keys):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            # Say which entry is bad, never what it contains.
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEY entry {position} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes; generate one with Fernet.generate_key())."
            ) from None
    return MultiFernet(fernets)


def get_fernet() -> MultiFernet:
    keys = _configured_keys()
    if not keys:
        keys = (derive_key_from_secret(settings.SECRET_KEY),)
    return _fernet_for(keys)


def encrypt_json(data: dict) -> str:
    """Encrypt a JSON-serialisable dict with the newest key; returns the token as text."""
    if not isinstance(data, dict):
        raise TypeError("encrypt_json expects a dict")
    plaintext = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return get_fernet().encrypt(plaintext).decode("ascii")


def decrypt_json(token: str) -> dict:
    """Decrypt a token from encrypt_json with any configured key."""
    try:
        plaintext = get_fernet().decrypt(token.encode("ascii") if isinstance(token, str) else token)
    except (InvalidToken, UnicodeEncodeError):
        raise CredentialsError(
            "Stored channel credentials could not be decrypted with any key in FIELD_ENCRYPTION_KEY: "
            "the key that encrypted them was removed or changed (or SECRET_KEY changed while "
            "FIELD_ENCRYPTION_KEY is unset). Restore that key, or set the credentials again."
        ) from None
    try:
        data = json.loads(plaintext)
    except ValueError:
        raise CredentialsError("Stored channel credentials decrypted but are not valid JSON.") from None
    if not isinstance(data, dict):
        raise CredentialsError("Stored channel credentials decrypted but are not a JSON object.")
    return data


def rotate_token(token: str) -> str:
    """Re-encrypt a token with the newest key (any configured key may have written it)."""
    try:
        rotated = get_fernet().rotate(token.encode("ascii") if isinstance(token, str) else token)
    except (InvalidToken, UnicodeEncodeError):
        raise CredentialsError(
            "Stored channel credentials could not be re-encrypted: no key in FIELD_ENCRYPTION_KEY "
            "decrypts them. Keep the old key in the list until every account is rotated."
        ) from None
    return rotated.decode("ascii")
