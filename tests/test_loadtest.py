"""The load-test kit: simulator shape and determinism, a short real run, a safe HTML report."""

from __future__ import annotations

import json
import statistics
import time

import orjson
from aiokafka import AIOKafkaConsumer

from loadtest.harness import run_loadtest
from loadtest.report import render_html, svg_chart
from loadtest.simulator import FleetSpec, Incident, daily_factor, generate_events, run_fleet

DAY0 = 1_795_305_600_000  # a UTC midnight
HOUR = 3_600_000


def latencies(events: list[dict], service: str | None = None, endpoint: str | None = None):
    return [
        e["duration_ms"]
        for e in events
        if e["schema"] == "latency/1"
        and (service is None or e["service"] == service)
        and (endpoint is None or e["endpoint"] == endpoint)
    ]


def test_generation_is_deterministic_per_seed_and_valid_shape():
    spec = FleetSpec(services=3, endpoints=2, hosts=2)
    a = generate_events(spec, DAY0, 2, 500, seed=7)
    b = generate_events(spec, DAY0, 2, 500, seed=7)
    c = generate_events(spec, DAY0, 2, 500, seed=8)
    assert a == b and a != c
    assert len(a) == 1000
    assert {(e["service"], e.get("endpoint")) for e in a if e["schema"] == "latency/1"} == set(
        spec.series()
    )
    assert all(DAY0 <= e["ts"] < DAY0 + 2000 for e in a)
    statuses = [e["status"] for e in a if e["schema"] == "latency/1"]
    assert any(s >= 400 for s in statuses) and statuses.count(200) > 0.9 * len(statuses)


def test_daily_cycle_changes_latency_by_hour():
    assert daily_factor(DAY0 + 18 * HOUR, 0.5) > 1.4 > 0.6 > daily_factor(DAY0 + 6 * HOUR, 0.5)
    spec = FleetSpec(services=2, endpoints=2, exception_rate=0, new_exception_rate=0)
    night = generate_events(spec, DAY0 + 6 * HOUR, 5, 400, seed=3)
    evening = generate_events(spec, DAY0 + 18 * HOUR, 5, 400, seed=3)
    ratio = statistics.median(latencies(evening)) / statistics.median(latencies(night))
    assert 2.0 < ratio < 4.0  # (1 + 0.5) / (1 - 0.5) = 3


def test_incident_window_is_slower_and_fails_more():
    incidents = (
        Incident(4, 4, "checkout", "/api/pay", "slowdown", 8.0),
        Incident(4, 4, "checkout", "/api/pay", "errors", 0.3),
        Incident(2, 2, "search", "/search", "outage"),
    )
    spec = FleetSpec(services=4, endpoints=2, incidents=incidents)
    events = generate_events(spec, DAY0, 10, 2000, seed=1)

    def part(lo: float, hi: float, service: str, endpoint: str) -> list[dict]:
        return [
            e
            for e in events
            if DAY0 + lo * 1000 <= e["ts"] < DAY0 + hi * 1000
            and e["service"] == service
            and e.get("endpoint", endpoint) == endpoint
        ]

    before, during = part(0, 4, "checkout", "/api/pay"), part(4, 8, "checkout", "/api/pay")
    slow = statistics.median(latencies(during)) / statistics.median(latencies(before))
    assert 5 < slow < 12

    def fail_rate(evs: list[dict]) -> float:
        lat = [e for e in evs if e["schema"] == "latency/1"]
        return sum(e["status"] >= 500 for e in lat) / len(lat)

    assert fail_rate(before) < 0.02 < 0.15 < fail_rate(during)
    assert any(e["schema"] == "error/1" for e in during)
    outage = [e for e in part(2, 4, "search", "/search") if e["schema"] == "latency/1"]
    assert outage and all(e["status"] == 503 for e in outage)
    other = [e for e in part(4, 8, "checkout", "/api/cart") if e["schema"] == "latency/1"]
    assert fail_rate(other) < 0.05  # only the target endpoint is hit


