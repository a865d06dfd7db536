"""Login throttling and lockout, idle expiry, sessions ended on logout and password change, password rules,
and the API's 401 throttle (ASVS V2, V3)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.test import Client

from config.security.sessions import LAST_SEEN

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery-staple-9"


@pytest.fixture
def alice(db):
    user = get_user_model().objects.create_user(username="alice", password=PASSWORD, is_staff=True)
    return user


@pytest.mark.parametrize("login_url", ["/login/", "/admin/login/"])
def test_twenty_wrong_passwords_lock_the_account_and_the_right_one_is_then_refused(alice, login_url):
    client = Client(REMOTE_ADDR="203.0.113.7")
    # when the password is guessed wrong again and again
    answers = [client.post(login_url, {"username": "alice", "password": f"guess-{n}"}).status_code for n in range(20)]
    # then after the limit the login is locked (429), and the right password does not get in now
    assert 429 in answers
    assert answers.index(429) <= 5
    right = client.post(login_url, {"username": "alice", "password": PASSWORD})
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_lockout_by_username_holds_from_another_address(alice):
    for n in range(5):
        Client(REMOTE_ADDR=f"198.51.100.{n}").post("/login/", {"username": "alice", "password": f"nope-{n}"})
    response = Client(REMOTE_ADDR="198.51.100.99").post("/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429


def test_one_wrong_password_does_not_lock_and_the_right_one_logs_in(alice):
    client = Client(REMOTE_ADDR="203.0.113.8")
    assert client.post("/login/", {"username": "alice", "password": "typo"}).status_code == 200
    response = client.post("/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_an_idle_session_ends(alice, settings):
    settings.WAYBILL_SESSION_IDLE_MINUTES = 30
    client = Client()
    client.force_login(alice)
    assert client.get("/orders/").status_code in (200, 403)
    # given the last request was 31 minutes ago
    session = client.session
    session[LAST_SEEN] = int(time.time()) - 31 * 60
    session.save()
    # when the user comes back
    response = client.get("/orders/")
    # then they are sent to log in again
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_an_active_session_stays(alice, settings):
    settings.WAYBILL_SESSION_IDLE_MINUTES = 30
    client = Client()
    client.force_login(alice)
    session = client.session
    session[LAST_SEEN] = int(time.time()) - 29 * 60
    session.save()
    assert client.get("/orders/").status_code != 302
    assert client.session[LAST_SEEN] >= int(time.time()) - 5


def test_logout_ends_the_users_other_sessions(alice):
    laptop, phone = Client(), Client()
    laptop.force_login(alice)
    phone.force_login(alice)
    assert Session.objects.count() == 2
    # when the user logs out on the laptop
    laptop.post("/logout/")
    # then the phone's session is gone too
    assert phone.get("/orders/").status_code == 302
    assert Session.objects.count() == 0


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(alice):
    laptop, phone = Client(), Client()
    laptop.force_login(alice)
    phone.force_login(alice)
    response = laptop.post(
        "/admin/password_change/",
        {
            "old_password": PASSWORD,
            "new_password1": "a-much-longer-new-secret-7",
            "new_password2": "a-much-longer-new-secret-7",
        },
    )
    assert response.status_code == 302, response.content[:500]
    assert laptop.get("/admin/").status_code == 200
    assert phone.get("/orders/").status_code == 302


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short1!", "too short"),
        ("password12345", "too common"),
        ("123456789012345", "entirely numeric"),
    ],
)
def test_password_validators_refuse_weak_passwords(alice, password, why):
    with pytest.raises(ValidationError) as excinfo:
        validate_password(password, user=alice)
    assert any(why.split()[-1] in message for message in excinfo.value.messages), excinfo.value.messages


def test_the_api_throttles_an_address_that_keeps_failing_authentication(api_client, settings):
    settings.WAYBILL_API_AUTH_FAILURE_LIMIT = 5
    cache.delete("security:api-auth-failures:127.0.0.1")
    try:
        api_client.credentials(HTTP_AUTHORIZATION="Bearer wbt_guess")
        answers = [api_client.get("/api/v1/orders/").status_code for _ in range(8)]
        assert answers[:5] == [401] * 5
        assert answers[5:] == [429] * 3
        # a node token guess from the same address is throttled as well
        api_client.credentials(HTTP_AUTHORIZATION="Node guess")
        assert api_client.get("/api/v1/fulfillment/shipments/").status_code == 429
    finally:
        cache.delete("security:api-auth-failures:127.0.0.1")


def test_behind_a_trusted_proxy_each_client_is_throttled_apart(api_client, settings):
    # given a load balancer at 10.0.0.5 in front of two integrators, one of which keeps guessing
    settings.WAYBILL_API_AUTH_FAILURE_LIMIT = 3
    settings.WAYBILL_TRUSTED_PROXIES = ["10.0.0.0/24"]
    keys = ("security:api-auth-failures:203.0.113.7", "security:api-auth-failures:198.51.100.9")
    cache.delete_many(keys)
    try:
        api_client.credentials(HTTP_AUTHORIZATION="Bearer wbt_guess")
        guesser = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "203.0.113.7"}
        answers = [api_client.get("/api/v1/orders/", **guesser).status_code for _ in range(4)]
        # then the guesser is refused after three failures
        assert answers == [401, 401, 401, 429]
        # and the other integrator behind the same proxy is not
        other = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "198.51.100.9"}
        assert api_client.get("/api/v1/orders/", **other).status_code == 401
        # and a forged left-most entry does not move the guesser to a fresh address
        forged = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "192.0.2.1, 203.0.113.7"}
        assert api_client.get("/api/v1/orders/", **forged).status_code == 429
        # and without a trusted proxy the header is ignored: the caller's own address counts
        spoof = {"REMOTE_ADDR": "203.0.113.7", "HTTP_X_FORWARDED_FOR": "198.51.100.200"}
        assert api_client.get("/api/v1/orders/", **spoof).status_code == 429
    finally:
        cache.delete_many(keys)


def test_an_invalid_trusted_proxy_setting_fails_at_start_with_its_name():
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=django_settings.BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "WAYBILL_TRUSTED_PROXIES": "lb1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "WAYBILL_TRUSTED_PROXIES: 'lb1' is not an IP address or network" in result.stderr
