"""The orders app's domain errors (the base, DomainError, is the kernel's: config/kernel/errors.py)."""

from __future__ import annotations

from config.kernel.errors import DomainError


class HoldError(DomainError):
    code = "hold_error"
    http_status = 409
