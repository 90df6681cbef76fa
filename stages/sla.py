"""SLA evaluation and error budgets over closed rollup windows. Pure: no Kafka, clocks or I/O.

Inputs are rollups (one dict per series per closed window, see `schemas.rollups`). Only
server errors count as errors (`errors`, status >= 500); 4xx (`client_errors`) are the
caller's fault and never spend the service's budget. Percentiles over a period are merged
from histograms by the caller and handed in as numbers.

Uptime (windows-based SLI)
    Computed over the whole-service series (endpoint "*") at one resolution::

        uptime_pct = 100 * duration(good windows) / duration(windows with traffic)

    A window is good ("up") when the service answered (count > 0) and its error rate,
    100 * errors / count, did not exceed the error-rate threshold: the same test as an
    error-rate violation, so a window is up exactly when it would not breach the SLA on its
    own. Windows with no traffic (count == 0, or no rollup at all, since an idle series emits
    nothing) are excluded from numerator and denominator alike, as a request-based ratio SLI
    treats 0/0: they are evidence neither of service nor of failure. With no traffic in the
    whole period uptime is unknown (None), never 0 or 100. A service that silently stops
    receiving traffic is a traffic-drop anomaly (baseline stage, synthetic probes), not
    something request data can call downtime. Equal-length windows give exactly
    "n - k good of n".

Error budget (request-based)
    Over the trailing SLO period [now - period, now): error ratio = sum(errors) / sum(count).
    The budget is the allowed bad fraction, 1 - objective/100; consumed = error ratio / budget
    (1.0 = exactly spent); remaining = 1 - consumed, negative once overspent.

Burn rates (multi-window, multi-burn-rate, as in the Google SRE workbook)
    burn rate of a window = its error ratio / (1 - objective/100); 1.0 spends the budget
    exactly over the SLO period, and a window without requests burns 0. A policy fires only
    when both its long and its short window burn above its factor; the short window makes the
    alert stop soon after the problem does. The default factors assume a 30-day period:
    14.4x over 1 h spends 2% of the budget, 6x over 6 h spends 5%.

Window membership
    A rollup counts toward the window [ws, now) when it has closed by `now` (end <= now) and
    ends after the window starts (end > ws), so a rollup straddling ws counts whole. `now` is
    the caller's event time or watermark, never the wall clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from schemas.rollups import SERVICE_WIDE

__all__ = [
    "DEFAULT_BURN_RATE_POLICIES",
    "BurnRateAlert",
    "BurnRatePolicy",
    "ErrorBudget",
    "MetricResult",
    "SLAConfig",
    "SLAConfigError",
    "SLAInputs",
    "SLAReport",
    "SLAThreshold",
    "Violation",
    "burn_rates",
    "error_budget",
    "evaluate",
    "format_text",
    "status_for",
    "summarize_windows",
    "uptime_pct",
    "whole_service_rollups",
]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
TAIL_GAP_FACTOR = 5.0  # p99 this many times p50 or more: the problem is the tail

LATENCY_KEYS = ("p50_ms", "p95_ms", "p99_ms")
PERCENT_KEYS = ("uptime_pct", "error_rate_pct")
THRESHOLD_KEYS = (*LATENCY_KEYS, *PERCENT_KEYS)
METRICS = (*LATENCY_KEYS, "error_rate_pct", "uptime_pct")  # report order
HIGHER_IS_BETTER = frozenset({"uptime_pct"})


class SLAConfigError(ValueError):
    """An SLA setting that cannot be used; the message names the full key."""


# --------------------------------------------------------------------------
# Thresholds and configuration
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SLAThreshold:
    """Targets one service must meet (latencies are maxima, uptime a minimum)."""

    p50_ms: float = 100.0
    p95_ms: float = 500.0
    p99_ms: float = 1000.0
    uptime_pct: float = 99.9
    error_rate_pct: float = 1.0


@dataclass(frozen=True, slots=True)
class SLAConfig:
    """A default threshold, per-service overrides and the availability SLO."""

    default: SLAThreshold = field(default_factory=SLAThreshold)
    services: Mapping[str, SLAThreshold] = field(default_factory=dict)
    slo_period_days: float = 30.0
    availability_objective_pct: float | None = None  # None: the uptime threshold
    service_objectives: Mapping[str, float] = field(default_factory=dict)

    @property
    def period_ms(self) -> int:
        return round(self.slo_period_days * DAY_MS)

    def threshold_for(self, service: str) -> SLAThreshold:
        return self.services.get(service, self.default)

    def objective_for(self, service: str) -> float:
        """Availability objective (percent): per-service, global, else the uptime threshold."""
        if service in self.service_objectives:
            return self.service_objectives[service]
        if self.availability_objective_pct is not None:
            return self.availability_objective_pct
        return self.threshold_for(service).uptime_pct

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], prefix: str = "sla") -> SLAConfig:
        """Parse a TOML-shaped table; raise `SLAConfigError` naming the offending key."""
        _refuse_unknown(prefix, data, _TOP_KEYS)
        default = replace(SLAThreshold(), **_thresholds(prefix, data))
        objective = _optional(prefix, data, "availability_objective_pct")
        period = data.get("slo_period_days", 30.0)
        config = cls(
            default=default,
            slo_period_days=_positive(f"{prefix}.slo_period_days", period),
            availability_objective_pct=objective,
        )
        services, objectives = _parse_services(f"{prefix}.services", data.get("services", {}))
        config = replace(
            config,
            services={name: replace(default, **values) for name, values in services.items()},
            service_objectives=objectives,
        )
        _check_budgets(prefix, config)
        return config


def _number(key: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise SLAConfigError(f"{key}: expected a number, got {raw!r}")
    return float(raw)


def _positive(key: str, raw: Any) -> float:
    value = _number(key, raw)
    if value <= 0:
        raise SLAConfigError(f"{key}: must be a positive number, got {raw!r}")
    return value


def _percent(key: str, raw: Any) -> float:
    value = _number(key, raw)
    if not 0 < value <= 100:
        raise SLAConfigError(f"{key}: must be a percentage in (0, 100], got {raw!r}")
    return value


def _objective(key: str, raw: Any) -> float:
    value = _number(key, raw)
    if not 0 < value < 100:
        raise SLAConfigError(
            f"{key}: must be a percentage in (0, 100) (100 leaves no error budget), got {raw!r}"
        )
    return value


_PARSERS: dict[str, Callable[[str, Any], float]] = {
    **dict.fromkeys(LATENCY_KEYS, _positive),
    **dict.fromkeys(PERCENT_KEYS, _percent),
    "availability_objective_pct": _objective,
}
_SERVICE_KEYS = (*THRESHOLD_KEYS, "availability_objective_pct")
_TOP_KEYS = (*_SERVICE_KEYS, "slo_period_days", "services")


def _refuse_unknown(prefix: str, data: Any, allowed: Sequence[str]) -> None:
    if not isinstance(data, Mapping):
        raise SLAConfigError(f"{prefix}: expected a table, got {data!r}")
    for key in data:
        if key not in allowed:
            raise SLAConfigError(f"{prefix}.{key}: unknown key (allowed: {', '.join(allowed)})")


def _thresholds(prefix: str, data: Mapping[str, Any]) -> dict[str, float]:
    return {k: _PARSERS[k](f"{prefix}.{k}", data[k]) for k in THRESHOLD_KEYS if k in data}


def _optional(prefix: str, data: Mapping[str, Any], key: str) -> float | None:
    return _PARSERS[key](f"{prefix}.{key}", data[key]) if key in data else None


def _parse_services(prefix: str, data: Any) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    if not isinstance(data, Mapping):
        raise SLAConfigError(f"{prefix}: expected a table of services, got {data!r}")
    thresholds: dict[str, dict[str, float]] = {}
    objectives: dict[str, float] = {}
    for name, table in data.items():
        key = f"{prefix}.{name}"
        if not isinstance(name, str) or not name:
            raise SLAConfigError(f"{key}: a service name must be a non-empty string")
        _refuse_unknown(key, table, _SERVICE_KEYS)
        thresholds[name] = _thresholds(key, table)
        objective = _optional(key, table, "availability_objective_pct")
        if objective is not None:
            objectives[name] = objective
    return thresholds, objectives


def _check_budgets(prefix: str, config: SLAConfig) -> None:
    """An objective inherited from a 100% uptime threshold would leave no budget."""
    for name in ("", *config.services):
        if config.objective_for(name) >= 100:
            where = f"{prefix}.services.{name}" if name else prefix
            raise SLAConfigError(
                f"{where}.uptime_pct: 100 leaves no error budget; set "
                f"{where}.availability_objective_pct below 100"
            )


# --------------------------------------------------------------------------
# Window summaries: uptime, counts, error rate
# --------------------------------------------------------------------------


def whole_service_rollups(rollups: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping]]:
    """Group the whole-service (endpoint "*") rollups by service, in input order."""
    out: dict[str, list[Mapping]] = {}
    for rollup in rollups:
        if rollup.get("endpoint") == SERVICE_WIDE:
            out.setdefault(rollup["service"], []).append(rollup)
    return out


def _window_is_good(count: int, errors: int, max_error_pct: float) -> bool:
    return 100.0 * errors <= max_error_pct * count


def _up_down_ms(windows: Iterable[Mapping[str, Any]], max_error_pct: float) -> tuple[int, int]:
    """(good, bad) duration of the windows with traffic, in ms."""
    good = bad = 0
    for w in windows:
        count = w["count"]
        if count <= 0:
            continue
        if _window_is_good(count, w.get("errors", 0), max_error_pct):
            good += w["end"] - w["start"]
        else:
            bad += w["end"] - w["start"]
    return good, bad


def uptime_pct(windows: Iterable[Mapping[str, Any]], threshold: SLAThreshold) -> float | None:
    """Share (percent) of the windows with traffic that were up; None without traffic."""
    good, bad = _up_down_ms(windows, threshold.error_rate_pct)
    return 100.0 * good / (good + bad) if good + bad else None


@dataclass(frozen=True, slots=True)
class SLAInputs:
    """Measured values for one service over one evaluation period (None = unknown)."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    error_rate_pct: float | None = None
    uptime_pct: float | None = None
    count: int = 0
    start: int | None = None  # epoch ms
    end: int | None = None
    errors: int = 0
    downtime_ms: int | None = None  # total length of the bad windows


