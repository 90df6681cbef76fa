"""A detector packed and unpacked at every step continues bit for bit as the live one
(detection/packed.py, issue 24): the baseline stage holds its detectors only packed, so
any difference here would change the signals people get."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable

import orjson
import pytest

from detection.detector import Detector, DetectorConfig, Update
from detection.packed import DetectorCodec, pack, unpack

T0 = 1_795_305_600.0  # a Monday, 00:00 UTC
STEP = 300.0  # 5 minutes: 4,500 points span 15.6 days, so both seasons fill and can be used
POINTS = 4_500


def _bits(update: Update) -> tuple:
    """An Update with its floats as their exact bits (-0.0 and NaN included)."""
    floats = struct.pack("<4d", update.score, update.z, update.centre, update.spread)
    return floats, update.anomalous, update.finding, update.kind


def weekly(rng: random.Random, i: int) -> float:
    t = T0 + STEP * i
    day = math.sin(2 * math.pi * (t % 86_400) / 86_400)
    weekend = 0.5 if (t // 86_400) % 7 >= 5 else 1.0
    return 100.0 * weekend * (1.0 + 0.3 * day) + rng.gauss(0.0, 2.0)


def daily_with_incidents(rng: random.Random, i: int) -> float:
    t = T0 + STEP * i
    v = 50.0 + 20.0 * math.sin(2 * math.pi * (t % 86_400) / 86_400) + rng.gauss(0.0, 1.5)
    if i % 997 < 6:
        v *= 3.0  # an incident
    return v


def shifts_and_junk(rng: random.Random, i: int) -> float:
    """NAB-like: level shifts, flat runs (stuck metric), zeros of both signs, gaps of NaN
    and inf, rare huge values."""
    if i % 211 == 0:
        return math.nan
    if i % 307 == 0:
        return math.inf
    if 1_000 <= i % 1_500 < 1_040:
        return 7.0  # a flat run
    if i % 53 == 0:
        return -0.0 if i % 2 else 0.0
    level = 10.0 if (i // 700) % 2 else 25.0
    if i % 401 == 0:
        return 1e160
    return level + rng.expovariate(1.0)


def sparse_counts(rng: random.Random, i: int) -> float:
    """Mostly zero, sometimes a burst: an error rate."""
    return 0.0 if rng.random() < 0.8 else rng.expovariate(2.0) + (30.0 if i % 900 < 3 else 0.0)


SERIES: dict[str, Callable[[random.Random, int], float]] = {
    "weekly": weekly,
    "daily_with_incidents": daily_with_incidents,
    "shifts_and_junk": shifts_and_junk,
    "sparse_counts": sparse_counts,
}


def side_by_side(
    values: list[float], timestamps: list[float], config: DetectorConfig | None = None
) -> tuple[Detector, bytes, set[float | None]]:
    """Run a live detector and one packed and unpacked around every point; assert the same
    verdict at every step. Returns the live one, the packed copy and the seasons used."""
    codec = DetectorCodec(config)
    live = Detector(config)
    packed = codec.pack(Detector(config))
    used: set[float | None] = set()
    for i, (t, v) in enumerate(zip(timestamps, values, strict=True)):
        copy = codec.unpack(packed)
        expected, got = live.update(t, v), copy.update(t, v)
        assert _bits(got) == _bits(expected), f"point {i}"
        packed = codec.pack(copy)
        used.add(live.season)
    return live, packed, used


@pytest.mark.parametrize("kind", sorted(SERIES))
def test_a_detector_packed_at_every_step_continues_bit_for_bit(kind: str) -> None:
    rng = random.Random(kind)
    timestamps = [T0 + STEP * i for i in range(POINTS)]
    values = [SERIES[kind](rng, i) for i in range(POINTS)]
    live, packed, used = side_by_side(values, timestamps)
    copy = unpack(packed)
    assert orjson.dumps(copy.to_state()) == orjson.dumps(live.to_state())
    assert pack(live) == packed
    assert all(season.filled == season.nb for season in live._seasons)  # both learned
    if kind == "weekly":
        assert 604_800.0 in used  # the weekly profile was in use
    if kind == "daily_with_incidents":
        assert 86_400.0 in used
    assert len(packed) <= 4_600  # both profiles filled: about 4 KB


def test_irregular_late_and_unusable_points_pack_exactly() -> None:
    rng = random.Random(7)
    timestamps, values = [], []
    t = T0
    for i in range(3_000):
        t += rng.choice((1.0, 30.0, 60.0, 600.0, 7_200.0))
        late = i % 97 == 0
        timestamps.append(t - 5_000.0 if late else t)  # a late point counts as "now"
        values.append(rng.gauss(100.0, 5.0) if i % 89 else math.nan)
    live, packed, _ = side_by_side(values, timestamps)
    assert orjson.dumps(unpack(packed).to_state()) == orjson.dumps(live.to_state())


def test_counts_outgrowing_a_byte_are_widened_never_cut() -> None:
    # Two buckets of half an hour, one point a minute: each bucket counts 30 an hour, so
    # past 256 its counts need two bytes, and the learning rate depends on them.
    config = DetectorConfig(seasonality=(3_600.0,), season_buckets=2)
    rng = random.Random(3)
    n = 1_500
    timestamps = [T0 + 60.0 * i for i in range(n)]
    values = [10.0 * (i % 60 < 30) + rng.gauss(0.0, 1.0) for i in range(n)]
    live, packed, _ = side_by_side(values, timestamps, config)
    season = live._seasons[0]
    assert season.counts.typecode == "H" and max(season.counts) == n // 2
    copy = DetectorCodec(config).unpack(packed)
    assert list(copy._seasons[0].counts) == list(season.counts)
    assert orjson.dumps(copy.to_state()) == orjson.dumps(live.to_state())


def test_a_state_restored_from_to_state_packs_to_the_same_detector() -> None:
    rng = random.Random(11)
    live = Detector()
    for i in range(2_000):
        live.update(T0 + 60.0 * i, weekly(rng, i))
    restored = Detector.from_state(orjson.loads(orjson.dumps(live.to_state())))
    assert pack(restored) == pack(live)


def test_sizes_young_and_seasonal() -> None:
    fresh = Detector()
    assert len(pack(fresh)) < 300  # a fresh profile is its period, bucket count and a flag
    young = Detector()
    young.update(T0, 12.5)
    assert len(pack(young)) < 520
    for i in range(1, 30):
        young.update(T0 + 60.0 * i, 12.5 + i % 3)
    assert len(pack(young)) < 1_100  # what the profiles learned, not 2 x 144 buckets


def test_other_versions_and_truncated_bytes_are_refused() -> None:
    det = Detector()
    det.update(T0, 1.0)
    data = pack(det)
    with pytest.raises(ValueError):
        unpack(bytes([2]) + data[1:])
    with pytest.raises((ValueError, struct.error)):
        unpack(data[:-3])
