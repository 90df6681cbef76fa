"""Error budgets and multi-window burn rates over the trailing SLO period."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sla.common import HOUR_MS, MINUTE_MS


def _budget_fraction(objective_pct: float) -> float:
    if isinstance(objective_pct, bool) or not 0 < objective_pct < 100:
        raise ValueError(f"objective_pct must be in (0, 100), got {objective_pct!r}")
    return (100.0 - objective_pct) / 100.0


def _window_totals(
    rollups: Iterable[Mapping[str, Any]], window_starts: Sequence[int], now_ms: int
) -> list[list[int]]:
    """[count, errors] per window [ws, now_ms), one pass over the rollups: each rollup is
    added once, at the number of window starts before its end, and a window's total is
    the sum from its own start's rank up (windows nest: a longer one holds a shorter)."""
    starts = sorted(window_starts)
    counts = [0] * (len(starts) + 1)
    errors = [0] * (len(starts) + 1)
    for rollup in rollups:
        end = rollup["end"]
        if end > now_ms:
            continue
        rank = bisect_left(starts, end)  # the windows starting before `end` hold it
        counts[rank] += rollup["count"]
        errors[rank] += rollup.get("errors", 0)
    held_count, held_errors = [0] * len(starts), [0] * len(starts)
    count_sum = error_sum = 0
    for rank in range(len(starts), 0, -1):
        count_sum += counts[rank]
        error_sum += errors[rank]
        held_count[rank - 1], held_errors[rank - 1] = count_sum, error_sum
    at = {ws: rank for rank, ws in enumerate(starts)}
    return [[held_count[at[ws]], held_errors[at[ws]]] for ws in window_starts]


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
