"""The baseline stage, pure: anomalies on the right series, rule signals, state that survives."""

from __future__ import annotations

import random
from typing import Any

import orjson

from detection.detector import DetectorConfig
from detection.rules import DEFAULT_RULES
from stages.base import Record, StageResult
from stages.baseline import BaselineConfig, BaselineStage

T0 = 1_795_320_000_000 - 1_795_320_000_000 % 3_600_000
MIN = 60_000


def rollup(series: str, start: int, count: int, p50: float, p99: float, errors: int = 0):
    service, _, endpoint = series.rpartition("|")
    return {
        "id": f"{series}|1m|{start}",
        "series": series,
        "service": service,
        "endpoint": endpoint,
        "resolution": "1m",
        "start": start,
        "end": start + MIN,
        "count": count,
        "errors": errors,
        "client_errors": 0,
        "late": 0,
        "mean_ms": p50,
        "max_ms": p99 * 1.2,
        "p50_ms": p50,
        "p90_ms": p50 * 1.5,
        "p95_ms": p50 * 2,
        "p99_ms": p99,
        "p999_ms": p99 * 1.1,
        "hist": "",
    }


def healthy(rng: random.Random, series: str, minute: int) -> dict:
    return rollup(
        series,
        T0 + minute * MIN,
        count=int(rng.gauss(600, 25)),
        p50=rng.gauss(40, 2),
        p99=rng.gauss(180, 10),
        errors=rng.randrange(0, 2),
    )


def feed(stage: BaselineStage, values: list[dict], topic: str = "rollups") -> StageResult:
    records = [Record(topic, 0, i, None, orjson.dumps(v)) for i, v in enumerate(values)]
    return stage.process(records, 0.0)


def signals(result: StageResult) -> list[dict[str, Any]]:
    return [e.value for e in result.emits if e.topic == "signals"]


def run_minutes(stage, rng, minutes, slow_from=None, changelog=None):
    out = []
    for minute in minutes:
        batch = [healthy(rng, "search|/q", minute)]
        pay = healthy(rng, "checkout|/pay", minute)
        if slow_from is not None and minute >= slow_from:
            pay = rollup("checkout|/pay", pay["start"], pay["count"], 260.0, 2400.0)
        batch.append(pay)
        result = feed(stage, batch)
        if changelog is not None:
            changelog.update(result.state)
        out += signals(result)
    return out


def test_a_slowdown_fires_for_its_series_only_and_resolves():
    stage = BaselineStage(BaselineConfig(resolve_after_s=180))
    rng = random.Random(1)
    quiet = run_minutes(stage, rng, range(0, 120))
    assert [s for s in quiet if s["kind"] == "anomaly"] == []  # noise: no false alarms
    incident = run_minutes(stage, rng, range(120, 130), slow_from=120)
    anomalies = [s for s in incident if s["kind"] == "anomaly" and s["state"] == "firing"]
    assert anomalies and {s["key"] for s in anomalies} == {"checkout|/pay"}
    first = min(s["ts"] for s in anomalies)
    assert first <= T0 + 123 * MIN  # caught within a few minutes
    evidence = anomalies[0]["baseline"]
    assert evidence["z"] > 0 and 0 < evidence["score"] <= 1 and evidence["spread"] > 0
    p99 = [s for s in incident if s["rule"] == "p99-over-1s" and s["state"] == "firing"]
    assert [s["key"] for s in p99] == ["checkout|/pay"]  # the static rule fires too
    after = run_minutes(stage, rng, range(130, 160))
    assert any(s["state"] == "resolved" and s["key"] == "checkout|/pay" for s in after)


def test_a_restored_stage_keeps_what_it_learned():
    rng = random.Random(2)
    changelog: dict = {}
    stage = BaselineStage()
    run_minutes(stage, rng, range(0, 90), changelog=changelog)
    restored = BaselineStage()
    for (partition, key), value in changelog.items():
        restored.restore(partition, key, value)
    # No new warm-up: a slowdown right after the restart is caught.
    fired = run_minutes(restored, rng, range(90, 96), slow_from=90)
    assert any(s["kind"] == "anomaly" and s["key"] == "checkout|/pay" for s in fired)
    # A window re-emitted after a crash is not learned twice.
    again = feed(restored, [healthy(rng, "search|/q", 95)])
    assert again.emits == [] and restored.stats["ignored"] >= 1


