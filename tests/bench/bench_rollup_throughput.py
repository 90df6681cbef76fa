"""Benchmark: how fast one pipeline process turns a latency topic into rollups.

Measured in one run on the local broker, against the same `events.raw` topic:
1. the ceiling: a bare aiokafka consumer that reads the topic and decodes every message
   with orjson (no validation, no windows); and, for comparison, the same consumer
   reading the slim records the pipeline reads (pipeline/slim_records.py);
2. one pipeline process with the defaults, `--stages ingest,windows`: with two-phase
   windowing, ingest keeps partial windows per raw partition and the windows stage merges
   them (before it, ingest sent every event through events.latency, or windowed them
   itself with `windows.fused = true`, correct only for input keyed by service).

`--keyings service,none`: the fleet keys events.raw by service, or not at all (each
message to a random partition); each keying gets its own topic, and the ceiling is
measured on the first.

Each figure is events/s from the first record consumed to the last event accounted, and
the pipeline figures are reported as a ratio of the ceiling (machines here are noisy, so
only same-run ratios mean anything). With two-phase windowing "accounted" means merged
by the windows stage, except the events of the windows still open when ingest has
windowed the last event (they close only once the sources go idle); the time at which
ingest had windowed every event is reported too (`local`), and so is the process's CPU
time over the same span per event (the broker is a child process: not in it), and that
CPU time as a share of the span ("busy": below 100 % the process waited, for a fetch or
for its checkpoints' acks).

Run: .venv/bin/python -m tests.bench.bench_rollup_throughput [--events 300000]
     [--batch 1] [--series 10000] [--fleet-rate 50000] [--early-eval-s 1] [--json out.json]
     [--keyings service,none] [--peer quix [--quix-variants group_by,service]]
`--batch` is how many events the fleet packs per message (1 = one event per message).
`--peer quix`: also runs the same job in Quix Streams on the first keying's topic
(tests/bench/bench_quix_peer.py; needs the `bench` extra) and prints prodmon's default
rate over Quix's as "x Quix".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import random
import sys
import time
import uuid

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from loadtest.harness import raw_ceiling
from pipeline.app import Pipeline
from pipeline.broker import LocalBroker
from pipeline.config import RuntimeConfig, load_config
from pipeline.logging import configure_logging
from pipeline.topics import create_topics

T0 = 1_795_320_000_000


def make_events(count: int, series: int, fleet_rate: int, seed: int = 1) -> list[dict]:
    """`count` latency events over `series` series (services x endpoints), time ordered,
    with event times as a fleet sending `fleet_rate` events/s would stamp them."""
    rng = random.Random(seed)
    services = max(1, series // 10)
    span_ms = count * 1000 // fleet_rate
    out = []
    for i in range(count):
        s = rng.randrange(series)
        out.append(
            {
                "schema": "latency/1",
                "event_id": f"l-{i}",
                "ts": T0 + i * span_ms // count,
                "service": f"svc-{s % services}",
                "endpoint": f"/api/{s // services}",
                "method": "GET",
                "status": 500 if rng.random() < 0.01 else 200,
                "duration_ms": round(rng.lognormvariate(3.0, 0.7), 3),
                "host": f"h-{s % 50}",
            }
        )
    return out


async def produce(
    bootstrap: str, topic: str, events: list[dict], batch: int, keyed: bool = True
) -> int:
    """Send `events` to `topic`, `batch` a message, keyed by service (or not keyed)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20, enable_idempotence=False
    )
    await producer.start()
    messages = 0
    try:
        futures = []
        for i in range(0, len(events), batch):
            chunk = events[i : i + batch]
            value = orjson.dumps(chunk if batch > 1 else chunk[0])
            key = chunk[0]["service"].encode() if keyed else None
            futures.append(await producer.send(topic, value, key=key))
            messages += 1
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return messages


async def raw_consume_rate(
    bootstrap: str, topic: str, total_events: int, slim: bool = False
) -> float:
    """The ceiling: the load test's bare consume-and-decode rate of `topic` (events/s);
    `slim`: the same with the pipeline's slim records instead of aiokafka's."""
    found = await raw_ceiling(bootstrap, topic, total_events, timeout_s=600, slim=slim)
    return found["events_per_s"]


