"""Streaming anomaly detector for one metric series. Pure: no clocks, no I/O, stdlib only.

One `Detector` per series: feed it points in time order with `update(ts, value)` and read
an `Update` back. Its whole state is a bounded JSON-able dict (`to_state`, under 16 KB with
both seasonal profiles filled), so it can live in a compacted Kafka changelog keyed by
series and be restored exactly (`from_state`); detection/packed.py gives the same state as
compact exact bytes (about 0.5 KB young, 4 KB with both profiles filled), which is how the
baseline stage holds and writes it. Cost: see tests/bench/bench_detector.py.

Method
------
A point is always judged against what was learned *before* it, then learned from.

1. Seasonal adjustment. For each season in `seasonality` (default a day, 86 400 s, and
   a week, 604 800 s) an additive profile is learned in the background: one offset per
   bucket (`season_buckets` = 144 per season: 10 min of a day, 70 min of a week)
   relative to a slowly moving level (Holt-Winters style, Huber-clipped updates, so
   incidents barely bend it). Until a profile is in use it learns from every point (an
   unexplained daily edge must not keep it from learning); afterwards from normal points.
   A profile is used once every bucket has data and `season_min_cycles` (1) cycle has
   been seen, and only while it explains at least `season_strength` of the variance
   (1 - sigma_within^2 / sigma_total^2, with hysteresis; both sigmas learned over about
   400 points, `_SEASON_RATE`, so one day out of pattern does not make a daily profile
   look weak). Then d = x - offset(bucket of t) (a step profile: a square daily pattern
   stays square); before that d = x.
2. Fast robust baseline: median of the last `window` values of d (a sorted reservoir).
   Outliers barely move it; a genuine level shift takes it over once it fills about half
   the reservoir, so the detector re-learns instead of alarming forever.
3. Spread (the z-score unit) = max(IQR/1.349 of the reservoir, sigma implied by the mean
   |step| between points, tail sigma, floor). The tail sigma is the online 99 % quantile
   of |residual| / 2.576, tracked multiplicatively and fed by every point, but only the
   first point of a run of exceedances counts: frequent isolated "outliers" (heavy tails,
   sparse counts) widen it, a sustained incident does not. On Gaussian noise all of these
   equal sigma. The floor max(abs_floor, rel_floor * |level|) keeps a constant series
   safe: no division by zero, and any change stands out.
4. Slow baseline: EWMA mean and sigma of d (rate `alpha`, Huber-clipped), learned only
   from normal points; sigma stops learning while the fast median is more than two
   sigmas away, so a creeping drift cannot widen its own yardstick.
5. Channels, each mapped to a signed z on the point scale (|z| >= `threshold_z` means
   anomalous for every channel); the largest |z| is reported:
   - point: (d - fast median) / spread, for spikes, dips and the onset of shifts;
   - shift: mean of the last `shift_window` clipped point residuals over its own 99 %
     quantile (learned online, so autocorrelation and discreteness are priced in),
     anomalous at `shift_z` times the Gaussian-equivalent; catches 2.5-4 sigma shifts;
   - drift: (fast median - slow mean) / max(slow sigma, spread), anomalous at `drift_z`;
     catches slow drifts that the fast baseline follows (the spread keeps a heavy-tailed
     series, whose slow sigma Huber-clipping underestimates, from drifting on its spikes);
   - variance: short EWMA (`fast_alpha`) of |step| over its own 99 % quantile, anomalous
     at `variance_ratio` (log-scaled); and a run of exact repeats (a stuck metric) longer
     than `flatline_run` and unlikely (p < 1e-6) given how often the series repeats.
   `kind`: spike/dip (point), level_shift (shift channel, or >= `shift_run` consecutive
   same-sign excursions), variance_change (variance channel, or excursions of both signs
   within the evaluation window), drift.
6. Score (the anomaly likelihood, HTM-style): each point's |z| is first read as a
   Student's t with n/3 degrees of freedom (n: points seen), so a z measured against a
   scale learned from a few dozen points counts for less (a young detector does not page
   on the first heavy-tail value it meets; beyond a few thousand points this is nil),
   then capped at 1.5 threshold_z; the `min_occurrences`-th largest of the last
   `evaluation_window` of them (g) is what counts, so one stray point cannot carry a
   finding. Two channels, each a Gaussian tail probability p, score = -log10(p) / 10
   clipped to [0, 1] (0.5: p = 1e-5):
   - point: u = 4.265 g / threshold_z (0.5 exactly when g reaches threshold_z);
   - likelihood: the mean of g over `likelihood_window` points against the learned
     distribution (EWMA mean / variance, Huber-clipped, rate `likelihood_rate`, learned
     only from points scoring below the threshold) of that mean: a series that is
     always jumpy stops alarming, a quiet one alarms on a modest sustained change. It
     scores only once `_LK_MIN` (150) averages are learned: consecutive averages
     overlap, so fewer are too few to know that distribution's spread.
   Two memories adjust that score. A new extreme: after `_EXTREME_AFTER` points, a value
   beyond the whole history's range by `_EXTREME_MARGIN` of it, with its z at least
   `_EXTREME_Z` the same way, scores at least `_EXTREME_SCORE` (it pages at once). Episode
   memory: the onset of each anomalous episode (level before, value) is remembered, the
   last `_MEM_SIZE` distinct ones with repeat counts; an episode whose onset matches
   `_MEM_REPEATS` earlier ones (within `_MEM_TOL` spreads) is familiar and its scores are
   scaled by `_MEM_DAMP`: the fourth burst of a kind pages only on a near-certain score;
   one matching `_MEM_STALE` is stale, scaled by `_MEM_STALE_DAMP` (only a capped score).
7. Firing (the same rule pages people and scores NAB): a point is anomalous when its
   score reaches `score_threshold`; the first anomalous point outside a cooldown is a
   finding; for the next `cooldown` points scores are damped (x0.25, so below the
   threshold) and nothing fires: NAB counts only the first detection of an incident,
   and so does an on-call engineer.
8. Re-learning: for `_RELEARN` points after a finding the slow references adopt the
   current state (slow mean := fast median, long dispersion := short dispersion), so a
   persistent change raises one finding and then becomes the new normal.

Quirks: NaN/inf or non-numeric values and timestamps are skipped without touching the
state; magnitudes beyond 1e150 are clamped so nothing can overflow; irregular sampling is
fine (windows count points, seasons use timestamps, the typical interval scales the
seasonal learning rate); a late point is treated as arriving at the latest time seen.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["STATE_VERSION", "Detector", "DetectorConfig", "Update", "run_detector"]

STATE_VERSION = 2
_Q_GAUSS = 2.5758293035489004  # two-sided 99 % quantile of |N(0, 1)|
_IQR_SIGMA = 1.3489795003921634  # IQR of N(0, 1)
_MEAN_ABS = 0.7978845608028654  # E|N(0, 1)|
_MAX_ABS = 1e150  # inputs are clamped here so squares never overflow
_LEVEL_SHIFT = "level_shift"
_SEASON_RATE = 0.0025  # EWMA rate of the seasonal residual sigmas (about 400 points)
_DRIFT_FREEZE = 2.0  # slow sigma stops learning while |fast - slow| exceeds this many sigmas
_SIGMA_CLIP = 2.0  # Huber clipping (sigmas) of the slow sigma updates
_VAR_Q0 = 1.4  # 99 % quantile / mean of the short |step| EWMA for Gaussian noise (prior)
_VAR_RATE = 0.4  # speed of the dispersion quantile tracker relative to tail_rate
_SHIFT_CLIP = 3.0  # residuals (in spreads) are clipped here before the short-window mean
_FLATLINE_LOG_P = math.log(1e-6)  # a repeat run this unlikely (given the repeat share) is stuck
_STEP_SIGMA = 1.0 / (_MEAN_ABS * math.sqrt(2.0))  # mean |step| of iid noise -> sigma
_Z_CAP = 1.5  # |z| is capped at this many threshold_z before the likelihood layer
_LK_SD_FLOOR = 0.1  # floor of the sigma of the averaged |z| (a quiet series' yardstick)
_LK_CLIP = 3.0  # Huber clipping (sigmas) of the likelihood distribution's updates
_U_HALF = 4.264890793922825  # Q(u) = 1e-5: score 0.5
_LK_AVG = 0.9  # the averaged channel's u is scaled by this (its tail is heavier)
_LK_MIN = 150  # averages learned before the likelihood layer may score
_COOLDOWN_DAMP = 0.25  # scores within the cooldown after a finding are scaled by this
_RELEARN = 40  # points after a finding during which the slow references adopt the new state
_LN10 = math.log(10.0)
_T_DOF = 1.0 / 3.0  # |z| is read as Student's t with this many degrees of freedom per point seen
_REFRESH_S = 3_600.0  # seasonal profiles are re-evaluated once per this much time
_MEM_SIZE = 16  # anomalous episodes remembered (level before, value at onset, repeats)
_MEM_TOL = 0.5  # an episode matches a remembered one within this many spreads (level and value)
_MEM_REPEATS = 3  # an episode matching this many remembered ones is familiar
_MEM_DAMP = 0.55  # a familiar episode's scores are scaled by this (it pages only at >= 0.91)
_MEM_STALE = 6  # an episode matching this many remembered ones is stale
_MEM_STALE_DAMP = 0.5  # a stale episode's scores are scaled by this (it pages only at 1.0)
_EPISODE_GAP = 10  # points below the threshold that end an anomalous episode
_EXTREME_AFTER = 500  # points seen before a new extreme of the whole history counts
_EXTREME_MARGIN = 0.05  # beyond the range seen so far by this share of it
_EXTREME_Z = 3.5  # with the point's z (any channel) at least this, the same way
_EXTREME_SCORE = 0.6  # such a point scores at least this (p = 1e-6; it pages)


@dataclass(frozen=True)
class DetectorConfig:
    """Detector parameters. Counts are in points; times in seconds."""

    warmup: int = 30  # points before anything can fire (score 0 during warm-up)
    alpha: float = 0.003  # EWMA rate of the slow (Huber-clipped) mean/variance
    threshold_z: float = 4.0  # |z| at which a point is anomalous
    min_occurrences: int = 2  # anomalous points within evaluation_window to make a finding
    evaluation_window: int = 5  # points
    cooldown: int = 150  # points after a finding during which scores are damped, no finding
    seasonality: tuple[float, ...] = (86_400.0, 604_800.0)  # season lengths (s) to try
    season_buckets: int = 144  # buckets per season (10 min of a day, 70 min of a week)
    season_min_cycles: float = 1.0  # cycles of history before a profile may be used
    season_strength: float = 0.3  # share of variance a profile must explain to be used
    window: int = 40  # robust reservoir (median / IQR) size
    tail_quantile: float = 0.99  # quantile of |residual| tracked for tail calibration
    tail_rate: float = 0.05  # log-step of the tail tracker
    drift_z: float = 5.0  # fast-vs-slow baseline gap (in slow sigmas) that is anomalous
    variance_ratio: float = 1.5  # short |step| EWMA over its own 99 % quantile: anomalous
    flatline_run: int = 6  # exact repeats that make a stuck metric (more if repeats are usual)
    fast_alpha: float = 0.1  # EWMA rate of the short-term dispersion
    huber_c: float = 3.0  # clipping (sigmas) of every learning update
    rel_floor: float = 1e-6  # spread floor relative to |level|
    abs_floor: float = 1e-9  # absolute spread floor
    shift_run: int = 4  # consecutive same-sign excursions that make a level shift
    shift_window: int = 5  # points averaged by the short-window shift channel
    shift_z: float = 5.0  # that mean, in Gaussian-equivalent sigmas, that is anomalous
    score_threshold: float = 0.5  # score at which a point counts towards a finding
    likelihood_window: int = 10  # points averaged before the tail probability is taken
    likelihood_rate: float = 0.001  # EWMA rate of the distribution of that average

    def __post_init__(self) -> None:
        positive_ints = (
            "window",
            "min_occurrences",
            "evaluation_window",
            "shift_run",
            "flatline_run",
            "shift_window",
            "likelihood_window",
        )
        for name in positive_ints:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.warmup < 0 or self.cooldown < 0:
            raise ValueError("warmup and cooldown must be >= 0")
        if self.min_occurrences > self.evaluation_window:
            raise ValueError("min_occurrences must be <= evaluation_window")
        for name in ("alpha", "fast_alpha", "tail_quantile", "likelihood_rate", "score_threshold"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1)")
        positive = ("threshold_z", "drift_z", "shift_z", "huber_c", "tail_rate")
        for name in positive:
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name} must be > 0")
        if not self.variance_ratio > 1.0:
            raise ValueError("variance_ratio must be > 1")
        if self.rel_floor < 0 or self.abs_floor <= 0:
            raise ValueError("rel_floor must be >= 0 and abs_floor > 0")
        for period in self.seasonality:
            if not period >= 3_600.0:
                raise ValueError(f"season {period!r} must be at least an hour")
        if self.season_buckets < 2:
            raise ValueError("season_buckets must be >= 2")


@dataclass(slots=True)
class Update:
    """The detector's verdict on one point."""

    score: float  # in [0, 1], monotone in |z|; 0 during warm-up
    z: float  # signed, on the point scale (see the module docstring)
    anomalous: bool  # this point is beyond threshold
    finding: bool  # a finding fires now
    kind: str | None  # spike, dip, level_shift, variance_change, drift (when anomalous)
    centre: float  # baseline used for this point (before it was updated), raw units
    spread: float  # sigma used for this point


