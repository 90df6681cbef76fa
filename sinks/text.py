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

from sinks.base import Alert

__all__ = [
    "ELLIPSIS",
    "alert_line",
    "bounded_json",
    "color_for",
    "for_channel",
    "group_members",
    "header_token",
    "heading",
    "human_utc",
    "iso_utc",
    "json_bytes",
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


def scrubbed_quote(value: Any, secrets: Iterable[str], limit: int = 200) -> str:
    """`value` one-lined, every secret replaced by `***`, and only then bounded to `limit`:
    cutting first could split a secret and leave its prefix behind, out of the scrubber's
    reach. Each secret is matched on the raw text and again on the one-lined text."""
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
    """`[HIGH] checkout: title — summary`: one member of a group, one line, bounded."""
    service = one_line(member.get("service") or "", 60)
    title = one_line(member.get("title") or member.get("alert_id") or "", 300)
    summary = one_line(member.get("summary") or "", 300)
    text = f"[{severity_of(member).upper()}] " + (f"{service}: " if service else "") + title
    if summary and summary != title:
        text += f" — {summary}"
    return truncate(text, limit)


def _group_head(alert: Alert, members: list[dict[str, Any]]) -> str:
    """`3 alerts: service=checkout`: the group's size and its labels."""
    labels = (alert.get("group") or {}).get("labels") or {}
    where = (
        ", ".join(f"{k}={v}" for k, v in labels.items() if v is not None)
        if isinstance(labels, dict)
        else ""
    )
    noun = "alert" if len(members) == 1 else "alerts"
    return one_line(f"{len(members)} {noun}" + (f": {where}" if where else ""), 300)


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
        return truncate(f"{head} — " + "; ".join(member_line(m, 400) for m in members), limit)
    transition = one_line(alert.get("transition") or "", 20).upper()
    service = one_line(alert.get("service") or "", 60)
    title = one_line(alert.get("title") or alert.get("alert_id") or "", 300)
    summary = one_line(alert.get("summary") or "", 2000)
    head = f"[{severity_of(alert).upper()}] {transition}"
    if service:
        head += f" {service}:"
    text = f"{head} {title}"
    if summary and summary != title:
        text += f" — {summary}"
    return truncate(text, limit)


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
