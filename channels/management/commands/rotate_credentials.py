"""Re-encrypt every channel account's credentials under the newest FIELD_ENCRYPTION_KEY (MultiFernet).

Rotation: put the new key first in FIELD_ENCRYPTION_KEY (keep the old ones after it), deploy, run
``manage.py rotate_credentials``, then remove the old keys. All or nothing: an account no configured
key can decrypt stops the run and changes nothing."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from channels.crypto import CredentialsError
from channels.services import channel_account_rotate_encryption


class Command(BaseCommand):
    help = "Re-encrypt every channel account's credentials with the newest FIELD_ENCRYPTION_KEY."

    def add_arguments(self, parser):
        parser.add_argument("--actor", default="rotate_credentials", help="Who runs it (kept on each audit event)")

    def handle(self, *args, actor: str, **options):
        try:
            count = channel_account_rotate_encryption(actor=actor)
        except CredentialsError as exc:
            raise CommandError(f"{exc} Nothing was changed.") from None
        self.stdout.write(f"re-encrypted the credentials of {count} account(s) with the newest key")
