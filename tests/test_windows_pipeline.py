"""Latency windows end to end on the real local broker: rollups, restarts, keyings, kill -9."""

from __future__ import annotations

import random
import signal

import orjson
from aiokafka.admin import AIOKafkaAdminClient

from histograms.hdr import SparseHistogram, layout
from pipeline.topics import ROLLUPS, create_topics
from tests.pipeline_helpers import (
    as_batches,
    make_config,
    running_pipeline,
    send_raw,
    start_prodmon,
    wait_for,
)
from tests.pipeline_helpers import topic_probe as probe

T0 = 1_795_320_000_000 - 1_795_320_000_000 % 3_600_000
SERVICES = ("checkout", "search", "auth")


def fleet(start: int, seconds: int, seed: int) -> list[dict]:
    """Latency events for three services x two endpoints, in time order."""
    rng = random.Random(seed)
    events = []
    for i in range(seconds * 20):
        ts = start + i * 50
        service = SERVICES[i % 3]
        events.append(
            {
                "schema": "latency/1",
                "event_id": f"l-{seed}-{i}",
                "ts": ts,
                "service": service,
                "endpoint": "/a" if rng.random() < 0.5 else "/b",
                "status": 500 if rng.random() < 0.02 else 200,
                "duration_ms": round(rng.lognormvariate(3, 0.8), 3),
            }
        )
    return events


def expected_10s(events: list[dict]) -> dict[str, SparseHistogram]:
    out: dict[str, SparseHistogram] = {}
    for e in events:
        start = e["ts"] - e["ts"] % 10_000
        for series in (f"{e['service']}|{e['endpoint']}", f"{e['service']}|*"):
            key = f"{series}|10s|{start}"
            out.setdefault(key, SparseHistogram(layout())).record(
                int(e["duration_ms"] * 1000 + 0.5)
            )
    return out


def by_service(events: list[dict], size: int = 40) -> list[tuple[bytes, bytes]]:
    """Batches keyed by service, each holding one service's events."""
    batches = []
    for service in SERVICES:
        batches += as_batches([e for e in events if e["service"] == service], size=size)
    return batches


def latest(rollups: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in rollups}


async def test_rollups_match_the_events_across_a_restart(bootstrap, topics):
    config = make_config(bootstrap, topics)
    stages = ["ingest", "windows"]
    first = fleet(T0, 60, seed=1)
    second = fleet(T0 + 60_000, 60, seed=2)
    closer = fleet(T0 + 130_000, 1, seed=3)  # moves every watermark past T0+120s
    expected = {
        k: h
        for k, h in expected_10s(first + second).items()
        if int(k.rsplit("|", 1)[1]) < T0 + 120_000
    }
    async with running_pipeline(config, stages):
        await send_raw(config, by_service(first))
        await wait_for(probe(config, ROLLUPS), lambda got: len(got) >= 9)
    # A new process picks up from the committed offsets and the changelog.
    async with running_pipeline(config, stages):
        await send_raw(config, by_service(second) + by_service(closer))

        def complete(got: list[dict]) -> bool:
            return set(expected) <= set(latest(got))

        rollups = await wait_for(probe(config, ROLLUPS), complete)
    got = latest(rollups)
    assert set(expected) <= set(got)
    ten_second_ids = [r["id"] for r in rollups if r["resolution"] == "10s"]
    assert len(ten_second_ids) == len(set(ten_second_ids))  # a clean restart repeats nothing
    for key, hist in expected.items():
        assert got[key]["count"] == hist.total
        assert SparseHistogram.decode(got[key]["hist"]) == hist
    minute = got[f"checkout|*|1m|{T0}"]
    assert minute["count"] == sum(1 for e in first if e["service"] == "checkout")


async def _rollups_with_a_kill_9(
    bootstrap: str, prefix: str, keyed: bool, env: dict[str, str] | None = None
) -> dict[str, dict]:
    """`prodmon run --stages ingest,windows` (with `env` added) fed 120 s of events,
    killed with SIGKILL mid-window after the first minute, restarted; the rollups of
    [T0, T0 + 120 s)."""
    config = make_config(bootstrap, prefix)
    first = fleet(T0, 60, seed=1)
    second = fleet(T0 + 60_000, 60, seed=2)
    closer = fleet(T0 + 130_000, 1, seed=3)

    def batches(events: list[dict]) -> list[tuple[bytes | None, bytes]]:
        if keyed:
            return by_service(events)
        return [(None, orjson.dumps(events[i : i + 10])) for i in range(0, len(events), 10)]

    env = {"PRODMON_WINDOWS__IDLE_FLUSH_S": "4", **(env or {})}
    process = start_prodmon(bootstrap, prefix, "ingest,windows", env)
    try:
        await send_raw(config, batches(first))
        await wait_for(probe(config, ROLLUPS), lambda got: len(got) >= 9, timeout_s=60)
        process.send_signal(signal.SIGKILL)  # windows of the first minute still open
        process.wait(10)
        process = start_prodmon(bootstrap, prefix, "ingest,windows", env)
        await send_raw(config, batches(second + closer))
        expected = {
            k for k in expected_10s(first + second) if int(k.rsplit("|", 1)[1]) < T0 + 120_000
        }
        series = {k.rsplit("|", 2)[0] for k in expected}
        expected |= {f"{s}|1m|{start}" for s in series for start in (T0, T0 + 60_000)}
        rollups = await wait_for(
            probe(config, ROLLUPS), lambda got: expected <= set(latest(got)), timeout_s=90
        )
    finally:
        process.terminate()
        process.wait(10)
    found: dict[str, dict] = {}
    for rollup in rollups:  # a rollup re-emitted after the kill is the very same record
        assert found.setdefault(rollup["id"], rollup) == rollup
    return {i: r for i, r in found.items() if r["end"] <= T0 + 120_000}


async def test_keyed_and_unkeyed_raw_give_the_same_rollups_across_a_kill_9(bootstrap, topics):
    """Two-phase windowing: the keying of events.raw does not change a single rollup, and a
    kill -9 mid-window neither loses nor double counts an event. The unkeyed process hands
    its closes over two series a part (`windows.close_part_series`), so the kill may land
    part way through a close's outputs or changelog: nor does that."""
    other = topics.rstrip(".") + "u."
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await create_topics(admin, prefix=other, partitions=4)
    finally:
        await admin.close()
    keyed = await _rollups_with_a_kill_9(bootstrap, topics, keyed=True)
    in_parts = {"PRODMON_WINDOWS__CLOSE_PART_SERIES": "2"}
    unkeyed = await _rollups_with_a_kill_9(bootstrap, other, keyed=False, env=in_parts)
    expected = expected_10s(fleet(T0, 60, seed=1) + fleet(T0 + 60_000, 60, seed=2))
    ten_second = {i: r for i, r in keyed.items() if r["resolution"] == "10s"}
    assert set(ten_second) == {k for k in expected if int(k.rsplit("|", 1)[1]) < T0 + 120_000}
    for key, rollup in ten_second.items():
        assert rollup["count"] == expected[key].total
        assert SparseHistogram.decode(rollup["hist"]) == expected[key]
    assert any(r["resolution"] == "1m" for r in keyed.values())
    differing = {
        i: {
            k: (v, (unkeyed.get(i) or {}).get(k))
            for k, v in r.items()
            if k != "hist" and (unkeyed.get(i) or {}).get(k) != v
        }
        for i, r in keyed.items()
        if unkeyed.get(i) != r
    }
    assert not differing and set(keyed) == set(unkeyed)
