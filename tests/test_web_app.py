"""The web dashboard over real HTTP against the real local broker and the real pipeline
stages: pages restored from topic history, the SSE stream, actions that reach `commands` and
are carried out by the escalation stage, and the token rules off loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient

from ops.web.app import Dashboard, WebSettings, build_app, start
from ops.web.security import Guard, parse_proxies
from pipeline.config import Config
from pipeline.topic_reader import read_topic, send_json
from pipeline.topics import COMMANDS, ISSUES, ROLLUPS, SIGNALS, create_topics
from tests.pipeline_helpers import (
    as_batches,
    make_config,
    running_pipeline,
    send_raw,
    topic_probe,
    wait_for,
)

STAGES = ["ingest", "fingerprint", "windows", "escalation", "notify"]
HOSTILE_MESSAGE = '<script>alert(1)</script> "><img src=x onerror=alert(2)>'
TOKEN = "dashboard-token-" + "x" * 24


def now_ms() -> int:
    return int(time.time() * 1000)


def latency_events(end_ms: int, seconds: int = 130, per_second: int = 20) -> list[dict]:
    """Two services x two endpoints, ending `end_ms`: closes 10 s and 1 min windows."""
    rng = random.Random(7)
    start = end_ms - seconds * 1000
    events = []
    for i in range(seconds * per_second):
        service = ("checkout", "search")[i % 2]
        events.append(
            {
                "schema": "latency/1",
                "event_id": f"l-{end_ms}-{i}",
                "ts": start + i * 1000 // per_second,
                "service": service,
                "endpoint": ("/pay", "/cart")[(i // 2) % 2],
                "status": 503 if rng.random() < 0.01 else 200,
                "duration_ms": round(rng.lognormvariate(3, 0.6), 3),
            }
        )
    return events


def by_service(events: list[dict]) -> list[tuple[bytes, bytes]]:
    batches = []
    for service in sorted({e["service"] for e in events}):
        batches += as_batches([e for e in events if e["service"] == service], size=50)
    return batches


def error_events(ts_ms: int, message: str = HOSTILE_MESSAGE, n: int = 4, tag: str = "") -> list:
    return [
        {
            "schema": "error/1",
            "event_id": f"e-{tag}{ts_ms}-{i}",
            "ts": ts_ms + i,
            "service": "checkout",
            "release": "1.4.2",
            "severity": "high",
            "exception": {"type": "ValueError", "message": message},
            "stacktrace": [
                {
                    "module": "app.pay",
                    "function": "charge",
                    "filename": "app/pay.py",
                    "lineno": 88,
                    "in_app": True,
                },
            ],
        }
        for i in range(n)
    ]


def alert_signal(rule: str, service: str = "checkout", key: str = "checkout|/pay") -> dict:
    return {
        "id": f"{rule}|{key}|firing",
        "kind": "threshold",
        "state": "firing",
        "rule": rule,
        "severity": "high",
        "key": key,
        "service": service,
        "metric": "p99_ms",
        "value": 1500.0,
        "ts": now_ms(),
        "channels": ["log"],  # the notifier's log sink: a real delivery
        "tags": {},
        "summary": f"{rule}: p99 over 1 s on {key}",
    }


@contextlib.asynccontextmanager
async def serving(config: Config, **settings) -> AsyncIterator[tuple[Dashboard, str]]:
    """The dashboard on a free loopback port, restored from the topics."""
    dash = Dashboard(config, WebSettings(port=0, **settings))
    runner, port = await start(dash)
    stop = asyncio.Event()
    feed = asyncio.create_task(dash.feed.run(stop))
    try:
        await asyncio.wait_for(dash.feed.ready.wait(), 30)
        yield dash, f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await runner.cleanup()
        await asyncio.wait_for(feed, 30)


async def fire_alert(config: Config, dash: Dashboard, rule: str) -> str:
    """A real alert: a signal the running escalation stage turns into a firing alert."""
    sig = alert_signal(rule)
    await send_json(config.kafka, config.kafka.prefix + SIGNALS, sig["service"], sig)
    alert_id = f"checkout:{rule}:checkout|/pay"

    async def probe():
        return dash.state.alert(alert_id)

    alert = await wait_for(probe, lambda a: a is not None, timeout_s=30)
    assert alert is not None and alert["status"] == "firing"
    return alert_id


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def alert_row(html: str, alert_id: str) -> str:
    start = html.index(f'<tr data-alert="{alert_id}"')
    return html[start : html.index("</tr>", start)]


async def commands(config: Config, after: set | None = None) -> list:
    """Records of `commands` (those written after the `after` snapshot), oldest first."""
    records = await read_topic(config.kafka, config.kafka.prefix + COMMANDS)
    records.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
    return [r for r in records if (r.partition, r.offset) not in (after or set())]


async def snapshot(config: Config) -> set:
    return {(r.partition, r.offset) for r in await commands(config)}


@dataclass
class Live:
    config: Config
    dash: Dashboard
    base: str


@pytest.fixture(scope="module")
async def live(broker) -> AsyncIterator[Live]:
    """Pipeline stages running on fresh topics with latency and error history, and the
    dashboard restored from that history."""
    prefix = f"w{uuid.uuid4().hex[:10]}."
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await create_topics(admin, prefix=prefix, partitions=4)
    finally:
        await admin.close()
    config = make_config(broker.bootstrap, prefix)
    async with running_pipeline(config, STAGES):
        end = now_ms() - 15_000
        await send_raw(config, by_service(latency_events(end)) + as_batches(error_events(end)))

        def enough(rollups: list) -> bool:
            return any(r["resolution"] == "1m" for r in rollups) and len(rollups) > 40

        await wait_for(topic_probe(config, ROLLUPS), enough, timeout_s=40)
        await wait_for(topic_probe(config, ISSUES), lambda i: len(i) > 0, timeout_s=40)
        async with serving(config) as (dash, base):
            yield Live(config, dash, base)


async def test_pages_render_the_restored_views(live: Live):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live.base}/api/state") as resp:
            state = await resp.json()
        assert state["ready"] is True
        assert state["records"]["rollups"] > 40 and state["records"]["issues"] > 0

        async with http.get(f"{live.base}/") as resp:
            assert resp.status == 200
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            assert resp.headers["X-Frame-Options"] == "DENY"
            overview = await resp.text()
        for service in ("checkout", "search"):
            row = overview[overview.index(f'<tr data-service="{service}">') :]
            row = row[: row.index("</tr>")]
            cells = re.findall(r'<td class="num">([^<]*)</td>', row)
            assert len(cells) == 9 and cells[0].endswith("%") and float(cells[4]) > 0  # p99
        assert 'class="badge st-' in overview

        async with http.get(f"{live.base}/service", params={"name": "checkout"}) as resp:
            page = await resp.text()
        points = dict(re.findall(r'data-resolution="(\w+)"><svg[^>]*data-points="(\d+)"', page))
        assert int(points["10s"]) >= 3 * 10 and int(points["1m"]) >= 3  # p50/p95/p99 lines
        assert page.count('<circle class="pt"') >= 30
        assert "/pay</a>" in page and "/cart</a>" in page  # the endpoint table

        async with http.get(f"{live.base}/issues") as resp:
            issues = await resp.text()
        assert "<script>alert(1)" not in issues and "<img src=x" not in issues
        assert "&lt;script&gt;alert(" in issues
        issue_id = re.search(r'<tr data-issue="([0-9a-f]+)">', issues).group(1)
        async with http.get(f"{live.base}/issue", params={"id": issue_id}) as resp:
            issue = await resp.text()
        assert 'File "app/pay.py", line 88, in charge' in issue
        assert "&lt;img src=x onerror=alert(2)&gt;" in issue and "<img" not in issue
        assert "Root-cause hints" in issue and "Suggested fixes" in issue

        async with http.get(f"{live.base}/service", params={"name": "nope"}) as resp:
            assert resp.status == 404
        async with http.get(f"{live.base}/", headers={"Host": "evil.example"}) as resp:
            assert resp.status == 421  # a DNS-rebinding page cannot read it


async def next_event(
    stream: aiohttp.ClientResponse, name: str, timeout_s: float, where=lambda data: True
) -> dict:
    """The data of the next SSE event called `name` (whose data satisfies `where`)."""
    deadline = time.monotonic() + timeout_s
    event = None
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(stream.content.readline(), deadline - time.monotonic())
        text = line.decode().rstrip("\n")
        if text.startswith("event: "):
            event = text[len("event: ") :]
        elif text.startswith("data: ") and event == name:
            data = orjson.loads(text[len("data: ") :])
            if where(data):
                return data
    raise TimeoutError(f"no {name} event in {timeout_s}s")


async def test_sse_pushes_changes_and_an_ack_is_carried_out_by_escalation(live: Live):
    config, dash = live.config, live.dash
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live.base}/events") as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            hello = await next_event(stream, "hello", 5)
            alert_id = await fire_alert(config, dash, "sse-ack")
            update = await next_event(stream, "update", 10, lambda d: "alerts" in d["views"])
            assert update["version"] > hello["version"]

            async def delivered():
                return dash.state.alert_details(alert_id)["deliveries"]

            got = await wait_for(delivered, lambda d: d and d[0]["status"] == "delivered", 30)
            assert got[0]["channel"] == "log"  # from the `deliveries` topic

            async with http.get(f"{live.base}/alerts") as resp:
                page = await resp.text()
            row = alert_row(page, alert_id)
            assert "st-firing" in row and 'log <span class="badge st-delivered">' in row
            csrf = csrf_of(row)
            form = {"action": "ack", "alert_id": alert_id, "csrf": csrf}
            before = await snapshot(config)
            refused = [
                ({**form, "csrf": "0" * 64}, {}),
                ({k: v for k, v in form.items() if k != "csrf"}, {}),
                (form, {"Origin": "https://evil.example"}),
                (form, {"Sec-Fetch-Site": "cross-site"}),
            ]
            for data, headers in refused:
                async with http.post(f"{live.base}/actions", data=data, headers=headers) as resp:
                    assert resp.status == 403
            async with http.post(
                f"{live.base}/actions",
                data=form,
                headers={"Origin": live.base},
                allow_redirects=False,
            ) as resp:
                assert resp.status == 303 and resp.headers["Location"] == "/alerts?sent=ack"
            sent = await commands(config, before)
            assert len(sent) == 1  # the refused posts wrote nothing
            assert sent[0].key == "checkout"  # an alert command goes to its service's partition
            assert sent[0].value["command"] == "ack" and sent[0].value["id"] == alert_id

            async def status():
                return (dash.state.alert(alert_id) or {}).get("status")

            assert await wait_for(status, lambda s: s == "acknowledged", 30) == "acknowledged"
            # the stream told the browsers about the ack command and the new alert state
            views: set[str] = set()

            def both(data: dict) -> bool:
                views.update(data["views"])
                return {"commands", "alerts"} <= views

            await next_event(stream, "update", 10, both)
        async with http.get(f"{live.base}/alerts") as resp:
            row = alert_row(await resp.text(), alert_id)
        assert "st-acknowledged" in row and 'value="ack"' not in row

        async with http.post(
            f"{live.base}/actions",
            data={"action": "silence", "alert_id": alert_id, "csrf": csrf, "duration": "1h"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
        copies = [r for r in await commands(config, before) if r.value["command"] == "silence"]
        assert sorted(r.partition for r in copies) == [0, 1, 2, 3]  # one per partition
        assert copies[0].value["matchers"] == {
            "service": "checkout",
            "rule": "sse-ack",
            "key": "checkout|/pay",
        }

        async def silences():
            return dash.state.silences(now_ms())

        assert await wait_for(silences, lambda s: len(s) == 1, 15)
        async with http.get(f"{live.base}/alerts") as resp:
            assert "<code>rule=sse-ack</code>" in await resp.text()


async def test_a_change_made_before_the_stream_opened_is_still_pushed(live: Live):
    """A page rendered at version V opens /events?since=V: a change published between the
    render and the stream (a slow browser) is pushed at once; a reconnecting EventSource
    sends the last update's id (Last-Event-ID) and catches up the same way."""
    broadcaster = live.dash.broadcaster
    rendered = broadcaster.version
    broadcaster.publish({"probe-view"})  # a change no other part of the dashboard makes

    def probe(data: dict) -> bool:
        return "probe-view" in data["views"]

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live.base}/events?since={rendered}") as stream:
            update = await next_event(stream, "update", 5, probe)
            assert update["version"] > rendered
        headers = {"Last-Event-ID": str(rendered)}
        async with http.get(f"{live.base}/events", headers=headers) as stream:
            assert (await next_event(stream, "update", 5, probe))["version"] > rendered
        # Without either, the stream starts from the current version: that change is old.
        async with http.get(f"{live.base}/events") as stream:
            with pytest.raises(TimeoutError):
                await next_event(stream, "update", 1.5, probe)


