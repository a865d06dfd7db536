"""Found and healed per day, with the bar geometry of the console's inline SVG chart (no chart library;
nothing from a CDN): an account's drift on its reconciliation page, a node's count differences on its own."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDay


def daily_found_healed(window: QuerySet, *, day_field: str, healed: Q, since: datetime, days: int) -> list[dict]:
    """One point per day of the ``days`` days from ``since``: the rows of ``window`` found that day (by
    ``day_field``) and those of them ``healed`` matches, 0 on a day without any, and each point's bars scaled
    to the busiest day."""
    per_day = {
        row["day"].date(): row
        for row in window.annotate(day=TruncDay(day_field))
        .values("day")
        .annotate(found=Count("id"), healed=Count("id", filter=healed))
        .order_by("day")
    }
    trend = []
    for offset in range(days):
        day = (since + timedelta(days=offset)).date()
        row = per_day.get(day, {})
        trend.append({"day": day, "found": row.get("found", 0), "healed": row.get("healed", 0)})
    peak = max([t["found"] for t in trend] + [1])
    for index, point in enumerate(trend):
        point["x"] = index * 24 + 4
        point["found_h"] = round(80 * point["found"] / peak)
        point["healed_h"] = round(80 * point["healed"] / peak)
        point["found_y"] = 90 - point["found_h"]
        point["healed_y"] = 90 - point["healed_h"]
    return trend
