"""Units and metric names every part of the SLA package shares."""

from __future__ import annotations

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
