"""The web dashboard's pure parts: the materialized view, its bounds, the SVG charts, and the
HTML pages' escaping of attacker-controlled event text. No broker, no server."""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser

import pytest

from histograms.hdr import SparseHistogram, layout
from ops.dashboard_view import dashboard_data
from ops.sla_view import service_status
from ops.web import charts, render
from ops.web.feed import Broadcaster
from ops.web.security import LoginThrottle, check_token, is_loopback, parse_proxies
from ops.web.state import DAY_MS, HOUR_MS, DashboardState, Limits
from pipeline.config import ConfigError, load_config
from schemas.handles import action_handle
from sla import SLAConfig

NOW = 1_795_320_000_000 - 1_795_320_000_000 % HOUR_MS
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(document.cookie)>'
HOSTILE = f"{SCRIPT} {IMG} '-alert(3)-' javascript:alert(4)"


def hist(values_ms: list[float]) -> str:
    h = SparseHistogram(layout())
    for v in values_ms:
        h.record(int(v * 1000))
    return h.encode()


def rollup(
    series: str, start: int, resolution: str = "10s", values=(10.0, 20.0, 90.0), errors: int = 0
) -> dict:
    size = {"10s": 10_000, "1m": 60_000, "1h": HOUR_MS}[resolution]
    service, _, endpoint = series.rpartition("|")
    return {
        "id": f"{series}|{resolution}|{start}",
        "series": series,
        "service": service,
        "endpoint": endpoint,
        "resolution": resolution,
        "start": start,
        "end": start + size,
        "count": len(values),
        "errors": errors,
        "client_errors": 0,
        "late": 0,
        "mean_ms": sum(values) / len(values),
        "max_ms": max(values),
        "p50_ms": sorted(values)[len(values) // 2],
        "p90_ms": max(values),
        "p95_ms": max(values),
        "p99_ms": max(values),
        "p999_ms": max(values),
        "hist": hist(list(values)),
    }


def issue(issue_id: str, count: int, last_seen: int, status: str = "active", **kw) -> dict:
    return {
        "type": "count",
        "issue_id": issue_id,
        "title": kw.get("title", f"ValueError: bad {issue_id}"),
        "exception_type": "ValueError",
        "message_template": kw.get("title", "bad"),
        "status": status,
        "count": count,
        "first_seen": kw.get("first_seen", NOW - 10 * DAY_MS),
        "last_seen": last_seen,
        "ts": last_seen,
        "updated_at": last_seen,
        "services": kw.get("services", ["checkout"]),
        "releases": kw.get("releases", ["1.0"]),
        "first_release": "1.0",
        "severity": "high",
        "sample": kw.get("sample"),
        "resolved_at": None,
        "resolution_notes": kw.get("notes"),
        "resolved_by": None,
    }


def transition(alert_id: str, seq: int, name: str, status: str, ts: int, **kw) -> dict:
    return {
        "id": f"{alert_id}|{seq}|{name}",
        "alert_id": alert_id,
        "transition": name,
        "seq": seq,
        "level": 0,
        "severity": kw.get("severity", "high"),
        "status": status,
        "title": kw.get("title", f"rule: {alert_id}"),
        "summary": kw.get("summary", "p99 too high"),
        "service": alert_id.split(":", 1)[0],
        "key": "checkout|/pay",
        "rule": "rule",
        "labels": {},
        "channels": ["slack"],
        "muted": None,
        "count": 1,
        "first_seen": ts,
        "last_seen": ts,
        "ts": ts,
        "notes": kw.get("notes"),
        "author": kw.get("author"),
        "evidence": {},
    }


# --- the view ---------------------------------------------------------------------------------


def test_rollups_make_service_rows_sla_charts_and_endpoint_table():
    state = DashboardState(SLAConfig())
    sent = []
    for i in range(18):  # three minutes of 10 s windows for two series, and 1 min rollups
        start = NOW + i * 10_000
        for series in ("checkout|*", "checkout|/pay"):
            sent.append(rollup(series, start, values=(10.0, 20.0, 30.0 + i)))
            assert state.apply("rollups", series, sent[-1]) == "rollups"
    minutes = [
        rollup("checkout|*", NOW + m * 60_000, "1m", values=(5.0, 50.0, 400.0)) for m in (0, 1)
    ]
    for r in minutes:
        state.apply("rollups", r["series"], r)
    assert state.apply("rollups", "x", {"not": "a rollup"}) is None
    assert state.apply("nonsense", "x", minutes[0]) is None

    (row,) = state.service_rows()
    assert row["service"] == "checkout"
    sla = row["sla"]
    assert sla["resolution"] == "1m"  # 1 min windows preferred when present
    report, _ = service_status("checkout", minutes, SLAConfig(), HOUR_MS)
    expected = report.to_dict()
    assert sla["status"] == expected["status"]
    assert sla["p99_ms"] == expected["metrics"]["p99_ms"]["value"]  # merged histograms
    assert sla["count"] == 6 and sla["throughput_rps"] == pytest.approx(6 / 120)
    assert row["now"]["rps"] == pytest.approx(0.3) and row["now"]["p99_ms"] == 47.0

    page = state.service_page("checkout")
    assert [p.start for p in page["charts"]["10s"]] == [NOW + i * 10_000 for i in range(18)]
    assert len(page["charts"]["1m"]) == 2 and page["charts"]["1h"] == []
    (endpoint,) = page["endpoints"]  # the whole-service series is not an endpoint
    assert endpoint["endpoint"] == "/pay" and endpoint["count"] == 54
    assert endpoint["last"].p99_ms == 47.0
    assert state.service_page("nope") is None


def test_memory_is_bounded():
    limits = Limits(max_series=3, max_issues=10, max_alerts=5)
    state = DashboardState(limits=limits)
    for i in range(720):  # two hours of 10 s windows
        state.apply("rollups", "s", rollup("svc|*", NOW + i * 10_000))
        state.apply("rollups", "s", rollup("svc|/a", NOW + i * 10_000))
    whole, endpoint = state.points("svc", "*", "10s"), state.points("svc", "/a", "10s")
    last_end = NOW + 720 * 10_000
    assert len(whole) == 360 and whole[0].end > last_end - HOUR_MS  # 1 h of 10 s windows
    assert len(endpoint) == 90  # endpoint series: 15 min
    kept = state._series[("svc", "*", "10s")].hists
    assert len(kept) == 360 and min(kept) >= last_end - HOUR_MS  # histograms: the SLA period
    assert not state._series[("svc", "/a", "10s")].hists  # endpoint histograms are not kept
    state.apply("rollups", "s", rollup("svc|/old", NOW))  # a 3rd series, long quiet
    state.apply("rollups", "s", rollup("svc|/new", last_end))  # a 4th: evicts the quietest
    assert state.points("svc", "/old", "10s") == [] and state.points("svc", "/new", "10s")
    assert state.points("svc", "*", "10s")  # whole-service series go last

    for n in range(20):
        status = "resolved" if n % 2 else "active"
        state.apply("issues", f"i{n}", issue(f"i{n}", 5, NOW + n * 1000, status=status))
    kept_issues = state.issues(NOW)
    assert len(kept_issues) <= 10
    assert all(i["status"] == "active" for i in kept_issues[:5])

    for n in range(8):
        state.apply("alerts", "a", transition(f"svc:r{n}:k", 1, "firing", "firing", NOW + n))
    assert len(state.alerts()) == 5
    state.apply("alerts", "a", transition("svc:old:k", 2, "resolved", "resolved", NOW - 2 * DAY_MS))
    assert state.alert("svc:old:k") is None  # resolved more than a day ago


def test_issues_keep_the_latest_record_and_a_seven_day_trend():
    state = DashboardState()
    records = [
        issue("a", 100, NOW - 3 * DAY_MS),
        issue("a", 130, NOW - 2 * HOUR_MS),
        issue("b", 5, NOW - 2 * DAY_MS, status="resolved"),
        issue("c", 7, NOW - 60_000, title=HOSTILE),
        issue("a", 120, NOW - 5 * HOUR_MS),  # an older update arriving late: ignored
    ]
    for r in records:
        assert state.apply("issues", r["issue_id"], r) == "issues"
    listed = state.issues(NOW)
    assert [i["issue_id"] for i in listed] == ["a", "c", "b"]
    assert listed[0]["count"] == 130
    assert listed[0]["trend"] == [0, 0, 0, 100, 0, 0, 30]  # 3 days ago, to the ms
    assert state.issues(NOW, status="resolved")[0]["issue_id"] == "b"
    kpis = state.kpis(NOW)
    reference = dashboard_data(records, [], [], SLAConfig(), NOW)  # `prodmon dashboard`
    assert kpis["total_exceptions_24h"] == reference["total_exceptions_24h"] == 37
    assert kpis["error_trend"] == reference["error_trend"]
    assert kpis["active_exceptions"] == 2
    detail = state.issue("c", NOW)
    assert detail["analysis"]["issue_id"] == "c" and "confidence" in detail["analysis"]
    assert state.issue("zzz", NOW) is None


def test_alerts_deliveries_and_commands():
    state = DashboardState()
    aid = "checkout:rule:checkout|/pay"
    state.apply("alerts", aid, transition(aid, 1, "firing", "firing", NOW))
    state.apply(
        "commands", "checkout", {"command": "ack", "id": aid, "ts": NOW + 5, "author": "ana"}
    )
    assert state.alert_details(aid)["request"]["command"] == "ack"  # sent, not yet handled
    state.apply(
        "alerts", aid, transition(aid, 2, "acknowledged", "acknowledged", NOW + 9, author="ana")
    )
    state.apply("alerts", aid, transition(aid, 1, "firing", "firing", NOW))  # re-delivered
    (alert,) = state.alerts()
    assert alert["status"] == "acknowledged" and alert["seq"] == 2
    details = state.alert_details(aid)
    assert details["request"] is None  # the alert changed after the command
    assert [t["transition"] for t in details["transitions"]] == ["firing", "acknowledged"]
    for attempt, status in ((1, "failed"), (2, "delivered")):
        state.apply(
            "deliveries",
            aid,
            {
                "id": f"{aid}|1|firing|slack|{attempt}|{status}",
                "alert_id": aid,
                "channel": "slack",
                "status": status,
                "final": status == "delivered",
                "attempts": attempt,
                "reason": None,
                "ts": NOW,
            },
        )
    assert [d["status"] for d in state.alert_details(aid)["deliveries"]] == ["delivered"]
    silence = {
        "command": "silence",
        "id": "silence",
        "command_id": "c1",
        "matchers": {"service": "checkout"},
        "starts_at": NOW,
        "ends_at": NOW + HOUR_MS,
        "author": "ana",
        "comment": "deploy",
    }
    assert state.apply("commands", "silence", silence) == "commands"
    assert state.apply("commands", "silence", silence) is None  # the copy for another partition
    assert [s["silence_id"] for s in state.silences(NOW)] == ["c1"]
    assert state.silences(NOW + 2 * HOUR_MS) == []
    assert state.apply("commands", "fp", {"command": "resolve", "id": "abc123"}) is None


async def test_broadcaster_coalesces_changes_per_subscriber():
    b = Broadcaster()
    seen = b.version
    waiter = asyncio.create_task(b.wait(seen, 5))
    await asyncio.sleep(0)
    b.publish({"alerts"})
    b.publish({"rollups"})
    b.publish(set())  # nothing changed: no version
    assert await waiter is True
    assert b.changed_since(seen) == {"alerts", "rollups"} and b.version == 2
    assert await b.wait(b.version, 0.05) is False
    b.close()
    assert b.closed and await b.wait(b.version, 5) is False


# --- charts -------------------------------------------------------------------------------------


def test_line_chart_plots_points_and_breaks_on_gaps():
    svg = charts.line_chart(
        [
            ("p50", "#00f", [(NOW, 1.0), (NOW + 10_000, None), (NOW + 20_000, 3.0)]),
            ("p99", "#f00", [(NOW, 9.0), (NOW + 10_000, 12.0), (NOW + 20_000, 15.5)]),
        ],
        title=f"svc {SCRIPT}",
    )
    assert 'data-points="5"' in svg and svg.count("<circle") == 5
    assert svg.count("<polyline") == 3  # p50 is broken by its gap
    assert SCRIPT not in svg and "&lt;script&gt;" in svg
    assert "no data yet" in charts.line_chart([("p50", "#00f", [])], title="empty")
    bars = charts.bars([("mon", 1), ("tue", 0), ("wed", 4)])
    assert bars.count("<rect") == 3 and 'data-points="3"' in bars


# --- escaping -----------------------------------------------------------------------------------


class Elements(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.inline_script = ""
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.inline_script += data
        self.text.append(data)


def assert_inert(html: str) -> str:
    """No injected element, script or handler; returns the page's text."""
    page = Elements()
    page.feed(html)
    names = [tag for tag, _ in page.tags]
    assert "img" not in names and "iframe" not in names
    assert [a.get("src") for tag, a in page.tags if tag == "script"] in ([], ["/static/app.js"])
    assert page.inline_script.strip() == ""
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name, value)
            assert not (value or "").strip().lower().startswith("javascript:"), (tag, name)
    assert SCRIPT not in html and "<img" not in html
    return "".join(page.text)


def test_hostile_event_text_is_escaped_on_every_page():
    state = DashboardState()
    service = f"svc{IMG}"
    for i in range(3):
        state.apply("rollups", "s", rollup(f"{service}|/x{SCRIPT}", NOW + i * 10_000))
        state.apply("rollups", "s", rollup(f"{service}|*", NOW + i * 10_000))
    sample = {
        "exception": {"type": f"Err{SCRIPT}", "message": HOSTILE},
        "stacktrace": [
            {"module": IMG, "function": SCRIPT, "filename": IMG, "lineno": SCRIPT, "in_app": True}
        ],
    }
    hostile_issue = issue(
        f"id{IMG}",
        9,
        NOW - 1000,
        title=f"ValueError: {HOSTILE}",
        services=[service],
        releases=[SCRIPT],
        sample=sample,
        notes=HOSTILE,
    )
    state.apply("issues", "k", hostile_issue)
    aid = f"{service}:{SCRIPT}:{IMG}"
    state.apply(
        "alerts",
        aid,
        transition(
            aid,
            1,
            "firing",
            "firing",
            NOW,
            title=HOSTILE,
            summary=HOSTILE,
            notes=IMG,
            author=SCRIPT,
            severity=IMG,
        ),
    )
    state.apply(
        "deliveries",
        aid,
        {
            "id": "d",
            "alert_id": aid,
            "channel": SCRIPT,
            "status": IMG,
            "final": True,
            "attempts": 1,
            "reason": HOSTILE,
            "ts": NOW,
        },
    )
    state.apply(
        "commands",
        "silence",
        {
            "command": "silence",
            "command_id": "c",
            "matchers": {SCRIPT: IMG},
            "starts_at": NOW,
            "ends_at": NOW + HOUR_MS,
            "author": IMG,
            "comment": HOSTILE,
        },
    )
    actions = render.Actions(enabled=True, authorized=True, csrf=IMG, login_required=True)
    pages = {
        "overview": render.overview(state.kpis(NOW), state.service_rows(), state.alerts(), True),
        "service": render.service(state.service_page(service), True),
        "endpoint": render.service(state.service_page(service, f"/x{SCRIPT}"), True),
        "issues": render.issues(state.issues(NOW), None, NOW, True),
        "issue": render.issue(state.issue(hostile_issue["issue_id"], NOW), NOW, True, actions),
        "alerts": render.alerts(
            state.alerts(),
            {aid: state.alert_details(aid)},
            state.silences(NOW),
            actions,
            HOSTILE,
            False,
        ),
    }
    for name, body in pages.items():
        full = render.layout(
            HOSTILE, body, active=name, views=IMG, version=1, ready=True, actions=actions
        )
        text = assert_inert(full)
        assert HOSTILE in text or SCRIPT in text, name  # shown as text, not dropped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["issue"]  # the sample message
    assert f"in {render.t(SCRIPT)}" in pages["issue"]  # the frame
    form_fields = [
        a for tag, a in _tags(pages["alerts"]) if tag == "input" and a.get("name") == "alert"
    ]
    assert form_fields and all(a["value"] == action_handle(aid) for a in form_fields)
    assert state.alert_by_handle(form_fields[0]["value"]) == aid  # finds it when posted


def _tags(html: str) -> list[tuple[str, dict]]:
    page = Elements()
    page.feed(html)
    return page.tags


def test_loopback_and_token_rules():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "::", "example.com"))
    assert check_token(None) is None and check_token("") is None
    with pytest.raises(ValueError, match="PRODMON_DASHBOARD_TOKEN") as excinfo:
        check_token("short-secret")
    assert "short-secret" not in str(excinfo.value)
    assert check_token("x" * 16) == "x" * 16


