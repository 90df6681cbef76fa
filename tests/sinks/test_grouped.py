"""Group notifications (stages/escalation.py `_flush_group`): each channel gets one
message listing the group's alerts routed to it, with hostile text neutralised."""

from __future__ import annotations

import aiohttp

from sinks.slack import SlackSink
from sinks.sms import sms_body
from sinks.text import RESOLVED_COLOR, for_channel, group_members
from tests.sinks.conftest import make_alert
from tests.sinks.fakes import FakeSlack

HOSTILE = "<!channel> <http://evil|x> @here"


def member(alert_id: str, severity: str, channels: list[str], title: str = "") -> dict:
    return {
        "alert_id": alert_id,
        "title": title or f"{alert_id} is failing",
        "severity": severity,
        "service": "checkout",
        "rule": alert_id,
        "summary": f"{alert_id}: 9.5% 5xx",
        "channels": channels,
    }


def leader_record() -> dict:
    alert = make_alert(alert_id="checkout:down", severity="critical")
    alert["channels"] = ["pagerduty", "slack", "sms"]
    alert["group"] = {
        "labels": {"service": "checkout"},
        "size": 3,
        "alerts": [
            member("checkout:down", "critical", ["sms"]),
            member("checkout:pay", "high", ["slack"], title=HOSTILE),
            member("checkout:cart", "low", ["slack", "sms"]),
        ],
    }
    return alert


def test_each_channel_sees_only_the_members_routed_to_it():
    record = leader_record()
    slack = for_channel(record, "slack")
    assert [m["alert_id"] for m in group_members(slack)] == ["checkout:pay", "checkout:cart"]
    sms = for_channel(record, "sms")
    assert [m["alert_id"] for m in group_members(sms)] == ["checkout:down", "checkout:cart"]
    # Only the leader itself: an ordinary message about it.
    alone = {**record, "group": {**record["group"], "alerts": record["group"]["alerts"][:1]}}
    assert "group" not in for_channel(alone, "sms")
    assert for_channel(make_alert(), "slack") == make_alert()  # not grouped: unchanged


def test_sms_lists_the_group_on_one_bounded_line():
    body = sms_body(for_channel(leader_record(), "sms"))
    assert body.startswith("[CRITICAL] FIRING 2 alerts: service=checkout")
    assert "checkout:down is failing" in body and "checkout:cart is failing" in body
    assert "\n" not in body and len(body) <= 1600


async def test_slack_gets_one_message_listing_the_group_neutralised(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    await SlackSink(session, slack.url).send(for_channel(leader_record(), "slack"))
    [hit] = slack.received
    text = hit.body.decode()
    assert "2 alerts" in hit.json["blocks"][0]["text"]["text"]
    assert "checkout:cart is failing" in text
    assert "<!channel>" not in text and "<http://evil" not in text
    assert "checkout:down" not in text  # the leader is not routed to Slack


def test_a_group_s_resolution_notice_says_resolved_and_lists_the_group():
    record = {**leader_record(), "transition": "resolved", "status": "resolved"}
    sms = sms_body(for_channel(record, "sms"))
    assert sms.startswith("[CRITICAL] RESOLVED 2 alerts: service=checkout")
    body = SlackSink(None, "https://hooks.slack.com/services/T0/B0/x").render(
        for_channel(record, "slack")
    )
    header = body["blocks"][0]["text"]["text"]
    assert header.startswith("RESOLVED [HIGH] 2 alerts: service=checkout")
    assert body["attachments"][0]["color"] == RESOLVED_COLOR