async def test_actions_need_the_token_off_loopback(live: Live):
    """The guard of a dashboard bound to a non-loopback address (served here on loopback)."""
    config, dash = live.config, live.dash
    alert_id = await fire_alert(config, dash, "token-ack")
    loopback_guard = dash.guard
    url = f"{live.base}/actions"
    try:
        dash.guard = Guard("0.0.0.0", token=TOKEN)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{live.base}/alerts") as resp:
                page = await resp.text()
            assert resp.url.path == "/login"  # a token is configured: reading needs it too
            assert 'name="token"' in page and 'name="action"' not in page
            async with http.get(f"{live.base}/login") as resp:
                anonymous_csrf = csrf_of(await resp.text())
            form = {"action": "ack", "alert_id": alert_id, "csrf": anonymous_csrf}
            before = await snapshot(config)
            for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}):
                async with http.post(url, data=form, headers=headers) as resp:
                    assert resp.status == 403

            login = {"token": "not-the-token-at-all", "csrf": anonymous_csrf}
            async with http.post(f"{live.base}/login", data=login) as resp:
                assert resp.status == 403
            login["token"] = TOKEN
            async with http.post(f"{live.base}/login", data=login, allow_redirects=False) as resp:
                assert resp.status == 303
                cookie = resp.cookies["prodmon_session"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            assert TOKEN not in cookie.value
            session = {"Cookie": f"prodmon_session={cookie.value}"}
            async with http.get(f"{live.base}/alerts", headers=session) as resp:
                row = alert_row(await resp.text(), alert_id)
            csrf = csrf_of(row)
            assert csrf != anonymous_csrf  # bound to the session
            async with http.post(url, data=form, headers=session) as resp:
                assert resp.status == 403  # the anonymous form token is not the session's
            assert await commands(config, before) == []  # nothing written so far

            form["csrf"] = csrf
            async with http.post(url, data=form, headers=session, allow_redirects=False) as resp:
                assert resp.status == 303
            resolve = {"action": "resolve", "alert_id": alert_id, "notes": "fixed"}
            bearer = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
            async with http.post(url, data=resolve, headers=bearer) as resp:
                assert resp.status == 200 and (await resp.json())["sent"] == "resolve"
            sent = [r.value for r in await commands(config, before)]
            assert [(c["command"], c["id"]) for c in sent] == [
                ("ack", alert_id),
                ("resolve", alert_id),
            ]

            async def status():
                return (dash.state.alert(alert_id) or {}).get("status")

            assert await wait_for(status, lambda s: s == "resolved", 30) == "resolved"

            dash.guard = Guard("0.0.0.0", token=None)  # elsewhere without a token: read-only
            async with http.post(url, data=form, headers=bearer) as resp:
                assert resp.status == 403
            async with http.get(f"{live.base}/alerts") as resp:
                assert "Read-only" in await resp.text()
    finally:
        dash.guard = loopback_guard


async def test_cli_serves_restores_and_stops_on_sigterm(live: Live):
    config = live.config
    cli = [sys.executable, "-m", "ops.cli", "dashboard"]
    kafka = ["--bootstrap", config.kafka.bootstrap, "--prefix", config.kafka.prefix]
    short = await asyncio.to_thread(
        subprocess.run,
        [*cli, "serve", *kafka],
        env={**os.environ, "PRODMON_DASHBOARD_TOKEN": "tiny-secret"},
        capture_output=True,
        timeout=30,
    )
    assert short.returncode == 2 and b"PRODMON_DASHBOARD_TOKEN" in short.stderr
    assert b"tiny-secret" not in short.stderr + short.stdout

    old = await asyncio.to_thread(
        subprocess.run, [*cli, *kafka, "--format", "json"], capture_output=True, timeout=60
    )
    assert old.returncode == 0 and "top_errors" in orjson.loads(old.stdout)  # still works

    proc = await asyncio.create_subprocess_exec(
        *cli,
        "serve",
        *kafka,
        "--port",
        "0",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PRODMON_DASHBOARD_TOKEN": TOKEN},
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        assert re.fullmatch(r"dashboard=http://127\.0\.0\.1:\d+/", line), line
        base = line.split("=", 1)[1].rstrip("/")
        async with aiohttp.ClientSession() as http:

            async def state() -> dict:
                bearer = {"Authorization": f"Bearer {TOKEN}"}
                async with http.get(f"{base}/api/state", headers=bearer) as resp:
                    return await resp.json()

            restored = await wait_for(state, lambda s: s["ready"], timeout_s=30)
            async with http.get(f"{base}/alerts", allow_redirects=False) as resp:
                assert resp.status == 303  # a token is configured: pages need a session
                assert resp.headers["Location"] == "/login?next=/alerts"
            async with http.get(f"{base}/api/state") as resp:
                assert resp.status == 401
        assert restored["records"]["rollups"] > 40  # restored from history
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
        assert TOKEN.encode() not in err  # never logged
        assert b"dashboard_started" in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_an_issue_is_resolved_with_notes_from_its_page(live: Live):
    config, dash = live.config, live.dash
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live.base}/issues") as resp:
            issue_id = re.search(r'<tr data-issue="([0-9a-f]+)">', await resp.text()).group(1)
        async with http.get(f"{live.base}/issue", params={"id": issue_id}) as resp:
            page = await resp.text()
        assert 'value="resolve">Resolve issue</button>' in page
        form = {"action": "resolve", "issue_id": issue_id, "csrf": csrf_of(page)}
        form["notes"] = "rolled back <b>1.4.3</b>"
        before = await snapshot(config)
        async with http.post(
            f"{live.base}/actions", data={**form, "csrf": "0" * 64}, allow_redirects=False
        ) as resp:
            assert resp.status == 403
        async with http.post(
            f"{live.base}/actions", data={**form, "issue_id": "f" * 32}, allow_redirects=False
        ) as resp:
            assert resp.status == 404  # unknown issue: nothing written
        async with http.post(f"{live.base}/actions", data=form, allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == f"/issue?id={issue_id}&sent=resolve"
        sent = await commands(config, before)
        assert [(r.key, r.value["command"], r.value["id"]) for r in sent] == [
            (issue_id, "resolve", issue_id)  # keyed by the issue: its fingerprint partition
        ]

        async def status():
            found = dash.state.issue(issue_id, now_ms())
            return found and found["issue"].get("status")

        # The fingerprint stage carries it out; the dashboard sees the new issue record.
        assert await wait_for(status, lambda s: s == "resolved", 30) == "resolved"
        async with http.get(f"{live.base}/issue", params={"id": issue_id}) as resp:
            page = await resp.text()
        assert "Resolve issue" not in page
        assert "rolled back &lt;b&gt;1.4.3&lt;/b&gt;" in page and "<b>1.4.3" not in page


async def test_an_alert_whose_id_holds_crlf_is_acted_on_from_its_page(live: Live):
    """Alert ids carry service, rule and key text, which may hold any character: the form
    carries an opaque handle, so the browser's line-break normalisation and the page's
    control-character replacement cannot turn the id into another (unknown) one."""
    config, dash = live.config, live.dash
    sig = alert_signal("crlf", key="checkout|/pay\r\nX-Injected: 1\n\tend")
    await send_json(config.kafka, config.kafka.prefix + SIGNALS, sig["service"], sig)
    alert_id = "checkout:crlf:checkout|/pay\r\nX-Injected: 1\n\tend"

    async def probe():
        return dash.state.alert(alert_id)

    assert (await wait_for(probe, lambda a: a is not None, timeout_s=30))["status"] == "firing"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live.base}/alerts") as resp:
            page = await resp.text()
        start = page.index('<tr data-alert="checkout:crlf:')
        row = page[start : page.index("</tr>", start)]
        forms = re.findall(r'method="post" action="/actions">(.*?)</form>', row, re.S)
        ack = next(f for f in forms if 'value="ack"' in f)
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', ack))
        fields = {k: v.replace("\r\n", "\n").replace("\n", "\r\n") for k, v in fields.items()}
        before = await snapshot(config)  # the browser normalises line breaks to CRLF:
        async with http.post(
            f"{live.base}/actions",
            data={**fields, "action": "ack"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303, await resp.text()
        async with http.post(
            f"{live.base}/actions",
            data={**fields, "alert": "A" * 24, "action": "ack"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 404  # an unknown handle: nothing written
        sent = [r.value for r in await commands(config, before)]
        assert [(c["command"], c["id"]) for c in sent] == [("ack", alert_id)]
        assert set(fields) == {"csrf", "alert"}  # an opaque, URL-safe handle, not the id
        assert re.fullmatch(r"[A-Za-z0-9_-]{24}", fields["alert"])

        async def status():
            return (dash.state.alert(alert_id) or {}).get("status")

        assert await wait_for(status, lambda s: s == "acknowledged", 30) == "acknowledged"


async def _login(http: aiohttp.ClientSession, base: str, token: str, headers=None):
    """One login attempt as a browser makes it (CSRF from the login page): the response."""
    async with http.get(f"{base}/login", headers=headers) as resp:
        csrf = csrf_of(await resp.text())
    form = {"token": token, "csrf": csrf}
    return await http.post(f"{base}/login", data=form, headers=headers, allow_redirects=False)


async def test_reads_need_the_token_when_one_is_configured(live: Live):
    dash, base = live.dash, live.base
    loopback_guard = dash.guard
    try:
        dash.guard = Guard("127.0.0.1", token=TOKEN)
        async with aiohttp.ClientSession() as http:
            issue_id = next(iter(dash.state._issues))
            pages = ["/", "/service?name=checkout", "/issues", f"/issue?id={issue_id}", "/alerts"]
            for page in pages:
                async with http.get(f"{base}{page}", allow_redirects=False) as resp:
                    assert resp.status == 303, page
                    location = urlsplit(resp.headers["Location"])
                    assert location.path == "/login" and parse_qs(location.query) == {
                        "next": [page]
                    }
                    assert "app/pay.py" not in await resp.text()
            for path, headers in (
                ("/api/state", {}),
                ("/events", {}),
                ("/alerts", {"X-Prodmon-Fragment": "1"}),  # the live script's refresh
                ("/api/state", {"Authorization": "Bearer " + "w" * 40}),
                ("/api/state", {"Cookie": "prodmon_session=forged"}),
            ):
                async with http.get(f"{base}{path}", headers=headers) as resp:
                    assert resp.status == 401, (path, headers)
                    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                    assert "checkout" not in await resp.text()
            for public in ("/login", "/static/app.css", "/static/app.js"):
                async with http.get(f"{base}{public}") as resp:
                    assert resp.status == 200, public

            bearer = {"Authorization": f"Bearer {TOKEN}"}
            async with http.get(f"{base}/api/state", headers=bearer) as resp:
                assert resp.status == 200 and (await resp.json())["ready"] is True
            async with http.get(f"{base}/events", headers=bearer) as stream:
                assert stream.status == 200
                await next_event(stream, "hello", 5)

            resp = await _login(http, base, TOKEN)
            assert resp.status == 303
            session = {"Cookie": f"prodmon_session={resp.cookies['prodmon_session'].value}"}
            for page in pages:
                async with http.get(f"{base}{page}", headers=session) as resp:
                    assert resp.status == 200, page
            async with http.get(f"{base}/issue?id={issue_id}", headers=session) as resp:
                assert "app/pay.py" in await resp.text()
            async with http.get(f"{base}/events", headers=session) as stream:
                assert stream.status == 200
                await next_event(stream, "hello", 5)

            # the login page sends the browser back where it was going, and only on this site
            async with http.get(f"{base}/issues?status=new", allow_redirects=False) as resp:
                target = resp.headers["Location"]
            async with http.get(f"{base}{target}") as resp:
                assert 'name="next" value="/issues?status=new"' in await resp.text()
            for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
                async with http.get(f"{base}/login", params={"next": evil}) as resp:
                    assert 'name="next"' not in await resp.text()
    finally:
        dash.guard = loopback_guard


async def test_failed_logins_lock_out_their_client_not_the_others(live: Live):
    """50 guesses sent at once: only the first few are checked, then the guessing client
    (told apart behind a trusted proxy by X-Forwarded-For) is locked out, even with the
    right token, while another client still logs in; wrong bearer tokens count the same."""
    dash, base = live.dash, live.base
    loopback_guard = dash.guard
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    user = {"X-Forwarded-For": "198.51.100.7, 10.0.0.1"}  # the nearest untrusted hop
    try:
        dash.guard = Guard("127.0.0.1", token=TOKEN, trusted_proxies=parse_proxies(["127.0.0.1"]))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/login") as resp:
                csrf = csrf_of(await resp.text())

            async def guess(n: int) -> int:
                form = {"token": f"guess-{n:04d}-" + "g" * 20, "csrf": csrf}
                async with http.post(f"{base}/login", data=form, headers=attacker) as resp:
                    return resp.status

            started = time.monotonic()
            statuses = await asyncio.gather(*(guess(n) for n in range(50)))
            assert statuses.count(403) <= 4 and statuses.count(429) >= 46, statuses
            assert time.monotonic() - started < 10  # refused at once, not held open

            resp = await _login(http, base, TOKEN, attacker)
            assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
            assert "prodmon_session" not in resp.cookies
            resp = await _login(http, base, TOKEN, user)
            assert resp.status == 303 and "prodmon_session" in resp.cookies

            wrong = {"Authorization": "Bearer " + "b" * 40, "X-Forwarded-For": "192.0.2.44"}
            codes = []
            for _ in range(6):
                async with http.get(f"{base}/api/state", headers=wrong) as resp:
                    codes.append(resp.status)
            assert codes[:3] == [401] * 3 and codes[3:] == [429] * 3  # the 4th sets the lock
            right = {**wrong, "Authorization": f"Bearer {TOKEN}"}
            async with http.get(f"{base}/api/state", headers=right) as resp:
                assert resp.status == 429  # locked: not even the right token is checked
    finally:
        dash.guard = loopback_guard


async def test_session_cookie_is_secure_over_tls_and_behind_a_trusted_proxy(live: Live, tmp_path):
    dash, base = live.dash, live.base
    loopback_guard = dash.guard
    https = {"X-Forwarded-Proto": "https"}
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1",
    ]  # fmt: skip
    await asyncio.to_thread(subprocess.run, openssl, check=True, capture_output=True)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    runner = web.AppRunner(build_app(dash), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    tls_base = f"https://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls)) as http:

            async def cookie(guard: Guard, url: str, headers=None) -> Any:
                dash.guard = guard
                resp = await _login(http, url, TOKEN, headers)
                assert resp.status == 303
                return resp.cookies["prodmon_session"]

            untrusted = Guard("127.0.0.1", token=TOKEN)
            trusted = Guard(
                "127.0.0.1", token=TOKEN, trusted_proxies=parse_proxies(["::1/128", "127.0.0.0/8"])
            )
            assert not (await cookie(untrusted, base))["secure"]  # plain HTTP
            assert not (await cookie(untrusted, base, https))["secure"]  # header not believed
            assert (await cookie(trusted, base, https))["secure"]  # a trusted proxy's TLS
            proxied_http = {"X-Forwarded-Proto": "http"}
            assert not (await cookie(trusted, base, proxied_http))["secure"]
            assert (await cookie(untrusted, tls_base))["secure"]  # TLS to the dashboard
    finally:
        dash.guard = loopback_guard
        await runner.cleanup()
