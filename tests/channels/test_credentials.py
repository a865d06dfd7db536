"""Channel credentials: encryption at rest, key rotation, and never showing a secret back."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse

from channels.crypto import CredentialsError, decrypt_json, encrypt_json, rotate_token
from channels.models import ChannelAccount, ChannelAccountEvent, ChannelKind
from channels.services import (
    InvalidCredentials,
    channel_account_get_credentials,
    channel_account_rotate_encryption,
    channel_account_set_credentials,
)

SECRET = "shpat_0123456789abcdef-very-secret"
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
KEY_C = Fernet.generate_key().decode()


def _account(name: str = "shopify-main") -> ChannelAccount:
    return ChannelAccount.objects.create(
        kind=ChannelKind.SHOPIFY, name=name, api_base_url="http://127.0.0.1:8701", api_version="2026-10"
    )


def test_encrypt_decrypt_round_trip(settings):
    # given
    settings.FIELD_ENCRYPTION_KEY = [KEY_A]
    credentials = {"access_token": SECRET, "webhook_secret": "whsec"}
    # when
    token = encrypt_json(credentials)
    # then
    assert SECRET not in token
    assert decrypt_json(token) == credentials


def test_round_trip_without_configured_key_uses_secret_key(settings):
    # given: local runs leave FIELD_ENCRYPTION_KEY empty
    settings.FIELD_ENCRYPTION_KEY = []
    # when
    token = encrypt_json({"access_token": SECRET})
    # then
    assert decrypt_json(token) == {"access_token": SECRET}


def test_rotation_old_key_still_decrypts_then_newest_alone(settings):
    # given: a token written with key A
    settings.FIELD_ENCRYPTION_KEY = [KEY_A]
    token = encrypt_json({"access_token": SECRET})
    # when: B is put first, A kept
    settings.FIELD_ENCRYPTION_KEY = [KEY_B, KEY_A]
    # then: A's token still decrypts
    assert decrypt_json(token) == {"access_token": SECRET}
    # when: the token is rotated and A is dropped
    rotated = rotate_token(token)
    settings.FIELD_ENCRYPTION_KEY = [KEY_B]
    # then: B alone decrypts it, and the old token no longer does
    assert decrypt_json(rotated) == {"access_token": SECRET}
    with pytest.raises(CredentialsError):
        decrypt_json(token)


def test_wrong_key_raises_credentials_error_without_leaking(settings):
    # given
    settings.FIELD_ENCRYPTION_KEY = [KEY_A]
    token = encrypt_json({"access_token": SECRET})
    settings.FIELD_ENCRYPTION_KEY = [KEY_C]
    # when
    with pytest.raises(CredentialsError) as excinfo:
        decrypt_json(token)
    # then: the message names the setting, never a key, the token or the secret
    message = str(excinfo.value)
    assert "FIELD_ENCRYPTION_KEY" in message
    for leaked in (SECRET, KEY_A, KEY_C, token):
        assert leaked not in message
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__suppress_context__


@pytest.mark.django_db
def test_set_and_get_credentials_records_an_event_without_values(settings):
    # given
    settings.FIELD_ENCRYPTION_KEY = [KEY_A]
    account = _account()
    # when
    channel_account_set_credentials(account=account, credentials={"access_token": SECRET}, actor="alice")
    # then
    account.refresh_from_db()
    assert account.credentials_rotated_at is not None
    assert SECRET not in account.credentials_encrypted
    assert SECRET not in repr(account) and SECRET not in str(account)
    assert channel_account_get_credentials(account=account) == {"access_token": SECRET}
    event = ChannelAccountEvent.objects.get(account=account)
    assert event.kind == "credentials_changed" and event.actor == "alice"
    assert event.data["keys_before"] == [] and event.data["keys_after"] == ["access_token"]
    assert SECRET not in str(event.data)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "credentials",
    [{}, {"access_token": ""}, {"access_token": "   "}, {"access_token": 123}, ["access_token"]],
)
def test_set_credentials_rejects_bad_shapes(settings, credentials):
    # given
    settings.FIELD_ENCRYPTION_KEY = [KEY_A]
    account = _account()
    # when / then
    with pytest.raises(InvalidCredentials):
        channel_account_set_credentials(account=account, credentials=credentials, actor="alice")
    account.refresh_from_db()
    assert account.credentials_encrypted == ""
    assert not ChannelAccountEvent.objects.exists()


@pytest.mark.django_db
def test_rotate_encryption_re_encrypts_every_account(settings):
    # given: two accounts encrypted with key A
    settings.FIELD_ENCRYPTION_KEY = [KEY_A]
    first, second, empty = _account("shopify-main"), _account("shopify-outlet"), _account("shopify-empty")
    for account in (first, second):
        channel_account_set_credentials(account=account, credentials={"access_token": SECRET}, actor="alice")
    settings.FIELD_ENCRYPTION_KEY = [KEY_B, KEY_A]
    # when
    count = channel_account_rotate_encryption(actor="ops")
    # then: key B alone decrypts both; the account without credentials is untouched
    assert count == 2
    settings.FIELD_ENCRYPTION_KEY = [KEY_B]
    for account in (first, second):
        account.refresh_from_db()
        assert channel_account_get_credentials(account=account) == {"access_token": SECRET}
    empty.refresh_from_db()
    assert empty.credentials_encrypted == ""
    assert ChannelAccountEvent.objects.filter(kind="encryption_rotated").count() == 2


@pytest.mark.django_db
def test_admin_change_page_never_shows_the_secret(client, settings):
    # given
    settings.FIELD_ENCRYPTION_KEY = [KEY_A]
    account = _account()
    channel_account_set_credentials(account=account, credentials={"access_token": SECRET}, actor="alice")
    account.refresh_from_db()
    admin_user = User.objects.create_superuser("root", "root@example.com", "pw-unused")
    client.force_login(admin_user)
    # when
    response = client.get(reverse("admin:channels_channelaccount_change", args=[account.pk]))
    # then
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="new_credentials"' in html
    assert SECRET not in html
    assert account.credentials_encrypted not in html


@pytest.mark.django_db
def test_admin_saves_new_credentials_through_the_service(client, settings):
    # given
    settings.FIELD_ENCRYPTION_KEY = [KEY_A]
    account = _account()
    admin_user = User.objects.create_superuser("root", "root@example.com", "pw-unused")
    client.force_login(admin_user)
    url = reverse("admin:channels_channelaccount_change", args=[account.pk])
    form = {
        "name": account.name,
        "kind": account.kind,
        "is_enabled": "on",
        "api_base_url": account.api_base_url,
        "api_version": account.api_version,
        "marketplace_ids": "[]",
        "seller_id": "",
        "new_credentials": f'{{"access_token": "{SECRET}"}}',
        "handling_time_days": "1",
        "cutoff_time": "",
        "timezone": "UTC",
        "buffer_policy": "none",
        "buffer_value": "0",
        "sync_interval_seconds": "60",
        "sync_cursor_0": "",
        "sync_cursor_1": "",
        "buyer_cancel_policy": "review",
        "pii_retention_days": "30",
    }
    # when
    response = client.post(url, form)
    # then
    assert response.status_code == 302, response.content.decode()[:2000]
    account.refresh_from_db()
    assert channel_account_get_credentials(account=account) == {"access_token": SECRET}
    assert account.buyer_cancel_policy == "review"
    assert ChannelAccountEvent.objects.get(account=account).actor == "root"


@pytest.mark.django_db
def test_admin_invalid_credentials_are_not_echoed_back(client, settings):
    # given
    settings.FIELD_ENCRYPTION_KEY = [KEY_A]
    account = _account()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw-unused"))
    url = reverse("admin:channels_channelaccount_change", args=[account.pk])
    # when: malformed JSON containing the secret
    response = client.post(
        url,
        {
            "name": account.name,
            "kind": account.kind,
            "api_base_url": account.api_base_url,
            "marketplace_ids": "[]",
            "new_credentials": f'{{"access_token": "{SECRET}"',
            "handling_time_days": "1",
            "timezone": "UTC",
            "buffer_policy": "none",
            "buffer_value": "0",
            "sync_interval_seconds": "60",
        },
    )
    # then: the form comes back with an error and without the typed value
    assert response.status_code == 200
    html = response.content.decode()
    assert "Not valid JSON." in html
    assert SECRET not in html


@pytest.mark.django_db
def test_non_admin_staff_gets_403_on_channel_account_admin(client):
    # given: staff with every channels model permission but not in the Admin group
    staff = User.objects.create_user("clerk", "clerk@example.com", "pw-unused", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="channels"))
    client.force_login(staff)
    # when
    response = client.get(reverse("admin:channels_channelaccount_changelist"))
    # then
    assert response.status_code == 403


@pytest.mark.django_db
def test_admin_group_member_can_open_channel_account_admin(client):
    # given
    staff = User.objects.create_user("ops", "ops@example.com", "pw-unused", is_staff=True)
    staff.groups.add(Group.objects.get(name="Admin"))
    client.force_login(staff)
    # when
    response = client.get(reverse("admin:channels_channelaccount_changelist"))
    # then
    assert response.status_code == 200