def summarize_windows(
    rollups: Sequence[Mapping[str, Any]],
    threshold: SLAThreshold,
    *,
    p50_ms: float | None = None,
    p95_ms: float | None = None,
    p99_ms: float | None = None,
    start: int | None = None,
    end: int | None = None,
) -> SLAInputs:
    """Counts, error rate and uptime of one service's whole-service rollups.

    The period defaults to the span of the rollups; percentiles come from the caller.
    """
    count = errors = 0
    for rollup in rollups:
        count += rollup["count"]
        errors += rollup.get("errors", 0)
    good, bad = _up_down_ms(rollups, threshold.error_rate_pct)
    if rollups:
        start = min(r["start"] for r in rollups) if start is None else start
        end = max(r["end"] for r in rollups) if end is None else end
    return SLAInputs(
        p50_ms=p50_ms,
        p95_ms=p95_ms,
        p99_ms=p99_ms,
        error_rate_pct=100.0 * errors / count if count else None,
        uptime_pct=100.0 * good / (good + bad) if good + bad else None,
        count=count,
        start=start,
        end=end,
        errors=errors,
        downtime_ms=bad if good + bad else None,
    )


# --------------------------------------------------------------------------
# Evaluation and recommendations
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricResult:
    metric: str
    value: float | None
    threshold: float
    ok: bool | None  # None: no data


