from __future__ import annotations

from django.contrib.auth.middleware import LoginRequiredMiddleware


class ConsoleLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Console views need a login (redirect to the login page); API views deny on their own terms.

    DRF views authenticate tokens and sessions themselves and answer 401/403, never a redirect,
    so they are left to their default permission classes (which also deny by default).
    """

    def process_view(self, request, view_func, view_args, view_kwargs):
        if getattr(view_func, "cls", None) is not None and hasattr(view_func.cls, "permission_classes"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
