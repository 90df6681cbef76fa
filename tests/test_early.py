"""Early evaluation (stages/early.py): rules checked on windows that are still open, and
the baseline stage counting such an observation once per window."""

from __future__ import annotations

import random
from itertools import pairwise

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detection.rules import DEFAULT_RULES, Rule
from stages.base import Record, StageResult
from stages.baseline import BaselineConfig, BaselineStage
from stages.early import EARLY_TOPIC
from stages.ingest_windows import PartialWindowsCore
from stages.windows import WindowsConfig, WindowsCore

T0 = 1_795_320_000_000  # a multiple of 60 s
P99_RULE = Rule("p99-over-1s", "p99_ms", 1000.0, severity="warning", window_s=300)


def core(
    resolution: str = "10s", rules=DEFAULT_RULES, kind: str = "windows", **overrides
) -> WindowsCore:
    """The windows stage's core, or (`kind` "ingest") ingest's partial windows, whose
    early evaluation reads its columns as figures (`PartialBucket.summaries`)."""
    config = WindowsConfig(
        early_rules=rules, early_resolution=resolution, early_eval_s=1.0, **overrides
    )
    if kind == "ingest":
        return PartialWindowsCore(config)
    return WindowsCore(config, "events.latency")


# Early evaluation of open windows, on the windows stage's and on ingest's partial ones.
BOTH = pytest.mark.parametrize("kind", ["windows", "ingest"])


def feed(
    windows: WindowsCore,
    ts_from: int,
    count: int,
    *,
    series: tuple[str, str] = ("checkout", "/pay"),
    errors_every: int = 0,
    duration_ms: float = 20.0,
    slow_every: int = 0,
) -> None:
    """`count` events of one series, 10 ms apart from `ts_from`."""
    for n in range(count):
        status = 500 if errors_every and n % errors_every == 0 else 200
        duration = 2500.0 if slow_every and n % slow_every == 0 else duration_ms
        windows.add_fields(0, n, series[0], series[1], ts_from + n * 10, duration, status, 0.0)


def early_records(result: StageResult) -> list[dict]:
    return [e.value for e in result.emits if e.topic == EARLY_TOPIC]


def rollups(result: StageResult) -> list[dict]:
    return [e.value for e in result.emits if e.topic == "rollups"]


@BOTH
def test_an_error_burst_is_reported_while_its_window_is_still_open(kind: str):
    windows = core(kind=kind)
    feed(windows, T0, 200, errors_every=5)  # 20 % 5xx over 2 s of a 10 s window
    result = windows.finish([0], now=100.0)
    assert rollups(result) == []  # the window is open: nothing closed
    (whole, pay) = sorted(early_records(result), key=lambda r: r["series"])
    assert pay["series"] == "checkout|/pay" and whole["series"] == "checkout|*"
    assert pay["provisional"] is True
    assert (pay["start"], pay["end"], pay["resolution"]) == (T0, T0 + 10_000, "10s")
    assert (pay["count"], pay["errors"]) == (200, 40)
    assert pay["metrics"]["error_rate_pct"] == 20.0
    assert set(pay["rules"]) == {"high-5xx-rate", "very-high-5xx-rate"}
    assert pay["as_of"] == T0 + 1990


@BOTH
def test_each_rule_and_window_is_observed_once_and_only_as_often_as_configured(kind: str):
    windows = core(kind=kind)
    feed(windows, T0, 200, errors_every=5)
    assert early_records(windows.finish([0], now=100.0))
    feed(windows, T0 + 2000, 100, errors_every=2)
    assert early_records(windows.finish([0], now=100.5)) == []  # within early_eval_s
    assert early_records(windows.finish([0], now=102.0)) == []  # already observed
    # The next window is a new observation.
    feed(windows, T0 + 10_000, 100, errors_every=4)
    result = windows.finish([0], now=103.0)
    assert {(r["series"], r["start"]) for r in early_records(result)} == {
        ("checkout|/pay", T0 + 10_000),
        ("checkout|*", T0 + 10_000),
    }


@BOTH
def test_rates_wait_for_enough_events_but_growing_metrics_do_not(kind: str):
    max_rule = Rule("max-over-2s", "max_ms", 2000.0)
    windows = core(rules=(*DEFAULT_RULES, max_rule), early_min_events=50, kind=kind)
    feed(windows, T0, 10, errors_every=1, slow_every=5)  # all 5xx, 2 slow, but 10 events
    (record, _) = early_records(windows.finish([0], now=10.0))
    assert record["rules"] == ["max-over-2s"]  # max only grows: final already
    assert record["metrics"] == {"max_ms": 2500.0}