def test_a_fresh_stage_does_not_fire_during_warm_up():
    stage = BaselineStage(BaselineConfig(detector=DetectorConfig(warmup=30)))
    rng = random.Random(3)
    out = run_minutes(stage, rng, range(0, 10), slow_from=5)
    assert [s for s in out if s["kind"] == "anomaly"] == []


def issue(kind: str, count: int, last_seen: int, **extra) -> dict:
    return {
        "type": kind,
        "issue_id": "f" * 32,
        "exception_type": extra.get("exception_type", "KeyError"),
        "message_template": extra.get("message", "<str>"),
        "status": "new" if kind == "new" else "active",
        "count": count,
        "first_seen": T0,
        "last_seen": last_seen,
        "ts": last_seen,
        "severity": extra.get("severity", "high"),
        "services": ["search"],
        "sample": {"service": "search"},
    }


def test_a_new_issue_and_a_database_failure_raise_rule_signals():
    stage = BaselineStage(rules=DEFAULT_RULES)
    out = signals(feed(stage, [issue("new", 3, T0 + 5000)], topic="issues"))
    assert [(s["rule"], s["severity"]) for s in out] == [("new-issue", "high")]
    db = issue(
        "new",
        1,
        T0 + 1000,
        exception_type="psycopg.OperationalError",
        message="connection to server at <str>, port <num> failed: Connection refused",
        severity="critical",
    )
    db["issue_id"] = "d" * 32
    rules = {s["rule"]: s for s in signals(feed(stage, [db], topic="issues"))}
    assert rules["db-connection-failure"]["severity"] == "critical"
    assert rules["db-connection-failure"]["key"] == "d" * 32


def test_error_budget_burn_and_sla_critical_fire_on_an_outage():
    stage = BaselineStage()
    rng = random.Random(4)
    for minute in range(0, 60):
        feed(stage, [healthy(rng, "checkout|*", minute)])
    out = []
    for minute in range(60, 75):  # 40% errors and slow: budget burning at 400x
        r = rollup("checkout|*", T0 + minute * MIN, 600, 150.0, 3000.0, errors=240)
        r["p95_ms"] = 900.0
        out += signals(feed(stage, [r]))
    rules = {s["rule"] for s in out if s["state"] == "firing"}
    assert {"error-budget-burn", "sla-critical", "high-5xx-rate"} <= rules
    burns = {s["key"]: s["severity"] for s in out if s["rule"] == "error-budget-burn"}
    assert burns == {"checkout|*|burn:6h/30m": "high", "checkout|*|burn:1h/5m": "critical"}


def test_idle_series_are_forgotten_with_tombstones_unless_something_fires():
    stage = BaselineStage(BaselineConfig(idle_expiry_s=3600))
    rng = random.Random(3)
    changelog: dict = {}
    run_minutes(stage, rng, range(0, 60), slow_from=50, changelog=changelog)  # /pay fires
    for minute in range(0, 30):  # a short-lived series, quiet from minute 30 on
        changelog.update(feed(stage, [healthy(rng, "batch|/job", minute)]).state)
    assert "batch|/job" in stage.detectors.keys(0)
    for minute in range(60, 130):  # only search reports; /pay stops while still firing
        changelog.update(feed(stage, [healthy(rng, "search|/q", minute)]).state)
    kept = set(stage.detectors.keys(0))
    assert "batch|/job" not in kept  # idle for over an hour: gone from memory
    assert "search|/q" in kept and "checkout|/pay" in kept  # active / still firing
    gone = [k for (_, k), v in changelog.items() if "batch|/job" in k]
    assert gone and all(changelog[(0, k)] is None for k in gone)  # tombstoned
    assert stage.stats["expired"] >= 1
    restored = BaselineStage(BaselineConfig(idle_expiry_s=3600))
    for (partition, key), value in changelog.items():
        restored.restore(partition, key, value)
    assert set(restored.detectors.keys(0)) == kept
