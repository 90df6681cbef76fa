"""Streaming anomaly detector: a labelled synthetic suite, NAB-like scoring, state, quirks.

Run with ``-s`` to see the per-series detection / false-positive table and the
per-update cost.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest

from detection.detector import Detector, DetectorConfig, Update, run_detector

STEP = 300.0  # 5-minute sampling
T0 = 1_700_006_400.0  # midnight UTC
DAY = 288  # points per day at 5-minute sampling
GRACE = 60  # points after a labelled window where findings are neither hits nor false alarms


# -- the labelled suite -------------------------------------------------------------------


@dataclass
class Case:
    """One labelled series: incident windows are [start, end] in point indices."""

    name: str
    incident: str | None  # incident type, None for a clean series
    ts: list[float]
    values: list[float]
    windows: list[tuple[int, int]] = field(default_factory=list)
    max_delay: int = 0  # points from a window's start to its first finding


def _poisson(rng: random.Random, lam: float) -> float:
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p < limit:
            return float(k)
        k += 1


def _clock(n: int) -> list[float]:
    return [T0 + STEP * i for i in range(n)]


def _gauss_case(
    name: str,
    incident: str,
    seed: int,
    effect: Callable[[int], tuple[float, float]],
    window: tuple[int, int],
    max_delay: int,
    n: int = 2000,
) -> Case:
    """Gaussian noise around 50; effect(i) -> (added offset, noise multiplier)."""
    rng = random.Random(seed)
    values = []
    for i in range(n):
        offset, scale = effect(i)
        values.append(50.0 + offset + scale * rng.gauss(0.0, 1.0))
    return Case(f"{name}/{seed}", incident, _clock(n), values, [window], max_delay)


def _seasonal(seed: int, days: int, dip: tuple[int, int] | None) -> Case:
    rng = random.Random(seed)
    values = []
    for i in range(days * DAY):
        v = 100.0 + 10.0 * math.sin(2 * math.pi * (i % DAY) / DAY) + rng.gauss(0.0, 1.0)
        if dip and dip[0] <= i <= dip[1]:
            v -= 6.0
        values.append(v)
    name = "seasonal_incident" if dip else "seasonal_clean"
    return Case(f"{name}/{seed}", "dip" if dip else None, _clock(len(values)), values,
                [dip] if dip else [], 12)  # fmt: skip


def _counts(seed: int, incident: bool, n: int = 2000) -> Case:
    rng = random.Random(seed)
    values = [_poisson(rng, 15.0 if incident and 1000 <= i < 1030 else 4.0) for i in range(n)]
    name = "poisson_incident" if incident else "poisson_clean"
    windows = [(1000, 1029)] if incident else []
    return Case(f"{name}/{seed}", "level_shift" if incident else None, _clock(n), values,
                windows, 10)  # fmt: skip


def _seasonal_counts(seed: int, days: int = 7) -> Case:
    rng = random.Random(seed)
    values = [
        _poisson(rng, 40.0 + 25.0 * math.sin(2 * math.pi * (i % DAY) / DAY))
        for i in range(days * DAY)
    ]
    return Case(f"seasonal_counts_clean/{seed}", None, _clock(len(values)), values)


def _clean(name: str, seed: int, n: int = 3000) -> Case:
    rng = random.Random(seed)
    if name == "noise_gauss":
        values = [50.0 + rng.gauss(0.0, 1.0) for _ in range(n)]
    elif name == "noise_heavy":  # Student t, 3 degrees of freedom
        values = [
            50.0
            + rng.gauss(0.0, 1.0) / math.sqrt(sum(rng.gauss(0.0, 1.0) ** 2 for _ in range(3)) / 3)
            for _ in range(n)
        ]
    elif name == "ar1":
        v, values = 0.0, []
        for _ in range(n):
            v = 0.9 * v + rng.gauss(0.0, 1.0)
            values.append(50.0 + v)
    else:  # stray: a single far point, which must not make a finding with min_occurrences 2
        values = [50.0 + rng.gauss(0.0, 1.0) + (15.0 if i == n // 2 else 0.0) for i in range(n)]
    return Case(f"{name}/{seed}", None, _clock(n), values)


def _step(size: float, at: int = 1000) -> Callable[[int], tuple[float, float]]:
    return lambda i: (size if i >= at else 0.0, 1.0)


def _burst(size: float, start: int = 1000, length: int = 3) -> Callable[[int], tuple[float, float]]:
    return lambda i: (size if start <= i < start + length else 0.0, 1.0)


def _noise(scale: float, start: int, end: int) -> Callable[[int], tuple[float, float]]:
    return lambda i: (0.0, scale if start <= i < end else 1.0)


def _ramp(slope: float, start: int, end: int) -> Callable[[int], tuple[float, float]]:
    return lambda i: (slope * (min(i, end) - start) if i > start else 0.0, 1.0)


# name, incident type, labelled window, max delay, effect
GAUSS_SPECS = [
    ("level_up", "level_shift", (1000, 1000), 5, _step(6.0)),
    ("level_down", "level_shift", (1000, 1000), 5, _step(-6.0)),
    ("shift_4sigma", "level_shift", (1000, 1000), 12, _step(4.0)),
    ("spike", "spike", (1000, 1002), 3, _burst(10.0)),
    ("dip", "dip", (1000, 1002), 3, _burst(-10.0)),
    ("variance_x4", "variance_change", (1000, 1199), 30, _noise(4.0, 1000, 1200)),
    ("slow_drift", "drift", (1000, 1200), 250, _ramp(0.05, 1000, 1200)),  # +10 sigma
    ("stuck", "variance_change", (1000, 1099), 12, _noise(0.0, 1000, 1100)),
]


def build_suite(seeds: Iterable[int] = (1, 2)) -> list[Case]:
    cases: list[Case] = []
    for s in seeds:
        cases += [
            _gauss_case(name, incident, s, effect, window, delay)
            for name, incident, window, delay, effect in GAUSS_SPECS
        ]
        jump = [100.0 if i < 1000 else 110.0 for i in range(1500)]
        cases += [
            _seasonal(s, 7, (5 * DAY + 100, 5 * DAY + 135)),
            _counts(s, incident=True),
            Case(f"constant_jump/{s}", "level_shift", _clock(1500), jump, [(1000, 1000)], 3),
            _seasonal(s, 7, None),
            _seasonal_counts(s),
            _counts(s, incident=False),
            _clean("noise_gauss", s),
            _clean("noise_heavy", s),
            _clean("ar1", s),
            _clean("stray", s),
        ]
    return cases


# -- evaluation ---------------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    findings: list[int]
    kinds: list[str | None]
    delays: list[int | None]  # per window
    false: list[int]  # findings outside windows (+ grace)


def _window_end(start: int, end: int) -> int:
    """Where a detection still counts: the labelled end, at least 60 points after start."""
    return max(end, start + 60)


def evaluate(case: Case, make: Callable[[], object]) -> Outcome:
    det = make()
    findings, kinds = [], []
    for i, (t, v) in enumerate(zip(case.ts, case.values, strict=True)):
        u = det.update(t, v)
        if u.finding:
            findings.append(i)
            kinds.append(u.kind)
    delays: list[int | None] = []
    for start, end in case.windows:
        hits = [i for i in findings if start <= i <= _window_end(start, end)]
        delays.append(hits[0] - start if hits else None)
    false = [
        i for i in findings if not any(s <= i <= _window_end(s, e) + GRACE for s, e in case.windows)
    ]
    return Outcome(case, findings, kinds, delays, false)


def bound_violations(outcomes: list[Outcome]) -> list[str]:
    """Everything wrong with a detector's results on the suite (empty: all bounds hold)."""
    problems = []
    for o in outcomes:
        for delay in o.delays:
            if delay is None:
                problems.append(f"{o.case.name}: incident missed")
            elif delay > o.case.max_delay:
                problems.append(f"{o.case.name}: detected {delay} points late")
        if o.case.windows and len(o.false) > 1:
            problems.append(f"{o.case.name}: {len(o.false)} false findings around an incident")
    clean = [o for o in outcomes if not o.case.windows]
    points = sum(len(o.case.values) for o in clean)
    false = sum(len(o.false) for o in clean)
    if points and 1000.0 * false / points > 0.5:
        problems.append(f"clean series: {1000.0 * false / points:.2f} false findings / 1000 points")
    for o in clean:
        if 1000.0 * len(o.false) / len(o.case.values) > 1.5:
            problems.append(f"{o.case.name}: {len(o.false)} false findings")
    types = {o.case.incident for o in outcomes if o.case.windows}
    caught = {o.case.incident for o in outcomes if o.case.windows and None not in o.delays}
    problems += [f"incident type {t} never detected" for t in sorted(types - caught, key=str)]
    return problems


