"""A slow notification destination never stalls the rest of the pipeline, nor the other
destinations, and a dead letter the broker refuses never crashes the process.

The notifier is a consumer group member of its own: while Slack hangs past the attempt
timeout, ingest, fingerprint, windows, baseline and escalation keep producing issues,
rollups and alerts; every failed attempt is on `deliveries`; once Slack answers again,
the notification goes out. Inside the notifier, a hanging Slack does not hold back a
PagerDuty page of a later alert (no head-of-line blocking), offsets are committed only up
to the delivery still being retried, and stopping mid-retry leaves it for the restart.
(A record that makes a stage raise is covered by tests/test_runner.py: it goes to the
dead-letter topic and its partition flows on.)
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from grouping import fingerprint_error
from loadtest.fleet import BUGS, error_event
from pipeline.app import make_producer
from pipeline.notifier import Notifier
from pipeline.output import Partitioner
from pipeline.runner import StageRunner
from pipeline.topics import ALERTS, DELIVERIES, EVENTS_RAW, ISSUES, ROLLUPS
from sinks.delivery import DeliveryPolicy
from sinks.pagerduty import PagerDutySink
from sinks.slack import SlackSink
from stages.base import Emit, Record, StageBase, StageResult
from tests.pipeline_helpers import (
    make_config,
    running_pipeline,
    send_raw,
    topic_probe,
    wait_for,
)
from tests.sinks.fakes import FakePagerDuty, FakeSlack, Received

ALL_STAGES = ["ingest", "fingerprint", "windows", "baseline", "escalation", "notify"]
ATTEMPT_TIMEOUT_S = 5.0
BUG_A = next(b for b in BUGS if b.severity == "medium")  # new issue -> alert to slack
BUG_B = next(b for b in BUGS if b.severity == "low")  # a second issue, while slack hangs


class HangingSlack(FakeSlack):
    """Slack that holds every request past the attempt timeout (then 503) while `hanging`."""

    def __init__(self, hold_s: float = ATTEMPT_TIMEOUT_S * 3) -> None:
        super().__init__()
        self.hanging = True
        self.hold_s = hold_s

    async def answer(self, request: web.Request, hit: Received) -> web.StreamResponse:
        if self.hanging:
            await asyncio.sleep(self.hold_s)
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


# ---- no head-of-line blocking inside the notifier ------------------------------------------

ROUTING_KEY = "R0UTINGKEY0123456789abcdefSECRET"
HOL_TIMEOUT_S = 2.0  # attempt timeout of the notifier tests below (Slack holds 3x as long)
HOL_ATTEMPTS = 4  # fewer failures than open the circuit breaker (5)


def alert(name: str, channels: list[str], severity: str = "high", partition: int = 0) -> dict:
    """A firing transition whose alert id lands in `partition` of `alerts` (4 partitions)."""
    alert_id = next(
        f"{name}-{i}:rule|*"
        for i in range(1000)
        if Partitioner()(f"{name}-{i}:rule|*", 4) == partition
    )
    return {
        "id": f"{alert_id}|1|firing",
        "alert_id": alert_id,
        "transition": "firing",
        "seq": 1,
        "level": 0,
        "severity": severity,
        "status": "firing",
        "title": f"{name} is unwell",
        "summary": "head-of-line test",
        "service": name,
        "key": f"{name}|*",
        "rule": "rule",
        "labels": {},
        "channels": channels,
        "count": 1,
        "first_seen": 0,
        "last_seen": 0,
        "ts": int(time.time() * 1000),
        "evidence": {},
    }


async def produce_alerts(config: Any, transitions: list[dict]) -> list[int]:
    """Send transitions to `alerts`, keyed by alert id as escalation does; their offsets."""
    producer = AIOKafkaProducer(**config.kafka.client_kwargs(), enable_idempotence=False)
    await producer.start()
    try:
        offsets = []
        for t in transitions:
            sent = await producer.send_and_wait(
                config.kafka.prefix + ALERTS, orjson.dumps(t), key=t["alert_id"].encode()
            )
            offsets.append(sent.offset)
        return offsets
    finally:
        await producer.stop()


def finals(deliveries: list[dict], channel: str) -> list[dict]:
    return [d for d in deliveries if d["final"] and d["channel"] == channel]


async def test_a_hanging_slack_does_not_delay_a_page_for_another_alert(
    bootstrap, topics, monkeypatch
):
    """Slack holds every request past the attempt timeout, PagerDuty is healthy. An alert to
    Slack fires first, then an alert to PagerDuty (same `alerts` partition, later offset):
    the page goes out while the Slack delivery is still being retried, the group's commit
    stays at the Slack record meanwhile, and once Slack recovers its notification is
    delivered exactly once (and the commit moves past both)."""
    slack = await HangingSlack(hold_s=3 * HOL_TIMEOUT_S).start()
    pagerduty = await FakePagerDuty().start()
    monkeypatch.setenv("PRODMON_SLACK_WEBHOOK_URL", slack.url)
    monkeypatch.setenv("PRODMON_PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    monkeypatch.setenv("PRODMON_PAGERDUTY_EVENTS_URL", pagerduty.url)
    config = make_config(
        bootstrap,
        topics,
        **{
            "notify.attempt_timeout_s": HOL_TIMEOUT_S,
            "notify.max_attempts": HOL_ATTEMPTS,
            "notify.backoff_base_s": 0.2,
        },
    )
    deliveries = topic_probe(config, DELIVERIES)
    group = topics + "notify"
    try:
        async with running_pipeline(config, ["notify"]):
            (slack_offset,) = await produce_alerts(config, [alert("shop", ["slack"])])
            # Its first attempt timed out: the Slack delivery is being retried.
            await wait_for(deliveries, lambda got: any(d["channel"] == "slack" for d in got))
            sent = time.monotonic()
            (page_offset,) = await produce_alerts(config, [alert("db", ["pagerduty"], "critical")])
            await wait_for(lambda: _value(len(pagerduty.received)), lambda n: n >= 1)
            paged_in = time.monotonic() - sent

            slack_records = [d for d in await deliveries() if d["channel"] == "slack"]
            assert pagerduty.received, "the page never went out"
            assert slack_records and not finals(slack_records, "slack"), "the page waited for Slack"
            # Well before Slack could even give up (its remaining attempts each time out).
            assert paged_in < (HOL_ATTEMPTS - 1) * HOL_TIMEOUT_S
            assert page_offset > slack_offset
            # The page is final, but nothing is committed past the Slack record.
            assert (await committed(config, group, ALERTS)).get(0, 0) <= slack_offset

            slack.hanging = False  # Slack recovers: the next retry goes through
            got = await wait_for(deliveries, lambda got: bool(finals(got, "slack")))
            done = await wait_for(
                lambda: committed(config, group, ALERTS),
                lambda offsets: offsets.get(0) == page_offset + 1,
                timeout_s=30,
            )
            assert done.get(0) == page_offset + 1
            await asyncio.sleep(1.0)  # a repeat would show up now
    finally:
        await slack.stop()
        await pagerduty.stop()
    ((slack_final,), (page_final,)) = finals(got, "slack"), finals(got, "pagerduty")
    assert (slack_final["status"], page_final["status"]) == ("delivered", "delivered")
    assert slack_final["attempts"] >= 2
    assert page_final["ts"] < slack_final["ts"]
    assert len(slack.received) == 1 and len(pagerduty.received) == 1


@contextlib.asynccontextmanager
async def notifier_running(notifier: Notifier) -> AsyncIterator[Notifier]:
    """`notifier.run` in a task until the block ends; then stopped, as on SIGTERM."""
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    try:
        yield notifier
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def slack_and_pagerduty(config: Any) -> AsyncIterator[tuple[Any, ...]]:
    """A hanging Slack, a healthy PagerDuty, their sinks and the pipeline's producer."""
    slack = await HangingSlack(hold_s=30).start()
    pagerduty = await FakePagerDuty().start()
    producer = make_producer(config)
    await producer.start()
    try:
        async with aiohttp.ClientSession() as session:
            sinks = {
                "slack": SlackSink(session, slack.url),
                "pagerduty": PagerDutySink(session, ROUTING_KEY, pagerduty.url),
            }
            yield slack, pagerduty, sinks, producer
    finally:
        await producer.stop()
        await slack.stop()
        await pagerduty.stop()


