"""Links from a notification back to the dashboard (`[dashboard] external_url`).

`with_links(record, base_url)` returns the alert transition record with `links`: the
alert's page on the dashboard (where it can be acknowledged and silenced), the issue's
page for an issue alert, the service's page, and the chart of a metric alert. Every
member of a group message gets its own `link`. Ids from events travel only as URL-encoded
query values (alerts by their opaque handle, ops/web/handles.py), so no event text can
bend a link; the sinks still escape links for their channel.

Pure: the notifier calls it per delivery job, the sinks read `links`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from schemas.handles import action_handle
from sinks.base import Alert

__all__ = ["LINK_LABELS", "alert_links", "with_links"]

# What each link is called in a message, in the order the messages show them.
LINK_LABELS = {
    "alerts": "All alerts",
    "alert": "Open alert",
    "issue": "Issue",
    "service": "Service",
    "ack": "Acknowledge",
    "silence": "Silence",
    "chart": "Chart",
}


def _url(base: str, path: str, **query: Any) -> str:
    pairs = {k: str(v) for k, v in query.items() if v not in (None, "")}
    return base + path + ("?" + urlencode(pairs) if pairs else "")


def alert_links(alert: Alert, base_url: str) -> dict[str, str]:
    """The links of one alert record (see the module docstring)."""
    base = base_url.rstrip("/")
    alert_id = str(alert.get("alert_id") or "")
    links: dict[str, str] = {}
    if alert_id:
        page = _url(base, "/alert", id=action_handle(alert_id))
        links["alert"] = page
        if alert.get("transition") != "resolved":
            links["ack"] = page + "#ack"
            links["silence"] = page + "#silence"
    labels = alert.get("labels")
    labels = labels if isinstance(labels, dict) else {}
    facts = alert.get("facts")
    facts = facts if isinstance(facts, dict) else {}
    issue_id = facts.get("issue_id") or labels.get("fingerprint")
    if issue_id:
        links["issue"] = _url(base, "/issue", id=issue_id)
    service = alert.get("service")
    if service and service != "-":
        endpoint = labels.get("endpoint")
        links["service"] = _url(
            base, "/service", name=service, endpoint=endpoint if endpoint != "*" else None
        )
    if alert_id and facts.get("kind") == "metric":
        links["chart"] = _url(base, "/alert/chart.svg", id=action_handle(alert_id))
    return {name: links[name] for name in LINK_LABELS if name in links}


def with_links(alert: Alert, base_url: str | None) -> Alert:
    """`alert` with its `links` (a group's: the alerts page and the service, and a `link`
    per member); unchanged without a base."""
    if not base_url:
        return alert
    linked = {**alert, "links": alert_links(alert, base_url)}
    group = alert.get("group")
    if isinstance(group, dict) and isinstance(group.get("alerts"), list):
        base = base_url.rstrip("/")
        # A group message is about all its members: the alerts page and their service,
        # not the leader's own pages.
        service = linked["links"].get("service")
        linked["links"] = {"alerts": base + "/alerts", **({"service": service} if service else {})}
        members = [
            {**m, "link": _url(base, "/alert", id=action_handle(str(m.get("alert_id") or "")))}
            if isinstance(m, dict)
            else m
            for m in group["alerts"]
        ]
        linked["group"] = {**group, "alerts": members}
    return linked
