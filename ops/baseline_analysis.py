"""Baseline analysis of one metric series , as pure functions.

`analyze(values, timestamps)` summarises a stretch of history and recommends alert
thresholds for it:

- descriptive statistics: count, mean, sample standard deviation (n - 1; 0 for a single
  value), min, max and the percentiles p50, p95, p99 (linear interpolation between closest
  ranks, numpy's default);
- recommended thresholds, as in the seed: critical = mean +- 3 sigma, high = mean +- 2
  sigma, medium = mean +- 1 sigma, low (upper) = P95;
- IQR outliers: q1 and q3 (same percentile rule), iqr = q3 - q1, fences
  q1 - 1.5 iqr and q3 + 1.5 iqr; values strictly outside the fences are outliers;
- anomalies: the findings of the streaming `Detector` (detection.detector) run point by
  point, exactly as the pipeline would see the series. Without timestamps the points are
  taken as one minute apart and seasonality is switched off (there is no clock to learn
  it from);
- a stability score from 0 (erratic) to 100 (perfectly stable)::

      cv      = std / |mean|                    (0 when std is 0; "infinite" when mean is 0)
      share   = IQR outliers / count
      drift   = |mean(second half) - mean(first half)| / std   (0 when std is 0)
      score   = 100 - 40 * min(cv, 1) - 30 * min(share / 0.10, 1) - 30 * min(drift / 2, 1)

  so relative noise costs up to 40 points (all of it at cv >= 1), outliers up to 30 (all
  at 10 % of points) and a shift between the halves up to 30 (all at 2 sigma). A
  constant series scores 100.

Non-finite values (NaN, +-inf) are skipped: they are not counted, but indices in the
report always refer to positions in the input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from detection.detector import DetectorConfig, run_detector

__all__ = [
    "Anomaly",
    "BaselineReport",
    "IQROutliers",
    "Thresholds",
    "analyze",
    "format_text",
    "percentile",
    "stability_score",
]

NO_CLOCK_STEP_S = 60.0  # spacing assumed when no timestamps are given


@dataclass(frozen=True)
class Thresholds:
    """Recommended alert thresholds (the sigma ladder plus P95)."""

    critical_upper: float  # mean + 3 sigma
    high_upper: float  # mean + 2 sigma
    medium_upper: float  # mean + 1 sigma
    low_upper: float  # P95
    medium_lower: float  # mean - 1 sigma
    high_lower: float  # mean - 2 sigma
    critical_lower: float  # mean - 3 sigma


@dataclass(frozen=True)
class IQROutliers:
    """Tukey fences and the points outside them."""

    q1: float
    q3: float
    iqr: float
    lower_fence: float
    upper_fence: float
    indices: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Anomaly:
    """One finding of the streaming detector."""

    index: int
    timestamp: float | None
    value: float
    kind: str | None
    score: float
    z: float


@dataclass(frozen=True)
class BaselineReport:
    """Everything `analyze` found; `to_dict()` is JSON-able."""

    count: int
    skipped: int  # non-finite inputs
    mean: float
    std: float
    min: float
    max: float
    p50: float
    p95: float
    p99: float
    thresholds: Thresholds
    outliers: IQROutliers
    anomalies: list[Anomaly]
    anomalous_points: int  # points beyond the detector's threshold (findings or not)
    stability_score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) of sorted values, linear between closest ranks."""
    if not sorted_values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= p <= 100.0:
        raise ValueError("p must be in [0, 100]")
    pos = (len(sorted_values) - 1) * p / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + frac * (sorted_values[hi] - sorted_values[lo])


def stability_score(values: Sequence[float], outlier_count: int) -> float:
    """0-100 stability of finite values; see the module docstring for the formula."""
    n = len(values)
    if n == 0:
        raise ValueError("stability of an empty sequence")
    mean = math.fsum(values) / n
    std = _sample_std(values, mean)
    if std == 0.0:
        cv = drift = 0.0
    else:
        cv = std / abs(mean) if mean != 0.0 else math.inf
        half = n // 2
        first, second = values[:half], values[half:]
        drift = abs(_mean(second) - _mean(first)) / std if half else 0.0
    share = outlier_count / n
    score = 100.0 - 40.0 * min(cv, 1.0) - 30.0 * min(share / 0.10, 1.0) - 30.0 * min(drift / 2, 1.0)
    return round(max(0.0, score), 2)


