"""State size and per-point cost of the anomaly detector (detection/detector.py), alone and in
the live baseline stage. Budgets (issue 17): <= 16 KB of state per series and <= 50 us per
point in the live stage, so that 100k series fit one process.

Series, 1-minute resolution, 21 days each (fixed seed), shaped like what the stage learns:

* p99_ms: a daily and a weekly pattern, log-normal noise, a few incidents;
* error_rate_pct: mostly near zero, sparse bursts;
* throughput_rps: a strong daily cycle with Poisson noise.

Reported per series kind: microseconds per `Detector.update`, per update plus
`to_state()` (the stage writes the state of every detector it updates to its changelog),
and the JSON size of the state (orjson, as the runtime writes it): the largest seen
(sampled hourly) and the size after 21 days. Then the live stage itself: `BaselineStage`
fed 1-minute rollups of many series (4 metrics each, the default), microseconds per
(series, metric) point, everything included (decoding, detectors, state, rules), and
the same with its changelog values encoded as the runtime does (orjson). Since issue 24
the stage holds its detectors packed (detection/packed.py): per update plus unpack and
pack is reported too, and the packed size. Times are best of 3 runs. Ratios are to the
budgets (< 1 is within).

With `--memory N:POINTS,...`, instead: the state the live stage holds per series
(tracemalloc), for N series after POINTS one-minute rollups each (issue 24). POINTS = 1 is
measured live (the stage traced while it learns); with more points they are learned
untraced and the final changelog is then restored into a traced fresh stage (what a
restarted stage holds), since tracing a long run slows it several times.

    python -m tests.bench.bench_detector [--days 21] [--series 200] [--json out.json]
    python -m tests.bench.bench_detector --memory 5000:1,300:2100,100:10200
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import sys
import time
import tracemalloc
from typing import Any

import orjson

from detection.detector import Detector

try:
    from detection.packed import DetectorCodec
except ImportError:  # the code before issue 24 (measuring it for comparison)
    DetectorCodec = None  # type: ignore[assignment,misc]
from stages.base import Record
from stages.baseline import BaselineStage

SEED = 20_261_206
T0 = 1_795_305_600.0  # a Monday, 00:00 UTC
STATE_BUDGET = 16 * 1024  # bytes per series
POINT_BUDGET_US = 50.0  # us per point in the live stage


def p99_series(rng: random.Random, n: int) -> list[float]:
    out = []
    for i in range(n):
        day = math.sin(2 * math.pi * (i % 1440) / 1440)
        weekend = 0.8 if (i // 1440) % 7 >= 5 else 1.0
        v = 180.0 * weekend * (1.0 + 0.3 * day) * rng.lognormvariate(0.0, 0.15)
        if i % 9000 < 20:  # an incident every ~6 days
            v *= 3.0
        out.append(v)
    return out


def error_series(rng: random.Random, n: int) -> list[float]:
    out = []
    for i in range(n):
        v = 0.0 if rng.random() < 0.7 else rng.expovariate(1 / 0.2)
        if i % 11000 < 10:
            v += 5.0
        out.append(v)
    return out


def throughput_series(rng: random.Random, n: int) -> list[float]:
    out = []
    for i in range(n):
        lam = 400.0 + 300.0 * math.sin(2 * math.pi * (i % 1440) / 1440)
        out.append(max(0.0, rng.gauss(lam, math.sqrt(lam))) / 60.0)
    return out


KINDS = {"p99_ms": p99_series, "error_rate_pct": error_series, "throughput_rps": throughput_series}


def best_of(runs: int, fn: Any) -> float:
    return min(fn() for _ in range(runs))


def measure_kind(name: str, days: int) -> dict[str, Any]:
    n = days * 1440
    values = KINDS[name](random.Random(f"{SEED}{name}"), n)
    ts = [T0 + 60.0 * i for i in range(n)]

    def updates_only() -> float:
        det = Detector()
        update = det.update
        start = time.perf_counter()
        for t, v in zip(ts, values, strict=True):
            update(t, v)
        return (time.perf_counter() - start) / n * 1e6

    def with_state() -> float:
        det = Detector()
        update, to_state = det.update, det.to_state
        start = time.perf_counter()
        for t, v in zip(ts, values, strict=True):
            update(t, v)
            to_state()
        return (time.perf_counter() - start) / n * 1e6

    def with_packing() -> float:  # as the stage does since issue 24
        codec = DetectorCodec()
        data = codec.pack(Detector())
        start = time.perf_counter()
        for t, v in zip(ts, values, strict=True):
            det = codec.unpack(data)
            det.update(t, v)
            data = codec.pack(det)
        return (time.perf_counter() - start) / n * 1e6

    det = Detector()
    largest = 0
    for i, (t, v) in enumerate(zip(ts, values, strict=True)):
        det.update(t, v)
        if i % 60 == 0:
            largest = max(largest, len(orjson.dumps(det.to_state())))
    final = len(orjson.dumps(det.to_state()))
    largest = max(largest, final)
    return {
        "kind": name,
        "points": n,
        "us_per_update": best_of(3, updates_only),
        "us_per_update_and_state": best_of(3, with_state),
        "us_per_update_and_packing": best_of(3, with_packing) if DetectorCodec else None,
        "packed_bytes_final": len(DetectorCodec().pack(det)) if DetectorCodec else None,
        "state_bytes_max": largest,
        "state_bytes_final": final,
        "season": det.season,
    }


def rollup_records(n_series: int, minutes: int) -> list[list[Record]]:
    """One batch per minute: one 1-minute rollup per series (endpoint-level series)."""
    rng = random.Random(SEED)
    bases = [rng.lognormvariate(4.5, 0.5) for _ in range(n_series)]
    return [minute_batch(rng, bases, m, m * n_series) for m in range(minutes)]


def minute_batch(rng: random.Random, bases: list[float], m: int, offset: int) -> list[Record]:
    """Minute `m`'s 1-minute rollups, one per series (base p50 in `bases`)."""
    start = int((T0 + 60 * m) * 1000)
    day = math.sin(2 * math.pi * (m % 1440) / 1440)
    batch = []
    for s, base in enumerate(bases):
        count = max(1, int(rng.gauss(600 + 300 * day, 25)))
        p50 = base * rng.lognormvariate(0.0, 0.05)
        rollup = {
            "id": f"svc{s}|/api|1m|{start}",
            "series": f"svc{s}|/api",
            "service": f"svc{s}",
            "endpoint": "/api",
            "resolution": "1m",
            "start": start,
            "end": start + 60_000,
            "count": count,
            "errors": int(rng.random() < 0.3),
            "client_errors": 0,
            "p50_ms": p50,
            "p90_ms": p50 * 1.8,
            "p95_ms": p50 * 2.2,
            "p99_ms": p50 * 3.0 * rng.lognormvariate(0.0, 0.1),
            "p999_ms": p50 * 4.0,
            "max_ms": p50 * 5.0,
            "mean_ms": p50 * 1.2,
        }
        value = orjson.dumps(rollup)
        batch.append(Record("rollups", 0, offset + s, rollup["series"].encode(), value))
    return batch


