"""Text helpers shared by the sinks: bounding, one-lining and formatting alert fields.

Everything an alert carries in title/summary/labels/notes/evidence is attacker-controlled
(exception messages from services). These helpers only bound and flatten text; each sink
applies its own escaping (Slack mrkdwn, HTML) on top.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from alerting.alert_text import duration_text, format_value, metric_label, peak_text
from sinks.base import Alert
from sinks.links import LINK_LABELS

__all__ = [
    "ELLIPSIS",
    "alert_line",
    "bounded_json",
    "color_for",
    "context_line",
    "fact_rows",
    "facts_of",
    "for_channel",
    "group_common",
    "group_members",
    "header_token",
    "heading",
    "headline",
    "human_utc",
    "iso_utc",
    "json_bytes",
    "links_of",
    "member_line",
    "one_line",
    "scrubbed_quote",
    "severity_of",
    "truncate",
]

ELLIPSIS = "…"
# C0/C1 controls and Unicode line/paragraph separators: anything that can break a line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r" {2,}")
_TOKEN_SAFE = re.compile(r"^[\x21-\x7e]{1,200}$")


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + ELLIPSIS if limit > 0 else ""


def one_line(value: Any, limit: int) -> str:
    """`value` as a single line: control characters and line breaks become spaces, bounded."""
    text = "" if value is None else str(value)
    text = _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()
    return truncate(text, limit)


def scrubbed_quote(value: Any, secrets: Iterable[str | None], limit: int = 200) -> str:
    """`value` one-lined, every secret replaced by `***`, and only then bounded to `limit`:
    cutting first could split a secret and leave its prefix behind, out of the scrubber's
    reach. Each secret is matched on the raw text and again on the one-lined text; an unset
    (None or empty) secret is skipped."""
    text = "" if value is None else str(value)
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    for secret in ordered:
        text = text.replace(secret, "***")
    text = _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()
    for secret in ordered:
        text = text.replace(secret, "***")
    return truncate(text, limit)


def iso_utc(ms: Any) -> str | None:
    """Epoch milliseconds as ISO-8601 UTC (`2026-11-02T12:30:00.123Z`), None if unusable."""
    try:
        dt = datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def human_utc(ms: Any) -> str:
    """Epoch milliseconds as `2026-11-02 12:30:00 UTC` (or `-`)."""
    try:
        dt = datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return "-"
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC")


def json_bytes(value: Any, *, sort_keys: bool = False, indent: bool = False) -> bytes:
    """JSON of any decoded record, unknown types as str; what orjson refuses (integers
    beyond 64 bits, ...) goes through the stdlib encoder (ASCII-escaped)."""
    option = (orjson.OPT_SORT_KEYS if sort_keys else 0) | (orjson.OPT_INDENT_2 if indent else 0)
    try:
        return orjson.dumps(value, default=str, option=option)
    except TypeError:  # big integers, non-str keys, lone surrogates
        try:
            text = json.dumps(value, default=str, sort_keys=sort_keys, indent=2 if indent else None)
        except TypeError:  # keys of mixed types cannot be sorted
            text = json.dumps(value, default=str, indent=2 if indent else None)
        return text.encode()


def bounded_json(value: Any, limit: int) -> str:
    """Compact JSON of `value` (sorted keys, unknown types as str), at most `limit` chars."""
    return truncate(json_bytes(value, sort_keys=True).decode("utf-8", "replace"), limit)


def header_token(value: str) -> str:
    """A value safe for an HTTP header: itself if short printable ASCII, else its sha256."""
    if _TOKEN_SAFE.match(value):
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def severity_of(alert: Alert) -> str:
    """The alert's severity in lower case (`info` when missing)."""
    return str(alert.get("severity") or "info").lower()


def for_channel(alert: Alert, channel: str) -> Alert:
    """The record as `channel` is to receive it: a group's leader record (see
    `EscalationStage._flush_group` and `_flush_resolved`) lists only the members routed
    to that channel, and no group at all when the leader is the only one."""
    group = alert.get("group")
    if not isinstance(group, dict):
        return alert
    members = [
        m
        for m in group.get("alerts") or []
        if isinstance(m, dict) and channel in (m.get("channels") or [])
    ]
    if len(members) == 1 and members[0].get("alert_id") == alert.get("alert_id"):
        return {k: v for k, v in alert.items() if k != "group"}
    return {**alert, "group": {**group, "alerts": members}}


