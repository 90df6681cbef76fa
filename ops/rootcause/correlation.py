"""What else happened around an issue's first occurrence: firing signals of its services
(or about it) and the service-wide rollups before vs after."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ops.rootcause.facts import issue_services
from ops.rootcause.text import MAX_TEXT, as_int, clean

DEFAULT_WINDOW_MS = 10 * 60 * 1000
MAX_CORRELATIONS = 20


def correlate_signals(
    issue: dict[str, Any], signals: Iterable[dict[str, Any]], window_ms: int = DEFAULT_WINDOW_MS
) -> list[dict[str, Any]]:
    """Firing signals of the issue's services (or about it) near first_seen, closest first."""
    first = as_int(issue.get("first_seen"))
    if first is None:
        return []
    services, me = issue_services(issue), issue.get("issue_id")
    out: list[dict[str, Any]] = []
    for sig in signals:
        if not isinstance(sig, dict) or sig.get("state") != "firing":
            continue
        ts = as_int(sig.get("ts"))
        if ts is None or abs(ts - first) > window_ms:
            continue
        about_issue = me is not None and sig.get("fingerprint") == me
        if sig.get("service") not in services and not about_issue:
            continue
        offset = ts - first
        out.append(
            {
                "id": clean(sig.get("id") or "", MAX_TEXT),
                "rule": clean(sig.get("rule") or "", 128),
                "kind": clean(sig.get("kind") or "", 16),
                "severity": clean(sig.get("severity") or "", 16),
                "service": clean(sig.get("service") or "", 128),
                "endpoint": clean(sig.get("endpoint"), 128) if sig.get("endpoint") else None,
                "metric": clean(sig.get("metric"), 64) if sig.get("metric") else None,
                "value": sig.get("value") if isinstance(sig.get("value"), int | float) else None,
                "ts": ts,
                "offset_ms": offset,
                "relation": "before" if offset < 0 else "after" if offset > 0 else "at",
                "about_issue": about_issue,
                "summary": clean(sig.get("summary") or "", MAX_TEXT),
            }
        )
    out.sort(key=lambda s: (abs(s["offset_ms"]), s["offset_ms"], s["id"]))
    return out[:MAX_CORRELATIONS]


@dataclass(slots=True)
class _Side:
    """One side (before or after first_seen) of `rollup_shift`'s comparison."""

    count: int = 0
    errors: int = 0
    max_p99_ms: float | None = None


def rollup_shift(
    issue: dict[str, Any], rollups: Iterable[dict[str, Any]], window_ms: int
) -> dict[str, Any] | None:
    """Service-wide error rate and worst p99 in the window before vs after first_seen."""
    first = as_int(issue.get("first_seen"))
    if first is None:
        return None
    services = issue_services(issue)
    acc = {"before": _Side(), "after": _Side()}
    seen = False
    for r in rollups:
        if not isinstance(r, dict) or r.get("service") not in services:
            continue
        if r.get("endpoint") not in (None, "*"):
            continue
        start = as_int(r.get("start"))
        if start is None or abs(start - first) > window_ms:
            continue
        side = acc["before"] if start < first else acc["after"]
        side.count += as_int(r.get("count")) or 0
        side.errors += as_int(r.get("errors")) or 0
        p99 = r.get("p99_ms")
        if isinstance(p99, int | float) and not isinstance(p99, bool) and math.isfinite(p99):
            side.max_p99_ms = p99 if side.max_p99_ms is None else max(side.max_p99_ms, p99)
        seen = True
    if not seen:
        return None
    return {
        name: {
            "count": side.count,
            "errors": side.errors,
            "error_rate_pct": round(100.0 * side.errors / side.count, 3) if side.count else None,
            "max_p99_ms": side.max_p99_ms,
        }
        for name, side in acc.items()
    }
