"""Memory and record() speed of SparseHistogram compared with a dense hdrh HdrHistogram.

Simulates N active series. Each has one open 10-second latency window, with an event count
drawn from a skewed distribution (fixed seed):

* 90% of windows hold 1-20 events,
* 9% hold 21-200,
* 1% are hot series with 200-5000 events (Pareto tail).

Each series has its own typical latency (log-normal, median ~3 ms) with a log-normal
spread. Memory is the tracemalloc difference before/after building all windows. Speeds are
best-of-3 wall-clock times with tracemalloc off.

    python -m tests.bench.bench_histogram_memory [--series 10000,100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from hdrh.histogram import HdrHistogram

from histograms.hdr import SparseHistogram, layout

SEED = 20_260_522
LOWEST, HIGHEST, DIGITS = 1, 3_600_000_000, 2


def window_size(rng: random.Random) -> int:
    """Events in one window: mostly 1-20, some 21-200, a few hot series up to 5000."""
    u = rng.random()
    if u < 0.90:
        return min(20, 1 + int(rng.expovariate(1 / 4)))
    if u < 0.99:
        return rng.randint(21, 200)
    return min(5000, int(200 * rng.paretovariate(1.0)))


def series_values(rng: random.Random, n: int) -> list[int]:
    """`n` latencies (us) for one series: a per-series median times a log-normal spread."""
    median = rng.lognormvariate(8.0, 1.0)  # e^8 us ~ 3 ms, varies across series
    lognorm = rng.lognormvariate
    return [int(median * lognorm(0.0, 0.6)) for _ in range(n)]


def measure_windows(n_series: int) -> dict[str, Any]:
    """Build one window per series under tracemalloc; return memory statistics."""
    rng = random.Random(SEED + n_series)
    lay = layout(LOWEST, HIGHEST, DIGITS)
    hists: list[SparseHistogram | None] = [None] * n_series  # allocated before the baseline
    sizes: list[int] = [0] * n_series
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n_series):
        n = window_size(rng)
        sizes[i] = n
        hist = SparseHistogram(lay)
        record = hist.record
        for value in series_values(rng, n):
            record(value)
        hists[i] = hist
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    built = [h for h in hists if h is not None]
    total_bytes = after - before
    events = sum(sizes)
    return {
        "series": n_series,
        "events": events,
        "events_per_window_mean": events / n_series,
        "windows_le_20_events_pct": 100.0 * sum(1 for s in sizes if s <= 20) / n_series,
        "events_max": max(sizes),
        "dense_windows": sum(1 for h in built if h.is_dense()),
        "buckets_per_window_mean": sum(len(h.items()) for h in built) / n_series,
        "tracemalloc_bytes": total_bytes,
        "bytes_per_window": total_bytes / n_series,
        "nbytes_per_window": sum(h.nbytes() for h in built) / n_series,
    }


def dense_hdr_bytes() -> dict[str, int]:
    """tracemalloc size of one dense HdrHistogram (and a densified SparseHistogram)."""
    values = [1200, 1350, 980, 45_000, 2_100]

    def make_hdr() -> HdrHistogram:
        hh = HdrHistogram(LOWEST, HIGHEST, DIGITS)
        for value in values:
            hh.record_value(value)
        return hh

    def make_dense() -> SparseHistogram:
        hist = SparseHistogram(layout(LOWEST, HIGHEST, DIGITS))
        hist.densify()
        hist.record_many(values)
        return hist

    sizes = {}
    for key, make in (
        ("hdrhistogram_bytes", make_hdr),
        ("sparse_histogram_dense_bytes", make_dense),
    ):
        make()  # warm-up: first-call caches are not part of an instance
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = make()
        sizes[key] = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        del kept
    return sizes


def best_ns_per_value(run: Callable[[], int], repeats: int = 3) -> float:
    """Best-of-`repeats` ns per value; `run` returns how many values it recorded."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        n = run()
        best = min(best, (time.perf_counter_ns() - start) / n)
    return best