def group_members(alert: Alert) -> list[dict[str, Any]] | None:
    """The alerts a group notification lists, or None for a one-alert notification."""
    group = alert.get("group")
    if not isinstance(group, dict):
        return None
    members = [m for m in group.get("alerts") or [] if isinstance(m, dict)]
    return members or None


def member_line(member: dict[str, Any], limit: int) -> str:
    """`[HIGH] checkout: title — summary`: one member of a group, one line, bounded (a
    worded member's title names its service already)."""
    service = one_line(member.get("service") or "", 60)
    title = one_line(member.get("title") or member.get("alert_id") or "", 300)
    summary = one_line(member.get("summary") or "", 300)
    where = f"{service}: " if service and not member.get("kind") else ""
    text = f"[{severity_of(member).upper()}] " + where + title
    return truncate(_with_summary(text, title, summary), limit)


def _with_summary(text: str, title: str, summary: str) -> str:
    """`text — summary`, unless the summary says nothing more than the title; a summary
    that begins with the title (a metric's sentence) replaces it."""
    if not summary or summary == title:
        return text
    if title and summary.startswith(title):
        return text[: len(text) - len(title)] + summary
    return f"{text} — {summary}"


def group_common(members: list[dict[str, Any]]) -> str:
    """What the members of a group share, said once: `all in checkout, release 1.4.3:
    3 new issues` (service, endpoint and release when every member has the same; the
    issues by what happened to them), or `` when nothing is shared."""
    shared = []
    for name, word in (("service", "in"), ("endpoint", "on"), ("release", "release")):
        values = {str(m.get(name) or "") for m in members}
        if len(values) == 1 and "" not in values and values != {"*"}:
            shared.append(f"{word} {one_line(values.pop(), 100)}")
    tally: dict[str, int] = {}
    for m in members:
        reason = str(m.get("reason") or "")
        kind = (
            "new issue"
            if reason.startswith("new")
            else "regressed issue"
            if reason.startswith("regressed")
            else "issue"
            if m.get("kind") == "issue"
            else "metric alert"
            if m.get("kind") == "metric"
            else ""
        )
        if kind:
            tally[kind] = tally.get(kind, 0) + 1
    counted = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in tally.items())
    where = ", ".join(shared)
    if where and counted:
        return f"all {where}: {counted}"
    return f"all {where}" if where else counted


def _group_head(alert: Alert, members: list[dict[str, Any]]) -> str:
    """`3 alerts: service=checkout · all in checkout, release 1.4.3: 3 new issues`: the
    group's size, its labels and what its members have in common."""
    labels = (alert.get("group") or {}).get("labels") or {}
    where = (
        ", ".join(f"{k}={v}" for k, v in labels.items() if v is not None)
        if isinstance(labels, dict)
        else ""
    )
    noun = "alert" if len(members) == 1 else "alerts"
    common = group_common(members) if len(members) > 1 else ""
    text = f"{len(members)} {noun}" + (f": {where}" if where else "")
    return one_line(text + (f" · {common}" if common else ""), 300)


def _top_severity(members: list[dict[str, Any]]) -> str:
    order = list(SEVERITY_COLORS)
    return min(
        (severity_of(m) for m in members), key=lambda s: order.index(s) if s in order else 99
    )


