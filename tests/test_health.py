"""Health probes and /metrics (pipeline/health.py, pipeline/metrics.py).

The running-pipeline tests use the real local broker; the unhealthy cases point at a
port nothing listens on, or at runners that were never started, and must answer fast.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
import pytest

from loadtest.fleet import error_burst, malformed_payloads
from pipeline.app import Pipeline
from pipeline.health import HealthSettings, serve
from pipeline.metrics import BATCH_TIMER, CONTENT_TYPE, BatchTimer, Family, render
from pipeline.runner import StageRunner
from stages.fingerprint import FingerprintConfig, FingerprintStage
from tests.pipeline_helpers import as_batches, make_config, running_pipeline, send_raw

STAGES = ["ingest", "fingerprint"]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_exposition(text: str) -> tuple[Samples, dict[str, str]]:
    """Every non-comment line is `name{labels} value`; returns samples and TYPE by family."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if parts[1] == "TYPE":
                types[parts[2]] = parts[3]
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, raw_labels, value = match.groups()
        labels: list[tuple[str, str]] = []
        if raw_labels:
            pos = 0
            for lm in _LABEL.finditer(raw_labels):
                assert lm.start() == pos, f"bad labels in {line!r}"
                labels.append((lm.group(1), lm.group(2)))
                pos = lm.end() + 1  # the comma
            assert pos >= len(raw_labels), f"bad labels in {line!r}"
        samples[(name, frozenset(labels))] = float(value)
    return samples, types