@dataclass(frozen=True, slots=True)
class Violation:
    metric: str
    value: float
    threshold: float
    recommendation: str


@dataclass(frozen=True, slots=True)
class SLAReport:
    """The outcome of evaluating one service against its threshold."""

    service: str
    status: str  # "healthy" | "warning" | "critical"
    inputs: SLAInputs
    metrics: tuple[MetricResult, ...]
    violations: tuple[Violation, ...]

    @property
    def recommendations(self) -> list[str]:
        return [v.recommendation for v in self.violations]

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "status": self.status,
            "start": self.inputs.start,
            "end": self.inputs.end,
            "count": self.inputs.count,
            "errors": self.inputs.errors,
            "metrics": {
                m.metric: {"value": m.value, "threshold": m.threshold, "ok": m.ok}
                for m in self.metrics
            },
            "violations": [
                {
                    "metric": v.metric,
                    "value": v.value,
                    "threshold": v.threshold,
                    "recommendation": v.recommendation,
                }
                for v in self.violations
            ],
        }


def status_for(violations: int) -> str:
    """Status levels: 0 healthy, 1-2 warning, 3+ critical."""
    if violations == 0:
        return "healthy"
    return "warning" if violations <= 2 else "critical"


def _breached(metric: str, value: float, threshold: float) -> bool:
    return value < threshold if metric in HIGHER_IS_BETTER else value > threshold


