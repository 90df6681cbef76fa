"""Email sink (aiosmtplib): one multipart text + HTML message per alert transition.

A metric alert's HTML part shows a small chart of its metric around the incident, inline:
a PNG (sinks/chart_png.py) drawn from the points the alert carries, in a multipart/related
with the HTML, referenced as `<img src="cid:...">` (mail clients show no SVG and fetch no
remote image by default, and the dashboard's chart needs its token). Its Content-ID derives
from the transition id, so a retried message is byte-for-byte the same.

Transport: STARTTLS (default), implicit TLS, or plain (`none`, meant for loopback relays);
AUTH when a username and password are configured. The envelope recipients are always the
configured ones, never derived from headers.

Header safety: event text reaches exactly one header, the Subject, and only after every
control character (CR, LF, ...) became a space; the message is an `EmailMessage` with the
SMTP policy, which refuses CR/LF in any header value, as a second line of defence. The HTML
part escapes every event-supplied string.

Threading: `Message-ID` is derived from the transition id (unique per notification, stable
across retries), and `In-Reply-To`/`References` point at an id derived from the alert id,
so mail clients group all transitions of one alert; the Subject stays the same for the
alert's life (no transition in it) because some clients also thread by Subject.
"""

from __future__ import annotations

import hashlib
import html
import ssl
from collections.abc import Sequence
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any, Literal

import aiosmtplib

from alerting.alert_text import format_value, metric_label
from sinks.base import Alert, DeliveryError
from sinks.chart_png import incident_png
from sinks.http import describe_error
from sinks.links import LINK_LABELS
from sinks.text import (
    color_for,
    context_line,
    fact_rows,
    facts_of,
    group_members,
    header_token,
    heading,
    human_utc,
    json_bytes,
    links_of,
    member_line,
    one_line,
    scrubbed_quote,
    severity_of,
    truncate,
)

__all__ = ["EmailSink", "TlsMode", "message_id", "thread_id"]

TlsMode = Literal["starttls", "tls", "none"]
SUBJECT_MAX = 200
SUMMARY_MAX = 10_000
EVIDENCE_MAX = 20_000


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def message_id(transition_id: str, domain: str) -> str:
    """The Message-ID of one transition's mail: same on every retry."""
    return f"<{_digest(transition_id)}.prodmon@{domain}>"


def thread_id(alert_id: str, domain: str) -> str:
    """The id every mail of one alert refers to (In-Reply-To, References)."""
    return f"<{_digest(alert_id)}.alert.prodmon@{domain}>"


def _rows(alert: Alert) -> list[tuple[str, str]]:
    if facts_of(alert):  # worded: figures first, identifiers go to the context line
        rows = fact_rows(alert)
        rows += [
            ("Severity", severity_of(alert).upper()),
            ("Service", one_line(alert.get("service") or "-", 200)),
            ("Status", one_line(alert.get("status") or "-", 50)),
        ]
        if alert.get("level"):
            rows.append(("Level", one_line(alert.get("level"), 10)))
        if alert.get("author"):
            rows.append(("By", one_line(alert.get("author"), 200)))
        return rows
    labels = alert.get("labels") or {}
    rows = [
        ("Severity", severity_of(alert).upper()),
        ("Service", one_line(alert.get("service") or "-", 200)),
        ("Status", one_line(alert.get("status") or "-", 50)),
        ("Transition", one_line(alert.get("transition") or "-", 50)),
        ("Count", one_line(alert.get("count"), 30) or "-"),
        ("First seen", human_utc(alert.get("first_seen"))),
        ("Last seen", human_utc(alert.get("last_seen"))),
        ("Level", one_line(alert.get("level"), 10) or "0"),
        ("Rule", one_line(alert.get("rule") or "-", 200)),
        ("Key", one_line(alert.get("key") or "-", 500)),
        ("Alert", one_line(alert.get("alert_id") or "-", 500)),
    ]
    if isinstance(labels, dict) and labels:
        text = ", ".join(f"{k}={v}" for k, v in sorted(labels.items(), key=lambda kv: str(kv[0])))
        rows.append(("Labels", one_line(text, 2000)))
    if alert.get("author"):
        rows.append(("By", one_line(alert.get("author"), 200)))
    return rows


