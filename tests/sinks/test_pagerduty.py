"""PagerDuty: one incident per alert, driven through trigger, acknowledge and resolve."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import pytest

from sinks.base import DeliveryError
from sinks.delivery import Deliverer
from sinks.pagerduty import PagerDutySink, event_action, pd_severity
from tests.sinks.conftest import ROUTING_KEY, FakeClock, make_alert
from tests.sinks.fakes import FakePagerDuty


async def test_trigger_ack_resolve_share_the_alerts_dedup_key(
    session: aiohttp.ClientSession, pagerduty: FakePagerDuty
) -> None:
    sink = PagerDutySink(session, ROUTING_KEY, pagerduty.url)
    for seq, transition, status in [
        (1, "firing", "firing"),
        (2, "escalated", "firing"),
        (3, "acknowledged", "acknowledged"),
        (4, "resolved", "resolved"),
    ]:
        await sink.send(make_alert(seq=seq, transition=transition, status=status))

    events = [hit.json for hit in pagerduty.received]
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {"checkout:issue:9f2c1a"}
    assert all(e["routing_key"] == ROUTING_KEY for e in events)


async def test_trigger_payload_carries_the_fields_pagerduty_indexes(
    session: aiohttp.ClientSession, pagerduty: FakePagerDuty
) -> None:
    await PagerDutySink(session, ROUTING_KEY, pagerduty.url).send(make_alert(severity="high"))

    payload = pagerduty.received[0].json["payload"]
    assert payload["summary"] == "[HIGH] checkout: TimeoutError: upstream pay-api timed out"
    assert payload["source"] == "checkout"
    assert payload["severity"] == "error"
    assert payload["timestamp"] == "2026-11-22T04:01:00.456Z"
    assert payload["component"] == "/api/pay"
    assert payload["group"] == "checkout"
    assert payload["class"] == "new_issue"
    details = payload["custom_details"]
    assert details["evidence"] == {
        "value": 3000.0,
        "threshold": 1000.0,
        "baseline": {"mean": 120.5},
    }
    assert details["count"] == 15 and details["transition"] == "firing"


async def test_summary_is_bounded_to_1024_characters(
    session: aiohttp.ClientSession, pagerduty: FakePagerDuty
) -> None:
    await PagerDutySink(session, ROUTING_KEY, pagerduty.url).send(
        make_alert(title="x" * 5000, alert_id="a" * 400)  # long id: dedup key hashed
    )
    event = pagerduty.received[0].json
    assert len(event["payload"]["summary"]) == 1024
    assert event["dedup_key"].startswith("sha256:") and len(event["dedup_key"]) <= 255


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("critical", "critical"),
        ("high", "error"),
        ("medium", "warning"),
        ("warning", "warning"),
        ("low", "info"),
        ("info", "info"),
        ("bogus", "warning"),
    ],
)
def test_severity_maps_onto_pagerdutys_enum(ours: str, theirs: str) -> None:
    assert pd_severity(ours) == theirs


def test_transitions_map_to_event_actions() -> None:
    actions = {
        t: event_action({"transition": t})
        for t in (
            "firing",
            "escalated",
            "updated",
            "rerouted",
            "repeated",
            "acknowledged",
            "resolved",
        )
    }
    assert actions == {
        "firing": "trigger",
        "escalated": "trigger",
        "updated": "trigger",
        "rerouted": "trigger",
        "repeated": "trigger",
        "acknowledged": "acknowledge",
        "resolved": "resolve",
    }


async def test_invalid_event_is_not_retried(
    session: aiohttp.ClientSession,
    pagerduty: FakePagerDuty,
    deliverer_for: Callable[..., Deliverer],
) -> None:
    bad_key = "short-key"  # the fake (like PagerDuty) wants 32 characters
    deliverer = deliverer_for({"pagerduty": PagerDutySink(session, bad_key, pagerduty.url)})
    outcome = await deliverer.deliver(make_alert(), "pagerduty")

    assert (outcome.status, outcome.attempts) == ("failed", 1)
    assert outcome.reason is not None and outcome.reason.startswith("HTTP 400")
    assert "routing_key" in outcome.reason and bad_key not in outcome.reason
    assert len(pagerduty.hits) == 1


async def test_throttled_events_back_off_then_succeed(
    session: aiohttp.ClientSession,
    pagerduty: FakePagerDuty,
    deliverer_for: Callable[..., Deliverer],
    clock: FakeClock,
) -> None:
    pagerduty.throttle(None, times=2)  # PagerDuty's 429 carries no Retry-After
    deliverer = deliverer_for(
        {"pagerduty": PagerDutySink(session, ROUTING_KEY, pagerduty.url)}, backoff_base_s=1.0
    )
    outcome = await deliverer.deliver(make_alert(), "pagerduty")

    assert (outcome.status, outcome.attempts) == ("delivered", 3)
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 1.0 and 0 <= clock.sleeps[1] <= 2.0


async def test_server_error_is_retryable(
    session: aiohttp.ClientSession, pagerduty: FakePagerDuty
) -> None:
    pagerduty.fail(502)
    with pytest.raises(DeliveryError) as caught:
        await PagerDutySink(session, ROUTING_KEY, pagerduty.url).send(make_alert())
    assert caught.value.retryable and caught.value.status == 502