class _Season:
    """Background-learned additive profile for one season length (Holt-Winters style).

    ``x ~ level + offset[bucket]``: the level is an EWMA of the deseasonalised value with a
    time constant of two periods, each bucket offset an EWMA over about three cycles of
    that bucket, both Huber-clipped. ``strength = 1 - within^2 / total^2`` compares the
    residual sigma with the profile (within) to the sigma around the level alone (total).
    """

    __slots__ = (
        "active",
        "buckets",
        "counts",
        "filled",
        "level",
        "mean_offset",
        "nb",
        "period",
        "strength",
        "total",
        "width",
        "within",
    )

    def __init__(self, period: float, width: float) -> None:
        self.period = period
        self.width = width
        self.nb = max(2, round(period / width))
        # Arrays, not lists: a profile is 1.3 KB instead of 5 KB of objects, and it packs
        # and unpacks as two copies (detection/packed.py). Counts start as bytes and are
        # widened when one outgrows them (never saturated).
        self.buckets = array("d", bytes(8 * self.nb))
        self.counts = array("B", bytes(self.nb))
        self.filled = 0  # buckets with at least season_min_cycles points
        self.level: float | None = None
        self.within = 0.0  # sigma of x - level - offset
        self.total = 0.0  # sigma of x - level
        self.mean_offset = 0.0
        self.strength = 0.0
        self.active = False

    def bucket(self, t: float) -> int:
        b = int((t % self.period) // self.width)
        return b if b < self.nb else self.nb - 1

    def offset(self, t: float) -> float:
        """Profile offset at t (its bucket's, a step profile), zero-mean."""
        return self.buckets[self.bucket(t)] - self.mean_offset

    def learn(self, t: float, x: float, dt: float, cfg: DetectorConfig) -> None:
        """One Huber-clipped update of the level, the bucket offset and the two sigmas."""
        b = self.bucket(t)
        level = self.level
        counts = self.counts
        cnt = counts[b]
        if level is None or cnt == 0:  # first point, or first visit of this bucket
            if level is None:
                self.level = level = x
            self.buckets[b] = x - level
            counts[b] = 1
            if cfg.season_min_cycles <= 1:
                self.filled += 1
            return
        off = self.buckets[b]
        dev = x - level
        e = dev - off
        floor = max(cfg.abs_floor, cfg.rel_floor * abs(level))
        w = self.within
        c = cfg.huber_c * (w if w > floor else floor)
        ec = c if e > c else (-c if e < -c else e)
        per_cycle = self.width / dt if dt > 0.0 else 1.0
        if per_cycle < 1.0:
            per_cycle = 1.0
        rate_b = 1.0 / (cnt + 1)
        if rate_b * (3.0 * per_cycle + 1.0) < 1.0:
            rate_b = 1.0 / (3.0 * per_cycle + 1.0)
        self.buckets[b] = off + rate_b * ec
        try:
            counts[b] = cnt + 1
        except OverflowError:  # beyond this width: the next one
            self.counts = counts = _wider(counts)
            counts[b] = cnt + 1
        if cnt + 1 == math.ceil(cfg.season_min_cycles):
            self.filled += 1
        rate_l = 0.5 * dt / self.period if dt > 0.0 else 0.05
        self.level = level + (rate_l if rate_l < 0.2 else 0.2) * ec
        self.within = _huber_sigma(w, e, _SEASON_RATE, cfg.huber_c, floor)
        dev -= self.mean_offset
        self.total = _huber_sigma(self.total, dev, _SEASON_RATE, cfg.huber_c, floor)

    def refresh(self, span: float, cfg: DetectorConfig) -> None:
        """Recompute the mean offset, the strength and whether the profile is usable."""
        self.mean_offset = sum(self.buckets) / self.nb
        total2 = self.total * self.total
        self.strength = 1.0 - self.within * self.within / total2 if total2 > 0.0 else 0.0
        eligible = self.filled >= self.nb and span >= cfg.season_min_cycles * self.period
        need = cfg.season_strength * (0.7 if self.active else 1.0)
        self.active = eligible and self.strength >= need

    def to_state(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "buckets": list(self.buckets),
            "counts": list(self.counts),
            "filled": self.filled,
            "level": self.level,
            "within": self.within,
            "total": self.total,
            "mean_offset": self.mean_offset,
            "strength": self.strength,
            "active": self.active,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], width: float) -> _Season:
        season = cls(float(state["period"]), width)
        if len(state["buckets"]) == season.nb:
            season.buckets = array("d", [float(v) for v in state["buckets"]])
            season.counts = counts_array([int(v) for v in state["counts"]])
            season.filled = int(state["filled"])
            season.level = _opt_float(state["level"])
            season.within = float(state["within"])
            season.total = float(state["total"])
            season.mean_offset = float(state["mean_offset"])
            season.strength = float(state["strength"])
            season.active = bool(state["active"])
        return season


