"""Integration API tokens: a REST client other than a node (an ERP, a BI tool, a script) acts as one user,
within the scopes the token names, until it expires. Only the sha256 of the key is stored (ASVS 2.10, 3.5)."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

ACCESS_READ = "read"
ACCESS_WRITE = "write"


def token_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class IntegrationToken(models.Model):
    name = models.CharField(max_length=100, help_text="What uses it, e.g. 'ERP nightly export'")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="integration_tokens",
        help_text="The token acts as this user: it never has more than the user's role allows",
    )
    scopes = models.JSONField(
        default=list,
        help_text='Resources and access, e.g. ["orders:read", "inventory:write"] (write includes read)',
    )
    key_prefix = models.CharField(max_length=8, editable=False, help_text="First characters, to tell keys apart")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "integration API token"
        indexes = [models.Index(fields=["user", "revoked_at"], name="integrationtoken_user")]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()

    def allows(self, resource: str, access: str) -> bool:
        granted = set(self.scopes or [])
        if f"{resource}:{ACCESS_WRITE}" in granted:
            return True
        return access == ACCESS_READ and f"{resource}:{ACCESS_READ}" in granted

    @staticmethod
    def generate_key() -> str:
        return "wbt_" + secrets.token_urlsafe(32)
