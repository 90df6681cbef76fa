"""Benchmark: ingest and windows stage code alone, no broker: CPU per event of each.

The issue-22 job of `bench_rollup_throughput` (latency events over `--series` series,
event time as a fleet sending `--fleet-rate` events/s stamps it), fed the way the runtime
feeds the stages but without Kafka: each batch takes up to `--poll` records of every raw
partition (as `getmany` does), ingest's partial windows are packed as the runtime packs
them and handed to the windows stage. Prints the process's CPU per event in each stage
(`time.process_time`, so other work on the machine counts less than in wall time).
Compare two commits by running this from each one's tree, alternating. Each batch's
records are copied just before the stage gets them (`fresh`), untimed. The stages have
the pipeline's default configuration (its rules, so early evaluation runs every
`--early-eval-s` of a wall clock that advances as if `--wall-rate` events a second came).

`--per-message N` sends N events a message (a JSON array, as batching fleets do), as
`bench_scaleout` does. `--error-share F` mixes error events in (each message an error
one with probability F, interleaved): traffic where plain latency runs are broken up; the
figures are then CPU per message, latency or error.

Run: .venv/bin/python -m tests.bench.bench_stages_inprocess [--events 1000000]
     [--series 350] [--fleet-rate 5000] [--keying service|none] [--poll 1250]
     [--error-share 0.0] [--per-message 1] [--early-eval-s 1.0] [--wall-rate 400000]
"""

from __future__ import annotations

import argparse
import gc
import random
import time

import orjson

from loadtest.fleet import error_burst
from pipeline.app import windows_config
from pipeline.config import RuntimeConfig, load_config
from pipeline.output import Partitioner, pack_emits
from stages.base import Record
from stages.ingest import IngestStage
from stages.ingest_windows import IngestWindowsStage
from stages.windows import WindowsStage
from tests.bench.bench_rollup_throughput import make_events
from tests.test_two_phase import NAMES, Topic

PARTITIONS = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--series", type=int, default=350)
    parser.add_argument("--fleet-rate", type=int, default=5000)
    parser.add_argument("--keying", choices=["service", "none"], default="service")
    parser.add_argument("--poll", type=int, default=1250, help="records per partition a batch")
    parser.add_argument("--error-share", type=float, default=0.0, help="share of error messages")
    parser.add_argument("--per-message", type=int, default=1, help="events a message (arrays)")
    parser.add_argument(
        "--early-eval-s", type=float, default=1.0, help="windows.early_eval_s (0: none)"
    )
    parser.add_argument(
        "--wall-rate", type=float, default=400_000, help="events/s the wall clock is run at"
    )
    args = parser.parse_args()

    # The pipeline's garbage-collector threshold (runtime.gc_gen0_threshold), as it sets it.
    gc.set_threshold(RuntimeConfig().gc_gen0_threshold, 20, 20)
    events = make_events(args.events, args.series, args.fleet_rate)
    if args.error_share:
        events = with_errors(events, args.error_share)
    now = events[-1]["ts"] / 1000 + 1
    raw, latency = Topic("events.raw", PARTITIONS), Topic("events.latency", PARTITIONS)
    partitioner, rng = Partitioner(), random.Random(2)
    keyed, size = args.keying == "service", args.per_message
    for at in range(0, len(events), size):
        chunk = events[at : at + size]
        partition = partitioner(chunk[0]["service"], PARTITIONS) if keyed else rng.randrange(4)
        raw.append(partition, None, orjson.dumps(chunk if size > 1 else chunk[0]))
    messages = len(events)
    del events
    counts = {"events.latency": PARTITIONS, "events.errors": PARTITIONS}
    config = load_config(env={}, overrides={"windows.early_eval_s": args.early_eval_s})
    ingest = IngestWindowsStage(IngestStage(), windows_config(config))
    windows = WindowsStage(windows_config(config))
    ingest.assign(range(PARTITIONS))
    windows.assign(range(PARTITIONS))
    ingest_s = windows_s = 0.0
    rollups = 0
    gc.collect()
    while records := raw.poll(args.poll):
        records = fresh(records)
        now += len(records) * size / args.wall_rate  # the wall clock, at that rate
        started = time.process_time()
        result = ingest.process(records, now)
        result.extend(ingest.tick(now))
        emits = [e for part in result.parts() for e in part.emits]
        ingest_s += time.process_time() - started
        partials = [e for e in emits if e.topic == "events.latency"]
        for message in pack_emits(partials, NAMES, counts, partitioner):
            latency.append(message.partition, None, message.value)
        started = time.process_time()
        result = windows.process(latency.poll(10**9), now)
        result.extend(windows.tick(now))
        rollups += sum(e.topic == "rollups" for part in result.parts() for e in part.emits)
        windows_s += time.process_time() - started
    per_event = 1e6 / messages
    print(
        f"events={args.events} series={args.series} keying={args.keying} poll={args.poll} "
        f"error-share={args.error_share} per-message={size}: "
        f"ingest {ingest_s * per_event:.2f} us/event, windows {windows_s * per_event:.2f}, "
        f"both {(ingest_s + windows_s) * per_event:.2f} (CPU); rollups {rollups}"
    )


def fresh(records: list[Record]) -> list[Record]:
    """Copies of `records` made just now, values too, as the runtime hands over records
    it has just unpacked: records made long before are out of the CPU's caches, which
    would charge the stage for memory the pipeline does not wait on."""
    return [
        Record(r.topic, r.partition, r.offset, r.key, bytes(memoryview(r.value)), r.timestamp)
        for r in records
    ]


def with_errors(events: list[dict], share: float) -> list[dict]:
    """`events` with error events among them: after each, one with probability `share`
    (as a fleet's errors arrive among its latency events), stamped with its time."""
    rng = random.Random(3)
    errors, _ = error_burst(round(len(events) * share * 1.2) + 1, seed=5, start_ms=0)
    mixed: list[dict] = []
    taken = 0
    for event in events:
        mixed.append(event)
        if rng.random() < share and taken < len(errors):
            mixed.append({**errors[taken], "ts": event["ts"]})
            taken += 1
    return mixed


if __name__ == "__main__":
    main()
