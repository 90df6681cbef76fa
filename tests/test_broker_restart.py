"""The broker goes away for a while and comes back: a `prodmon run` process reconnects and
carries on without operator action, and a notifier retrying a delivery meanwhile survives.

The local broker keeps everything in memory, so the broker that comes back is empty: the
test recreates the topics (an operator's `prodmon topics create`), and the pipeline starts
over from what the new broker holds: committed offsets, changelogs and issues are gone, so
issue counts restart (docs/faults.md, "Broker restart").
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from grouping import fingerprint_error
from loadtest.fleet import error_burst
from pipeline.broker import LocalBroker, free_port
from pipeline.notifier import Notifier
from pipeline.output import Partitioner
from pipeline.topic_reader import send_json
from pipeline.topics import ALERTS, create_topics
from sinks.delivery import DeliveryPolicy
from sinks.slack import SlackSink
from tests.pipeline_helpers import as_batches, issues_probe, make_config, send_raw, wait_for
from tests.sinks.fakes import FakeSlack
from tests.test_notify_crash import transition

PREFIX = "restart."
GROUPS = ("ingest", "fingerprint")
STAGES = ",".join(GROUPS)


async def create_all_topics(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await create_topics(admin, prefix=PREFIX, partitions=4)
    finally:
        await admin.close()


async def stable_groups(bootstrap: str, groups: tuple[str, ...] = GROUPS) -> set[str]:
    """The pipeline's consumer groups the broker knows as Stable with a member."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    stable = set()
    try:
        for group in groups:  # one per request: tansu 0.6 garbles a multi-group answer
            for response in await admin.describe_consumer_groups([PREFIX + group]):
                for error, _, state, *_, members in response.groups:
                    if error == 0 and state == "Stable" and members:
                        stable.add(group)
    finally:
        await admin.close()
    return stable


def start_process(bootstrap: str, health_port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PRODMON_RUNTIME__SESSION_TIMEOUT_MS": "6000",
        "PRODMON_RUNTIME__HEARTBEAT_INTERVAL_MS": "1000",
        "PRODMON_RUNTIME__RETRY_MAX_S": "2",
        "PRODMON_FINGERPRINT__COUNT_INTERVAL_S": "0.3",
        "PRODMON_HEALTH__PORT": str(health_port),
    }
    cmd = [sys.executable, "-m", "ops.cli", "--log-level", "info", "run", "--stages", STAGES]
    cmd += ["--bootstrap", bootstrap, "--prefix", PREFIX]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def counts_of(events: list[dict]) -> dict[str, int]:
    want: dict[str, int] = {}
    for event in events:
        fp = str(fingerprint_error(event).id)
        want[fp] = want.get(fp, 0) + 1
    return want


def issue_counts(issues: list[dict]) -> dict[str, int]:
    return {i["issue_id"]: i["count"] for i in issues}


async def ready(session: aiohttp.ClientSession, port: int) -> tuple[int, dict]:
    try:
        async with session.get(f"http://127.0.0.1:{port}/health/ready") as response:
            return response.status, await response.json()
    except aiohttp.ClientError as exc:
        return 0, {"error": repr(exc)}


