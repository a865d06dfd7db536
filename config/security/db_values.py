"""Aware datetimes reach PostgreSQL in UTC.

PostgreSQL refuses time-zone offsets beyond ±15:59 (``time zone displacement out of range``), while
ISO 8601 input may carry any offset (e.g. ``-17:01``). Such a value, sent as written, fails the
statement and, inside a transaction, every statement after it. Converted to UTC first it is the same
instant and always valid; one that has no UTC equivalent (year 1 minus an offset) is a DataError that
never reaches the server."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from psycopg.types.datetime import DatetimeDumper


class UtcDatetimeDumper(DatetimeDumper):
    def dump(self, obj: datetime):
        if obj.tzinfo is not None:
            try:
                obj = obj.astimezone(UTC)
            except OverflowError:
                raise psycopg.DataError(f"date and time {obj.isoformat()} is out of range") from None
        return super().dump(obj)


def register() -> None:
    psycopg.adapters.register_dumper(datetime, UtcDatetimeDumper)
