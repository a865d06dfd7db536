"""403s are logged as one line with who and where, never with a traceback (ASVS 7.1, 7.4)."""

from __future__ import annotations

import logging


class OneLineForbidden(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) != 403:
            return True
        request = getattr(record, "request", None)
        user = getattr(request, "user", None)
        who = getattr(user, "get_username", lambda: "")() if user is not None else ""
        address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
        record.msg = "Forbidden (403): %s %s user=%s address=%s"
        record.args = (
            getattr(request, "method", ""),
            getattr(request, "path", ""),
            who or "anonymous",
            address,
        )
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True
