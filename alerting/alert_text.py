"""Alert wording: what a person reads at 3 a.m., built from what a signal is about.

`issue_facts(issue)` condenses an `issues` record into the few facts a notification needs
(exception, message template, culprit frame, counts, releases, hosts, first seen); the
baseline stage puts them on issue signals as `issue`. `describe(signal)` turns a signal
into a short `title`, a one-sentence `summary` and structured `facts` (the figures the
sinks show as fields); `resolution_text` says how long an alert lasted and its peak.

Examples:
    TimeoutError: upstream pay-api timed out after <num> ms in checkout
    New issue in checkout (release 1.4.2): 15 events on 3 hosts, first seen 14:02 UTC.
    checkout /api/pay p99 1.37 s, above 1 s in 3 of the last 5 minutes, since 14:02 UTC
    checkout 5xx rate 6.9 % against a baseline of 0.2 % (4.1 sigma above), since 14:04 UTC

Pure and cheap (runs once per finding, never per event). Text from events is only bounded
here, never escaped: each sink escapes for its own channel. Never raises on odd input.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "describe",
    "duration_text",
    "format_value",
    "issue_facts",
    "metric_label",
    "resolution_text",
    "series_text",
]

TITLE_MAX = 300
SUMMARY_MAX = 1000
TEXT_MAX = 300  # any one fact taken from an event
MAX_LISTED = 10  # releases / hosts kept in the facts

_LATENCY_LABELS = {
    "p50_ms": "p50",
    "p90_ms": "p90",
    "p95_ms": "p95",
    "p99_ms": "p99",
    "p999_ms": "p99.9",
    "max_ms": "max latency",
    "mean_ms": "mean latency",
}
_LABELS = {
    **_LATENCY_LABELS,
    "error_rate_pct": "5xx rate",
    "client_error_rate_pct": "4xx rate",
    "throughput_rps": "throughput",
    "count": "requests per window",
    "issue_rate_per_min": "error rate",
    "issue_new": "new issue",
    "issue_regressed": "regressed issue",
    "sla_violations": "SLA violations",
    "burn_rate": "error-budget burn rate",
}
_OPS = {">": "above", ">=": "at or above", "<": "below", "<=": "at or below", "==": "at"}


def _text(value: Any, limit: int = TEXT_MAX) -> str:
    """`value` as one bounded line (no escaping: the sinks do that)."""
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    number = _num(value)
    return int(number) if number is not None else None


def _utc(ms: Any, pattern: str) -> str:
    """Epoch ms formatted in UTC with `pattern`; "-" when absent or out of range."""
    number = _int(ms)
    if number is None or number <= 0:
        return "-"
    try:
        return datetime.fromtimestamp(number / 1000, UTC).strftime(pattern)
    except (OverflowError, OSError, ValueError):
        return "-"


def _clock(ms: Any) -> str:
    """`14:02 UTC`: the time of day only (the message's own date says the day)."""
    return _utc(ms, "%H:%M UTC")


def _when(ms: Any) -> str:
    """`2026-12-06 14:02 UTC`."""
    return _utc(ms, "%Y-%m-%d %H:%M UTC")


def _sig(value: float) -> str:
    """Three significant figures, no exponent for ordinary magnitudes."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_value(metric: str, value: Any) -> str:
    """A metric's value with its unit: `1.37 s`, `870 ms`, `6.9 %`, `120 req/s`, `12/min`."""
    number = _num(value)
    if number is None:
        return "-"
    if metric in _LATENCY_LABELS:
        return f"{_sig(number / 1000)} s" if abs(number) >= 1000 else f"{_sig(number)} ms"
    if metric.endswith("_pct"):
        return f"{_sig(number)} %"
    if metric == "throughput_rps":
        return f"{_sig(number)} req/s"
    if metric == "issue_rate_per_min":
        return f"{_sig(number)}/min"
    if metric == "burn_rate":
        return f"{_sig(number)}x"
    return _sig(number)


def metric_label(metric: Any) -> str:
    """What a person calls the metric: `p99`, `5xx rate`, `throughput`."""
    return _LABELS.get(str(metric), _text(metric, 60) or "value")


def series_text(service: Any, endpoint: Any) -> str:
    """`checkout /api/pay`, or `checkout` for the whole service."""
    where = _text(service, 100) or "-"
    if endpoint and endpoint != "*":
        where += f" {_text(endpoint, 200)}"
    return where


def duration_text(ms: Any) -> str:
    """`45 s`, `12 min`, `2 h 5 min`, `3 d 4 h`."""
    number = _int(ms)
    if number is None or number < 0:
        return "-"
    seconds = number // 1000
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


# --- issues ---------------------------------------------------------------------------------


def _culprit(sample: dict[str, Any]) -> dict[str, Any] | None:
    """The innermost in-app frame of the sample's stack (frames are outermost first); the
    innermost frame when none is marked in-app."""
    frames = sample.get("stacktrace")
    if not isinstance(frames, list):
        return None
    frames = [f for f in frames if isinstance(f, dict)]
    if not frames:
        return None
    in_app = [f for f in frames if f.get("in_app") is True]
    frame = (in_app or frames)[-1]
    module = _text(frame.get("module"), 200)
    function = _text(frame.get("function"), 200)
    filename = _text(frame.get("filename") or frame.get("abs_path"), 300)
    lineno = _int(frame.get("lineno"))
    where = ".".join(p for p in (module, function) if p) or function or "?"
    at = f"{filename}:{lineno}" if filename and lineno is not None else filename
    return {"function": where, "location": at or None, "text": f"{where} ({at})" if at else where}


def issue_facts(issue: dict[str, Any], rate_per_min: float | None = None) -> dict[str, Any]:
    """What a notification says about an issue, from its `issues` record (schemas/issues.py).

    Hosts: the record's first hosts (up to MAX_LISTED here) and `host_count`, the distinct
    hosts in all; a record written before issues kept hosts names its sample event's.
    """
    sample = issue.get("sample")
    sample = sample if isinstance(sample, dict) else {}
    releases = [_text(r, 100) for r in issue.get("releases") or [] if r][:MAX_LISTED]
    services = [_text(s, 100) for s in issue.get("services") or [] if s][:MAX_LISTED]
    hosts = [_text(h, 100) for h in issue.get("hosts") or [] if h][:MAX_LISTED]
    if not hosts and "hosts" not in issue and sample.get("host"):
        hosts = [_text(sample.get("host"), 100)]
    host_count = max(_int(issue.get("host_count")) or 0, len(hosts))
    kind = issue.get("type") if issue.get("type") in ("new", "regressed") else "count"
    release = sample.get("release") if kind == "regressed" else issue.get("first_release")
    facts = {
        "issue_id": _text(issue.get("issue_id"), 64),
        "exception_type": _text(issue.get("exception_type"), 200) or "Error",
        "message": _text(issue.get("message_template")),
        "service": _text(sample.get("service") or (services[0] if services else ""), 100),
        "services": services,
        "status": _text(issue.get("status"), 20),
        "update": kind,
        "events": _int(issue.get("count")) or 0,
        "first_seen": _int(issue.get("first_seen")),
        "last_seen": _int(issue.get("last_seen")),
        "releases": releases,
        "release": _text(release, 100) or None,
        "hosts": hosts,
        "host_count": host_count,
        "culprit": _culprit(sample),
    }
    if rate_per_min is not None:
        facts["rate_per_min"] = round(float(rate_per_min), 3)
    return facts


def _issue_title(facts: dict[str, Any]) -> str:
    head = facts.get("exception_type") or "Error"
    if facts.get("message"):
        head += f": {facts['message']}"
    if facts.get("service"):
        head += f" in {facts['service']}"
    return _text(head, TITLE_MAX)


def _issue_reason(signal: dict[str, Any], facts: dict[str, Any]) -> tuple[str, str]:
    """(`new` | `regressed` | `rate above N/min` | ..., the sentence's opening): a new or
    regressed issue says so whichever rule fired; a rate rule adds the rate."""
    metric = signal.get("metric")
    service = facts.get("service") or _text(signal.get("service"), 100) or "-"
    release = facts.get("release")
    in_release = f" (release {release})" if release else ""
    update = "regressed" if metric == "issue_regressed" else facts.get("update")
    if metric == "issue_new":
        update = "new"
    reasons, opening = [], ""
    if update == "new":
        reasons.append("new")
        opening = f"New issue in {service}{in_release}"
    elif update == "regressed":
        reasons.append("regressed")
        opening = f"Regressed in {service}{in_release}"
    if metric not in ("issue_new", "issue_regressed"):
        rate = format_value("issue_rate_per_min", signal.get("value"))
        if signal.get("kind") == "anomaly":
            usual = format_value("issue_rate_per_min", (signal.get("baseline") or {}).get("centre"))
            reasons.append(f"rate {rate} against {usual}")
            said = f"rate {rate}, usually {usual}"
        else:
            words = _OPS.get(str(signal.get("op")), "beyond")
            limit = format_value("issue_rate_per_min", signal.get("threshold"))
            reasons.append(f"rate {words} {limit}")
            said = f"rate {rate}, {words} {limit}"
        opening = f"{opening}, {said}" if opening else f"{said[0].upper()}{said[1:]} in {service}"
    return ", ".join(reasons) or "issue", opening or f"Issue in {service}"


def _issue_summary(opening: str, facts: dict[str, Any]) -> str:
    events = facts.get("events") or 0
    parts = [_plural(events, "event")]
    hosts = facts.get("hosts") or []
    host_count = max(_int(facts.get("host_count")) or 0, len(hosts))
    if host_count == 1 and hosts:
        parts.append(f"on {hosts[0]}")
    elif host_count:
        parts.append(f"on {_plural(host_count, 'host')}")
    releases = facts.get("releases") or []
    if len(releases) > 1:
        parts.append(f"across {_plural(len(releases), 'release')}")
    sentence = f"{opening}: {' '.join(parts)}, first seen {_when(facts.get('first_seen'))}."
    culprit = facts.get("culprit") or {}
    if culprit.get("text"):
        sentence += f" Culprit: {culprit['text']}."
    return _text(sentence, SUMMARY_MAX)


# --- metrics --------------------------------------------------------------------------------


def _window_text(seconds: Any) -> str:
    number = _num(seconds) or 0.0
    if number >= 120 and number % 60 == 0:
        return f"{int(number // 60)} minutes"
    if number == 60:
        return "minute"
    return f"{_sig(number)} s"


def _metric_sentence(signal: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    metric = str(signal.get("metric") or "")
    where = series_text(signal.get("service"), signal.get("endpoint"))
    if not signal.get("service"):
        where = _text(signal.get("key"), 200) or "-"
    label = metric_label(metric)
    value = format_value(metric, signal.get("value"))
    facts: dict[str, Any] = {
        "metric": metric,
        "label": label,
        "value": _num(signal.get("value")),
        "value_text": value,
        "where": where,
    }
    since = _int(signal.get("since")) or _int((signal.get("window") or {}).get("start"))
    facts["since"] = since
    if signal.get("kind") == "anomaly":
        baseline = signal.get("baseline")
        baseline = baseline if isinstance(baseline, dict) else {}
        centre = _num(baseline.get("centre"))
        z = _num(baseline.get("z"))
        facts["baseline"] = centre
        facts["baseline_text"] = format_value(metric, centre)
        title = f"{where} {label} {value} against a baseline of {facts['baseline_text']}"
        sentence = title
        if z is not None:
            sentence += f" ({abs(z):.1f} sigma {'above' if z > 0 else 'below'})"
    else:
        words = _OPS.get(str(signal.get("op")), "beyond")
        facts["threshold"] = _num(signal.get("threshold"))
        facts["threshold_text"] = format_value(metric, signal.get("threshold"))
        facts["op"] = _text(signal.get("op"), 4)
        title = f"{where} {label} {value}, {words} {facts['threshold_text']}"
        sentence = title
        occurrences = _int(signal.get("occurrences"))
        if occurrences and occurrences > 1 and signal.get("window_s"):
            facts["occurrences"] = occurrences
            facts["window_s"] = _num(signal.get("window_s"))
            sentence += f" in {occurrences} of the last {_window_text(signal['window_s'])}"
    if since:
        sentence += f", since {_clock(since)}"
    if signal.get("provisional"):
        sentence += " (window still open)"
    return _text(title, TITLE_MAX), _text(sentence, SUMMARY_MAX), facts


# --- the entry points -----------------------------------------------------------------------


def describe(signal: dict[str, Any]) -> dict[str, Any]:
    """`{"title", "summary", "facts"}` of a firing signal (see the module docstring).

    `facts["kind"]` is "issue" (with the issue's facts and `reason`) or "metric".
    """
    issue = signal.get("issue")
    if isinstance(issue, dict) and issue:
        facts = dict(issue)
        reason, opening = _issue_reason(signal, facts)
        facts["kind"] = "issue"
        facts["reason"] = reason
        facts["metric"] = _text(signal.get("metric"), 60)
        facts["value"] = _num(signal.get("value"))
        return {
            "title": _issue_title(facts),
            "summary": _issue_summary(opening, facts),
            "facts": facts,
        }
    title, summary, facts = _metric_sentence(signal)
    facts["kind"] = "metric"
    return {"title": title, "summary": summary, "facts": facts}


def peak_text(facts: dict[str, Any], peak: Any) -> str:
    """`peak p99 2.1 s` (metric alerts), `2,140 events` (issues), or ``."""
    if facts.get("kind") == "issue":
        events = _int(facts.get("events"))
        return _plural(events, "event") if events else ""
    number = _num(peak)
    if number is None or not facts.get("metric"):
        return ""
    return f"peak {metric_label(facts['metric'])} {format_value(facts['metric'], number)}"


def resolution_text(facts: dict[str, Any], started: Any, ended: Any, peak: Any, why: Any) -> str:
    """`Resolved after 42 min (14:02 to 14:44 UTC), peak p99 2.1 s: condition cleared.`"""
    start, end = _int(started), _int(ended)
    text = "Resolved"
    if start and end and end >= start:
        text += f" after {duration_text(end - start)} ({_clock(start)} to {_clock(end)})"
    extra = peak_text(facts, peak)
    if extra:
        text += f", {extra}"
    reason = _text(why, 200)
    return _text(f"{text}: {reason}." if reason else f"{text}.", SUMMARY_MAX)
