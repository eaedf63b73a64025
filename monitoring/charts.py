"""Server-side SVG charts of scores over time (no JavaScript library, no CDN)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from monitoring.scales import Band

BAND_FILL = {"minimal": "#e5f4ea", "none": "#e5f4ea", "mild": "#e5f4ea", "low": "#e5f4ea",
             "moderate": "#fff3dc", "low-medium": "#fff3dc", "medium": "#fff3dc",
             "moderately_severe": "#fde7e5", "severe": "#fde7e5", "high": "#fde7e5"}


@dataclass(frozen=True)
class Marker:
    """A vertical mark on the chart (e.g. a dose given), with its label."""

    at: datetime
    label: str


def score_chart(points: Sequence[tuple[datetime, int, str]], bands: Sequence[Band], max_total: int,
                *, start: datetime, end: datetime, markers: Sequence[Marker] = (),
                title: str = "", width: int = 1000, height: int = 250) -> Markup:
    """An SVG line chart of totals over time, with the bands shaded and markers drawn."""
    left, right, top, bottom = 44, 10, 10, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    span = max((end - start).total_seconds(), 3600.0)
    y_max = max(max_total if max_total <= 24 else min(max_total, max([p[1] for p in points] + [24]) + 4), 1)

    def x(at: datetime) -> float:
        return left + plot_w * max(0.0, min(1.0, (at - start).total_seconds() / span))

    def y(value: float) -> float:
        return top + plot_h * (1 - min(value, y_max) / y_max)

    # Scaled uniformly (the default "meet"): stretched to the card's width, text and dots
    # would be drawn wide and the dots as ellipses.
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
             f'aria-label="{escape(title)}">']
    for band in bands:
        if band.low > y_max:
            continue
        y_top, y_bottom = y(min(band.high + 1, y_max)), y(band.low)
        parts.append(f'<rect x="{left}" y="{y_top:.1f}" width="{plot_w}" height="{max(y_bottom - y_top, 0):.1f}" '
                     f'fill="{BAND_FILL.get(band.code, "#f4f6f8")}"><title>{escape(band.label)}</title></rect>')
        parts.append(f'<text x="{left - 4}" y="{y(band.low) - 2:.1f}" class="tick" text-anchor="end">{band.low}</text>')
    hours = span / 3600
    step = 1 if hours <= 12 else 4 if hours <= 48 else 12 if hours <= 24 * 7 else 24
    tick = start.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    while tick < end:
        if tick.hour % step == 0:
            parts.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top}" y2="{top + plot_h}" class="grid"/>')
            parts.append(f'<text x="{x(tick):.1f}" y="{height - 8}" class="tick" text-anchor="middle">'
                         f'{tick.strftime("%H:%M") if tick.hour else tick.strftime("%d %b")}</text>')
        tick += timedelta(hours=1)
    for marker in markers:
        parts.append(f'<line x1="{x(marker.at):.1f}" x2="{x(marker.at):.1f}" y1="{top}" y2="{top + plot_h}" '
                     f'class="marker"><title>{escape(marker.label)}</title></line>')
        parts.append(f'<text x="{x(marker.at) + 3:.1f}" y="{top + 14}" class="marker-label">'
                     f'{escape(marker.label.split(" ")[0])}</text>')
    # Axes before the scores: a dot on an axis (a total of 0) stays whole.
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" class="axis"/>')
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" class="axis"/>')
    if points:
        line = " ".join(f"{x(at):.1f},{y(total):.1f}" for at, total, _ in points)
        parts.append(f'<polyline points="{line}" class="line"/>')
        for at, total, band in points:
            parts.append(f'<circle cx="{x(at):.1f}" cy="{y(total):.1f}" r="6" class="dot band-{escape(band)}">'
                         f'<title>{at.strftime("%d %b %H:%M")}: {total} ({escape(band)})</title></circle>')
    else:
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" class="tick">'
                     'No scores yet</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
