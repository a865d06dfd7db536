"""Bad input gets a clear 4xx, never a 500 (ASVS 5.1, 13.1).

``BadInputMiddleware`` (early in MIDDLEWARE) refuses what no view can handle: NUL bytes in the path or
query, a declared body over the size limit, JSON nested deeper than the limit. It also turns what
escapes a console view as "no such row" or "the database refused this value" into 404 / 400.
``ApiAuthThrottleMiddleware`` refuses API and webhook calls from an address that failed authentication
too often (401s counted per address in the cache): token guessing is slowed to a crawl (ASVS 2.2.1).
The address is the client's, not a proxy's: ``client_address`` reads X-Forwarded-For only through the
proxies listed in WAYBILL_TRUSTED_PROXIES, so integrators behind one load balancer are counted apart
(the login lockout uses the same address).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ObjectDoesNotExist
from django.db import DataError
from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger("waybill.security")

JSON_TYPES = ("application/json", "application/merge-patch+json", "application/problem+json")


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """True when the JSON text nests arrays/objects deeper than ``limit`` (strings are skipped)."""
    depth = 0
    in_string = False
    escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
            continue
        if byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def _refuse(request: HttpRequest, status: int, message: str, field: str = "") -> HttpResponse:
    body = {"detail": message, "code": "bad_input"}
    if field:
        body["field"] = field
    if request.path.startswith(("/api/", "/webhooks/")) or "json" in request.headers.get("Accept", ""):
        return JsonResponse(body, status=status)
    return HttpResponse(f"{message}\n", status=status, content_type="text/plain; charset=utf-8")


class BadInputMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            "\x00" in request.path
            or "%00" in request.META.get("QUERY_STRING", "")
            or "\x00" in request.META.get("QUERY_STRING", "")
        ):
            return _refuse(request, 400, "the address contains a NUL character, which no field accepts")
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            declared = int(length)
        except ValueError:
            return _refuse(request, 400, "Content-Length is not a number")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and declared > limit:
            return _refuse(request, 413, f"the request body is larger than {limit} bytes")
        content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if declared and content_type in JSON_TYPES:
            depth = settings.WAYBILL_JSON_MAX_DEPTH
            if json_depth_exceeds(request.body, depth):
                return _refuse(request, 400, f"the JSON body is nested deeper than {depth} levels")
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, ObjectDoesNotExist):
            return _refuse(request, 404, "no such record (it may have been removed, or the id is wrong)")
        if isinstance(exception, DataError):
            log.warning(
                "refused a value the database cannot store on %s %s: %s",
                request.method,
                request.path,
                str(exception).splitlines()[0],
            )
            return _refuse(request, 400, "a value is out of range or contains characters that cannot be stored")
        if isinstance(exception, RecursionError | json.JSONDecodeError):
            return _refuse(request, 400, "the request body could not be read")
        return None


@lru_cache(maxsize=8)
def _trusted_networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def _is_trusted(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request: HttpRequest) -> str:
    """The address of the client that sent ``request``.

    REMOTE_ADDR, unless it is one of WAYBILL_TRUSTED_PROXIES (addresses or networks): then the
    X-Forwarded-For chain is read from the right, skipping the trusted proxies, and the first other
    address is the client (entries the client wrote itself are further left and never reached).
    """
    remote = request.META.get("REMOTE_ADDR", "") or ""
    networks = _trusted_networks(tuple(settings.WAYBILL_TRUSTED_PROXIES))
    if not networks or not _is_trusted(remote, networks):
        return remote
    chain = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    for address in reversed(chain):
        if not _is_trusted(address, networks):
            return address
    return chain[0] if chain else remote


class ApiAuthThrottleMiddleware:
    """After WAYBILL_API_AUTH_FAILURE_LIMIT 401s from one address within WAYBILL_API_AUTH_COOLOFF_SECONDS,
    that address gets 429 on /api/ and /webhooks/ until the window passes."""

    PREFIXES = ("/api/", "/webhooks/")

    def __init__(self, get_response):
        self.get_response = get_response

    @staticmethod
    def _key(request: HttpRequest) -> str:
        return f"security:api-auth-failures:{client_address(request)}"

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(self.PREFIXES):
            return self.get_response(request)
        limit = settings.WAYBILL_API_AUTH_FAILURE_LIMIT
        window = settings.WAYBILL_API_AUTH_COOLOFF_SECONDS
        key = self._key(request)
        try:
            failures = cache.get(key, 0)
        except Exception:  # the cache (Redis) is down: fail open, a webhook must still be stored
            log.warning("API authentication throttle skipped: the cache is unreachable", exc_info=True)
            return self.get_response(request)
        if limit and failures >= limit:
            response = _refuse(
                request, 429, f"too many failed authentications from this address: try again in {window} seconds"
            )
            response["Retry-After"] = str(window)
            return response
        response = self.get_response(request)
        if response.status_code == 401:
            try:
                self._count_failure(key, limit, window)
            except Exception:
                log.warning("API authentication failure not counted: the cache is unreachable", exc_info=True)
        return response

    @staticmethod
    def _count_failure(key: str, limit: int, window: int) -> None:
        if cache.add(key, 1, timeout=window):
            return
        try:
            count = cache.incr(key)
        except ValueError:
            cache.set(key, 1, timeout=window)
            count = 1
        if count == limit:
            log.warning("API authentication locked for %s after %d failures", key.rsplit(":", 1)[-1], limit)
