"""Notifications a person can act on (issue 23): each sink's payload, as its loopback
receiver gets it, says what broke, where, how bad, links back to the dashboard, and keeps
the identifiers last. The records come from the real baseline and escalation stages
(tests/sinks/worded.py) with the links the notifier adds."""

from __future__ import annotations

import email
from email import policy
from typing import Any

import aiohttp
import pytest

from schemas.handles import action_handle
from sinks.email import EmailSink
from sinks.pagerduty import PagerDutySink
from sinks.slack import SlackSink
from sinks.sms import SmsSink
from sinks.text import alert_line, group_common, group_members
from sinks.webhook import WebhookSink
from tests.sinks.conftest import ROUTING_KEY, SMS_TOKEN, WEBHOOK_SECRET
from tests.sinks.fakes import FakePagerDuty, FakeSlack, FakeSms, FakeSmtp, FakeWebhookReceiver
from tests.sinks.worded import (
    BASE_URL,
    FINGERPRINT,
    T0,
    Pipeline,
    anomaly_signal,
    as_sent,
    group_alert,
    issue_alert,
    metric_alert,
)

ISSUE_TITLE = "TimeoutError: upstream pay-api timed out after <num> ms in checkout"
CULPRIT = "app.pay.charge (app/pay.py:88)"
METRIC_SENTENCE = "checkout /api/pay p99 1.5 s, above 1 s in 3 of the last 5 minutes"