async def test_stopping_mid_retry_leaves_the_delivery_to_the_restart(bootstrap, topics):
    """Stopped while Slack is retrying: the in-flight delivery gets `drain_timeout_s`, then
    is cancelled; the commit stays at its record although the page after it is final; the
    next notifier of the group delivers it once and does not page again."""
    config = make_config(bootstrap, topics)
    policy = DeliveryPolicy(
        max_attempts=HOL_ATTEMPTS, attempt_timeout_s=HOL_TIMEOUT_S, backoff_base_s=0.2
    )
    group = topics + "notify"
    transitions = [
        alert("db", ["pagerduty"], "critical"),
        alert("shop", ["slack"]),
        alert("pay", ["pagerduty"], "critical"),
    ]
    offsets = await produce_alerts(config, transitions)
    assert offsets == [0, 1, 2]
    async with slack_and_pagerduty(config) as (slack, pagerduty, sinks, producer):
        first = Notifier(config, producer, sinks, policy, drain_timeout_s=0.5)
        async with notifier_running(first):
            await wait_for(lambda: _value(len(pagerduty.received)), lambda n: n >= 2)
            await wait_for(lambda: _value(len(slack.hits)), lambda n: n >= 1)
            assert len(pagerduty.received) == 2 and not slack.received
        assert first.stats["released_unfinished_records"] == 1
        assert await committed(config, group, ALERTS) == {0: 1}  # the Slack record

        slack.hanging = False
        second = Notifier(config, producer, sinks, policy)
        async with notifier_running(second):
            await wait_for(lambda: _value(len(slack.received)), lambda n: n >= 1)
            done = await wait_for(
                lambda: committed(config, group, ALERTS), lambda c: c == {0: 3}, timeout_s=30
            )
            await asyncio.sleep(1.0)  # a repeat would show up now
        assert done == {0: 3}
        assert len(slack.received) == 1 and len(pagerduty.received) == 2  # no second page
        # It read on from the Slack record: the page after it was final already, not resent.
        assert (second.stats["transitions"], second.stats["skipped_done"]) == (2, 1)