def value_of(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with session.get(url) as response:
        return response.status, await response.json()


async def poll(
    session: aiohttp.ClientSession, url: str, predicate: Any, timeout_s: float = 60
) -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    answer = await get_json(session, url)
    while not predicate(answer) and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        answer = await get_json(session, url)
    return answer


async def scrape(session: aiohttp.ClientSession, base: str) -> Samples:
    async with session.get(f"{base}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE
        samples, _ = parse_exposition(await response.text())
        return samples


# ---- exposition format, no broker -----------------------------------------------------------


def test_render_escapes_labels_and_help_and_histogram_is_cumulative():
    family = Family("prodmon_x_total", "counter", "help with \\ and\nnewline")
    family.add(3, stage='a"b\\c\nd')
    timer = BatchTimer(buckets=(0.1, 1.0))
    for seconds in (0.05, 0.5, 0.5, 5.0):
        timer.observe("ingest", seconds)
    hist = Family("prodmon_batch_seconds", "histogram", "h", timer.samples("ingest"))
    text = render([family, hist, Family("prodmon_empty", "gauge", "no samples")])
    assert "# HELP prodmon_x_total help with \\\\ and\\nnewline\n" in text
    assert 'prodmon_x_total{stage="a\\"b\\\\c\\nd"} 3\n' in text
    assert "prodmon_empty" not in text
    samples, types = parse_exposition(text)
    assert types == {"prodmon_x_total": "counter", "prodmon_batch_seconds": "histogram"}
    buckets = [
        value_of(samples, "prodmon_batch_seconds_bucket", stage="ingest", le=le)
        for le in ("0.1", "1", "+Inf")
    ]
    assert buckets == [1, 3, 4]
    assert value_of(samples, "prodmon_batch_seconds_count", stage="ingest") == 4
    assert value_of(samples, "prodmon_batch_seconds_sum", stage="ingest") == pytest.approx(6.05)


# ---- a running pipeline ----------------------------------------------------------------------


async def test_probes_and_metrics_follow_a_running_pipeline(bootstrap, topics):
    config = make_config(bootstrap, topics)
    async with (
        running_pipeline(config, STAGES) as pipeline,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
    ):
        server, port = await serve(pipeline)
        base = f"http://127.0.0.1:{port}"
        try:
            status, body = await get_json(session, f"{base}/health/live")
            assert (status, body["status"]) == (200, "healthy")

            status, body = await poll(
                session, f"{base}/health/startup", lambda a: a[1]["status"] == "healthy"
            )
            assert (status, body["status"]) == (200, "healthy"), body
            assert set(body["checks"]) == set(STAGES)
            for runner in pipeline.runners:
                BATCH_TIMER.instrument(runner)

            status, body = await poll(
                session, f"{base}/health/ready", lambda a: a[1]["status"] == "healthy"
            )
            assert (status, body["status"], body["reasons"]) == (200, "healthy", []), body
            assert body["checks"]["broker"]["reachable"] is True
            # topic-partitions: ingest reads events.raw, fingerprint events.errors + commands
            assert body["checks"]["ingest"]["assigned_partitions"] == 4
            assert body["checks"]["fingerprint"]["assigned_partitions"] == 8

            before = await scrape(session, base)
            records_before = value_of(before, "prodmon_records_in_total", stage="ingest")
            assert records_before is not None
            assert value_of(before, "prodmon_stage_ready", stage="fingerprint") == 1
            assert value_of(before, "prodmon_assigned_partitions", stage="ingest") == 4

            now = int(time.time() * 1000)
            events, _ = error_burst(200, seed=7, start_ms=now - 30_000)
            payloads = as_batches(events) + [(b"svc", raw) for raw, _ in malformed_payloads(now)]
            await send_raw(config, payloads)

            # Emits and dead letters count once their checkpoint is committed, which runs
            # in the background: the fingerprint stage may read them before that.
            deadline = time.monotonic() + 60
            after = await scrape(session, base)
            while time.monotonic() < deadline and (
                (value_of(after, "prodmon_records_in_total", stage="ingest") or 0)
                < records_before + len(payloads)
                or not value_of(after, "prodmon_records_in_total", stage="fingerprint")
                or not value_of(after, "prodmon_emits_out_total", stage="ingest")
                or (value_of(after, "prodmon_dlq_records_total", stage="ingest") or 0)
                < len(malformed_payloads(now))
            ):
                await asyncio.sleep(0.3)
                after = await scrape(session, base)
            assert value_of(after, "prodmon_records_in_total", stage="ingest") == (
                records_before + len(payloads)
            )
            assert value_of(after, "prodmon_records_in_total", stage="fingerprint") > 0
            assert value_of(after, "prodmon_dlq_records_total", stage="ingest") == len(
                malformed_payloads(now)
            )
            assert value_of(after, "prodmon_emits_out_total", stage="ingest") > 0
            assert value_of(after, "prodmon_batch_seconds_count", stage="ingest") > 0
            lags = {
                dict(labels)["partition"]: value
                for (name, labels), value in after.items()
                if name == "prodmon_consumer_lag" and dict(labels)["stage"] == "ingest"
            }
            # Every record was consumed, so the partitions it came from have a known lag.
            assert lags and set(lags) <= {"0", "1", "2", "3"}
            assert all(v >= 0 for v in lags.values())

            # A lag bound nothing can meet: ready turns degraded (still 200) and says why.
            strict, strict_port = await serve(pipeline, settings=HealthSettings(max_lag=-1))
            try:
                status, body = await get_json(
                    session, f"http://127.0.0.1:{strict_port}/health/ready"
                )
            finally:
                await strict.cleanup()
            assert (status, body["status"]) == (200, "degraded"), body
            assert any("records behind" in r for r in body["reasons"])
        finally:
            await server.cleanup()


# ---- unhealthy, and never hanging ------------------------------------------------------------


async def test_unreachable_broker_is_unhealthy_with_reasons_and_answers_fast():
    config = make_config("127.0.0.1:1", "unreach.", **{"runtime.retry_max_s": 1.0})
    stop = asyncio.Event()
    pipeline = Pipeline(config, STAGES)
    task = asyncio.create_task(pipeline.run(stop))  # retries the producer start forever
    settings = HealthSettings(check_timeout_s=1.0)
    server, port = await serve(pipeline, settings=settings)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            started = time.monotonic()
            status, body = await get_json(session, f"{base}/health/ready")
            assert time.monotonic() - started < 5
            assert (status, body["status"]) == (503, "unhealthy")
            assert body["checks"]["broker"]["reachable"] is False
            assert any(r.startswith("broker unreachable") for r in body["reasons"]), body
            assert any("not started: ingest, fingerprint" in r for r in body["reasons"])

            status, body = await get_json(session, f"{base}/health/startup")
            assert (status, body["status"]) == (503, "unhealthy")
            status, body = await get_json(session, f"{base}/health")
            assert (status, body["status"]) == (503, "unhealthy")
            assert any(r.startswith("ready: broker unreachable") for r in body["reasons"])

            status, body = await get_json(session, f"{base}/health/live")
            assert (status, body["status"]) == (200, "healthy")
            assert await scrape(session, base) == {}  # no runners, no samples; still valid
    finally:
        await server.cleanup()
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_runners_that_never_started_are_not_ready_and_not_started(bootstrap, topics):
    config = make_config(bootstrap, topics)
    pipeline = Pipeline(config, ["fingerprint"])
    stage = FingerprintStage(FingerprintConfig())
    pipeline.runners = [StageRunner(stage, config, producer=None)]  # type: ignore[arg-type]
    server, port = await serve(pipeline, settings=HealthSettings(check_timeout_s=1.0))
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            status, body = await get_json(session, f"{base}/health/startup")
            assert (status, body["status"]) == (503, "unhealthy")
            assert body["checks"]["fingerprint"]["restored"] is False
            assert any("fingerprint: state not restored" in r for r in body["reasons"])

            status, body = await get_json(session, f"{base}/health/ready")
            assert (status, body["status"]) == (503, "unhealthy")
            assert body["checks"]["broker"]["reachable"] is True  # the TCP probe got through
            assert body["reasons"] == ["fingerprint: consumer not connected to the broker"]

            samples = await scrape(session, base)
            assert value_of(samples, "prodmon_stage_ready", stage="fingerprint") == 0
            assert value_of(samples, "prodmon_records_in_total", stage="fingerprint") == 0
            assert value_of(samples, "prodmon_state_keys", stage="fingerprint") == 0
    finally:
        await server.cleanup()


async def test_serving_follows_the_health_port_setting():
    from pipeline.app import Pipeline
    from pipeline.broker import free_port
    from pipeline.config import load_config
    from pipeline.health import serving

    disabled = Pipeline(load_config(env={}), [])
    async with serving(disabled) as port:
        assert port is None  # port 0 (the default): no server
    wanted = free_port()
    enabled = Pipeline(load_config(env={}, overrides={"health.port": wanted}), [])
    async with serving(enabled) as port, aiohttp.ClientSession() as session:
        assert port == wanted
        status, body = await get_json(session, f"http://127.0.0.1:{port}/health/live")
        assert (status, body["status"]) == (200, "healthy")
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await get_json(session, f"http://127.0.0.1:{wanted}/health/live")
