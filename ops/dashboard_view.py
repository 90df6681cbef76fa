"""The one-shot dashboard's data, materialised from topic records, and its renderers.

`dashboard_data` takes the records of `issues`, `alerts` and `rollups` (already read) and
the current time; the renderers turn the result into text (the CLI dashboard),
JSON, Markdown or a self-contained HTML page. Pure: no I/O.

- active exceptions: issues whose latest status is not resolved;
- total (24 h): events counted in the last 24 hours, from each issue's count updates
  (its latest count minus its count as of 24 hours ago);
- critical alerts: critical alerts that fired in the last hour and are not resolved;
- SLA status: the worst status over the services (docs/sla.md);
- top errors: the 10 issues with the most events;
- error trend: events per day over the last 7 days, from the same count updates.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ops.sla_view import sla_statuses
from ops.views import latest_alerts
from sla import SLAConfig

DAY_MS = 86_400_000
STATUS_RANK = {"healthy": 0, "warning": 1, "critical": 2}


def _counts_over_time(issue_records: Iterable[Any]) -> dict[str, list[tuple[int, int]]]:
    """issue id -> [(event time, count)] from every issue record, in time order."""
    series: dict[str, list[tuple[int, int]]] = {}
    for value in issue_records:
        if isinstance(value, dict) and "issue_id" in value and "count" in value:
            ts = int(value.get("last_seen") or value.get("ts") or 0)
            series.setdefault(value["issue_id"], []).append((ts, int(value["count"])))
    for points in series.values():
        points.sort()
    return series


def _count_at(points: list[tuple[int, int]], ts: int) -> int:
    """The issue's count as of `ts` (0 before its first record)."""
    count = 0
    for when, value in points:
        if when > ts:
            break
        count = max(count, value)
    return count


def dashboard_data(
    issue_records: list[Any],
    alert_records: list[Any],
    rollup_records: list[Any],
    sla: SLAConfig,
    now_ms: int,
) -> dict[str, Any]:
    """The dashboard as plain data (see the module docstring)."""
    latest: dict[str, dict[str, Any]] = {}
    for value in issue_records:
        if isinstance(value, dict) and "issue_id" in value:
            current = latest.get(value["issue_id"])
            if current is None or (value.get("updated_at") or 0) >= (
                current.get("updated_at") or 0
            ):
                latest[value["issue_id"]] = value
    series = _counts_over_time(issue_records)
    total_24h = sum(
        _count_at(points, now_ms) - _count_at(points, now_ms - DAY_MS) for points in series.values()
    )
    trend = []
    for day in range(6, -1, -1):
        end = now_ms - day * DAY_MS
        events = sum(_count_at(p, end) - _count_at(p, end - DAY_MS) for p in series.values())
        trend.append(
            {"day": datetime.fromtimestamp(end / 1000, UTC).date().isoformat(), "events": events}
        )
    alerts = latest_alerts(alert_records)
    critical = [
        a
        for a in alerts
        if a.get("severity") == "critical"
        and a.get("status") != "resolved"
        and int(a.get("first_seen") or a.get("ts") or 0) >= now_ms - 3_600_000
    ]
    statuses = sla_statuses(rollup_records, sla)
    services = {report.service: report.status for report, _ in statuses}
    worst = max(services.values(), key=lambda s: STATUS_RANK.get(s, 0), default="unknown")
    top = sorted(latest.values(), key=lambda i: (-int(i.get("count") or 0), i["issue_id"]))[:10]
    return {
        "generated_at": datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="seconds"),
        "active_exceptions": sum(1 for i in latest.values() if i.get("status") != "resolved"),
        "total_exceptions_24h": total_24h,
        "critical_alerts": len(critical),
        "sla_status": worst,
        "sla_by_service": services,
        "top_errors": [
            {
                "issue_id": i["issue_id"],
                "title": str(i.get("title", ""))[:200],
                "count": int(i.get("count") or 0),
                "status": i.get("status"),
                "first_seen": i.get("first_seen"),
                "last_seen": i.get("last_seen"),
                "services": list(i.get("services") or [])[:10],
            }
            for i in top
        ],
        "error_trend": trend,
    }


def format_text(data: dict[str, Any]) -> str:
    """The CLI dashboard."""
    lines = [
        f"[DASHBOARD] {data['generated_at']}",
        f"Active Exceptions: {data['active_exceptions']}",
        f"Total (24h): {data['total_exceptions_24h']}",
        f"Critical Alerts: {data['critical_alerts']}",
        f"SLA Status: {data['sla_status']}",
        "",
        "Top Errors:",
    ]
    for n, e in enumerate(data["top_errors"], 1):
        lines.append(f"  {n:>2}. [{e['count']:>6}] {e['status']:<9} {e['title'][:90]}")
    lines += ["", "7-day Trend:"]
    peak = max((d["events"] for d in data["error_trend"]), default=0) or 1
    for d in data["error_trend"]:
        bar = "#" * round(30 * d["events"] / peak)
        lines.append(f"  {d['day']} {d['events']:>7} {bar}")
    return "\n".join(lines)


def format_markdown(data: dict[str, Any]) -> str:
    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [
        f"# Dashboard ({data['generated_at']})",
        "",
        "| metric | value |",
        "|---|---|",
        f"| Active exceptions | {data['active_exceptions']} |",
        f"| Total (24h) | {data['total_exceptions_24h']} |",
        f"| Critical alerts | {data['critical_alerts']} |",
        f"| SLA status | {data['sla_status']} |",
        "",
        "## Top errors",
        "",
        "| count | status | issue |",
        "|---:|---|---|",
    ]
    lines += [f"| {e['count']} | {e['status']} | {cell(e['title'])} |" for e in data["top_errors"]]
    lines += ["", "## 7-day trend", "", "| day | events |", "|---|---:|"]
    lines += [f"| {d['day']} | {d['events']} |" for d in data["error_trend"]]
    return "\n".join(lines)


def format_html(data: dict[str, Any]) -> str:
    """A self-contained page (no scripts, no external assets); every string escaped."""
    esc = html.escape
    rows = "".join(
        f"<tr><td>{e['count']}</td><td>{esc(str(e['status']))}</td><td>{esc(e['title'])}</td></tr>"
        for e in data["top_errors"]
    )
    peak = max((d["events"] for d in data["error_trend"]), default=0) or 1
    bars = "".join(
        f'<rect x="{i * 60 + 10}" y="{110 - 100 * d["events"] / peak:.1f}" width="40" '
        f'height="{100 * d["events"] / peak:.1f}" fill="#c0392b"><title>{esc(d["day"])}: '
        f"{d['events']}</title></rect>"
        for i, d in enumerate(data["error_trend"])
    )
    status = esc(str(data["sla_status"]))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>prodmon dashboard</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;"
        "border-bottom:1px solid #ddd}.kpi{display:inline-block;margin-right:2em}</style>"
        f"</head><body><h1>prodmon dashboard</h1><p>{esc(data['generated_at'])}</p>"
        f"<div class='kpi'>Active exceptions<br><b>{data['active_exceptions']}</b></div>"
        f"<div class='kpi'>Total (24h)<br><b>{data['total_exceptions_24h']}</b></div>"
        f"<div class='kpi'>Critical alerts<br><b>{data['critical_alerts']}</b></div>"
        f"<div class='kpi'>SLA status<br><b>{status}</b></div>"
        "<h2>Top errors</h2><table><tr><th>count</th><th>status</th><th>issue</th></tr>"
        f"{rows}</table><h2>7-day trend</h2>"
        f"<svg width='440' height='120' role='img'>{bars}</svg></body></html>"
    )