def _texts(payload: dict[str, Any]) -> str:
    """Every text of a Slack message, joined."""
    out = [payload["text"], payload["blocks"][0]["text"]["text"]]
    for block in payload["attachments"][0]["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        out += [f["text"] for f in block.get("fields", [])]
        out += [e["text"] for e in block.get("elements", [])]
    return "\n".join(out)


# --- the words themselves -----------------------------------------------------------------


def test_issue_alert_leads_with_exception_message_and_service():
    record = issue_alert()
    assert record["title"] == ISSUE_TITLE
    assert record["summary"].startswith("New issue in checkout (release 1.4.2), rate 14.9/min")
    assert "15 events on 3 hosts across 2 releases" in record["summary"]
    assert "first seen 2026-11-22 04:00 UTC" in record["summary"]
    assert CULPRIT in record["summary"]
    facts = record["facts"]
    assert facts["culprit"]["location"] == "app/pay.py:88"  # innermost in-app frame
    assert (facts["issue_id"], facts["release"], facts["reason"]) == (
        FINGERPRINT,
        "1.4.2",
        "new, rate above 10/min",
    )


def test_metric_alert_reads_as_a_sentence_and_its_resolution_says_duration_and_peak():
    firing, resolved = metric_alert()
    assert firing["title"] == "checkout /api/pay p99 1.5 s, above 1 s"
    assert firing["summary"] == f"{METRIC_SENTENCE}, since 04:00 UTC"
    assert resolved["summary"] == (
        "Resolved after 8 min (04:00 UTC to 04:08 UTC), peak p99 2.1 s: condition cleared."
    )
    assert resolved["facts"]["firing_summary"] == firing["summary"]


def test_anomaly_alert_names_its_baseline():
    [record] = Pipeline().signals([anomaly_signal()], T0 + 301_000)
    assert record["title"] == "checkout 5xx rate 6.9 % against a baseline of 0.2 %"
    assert record["summary"].endswith("(41.2 sigma above), since 04:04 UTC")


def test_group_says_what_its_members_share_and_lists_the_worst_first():
    leader = group_alert()
    members = group_members(leader)
    assert [m["severity"] for m in members] == ["critical", "critical", "high"]
    assert group_common(members) == "all in checkout, release 1.5.0: 3 new issues"


# --- each sink, through its loopback receiver ---------------------------------------------


async def test_slack_issue_alert_has_title_culprit_figures_links_and_ids_last(
    session: aiohttp.ClientSession, slack: FakeSlack
):
    record = as_sent(issue_alert(), "slack")
    await SlackSink(session, slack.url).send(record)
    payload = slack.received[0].json
    escaped = ISSUE_TITLE.replace("<", "&lt;").replace(">", "&gt;")
    assert payload["blocks"][0]["text"]["text"] == f"FIRING [MEDIUM] {escaped}"
    text = _texts(payload)
    for expected in (
        CULPRIT,
        "*Events*\n15",
        "*Hosts*\nweb-12, web-7, web-3",
        "*Appeared in*\n1.4.2",
    ):
        assert expected in text
    handle = action_handle(record["alert_id"])
    assert f"<{BASE_URL}/alert?id={handle}|Open alert>" in text
    assert f"<{BASE_URL}/alert?id={handle}#ack|Acknowledge>" in text
    assert f"<{BASE_URL}/issue?id={FINGERPRINT}|Issue>" in text
    context = payload["attachments"][0]["blocks"][-1]
    assert context["type"] == "context"
    assert context["elements"][0]["text"] == (
        f"prodmon · firing · alert checkout:issue:{FINGERPRINT} · issue {FINGERPRINT}"
        " · rule timeout-errors"
    )
    assert "Evidence" not in text  # the figures replace the raw JSON


async def test_slack_metric_alert_links_its_chart_and_resolution_is_green(
    session: aiohttp.ClientSession, slack: FakeSlack
):
    firing, resolved = metric_alert()
    sink = SlackSink(session, slack.url)
    await sink.send(as_sent(firing, "slack"))
    await sink.send(as_sent(resolved, "slack"))
    fired, done = (hit.json for hit in slack.received)
    text = _texts(fired)
    assert METRIC_SENTENCE in text
    assert "*P99*\n1.5 s" in text and "*Threshold*\nabove 1 s" in text
    handle = action_handle(firing["alert_id"])
    assert f"<{BASE_URL}/alert/chart.svg?id={handle}|Chart>" in text
    assert f"{BASE_URL}/service?name=checkout&amp;endpoint=%2Fapi%2Fpay|Service>" in text
    assert done["attachments"][0]["color"] == "#21BA45"
    done_text = _texts(done)
    assert "Resolved after 8 min" in done_text and "*Peak*\np99 2.1 s" in done_text
    assert "Acknowledge" not in done_text  # nothing left to acknowledge


async def test_slack_group_lists_members_with_links_and_neutralised_text(
    session: aiohttp.ClientSession, slack: FakeSlack
):
    await SlackSink(session, slack.url).send(as_sent(group_alert(), "slack"))
    payload = slack.received[0].json
    header = payload["blocks"][0]["text"]["text"]
    assert header.startswith("FIRING [CRITICAL] 3 alerts: service=checkout · all in checkout")
    text = _texts(payload)
    assert "release 1.5.0: 3 new issues" in text
    assert "KeyError: 'cart' &lt;!channel&gt; &lt;b&gt;x&lt;/b&gt; @\u200bhere" in text
    assert "<!channel>" not in slack.received[0].body.decode()
    assert text.count(f"<{BASE_URL}/alert?id=") == 3  # one per member
    assert f"<{BASE_URL}/alerts|All alerts>" in text  # no link names the leader alone


async def test_pagerduty_summary_is_a_sentence_with_links(
    session: aiohttp.ClientSession, pagerduty: FakePagerDuty
):
    firing, resolved = metric_alert()
    sink = PagerDutySink(session, ROUTING_KEY, pagerduty.url)
    await sink.send(as_sent(issue_alert(), "pagerduty"))
    await sink.send(as_sent(firing, "pagerduty"))
    await sink.send(as_sent(resolved, "pagerduty"))
    issue, metric, done = (hit.json for hit in pagerduty.received)
    summary = issue["payload"]["summary"]
    assert summary.startswith(f"[MEDIUM] {ISSUE_TITLE} — New issue in checkout")
    assert CULPRIT in summary and len(summary) <= 1024
    details = issue["payload"]["custom_details"]
    assert details["Culprit"] == CULPRIT and details["Events"] == "15"
    assert details["context"].endswith("rule timeout-errors")
    links = {link["text"]: link["href"] for link in issue["links"]}
    assert links["Issue"] == f"{BASE_URL}/issue?id={FINGERPRINT}"
    assert links["Open alert"] == issue["client_url"]
    assert metric["payload"]["summary"] == f"[WARNING] {METRIC_SENTENCE}, since 04:00 UTC"
    assert "Chart" in {link["text"] for link in metric["links"]}
    assert done["event_action"] == "resolve"


async def test_webhook_body_carries_title_facts_and_links(
    session: aiohttp.ClientSession, receiver: FakeWebhookReceiver
):
    await WebhookSink(session, receiver.url, WEBHOOK_SECRET).send(as_sent(issue_alert(), "webhook"))
    body = receiver.received[0].json
    assert body["title"] == ISSUE_TITLE
    assert body["facts"]["culprit"]["text"] == CULPRIT
    assert body["facts"]["events"] == 15
    assert body["links"]["issue"] == f"{BASE_URL}/issue?id={FINGERPRINT}"


async def test_sms_is_one_short_line_ending_with_the_alert_link(
    session: aiohttp.ClientSession, sms: FakeSms
):
    sink = SmsSink(session, sms.base_url, sms.sid, SMS_TOKEN, "+15550000000", ["+15551112222"])
    firing, resolved = metric_alert()
    await sink.send(as_sent(firing, "sms"))
    await sink.send(as_sent(resolved, "sms"))
    fired, done = (hit.form["Body"] for hit in sms.received)
    link = f"{BASE_URL}/alert?id={action_handle(firing['alert_id'])}"
    assert fired.startswith(f"[WARNING] FIRING {METRIC_SENTENCE}, since 04:00 UTC")
    assert fired.endswith(" " + link) and "\n" not in fired
    assert "Resolved after 8 min" in done and done.endswith(link)
    long = as_sent({**firing, "summary": "x" * 5000}, "sms")
    assert len(alert_line(long, 1600)) <= 1600 and alert_line(long, 1600).endswith(link)


@pytest.fixture
def smtp():
    server = FakeSmtp().start()
    yield server
    server.stop()


async def test_email_shows_figures_chart_and_links_in_both_parts(smtp: FakeSmtp):
    sink = EmailSink(
        "127.0.0.1", smtp.port, sender="prodmon@example.com", recipients=["oncall@example.com"],
        tls="none",
    )  # fmt: skip
    firing, resolved = metric_alert()
    for record in (issue_alert(), firing, resolved, group_alert()):
        await sink.send(as_sent(record, "email"))
    issue, metric, done, group = (
        email.message_from_bytes(m.content, policy=policy.default) for m in smtp.mails
    )
    assert issue["Subject"] == f"[prodmon] [MEDIUM] {ISSUE_TITLE}"
    text = issue.get_body(("plain",)).get_content()
    assert f"Culprit: {CULPRIT}" in text and "Events: 15" in text
    assert "Hosts: web-12, web-7, web-3\r\n" in text
    assert f"Issue: {BASE_URL}/issue?id={FINGERPRINT}" in text
    assert text.rstrip().splitlines()[-4].startswith("prodmon · firing · alert checkout:issue:")
    html = metric.get_body(("html",)).get_content()
    handle = action_handle(firing["alert_id"])
    assert '<img src="cid:chart.' in html  # inline (tests/sinks/test_email_chart.py)
    assert f'<a href="{BASE_URL}/alert/chart.svg?id={handle}">Chart</a>' in html
    assert f'<a href="{BASE_URL}/alert?id={handle}#silence">Silence</a>' in html
    assert "above 1 s in 3 of the last 5 minutes" in html
    assert "peak p99 2.1 s" in done.get_body(("plain",)).get_content()
    group_html = group.get_body(("html",)).get_content()
    assert "all in checkout, release 1.5.0: 3 new issues" in group_html
    assert "&lt;b&gt;x&lt;/b&gt;" in group_html and "<b>x</b>" not in group_html


def test_without_external_url_there_are_no_links():
    from sinks.links import with_links

    record = issue_alert()
    assert with_links(record, "") is record
    assert "links" not in record
