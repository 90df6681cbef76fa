"""A slow notification destination never stalls the rest of the pipeline, and a dead letter
the broker refuses never crashes the process.

The notifier is a consumer group member of its own: while Slack hangs past the attempt
timeout, ingest, fingerprint, windows, baseline and escalation keep producing issues,
rollups and alerts; every failed attempt is on `deliveries`; once Slack answers again,
the notification goes out. (A record that makes a stage raise is covered by
tests/test_runner.py: it goes to the dead-letter topic and its partition flows on.)
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from loadtest.fleet import BUGS, error_event
from pipeline.app import make_producer
from pipeline.runner import StageRunner
from pipeline.topics import ALERTS, DELIVERIES, EVENTS_RAW, ISSUES, ROLLUPS
from stages.base import Emit, Record, StageResult
from stages.grouping import fingerprint_error
from tests.pipeline_helpers import (
    make_config,
    running_pipeline,
    send_raw,
    topic_probe,
    wait_for,
)
from tests.sinks.fakes import FakeSlack, Received

ALL_STAGES = ["ingest", "fingerprint", "windows", "baseline", "escalation", "notify"]
ATTEMPT_TIMEOUT_S = 5.0
BUG_A = next(b for b in BUGS if b.severity == "medium")  # new issue -> alert to slack
BUG_B = next(b for b in BUGS if b.severity == "low")  # a second issue, while slack hangs


class HangingSlack(FakeSlack):
    """Slack that holds every request past the attempt timeout (then 503) while `hanging`."""

    def __init__(self) -> None:
        super().__init__()
        self.hanging = True

    async def answer(self, request: web.Request, hit: Received) -> web.StreamResponse:
        if self.hanging:
            await asyncio.sleep(ATTEMPT_TIMEOUT_S * 3)
            return web.Response(status=503, text="service unavailable")
        return await super().answer(request, hit)


def errors(bug: Any, count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    return [error_event(bug, rng, now - 5000 + i, "1.0") for i in range(count)]


def latency(service: str, start_ms: int, count: int, step_ms: int) -> list[dict]:
    return [
        {
            "schema": "latency/1",
            "event_id": f"l-{service}-{start_ms}-{i}",
            "ts": start_ms + i * step_ms,
            "service": service,
            "endpoint": "/pay",
            "status": 200,
            "duration_ms": 10.0 + i,
        }
        for i in range(count)
    ]


def payloads(events: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(events[0]["service"].encode(), orjson.dumps(events))]


@pytest.fixture
async def slack(monkeypatch):
    fake = await HangingSlack().start()
    monkeypatch.setenv("PRODMON_SLACK_WEBHOOK_URL", fake.url)
    yield fake
    await fake.stop()


async def test_a_hanging_sink_stalls_nothing_else_and_delivers_once_it_recovers(
    bootstrap, topics, slack
):
    """While the notifier is stuck on Slack, issues, rollups and alerts of new input appear;
    the failed attempts are on `deliveries`; the retry after Slack recovers delivers."""
    config = make_config(
        bootstrap,
        topics,
        **{
            "notify.attempt_timeout_s": ATTEMPT_TIMEOUT_S,
            "notify.max_attempts": 4,  # fewer failures than open the circuit breaker (5)
            "notify.backoff_base_s": 0.2,
        },
    )
    deliveries = topic_probe(config, DELIVERIES)
    async with running_pipeline(config, ALL_STAGES):
        await send_raw(config, payloads(errors(BUG_A, 5, seed=1)))
        # The notifier is now stuck on Slack (its first attempt hangs).
        await wait_for(lambda: _value(len(slack.hits)), lambda n: n >= 1, timeout_s=60)
        assert slack.hits, "the alert never reached the notifier"

        # Meanwhile, new input flows through every other stage.
        later = errors(BUG_B, 5, seed=2)
        issue_b = str(fingerprint_error(later[0]).id)
        window = int(time.time() * 1000) - 60_000
        window -= window % 10_000
        await send_raw(config, payloads(later))
        await send_raw(config, payloads(latency("shop", window, 10, 500)))
        await send_raw(config, payloads(latency("shop", window + 30_000, 1, 0)))  # closes it
        rollup_id = f"shop|/pay|10s|{window}"
        issues = await wait_for(
            topic_probe(config, ISSUES), lambda got: any(i["issue_id"] == issue_b for i in got)
        )
        assert any(i["issue_id"] == issue_b and i["type"] == "new" for i in issues)
        rollups = await wait_for(
            topic_probe(config, ROLLUPS), lambda got: any(r["id"] == rollup_id for r in got)
        )
        assert [r["count"] for r in rollups if r["id"] == rollup_id] == [10]
        alerts = await wait_for(
            topic_probe(config, ALERTS), lambda got: any(issue_b in a["alert_id"] for a in got)
        )
        assert any(issue_b in a["alert_id"] for a in alerts)

        # Every failed attempt is on `deliveries`, and nothing reached Slack yet.
        failed = await wait_for(deliveries, lambda got: any(not d["final"] for d in got))
        assert slack.received == []
        assert not any(d["final"] for d in failed)
        first = failed[0]
        assert first["status"] == "failed"
        assert first["reason"] == f"timeout after {ATTEMPT_TIMEOUT_S:g} s"

        slack.hanging = False  # Slack recovers: the next retry goes through
        got = await wait_for(
            deliveries,
            lambda got: any(
                d["final"] and d["transition_id"] == first["transition_id"] for d in got
            ),
        )
    (final,) = [d for d in got if d["final"] and d["transition_id"] == first["transition_id"]]
    assert (final["channel"], final["status"]) == ("slack", "delivered")
    assert final["attempts"] >= 2
    assert slack.received  # accepted by Slack once it answered again


async def _value(value: Any) -> Any:
    return value


# ---- a dead letter the broker refuses ------------------------------------------------------


class ForwardUnlessPoison:
    """Forwards each value to `issues`; raises on values starting with b"poison"."""

    name = "forward"
    inputs = ("events.raw",)
    stateful = False

    def process(self, records: list[Record], now: float) -> StageResult:
        emits = []
        for record in records:
            if (record.value or b"").startswith(b"poison"):
                raise ValueError("cannot digest this")
            emits.append(Emit("issues", "k", {"value": record.value.decode()}))
        return StageResult(emits=emits)

    def tick(self, now: float) -> StageResult:
        return StageResult()

    def restore(self, partition: int, key: str, value: Any) -> None: ...

    def assign(self, partitions: Iterable[int]) -> None: ...

    def revoke(self, partitions: Iterable[int]) -> None: ...


async def test_a_refused_dead_letter_does_not_crash_the_process(bootstrap, topics):
    """The producer refuses the dead letter for good (as a broker refuses a record over its
    `max.message.bytes`): the stage retries and reports it; the process and its other
    stages carry on, and the stage still stops cleanly."""
    config = make_config(bootstrap, topics, **{"runtime.retry_max_s": 0.5})
    shared = make_producer(config)
    # One member's producer accepts only small records: its dead letter will not fit.
    strict = AIOKafkaProducer(
        **config.kafka.client_kwargs(), enable_idempotence=False, max_request_size=2048
    )
    await shared.start()
    await strict.start()
    stop = asyncio.Event()
    refused = StageRunner(ForwardUnlessPoison(), config, strict, group_id=topics + "refused")
    healthy = StageRunner(ForwardUnlessPoison(), config, shared, group_id=topics + "healthy")
    tasks = [asyncio.create_task(r.run(stop)) for r in (refused, healthy)]
    try:
        await send_raw(config, [(b"k", b"poison" + b"x" * 4096)])
        await wait_for(
            lambda: _value(refused.stats.produce_retries), lambda n: n >= 3, timeout_s=60
        )
        assert refused.stats.poison_records >= 1 and refused.stats.produce_retries >= 3
        await send_raw(config, [(b"k", b"fine")])
        forwarded = await wait_for(
            topic_probe(config, ISSUES),
            lambda got: any(v.get("value") == "fine" for v in got),
            timeout_s=60,
        )
        assert any(v.get("value") == "fine" for v in forwarded)  # the other stage flows
        assert not any(task.done() for task in tasks)  # nothing crashed
    finally:
        stop.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        await shared.stop()
        await strict.stop()
    assert results == [None, None]  # both stopped cleanly, without an exception
    # The refused batch was not made durable, so nothing past it is committed either:
    # a restart reads the poison record again instead of silently skipping its dead letter.
    assert await committed(config, topics + "refused") == {}
    assert sum((await committed(config, topics + "healthy")).values()) == 2


async def committed(config: Any, group: str) -> dict[int, int]:
    """The group's committed offsets on events.raw, by partition."""
    consumer = AIOKafkaConsumer(**config.kafka.client_kwargs(), group_id=group)
    await consumer.start()
    try:
        out = {}
        for partition in range(4):
            offset = await consumer.committed(TopicPartition(topics_raw(config), partition))
            if offset is not None:
                out[partition] = offset
        return out
    finally:
        await consumer.stop()


def topics_raw(config: Any) -> str:
    return config.kafka.prefix + EVENTS_RAW