async def test_a_rebalance_mid_retry_hands_the_delivery_to_the_new_owner(bootstrap, topics):
    """A second notifier joins while Slack is retrying: the first gives its partitions up
    (in-flight delivery cancelled after `drain_timeout_s`, commit left at its record); the
    owner of that partition delivers it once Slack recovers, and nobody pages again."""
    config = make_config(bootstrap, topics)
    policy = DeliveryPolicy(
        max_attempts=HOL_ATTEMPTS, attempt_timeout_s=HOL_TIMEOUT_S, backoff_base_s=0.2
    )
    group = topics + "notify"
    transitions = [
        alert("db", ["pagerduty"], "critical"),
        alert("shop", ["slack"]),
        alert("pay", ["pagerduty"], "critical"),
    ]
    await produce_alerts(config, transitions)
    async with slack_and_pagerduty(config) as (slack, pagerduty, sinks, producer):
        first = Notifier(config, producer, sinks, policy, drain_timeout_s=0.5)
        second = Notifier(config, producer, sinks, policy, drain_timeout_s=0.5)
        async with notifier_running(first):
            await wait_for(lambda: _value(len(pagerduty.received)), lambda n: n >= 2)
            await wait_for(lambda: _value(len(slack.hits)), lambda n: n >= 1)
            async with notifier_running(second):
                await wait_for(lambda: _value(second.ready.is_set()), bool)
                assert first.stats["released_unfinished_records"] == 1
                assert await committed(config, group, ALERTS) == {0: 1}  # the Slack record

                slack.hanging = False
                await wait_for(lambda: _value(len(slack.received)), lambda n: n >= 1)
                done = await wait_for(
                    lambda: committed(config, group, ALERTS), lambda c: c == {0: 3}
                )
                await asyncio.sleep(1.0)  # a repeat would show up now
    assert done == {0: 3}
    assert len(slack.received) == 1 and len(pagerduty.received) == 2  # no second page


async def test_a_full_backlog_pauses_fetching_until_it_drains(bootstrap, topics):
    """With `max_pending` deliveries not final, the notifier stops fetching (bounded
    memory); once they drain it resumes, and every notification goes out exactly once."""
    config = make_config(bootstrap, topics, **{"notify.concurrency": 2})
    policy = DeliveryPolicy(  # keep retrying while Slack hangs: no breaker, no rate limit
        max_attempts=50,
        attempt_timeout_s=1.0,
        backoff_base_s=0.1,
        backoff_max_s=0.2,
        breaker_failure_threshold=1000,
        rate_limits={},
    )
    transitions = [alert(f"svc{i}", ["slack"], partition=i % 4) for i in range(12)]
    await produce_alerts(config, transitions)
    async with slack_and_pagerduty(config) as (slack, _, sinks, producer):
        notifier = Notifier(config, producer, sinks, policy, max_pending=4)
        async with notifier_running(notifier):
            await wait_for(lambda: _value(len(slack.hits)), lambda n: n >= 2)
            peak, deadline = 0, time.monotonic() + 3.0
            while time.monotonic() < deadline:
                peak = max(peak, notifier.pending)
                await asyncio.sleep(0.02)
            assert notifier.stats["fetch_paused"] >= 1
            assert peak <= 4 and notifier.stats["transitions"] <= 4  # the rest not even read

            slack.hanging = False
            await wait_for(lambda: _value(len(slack.received)), lambda n: n >= 12)
            await asyncio.sleep(1.0)  # a repeat would show up now
            assert notifier.pending == 0
        delivered = finals(await topic_probe(config, DELIVERIES)(), "slack")
    assert len(slack.received) == 12
    assert sorted(d["transition_id"] for d in delivered) == sorted(t["id"] for t in transitions)
    assert {d["status"] for d in delivered} == {"delivered"}
    assert sum((await committed(config, topics + "notify", ALERTS)).values()) == 12


# ---- a dead letter the broker refuses ------------------------------------------------------


class ForwardUnlessPoison(StageBase):
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


async def committed(config: Any, group: str, logical: str = EVENTS_RAW) -> dict[int, int]:
    """The group's committed offsets on a topic (events.raw by default), by partition."""
    consumer = AIOKafkaConsumer(**config.kafka.client_kwargs(), group_id=group)
    await consumer.start()
    try:
        out = {}
        for partition in range(4):
            topic = config.kafka.prefix + logical
            offset = await consumer.committed(TopicPartition(topic, partition))
            if offset is not None:
                out[partition] = offset
        return out
    finally:
        await consumer.stop()
