"""Secrets never reach logs, reasons or records; the log and dry-run sinks."""

from __future__ import annotations

import io
from collections.abc import Callable

import aiohttp
import orjson
import pytest
from aiohttp import web

from sinks.base import DeliveryError, DeliveryOutcome
from sinks.delivery import Deliverer
from sinks.dryrun import DryRunSink
from sinks.email import EmailSink
from sinks.log import LogSink
from sinks.pagerduty import PagerDutySink
from sinks.slack import SlackSink
from sinks.sms import SmsSink
from sinks.webhook import WebhookSink
from tests.sinks.conftest import ROUTING_KEY, SMS_TOKEN, WEBHOOK_SECRET, make_alert
from tests.sinks.fakes import (
    FakePagerDuty,
    FakeSlack,
    FakeSms,
    FakeSmtp,
    FakeWebhookReceiver,
    closed_port_url,
)

SMTP_PASSWORD = "smtp-SECRET-password"


def _lines(buffer: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_failing_deliveries_log_no_secret(
    session: aiohttp.ClientSession,
    slack: FakeSlack,
    pagerduty: FakePagerDuty,
    sms: FakeSms,
    receiver: FakeWebhookReceiver,
    deliverer_for: Callable[..., Deliverer],
    outcomes: list[DeliveryOutcome],
    log_output: io.StringIO,
) -> None:
    # a receiver that echoes our request line and headers back in its error body
    async def echo(request: web.Request, hit: object) -> web.Response:
        text = f"bad request to {request.url} ({request.path}) with {dict(request.headers)}"
        return web.Response(status=400, text=text)

    receiver.answer = echo  # type: ignore[method-assign,assignment]
    slack.fail(404, body="no_service")
    pagerduty.fail(503)
    smtp = FakeSmtp(username="prodmon", password="other-password").start()
    try:
        sinks = {
            "slack": SlackSink(session, slack.url),
            "pagerduty": PagerDutySink(session, ROUTING_KEY, pagerduty.url),
            "sms": SmsSink(session, sms.base_url, sms.sid, SMS_TOKEN + "x", "+1555", ["+1555"]),
            "webhook": WebhookSink(session, receiver.url, WEBHOOK_SECRET),
            "email": EmailSink(
                "127.0.0.1",
                smtp.port,
                sender="a@example.com",
                recipients=["b@example.com"],
                tls="none",
                username="prodmon",
                password=SMTP_PASSWORD,
            ),
            "refused": SlackSink(session, closed_port_url(f"/services/{slack.token}")),
            "log": LogSink(),
        }
        sinks["refused"].channel = "refused"  # type: ignore[misc]
        deliverer = deliverer_for(sinks, max_attempts=2)
        for channel in sinks:
            await deliverer.deliver(make_alert(), channel)
    finally:
        smtp.stop()

    logged = log_output.getvalue()
    records = orjson.dumps([o.to_record() for o in outcomes]).decode()
    secrets = [
        slack.token,
        "SLACKSECRET",
        ROUTING_KEY,
        SMS_TOKEN,
        WEBHOOK_SECRET,
        SMTP_PASSWORD,
        "hook-path-token-abc",
    ]
    for secret in secrets:
        assert secret not in logged, secret
        assert secret not in records, secret
    events = [line["event"] for line in _lines(log_output)]
    assert events.count("delivery") == len(sinks) and "notification" in events
    statuses = {o.channel: o.status for o in outcomes if o.final}
    assert statuses == {
        "slack": "failed",
        "pagerduty": "delivered",
        "sms": "failed",
        "webhook": "failed",
        "email": "failed",
        "refused": "gave_up",
        "log": "delivered",
    }
    webhook_reason = next(o.reason for o in outcomes if o.channel == "webhook")
    assert webhook_reason is not None and "***" in webhook_reason  # the echo was scrubbed


async def test_log_sink_writes_one_json_line_per_notification(log_output: io.StringIO) -> None:
    await LogSink().send(make_alert(summary="line one\nline two"))
    [line] = [entry for entry in _lines(log_output) if entry["event"] == "notification"]
    assert line["level"] == "warning"
    assert line["transition_id"] == "checkout:issue:9f2c1a|1|firing"
    assert line["severity"] == "critical" and line["service"] == "checkout"
    assert line["summary"] == "line one line two"
    assert line["channels"] == ["pagerduty", "sms"]


async def test_dry_run_records_the_rendered_payload_and_sends_nothing(
    session: aiohttp.ClientSession, slack: FakeSlack, pagerduty: FakePagerDuty
) -> None:
    dry_slack = DryRunSink("slack", SlackSink(session, slack.url))
    dry_pd = DryRunSink("pagerduty", PagerDutySink(session, ROUTING_KEY, pagerduty.url))
    bare = DryRunSink("sms")
    for sink in (dry_slack, dry_pd, bare):
        await sink.send(make_alert())

    assert slack.hits == [] and pagerduty.hits == []
    [would] = dry_slack.sent
    assert would.transition_id == "checkout:issue:9f2c1a|1|firing"
    assert would.payload["blocks"][0]["type"] == "header"
    assert dry_pd.sent[0].payload["event_action"] == "trigger"
    assert dry_pd.sent[0].payload["routing_key"] == "***"  # even dry runs hide the key
    assert bare.sent[0].payload["alert_id"] == "checkout:issue:9f2c1a"
    assert dry_slack.destination == f"dry-run:127.0.0.1:{slack.port}"


async def test_secret_straddling_the_quote_cut_never_reaches_the_reason(
    session: aiohttp.ClientSession,
    receiver: FakeWebhookReceiver,
    deliverer_for: Callable[..., Deliverer],
) -> None:
    # the receiver's error body quotes our secrets right where the 200-character quote ends
    path_token = "hook-path-token-abc"
    for leaked in (WEBHOOK_SECRET, path_token):
        for pad in range(185, 200, 4):
            receiver.fail(400, body="x" * pad + leaked + " and more")
            sink = WebhookSink(session, receiver.url, WEBHOOK_SECRET)
            outcome = await deliverer_for({"webhook": sink}).deliver(make_alert(), "webhook")
            assert outcome.status == "failed" and outcome.reason is not None
            assert outcome.reason.startswith("HTTP 400: xxx")
            assert leaked[:6] not in outcome.reason, (pad, outcome.reason)
            assert len(outcome.reason) <= len("HTTP 400: ") + 200


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_smtp_reply_quoting_the_password_across_the_cut_is_scrubbed() -> None:
    smtp = FakeSmtp(username="prodmon", password=SMTP_PASSWORD).start()
    try:
        sink = EmailSink(
            "127.0.0.1",
            smtp.port,
            sender="a@example.com",
            recipients=["b@example.com"],
            tls="none",
            username="prodmon",
            password=SMTP_PASSWORD,
        )
        smtp.handler.next_replies.append("554 " + "y" * 192 + SMTP_PASSWORD + " rejected")
        with pytest.raises(DeliveryError) as caught:
            await sink.send(make_alert())
    finally:
        smtp.stop()
    reason = caught.value.reason
    assert reason.startswith("SMTP 554: yyy") and not caught.value.retryable
    assert SMTP_PASSWORD[:6] not in reason, reason