COUNT_TYPES = "BHIQ"  # the widths of a season's counts, narrowest first


def counts_array(counts: list[int]) -> array[int]:
    """Season bucket counts in the narrowest unsigned width that holds them all."""
    for typecode in COUNT_TYPES:
        try:
            return array(typecode, counts)
        except OverflowError:
            continue
    raise OverflowError("a season bucket count beyond 64 bits")


def _wider(counts: array[int]) -> array[int]:
    return array(COUNT_TYPES[COUNT_TYPES.index(counts.typecode) + 1], counts)


def _huber_sigma(sigma: float, e: float, rate: float, c: float, floor: float) -> float:
    """One EWMA step of a standard deviation with the squared error clipped at c sigmas.

    Computed in units of the current sigma, so it never overflows.
    """
    if sigma <= 0.0:
        return abs(e)
    ref = sigma if sigma > floor else floor
    u = e / ref
    u2 = u * u
    lim = c * c
    s = sigma / ref
    return ref * math.sqrt((1.0 - rate) * s * s + rate * (u2 if u2 < lim else lim))


class Detector:
    """Online anomaly detector for one series; see the module docstring for the method."""

    __slots__ = (
        "_active",
        "_cfg",
        "_down",
        "_dt",
        "_exceeding",
        "_first_t",
        "_flat",
        "_flat_quiet",
        "_gate",
        "_hi",
        "_last_finding",
        "_last_t",
        "_lk",
        "_lk_n",
        "_lk_ring",
        "_lo",
        "_mem",
        "_mem_quiet",
        "_mem_state",
        "_mu",
        "_n",
        "_n_slow",
        "_p_same",
        "_peak_kind",
        "_peak_z",
        "_prev_d",
        "_prev_x",
        "_recent",
        "_refresh_at",
        "_ring",
        "_run",
        "_seasons",
        "_shift_q",
        "_shift_rms",
        "_sigma",
        "_slow_down",
        "_slow_up",
        "_sorted",
        "_tail",
        "_up",
        "_var_down",
        "_var_q",
        "_var_up",
        "_vlong",
        "_vshort",
        "_win_d",
        "_win_t",
    )

    def __init__(self, config: DetectorConfig | None = None) -> None:
        cfg = config if config is not None else DetectorConfig()
        self._cfg = cfg
        self._up = math.exp(cfg.tail_rate * cfg.tail_quantile)
        self._down = math.exp(-cfg.tail_rate * (1.0 - cfg.tail_quantile))
        self._slow_up = math.exp(0.2 * cfg.tail_rate * cfg.tail_quantile)
        self._var_up = math.exp(_VAR_RATE * cfg.tail_rate * cfg.tail_quantile)
        self._var_down = math.exp(-_VAR_RATE * cfg.tail_rate * (1.0 - cfg.tail_quantile))
        self._slow_down = math.exp(-0.2 * cfg.tail_rate * (1.0 - cfg.tail_quantile))
        self._n = 0  # valid points seen
        self._first_t: float | None = None
        self._last_t: float | None = None
        self._dt = 0.0  # typical sampling interval (EWMA of clipped gaps)
        # Short float histories are arrays (a deque per point held ~600 bytes, and arrays
        # pack and unpack as one copy, detection/packed.py); dropping the oldest of a few
        # dozen moves a few hundred bytes.
        self._win_d = array("d")  # robust reservoir, arrival order
        self._win_t = array("d")
        self._sorted: list[float] = []  # the same values, sorted
        self._mu = 0.0  # slow EWMA mean
        self._sigma = 0.0  # slow EWMA sigma
        self._n_slow = 0  # points the slow statistics learned from
        self._tail = 0.0  # tracked tail quantile of |residual|
        self._exceeding = False  # the previous learned point was beyond the tail
        self._vshort = 0.0  # short EWMA of |step| (clipped)
        self._vlong = 0.0  # long EWMA of |step| (clipped)
        self._var_q = 0.0  # tracked 99 % quantile of the short EWMA
        self._prev_d: float | None = None  # previous deseasonalised value
        self._prev_x: float | None = None  # previous raw value
        self._flat = 0  # consecutive exact repeats of the raw value
        self._flat_quiet = False  # this repeat run already made a finding
        self._p_same = 0.0  # long-run share of exact repeats
        self._ring = array("d")  # last clipped residuals, in spread units
        self._shift_q = 0.0  # slowly tracked 99 % quantile of |their mean|
        self._shift_rms = 0.0  # Huber RMS of their mean
        self._recent: deque[tuple[int, int]] = deque()  # (index, sign) of recent anomalies
        self._peak_z = 0.0  # largest |z| beyond threshold_z among the recent points
        self._peak_kind: str | None = None  # and its kind: the kind a finding reports
        self._run = 0  # signed run length of consecutive point excursions
        self._last_finding = -1
        self._gate = array("d")  # capped |z| of the last evaluation_window points
        self._lk_ring = array("d")  # their min_occurrences-th largest, recent
        self._lk = [0.0, 0.0]  # EWMA mean and variance of the averaged gated |z|
        self._lk_n = 0  # averages learned
        self._lo = 0.0  # smallest and largest value seen (raw units)
        self._hi = 0.0
        self._mem: list[list[float]] = []  # [level, value, repeats] of recent episode onsets
        self._mem_state = 0  # 0 outside an episode, 1 novel, 2 familiar, 3 stale
        self._mem_quiet = 0  # points below the threshold since the episode's last anomalous one
        self._seasons = [_Season(float(p), float(p) / cfg.season_buckets) for p in cfg.seasonality]
        self._active: _Season | None = None
        self._refresh_at = -math.inf  # time of the next seasonal re-evaluation

    @property
    def config(self) -> DetectorConfig:
        return self._cfg

    @property
    def points(self) -> int:
        """Valid points seen so far."""
        return self._n

    @property
    def season(self) -> float | None:
        """Length (s) of the seasonal profile in use, or None for the global baseline."""
        return None if self._active is None else self._active.period

    # -- the hot path -------------------------------------------------------------------

    def update(self, ts: float, value: float) -> Update:
        """Judge one point against the baseline learned so far, then learn from it."""
        try:
            x = float(value)
            t = float(ts)
        except (TypeError, ValueError):
            return self._skipped()
        if not (math.isfinite(x) and math.isfinite(t)):
            return self._skipped()
        x = _MAX_ABS if x > _MAX_ABS else (-_MAX_ABS if x < -_MAX_ABS else x)
        cfg = self._cfg
        n = self._n = self._n + 1
        t = self._advance_clock(t)
        active = self._active
        off = active.offset(t) if active is not None else 0.0
        d = x - off

        centre, body, floor = self._baseline(d, off)
        tail_sigma = self._tail / _Q_GAUSS
        spread = tail_sigma if tail_sigma > body else body
        thr = cfg.threshold_z
        r = d - centre
        z = r / spread
        channel = 0  # 0 point, 1 drift, 2 variance, 3 short-window shift
        gap = centre - self._mu
        if self._n_slow > cfg.warmup:
            ref = self._sigma if self._sigma > floor else floor
            if spread > ref:  # heavy tails: never sharper than the point scale
                ref = spread
            zd = gap / ref * (thr / cfg.drift_z)
            if abs(zd) > abs(z):
                z, channel = zd, 1
        zs = self._shift(r, spread)
        if abs(zs) > abs(z):
            z, channel = zs, 3
        zv, step, same = self._dispersion(x, d, spread, floor, n)
        if abs(zv) > abs(z):
            z, channel = zv, 2

        warm = n <= cfg.warmup
        beyond = not warm and abs(z) >= thr
        run = self._track_run(not warm and abs(r) >= thr * spread, r)
        kind = self._note(n, beyond, z, channel, run)
        extreme = self._extreme(n, x, z)
        score, anomalous, finding = self._score(n, z, warm, centre + off, x, spread, extreme)
        self._learn(t, x, d, abs(r), step, same, gap, spread, body, floor, beyond)
        level = centre + off
        if warm:
            return Update(0.0, 0.0, False, False, None, level, spread)
        return Update(score, z, anomalous, finding, kind if anomalous else None, level, spread)

    def _advance_clock(self, t: float) -> float:
        """Track the latest time and the typical interval; late points count as 'now'."""
        last_t = self._last_t
        if last_t is None:
            self._first_t = self._last_t = t
            return t
        if t <= last_t:
            return last_t
        gap = t - last_t
        dt = self._dt
        self._dt = gap if dt <= 0.0 else dt + 0.05 * ((gap if gap < 10.0 * dt else 10.0 * dt) - dt)
        self._last_t = t
        return t

    def _baseline(self, d: float, off: float) -> tuple[float, float, float]:
        """(fast median, body sigma = max(IQR sigma, step sigma, floor), floor)."""
        srt = self._sorted
        m = len(srt)
        if m:
            centre, body = _median_iqr_sigma(srt, m)
        else:
            centre, body = d, 0.0
        cfg = self._cfg
        floor = cfg.rel_floor * abs(centre + off)
        if floor < cfg.abs_floor:
            floor = cfg.abs_floor
        step_sigma = self._vlong * _STEP_SIGMA
        if body < step_sigma:
            body = step_sigma
        return centre, (body if body > floor else floor), floor

    def _dispersion(
        self, x: float, d: float, spread: float, floor: float, n: int
    ) -> tuple[float, float, bool]:
        """Variance channel: (z, clipped |step|, raw value repeated exactly).

        Up: the short EWMA of |step| against its own tracked 99 % quantile. Down: a run of
        exact repeats that is improbable given how often the series repeats itself.
        """
        cfg = self._cfg
        thr = cfg.threshold_z
        prev = self._prev_d
        same = x == self._prev_x
        self._prev_d = d
        self._prev_x = x
        if prev is None:
            return 0.0, -1.0, False
        vlong = self._vlong
        step = abs(d - prev)
        if n > cfg.warmup:
            clip = thr * (vlong / _MEAN_ABS if vlong > spread * _MEAN_ABS else spread)
            if step > clip:
                step = clip
        fa = cfg.fast_alpha
        vs = self._vshort
        self._vshort = vs = vs + (fa if fa * (n - 1) > 1.0 else 1.0 / (n - 1)) * (step - vs)
        z = 0.0
        q = self._var_q
        fl = _MEAN_ABS * floor
        if vs > q > 0.0 and vs > fl:
            z = thr * math.log(vs / (q if q > fl else fl)) / math.log(cfg.variance_ratio)
        flat = self._flat = self._flat + 1 if same else 0
        if not flat:
            self._flat_quiet = False
        elif not self._flat_quiet:
            p = self._p_same
            need = float(cfg.flatline_run)
            if p >= 1.0:
                need = math.inf
            elif p > 0.0:
                need = max(need, _FLATLINE_LOG_P / math.log(p))
            zf = -thr * flat / need
            if -zf > z:
                z = zf
        return z, step, same

    def _shift(self, r: float, spread: float) -> float:
        """Short-window shift channel: mean of the last `shift_window` clipped residuals
        (in spreads) over its own 99 % quantile, learned on normal points so that
        autocorrelation (via a Huber RMS, quick to calibrate) and discreteness or heavy
        tails (via a slow quantile tracker that an incident cannot chase) are priced in."""
        cfg = self._cfg
        c = _SHIFT_CLIP
        u = r / spread
        u = c if u > c else (-c if u < -c else u)
        ring = self._ring
        ring.append(u)
        if len(ring) > cfg.shift_window:
            del ring[0]
        q = self._shift_q
        rms_q = _Q_GAUSS * self._shift_rms
        if rms_q > q:
            q = rms_q
        if len(ring) < cfg.shift_window or q <= 0.0:
            return 0.0
        return sum(ring) / len(ring) / q * (_Q_GAUSS * cfg.threshold_z / cfg.shift_z)

    def _track_run(self, out: bool, r: float) -> int:
        """Signed length of the current run of same-sign point excursions."""
        run = self._run
        if not out:
            run = 0
        elif r > 0:
            run = run + 1 if run > 0 else 1
        else:
            run = run - 1 if run < 0 else -1
        self._run = run
        return run

    def _note(self, n: int, beyond: bool, z: float, channel: int, run: int) -> str:
        """Remember the signs of recent points beyond threshold_z; the kind of this one."""
        recent = self._recent
        while recent and recent[0][0] <= n - self._cfg.evaluation_window:
            recent.popleft()
        if beyond:
            recent.append((n, 1 if z > 0 else -1))
        kind = self._kind(channel, z, run)
        if beyond and abs(z) >= self._peak_z:
            self._peak_z, self._peak_kind = abs(z), kind
        elif not recent:
            self._peak_z, self._peak_kind = 0.0, None
        return self._peak_kind or kind

    def _extreme(self, n: int, x: float, z: float) -> bool:
        """A value beyond the whole history's range (after `_EXTREME_AFTER` points) by
        `_EXTREME_MARGIN` of it, with the point's z at least `_EXTREME_Z` the same way;
        then the range takes it in. A value this series has never come near is news even when
        its spread, learned from earlier bursts, is wide."""
        lo, hi = self._lo, self._hi
        if n == 1:
            self._lo = self._hi = x
            return False
        if x < lo:
            self._lo = x
        elif x > hi:
            self._hi = x
        else:
            return False
        if n <= _EXTREME_AFTER:
            return False
        margin = _EXTREME_MARGIN * (hi - lo)
        if x > hi:
            return x > hi + margin and z >= _EXTREME_Z
        return x < lo - margin and z <= -_EXTREME_Z

    def _score(
        self,
        n: int,
        z: float,
        warm: bool,
        level: float,
        x: float,
        spread: float,
        extreme: bool,
    ) -> tuple[float, bool, bool]:
        """(score, anomalous, finding): the anomaly likelihood of this point, gated.

        The |z| of the last `evaluation_window` points (capped) are ranked and the
        `min_occurrences`-th largest is kept, so one stray point cannot carry a finding.
        Its mean over `likelihood_window` points is compared to the learned distribution
        of that mean (Huber-clipped EWMA, learned only from points below threshold); the
        score is -log10 of the Gaussian tail probability / 10, clipped to [0, 1] (0.5: one
        chance in 100 000). A finding fires at the first point at or above
        `score_threshold`; for the next `cooldown` points scores are damped below it.
        """
        cfg = self._cfg
        cap = _Z_CAP * cfg.threshold_z
        a = abs(z)
        if _T_DOF > 0.0 and a > 0.0:
            a = _t_to_z(a, _T_DOF * n)
        gate = self._gate
        gate.append(a if a < cap else cap)
        if len(gate) > cfg.evaluation_window:
            del gate[0]
        k = cfg.min_occurrences
        g = sorted(gate)[-k] if len(gate) >= k else 0.0
        ring = self._lk_ring
        ring.append(g)
        if len(ring) > cfg.likelihood_window:
            del ring[0]
        if warm:
            return 0.0, False, False
        lk = self._lk  # [mean, variance] of the averaged g
        m = sum(ring) / len(ring)
        e_avg, sd_avg = m - lk[0], _floored_sd(lk[1])
        lk_n = self._lk_n
        u = g / cfg.threshold_z * _U_HALF  # the point channel: 0.5 at threshold_z
        if lk_n >= _LK_MIN:
            u_avg = e_avg / sd_avg * _LK_AVG
            if u_avg > u:
                u = u_avg
        score = _tail_score(u)
        if extreme and score < _EXTREME_SCORE:
            score = _EXTREME_SCORE
        thr = cfg.score_threshold
        if score < thr:  # learn the distribution from ordinary points only
            lk_n = self._lk_n = lk_n + 1
            rate = cfg.likelihood_rate if cfg.likelihood_rate * lk_n > 1.0 else 1.0 / lk_n
            _learn_moments(lk, 0, e_avg, sd_avg, rate)
        anomalous = score >= thr
        if anomalous:
            if self._mem_state == 0:  # the onset of an episode: seen this before?
                seen = self._recall(level, x, spread)
                self._mem_state = 3 if seen >= _MEM_STALE else (2 if seen >= _MEM_REPEATS else 1)
            self._mem_quiet = 0
        elif self._mem_state:
            self._mem_quiet += 1
            if self._mem_quiet > _EPISODE_GAP:
                self._mem_state = 0
        if self._mem_state >= 2 and anomalous:  # familiar: it takes a stronger score to page
            score *= _MEM_DAMP if self._mem_state == 2 else _MEM_STALE_DAMP
            anomalous = score >= thr
        last = self._last_finding
        if last >= 0 and n - last <= cfg.cooldown:
            return score * _COOLDOWN_DAMP, anomalous, False
        if anomalous:
            self._last_finding = n
            return score, True, True
        return score, False, False

    def _recall(self, level: float, x: float, spread: float) -> float:
        """Remember the onset of an anomalous episode; return how many earlier ones match.

        An episode is its level before (the baseline) and its value at onset, in raw
        units; it matches a remembered one when both are within `_MEM_TOL` spreads. A
        match adds a repeat to the first matching memory; otherwise the episode is
        remembered in place of the oldest. Familiar: the matching memories hold at least
        `_MEM_REPEATS` earlier episodes (the fourth burst of a kind seen three times);
        stale: `_MEM_STALE` (the seventh).
        """
        tol = _MEM_TOL * spread
        seen = 0.0
        hit: list[float] | None = None
        for item in self._mem:
            if abs(item[0] - level) <= tol and abs(item[1] - x) <= tol:
                seen += item[2]
                if hit is None:
                    hit = item
        if hit is not None:
            hit[2] += 1.0
        else:
            self._mem.append([level, x, 1.0])
            if len(self._mem) > _MEM_SIZE:
                del self._mem[0]
        return seen

    def _kind(self, channel: int, z: float, run: int) -> str:
        if channel == 1:
            return "drift"
        if channel == 2:
            return "variance_change"
        if channel == 3:
            return _LEVEL_SHIFT
        if len({sign for _, sign in self._recent}) > 1:
            return "variance_change"
        if abs(run) >= self._cfg.shift_run:
            return _LEVEL_SHIFT
        return "spike" if z > 0 else "dip"

    # -- learning -----------------------------------------------------------------------

    def _learn(
        self,
        t: float,
        x: float,
        d: float,
        abs_r: float,
        step: float,
        same: bool,
        gap: float,
        spread: float,
        body: float,
        floor: float,
        anomalous: bool,
    ) -> None:
        cfg = self._cfg
        # The reservoir always takes the value: median and IQR resist outliers by themselves,
        # and a genuine level shift takes it over once it fills about half of it.
        srt = self._sorted
        self._win_d.append(d)
        self._win_t.append(t)
        insort(srt, d)
        if len(srt) > cfg.window:
            old = self._win_d.pop(0)
            del self._win_t[0]
            del srt[bisect_left(srt, old)]
        last = self._last_finding
        if last >= 0 and self._n - last <= min(cfg.cooldown, _RELEARN):
            # Cooling down after a finding: adopt the current state as the new normal.
            m = len(srt)
            self._mu = srt[m // 2] if m % 2 else 0.5 * (srt[m // 2 - 1] + srt[m // 2])
            self._vlong = self._vshort
            self._var_q = max(self._var_q, _VAR_Q0 * self._vshort)
            self._flat_quiet = self._flat > 0  # a stuck run alarms once
        elif not anomalous:
            self._learn_slow(d, step, same, gap, spread, floor)
        self._learn_tail(abs_r, body, floor)
        if self._seasons and (not anomalous or self._active is None):
            self._learn_seasons(t, x)

    def _learn_slow(
        self, d: float, step: float, same: bool, gap: float, spread: float, floor: float
    ) -> None:
        """Huber-clipped EWMA mean / sigma of d, the long-run |step| and repeat share.

        While the fast baseline is more than two sigmas away from the slow one, sigma is
        frozen so that a creeping drift cannot widen its own yardstick.
        """
        cfg = self._cfg
        n = self._n_slow = self._n_slow + 1
        rate = cfg.alpha if cfg.alpha * n > 1.0 else 1.0 / n
        if step >= 0.0:
            vlong = self._vlong
            self._vlong = vlong = step if vlong <= 0.0 else vlong + rate * (step - vlong)
            self._p_same += rate * ((1.0 if same else 0.0) - self._p_same)
            q = self._var_q
            if q <= 0.0:
                q = _VAR_Q0 * vlong
            else:
                q *= self._var_up if self._vshort > q else self._var_down
            self._var_q = q if q > vlong else vlong
        if n == 1:
            self._mu = d
            return
        sigma = self._sigma
        e = d - self._mu
        if n <= cfg.warmup:  # plain running mean / RMS until there is something to clip to
            self._mu += rate * e
            self._sigma = _huber_sigma(sigma, e, rate, math.inf, floor)
        else:
            c = cfg.huber_c * (sigma if sigma > floor else floor)
            self._mu += rate * (c if e > c else (-c if e < -c else e))
            if abs(gap) <= _DRIFT_FREEZE * (sigma if sigma > floor else floor):
                self._sigma = _huber_sigma(sigma, e, rate, _SIGMA_CLIP, floor)
        ring = self._ring
        k = len(ring)
        if k == cfg.shift_window:
            mean = sum(ring) / k
            clip = math.inf if n <= cfg.warmup else cfg.huber_c
            self._shift_rms = _huber_sigma(self._shift_rms, mean, rate, clip, 1e-6)
            q = self._shift_q
            if q <= 0.0:
                q = _Q_GAUSS / math.sqrt(k)  # the iid Gaussian value
            else:
                q *= self._slow_up if abs(mean) > q else self._slow_down
            self._shift_q = q

    def _learn_tail(self, abs_r: float, body: float, floor: float) -> None:
        """Multiplicative quantile tracker of |residual|, fed by every point.

        Only the first point of a run of exceedances counts: isolated tail events (even
        ones flagged anomalous) teach the tail, so frequent "outliers" become normal, while
        a sustained excursion (an incident) does not. Never below 0.8x the body's Gaussian
        value; when it sits at the floor (a flat series) the first deviation re-seeds it.
        """
        tail = self._tail
        if tail <= 0.0:
            if len(self._sorted) >= 5:
                self._tail = _Q_GAUSS * body
            return
        if abs_r <= tail:
            self._exceeding = False
            tail *= self._down
        elif self._exceeding:
            return
        else:
            self._exceeding = True
            tail = 0.5 * abs_r if tail <= _Q_GAUSS * floor else tail * self._up
        low = 0.8 * _Q_GAUSS * body
        self._tail = tail if tail > low else low

    def _learn_seasons(self, t: float, x: float) -> None:
        cfg = self._cfg
        dt = self._dt
        for season in self._seasons:
            season.learn(t, x, dt, cfg)
        if t >= self._refresh_at:  # once per bucket of time: re-evaluate the profiles
            width = _REFRESH_S
            self._refresh_at = (math.floor(t / width) + 1.0) * width
            self._refresh_seasons(t)

    def _refresh_seasons(self, t: float) -> None:
        cfg = self._cfg
        span = t - (self._first_t if self._first_t is not None else t)
        best: _Season | None = None
        for season in self._seasons:
            season.refresh(span, cfg)
            if season.active and (best is None or season.within < 0.85 * best.within):
                best = season
        if best is not self._active:
            self._switch_profile(best)

    def _switch_profile(self, new: _Season | None) -> None:
        """Re-express the reservoir in the new profile's units and re-seed the tail."""
        old = self._active
        pairs = zip(self._win_d, self._win_t, strict=True)
        values = [d + _offset(old, t) - _offset(new, t) for d, t in pairs]
        self._win_d = array("d", values)
        self._sorted = srt = sorted(values)
        last_t = self._last_t
        if self._prev_d is not None and last_t is not None:
            self._prev_d += _offset(old, last_t) - _offset(new, last_t)
        if len(srt) >= 5:
            centre, iqr_sigma = _median_iqr_sigma(srt, len(srt))
            floor = max(self._cfg.abs_floor, self._cfg.rel_floor * abs(centre))
            self._tail = _Q_GAUSS * max(iqr_sigma, self._vlong * _STEP_SIGMA, floor)
        self._active = new

    def _skipped(self) -> Update:
        """The verdict on an unusable point: nothing learned, nothing flagged."""
        srt = self._sorted
        if not srt:
            return Update(0.0, 0.0, False, False, None, 0.0, 0.0)
        off = 0.0
        if self._active is not None and self._last_t is not None:
            off = self._active.offset(self._last_t)
        centre, body, _ = self._baseline(0.0, off)
        spread = max(body, self._tail / _Q_GAUSS)
        return Update(0.0, 0.0, False, False, None, centre + off, spread)

    # -- state ----------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """JSON-able snapshot of everything the detector learned (bounded size)."""
        return {
            "v": STATE_VERSION,
            "n": self._n,
            "first_t": self._first_t,
            "last_t": self._last_t,
            "dt": self._dt,
            "win_d": list(self._win_d),
            "win_t": list(self._win_t),
            "mu": self._mu,
            "sigma": self._sigma,
            "n_slow": self._n_slow,
            "tail": self._tail,
            "exceeding": self._exceeding,
            "vshort": self._vshort,
            "vlong": self._vlong,
            "var_q": self._var_q,
            "prev_d": self._prev_d,
            "prev_x": self._prev_x,
            "flat": self._flat,
            "flat_quiet": self._flat_quiet,
            "p_same": self._p_same,
            "ring": list(self._ring),
            "shift_q": self._shift_q,
            "shift_rms": self._shift_rms,
            "recent": [list(item) for item in self._recent],
            "run": self._run,
            "peak": [self._peak_z, self._peak_kind],
            "last_finding": self._last_finding,
            "gate": list(self._gate),
            "lk_ring": list(self._lk_ring),
            "lk": list(self._lk),
            "lk_n": self._lk_n,
            "mem": [list(item) for item in self._mem],
            "range": [self._lo, self._hi],
            "mem_state": [self._mem_state, self._mem_quiet],
            "seasons": [season.to_state() for season in self._seasons],
            "active": None if self._active is None else self._active.period,
            "refresh_at": self._refresh_at if math.isfinite(self._refresh_at) else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: DetectorConfig | None = None) -> Detector:
        """Rebuild a detector from `to_state()`; it continues exactly as the original would.

        Pass the config the state was produced with. With a smaller `window` the newest
        values are kept; seasons missing from the state start fresh.
        """
        if state.get("v") != STATE_VERSION:
            raise ValueError(f"unsupported detector state version {state.get('v')!r}")
        det = cls(config)
        keep = det._cfg.window
        det._n = int(state["n"])
        det._first_t = _opt_float(state["first_t"])
        det._last_t = _opt_float(state["last_t"])
        det._dt = float(state["dt"])
        win_d = [float(v) for v in state["win_d"]][-keep:]
        det._win_d = array("d", win_d)
        det._win_t = array("d", [float(v) for v in state["win_t"][-keep:]])
        det._sorted = sorted(win_d)
        det._mu = float(state["mu"])
        det._sigma = float(state["sigma"])
        det._n_slow = int(state["n_slow"])
        det._tail = float(state["tail"])
        det._exceeding = bool(state["exceeding"])
        det._vshort = float(state["vshort"])
        det._vlong = float(state["vlong"])
        det._var_q = float(state["var_q"])
        det._prev_d = _opt_float(state["prev_d"])
        det._prev_x = _opt_float(state["prev_x"])
        det._flat = int(state["flat"])
        det._flat_quiet = bool(state["flat_quiet"])
        det._p_same = float(state["p_same"])
        det._ring = array("d", [float(v) for v in state["ring"]])
        det._shift_q = float(state["shift_q"])
        det._shift_rms = float(state["shift_rms"])
        det._recent = deque((int(i), int(sign)) for i, sign in state["recent"])
        det._run = int(state["run"])
        det._peak_z, det._peak_kind = float(state["peak"][0]), state["peak"][1]
        det._last_finding = int(state["last_finding"])
        det._gate = array("d", [float(v) for v in state["gate"]])
        det._lk_ring = array("d", [float(v) for v in state["lk_ring"]])
        det._lk = [float(v) for v in state["lk"]]
        det._lk_n = int(state["lk_n"])
        det._lo, det._hi = (float(v) for v in state.get("range", [0.0, 0.0]))
        det._mem = [[float(v) for v in item] for item in state.get("mem", [])][-_MEM_SIZE:]
        mem_state = state.get("mem_state", [0, 0])
        det._mem_state, det._mem_quiet = int(mem_state[0]), int(mem_state[1])
        stored = {float(s["period"]): s for s in state.get("seasons", [])}
        buckets = det._cfg.season_buckets
        det._seasons = [
            _Season.from_state(stored[s.period], s.period / buckets) if s.period in stored else s
            for s in det._seasons
        ]
        active = state.get("active")
        det._active = next(
            (s for s in det._seasons if active is not None and s.period == float(active)), None
        )
        refresh_at = state.get("refresh_at")
        det._refresh_at = -math.inf if refresh_at is None else float(refresh_at)
        return det


def _t_to_z(t: float, dof: float) -> float:
    """The Gaussian z with the tail probability of Student's t with `dof` degrees of
    freedom at t (Wallace's approximation, within 0.02 for dof >= 10): a z measured
    against a scale learned from few points counts for less."""
    if dof < 1.0:
        dof = 1.0
    return math.sqrt(dof * math.log1p(t * t / dof)) * (8.0 * dof + 1.0) / (8.0 * dof + 3.0)


def _floored_sd(var: float) -> float:
    sd = math.sqrt(var)
    return sd if sd > _LK_SD_FLOOR else _LK_SD_FLOOR


def _learn_moments(lk: list[float], i: int, e: float, sd: float, rate: float) -> None:
    """One Huber-clipped EWMA step of lk[i] (mean) and lk[i + 1] (variance)."""
    c = _LK_CLIP * sd
    ec = c if e > c else (-c if e < -c else e)
    lk[i] += rate * ec
    lk[i + 1] += rate * (ec * ec - lk[i + 1])


def _tail_score(u: float) -> float:
    """-log10 of the upper Gaussian tail probability Q(u), divided by 10, in [0, 1]."""
    if u <= 0.0:
        return 0.0
    if u < 8.0:
        q = 0.5 * math.erfc(u / math.sqrt(2.0))
        s = -math.log10(q) / 10.0
    else:  # asymptotic: ln Q(u) ~ -u^2/2 - ln(u sqrt(2 pi))
        s = (0.5 * u * u + math.log(u) + 0.9189385332046727) / _LN10 / 10.0
    return s if s < 1.0 else 1.0


def _median_iqr_sigma(srt: list[float], m: int) -> tuple[float, float]:
    """Median and IQR / 1.349 of a sorted, non-empty list (linear interpolation)."""
    h = m // 2
    median = srt[h] if m % 2 else 0.5 * (srt[h - 1] + srt[h])
    if m < 4:
        return median, 0.0
    pos = (m - 1) * 0.25
    i = int(pos)
    f = pos - i
    lo = srt[i] + f * (srt[i + 1] - srt[i])
    j = m - 1 - i
    hi = srt[j] - f * (srt[j] - srt[j - 1])
    return median, (hi - lo) / _IQR_SIGMA


def _offset(season: _Season | None, t: float) -> float:
    return 0.0 if season is None else season.offset(t)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def run_detector(
    timestamps: Iterable[float], values: Iterable[float], config: DetectorConfig | None = None
) -> list[Update]:
    """Run a fresh detector over a whole series, point by point; one Update per point."""
    det = Detector(config)
    return [det.update(t, v) for t, v in zip(timestamps, values, strict=True)]