def test_an_early_percentile_equals_the_closed_windows_percentile():
    windows = core(rules=(P99_RULE,))
    rng = random.Random(3)
    for n in range(300):
        duration = 1800.0 + rng.random() * 900 if n % 50 == 0 else rng.lognormvariate(3, 0.5)
        windows.add_fields(0, n, "checkout", "/pay", T0 + n * 10, duration, 200, 0.0)
    early = {r["series"]: r for r in early_records(windows.finish([0], now=10.0))}
    assert early["checkout|/pay"]["rules"] == ["p99-over-1s"]
    # Close the window (the watermark passes its end) with nothing more in it.
    windows.add_fields(0, 999, "other", "/x", T0 + 20_000, 5.0, 200, 0.0)
    closed = {r["series"]: r for r in rollups(windows.finish([0], now=11.0))}
    for series in ("checkout|/pay", "checkout|*"):
        assert early[series]["metrics"]["p99_ms"] == closed[series]["p99_ms"] > 1000


@BOTH
def test_healthy_traffic_sends_nothing(kind: str):
    windows = core(rules=(*DEFAULT_RULES, P99_RULE), kind=kind)
    rng = random.Random(5)
    for n in range(2000):
        service, endpoint = rng.choice([("a", "/1"), ("a", "/2"), ("b", "/1")])
        duration = rng.lognormvariate(3, 0.7)
        windows.add_fields(0, n, service, endpoint, T0 + n * 5, duration, 200, 0.0)
        if n % 100 == 0:
            assert early_records(windows.finish([0], now=n / 10)) == []


def test_a_coarse_resolution_adds_the_closed_smaller_windows_of_the_minute():
    windows = core(resolution="1m", allowed_lateness_s=0.0)
    feed(windows, T0, 100, errors_every=50)  # 2 % in the first 10 s window
    windows.finish([0], now=1.0).whole()  # under 5 %: only high-5xx-rate (1 %) is observed
    feed(windows, T0 + 10_000, 100, errors_every=8)  # closes the first window; 13 %
    result = windows.finish([0], now=3.0)
    assert [r["start"] for r in rollups(result)] == [T0, T0]  # the 10 s window closed
    pay = next(r for r in early_records(result) if r["series"] == "checkout|/pay")
    assert (pay["resolution"], pay["start"], pay["end"]) == ("1m", T0, T0 + 60_000)
    assert (pay["count"], pay["errors"]) == (200, 2 + 13)
    assert pay["rules"] == ["very-high-5xx-rate"]


def test_off_when_the_interval_is_zero_or_the_resolution_is_not_windowed():
    for windows in (
        WindowsCore(
            WindowsConfig(early_rules=DEFAULT_RULES, early_resolution="10s", early_eval_s=0),
            "x",
        ),
        core(resolution="5m"),
    ):
        feed(windows, T0, 200, errors_every=2)
        assert early_records(windows.finish([0], now=5.0)) == []


# --- the baseline stage ----------------------------------------------------------------------


def record(topic: str, value: dict, offset: int) -> Record:
    return Record(topic, 0, offset, value["series"].encode(), orjson.dumps(value))


def pay_window(start: int) -> dict:
    """checkout|/pay's 10 s window at `start`: what rollups and early observations share."""
    return {
        "series": "checkout|/pay",
        "service": "checkout",
        "endpoint": "/pay",
        "resolution": "10s",
        "start": start,
        "end": start + 10_000,
    }


def closed_rollup(start: int, errors: int, count: int = 200) -> dict:
    return {
        "id": f"checkout|/pay|10s|{start}",
        **pay_window(start),
        "count": count,
        "errors": errors,
        "client_errors": 0,
        "late": 0,
        "mean_ms": 20.0,
        "max_ms": 30.0,
        "p50_ms": 20.0,
        "p90_ms": 25.0,
        "p95_ms": 26.0,
        "p99_ms": 29.0,
        "p999_ms": 30.0,
        "hist": "",
    }


