"""One issue's analysis: patterns, similar issues, suggested fixes, correlations, timeline and
confidence, as the JSON-able dict described in ops/rootcause/__init__.py."""

from __future__ import annotations

from typing import Any

from ops.rootcause.confidence import score_confidence
from ops.rootcause.correlation import DEFAULT_WINDOW_MS, correlate_signals, rollup_shift
from ops.rootcause.detect import detect_patterns
from ops.rootcause.facts import issue_rate, issue_services
from ops.rootcause.patterns import CONTEXT_FIXES, PATTERN_RULES
from ops.rootcause.similarity import find_similar
from ops.rootcause.text import MAX_TEXT, as_int, clean, iso_utc


def analyze_issue(
    issue: dict[str, Any],
    issues: list[dict[str, Any]],
    signals: list[dict[str, Any]],
    rollups: list[dict[str, Any]] | None = None,
    *,
    window_ms: int = DEFAULT_WINDOW_MS,
) -> dict[str, Any]:
    """Patterns, similar issues, suggested fixes, correlations and confidence for `issue`."""
    issues = [i for i in issues or [] if isinstance(i, dict)]
    patterns = detect_patterns(issue, issues)
    similar = find_similar(issue, issues)
    correlated = correlate_signals(issue, signals or [], window_ms)
    count, duration, per_min = issue_rate(issue)

    suggestions: list[dict[str, Any]] = []
    hints = [
        f"{s['issue_id']} ({s['title']}) was resolved"
        + (f" by {s['resolved_by']}" if s["resolved_by"] else "")
        + f": {s['resolution_notes']}"
        for s in similar
        if s["status"] == "resolved" and s["resolution_notes"]
    ]
    if hints:
        suggestions.append({"pattern": "similar-resolved", "fixes": hints})
    fixes_by_name = {r.name: r.fixes for r in PATTERN_RULES} | CONTEXT_FIXES
    for p in patterns:
        suggestions.append({"pattern": p["name"], "fixes": list(fixes_by_name[p["name"]])})
    if not patterns and not hints:
        suggestions.append(
            {
                "pattern": "unknown",
                "fixes": [
                    "No known pattern matched: start from the innermost in-app frame of the "
                    "sample and the release that first showed it.",
                ],
            }
        )

    same_service = any(not s["about_issue"] for s in correlated)
    confidence, factors = score_confidence(patterns, count, similar, same_service)
    releases = [clean(r, 128) for r in (issue.get("releases") or [])[:20] if isinstance(r, str)]
    first_release = issue.get("first_release")
    return {
        "issue_id": clean(issue.get("issue_id") or "", 64),
        "title": clean(issue.get("title") or "", MAX_TEXT),
        "exception_type": clean(issue.get("exception_type") or "", 128),
        "status": clean(issue.get("status") or "", 32),
        "severity": clean(issue.get("severity") or "", 32),
        "count": count,
        "services": sorted(clean(s, 128) for s in issue_services(issue))[:20],
        "patterns": patterns,
        "similar": similar,
        "suggestions": suggestions,
        "correlations": {
            "window_ms": window_ms,
            "signals": correlated,
            "rollups": rollup_shift(issue, rollups, window_ms) if rollups else None,
        },
        "timeline": {
            "first_seen": as_int(issue.get("first_seen")),
            "first_seen_iso": iso_utc(issue.get("first_seen")),
            "last_seen": as_int(issue.get("last_seen")),
            "last_seen_iso": iso_utc(issue.get("last_seen")),
            "first_release": clean(first_release, 128) if first_release else None,
            "releases": releases,
            "duration_ms": duration,
            "rate_per_min": round(per_min, 3) if per_min is not None else None,
        },
        "confidence": confidence,
        "confidence_factors": factors,
    }
