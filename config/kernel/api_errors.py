"""Domain errors become 4xx responses at the API edge (REST_FRAMEWORK's EXCEPTION_HANDLER)."""

from __future__ import annotations

import logging

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.kernel.errors import DomainError


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response({"detail": str(exc), "code": exc.code}, status=exc.http_status)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    # Safety nets: bad input never becomes a 500 (the serializers bound what they can first).
    if isinstance(exc, ObjectDoesNotExist):
        return Response({"detail": "no such record", "code": "not_found"}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, DataError):
        request = context.get("request")
        logging.getLogger("waybill.security").warning(
            "refused a value the database cannot store on %s %s: %s",
            getattr(request, "method", ""),
            getattr(request, "get_full_path", lambda: "")(),
            str(exc).splitlines()[0],
        )
        return Response(
            {"detail": "a value is out of range or contains characters that cannot be stored", "code": "bad_input"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    return drf_exception_handler(exc, context)
