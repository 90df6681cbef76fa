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


_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * _TICK_S


async def run_processes(
    bootstrap: str, prefix: str, processes: int, total: int, workdir: Path, broker_pid: int
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
    each: list[list[tuple[float, float]]] = [[] for _ in ports]  # per process
    # CPU seconds used so far by the pipeline processes (together) and by the broker
    cpu: list[tuple[float, float, float]] = []
    started = time.perf_counter()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                counts = await asyncio.gather(*(_accounted(session, p) for p in ports))
                done = sum(counts)
                now = time.perf_counter()
                samples.append((now, done))
                cpu.append((now, sum(_cpu_s(p.pid) for p in procs), _cpu_s(broker_pid)))
                for mine, count in zip(each, counts, strict=True):
                    mine.append((now, count))
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
    rates = _rates(samples, total)
    rates["processes"] = [_timeline(mine, started) for mine in each]
    rates["cpu"] = _cpu_use(samples, cpu, total)
    return rates


def _cpu_use(
    samples: list[tuple[float, float]], cpu: list[tuple[float, float, float]], total: int
) -> dict:
    """CPU time per event of the pipeline processes and of the broker between 25 % and
    90 % of the backlog (the steady window), and the cores they kept busy together."""
    i25 = next(i for i, s in enumerate(samples) if s[1] >= 0.25 * total)
    i90 = next(i for i, s in enumerate(samples) if s[1] >= 0.90 * total)
    (t0, p0, b0), (t1, p1, b1) = cpu[i25], cpu[i90]
    events = samples[i90][1] - samples[i25][1]
    wall = t1 - t0
    if events <= 0 or wall <= 0:
        return {}
    return {
        "pipeline_us_per_event": (p1 - p0) / events * 1e6,
        "broker_us_per_event": (b1 - b0) / events * 1e6,
        "pipeline_cores": (p1 - p0) / wall,
        "broker_cores": (b1 - b0) / wall,
    }


def _timeline(samples: list[tuple[float, float]], started: float) -> dict:
    """One process's part: when it first and last made progress (seconds after the
    processes were started), how many events it accounted, and its own rate between."""
    moving = [s for s in samples if s[1] > 0]
    if not moving:
        return {"first_s": None, "last_s": None, "events": 0, "events_per_s": 0.0}
    last = next(s for s in samples if s[1] >= moving[-1][1])
    first = moving[0]
    span = last[0] - first[0]
    return {
        "first_s": first[0] - started,
        "last_s": last[0] - started,
        "events": last[1],
        "events_per_s": (last[1] - first[1]) / span if span > 0 else float("nan"),
    }


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
            assert broker.process is not None
            results[f"p{processes}"] = await run_processes(
                broker.bootstrap, prefix, processes, args.events, Path(tmp), broker.process.pid
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
        use = r["cpu"]
        if use:
            print(
                f"  CPU in the steady window: pipeline {use['pipeline_us_per_event']:.2f} us/event"
                f" ({use['pipeline_cores']:.2f} cores), broker"
                f" {use['broker_us_per_event']:.2f} us/event ({use['broker_cores']:.2f} cores)"
            )
        for i, part in enumerate(r["processes"]):
            if part["first_s"] is None:
                print(f"  process {i}: no progress")
                continue
            print(
                f"  process {i}: progress from {part['first_s']:.1f} s to {part['last_s']:.1f} s"
                f" after start, {part['events']:,.0f} events, {part['events_per_s']:,.0f}/s"
            )
    print(
        f"2 vs 1 processes: steady {results['speedup_steady']:.2f}x,"
        f" whole run {results['speedup_whole']:.2f}x"
    )
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