def _encoded(state: dict[tuple[int, str], Any]) -> dict[tuple[int, str], bytes | None]:
    """Changelog values as the runtime writes them."""
    return {key: None if value is None else orjson.dumps(value) for key, value in state.items()}


def measure_memory(n_series: int, points: int) -> dict[str, Any]:
    """Bytes per series of the state the baseline stage holds (tracemalloc), after `points`
    one-minute rollups per series (see the module docstring)."""
    rng = random.Random(SEED)
    bases = [rng.lognormvariate(4.5, 0.5) for _ in range(n_series)]
    changelog: dict[tuple[int, str], bytes | None] = {}
    stage = BaselineStage()
    for m in range(points - 1):  # untraced: learning
        changelog.update(_encoded(stage.process(minute_batch(rng, bases, m, 0), 0.0).state))
    last = minute_batch(rng, bases, points - 1, 0)
    if points > 1:
        changelog.update(_encoded(stage.process(last, 0.0).state))
    del stage
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        traced = BaselineStage()
        if points == 1:  # live: the stage learning its first point
            traced.process(last, 0.0)
        else:  # restarted: the stage restoring the changelog
            for (partition, key), value in changelog.items():
                traced.restore(partition, key, None if value is None else orjson.loads(value))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return {
        "series": n_series,
        "points": points,
        "how": "live" if points == 1 else "restored",
        "bytes_per_series": held / n_series,
        "changelog_bytes_per_series": sum(len(v or b"") for v in changelog.values()) / n_series,
    }


def measure_stage(n_series: int, minutes: int) -> dict[str, Any]:
    batches = rollup_records(n_series, minutes)
    stage = BaselineStage()
    metrics = len(stage.config.metrics)
    points = n_series * minutes * metrics

    def run(encode: bool = False) -> float:
        stage = BaselineStage()
        start = time.perf_counter()
        for batch in batches:
            result = stage.process(batch, 0.0)
            if encode:  # its changelog values, as the runtime encodes them
                _encoded(result.state)
        return (time.perf_counter() - start) / points * 1e6

    return {
        "series": n_series,
        "minutes": minutes,
        "metrics": metrics,
        "us_per_point": best_of(3, run),
        "us_per_point_encoded": best_of(3, lambda: run(encode=True)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--series", type=int, default=200, help="series in the stage run")
    parser.add_argument("--minutes", type=int, default=1440, help="minutes in the stage run")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--memory", help="N:POINTS,...: the stage's state per series instead")
    args = parser.parse_args(argv)
    if args.memory:
        for item in args.memory.split(","):
            n, points = (int(v) for v in item.split(":"))
            got = measure_memory(n, points)
            print(
                f"{got['series']} series x {got['points']} points ({got['how']}): "
                f"{got['bytes_per_series'] / 1024:.2f} KB per series held, "
                f"changelog {got['changelog_bytes_per_series'] / 1024:.2f} KB per series",
                flush=True,
            )
        return 0

    kinds = [measure_kind(name, args.days) for name in KINDS]
    print(f"detector, 1-minute series over {args.days} days (budget: 16 KB, 50 us):")
    print(
        f"  {'series':16s} {'us/update':>10s} {'+to_state':>10s} {'+unpack/pack':>13s} "
        f"{'state max':>10s} {'final':>7s} {'packed':>7s} {'state/budget':>13s}  season"
    )
    for k in kinds:
        packing = k["us_per_update_and_packing"]
        print(
            f"  {k['kind']:16s} {k['us_per_update']:10.1f} {k['us_per_update_and_state']:10.1f} "
            f"{'-' if packing is None else f'{packing:.1f}':>13s} "
            f"{k['state_bytes_max']:10d} {k['state_bytes_final']:7d} "
            f"{k['packed_bytes_final'] or '-':>7} "
            f"{k['state_bytes_max'] / STATE_BUDGET:13.2f}  {k['season']}"
        )
    stage = measure_stage(args.series, args.minutes)
    ratio = stage["us_per_point"] / POINT_BUDGET_US
    print(
        f"live baseline stage, {stage['series']} series x {stage['metrics']} metrics x "
        f"{stage['minutes']} one-minute rollups: {stage['us_per_point']:.1f} us per point "
        f"({ratio:.2f} of the 50 us budget); {stage['us_per_point_encoded']:.1f} with its "
        "changelog values encoded"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"detector": kinds, "stage": stage}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
