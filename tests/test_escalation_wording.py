"""Alert wording in the escalation stage (issue 23): titles and summaries from the signal,
the peak kept while firing, resolution notices with duration and peak, restore of alerts
written before wording existed, and the units of alerting/alert_text.py."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from alerting.alert_text import duration_text, format_value
from stages.escalation import Alert, EscalationStage
from tests.test_escalation import NOW, Run, signal

MS = int(NOW * 1000)


def p99(value: float, **extra) -> dict:
    return signal(
        "p99-over-1s",
        "checkout|/api/pay",
        "warning",
        metric="p99_ms",
        value=value,
        threshold=1000.0,
        op=">",
        occurrences=3,
        window_s=300,
        since=MS - 180_000,
        window={"start": MS - 60_000, "end": MS},
        **extra,
    )


def test_title_is_the_sentence_and_figures_ride_along():
    run = Run(EscalationStage())
    [fired] = run.send("signals", p99(1370.0))
    assert fired["title"] == "checkout /api/pay p99 1.37 s, above 1 s"
    assert fired["summary"] == (
        "checkout /api/pay p99 1.37 s, above 1 s in 3 of the last 5 minutes, since 03:57 UTC"
    )
    assert fired["facts"]["threshold"] == 1000.0 and fired["peak"] == 1370.0


def test_a_resolve_command_says_who_how_long_and_the_peak():
    run = Run(EscalationStage())
    run.send("signals", p99(1370.0))
    run.send("signals", {**p99(2500.0), "id": "again"}, NOW + 60)  # a worse refire
    [done] = run.send(
        "commands",
        {"command": "resolve", "id": "checkout:p99-over-1s:checkout|/api/pay", "author": "ana"},
        NOW + 1200,
    )
    assert done["summary"] == (
        "Resolved after 23 min (03:57 UTC to 04:20 UTC), peak p99 2.5 s: resolved by ana."
    )
    assert done["facts"]["duration_ms"] == 23 * 60_000


def test_alerts_restored_from_before_wording_keep_working():
    old = asdict(
        Alert("checkout:r:k", "checkout", "r", "k", "high", "r: k", "s", {"severity": "high"})
    )
    del old["facts"], old["peak"]  # a changelog value written by the previous version
    stage = EscalationStage()
    stage.restore(0, "alert|checkout:r:k", old)
    run = Run(stage)
    [done] = run.send("signals", signal("r", "k", "high", "resolved", service="checkout"))
    assert done["summary"].startswith("Resolved") and done["title"] == "r: k"


@pytest.mark.parametrize(
    ("metric", "value", "text"),
    [
        ("p99_ms", 870.0, "870 ms"),
        ("p99_ms", 1370.0, "1.37 s"),
        ("error_rate_pct", 6.9, "6.9 %"),
        ("error_rate_pct", 0.0123, "0.0123 %"),
        ("throughput_rps", 1234.5, "1,234 req/s"),
        ("issue_rate_per_min", 14.917, "14.9/min"),
        ("p99_ms", float("nan"), "-"),
    ],
)
def test_values_carry_their_units(metric, value, text):
    assert format_value(metric, value) == text


def test_durations_read_naturally():
    assert [duration_text(ms) for ms in (45_000, 12 * 60_000, 125 * 60_000, 76 * 3_600_000)] == [
        "45 s",
        "12 min",
        "2 h 5 min",
        "3 d 4 h",
    ]
