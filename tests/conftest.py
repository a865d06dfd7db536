from __future__ import annotations

import os

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from orders.roles import ADMIN, OPS_AGENT, OPS_MANAGER, VIEWER


def _user_in(role: str, username: str):
    user = get_user_model().objects.create_user(username=username, password="pw-not-used-1")
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def viewer(db):
    return _user_in(VIEWER, "viewer")


@pytest.fixture
def agent(db):
    return _user_in(OPS_AGENT, "agent")


@pytest.fixture
def manager(db):
    return _user_in(OPS_MANAGER, "manager")


@pytest.fixture
def admin_user(db):
    user = _user_in(ADMIN, "boss")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


@pytest.fixture
def api_client():
    return APIClient()


def pytest_configure(config):
    # A server's test database outlives the checkout that made it (another branch's migrations, or a flush
    # that re-seeded older data, stay in it): with DATABASE_URL set, every run builds it anew. The embedded
    # server's database lives under this checkout's var/, so it is reused between local runs.
    if os.environ.get("DATABASE_URL"):
        config.option.create_db = True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # A skipped concurrency test is a failure: the guarantees it proves must be proven every run.
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("concurrency") is not None:
        report.outcome = "failed"
        report.longrepr = f"concurrency test {item.nodeid} was skipped; it must run on every CI run"
    elif report.skipped and item.nodeid.startswith("tests/browser/"):
        # The console's browser tests run on every run too (chromium: apt-get install -y chromium).
        report.outcome = "failed"
        report.longrepr = f"browser test {item.nodeid} was skipped; it must run on every CI run"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Concurrency tests fork worker processes: run them before the first test that starts the live
    server (a thread that lives to the end of the session), so no fork copies a running thread. Both
    are transactional tests, which pytest-django has already put after the others."""
    forking = [item for item in items if item.get_closest_marker("concurrency") is not None]
    if not forking:
        return
    rest = [item for item in items if item.get_closest_marker("concurrency") is None]
    first_live = next(
        (n for n, item in enumerate(rest) if "live_server" in getattr(item, "fixturenames", ())), len(rest)
    )
    items[:] = rest[:first_live] + forking + rest[first_live:]


# --- background work (config.kernel.dispatch): every test starts with no pending markers, no open circuit ---


@pytest.fixture(autouse=True)
def _fresh_cache():
    from django.core.cache import cache

    cache.clear()


# --- mutation testing (tests/mutation, `make mutation`) ------------------------------------------------
@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    # Mutants run side by side each get a test database of their own (tests/mutation/slots.py).
    slots = int(os.environ.get("WAYBILL_TEST_DB_SLOTS", "0"))
    if slots > 1:
        from tests.mutation.slots import take_slot

        take_slot(slots)