def alert_line(alert: Alert, limit: int) -> str:
    """`[CRITICAL] FIRING checkout: title — summary`, one line, bounded (SMS, fallbacks);
    for a group, `[CRITICAL] FIRING 3 alerts: service=checkout — [HIGH] ...; [LOW] ...`
    (`RESOLVED 3 alerts: ...` for a group's resolution notice)."""
    members = group_members(alert)
    if members:
        label = _label(alert)
        head = f"[{_top_severity(members).upper()}] {label} {_group_head(alert, members)}"
        # Short: each member by its title only, then the alerts page.
        text = f"{head} — " + "; ".join(member_line({**m, "summary": None}, 300) for m in members)
        link = links_of(alert).get("alerts")
        if link and len(link) < limit // 2:
            return truncate(text, limit - len(link) - 1) + " " + link
        return truncate(text, limit)
    transition = one_line(alert.get("transition") or "", 20).upper()
    service = one_line(alert.get("service") or "", 60)
    title = one_line(alert.get("title") or alert.get("alert_id") or "", 300)
    summary = one_line(alert.get("summary") or "", 2000)
    head = f"[{severity_of(alert).upper()}] {transition}"
    if service and not facts_of(alert):  # a worded title names its service already
        head += f" {service}:"
    text = _with_summary(f"{head} {title}", title, summary)
    link = links_of(alert).get("alert")
    if link and len(link) < limit // 2:  # the link is kept whole, the text cut before it
        return truncate(text, limit - len(link) - 1) + " " + link
    return truncate(text, limit)


def facts_of(alert: Alert) -> dict[str, Any]:
    """The facts the alert's wording was built from (alerting/alert_text.py), or {}."""
    facts = alert.get("facts")
    return facts if isinstance(facts, dict) else {}


def links_of(alert: Alert) -> dict[str, str]:
    """The record's dashboard links (sinks/links.py), http(s) only, in display order."""
    links = alert.get("links")
    if not isinstance(links, dict):
        return {}
    return {
        name: links[name]
        for name in LINK_LABELS
        if isinstance(links.get(name), str)
        and links[name].startswith(("https://", "http://"))
        and len(links[name]) <= 2000
    }


def headline(alert: Alert, limit: int = 1024) -> str:
    """The one sentence that wakes someone up (PagerDuty's summary): `[CRITICAL] title —
    summary` for an issue, `[WARNING] summary` for a metric alert (its summary says it
    all); `[CRITICAL] checkout: title` for an alert without worded facts."""
    severity = severity_of(alert).upper()
    title = one_line(alert.get("title") or alert.get("alert_id"), limit)
    summary = one_line(alert.get("summary"), limit)
    kind = facts_of(alert).get("kind")
    if kind == "metric" and summary:
        return truncate(f"[{severity}] {summary}", limit)
    if kind == "issue" and summary:
        return truncate(f"[{severity}] {title} — {summary}", limit)
    service = one_line(alert.get("service"), 255)
    return truncate(f"[{severity}] {service + ': ' if service else ''}{title}", limit)


def fact_rows(alert: Alert) -> list[tuple[str, str]]:
    """The figures of a worded alert as (label, value) rows, most telling first: for an
    issue its culprit, events, hosts, releases and first seen; for a metric its value,
    threshold or baseline and since when; for a resolution how long it lasted and its
    peak. Empty for an alert without facts."""
    facts = facts_of(alert)
    kind = facts.get("kind")
    rows: list[tuple[str, str]] = []
    if alert.get("transition") == "resolved" and facts.get("duration_ms") is not None:
        rows.append(("Lasted", duration_text(facts.get("duration_ms"))))
        peak = peak_text(facts, alert.get("peak")).removeprefix("peak ")
        if peak:
            rows.append(("Peak", peak))
    if kind == "issue":
        culprit = facts.get("culprit")
        culprit = culprit if isinstance(culprit, dict) else {}
        if culprit.get("text"):
            rows.append(("Culprit", one_line(culprit["text"], 500)))
        rows.append(("Events", f"{facts.get('events') or 0:,}"))
        hosts = [one_line(h, 100) for h in facts.get("hosts") or []]
        host_count = facts.get("host_count")
        host_count = host_count if isinstance(host_count, int) else len(hosts)
        if hosts:
            shown = ", ".join(hosts[:5])
            if host_count > 5:  # `web-12, web-7, … (23 hosts)`
                shown += f", … ({host_count:,} hosts)"
            rows.append(("Hosts", shown))
        releases = [one_line(r, 100) for r in facts.get("releases") or []]
        if releases:
            shown = ", ".join(releases[:5]) + (" …" if len(releases) > 5 else "")
            rows.append(("Releases", shown))
        if facts.get("release"):
            word = "Regressed in" if facts.get("update") == "regressed" else "Appeared in"
            rows.append((word, one_line(facts["release"], 100)))
        rows.append(("First seen", human_utc(facts.get("first_seen"))))
        if facts.get("reason"):
            rows.append(("Why", one_line(facts["reason"], 200)))
    elif kind == "metric":
        metric = str(facts.get("metric") or "")
        rows.append((metric_label(metric).capitalize(), one_line(facts.get("value_text"), 60)))
        if facts.get("threshold_text"):
            op = {">": "above", ">=": "at or above", "<": "below", "<=": "at or below"}
            word = op.get(str(facts.get("op")), "limit")
            rows.append(("Threshold", f"{word} {one_line(facts['threshold_text'], 60)}"))
        if facts.get("baseline_text"):
            rows.append(("Baseline", one_line(facts["baseline_text"], 60)))
        if facts.get("since"):
            rows.append(("Since", human_utc(facts.get("since"))))
        peak_value = alert.get("peak")
        if (
            alert.get("transition") != "resolved"
            and peak_value is not None
            and peak_value != facts.get("value")
        ):
            rows.append(("Peak", format_value(metric, peak_value)))
    return rows


