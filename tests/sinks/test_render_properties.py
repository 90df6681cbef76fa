"""Whatever a service puts in an alert, every renderer produces what its service accepts."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sinks.email import EmailSink
from sinks.pagerduty import PagerDutySink
from sinks.slack import SlackSink
from sinks.sms import sms_body
from tests.sinks.conftest import ROUTING_KEY, make_alert
from tests.sinks.fakes import pagerduty_event_errors, slack_blocks_error

FRAGMENTS = ["<", ">", "&", "@here", "@Channel", "<!channel>", "<@U1>", "\r\nBcc: x", "\u2028", "*"]
hostile_text = st.lists(
    st.text(st.characters(codec="utf-8"), max_size=20) | st.sampled_from(FRAGMENTS), max_size=15
).map("".join) | st.builds(
    lambda c, n: c * n, st.sampled_from(["&", "<", "x", "é"]), st.integers(0, 5000)
)
json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=10,
)
alerts = st.fixed_dictionaries(
    {},
    optional={
        "title": hostile_text | st.none(),
        "summary": hostile_text | st.none(),
        "service": hostile_text | st.none(),
        "notes": hostile_text | st.none(),
        "author": hostile_text | st.none(),
        "severity": st.sampled_from(["critical", "high", "medium", "low", "warning", "info", "x"]),
        "transition": st.sampled_from(["firing", "escalated", "acknowledged", "resolved", "?"]),
        "level": st.integers(0, 9),
        "count": st.integers(0, 10**9) | st.none(),
        "labels": st.dictionaries(hostile_text, hostile_text, max_size=4),
        "evidence": json_value,
        "first_seen": st.integers(-(10**15), 10**15) | st.none(),
        "last_seen": st.integers(0, 4 * 10**12),
        "alert_id": hostile_text,
    },
).map(lambda overrides: make_alert(**overrides))

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _slack_errors(payload: dict[str, Any]) -> list[str]:
    lists = [payload["blocks"], *(a["blocks"] for a in payload["attachments"])]
    return [e for e in map(slack_blocks_error, lists) if e]


@FAST
@given(alerts)
def test_slack_payload_is_always_valid_and_inert(alert: dict[str, Any]) -> None:
    payload = SlackSink(None, "https://hooks.slack.com/services/x").render(alert)  # type: ignore[arg-type]
    assert _slack_errors(payload) == []
    texts = [payload["text"], payload["blocks"][0]["text"]["text"]]
    for block in payload["attachments"][0]["blocks"]:
        texts += [block["text"]["text"]] if "text" in block else []
        texts += [f["text"] for f in block.get("fields", [])]
        texts += [e["text"] for e in block.get("elements", [])]
    for text in texts:
        assert "<" not in text and ">" not in text
        lowered = text.lower()
        assert "@here" not in lowered and "@channel" not in lowered and "@everyone" not in lowered


@FAST
@given(alerts)
def test_pagerduty_event_is_always_valid(alert: dict[str, Any]) -> None:
    event = PagerDutySink(None, ROUTING_KEY).render(alert, with_key=True)  # type: ignore[arg-type]
    assert pagerduty_event_errors(event) == []


@FAST
@given(alerts)
def test_sms_body_is_one_bounded_line(alert: dict[str, Any]) -> None:
    body = sms_body(alert)
    assert 0 < len(body) <= 1600
    assert "\n" not in body and "\r" not in body


@FAST
@given(alerts)
def test_email_headers_never_carry_line_breaks(alert: dict[str, Any]) -> None:
    sink = EmailSink("127.0.0.1", 25, sender="a@example.com", recipients=["b@example.com"])
    msg = sink.build_message(alert)
    raw = bytes(msg)
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":", 1)[0] for line in head.split(b"\r\n") if line[:1] not in b" \t"]
    assert sorted(set(names)) == sorted(
        set(names)
        & {
            b"Subject",
            b"From",
            b"To",
            b"Date",
            b"Message-ID",
            b"In-Reply-To",
            b"References",
            b"Auto-Submitted",
            b"X-Prodmon-Alert",
            b"X-Prodmon-Transition",
            b"MIME-Version",
            b"Content-Type",
        }
    )
    assert "\n" not in str(msg["Subject"]) and len(str(msg["Subject"])) <= 200
