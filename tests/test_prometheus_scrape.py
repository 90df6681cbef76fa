"""A real Prometheus server scrapes a running pipeline's /metrics and answers queries on it.

The exposition is checked by the consumer that matters: Prometheus parses every scrape
(a format defect fails the scrape: `up` is 0 and the target reports the parse error),
stores the samples and answers PromQL over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from loadtest.fleet import error_burst
from pipeline.broker import free_port, wait_for_port
from tests.pipeline_helpers import as_batches, make_config, running_pipeline, send_raw

PROMETHEUS = "/usr/bin/prometheus"
# Every stage and the notifier, so that every metric family is in the scrapes.
STAGES = ["ingest", "fingerprint", "windows", "baseline", "escalation", "notify"]

SCRAPE_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prodmon
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


def prometheus_binary() -> str:
    """The Prometheus binary; missing fails under CI and skips elsewhere."""
    if os.access(PROMETHEUS, os.X_OK):
        return PROMETHEUS
    reason = f"{PROMETHEUS} not installed (Debian package `prometheus`; run.sh test installs it)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@contextlib.contextmanager
def prometheus(tmp_path: Path, target_port: int) -> Iterator[str]:
    """A Prometheus server scraping 127.0.0.1:target_port every second; yields its base URL."""
    binary = prometheus_binary()
    config = tmp_path / "prometheus.yml"
    config.write_text(SCRAPE_CONFIG.format(port=target_port))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    cmd = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        assert wait_for_port("127.0.0.1", port, 30), "prometheus did not start listening"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


async def query(session: aiohttp.ClientSession, base: str, promql: str) -> list[float]:
    """An instant query; the value of each series in the result."""
    data = await api(session, base, "/api/v1/query", query=promql)
    return [float(item["value"][1]) for item in data["result"]]


async def api(session: aiohttp.ClientSession, base: str, path: str, **params: str) -> Any:
    async with session.get(f"{base}{path}", params=params) as response:
        body = await response.json()
    assert body["status"] == "success", body
    return body["data"]


async def poll(probe: Any, predicate: Any, timeout_s: float = 60) -> Any:
    """Await `probe()` until `predicate(result)` holds or time is up; the last result."""
    deadline = time.monotonic() + timeout_s
    result = None
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, AssertionError):
            result = await probe()
            if predicate(result):
                break
        await asyncio.sleep(0.5)
    return result


async def test_prometheus_scrapes_and_answers_queries_on_pipeline_metrics(
    bootstrap, topics, tmp_path
):
    health_port = free_port()
    config = make_config(bootstrap, topics, **{"health.port": health_port})
    events, _ = error_burst(120, seed=5, start_ms=int(time.time() * 1000) - 20_000)
    payloads = as_batches(events, size=10)
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        running_pipeline(config, STAGES),
        aiohttp.ClientSession(timeout=timeout) as session,
    ):
        assert await asyncio.to_thread(wait_for_port, "127.0.0.1", health_port, 30)
        await send_raw(config, payloads)
        with prometheus(tmp_path, health_port) as base:

            async def target() -> dict:
                active = (await api(session, base, "/api/v1/targets"))["activeTargets"]
                assert len(active) <= 1, active
                return active[0] if active else {"health": "unknown"}  # not discovered yet

            # The first scrapes parse cleanly (a format defect shows up here as lastError).
            scraped = await poll(target, lambda t: t["health"] != "unknown", timeout_s=30)
            assert scraped, "prometheus never reported its target"
            assert (scraped["health"], scraped.get("lastError")) == ("up", ""), scraped.get(
                "lastError"
            )
            errors_in = 'prodmon_stage_events_total{job="prodmon",stage="ingest",kind="errors"}'
            got = await poll(
                lambda: query(session, base, errors_in),
                lambda r: bool(r) and max(r) >= len(events),
            )
            assert got == [len(events)], got  # every error event, once
            messages = await query(session, base, 'prodmon_records_in_total{stage="ingest"}')
            assert messages == [len(payloads)]
            fingerprinted = await query(
                session, base, 'prodmon_records_in_total{stage="fingerprint"}'
            )
            assert len(fingerprinted) == 1 and fingerprinted[0] > 0
            assert await query(session, base, 'up{job="prodmon"}') == [1]

            # The histogram and gauges came through as such: PromQL computes on them.
            median = await query(
                session,
                base,
                'histogram_quantile(0.5, prodmon_batch_seconds_bucket{stage="ingest"})',
            )
            assert len(median) == 1 and 0 < median[0] <= 10
            ready = await poll(
                lambda: query(session, base, "sum(prodmon_stage_ready)"),
                lambda r: r == [len(STAGES)],
            )
            assert ready == [len(STAGES)], ready
            meta = await api(session, base, "/api/v1/metadata", metric="prodmon_batch_seconds")
            assert meta["prodmon_batch_seconds"][0]["type"] == "histogram"

            last = await target()  # every scrape since parsed cleanly too
            assert (last["health"], last["lastError"]) == ("up", ""), last["lastError"]