def print_table(outcomes: list[Outcome]) -> None:
    print()
    print(f"{'series':28s} {'incident':16s} {'delay':>8s} {'false':>6s} {'points':>7s}  kinds")
    for o in outcomes:
        delay = ",".join("miss" if d is None else str(d) for d in o.delays) or "-"
        kinds = ",".join(str(k) for k in o.kinds[:3])
        print(
            f"{o.case.name:28s} {o.case.incident or 'clean':16s} {delay:>8s} "
            f"{len(o.false):>6d} {len(o.case.values):>7d}  {kinds}"
        )


class _Stub:
    """A fake detector for checking that the bounds really bite."""

    def __init__(self, fire: Callable[[int], bool]) -> None:
        self.fire, self.i = fire, -1

    def update(self, ts: float, value: float) -> Update:
        self.i += 1
        hit = self.fire(self.i)
        return Update(1.0 if hit else 0.0, 0.0, hit, hit, "spike" if hit else None, 0.0, 1.0)


@pytest.fixture(scope="module")
def suite() -> list[Case]:
    return build_suite()


@pytest.fixture(scope="module")
def outcomes(suite: list[Case]) -> list[Outcome]:
    results = [evaluate(case, Detector) for case in suite]
    print_table(results)
    return results


def test_suite_bounds_hold(outcomes: list[Outcome]) -> None:
    assert bound_violations(outcomes) == []


