"""The REST API's plumbing every app shares: deny by default (ModelPermissionsWithView), keyset paging with no
COUNT(*) (CursorPage). Domain errors become 4xx answers in config.kernel.api_errors
(a module of its own: DRF imports these classes while rest_framework.views is still loading)."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination
from rest_framework.permissions import DjangoModelPermissions


class ModelPermissionsWithView(DjangoModelPermissions):
    """Like DjangoModelPermissions, but GET/HEAD/OPTIONS need the `view_` permission too: API views need a
    login and the model permission for the method, reads included."""

    perms_map = {
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "POST": ["%(app_label)s.add_%(model_name)s"],
        "PUT": ["%(app_label)s.change_%(model_name)s"],
        "PATCH": ["%(app_label)s.change_%(model_name)s"],
        "DELETE": ["%(app_label)s.delete_%(model_name)s"],
    }


class CursorPage(CursorPagination):
    """The default paging: newest first by primary key, 50 a page (each list may name its own ordering)."""

    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"
    ordering = ("-id",)
