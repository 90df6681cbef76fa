"""HTML pages of the dashboard, from the plain data of state.py. Pure: strings in, HTML out.

Every value that came from an event (titles, messages, frames, services, endpoints, ids,
notes, reasons...) is attacker-controlled: it goes through `t()` (control characters
replaced, truncated, HTML-escaped with quotes) and nowhere else: never into a script, a
style, an event handler or an unquoted attribute. Links carry ids only as URL-encoded
query values, themselves escaped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from ops.web import charts
from schemas.handles import action_handle
from schemas.rollups import SERVICE_WIDE
from sinks.text import context_line, fact_rows  # the figures the notifications show

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
ALERT_VIEWS = "alerts,deliveries,commands"
PERCENTILE_COLOURS = (("p50", "#2e86c1"), ("p95", "#d68910"), ("p99", "#c0392b"))
SILENCE_CHOICES = ("30m", "1h", "2h", "8h", "24h")
ISSUE_STATUSES = ("new", "active", "regressed", "resolved")


def t(value: Any, limit: int = 300) -> str:
    """Untrusted text, safe anywhere in element content or a quoted attribute."""
    text = "" if value is None else value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    return escape(_CONTROL.sub(" ", text), quote=True)


def json_object(value: Any) -> dict[str, Any]:
    """`value` if it is a (decoded JSON) object, else an empty one."""
    return value if isinstance(value, dict) else {}


def json_array(value: Any) -> list[Any]:
    """`value` if it is a (decoded JSON) array, else an empty one."""
    return value if isinstance(value, list) else []


def url(path: str, **query: Any) -> str:
    """A same-site link with URL-encoded query values, escaped for an attribute."""
    pairs = {k: str(v) for k, v in query.items() if v is not None}
    return escape(path + ("?" + urlencode(pairs) if pairs else ""), quote=True)


def when(ms: Any) -> str:
    if not isinstance(ms, int | float) or isinstance(ms, bool) or ms <= 0:
        return "-"
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "-"


def num(value: Any, digits: int = 1, unit: str = "") -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    return f"{value:,.{digits}f}{unit}"


def badge(status: Any) -> str:
    word = t(status, 32) or "-"
    css = re.sub(r"[^a-z_]", "", str(status).lower())[:32]
    return f'<span class="badge st-{css}">{word}</span>'


@dataclass(frozen=True)
class Actions:
    """What the viewer may do, and the CSRF field of their forms."""

    enabled: bool  # the dashboard accepts actions at all
    authorized: bool  # this viewer may act
    csrf: str
    login_required: bool


def layout(
    title: str,
    body: str,
    *,
    active: str,
    views: str,
    version: int,
    ready: bool,
    actions: Actions,
) -> str:
    """The full page around `body` (the fragment the live script swaps)."""
    nav = "".join(
        f'<a href="{href}"{" aria-current=page" if name == active else ""}>{name.title()}</a>'
        for name, href in (("overview", "/"), ("issues", "/issues"), ("alerts", "/alerts"))
    )
    if actions.login_required:
        nav += (
            '<form class="inline" method="post" action="/logout">'
            f'<input type="hidden" name="csrf" value="{t(actions.csrf)}">'
            '<button type="submit">Log out</button></form>'
            if actions.authorized
            else '<a href="/login">Log in</a>'
        )
    state = "live idle" if ready else "live off"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>prodmon · {t(title, 120)}</title>"
        '<link rel="stylesheet" href="/static/app.css"></head><body>'
        f'<header><span class="brand">prodmon</span>{nav}'
        f'<span id="live-status" class="{state}">{"connecting" if ready else "restoring"}'
        "</span></header>"
        f'<main id="live" data-views="{t(views)}" data-version="{version}">{body}</main>'
        '<script src="/static/app.js"></script></body></html>'
    )


def _restoring(ready: bool) -> str:
    return (
        ""
        if ready
        else '<p class="banner">Restoring the views from topic history: figures are incomplete '
        "until it finishes.</p>"
    )


def _table(headers: Sequence[str], rows: Sequence[str], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{empty}</p>'
    head = "".join(
        f'<th class="num">{h[1:]}</th>' if h.startswith(">") else f"<th>{h}</th>" for h in headers
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# --- overview ---------------------------------------------------------------------------------


def overview(
    kpis: dict[str, Any], services: list[dict[str, Any]], alerts: list[dict], ready: bool
) -> str:
    active = [a for a in alerts if a.get("status") in ("firing", "acknowledged")]
    cards = [
        ("Services", str(len(services))),
        ("Active alerts", str(len(active))),
        ("Critical alerts (1 h)", str(kpis.get("critical_alerts", 0))),
        ("Active exceptions", str(kpis.get("active_exceptions", 0))),
        ("Exceptions (24 h)", str(kpis.get("total_exceptions_24h", 0))),
        ("SLA status", badge(kpis.get("sla_status", "unknown"))),
    ]
    html = [
        _restoring(ready),
        "<h1>Overview</h1><div class='kpis'>",
        *(f'<div class="kpi">{label}<b>{value}</b></div>' for label, value in cards),
        "</div><h2>Services</h2>",
    ]
    rows = []
    for row in services:
        sla, now = row["sla"] or {}, row["now"] or {}
        rows.append(
            f'<tr data-service="{t(row["service"], 200)}">'
            f'<td><a href="{url("/service", name=row["service"])}">'
            f"{t(row['service'], 200)}</a></td>"
            f"<td>{badge(sla.get('status', 'unknown'))}</td>"
            f'<td class="num">{num(sla.get("availability_pct"), 3, " %")}</td>'
            f'<td class="num">{num(sla.get("error_rate_pct"), 2, " %")}</td>'
            f'<td class="num">{num(sla.get("p50_ms"), 1)}</td>'
            f'<td class="num">{num(sla.get("p95_ms"), 1)}</td>'
            f'<td class="num">{num(sla.get("p99_ms"), 1)}</td>'
            f'<td class="num">{num(sla.get("throughput_rps"), 1)}</td>'
            f'<td class="num">{num(now.get("rps"), 1)}</td>'
            f'<td class="num">{num(now.get("p99_ms"), 1)}</td>'
            f'<td class="num">{row["active_alerts"]}</td></tr>'
        )
    html.append(
        _table(
            [
                "service",
                "SLA",
                ">availability",
                ">error rate",
                ">p50 ms",
                ">p95 ms",
                ">p99 ms",
                ">req/s",
                ">req/s (10 s)",
                ">p99 ms (10 s)",
                ">active alerts",
            ],
            rows,
            "No rollups yet: run the pipeline's windows stage.",
        )
    )
    html.append(
        '<p class="muted small">SLA columns: the last hour of event time before each '
        "service's latest closed window (1 min windows when there are any); "
        "(10 s): the latest 10 s window.</p>"
    )
    html.append("<h2>Active alerts</h2>")
    html.append(
        _table(
            ["severity", "status", "alert", "service", ">level", "last change"],
            [
                f'<tr><td class="sev-{t(a.get("severity"), 16)}">{t(a.get("severity"), 16)}</td>'
                f"<td>{badge(a.get('status'))}</td><td>{t(a.get('title'))}</td>"
                f"<td>{t(a.get('service'), 200)}</td>"
                f'<td class="num">{t(a.get("level"), 8)}</td><td>{when(a.get("ts"))}</td></tr>'
                for a in active[:10]
            ],
            "No active alerts.",
        )
    )
    trend = kpis.get("error_trend") or []
    html.append("<h2>Exceptions, last 7 days</h2>")
    html.append(
        charts.bars(
            [(d["day"], d["events"]) for d in trend],
            width=420,
            height=100,
            title="exceptions per day",
            labels=True,
        )
    )
    html.append("<h2>Top errors</h2>")
    html.append(
        _table(
            [">count", "status", "issue"],
            [
                f'<tr><td class="num">{t(e.get("count"), 20)}</td><td>{badge(e.get("status"))}</td>'
                f'<td><a href="{url("/issue", id=e["issue_id"])}">{t(e.get("title"))}</a></td></tr>'
                for e in (kpis.get("top_errors") or [])[:5]
            ],
            "No issues yet.",
        )
    )
    return "".join(html)


# --- service ------------------------------------------------------------------------------------


def service(data: dict[str, Any], ready: bool) -> str:
    name, endpoint = data["service"], data["endpoint"]
    tabs = [
        f'<a href="{url("/service", name=name)}"'
        f"{' aria-current=page' if endpoint == SERVICE_WIDE else ''}>whole service</a>"
    ]
    for row in data["endpoints"]:
        current = " aria-current=page" if row["endpoint"] == endpoint else ""
        tabs.append(
            f'<a href="{url("/service", name=name, endpoint=row["endpoint"])}"{current}>'
            f"{t(row['endpoint'], 120)}</a>"
        )
    sla = data["sla"] or {}
    html = [
        _restoring(ready),
        f"<h1>Service {t(name, 200)}</h1>",
        f"<p>SLA {badge(sla.get('status', 'unknown'))} · availability "
        f"{num(sla.get('availability_pct'), 3, ' %')} · error rate "
        f"{num(sla.get('error_rate_pct'), 2, ' %')} · p50/p95/p99 "
        f"{num(sla.get('p50_ms'))} / {num(sla.get('p95_ms'))} / {num(sla.get('p99_ms'))} ms · "
        f"{num(sla.get('throughput_rps'))} req/s</p>",
    ]
    for violation in sla.get("violations") or []:
        html.append(f'<p class="small muted">{t(violation.get("recommendation"))}</p>')
    html.append(f'<p class="tabs">{"".join(tabs)}</p>')
    label = "whole service" if endpoint == SERVICE_WIDE else endpoint
    for resolution, points in data["charts"].items():
        lines = [
            (p, colour, [(pt.start, getattr(pt, f"{p}_ms")) for pt in points])
            for p, colour in PERCENTILE_COLOURS
        ]
        html.append(
            f'<div class="chart-wrap" data-resolution="{t(resolution, 8)}">'
            + charts.line_chart(lines, title=f"{name} {label}: latency, {resolution} windows")
            + "</div>"
        )
    html.append("<h2>Endpoints</h2>")
    rows = []
    for row in data["endpoints"]:
        last = row["last"]
        rows.append(
            f'<tr><td><a href="{url("/service", name=name, endpoint=row["endpoint"])}">'
            f"{t(row['endpoint'], 200)}</a></td>"
            f"<td>{t(row['resolution'], 8)} since {when(row['since'])}</td>"
            f'<td class="num">{row["count"]:,}</td>'
            f'<td class="num">{num(row["error_rate_pct"], 2, " %")}</td>'
            f'<td class="num">{row["client_errors"]:,}</td>'
            f'<td class="num">{num(last.p50_ms)}</td><td class="num">{num(last.p95_ms)}</td>'
            f'<td class="num">{num(last.p99_ms)}</td><td class="num">{num(last.max_ms)}</td></tr>'
        )
    html.append(
        _table(
            [
                "endpoint",
                "windows",
                ">requests",
                ">5xx rate",
                ">4xx",
                ">p50 ms",
                ">p95 ms",
                ">p99 ms",
                ">max ms",
            ],
            rows,
            "No endpoints yet.",
        )
    )
    html.append(
        '<p class="muted small">Requests and error rates over the windows kept; percentiles '
        "of the latest window.</p>"
    )
    html.append("<h2>Alerts</h2>")
    html.append(
        _table(
            ["severity", "status", "alert", "last change"],
            [
                f"<tr><td>{t(a.get('severity'), 16)}</td><td>{badge(a.get('status'))}</td>"
                f"<td>{t(a.get('title'))}</td><td>{when(a.get('ts'))}</td></tr>"
                for a in data["alerts"][:20]
            ],
            "No alerts for this service.",
        )
    )
    return "".join(html)


# --- issues -------------------------------------------------------------------------------------


def _trend(
    values: Sequence[int], now_ms: int, width: int = 84, height: int = 22, labels: bool = False
) -> str:
    days = [
        datetime.fromtimestamp((now_ms - (len(values) - 1 - i) * 86_400_000) / 1000, UTC)
        .date()
        .isoformat()
        for i in range(len(values))
    ]
    items = list(zip(days, values, strict=True))
    return charts.bars(items, width=width, height=height, title="events per day", labels=labels)


def _list(values: Any, limit: int = 5) -> str:
    items = [v for v in values or [] if v is not None][:limit]
    more = len(values or []) - len(items)
    return ", ".join(t(v, 80) for v in items) + (f" (+{more})" if more > 0 else "")


def issues(items: list[dict[str, Any]], status: str | None, now_ms: int, ready: bool) -> str:
    tabs = [f'<a href="/issues"{" aria-current=page" if status is None else ""}>all</a>']
    tabs += [
        f'<a href="{url("/issues", status=s)}"{" aria-current=page" if s == status else ""}>{s}</a>'
        for s in ISSUE_STATUSES
    ]
    rows = [
        f'<tr data-issue="{t(i.get("issue_id"), 64)}"><td class="num">{t(i.get("count"), 20)}</td>'
        f"<td>{badge(i.get('status'))}</td>"
        f'<td class="sev-{t(i.get("severity"), 16)}">{t(i.get("severity"), 16)}</td>'
        f'<td><a href="{url("/issue", id=i["issue_id"])}">{t(i.get("title"))}</a></td>'
        f"<td>{_list(i.get('services'))}</td><td>{_list(i.get('releases'))}</td>"
        f"<td>{when(i.get('first_seen'))}</td><td>{when(i.get('last_seen'))}</td>"
        f"<td>{_trend(i['trend'], now_ms)}</td></tr>"
        for i in items[:500]
    ]
    return (
        _restoring(ready)
        + "<h1>Issues</h1>"
        + f'<p class="tabs">{"".join(tabs)}</p>'
        + _table(
            [
                ">count",
                "status",
                "severity",
                "issue",
                "services",
                "releases",
                "first seen",
                "last seen",
                "7 days",
            ],
            rows,
            "No issues.",
        )
        + (f'<p class="muted">{len(items) - 500} more not shown.</p>' if len(items) > 500 else "")
    )


def _stacktrace(sample: dict[str, Any]) -> str:
    exc = json_object(sample.get("exception"))
    lines = ["Traceback (outermost first):"]
    frames = json_array(sample.get("stacktrace"))
    for frame in frames[:100]:
        if not isinstance(frame, dict):
            continue
        marker = "" if frame.get("in_app") else "  [library]"
        lines.append(
            f'  File "{t(frame.get("filename"), 200)}", line {t(frame.get("lineno"), 10)}, '
            f"in {t(frame.get('function'), 120)} ({t(frame.get('module'), 120)}){marker}"
        )
    if len(frames) > 100:
        lines.append(f"  ... {len(frames) - 100} more frames")
    lines.append(f"{t(exc.get('type'), 120)}: {t(exc.get('message'), 2000)}")
    return "<pre>" + "\n".join(lines) + "</pre>"


def _offset(ms: Any) -> str:
    """Signed minutes and seconds relative to the issue's first occurrence."""
    if not isinstance(ms, int) or isinstance(ms, bool):
        return "-"
    seconds = abs(ms) // 1000
    return f"{'-' if ms < 0 else '+'}{seconds // 60}m{seconds % 60:02d}s"


