"""Benchmark: resident memory per active latency series, per stage group (issue: memory at
fleet scale).

For each series count N, on the local broker: 600k latency events (N/10 services x 10
endpoints, one minute of event time) go to a fresh `events.raw`; then separate
`prodmon run` processes read them, one stage group each, exactly as an operator would run
them: `ingest,windows`, then `baseline` (reading the rollups the first one wrote), then
`escalation,fingerprint`; and, on its own copy of the events, `all` in one process. Each
process runs until it has read everything and stayed idle (its own /metrics: consumer lag
0, records unchanged), then its peak resident set (VmHWM from /proc) is read.

Reported: peak RSS per group and N, and per series = (peak(N2) - peak(N1)) / (N2 - N1),
the issue's measure (the fixed cost of a Python process cancels out).

Restore: for each group in --restore-groups (default `ingest,windows`), once it has run, a
second `prodmon run` of the same group starts on the same topics, as after a restart; the
time from its start to its `/health/startup` answering 200 (every stage assigned and its
state read back from its changelog) is reported with the keys restored.

Run: .venv/bin/python -m tests.bench.bench_memory [--series 2000,100000] [--events 600000]
     [--groups ingest,windows:baseline:all] [--restore-groups ingest,windows] [--json out.json]
     [--max-services 0]   (for 1M series: 100k services, over the default limit)
Linux only (/proc). Bounded: each process is stopped after --timeout-s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.broker import LocalBroker, free_port
from pipeline.topics import create_topics

EVENT_SPAN_MS = 60_000  # one minute of event time
# `windows.max_services` (per partition) of the processes measured: the default (10,000),
# raised by `--max-services` for loads of more services (1M series are 100k services,
# 25k a partition: over the default limit they would be counted in one overflow series).
MAX_SERVICES = 10_000


def make_events(count: int, series: int, start_ms: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    services = max(1, series // 10)
    out = []
    for i in range(count):
        s = i % series if i < series else rng.randrange(series)  # every series at least once
        out.append(
            {
                "schema": "latency/1",
                "event_id": f"m-{i}",
                "ts": start_ms + i * EVENT_SPAN_MS // count,
                "service": f"svc-{s % services}",
                "endpoint": f"/api/{s // services}",
                "method": "GET",
                "status": 500 if rng.random() < 0.01 else 200,
                "duration_ms": round(rng.lognormvariate(3.0, 0.7), 3),
            }
        )
    return out


async def produce(bootstrap: str, topic: str, events: list[dict]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20, enable_idempotence=False
    )
    await producer.start()
    try:
        futures = []
        for i in range(0, len(events), 50):
            chunk = events[i : i + 50]
            futures.append(await producer.send(topic, orjson.dumps(chunk)))  # not keyed
            if len(futures) >= 2000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def fresh_topics(bootstrap: str) -> str:
    prefix = f"mem{uuid.uuid4().hex[:8]}."
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await create_topics(admin, prefix=prefix, partitions=4)
    finally:
        await admin.close()
    return prefix


def _metrics(port: int) -> dict[str, float]:
    """Sum of each metric family's samples (lag, records in) from the process's /metrics."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return {}
    sums: dict[str, float] = {}
    for line in text.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        except ValueError:
            continue
    return sums


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _start(bootstrap: str, prefix: str, stages: str, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "PRODMON_HEALTH__PORT": str(port),
        "PRODMON_WINDOWS__IDLE_FLUSH_S": "5",
        "PRODMON_INGEST__FUTURE_TOLERANCE_S": str(10**9),
        "PRODMON_WINDOWS__MAX_SERVICES": str(MAX_SERVICES),
    }
    cmd = [sys.executable, "-m", "ops.cli", "--log-level", "error", "run", "--stages", stages]
    cmd += ["--bootstrap", bootstrap, "--prefix", prefix]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def restore_time(bootstrap: str, prefix: str, stages: str, timeout_s: float) -> tuple[float, int]:
    """Start `prodmon run --stages <stages>` on topics a run already processed: seconds from
    the start until `/health/startup` answers 200 (state restored), and the keys restored."""
    port = free_port()
    began = time.monotonic()
    process = _start(bootstrap, prefix, stages, port)
    try:
        while time.monotonic() - began < timeout_s:
            time.sleep(0.1)
            if process.poll() is not None:
                raise RuntimeError(f"prodmon run --stages {stages} exited {process.returncode}")
            try:
                answer = urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/health/startup", timeout=2
                )
            except OSError:  # not listening yet, or 503 while restoring
                continue
            elapsed = time.monotonic() - began
            checks = orjson.loads(answer.read()).get("checks", {})
            keys = sum(c.get("restored_keys", 0) for c in checks.values() if isinstance(c, dict))
            return elapsed, keys
        raise RuntimeError(f"prodmon run --stages {stages}: not restored in {timeout_s} s")
    finally:
        _stop(process)


