"""Alert rules: static thresholds with an evaluation window, min occurrences and cooldown.

A rule names a metric, a selector (which series or issues it watches), a comparison, a
threshold, and how sustained a violation must be before it becomes a finding: at least
`min_occurrences` violating observations within `window_s`, and no earlier finding of the
same rule and key within `cooldown_s`. When a rule that fired sees no violation for a whole
`window_s`, it resolves (the escalation stage auto-resolves the alert).

Metrics observed per rollup: `p50_ms`, `p90_ms`, `p95_ms`, `p99_ms`, `p999_ms`, `max_ms`,
`mean_ms`, `error_rate_pct` (5xx share), `client_error_rate_pct` (4xx share),
`throughput_rps`, `count`. Per issue: `issue_rate_per_min` (occurrences per minute between
count updates), `issue_new` and `issue_regressed` (1 when the issue record says so). Per
service: `sla_violations` (3+ is SLA critical) and `burn_rate` (the fastest firing pair).

Pure: no I/O, no clocks; time is the observation's event time in ms.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_RULES",
    "METRICS",
    "Rule",
    "RuleGate",
    "RulesConfigError",
    "parse_rules",
]

SEVERITIES = ("critical", "high", "medium", "low", "warning", "info")
ROLLUP_METRICS = (
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "mean_ms",
    "error_rate_pct",
    "client_error_rate_pct",
    "throughput_rps",
    "count",
)
ISSUE_METRICS = ("issue_rate_per_min", "issue_new", "issue_regressed")
SERVICE_METRICS = ("sla_violations", "burn_rate")
METRICS = ROLLUP_METRICS + ISSUE_METRICS + SERVICE_METRICS
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}
MATCH_KEYS = ("service", "endpoint", "series", "exception_type", "message", "severity")


class RulesConfigError(ValueError):
    """A rule that cannot be used; the message names the rule and key."""


@dataclass(frozen=True)
class Rule:
    """One alert rule (see the module docstring)."""

    name: str
    metric: str
    threshold: float = 0.0
    op: str = ">"
    severity: str = "medium"
    window_s: float = 300.0
    min_occurrences: int = 1
    cooldown_s: float = 600.0
    channels: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    # Selector: glob patterns on service / endpoint / series / severity, regular expressions
    # (case-insensitive, searched) on exception_type and message. All must match.
    match: Mapping[str, str] = field(default_factory=dict)
    # For issue rules: take the severity of the issue instead of `severity`.
    severity_from_issue: bool = False

    def violated(self, value: float) -> bool:
        return COMPARISONS[self.op](value, self.threshold)

    def matches(self, labels: Mapping[str, Any]) -> bool:
        """True when every selector key matches the observation's labels."""
        for key, pattern in self.match.items():
            value = labels.get(key)
            if value is None:
                return False
            if key in ("exception_type", "message"):
                if not _regex(pattern).search(str(value)):
                    return False
            elif not fnmatch.fnmatchcase(str(value), pattern):
                return False
        return True

    def severity_for(self, labels: Mapping[str, Any]) -> str:
        if self.severity_from_issue and labels.get("severity") in SEVERITIES:
            return str(labels["severity"])
        return self.severity


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def _regex(pattern: str) -> re.Pattern[str]:
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        compiled = _REGEX_CACHE[pattern] = re.compile(pattern, re.IGNORECASE)
    return compiled


AUTH_FAILURE = (
    r"auth|unauthori[sz]ed|forbidden|permission ?denied|invalid (token|credentials)|\b40[13]\b"
)
DB_CONNECTION = (
    r"(connection|connect).*(refused|reset|closed|timed? ?out|failed|lost)|"
    r"operationalerror|too many connections|could not connect|pool (exhausted|timeout)"
)
TIMEOUT = r"timeout|timed out|deadline exceeded"

DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(
        "high-5xx-rate",
        "error_rate_pct",
        1.0,
        severity="critical",
        window_s=300,
        min_occurrences=3,
        tags={"category": "errors"},
    ),
    Rule(
        "very-high-5xx-rate",
        "error_rate_pct",
        5.0,
        severity="critical",
        window_s=60,
        min_occurrences=1,
        tags={"category": "errors"},
    ),
    Rule(
        "p99-over-1s",
        "p99_ms",
        1000.0,
        severity="warning",
        window_s=300,
        min_occurrences=3,
        tags={"category": "performance"},
    ),
    # One request in ten slower than the p99 objective (default: 1000 ms) spends the
    # slow-request budget (1 %) ten times as fast as allowed: a severe slowdown, not noise,
    # so one window is enough (with early evaluation, about a second).
    Rule(
        "p90-over-1s",
        "p90_ms",
        1000.0,
        severity="high",
        window_s=300,
        min_occurrences=1,
        tags={"category": "performance"},
    ),
    Rule(
        "auth-failures",
        "issue_rate_per_min",
        100.0,
        severity="high",
        window_s=300,
        min_occurrences=1,
        match={"exception_type": AUTH_FAILURE},
        tags={"category": "security"},
    ),
    Rule(
        "timeout-errors",
        "issue_rate_per_min",
        10.0,
        severity="medium",
        window_s=300,
        min_occurrences=1,
        match={"message": TIMEOUT},
        tags={"category": "errors"},
    ),
    Rule(
        "db-connection-failure",
        "issue_rate_per_min",
        0.0,
        severity="critical",
        window_s=300,
        min_occurrences=1,
        match={"message": DB_CONNECTION},
        tags={"category": "database"},
    ),
    Rule(
        "new-issue",
        "issue_new",
        0.0,
        window_s=60,
        cooldown_s=0,
        severity_from_issue=True,
        tags={"category": "issues"},
    ),
    Rule(
        "regressed-issue",
        "issue_regressed",
        0.0,
        severity="high",
        window_s=60,
        cooldown_s=0,
        tags={"category": "issues"},
    ),
    Rule(
        "sla-critical",
        "sla_violations",
        3.0,
        op=">=",
        severity="critical",
        window_s=300,
        min_occurrences=1,
        tags={"category": "sla"},
    ),
    Rule(
        "error-budget-burn",
        "burn_rate",
        0.0,
        severity="high",
        window_s=300,
        min_occurrences=1,
        tags={"category": "sla"},
    ),
)