def evaluate(service: str, inputs: SLAInputs, threshold: SLAThreshold) -> SLAReport:
    """Compare each known metric with its threshold; equal to the threshold is met."""
    metrics: list[MetricResult] = []
    violations: list[Violation] = []
    for metric in METRICS:
        value: float | None = getattr(inputs, metric)
        limit: float = getattr(threshold, metric)
        if value is None:
            metrics.append(MetricResult(metric, None, limit, None))
            continue
        bad = _breached(metric, value, limit)
        metrics.append(MetricResult(metric, value, limit, not bad))
        if bad:
            advice = _RECOMMENDERS[metric](value, inputs, threshold)
            violations.append(Violation(metric, value, limit, advice))
    return SLAReport(
        service, status_for(len(violations)), inputs, tuple(metrics), tuple(violations)
    )


def _ms(value: float) -> str:
    return f"{round(value, 1):g} ms"


def _pct(value: float) -> str:
    return f"{round(value, 4):g}%"


def _duration(ms: float) -> str:
    if ms < 2 * MINUTE_MS:
        return f"{ms / 1000:g} s"
    if ms < 2 * HOUR_MS:
        return f"{ms / MINUTE_MS:.0f} min"
    return f"{ms / HOUR_MS:.1f} h"


# Each recommender gets the breached metric's measured value (known: `evaluate` advises
# only on known values), the rest of the inputs and the thresholds.


def _advise_p50(p50_ms: float, i: SLAInputs, t: SLAThreshold) -> str:
    return (
        f"Median latency {_ms(p50_ms)} is above the {_ms(t.p50_ms)} target, so the typical "
        "request is slow, not just outliers: profile the common path for slow or repeated "
        "database queries and missing indexes, check CPU and connection-pool saturation, and "
        "compare with the latency before the last deploy."
    )


def _advise_p95(p95_ms: float, i: SLAInputs, t: SLAThreshold) -> str:
    return (
        f"p95 latency {_ms(p95_ms)} exceeds {_ms(t.p95_ms)}, so about one request in twenty "
        "is slow: break latency down by endpoint to find the slow routes, then look at cache "
        "misses, slow downstream calls and request queueing under peak load."
    )


def _advise_p99(p99_ms: float, i: SLAInputs, t: SLAThreshold) -> str:
    head = f"p99 latency {_ms(p99_ms)} exceeds {_ms(t.p99_ms)}"
    if not i.p50_ms or i.p50_ms <= 0:
        return (
            f"{head}: the slowest 1% of requests are too slow; look for GC pauses, lock "
            "contention, and timeouts or retries against a dependency."
        )
    gap = p99_ms / i.p50_ms
    if gap >= TAIL_GAP_FACTOR:
        return (
            f"{head} while the median is {_ms(i.p50_ms)} ({gap:.0f}x gap), so the problem is "
            "the tail, not the common path: look for GC or stop-the-world pauses, lock and "
            "connection-pool contention, retries and timeouts against a dependency, and cold "
            "caches or instances."
        )
    return (
        f"{head} and the median is close behind ({_ms(i.p50_ms)}, only {gap:.1f}x lower), so "
        "the whole distribution has shifted: suspect saturation (CPU, worker or pool "
        "exhaustion, queue depth) or a uniformly slower dependency rather than rare outliers."
    )


