"""Who changes something: every service takes an ``actor``, a user or the name of a system actor such as
"sync:amazon-us", and records it on its audit row."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import models

from config.kernel.errors import ActorRequired

Actor = AbstractBaseUser | str


def actor_resolve(actor: Actor | None) -> tuple[str, AbstractBaseUser | None]:
    """(name, user) for an actor; a missing or blank actor is refused."""
    if actor is None:
        raise ActorRequired("an actor is required: a user or a named system actor such as 'sync:amazon-us'")
    if isinstance(actor, str):
        name = actor.strip()
        if not name:
            raise ActorRequired("an actor is required: the system actor name is blank")
        return name[:150], None
    if not getattr(actor, "is_authenticated", False):
        raise ActorRequired("an actor is required: an anonymous user cannot change orders")
    return actor.get_username(), actor


def audit_event_create(
    model: type[models.Model],
    *,
    kind: str,
    actor: Actor,
    reason: str = "",
    from_status: str = "",
    to_status: str = "",
    data: dict[str, Any] | None = None,
    **subject: Any,
) -> Any:
    """One audit row of an app's event model (kind, actor name and user, reason, status change, data) about
    ``subject`` (e.g. ``order=...``): the shape every app's event table shares."""
    name, user = actor_resolve(actor)
    return model.objects.create(
        **subject,
        kind=kind,
        actor=name,
        actor_user=user,
        reason=reason,
        from_status=from_status,
        to_status=to_status,
        data=data or {},
    )