def issue(data: dict[str, Any], now_ms: int, ready: bool, actions: Actions) -> str:
    i, a = data["issue"], data["analysis"]
    sample = json_object(i.get("sample"))
    html = [
        _restoring(ready),
        f"<h1>{t(i.get('title'))}</h1>",
        f"<p>{badge(i.get('status'))} · <b>{t(i.get('count'), 20)}</b> events · severity "
        f"<span class='sev-{t(i.get('severity'), 16)}'>{t(i.get('severity'), 16)}</span> · "
        f"first seen {when(i.get('first_seen'))} (release {t(i.get('first_release'), 80)}) · "
        f"last seen {when(i.get('last_seen'))}</p>",
        f"<p>Services: {_list(i.get('services'), 20)} · releases: {_list(i.get('releases'), 20)}"
        f" · id <code>{t(i.get('issue_id'), 64)}</code></p>",
    ]
    if i.get("status") == "resolved" or i.get("resolution_notes"):
        html.append(
            f"<p>Resolved {when(i.get('resolved_at'))} by {t(i.get('resolved_by'), 120)}: "
            f"{t(i.get('resolution_notes'), 600)}</p>"
        )
    html.append(f"<p>{_issue_resolve_form(i, actions)}</p>")
    html.append("<h2>Last 7 days</h2>" + _trend(data["trend"], now_ms, 420, 100, labels=True))
    html.append("<h2>Sample stack trace</h2>" + _stacktrace(sample))
    html.append(
        f"<h2>Root-cause hints</h2><p>Confidence <b>{num(a.get('confidence'), 2)}</b>"
        f" · started {t((a.get('timeline') or {}).get('first_seen_iso'), 40)}"
        f" · rate {num((a.get('timeline') or {}).get('rate_per_min'), 2)}/min</p>"
    )
    patterns = [
        f"<li><b>{t(p.get('name'), 64)}</b> ({num(p.get('weight'), 2)}): "
        + "; ".join(t(e) for e in p.get("evidence") or [])
        + "</li>"
        for p in a.get("patterns") or []
    ]
    html.append(
        "<h3>Patterns</h3>"
        + (f'<ul class="hints">{"".join(patterns)}</ul>' if patterns else "<p>none</p>")
    )
    fixes = [
        f"<li><b>{t(block.get('pattern'), 64)}</b><ul>"
        + "".join(f"<li>{t(f, 900)}</li>" for f in block.get("fixes") or [])
        + "</ul></li>"
        for block in a.get("suggestions") or []
    ]
    html.append(f'<h3>Suggested fixes</h3><ul class="hints">{"".join(fixes)}</ul>')
    similar = [
        f'<tr><td><a href="{url("/issue", id=s.get("issue_id"))}">{t(s.get("title"))}</a></td>'
        f"<td>{badge(s.get('status'))}</td><td class='num'>{num(s.get('score'), 2)}</td>"
        f"<td>{t(s.get('resolution_notes'), 600)}</td></tr>"
        for s in a.get("similar") or []
    ]
    html.append(
        "<h3>Similar issues</h3>"
        + _table(["issue", "status", ">score", "resolution notes"], similar, "none")
    )
    signals = [
        f"<tr><td>{_offset(s.get('offset_ms'))}</td><td>{t(s.get('rule'), 128)}</td>"
        f"<td>{t(s.get('severity'), 16)}</td><td>{t(s.get('summary'))}</td></tr>"
        for s in (a.get("correlations") or {}).get("signals") or []
    ]
    html.append(
        "<h3>Signals near the first occurrence</h3>"
        + _table(["offset", "rule", "severity", "summary"], signals, "none")
    )
    return "".join(html)