def test_action_handles_are_opaque_url_safe_and_forgotten_with_their_item():
    state = DashboardState(limits=Limits(max_alerts=2, max_issues=10))
    crlf = "svc\r\n:rule:key\n\t|/pay"
    state.apply("alerts", "svc", transition(crlf, 1, "firing", "firing", NOW))
    state.apply("issues", "fp\r\n", issue("fp\r\nX", 3, NOW))
    handle = action_handle(crlf)
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", handle) and handle == action_handle(crlf)
    assert state.alert_by_handle(handle) == crlf and state.issue_by_handle(handle) is None
    assert state.issue_by_handle(action_handle("fp\r\nX")) == "fp\r\nX"
    for bad in (crlf, "A" * 24, None, 7, handle + "x"):
        assert state.alert_by_handle(bad) is None
    page = render.alerts(
        state.alerts(), {}, [], render.Actions(True, True, "c" * 64, False), None, True
    )
    assert f'name="alert" value="{handle}"' in page and 'name="alert_id"' not in page
    for n in range(3):  # evicts the first alert (max_alerts=2), and its handle with it
        state.apply("alerts", "svc", transition(f"svc:r{n}:k", 1, "firing", "firing", NOW + 1 + n))
    assert state.alert(crlf) is None and handle not in state._handles


