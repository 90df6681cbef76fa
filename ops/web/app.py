"""The dashboard's aiohttp app: pages, the SSE stream, the actions, and `serve`.

Routes (docs/dashboard.md):
    GET  /                      overview
    GET  /service?name=S[&endpoint=E]   latency charts (10 s / 1 min / 1 h) and endpoints
    GET  /issues[?status=S]     issues;  GET /issue?id=ID  one issue, stack trace, hints
    GET  /alerts                alerts, deliveries, silences, and the action forms
    GET  /alert?id=H            one alert (H: its action handle, as notifications link it):
                                wording, figures, chart, actions (#ack, #silence), history
    GET  /alert/chart.svg?id=H  the chart of a metric alert around its incident (SVG)
    POST /actions               ack / resolve / silence -> the `commands` topic
    GET  /events[?since=V]      Server-Sent Events: {"version", "views"} when views change
                                (since the page's version V, or Last-Event-ID)
    GET  /login[?next=P], POST /login, POST /logout   token sessions (when a token is
                                configured, every GET but /login and /static/* needs one)
    GET  /api/state             readiness and counts (JSON)
    GET  /static/app.css, /static/app.js

A page requested with the header `X-Prodmon-Fragment: 1` answers only its <main> content:
the live script swaps it in when the SSE stream says a view the page shows changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
import structlog
from aiohttp import web
from aiokafka.errors import KafkaError

from alerting.alert_text import format_value, metric_label
from ops.web import assets, charts, render
from ops.web.feed import Broadcaster, TopicFeed
from ops.web.security import (
    SECURITY_HEADERS,
    SESSION_COOKIE,
    SESSION_TTL_S,
    TOKEN_ENV,
    Guard,
    parse_proxies,
)
from ops.web.state import DashboardState, Limits
from pipeline.config import Config
from pipeline.topics import COMMANDS
from schemas.rollups import SERVICE_WIDE

log = structlog.get_logger("prodmon.dashboard")

ACTIONS = ("ack", "resolve", "silence")
FRAGMENT_HEADER = "X-Prodmon-Fragment"
SEND_TIMEOUT_S = 15.0


@dataclass
class WebSettings:
    """Where the dashboard listens and how it treats its clients."""

    host: str = "127.0.0.1"
    port: int = 8080  # 0 = a free port
    token: str | None = field(default=None, repr=False)  # PRODMON_DASHBOARD_TOKEN
    max_clients: int = 64  # concurrent SSE streams
    heartbeat_s: float = 15.0
    min_push_interval_s: float = 0.5  # coalesce updates to at most two a second per client
    limits: Limits = field(default_factory=Limits)


class Dashboard:
    """The objects the handlers share: view, feed, broadcaster, guard."""

    def __init__(self, config: Config, settings: WebSettings) -> None:
        self.config = config
        self.settings = settings
        self.state = DashboardState(config.sla, settings.limits)
        self.broadcaster = Broadcaster()
        self.feed = TopicFeed(config.kafka, self.state, self.broadcaster)
        self.guard = Guard(
            settings.host,
            settings.token,
            trusted_proxies=parse_proxies(config.dashboard.trusted_proxies),
        )
        self.clients = 0

    @property
    def ready(self) -> bool:
        return self.feed.ready.is_set()


DASHBOARD = web.AppKey("dashboard", Dashboard)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _actions(dash: Dashboard, request: web.Request) -> render.Actions:
    guard = dash.guard
    return render.Actions(
        enabled=guard.actions_enabled,
        authorized=guard.authorized(request),
        csrf=guard.csrf_token(request),
        login_required=guard.login_required,
    )


def _page(
    request: web.Request, title: str, active: str, views: str, body: str, status: int = 200
) -> web.Response:
    dash = request.app[DASHBOARD]
    views = f"{views},ready"
    if request.headers.get(FRAGMENT_HEADER) == "1":
        html = body
    else:
        html = render.layout(
            title,
            body,
            active=active,
            views=views,
            version=dash.broadcaster.version,
            ready=dash.ready,
            actions=_actions(dash, request),
        )
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Vary": FRAGMENT_HEADER},
    )


def _message(request: web.Request, status: int, title: str, text: str) -> web.Response:
    return _page(request, title, "", "", render.message(title, text), status=status)


# --- pages -------------------------------------------------------------------------------------


async def overview(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    state = dash.state
    body = render.overview(state.kpis(_now_ms()), state.service_rows(), state.alerts(), dash.ready)
    return _page(request, "overview", "overview", "rollups,issues,alerts", body)


async def service(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    name = request.query.get("name", "")
    endpoint = request.query.get("endpoint", SERVICE_WIDE)
    data = dash.state.service_page(name, endpoint)
    if data is None:
        return _message(request, 404, "Unknown service", f"No rollups for service {name!r}.")
    return _page(request, name, "", "rollups,alerts", render.service(data, dash.ready))


async def issues(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    status = request.query.get("status")
    status = status if status in render.ISSUE_STATUSES else None
    now = _now_ms()
    body = render.issues(dash.state.issues(now, status), status, now, dash.ready)
    return _page(request, "issues", "issues", "issues", body)


async def issue(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    now = _now_ms()
    data = dash.state.issue(request.query.get("id", ""), now)
    if data is None:
        return _message(request, 404, "Unknown issue", "No issue with this id.")
    title = str(data["issue"].get("title") or "issue")
    body = render.issue(data, now, dash.ready, _actions(dash, request))
    return _page(request, title, "issues", "issues,signals", body)


async def alerts(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    items = dash.state.alerts()
    details = {a["alert_id"]: dash.state.alert_details(a["alert_id"]) for a in items[:300]}
    sent = request.query.get("sent")
    flash = f"{sent} sent to the commands topic" if sent in ACTIONS else None
    body = render.alerts(
        items,
        details,
        dash.state.silences(_now_ms()),
        _actions(dash, request),
        flash,
        dash.ready,
    )
    return _page(request, "alerts", "alerts", render.ALERT_VIEWS, body)


def _alert_chart(dash: Dashboard, alert: dict[str, Any], now_ms: int) -> str | None:
    """The SVG chart of a metric alert's metric around its incident, from the rollup view
    (1 min windows, else 10 s): 30 min before it began to 15 min after it ended."""
    facts = render.json_object(alert.get("facts"))
    metric = str(facts.get("metric") or "")
    if facts.get("kind") != "metric" or not metric:
        return None
    labels = render.json_object(alert.get("labels"))
    service = str(alert.get("service") or "")
    endpoint = str(labels.get("endpoint") or SERVICE_WIDE)
    started = facts.get("since") or alert.get("first_seen")
    started = started if isinstance(started, int) else None
    ended = None
    if alert.get("status") == "resolved" and started is not None:
        lasted = facts.get("duration_ms")
        ended = started + lasted if isinstance(lasted, int) else alert.get("ts")
    points = []
    for resolution in ("1m", "10s"):
        points = dash.state.points(service, endpoint, resolution)
        if points:
            break
    lo = (started or now_ms) - 30 * 60_000
    hi = (ended if isinstance(ended, int) else now_ms) + 15 * 60_000
    values = [(p.start, charts.metric_value(p, metric)) for p in points if lo <= p.start <= hi]
    limit = facts.get("threshold")
    limit_label = f"threshold {format_value(metric, limit)}"
    if not isinstance(limit, int | float):
        limit = facts.get("baseline")
        limit_label = f"baseline {format_value(metric, limit)}"
    unit = " ms" if metric.endswith("_ms") else " %" if metric.endswith("_pct") else ""
    where = service + ("" if endpoint == SERVICE_WIDE else f" {endpoint}")
    return charts.incident_chart(
        values,
        title=f"{where} {metric_label(metric)}",
        unit=unit,
        limit=float(limit) if isinstance(limit, int | float) else None,
        limit_label=limit_label,
        started=started,
        ended=ended if isinstance(ended, int) else None,
    )


def _alert_of(request: web.Request) -> dict[str, Any] | None:
    """The alert named by `?id=` (its action handle, as in notification links)."""
    state = request.app[DASHBOARD].state
    alert_id = state.alert_by_handle(request.query.get("id", ""))
    return state.alert(alert_id) if alert_id else None


async def alert(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    found = _alert_of(request)
    if found is None:
        return _message(request, 404, "Unknown alert", "No alert with this id (expired?).")
    details = dash.state.alert_details(str(found.get("alert_id")))
    chart = _alert_chart(dash, found, _now_ms())
    body = render.alert_page(found, details, chart, _actions(dash, request), dash.ready)
    return _page(
        request, str(found.get("title") or "alert"), "alerts", f"{render.ALERT_VIEWS},rollups", body
    )


async def alert_chart(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    found = _alert_of(request)
    chart = _alert_chart(dash, found, _now_ms()) if found is not None else None
    if chart is None:
        raise web.HTTPNotFound()
    return web.Response(
        text=chart, content_type="image/svg+xml", headers={"Cache-Control": "max-age=60"}
    )


async def api_state(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    body = {
        "ready": dash.ready,
        "broadcast_version": dash.broadcaster.version,
        "restore_s": dash.feed.restore_s,
        "clients": dash.clients,
        **dash.state.summary(),
    }
    return web.json_response(body, dumps=lambda v: orjson.dumps(v).decode())


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name == "app.css":
        return web.Response(text=assets.CSS, content_type="text/css")
    if name == "app.js":
        return web.Response(text=assets.JS, content_type="text/javascript")
    raise web.HTTPNotFound()


# --- live updates ------------------------------------------------------------------------------


def _seen_version(request: web.Request, current: int) -> int:
    """The version the browser's page already shows: `Last-Event-ID` when EventSource
    reconnects, else the page's `since` (the version it was rendered at), else `current`.

    Starting from it, a change made between rendering the page and opening the stream (or
    while the stream was down) is still pushed. A version from before a restart of the
    dashboard (above `current`) counts as 0: everything may have changed.
    """
    for raw in (request.headers.get("Last-Event-ID"), request.query.get("since")):
        if raw and raw.isascii() and raw.isdigit() and len(raw) <= 18:
            version = int(raw)
            return version if version <= current else 0
    return current


async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: `update` with {"version", "views"} when views change."""
    dash = request.app[DASHBOARD]
    settings = dash.settings
    if dash.clients >= settings.max_clients:
        return web.Response(
            status=503, text="too many live connections", headers={"Retry-After": "10"}
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    dash.clients += 1
    broadcaster = dash.broadcaster
    seen = _seen_version(request, broadcaster.version)
    try:
        hello = orjson.dumps({"version": seen, "ready": dash.ready}).decode()
        await response.write(f"retry: 3000\nevent: hello\ndata: {hello}\n\n".encode())
        while not broadcaster.closed:
            if await broadcaster.wait(seen, settings.heartbeat_s):
                views = sorted(broadcaster.changed_since(seen))
                seen = broadcaster.version
                data = orjson.dumps({"version": seen, "views": views}).decode()
                await response.write(f"id: {seen}\nevent: update\ndata: {data}\n\n".encode())
                await asyncio.sleep(settings.min_push_interval_s)
            elif not broadcaster.closed:
                await response.write(b": keep-alive\n\n")
    except ConnectionError:
        pass  # the browser went away
    finally:
        dash.clients -= 1
    return response


# --- actions -----------------------------------------------------------------------------------


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _refuse(request: web.Request, status: int, reason: str) -> web.Response:
    if _wants_json(request):
        return web.json_response({"error": reason}, status=status)
    return _message(request, status, "Refused" if status == 403 else "Not done", reason)


async def _posted_text(request: web.Request) -> dict[str, str]:
    """The posted form's text fields, the first value of each name (as `MultiDict.get`
    gives it). The dashboard's forms send only text: a file or a binary multipart part is
    no value any action takes, and is left out."""
    form = await request.post()
    fields: dict[str, str] = {}
    for name, value in form.items():
        if isinstance(value, str):
            fields.setdefault(name, value)
    return fields


def _field(form: Mapping[str, str], name: str, limit: int) -> str:
    value = form.get(name)
    return " ".join(value.split())[:limit] if isinstance(value, str) else ""


async def _send_command(dash: Dashboard, record: dict, broadcast: bool = False) -> str | None:
    """Write one command to `commands`; the reason it failed, or None."""
    from ops.commands import command_key
    from pipeline.topic_reader import send_json

    topic = dash.config.kafka.prefix + COMMANDS
    try:
        await asyncio.wait_for(
            send_json(dash.config.kafka, topic, command_key(record["id"]), record, broadcast),
            SEND_TIMEOUT_S,
        )
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning("dashboard_command_failed", command=record["command"], error=repr(exc))
        return "could not write to the commands topic; try again"
    log.info(
        "dashboard_command_sent",
        command=record["command"],
        target=record["id"],
        command_id=record["command_id"],
    )
    return None


async def _resolve_issue(
    request: web.Request, dash: Dashboard, form: Mapping[str, str], issue_id: str
) -> web.StreamResponse:
    """Resolve an issue with notes, as `prodmon resolve` does."""
    from ops.commands import command_record

    if dash.state.issue(issue_id, _now_ms()) is None:
        return _refuse(request, 404, "unknown issue")
    record = command_record(
        "resolve",
        issue_id,
        notes=_field(form, "notes", 500),
        author=_field(form, "author", 64) or "dashboard",
    )
    failed = await _send_command(dash, record)
    if failed is not None:
        return _refuse(request, 503, failed)
    if _wants_json(request):
        return web.json_response({"sent": "resolve", "command_id": record["command_id"]})
    raise web.HTTPSeeOther("/issue?" + urlencode({"id": issue_id, "sent": "resolve"}))


def _target(form: Mapping[str, str], kind: str, by_handle: Any) -> str | None:
    """The alert or issue id an action names: the page's forms send the opaque handle
    (`alert` / `issue`, see ops/web/handles.py: ids may hold CR/LF, which a form field
    cannot carry); scripts may send the raw id (`alert_id` / `issue_id`) instead."""
    handle = form.get(kind)
    if handle is not None:
        return by_handle(handle)
    raw = form.get(f"{kind}_id")
    return raw if isinstance(raw, str) and raw else None


async def act(request: web.Request) -> web.StreamResponse:
    """An alert action, or resolving an issue, from a form (or a script with the bearer
    token) -> `commands`."""
    from ops.commands import command_record, parse_duration_ms

    dash = request.app[DASHBOARD]
    form = await _posted_text(request)
    allowed, reason = dash.guard.may_act(request, form)
    if not allowed:
        log.warning("dashboard_action_refused", reason=reason, peer=request.remote)
        return _refuse(request, 403, reason)
    action = form.get("action")
    state = dash.state
    if action == "resolve" and ("issue" in form or "issue_id" in form):
        issue_id = _target(form, "issue", state.issue_by_handle)
        if issue_id is None:
            return _refuse(request, 404, "unknown issue")
        return await _resolve_issue(request, dash, form, issue_id)
    if action is None or action not in ACTIONS or ("alert" not in form and "alert_id" not in form):
        return _refuse(request, 400, f"action must be one of {', '.join(ACTIONS)}")
    alert_id = _target(form, "alert", state.alert_by_handle)
    alert = state.alert(alert_id) if alert_id is not None else None
    if alert_id is None or alert is None:
        return _refuse(request, 404, "unknown alert")
    author = _field(form, "author", 64) or "dashboard"
    notes = _field(form, "notes", 500)
    broadcast = False
    if action == "silence":
        duration = form.get("duration", "2h")
        if duration not in render.SILENCE_CHOICES:
            return _refuse(request, 400, f"duration must be one of {render.SILENCE_CHOICES}")
        now = _now_ms()
        matchers = {  # exactly this alert: its labels, glob characters escaped
            "service": glob.escape(str(alert.get("service") or "")),
            "rule": glob.escape(str(alert.get("rule") or "")),
            "key": glob.escape(str(alert.get("key") or "")),
        }
        record = command_record(
            "silence",
            "silence",
            matchers=matchers,
            starts_at=now,
            ends_at=now + parse_duration_ms(duration, "duration"),
            author=author,
            comment=notes or f"silenced from the dashboard: {alert_id}"[:300],
        )
        broadcast = True  # every partition's escalation owner must know it
    else:
        record = command_record(action, alert_id, notes=notes or None, author=author)
    failed = await _send_command(dash, record, broadcast)
    if failed is not None:
        return _refuse(request, 503, failed)
    if _wants_json(request):
        return web.json_response({"sent": action, "command_id": record["command_id"]})
    raise web.HTTPSeeOther(f"/alerts?sent={action}")


# --- sessions ----------------------------------------------------------------------------------


def _next_path(value: Any) -> str:
    """Where to go after logging in: a path on this site, else nothing (no open redirect)."""
    if not isinstance(value, str) or not value.startswith("/") or not value.isascii():
        return ""
    if (
        len(value) > 2000
        or value.startswith(("//", "/\\"))
        or any(c < " " or c in "\\\x7f" for c in value)
    ):
        return ""
    return value


def _locked_out(request: web.Request, wait_s: float) -> web.Response:
    seconds = max(1, math.ceil(wait_s))
    reason = f"too many wrong tokens from your address: try again in {seconds} s"
    response = _refuse(request, 429, reason)
    response.headers["Retry-After"] = str(seconds)
    return response


async def login_form(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    if not dash.guard.login_required:
        raise web.HTTPSeeOther("/")
    body = render.login(dash.guard.csrf_token(request), None, _next_path(request.query.get("next")))
    return _page(request, "log in", "", "", body)


async def login(request: web.Request) -> web.StreamResponse:
    """Check the token and start a session. Failed attempts lock the client out for a
    doubling time (security.LoginThrottle): the lock is checked and a failure recorded with
    no `await` in between, so parallel guesses cannot all slip through before it is set."""
    dash = request.app[DASHBOARD]
    guard = dash.guard
    if not guard.login_required:
        raise web.HTTPSeeOther("/")
    form = await _posted_text(request)
    if not guard.same_origin(request) or not guard.csrf_ok(request, form):
        return _refuse(request, 403, "cross-origin or stale login form: reload and try again")
    client = guard.client_key(request)
    wait = guard.throttle.retry_after(client)
    if wait > 0:
        log.warning("dashboard_login_locked_out", client=client, retry_after_s=round(wait, 1))
        return _locked_out(request, wait)
    token = form.get("token")
    next_path = _next_path(form.get("next"))
    if not isinstance(token, str) or not guard.token_matches(token):
        lock = guard.throttle.failed(client)
        log.warning("dashboard_login_failed", client=client, locked_for_s=lock)
        body = render.login(guard.csrf_token(request), "Wrong token.", next_path)
        return _page(request, "log in", "", "", body, status=403)
    guard.throttle.succeeded(client)
    response = web.HTTPSeeOther(next_path or "/alerts")
    response.set_cookie(
        SESSION_COOKIE,
        guard.new_session(),
        max_age=SESSION_TTL_S,
        httponly=True,
        samesite="Strict",
        secure=guard.is_tls(request),
        path="/",
    )
    log.info("dashboard_login", client=client)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD]
    form = await _posted_text(request)
    if not dash.guard.same_origin(request) or not dash.guard.csrf_ok(request, form):
        return _refuse(request, 403, "cross-origin or stale form")
    dash.guard.end_session(request)
    response = web.HTTPSeeOther("/")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


# --- the app -----------------------------------------------------------------------------------


@web.middleware
async def _host_check(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.app[DASHBOARD].guard.host_allowed(request):
        return web.Response(status=421, text="unexpected Host header for a loopback dashboard")
    return await handler(request)


@web.middleware
async def _read_guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """With a token configured, reading needs it too: every GET (pages, `/api/state`,
    `/events`) needs a session or the bearer token, except the login page and the static
    assets. POSTs check for themselves (`/actions`: may_act; `/logout`: CSRF)."""
    guard = request.app[DASHBOARD].guard
    path = request.path
    if (
        request.method == "POST"
        or path == "/login"
        or path.startswith("/static/")
        or guard.may_read(request)
    ):
        return await handler(request)
    wait = guard.throttle.retry_after(guard.client_key(request))
    if wait > 0:
        return _locked_out(request, wait)
    page = path not in ("/api/state", "/events") and request.headers.get(FRAGMENT_HEADER) != "1"
    if page and not _wants_json(request):
        raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
    headers = {"WWW-Authenticate": 'Bearer realm="prodmon"', "Cache-Control": "no-store"}
    body = orjson.dumps({"error": f"log in or send Authorization: Bearer <{TOKEN_ENV}>"})
    return web.Response(status=401, body=body, content_type="application/json", headers=headers)


async def _security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


async def _close_streams(app: web.Application) -> None:
    app[DASHBOARD].broadcaster.close()


def build_app(dash: Dashboard) -> web.Application:
    app = web.Application(middlewares=[_host_check, _read_guard], client_max_size=64 * 1024)
    app[DASHBOARD] = dash
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_close_streams)
    app.router.add_get("/", overview)
    app.router.add_get("/service", service)
    app.router.add_get("/issues", issues)
    app.router.add_get("/issue", issue)
    app.router.add_get("/alerts", alerts)
    app.router.add_get("/alert", alert)
    app.router.add_get("/alert/chart.svg", alert_chart)
    app.router.add_post("/actions", act)
    app.router.add_get("/events", events)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/api/state", api_state)
    app.router.add_get("/static/{name}", static)
    return app


async def start(dash: Dashboard) -> tuple[web.AppRunner, int]:
    """Listen (the feed is started separately); returns the runner and the bound port."""
    runner = web.AppRunner(build_app(dash), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, dash.settings.host, dash.settings.port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])