# --- alerts -------------------------------------------------------------------------------------


def _not_allowed(actions: Actions) -> str | None:
    """What to show instead of action forms when this viewer may not act, else None."""
    if not actions.enabled:
        return '<span class="muted small">read-only</span>'
    if not actions.authorized:
        return '<a class="small" href="/login">log in to act</a>'
    return None


def _issue_resolve_form(issue: dict[str, Any], actions: Actions) -> str:
    """Resolve an issue with notes (as `prodmon resolve`): the fingerprint stage records
    them and reopens the issue as regressed if the bug comes back."""
    refused = _not_allowed(actions)
    if refused is not None or issue.get("status") == "resolved":
        return refused or ""
    return (
        '<form class="inline" method="post" action="/actions">'
        f'<input type="hidden" name="csrf" value="{t(actions.csrf)}">'
        f'<input type="hidden" name="issue" value="{action_handle(str(issue.get("issue_id")))}">'
        '<input type="text" name="notes" maxlength="500" aria-label="resolution notes"'
        ' placeholder="what fixed it">'
        '<button type="submit" name="action" value="resolve">Resolve issue</button></form>'
    )


def _action_forms(alert: dict[str, Any], actions: Actions) -> str:
    refused = _not_allowed(actions)
    if refused is not None:
        return refused
    status = alert.get("status")
    if status == "resolved":
        return ""
    hidden = (
        f'<input type="hidden" name="csrf" value="{t(actions.csrf)}">'
        f'<input type="hidden" name="alert" value="{action_handle(str(alert.get("alert_id")))}">'
    )
    out = []
    if status == "firing":
        out.append(
            f'<form class="inline" method="post" action="/actions">{hidden}'
            '<button class="primary" type="submit" name="action" value="ack">Acknowledge'
            "</button></form>"
        )
    out.append(
        f'<form class="inline" method="post" action="/actions">{hidden}'
        '<button type="submit" name="action" value="resolve">Resolve</button></form>'
    )
    options = "".join(f'<option value="{c}">{c}</option>' for c in SILENCE_CHOICES)
    out.append(
        f'<form class="inline" method="post" action="/actions">{hidden}'
        f'<select name="duration" aria-label="silence for">{options}</select>'
        '<button type="submit" name="action" value="silence">Silence</button></form>'
    )
    return "".join(out)


