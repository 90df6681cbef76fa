"""An alert carries its metric's recent points (issue 23): the signal's `points` ride on
every transition of the alert, checked and bounded, replaced by a later signal's (the
resolution's shows the end of the incident), and restored with the alert; an issue alert's
affected hosts grow with its updates."""

from __future__ import annotations

import orjson

from stages.escalation import MAX_POINTS, EscalationStage
from tests.test_escalation import NOW, Run, signal
from tests.test_escalation_wording import MS, p99

AID = "checkout:p99-over-1s:checkout|/api/pay"


def _points(n: int, last: float, start: int = MS - 3_600_000) -> list[list[float]]:
    return [[start + i * 60_000, 200.0] for i in range(n - 1)] + [[start + (n - 1) * 60_000, last]]


def test_transitions_carry_the_signal_s_points_and_the_resolution_its_own():
    run = Run(EscalationStage())
    [fired] = run.send("signals", p99(1370.0, points=_points(45, 1370.0)))
    assert fired["points"] == _points(45, 1370.0)
    resolved = {**signal("p99-over-1s", "checkout|/api/pay", "warning", "resolved")}
    resolved.update(service="checkout", metric="p99_ms", value=200.0, points=_points(45, 200.0))
    [done] = run.send("signals", resolved, NOW + 600)
    assert done["transition"] == "resolved" and done["points"] == _points(45, 200.0)
    # A restored stage keeps them.
    stage = EscalationStage()
    for (partition, key), value in run.changelog.items():
        stage.restore(partition, key, orjson.loads(orjson.dumps(value)))
    assert stage.alerts[0][AID].points == _points(45, 200.0)


def test_points_are_bounded_and_odd_ones_dropped():
    run = Run(EscalationStage())
    odd = [[1, "x"], [2], "junk", [3, None], [2**60, 1.0], [MS, 5.0, 6.0]]
    many = _points(500, 1370.0)
    [fired] = run.send("signals", p99(1370.0, points=many[:-3] + odd + many[-3:]))
    assert len(fired["points"]) <= MAX_POINTS
    assert fired["points"][-3:] == many[-3:]
    assert all(isinstance(t, int) and isinstance(v, float) for t, v in fired["points"])
    [again] = Run(EscalationStage()).send("signals", p99(1370.0, points="not a list"))
    assert again["points"] == []


def test_a_later_signal_without_points_keeps_the_alert_s():
    run = Run(EscalationStage())
    run.send("signals", p99(1370.0, points=_points(10, 1370.0)))
    run.send("signals", {**p99(2500.0), "id": "again"}, NOW + 60)
    assert run.stage.alerts[0][AID].points == _points(10, 1370.0)


def test_an_issue_alert_s_hosts_grow_with_its_updates():
    issue = {"issue_id": "f" * 32, "exception_type": "KeyError", "events": 3,
             "hosts": ["web-1"], "host_count": 1}  # fmt: skip
    first = signal("new-issue", "f" * 32, "high", service="shop", fingerprint="f" * 32,
                   metric="issue_new", value=1.0, issue=issue)  # fmt: skip
    run = Run(EscalationStage())
    [fired] = run.send("signals", first)
    assert fired["facts"]["hosts"] == ["web-1"] and fired["facts"]["host_count"] == 1
    later = {
        **first,
        "id": "later",
        "issue": {**issue, "hosts": ["web-1", "web-2"], "host_count": 37},
    }
    run.send("signals", later, NOW + 60)
    facts = run.stage.alerts[0]["shop:issue:" + "f" * 32].facts
    assert facts["hosts"] == ["web-1", "web-2"] and facts["host_count"] == 37
