"""Slack: Block Kit messages that a hostile exception message cannot turn into mentions."""

from __future__ import annotations

import aiohttp

from sinks.base import DeliveryError
from sinks.slack import SlackSink, slack_escape
from tests.sinks.conftest import make_alert
from tests.sinks.fakes import FakeSlack

HOSTILE = "<!channel> <@U1> <http://evil|x> @here & <b>"


def _all_texts(payload: dict) -> list[str]:
    texts = [payload["text"]]
    blocks = list(payload["blocks"])
    for attachment in payload.get("attachments", []):
        blocks += attachment["blocks"]
    for block in blocks:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts += [f["text"] for f in block.get("fields", [])]
        texts += [e["text"] for e in block.get("elements", [])]
    return texts


async def test_message_arrives_as_block_kit_with_fields_and_severity_colour(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    await SlackSink(session, slack.url).send(make_alert())

    [hit] = slack.received
    payload = hit.json
    assert payload["blocks"][0] == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": "FIRING [CRITICAL] TimeoutError: upstream pay-api timed out",
        },
    }
    [attachment] = payload["attachments"]
    assert attachment["color"] == "#D00000"
    summary, fields, *rest = attachment["blocks"]
    assert summary["text"]["text"] == "upstream pay-api timed out after 3000 ms"
    assert summary["text"]["verbatim"] is True
    labels = [f["text"].split("\n")[0] for f in fields["fields"]]
    assert labels == [
        "*Severity*",
        "*Service*",
        "*Status*",
        "*Count*",
        "*First seen*",
        "*Last seen*",
    ]
    assert "*Count*\n15" in [f["text"] for f in fields["fields"]]
    assert "*First seen*\n2026-11-22 04:00:00 UTC" in [f["text"] for f in fields["fields"]]
    assert rest[-1]["type"] == "context"
    assert "checkout:issue:9f2c1a" in rest[-1]["elements"][0]["text"]
    assert payload["unfurl_links"] is False and payload["unfurl_media"] is False


async def test_resolved_message_is_green(session: aiohttp.ClientSession, slack: FakeSlack) -> None:
    await SlackSink(session, slack.url).send(
        make_alert(transition="resolved", status="resolved", seq=3, notes="pool size 10 -> 50")
    )
    payload = slack.received[0].json
    assert payload["attachments"][0]["color"] == "#21BA45"
    assert payload["blocks"][0]["text"]["text"].startswith("RESOLVED [CRITICAL]")
    assert any("pool size 10 -&gt; 50" in t for t in _all_texts(payload))


async def test_hostile_exception_text_arrives_neutralised(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    alert = make_alert(
        title=HOSTILE,
        summary=HOSTILE,
        service="checkout<!here>",
        notes=HOSTILE,
        author="<@U999>",
        labels={"x": HOSTILE},
        evidence={"message": HOSTILE},
    )
    await SlackSink(session, slack.url).send(alert)

    raw = slack.received[0].body.decode()
    for dangerous in ("<!channel>", "<@U1>", "<http://evil|x>", "<!here>", "<@U999>", "<b>"):
        assert dangerous not in raw
    texts = _all_texts(slack.received[0].json)
    summary = slack.received[0].json["attachments"][0]["blocks"][0]["text"]["text"]
    assert summary == (
        "&lt;!channel&gt; &lt;@U1&gt; &lt;http://evil|x&gt; @\u200bhere &amp; &lt;b&gt;"
    )
    assert not any("@here" in t or "@channel" in t.replace("!channel", "") for t in texts)


def test_escape_breaks_every_broadcast_form() -> None:
    assert slack_escape("@channel @HERE @everyone", 100) == (
        "@\u200bchannel @\u200bHERE @\u200beveryone"
    )
    assert slack_escape("a & b", 100) == "a &amp; b"


def test_truncation_never_splits_an_entity() -> None:
    text = slack_escape("&" * 5000, 3000)
    assert len(text) <= 3000
    assert text.endswith("&amp;…")
    assert slack_escape("x" * 10, 10) == "x" * 10
    assert slack_escape("x" * 11, 10) == "x" * 9 + "…"


async def test_long_text_is_cut_to_slack_limits_and_accepted(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    alert = make_alert(
        title="T" * 500,
        summary="<" * 4000,
        service="s" * 5000,
        evidence={"blob": "e" * 10_000},
    )
    await SlackSink(session, slack.url).send(alert)  # the fake rejects anything over limits

    payload = slack.received[0].json
    assert len(payload["blocks"][0]["text"]["text"]) == 150
    summary, fields = payload["attachments"][0]["blocks"][:2]
    assert len(summary["text"]["text"]) <= 3000
    assert summary["text"]["text"].endswith("&lt;…")
    assert all(len(f["text"]) <= 2000 for f in fields["fields"])


async def test_invalid_payload_is_not_retryable(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    slack.fail(400, body="invalid_payload")
    try:
        await SlackSink(session, slack.url).send(make_alert())
    except DeliveryError as exc:
        assert not exc.retryable
        assert exc.reason == "HTTP 400: invalid_payload"
    else:
        raise AssertionError("expected a DeliveryError")


async def test_gone_webhook_is_not_retryable_and_server_errors_are(
    session: aiohttp.ClientSession, slack: FakeSlack
) -> None:
    sink = SlackSink(session, slack.url)
    slack.fail(410, body="channel_is_archived")
    slack.fail(503, body="")
    errors = []
    for _ in range(2):
        try:
            await sink.send(make_alert())
        except DeliveryError as exc:
            errors.append(exc)
    assert [(e.retryable, e.status) for e in errors] == [(False, 410), (True, 503)]
    assert "destination gone" in errors[0].reason
    assert not any("SLACKSECRET" in e.reason or "/services/" in e.reason for e in errors)
