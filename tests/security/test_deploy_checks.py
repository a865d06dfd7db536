"""Our own deploy checks and the credential rotation command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from channels.models import ChannelAccount, ChannelAccountEvent, ChannelKind
from channels.services import channel_account_get_credentials, channel_account_set_credentials

KEY_OLD = Fernet.generate_key().decode()
KEY_NEW = Fernet.generate_key().decode()
STRONG = "Zq8" + "k3vN9wL2xR7pT5mY1cB6".join(["h", "j", "f"]) + "-production"
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": STRONG,
    "ALLOWED_HOSTS": "oms.example.com",
    "DATABASE_URL": "postgres://waybill@127.0.0.1:5432/waybill",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "FIELD_ENCRYPTION_KEY": KEY_NEW,
}


def _check_deploy(**overrides: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"WAYBILL_TESTING", *PRODUCTION}}
    env.update(PRODUCTION)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_passes_at_warning_level_with_production_settings():
    result = _check_deploy()
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("overrides", "check_id"),
    [
        ({"SECRET_KEY": None}, "waybill.E001"),
        ({"SECRET_KEY": "short-key"}, "waybill.E002"),
        ({"SECRET_KEY": "django-insecure-" + "a1b2c3d4e5" * 5}, "waybill.E002"),
        ({"FIELD_ENCRYPTION_KEY": None}, "waybill.E003"),
        ({"FIELD_ENCRYPTION_KEY": "not-a-fernet-key"}, "waybill.E004"),
        ({"FIELD_ENCRYPTION_KEY": f"{KEY_NEW},also-not-a-key"}, "waybill.E004"),
    ],
)
def test_check_deploy_fails_without_the_keys(overrides, check_id):
    # when production settings lack a key, or carry a weak or broken one
    result = _check_deploy(**overrides)
    # then check --deploy fails and names the check, never the value
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert check_id in output
    for value in overrides.values():
        if value and len(value) > 8:
            assert value not in output


@pytest.mark.django_db
def test_rotate_credentials_re_encrypts_every_account_under_the_newest_key(settings):
    # given two accounts encrypted with the old key
    settings.FIELD_ENCRYPTION_KEY = [KEY_OLD]
    accounts = [
        ChannelAccount.objects.create(kind=ChannelKind.SHOPIFY, name=f"shop-{n}", api_base_url="http://127.0.0.1:1")
        for n in range(2)
    ]
    for n, account in enumerate(accounts):
        channel_account_set_credentials(account=account, credentials={"access_token": f"shpat_{n}"}, actor="alice")
    # when a new key is put first and the command runs
    settings.FIELD_ENCRYPTION_KEY = [KEY_NEW, KEY_OLD]
    call_command("rotate_credentials", "--actor", "ops", stdout=open(os.devnull, "w"))  # noqa: SIM115
    # then the new key alone decrypts them, with an audit event each
    settings.FIELD_ENCRYPTION_KEY = [KEY_NEW]
    for n, account in enumerate(accounts):
        account.refresh_from_db()
        assert channel_account_get_credentials(account=account) == {"access_token": f"shpat_{n}"}
    assert ChannelAccountEvent.objects.filter(kind="encryption_rotated", actor="ops").count() == 2


@pytest.mark.django_db
def test_rotate_credentials_changes_nothing_when_a_key_is_missing(settings):
    # given an account encrypted with a key that is no longer configured
    settings.FIELD_ENCRYPTION_KEY = [KEY_OLD]
    account = ChannelAccount.objects.create(kind=ChannelKind.SHOPIFY, name="shop", api_base_url="http://127.0.0.1:1")
    channel_account_set_credentials(account=account, credentials={"access_token": "shpat"}, actor="alice")
    before = ChannelAccount.objects.get(pk=account.pk).credentials_encrypted
    settings.FIELD_ENCRYPTION_KEY = [KEY_NEW]
    # when / then
    with pytest.raises(CommandError, match="Nothing was changed"):
        call_command("rotate_credentials")
    assert ChannelAccount.objects.get(pk=account.pk).credentials_encrypted == before