def test_login_throttle_doubles_the_lockout_per_client_and_stays_bounded():
    now = [0.0]
    throttle = LoginThrottle(
        free_failures=3, base_s=1, max_s=60, forget_s=3600, max_clients=100, clock=lambda: now[0]
    )
    locks = [throttle.failed("203.0.113.9") for _ in range(12)]
    assert locks == [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert throttle.retry_after("203.0.113.9") == 60 and throttle.retry_after("other") == 0
    now[0] += 61
    assert throttle.retry_after("203.0.113.9") == 0  # may try again, once:
    assert throttle.failed("203.0.113.9") == 60  # the count was kept
    now[0] += 3601  # an hour without failures: forgotten
    assert throttle.retry_after("203.0.113.9") == 0 and len(throttle) == 0
    assert throttle.failed("203.0.113.9") == 0
    throttle.failed("198.51.100.7")
    throttle.succeeded("198.51.100.7")  # a good login clears the client
    assert throttle.retry_after("198.51.100.7") == 0 and len(throttle) == 1
    for n in range(1000):  # a spray of addresses never grows it past max_clients
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle) == 100


def test_trusted_proxies_are_checked_at_start():
    config = load_config(env={"PRODMON_DASHBOARD__TRUSTED_PROXIES": "10.0.0.1, fd00::/8"})
    assert config.dashboard.trusted_proxies == ("10.0.0.1", "fd00::/8")
    assert [str(n) for n in parse_proxies(config.dashboard.trusted_proxies)] == [
        "10.0.0.1/32",
        "fd00::/8",
    ]
    assert load_config(env={}).dashboard.trusted_proxies == ()
    with pytest.raises(ConfigError, match=r"dashboard\.trusted_proxies"):
        load_config(env={"PRODMON_DASHBOARD__TRUSTED_PROXIES": "proxy.internal"})


def test_a_flood_of_tiny_services_cannot_push_busy_ones_off_the_overview():
    state = DashboardState(SLAConfig(), Limits(max_series=50))
    busy = {"checkout": 40, "search": 30, "cart": 20}
    for i in range(6):
        for service, count in busy.items():
            values = tuple(float(v % 50 + 1) for v in range(count))
            state.apply(
                "rollups", f"{service}|*", rollup(f"{service}|*", NOW + i * 10_000, values=values)
            )
    for n in range(200):  # one client's bug: a new service name per event, arriving later
        state.apply("rollups", f"bug-{n}|*", rollup(f"bug-{n}|*", NOW + 60_000, values=(1.0,)))
    rows = state.service_rows()
    names = [row["service"] for row in rows]
    assert names[:3] == ["checkout", "search", "cart"]  # kept, busiest first
    assert len(names) <= 50
    state.apply("alerts", "cart:p99", transition("cart:p99", 1, "firing", "firing", NOW))
    assert state.service_rows()[0]["service"] == "cart"  # a problem ranks above traffic