def test_every_incident_type_is_in_the_suite(outcomes: list[Outcome]) -> None:
    types = {o.case.incident for o in outcomes if o.case.windows}
    assert {"level_shift", "spike", "dip", "variance_change", "drift"} <= types


def test_bounds_fail_for_a_detector_that_never_fires(suite: list[Case]) -> None:
    problems = bound_violations([evaluate(case, lambda: _Stub(lambda i: False)) for case in suite])
    assert any("missed" in p for p in problems)
    assert any("never detected" in p for p in problems)


def test_bounds_fail_for_a_detector_that_fires_on_everything(suite: list[Case]) -> None:
    problems = bound_violations(
        [evaluate(case, lambda: _Stub(lambda i: i % 41 == 0)) for case in suite]
    )
    assert any("false findings / 1000" in p for p in problems)


def test_kinds_are_sensible_guesses(outcomes: list[Outcome]) -> None:
    first = {}
    for o in outcomes:
        if o.case.windows and o.findings:
            first.setdefault(o.case.name.split("/")[0], []).append(o.kinds[0])
    assert set(first["spike"]) == {"spike"}
    assert set(first["dip"]) == {"dip"}
    assert set(first["slow_drift"]) == {"drift"}
    assert set(first["stuck"]) == {"variance_change"}
    assert set(first["level_up"]) <= {"spike", "level_shift"}
    assert set(first["level_down"]) <= {"dip", "level_shift"}


# -- NAB-like scoring -----------------------------------------------------------------------

A_TP, A_FP, A_FN = 1.0, 0.11, 1.0  # NAB's standard profile


def _scaled_sigmoid(y: float) -> float:
    """NAB: 2 / (1 + e^(5y)) - 1; y = -1 at a window's start, 0 at its end."""
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def nab_score(case: Case, detections: list[int]) -> float:
    """Early detection inside a window earns up to A_TP, a miss costs A_FN, each detection
    outside every window costs A_FP; later detections in an already-hit window are free."""
    score = 0.0
    windows = [(s, _window_end(s, e)) for s, e in case.windows]
    for start, end in windows:
        hits = [i for i in detections if start <= i <= end]
        if hits:
            y = (hits[0] - end) / (end - start + 1)
            score += A_TP * _scaled_sigmoid(y)
        else:
            score -= A_FN
    score -= A_FP * sum(1 for i in detections if not any(s <= i <= e for s, e in windows))
    return score


def normalised(cases: list[Case], detections: list[list[int]]) -> float:
    """100 = perfect, 0 = never firing (NAB's normalisation)."""
    raw = sum(nab_score(c, d) for c, d in zip(cases, detections, strict=True))
    null = -A_FN * sum(len(c.windows) for c in cases)
    perfect = A_TP * sum(len(c.windows) for c in cases)
    return 100.0 * (raw - null) / (perfect - null)


