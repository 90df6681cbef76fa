"""The `rollups` topic: one record per series per closed window (the dashboard topic).

A series is `service|endpoint`, or `service|*` for the whole service. A record's `id`
(series + resolution + window start) is deterministic, so a rollup re-emitted after a
crash is recognisably the same record; readers keep the last record per id.
"""

from __future__ import annotations

from typing import Any, TypeGuard

SERVICE_WIDE = "*"
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50_ms", 50.0),
    ("p90_ms", 90.0),
    ("p95_ms", 95.0),
    ("p99_ms", 99.0),
    ("p999_ms", 99.9),
)
REQUIRED_FIELDS = ("id", "series", "service", "endpoint", "resolution", "start", "end", "count")


def series_name(service: str, endpoint: str) -> str:
    return f"{service}|{endpoint}"


def split_series(series: str) -> tuple[str, str]:
    service, _, endpoint = series.rpartition("|")
    return (service, endpoint) if service else (series, SERVICE_WIDE)


def service_wide_series(series: str) -> str:
    """`service|endpoint` -> `service|*`: the series of its service as a whole."""
    return series[: series.rindex("|") + 1] + SERVICE_WIDE


def resolution_name(size_ms: int) -> str:
    """`10s`, `1m`, `1h`, `1d`: the largest unit that divides the size exactly."""
    for unit, unit_ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if size_ms % unit_ms == 0:
            return f"{size_ms // unit_ms}{unit}"
    return f"{size_ms}ms"


def rollup_id(series: str, resolution: str, start_ms: int) -> str:
    return f"{series}|{resolution}|{start_ms}"


def is_rollup(value: Any) -> TypeGuard[dict[str, Any]]:
    """True when `value` looks like a rollup record (readers skip anything else)."""
    return isinstance(value, dict) and all(k in value for k in REQUIRED_FIELDS)
