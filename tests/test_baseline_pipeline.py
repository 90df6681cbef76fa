"""Baselines end to end on the real broker: a slowdown is caught on its series only, a new
exception raises a signal, and a restarted baseline stage keeps what it learned."""

from __future__ import annotations

import random
import time

from loadtest.fleet import BUGS, error_event
from pipeline.topics import SIGNALS
from tests.pipeline_helpers import as_batches, make_config, running_pipeline, send_raw, wait_for
from tests.pipeline_helpers import topic_probe as probe

STAGES = ["ingest", "fingerprint", "windows", "baseline"]
SERIES = (("checkout", "/pay"), ("checkout", "/cart"), ("search", "/q"))


def traffic(start_ms: int, seconds: int, slow_from_ms: int | None, seed: int) -> list[dict]:
    """4 requests/s per series; checkout /pay is 10x slower from `slow_from_ms`."""
    rng = random.Random(seed)
    events = []
    for n in range(seconds * 4):
        ts = start_ms + n * 250
        for service, endpoint in SERIES:
            duration = rng.lognormvariate(3.4, 0.25)
            if slow_from_ms is not None and ts >= slow_from_ms and endpoint == "/pay":
                duration *= 10
            events.append(
                {
                    "schema": "latency/1",
                    "event_id": f"{seed}-{n}-{endpoint}",
                    "ts": ts,
                    "service": service,
                    "endpoint": endpoint,
                    "status": 200,
                    "duration_ms": round(duration, 3),
                }
            )
    return events


def by_service(events: list[dict]) -> list[tuple[bytes, bytes]]:
    out = []
    for service in ("checkout", "search"):
        out += as_batches([e for e in events if e["service"] == service], size=200)
    return out


def anomalies(signals: list[dict]) -> list[dict]:
    return [s for s in signals if s.get("kind") == "anomaly" and s.get("state") == "firing"]


async def test_slowdown_after_a_restart_is_caught_on_its_series_only(bootstrap, topics):
    config = make_config(
        bootstrap,
        topics,
        **{
            "baseline.resolution": "10s",
            "baseline.warmup": 20,
            "windows.idle_flush_s": 600,
        },
    )
    now = int(time.time() * 1000)
    start = now - 20 * 60_000
    start -= start % 10_000
    learn = traffic(start, 14 * 60, None, seed=1)
    incident_from = start + 14 * 60_000
    incident = traffic(incident_from, 3 * 60, incident_from, seed=2)
    async with running_pipeline(config, STAGES) as pipeline:
        await send_raw(config, by_service(learn))
        baseline = next(r.stage for r in pipeline.runners if r.stage.name == "baseline")

        async def rollups_learned() -> int:
            return baseline.stats["rollups"]

        # 14 min of 10 s windows for 5 series (3 endpoints, 2 whole services), minus the tail.
        learned = await wait_for(rollups_learned, lambda n: n >= 5 * 6 * 13, timeout_s=90)
        assert learned >= 5 * 6 * 13
    # A new process: windows and baselines come back from their changelogs.
    async with running_pipeline(config, STAGES):
        await send_raw(config, by_service(incident))
        signals = await wait_for(probe(config, SIGNALS), lambda got: bool(anomalies(got)))
    found = anomalies(signals)
    assert found, "the slowdown was not detected after the restart"
    keys = {s["key"] for s in found}
    # The slow endpoint, and its service as a whole (half its traffic is slow); not the
    # healthy endpoint nor the other service.
    assert "checkout|/pay" in keys and keys <= {"checkout|/pay", "checkout|*"}
    first = min(s["ts"] for s in found)
    # Within 20 points of the restart: a baseline reset would still be warming up.
    assert first <= incident_from + 200_000
    assert found[0]["baseline"]["z"] > 0 and found[0]["metric"] in ("p50_ms", "p99_ms")


async def test_a_burst_of_a_new_exception_raises_a_new_issue_signal(bootstrap, topics):
    config = make_config(bootstrap, topics)
    rng = random.Random(5)
    now = int(time.time() * 1000)
    bug = BUGS[1]  # the database connection failure
    burst = [error_event(bug, rng, now - 5000 + i, "2.0.0") for i in range(30)]
    async with running_pipeline(config, STAGES):
        await send_raw(config, as_batches(burst))

        def has_rules(got: list) -> bool:
            rules = {s.get("rule") for s in got}
            return {"new-issue", "db-connection-failure"} <= rules

        signals = await wait_for(probe(config, SIGNALS), has_rules)
    rules = {s["rule"]: s for s in signals}
    assert rules["new-issue"]["severity"] == "critical"  # the issue's own severity
    assert rules["db-connection-failure"]["severity"] == "critical"
    assert rules["new-issue"]["fingerprint"] == rules["db-connection-failure"]["key"]


async def test_an_error_burst_is_alerted_before_its_window_closes(bootstrap, topics):
    """Early evaluation on the real broker: 5xx in a window that never closes (no later
    event moves the watermark, idle flush is far off) still raises the rule's signal."""
    config = make_config(
        bootstrap,
        topics,
        **{
            "baseline.resolution": "10s",
            "windows.window_s": 10.0,
            "windows.allowed_lateness_s": 5.0,
            "windows.idle_flush_s": 600,
            "windows.early_eval_s": 0.2,
        },
    )
    now = int(time.time() * 1000)
    start = now - now % 10_000
    burst = [
        {
            "schema": "latency/1",
            "event_id": f"burst-{n}",
            "ts": start + n * 10,
            "service": "checkout",
            "endpoint": "/pay",
            "status": 503 if n % 4 == 0 else 200,
            "duration_ms": 20.0,
        }
        for n in range(120)
    ]
    async with running_pipeline(config, [*STAGES, "escalation"]):
        await send_raw(config, as_batches(burst))

        def fired(got: list) -> bool:
            return any(s.get("rule") == "very-high-5xx-rate" for s in got)

        signals = await wait_for(probe(config, SIGNALS), fired, timeout_s=45)
        rollups = await probe(config, "rollups")()
        alerts = await wait_for(probe(config, "alerts"), bool, timeout_s=30)
    found = {s["key"]: s for s in signals if s["rule"] == "very-high-5xx-rate"}
    assert set(found) == {"checkout|/pay", "checkout|*"}  # the endpoint and its service
    for signal in found.values():
        assert signal["provisional"] is True
        assert signal["window"] == {"start": start, "end": start + 10_000}
        assert signal["value"] == 25.0
    assert rollups == []  # no window closed: the finding came from the open window
    assert any(a.get("rule") == "very-high-5xx-rate" for a in alerts)
