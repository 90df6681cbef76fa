"""Generic webhook: the receiver can prove the record came from us, recently, once."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp
import orjson

from sinks.base import DeliveryOutcome
from sinks.delivery import Deliverer
from sinks.webhook import WebhookSink, sign, verify_signature
from tests.sinks.conftest import WEBHOOK_SECRET, make_alert
from tests.sinks.fakes import FakeWebhookReceiver


async def test_signed_record_verifies_at_the_receiver(
    session: aiohttp.ClientSession, receiver: FakeWebhookReceiver
) -> None:
    alert = make_alert()
    await WebhookSink(session, receiver.url, WEBHOOK_SECRET).send(alert)

    [hit] = receiver.received
    assert hit.json == alert
    assert hit.headers["Idempotency-Key"] == "checkout:issue:9f2c1a|1|firing"
    assert hit.headers["Content-Type"] == "application/json"
    ts = hit.headers["X-Prodmon-Timestamp"]
    assert abs(int(ts) - time.time()) < 5
    assert verify_signature(WEBHOOK_SECRET, ts, hit.body, hit.headers["X-Prodmon-Signature"])


async def test_wrong_secret_and_stale_timestamp_are_rejected_without_retry(
    session: aiohttp.ClientSession,
    receiver: FakeWebhookReceiver,
    deliverer_for: Callable[..., Deliverer],
) -> None:
    wrong = WebhookSink(session, receiver.url, "not-the-shared-secret-at-all")
    stale = WebhookSink(session, receiver.url, WEBHOOK_SECRET, clock=lambda: time.time() - 900)
    for sink in (wrong, stale):
        outcome = await deliverer_for({"webhook": sink}).deliver(make_alert(), "webhook")
        assert (outcome.status, outcome.attempts) == ("failed", 1)
    assert receiver.received == []
    assert len(receiver.hits) == 2


async def test_retry_reuses_the_idempotency_key_and_receiver_drops_the_duplicate(
    session: aiohttp.ClientSession,
    receiver: FakeWebhookReceiver,
    deliverer_for: Callable[..., Deliverer],
) -> None:
    sink = WebhookSink(session, receiver.url, WEBHOOK_SECRET)
    receiver.fail(500)
    outcome = await deliverer_for({"webhook": sink}).deliver(make_alert(), "webhook")
    await sink.send(make_alert())  # e.g. a replay after a crash

    assert (outcome.status, outcome.attempts) == ("delivered", 2)
    keys = {hit.headers["Idempotency-Key"] for hit in receiver.hits}
    assert keys == {"checkout:issue:9f2c1a|1|firing"}
    assert len(receiver.received) == 1


def test_verify_signature_checks_mac_and_age() -> None:
    body = orjson.dumps({"a": 1})
    signature = sign(WEBHOOK_SECRET, 1_700_000_000, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify_signature(WEBHOOK_SECRET, "1700000000", body, signature, now=1_700_000_100)
    assert not verify_signature(
        WEBHOOK_SECRET, "1700000000", body + b" ", signature, now=1_700_000_100
    )
    assert not verify_signature(WEBHOOK_SECRET, "1700000000", body, signature, now=1_700_000_301)
    assert not verify_signature(WEBHOOK_SECRET, "nope", body, signature, now=1_700_000_000)


async def test_unsafe_transition_id_is_hashed_for_the_header(
    session: aiohttp.ClientSession, receiver: FakeWebhookReceiver
) -> None:
    await WebhookSink(session, receiver.url, WEBHOOK_SECRET).send(
        make_alert(id="svc:rule:kéy\r\nX-Injected: 1|1|firing")
    )
    hit = receiver.received[0]
    assert hit.headers["Idempotency-Key"].startswith("sha256:")
    assert "X-Injected" not in hit.headers


async def test_server_error_with_unknown_charset_is_retried_like_any_5xx(
    session: aiohttp.ClientSession,
    receiver: FakeWebhookReceiver,
    deliverer_for: Callable[..., Deliverer],
    outcomes: list[DeliveryOutcome],
) -> None:
    bogus = {"Content-Type": "text/plain; charset=bogus"}
    receiver.fail(500, times=2, body="upstream down \xff", headers=bogus)
    sink = WebhookSink(session, receiver.url, WEBHOOK_SECRET)
    outcome = await deliverer_for({"webhook": sink}).deliver(make_alert(), "webhook")

    assert (outcome.status, outcome.attempts) == ("delivered", 3)
    assert [o.reason for o in outcomes if not o.final] == ["HTTP 500: upstream down ÿ"] * 2
    assert len(receiver.received) == 1


async def test_client_error_with_non_text_charset_keeps_its_status_and_body(
    session: aiohttp.ClientSession,
    receiver: FakeWebhookReceiver,
    deliverer_for: Callable[..., Deliverer],
) -> None:
    receiver.fail(400, body="bad field", headers={"Content-Type": "text/plain; charset=base64"})
    sink = WebhookSink(session, receiver.url, WEBHOOK_SECRET)
    outcome = await deliverer_for({"webhook": sink}).deliver(make_alert(), "webhook")

    assert (outcome.status, outcome.attempts) == ("failed", 1)
    assert outcome.reason == "HTTP 400: bad field"