def _advise_errors(error_rate_pct: float, i: SLAInputs, t: SLAThreshold) -> str:
    share = f" ({i.errors:,} of {i.count:,} requests failed with 5xx)" if i.count else ""
    return (
        f"Error rate {_pct(error_rate_pct)}{share} exceeds the {_pct(t.error_rate_pct)} "
        "limit: open the service's top issues for this period, new and regressed ones first, "
        "and check whether the rise lines up with a recent release or config change; roll "
        "back if it does."
    )


def _advise_uptime(uptime_pct: float, i: SLAInputs, t: SLAThreshold) -> str:
    lost = f" ({_duration(i.downtime_ms)} of bad windows)" if i.downtime_ms else ""
    return (
        f"Uptime {_pct(uptime_pct)} is below the {_pct(t.uptime_pct)} target{lost}, counting "
        f"windows whose error rate went above {_pct(t.error_rate_pct)}: review the incidents "
        "in those windows, failing health checks and dependency outages, and make sure a "
        "burn-rate alert paged while they happened."
    )


_RECOMMENDERS: dict[str, Callable[[float, SLAInputs, SLAThreshold], str]] = {
    "p50_ms": _advise_p50,
    "p95_ms": _advise_p95,
    "p99_ms": _advise_p99,
    "error_rate_pct": _advise_errors,
    "uptime_pct": _advise_uptime,
}


# --------------------------------------------------------------------------
# Text table for the CLI
# --------------------------------------------------------------------------

_STATUS_ORDER = {"critical": 0, "warning": 1, "healthy": 2}
_COLUMNS = (
    ("P50", "p50_ms"),
    ("P95", "p95_ms"),
    ("P99", "p99_ms"),
    ("ERRORS", "error_rate_pct"),
    ("UPTIME", "uptime_pct"),
)


def _cell(result: MetricResult) -> str:
    show = _pct if result.metric in PERCENT_KEYS else _ms
    if result.value is None:
        return f"- / {show(result.threshold)}"
    mark = "" if result.ok else " !"
    return f"{show(result.value)} / {show(result.threshold)}{mark}"


def format_text(reports: Iterable[SLAReport]) -> str:
    """A table (worst status first, values as `value / threshold`, `!` = violated) and advice."""
    ordered = sorted(reports, key=lambda r: (_STATUS_ORDER.get(r.status, 3), r.service))
    header = ["SERVICE", "STATUS", "REQUESTS", *(name for name, _ in _COLUMNS)]
    rows = [header]
    for report in ordered:
        by_metric = {m.metric: m for m in report.metrics}
        cells = [_cell(by_metric[metric]) for _, metric in _COLUMNS]
        rows.append([report.service, report.status, f"{report.inputs.count:,}", *cells])
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    for report in ordered:
        if report.violations:
            lines.append("")
            lines.append(f"{report.service} ({report.status}):")
            lines.extend(f"  - {v.metric}: {v.recommendation}" for v in report.violations)
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Error budget and burn rates
# --------------------------------------------------------------------------


def _budget_fraction(objective_pct: float) -> float:
    if isinstance(objective_pct, bool) or not 0 < objective_pct < 100:
        raise ValueError(f"objective_pct must be in (0, 100), got {objective_pct!r}")
    return (100.0 - objective_pct) / 100.0


def _window_totals(
    rollups: Iterable[Mapping[str, Any]], window_starts: Sequence[int], now_ms: int
) -> list[list[int]]:
    """[count, errors] per window [ws, now_ms), one pass over the rollups."""
    totals = [[0, 0] for _ in window_starts]
    for rollup in rollups:
        end = rollup["end"]
        if end > now_ms:
            continue
        count = rollup["count"]
        errors = rollup.get("errors", 0)
        for total, ws in zip(totals, window_starts, strict=True):
            if end > ws:
                total[0] += count
                total[1] += errors
    return totals


