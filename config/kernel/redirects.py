"""Where a console action goes back to: a `next` from the request, only when it stays on this site."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme


def safe_next(request: HttpRequest, fallback: str) -> str:
    """The POST (or GET) ``next`` when it is a URL of this site, else ``fallback``.

    Off-site targets (``https://evil.example/``, ``//evil.example``, ``/\\evil.example``, other schemes)
    are ignored, never followed (ASVS 5.1.5)."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback
