"""Bounds of the database columns that bad input must be checked against before it reaches SQL."""

from __future__ import annotations

# PostgreSQL ``integer`` (Django IntegerField / PositiveIntegerField): quantities and counts.
INT32_MAX = 2_147_483_647
# PostgreSQL ``bigint`` (the BigAutoField primary keys and the foreign keys to them): ids.
ID_MAX = 2**63 - 1
