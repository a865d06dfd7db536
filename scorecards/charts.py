"""Server-rendered SVG trend charts: the daily values with the threshold, warning and seller lines drawn.
No JavaScript, nothing from a CDN."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from scorecards.models import MetricDefinition, MetricSnapshot

WIDTH, HEIGHT, PAD = 560, 140, 28
SHORT = {"threshold": "limit", "warning": "warn", "seller line": "seller"}


def _scale(definition: MetricDefinition, values: list[Decimal]) -> tuple[Decimal, Decimal]:
    lines = [definition.threshold, definition.warning_line]
    if definition.seller_threshold is not None:
        lines.append(definition.seller_threshold)
    points = values + lines
    if definition.lower_is_better:
        top = max(points) * Decimal("1.25") or Decimal("0.01")
        return Decimal(0), top
    bottom = max(Decimal(0), min(points) - (1 - min(points)) * Decimal("0.5"))
    return bottom, Decimal(1)


def trend_svg(
    definition: MetricDefinition, snapshots: list[MetricSnapshot], days: int = 90, last_day: date | None = None
) -> SafeString:
    """The ``days`` ending on ``last_day`` (default: the last snapshot's day), each snapshot at its own day's
    place: a history shorter than the chart starts where it starts, not at the left edge."""
    values = [s.value for s in snapshots if s.value is not None]
    low, high = _scale(definition, values)
    span = (high - low) or Decimal(1)
    last = last_day or (snapshots[-1].day if snapshots else None)
    first = last - timedelta(days=days - 1) if last else None

    def y(value: Decimal) -> float:
        return round(float(PAD + (HEIGHT - 2 * PAD) * (1 - (value - low) / span)), 1)

    def x(index: int) -> float:
        return round(PAD + (WIDTH - 2 * PAD) * index / max(days - 1, 1), 1)

    points = []
    if first is not None:
        for s in snapshots:
            if s.value is not None and first <= s.day <= last:
                points.append(f"{x((s.day - first).days)},{y(s.value)}")
    lines = [("threshold", definition.threshold, "#c0392b", ""), ("warning", definition.warning_line, "#e67e22", "")]
    if definition.seller_threshold is not None:
        lines.append(("seller line", definition.seller_threshold, "#8e44ad", "4 3"))
    drawn = format_html_join(
        "",
        '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-dasharray="{}"><title>{} {}%</title></line>'
        '<text x="{}" y="{}" font-size="10" fill="{}">{} {}%</text>',
        (
            (
                PAD,
                WIDTH - PAD,
                y(v),
                y(v),
                color,
                dash,
                name,
                f"{v * 100:.2f}",
                WIDTH - PAD + 2,
                y(v) + 3,
                color,
                SHORT[name],
                f"{v * 100:.1f}",
            )
            for name, v, color, dash in lines
        ),
    )
    label = f"{definition.name}: {len(values)} days with data"
    return format_html(
        '<svg class="trend" role="img" aria-label="{}" viewBox="0 0 {} {}" width="100%" '
        'preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">'
        '<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#ccc"/>{}'
        '<polyline fill="none" stroke="#2c3e50" stroke-width="2" points="{}"/>'
        '<text x="{}" y="{}" font-size="10">{}</text><text x="{}" y="{}" font-size="10">{}</text></svg>',
        label,
        WIDTH + 40,
        HEIGHT,
        PAD,
        PAD,
        WIDTH - 2 * PAD,
        HEIGHT - 2 * PAD,
        drawn,
        " ".join(points),
        PAD,
        HEIGHT - 8,
        f"{first:%Y-%m-%d}" if first else "no data",
        WIDTH - PAD - 60,
        HEIGHT - 8,
        f"{last:%Y-%m-%d}" if last else "",
    )
