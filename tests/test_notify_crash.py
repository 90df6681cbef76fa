"""Killing the notifier process mid-delivery (`kill -9`) and restarting it loses no
notification and repeats at most the few that were in flight, with their idempotency key."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import orjson
from aiokafka import AIOKafkaProducer

from pipeline.topics import ALERTS
from tests.pipeline_helpers import start_prodmon
from tests.sinks.fakes import FakeWebhookReceiver

SECRET = "whsec-crash-test-0123456789"
TRANSITIONS = 120
CONCURRENCY = 4


def transition(n: int) -> dict:
    alert_id = f"svc{n % 10}:rule-{n}:svc{n % 10}|*"
    return {
        "id": f"{alert_id}|1|firing",
        "alert_id": alert_id,
        "transition": "firing",
        "seq": 1,
        "level": 0,
        "severity": "high",
        "status": "firing",
        "title": f"rule-{n}",
        "summary": "crash test",
        "service": f"svc{n % 10}",
        "key": f"svc{n % 10}|*",
        "rule": f"rule-{n}",
        "labels": {},
        "channels": ["webhook"],
        "count": 1,
        "first_seen": 0,
        "last_seen": 0,
        "ts": int(time.time() * 1000),
        "evidence": {},
    }


def notifier(bootstrap: str, prefix: str, url: str) -> subprocess.Popen:
    env = {
        "PRODMON_WEBHOOK_URL": url,
        "PRODMON_WEBHOOK_SECRET": SECRET,
        "PRODMON_NOTIFY__CONCURRENCY": str(CONCURRENCY),
    }
    return start_prodmon(bootstrap, prefix, "notify", env)


async def until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def test_kill_9_mid_delivery_then_restart(bootstrap, topics):
    receiver = await FakeWebhookReceiver(SECRET).start()
    receiver.slow(0.05, times=10_000)  # each request takes a while: deliveries are in flight
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    for n in range(TRANSITIONS):
        t = transition(n)
        await producer.send(topics + ALERTS, orjson.dumps(t), key=t["alert_id"].encode())
    await producer.stop()
    first = notifier(bootstrap, topics, receiver.url)
    try:
        assert await until(lambda: len(receiver.hits) >= 30, 60), "no deliveries started"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        before_restart = len(receiver.hits)
        assert before_restart < TRANSITIONS  # killed mid-stream
        second = notifier(bootstrap, topics, receiver.url)
        try:
            keys = lambda: {h.headers.get("Idempotency-Key") for h in receiver.hits}  # noqa: E731
            assert await until(lambda: len(keys()) >= TRANSITIONS, 120), "notifications lost"
            await asyncio.sleep(1.0)  # anything still to come would show up now
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        await receiver.stop()
    keys_seen = [h.headers.get("Idempotency-Key") for h in receiver.hits]
    assert len(set(keys_seen)) == TRANSITIONS  # every transition arrived
    repeats = len(keys_seen) - len(set(keys_seen))
    # Only what was in flight at the kill can go out twice (same idempotency key).
    assert repeats <= CONCURRENCY
