"""Three pipeline processes share the work; one is killed with SIGKILL mid-stream. After the
rebalance every window's rollup exists (a re-emitted one is identical), and every issue's
count equals the events sent: the survivors restored the dead process's state."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time

import orjson

from loadtest.fleet import BUGS, error_event
from loadtest.harness import stop_processes
from pipeline.topics import ISSUES, ROLLUPS
from stages.grouping import fingerprint_error
from tests.pipeline_helpers import (
    make_config,
    send_raw,
    start_prodmon,
    topic_probe,
    wait_for,
)

STAGES = "ingest,fingerprint,windows"
SERVICES = [f"svc{i}" for i in range(8)]


def start_process(bootstrap: str, prefix: str) -> subprocess.Popen:
    env = {"PRODMON_FINGERPRINT__COUNT_INTERVAL_S": "0.5", "PRODMON_WINDOWS__IDLE_FLUSH_S": "600"}
    return start_prodmon(bootstrap, prefix, STAGES, env)


def latency_batches(start_ms: int, seconds: int, seed: int) -> list[tuple[bytes, bytes]]:
    """Per second and service, one batch of 10 events over two endpoints."""
    rng = random.Random(seed)
    out = []
    for second in range(seconds):
        for service in SERVICES:
            events = [
                {
                    "schema": "latency/1",
                    "event_id": f"{seed}-{second}-{service}-{i}",
                    "ts": start_ms + second * 1000 + i * 90,
                    "service": service,
                    "endpoint": f"/e{i % 2}",
                    "status": 200,
                    "duration_ms": round(rng.lognormvariate(3, 0.5), 3),
                }
                for i in range(10)
            ]
            out.append((service.encode(), orjson.dumps(events)))
    return out


def expected_windows(batches: list[tuple[bytes, bytes]], before_ms: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, value in batches:
        for e in orjson.loads(value):
            start = e["ts"] - e["ts"] % 10_000
            if start + 10_000 > before_ms:
                continue
            for series in (f"{e['service']}|{e['endpoint']}", f"{e['service']}|*"):
                key = f"{series}|10s|{start}"
                counts[key] = counts.get(key, 0) + 1
    return counts


async def test_kill_9_one_of_three_processes_under_load(bootstrap, topics):
    config = make_config(bootstrap, topics)
    now = int(time.time() * 1000)
    start = now - 10 * 60_000
    start -= start % 10_000
    first = latency_batches(start, 60, seed=1)
    second = latency_batches(start + 60_000, 60, seed=2)
    closer = latency_batches(start + 140_000, 1, seed=3)
    rng = random.Random(4)
    errors = [error_event(BUGS[i % len(BUGS)], rng, now - 5000 + i, "1.0") for i in range(400)]
    error_batches = [
        (b"errors", orjson.dumps(errors[i : i + 20])) for i in range(0, len(errors), 20)
    ]
    processes = [start_process(bootstrap, topics) for _ in range(3)]
    try:
        await asyncio.sleep(8)  # the group forms and spreads the partitions
        await send_raw(config, first + error_batches[:10])
        await asyncio.sleep(2)
        processes[1].send_signal(signal.SIGKILL)  # mid-stream
        processes[1].wait(10)
        await send_raw(config, second + error_batches[10:] + closer)
        expected = expected_windows(first + second, start + 120_000)

        def rollups_complete(got: list[dict]) -> bool:
            ids = {r["id"] for r in got if isinstance(r, dict)}
            return set(expected) <= ids

        rollups = await wait_for(topic_probe(config, ROLLUPS), rollups_complete, timeout_s=120)
        want: dict[str, int] = {}
        for event in errors:
            fp = str(fingerprint_error(event).id)
            want[fp] = want.get(fp, 0) + 1

        def counts_exact(got: list[dict]) -> bool:
            latest: dict[str, int] = {}
            for issue in got:
                if isinstance(issue, dict) and "issue_id" in issue:
                    latest[issue["issue_id"]] = max(
                        latest.get(issue["issue_id"], 0), issue["count"]
                    )
            return latest == want

        issues = await wait_for(topic_probe(config, ISSUES), counts_exact, timeout_s=120)
    finally:
        stop_processes(processes)
    by_id: dict[str, dict] = {}
    for rollup in rollups:
        if rollup["id"] in by_id:  # re-emitted after the kill: the very same record
            assert rollup["count"] == by_id[rollup["id"]]["count"]
            assert rollup["hist"] == by_id[rollup["id"]]["hist"]
        by_id[rollup["id"]] = rollup
    for key, count in expected.items():
        assert by_id[key]["count"] == count, key  # none missing, none double counted
    assert counts_exact(issues)