def early_record(start: int, errors: int, count: int = 100) -> dict:
    return {
        **pay_window(start),
        "provisional": True,
        "as_of": start + 4000,
        "count": count,
        "errors": errors,
        "client_errors": 0,
        "rules": ["high-5xx-rate"],
        "metrics": {"error_rate_pct": 100.0 * errors / count},
    }


def firing(result: StageResult, rule: str) -> list[dict]:
    return [
        e.value for e in result.emits if e.value["rule"] == rule and e.value["state"] == "firing"
    ]


def baseline_stage() -> BaselineStage:
    rule = Rule("high-5xx-rate", "error_rate_pct", 1.0, window_s=300, min_occurrences=3)
    return BaselineStage(BaselineConfig(resolution="10s"), rules=(rule,))


def test_an_early_observation_counts_once_for_its_window():
    stage = baseline_stage()
    offset = 0
    fired = []
    for n in range(3):
        start = T0 + n * 10_000
        for topic, value in (
            (EARLY_TOPIC, early_record(start, 10)),
            ("rollups", closed_rollup(start, 20)),  # the same window, closed
        ):
            fired += firing(stage.process([record(topic, value, offset)], now=1.0), "high-5xx-rate")
            offset += 1
        if n < 2:
            assert fired == []  # two windows, not four occurrences
    (signal,) = fired
    assert signal["provisional"] is True  # the third window's early observation fired it
    assert signal["ts"] == T0 + 30_000 and signal["window"]["start"] == T0 + 20_000
    assert "early: 100 events" in signal["summary"]


def test_an_early_observation_after_its_window_closed_is_ignored():
    stage = BaselineStage(BaselineConfig(resolution="10s"), rules=DEFAULT_RULES)
    result = stage.process([record("rollups", closed_rollup(T0, 0), 0)], now=1.0)
    assert firing(result, "very-high-5xx-rate") == []
    late = early_record(T0, 50)
    late["rules"] = ["very-high-5xx-rate"]
    result = stage.process([record(EARLY_TOPIC, late, 1)], now=2.0)
    assert result.emits == []
    assert stage.stats["ignored"] == 1


def test_a_closed_window_fires_as_before_without_early_observations():
    stage = baseline_stage()
    fired = []
    for n in range(3):
        value = closed_rollup(T0 + n * 10_000, 20)
        fired += firing(stage.process([record("rollups", value, n)], now=1.0), "high-5xx-rate")
    (signal,) = fired
    assert signal["provisional"] is False and signal["ts"] == T0 + 30_000


def test_a_slowdown_to_a_one_second_median_pages_within_its_first_window():
    windows = core()  # the built-in rules
    rng = random.Random(9)
    for n in range(100):  # 1 s of a slowed endpoint: median about 1 s
        duration = 1000.0 * rng.lognormvariate(0, 0.5)
        windows.add_fields(0, n, "checkout", "/pay", T0 + n * 10, duration, 200, 0.0)
    records = {r["series"]: r for r in early_records(windows.finish([0], now=1.0))}
    # p90-over-1s fires on this one window; for p99-over-1s it is the first of three.
    assert set(records["checkout|/pay"]["rules"]) == {"p90-over-1s", "p99-over-1s"}
    assert records["checkout|/pay"]["metrics"]["p90_ms"] > 1000


def test_a_malformed_early_observation_is_ignored_not_fatal():
    stage = BaselineStage(BaselineConfig(resolution="10s"), rules=DEFAULT_RULES)
    broken = [
        {"series": "a|/x", "metrics": {"error_rate_pct": 50.0}},  # no window
        {**early_record(T0, 50), "metrics": "not a mapping"},
        {**early_record(T0, 50), "start": "yesterday"},
        {**early_record(T0, 50), "metrics": {"error_rate_pct": "high"}},
    ]
    records = [
        Record(EARLY_TOPIC, 0, n, b"k", orjson.dumps(value)) for n, value in enumerate(broken)
    ]
    assert stage.process(records, now=1.0).emits == []
    assert stage.stats["ignored"] == 3  # the last is well formed; its value is no number


