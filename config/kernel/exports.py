"""Streamed CSV exports of console lists: rows are written as the database cursor yields them, so a
million rows never sit in memory (a server-side cursor via QuerySet.iterator, one chunk at a time)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

CHUNK = 2000


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_cell(value) -> str:
    """A cell as text; a leading =, +, - or @ is quoted with ' so a spreadsheet never runs it as a formula."""
    if value is None:
        return ""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if text[:1] in ("=", "+", "-", "@") and not text[1:2].isdigit():
        return "'" + text
    return text


def csv_stream(*, filename: str, header: Sequence[str], rows: Iterable[Sequence]) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow([csv_cell(v) for v in row])

    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


def csv_export(*, filename: str, queryset: QuerySet, columns: Sequence[tuple[str, str]]) -> StreamingHttpResponse:
    """``queryset`` streamed as CSV, one column per (header, field) pair: the header names the column, the field
    is what ``values_list`` reads for it (``account__name``), in the queryset's own order."""
    rows = queryset.values_list(*(field for _, field in columns)).iterator(chunk_size=CHUNK)
    return csv_stream(filename=filename, header=[header for header, _ in columns], rows=rows)
