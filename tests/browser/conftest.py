"""Browser tests of the ops console: Playwright drives Debian's chromium (/usr/bin/chromium, installed with
`apt-get install -y chromium`; Playwright never downloads a browser) against pytest-django's live server.
Screenshots are kept under var/screenshots/ as test artifacts. A missing chromium fails, never skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from orders.roles import OPS_MANAGER

CHROMIUM = Path(os.environ.get("WAYBILL_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
VIEWPORT = {"width": 1366, "height": 768}
PASSWORD = "browser-test-pw-1"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (the browser tests never skip)")
    # Playwright's sync API keeps an asyncio loop in this thread while the browser is open; the ORM calls the
    # tests make between browser steps are still synchronous (Django's guard would refuse them otherwise).
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            yield launched
            launched.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture
def ops_manager(transactional_db):
    user = get_user_model().objects.create_user(username="opsmanager", password=PASSWORD)
    user.groups.add(Group.objects.get(name=OPS_MANAGER))
    return user


@pytest.fixture
def page(browser, live_server, ops_manager, request):
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.goto(f"{live_server.url}/login/")
    tab.get_by_label("Username").fill(ops_manager.username)
    tab.get_by_label("Password").fill(PASSWORD)
    tab.get_by_role("button", name="Log in").click()
    tab.wait_for_url(f"{live_server.url}/")
    yield tab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def shot(tab, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def page_width(tab) -> int:
    return tab.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
