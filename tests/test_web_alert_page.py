"""The dashboard's alert page and chart (issue 23): where every notification links. The
view is fed the records a real pipeline writes (rollups; alerts from the real baseline and
escalation stages), and served over loopback HTTP; the chart is checked as XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from ops.web import charts
from ops.web.app import Dashboard, WebSettings, build_app
from pipeline.config import Config, ConfigError, load_config, validate
from schemas.handles import action_handle
from tests.sinks.worded import HOSTILE, issue_alert, metric_alert, rollup

SVG = "{http://www.w3.org/2000/svg}"


def _limit_line(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    [line] = [e for e in root.iter(f"{SVG}line") if e.get("class") == "limit"]
    return line


def test_incident_chart_parses_and_draws_the_threshold_line_and_the_incident():
    values = [(1000 * 60 * m, 200.0 + 400 * (m in (3, 4, 5))) for m in range(10)]
    svg = charts.incident_chart(
        values,
        title=f"checkout {HOSTILE} p99",
        unit=" ms",
        limit=500.0,
        limit_label="threshold 500 ms",
        started=3 * 60_000,
        ended=6 * 60_000,
    )
    root = ET.fromstring(svg)  # well-formed: every label escaped
    assert root.tag == f"{SVG}svg" and root.get("data-points") == "10"
    line = _limit_line(svg)
    assert line.get("y1") == line.get("y2")  # horizontal
    assert line.find(f"{SVG}title").text == "threshold 500 ms"
    [polyline] = root.iter(f"{SVG}polyline")
    ys = [float(p.split(",")[1]) for p in polyline.get("points").split()]
    assert min(ys) < float(line.get("y1")) < max(ys)  # the spike crosses it, the rest does not
    assert [r for r in root.iter(f"{SVG}rect") if r.get("class") == "incident"]
    assert HOSTILE not in svg


def test_incident_chart_without_rollups_says_so():
    svg = charts.incident_chart(
        [], title="t", unit="", limit=1.0, limit_label="x", started=None, ended=None
    )
    assert "no rollups for this period" in ET.fromstring(svg).find(f"{SVG}text[2]").text


def test_external_url_is_validated_with_a_clear_error(tmp_path):
    config = Config()
    config.dashboard.external_url = "https://prodmon.example.com/"
    validate(config)
    assert config.dashboard.external_url == "https://prodmon.example.com"
    for bad in ("prodmon.example.com", "javascript:alert(1)", "https://x/a b", "https://x/?q=1"):
        config.dashboard.external_url = bad
        with pytest.raises(ConfigError, match=r"^dashboard\.external_url: expected an http"):
            validate(config)
    path = tmp_path / "prodmon.toml"
    path.write_text('[dashboard]\nexternal_url = "http://10.0.0.5:8080"\n')
    assert load_config(path, env={}).dashboard.external_url == "http://10.0.0.5:8080"


@pytest.fixture
async def dashboard() -> AsyncIterator[tuple[Dashboard, str]]:
    dash = Dashboard(Config(), WebSettings(port=0))
    runner = web.AppRunner(build_app(dash))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield dash, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_alert_page_shows_wording_chart_actions_and_ids_last(dashboard):
    dash, base = dashboard
    firing, _ = metric_alert()
    for minute, p99 in enumerate([200.0, 210.0, 1370.0, 2100.0, 1500.0, 220.0]):
        dash.state.apply("rollups", "k", rollup(minute - 2, p99))
    dash.state.apply("alerts", firing["alert_id"], firing)
    handle = action_handle(firing["alert_id"])
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/alert", params={"id": handle}) as answer:
            assert answer.status == 200
            page = await answer.text()
        async with http.get(f"{base}/alert/chart.svg", params={"id": handle}) as answer:
            assert answer.status == 200
            assert answer.content_type == "image/svg+xml"
            svg = await answer.text()
        async with http.get(f"{base}/alerts") as answer:
            listing = await answer.text()
        async with http.get(f"{base}/alert", params={"id": "x" * 24}) as answer:
            assert answer.status == 404
    assert "checkout /api/pay p99 1.5 s, above 1 s in 3 of the last 5 minutes" in page
    assert "<th>Threshold</th><td>above 1 s</td>" in page
    assert 'id="ack"' in page and 'id="silence"' in page
    assert '<svg class="chart incident"' in page
    assert page.index("Actions") < page.index("prodmon · firing · alert checkout:p99-over-1s")
    assert f'href="/alert?id={handle}"' in listing  # the alerts list links to the page
    line = _limit_line(svg)
    assert line.find(f"{SVG}title").text == "threshold 1 s"
    assert ET.fromstring(svg).get("data-points") == "6"


async def test_issue_alert_page_links_its_issue_and_escapes_event_text(dashboard):
    dash, base = dashboard
    issue = issue_alert()
    hostile = {**issue, "alert_id": "checkout:issue:" + "e" * 32, "title": HOSTILE}
    hostile["facts"] = {**issue["facts"], "culprit": {"text": HOSTILE}}
    for record in (issue, hostile):
        dash.state.apply("alerts", record["alert_id"], record)
    async with aiohttp.ClientSession() as http:
        pages = []
        for record in (issue, hostile):
            params = {"id": action_handle(record["alert_id"])}
            async with http.get(f"{base}/alert", params=params) as answer:
                pages.append(await answer.text())
        async with http.get(f"{base}/alert/chart.svg", params=params) as answer:
            assert answer.status == 404  # issues have no metric chart
    assert "app.pay.charge (app/pay.py:88)" in pages[0]
    assert 'href="/issue?id=27054bf8c6e40161cea5e686a5b3a7f4"' in pages[0]
    assert "<b>x</b>" not in pages[1] and "<!channel>" not in pages[1]
    assert "&lt;!channel&gt; &lt;b&gt;x&lt;/b&gt; @here" in pages[1]
