"""Benchmark: how fast one pipeline process groups error events into issues.

Measured in one run on the local broker, against the same `events.raw` topic of error
events (stack traces, varying messages and line numbers, several releases):
1. the ceiling: a bare aiokafka consumer that reads the topic and decodes every message;
2. one pipeline process running the error path: ingest + fingerprint (through
   events.errors), until the fingerprint stage has grouped every event.

Issue 6's target is a ratio of at least 0.25. Same-run ratios only: the machine is noisy.

Run: .venv/bin/python -m tests.bench.bench_error_path [--events 200000] [--batch 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import time
import uuid

from aiokafka.admin import AIOKafkaAdminClient

from loadtest.fleet import error_burst
from pipeline.app import Pipeline
from pipeline.broker import LocalBroker
from pipeline.config import RuntimeConfig, load_config
from pipeline.logging import configure_logging
from pipeline.topics import create_topics
from tests.bench.bench_rollup_throughput import produce, raw_consume_rate

T0 = 1_795_320_000_000


async def error_path_rate(bootstrap: str, prefix: str, total: int) -> dict:
    """Events/s from the first record ingest consumes to the last event fingerprinted."""
    config = load_config(
        env={},
        overrides={
            "kafka.bootstrap": bootstrap,
            "kafka.prefix": prefix,
            "ingest.future_tolerance_s": 10**9,
        },
    )
    stop = asyncio.Event()
    pipeline = Pipeline(config, ["ingest", "fingerprint"])
    task = asyncio.create_task(pipeline.run(stop))
    started = None
    try:
        while True:
            await asyncio.sleep(0.01)
            if len(pipeline.runners) < 2:
                continue
            ingest, fingerprint = pipeline.runners[0], pipeline.runners[1]
            if started is None and ingest.stats.records_in:
                started = time.perf_counter()
            stats = fingerprint.stage.stats
            if stats["events"] + stats["duplicates"] + stats["bad_events"] >= total:
                break
        elapsed = time.perf_counter() - started
        issues = stats["new"]
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)
    return {"events_per_s": total / elapsed, "seconds": elapsed, "issues": issues}


async def main_async(args: argparse.Namespace) -> dict:
    configure_logging("WARNING")
    gc.set_threshold(RuntimeConfig().gc_gen0_threshold, 20, 20)  # as the pipeline does
    events, _ = error_burst(args.events, seed=7, start_ms=T0)
    for i, event in enumerate(events):
        event["event_id"] = f"bench-{i}"
    results: dict = {"events": args.events, "batch": args.batch}
    with LocalBroker() as broker:
        prefix = f"errbench{uuid.uuid4().hex[:6]}."
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        await create_topics(admin, prefix=prefix, partitions=args.partitions)
        await admin.close()
        topic = prefix + "events.raw"
        results["messages"] = await produce(broker.bootstrap, topic, events, args.batch)
        del events
        gc.collect()
        raw = await raw_consume_rate(broker.bootstrap, topic, args.events)
        results["raw_consume_decode_events_per_s"] = raw
        results["error_path"] = await error_path_rate(broker.bootstrap, prefix, args.events)
        results["error_path"]["ratio_to_raw"] = results["error_path"]["events_per_s"] / raw
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1, help="events per Kafka message")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    r = results["error_path"]
    print(f"events={results['events']} per-message={results['batch']}")
    print(
        f"raw aiokafka consume+decode : {results['raw_consume_decode_events_per_s']:>10,.0f}"
        " events/s (ceiling)"
    )
    print(
        f"pipeline ingest+fingerprint : {r['events_per_s']:>10,.0f} events/s"
        f"  ratio {r['ratio_to_raw']:.2f}  issues {r['issues']}"
    )


if __name__ == "__main__":
    main()