def naive_three_sigma(case: Case) -> list[int]:
    """Fixed 3-sigma band on the whole series' mean/std (even with hindsight); every point
    outside it is a detection."""
    n = len(case.values)
    mean = sum(case.values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in case.values) / n)
    return [i for i, v in enumerate(case.values) if abs(v - mean) > 3.0 * std]


def test_nab_like_score_beats_trivial_baselines(outcomes: list[Outcome]) -> None:
    cases = [o.case for o in outcomes]
    ours = normalised(cases, [o.findings for o in outcomes])
    never = normalised(cases, [[] for _ in cases])
    naive = normalised(cases, [naive_three_sigma(c) for c in cases])
    print(f"\nNAB-like normalised score: detector {ours:.1f}, naive {naive:.1f}, never {never:.1f}")
    assert never == 0.0
    assert ours >= 70.0
    assert ours >= naive + 20.0


def test_nab_scorer_rewards_early_detection_and_charges_false_alarms() -> None:
    case = Case("toy", "spike", [], [0.0] * 200, [(100, 109)])
    early, late = nab_score(case, [100]), nab_score(case, [150])
    assert early > late > 0.0
    assert nab_score(case, []) == -A_FN
    assert nab_score(case, [100, 10, 20]) == pytest.approx(early - 2 * A_FP)


# -- state round trip ---------------------------------------------------------------------


def _mixed_series(n: int = 6 * DAY) -> tuple[list[float], list[float]]:
    rng = random.Random(11)
    ts, values, t = [], [], T0
    for i in range(n):
        t += STEP + rng.uniform(-20.0, 20.0)
        v = 100.0 + 10.0 * math.sin(2 * math.pi * (i % DAY) / DAY) + rng.gauss(0.0, 1.0)
        v += 8.0 if 3 * DAY <= i < 3 * DAY + 30 else 0.0
        v = math.nan if i % 97 == 0 else v
        ts.append(t)
        values.append(v)
    return ts, values


@pytest.mark.parametrize("cut", [1, 29, 31, 79, 81, 500, 2 * DAY + 5, 3 * DAY + 3, 3 * DAY + 40])
def test_restored_detector_continues_exactly(cut: int) -> None:
    ts, values = _mixed_series()
    original = Detector()
    for t, v in zip(ts[:cut], values[:cut], strict=True):
        original.update(t, v)
    state = json.loads(json.dumps(original.to_state(), allow_nan=False))
    restored = Detector.from_state(state)
    rest = list(zip(ts[cut:], values[cut:], strict=True))
    assert [restored.update(t, v) for t, v in rest] == [original.update(t, v) for t, v in rest]
    assert restored.to_state() == original.to_state()


def test_snapshot_and_restore_every_few_hundred_points_gives_identical_scores() -> None:
    """What the baseline stage does on a restart or rebalance: the changelog holds the
    state after the last point; a detector restored from it scores the rest exactly as
    the uninterrupted one (findings, cooldowns and the likelihood layer included)."""
    ts, values = _mixed_series(n=8 * DAY)
    for i in range(5 * DAY, 5 * DAY + 40):  # a second incident, well after the first
        values[i] -= 12.0
    uninterrupted = run_detector(ts, values)
    assert sum(u.finding for u in uninterrupted) >= 2
    det, restored = Detector(), []
    for i, (t, v) in enumerate(zip(ts, values, strict=True)):
        if i % 337 == 0:  # a restart: only the changelog survives
            det = Detector.from_state(json.loads(json.dumps(det.to_state(), allow_nan=False)))
        restored.append(det.update(t, v))
    assert restored == uninterrupted


def test_state_is_compact_json_and_bounded() -> None:
    ts, values = _mixed_series(n=20 * DAY)
    det = Detector()
    sizes = []
    for i, (t, v) in enumerate(zip(ts, values, strict=True)):
        det.update(t, v)
        if i % DAY == 0:
            sizes.append(len(json.dumps(det.to_state(), allow_nan=False)))
    print(f"\nstate JSON bytes: after 1 day {sizes[1]}, after 20 days {sizes[-1]}")
    assert det.season is not None
    assert max(sizes) < 16_000
    assert sizes[-1] - sizes[-2] < 200  # stops growing once the profiles are filled


