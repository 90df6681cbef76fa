"""The load-test kit: simulator shape and determinism, a short real run, a safe HTML report."""

from __future__ import annotations

import json
import statistics

from loadtest.harness import (
    _detect_all,
    delay_summary,
    detection_report,
    detection_targets,
    percentile,
    run_loadtest,
)
from loadtest.report import detection_line, render_html, svg_chart
from loadtest.simulator import (
    FleetSpec,
    Incident,
    daily_factor,
    generate_events,
    incident_schedule,
    run_fleet,
)
from pipeline.config import KafkaConfig
from pipeline.topic_reader import read_topic

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


async def test_fleet_processes_share_the_rate_and_key_batches_by_service(bootstrap, topics):
    topic = topics + "events.raw"
    result = await _to_thread(run_fleet, bootstrap, topic, 3000, 3.0, 2, FleetSpec(), 5)
    assert result["events"] == sum(p["events"] for p in result["processes"])
    # Paced against wall time: never more than rate x duration. How close it gets is a
    # speed figure, reported by the load test and never asserted here.
    assert 0 < result["events"] <= 3000 * 3.0
    assert [p["seed"] for p in result["processes"]] == [5000, 5001]
    # Read with the project's reader: assigned partitions, explicit seeks to the beginning
    # offsets (a subscribing consumer's own offset reset can race with its first fetch).
    records = await read_topic(KafkaConfig(bootstrap=bootstrap), topic, timeout_s=20)
    seen = sum(len(r.value) for r in records)
    keyed_right = all(e["service"] == r.key for r in records for e in r.value)
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


def test_incident_schedule_staggers_kinds_over_distinct_services():
    spec = FleetSpec()
    schedule = incident_schedule(spec, 8, 60, 5.0)
    assert len(schedule) == 8
    assert len({i.service for i in schedule}) == 8  # each detected on its own
    assert {i.kind for i in schedule} == {"slowdown", "errors", "outage"}
    starts = [i.start_s for i in schedule]
    assert starts == sorted(starts) and len(set(starts)) == 8
    phases = sorted(round(start % 5.0, 3) for start in starts)  # every alignment in a window
    assert phases == [round(k * 5.0 / 8, 3) for k in range(8)]
    for inc in schedule:
        assert inc.start_s >= 10 and inc.start_s + inc.duration_s <= 60
        assert inc.duration_s >= 20  # a slowdown's rule needs 3 violating 5 s windows
        assert (inc.service, inc.endpoint) in spec.series()
    assert len(incident_schedule(spec, 100, 60, 5.0)) == len(spec.series())  # one per series
    per_service: dict[str, list[str]] = {}
    for inc in incident_schedule(spec, 24, 120, 5.0):
        per_service.setdefault(inc.service, []).append(inc.kind)
    for kinds in per_service.values():  # a slowdown after a 5xx alert would be inhibited
        assert kinds == sorted(kinds, key=lambda k: k != "slowdown"), kinds
    short = incident_schedule(spec, 3, 20, 5.0, ("errors", "outage"))
    assert [i.kind for i in short] == ["errors", "outage", "errors"]
    assert all(i.start_s + i.duration_s <= 20 for i in short)


def test_percentiles_and_budget_from_per_incident_delays():
    assert percentile([], 99) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    delays = [float(d) for d in range(1, 101)]
    assert percentile(delays, 50) == 50.0 and percentile(delays, 99) == 99.0
    assert percentile([5.0, 6.0, 9.0], 99) == 9.0  # nearest rank: few samples give the max
    ok = delay_summary([4.0, 6.5, 5.0], budget_s=7.0)
    assert ok == {
        "detected": 3,
        "total": 3,
        "p50_s": 5.0,
        "p95_s": 6.5,
        "p99_s": 6.5,
        "max_s": 6.5,
        "budget_s": 7.0,
        "within_budget": True,
    }
    missed = delay_summary([4.0, None], budget_s=7.0)
    assert missed["detected"] == 1 and missed["total"] == 2 and not missed["within_budget"]
    assert not delay_summary([8.0], budget_s=7.0)["within_budget"]
    assert not delay_summary([None], budget_s=7.0)["within_budget"]
    rows = [
        {"kind": "errors", "delay_s": 4.0, "detected": True, "window_end_to_notification_s": 2.1},
        {"kind": "outage", "delay_s": 9.0, "detected": True, "window_end_to_notification_s": 2.3},
        {
            "kind": "errors",
            "delay_s": None,
            "detected": False,
            "window_end_to_notification_s": None,
        },
    ]
    rep = detection_report(rows, window_s=5.0, lateness_s=2.0)
    assert rep["budget_s"] == 7.0 and rep["summary"]["p99_s"] == 9.0
    assert rep["by_kind"]["errors"]["detected"] == 1 and rep["by_kind"]["errors"]["total"] == 2
    assert rep["window_end_to_notification"]["max_s"] == 2.3 and rep["incidents"] == rows
    line = detection_line(rep)
    assert "2/3 incidents detected" in line and "p99 9.00 s" in line and "NOT within" in line


