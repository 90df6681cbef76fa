"""SMS: one bounded line per recipient, authenticated, never re-sent to someone reached."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from sinks.delivery import Deliverer
from sinks.sms import SmsSink, sms_body
from tests.sinks.conftest import SMS_TOKEN, make_alert
from tests.sinks.fakes import FakeSms

ONCALL = ("+15551230001", "+15551230002")


def _sink(session: aiohttp.ClientSession, fake: FakeSms, token: str = SMS_TOKEN) -> SmsSink:
    return SmsSink(session, fake.base_url, fake.sid, token, "+15550000000", ONCALL)


async def test_each_oncall_number_gets_a_concise_text(
    session: aiohttp.ClientSession, sms: FakeSms
) -> None:
    await _sink(session, sms).send(make_alert())

    assert [hit.form["To"] for hit in sms.received] == list(ONCALL)
    body = sms.received[0].form["Body"]
    assert body == (
        "[CRITICAL] FIRING checkout: TimeoutError: upstream pay-api timed out"
        " — upstream pay-api timed out after 3000 ms"
    )
    assert sms.received[0].form["From"] == "+15550000000"


async def test_body_is_bounded_and_one_line(session: aiohttp.ClientSession, sms: FakeSms) -> None:
    alert = make_alert(title="boom\r\nline two", summary="y" * 5000)
    await _sink(session, sms).send(alert)
    body = sms.received[0].form["Body"]
    assert len(body) == 1600 and body.endswith("…")
    assert "\n" not in body and "\r" not in body
    assert sms_body(alert) == body


async def test_bad_credentials_are_not_retried(
    session: aiohttp.ClientSession, sms: FakeSms, deliverer_for: Callable[..., Deliverer]
) -> None:
    deliverer = deliverer_for({"sms": _sink(session, sms, token="wrong-token")})
    outcome = await deliverer.deliver(make_alert(), "sms")
    assert (outcome.status, outcome.attempts) == ("failed", 1)
    assert outcome.reason is not None and outcome.reason.startswith("HTTP 401")
    assert sms.received == []


async def test_retry_only_texts_the_numbers_not_yet_reached(
    session: aiohttp.ClientSession, sms: FakeSms, deliverer_for: Callable[..., Deliverer]
) -> None:
    sink = _sink(session, sms)
    sms.busy_once(ONCALL[1])
    outcome = await deliverer_for({"sms": sink}).deliver(make_alert(), "sms")

    assert (outcome.status, outcome.attempts) == ("delivered", 2)
    assert [hit.form["To"] for hit in sms.received] == list(ONCALL)  # nobody twice
    assert sum(b"0001" in hit.body for hit in sms.hits) == 1
    assert sum(b"0002" in hit.body for hit in sms.hits) == 2


async def test_throttling_and_server_errors_are_retried(
    session: aiohttp.ClientSession, sms: FakeSms, deliverer_for: Callable[..., Deliverer]
) -> None:
    sms.throttle("1")
    sms.fail(500)
    outcome = await deliverer_for({"sms": _sink(session, sms)}).deliver(make_alert(), "sms")
    assert (outcome.status, outcome.attempts) == ("delivered", 3)