def alert_page(
    alert: dict[str, Any],
    info: dict[str, Any],
    chart: str | None,
    actions: Actions,
    ready: bool,
) -> str:
    """One alert: what it says (title, summary, figures), the chart of its metric around
    the incident, links to its issue and service, the actions (anchors `#ack` and
    `#silence`, where notifications link), its transitions and deliveries, and last its
    identifiers."""
    labels = json_object(alert.get("labels"))
    facts = json_object(alert.get("facts"))
    html = [
        _restoring(ready),
        f'<h1 class="sev-{t(alert.get("severity"), 16)}">{t(alert.get("title"))}</h1>',
        f"<p>{badge(alert.get('status'))} {t(str(alert.get('severity') or '').upper(), 16)}"
        f" · {t(alert.get('service'), 200)} · last change {when(alert.get('ts'))}</p>",
        f'<p class="summary">{t(alert.get("summary"), 1000)}</p>',
    ]
    rows = fact_rows(alert)
    if rows:
        html.append(
            "<table class='facts'><tbody>"
            + "".join(f"<tr><th>{t(k, 40)}</th><td>{t(v, 500)}</td></tr>" for k, v in rows)
            + "</tbody></table>"
        )
    if chart:
        html.append(f'<div class="chart-wrap">{chart}</div>')
    related = []
    issue_id = facts.get("issue_id") or labels.get("fingerprint")
    if issue_id:
        related.append(f'<a href="{url("/issue", id=issue_id)}">issue</a>')
    if alert.get("service") and alert.get("service") != "-":
        endpoint = labels.get("endpoint")
        endpoint = endpoint if endpoint and endpoint != SERVICE_WIDE else None
        related.append(
            f'<a href="{url("/service", name=alert.get("service"), endpoint=endpoint)}">service</a>'
        )
    related.append('<a href="/alerts">all alerts</a>')
    html.append(f"<p>{' · '.join(related)}</p>")
    html.append(
        '<h2 id="actions">Actions</h2><p id="ack"><span id="silence"></span>'
        f"{_action_forms(alert, actions) or '-'}</p>"
    )
    html.append("<h2>Transitions</h2>")
    html.append(
        _table(
            ["#", "transition", "when", "channels", "by"],
            [
                f"<tr><td>{t(x.get('seq'), 8)}</td><td>{t(x.get('transition'), 32)}</td>"
                f"<td>{when(x.get('ts'))}</td><td>{t(', '.join(x.get('channels') or []))}</td>"
                f"<td>{t(x.get('author') or '', 64)}</td></tr>"
                for x in info.get("transitions") or []
            ],
            "No transitions recorded.",
        )
    )
    html.append(
        _table(
            ["channel", "status", "reason"],
            [
                f"<tr><td>{t(d['channel'], 32)}</td><td>{badge(d['status'])}</td>"
                f"<td>{t(d.get('reason') or '', 300)}</td></tr>"
                for d in info.get("deliveries") or []
            ],
            "No deliveries yet.",
        )
    )
    html.append(f'<p class="small muted"><code>{t(context_line(alert), 1000)}</code></p>')
    return "".join(html)