def measure_speed() -> dict[str, float]:
    """record()/record_many() ns per value in sparse and dense states, vs HdrHistogram."""
    rng = random.Random(SEED)
    lay = layout(LOWEST, HIGHEST, DIGITS)
    windows = [series_values(rng, 10) for _ in range(20_000)]  # typical sparse windows
    hot = series_values(rng, 200_000)  # one hot series

    n_window_values = sum(len(w) for w in windows)

    def sparse_windows() -> float:
        hists = [SparseHistogram(lay) for _ in windows]  # construction is not timed
        start = time.perf_counter_ns()
        for hist, values in zip(hists, windows, strict=True):
            record = hist.record
            for value in values:
                record(value)
        return (time.perf_counter_ns() - start) / n_window_values

    results = {"record_sparse_windows_of_10_ns": min(sparse_windows() for _ in range(3))}

    def record_all(make: Callable[[], Any], method: str) -> Callable[[], int]:
        def run() -> int:
            target = make()
            record = getattr(target, method)
            for value in hot:
                record(value)
            return len(hot)

        return run

    def sparse_hist() -> SparseHistogram:
        return SparseHistogram(lay)

    def dense_hist() -> SparseHistogram:
        hist = SparseHistogram(lay)
        hist.densify()
        return hist

    def hdr_hist() -> HdrHistogram:
        return HdrHistogram(LOWEST, HIGHEST, DIGITS)

    def bulk(make: Callable[[], SparseHistogram]) -> Callable[[], int]:
        def run() -> int:
            make().record_many(hot)
            return len(hot)

        return run

    probe = sparse_hist()
    probe.record_many(hot)
    results["hot_series_buckets"] = len(probe.items())
    results["record_sparse_hot_series_ns"] = best_ns_per_value(record_all(sparse_hist, "record"))
    results["record_dense_ns"] = best_ns_per_value(record_all(dense_hist, "record"))
    results["hdrhistogram_record_value_ns"] = best_ns_per_value(
        record_all(hdr_hist, "record_value")
    )
    results["record_many_sparse_ns"] = best_ns_per_value(bulk(sparse_hist))
    results["record_many_dense_ns"] = best_ns_per_value(bulk(dense_hist))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", default="10000,100000", help="comma-separated series counts")
    parser.add_argument("--json", help="also write the results as JSON to this path")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    lay = layout(LOWEST, HIGHEST, DIGITS)
    dense = dense_hdr_bytes()
    hdr_bytes = dense["hdrhistogram_bytes"]
    runs = [measure_windows(int(n)) for n in args.series.split(",")]
    for run in runs:
        run["dense_hdr_total_bytes"] = hdr_bytes * run["series"]
        run["ratio_dense_over_sparse"] = hdr_bytes / run["bytes_per_window"]
    speed = measure_speed()

    print(
        f"Layout: lowest={lay.lowest} highest={lay.highest} digits={lay.digits} "
        f"counts_len={lay.counts_len} promote_at={lay.promote_at} buckets"
    )
    print(
        f"One dense HdrHistogram (tracemalloc): {hdr_bytes:,} B; "
        f"densified SparseHistogram: {dense['sparse_histogram_dense_bytes']:,} B"
    )
    print()
    header = (
        f"{'series':>8} {'events':>10} {'ev/win':>7} {'<=20ev':>7} {'max ev':>7} "
        f"{'bkt/win':>8} {'dense':>6} {'sparse total':>14} {'B/window':>9} "
        f"{'nbytes/win':>10} {'dense total':>15} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in runs:
        print(
            f"{r['series']:>8,} {r['events']:>10,} {r['events_per_window_mean']:>7.1f} "
            f"{r['windows_le_20_events_pct']:>6.1f}% {r['events_max']:>7,} "
            f"{r['buckets_per_window_mean']:>8.1f} {r['dense_windows']:>6} "
            f"{r['tracemalloc_bytes']:>14,} {r['bytes_per_window']:>9.1f} "
            f"{r['nbytes_per_window']:>10.1f} {r['dense_hdr_total_bytes']:>15,} "
            f"{r['ratio_dense_over_sparse']:>6.0f}x"
        )
    print()
    print("record speed (ns/value, best of 3, tracemalloc off)")
    rows = [
        ("SparseHistogram.record, sparse, windows of 10", "record_sparse_windows_of_10_ns"),
        (
            f"SparseHistogram.record, sparse, hot series ({speed['hot_series_buckets']:.0f} bkts)",
            "record_sparse_hot_series_ns",
        ),
        ("SparseHistogram.record, dense", "record_dense_ns"),
        ("SparseHistogram.record_many, sparse", "record_many_sparse_ns"),
        ("SparseHistogram.record_many, dense", "record_many_dense_ns"),
        ("HdrHistogram.record_value", "hdrhistogram_record_value_ns"),
    ]
    for label, key in rows:
        print(f"  {label:<55} {speed[key]:>8.0f}")
    elapsed = time.perf_counter() - started
    print(f"\n(elapsed {elapsed:.1f} s, python {sys.version.split()[0]})")

    if args.json:
        payload = {
            "seed": SEED,
            "layout": {
                "lowest": lay.lowest,
                "highest": lay.highest,
                "digits": lay.digits,
                "counts_len": lay.counts_len,
                "promote_at": lay.promote_at,
            },
            **dense,
            "windows": runs,
            "speed_ns_per_value": speed,
            "elapsed_s": elapsed,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
