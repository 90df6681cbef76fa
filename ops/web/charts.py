"""Server-side SVG charts: no script, no external asset, every label escaped.

Colours are SVG presentation attributes (not `style`), so the pages' Content-Security-Policy
needs no 'unsafe-inline'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from sinks.chart_png import nice_ceiling

MAX_MARKERS = 240  # a circle per point up to this many points per line


def _esc(text: object) -> str:
    return escape(str(text), quote=True)


def _time_label(ms: int, span_ms: int) -> str:
    when = datetime.fromtimestamp(ms / 1000, UTC)
    if span_ms > 2 * 86_400_000:
        return when.strftime("%m-%d %H:%M")
    return when.strftime("%H:%M:%S" if span_ms <= 600_000 else "%H:%M")


def _fmt(value: float, unit: str) -> str:
    if value >= 100 or value == int(value):
        return f"{value:.0f}{unit}"
    return f"{value:.1f}{unit}"


def line_chart(
    lines: Sequence[tuple[str, str, Sequence[tuple[int, float | None]]]],
    *,
    title: str,
    unit: str = " ms",
    width: int = 720,
    height: int = 220,
) -> str:
    """An SVG line chart of `lines` = [(label, colour, [(epoch ms, value or None)])].

    A None value breaks its line. The `data-points` attribute counts the plotted points.
    """
    left, right, top, bottom = 56, 12, 26, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [(t, v) for _, _, pts in lines for t, v in pts if v is not None and math.isfinite(v)]
    head = (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_esc(title)}" '
        f'data-points="{len(values)}">'
        f'<text x="{left}" y="16" font-size="13" font-weight="bold" fill="#222">'
        f"{_esc(title)}</text>"
    )
    if not values:
        return (
            head + f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" '
            'font-size="12" fill="#777">no data yet</text></svg>'
        )
    t0 = min(t for t, _ in values)
    t1 = max(t for t, _ in values)
    span = max(t1 - t0, 1)
    y_max = nice_ceiling(max(v for _, v in values) * 1.05)

    def x(t: int) -> float:
        return left + plot_w * ((t - t0) / span if t1 > t0 else 0.5)

    def y(v: float) -> float:
        return top + plot_h * (1 - v / y_max)

    parts = [head]
    for i in range(5):  # horizontal grid and value labels
        level = y_max * i / 4
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(level):.1f}" y2="{y(level):.1f}" '
            'stroke="#e3e3e3"/>'
            f'<text x="{left - 6}" y="{y(level) + 4:.1f}" text-anchor="end" font-size="10" '
            f'fill="#555">{_esc(_fmt(level, unit.strip()))}</text>'
        )
    ticks = 5 if t1 > t0 else 1
    for i in range(ticks):  # time labels
        t = t0 + span * i // max(ticks - 1, 1) if t1 > t0 else t0
        anchor = "start" if i == 0 and ticks > 1 else "end" if i == ticks - 1 else "middle"
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - 8}" text-anchor="{anchor}" font-size="10" '
            f'fill="#555">{_esc(_time_label(t, span))}</text>'
        )
    legend_x = width - right
    for label, colour, pts in reversed(lines):
        legend_x -= 8 + 7 * len(label) + 14
        parts.append(
            f'<rect x="{legend_x}" y="7" width="10" height="10" fill="{_esc(colour)}"/>'
            f'<text x="{legend_x + 14}" y="16" font-size="11" fill="#333">{_esc(label)}</text>'
        )
        segments: list[list[str]] = [[]]
        markers = []
        plotted = [(t, v) for t, v in pts if v is None or math.isfinite(v)]
        for t, v in plotted:
            if v is None:
                segments.append([])
                continue
            segments[-1].append(f"{x(t):.1f},{y(v):.1f}")
            if len(plotted) <= MAX_MARKERS:
                when = _time_label(t, 0)
                markers.append(
                    f'<circle class="pt" cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.2" '
                    f'fill="{_esc(colour)}"><title>{_esc(label)} {_esc(_fmt(v, unit))} at '
                    f"{_esc(when)} UTC</title></circle>"
                )
        for segment in segments:
            if segment:
                parts.append(
                    f'<polyline class="line" fill="none" stroke="{_esc(colour)}" '
                    f'stroke-width="1.6" points="{" ".join(segment)}"/>'
                )
        parts += markers
    parts.append("</svg>")
    return "".join(parts)


def bars(
    items: Sequence[tuple[str, float]],
    *,
    width: int = 84,
    height: int = 22,
    colour: str = "#c0392b",
    title: str = "",
    labels: bool = False,
) -> str:
    """A small bar chart (sparkline) of [(label, value)], one bar per item; with `labels`,
    each bar's value above it and the end of its label below it."""
    peak = max((v for _, v in items), default=0) or 1
    gap = 2
    bar_w = max((width - gap * (len(items) - 1)) / max(len(items), 1), 1)
    top, bottom = (14, 14) if labels else (0, 0)
    plot_h = height - top - bottom
    parts = [
        f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_esc(title)}" '
        f'data-points="{len(items)}">'
    ]
    for i, (label, value) in enumerate(items):
        h = max(plot_h * value / peak, 1 if value else 0)
        x = i * (bar_w + gap)
        parts.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
            f'height="{h:.1f}" fill="{_esc(colour)}"><title>{_esc(label)}: '
            f"{_esc(_fmt(value, ''))}</title></rect>"
        )
        if labels:
            middle = x + bar_w / 2
            parts.append(
                f'<text x="{middle:.1f}" y="{top + plot_h - h - 3:.1f}" text-anchor="middle" '
                f'font-size="10" fill="#333">{_esc(_fmt(value, ""))}</text>'
                f'<text x="{middle:.1f}" y="{height - 3}" text-anchor="middle" font-size="10" '
                f'fill="#555">{_esc(str(label)[-5:])}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


# --- the chart of an alert's metric around its incident -------------------------------------

INCIDENT_COLOUR = "#c0392b"
LIMIT_COLOUR = "#555"


def metric_value(point: object, metric: str) -> float | None:
    """One dashboard point's value of a rule/anomaly metric (detection/rules.py names), or None
    when the rollup view does not keep it (p90, p99.9, mean)."""
    count = getattr(point, "count", 0) or 0
    if metric in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
        return getattr(point, metric, None)
    if metric == "error_rate_pct":
        return 100.0 * getattr(point, "errors", 0) / count if count else 0.0
    if metric == "client_error_rate_pct":
        return 100.0 * getattr(point, "client_errors", 0) / count if count else 0.0
    if metric == "throughput_rps":
        span = (getattr(point, "end", 0) - getattr(point, "start", 0)) / 1000
        return count / span if span > 0 else None
    if metric == "count":
        return float(count)
    return None


def incident_chart(
    values: Sequence[tuple[int, float | None]],
    *,
    title: str,
    unit: str,
    limit: float | None,
    limit_label: str,
    started: int | None,
    ended: int | None,
    width: int = 480,
    height: int = 160,
) -> str:
    """A small SVG chart of one metric around an incident: the metric's line, the
    threshold or baseline as a dashed horizontal line (`class="limit"`), and the incident
    span shaded (`class="incident"`). Pure; every label escaped."""
    left, right, top, bottom = 52, 10, 24, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    shown = [(t, v) for t, v in values if v is not None and math.isfinite(v)]
    head = (
        f'<svg class="chart incident" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{_esc(title)}" data-points="{len(shown)}">'
        f'<text x="{left}" y="15" font-size="12" font-weight="bold" fill="#222">'
        f"{_esc(title)}</text>"
    )
    if not shown:
        return (
            head + f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" '
            'font-size="12" fill="#777">no rollups for this period</text></svg>'
        )
    times = [t for t, _ in shown] + [t for t in (started, ended) if t]
    t0, t1 = min(times), max(times)
    span = max(t1 - t0, 1)
    peak = max(v for _, v in shown)
    y_max = nice_ceiling(max(peak, limit or 0.0) * 1.1)

    def x(t: int) -> float:
        return left + plot_w * (t - t0) / span

    def y(v: float) -> float:
        return top + plot_h * (1 - max(v, 0.0) / y_max)

    parts = [head]
    if started:
        x0, x1 = x(started), x(ended or t1)
        parts.append(
            f'<rect class="incident" x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 1):.1f}" '
            f'height="{plot_h}" fill="{INCIDENT_COLOUR}" fill-opacity="0.08"/>'
        )
    for i in range(3):
        v = y_max * i / 2
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            'stroke="#eee"/>'
            f'<text x="{left - 5}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="10" '
            f'fill="#555">{_esc(_fmt(v, unit))}</text>'
        )
    for t, anchor in ((t0, "start"), (t1, "end")):
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - 7}" text-anchor="{anchor}" font-size="10" '
            f'fill="#555">{_esc(_time_label(t, span))} UTC</text>'
        )
    if limit is not None and math.isfinite(limit):
        parts.append(
            f'<line class="limit" x1="{left}" x2="{width - right}" y1="{y(limit):.1f}" '
            f'y2="{y(limit):.1f}" stroke="{LIMIT_COLOUR}" stroke-width="1.2" '
            f'stroke-dasharray="5 3"><title>{_esc(limit_label)}</title></line>'
            f'<text x="{width - right}" y="{y(limit) - 4:.1f}" text-anchor="end" '
            f'font-size="10" fill="{LIMIT_COLOUR}">{_esc(limit_label)}</text>'
        )
    points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in shown)
    parts.append(
        f'<polyline class="line" fill="none" stroke="{INCIDENT_COLOUR}" stroke-width="1.6" '
        f'points="{points}"/>'
    )
    parts.append("</svg>")
    return "".join(parts)