def test_from_state_rejects_an_unknown_version() -> None:
    with pytest.raises(ValueError, match="version"):
        Detector.from_state({"v": 999})


# -- behaviour and quirks -----------------------------------------------------------------


def test_warm_up_scores_zero_and_never_fires() -> None:
    det = Detector(DetectorConfig(warmup=30))
    updates = [det.update(T0 + i, 1000.0 * (i % 2)) for i in range(30)]
    assert all(u.score == 0.0 and not u.anomalous and not u.finding for u in updates)


def test_score_is_calibrated_and_carries_the_firing_decision() -> None:
    cfg = DetectorConfig()
    ts, values = _mixed_series()
    updates = run_detector(ts, values, cfg)
    assert all(0.0 <= u.score <= 1.0 for u in updates)
    findings = [i for i, u in enumerate(updates) if u.finding]
    assert findings, "the 8-sigma burst of the mixed series is found"
    for i, u in enumerate(updates):
        # a point is anomalous exactly when its score reaches the threshold, unless a
        # finding fired within the cooldown before it (then its score is damped below)
        cooling = any(0 < i - f <= cfg.cooldown for f in findings)
        if u.finding:
            assert u.anomalous and u.score >= cfg.score_threshold and not cooling
        elif cooling:
            assert u.score < cfg.score_threshold
        else:
            assert u.anomalous == (u.score >= cfg.score_threshold) and not u.anomalous


def test_single_stray_point_is_not_a_finding_when_two_are_needed() -> None:
    rng = random.Random(3)
    values = [10.0 + rng.gauss(0.0, 1.0) for _ in range(600)]
    values[400] = 40.0
    updates = run_detector(_clock(600), values, DetectorConfig(min_occurrences=2))
    assert updates[400].z >= DetectorConfig().threshold_z and not updates[400].anomalous
    assert not any(u.finding for u in updates)
    updates = run_detector(
        _clock(600), values, DetectorConfig(min_occurrences=1, evaluation_window=1)
    )
    assert updates[400].finding and updates[400].kind == "spike"


def _recurring_bursts(seed: int = 21, n: int = 3000) -> tuple[list[float], list[int]]:
    """Noise with a heavier tail and, every 300 points, the same 2-point burst to 18."""
    rng = random.Random(seed)
    values = [10.0 + rng.gauss(0.0, 1.0) * (3.0 if rng.random() < 0.05 else 1.0) for _ in range(n)]
    starts = list(range(400, n - 200, 300))
    for s in starts:
        values[s] = values[s + 1] = 18.0
    return values, starts


def test_a_burst_seen_three_times_before_needs_a_stronger_score_to_page() -> None:
    """Episode memory: the fourth burst of a kind (same level before, same value) is
    familiar, its scores are scaled by 0.55, so it pages only on a near-certain score."""
    values, starts = _recurring_bursts()
    updates = run_detector(_clock(len(values)), values)
    paged = [s for s in starts if any(u.finding for u in updates[s : s + 12])]
    assert paged[:3] == starts[:3]  # the first three are news
    assert not set(starts[3:6]) & set(paged)  # the next three are not
    det = Detector()
    for t, v in zip(_clock(len(values)), values, strict=True):
        det.update(t, v)
    mem = det.to_state()["mem"]  # [level before, value at onset, repeats]
    assert sum(item[2] for item in mem if item[1] == 18.0) >= 4  # the first and three repeats


def test_a_burst_seen_six_times_before_is_stale() -> None:
    """The same burst with its memory holding 3 earlier episodes (familiar) scores 0.55 of
    its raw score; with 6 (stale) 0.5, so it pages only on a capped score."""
    rng = random.Random(8)
    values = [10.0 + rng.gauss(0.0, 1.0) for _ in range(1000)]
    values[200] = 25.0  # so that 18 is not beyond the range seen (no new-extreme floor)
    ts = _clock(1012)
    det = Detector()
    for t, v in zip(ts[:1000], values, strict=True):
        det.update(t, v)
    state = det.to_state()
    level = det.update(ts[1000], 10.0).centre  # a probe: the baseline the burst meets
    onset: dict[float, float] = {}
    for repeats in (0.0, 3.0, 6.0):
        state["mem"] = [[level, 18.0, repeats]]
        twin = Detector.from_state(json.loads(json.dumps(state)))
        scores = [twin.update(t, 18.0).score for t in ts[1000:1002]]
        onset[repeats] = scores[1]  # the gate needs the second point
    assert onset[0.0] == pytest.approx(1.0)
    assert onset[3.0] == pytest.approx(0.55)
    assert onset[6.0] == pytest.approx(0.5)