@dataclass(frozen=True, slots=True)
class ErrorBudget:
    """Request-based error budget over the trailing SLO period."""

    objective_pct: float
    start: int  # epoch ms, inclusive
    end: int  # epoch ms (now), exclusive
    count: int
    errors: int
    budget_fraction: float  # allowed bad fraction, 1 - objective/100
    error_ratio: float  # errors / count (0 without traffic)
    consumed_fraction: float  # of the budget; 1.0 = exactly spent
    remaining_fraction: float  # 1 - consumed; negative when overspent

    @property
    def exhausted(self) -> bool:
        return self.remaining_fraction <= 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"exhausted": self.exhausted}


def error_budget(
    rollups: Iterable[Mapping[str, Any]], objective_pct: float, period_ms: int, now_ms: int
) -> ErrorBudget:
    """Budget consumed by one series' errors over [now_ms - period_ms, now_ms)."""
    budget = _budget_fraction(objective_pct)
    start = now_ms - period_ms
    ((count, errors),) = _window_totals(rollups, (start,), now_ms)
    ratio = errors / count if count else 0.0
    consumed = ratio / budget
    return ErrorBudget(
        objective_pct=objective_pct,
        start=start,
        end=now_ms,
        count=count,
        errors=errors,
        budget_fraction=budget,
        error_ratio=ratio,
        consumed_fraction=consumed,
        remaining_fraction=1.0 - consumed,
    )


@dataclass(frozen=True, slots=True)
class BurnRatePolicy:
    """One multi-window alert: both windows must burn faster than `factor`."""

    long_window_ms: int
    short_window_ms: int
    factor: float
    severity: str
    action: str = "page"


DEFAULT_BURN_RATE_POLICIES: tuple[BurnRatePolicy, ...] = (
    BurnRatePolicy(HOUR_MS, 5 * MINUTE_MS, 14.4, "critical"),
    BurnRatePolicy(6 * HOUR_MS, 30 * MINUTE_MS, 6.0, "high"),
)


@dataclass(frozen=True, slots=True)
class BurnRateAlert:
    """One policy's evaluation at `now_ms`."""

    long_window_ms: int
    short_window_ms: int
    long_rate: float
    short_rate: float
    factor: float
    firing: bool
    severity: str
    action: str
    now_ms: int

    @property
    def name(self) -> str:
        return f"{_window_name(self.long_window_ms)}/{_window_name(self.short_window_ms)}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name} | asdict(self)


def _window_name(ms: int) -> str:
    if ms % HOUR_MS == 0:
        return f"{ms // HOUR_MS}h"
    if ms % MINUTE_MS == 0:
        return f"{ms // MINUTE_MS}m"
    return f"{ms / 1000:g}s"


def burn_rates(
    rollups: Iterable[Mapping[str, Any]],
    objective_pct: float,
    now_ms: int,
    policies: Sequence[BurnRatePolicy] = DEFAULT_BURN_RATE_POLICIES,
) -> list[BurnRateAlert]:
    """Evaluate each policy over one series' rollups, windows ending at `now_ms`."""
    budget = _budget_fraction(objective_pct)
    starts = [now_ms - ms for p in policies for ms in (p.long_window_ms, p.short_window_ms)]
    totals = _window_totals(rollups, starts, now_ms)
    rates = [errors / count / budget if count else 0.0 for count, errors in totals]
    alerts = []
    for n, policy in enumerate(policies):
        long_rate, short_rate = rates[2 * n], rates[2 * n + 1]
        alerts.append(
            BurnRateAlert(
                long_window_ms=policy.long_window_ms,
                short_window_ms=policy.short_window_ms,
                long_rate=long_rate,
                short_rate=short_rate,
                factor=policy.factor,
                firing=long_rate > policy.factor and short_rate > policy.factor,
                severity=policy.severity,
                action=policy.action,
                now_ms=now_ms,
            )
        )
    return alerts