def run_group(bootstrap: str, prefix: str, stages: str, timeout_s: float, idle_s: float) -> float:
    """Run `prodmon run --stages <stages>` until it has read everything and stayed idle
    for `idle_s`; its peak RSS in MB."""
    port = free_port()
    process = _start(bootstrap, prefix, stages, port)
    deadline = time.monotonic() + timeout_s
    last, quiet_since = -1.0, time.monotonic()
    try:
        while time.monotonic() < deadline:
            time.sleep(2)
            if process.poll() is not None:
                raise RuntimeError(f"prodmon run --stages {stages} exited {process.returncode}")
            sums = _metrics(port)
            seen = sums.get("prodmon_records_in_total", 0.0)
            lag = sums.get("prodmon_consumer_lag", 1.0)
            if seen != last or lag > 0 or seen == 0:
                last, quiet_since = seen, time.monotonic()
            elif time.monotonic() - quiet_since >= idle_s:
                break
        return _peak_rss_mb(process.pid)
    finally:
        _stop(process)


async def measure(args: argparse.Namespace) -> dict:
    results: dict[str, dict[int, float]] = {}
    restores: dict[str, dict[int, dict[str, float]]] = {}
    with LocalBroker() as broker:
        for series in args.series:
            events = make_events(args.events, series, int(time.time() * 1000) - 120_000)
            split_prefix = await fresh_topics(broker.bootstrap)
            await produce(broker.bootstrap, split_prefix + "events.raw", events)
            for group in args.groups:
                if group == "all":
                    prefix = await fresh_topics(broker.bootstrap)
                    await produce(broker.bootstrap, prefix + "events.raw", events)
                else:
                    prefix = split_prefix  # later groups read what earlier ones wrote
                peak = run_group(broker.bootstrap, prefix, group, args.timeout_s, args.idle_s)
                results.setdefault(group, {})[series] = peak
                print(f"series={series:>7} stages={group:<24} peak RSS {peak:8.1f} MB", flush=True)
                if group in args.restore_groups:
                    took, keys = restore_time(broker.bootstrap, prefix, group, args.timeout_s)
                    restores.setdefault(group, {})[series] = {"seconds": took, "keys": keys}
                    print(
                        f"series={series:>7} stages={group:<24} restart: state restored in "
                        f"{took:6.1f} s ({keys} changelog keys)",
                        flush=True,
                    )
            del events
    low, high = min(args.series), max(args.series)
    report: dict = {
        "series": args.series,
        "events": args.events,
        "peak_rss_mb": {
            group: {str(n): mb for n, mb in by.items()} for group, by in results.items()
        },
        "restore": {group: {str(n): r for n, r in by.items()} for group, by in restores.items()},
    }
    if low != high:
        report["kb_per_series"] = {
            group: round((by[high] - by[low]) * 1024 / (high - low), 2)
            for group, by in results.items()
        }
        for group, kb in report["kb_per_series"].items():
            print(f"{group:<24} {kb:8.2f} KB per active series ({low} -> {high} series)")
    return report


def _set_max_services(limit: int) -> None:
    global MAX_SERVICES
    MAX_SERVICES = limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", default="2000,100000")
    parser.add_argument("--events", type=int, default=600_000)
    parser.add_argument(
        "--groups",
        default="ingest,windows:baseline:escalation,fingerprint:all",
        help="':'-separated",
    )
    parser.add_argument(
        "--restore-groups",
        default="ingest,windows",
        help="':'-separated groups restarted after their run to time the restore ('' for none)",
    )
    parser.add_argument("--timeout-s", type=float, default=900.0)
    parser.add_argument("--idle-s", type=float, default=15.0)
    parser.add_argument("--json")
    parser.add_argument(
        "--max-services", type=int, default=MAX_SERVICES, help="windows.max_services (0: none)"
    )
    args = parser.parse_args()
    _set_max_services(args.max_services)
    args.series = [int(s) for s in args.series.split(",")]
    args.groups = args.groups.split(":")
    args.restore_groups = [g for g in args.restore_groups.split(":") if g]
    report = asyncio.run(measure(args))
    if args.json:
        with open(args.json, "wb") as out:
            out.write(orjson.dumps(report, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