def test_each_incident_is_matched_to_its_own_series():
    t0 = 1_000_000.0
    script = (
        Incident(10, 20, "checkout", "/api/pay", "slowdown", 8.0),
        Incident(10, 20, "checkout", "/api/pay", "errors", 0.2),  # one incident with the above
        Incident(12, 20, "search", "/search", "outage"),
        Incident(14, 20, "search", "/suggest", "errors", 0.2),
    )
    targets = detection_targets(script)
    assert [t["kinds"] for t in targets] == [["slowdown", "errors"], ["outage"], ["errors"]]

    def hit(arrived: float, service: str, key: str, **extra) -> dict:
        first_seen = int((t0 + arrived - 2) * 1000)  # its window closed 2 s before arrival
        base = {"arrived": t0 + arrived, "service": service, "key": key, "rule": "r"}
        return {**base, "first_seen": first_seen, "transition": "firing", **extra}

    hits = [
        hit(11, "checkout", "checkout|/api/pay", first_seen=int((t0 + 5) * 1000)),  # old window
        hit(12, "checkout", "checkout|/api/pay", transition="resolved"),
        hit(13, "checkout", "fp-123"),  # an issue, not a series
        hit(16, "checkout", "checkout|*"),
        hit(18, "search", "search|*"),  # two incidents on search: the service series is ambiguous
        hit(19, "search", "search|/suggest"),
        hit(20, "search", "search|/search"),
    ]
    found = _detect_all(hits, targets, t0)
    assert [d["delay_s"] for d in found] == [6.0, 8.0, 5.0]
    assert [d["key"] for d in found] == ["checkout|*", "search|/search", "search|/suggest"]
    assert found[0]["kind"] == "slowdown+errors" and found[0]["window_end_to_notification_s"] == 2
    assert found[0]["first_any_notification_delay_s"] == 1.0


async def test_loadtest_with_several_incidents_detects_each(bootstrap, tmp_path):
    out = tmp_path / "report"
    report = await run_loadtest(
        bootstrap, 2000, 20, out_dir=str(out), incidents=3, incident_kinds=("errors", "outage")
    )
    scripted = report["incidents"]
    assert len(scripted) == 3 and len({i["service"] for i in scripted}) == 3
    dets = json.loads((out / "report.json").read_text())["detections"]
    assert dets["window_s"] == 5.0 and dets["allowed_lateness_s"] == 2.0
    assert dets["budget_s"] == 7.0  # window + 2 s, from the config the run used
    per = dets["incidents"]
    assert [(d["service"], d["endpoint"], d["kind"]) for d in per] == [
        (i["service"], i["endpoint"], i["kind"]) for i in scripted
    ]
    for d in per:
        assert d["detected"], d
        assert d["delay_s"] >= 0 and d["first"]["service"] == d["service"]
        assert d["key"].startswith(d["service"] + "|")
        assert d["window_end_to_notification_s"] is not None
    assert dets["summary"] == delay_summary([d["delay_s"] for d in per], budget_s=7.0)
    assert dets["summary"]["detected"] == dets["summary"]["total"] == 3
    assert report["detection"]["service"] == per[0]["service"]
    html = (out / "report.html").read_text()
    assert "Detection per incident" in html and html.count(per[2]["service"]) >= 1


def test_report_html_escapes_hostile_strings():
    evil = '<script>alert("x")</script>&'
    report = {
        "params": {"rate": evil, "duration_s": 1},
        "incident": {"service": evil, "endpoint": "/<b>", "kind": "slowdown"},
        "detection": {"detected": True, "delay_s": 1.5, "first": {"rule": evil}},
        "detections": {
            "budget_s": 7.0,
            "summary": {"detected": 1, "total": 1, "p50_s": 1.5, "p99_s": 1.5, "max_s": 1.5},
            "incidents": [{"service": evil, "endpoint": "/<b>", "kind": evil, "rule": evil}],
        },
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
