"""The recent points a signal carries for its chart (issue 23): a firing or resolved threshold
or anomaly signal of a series brings the last RECENT_POINTS windows of its metric, so the
notifier can draw the incident without the rollups; the points are bounded, restored from
the changelog and forgotten with an idle series."""

from __future__ import annotations

import random

import orjson

from stages.baseline import RECENT_POINTS, BaselineConfig, BaselineStage
from tests.test_baseline_stage import MIN, T0, feed, healthy, issue, rollup, run_minutes, signals


def _points_ok(signal: dict, metric_of: dict) -> None:
    points = signal["points"]
    assert 2 <= len(points) <= RECENT_POINTS
    starts = [t for t, _ in points]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert starts[-1] == signal["window"]["start"]  # the window that fired is the last one
    assert abs(points[-1][1] - signal["value"]) <= 1e-3 * abs(signal["value"])  # 4 figures
    assert all(metric_of[t] == v for t, v in points if t in metric_of)


def test_firing_and_resolved_signals_carry_their_metric_s_recent_points():
    stage = BaselineStage(BaselineConfig(resolve_after_s=180))
    rng = random.Random(1)
    changelog: dict = {}
    run_minutes(stage, rng, range(0, 120), changelog=changelog)
    incident = run_minutes(stage, rng, range(120, 130), slow_from=120, changelog=changelog)
    after = run_minutes(stage, rng, range(130, 160), changelog=changelog)
    p99 = [s for s in incident + after if s["rule"] == "p99-over-1s"]
    assert [s["state"] for s in p99] == ["firing", "resolved"]
    kept = {p[0]: p for p in stage.recent.rows(0, "checkout|/pay") or []}
    column = stage._point_metrics.index("p99_ms") + 1
    p99_of = {t: p[column] for t, p in kept.items()}
    for signal in p99:
        _points_ok(signal, p99_of)
    fired = p99[0]["points"]
    assert len(fired) == RECENT_POINTS  # two hours of data: the last 45 minutes
    assert fired[-1][1] == 2400.0 and fired[0][1] < 1000  # the slowdown, after normal
    anomalies = [s for s in incident + after if s["kind"] == "anomaly"]
    assert anomalies and all(s["key"] == "checkout|/pay" for s in anomalies)
    for signal in anomalies:
        metric = signal["metric"]
        column = stage._point_metrics.index(metric) + 1
        assert signal["points"][-1][0] == signal["window"]["start"]
        assert len(signal["points"]) == RECENT_POINTS and column > 0
    # Kept small: one changelog value per series, a few kB.
    assert len(orjson.dumps(changelog[(0, "r|checkout|/pay")])) < 4_000


def test_points_survive_a_restore_and_the_next_signal_shows_the_time_before_it():
    rng = random.Random(2)
    changelog: dict = {}
    stage = BaselineStage()
    run_minutes(stage, rng, range(0, 30), changelog=changelog)
    restored = BaselineStage()
    for (partition, key), value in changelog.items():
        restored.restore(partition, key, orjson.loads(orjson.dumps(value)))
    assert restored.recent.rows(0, "checkout|/pay") == stage.recent.rows(0, "checkout|/pay")
    fired = run_minutes(restored, rng, range(30, 33), slow_from=30)
    [p99] = [s for s in fired if s["rule"] == "p99-over-1s"]
    assert p99["points"][0][0] == T0  # from before the restart
    assert len(p99["points"]) == 31 + (p99["window"]["start"] - (T0 + 30 * MIN)) // MIN


def test_a_gap_drops_points_older_than_the_chart_and_odd_changelog_values_start_afresh():
    stage = BaselineStage()
    rng = random.Random(4)
    for minute in range(0, 10):
        feed(stage, [healthy(rng, "search|/q", minute)])
    feed(stage, [healthy(rng, "search|/q", 200)])  # back after more than 45 minutes
    assert [p[0] for p in stage.recent.rows(0, "search|/q") or []] == [T0 + 200 * MIN]
    for value in ({"metrics": ["p99_ms"], "points": [[T0, 1.0]]}, {"x": 1}, None, "junk"):
        stage.restore(0, "r|search|/q", value)
        assert "search|/q" not in stage.recent.keys(0)


def test_issue_and_service_signals_carry_no_points():
    stage = BaselineStage()
    new = signals(feed(stage, [issue("new", 1, T0 + MIN)], topic="issues"))
    assert new and all("points" not in s for s in new)
    outage = [rollup("shop|*", T0 + m * MIN, 600, 40.0, 180.0, errors=300) for m in range(0, 20)]
    fired = [s for r in outage for s in signals(feed(stage, [r]))]
    service = [s for s in fired if s["metric"] in ("sla_violations", "burn_rate")]
    rate = [s for s in fired if s["metric"] == "error_rate_pct" and s["kind"] == "threshold"]
    assert service and all("points" not in s for s in service)
    assert rate and all(s["points"][-1][1] == 50.0 for s in rate)


def test_an_idle_series_points_are_tombstoned_with_it():
    stage = BaselineStage(BaselineConfig(idle_expiry_s=3600))
    rng = random.Random(3)
    changelog: dict = {}
    for minute in range(0, 30):
        changelog.update(feed(stage, [healthy(rng, "batch|/job", minute)]).state)
    assert changelog[(0, "r|batch|/job")]["points"]
    for minute in range(30, 130):
        changelog.update(feed(stage, [healthy(rng, "search|/q", minute)]).state)
    assert changelog[(0, "r|batch|/job")] is None
    assert "batch|/job" not in stage.recent.keys(0) and "search|/q" in stage.recent.keys(0)


def test_an_early_finding_shows_its_open_window_last():
    from tests.test_early import T0 as E0
    from tests.test_early import baseline_stage, closed_rollup, early_record, firing, record

    stage = baseline_stage()
    fired = []
    for n in range(3):
        start = E0 + n * 10_000
        fired += firing(
            stage.process([record("rollups.early", early_record(start, 10), 2 * n)], 1.0),
            "high-5xx-rate",
        )
        fired += firing(
            stage.process([record("rollups", closed_rollup(start, 20), 2 * n + 1)], 1.0),
            "high-5xx-rate",
        )
    (signal,) = fired
    assert signal["provisional"] is True
    assert signal["points"][-1] == [E0 + 20_000, 10.0]  # the open window, provisional
    assert [t for t, _ in signal["points"]] == [E0, E0 + 10_000, E0 + 20_000]
    kept = stage.recent.rows(0, signal["key"]) or []
    assert kept[-1][0] == E0 + 20_000 and kept[-1][1] != 10.0  # the closed window's, not early
