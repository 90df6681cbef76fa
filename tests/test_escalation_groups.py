"""Grouped notifications under any interleaving of signals, acks, ticks and restarts.

Random sequences drive `EscalationStage` with a group wait (stages/escalation.py
`_flush_group`, `_flush_resolved`); the invariants are those of the `alerts` contract
(docs/contracts.md): every group message's leader and members agree, an alert that was
told it fired is told it resolved exactly once, and nothing is left waiting.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerting.routing import RoutingConfig
from stages.escalation import EscalationStage
from tests.test_escalation import NOW, Run, signal

ALERTS = (
    ("a", "checkout|/pay", "high"),
    ("b", "checkout|/cart", "critical"),
    ("c", "search|/q", "high"),
    ("d", "checkout|/x", "low"),
)
actions = st.lists(
    st.tuples(
        st.sampled_from(["fire", "fire", "clear", "clear", "ack", "tick", "restart"]),
        st.integers(0, len(ALERTS) - 1),
        st.sampled_from([0.0, 1.0, 5.0, 20.0, 31.0, 400.0]),
    ),
    max_size=40,
)


def restarted(run: Run, routing: RoutingConfig) -> Run:
    """A new stage restored from the old one's changelog, as after a crash."""
    stage = EscalationStage(routing)
    for (partition, key), value in run.changelog.items():
        stage.restore(partition, key, value)
    new = Run(stage)
    new.changelog, new.alerts, new.offset = run.changelog, run.alerts, run.offset
    return new


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=actions)
def test_group_messages_are_consistent_and_every_told_alert_hears_it_resolved_once(steps):
    routing = RoutingConfig(group_wait_s=30)
    run = Run(EscalationStage(routing))
    now = NOW
    for action, index, dt in steps:
        now += dt
        rule, key, severity = ALERTS[index]
        if action == "fire":
            run.send("signals", signal(rule, key, severity), now)
        elif action == "clear":
            run.send("signals", signal(rule, key, severity, "resolved"), now)
        elif action == "ack":
            service = key.split("|")[0]
            run.send("commands", {"command": "ack", "id": f"{service}:{rule}:{key}"}, now)
        elif action == "tick":
            run.tick(now)
        else:
            run = restarted(run, routing)
    for rule, key, severity in ALERTS:  # everything clears, and time passes
        run.send("signals", signal(rule, key, severity, "resolved"), now + 1)
    run.tick(now + 100)
    run.tick(now + 200)

    records = run.alerts
    by_id = {r["id"]: r for r in records}
    assert len(by_id) == len(records)  # every transition once
    for r in records:
        group = r.get("group")
        if group:
            members = [m["alert_id"] for m in group["alerts"]]
            assert members[0] == r["alert_id"] and group["size"] == len(members)
            followers = [x for x in records if x.get("grouped_in") == r["id"]]
            assert sorted(x["alert_id"] for x in followers) == sorted(members[1:])
            assert all(x["transition"] == r["transition"] and x["ts"] == r["ts"] for x in followers)
        if r.get("grouped_in"):
            leader = by_id[r["grouped_in"]]
            assert r["alert_id"] in [m["alert_id"] for m in leader["group"]["alerts"]]

    # Per alert, in order: each life (up to its `resolved` record) that told someone it
    # fired ends with a resolution notice that reaches someone, and one that told nobody
    # with a notice to nobody; in the end every alert's last life is resolved.
    for rule, key, _ in ALERTS:
        alert_id = f"{key.split('|')[0]}:{rule}:{key}"
        told = False
        mine = sorted((r for r in records if r["alert_id"] == alert_id), key=lambda r: r["seq"])
        for r in mine:
            reach = set(r["channels"]) | set(r.get("group_channels") or [])
            if r["transition"] in ("firing", "escalated", "repeated", "updated") and reach:
                told = True
            if r["transition"] == "resolved":
                assert bool(reach) == told
                told = False
        assert not mine or mine[-1]["transition"] == "resolved"
    assert all(
        a.pending_until is None
        for alerts in run.stage.alerts.values()
        for a in alerts.values()
        if a.status == "resolved"
    )
