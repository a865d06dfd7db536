"""TikTok access tokens over real HTTP against the sandbox: renewed a margin before they expire and when
TikTok answers 105002, the rotated refresh token stored at once, a renewal another worker made adopted."""

from __future__ import annotations

import time

import httpx
import pytest

from channels.connectors import tokens
from channels.connectors.base import ChannelError
from channels.models import ChannelAccountEvent, SyncStatus
from channels.services import channel_account_get_credentials, channel_account_set_credentials, connector_for
from channels.sync import sync_account_run
from orders.models import Order
from tests.channels.conftest import TIKTOK_CREDENTIALS

pytestmark = pytest.mark.django_db


def _stored(account) -> dict:
    account.refresh_from_db()
    return channel_account_get_credentials(account=account)


def _renewable(account, **extra):
    credentials = {**TIKTOK_CREDENTIALS, "refresh_token": "TTR_test", **extra}
    channel_account_set_credentials(account=account, credentials=credentials, actor="test")
    return credentials


def _awaiting(sandbox, count=1):
    return sandbox.state.generate(count, status="unshipped", fulfilled_by="MERCHANT", unknown_sku=False)


def test_a_token_about_to_expire_is_renewed_before_use_and_stored(tiktok_sandbox, tiktok_account, skus):
    # given: the stored token expires in a minute, inside the renewal margin
    _renewable(tiktok_account, access_token_expires_at=str(int(time.time()) + 60))
    _awaiting(tiktok_sandbox, 3)
    # when
    run = sync_account_run(account_id=tiktok_account.pk)
    # then: renewed first, never refused, and both new tokens are stored
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert (tiktok_sandbox.refreshes, tiktok_sandbox.expired_refusals) == (1, 0)
    stored = _stored(tiktok_account)
    assert stored["access_token"] == tiktok_sandbox.access_token != "TTP_test"
    assert stored["refresh_token"] not in ("", "TTR_test")
    assert int(stored["access_token_expires_at"]) > time.time() + 6 * 86400
    assert stored["app_secret"] == "as-test" and stored["shop_cipher"] == "ROW_test"
    event = ChannelAccountEvent.objects.get(account=tiktok_account, kind="credentials_refreshed")
    assert event.actor == "system:tiktok" and "TTR" not in str(event.data)
    assert Order.objects.filter(account_id=tiktok_account.pk).count() == 3


def test_an_expired_token_refused_with_105002_is_renewed_and_the_call_retried(tiktok_sandbox, tiktok_account, skus):
    # given: a token TikTok expired early (its stored expiry is far off)
    _renewable(tiktok_account, access_token_expires_at=str(int(time.time()) + 30 * 86400))
    _awaiting(tiktok_sandbox, 2)
    httpx.post(f"{tiktok_sandbox.base_url}/_sandbox/tiktok/tokens", json={"expire": True})
    # when
    run = sync_account_run(account_id=tiktok_account.pk)
    # then
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert (tiktok_sandbox.expired_refusals, tiktok_sandbox.refreshes) == (1, 1)
    assert _stored(tiktok_account)["access_token"] == tiktok_sandbox.access_token


def test_the_rotated_refresh_token_is_the_one_spent_next_time(tiktok_sandbox, tiktok_account, skus):
    # given: one renewal already happened (the sandbox no longer takes TTR_test)
    _renewable(tiktok_account)
    _awaiting(tiktok_sandbox)
    httpx.post(f"{tiktok_sandbox.base_url}/_sandbox/tiktok/tokens", json={"expire": True})
    sync_account_run(account_id=tiktok_account.pk)
    tokens.forget(("tiktok", tiktok_account.pk, "ak-test"))  # another process: nothing cached
    # when: the new token expires too
    httpx.post(f"{tiktok_sandbox.base_url}/_sandbox/tiktok/tokens", json={"expire": True})
    tiktok_account.refresh_from_db()
    connector_for(tiktok_account).get_order(next(iter(tiktok_sandbox.state.orders)))
    # then
    assert tiktok_sandbox.refreshes == 2


def test_a_worker_with_stale_credentials_adopts_the_token_another_worker_renewed(tiktok_sandbox, tiktok_account):
    # given: two workers built from the same credentials; the first renews after a 105002
    _renewable(tiktok_account)
    (made,) = _awaiting(tiktok_sandbox)
    first, second = connector_for(tiktok_account), connector_for(tiktok_account)
    httpx.post(f"{tiktok_sandbox.base_url}/_sandbox/tiktok/tokens", json={"expire": True})
    first.get_order(made.order_id)
    tokens.forget(("tiktok", tiktok_account.pk, "ak-test"))  # the second runs in another process
    # when: the second is refused and renews
    second.get_order(made.order_id)
    # then: it found the stored grant fresh and spent no refresh token
    assert (tiktok_sandbox.refreshes, tiktok_sandbox.expired_refusals) == (1, 2)
    assert ChannelAccountEvent.objects.filter(account=tiktok_account, kind="credentials_refreshed").count() == 1


def test_without_a_refresh_token_an_expired_token_fails_asking_for_reauthorisation(tiktok_sandbox, tiktok_account):
    # given: credentials from before renewal existed
    (made,) = _awaiting(tiktok_sandbox)
    httpx.post(f"{tiktok_sandbox.base_url}/_sandbox/tiktok/tokens", json={"expire": True})
    # then
    with pytest.raises(ChannelError, match="no refresh_token: re-authorise") as caught:
        connector_for(tiktok_account).get_order(made.order_id)
    assert caught.value.retryable is False


def test_a_refused_refresh_token_fails_with_tiktoks_answer(tiktok_sandbox, tiktok_account):
    # given: a refresh token the sandbox never issued
    _renewable(tiktok_account, refresh_token="TTR_forged")
    (made,) = _awaiting(tiktok_sandbox)
    httpx.post(f"{tiktok_sandbox.base_url}/_sandbox/tiktok/tokens", json={"expire": True})
    # then
    with pytest.raises(ChannelError, match="token refresh refused") as caught:
        connector_for(tiktok_account).get_order(made.order_id)
    assert caught.value.detail["code"] == 36004005 and caught.value.detail["data"] is None
    assert _stored(tiktok_account)["refresh_token"] == "TTR_forged"


def test_the_token_refresh_call_is_refused_without_the_documented_grant_type(tiktok_sandbox):
    # when
    reply = httpx.get(
        f"{tiktok_sandbox.base_url}/api/v2/token/refresh",
        params={"app_key": "ak-test", "app_secret": "as-test", "refresh_token": "TTR_test", "grant_type": "x"},
    )
    # then
    assert reply.status_code == 400
    body = reply.json()
    assert body["code"] == 36009004 and body["data"] is None and "grant_type" in body["message"]
    assert tiktok_sandbox.refreshes == 0
