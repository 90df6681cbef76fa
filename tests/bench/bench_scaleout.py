"""Benchmark: ingest + windows throughput with 1 and with 2 `prodmon run` processes.

One run, one local broker, the same prefilled backlog for every case:
1. the ceiling: a bare aiokafka consumer reading the topic and decoding every message;
2. P = 1, then P = 2 `prodmon run --stages ingest,windows` processes sharing the
   consumer groups (each case on its own topic prefix holding the same events).

Progress is read from each process's own `/metrics` (latency events ingest windowed into
its partial windows), so nothing in the pipeline is instrumented for the benchmark. The steady
rate is taken between 25 % and 90 % of the backlog, which leaves the start-up and the
first rebalance out; the whole-run rate is reported too.

Run: .venv/bin/python -m tests.bench.bench_scaleout [--events 1500000] [--batch 100]
     [--unkeyed] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.broker import LocalBroker, free_port
from pipeline.config import RuntimeConfig
from pipeline.logging import configure_logging
from pipeline.topics import create_topics
from tests.bench.bench_rollup_throughput import make_events, produce, raw_consume_rate

# Latency events accounted: ingest's `latency` (windowed there, two-phase windowing).
_INGESTED = re.compile(
    r'^prodmon_stage_events_total\{stage="ingest",kind="latency"\}\s+(\S+)$', re.M
)


_RUN = (sys.executable, "-m", "ops.cli", "--log-level", "warning", "run")


def _config_text(bootstrap: str, prefix: str, health_port: int) -> str:
    return (
        f'[kafka]\nbootstrap = "{bootstrap}"\nprefix = "{prefix}"\n'
        f"[health]\nport = {health_port}\n"
        # Old event times must not be rejected as too far in the future/past.
        "[ingest]\nfuture_tolerance_s = 1000000000.0\n"
    )


async def _accounted(session: aiohttp.ClientSession, port: int) -> float:
    """Latency events the process's windowing stage has accounted."""
    try:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
    except (aiohttp.ClientError, OSError):
        return 0.0
    return sum(float(v) for v in _INGESTED.findall(text))


async def run_processes(
    bootstrap: str, prefix: str, processes: int, total: int, workdir: Path
) -> dict:
    """Start `processes` pipeline processes on a prefilled prefix; time the backlog."""
    procs: list[subprocess.Popen] = []
    ports = []
    stages = "ingest,windows"
    for i in range(processes):
        port = free_port()
        ports.append(port)
        config = workdir / f"{prefix}{i}.toml"
        config.write_text(_config_text(bootstrap, prefix, port))
        procs.append(
            subprocess.Popen(
                [*_RUN, "--stages", stages, "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    samples: list[tuple[float, float]] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                counts = await asyncio.gather(*(_accounted(session, p) for p in ports))
                done = sum(counts)
                samples.append((time.perf_counter(), done))
                if done >= total:
                    break
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a pipeline process exited early")
                await asyncio.sleep(0.25)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(20)
            if p.poll() is None:
                p.kill()
    return _rates(samples, total)


def _rates(samples: list[tuple[float, float]], total: int) -> dict:
    def first_at(fraction: float) -> tuple[float, float]:
        return next(s for s in samples if s[1] >= fraction * total)

    start = next(s for s in samples if s[1] > 0)
    t25, n25 = first_at(0.25)
    t90, n90 = first_at(0.90)
    end_t, end_n = samples[-1]
    return {
        "steady_events_per_s": (n90 - n25) / (t90 - t25) if t90 > t25 else float("nan"),
        "whole_events_per_s": (end_n - start[1]) / (end_t - start[0]),
        "seconds": end_t - start[0],
    }


async def main_async(args: argparse.Namespace) -> dict:
    configure_logging("WARNING")
    gc.set_threshold(RuntimeConfig().gc_gen0_threshold, 20, 20)
    events = make_events(args.events, args.series, args.fleet_rate)
    results: dict = {
        "events": args.events,
        "batch": args.batch,
        "partitions": args.partitions,
        "keyed": not args.unkeyed,
        "cpus": os.cpu_count(),
    }
    with LocalBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        prefixes = {p: f"scale{uuid.uuid4().hex[:6]}." for p in (1, 2)}
        for prefix in prefixes.values():
            await create_topics(admin, prefix=prefix, partitions=args.partitions)
        await admin.close()
        for prefix in prefixes.values():
            await produce(
                broker.bootstrap, prefix + "events.raw", events, args.batch, not args.unkeyed
            )
        del events
        gc.collect()
        results["raw_consume_decode_events_per_s"] = await raw_consume_rate(
            broker.bootstrap, prefixes[1] + "events.raw", args.events
        )
        for processes, prefix in prefixes.items():
            results[f"p{processes}"] = await run_processes(
                broker.bootstrap, prefix, processes, args.events, Path(tmp)
            )
    raw = results["raw_consume_decode_events_per_s"]
    for key in ("p1", "p2"):
        results[key]["ratio_to_raw"] = results[key]["steady_events_per_s"] / raw
    results["speedup_steady"] = (
        results["p2"]["steady_events_per_s"] / results["p1"]["steady_events_per_s"]
    )
    results["speedup_whole"] = (
        results["p2"]["whole_events_per_s"] / results["p1"]["whole_events_per_s"]
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_500_000)
    parser.add_argument("--batch", type=int, default=100, help="events per Kafka message")
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--fleet-rate", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--unkeyed", action="store_true", help="events.raw not keyed")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    raw = results["raw_consume_decode_events_per_s"]
    print(
        f"events={results['events']} per-message={results['batch']} "
        f"partitions={results['partitions']} keyed={results['keyed']}"
        f" cpus={results['cpus']}"
    )
    print(f"raw aiokafka consume+decode : {raw:>10,.0f} events/s (ceiling)")
    for key in ("p1", "p2"):
        r = results[key]
        print(
            f"{key[1]} process(es): steady {r['steady_events_per_s']:>10,.0f} events/s"
            f" (ratio to raw {r['ratio_to_raw']:.2f}), whole run"
            f" {r['whole_events_per_s']:>10,.0f} events/s in {r['seconds']:.1f} s"
        )
    print(
        f"2 vs 1 processes: steady {results['speedup_steady']:.2f}x,"
        f" whole run {results['speedup_whole']:.2f}x"
    )
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