def test_episode_memory_survives_a_restore() -> None:
    values, _ = _recurring_bursts()
    ts = _clock(len(values))
    uninterrupted = run_detector(ts, values)
    det, restored = Detector(), []
    for i, (t, v) in enumerate(zip(ts, values, strict=True)):
        if i % 97 == 0:
            det = Detector.from_state(json.loads(json.dumps(det.to_state(), allow_nan=False)))
        restored.append(det.update(t, v))
    assert restored == uninterrupted


def test_a_value_beyond_the_whole_history_pages_at_once() -> None:
    """After 500 points, one value beyond everything seen (by 5 % of the range, z >= 3.5)
    is a finding without a second occurrence; before that it is not."""
    rng = random.Random(12)
    values = [10.0 + rng.gauss(0.0, 1.0) for _ in range(1200)]
    values[300] = 16.0  # a stray within the first 500 points: needs a second occurrence
    values[1000] = 30.0  # far beyond anything seen
    updates = run_detector(_clock(1200), values)
    assert not any(u.finding for u in updates[295:320])
    assert updates[1000].finding and updates[1000].kind == "spike"
    assert updates[1000].score >= 0.6


def test_cooldown_limits_repeated_findings() -> None:
    rng = random.Random(4)
    values = [10.0 + rng.gauss(0.0, 1.0) for _ in range(800)]
    for start in (300, 310, 320, 400):  # bursts of 3, the first three within the cooldown
        for i in range(start, start + 3):
            values[i] += 20.0
    updates = run_detector(_clock(800), values, DetectorConfig(cooldown=40))
    assert [i for i, u in enumerate(updates) if u.finding] == [301, 401]


def test_constant_series_uses_a_floor_and_catches_a_change() -> None:
    values = [5.0] * 300 + [5.5] * 50
    updates = run_detector(_clock(350), values)
    assert all(u.spread > 0.0 and u.score < 0.1 for u in updates[:300])
    assert [i for i, u in enumerate(updates) if u.finding] == [301]
    assert updates[-1].centre == pytest.approx(5.5)  # the new level became normal


def test_zero_series_and_negative_values() -> None:
    assert not any(u.finding for u in run_detector(_clock(200), [0.0] * 200))
    rng = random.Random(5)
    values = [-1e6 + rng.gauss(0.0, 10.0) for _ in range(500)] + [-1e6 - 200.0] * 10
    updates = run_detector(_clock(510), values)
    found = [(i, u.kind) for i, u in enumerate(updates) if u.finding]
    # 500: a value below anything in the 500 points before it pages at once (a new extreme)
    assert found[0][0] in (500, 501, 502) and found[0][1] in ("dip", "level_shift")
    assert updates[-1].centre < 0


def test_nan_inf_and_junk_are_skipped_without_touching_state() -> None:
    rng = random.Random(6)
    det = Detector()
    for i in range(100):
        det.update(T0 + STEP * i, 10.0 + rng.gauss(0.0, 1.0))
    before = det.to_state()
    for bad in (math.nan, math.inf, -math.inf, None, "abc"):
        u = det.update(T0 + STEP * 100, bad)  # type: ignore[arg-type]
        assert (u.score, u.anomalous, u.finding) == (0.0, False, False)
    assert det.update(math.nan, 10.0).score == 0.0
    assert det.to_state() == before


def test_huge_values_never_overflow_the_state() -> None:
    rng = random.Random(7)
    det = Detector()
    for i in range(400):
        v = rng.choice([1e308, -1e308, 1e-300, 0.0, rng.gauss(1e12, 1e9), 1e200 * rng.random()])
        u = det.update(T0 + STEP * i, v)
        assert math.isfinite(u.z) and math.isfinite(u.centre) and 0.0 <= u.score <= 1.0
    json.dumps(det.to_state(), allow_nan=False)


