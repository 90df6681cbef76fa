"""What the harness measures while a run goes: committed vs end offsets of every consumer
group, RSS and CPU of the pipeline processes (once a second), the events each in-process
stage handled, and the raw aiokafka consume-and-decode ceiling of the same `events.raw`."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.slim_records import SlimRecords, install_slim_records
from schemas.topology import STAGES

# What each consumer group reads (logical topics, from the topology); the group id is
# `<prefix><stage>`. The otlp stage reads the Collector's topics, which a load test has not.
STAGE_INPUTS: dict[str, tuple[str, ...]] = {s.name: s.reads for s in STAGES if s.reads}


def rss_bytes(pid: int) -> int | None:
    """Resident set size of `pid` from /proc/<pid>/status (VmRSS), or None when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of `pid` from /proc/<pid>/stat, or None when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class LagSampler:
    """Committed offsets vs end offsets per consumer group, once a second."""

    def __init__(self, bootstrap: str, prefix: str, stages: list[str], pids: list[int]) -> None:
        self.bootstrap, self.prefix, self.stages, self.pids = bootstrap, prefix, stages, pids
        self.samples: list[dict] = []
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        self.tps: dict[str, list[TopicPartition]] = {}

    async def start(self) -> None:
        await self.admin.start()
        await self.consumer.start()
        topics = {t for s in self.stages for t in STAGE_INPUTS[s]}
        for topic in topics:
            name = self.prefix + topic
            parts = self.consumer.partitions_for_topic(name)
            if not parts:
                await self.consumer._client.force_metadata_update()
                parts = self.consumer.partitions_for_topic(name) or set()
            self.tps[topic] = [TopicPartition(name, p) for p in sorted(parts)]

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.consumer.stop()
        with contextlib.suppress(Exception):
            await self.admin.close()

    async def sample(self, t0: float) -> dict:
        all_tps = [tp for tps in self.tps.values() for tp in tps]
        ends = await self.consumer.end_offsets(all_tps)
        lag, committed = {}, {}
        for stage in self.stages:
            stage_tps = [tp for topic in STAGE_INPUTS[stage] for tp in self.tps[topic]]
            try:
                # Explicit partitions: some brokers (tansu) answer the "all partitions"
                # form of OffsetFetch in a way aiokafka cannot decode.
                offsets = await self.admin.list_consumer_group_offsets(
                    self.prefix + stage, partitions=stage_tps
                )
            except Exception:  # a group not formed yet counts as nothing read
                offsets = {}
            done = total_lag = 0
            for tp in stage_tps:
                meta = offsets.get(tp)
                pos = meta.offset if meta is not None and meta.offset >= 0 else 0
                done += pos
                total_lag += max(0, ends[tp] - pos)
            lag[stage], committed[stage] = total_lag, done
        sample = {
            "t": round(time.time() - t0, 3),
            "lag": lag,
            "committed": committed,
            "raw_end": sum(ends[tp] for tp in self.tps.get("events.raw", [])),
            "rss": {str(pid): rss_bytes(pid) for pid in self.pids},
            "cpu_s": {str(pid): cpu_seconds(pid) for pid in self.pids},
        }
        self.samples.append(sample)
        return sample


async def raw_ceiling(
    bootstrap: str, topic: str, total_events: int, timeout_s: float, slim: bool = False
) -> dict:
    """A bare aiokafka consumer from offset 0, decoding every message: events/s (the ceiling).

    `slim`: read slim records, as the pipeline's consumers do (pipeline/slim_records.py),
    instead of aiokafka's own; for comparison, not the ceiling."""
    options = {}
    if slim and install_slim_records():
        options["value_deserializer"] = SlimRecords(str)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=4 << 20,
        **options,
    )
    await consumer.start()
    seen, started, last = 0, None, None
    loads = orjson.loads
    deadline = time.monotonic() + timeout_s
    try:
        while seen < total_events and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for messages in batch.values():
                if started is None and messages:
                    started = time.perf_counter()
                for m in messages:
                    value = loads(m.value)
                    seen += len(value) if type(value) is list else 1
                last = time.perf_counter()
    finally:
        await consumer.stop()
    elapsed = (last - started) if started is not None and last is not None else 0.0
    return {
        "events": seen,
        "seconds": round(elapsed, 3),
        "events_per_s": seen / elapsed if elapsed > 0 else 0.0,
    }


def stage_event_counts(pipeline) -> dict[str, int]:
    """Events (not messages) each in-process stage handled, from the stages' own counters."""
    counts: dict[str, int] = {}
    for runner in pipeline.runners:
        stage = runner.stage
        stats = getattr(stage, "stats", None)
        core = getattr(stage, "core", None)
        if stage.name == "ingest":
            ingest = getattr(stage, "ingest", stage)
            st = getattr(ingest, "stats", {}) or {}
            counts["ingest"] = sum(st.get(k, 0) for k in ("errors", "latency", "dead_letters"))
        elif stage.name == "windows" and core is not None:
            counts["windows"] = core.stats["events"] + core.stats["late"]
            counts["windows_late"] = core.stats["late"]  # after their window closed: no histogram
        elif stage.name == "fingerprint" and isinstance(stats, dict):
            counts["fingerprint"] = stats.get("events", 0)
    return counts