def alerts(
    items: list[dict[str, Any]],
    details: dict[str, dict[str, Any]],
    silences: list[dict[str, Any]],
    actions: Actions,
    flash: str | None,
    ready: bool,
) -> str:
    html = [_restoring(ready), "<h1>Alerts</h1>"]
    if flash:
        html.append(f'<p class="flash">{t(flash)}</p>')
    if not actions.enabled:
        html.append(
            '<p class="banner">Read-only: actions need PRODMON_DASHBOARD_TOKEN when the '
            "dashboard listens on a non-loopback address.</p>"
        )
    rows = []
    for a in items[:300]:
        alert_id = a.get("alert_id")
        info = details.get(alert_id, {}) if isinstance(alert_id, str) else {}
        delivered = ", ".join(
            f"{t(d['channel'], 32)} {badge(d['status'])}"
            + (f' <span class="small muted">{t(d["reason"], 200)}</span>' if d["reason"] else "")
            for d in info.get("deliveries") or []
        )
        request = info.get("request")
        pending = (
            f'<div class="small pending">{t(request["command"], 16)} sent '
            f"{when(request['ts'])} by {t(request['author'], 64)}, waiting for escalation</div>"
            if request
            else ""
        )
        who = (
            f'<div class="small muted">{t(a.get("transition"), 32)} by {t(a.get("author"), 64)}'
            + (f": {t(a.get('notes'), 300)}" if a.get("notes") else "")
            + "</div>"
            if a.get("author")
            else ""
        )
        muted = (
            f'<div class="small muted">muted: {t(a.get("muted"), 200)}</div>'
            if a.get("muted")
            else ""
        )
        rows.append(
            f'<tr data-alert="{t(a.get("alert_id"), 2000)}" '
            f'data-handle="{action_handle(str(a.get("alert_id")))}">'
            f'<td class="sev-{t(a.get("severity"), 16)}">{t(a.get("severity"), 16)}</td>'
            f'<td class="status">{badge(a.get("status"))}{pending}</td>'
            f'<td><a href="{url("/alert", id=action_handle(str(a.get("alert_id"))))}">'
            f"<b>{t(a.get('title'))}</b></a><div class='small muted'>"
            f"{t(a.get('summary'), 300)}</div>{who}{muted}"
            f'<div class="small muted"><code>{t(a.get("alert_id"), 300)}</code></div></td>'
            f"<td>{t(a.get('service'), 200)}</td>"
            f'<td class="num">{t(a.get("level"), 8)}</td>'
            f'<td class="num">{t(a.get("count"), 12)}</td>'
            f"<td>{when(a.get('first_seen'))}<br>{when(a.get('ts'))}</td>"
            f"<td>{delivered or '-'}</td>"
            f"<td>{_action_forms(a, actions)}</td></tr>"
        )
    html.append(
        _table(
            [
                "severity",
                "status",
                "alert",
                "service",
                ">level",
                ">count",
                "first seen / last change",
                "deliveries",
                "actions",
            ],
            rows,
            "No alerts.",
        )
    )
    html.append("<h2>Silences in force</h2>")
    html.append(
        _table(
            ["matchers", "until", "by", "comment"],
            [
                "<tr><td>"
                + ", ".join(
                    f"<code>{t(k, 64)}={t(v, 200)}</code>" for k, v in s["matchers"].items()
                )
                + f"</td><td>{when(s['ends_at'])}</td><td>{t(s['author'], 64)}</td>"
                f"<td>{t(s['comment'], 300)}</td></tr>"
                for s in silences
            ],
            "No silences.",
        )
    )
    return "".join(html)


def login(csrf: str, error: str | None, next_path: str = "") -> str:
    """The login form; `next_path` (a same-site path, checked by the caller) is where a
    successful login goes."""
    message = f'<p class="flash">{t(error)}</p>' if error else ""
    after = f'<input type="hidden" name="next" value="{t(next_path, 2000)}">' if next_path else ""
    return (
        f"<h1>Log in</h1>{message}"
        '<form method="post" action="/login">'
        f'<input type="hidden" name="csrf" value="{t(csrf)}">{after}'
        '<label>Dashboard token <input type="password" name="token" autocomplete="off">'
        '</label> <button class="primary" type="submit">Log in</button></form>'
        '<p class="muted small">The token is the value of PRODMON_DASHBOARD_TOKEN given to '
        "<code>prodmon dashboard serve</code>.</p>"
    )


def message(title: str, text: str) -> str:
    return f"<h1>{t(title)}</h1><p>{t(text, 1000)}</p><p><a href='/'>Overview</a></p>"