async def serve(
    config: Config, settings: WebSettings, stop: asyncio.Event, announce: bool = False
) -> None:
    """Run the dashboard until `stop`: listen, restore from topic history, tail the topics."""
    dash = Dashboard(config, settings)
    runner, port = await start(dash)
    guard = dash.guard
    log.info(
        "dashboard_started",
        host=settings.host,
        port=port,
        prefix=config.kafka.prefix,
        actions_enabled=guard.actions_enabled,
        token_required=guard.login_required,
    )
    if not guard.actions_enabled:
        log.warning("dashboard_read_only", reason=f"non-loopback address without {TOKEN_ENV}")
    if announce:
        shown = f"[{settings.host}]" if ":" in settings.host else settings.host
        print(f"dashboard=http://{shown}:{port}/", flush=True)
    feed = asyncio.create_task(dash.feed.run(stop))
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        done, _ = await asyncio.wait({feed}, timeout=10)
        if not done:  # still restoring a long history: no need to finish
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
        log.info("dashboard_stopped")


def cmd_dashboard_serve(args: Any) -> int:
    """`prodmon dashboard serve`: the live web dashboard."""
    from ops.cli import config_from_args, run_async
    from ops.commands import install_stop_signals
    from ops.web.security import check_token
    from pipeline.config import ConfigError

    config = config_from_args(args)
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port: expected 0..65535, got {args.port}")
    try:
        token = check_token(os.environ.get(TOKEN_ENV))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    settings = WebSettings(host=args.host, port=args.port, token=token)

    async def _main() -> int:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await serve(config, settings, stop, announce=True)
        return 0

    try:
        return run_async(_main())
    except OSError as exc:  # the address is taken or cannot be bound
        raise ConfigError(f"--host/--port {args.host}:{args.port}: {exc.strerror or exc}") from None


__all__ = [
    "Dashboard",
    "WebSettings",
    "build_app",
    "cmd_dashboard_serve",
    "serve",
    "start",
]