class RuleGate:
    """min_occurrences within window_s, then cooldown; resolves after a clear window.

    One gate per (rule, key). State is plain data so it can live in a changelog.
    """

    __slots__ = ("firing", "last_fired", "last_violation", "violations")

    def __init__(self) -> None:
        self.violations: list[int] = []  # event times (ms) of recent violations
        self.last_fired: int | None = None
        self.last_violation: int | None = None
        self.firing = False

    def observe(self, rule: Rule, ts_ms: int, violated: bool) -> str | None:
        """Feed one observation; returns "firing", "resolved" or None."""
        horizon = ts_ms - rule.window_s * 1000
        self.violations = [t for t in self.violations if t > horizon]
        if violated:
            if ts_ms == self.last_fired or ts_ms in self.violations:
                return None  # this window was counted already (observed early, then closed)
            self.violations.append(ts_ms)
            self.last_violation = ts_ms
            if len(self.violations) >= rule.min_occurrences and self._cooled(rule, ts_ms):
                self.last_fired = ts_ms
                self.firing = True
                self.violations.clear()
                return "firing"
            return None
        if self.firing and (self.last_violation is None or self.last_violation <= horizon):
            self.firing = False
            return "resolved"
        return None

    def _cooled(self, rule: Rule, ts_ms: int) -> bool:
        return self.last_fired is None or ts_ms - self.last_fired >= rule.cooldown_s * 1000

    def to_state(self) -> dict[str, Any]:
        return {
            "v": self.violations,
            "f": self.last_fired,
            "lv": self.last_violation,
            "on": self.firing,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RuleGate:
        gate = cls()
        gate.violations = [int(t) for t in state.get("v", [])]
        gate.last_fired = state.get("f")
        gate.last_violation = state.get("lv")
        gate.firing = bool(state.get("on"))
        return gate


_RULE_KEYS = {
    "name",
    "metric",
    "threshold",
    "op",
    "severity",
    "window_s",
    "min_occurrences",
    "cooldown_s",
    "channels",
    "tags",
    "match",
    "severity_from_issue",
}


def parse_rules(
    tables: Sequence[Mapping[str, Any]], keep_defaults: bool = True
) -> tuple[Rule, ...]:
    """Rules from `[[rules]]` tables; a rule named like a default replaces it.

    Raises RulesConfigError naming `rules[i].key` and what is allowed.
    """
    parsed = [_parse_rule(i, table) for i, table in enumerate(tables)]
    names = [r.name for r in parsed]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise RulesConfigError(f"rules: the name {duplicate!r} is used twice")
    if not keep_defaults:
        return tuple(parsed)
    overridden = set(names)
    return tuple(r for r in DEFAULT_RULES if r.name not in overridden) + tuple(parsed)


def _parse_rule(i: int, table: Mapping[str, Any]) -> Rule:
    where = f"rules[{i}]"
    if not isinstance(table, Mapping):
        raise RulesConfigError(f"{where}: expected a table")
    unknown = sorted(set(table) - _RULE_KEYS)
    if unknown:
        raise RulesConfigError(
            f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(_RULE_KEYS))})"
        )
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise RulesConfigError(f"{where}.name: required, a non-empty string")
    where = f"rules[{i}] ({name})"
    metric = table.get("metric")
    if metric not in METRICS:
        raise RulesConfigError(f"{where}.metric: {metric!r} is not one of {', '.join(METRICS)}")
    op = table.get("op", ">")
    if op not in COMPARISONS:
        raise RulesConfigError(f"{where}.op: {op!r} is not one of {', '.join(COMPARISONS)}")
    severity = table.get("severity", "medium")
    if severity not in SEVERITIES:
        raise RulesConfigError(f"{where}.severity: {severity!r} is not one of {SEVERITIES}")
    match = _string_map(where, "match", table.get("match", {}))
    for key, pattern in match.items():
        if key not in MATCH_KEYS:
            raise RulesConfigError(f"{where}.match.{key}: unknown (allowed: {MATCH_KEYS})")
        if key in ("exception_type", "message"):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise RulesConfigError(
                    f"{where}.match.{key}: bad regular expression ({exc})"
                ) from None
    channels = table.get("channels", [])
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise RulesConfigError(f"{where}.channels: expected a list of channel names")
    return Rule(
        name=name,
        metric=metric,
        threshold=_number(where, "threshold", table.get("threshold", 0.0)),
        op=op,
        severity=severity,
        window_s=_number(where, "window_s", table.get("window_s", 300.0), positive=True),
        min_occurrences=int(
            _number(where, "min_occurrences", table.get("min_occurrences", 1), positive=True)
        ),
        cooldown_s=_number(where, "cooldown_s", table.get("cooldown_s", 600.0)),
        channels=tuple(channels),
        tags=_string_map(where, "tags", table.get("tags", {})),
        match=match,
        severity_from_issue=bool(table.get("severity_from_issue", False)),
    )


def _number(where: str, key: str, raw: Any, positive: bool = False) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise RulesConfigError(f"{where}.{key}: expected a number, got {raw!r}")
    if raw < 0 or (positive and raw == 0):
        raise RulesConfigError(f"{where}.{key}: must be {'> 0' if positive else '>= 0'}, got {raw}")
    return float(raw)


def _string_map(where: str, key: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise RulesConfigError(f"{where}.{key}: expected a table of strings")
    return dict(raw)
