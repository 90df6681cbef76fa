"""The escalation stage, pure: seed 000's routing, escalation timing, acks, resolution,
silences, inhibition, manual re-routing and restarts."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from alerting.routing import Route, RoutingConfig, Silence
from stages.base import Record, StageResult
from stages.escalation import EscalationStage, alert_id_for, partition_key_for

NOW = 1_795_320_000.0  # seconds


def signal(rule: str, key: str, severity: str, state: str = "firing", **extra: Any) -> dict:
    service = extra.pop("service", key.split("|")[0])
    return {
        "id": f"{rule}|{key}|{state}",
        "kind": "threshold",
        "state": state,
        "rule": rule,
        "severity": severity,
        "key": key,
        "service": service,
        "endpoint": key.split("|")[1] if "|" in key else None,
        "fingerprint": extra.pop("fingerprint", None),
        "metric": extra.pop("metric", "error_rate_pct"),
        "value": 5.0,
        "ts": int(NOW * 1000),
        "channels": extra.pop("channels", []),
        "tags": {},
        "summary": extra.pop("summary", f"{rule} on {key}"),
        **extra,
    }


class Run:
    """Feeds the stage like the runner does and keeps its changelog and output."""

    def __init__(self, stage: EscalationStage) -> None:
        self.stage = stage
        self.changelog: dict = {}
        self.alerts: list[dict] = []
        self.offset = 0

    def _apply(self, result: StageResult) -> list[dict]:
        self.changelog.update(result.state)
        out = [e.value for e in result.emits if e.topic == "alerts"]
        self.alerts += out
        return out

    def send(self, topic: str, value: dict, now: float = NOW) -> list[dict]:
        self.offset += 1
        record = Record(topic, 0, self.offset, None, orjson.dumps(value))
        return self._apply(self.stage.process([record], now))

    def tick(self, now: float) -> list[dict]:
        return self._apply(self.stage.tick(now))


def channels(transitions: list[dict]) -> list[tuple[str, list[str]]]:
    return [(t["transition"], sorted(t["channels"])) for t in transitions]


@pytest.mark.parametrize(
    ("severity", "expected", "escalate_after_s"),
    [
        ("critical", ["pagerduty", "sms"], 300),
        ("high", ["email", "slack"], 900),
        ("medium", ["slack"], 1800),
        ("low", ["email"], 3600),
    ],
)
def test_seed_000_routing_table_and_escalation_times(severity, expected, escalate_after_s):
    run = Run(EscalationStage())
    (first,) = run.send("signals", signal("r", "checkout|/pay", severity))
    assert channels([first]) == [("firing", expected)]
    assert run.tick(NOW + escalate_after_s - 1) == []  # not yet
    (escalated,) = run.tick(NOW + escalate_after_s)
    assert escalated["transition"] == "escalated" and escalated["level"] == 1
    assert set(expected) <= set(escalated["channels"])
    if severity != "critical":  # escalation climbs towards paging
        assert len(escalated["channels"]) > len(expected)


def test_an_acknowledged_alert_does_not_escalate_and_resolution_reaches_notified_channels():
    run = Run(EscalationStage())
    (fired,) = run.send("signals", signal("r", "checkout|/pay", "high"))
    aid = fired["alert_id"]
    (ack,) = run.send("commands", {"command": "ack", "id": aid, "author": "ana"})
    assert ack["transition"] == "acknowledged" and ack["author"] == "ana"
    assert run.tick(NOW + 10_000) == []
    (done,) = run.send("signals", signal("r", "checkout|/pay", "high", state="resolved"))
    assert done["transition"] == "resolved" and sorted(done["channels"]) == ["email", "slack"]


def test_repeat_occurrences_update_without_notifying_and_severity_rise_re_routes():
    run = Run(EscalationStage())
    run.send("signals", signal("r", "checkout|/pay", "medium"))
    assert run.send("signals", signal("r", "checkout|/pay", "medium")) == []
    stage_alert = next(iter(run.stage.alerts[0].values()))
    assert stage_alert.count == 2
    (updated,) = run.send("signals", signal("r", "checkout|/pay", "critical"))
    assert updated["transition"] == "updated" and "pagerduty" in updated["channels"]


def test_manual_resolve_carries_notes_and_transition_ids_are_unique():
    run = Run(EscalationStage())
    (fired,) = run.send("signals", signal("r", "search|/q", "low"))
    cmd = {"command": "resolve", "id": fired["alert_id"], "notes": "bad deploy rolled back"}
    (resolved,) = run.send("commands", cmd)
    assert resolved["notes"] == "bad deploy rolled back" and resolved["status"] == "resolved"
    (again,) = run.send("signals", signal("r", "search|/q", "low"))  # it happens again
    ids = [t["id"] for t in run.alerts]
    assert len(ids) == len(set(ids)) and again["transition"] == "firing"


def test_silences_mute_what_they_match_and_nothing_else():
    run = Run(EscalationStage())
    silence = {
        "command": "silence",
        "command_id": "s1",
        "matchers": {"service": "checkout", "rule": "p99*"},
        "starts_at": int(NOW * 1000) - 1,
        "ends_at": int(NOW * 1000) + 3_600_000,
        "author": "ana",
        "comment": "load test",
    }
    run.send("commands", silence)
    (muted,) = run.send("signals", signal("p99-over-1s", "checkout|/pay", "warning"))
    assert muted["channels"] == [] and muted["muted"] == "silence:s1"
    (other_rule,) = run.send("signals", signal("high-5xx-rate", "checkout|/pay", "critical"))
    (other_service,) = run.send("signals", signal("p99-over-1s", "search|/q", "warning"))
    assert other_rule["channels"] and other_service["channels"]
    assert run.tick(NOW + 1800) == [] or all(
        t["alert_id"] != muted["alert_id"] for t in run.tick(NOW + 1800)
    )
    # When the silence ends while the alert still fires, it is notified then.
    later = run.tick(NOW + 3601)
    assert any(t["alert_id"] == muted["alert_id"] and t["channels"] for t in later)


def test_inhibition_mutes_latency_alerts_of_a_failing_service_only():
    run = Run(EscalationStage())
    run.send("signals", signal("very-high-5xx-rate", "checkout|*", "critical"))
    (latency,) = run.send(
        "signals", signal("p99-over-1s", "checkout|/pay", "warning", metric="p99_ms")
    )
    assert latency["channels"] == [] and latency["muted"].startswith("inhibited:")
    (elsewhere,) = run.send(
        "signals", signal("p99-over-1s", "search|/q", "warning", metric="p99_ms")
    )
    assert elsewhere["channels"] == ["slack"]


def test_route_command_overrides_channels():
    run = Run(EscalationStage())
    (fired,) = run.send("signals", signal("db", "checkout|*", "critical"))
    cmd = {"command": "route", "id": fired["alert_id"], "channels": ["slack", "email"]}
    (rerouted,) = run.send("commands", cmd)
    assert rerouted["transition"] == "rerouted" and rerouted["channels"] == ["slack", "email"]


def test_a_restarted_worker_fires_due_escalations_once():
    run = Run(EscalationStage())
    run.send("signals", signal("r", "checkout|/pay", "critical"))
    # The worker dies; another restores the changelog 10 minutes later.
    restarted = Run(EscalationStage())
    restarted.changelog = dict(run.changelog)
    for (partition, key), value in run.changelog.items():
        restarted.stage.restore(partition, key, value)
    due = restarted.tick(NOW + 600)
    assert [t["transition"] for t in due] == ["escalated"]
    assert restarted.tick(NOW + 601) == []  # once


def test_group_wait_sends_a_service_s_alerts_together():
    run = Run(EscalationStage(RoutingConfig(group_wait_s=30)))
    assert run.send("signals", signal("a", "checkout|/pay", "high")) == []
    assert run.send("signals", signal("b", "checkout|/cart", "high"), now=NOW + 10) == []
    flushed = run.tick(NOW + 30)
    assert sorted(t["rule"] for t in flushed) == ["a", "b"]


def test_configured_routes_match_labels_first():
    routing = RoutingConfig(
        routes=(Route({"service": "checkout"}, ("webhook",), 60.0),), silences=(), inhibitions=()
    )
    run = Run(EscalationStage(routing))
    (fired,) = run.send("signals", signal("r", "checkout|/pay", "critical"))
    assert fired["channels"] == ["webhook"]
    (other,) = run.send("signals", signal("r", "search|/q", "critical"))
    assert sorted(other["channels"]) == ["pagerduty", "sms"]  # the severity default


def test_alert_ids_and_command_keys():
    sig = signal("new-issue", "f" * 32, "high", service="checkout", fingerprint="f" * 32)
    assert alert_id_for(sig) == "checkout:issue:" + "f" * 32
    assert partition_key_for(alert_id_for(sig)) == "checkout"
    expired = Silence("s", {"service": "x"}, 0, 10)
    assert not expired.mutes({"service": "x"}, 20)


def test_group_interval_batches_later_alerts_of_a_notified_group():
    run = Run(EscalationStage(RoutingConfig(group_wait_s=0, group_interval_s=300)))
    (first,) = run.send("signals", signal("a", "checkout|/pay", "high"))
    assert first["transition"] == "firing"  # nothing waiting: out at once
    assert run.send("signals", signal("b", "checkout|/cart", "high"), now=NOW + 60) == []
    assert run.send("signals", signal("c", "checkout|/x", "high"), now=NOW + 120) == []
    (other_service,) = run.send("signals", signal("d", "search|/q", "high"), now=NOW + 130)
    assert other_service["transition"] == "firing"  # another group is not held back
    assert run.tick(NOW + 299) == []
    flushed = run.tick(NOW + 300)
    assert sorted(t["rule"] for t in flushed) == ["b", "c"]


def test_routing_config_from_toml_tables_and_errors():
    routing = RoutingConfig.from_mapping(
        {
            "group_wait_s": 10,
            "group_interval_s": 120,
            "routes": [{"match": {"service": "db"}, "channels": ["pagerduty"]}],
            "inhibit": [{"source": {"rule": "down"}, "target": {"metric": "p*"}}],
        }
    )
    assert routing.route_for({"service": "db", "severity": "low"}).channels == ("pagerduty",)
    assert routing.group_interval_s == 120
    with pytest.raises(ValueError, match=r"escalation\.routes\[0\]\.channels"):
        RoutingConfig.from_mapping({"routes": [{"channels": ["fax"]}]})
    with pytest.raises(ValueError, match=r"escalation\.colour"):
        RoutingConfig.from_mapping({"colour": "red"})


def test_nested_routes_form_a_tree_with_inherited_settings():
    routing = RoutingConfig.from_mapping(
        {
            "routes": [
                {
                    "match": {"service": "checkout"},
                    "channels": ["slack"],
                    "escalate_after_s": 120,
                    "routes": [
                        {"match": {"severity": "critical"}, "channels": ["pagerduty"]},
                        {"match": {"rule": "p99*"}},
                    ],
                }
            ]
        }
    )
    critical = routing.route_for({"service": "checkout", "severity": "critical"})
    assert critical.channels == ("pagerduty",) and critical.escalate_after_s == 120
    latency = routing.route_for({"service": "checkout", "severity": "low", "rule": "p99-x"})
    assert latency.channels == ("slack",)  # inherited from its parent
    other = routing.route_for({"service": "checkout", "severity": "low", "rule": "db"})
    assert other.channels == ("slack",)
    with pytest.raises(ValueError, match=r"routes\[0\]\.routes\[0\]\.colour"):
        RoutingConfig.from_mapping(
            {"routes": [{"channels": ["slack"], "routes": [{"colour": "x"}]}]}
        )


def test_a_group_flush_is_one_message_per_channel_listing_the_group():
    run = Run(EscalationStage(RoutingConfig(group_wait_s=30)))
    run.send("signals", signal("slow", "checkout|/pay", "high"))
    run.send("signals", signal("down", "checkout|/cart", "critical"), now=NOW + 5)
    run.send("signals", signal("noisy", "checkout|/x", "low"), now=NOW + 10)
    flushed = run.tick(NOW + 30)
    leader, *others = flushed
    # The most severe leads; its record reaches every shared channel of the group.
    assert leader["rule"] == "down"
    assert sorted(leader["channels"]) == ["email", "pagerduty", "slack", "sms"]
    members = {m["rule"]: m for m in leader["group"]["alerts"]}
    assert leader["group"]["size"] == 3 and leader["group"]["labels"] == {"service": "checkout"}
    assert members["down"]["channels"] == ["sms"]  # PagerDuty is never shared
    assert sorted(members["slow"]["channels"]) == ["email", "slack"]
    assert members["noisy"]["channels"] == ["email"]
    # The others keep their own transition, with no message of their own...
    assert sorted(t["rule"] for t in others) == ["noisy", "slow"]
    assert all(t["channels"] == [] and t["grouped_in"] == leader["id"] for t in others)
    assert {t["rule"]: sorted(t["group_channels"]) for t in others} == {
        "slow": ["email", "slack"],
        "noisy": ["email"],
    }
    # ...and count as notified where the group message reached them, so their
    # resolution notice goes there (after the group wait, for resolutions to join it).
    assert run.send("signals", signal("slow", "checkout|/pay", "high", "resolved")) == []
    (resolved,) = run.tick(NOW + 40 + 30)
    assert resolved["rule"] == "slow" and sorted(resolved["channels"]) == ["email", "slack"]


def test_alerts_of_a_group_that_resolve_within_one_group_wait_are_announced_together():
    run = Run(EscalationStage(RoutingConfig(group_wait_s=30)))
    run.send("signals", signal("down", "checkout|/cart", "critical"))
    run.send("signals", signal("slow", "checkout|/pay", "high"))
    run.send("signals", signal("other", "search|/q", "high"))
    assert len(run.tick(NOW + 30)) == 3
    at = NOW + 100
    assert run.send("signals", signal("slow", "checkout|/pay", "high", "resolved"), at) == []
    run.send("signals", signal("down", "checkout|/cart", "critical", "resolved"), at + 10)
    run.send("signals", signal("other", "search|/q", "high", "resolved"), at + 12)
    assert run.tick(at + 29) == []  # the first resolution's group wait is not over
    leader, member = run.tick(at + 30)  # checkout's two, in one notice
    assert leader["transition"] == member["transition"] == "resolved"
    assert leader["rule"] == "down" and leader["status"] == "resolved"
    assert sorted(leader["channels"]) == ["email", "pagerduty", "slack", "sms"]
    assert [m["rule"] for m in leader["group"]["alerts"]] == ["down", "slow"]
    assert member["channels"] == [] and member["grouped_in"] == leader["id"]
    assert sorted(member["group_channels"]) == ["email", "slack"]
    (alone,) = run.tick(at + 42)  # search's waited for its own group wait
    assert alone["rule"] == "other" and "group" not in alone
    assert run.tick(at + 100) == []  # announced once


def test_alerts_of_a_group_that_escalate_at_the_same_tick_go_out_as_one_message():
    run = Run(EscalationStage(RoutingConfig(group_wait_s=30)))
    run.send("signals", signal("slow", "checkout|/pay", "high"))
    run.send("signals", signal("slower", "checkout|/cart", "high"), now=NOW + 3)
    run.send("signals", signal("alone", "search|/q", "high"), now=NOW + 3)
    first = run.tick(NOW + 33)  # checkout's two in one message, search's alone
    assert sum("group" in t for t in first) == 1 and len(first) == 3
    # Nobody acknowledges: seed 000 escalates high after 15 min, the group together.
    assert run.tick(NOW + 33 + 15 * 60 - 1) == []
    escalated = run.tick(NOW + 33 + 15 * 60)
    leader = next(t for t in escalated if "group" in t)
    assert leader["transition"] == "escalated" and leader["level"] == 1
    assert sorted(m["rule"] for m in leader["group"]["alerts"]) == ["slow", "slower"]
    (member,) = [t for t in escalated if t.get("grouped_in")]
    assert member["grouped_in"] == leader["id"] and member["transition"] == "escalated"
    (alone,) = [t for t in escalated if t["rule"] == "alone"]
    assert "group" not in alone and "grouped_in" not in alone and alone["level"] == 1


def test_an_alert_that_fires_again_first_announces_its_pending_resolution():
    run = Run(EscalationStage(RoutingConfig(group_wait_s=30)))
    run.send("signals", signal("slow", "checkout|/pay", "high"))
    run.tick(NOW + 30)
    assert run.send("signals", signal("slow", "checkout|/pay", "high", "resolved"), NOW + 40) == []
    resolved, *_ = run.send("signals", signal("slow", "checkout|/pay", "high"), NOW + 45)
    assert resolved["transition"] == "resolved" and sorted(resolved["channels"]) == [
        "email",
        "slack",
    ]
    (firing,) = run.tick(NOW + 75)  # the new alert's own group wait
    assert firing["transition"] == "firing" and firing["seq"] > resolved["seq"]


def test_pagerduty_keeps_one_incident_per_alert_in_a_group():
    run = Run(EscalationStage(RoutingConfig(group_wait_s=30)))
    run.send("signals", signal("a", "checkout|/pay", "critical"))
    run.send("signals", signal("b", "checkout|/cart", "critical"), now=NOW + 1)
    leader, other = run.tick(NOW + 30)
    assert sorted(leader["channels"]) == ["pagerduty", "sms"]
    assert other["channels"] == ["pagerduty"]  # its own page, its own dedup key
    assert [m["channels"] for m in leader["group"]["alerts"]] == [["sms"], ["sms"]]


def test_a_group_of_one_is_an_ordinary_notification():
    run = Run(EscalationStage(RoutingConfig(group_wait_s=30)))
    run.send("signals", signal("a", "checkout|/pay", "high"))
    run.send("signals", signal("b", "search|/q", "high"))  # another group
    flushed = run.tick(NOW + 30)
    assert len(flushed) == 2
    assert all("group" not in t and "grouped_in" not in t for t in flushed)
    assert all(sorted(t["channels"]) == ["email", "slack"] for t in flushed)


def test_the_alerts_view_shows_where_a_group_message_reached_an_alert():
    from ops.views import format_alerts, latest_alerts

    run = Run(EscalationStage(RoutingConfig(group_wait_s=30)))
    run.send("signals", signal("down", "checkout|/cart", "critical"))
    run.send("signals", signal("slow", "checkout|/pay", "high"), now=NOW + 1)
    run.tick(NOW + 30)
    table = format_alerts(latest_alerts(run.alerts)).splitlines()
    (slow,) = [line for line in table if "slow" in line]
    assert slow.endswith("slack,email (in a group message)")  # its route's order
