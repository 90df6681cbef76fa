"""Signals to people, end to end: escalation + notifier on the real broker, delivering to a
real SMTP server and loopback HTTP servers that check what Slack, PagerDuty and an SMS
provider check."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import time
from typing import Any

import pytest

from pipeline.config import Config, load_config
from pipeline.topic_reader import send_json
from pipeline.topics import DELIVERIES, SIGNALS
from tests.pipeline_helpers import running_pipeline, topic_probe, wait_for
from tests.sinks.fakes import FakePagerDuty, FakeSlack, FakeSms, FakeSmtp, closed_port_url

ROUTING_KEY = "R0UTINGKEY0123456789abcdefSECRET"
SMS_SID, SMS_TOKEN = "AC" + "1" * 32, "sms-token-SECRET-9876"


def signal(rule: str, service: str, severity: str, state: str = "firing") -> dict:
    return {
        "id": f"{rule}|{service}|{state}",
        "kind": "threshold",
        "state": state,
        "rule": rule,
        "severity": severity,
        "key": f"{service}|*",
        "service": service,
        "metric": "error_rate_pct",
        "value": 9.5,
        "threshold": 5.0,
        "op": ">",
        "ts": int(time.time() * 1000),
        "channels": [],
        "tags": {},
        "summary": f"{rule} on {service}: <!channel> 9.5% 5xx",
    }


@pytest.fixture
async def fakes(monkeypatch):
    slack, pagerduty, sms = FakeSlack(), FakePagerDuty(), FakeSms(SMS_SID, SMS_TOKEN)
    for fake in (slack, pagerduty, sms):
        await fake.start()
    smtp = FakeSmtp().start()
    env = {
        "PRODMON_SLACK_WEBHOOK_URL": slack.url,
        "PRODMON_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "PRODMON_PAGERDUTY_EVENTS_URL": pagerduty.url,
        "PRODMON_SMTP_HOST": "127.0.0.1",
        "PRODMON_SMTP_PORT": str(smtp.port),
        "PRODMON_SMTP_TLS": "none",
        "PRODMON_EMAIL_FROM": "prodmon@example.com",
        "PRODMON_EMAIL_TO": "oncall@example.com",
        # The SMS provider refuses connections: retried, then given up.
        "PRODMON_SMS_BASE_URL": closed_port_url("").rstrip("/"),
        "PRODMON_SMS_ACCOUNT_SID": SMS_SID,
        "PRODMON_SMS_AUTH_TOKEN": SMS_TOKEN,
        "PRODMON_SMS_FROM": "+15550001111",
        "PRODMON_SMS_TO": "+15550002222",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield {"slack": slack, "pagerduty": pagerduty, "smtp": smtp}
    for fake in (slack, pagerduty, sms):
        await fake.stop()
    smtp.controller.stop()


def notify_config(bootstrap: str, prefix: str, overrides: dict[str, Any]) -> Config:
    """Escalation + notifier on the test broker, ticking fast."""
    return load_config(
        env={},
        overrides={
            "kafka.bootstrap": bootstrap,
            "kafka.prefix": prefix,
            "runtime.tick_interval_s": 0.2,
            **overrides,
        },
    )


def finals(deliveries: list[dict]) -> dict[tuple[str, str], str]:
    return {(d["transition_id"], d["channel"]): d["status"] for d in deliveries if d["final"]}


async def test_routing_retries_give_up_and_resolution_notices(bootstrap, topics, fakes):
    config = notify_config(
        bootstrap,
        topics,
        {"notify.max_attempts": 3, "notify.backoff_base_s": 0.05, "notify.attempt_timeout_s": 2.0},
    )
    fakes["pagerduty"].throttle("1", times=1)  # 429 + Retry-After, then fine
    fakes["slack"].fail(500, times=2)  # two 5xx, then fine
    deliveries = topic_probe(config, DELIVERIES)
    async with running_pipeline(config, ["escalation", "notify"]):
        await send_json(config.kafka, topics + SIGNALS, "db", signal("db-down", "db", "critical"))
        # The baseline stage's recent points of the metric ride to the email's chart.
        now_ms = int(time.time() * 1000)
        points = [[now_ms - (9 - i) * 60_000, 0.5 if i < 7 else 9.5] for i in range(10)]
        high = {**signal("high-5xx", "shop", "high"), "points": points}
        await send_json(config.kafka, topics + SIGNALS, "shop", high)

        def settled(got: list[dict]) -> bool:
            return len(finals(got)) >= 4  # pagerduty, sms, slack, email

        got = await wait_for(deliveries, settled, timeout_s=60)
        outcome = {channel: status for (_, channel), status in finals(got).items()}
        assert outcome == {
            "pagerduty": "delivered",
            "sms": "gave_up",
            "slack": "delivered",
            "email": "delivered",
        }
        sms_attempts = [d for d in got if d["channel"] == "sms"]
        assert len(sms_attempts) == 3 and sms_attempts[-1]["reason"]  # every attempt recorded
        (trigger,) = fakes["pagerduty"].received
        assert trigger.json["event_action"] == "trigger"
        assert len(fakes["slack"].hits) == 3 and len(fakes["slack"].received) == 1
        assert "<!channel>" not in fakes["slack"].received[0].body.decode()
        assert len(fakes["smtp"].mails) == 1
        mail = email.message_from_bytes(fakes["smtp"].mails[0].content, policy=email.policy.default)
        [image] = [p for p in mail.walk() if p.get_content_type() == "image/png"]
        cid = str(image["Content-ID"]).strip("<>")
        assert f'src="cid:{cid}"' in mail.get_body(("html",)).get_content()
        assert image.get_content()[:8] == b"\x89PNG\r\n\x1a\n"

        # The condition clears: resolution notices go to the channels that were notified.
        await send_json(
            config.kafka, topics + SIGNALS, "db", signal("db-down", "db", "critical", "resolved")
        )
        await wait_for(deliveries, lambda got: len(finals(got)) >= 6, timeout_s=60)
        actions = [hit.json["event_action"] for hit in fakes["pagerduty"].received]
        assert actions == ["trigger", "resolve"]
        keys = {hit.json["dedup_key"] for hit in fakes["pagerduty"].received}
        assert len(keys) == 1  # trigger and resolve share the alert's dedup_key
    # A new process with the same group: nothing is notified twice.
    sent_before = len(fakes["pagerduty"].received) + len(fakes["slack"].received)
    async with running_pipeline(config, ["escalation", "notify"]):
        await wait_for(deliveries, lambda got: False, timeout_s=5)
    assert len(fakes["pagerduty"].received) + len(fakes["slack"].received) == sent_before


async def test_a_service_s_alerts_in_one_group_wait_reach_each_channel_as_one_message(
    bootstrap, topics, fakes
):
    """Alertmanager's grouping: alerts of one group that arrive during the group wait go
    out as one message per channel listing the ones routed there (PagerDuty: one
    incident per alert), and so do their resolutions within one group wait."""
    config = notify_config(bootstrap, topics, {"notify.max_attempts": 1})
    config.escalation = dataclasses.replace(config.escalation, group_wait_s=2.0)
    deliveries = topic_probe(config, DELIVERIES)
    alerts = (("pay-5xx", "high"), ("cart-slow", "high"), ("db-down", "critical"))
    async with running_pipeline(config, ["escalation", "notify"]):
        for rule, severity in alerts:
            await send_json(config.kafka, topics + SIGNALS, "shop", signal(rule, "shop", severity))
        # db-down's page, the group's SMS (given up: refused), one Slack message, one mail.
        got = await wait_for(deliveries, lambda got: len(finals(got)) >= 4, timeout_s=60)
        await wait_for(deliveries, lambda got: False, timeout_s=2)  # nothing more comes
        fired = finals(got)
        # The two Slack alerts clear together: one resolution notice lists both.
        for rule, severity in alerts[:2]:
            resolved = signal(rule, "shop", severity, "resolved")
            await send_json(config.kafka, topics + SIGNALS, "shop", resolved)
        later = await wait_for(deliveries, lambda got: len(finals(got)) >= 6, timeout_s=60)
        await wait_for(deliveries, lambda got: False, timeout_s=2)
    assert sorted(c for t, c in finals(later) if (t, c) not in fired) == ["email", "slack"]
    assert sorted(channel for _, channel in fired) == ["email", "pagerduty", "slack", "sms"]
    first, resolution = (m.body.decode() for m in fakes["slack"].received)
    assert "pay-5xx" in first and "cart-slow" in first and "<!channel>" not in first
    assert "db-down" not in first  # critical routes to PagerDuty + SMS, not Slack
    assert "RESOLVED" in resolution and "2 alerts" in resolution
    assert "pay-5xx" in resolution and "cart-slow" in resolution
    first_mail, resolution_mail = (
        email.message_from_bytes(m.content, policy=email.policy.default)
        for m in fakes["smtp"].mails
    )
    assert "2 alerts" in str(first_mail["Subject"])
    body = first_mail.get_body(("plain",)).get_content()
    assert "pay-5xx" in body and "cart-slow" in body
    assert "RESOLVED" in str(resolution_mail["Subject"])
    assert "2 alerts" in str(resolution_mail["Subject"])
    (page,) = fakes["pagerduty"].received  # its own incident: PagerDuty is never grouped
    # The summary is the sentence a person reads (issue 23): what, where, how bad, against
    # what; the rule that fired is still named, as the event's class and in its context.
    payload = page.json["payload"]
    assert payload["summary"] == "[CRITICAL] shop 5xx rate 9.5 %, above 5 %"
    assert payload["class"] == "db-down"
    assert payload["custom_details"]["context"].endswith("rule db-down")
