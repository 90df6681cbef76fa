"""Views materialised from topic records, and their text renderings (no I/O here)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pipeline.topic_reader import TopicRecord


def latest_issues(
    records: Iterable[TopicRecord], status: str | None = None, service: str | None = None
) -> list[dict[str, Any]]:
    """The newest record per issue id (each `issues` record carries the whole issue), by count."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        value = record.value
        if isinstance(value, dict) and record.key is not None:
            current = latest.get(record.key)
            if current is None or _order(value) >= _order(current):
                latest[record.key] = value
    issues = [
        issue
        for issue in latest.values()
        if (status is None or issue.get("status") == status)
        and (service is None or service in (issue.get("services") or []))
    ]
    issues.sort(key=lambda i: (-int(i.get("count") or 0), str(i.get("issue_id"))))
    return issues


def _order(issue: dict[str, Any]) -> tuple[int, int]:
    return int(issue.get("count") or 0), int(issue.get("updated_at") or 0)


def _when(ms: Any) -> str:
    if not isinstance(ms, int | float):
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _clip(text: Any, width: int) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_issues(issues: list[dict[str, Any]]) -> str:
    if not issues:
        return "no issues"
    lines = [
        f"{'ISSUE':<12} {'STATUS':<9} {'COUNT':>6} {'SEVERITY':<8} {'LAST SEEN':<19} "
        f"{'SERVICES':<22} TITLE"
    ]
    for issue in issues:
        lines.append(
            f"{str(issue.get('issue_id'))[:12]:<12} {issue.get('status', '-'):<9} "
            f"{issue.get('count', 0):>6} {issue.get('severity') or '-':<8} "
            f"{_when(issue.get('last_seen')):<19} "
            f"{_clip(','.join(issue.get('services') or []), 22):<22} "
            f"{_clip(issue.get('title'), 70)}"
        )
    return "\n".join(lines)


def format_dead_letters(letters: list[dict[str, Any]]) -> str:
    if not letters:
        return "no dead letters"
    lines = [f"{'SOURCE':<28} {'FIELD':<22} REASON"]
    for letter in letters:
        source = letter.get("source") or {}
        where = f"{source.get('topic')}[{source.get('partition')}]@{source.get('offset')}"
        if source.get("index") is not None:
            where += f"#{source['index']}"
        lines.append(
            f"{_clip(where, 28):<28} {_clip(letter.get('field'), 22):<22} "
            f"{_clip(letter.get('reason'), 80)}"
        )
    return "\n".join(lines)


def format_rollups(rollups: Iterable[dict[str, Any]], resolution: str = "1m") -> str:
    """A latency table: one row per series and window of `resolution`, newest windows last."""
    rows = sorted(
        (r for r in rollups if r.get("resolution") == resolution),
        key=lambda r: (r["series"], r["start"]),
    )
    if not rows:
        return f"(no {resolution} rollups yet)"
    lines = [
        f"{'series':<24} {'window':<8} {'count':>6} {'5xx':>4} {'4xx':>4} "
        f"{'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"
    ]
    for r in rows:
        lines.append(
            f"{r['series'][:24]:<24} {_clock(r['start']):<8} {r['count']:>6} {r['errors']:>4} "
            f"{r['client_errors']:>4} {r['p50_ms']:>6.1f}ms {r['p95_ms']:>6.1f}ms "
            f"{r['p99_ms']:>6.1f}ms {r['max_ms']:>6.1f}ms"
        )
    return "\n".join(lines)


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def latest_alerts(values: Iterable[Any], status: str | None = None) -> list[dict[str, Any]]:
    """The newest transition per alert (highest seq), most severe and newest first."""
    latest: dict[str, dict[str, Any]] = {}
    for value in values:
        if not isinstance(value, dict) or "alert_id" not in value:
            continue
        current = latest.get(value["alert_id"])
        if current is None or int(value.get("seq") or 0) >= int(current.get("seq") or 0):
            latest[value["alert_id"]] = value
    # An alert without a severity (None) ranks with the unknown ones, last.
    ranks: dict[str | None, int] = {
        "critical": 0,
        "high": 1,
        "warning": 2,
        "medium": 3,
        "low": 4,
        "info": 5,
    }
    alerts = [a for a in latest.values() if status is None or a.get("status") == status]
    alerts.sort(key=lambda a: (ranks.get(a.get("severity"), 9), -int(a.get("ts") or 0)))
    return alerts


def format_alerts(alerts: list[dict[str, Any]]) -> str:
    if not alerts:
        return "no alerts"
    lines = [f"{'ALERT':<48} {'STATUS':<13} {'SEVERITY':<9} {'LVL':>3} {'COUNT':>5} CHANNELS"]
    for a in alerts:
        muted = f" (muted: {a['muted']})" if a.get("muted") else ""
        grouped = " (in a group message)" if a.get("grouped_in") else ""
        channels = [*(a.get("channels") or []), *(a.get("group_channels") or [])]
        lines.append(
            f"{str(a['alert_id'])[:48]:<48} {a.get('status', ''):<13} "
            f"{a.get('severity', ''):<9} {a.get('level', 0):>3} {a.get('count', 0):>5} "
            f"{','.join(channels) or '-'}{grouped}{muted}"
        )
    return "\n".join(lines)
