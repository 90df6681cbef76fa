"""PagerDuty Events API v2 sink: trigger, acknowledge and resolve one incident per alert.

Every transition of an alert shares `dedup_key` = the alert id (hashed when longer than
PagerDuty's 255 characters), so PagerDuty folds them into one incident: firing, escalated,
updated, rerouted and repeated trigger (re-triggering an open incident just adds to its
log), acknowledged acknowledges, resolved resolves. The routing key is a secret: it never
appears in a repr, a log line or a reason.
"""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp

from sinks.base import Alert
from sinks.http import check_answer, post, url_destination
from sinks.links import LINK_LABELS
from sinks.text import (
    context_line,
    fact_rows,
    headline,
    iso_utc,
    json_bytes,
    links_of,
    one_line,
    severity_of,
)

__all__ = ["DEFAULT_EVENTS_URL", "PagerDutySink", "event_action", "pd_severity"]

DEFAULT_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255
DETAILS_JSON_MAX = 32_000  # keep events far below PagerDuty's 512 KB limit

_ACTIONS = {"acknowledged": "acknowledge", "resolved": "resolve"}
_SEVERITIES = {
    "critical": "critical",
    "high": "error",
    "medium": "warning",
    "warning": "warning",
    "low": "info",
    "info": "info",
}


def event_action(alert: Alert) -> str:
    """trigger | acknowledge | resolve for the alert's transition (status as fallback)."""
    action = _ACTIONS.get(str(alert.get("transition") or ""))
    if action is None:
        action = _ACTIONS.get(str(alert.get("status") or ""), "trigger")
    return action


def pd_severity(severity: str) -> str:
    """Our severity on PagerDuty's scale: critical | error | warning | info."""
    return _SEVERITIES.get(severity, "warning")


def dedup_key(alert_id: str) -> str:
    """The alert id, or its sha256 when too long for PagerDuty."""
    if 0 < len(alert_id) <= DEDUP_KEY_MAX:
        return alert_id
    return "sha256:" + hashlib.sha256(alert_id.encode("utf-8", "surrogatepass")).hexdigest()


def _details(alert: Alert) -> dict[str, Any]:
    details = {
        "alert_id": alert.get("alert_id"),
        "transition": alert.get("transition"),
        "seq": alert.get("seq"),
        "level": alert.get("level"),
        "severity": alert.get("severity"),
        "status": alert.get("status"),
        "summary": alert.get("summary"),
        "count": alert.get("count"),
        "first_seen": iso_utc(alert.get("first_seen")),
        "last_seen": iso_utc(alert.get("last_seen")),
        "key": alert.get("key"),
        "labels": alert.get("labels") or {},
        "notes": alert.get("notes"),
        "author": alert.get("author"),
        "evidence": alert.get("evidence"),
    }
    rows = fact_rows(alert)
    if rows:  # a worded alert's figures, readable in PagerDuty's incident view
        details = {**{label: value for label, value in rows}, **details}
        details["context"] = context_line(alert)
    if len(json_bytes(details)) > DETAILS_JSON_MAX:
        evidence = json_bytes(details.pop("evidence")).decode("utf-8", "replace")
        details["evidence_truncated"] = evidence[: DETAILS_JSON_MAX // 4]
        details["summary"] = one_line(details.get("summary"), DETAILS_JSON_MAX // 4)
        details["labels"] = {"truncated": True}
    return details


class PagerDutySink:
    """Sends Events API v2 events for one routing key (integration key)."""

    channel = "pagerduty"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        routing_key: str,
        events_url: str = DEFAULT_EVENTS_URL,
    ) -> None:
        self._session = session
        self._routing_key = routing_key
        self._url = events_url
        self.destination = url_destination(events_url)

    def __repr__(self) -> str:
        return f"PagerDutySink(destination={self.destination!r})"

    def render(self, alert: Alert, *, with_key: bool = False) -> dict[str, Any]:
        """The event body (routing key masked unless `with_key`: only `send` needs it)."""
        action = event_action(alert)
        event: dict[str, Any] = {
            "routing_key": self._routing_key if with_key else "***",
            "event_action": action,
            "dedup_key": dedup_key(str(alert.get("alert_id") or alert.get("id") or "")),
        }
        if action == "trigger":
            service = one_line(alert.get("service"), 255)
            payload: dict[str, Any] = {
                "summary": headline(alert, SUMMARY_MAX),
                "source": service or "prodmon",
                "severity": pd_severity(severity_of(alert)),
                "component": one_line((alert.get("labels") or {}).get("endpoint") or service, 255)
                or None,
                "group": service or None,
                "class": one_line(alert.get("rule"), 255) or None,
                "custom_details": _details(alert),
            }
            timestamp = iso_utc(alert.get("last_seen") or alert.get("ts"))
            if timestamp:
                payload["timestamp"] = timestamp
            event["payload"] = {k: v for k, v in payload.items() if v is not None}
            event["client"] = "prodmon"
            links = links_of(alert)
            if links:
                event["client_url"] = links.get("alert", next(iter(links.values())))
                event["links"] = [
                    {"href": url, "text": LINK_LABELS[name]} for name, url in links.items()
                ]
        return event

    async def send(self, alert: Alert) -> None:
        """POST the event; 202 is success, 400 non-retryable, 429/5xx retryable."""
        body = json_bytes(self.render(alert, with_key=True))
        answer = await post(
            self._session, self._url, body=body, headers={"Content-Type": "application/json"}
        )
        check_answer(answer, ok=(200, 201, 202), secrets=(self._routing_key,))