def _evidence(alert: Alert) -> str:
    if not alert.get("evidence") or facts_of(alert):
        return ""
    text = json_bytes(alert["evidence"], sort_keys=True, indent=True).decode("utf-8", "replace")
    return truncate(text, EVIDENCE_MAX)


class Chart:
    """The inline chart of one message: its PNG, Content-ID and the words beside it."""

    __slots__ = ("caption", "cid", "png")

    def __init__(self, png: bytes, cid: str, caption: str) -> None:
        self.png, self.cid, self.caption = png, cid, caption


def chart_for(alert: Alert, cid: str) -> Chart | None:
    """The chart of a metric alert from its `points`: the threshold (or the anomaly's
    baseline) dashed, the incident shaded from `since` to its end (resolved) or the last
    point. None for other alerts, or with fewer than two points."""
    facts = facts_of(alert)
    metric = str(facts.get("metric") or "")
    points = alert.get("points")
    if facts.get("kind") != "metric" or not metric or not isinstance(points, list):
        return None
    limit, word = facts.get("threshold"), "threshold"
    if not isinstance(limit, int | float) or isinstance(limit, bool):
        limit, word = facts.get("baseline"), "baseline"
    limit = float(limit) if isinstance(limit, int | float) and not isinstance(limit, bool) else None
    started = facts.get("since") if isinstance(facts.get("since"), int) else None
    ended = None
    lasted = facts.get("duration_ms")
    if alert.get("transition") == "resolved" and started is not None and isinstance(lasted, int):
        ended = started + lasted
    png = incident_png(
        points,
        limit=limit,
        started=started,
        ended=ended,
        label=lambda v: format_value(metric, v),
    )
    if png is None:
        return None
    times = [p[0] for p in points if isinstance(p, list) and p and isinstance(p[0], int)]
    span = f"{human_utc(min(times))[11:16]} to {human_utc(max(times))[11:16]} UTC" if times else ""
    caption = f"{metric_label(metric)}, {span}".rstrip(", ")
    if limit is not None:
        caption += f"; dashed: {word} {format_value(metric, limit)}"
    if started is not None:
        caption += "; shaded: the incident"
    return Chart(png, cid, caption)


def _link(member: dict[str, Any]) -> str:
    """A group member's dashboard link (sinks/links.py), or ``."""
    link = member.get("link")
    return link if isinstance(link, str) and link.startswith(("https://", "http://")) else ""


