"""Wire type of the `issues` topic: one record per issue lifecycle update, keyed by issue id.

Every record carries the full issue, so a consumer can keep only the latest record per key.
Records are built from the fingerprint stage's state and nothing else, so a record re-emitted
after a crash is identical, and `update_id` names it: re-deliveries share the id.

Fields (ISSUE_FIELDS):
    type               "new" | "count" | "regressed" | "resolved"
    update_id          deterministic id of this update (see `update_id`)
    issue_id           the fingerprint id (32 hex chars); also the record key
    title              "{exception_type}: {message_template}", bounded
    exception_type     exception type of the grouped events
    message_template   the parameterised message
    status             "new" | "active" | "resolved" | "regressed"
    count              events counted so far
    first_seen         event time of the earliest event, epoch ms
    last_seen          event time of the latest event, epoch ms
    ts                 event time this update is about: resolved_at for "resolved", else last_seen
    updated_at         processing time of this update, epoch ms (orders updates with equal counts)
    services           services that reported it (bounded)
    releases           releases that reported it (bounded)
    hosts              the first 20 distinct hosts that reported it (records written before
                       hosts were kept have none)
    host_count         distinct hosts that reported it: exact up to 20, estimated beyond
                       (within a few %), from bounded state
    first_release      release of the first event, or None
    severity           highest severity seen: critical | high | medium | low
    sample             one event (bounded size)
    resolved_at        epoch ms of the last resolve, or None
    resolution_notes   notes given with the last resolve, or None
    resolved_by        author of the last resolve, or None
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ISSUE_FIELDS",
    "ISSUE_KINDS",
    "ISSUE_STATUSES",
    "InvalidIssue",
    "issue_record",
    "update_id",
    "validate_issue",
]

ISSUE_KINDS = ("new", "count", "regressed", "resolved")
ISSUE_STATUSES = ("new", "active", "resolved", "regressed")
ISSUE_FIELDS = (
    "type",
    "update_id",
    "issue_id",
    "title",
    "exception_type",
    "message_template",
    "status",
    "count",
    "first_seen",
    "last_seen",
    "ts",
    "updated_at",
    "services",
    "releases",
    "hosts",
    "host_count",
    "first_release",
    "severity",
    "sample",
    "resolved_at",
    "resolution_notes",
    "resolved_by",
)


class InvalidIssue(Exception):
    """An `issues` record broke the wire contract."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def update_id(kind: str, state: Any) -> str:
    """Deterministic id of one update: new once per issue; others by count or resolve time."""
    if kind == "new":
        return f"{state.issue_id}:new"
    if kind == "resolved":
        return f"{state.issue_id}:resolved:{state.resolved_at}"
    return f"{state.issue_id}:{kind}:{state.count}"


def issue_record(kind: str, state: Any) -> dict[str, Any]:
    """The `issues` value for one update of `state` (a stages.fingerprint.IssueState)."""
    return {
        "type": kind,
        "update_id": update_id(kind, state),
        "issue_id": state.issue_id,
        "title": state.title,
        "exception_type": state.exception_type,
        "message_template": state.message_template,
        "status": state.status,
        "count": state.count,
        "first_seen": state.first_seen,
        "last_seen": state.last_seen,
        "ts": state.resolved_at if kind == "resolved" else state.last_seen,
        "updated_at": state.updated_at,
        "services": list(state.services),
        "releases": list(state.releases),
        "hosts": list(state.hosts),
        "host_count": state.host_count,
        "first_release": state.first_release,
        "severity": state.severity,
        "sample": state.sample,
        "resolved_at": state.resolved_at,
        "resolution_notes": state.resolution_notes,
        "resolved_by": state.resolved_by,
    }


_INT_FIELDS = ("count", "first_seen", "last_seen", "updated_at")
_STR_FIELDS = ("update_id", "issue_id", "title", "exception_type", "message_template", "severity")


def validate_issue(obj: Any) -> dict[str, Any]:
    """Check a decoded `issues` value; returns it, or raises InvalidIssue naming the field."""
    if type(obj) is not dict:
        raise InvalidIssue("$", f"an issue record must be an object, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind not in ISSUE_KINDS:
        raise InvalidIssue("type", f"type must be one of {', '.join(ISSUE_KINDS)}, got {kind!r}")
    status = obj.get("status")
    if status not in ISSUE_STATUSES:
        raise InvalidIssue(
            "status", f"status must be one of {', '.join(ISSUE_STATUSES)}, got {status!r}"
        )
    for name in _STR_FIELDS:
        if type(obj.get(name)) is not str:
            raise InvalidIssue(name, f"{name} must be a string, got {obj.get(name)!r}")
    for name in _INT_FIELDS:
        if type(obj.get(name)) is not int:
            raise InvalidIssue(name, f"{name} must be an integer, got {obj.get(name)!r}")
    for name in ("services", "releases"):
        if type(obj.get(name)) is not list:
            raise InvalidIssue(name, f"{name} must be an array, got {obj.get(name)!r}")
    resolved_at = obj.get("resolved_at")
    if resolved_at is not None and type(resolved_at) is not int:
        raise InvalidIssue(
            "resolved_at", f"resolved_at must be null or an integer, got {resolved_at!r}"
        )
    return obj
