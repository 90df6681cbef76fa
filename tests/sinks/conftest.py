"""Fixtures for the sink tests: loopback fakes, an HTTP session, virtual time, alerts."""

from __future__ import annotations

import asyncio
import io
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
import structlog

from sinks.base import DeliveryOutcome, Sink
from sinks.delivery import Deliverer, DeliveryPolicy
from tests.sinks.fakes import FakePagerDuty, FakeSlack, FakeSms, FakeWebhookReceiver

WEBHOOK_SECRET = "whsec-0123456789abcdef-SECRET"
ROUTING_KEY = "R0UTINGKEY0123456789abcdefSECRET"  # 32 characters
SLACK_TOKEN = "T000/B000/SLACKSECRETTOKEN123"
SMS_TOKEN = "sms-token-SECRET-9876"


class FakeClock:
    """Monotonic clock whose `sleep` advances it instantly and records each wait."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def make_alert(**overrides: Any) -> dict[str, Any]:
    """A realistic alert transition record (escalation stage shape)."""
    alert: dict[str, Any] = {
        "alert_id": "checkout:issue:9f2c1a",
        "transition": "firing",
        "seq": 1,
        "level": 0,
        "severity": "critical",
        "status": "firing",
        "title": "TimeoutError: upstream pay-api timed out",
        "summary": "upstream pay-api timed out after 3000 ms",
        "service": "checkout",
        "key": "9f2c1a",
        "rule": "new_issue",
        "labels": {"service": "checkout", "env": "prod", "endpoint": "/api/pay"},
        "channels": ["pagerduty", "sms"],
        "muted": None,
        "count": 15,
        "first_seen": 1795320000123,
        "last_seen": 1795320060456,
        "ts": 1795320060500,
        "notes": None,
        "author": None,
        "evidence": {"value": 3000.0, "threshold": 1000.0, "baseline": {"mean": 120.5}},
    }
    alert.update(overrides)
    if "id" not in overrides:
        alert["id"] = f"{alert['alert_id']}|{alert['seq']}|{alert['transition']}"
    return alert


@pytest.fixture
def alert() -> dict[str, Any]:
    return make_alert()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = await FakeSlack(SLACK_TOKEN).start()
    yield fake
    await fake.stop()


@pytest.fixture
async def pagerduty() -> AsyncIterator[FakePagerDuty]:
    fake = await FakePagerDuty().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def sms() -> AsyncIterator[FakeSms]:
    fake = await FakeSms(token=SMS_TOKEN).start()
    yield fake
    await fake.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[FakeWebhookReceiver]:
    fake = await FakeWebhookReceiver(WEBHOOK_SECRET).start()
    yield fake
    await fake.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def outcomes() -> list[DeliveryOutcome]:
    return []


@pytest.fixture
def deliverer_for(clock: FakeClock, outcomes: list[DeliveryOutcome]) -> Callable[..., Deliverer]:
    """Deliverer in virtual time (clock + sleep), seeded jitter, every outcome collected."""

    def build(sinks: dict[str, Sink], **policy: Any) -> Deliverer:
        settings: dict[str, Any] = {"attempt_timeout_s": 2.0, "rate_limits": {}} | policy
        return Deliverer(
            sinks,
            DeliveryPolicy(**settings),
            on_outcome=outcomes.append,
            clock=clock,
            sleep=clock.sleep,
            rng=random.Random(7),
            now_ms=lambda: 1795320100000,
        )

    return build


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything structlog writes during the test, as JSON lines (restored afterwards)."""
    from pipeline.logging import configure_logging

    saved = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging("debug", stream=buffer)
    try:
        yield buffer
    finally:
        structlog.configure(**saved)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
