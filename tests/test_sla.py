"""SLA evaluation, uptime, error budgets and multi-window burn-rate alerts (pure functions)."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from ops.sla_view import format_text
from sla import (
    BurnRatePolicy,
    SLAConfig,
    SLAConfigError,
    SLAInputs,
    SLAThreshold,
    burn_rates,
    error_budget,
    evaluate,
    status_for,
    summarize_windows,
    uptime_pct,
    whole_service_rollups,
)

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_795_320_000_000  # minute-aligned epoch ms
DEFAULT = SLAThreshold()


def rollup(start: int, count: int, errors: int, size: int = MIN, **kw) -> dict:
    service = kw.get("service", "checkout")
    endpoint = kw.get("endpoint", "*")
    return {
        "series": f"{service}|{endpoint}",
        "service": service,
        "endpoint": endpoint,
        "resolution": "1m",
        "start": start,
        "end": start + size,
        "count": count,
        "errors": errors,
        "client_errors": kw.get("client_errors", 0),
        "p50_ms": 20.0,
        "p95_ms": 80.0,
        "p99_ms": 150.0,
    }


def minutes(start: int, n: int, count: int, errors: int) -> list[dict]:
    return [rollup(start + i * MIN, count, errors) for i in range(n)]


def by_name(alerts) -> dict:
    return {a.name: a for a in alerts}


# --------------------------------------------------------------------------
# Seed 000: thresholds, status levels, recommendations
# --------------------------------------------------------------------------

SEED_EXAMPLE = SLAInputs(p50_ms=45, p95_ms=120, p99_ms=250, uptime_pct=99.95, error_rate_pct=0.3)


def test_default_thresholds_are_seed_000s():
    assert SLAThreshold() == SLAThreshold(
        p50_ms=100.0, p95_ms=500.0, p99_ms=1000.0, uptime_pct=99.9, error_rate_pct=1.0
    )
    config = SLAConfig()
    assert config.threshold_for("anything") == DEFAULT
    assert config.objective_for("anything") == 99.9
    assert config.period_ms == 30 * DAY


@pytest.mark.parametrize(
    ("violations", "status"),
    [(0, "healthy"), (1, "warning"), (2, "warning"), (3, "critical"), (5, "critical")],
)
def test_status_levels(violations, status):
    assert status_for(violations) == status


def test_seed_example_is_healthy():
    report = evaluate("checkout", SEED_EXAMPLE, DEFAULT)
    assert report.status == "healthy"
    assert report.violations == ()
    assert all(m.ok for m in report.metrics)


@pytest.mark.parametrize(
    ("changes", "status", "violated"),
    [
        ({"p50_ms": 150}, "warning", ["p50_ms"]),
        ({"p95_ms": 650, "error_rate_pct": 2.5}, "warning", ["p95_ms", "error_rate_pct"]),
        (
            {"p50_ms": 150, "p99_ms": 1800, "uptime_pct": 99.5},
            "critical",
            ["p50_ms", "p99_ms", "uptime_pct"],
        ),
        (
            {"p50_ms": 150, "p95_ms": 650, "p99_ms": 1800, "uptime_pct": 98, "error_rate_pct": 4},
            "critical",
            ["p50_ms", "p95_ms", "p99_ms", "error_rate_pct", "uptime_pct"],
        ),
    ],
)
def test_status_follows_the_number_of_violations(changes, status, violated):
    inputs = replace(SEED_EXAMPLE, **changes)
    report = evaluate("checkout", inputs, DEFAULT)
    assert report.status == status
    assert [v.metric for v in report.violations] == violated
    for v in report.violations:
        assert v.value == changes[v.metric]
        assert v.threshold == getattr(DEFAULT, v.metric)
        assert v.recommendation
    assert len(report.recommendations) == len(violated)


def test_values_equal_to_the_threshold_meet_it():
    inputs = SLAInputs(p50_ms=100, p95_ms=500, p99_ms=1000, uptime_pct=99.9, error_rate_pct=1.0)
    assert evaluate("svc", inputs, DEFAULT).status == "healthy"


def test_unknown_values_are_not_violations():
    report = evaluate("idle", SLAInputs(), DEFAULT)
    assert report.status == "healthy"
    assert [m.ok for m in report.metrics] == [None] * 5


def test_recommendations_quote_value_and_threshold():
    inputs = SLAInputs(p50_ms=150, p95_ms=650, error_rate_pct=2.5, count=2000, errors=50)
    advice = {v.metric: v.recommendation for v in evaluate("svc", inputs, DEFAULT).violations}
    assert "150 ms" in advice["p50_ms"] and "100 ms" in advice["p50_ms"]
    assert "650 ms" in advice["p95_ms"] and "500 ms" in advice["p95_ms"]
    assert "2.5%" in advice["error_rate_pct"] and "1%" in advice["error_rate_pct"]
    assert "50 of 2,000" in advice["error_rate_pct"]
    assert "release" in advice["error_rate_pct"]
    assert "top issues" in advice["error_rate_pct"]


def test_p99_advice_tells_a_tail_problem_from_a_shifted_distribution():
    tail = evaluate("svc", SLAInputs(p50_ms=40, p99_ms=1500), DEFAULT).violations[0]
    assert tail.metric == "p99_ms"
    assert "38x" in tail.recommendation and "GC" in tail.recommendation
    shifted = evaluate("svc", SLAInputs(p50_ms=400, p99_ms=1200), DEFAULT).violations
    p99 = next(v for v in shifted if v.metric == "p99_ms")
    assert "3.0x" in p99.recommendation and "saturation" in p99.recommendation


def test_uptime_advice_reports_the_bad_time():
    inputs = SLAInputs(uptime_pct=99.5, downtime_ms=36 * MIN)
    (violation,) = evaluate("svc", inputs, DEFAULT).violations
    assert "99.5%" in violation.recommendation and "99.9%" in violation.recommendation
    assert "36 min" in violation.recommendation


def test_report_to_dict_is_json_and_text_table_puts_the_worst_first():
    good = evaluate("search", SEED_EXAMPLE, DEFAULT)
    bad = evaluate(
        "checkout",
        SLAInputs(p50_ms=150, p95_ms=650, p99_ms=1800, error_rate_pct=0.3, count=1234),
        DEFAULT,
    )
    data = json.loads(json.dumps(bad.to_dict()))
    assert data["status"] == "critical"
    assert data["metrics"]["p95_ms"] == {"value": 650, "threshold": 500.0, "ok": False}
    assert [v["metric"] for v in data["violations"]] == ["p50_ms", "p95_ms", "p99_ms"]
    text = format_text([good, bad])
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["SERVICE", "STATUS", "REQUESTS"]
    assert lines[1].startswith("checkout") and "critical" in lines[1]
    assert "1,234" in lines[1] and "650 ms / 500 ms !" in lines[1]
    assert lines[2].startswith("search") and "!" not in lines[2]
    assert "checkout (critical):" in text and bad.violations[2].recommendation in text


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


def test_overrides_globally_and_per_service():
    config = SLAConfig.from_mapping(
        {
            "p99_ms": 800,
            "services": {"checkout": {"p95_ms": 300, "error_rate_pct": 0.5}},
            "slo_period_days": 28,
        }
    )
    assert config.threshold_for("search") == SLAThreshold(p99_ms=800.0)
    assert config.threshold_for("checkout") == SLAThreshold(
        p95_ms=300.0, p99_ms=800.0, error_rate_pct=0.5
    )
    assert config.period_ms == 28 * DAY
    assert SLAConfig.from_mapping({}) == SLAConfig()


def test_availability_objective_defaults_to_uptime_and_is_overridable():
    config = SLAConfig.from_mapping(
        {
            "uptime_pct": 99.5,
            "services": {
                "pay": {"availability_objective_pct": 99.99},
                "search": {"uptime_pct": 99},
            },
        }
    )
    assert config.objective_for("other") == 99.5
    assert config.objective_for("search") == 99.0
    assert config.objective_for("pay") == 99.99
    config = SLAConfig.from_mapping(
        {"availability_objective_pct": 99.95, "services": {"search": {"uptime_pct": 99}}}
    )
    assert config.objective_for("search") == 99.95


@pytest.mark.parametrize(
    ("data", "key", "why"),
    [
        ({"services": {"checkout": {"p95_ms": -5}}}, "sla.services.checkout.p95_ms", "positive"),
        ({"p50_ms": 0}, "sla.p50_ms", "positive"),
        ({"p50_ms": "fast"}, "sla.p50_ms", "number"),
        ({"p99_ms": True}, "sla.p99_ms", "number"),
        ({"p99_ms": float("nan")}, "sla.p99_ms", "number"),
        ({"error_rate_pct": 0}, "sla.error_rate_pct", r"\(0, 100\]"),
        ({"services": {"a": {"uptime_pct": 100.5}}}, "sla.services.a.uptime_pct", r"\(0, 100\]"),
        ({"slo_period_days": -1}, "sla.slo_period_days", "positive"),
        ({"availability_objective_pct": 100}, "sla.availability_objective_pct", "no error budget"),
        ({"uptime_pct": 100}, "sla.uptime_pct", "no error budget"),
        ({"services": {"pay": {"uptime_pct": 100}}}, "sla.services.pay.uptime_pct", "budget"),
        ({"latency_ms": 1}, "sla.latency_ms", "unknown key"),
        ({"services": {"checkout": {"p96_ms": 1}}}, "sla.services.checkout.p96_ms", "unknown"),
        ({"services": {"checkout": 5}}, "sla.services.checkout", "table"),
        ({"services": [1]}, "sla.services", "table"),
    ],
)
def test_bad_values_are_refused_naming_the_key(data, key, why):
    with pytest.raises(SLAConfigError, match=key.replace(".", r"\.") + ".*" + why):
        SLAConfig.from_mapping(data)
    assert issubclass(SLAConfigError, ValueError)


def test_unknown_key_error_lists_what_is_allowed():
    with pytest.raises(SLAConfigError, match=r"allowed: p50_ms, p95_ms"):
        SLAConfig.from_mapping({"services": {"checkout": {"p96_ms": 1}}})


# --------------------------------------------------------------------------
# Uptime and window summaries
# --------------------------------------------------------------------------


def test_uptime_all_good_windows():
    assert uptime_pct(minutes(T0, 60, 1000, 3), DEFAULT) == 100.0


def test_uptime_is_the_exact_share_of_good_windows():
    windows = minutes(T0, 1000, 1000, 0)
    for i in (5, 500, 999):
        windows[i]["errors"] = 20  # 2% > 1%
    assert uptime_pct(windows, DEFAULT) == 99.7  # 997 of 1000


def test_a_window_at_exactly_the_error_threshold_is_up():
    assert uptime_pct([rollup(T0, 1000, 10)], DEFAULT) == 100.0
    assert uptime_pct([rollup(T0, 1000, 11)], DEFAULT) == 0.0


def test_windows_without_traffic_are_excluded_and_all_idle_is_unknown():
    windows = [*minutes(T0, 3, 100, 0), rollup(T0 + 3 * MIN, 100, 50)]
    windows += [rollup(T0 + 4 * MIN, 0, 0), rollup(T0 + 5 * MIN, 0, 0)]
    assert uptime_pct(windows, DEFAULT) == 75.0
    assert uptime_pct([rollup(T0, 0, 0)], DEFAULT) is None
    assert uptime_pct([], DEFAULT) is None


def test_client_errors_do_not_count():
    assert uptime_pct([rollup(T0, 100, 0, client_errors=90)], DEFAULT) == 100.0


def test_summarize_windows():
    windows = [
        *minutes(T0, 8, 1000, 2),
        rollup(T0 + 8 * MIN, 1000, 100),
        rollup(T0 + 9 * MIN, 0, 0),
    ]
    inputs = summarize_windows(windows, DEFAULT, p50_ms=30.0, p99_ms=400.0)
    assert inputs.count == 9000 and inputs.errors == 116
    assert inputs.error_rate_pct == pytest.approx(100 * 116 / 9000)
    assert inputs.uptime_pct == 100 * 8 / 9
    assert inputs.downtime_ms == MIN
    assert (inputs.start, inputs.end) == (T0, T0 + 10 * MIN)
    assert (inputs.p50_ms, inputs.p95_ms, inputs.p99_ms) == (30.0, None, 400.0)
    report = evaluate("checkout", inputs, DEFAULT)
    assert [v.metric for v in report.violations] == ["error_rate_pct", "uptime_pct"]
    assert report.status == "warning"
    empty = summarize_windows([], DEFAULT)
    assert (empty.count, empty.error_rate_pct, empty.uptime_pct) == (0, None, None)


def test_whole_service_rollups_groups_by_service():
    rollups = [
        rollup(T0, 10, 0),
        rollup(T0, 5, 0, endpoint="/api/pay"),
        rollup(T0, 7, 0, service="search"),
        rollup(T0 + MIN, 11, 0),
    ]
    grouped = whole_service_rollups(rollups)
    assert sorted(grouped) == ["checkout", "search"]
    assert [r["count"] for r in grouped["checkout"]] == [10, 11]


# --------------------------------------------------------------------------
# Error budget and burn rates
# --------------------------------------------------------------------------

# 30 days of 1-minute rollups at 0.01% errors, then a 20-minute outage at 50% errors.
NORMAL_MINUTES = 30 * 24 * 60
OUTAGE_START = T0 + NORMAL_MINUTES * MIN
OUTAGE_END = OUTAGE_START + 20 * MIN


@pytest.fixture(scope="module")
def outage() -> list[dict]:
    return minutes(T0, NORMAL_MINUTES, 10_000, 1) + minutes(OUTAGE_START, 20, 10_000, 5_000)


def test_error_budget_before_and_after_an_outage(outage):
    before = error_budget(outage, 99.9, 30 * DAY, OUTAGE_START)
    assert (before.count, before.errors) == (NORMAL_MINUTES * 10_000, NORMAL_MINUTES)
    assert before.budget_fraction == pytest.approx(0.001)
    assert before.consumed_fraction == pytest.approx(0.1)  # 0.01% of a 0.1% budget
    # The period now starts 20 minutes later: the first 20 normal minutes drop out.
    after = error_budget(outage, 99.9, 30 * DAY, OUTAGE_END)
    errors = (NORMAL_MINUTES - 20) * 1 + 20 * 5_000
    count = NORMAL_MINUTES * 10_000
    assert (after.count, after.errors) == (count, errors)
    assert after.error_ratio == errors / count
    assert after.consumed_fraction == pytest.approx(errors / count / 0.001)  # 0.33144
    assert after.remaining_fraction == pytest.approx(1 - errors / count / 0.001)
    assert not after.exhausted
    assert json.loads(json.dumps(after.to_dict()))["errors"] == errors


def test_overspent_budget_goes_negative():
    budget = error_budget(minutes(T0, 1440, 1000, 2), 99.9, 30 * DAY, T0 + DAY)
    assert budget.consumed_fraction == pytest.approx(2.0)
    assert budget.remaining_fraction == pytest.approx(-1.0)
    assert budget.exhausted


def test_no_traffic_spends_nothing_and_objective_must_leave_a_budget():
    budget = error_budget([], 99.9, 30 * DAY, T0)
    assert (budget.consumed_fraction, budget.remaining_fraction) == (0.0, 1.0)
    with pytest.raises(ValueError, match="objective_pct"):
        error_budget([], 100.0, 30 * DAY, T0)


def test_outage_fires_both_pairs_at_its_end(outage):
    alerts = by_name(burn_rates(outage, 99.9, OUTAGE_END))
    fast, slow = alerts["1h/5m"], alerts["6h/30m"]
    # 1 h = 40 normal minutes + 20 outage minutes; 5 min = all outage.
    assert fast.long_rate == pytest.approx((40 + 20 * 5_000) / (60 * 10_000) / 0.001)  # 166.7
    assert fast.short_rate == pytest.approx(0.5 / 0.001)
    assert (fast.factor, fast.severity, fast.action, fast.firing) == (
        14.4,
        "critical",
        "page",
        True,
    )
    # 6 h = 340 normal + 20 outage minutes; 30 min = 10 normal + 20 outage.
    assert slow.long_rate == pytest.approx((340 + 100_000) / (360 * 10_000) / 0.001)  # 27.9
    assert slow.short_rate == pytest.approx((10 + 100_000) / (30 * 10_000) / 0.001)  # 333.4
    assert (slow.factor, slow.severity, slow.firing) == (6.0, "high", True)


def test_outage_pages_from_its_second_minute(outage):
    # After 1 minute: 1 h ratio (59 + 5000) / 600000 -> 8.4x, not yet above 14.4x.
    first = by_name(burn_rates(outage, 99.9, OUTAGE_START + MIN))["1h/5m"]
    assert first.long_rate == pytest.approx((59 + 5_000) / 600_000 / 0.001)
    assert first.short_rate > 14.4 and not first.firing
    # After 2 minutes: (58 + 10000) / 600000 -> 16.8x: both windows above 14.4x.
    assert by_name(burn_rates(outage, 99.9, OUTAGE_START + 2 * MIN))["1h/5m"].firing
    # Before the outage nothing burns faster than 0.1x.
    quiet = burn_rates(outage, 99.9, OUTAGE_START)
    assert not any(a.firing for a in quiet)
    assert all(a.long_rate == pytest.approx(0.1) for a in quiet)


def test_slow_burn_fires_the_6x_pair_only():
    start = T0 + DAY
    rollups = minutes(T0, 24 * 60, 1000, 0) + minutes(start, 8 * 60, 1000, 7)  # 0.7% -> 7x
    end = start + 8 * HOUR
    alerts = by_name(burn_rates(rollups, 99.9, end))
    assert alerts["6h/30m"].long_rate == pytest.approx(7.0)
    assert alerts["6h/30m"].short_rate == pytest.approx(7.0)
    assert alerts["6h/30m"].firing
    assert alerts["1h/5m"].long_rate == pytest.approx(7.0)
    assert not alerts["1h/5m"].firing  # 7x < 14.4x
    # Both windows must agree: the 6 h window crosses 6x only after 309 bad minutes
    # (308 * 7 / 360000 = 0.5989% -> 5.99x; 309 * 7 / 360000 = 0.6008% -> 6.01x).
    at_308 = by_name(burn_rates(rollups, 99.9, start + 308 * MIN))["6h/30m"]
    assert at_308.long_rate == pytest.approx(308 * 7 / 360_000 / 0.001)
    assert at_308.short_rate == pytest.approx(7.0)
    assert not at_308.firing
    assert by_name(burn_rates(rollups, 99.9, start + 309 * MIN))["6h/30m"].firing


def test_a_short_spike_stops_paging_once_the_short_window_recovers():
    spike = T0 + 2 * HOUR
    rollups = minutes(T0, 120, 1000, 0) + minutes(spike, 3, 1000, 1000)
    rollups += minutes(spike + 3 * MIN, 10, 1000, 0)
    during = by_name(burn_rates(rollups, 99.9, spike + 3 * MIN))["1h/5m"]
    assert during.short_rate == pytest.approx(3000 / 5000 / 0.001)  # 600x
    assert during.long_rate == pytest.approx(3000 / 60_000 / 0.001)  # 50x
    assert during.firing
    later = by_name(burn_rates(rollups, 99.9, spike + 13 * MIN))
    assert later["1h/5m"].long_rate == pytest.approx(50.0)  # the hour still remembers it
    assert later["1h/5m"].short_rate == 0.0
    assert not later["1h/5m"].firing
    # The 30-minute short window still holds the spike, so the 6x pair keeps firing.
    assert later["6h/30m"].long_rate == pytest.approx(3000 / 133_000 / 0.001)
    assert later["6h/30m"].short_rate == pytest.approx(3000 / 30_000 / 0.001)
    assert later["6h/30m"].firing


def test_window_membership_at_the_edges():
    # 10 s rollups [0,10) .. [70,80) s, rollup k has 100 requests and k errors.
    rollups = [rollup(T0 + k * 10_000, 100, k, size=10_000) for k in range(8)]
    policy = BurnRatePolicy(55_000, 30_000, 3.5, "low", action="ticket")
    (alert,) = burn_rates(rollups, 99.0, T0 + 65_000, policies=[policy])
    # Long window [10, 65) s: [0,10) ends at its start (out), [60,70) not closed (out) -> k=1..5.
    assert alert.long_rate == pytest.approx(15 / 500 / 0.01)
    # Short window [35, 65) s: [30,40) straddles its start and counts whole -> k=3..5.
    assert alert.short_rate == pytest.approx(12 / 300 / 0.01)
    assert (alert.name, alert.firing, alert.action) == ("55s/30s", False, "ticket")
    assert alert.to_dict()["short_rate"] == alert.short_rate


def test_window_totals_equal_a_scan_of_every_window():
    """Each rollup is added once at its rank among the window starts; every window gets
    what a scan of it would (ends after its start, at or before now)."""
    from sla.budget import _window_totals

    rng = random.Random(11)
    now = 10**9
    for _ in range(500):
        rollups = [
            {"end": now - rng.randrange(-60_000, 8 * 3_600_000), "count": rng.randrange(1000)}
            | ({"errors": rng.randrange(50)} if rng.random() < 0.9 else {})
            for _ in range(rng.randrange(40))
        ]
        starts = [now - rng.randrange(0, 10**7) for _ in range(rng.randrange(1, 7))]
        starts += starts[:1]  # the same start twice
        want = [
            [
                sum(r["count"] for r in rollups if ws < r["end"] <= now),
                sum(r.get("errors", 0) for r in rollups if ws < r["end"] <= now),
            ]
            for ws in starts
        ]
        assert _window_totals(rollups, starts, now) == want
