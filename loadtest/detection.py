"""Detection delays: which notification detected which scripted incident, how long after
its start, and the summary against the budget (p99 <= window + slack) in report.json."""

from __future__ import annotations

import math

from loadtest.simulator import Incident

BUDGET_SLACK_S = 2.0  # the detection target: p99 delay <= window_s + this (issue 6)


def _detection(
    hits: list[dict],
    incident: Incident,
    incident_wall: float,
    *,
    service_wide: bool = True,
    until: float | None = None,
) -> dict:
    """Incident start (wall) -> first notification about the incident's series.

    A match is a notification (not a resolution) for the incident's service, arriving after
    the start (and before `until`), whose triggering window ended after the start, about the
    incident's rollup series `service|endpoint` or, when `service_wide`, the service's
    `service|*` series (latency or error rate, not an issue fingerprint).
    """
    after = [
        h
        for h in hits
        if h["arrived"] >= incident_wall
        and (until is None or h["arrived"] < until)
        and h.get("service") == incident.service
    ]
    own, wide = f"{incident.service}|{incident.endpoint}", f"{incident.service}|*"
    series = [
        h
        for h in after
        if h.get("transition") != "resolved"
        and _after_start(h, incident_wall)
        and (h.get("key") == own or (service_wide and str(h.get("key") or "").startswith(wide)))
    ]
    first = min(series, key=lambda h: h["arrived"], default=None)
    first_any = min(after, key=lambda h: h["arrived"], default=None)
    window_end = _first_seen_s(first) if first else None
    return {
        "detected": first is not None,
        "delay_s": round(first["arrived"] - incident_wall, 3) if first else None,
        "rule": first.get("rule") if first else None,
        "key": first.get("key") if first else None,
        # the triggering window's end (event time) -> notification: lateness + pipeline hops
        "window_end_to_notification_s": (
            round(first["arrived"] - window_end, 3) if first and window_end else None
        ),
        "first": first,
        "first_any_notification_delay_s": (
            round(first_any["arrived"] - incident_wall, 3) if first_any else None
        ),
        "notifications_for_service": len(after),
    }


def _first_seen_s(hit: dict) -> float | None:
    """When the alert's first signal was observed (its window's end), in epoch seconds."""
    value = hit.get("first_seen")
    return value / 1000 if isinstance(value, int | float) and value > 0 else None


def _after_start(hit: dict, incident_wall: float) -> bool:
    """The notification's triggering window ended after the incident started (unknown: yes)."""
    seen = _first_seen_s(hit)
    return seen is None or seen > incident_wall


def detection_targets(incidents: tuple[Incident, ...]) -> list[dict]:
    """One target per scripted incident: entries sharing (service, endpoint, start) are one
    incident (e.g. a slowdown plus an error burst), with all their kinds; in script order."""
    targets: dict[tuple[str, str, float], dict] = {}
    for inc in incidents:
        t = targets.setdefault(
            (inc.service, inc.endpoint, inc.start_s),
            {"incident": inc, "kinds": [], "duration_s": inc.duration_s},
        )
        t["kinds"].append(inc.kind)
        t["duration_s"] = max(t["duration_s"], inc.duration_s)
    return list(targets.values())


def detect_all(hits: list[dict], targets: list[dict], start_wall: float) -> list[dict]:
    """`_detection` for every target. The service-wide series counts only for a target alone
    on its service; a later incident on the same series ends the earlier one's search."""
    out = []
    for t in targets:
        inc = t["incident"]
        same_service = [o["incident"] for o in targets if o["incident"].service == inc.service]
        later = [
            o.start_s
            for o in same_service
            if o.endpoint == inc.endpoint and o.start_s > inc.start_s
        ]
        det = _detection(
            hits,
            inc,
            start_wall + inc.start_s,
            service_wide=len(same_service) == 1,
            until=start_wall + min(later) if later else None,
        )
        head = {"service": inc.service, "endpoint": inc.endpoint, "kind": "+".join(t["kinds"])}
        timing = {"start_s": inc.start_s, "duration_s": t["duration_s"]}
        out.append({**head, **timing, "start_wall": start_wall + inc.start_s, **det})
    return out


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least q % of values at or below
    it): conservative for few samples, e.g. with 8 values p95 and p99 are the maximum."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def delay_summary(delays: list[float | None], budget_s: float | None = None) -> dict:
    """Detected / total, p50 / p95 / p99 / max of the detected delays (None = undetected),
    and, given a budget, whether every incident was detected with p99 within it."""
    found = [d for d in delays if d is not None]
    p99 = percentile(found, 99)  # None exactly when nothing was detected
    out = {
        "detected": len(found),
        "total": len(delays),
        "p50_s": percentile(found, 50),
        "p95_s": percentile(found, 95),
        "p99_s": p99,
        "max_s": max(found, default=None),
    }
    if budget_s is not None:
        out["budget_s"] = budget_s
        out["within_budget"] = p99 is not None and len(found) == len(delays) and p99 <= budget_s
    return out


def detection_report(per_incident: list[dict], window_s: float, lateness_s: float) -> dict:
    """The detection section of report.json: budget, summaries overall and per kind, and the
    share of the delay after the triggering window closed (lateness + pipeline)."""
    budget = window_s + BUDGET_SLACK_S
    kinds = sorted({d["kind"] for d in per_incident})
    return {
        "window_s": window_s,
        "allowed_lateness_s": lateness_s,
        "budget_s": budget,
        "summary": delay_summary([d["delay_s"] for d in per_incident], budget),
        "by_kind": {
            k: delay_summary([d["delay_s"] for d in per_incident if d["kind"] == k]) for k in kinds
        },
        "window_end_to_notification": delay_summary(
            [d["window_end_to_notification_s"] for d in per_incident if d["detected"]]
        ),
        "incidents": per_incident,
    }
