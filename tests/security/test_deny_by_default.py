"""Deny by default: every URL pattern and router route names its permission, and without one nothing is
served. The walk fails when a new view is added without an explicit permission (ASVS 4.1.1, 4.1.3, 4.1.5)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.permissions import AllowAny

from config.kernel.console import ConsoleView

pytestmark = pytest.mark.django_db

# URL name -> why it may answer without a model permission.
PUBLIC = {
    "login": "the login page itself",
    "channel-webhook": "channels sign every call (HMAC over the body), checked before anything is stored",
    "tracking-webhook": "the carrier feed signs every call (TRACKING_WEBHOOK_SECRET)",
}
SIGNED_IN_ONLY = {
    None: "the bare / redirects to the order list (which needs its permission)",
    "logout": "logging out needs no permission",
    "api-root": "lists the API's route names only (DRF's root view), to signed-in users",
    "api-schema": "the OpenAPI schema, to signed-in users",
    "api-docs": "the API docs page, to signed-in users",
}


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def _concrete(route: str) -> str | None:
    if "format" in route or "(?P<url>" in route or "<path:content_type_id>" in route:
        return None
    path = route.replace("^", "").replace("$", "")
    path = re.sub(r"\(\?P<\w+>[^)]*\)", "1", path)
    path = re.sub(r"<int:\w+>|<path:\w+>|<str:\w+>|<slug:\w+>|<\w+>", "1", path)
    path = path.replace("\\.", ".").replace("/?", "/")
    return "/" + path


ROUTES = [(route, entry) for route, entry in _walk(get_resolver().url_patterns)]


def _kind(route: str, entry: URLPattern) -> str:
    callback = entry.callback
    if route.startswith("admin/"):
        return "admin"
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view_class is not None and hasattr(view_class, "permission_classes"):
        return "api"
    if view_class is not None and issubclass(view_class, ConsoleView):
        return "console"
    return "other"


@pytest.mark.parametrize(("route", "entry"), ROUTES, ids=[r for r, _ in ROUTES])
def test_every_route_names_its_permission(route, entry):
    callback = entry.callback
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    kind = _kind(route, entry)
    if entry.name in PUBLIC or entry.name in SIGNED_IN_ONLY:
        return
    if kind == "api":
        classes = list(view_class.permission_classes)
        assert classes, f"{route}: an API view with no permission class"
        assert AllowAny not in classes, f"{route}: AllowAny is never used"
    elif kind == "console":
        view = view_class(**getattr(callback, "view_initkwargs", {}))
        assert view.get_permission_required(), f"{route}: a console view must name its permission"
    elif kind == "admin":
        # Admin views are wrapped by admin_site.admin_view (staff + the model permission): the walk below
        # proves none answers to a signed-in user who is not staff.
        return
    else:
        # RedirectViews inside the admin (<id>/ -> <id>/change/) only redirect.
        assert view_class is not None and view_class.__name__ == "RedirectView", (
            f"{route} ({callback.__module__}.{getattr(callback, '__name__', callback)}) names no permission: "
            "make it a ConsoleView with permission_required, or an API view, or add it to PUBLIC with the reason"
        )


@pytest.fixture
def nobody_user(db):
    """Signed in, but in no role: must be refused everywhere."""
    return get_user_model().objects.create_user(username="nobody-in-particular", password="irrelevant-pw-123")


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "no-role"])
def test_without_a_permission_nothing_is_served(client, nobody_user, signed_in):
    if signed_in:
        client.force_login(nobody_user)
    served = []
    for route, entry in ROUTES:
        path = _concrete(route)
        if path is None or entry.name in PUBLIC:
            continue
        if signed_in and entry.name in SIGNED_IN_ONLY:
            continue
        for method in ("get", "post"):
            response = getattr(client, method)(path, HTTP_ACCEPT="text/html")
            if response.status_code == 302:
                location = response["Location"]
                if location.startswith(("/login/", "/admin/login/")) or entry.name is None or "/change/" in location:
                    continue
            if response.status_code in (401, 403, 404, 405, 406):
                continue
            if entry.name == "logout" and response.status_code in (200, 302):
                continue
            served.append(f"{method.upper()} {path} -> {response.status_code}")
    assert served == []
