"""Window summaries of the whole-service rollups: uptime, counts, error rate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.rollups import SERVICE_WIDE
from sla.config import SLAThreshold


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
