"""`prodmon sla` from real rollups: the pipeline windows latency events, the CLI reports."""

from __future__ import annotations

import random
import subprocess
import sys

import orjson

from pipeline.topics import ROLLUPS
from tests.pipeline_helpers import make_config, running_pipeline, send_raw, topic_probe, wait_for

T0 = 1_795_320_000_000 - 1_795_320_000_000 % 3_600_000


def traffic(service: str, slow: bool, error_rate: float, seed: int) -> list[dict]:
    """Five minutes at 10 requests/s; `slow` puts 3% of requests at ~2 s."""
    rng = random.Random(seed)
    events = []
    for i in range(3000):
        duration = rng.uniform(20, 60)
        if slow and rng.random() < 0.03:
            duration = rng.uniform(1800, 2500)
        events.append(
            {
                "schema": "latency/1",
                "event_id": f"{service}-{i}",
                "ts": T0 + i * 100,
                "service": service,
                "endpoint": "/api",
                "status": 503 if rng.random() < error_rate else 200,
                "duration_ms": duration,
            }
        )
    return events


async def test_sla_reports_healthy_and_breaching_services(bootstrap, topics):
    config = make_config(bootstrap, topics)
    batches = []
    for service, slow, errors, seed in (("search", False, 0.0, 1), ("checkout", True, 0.05, 2)):
        events = traffic(service, slow, errors, seed)
        batches += [
            (service.encode(), orjson.dumps(events[i : i + 50])) for i in range(0, len(events), 50)
        ]
    async with running_pipeline(config, ["ingest", "windows"]):
        await send_raw(config, batches)

        def both_services_closed_minutes(got: list) -> bool:
            ends = {r["series"]: r["end"] for r in got if r["resolution"] == "10s"}
            return all(ends.get(f"{s}|*", 0) >= T0 + 280_000 for s in ("search", "checkout"))

        await wait_for(topic_probe(config, ROLLUPS), both_services_closed_minutes)
    sla = [sys.executable, "-m", "ops.cli", "sla", "--bootstrap", bootstrap, "--prefix", topics]
    out = subprocess.run([*sla, "--format", "json"], capture_output=True, timeout=60, check=True)
    reports = {r["service"]: r for r in orjson.loads(out.stdout)}
    assert reports["search"]["status"] == "healthy"
    checkout = reports["checkout"]
    violated = {v["metric"] for v in checkout["violations"]}
    # 5% errors in every window: the error rate is breached and no window counts as up.
    assert violated == {"p99_ms", "error_rate_pct", "uptime_pct"}
    assert checkout["status"] == "critical"
    assert all(v["recommendation"] for v in checkout["violations"])
    budget = checkout["error_budget"]
    assert budget["remaining_fraction"] < 0  # 5% errors against a 0.1% budget: overspent
    assert any(b["firing"] for b in checkout["burn_rates"])
    text = subprocess.run(sla, capture_output=True, timeout=60, check=True).stdout.decode()
    assert "checkout" in text and "search" in text and "FIRING" in text
