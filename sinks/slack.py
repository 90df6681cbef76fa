"""Slack incoming-webhook sink: one Block Kit message per alert transition.

Layout: a header (`FIRING [CRITICAL] title`), then a colour-barred attachment (colour by
severity; green once resolved) holding the summary, fields (severity, service, status,
count, first/last seen, ...), notes, evidence and a context line.

Event text is hostile, so every piece of it is escaped for mrkdwn (`&`, `<`, `>` become
entities: no `<!channel>`, `<@U123>`, `<!here>` or `<http://evil|click>` can form), bare
`@channel`/`@here`/`@everyone` get a zero-width space after the `@`, text objects are
`verbatim` (no auto-linking), unfurling is off, and everything is cut to Slack's limits
(header 150, section text 3000, field 2000) without splitting an entity. The webhook URL
is a secret: only its host is ever shown.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from sinks.base import Alert
from sinks.http import check_answer, post, url_destination, url_secrets
from sinks.links import LINK_LABELS
from sinks.text import (
    ELLIPSIS,
    alert_line,
    bounded_json,
    color_for,
    context_line,
    fact_rows,
    facts_of,
    group_members,
    heading,
    human_utc,
    json_bytes,
    links_of,
    member_line,
    one_line,
    severity_of,
)

__all__ = ["SlackSink", "slack_escape"]

HEADER_MAX = 150
TEXT_MAX = 3000
FIELD_MAX = 2000
CONTEXT_MAX = 500
FALLBACK_MAX = 1000

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_ESCAPE = re.compile(r"[&<>]")
_BROADCAST = re.compile(r"@(channel|here|everyone)", re.IGNORECASE)


def slack_escape(text: Any, limit: int) -> str:
    """`text` made inert for Slack mrkdwn and at most `limit` characters once escaped."""
    raw = "" if text is None else str(text)
    raw = _BROADCAST.sub("@\u200b\\1", raw)
    escaped = _ESCAPE.sub(lambda m: _ENTITIES[m.group()], raw)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: max(limit - 1, 0)]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]  # never leave half an entity
    return cut + ELLIPSIS


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _group_list(members: list[dict[str, Any]]) -> dict[str, Any]:
    """One section listing a group's alerts, a line each, within Slack's text limit."""
    shown: list[str] = []
    size = 0
    for n, member in enumerate(members):
        line = "• " + slack_escape(member_line(member, 500), 500)
        link = member.get("link")
        if isinstance(link, str) and link.startswith(("https://", "http://")):
            line += f" <{slack_escape(link, 2000)}|open>"
        if size + len(line) + 1 > TEXT_MAX - 40:
            shown.append(f"…and {len(members) - n} more")
            break
        shown.append(line)
        size += len(line) + 1
    return {"type": "section", "text": _mrkdwn("\n".join(shown))}


def _links(alert: Alert) -> dict[str, Any] | None:
    """`Open alert · Issue · Service · Acknowledge · Silence · Chart`, as Slack links."""
    links = links_of(alert)
    if not links:
        return None
    shown: list[str] = []
    for name, url in links.items():  # whole links only, within Slack's text limit
        link = f"<{slack_escape(url, 2000)}|{LINK_LABELS[name]}>"
        if len(" · ".join([*shown, link])) > TEXT_MAX:
            break
        shown.append(link)
    return {"type": "section", "text": _mrkdwn(" · ".join(shown))} if shown else None


def _field(label: str, value: Any) -> dict[str, Any]:
    prefix = f"*{label}*\n"
    return _mrkdwn(prefix + slack_escape(one_line(value, FIELD_MAX), FIELD_MAX - len(prefix)))


class SlackSink:
    """Posts Block Kit messages to one Slack incoming webhook."""

    channel = "slack"

    def __init__(self, session: aiohttp.ClientSession, webhook_url: str) -> None:
        self._session = session
        self._url = webhook_url
        self.destination = url_destination(webhook_url)

    def __repr__(self) -> str:
        return f"SlackSink(destination={self.destination!r})"

    def render(self, alert: Alert) -> dict[str, Any]:
        """The JSON body Slack receives for `alert` (one message per group, if grouped)."""
        members = group_members(alert)
        if members:
            return self._message(alert, [_group_list(members)])
        severity = severity_of(alert)
        title = one_line(alert.get("title") or alert.get("alert_id"), 1000)
        summary = str(alert.get("summary") or "").strip() or title or "(no summary)"

        fields = [
            _field("Severity", severity.upper()),
            _field("Service", alert.get("service") or "-"),
            _field("Status", alert.get("status") or "-"),
        ]
        rows = fact_rows(alert)
        if rows:  # a worded alert: its figures say more than count and times
            fields += [_field(label, value) for label, value in rows]
        else:
            count = alert.get("count")
            fields += [
                _field("Count", count if count is not None else "-"),
                _field("First seen", human_utc(alert.get("first_seen"))),
                _field("Last seen", human_utc(alert.get("last_seen"))),
            ]
        if alert.get("level"):
            fields.append(_field("Level", alert.get("level")))
        if alert.get("author"):
            fields.append(_field("By", alert.get("author")))

        details: list[dict[str, Any]] = [
            {"type": "section", "text": _mrkdwn(slack_escape(summary, TEXT_MAX))},
            {"type": "section", "fields": fields[:10]},  # Slack's limit
        ]
        if alert.get("notes"):
            prefix = "*Notes*\n"
            text = prefix + slack_escape(alert["notes"], TEXT_MAX - len(prefix))
            details.append({"type": "section", "text": _mrkdwn(text)})
        if alert.get("evidence") and not facts_of(alert):  # worded alerts show figures
            evidence = slack_escape(bounded_json(alert["evidence"], TEXT_MAX), TEXT_MAX - 20)
            details.append({"type": "section", "text": _mrkdwn(f"*Evidence*\n```{evidence}```")})
        return self._message(alert, details)

    def _message(self, alert: Alert, details: list[dict[str, Any]]) -> dict[str, Any]:
        """Header, the detail blocks and the context line, in Slack's envelope."""
        header = slack_escape(heading(alert), HEADER_MAX)
        links = _links(alert)
        details = [
            *details,
            *([links] if links else []),
            {
                "type": "context",
                "elements": [_mrkdwn(slack_escape(context_line(alert), CONTEXT_MAX))],
            },
        ]
        return {
            "text": slack_escape(alert_line(alert, FALLBACK_MAX), FALLBACK_MAX),
            "blocks": [{"type": "header", "text": {"type": "plain_text", "text": header}}],
            "attachments": [{"color": color_for(alert), "blocks": details}],
            "unfurl_links": False,
            "unfurl_media": False,
        }

    async def send(self, alert: Alert) -> None:
        """POST the message; 400/403 non-retryable, 404/410 webhook gone, 429/5xx retryable."""
        answer = await post(
            self._session,
            self._url,
            body=json_bytes(self.render(alert)),
            headers={"Content-Type": "application/json"},
        )
        check_answer(answer, ok=(200,), gone=(404, 410), secrets=url_secrets(self._url))