@BOTH
def test_a_window_is_judged_again_once_it_has_grown_by_a_quarter(kind: str):
    windows = core(kind=kind)
    feed(windows, T0, 200)  # healthy: judged at 200 events
    assert early_records(windows.finish([0], now=1.0)) == []
    for n in range(40):  # 240 events, 40 of them 5xx (16.7 %): not judged yet
        windows.add_fields(0, 200 + n, "checkout", "/pay", T0 + 2000 + n, 20.0, 500, 0.0)
    assert early_records(windows.finish([0], now=2.0)) == []
    for n in range(10):  # 250 events: a quarter more than judged, so judged again
        windows.add_fields(0, 240 + n, "checkout", "/pay", T0 + 2100 + n, 20.0, 500, 0.0)
    (whole, pay) = sorted(early_records(windows.finish([0], now=3.0)), key=lambda r: r["series"])
    assert (pay["count"], pay["errors"]) == (250, 50)
    assert (whole["series"], whole["count"]) == ("checkout|*", 250)


@BOTH
def test_values_that_arrive_after_a_flush_are_all_looked_at(kind: str):
    """A hot window's pending values move into its histogram every 128 values; the slow
    values that follow, in the window's new list, must still reach the percentile check."""
    p90 = Rule("p90-over-1s", "p90_ms", 1000.0, severity="high", window_s=300)
    windows = core(rules=(p90,), kind=kind)
    durations = [20.0] * 60
    for n, duration in enumerate(durations):
        windows.add_fields(0, n, "checkout", "/pay", T0 + n, duration, 200, 0.0)
    assert early_records(windows.finish([0], now=1.0)) == []  # judged: 60 fast values
    later = [20.0] * 68 + [2500.0] * 60 + [20.0] * 40  # a flush after the 68th
    for n, duration in enumerate(later):
        windows.add_fields(0, 60 + n, "checkout", "/pay", T0 + 100 + n, duration, 200, 0.0)
    records = {r["series"]: r for r in early_records(windows.finish([0], now=2.0))}
    assert records["checkout|/pay"]["rules"] == ["p90-over-1s"]
    assert records["checkout|/pay"]["metrics"]["p90_ms"] > 2000


@BOTH
def test_an_early_mean_counts_every_value_so_far(kind: str):
    mean_rule = Rule("mean-over-100ms", "mean_ms", 100.0)
    windows = core(rules=(mean_rule,), kind=kind)
    feed(windows, T0, 30, duration_ms=50.0)
    feed(windows, T0 + 300, 30, duration_ms=250.0)  # 60 events: a mean of 150 ms
    records = {r["series"]: r for r in early_records(windows.finish([0], now=1.0))}
    assert records["checkout|/pay"]["metrics"]["mean_ms"] == 150.0
    assert records["checkout|*"]["rules"] == ["mean-over-100ms"]


SERIES = [("checkout", "/pay"), ("checkout", "/cart"), ("search", "/q"), ("search", "/s")]
EARLY_EVENTS = st.lists(
    st.tuples(
        st.integers(0, len(SERIES) - 1),
        st.integers(0, 25_000),  # ms after T0: three 10 s windows
        st.sampled_from([5.0, 20.0, 400.0, 2500.0]),
        st.sampled_from([200, 200, 404, 500]),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(events=EARLY_EVENTS, cuts=st.lists(st.integers(0, 120), max_size=4))
def test_ingest_judges_its_columns_as_the_windows_stage_judges_its_windows(events, cuts):
    """Ingest's partial windows (counted with numpy, judged by series id and service)
    give the early observations the windows stage's windows give for the same events."""
    rules = (
        *DEFAULT_RULES,
        P99_RULE,
        Rule("max-over-2s", "max_ms", 2000.0),
        Rule("mean-over-300ms", "mean_ms", 300.0),
    )
    cores = [core(rules=rules, kind=kind, early_min_events=3) for kind in ("windows", "ingest")]
    seen: list[list[tuple]] = [[], []]
    bounds = [0, *sorted(cuts), len(events)]
    for step, (a, b) in enumerate(pairwise(bounds)):
        for windows, out in zip(cores, seen, strict=True):
            for n, (s, at, duration, status) in enumerate(events[a:b], a):
                service, endpoint = SERIES[s]
                windows.add_fields(0, n, service, endpoint, T0 + at, duration, status, 0.0)
            records = early_records(windows.finish([0], now=10.0 + 2 * step))
            out += sorted(
                (
                    r["series"],
                    r["start"],
                    tuple(r["rules"]),
                    r["count"],
                    r["errors"],
                    r["client_errors"],
                    tuple(sorted(r["metrics"].items())),
                )
                for r in records
            )
    assert seen[0] == seen[1]
