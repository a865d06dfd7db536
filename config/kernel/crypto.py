"""The project's Fernet keys (settings.FIELD_ENCRYPTION_KEY, newest first; every key decrypts).

Channel credentials (channels.crypto) and the node API's stored idempotent answers (fulfillment.api) are
sealed with them. When FIELD_ENCRYPTION_KEY is empty (local runs, tests) one key is derived from
settings.SECRET_KEY with HKDF. **Production must set FIELD_ENCRYPTION_KEY.**
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# The HKDF label of the derived key: tokens already stored depend on it, so it keeps its first name.
_HKDF_INFO = b"waybill.channels.credentials.v1"


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
