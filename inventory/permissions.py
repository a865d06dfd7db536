"""Action endpoints name the model permission they need (the default class infers it from the method)."""

from __future__ import annotations

from rest_framework.permissions import BasePermission


def permission(perm: str) -> type[BasePermission]:
    class HasPermission(BasePermission):
        def has_permission(self, request, view) -> bool:
            return bool(request.user and request.user.is_authenticated and request.user.has_perm(perm))

    HasPermission.__name__ = f"Has_{perm.replace('.', '_')}"
    return HasPermission
