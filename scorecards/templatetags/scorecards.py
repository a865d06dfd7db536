"""Scorecard pieces other console pages place without importing scorecards: ``{% load scorecards %}``
then ``{% scorecard_tiles %}`` (one tile per account, for a dashboard, rendered in place) or
``{% scorecard_tiles_lazy %}`` (the same, fetched by HTMX after the page loads)."""

from __future__ import annotations

from django import template

from scorecards import selectors
from scorecards.charts import trend_svg
from scorecards.models import MetricState

register = template.Library()


@register.inclusion_tag("scorecards/_tiles.html", takes_context=True)
def scorecard_tiles(context):
    user = context.get("user") or getattr(context.get("request"), "user", None)
    allowed = bool(user and user.has_perm("scorecards.view_metricsnapshot"))
    return {"tiles": selectors.scorecard_tiles() if allowed else [], "allowed": allowed}


@register.inclusion_tag("scorecards/_tiles_lazy.html", takes_context=True)
def scorecard_tiles_lazy(context):
    """A placeholder the tiles replace once the page has loaded (HTMX): the page's own queries stay its own."""
    user = context.get("user") or getattr(context.get("request"), "user", None)
    return {"allowed": bool(user and user.has_perm("scorecards.view_metricsnapshot"))}


@register.simple_tag
def metric_trend(row):
    return trend_svg(row.definition, row.trend, last_day=row.day)


@register.filter
def pct(value, places: int = 2):
    if value is None or value == "":
        return "no data"
    return f"{float(value) * 100:.{int(places)}f}%"


@register.filter
def state_label(state) -> str:
    """A MetricState as words ("no data", "breach"), whatever the stored code."""
    try:
        return MetricState(state).label.lower()
    except ValueError:
        return str(state or "")


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None