def test_count_data_with_rare_blips_stays_quiet() -> None:
    rng = random.Random(8)
    values = [4.0 + (1.0 if rng.random() < 0.05 else 0.0) for _ in range(3000)]
    low = [_poisson(rng, 0.3) for _ in range(3000)]
    assert sum(u.finding for u in run_detector(_clock(3000), values)) <= 2
    assert sum(u.finding for u in run_detector(_clock(3000), low)) <= 2


def test_irregular_sampling_with_gaps() -> None:
    rng = random.Random(9)
    ts, t = [], T0
    for _ in range(2000):
        t += rng.expovariate(1 / 120.0) + (5 * 3600.0 if rng.random() < 0.003 else 0.0)
        ts.append(t)
    values = [20.0 + rng.gauss(0.0, 1.0) + (6.0 if i >= 1500 else 0.0) for i in range(2000)]
    findings = [i for i, u in enumerate(run_detector(ts, values)) if u.finding]
    assert findings and 1500 <= findings[0] <= 1505
    assert all(i >= 1500 for i in findings)


def test_late_points_are_treated_as_now() -> None:
    det = Detector()
    for i in range(50):
        det.update(T0 + STEP * i, 1.0 + 0.01 * (i % 3))
    u = det.update(T0, 1.01)  # far in the past
    assert not u.anomalous
    assert det.to_state()["last_t"] == T0 + STEP * 49


def test_daily_profile_is_used_after_one_day() -> None:
    case = _seasonal(1, 4, None)
    det = Detector()
    seasons = []
    for t, v in zip(case.ts, case.values, strict=True):
        det.update(t, v)
        seasons.append(det.season)
    assert all(s is None for s in seasons[: DAY - 1])
    assert seasons[DAY + DAY // 4] == 86_400.0
    assert seasons[-1] == 86_400.0


def test_pure_noise_never_gets_a_profile() -> None:
    case = _clean("noise_gauss", 1, n=5 * DAY)
    det = Detector()
    for t, v in zip(case.ts, case.values, strict=True):
        det.update(t, v)
    assert det.season is None


@pytest.mark.parametrize(
    "bad",
    [
        {"window": 0},
        {"min_occurrences": 6, "evaluation_window": 5},
        {"alpha": 0.0},
        {"threshold_z": -1.0},
        {"variance_ratio": 1.0},
        {"seasonality": (1800.0,)},
        {"season_buckets": 1},
        {"score_threshold": 1.0},
        {"likelihood_window": 0},
        {"cooldown": -1},
    ],
)
def test_config_validation(bad: dict) -> None:
    with pytest.raises(ValueError):
        DetectorConfig(**bad)


def _healthy_rollups(seed: int, n: int, per_window: int) -> dict[str, list[float]]:
    """A healthy endpoint's 10-second rollups: p50 and p99 of log-normal durations, a
    rare 5xx, a Poisson-ish request count (what the load simulator's search service
    sends)."""
    rng = random.Random(seed)
    out: dict[str, list[float]] = {"p50": [], "p99": [], "errors": [], "rps": []}
    for _ in range(n):
        count = max(1, round(rng.gauss(per_window, math.sqrt(per_window))))
        durations = sorted(rng.lognormvariate(3.2, 0.5) for _ in range(count))
        errors = sum(rng.random() < 0.0002 for _ in range(count))
        out["p50"].append(durations[math.ceil(0.5 * count) - 1])
        out["p99"].append(durations[math.ceil(0.99 * count) - 1])
        out["errors"].append(100.0 * errors / count)
        out["rps"].append(count / 10.0)
    return out


def test_short_healthy_latency_history_does_not_page() -> None:
    """A young detector (warm-up 20) on healthy 10-s rollups: the p99 of ~30 samples is
    heavy-tailed and its tail is not learned in a few dozen points, so a z measured on
    that little history counts for less (Student's t) and the likelihood channel waits
    for enough averages. (It paged on a healthy series in tests/test_replay.py.)"""
    cfg = DetectorConfig(warmup=20)
    ts = [T0 + 10.0 * i for i in range(90)]
    findings = 0
    for seed in range(40):
        for per_window in (33, 66):
            for values in _healthy_rollups(seed, 90, per_window).values():
                findings += sum(u.finding for u in run_detector(ts, values, cfg))
    assert findings <= 3  # 16 with neither remedy
