"""Domain errors shared by every app's services. The edge turns them into 4xx or form errors."""

from __future__ import annotations


class DomainError(Exception):
    code = "domain_error"
    http_status = 400


class InvalidTransition(DomainError):
    code = "invalid_transition"
    http_status = 409

    def __init__(self, *, entity: str, from_status: str, to_status: str) -> None:
        # Plain values in the message (a TextChoices member's repr would show the enum's class name).
        self.from_status = str(getattr(from_status, "value", from_status))
        self.to_status = str(getattr(to_status, "value", to_status))
        super().__init__(f"{entity} cannot move from {self.from_status!r} to {self.to_status!r}")


class ActorRequired(DomainError):
    code = "actor_required"
