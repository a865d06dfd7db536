"""The report's chart: returned units per week and channel as an inline SVG (no script, nothing from a CDN)."""

from __future__ import annotations

from collections import defaultdict

from django.utils.html import escape

COLOURS = {"amazon": "#ff9900", "walmart": "#0071ce", "shopify": "#5e8e3e", "ebay": "#e53238", "tiktok": "#111111"}
WIDTH, HEIGHT, PAD = 720, 220, 32


def weekly_chart_svg(weekly: list[dict]) -> str:
    """Stacked bars: one per week, a segment per channel. Empty data gives a short note instead."""
    if not weekly:
        return '<p class="muted">No returns in this window.</p>'
    weeks = sorted({row["week"] for row in weekly})
    by_week: dict = defaultdict(dict)
    for row in weekly:
        by_week[row["week"]][row["channel"]] = row["returned"]
    channels = sorted({row["channel"] for row in weekly})
    peak = max(sum(by_week[w].values()) for w in weeks) or 1
    slot = (WIDTH - 2 * PAD) / len(weeks)
    bar = min(max(slot * 0.7, 2), 48)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT + 40}" role="img" '
        f'aria-label="Returned units per week and channel" style="max-width:100%;height:auto">',
        f'<line x1="{PAD}" y1="{HEIGHT}" x2="{WIDTH - PAD}" y2="{HEIGHT}" stroke="#888"/>',
        f'<text x="{PAD - 4}" y="{PAD}" text-anchor="end" font-size="10">{peak}</text>',
    ]
    for index, week in enumerate(weeks):
        x = PAD + index * slot + (slot - bar) / 2
        y = HEIGHT
        for channel in channels:
            units = by_week[week].get(channel, 0)
            if not units:
                continue
            h = (HEIGHT - PAD) * units / peak
            y -= h
            colour = COLOURS.get(channel, "#777")
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(channel)} week of {week:%Y-%m-%d}: {units}</title></rect>"
            )
        if len(weeks) <= 16 or index % max(len(weeks) // 8, 1) == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{HEIGHT + 14}" text-anchor="middle" font-size="10">{week:%m-%d}</text>'
            )
    legend_x = PAD
    for channel in channels:
        parts.append(
            f'<rect x="{legend_x}" y="{HEIGHT + 24}" width="10" height="10" fill="{COLOURS.get(channel, "#777")}"/>'
        )
        parts.append(f'<text x="{legend_x + 14}" y="{HEIGHT + 33}" font-size="11">{escape(channel)}</text>')
        legend_x += 90
    parts.append("</svg>")
    return "".join(parts)