async def pipeline_rate(
    bootstrap: str,
    prefix: str,
    total: int,
    batch_records: int = 5000,
    early_eval_s: float = 1.0,
) -> dict:
    config = load_config(
        env={},
        overrides={
            "kafka.bootstrap": bootstrap,
            "kafka.prefix": prefix,
            "runtime.max_batch_records": batch_records,
            "ingest.future_tolerance_s": 10**9,
            "windows.early_eval_s": early_eval_s,
        },
    )
    stages = ["ingest", "windows"]
    stop = asyncio.Event()
    pipeline = Pipeline(config, stages)
    task = asyncio.create_task(pipeline.run(stop))
    started = local_s = None
    target = total
    try:
        while True:
            await asyncio.sleep(0.01)
            if task.done():  # the pipeline stopped (failed) before accounting every event
                task.result()
                raise RuntimeError("the pipeline stopped before the benchmark finished")
            if not pipeline.runners:
                continue
            first = pipeline.runners[0]
            if started is None and first.stats.records_in:
                started = time.perf_counter()
                cpu_started = time.process_time()
            local = getattr(first.stage, "core", None)
            core = getattr(pipeline.runners[-1].stage, "core", None)
            if local is not None and local is not core:  # two-phase: ingest, then windows
                if local_s is None and local.stats["events"] + local.stats["late"] >= total:
                    local_s = time.perf_counter() - started
                    still_open = local.open_events()  # counted: flushing them would be timed
                    target = local.stats["events"] - still_open
                if local_s is not None and core.stats["events"] + core.stats["late"] >= target:
                    break
            elif core is not None and core.stats["events"] + core.stats["late"] >= total:
                break
        elapsed = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started  # this process's CPU (for --peer)
        rollups = core.stats["rollups"]
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)
    found = {"events_per_s": total / elapsed, "seconds": elapsed, "rollups": rollups}
    found["cpu_s"] = cpu_s
    if local_s is not None:
        found["local_events_per_s"] = total / local_s
        found["merged_events"] = target
    return found


def runs(keyings: list[str]) -> list[tuple[str, str]]:
    """(pipeline, keying) pairs to measure."""
    return [("default", k) for k in keyings]