def analyze(
    values: Sequence[float],
    timestamps: Sequence[float] | None = None,
    detector_config: DetectorConfig | None = None,
) -> BaselineReport:
    """Baseline statistics, thresholds, outliers, detector findings and stability."""
    if timestamps is not None and len(timestamps) != len(values):
        raise ValueError(f"{len(timestamps)} timestamps for {len(values)} values")
    finite = [(i, float(v)) for i, v in enumerate(values) if _is_finite(v)]
    if not finite:
        raise ValueError("no finite values to analyze")
    xs = [v for _, v in finite]
    n = len(xs)
    mean = math.fsum(xs) / n
    std = _sample_std(xs, mean)
    ordered = sorted(xs)
    outliers = _iqr_outliers(finite, ordered)
    anomalies, anomalous_points = _detect(values, timestamps, detector_config)
    return BaselineReport(
        count=n,
        skipped=len(values) - n,
        mean=mean,
        std=std,
        min=ordered[0],
        max=ordered[-1],
        p50=percentile(ordered, 50),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        thresholds=_thresholds(mean, std, percentile(ordered, 95)),
        outliers=outliers,
        anomalies=anomalies,
        anomalous_points=anomalous_points,
        stability_score=stability_score(xs, len(outliers.indices)),
    )


def format_text(report: BaselineReport) -> str:
    """A human-readable rendering of a report."""
    t = report.thresholds
    o = report.outliers
    skipped = f" ({report.skipped} non-finite skipped)" if report.skipped else ""
    lines = [
        "BASELINE ANALYSIS",
        f"  points            {report.count}{skipped}",
        f"  mean / std        {_num(report.mean)} / {_num(report.std)}",
        f"  min / max         {_num(report.min)} / {_num(report.max)}",
        f"  p50 / p95 / p99   {_num(report.p50)} / {_num(report.p95)} / {_num(report.p99)}",
        f"  stability score   {report.stability_score:.1f} / 100",
        "RECOMMENDED THRESHOLDS",
        f"  critical (3 sigma)  > {_num(t.critical_upper)}   < {_num(t.critical_lower)}",
        f"  high     (2 sigma)  > {_num(t.high_upper)}   < {_num(t.high_lower)}",
        f"  medium   (1 sigma)  > {_num(t.medium_upper)}   < {_num(t.medium_lower)}",
        f"  low      (P95)      > {_num(t.low_upper)}",
        "IQR OUTLIERS",
        f"  q1 {_num(o.q1)}  q3 {_num(o.q3)}  iqr {_num(o.iqr)}  "
        f"fences [{_num(o.lower_fence)}, {_num(o.upper_fence)}]",
        f"  {len(o.indices)} outlier(s)" + _preview(o.indices, o.values),
        "DETECTOR FINDINGS",
        f"  {len(report.anomalies)} finding(s), {report.anomalous_points} anomalous point(s)",
    ]
    for a in report.anomalies[:20]:
        when = f" t={_num(a.timestamp)}" if a.timestamp is not None else ""
        lines.append(
            f"  #{a.index}{when} value={_num(a.value)} kind={a.kind} "
            f"score={a.score:.3f} z={a.z:+.2f}"
        )
    if len(report.anomalies) > 20:
        lines.append(f"  ... {len(report.anomalies) - 20} more")
    return "\n".join(lines) + "\n"


# -- helpers --------------------------------------------------------------------------


def _is_finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _sample_std(values: Sequence[float], mean: float) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def _thresholds(mean: float, std: float, p95: float) -> Thresholds:
    return Thresholds(
        critical_upper=mean + 3 * std,
        high_upper=mean + 2 * std,
        medium_upper=mean + std,
        low_upper=p95,
        medium_lower=mean - std,
        high_lower=mean - 2 * std,
        critical_lower=mean - 3 * std,
    )


def _iqr_outliers(finite: list[tuple[int, float]], ordered: list[float]) -> IQROutliers:
    q1 = percentile(ordered, 25)
    q3 = percentile(ordered, 75)
    iqr = q3 - q1
    lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    out = [(i, v) for i, v in finite if v < lo or v > hi]
    return IQROutliers(q1, q3, iqr, lo, hi, [i for i, _ in out], [v for _, v in out])


def _detect(
    values: Sequence[float], timestamps: Sequence[float] | None, config: DetectorConfig | None
) -> tuple[list[Anomaly], int]:
    cfg = config if config is not None else DetectorConfig()
    if timestamps is None:
        cfg = replace(cfg, seasonality=())
        clock: Sequence[float] = [i * NO_CLOCK_STEP_S for i in range(len(values))]
    else:
        clock = timestamps
    updates = run_detector(clock, values, cfg)
    anomalies = [
        Anomaly(
            index=i,
            timestamp=None if timestamps is None else float(timestamps[i]),
            value=float(values[i]),
            kind=u.kind,
            score=u.score,
            z=u.z,
        )
        for i, u in enumerate(updates)
        if u.finding
    ]
    return anomalies, sum(1 for u in updates if u.anomalous)


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}"


def _preview(indices: list[int], values: list[float], limit: int = 10) -> str:
    if not indices:
        return ""
    pairs = zip(indices[:limit], values[:limit], strict=True)
    shown = ", ".join(f"#{i}={_num(v)}" for i, v in pairs)
    more = f", ... {len(indices) - limit} more" if len(indices) > limit else ""
    return f": {shown}{more}"
