"""Alert rules: sustained violations, cooldown, resolution, selectors, and config errors."""

from __future__ import annotations

import pytest

from detection.rules import DEFAULT_RULES, Rule, RuleGate, RulesConfigError, parse_rules

S = 1000  # ms


def run(rule: Rule, observations: list[tuple[int, float]]) -> list[tuple[int, str]]:
    gate = RuleGate()
    out = []
    for ts, value in observations:
        state = gate.observe(rule, ts, rule.violated(value))
        if state:
            out.append((ts, state))
    return out


def test_needs_min_occurrences_within_the_window():
    rule = Rule("r", "p99_ms", 1000, window_s=60, min_occurrences=3, cooldown_s=600)
    # Three violations, but spread over more than a minute: no finding.
    assert run(rule, [(0, 2000), (40 * S, 2000), (90 * S, 2000)]) == []
    # Three within a minute: one finding, at the third.
    assert run(rule, [(0, 2000), (10 * S, 2000), (20 * S, 2000)]) == [(20 * S, "firing")]


def test_a_single_stray_point_does_not_fire_and_cooldown_suppresses_repeats():
    rule = Rule("r", "error_rate_pct", 1.0, window_s=60, min_occurrences=2, cooldown_s=300)
    assert run(rule, [(0, 50.0), (30 * S, 0.1), (60 * S, 0.2)]) == []
    sustained = [(t * 10 * S, 5.0) for t in range(40)]  # 400 s of violations
    fired = [ts for ts, state in run(rule, sustained) if state == "firing"]
    assert fired == [10 * S, 310 * S]  # again only once the cooldown has passed


def test_resolves_after_a_clear_window():
    rule = Rule("r", "p99_ms", 1000, window_s=60, min_occurrences=1, cooldown_s=0)
    events = run(rule, [(0, 2000), (30 * S, 10), (59 * S, 10), (61 * S, 10), (70 * S, 10)])
    assert events == [(0, "firing"), (61 * S, "resolved")]


def test_gate_state_round_trips():
    rule = Rule("r", "p99_ms", 1000, window_s=60, min_occurrences=3)
    gate = RuleGate()
    gate.observe(rule, 0, True)
    gate.observe(rule, 10 * S, True)
    restored = RuleGate.from_state(gate.to_state())
    assert restored.observe(rule, 20 * S, True) == "firing"


def test_selectors_use_globs_and_case_insensitive_regexes():
    rule = Rule("r", "issue_rate_per_min", 0, match={"service": "check*", "message": "refused"})
    assert rule.matches({"service": "checkout", "message": "Connection REFUSED by host"})
    assert not rule.matches({"service": "search", "message": "connection refused"})
    assert not rule.matches({"service": "checkout"})  # a selector label that is absent


def test_default_rules_follow_the_seeds():
    by_name = {r.name: r for r in DEFAULT_RULES}
    assert by_name["high-5xx-rate"].threshold == 1.0
    assert by_name["high-5xx-rate"].severity == "critical"
    assert by_name["p99-over-1s"].threshold == 1000.0
    assert by_name["auth-failures"].threshold == 100.0
    assert by_name["auth-failures"].matches({"exception_type": "AuthenticationError"})
    db = by_name["db-connection-failure"]
    assert db.severity == "critical" and db.violated(0.5)  # any occurrence
    msg = 'connection to server at "10.0.0.1", port 5432 failed: Connection refused'
    assert db.matches({"message": msg})
    assert not db.matches({"message": "KeyError: 'doc-1'"})
    assert by_name["new-issue"].severity_for({"severity": "critical"}) == "critical"


def test_parse_rules_overrides_defaults_by_name_and_adds_new_ones():
    rules = parse_rules(
        [
            {"name": "p99-over-1s", "metric": "p99_ms", "threshold": 800, "severity": "high"},
            {
                "name": "checkout-slow",
                "metric": "p95_ms",
                "threshold": 300,
                "match": {"service": "checkout"},
                "channels": ["slack"],
                "tags": {"team": "payments"},
            },
        ]
    )
    by_name = {r.name: r for r in rules}
    assert by_name["p99-over-1s"].threshold == 800 and by_name["p99-over-1s"].severity == "high"
    assert by_name["checkout-slow"].channels == ("slack",)
    assert len(rules) == len(DEFAULT_RULES) + 1


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"metric": "p99_ms"}, "rules[0].name"),
        ({"name": "x", "metric": "latency"}, "rules[0] (x).metric"),
        ({"name": "x", "metric": "p99_ms", "op": "=>"}, "rules[0] (x).op"),
        ({"name": "x", "metric": "p99_ms", "severity": "urgent"}, "rules[0] (x).severity"),
        ({"name": "x", "metric": "p99_ms", "threshold": "high"}, "rules[0] (x).threshold"),
        ({"name": "x", "metric": "p99_ms", "window_s": 0}, "rules[0] (x).window_s"),
        ({"name": "x", "metric": "p99_ms", "match": {"host": "a"}}, "rules[0] (x).match.host"),
        ({"name": "x", "metric": "p99_ms", "match": {"message": "("}}, "match.message"),
        ({"name": "x", "metric": "p99_ms", "colour": "red"}, "rules[0].colour"),
    ],
)
def test_bad_rules_are_refused_naming_the_key(table, message):
    with pytest.raises(RulesConfigError) as info:
        parse_rules([table])
    assert message in str(info.value)
