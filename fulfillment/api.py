"""The node API's edge: node-token authentication, node scoping, and Idempotency-Key replay.

A WMS, 3PL or TMS authenticates with ``Authorization: Node <key>``; the key is looked up by its
sha256 and the caller sees only its own node's shipments. Staff signed in to the console (or using
a user token) may call the same endpoints with the fulfilment model permissions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import wraps

from cryptography.fernet import InvalidToken
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from config.kernel.crypto import get_fernet
from fulfillment.models import IdempotencyRecord, NodeApiToken, api_key_hash

KEYWORD = "Node"


@dataclass(frozen=True)
class NodePrincipal:
    """request.user for a node token: authenticated, no model permissions, one node."""

    token_id: int
    location_id: int
    location_code: str

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_active = True
    pk = None
    id = None

    def has_perm(self, perm, obj=None) -> bool:
        return False

    def get_username(self) -> str:
        return f"wms:{self.location_code}"

    @property
    def actor(self) -> str:
        return self.get_username()


class NodeTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() != KEYWORD.lower().encode():
            return None
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed("Authorization: Node <token>, one token and no spaces")
        try:
            key = auth[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("the node token must be ASCII") from None
        token = (
            NodeApiToken.objects.select_related("location")
            .filter(key_hash=api_key_hash(key), revoked_at__isnull=True)
            .first()
        )
        if token is None:
            raise exceptions.AuthenticationFailed("unknown or revoked node token")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            NodeApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return NodePrincipal(token.pk, token.location_id, token.location.code), token

    def authenticate_header(self, request) -> str:
        return KEYWORD


class NodeTokenScheme(OpenApiAuthenticationExtension):
    target_class = "fulfillment.api.NodeTokenAuthentication"
    name = "nodeToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Node <token>`: a token scoped to one fulfilment node (admin: Node API tokens).",
        }


def is_node(request) -> bool:
    return isinstance(request.user, NodePrincipal)


def request_actor(request):
    return request.user.actor if is_node(request) else request.user


class NodeOrStaffPermission(BasePermission):
    """A node token may use the node endpoints (its queryset is its own node). A user needs the model
    permission: reads ``view_perm``, writes ``change_perm`` (set on the view)."""

    def has_permission(self, request, view) -> bool:
        if is_node(request):
            return True
        user = request.user
        if not user or not user.is_authenticated:
            return False
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return user.has_perm(getattr(view, "view_perm", "fulfillment.view_shipment"))
        return user.has_perm(getattr(view, "change_perm", "fulfillment.change_shipment"))


def _scope(request) -> str:
    return f"node:{request.user.location_id}" if is_node(request) else f"user:{request.user.pk}"


# The stored answer's one key when it is encrypted.
SEALED = "sealed"


def idempotent(handler):
    """Wrap a POST handler: with an Idempotency-Key header the first successful answer is stored per
    (node or user, key) in the same transaction as the change; a replay returns it and changes nothing.
    The same key with a different request is refused (422). Errors are not stored: nothing changed."""

    @wraps(handler)
    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            return handler(self, request, *args, **kwargs)
        if len(key) > 255:
            raise exceptions.ValidationError({"Idempotency-Key": "at most 255 characters"})
        scope = _scope(request)
        digest = hashlib.sha256(
            b"%s %s\n%s" % (request.method.encode(), request.path.encode(), request.body)
        ).hexdigest()
        stored = IdempotencyRecord.objects.filter(scope=scope, key=key).first()
        if stored is not None:
            return _replay(stored, digest)
        try:
            with transaction.atomic():
                response = handler(self, request, *args, **kwargs)
                if 200 <= response.status_code < 300:
                    IdempotencyRecord.objects.create(
                        scope=scope,
                        key=key,
                        method=request.method,
                        path=request.path[:500],
                        request_hash=digest,
                        response_status=response.status_code,
                        response_body=_seal(response.data),
                        user=None if is_node(request) else request.user,
                    )
        except IntegrityError:
            # A concurrent request with the same key won: ours rolled back, answer with theirs.
            stored = IdempotencyRecord.objects.filter(scope=scope, key=key).first()
            if stored is None:
                raise
            return _replay(stored, digest)
        return response

    return wrapper


def _seal(data) -> dict:
    """An answer as stored: encrypted (FIELD_ENCRYPTION_KEY), since it may copy a buyer's name and address
    (a shipment's ship-to) and PII is kept in the clear only in the order tables."""
    plaintext = json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":")).encode()
    return {SEALED: get_fernet().encrypt(plaintext).decode("ascii")}


def _unseal(body):
    """The stored answer in the clear; None when no configured key decrypts it."""
    if not (isinstance(body, dict) and set(body) == {SEALED}):
        return body  # stored in the clear before answers were sealed
    try:
        return json.loads(get_fernet().decrypt(body[SEALED].encode("ascii")))
    except (InvalidToken, UnicodeEncodeError):
        return None


def _replay(stored: IdempotencyRecord, digest: str) -> Response:
    if stored.request_hash != digest:
        return Response(
            {
                "detail": "this Idempotency-Key was already used for a different request",
                "code": "idempotency_key_reused",
                "field": "Idempotency-Key",
            },
            status=422,
        )
    body = _unseal(stored.response_body)
    if body is None:
        return Response(
            {
                "detail": "the answer stored for this Idempotency-Key can no longer be read (the encryption key "
                "that sealed it was removed); the request was done: read the resource to see its state",
                "code": "idempotency_answer_unreadable",
                "field": "Idempotency-Key",
            },
            status=409,
        )
    return Response(body, status=stored.response_status, headers={"Idempotent-Replayed": "true"})