async def main_async(args: argparse.Namespace) -> dict:
    configure_logging("WARNING")
    # The pipeline sets this GC threshold at start (runtime.gc_gen0_threshold); the raw
    # baseline gets the same, so the ratio compares like with like.
    gc.set_threshold(RuntimeConfig().gc_gen0_threshold, 20, 20)
    events = make_events(args.events, args.series, args.fleet_rate)
    results: dict = {
        "events": args.events,
        "series": args.series,
        "batch": args.batch,
        "fleet_rate": args.fleet_rate,
    }
    measured = runs(args.keyings)
    with LocalBroker() as broker:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        prefixes = {}
        for run in measured:
            prefixes[run] = f"bench{uuid.uuid4().hex[:6]}."
            await create_topics(admin, prefix=prefixes[run], partitions=args.partitions)
        await admin.close()
        for (_, keying), prefix in prefixes.items():
            results["messages"] = await produce(
                broker.bootstrap, prefix + "events.raw", events, args.batch, keying == "service"
            )
        raw_topic = prefixes[measured[0]] + "events.raw"
        results["raw_consume_decode_events_per_s"] = await raw_consume_rate(
            broker.bootstrap, raw_topic, args.events
        )
        ceilings = results["raw_by_keying"] = {
            measured[0][1]: results["raw_consume_decode_events_per_s"]
        }
        for (_, keying), prefix in prefixes.items():  # each keying's own topic, for reference
            if keying not in ceilings:
                ceilings[keying] = await raw_consume_rate(
                    broker.bootstrap, prefix + "events.raw", args.events
                )
        for (mode, keying), prefix in prefixes.items():
            name = f"{mode}/{keying}"
            print(f"measuring the {name} pipeline", file=sys.stderr, flush=True)  # for profilers
            results[name] = await pipeline_rate(
                broker.bootstrap,
                prefix,
                args.events,
                batch_records=args.batch_records,
                early_eval_s=args.early_eval_s,
            )
        # Last, so the pipelines are measured as they were before slim records existed.
        results["slim_consume_decode_events_per_s"] = await raw_consume_rate(
            broker.bootstrap, raw_topic, args.events, slim=True
        )
        if args.peer == "quix":  # bench-only dependency, imported only when asked for
            from tests.bench.bench_quix_peer import quix_rate

            prodmon = results["/".join(measured[0])]
            for variant in args.quix_variants:
                print(f"measuring the Quix peer ({variant})", file=sys.stderr, flush=True)
                found = await quix_rate(broker.bootstrap, raw_topic, args.events, variant)
                found["ratio_to_raw"] = (
                    found["events_per_s"] / results["raw_consume_decode_events_per_s"]
                )
                found["prodmon_over_quix"] = prodmon["events_per_s"] / found["events_per_s"]
                # CPU seconds per event, Quix over prodmon: less moved by a busy machine
                found["prodmon_over_quix_cpu"] = found["cpu_s"] / prodmon["cpu_s"]
                results[f"quix/{variant}"] = found
        for mode, keying in measured:
            found = results[f"{mode}/{keying}"]
            rate = found["events_per_s"]
            found["ratio_to_raw"] = rate / results["raw_consume_decode_events_per_s"]
            found["ratio_to_slim"] = rate / results["slim_consume_decode_events_per_s"]
            if "local_events_per_s" in found:
                ratio = found["local_events_per_s"] / results["raw_consume_decode_events_per_s"]
                found["local_ratio_to_raw"] = ratio
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--fleet-rate",
        type=int,
        default=50_000,
        help="event-time rate of the simulated fleet (events/s): sets how full windows are",
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-records", type=int, default=5000, help="runtime.max_batch_records")
    parser.add_argument(
        "--keyings",
        type=lambda text: text.split(","),
        default=["service"],
        help="how the fleet keys events.raw: service, none, or both (comma-separated)",
    )
    parser.add_argument(
        "--early-eval-s",
        type=float,
        default=1.0,
        help="windows.early_eval_s of the pipeline (0: no early evaluation)",
    )
    parser.add_argument(
        "--peer",
        choices=["quix"],
        default=None,
        help="also run the job in a peer engine (quix: Quix Streams, the `bench` extra)",
    )
    parser.add_argument(
        "--quix-variants",
        type=lambda text: text.split(","),
        default=["group_by"],
        help="the Quix jobs: group_by (re-keyed by series), service (no repartition)",
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.peer == "quix" and "service" in args.quix_variants and args.keyings[0] != "service":
        parser.error("the Quix variant `service` needs the first keying to be service")
    results = asyncio.run(main_async(args))
    raw = results["raw_consume_decode_events_per_s"]
    print(
        f"events={results['events']} series={results['series']} "
        f"per-message={results['batch']} fleet-rate={results['fleet_rate']}/s"
    )
    print(f"raw aiokafka consume+decode : {raw:>10,.0f} events/s (ceiling)")
    for keying, rate in results["raw_by_keying"].items():
        print(f"  the same, keyed by {keying:7}: {rate:>10,.0f} events/s")
    slim = results["slim_consume_decode_events_per_s"]
    print(f"slim-record consume+decode  : {slim:>10,.0f} events/s (the pipeline's reader)")
    for mode, keying in runs(args.keyings):
        r = results[f"{mode}/{keying}"]
        local = ""
        if "local_ratio_to_raw" in r:
            local = f"  (ingest windowed all: ratio {r['local_ratio_to_raw']:.2f})"
        own = r["events_per_s"] / results["raw_by_keying"][keying]
        print(
            f"pipeline {mode:7} keyed by {keying:7}: {r['events_per_s']:>10,.0f} events/s"
            f"  ratio {r['ratio_to_raw']:.2f} (to slim {r['ratio_to_slim']:.2f},"
            f" to its own topic's raw {own:.2f})  rollups {r['rollups']}{local}"
            f"  CPU {r['cpu_s'] / results['events'] * 1e6:.2f} us/event"
            f" (busy {r['cpu_s'] / r['seconds']:.0%} of the span)"
        )
    first = "/".join(runs(args.keyings)[0])
    for variant in args.quix_variants if args.peer == "quix" else []:
        q = results[f"quix/{variant}"]
        print(
            f"quix streams {variant:8}          : {q['events_per_s']:>10,.0f} events/s"
            f"  ratio {q['ratio_to_raw']:.2f}  closed windows {q['closed_windows']}"
            f"  -> prodmon {first}: {q['prodmon_over_quix']:.1f}x Quix"
            f" (in CPU time {q['prodmon_over_quix_cpu']:.1f}x)"
        )
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