async def test_pipeline_carries_on_after_the_broker_restarts(tmp_path):
    """Broker away for seconds, back empty on the same address: the same process, never
    restarted, counts new events into new issues and exits cleanly on SIGTERM."""
    port, health_port = free_port(), free_port()
    broker = LocalBroker(port=port).start()
    bootstrap = broker.bootstrap
    config = make_config(bootstrap, PREFIX)
    await create_all_topics(bootstrap)
    log = tmp_path / "prodmon.log"
    process = start_process(bootstrap, health_port, log)
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            now = int(time.time() * 1000)
            before, _ = error_burst(60, seed=21, start_ms=now - 30_000)
            await send_raw(config, as_batches(before))
            want = counts_of(before)
            got = await wait_for(issues_probe(config), lambda i: issue_counts(i) == want)
            assert issue_counts(got) == want

            broker.stop()
            status, body = await wait_for(
                lambda: ready(session, health_port), lambda a: a[0] == 503, timeout_s=20
            )
            assert status == 503, body  # the process notices, and keeps answering
            assert any(r.startswith("broker unreachable") for r in body["reasons"]), body
            await asyncio.sleep(3)
            assert process.poll() is None

            broker = LocalBroker(port=port).start()  # same address, empty
            await create_all_topics(bootstrap)
            # No operator action: the process rejoins its groups on the new broker by itself.
            # (Events sent before that may be skipped: docs/faults.md, "Broker restart".)
            groups = await wait_for(
                lambda: stable_groups(bootstrap), lambda g: len(g) == len(GROUPS), timeout_s=60
            )
            assert groups == set(GROUPS)
            status, body = await wait_for(
                lambda: ready(session, health_port),
                lambda a: a[1].get("status") == "healthy",
                timeout_s=30,
            )
            assert (status, body["status"]) == (200, "healthy"), body

            after, _ = error_burst(80, seed=22, start_ms=now - 10_000)
            await send_raw(config, as_batches(after))
            want = counts_of(after)
            got = await wait_for(issues_probe(config), lambda i: issue_counts(i) == want)
            assert issue_counts(got) == want  # counted afresh: the old state died with the broker
            assert process.poll() is None
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        broker.stop()
        print(log.read_text()[-10000:])  # shown when the test fails
    assert process.returncode == 0


async def test_notifier_survives_the_broker_going_away_mid_retry():
    """Attempt records the broker never acknowledges are logged, not raised: the notifier
    (and so its process) stays up, and delivers again once the broker is back."""
    port = free_port()
    broker = LocalBroker(port=port).start()
    config = make_config(broker.bootstrap, PREFIX)
    await create_all_topics(broker.bootstrap)
    slack = await FakeSlack().start()
    slack.fail(503, times=4)  # every attempt of the first alert fails
    # The pipeline's producer settings, with a short request timeout: attempt records
    # written while the broker is away fail after 2 s instead of 40 s.
    producer = AIOKafkaProducer(
        **config.kafka.client_kwargs(),
        acks="all",
        enable_idempotence=False,
        request_timeout_ms=2000,
    )
    await producer.start()
    first = {**transition(1), "channels": ["slack"]}
    second = next(  # an alert in another partition: see docs/faults.md on stale commits
        {**transition(n), "channels": ["slack"]}
        for n in range(2, 50)
        if Partitioner()(transition(n)["alert_id"], 4) != Partitioner()(first["alert_id"], 4)
    )
    policy = DeliveryPolicy(max_attempts=4, backoff_base_s=1.0, backoff_max_s=1.0)
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        notifier = Notifier(config, producer, {"slack": SlackSink(session, slack.url)}, policy)
        task = asyncio.create_task(notifier.run(stop))
        try:
            await send_json(config.kafka, PREFIX + ALERTS, first["alert_id"], first)
            await wait_for(_now(lambda: len(slack.hits)), lambda n: n >= 1, timeout_s=60)
            broker.stop()  # while the delivery is being retried
            await wait_for(
                _now(lambda: notifier.outcomes.get("gave_up", 0)), lambda n: n == 1, timeout_s=30
            )
            await asyncio.sleep(4)  # the attempt records time out meanwhile
            assert not task.done(), task.exception()

            broker = LocalBroker(port=port).start()
            await create_all_topics(broker.bootstrap)
            await wait_for(lambda: stable_groups(broker.bootstrap, ("notify",)), bool, timeout_s=60)
            await send_json(config.kafka, PREFIX + ALERTS, second["alert_id"], second)
            await wait_for(_now(lambda: len(slack.received)), lambda n: n >= 1, timeout_s=60)
            assert len(slack.received) == 1 and not task.done()
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await producer.stop()
            await slack.stop()
            broker.stop()


def _now(read: Any) -> Any:
    async def probe() -> Any:
        return read()

    return probe
