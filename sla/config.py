"""SLA thresholds and their configuration, checked with errors naming the full key."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sla.common import DAY_MS, LATENCY_KEYS, PERCENT_KEYS, THRESHOLD_KEYS, SLAConfigError


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
