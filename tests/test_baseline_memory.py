"""The baseline stage with its state held packed (issue 24) gives the signals of the stage
that held live objects, byte for byte; restores from both changelog forms continue the
same; and what a series holds stays within a few KB."""

from __future__ import annotations

import base64
import gc
import random
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from detection.detector import Detector, DetectorConfig
from detection.packed import DetectorCodec, pack
from stages.base import Emit, Record, StageResult
from stages.baseline import (
    RECENT_POINTS,
    BaselineConfig,
    BaselineStage,
    _rounded,
    add_to_minutes,
)
from stages.baseline_store import join_bundle, split_bundle
from tests.test_baseline_stage import rollup as stage_rollup

T0 = 1_795_305_600_000  # a Monday, 00:00 UTC (ms)
MIN = 60_000


class ObjectStage(BaselineStage):
    """The stage as it was before issue 24: a live `Detector` per key and metric written
    to the changelog as `d|<key>|<metric>` = to_state(), recent points as lists, a
    service's minute buckets as a dict. The reference the packed stage must match."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.objects: dict[int, dict[str, Detector]] = {}
        self.points: dict[int, dict[str, dict[str, list]]] = {}
        self.buckets: dict[int, dict[str, dict[int, list[int]]]] = {}

    def _learn(self, partition, key, observed, ts, labels, window, result) -> None:
        store = self.objects.setdefault(partition, {})
        for metric, value in observed:
            name = f"{key}|{metric}"
            detector = store.get(name)
            if detector is None:
                detector = store[name] = Detector(self.config.detector)
            update = detector.update(ts / 1000.0, value)
            result.state[(partition, f"d|{name}")] = detector.to_state()
            self._judge(partition, key, metric, value, update, ts, labels, window, result)

    def _remember_point(self, partition, series, window, metrics, result) -> None:
        names = self._point_metrics
        recent = self.points.setdefault(partition, {})
        kept = recent.get(series) or {"metrics": list(names), "points": []}
        oldest = window["start"] - RECENT_POINTS * (window["end"] - window["start"])
        points = [p for p in kept["points"][-(RECENT_POINTS - 1) :] if p[0] > oldest]
        points.append([window["start"], *(_rounded(metrics[m]) for m in names)])
        kept = recent[series] = {"metrics": kept["metrics"], "points": points}
        result.state[(partition, f"r|{series}")] = kept

    def _attach_points(self, partition, series, emits: list[Emit], early=None) -> None:
        kept = self.points.get(partition, {}).get(series)
        if kept is None:
            return
        for emit in emits:
            signal = emit.value
            metric = signal.get("metric")
            if signal.get("kind") not in ("threshold", "anomaly") or signal.get("key") != series:
                continue
            if metric not in kept["metrics"]:
                continue
            column = kept["metrics"].index(metric) + 1
            signal["points"] = [[p[0], p[column]] for p in kept["points"]]

    def _service_checks(self, partition, rollup, labels, window, result) -> None:
        buckets = self.buckets.setdefault(partition, {}).setdefault(rollup["service"], {})
        rows = add_to_minutes(buckets, rollup)
        result.state[(partition, f"m|{rollup['service']}")] = rows
        self._judge_service(partition, rollup, buckets, labels, window, result)


def rollup(series: str, minute: int, count: int, p50: float, p99: float, errors: int) -> dict:
    """test_baseline_stage's rollup of `series` at `minute` of this file's day."""
    return stage_rollup(series, T0 + minute * MIN, count, p50, p99, errors)


SERIES = [f"svc{s // 3}|{'*' if s % 3 == 0 else f'/e{s % 3}'}" for s in range(9)]


def minute_records(rng: random.Random, minute: int) -> list[Record]:
    """A minute of rollups of SERIES (slowdowns, error bursts and empty windows now and
    then) and, every few minutes, an issue update."""
    out = []
    for s, series in enumerate(SERIES):
        p50, p99 = rng.gauss(40.0, 2.0), rng.gauss(180.0, 10.0)
        errors = rng.randrange(0, 3)
        if (minute + 37 * s) % 170 < 8:
            p50, p99 = p50 * 5, 2_400.0  # a slowdown
        if (minute + 53 * s) % 230 < 6:
            errors = 300  # an error burst
        count = 0 if (minute + s) % 89 == 0 else int(rng.gauss(600, 25))
        value = rollup(series, minute, count, p50, p99, min(errors, count))
        out.append(Record("rollups", s % 2, minute * 20 + s, None, orjson.dumps(value)))
    if minute % 7 == 0:
        kind = "new" if minute == 0 else ("regressed" if minute % 91 == 0 else "count")
        issue = {
            "type": kind,
            "issue_id": f"fp{minute % 3}",
            "exception_type": "KeyError",
            "message_template": "<str>",
            "count": 1 + minute * (3 + minute % 5),
            "first_seen": T0,
            "last_seen": T0 + minute * MIN,
            "ts": T0 + minute * MIN,
            "severity": "high",
            "services": ["svc0"],
            "sample": {"service": "svc0"},
        }
        out.append(Record("issues", minute % 2, minute, None, orjson.dumps(issue)))
    return out


def signals_of(result: StageResult) -> bytes:
    return orjson.dumps([[e.topic, e.key, e.value] for e in result.emits])


def config() -> BaselineConfig:
    return BaselineConfig(resolve_after_s=180, idle_expiry_s=0)


def run(stages: list[BaselineStage], minutes: range, seed: int, changelogs: list[dict]) -> int:
    """Feed the same minutes to every stage; assert the same signals; return how many."""
    rng = random.Random(seed)
    fired = 0
    for minute in minutes:
        records = minute_records(rng, minute)
        results = [stage.process(records, 0.0) for stage in stages]
        first = signals_of(results[0])
        assert all(signals_of(r) == first for r in results[1:]), f"minute {minute}"
        fired += len(results[0].emits)
        for changelog, result in zip(changelogs, results, strict=True):
            changelog.update(result.state)
    return fired


def _same_detectors(packed: BaselineStage, reference: ObjectStage) -> None:
    """The same detectors, to the bit (their to_state as JSON, in one order)."""
    held = {f"{p}|{k}|{m}": d.to_state() for p, k, m, d in packed.detectors.items()}
    expected = {
        f"{p}|{name}": d.to_state()
        for p, names in reference.objects.items()
        for name, d in names.items()
    }
    assert orjson.dumps(held, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        expected, option=orjson.OPT_SORT_KEYS
    )


@pytest.mark.heavy
def test_the_packed_stage_signals_byte_identical_to_live_objects() -> None:
    packed, reference = BaselineStage(config()), ObjectStage(config())
    new_log: dict = {}
    old_log: dict = {}
    fired = run([reference, packed], range(0, 480), 1, [old_log, new_log])
    assert fired > 20  # anomalies, thresholds, SLA and burn rates fired and resolved
    _same_detectors(packed, reference)
    # The changelog's other records are the same; the recent points too, in their form.
    for key, value in old_log.items():
        if key[1].startswith("d|"):
            continue
        assert orjson.dumps(new_log[key]) == orjson.dumps(value), key
    assert not [k for k in new_log if k[1].startswith("d|")]


def _restored(changelog: dict, cfg: BaselineConfig) -> BaselineStage:
    stage = BaselineStage(cfg)
    for (partition, key), value in changelog.items():
        stage.restore(partition, key, orjson.loads(orjson.dumps(value)))
    return stage


@pytest.mark.heavy
def test_restores_from_the_old_and_the_new_changelog_continue_identically() -> None:
    cfg = config()
    packed, reference = BaselineStage(cfg), ObjectStage(cfg)
    old_log: dict = {}
    new_log: dict = {}
    run([reference, packed], range(0, 240), 2, [old_log, new_log])
    from_old, from_new = _restored(old_log, cfg), _restored(new_log, cfg)
    _same_detectors(from_old, reference)
    _same_detectors(from_new, reference)
    stages = [packed, reference, from_old, from_new]
    logs: list[dict] = [{}, {}, {}, {}]
    first = minute_records(random.Random(3), 240)
    results = [stage.process(first, 0.0) for stage in stages]
    assert all(signals_of(r) == signals_of(results[0]) for r in results[1:])
    for log, result in zip(logs, results, strict=True):
        log.update(result.state)
    # The first write of a key restored from the old form tombstones the key's old
    # records, before the new one.
    keys = list(results[2].state)
    for i, (partition, key) in enumerate(keys):
        if key.startswith("d|"):
            assert results[2].state[(partition, key)] is None
            assert keys.index((partition, "dp|" + key[2:].rpartition("|")[0])) > i
    legacy = {k for k in old_log if k[1].startswith("d|svc")}  # every series was written
    assert legacy and all(logs[2].get(k, "kept") is None for k in legacy)
    fired = run(stages, range(241, 480), 4, logs)
    assert fired > 10
    _same_detectors(from_old, reference)
    _same_detectors(from_new, reference)
    # A restart reads the old records, then their tombstones and the new ones: compacted
    # (latest value per key, where the key first was) or not.
    compacted = _restored({**old_log, **logs[2]}, cfg)
    assert compacted.detectors.bundles == from_old.detectors.bundles
    uncompacted = _restored(old_log, cfg)
    for (partition, key), value in logs[2].items():
        uncompacted.restore(partition, key, orjson.loads(orjson.dumps(value)))
    assert uncompacted.detectors.bundles == from_old.detectors.bundles


@pytest.mark.heavy
def test_100k_series_keep_their_own_detectors() -> None:
    # One metric, no rules, no seasonal profiles: what is tested is the store of 100k
    # keys (each its own, packed and repacked), in a few seconds; the packing itself is
    # tested with everything on above and in tests/test_detector_pack.py.
    detector = DetectorConfig(seasonality=())
    cfg = BaselineConfig(metrics=("p99_ms",), idle_expiry_s=0, detector=detector)
    stage = BaselineStage(cfg, rules=())
    reference: dict[str, Detector] = {}
    n = 100_000
    rng = random.Random(5)
    for minute in range(2):  # every series, then every fourth again
        records = []
        for s in range(0, n, 1 if minute == 0 else 4):
            p99 = 100.0 + (s % 1_000) + rng.random()
            value = rollup(f"s{s}|/x", minute, 10, 10.0, p99, 0)
            records.append(Record("rollups", s % 4, minute * n + s, None, orjson.dumps(value)))
            det = reference.get(f"s{s}|/x")
            if det is None:
                det = reference[f"s{s}|/x"] = Detector(cfg.detector)
            det.update(value["end"] / 1000.0, p99)
        assert stage.process(records, 0.0).emits == []
    codec = DetectorCodec(cfg.detector)
    held = {
        key: split_bundle(bundle)["p99_ms"]
        for keys in stage.detectors.bundles.values()
        for key, bundle in keys.items()
    }
    assert len(held) == n
    assert all(held[key] == codec.pack(det) for key, det in reference.items())


def _changelog_of(det: Detector, series: str, minute: int) -> dict[str, Any]:
    """A series' changelog records as the stage writes them, with `det`'s state for each of
    its four metrics and a full chart."""
    bundle = join_bundle({metric: pack(det) for metric in BaselineConfig().metrics})
    names = BaselineStage()._point_metrics
    rows = [[T0 + (minute - i) * MIN, *(_rounded(40.0 + i) for _ in names)] for i in range(45)]
    return {
        f"dp|{series}": base64.b64encode(bundle).decode(),
        f"r|{series}": {"metrics": list(names), "points": rows[::-1]},
        f"w|{series}": T0 + minute * MIN,
    }


def _traced(make: Callable[[], BaselineStage]) -> tuple[BaselineStage, int]:
    """The stage `make` builds, and the bytes it holds once built (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        stage = make()
        gc.collect()
        return stage, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _held_per_series(records: dict[str, Any], copies: int) -> float:
    """Bytes a stage holds per series after restoring `records` (one series') as `copies`
    series (tracemalloc)."""
    encoded = {key: orjson.dumps(value) for key, value in records.items()}

    def restored() -> BaselineStage:
        stage = BaselineStage()
        for i in range(copies):
            for key, value in encoded.items():
                stage.restore(0, key.replace("svc|", f"svc{i}|"), orjson.loads(value))
        return stage

    stage, held = _traced(restored)
    assert stage.state_size() == copies
    return held / copies


@pytest.mark.heavy
def test_what_a_series_holds_stays_a_few_kb() -> None:
    n = 5_000
    records = [
        Record("rollups", 0, s, None, orjson.dumps(rollup(f"svc{s}|/api", 0, 600, 40.0, 180.0, 1)))
        for s in range(n)
    ]

    def processed() -> BaselineStage:
        stage = BaselineStage()
        stage.process(records, 0.0)
        return stage

    young = _traced(processed)[1] / n
    assert young < 3_000  # measured 2.2 KB (before issue 24: 43 KB)
    # A detector after 300 points, and after over a week (both seasonal profiles filled),
    # as every metric of 1,000 series, restored.
    rng = random.Random(6)
    det = Detector()
    sizes = {}
    for minute in range(10_200):
        t = T0 / 1000.0 + 60.0 * minute
        det.update(t, 100.0 + 20.0 * ((t // 3_600) % 24 < 8) + rng.gauss(0.0, 3.0))
        if minute + 1 in (300, 10_200):
            records = _changelog_of(det, "svc|/api", minute)
            sizes[minute + 1] = _held_per_series(records, 1_000)
    assert all(season.filled == season.nb for season in det._seasons)
    assert sizes[300] < 9_000  # measured 7.3 KB
    assert sizes[10_200] < 21_000  # measured 18.6 KB: four detectors of 4 KB, the chart 2 KB


def test_a_service_s_six_hours_of_minute_buckets_hold_a_few_kb() -> None:
    rows = [[T0 + i * MIN, 600 + i, i % 3] for i in range(360)]  # 6 h: what burn rates read
    encoded = orjson.dumps(rows)
    n = 1_000

    def restored() -> BaselineStage:
        stage = BaselineStage()
        for i in range(n):
            stage.restore(0, f"m|svc{i}", orjson.loads(encoded))
        return stage

    stage, held_bytes = _traced(restored)
    held = held_bytes / n
    assert held < 9_000  # measured 8.0 KB (as a dict of lists: 67 KB)
    assert orjson.loads(stage.minutes[0]["svc7"]) == rows
