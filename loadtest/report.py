"""Render a load-test report (the dict `run_loadtest` returns) as one self-contained HTML page.

Hand-written inline SVG line charts (no JavaScript, no CDN), a summary table. Every string
that comes from the report is escaped.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
WIDTH, HEIGHT, PAD_L, PAD_R, PAD_T, PAD_B = 720, 260, 64, 150, 16, 32


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return escape(str(v))
    if isinstance(v, float):
        return escape(f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}")
    if isinstance(v, int):
        return escape(f"{v:,}")
    return escape(str(v))


def svg_chart(title: str, xs: list[float], lines: dict[str, list[Any]], unit: str = "") -> str:
    """A line chart of `lines` (name -> y values aligned with `xs`) as an inline <svg>."""
    points = {
        name: [
            (x, y)
            for x, y in zip(xs, ys, strict=False)
            if _num(x) is not None and _num(y) is not None
        ]
        for name, ys in lines.items()
    }
    all_x = [x for pts in points.values() for x, _ in pts]
    all_y = [y for pts in points.values() for _, y in pts]
    x0, x1 = (min(all_x), max(all_x)) if all_x else (0.0, 1.0)
    y1 = max(all_y) if all_y else 1.0
    x1 = x1 if x1 > x0 else x0 + 1.0
    y1 = y1 if y1 > 0 else 1.0
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def px(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return PAD_T + plot_h - y / y1 * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{PAD_L}" y="{PAD_T}" width="{plot_w}" height="{plot_h}" fill="#fafafa" '
        'stroke="#999"/>',
    ]
    for i in range(5):
        yv = y1 * i / 4
        yy = py(yv)
        parts.append(
            f'<line x1="{PAD_L}" x2="{PAD_L + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>'
            f'<text x="{PAD_L - 4}" y="{yy + 4:.1f}" font-size="10" text-anchor="end">'
            f"{_fmt(yv)}</text>"
        )
    for i in range(5):
        xv = x0 + (x1 - x0) * i / 4
        parts.append(
            f'<text x="{px(xv):.1f}" y="{HEIGHT - 12}" font-size="10" text-anchor="middle">'
            f"{_fmt(round(xv, 1))} s</text>"
        )
    for n, (name, pts) in enumerate(points.items()):
        color = COLORS[n % len(COLORS)]
        if len(pts) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>'
            )
        elif pts:
            x, y = pts[0]
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2" fill="{color}"/>')
        ly = PAD_T + 14 * n + 10
        parts.append(
            f'<rect x="{WIDTH - PAD_R + 10}" y="{ly - 8}" width="10" height="3" fill="{color}"/>'
            f'<text x="{WIDTH - PAD_R + 24}" y="{ly - 3}" font-size="11">{escape(str(name))}'
            f"{escape(' (' + unit + ')' if unit else '')}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _detection_rows(dets: dict) -> list[tuple[str, Any]]:
    """Summary rows for the per-incident detection delays (none for an older report)."""
    summary = dets.get("summary")
    if not summary:
        return []
    pcts = " / ".join(
        "-" if summary.get(k) is None else f"{summary[k]:.2f}"
        for k in ("p50_s", "p95_s", "p99_s", "max_s")
    )
    share = (dets.get("window_end_to_notification") or {}).get("p99_s")
    return [
        ("incidents detected", f"{summary.get('detected')} / {summary.get('total')}"),
        ("detection delay p50 / p95 / p99 / max (s)", pcts),
        (
            "budget: window + 2 s (s)",
            f"{dets.get('budget_s')} (window {dets.get('window_s')} s, "
            f"allowed lateness {dets.get('allowed_lateness_s')} s)",
        ),
        ("p99 within budget (every incident detected)", summary.get("within_budget")),
        ("window end to notification p99 (s)", share),
    ]


INCIDENT_COLUMNS = (
    ("start (s)", "start_s"),
    ("service", "service"),
    ("endpoint", "endpoint"),
    ("kind", "kind"),
    ("detected", "detected"),
    ("delay (s)", "delay_s"),
    ("window end to notification (s)", "window_end_to_notification_s"),
    ("rule", "rule"),
    ("key", "key"),
)


def _incident_table(dets: dict) -> str:
    """One row per scripted incident: when, where, what, and how fast it was notified."""
    rows = dets.get("incidents") or []
    if not rows:
        return ""
    head = "".join(f"<th>{escape(title)}</th>" for title, _ in INCIDENT_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(row.get(key))}</td>" for _, key in INCIDENT_COLUMNS) + "</tr>"
        for row in rows
    )
    return f"<h2>Detection per incident</h2><table><tr>{head}</tr>{body}</table>"


def render_html(report: dict) -> str:
    """The whole page as a string."""
    p = report.get("params", {})
    thr = report.get("throughput", {})
    det = report.get("detection", {})
    mem = report.get("memory", {})
    inc = report.get("incident", {})
    summary = [
        ("target rate (events/s)", p.get("rate")),
        ("duration (s)", p.get("duration_s")),
        ("fleet producer processes", p.get("processes")),
        ("pipeline processes", p.get("pipeline_processes")),
        ("partitions", p.get("partitions")),
        ("fleet sent (events/s)", thr.get("fleet_events_per_s")),
        ("pipeline sustained (events/s, ingest)", thr.get("pipeline_events_per_s")),
        ("raw consume+decode ceiling (events/s)", thr.get("raw_ceiling_events_per_s")),
        ("ratio of ceiling", thr.get("ratio_of_ceiling")),
        ("pipeline CPU (s)", thr.get("pipeline_cpu_s")),
        ("events per pipeline CPU second (capacity per core)", thr.get("events_per_cpu_s")),
        (
            "incident",
            f"{inc.get('kind')} on {inc.get('service')}{inc.get('endpoint')} "
            f"at +{inc.get('start_s')} s for {inc.get('duration_s')} s",
        ),
        ("incident detected", det.get("detected")),
        ("detection delay (s)", det.get("delay_s")),
        ("first detecting rule", (det.get("first") or {}).get("rule")),
        *_detection_rows(report.get("detections") or {}),
        ("notifications received", report.get("notifications")),
        ("active series", mem.get("active_series")),
        ("peak RSS per active series (bytes)", mem.get("rss_peak_per_series_bytes")),
        ("drain after load (s)", report.get("drain_s")),
    ]
    stage_rows = "".join(
        f"<tr><th>{escape(str(name))}</th><td>{_fmt(s.get('messages_per_s'))}</td>"
        f"<td>{_fmt(s.get('events_per_s'))}</td><td>{_fmt(s.get('final_lag'))}</td></tr>"
        for name, s in report.get("stages", {}).items()
    )
    mem_rows = "".join(
        f"<tr><th>pid {escape(str(pid))}</th><td>{_fmt(v)}</td>"
        f"<td>{_fmt((mem.get('rss_idle_bytes') or {}).get(pid))}</td></tr>"
        for pid, v in (mem.get("rss_peak_bytes") or {}).items()
    )
    series = report.get("series", {})
    xs = series.get("t", [])
    rate_xs = xs[1:]
    rates = dict(series.get("messages_per_s", {}))
    if series.get("raw_produced_per_s"):
        rates = {"events.raw produced": series["raw_produced_per_s"], **rates}
    rss = {
        f"pid {pid}": [(v or 0) / 2**20 for v in vs]
        for pid, vs in series.get("rss_bytes", {}).items()
    }
    charts = [
        svg_chart("consumer lag (messages) per group", xs, series.get("lag", {}), "msgs"),
        svg_chart("messages/s per group (committed offsets)", rate_xs, rates, "msg/s"),
        svg_chart("RSS per pipeline process", xs, rss, "MiB"),
    ]
    titles = ("Consumer lag over time", "Throughput over time", "Memory over time")
    chart_html = "".join(f"<h2>{escape(t)}</h2>{c}" for t, c in zip(titles, charts, strict=True))
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>prodmon load test</title>'
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}</style></head><body>"
        "<h1>prodmon load test</h1>"
        f"<h2>Summary</h2>{_table(summary)}"
        f"{_incident_table(report.get('detections') or {})}"
        "<h2>Per stage</h2><table><tr><th>stage</th><th>messages/s sustained</th>"
        f"<th>events/s</th><th>final lag</th></tr>{stage_rows}</table>"
        "<h2>Memory</h2><table><tr><th>process</th><th>peak RSS (bytes)</th>"
        f"<th>idle RSS (bytes)</th></tr>{mem_rows}</table>"
        f"{chart_html}</body></html>"
    )


def detection_line(dets: dict) -> str:
    """One line: incidents detected, delay percentiles, and the p99 against its budget."""
    s = dets.get("summary") or {}

    def fmt(key: str) -> str:
        return "-" if s.get(key) is None else f"{s[key]:.2f} s"

    verdict = "within" if s.get("within_budget") else "NOT within"
    return (
        f"detection: {s.get('detected')}/{s.get('total')} incidents detected; delay "
        f"p50 {fmt('p50_s')}, p95 {fmt('p95_s')}, p99 {fmt('p99_s')}, max {fmt('max_s')}; "
        f"p99 {verdict} budget {dets.get('budget_s')} s (window {dets.get('window_s')} s + 2 s, "
        f"allowed lateness {dets.get('allowed_lateness_s')} s)"
    )


def write_html(report: dict, path: str | Path) -> Path:
    """Write `render_html(report)` to `path`; returns the path."""
    path = Path(path)
    path.write_text(render_html(report), encoding="utf-8")
    return path