class EmailSink:
    """Mails alert transitions to a fixed list of recipients through one SMTP server."""

    channel = "email"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        recipients: Sequence[str],
        tls: TlsMode = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = tuple(recipients)
        self.tls = tls
        self._username = username
        self._password = password
        self._timeout_s = timeout_s
        self._tls_context = tls_context
        self.destination = f"{host}:{port}"
        self._domain = parseaddr(sender)[1].rpartition("@")[2] or "prodmon.local"

    def __repr__(self) -> str:
        return (
            f"EmailSink(destination={self.destination!r}, tls={self.tls!r}, "
            f"recipients={len(self.recipients)})"
        )

    def subject(self, alert: Alert) -> str:
        """One line, no control characters, bounded; stable for the alert's life (a group
        notification's names the group)."""
        if group_members(alert):
            return one_line(f"[prodmon] {heading(alert)}", SUBJECT_MAX)
        service = one_line(alert.get("service"), 100)
        title = one_line(alert.get("title") or alert.get("alert_id"), SUBJECT_MAX)
        where = f"{service}: " if service and not facts_of(alert) else ""
        return one_line(f"[prodmon] [{severity_of(alert).upper()}] {where}{title}", SUBJECT_MAX)

    def build_message(self, alert: Alert) -> EmailMessage:
        """The complete message for `alert` (multipart/alternative: text, then HTML; the
        HTML with its chart in a multipart/related when the alert has one)."""
        transition = str(alert.get("transition") or "")
        alert_id = str(alert.get("alert_id") or "")
        transition_id = str(alert.get("id") or f"{alert_id}|{alert.get('seq')}|{transition}")
        msg = EmailMessage(policy=policy.SMTP)
        msg["Subject"] = self.subject(alert)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        ts = alert.get("ts")
        msg["Date"] = formatdate(ts / 1000 if isinstance(ts, int | float) else None, usegmt=True)
        msg["Message-ID"] = message_id(transition_id, self._domain)
        root = thread_id(alert_id, self._domain)
        msg["In-Reply-To"] = root
        msg["References"] = root
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Prodmon-Alert"] = header_token(alert_id)
        msg["X-Prodmon-Transition"] = header_token(transition or "-")
        msg.set_content(self._text(alert))
        chart = chart_for(alert, f"chart.{_digest(transition_id)}@{self._domain}")
        msg.add_alternative(self._html(alert, chart), subtype="html")
        if chart is not None:
            rich = msg.get_body(("html",))
            assert rich is not None
            rich.add_related(
                chart.png,
                "image",
                "png",
                cid=f"<{chart.cid}>",
                disposition="inline",
                filename="chart.png",
            )
        return msg

    def render(self, alert: Alert) -> dict[str, Any]:
        """What would be sent: envelope, headers, both bodies and the inline images."""
        msg = self.build_message(alert)
        text, rich = (msg.get_body((kind,)) for kind in ("plain", "html"))
        images = [
            {"cid": str(part["Content-ID"]), "type": part.get_content_type(), "bytes": len(data)}
            for part in msg.walk()
            if part.get_content_maintype() == "image"
            for data in (part.get_content(),)
        ]
        return {
            "from": self.sender,
            "to": list(self.recipients),
            "headers": {k: str(v) for k, v in msg.items()},
            "text": text.get_content() if text is not None else "",
            "html": rich.get_content() if rich is not None else "",
            "images": images,
        }

    def _text(self, alert: Alert) -> str:
        members = group_members(alert)
        links = links_of(alert)
        if members:
            listed = []
            for m in members:
                listed.append(f"- {member_line(m, SUMMARY_MAX)}")
                if _link(m):
                    listed.append(f"  {_link(m)}")
            tail = ["", context_line(alert), "", "-- ", "prodmon"]
            return "\n".join([heading(alert), "", *listed, *tail]) + "\n"
        lines = [heading(alert), ""]
        summary = truncate(str(alert.get("summary") or ""), SUMMARY_MAX)
        if summary:
            lines += [summary, ""]
        lines += [f"{name}: {value}" for name, value in _rows(alert)]
        if alert.get("notes"):
            lines += ["", "Notes:", truncate(str(alert["notes"]), SUMMARY_MAX)]
        evidence = _evidence(alert)
        if evidence:
            lines += ["", "Evidence:", evidence]
        if links:
            lines += [""] + [f"{LINK_LABELS[name]}: {url}" for name, url in links.items()]
        if facts_of(alert):
            lines += ["", context_line(alert)]
        lines += ["", "-- ", "prodmon"]
        return "\n".join(lines) + "\n"

    def _html(self, alert: Alert, chart: Chart | None = None) -> str:
        esc = html.escape
        color = color_for(alert)
        rows = "".join(
            f'<tr><th align="left" style="padding:2px 12px 2px 0">{esc(name)}</th>'
            f"<td>{esc(value)}</td></tr>"
            for name, value in _rows(alert)
        )
        parts = [
            '<!DOCTYPE html><html><body style="font-family:sans-serif">',
            f'<div style="border-left:6px solid {color};padding-left:12px">',
            f"<h2>{esc(heading(alert))}</h2>",
        ]
        members = group_members(alert)
        links = links_of(alert)
        if members:
            items = "".join(
                f"<li>{esc(member_line(m, SUMMARY_MAX))}"
                + (f' <a href="{esc(_link(m))}">open</a>' if _link(m) else "")
                + "</li>"
                for m in members
            )
            context = f'<p style="color:#777"><small>{esc(context_line(alert))}</small></p>'
            parts.append(
                f"<ul>{items}</ul>{context}<p><small>prodmon</small></p></div></body></html>"
            )
            return "".join(parts)
        summary = truncate(str(alert.get("summary") or ""), SUMMARY_MAX)
        if summary:
            parts.append(f'<p style="white-space:pre-wrap">{esc(summary)}</p>')
        parts.append(f"<table>{rows}</table>")
        if alert.get("notes"):
            notes = esc(truncate(str(alert["notes"]), SUMMARY_MAX))
            parts.append(f'<h3>Notes</h3><p style="white-space:pre-wrap">{notes}</p>')
        evidence = _evidence(alert)
        if evidence:
            parts.append(f"<h3>Evidence</h3><pre>{esc(evidence)}</pre>")
        if chart is not None:  # inline, drawn from the alert's points (sinks/chart_png.py)
            parts.append(
                f'<p><img src="cid:{esc(chart.cid)}" width="480" height="160" '
                f'alt="{esc(one_line(alert.get("title"), 200))}: {esc(chart.caption)}" '
                'style="display:block;border:0">'
                f'<small style="color:#777">{esc(chart.caption)}</small></p>'
            )
        if links:
            anchors = " · ".join(
                f'<a href="{esc(url)}">{esc(LINK_LABELS[name])}</a>' for name, url in links.items()
            )
            parts.append(f"<p>{anchors}</p>")
        if facts_of(alert):
            parts.append(f'<p style="color:#777"><small>{esc(context_line(alert))}</small></p>')
        parts.append("<p><small>prodmon</small></p></div></body></html>")
        return "".join(parts)

    async def send(self, alert: Alert) -> None:
        """One SMTP transaction; 4xx replies and network errors retryable, 5xx not."""
        try:
            message = self.build_message(alert)
        except ValueError as exc:  # only config could do this (event text is one-lined)
            raise DeliveryError("message refused: unsafe header value", retryable=False) from exc
        try:
            await aiosmtplib.send(
                message,
                sender=parseaddr(self.sender)[1] or self.sender,
                recipients=list(self.recipients),
                hostname=self.host,
                port=self.port,
                username=self._username,
                password=self._password,
                use_tls=self.tls == "tls",
                start_tls=self.tls == "starttls",
                timeout=self._timeout_s,
                tls_context=self._tls_context,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({err.code for err in exc.recipients})
            retryable = all(400 <= code < 500 for code in codes)
            raise DeliveryError(
                f"SMTP recipients refused ({', '.join(map(str, codes))})",
                retryable=retryable,
                status=codes[-1] if codes else None,
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            detail = scrubbed_quote(exc.message, (self._password, self._username), 200)
            raise DeliveryError(
                f"SMTP {exc.code}: {detail}", retryable=400 <= exc.code < 500, status=exc.code
            ) from exc
        except (aiosmtplib.SMTPTimeoutError, TimeoutError) as exc:
            raise DeliveryError(f"SMTP timeout: {type(exc).__name__}", retryable=True) from exc
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            reason = f"connection failed: {describe_error(exc)}"
            raise DeliveryError(reason, retryable=True) from exc
        except aiosmtplib.SMTPException as exc:  # e.g. STARTTLS or AUTH not offered
            raise DeliveryError(f"SMTP error: {type(exc).__name__}", retryable=False) from exc
