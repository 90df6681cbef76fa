"""Alert routing: which channels an alert reaches, when it escalates, what mutes it.

Alertmanager-style routing tree: an ordered list of routes, the first whose matchers all
match an alert's labels wins, then its child routes are tried the same way (a child
inherits its parent's channels and timing unless it sets its own); the deepest match is
used. When no route matches, the default severity table applies:

    critical -> pagerduty + sms, escalate after 5 min
    high     -> slack + email,   escalate after 15 min
    medium   -> slack,           escalate after 30 min
    low      -> email,           escalate after 60 min

Escalation levels: level 0 notifies the route's channels; each later level adds the
channels of the next severity up (low -> medium -> high -> critical), so an unacknowledged
low alert ends up paging like a critical one; past critical, a last level adds every
channel (pagerduty, sms, slack, email). A route may give its own `levels` instead.

Silences mute alerts whose labels match (for a time span); inhibition rules mute target
alerts while a source alert with equal values of the `equal` labels is firing.
Pure data and functions; time is passed in (epoch ms).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_INHIBITIONS",
    "DEFAULT_ROUTES",
    "Inhibition",
    "Route",
    "RoutingConfig",
    "RoutingConfigError",
    "Silence",
    "labels_match",
]

SEVERITY_LADDER = ("info", "low", "warning", "medium", "high", "critical")
CHANNELS = ("pagerduty", "sms", "slack", "email", "webhook", "log")
CRITICAL_RANK = SEVERITY_LADDER.index("critical")


class RoutingConfigError(ValueError):
    """A routing setting that cannot be used; the message names the key."""


def labels_match(matchers: Mapping[str, str], labels: Mapping[str, Any]) -> bool:
    """Every matcher's glob matches the label's value (a missing label never matches)."""
    for key, pattern in matchers.items():
        value = labels.get(key)
        if value is None or not fnmatch.fnmatchcase(str(value), str(pattern)):
            return False
    return True


@dataclass(frozen=True)
class Route:
    """Channels and escalation timing for alerts matching `match`."""

    match: Mapping[str, str] = field(default_factory=dict)
    channels: tuple[str, ...] = ()
    escalate_after_s: float = 900.0
    levels: tuple[tuple[str, ...], ...] = ()  # explicit channels per escalation level
    routes: tuple[Route, ...] = ()  # child routes, tried first (a routing tree)

    def resolve(self, labels: Mapping[str, Any]) -> Route:
        """The deepest matching route below this one (this one when no child matches)."""
        for child in self.routes:
            if labels_match(child.match, labels):
                return child.resolve(labels)
        return self

    def channels_at(self, level: int, severity: str) -> tuple[str, ...]:
        if self.levels:
            return self.levels[min(level, len(self.levels) - 1)]
        channels = list(self.channels)
        rank = severity_rank(severity)
        for step in range(1, level + 1):
            if rank + step > CRITICAL_RANK:  # past paging: tell everyone
                extra: tuple[str, ...] = ("pagerduty", "sms", "slack", "email")
            else:
                extra = DEFAULT_BY_SEVERITY[_at_rank(rank + step)].channels
            channels += [c for c in extra if c not in channels]
        return tuple(channels)

    def max_level(self, severity: str) -> int:
        """Levels above 0: one per severity step up to critical, then one broadcast level."""
        if self.levels:
            return len(self.levels) - 1
        return max(0, CRITICAL_RANK - severity_rank(severity)) + 1


def severity_rank(severity: str) -> int:
    return SEVERITY_LADDER.index(severity) if severity in SEVERITY_LADDER else 3


def _at_rank(rank: int) -> str:
    severity = SEVERITY_LADDER[min(rank, len(SEVERITY_LADDER) - 1)]
    return severity if severity in DEFAULT_BY_SEVERITY else _at_rank(rank + 1)


DEFAULT_BY_SEVERITY: dict[str, Route] = {
    "critical": Route({"severity": "critical"}, ("pagerduty", "sms"), 300.0),
    "high": Route({"severity": "high"}, ("slack", "email"), 900.0),
    "medium": Route({"severity": "medium"}, ("slack",), 1800.0),
    "low": Route({"severity": "low"}, ("email",), 3600.0),
}
DEFAULT_ROUTES: tuple[Route, ...] = (
    *DEFAULT_BY_SEVERITY.values(),
    Route({"severity": "warning"}, ("slack",), 1800.0),
    Route({"severity": "info"}, ("log",), 3600.0),
)


@dataclass(frozen=True)
class Inhibition:
    """While a `source` alert fires, mute `target` alerts sharing the `equal` labels."""

    source: Mapping[str, str]
    target: Mapping[str, str]
    equal: tuple[str, ...] = ("service",)

    def mutes(self, source: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
        return (
            labels_match(self.source, source)
            and labels_match(self.target, target)
            and not labels_match(self.source, target)
            and all(source.get(k) == target.get(k) for k in self.equal)
        )


# A service failing outright (5xx flood or SLA critical) mutes its latency alerts.
DEFAULT_INHIBITIONS: tuple[Inhibition, ...] = (
    Inhibition({"rule": "very-high-5xx-rate"}, {"metric": "p*_ms"}),
    Inhibition({"rule": "sla-critical"}, {"metric": "p*_ms"}),
)


@dataclass(frozen=True)
class Silence:
    """Mute alerts whose labels match, from `starts_at` to `ends_at` (epoch ms)."""

    silence_id: str
    matchers: Mapping[str, str]
    starts_at: int
    ends_at: int
    author: str = ""
    comment: str = ""

    def active(self, now_ms: int) -> bool:
        return self.starts_at <= now_ms < self.ends_at

    def mutes(self, labels: Mapping[str, Any], now_ms: int) -> bool:
        return self.active(now_ms) and bool(self.matchers) and labels_match(self.matchers, labels)

    def to_state(self) -> dict[str, Any]:
        return {
            "silence_id": self.silence_id,
            "matchers": dict(self.matchers),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "author": self.author,
            "comment": self.comment,
        }

    @classmethod
    def from_state(cls, value: Mapping[str, Any]) -> Silence:
        return cls(
            str(value["silence_id"]),
            {str(k): str(v) for k, v in dict(value["matchers"]).items()},
            int(value["starts_at"]),
            int(value["ends_at"]),
            str(value.get("author") or ""),
            str(value.get("comment") or ""),
        )


@dataclass(frozen=True)
class RoutingConfig:
    """Routes, inhibitions, static silences and grouping timers."""

    routes: tuple[Route, ...] = DEFAULT_ROUTES
    inhibitions: tuple[Inhibition, ...] = DEFAULT_INHIBITIONS
    silences: tuple[Silence, ...] = ()
    group_by: tuple[str, ...] = ("service",)
    group_wait_s: float = 0.0
    group_interval_s: float = 0.0
    repeat_interval_s: float = 4 * 3600.0

    def route_for(self, labels: Mapping[str, Any]) -> Route:
        for route in self.routes:
            if labels_match(route.match, labels):
                return route.resolve(labels)
        return DEFAULT_BY_SEVERITY.get(str(labels.get("severity")), DEFAULT_BY_SEVERITY["medium"])

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RoutingConfig:
        """Parse an `[escalation]` table; errors name `escalation.<key>`."""
        allowed = {
            "routes",
            "inhibit",
            "silences",
            "group_by",
            "group_wait_s",
            "group_interval_s",
            "repeat_interval_s",
            "default_routes",
        }
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise RoutingConfigError(
                f"escalation.{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})"
            )
        routes = tuple(_route(i, r) for i, r in enumerate(_tables(data, "routes")))
        if data.get("default_routes", True):
            routes += DEFAULT_ROUTES
        inhibitions = tuple(
            Inhibition(
                _strings(f"escalation.inhibit[{i}].source", t.get("source", {})),
                _strings(f"escalation.inhibit[{i}].target", t.get("target", {})),
                tuple(t.get("equal", ["service"])),
            )
            for i, t in enumerate(_tables(data, "inhibit"))
        )
        silences = tuple(
            Silence(
                f"config-{i}",
                _strings(f"escalation.silences[{i}].match", t.get("match", {})),
                int(_number(f"escalation.silences[{i}].starts_at", t.get("starts_at", 0))),
                int(_number(f"escalation.silences[{i}].ends_at", t.get("ends_at", 2**62))),
                str(t.get("author", "config")),
                str(t.get("comment", "")),
            )
            for i, t in enumerate(_tables(data, "silences"))
        )
        return cls(
            routes=routes,
            inhibitions=inhibitions or DEFAULT_INHIBITIONS,
            silences=silences,
            group_by=tuple(data.get("group_by", ("service",))),
            group_wait_s=_number("escalation.group_wait_s", data.get("group_wait_s", 0.0)),
            group_interval_s=_number(
                "escalation.group_interval_s", data.get("group_interval_s", 0.0)
            ),
            repeat_interval_s=_number(
                "escalation.repeat_interval_s", data.get("repeat_interval_s", 4 * 3600.0)
            ),
        )


def _tables(
    data: Mapping[str, Any], key: str, at: str = "escalation"
) -> Sequence[Mapping[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(t, Mapping) for t in value):
        raise RoutingConfigError(f"{at}.{key}: expected [[{at}.{key}]] tables")
    return value


def _route(i: int, table: Mapping[str, Any], parent: Route | None = None, at: str = "") -> Route:
    where = f"{at or 'escalation'}.routes[{i}]"
    unknown = sorted(set(table) - {"match", "channels", "escalate_after_s", "levels", "routes"})
    if unknown:
        raise RoutingConfigError(
            f"{where}.{unknown[0]}: unknown key "
            "(allowed: match, channels, escalate_after_s, levels, routes)"
        )
    inherited = parent.channels if parent is not None else []
    channels = _channels(f"{where}.channels", table.get("channels", list(inherited)))
    levels = tuple(
        _channels(f"{where}.levels[{n}]", level) for n, level in enumerate(table.get("levels", []))
    )
    if not channels and not levels:
        raise RoutingConfigError(f"{where}.channels: a route needs channels or levels")
    default_after = parent.escalate_after_s if parent is not None else 900
    route = Route(
        match=_strings(f"{where}.match", table.get("match", {})),
        channels=channels or levels[0],
        escalate_after_s=_number(
            f"{where}.escalate_after_s", table.get("escalate_after_s", default_after)
        ),
        levels=levels,
    )
    children = tuple(
        _route(n, child, route, where) for n, child in enumerate(_tables(table, "routes", where))
    )
    return Route(route.match, route.channels, route.escalate_after_s, route.levels, children)


def _channels(where: str, raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise RoutingConfigError(f"{where}: expected a list of channels ({', '.join(CHANNELS)})")
    unknown = [c for c in raw if c not in CHANNELS]
    if unknown:
        raise RoutingConfigError(
            f"{where}: unknown channel {unknown[0]!r} (allowed: {', '.join(CHANNELS)})"
        )
    return tuple(raw)


def _strings(where: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise RoutingConfigError(f"{where}: expected a table of strings")
    return dict(raw)


def _number(where: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
        raise RoutingConfigError(f"{where}: expected a number >= 0, got {raw!r}")
    return float(raw)