def context_line(alert: Alert) -> str:
    """Identifiers, last: `prodmon · firing · alert <id> · issue <id> · rule <rule>`."""
    transition = one_line(alert.get("transition") or "-", 20)
    members = group_members(alert)
    if members:  # the leader's id would name an alert not listed here: the members' rules
        rules = sorted({one_line(m.get("rule"), 100) for m in members if m.get("rule")})
        listed = truncate(", ".join(rules), 300)
        return f"prodmon · {transition} · grouped alerts" + (f" · rules {listed}" if rules else "")
    parts = [f"prodmon · {transition} · alert {one_line(alert.get('alert_id'), 300)}"]
    issue_id = facts_of(alert).get("issue_id") or (alert.get("labels") or {}).get("fingerprint")
    if issue_id:
        parts.append(f"issue {one_line(issue_id, 100)}")
    parts.append(f"rule {one_line(alert.get('rule') or '-', 100)}")
    return " · ".join(parts)


SEVERITY_COLORS = {
    "critical": "#D00000",
    "high": "#F2711C",
    "medium": "#FBBD08",
    "warning": "#FBBD08",
    "low": "#2185D0",
    "info": "#767676",
}
RESOLVED_COLOR = "#21BA45"
TRANSITION_LABELS = {
    "firing": "FIRING",
    "escalated": "ESCALATED",
    "updated": "UPDATED",
    "acknowledged": "ACKNOWLEDGED",
    "resolved": "RESOLVED",
    "rerouted": "REROUTED",
    "repeated": "STILL FIRING",
}


def _label(alert: Alert) -> str:
    """`FIRING`, `RESOLVED`, ...: what the transition says to a person."""
    transition = str(alert.get("transition") or "")
    return TRANSITION_LABELS.get(transition, one_line(transition, 20).upper() or "ALERT")


def color_for(alert: Alert) -> str:
    """Hex colour of the alert: by severity (a group's highest), green once resolved."""
    if alert.get("transition") == "resolved":
        return RESOLVED_COLOR
    members = group_members(alert)
    if members:
        return SEVERITY_COLORS.get(_top_severity(members), SEVERITY_COLORS["info"])
    return SEVERITY_COLORS.get(severity_of(alert), SEVERITY_COLORS["info"])


def heading(alert: Alert, limit: int = 1000) -> str:
    """`FIRING [CRITICAL] title` (`ESCALATED (level 2) ...`), one line, bounded."""
    members = group_members(alert)
    label = _label(alert)
    if members:
        return truncate(
            f"{label} [{_top_severity(members).upper()}] {_group_head(alert, members)}", limit
        )
    transition = str(alert.get("transition") or "")
    if transition == "escalated" and alert.get("level"):
        label += f" (level {one_line(alert.get('level'), 10)})"
    title = one_line(alert.get("title") or alert.get("alert_id"), limit)
    return truncate(f"{label} [{severity_of(alert).upper()}] {title}", limit)
