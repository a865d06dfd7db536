"""Encryption of channel credentials at rest (Fernet, with key rotation).

settings.FIELD_ENCRYPTION_KEY is a list of Fernet keys, newest first. Tokens are written with the
first key; every key in the list decrypts. To rotate: put a new key first, run
channel_account_rotate_encryption (re-encrypts every account with the newest key), then drop the
old key.

**Production must set FIELD_ENCRYPTION_KEY.** When it is empty (local runs, tests) a key is
derived from settings.SECRET_KEY with HKDF, so changing SECRET_KEY then makes stored credentials
unreadable.

The keys themselves (and the derived one) are config.kernel.crypto's, shared with the node API's sealed
answers. Error messages never include keys, tokens or plaintext.
"""

from __future__ import annotations

import json

from cryptography.fernet import InvalidToken

from config.kernel.crypto import get_fernet


class CredentialsError(Exception):
    """Stored credentials can't be decrypted or aren't a JSON object."""


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
