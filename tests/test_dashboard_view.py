"""Seed 000's dashboard from topic records: counts, 24 h total, trend, renderers."""

from __future__ import annotations

import orjson

from ops.dashboard_view import dashboard_data, format_html, format_markdown, format_text
from sla import SLAConfig

NOW = 1_795_320_000_000
DAY = 86_400_000


def issue(issue_id: str, count: int, last_seen: int, status: str = "active", **kw) -> dict:
    return {
        "issue_id": issue_id,
        "type": kw.get("type", "count"),
        "title": kw.get("title", f"Error {issue_id}"),
        "status": status,
        "count": count,
        "first_seen": NOW - 10 * DAY,
        "last_seen": last_seen,
        "updated_at": last_seen,
        "services": ["checkout"],
    }


def test_dashboard_numbers_follow_the_issue_history():
    records = [
        issue("a", 100, NOW - 3 * DAY),  # 100 events, three days ago
        issue("a", 130, NOW - 2 * 3_600_000),  # +30 in the last 24 h
        issue("b", 5, NOW - 2 * DAY, status="resolved"),
        issue("c", 7, NOW - 60_000, title="<script>alert(1)</script> | pipe"),
    ]
    alerts = [
        {
            "alert_id": "x",
            "seq": 1,
            "severity": "critical",
            "status": "firing",
            "first_seen": NOW - 600_000,
            "ts": NOW - 600_000,
        },
        {
            "alert_id": "y",
            "seq": 2,
            "severity": "critical",
            "status": "resolved",
            "first_seen": NOW - 600_000,
            "ts": NOW,
        },
        {
            "alert_id": "z",
            "seq": 1,
            "severity": "high",
            "status": "firing",
            "first_seen": NOW - 600_000,
            "ts": NOW,
        },
    ]
    data = dashboard_data(records, alerts, [], SLAConfig(), NOW)
    assert data["active_exceptions"] == 2  # a and c; b is resolved
    assert data["total_exceptions_24h"] == 30 + 7
    assert data["critical_alerts"] == 1
    assert [e["issue_id"] for e in data["top_errors"]] == ["a", "c", "b"]
    assert sum(d["events"] for d in data["error_trend"]) == 30 + 100 + 5 + 7
    assert data["error_trend"][-1]["events"] == 37
    text = format_text(data)
    assert "Active Exceptions: 2" in text and "Total (24h): 37" in text
    page = format_html(data)
    assert "<script>alert(1)" not in page and "&lt;script&gt;" in page
    assert "\\| pipe" in format_markdown(data)
    orjson.dumps(data)  # JSON-able
