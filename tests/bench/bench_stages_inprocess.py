"""Benchmark: ingest and windows stage code alone, no broker: CPU per event of each.

The issue-22 job of `bench_rollup_throughput` (latency events over `--series` series,
event time as a fleet sending `--fleet-rate` events/s stamps it), fed the way the runtime
feeds the stages but without Kafka: each batch takes up to `--poll` records of every raw
partition (as `getmany` does), ingest's partial windows are packed as the runtime packs
them and handed to the windows stage. Prints the process's CPU per event in each stage
(`time.process_time`, so other work on the machine counts less than in wall time).
Compare two commits by running this from each one's tree, alternating.

Run: .venv/bin/python -m tests.bench.bench_stages_inprocess [--events 1000000]
     [--series 350] [--fleet-rate 5000] [--keying service|none] [--poll 1250]
"""

from __future__ import annotations

import argparse
import gc
import random
import time

import orjson

from pipeline.output import Partitioner, pack_emits
from stages.ingest import IngestStage
from stages.ingest_windows import IngestWindowsStage
from stages.windows import WindowsConfig, WindowsStage
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
    args = parser.parse_args()

    events = make_events(args.events, args.series, args.fleet_rate)
    now = events[-1]["ts"] / 1000 + 1
    raw, latency = Topic("events.raw", PARTITIONS), Topic("events.latency", PARTITIONS)
    partitioner, rng = Partitioner(), random.Random(2)
    for event in events:
        keyed = args.keying == "service"
        partition = partitioner(event["service"], PARTITIONS) if keyed else rng.randrange(4)
        raw.append(partition, None, orjson.dumps(event))
    del events
    counts = {"events.latency": PARTITIONS, "events.errors": PARTITIONS}
    ingest = IngestWindowsStage(IngestStage(), WindowsConfig())
    windows = WindowsStage(WindowsConfig())
    ingest.assign(range(PARTITIONS))
    windows.assign(range(PARTITIONS))
    ingest_s = windows_s = 0.0
    rollups = 0
    gc.collect()
    while records := raw.poll(args.poll):
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
    per_event = 1e6 / args.events
    print(
        f"events={args.events} series={args.series} keying={args.keying} poll={args.poll}: "
        f"ingest {ingest_s * per_event:.2f} us/event, windows {windows_s * per_event:.2f}, "
        f"both {(ingest_s + windows_s) * per_event:.2f} (CPU); rollups {rollups}"
    )


if __name__ == "__main__":
    main()
