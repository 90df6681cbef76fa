"""Cardinality limits for latency series: which `service|endpoint` series a partition keeps.

One client bug (an id in a URL, a random service name) can create series without bound,
and every series costs windows, rollups, baselines and a line on the dashboard. As
Prometheus does with sample limits, each input partition admits at most `max_services`
services and `max_series_per_service` endpoints per service; what is over goes into a
visible overflow series (`service|(other)`, or `(other)|(other)` for services), is counted,
and raises one warning signal per overflowing scope. A series unseen for `series_idle_s` of
event time is forgotten, which makes room again, and an overflow series that goes idle
resolves its warning.

Pure: no Kafka, no clocks, no I/O. Called once per series per base window (when a window
has no entry for the series yet), never per event of an admitted series.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.signals import signal_id

__all__ = ["OTHER", "UNLIMITED", "CardinalityLimits", "SeriesRegistry", "cardinality_signal"]

OTHER = "(other)"
RULE = "cardinality-limit"
SERVICES_SCOPE = OTHER  # the scope of the services limit: the `(other)` service


@dataclass(frozen=True)
class CardinalityLimits:
    """Per input partition. 0 turns a limit off."""

    max_services: int = 10_000
    max_series_per_service: int = 1_000
    series_idle_s: float = 7200.0


class SeriesRegistry:
    """The admitted series of one partition, each with the start of the last base window
    that held it (event time), and the overflow seen since the last report."""

    __slots__ = ("limits", "overflow_events", "raised", "services", "warnings")

    def __init__(self, limits: CardinalityLimits) -> None:
        self.limits = limits
        self.services: dict[str, dict[str, int]] = {}  # service -> endpoint -> last start
        self.overflow_events = 0
        self.raised: set[str] = set()  # scopes whose warning is firing
        self.warnings: list[tuple[str, str]] = []  # (scope, state) to signal

    def admit(self, service: str, endpoint: str, start: int) -> str:
        """The series an event of `service|endpoint` in the window at `start` counts in:
        its own, or the overflow series of its scope when a limit is reached."""
        services = self.services
        endpoints = services.get(service)
        if endpoints is None:
            limit = self.limits.max_services
            if limit and len(services) - (OTHER in services) >= limit:
                return self._overflowed(SERVICES_SCOPE, OTHER, start)
            endpoints = services[service] = {}
        if endpoint not in endpoints:
            limit = self.limits.max_series_per_service
            if limit and len(endpoints) - (OTHER in endpoints) >= limit:
                return self._overflowed(service, service, start)
        endpoints[endpoint] = start
        return service + "|" + endpoint

    def _overflowed(self, scope: str, service: str, start: int) -> str:
        """Count an event over a limit into `service|(other)`; the scope's first overflow
        raises its warning."""
        self.overflow_events += 1
        if scope not in self.raised:
            self.raised.add(scope)
            self.warnings.append((scope, "firing"))
        self.services.setdefault(service, {})[OTHER] = start
        return service + "|" + OTHER

    def seen(self, series: str, start: int) -> None:
        """A series restored with a window at `start` (from the changelog)."""
        service, _, endpoint = series.rpartition("|")
        endpoints = self.services.setdefault(service, {})
        endpoints[endpoint] = max(endpoints.get(endpoint, start), start)

    def expire(self, before: int) -> int:
        """Forget series whose last window started before `before`; an idle overflow
        series resolves its scope's warning. Returns how many series were forgotten."""
        forgotten = 0
        for service in list(self.services):
            endpoints = self.services[service]
            idle = [e for e, last in endpoints.items() if last < before]
            for endpoint in idle:
                del endpoints[endpoint]
                if endpoint == OTHER and service in self.raised:
                    self.raised.discard(service)
                    self.warnings.append((service, "resolved"))
            forgotten += len(idle)
            if not endpoints:
                del self.services[service]
        return forgotten

    def take_warnings(self) -> list[tuple[str, str]]:
        taken, self.warnings = self.warnings, []
        return taken

    @property
    def series(self) -> int:
        return sum(len(endpoints) for endpoints in self.services.values())


class _Unlimited:
    """A registry that admits every series and keeps nothing: ingest's partial windows,
    which live one window and leave the limits to the windows stage (one dict entry per
    series and raw partition, kept `series_idle_s`, was a tenth of ingest's memory)."""

    __slots__ = ()

    overflow_events = 0
    series = 0

    def admit(self, service: str, endpoint: str, start: int) -> str:
        return service + "|" + endpoint

    def seen(self, series: str, start: int) -> None:
        return

    def expire(self, before: int) -> int:
        return 0

    def take_warnings(self) -> list[tuple[str, str]]:
        return []


UNLIMITED: Any = _Unlimited()


def cardinality_signal(
    partition: int, scope: str, state: str, limits: CardinalityLimits, ts_ms: int
) -> dict[str, Any]:
    """The warning signal for one overflowing scope of one partition (firing or resolved)."""
    if scope == SERVICES_SCOPE:
        metric, limit = "services", limits.max_services
        what = f"more than {limit} services in partition {partition}"
        where = f"(other)|{OTHER}"
    else:
        metric, limit = "series_per_service", limits.max_series_per_service
        what = f"{scope} has more than {limit} endpoints in partition {partition}"
        where = f"{scope}|{OTHER}"
    key = f"{where}#{partition}"
    summary = (
        f"Cardinality limit: {what}; the rest is counted in {where}"
        if state == "firing"
        else f"Cardinality back under the limit: {where} idle in partition {partition}"
    )
    return {
        "id": signal_id(RULE, key, state, ts_ms),
        "kind": "threshold",
        "state": state,
        "rule": RULE,
        "severity": "warning",
        "key": key,
        "service": scope,
        "endpoint": OTHER,
        "fingerprint": None,
        "metric": metric,
        "value": limit + 1 if state == "firing" else limit,
        "threshold": limit,
        "op": ">",
        "window": {"start": ts_ms, "end": ts_ms},
        "ts": ts_ms,
        "provisional": False,
        "channels": [],
        "tags": {"partition": str(partition)},
        "summary": summary,
    }
