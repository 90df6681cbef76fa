"""Evaluation of a service against its SLA thresholds, with advice for each breach."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sla.common import HIGHER_IS_BETTER, HOUR_MS, METRICS, MINUTE_MS, TAIL_GAP_FACTOR
from sla.config import SLAThreshold
from sla.windows import SLAInputs


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


def format_ms(value: float) -> str:
    """A latency as the SLA text shows it."""
    return f"{round(value, 1):g} ms"


def format_pct(value: float) -> str:
    """A percentage as the SLA text shows it."""
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
        f"Median latency {format_ms(p50_ms)} is above the {format_ms(t.p50_ms)} target, "
        "so the typical "
        "request is slow, not just outliers: profile the common path for slow or repeated "
        "database queries and missing indexes, check CPU and connection-pool saturation, and "
        "compare with the latency before the last deploy."
    )


def _advise_p95(p95_ms: float, i: SLAInputs, t: SLAThreshold) -> str:
    return (
        f"p95 latency {format_ms(p95_ms)} exceeds {format_ms(t.p95_ms)}, "
        "so about one request in twenty "
        "is slow: break latency down by endpoint to find the slow routes, then look at cache "
        "misses, slow downstream calls and request queueing under peak load."
    )


def _advise_p99(p99_ms: float, i: SLAInputs, t: SLAThreshold) -> str:
    head = f"p99 latency {format_ms(p99_ms)} exceeds {format_ms(t.p99_ms)}"
    if not i.p50_ms or i.p50_ms <= 0:
        return (
            f"{head}: the slowest 1% of requests are too slow; look for GC pauses, lock "
            "contention, and timeouts or retries against a dependency."
        )
    gap = p99_ms / i.p50_ms
    if gap >= TAIL_GAP_FACTOR:
        return (
            f"{head} while the median is {format_ms(i.p50_ms)} ({gap:.0f}x gap), so the problem is "
            "the tail, not the common path: look for GC or stop-the-world pauses, lock and "
            "connection-pool contention, retries and timeouts against a dependency, and cold "
            "caches or instances."
        )
    return (
        f"{head} and the median is close behind ({format_ms(i.p50_ms)}, only {gap:.1f}x lower), so "
        "the whole distribution has shifted: suspect saturation (CPU, worker or pool "
        "exhaustion, queue depth) or a uniformly slower dependency rather than rare outliers."
    )


def _advise_errors(error_rate_pct: float, i: SLAInputs, t: SLAThreshold) -> str:
    share = f" ({i.errors:,} of {i.count:,} requests failed with 5xx)" if i.count else ""
    return (
        f"Error rate {format_pct(error_rate_pct)}{share} exceeds the "
        f"{format_pct(t.error_rate_pct)} "
        "limit: open the service's top issues for this period, new and regressed ones first, "
        "and check whether the rise lines up with a recent release or config change; roll "
        "back if it does."
    )


def _advise_uptime(uptime_pct: float, i: SLAInputs, t: SLAThreshold) -> str:
    lost = f" ({_duration(i.downtime_ms)} of bad windows)" if i.downtime_ms else ""
    return (
        f"Uptime {format_pct(uptime_pct)} is below the {format_pct(t.uptime_pct)} "
        f"target{lost}, counting "
        f"windows whose error rate went above {format_pct(t.error_rate_pct)}: review the incidents "
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