def test_incident_kind_is_checked():
    try:
        Incident(0, 1, "a", "/b", "meteor")
    except ValueError as exc:
        assert "meteor" in str(exc)
    else:
        raise AssertionError("an unknown incident kind was accepted")


async def test_fleet_processes_send_close_to_the_target_rate(bootstrap, topics):
    topic = topics + "events.raw"
    result = await _to_thread(run_fleet, bootstrap, topic, 3000, 3.0, 2, FleetSpec(), 5)
    assert result["events"] == sum(p["events"] for p in result["processes"])
    assert abs(result["events_per_s"] - 3000) < 0.1 * 3000
    assert [p["seed"] for p in result["processes"]] == [5000, 5001]
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    seen, keyed_right = 0, True
    try:
        deadline = time.monotonic() + 20
        while seen < result["events"] and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    batch = orjson.loads(m.value)
                    seen += len(batch)
                    keyed_right &= all(e["service"].encode() == m.key for e in batch)
    finally:
        await consumer.stop()
    assert seen == result["events"] and keyed_right


async def test_short_loadtest_reports_throughput_lag_and_detection(bootstrap, tmp_path):
    out = tmp_path / "report"
    report = await run_loadtest(bootstrap, 2000, 15, processes=1, out_dir=str(out))
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["params"]["rate"] == 2000
    for key in (
        "params",
        "fleet",
        "incident",
        "stages",
        "throughput",
        "raw_ceiling",
        "detection",
        "memory",
        "series",
    ):
        assert key in report and key in on_disk
    assert set(report["stages"]) == {
        "ingest",
        "fingerprint",
        "windows",
        "baseline",
        "escalation",
        "notify",
    }
    thr = report["throughput"]
    assert thr["fleet_events_per_s"] > 1500
    assert thr["pipeline_events_per_s"] > 0 and thr["raw_ceiling_events_per_s"] > 0
    assert thr["ratio_of_ceiling"] > 0
    assert thr["events_per_cpu_s"] > 0
    assert report["raw_ceiling"]["events"] == report["fleet"]["events"]
    series = report["series"]
    assert len(series["t"]) >= 10 and len(series["lag"]["ingest"]) == len(series["t"])
    assert report["stages"]["ingest"]["final_lag"] == 0
    det = report["detection"]
    assert det["detected"], det
    assert det["delay_s"] is not None and det["delay_s"] >= 0
    assert det["first"]["service"] == report["incident"]["service"]
    mem = report["memory"]
    assert all(v > 0 for v in mem["rss_peak_bytes"].values()) and mem["active_series"] == 32
    html = (out / "report.html").read_text()
    assert html.count("<svg") == 3 and "<script" not in html


def test_report_html_escapes_hostile_strings():
    evil = '<script>alert("x")</script>&'
    report = {
        "params": {"rate": evil, "duration_s": 1},
        "incident": {"service": evil, "endpoint": "/<b>", "kind": "slowdown"},
        "detection": {"detected": True, "delay_s": 1.5, "first": {"rule": evil}},
        "stages": {evil: {"messages_per_s": 1.0, "events_per_s": 2.0, "final_lag": 0}},
        "memory": {"rss_peak_bytes": {evil: 10}, "rss_idle_bytes": {}},
        "series": {
            "t": [0, 1, 2],
            "lag": {evil: [0, 5, 1]},
            "messages_per_s": {evil: [1.0, 2.0]},
            "rss_bytes": {evil: [1, 2, 3]},
        },
    }
    html = render_html(report)
    assert "<script" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "&amp;" in html
    svg = svg_chart(evil, [0, 1], {evil: [1, None]})
    assert "<script" not in svg and svg.startswith("<svg")


async def _to_thread(fn, *args):
    import asyncio

    return await asyncio.to_thread(fn, *args)
