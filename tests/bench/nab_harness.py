"""In-process NAB figure for the detector (development aid for issue 17; the official figure
is ../shared/eval/nab_score.py, which runs NAB's own scorer on `prodmon anomaly score`).

Runs `detection.detector.Detector` over every series of a NAB kit (default
../shared/eval/nab-dev) and scores it with NAB's arithmetic: the probation period (15 %,
at most 750 points), the scaled sigmoid of each detection's position in or after a
labelled window, only the earliest detection per window, false positives weighted by the
profile, and for each profile the best threshold over all series (0 = a detector that
never fires, 100 = perfect). On this kit it reproduces the scorer's totals to 0.1.

One figure moves by several points when the series merely start a little later (every
cooldown shifts), so judge a change on the mean over a few start offsets:

    python -m tests.bench.nab_harness --skip 0 60 120 180
    python -m tests.bench.nab_harness --set _SEASON_RATE=0.003 --set cooldown=120

`--set NAME=VALUE` overrides a module constant (a name starting with "_") or a
`DetectorConfig` field, in every worker. `--files` lists each series' windows found and
false positives at the standard profile's threshold.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import math
import os
from datetime import UTC, datetime
from multiprocessing import Pool
from typing import Any

from detection import detector as det_module

HERE = os.path.dirname(os.path.abspath(__file__))
KIT = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "eval", "nab-dev"))
# (false-positive weight, false-negative weight); a true positive weighs 1 in all three
PROFILES = {"standard": (0.11, 1.0), "low_FP": (0.22, 1.0), "low_FN": (0.11, 2.0)}

Result = tuple[str, list[float], list[tuple[int, int]], int]


def _sigmoid(x: float) -> float:
    return -1.0 if x > 3.0 else 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def _apply(overrides: dict[str, Any]) -> dict[str, Any]:
    """Set module constants; return the DetectorConfig fields."""
    fields = {}
    for name, value in overrides.items():
        if name.startswith("_"):
            setattr(det_module, name, value)
        else:
            fields[name] = value
    return fields


def _run(args: tuple[str, str, list[list[str]], int, dict[str, Any]]) -> Result:
    kit, rel, windows, skip, overrides = args
    fields = _apply(overrides)
    with open(os.path.join(kit, "data", rel), newline="") as f:
        rows = list(csv.DictReader(f))[skip:]
    stamps = [r["timestamp"] for r in rows]
    index = {s: i for i, s in enumerate(stamps)}
    wins = [(index[a.split(".")[0]], index[b.split(".")[0]]) for a, b in windows]
    det = det_module.Detector(det_module.DetectorConfig(**fields))
    scores = []
    for r in rows:
        t = datetime.strptime(r["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        scores.append(det.update(t.timestamp(), float(r["value"])).score)
    return rel, scores, wins, len(windows)


def _points(scores: list[float], wins: list[tuple[int, int]]) -> list[tuple[float, float, int]]:
    """(score, scaled sigmoid weight, window index or -1) for every point after probation."""
    n = len(scores)
    probation = min(math.floor(0.15 * n), 750)
    top = _sigmoid(-1.0)
    out = []
    for i in range(probation, n):
        w = next((k for k, (a, b) in enumerate(wins) if a <= i <= b), -1)
        if w >= 0:
            a, b = wins[w]
            weight = _sigmoid(-(b - i + 1) / (b - a + 1)) / top
        else:
            before = [(a, b) for a, b in wins if b < i]
            if before:
                a, b = before[-1]
                weight = _sigmoid(abs(b - i) / (b - a))
            else:
                weight = -1.0
        out.append((scores[i], weight, w))
    return out


def score(results: list[Result], profile: str) -> tuple[float, float]:
    """(normalised score, best threshold) for one profile over all series."""
    fpw, fnw = PROFILES[profile]
    pts: list[tuple[float, float, tuple[str, int] | None]] = []
    nwin = 0
    for rel, scores, wins, count in results:
        for s, weight, w in _points(scores, wins):
            pts.append((s, weight * fpw, None) if w < 0 else (s, weight, (rel, w)))
        nwin += count
    pts.sort(key=lambda p: -p[0])
    base = -fnw * nwin
    total = best_total = base
    best_thr, current = 1.1, math.nan
    found: dict[tuple[str, int], float] = {}
    for s, weight, key in pts:
        if s != current:
            if total > best_total:
                best_total, best_thr = total, current
            current = s
        if key is None:
            total += weight
        elif weight > found.get(key, -fnw):
            total += weight - found.get(key, -fnw)
            found[key] = weight
    if total > best_total:
        best_total, best_thr = total, current
    return 100.0 * (best_total - base) / (nwin - base), best_thr


def per_file(results: list[Result], threshold: float) -> list[tuple[str, int, int, int]]:
    """(series, windows found, windows, false positives) at a threshold."""
    out = []
    for rel, scores, wins, count in results:
        pts = _points(scores, wins)
        hits = {w for s, _, w in pts if w >= 0 and s >= threshold}
        fps = sum(1 for s, _, w in pts if w < 0 and s >= threshold)
        out.append((rel, len(hits), count, fps))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kit", default=KIT)
    parser.add_argument("--skip", type=int, nargs="+", default=[0])
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--files", action="store_true")
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        name, value = item.split("=", 1)
        overrides[name] = ast.literal_eval(value)
    with open(os.path.join(args.kit, "labels", "combined_windows.json")) as f:
        labels = sorted(json.load(f).items())
    means = dict.fromkeys(PROFILES, 0.0)
    with Pool(2) as pool:
        for skip in args.skip:
            jobs = [(args.kit, rel, wins, skip, overrides) for rel, wins in labels]
            results = pool.map(_run, jobs)
            figures = {p: score(results, p) for p in PROFILES}
            line = " ".join(f"{p} {s:.1f}" for p, (s, _) in figures.items())
            print(f"skip {skip:4d}: {line} (threshold {figures['standard'][1]:.3f})")
            for p in PROFILES:
                means[p] += figures[p][0] / len(args.skip)
            if args.files:
                for rel, hit, count, fps in per_file(results, figures["standard"][1]):
                    print(f"    {rel:65s} windows {hit}/{count} false positives {fps}")
    if len(args.skip) > 1:
        print("mean:", " ".join(f"{p} {s:.1f}" for p, s in means.items()))


if __name__ == "__main__":
    main()
