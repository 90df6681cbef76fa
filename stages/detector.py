"""Streaming anomaly detector for one metric series. Pure: no clocks, no I/O, stdlib only.

One `Detector` per series; feed it points in time order with `update(ts, value)` and
read an `Update` back. Its whole state is a bounded JSON-able dict (`to_state`), so it
can live in a compacted Kafka changelog keyed by series and be restored exactly
(`from_state`).

Method
------
Every finite point x at time t (epoch seconds) goes through these steps. "Before the
update" means the baseline used to judge a point never contains the point itself.

1. Seasonal adjustment. For each configured season (default hour-of-day, 86 400 s, and
   hour-of-week, 604 800 s) the detector learns in the background an additive profile:
   one offset per `season_bucket` (1 h) bucket, relative to a slowly moving level
   (Holt-Winters style, Huber-clipped updates, so an incident or a level shift barely
   bends it). A profile is used only once it has `season_min_cycles` (2) cycles of
   history in every bucket and it explains enough variance: strength
   var(offsets) / (var(offsets) + var(residual within buckets)) >= `season_strength`
   (with hysteresis). Then d = x - offset(t), interpolated linearly between bucket
   centres; otherwise d = x (the global baseline).
2. Fast robust baseline: median and IQR/1.349 of the last `window` values of d (a
   bounded, sorted reservoir). A few outliers cannot move it; a genuine level shift
   becomes the new normal once it fills about half the reservoir.
3. Slow baseline: EWMA mean and variance of d with rate `alpha`, Huber-clipped at
   `huber_c` sigmas, updated only by points that are not anomalous.
4. Spread used for z-scores: max(fast IQR sigma, tail sigma, floor). The tail sigma is
   the online `tail_quantile` (99 %) of |residual| of normal points divided by the
   Gaussian value 2.576, tracked multiplicatively (up fast, down slowly): on Gaussian
   noise it equals sigma; on heavy-tailed or low-count data it widens the threshold so
   ordinary tail events do not alarm. The floor max(abs_floor, rel_floor * |level|)
   makes a constant series (spread 0) safe: no division by zero, any change stands out.
5. Three channels, each turned into a signed z on the point scale
   (`threshold_z` means "anomalous" for all of them):
   - point: z = (d - fast median) / spread (spikes, dips, the start of a level shift);
   - drift: (fast median - slow mean) / max(slow sigma, spread), anomalous at `drift_z`
     (slow drifts that the fast baseline follows);
   - variance: ratio of a short EWMA (`fast_alpha`) to a long EWMA of the clipped
     |residual|; anomalous when it rises by `variance_ratio` or collapses below
     `flatline_ratio` (a stuck metric). Mapped with a log scale.
   The channel with the largest |z| is reported; `kind` is its best guess: spike/dip
   (a point excursion), level_shift (>= `shift_run` consecutive same-sign excursions),
   variance_change (variance channel, or excursions of both signs within the
   evaluation window), drift.
6. Findings follow the seed's AlertRule: a finding fires on an anomalous point when at
   least `min_occurrences` anomalous points fall within the last `evaluation_window`
   points, no earlier finding is within `cooldown` points, and warm-up is over.
7. Re-learning: during the cooldown after a finding the slow references adopt the
   current state (slow mean := fast median, long variance := short variance), so a
   persistent change raises one finding and then becomes the new normal instead of
   alarming forever. A still-running drift raises a fresh finding once it has moved
   far enough again.

Score: 0 during warm-up, else 0 for |z| <= threshold_z / 2 and
``1 - 2 ** (-(|z| - threshold_z / 2) / (threshold_z / 2))`` above: monotone in |z|,
0.5 exactly at the threshold, 0.75 at 1.5x, -> 1 for huge |z|.

Quirks: NaN/inf (or non-numeric) values and timestamps are skipped without touching the
state; magnitudes beyond 1e150 are clamped so nothing overflows; irregular sampling is
fine (windows and rates count points, seasons use timestamps; the typical interval is
tracked to scale the seasonal learning rate); out-of-order points are processed as if
they arrived at the latest timestamp seen.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["STATE_VERSION", "Detector", "DetectorConfig", "Update", "run_detector", "score_for"]

STATE_VERSION = 1
_Q_GAUSS = 2.5758293035489004  # two-sided 99 % quantile of |N(0, 1)|
_IQR_SIGMA = 1.3489795003921634  # IQR of N(0, 1)
_MEAN_ABS = 0.7978845608028654  # E|N(0, 1)|
_MAX_ABS = 1e150  # inputs are clamped here so squares never overflow
_LEVEL_SHIFT = "level_shift"
_SEASON_RATE = 0.01  # EWMA rate of the seasonal residual sigmas
_STEP_SIGMA = 1.0 / (_MEAN_ABS * math.sqrt(2.0))  # mean |step| of iid noise -> sigma


@dataclass(frozen=True)
class DetectorConfig:
    """Detector parameters. Counts are in points; times in seconds."""

    warmup: int = 30  # points before anything can fire (score 0 during warm-up)
    alpha: float = 0.003  # EWMA rate of the slow (Huber-clipped) mean/variance
    threshold_z: float = 4.0  # |z| at which a point is anomalous
    min_occurrences: int = 2  # anomalous points within evaluation_window to make a finding
    evaluation_window: int = 5  # points
    cooldown: int = 40  # points after a finding before another can be raised
    seasonality: tuple[float, ...] = (86_400.0, 604_800.0)  # season lengths (s) to try
    season_bucket: float = 3_600.0  # bucket width of a seasonal profile (s)
    season_min_cycles: float = 2.0  # cycles of history before a profile may be used
    season_strength: float = 0.3  # share of variance a profile must explain to be used
    window: int = 40  # robust reservoir (median / IQR) size
    tail_quantile: float = 0.99  # quantile of |residual| tracked for tail calibration
    tail_rate: float = 0.05  # log-step of the tail tracker
    drift_z: float = 5.0  # fast-vs-slow baseline gap (in slow sigmas) that is anomalous
    variance_ratio: float = 2.5  # short/long dispersion ratio that is anomalous
    flatline_ratio: float = 0.1  # ... and the collapse ratio (stuck metric)
    fast_alpha: float = 0.1  # EWMA rate of the short-term dispersion
    huber_c: float = 3.0  # clipping (sigmas) of every learning update
    rel_floor: float = 1e-6  # spread floor relative to |level|
    abs_floor: float = 1e-9  # absolute spread floor
    shift_run: int = 3  # consecutive same-sign excursions that make a level shift

    def __post_init__(self) -> None:
        positive_ints = ("window", "min_occurrences", "evaluation_window", "shift_run")
        for name in positive_ints:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.warmup < 0 or self.cooldown < 0:
            raise ValueError("warmup and cooldown must be >= 0")
        if self.min_occurrences > self.evaluation_window:
            raise ValueError("min_occurrences must be <= evaluation_window")
        for name in ("alpha", "fast_alpha", "tail_quantile"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1)")
        for name in ("threshold_z", "drift_z", "huber_c", "tail_rate", "season_bucket"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name} must be > 0")
        if not self.variance_ratio > 1.0 or not 0.0 < self.flatline_ratio < 1.0:
            raise ValueError("variance_ratio must be > 1 and flatline_ratio in (0, 1)")
        if self.rel_floor < 0 or self.abs_floor <= 0:
            raise ValueError("rel_floor must be >= 0 and abs_floor > 0")
        for period in self.seasonality:
            if not period >= 2 * self.season_bucket:
                raise ValueError(f"season {period!r} must span >= 2 buckets")


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


def score_for(z: float, threshold_z: float) -> float:
    """Map |z| to [0, 1]: 0 up to threshold/2, 0.5 at the threshold, -> 1 beyond."""
    half = 0.5 * threshold_z
    excess = abs(z) - half
    if excess <= 0.0:
        return 0.0
    return 1.0 - 2.0 ** (-excess / half)


class _Season:
    """Background-learned additive profile for one season length (Holt-Winters style).

    ``x ~ level + offset[bucket]``: the level is an EWMA of the deseasonalised value with a
    time constant of half a period, each bucket offset an EWMA over about three cycles of
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
        self.buckets = [0.0] * self.nb
        self.counts = [0] * self.nb
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
        """Profile offset at t, interpolated between bucket centres, zero-mean."""
        u = (t % self.period) / self.width - 0.5
        i0 = math.floor(u)
        w = u - i0
        nb = self.nb
        i0 %= nb
        o = self.buckets
        a = o[i0]
        return a + w * (o[(i0 + 1) % nb] - a) - self.mean_offset

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
            season.buckets = [float(v) for v in state["buckets"]]
            season.counts = [int(v) for v in state["counts"]]
            season.filled = int(state["filled"])
            season.level = _opt_float(state["level"])
            season.within = float(state["within"])
            season.total = float(state["total"])
            season.mean_offset = float(state["mean_offset"])
            season.strength = float(state["strength"])
            season.active = bool(state["active"])
        return season


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
        "_first_t",
        "_last_finding",
        "_last_t",
        "_mu",
        "_n",
        "_n_slow",
        "_prev_d",
        "_recent",
        "_refresh_at",
        "_run",
        "_seasons",
        "_sigma",
        "_sorted",
        "_tail",
        "_up",
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
        self._n = 0  # valid points seen
        self._first_t: float | None = None
        self._last_t: float | None = None
        self._dt = 0.0  # typical sampling interval (EWMA of clipped gaps)
        self._win_d: deque[float] = deque()  # reservoir, arrival order
        self._win_t: deque[float] = deque()
        self._sorted: list[float] = []  # the same values, sorted
        self._mu = 0.0  # slow EWMA mean
        self._sigma = 0.0  # slow EWMA sigma
        self._n_slow = 0
        self._tail = 0.0  # tracked tail quantile of |residual|
        self._vshort = 0.0
        self._vlong = 0.0
        self._prev_d: float | None = None  # previous deseasonalised value
        self._recent: deque[tuple[int, int]] = deque()  # (index, sign) of recent anomalies
        self._run = 0  # signed run length of consecutive point excursions
        self._last_finding = -1
        self._seasons = [_Season(float(p), cfg.season_bucket) for p in cfg.seasonality]
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
        """Judge one point, then learn from it."""
        try:
            x = float(value)
            t = float(ts)
        except (TypeError, ValueError):
            return self._skipped()
        if not (math.isfinite(x) and math.isfinite(t)):
            return self._skipped()
        if x > _MAX_ABS:
            x = _MAX_ABS
        elif x < -_MAX_ABS:
            x = -_MAX_ABS
        cfg = self._cfg
        n = self._n + 1
        self._n = n
        last_t = self._last_t
        if last_t is None:
            self._first_t = self._last_t = t
        elif t > last_t:
            gap = t - last_t
            dt = self._dt
            self._dt = gap if dt <= 0.0 else dt + 0.05 * ((gap if gap < 10 * dt else 10 * dt) - dt)
            self._last_t = t
        else:
            t = last_t

        active = self._active
        off = active.offset(t) if active is not None else 0.0
        d = x - off

        # Baseline before the update.
        srt = self._sorted
        m = len(srt)
        if m:
            centre, iqr_sigma = _median_iqr_sigma(srt, m)
        else:
            centre, iqr_sigma = d, 0.0
        level = centre + off
        floor = cfg.rel_floor * abs(level)
        if floor < cfg.abs_floor:
            floor = cfg.abs_floor
        spread = self._tail / _Q_GAUSS
        if spread < iqr_sigma:
            spread = iqr_sigma
        step_sigma = self._vlong * _STEP_SIGMA
        if spread < step_sigma:
            spread = step_sigma
        if spread < floor:
            spread = floor
        r = d - centre
        thr = cfg.threshold_z

        # Channels.
        z = r / spread
        channel = 0  # 0 point, 1 drift, 2 variance
        gap = centre - self._mu
        if self._n_slow:
            ref = self._sigma if self._sigma > spread else spread
            zd = gap / ref * (thr / cfg.drift_z)
            if abs(zd) > abs(z):
                z, channel = zd, 1
        prev = self._prev_d
        self._prev_d = d
        vlong = self._vlong
        vs = self._vshort
        a: float | None = None
        if prev is not None:
            a = abs(d - prev)
            clip = thr * vlong / _MEAN_ABS
            if a > clip > 0.0:
                a = clip
            fa = cfg.fast_alpha
            vs = a if n == 2 else vs + (fa if fa * (n - 1) > 1.0 else 1.0 / (n - 1)) * (a - vs)
            self._vshort = vs
        if vlong > 0.0:
            fl = _MEAN_ABS * floor
            ratio = (vs if vs > fl else fl) / (vlong if vlong > fl else fl)
            if ratio > 1.0:
                zv = thr * math.log(ratio) / math.log(cfg.variance_ratio)
            else:
                zv = -thr * math.log(ratio) / math.log(cfg.flatline_ratio)
            if abs(zv) > abs(z):
                z, channel = zv, 2

        warm = n <= cfg.warmup
        anomalous = not warm and abs(z) >= thr
        point_out = not warm and abs(r) >= thr * spread
        run = self._run
        if not point_out:
            run = 0
        elif r > 0:
            run = run + 1 if run > 0 else 1
        else:
            run = run - 1 if run < 0 else -1
        self._run = run

        kind: str | None = None
        finding = False
        recent = self._recent
        while recent and recent[0][0] <= n - cfg.evaluation_window:
            recent.popleft()
        if anomalous:
            sign = 1 if z > 0 else -1
            recent.append((n, sign))
            kind = self._kind(channel, z, run)
            last = self._last_finding
            if len(recent) >= cfg.min_occurrences and (last < 0 or n - last > cfg.cooldown):
                finding = True
                self._last_finding = n
        self._learn(t, x, d, r, a, gap, spread, floor, anomalous)

        if warm:
            return Update(0.0, 0.0, False, False, None, level, spread)
        return Update(score_for(z, thr), z, anomalous, finding, kind, level, spread)

    def _kind(self, channel: int, z: float, run: int) -> str:
        if channel == 1:
            return "drift"
        if channel == 2:
            return "variance_change"
        signs = {s for _, s in self._recent}
        if len(signs) > 1:
            return "variance_change"
        if abs(run) >= self._cfg.shift_run:
            return _LEVEL_SHIFT
        return "spike" if z > 0 else "dip"

    def _learn(
        self,
        t: float,
        x: float,
        d: float,
        r: float,
        a: float | None,
        gap: float,
        spread: float,
        floor: float,
        anomalous: bool,
    ) -> None:
        cfg = self._cfg
        # Robust reservoir: always takes the value (median/IQR resist outliers by themselves).
        srt = self._sorted
        self._win_d.append(d)
        self._win_t.append(t)
        insort(srt, d)
        if len(self._win_d) > cfg.window:
            old = self._win_d.popleft()
            self._win_t.popleft()
            del srt[bisect_left(srt, old)]
        last = self._last_finding
        cooling = last >= 0 and self._n - last <= cfg.cooldown
        if cooling:  # adopt the current state as the new normal
            m = len(srt)
            self._mu = srt[m // 2] if m % 2 else 0.5 * (srt[m // 2 - 1] + srt[m // 2])
            self._vlong = self._vshort
        elif not anomalous:
            self._learn_slow(d, a, gap, spread, floor)
        if not anomalous:
            self._learn_tail(abs(r), spread, floor)
            self._learn_seasons(t, x)

    def _learn_slow(
        self, d: float, a: float | None, gap: float, spread: float, floor: float
    ) -> None:
        """Huber-clipped EWMA mean / sigma of d and the long-term dispersion of its steps.

        While the fast baseline is more than one sigma away from the slow one, sigma is
        frozen so that a creeping drift cannot widen its own yardstick.
        """
        cfg = self._cfg
        n = self._n_slow + 1
        self._n_slow = n
        rate = cfg.alpha if cfg.alpha * n > 1.0 else 1.0 / n
        if a is not None:
            vlong = self._vlong
            self._vlong = a if vlong <= 0.0 else vlong + rate * (a - vlong)
        if n == 1:
            self._mu = d
            return
        sigma = self._sigma
        e = d - self._mu
        c = cfg.huber_c * (sigma if sigma > floor else floor)
        self._mu += rate * (c if e > c else (-c if e < -c else e))
        ref = sigma if sigma > spread else spread
        if abs(gap) <= ref:
            self._sigma = _huber_sigma(sigma, e, rate, cfg.huber_c, floor)

    def _learn_tail(self, a: float, spread: float, floor: float) -> None:
        tail = self._tail
        if tail <= 0.0:
            if len(self._sorted) >= 5:
                self._tail = _Q_GAUSS * spread
            return
        tail = tail * self._up if a > tail else tail * self._down
        self._tail = tail if tail > floor else floor

    def _learn_seasons(self, t: float, x: float) -> None:
        seasons = self._seasons
        if not seasons:
            return
        cfg = self._cfg
        dt = self._dt
        for season in seasons:
            season.learn(t, x, dt, cfg)
        if t >= self._refresh_at:  # once per bucket of time: re-evaluate the profiles
            width = cfg.season_bucket
            self._refresh_at = (math.floor(t / width) + 1.0) * width
            self._refresh_seasons(t)

    def _refresh_seasons(self, t: float) -> None:
        cfg = self._cfg
        span = t - (self._first_t if self._first_t is not None else t)
        best: _Season | None = None
        for season in self._seasons:
            season.refresh(span, cfg)
            if season.active and (
                best is None or season.within < 0.85 * best.within or not best.active
            ):
                best = season
        if best is not self._active:
            self._switch_profile(best)

    def _switch_profile(self, new: _Season | None) -> None:
        """Re-express the reservoir in the new profile's deseasonalised units."""
        old = self._active
        values = []
        for d, t in zip(self._win_d, self._win_t, strict=True):
            x = d + (old.offset(t) if old is not None else 0.0)
            values.append(x - (new.offset(t) if new is not None else 0.0))
        self._win_d = deque(values)
        self._sorted = srt = sorted(values)
        if len(srt) >= 5:  # the residual scale changed: re-seed the tail tracker
            centre, iqr_sigma = _median_iqr_sigma(srt, len(srt))
            floor = max(self._cfg.abs_floor, self._cfg.rel_floor * abs(centre))
            self._tail = _Q_GAUSS * max(iqr_sigma, self._vlong * _STEP_SIGMA, floor)
        t = self._last_t
        if self._prev_d is not None and t is not None:
            self._prev_d += (old.offset(t) if old is not None else 0.0) - (
                new.offset(t) if new is not None else 0.0
            )
        self._active = new

    def _skipped(self) -> Update:
        """The verdict on an unusable point: nothing learned, nothing flagged."""
        srt = self._sorted
        m = len(srt)
        if not m:
            return Update(0.0, 0.0, False, False, None, 0.0, 0.0)
        centre, iqr_sigma = _median_iqr_sigma(srt, m)
        if self._active is not None and self._last_t is not None:
            centre += self._active.offset(self._last_t)
        cfg = self._cfg
        floor = max(cfg.abs_floor, cfg.rel_floor * abs(centre))
        spread = max(iqr_sigma, self._tail / _Q_GAUSS, floor)
        return Update(0.0, 0.0, False, False, None, centre, spread)

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
            "vshort": self._vshort,
            "vlong": self._vlong,
            "prev_d": self._prev_d,
            "recent": [list(item) for item in self._recent],
            "run": self._run,
            "last_finding": self._last_finding,
            "seasons": [season.to_state() for season in self._seasons],
            "active": None if self._active is None else self._active.period,
            "refresh_at": self._refresh_at if math.isfinite(self._refresh_at) else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: DetectorConfig | None = None) -> Detector:
        """Rebuild a detector from `to_state()`; it continues exactly as the original would.

        Pass the same config the state was produced with. A different `window` keeps the
        newest values; seasons not in the state start fresh.
        """
        if int(state.get("v", -1)) != STATE_VERSION:
            raise ValueError(f"unsupported detector state version {state.get('v')!r}")
        det = cls(config)
        cfg = det._cfg
        det._n = int(state["n"])
        det._first_t = _opt_float(state["first_t"])
        det._last_t = _opt_float(state["last_t"])
        det._dt = float(state["dt"])
        win_d = [float(v) for v in state["win_d"]][-cfg.window :]
        win_t = [float(v) for v in state["win_t"]][-cfg.window :]
        det._win_d = deque(win_d)
        det._win_t = deque(win_t)
        det._sorted = sorted(win_d)
        det._mu = float(state["mu"])
        det._sigma = float(state["sigma"])

        det._n_slow = int(state["n_slow"])
        det._tail = float(state["tail"])
        det._vshort = float(state["vshort"])
        det._vlong = float(state["vlong"])
        det._prev_d = _opt_float(state["prev_d"])
        det._recent = deque((int(i), int(s)) for i, s in state["recent"])
        det._run = int(state["run"])
        det._last_finding = int(state["last_finding"])
        stored = {float(s["period"]): s for s in state.get("seasons", [])}
        det._seasons = [
            _Season.from_state(stored[s.period], cfg.season_bucket) if s.period in stored else s
            for s in det._seasons
        ]
        refresh_at = state.get("refresh_at")
        det._refresh_at = -math.inf if refresh_at is None else float(refresh_at)
        active = state.get("active")
        det._active = next(
            (s for s in det._seasons if active is not None and s.period == float(active)), None
        )
        return det


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


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def run_detector(
    timestamps: Iterable[float], values: Iterable[float], config: DetectorConfig | None = None
) -> list[Update]:
    """Run a fresh detector over a whole series, point by point; one Update per point."""
    det = Detector(config)
    return [det.update(t, v) for t, v in zip(timestamps, values, strict=True)]
