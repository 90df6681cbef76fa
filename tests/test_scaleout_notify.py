"""Three notifier processes share `alerts`; one is killed with SIGKILL mid-delivery.

After the rebalance the survivors own its partitions, restore what `deliveries` says is
final and deliver the rest: every transition reaches every channel, and the only repeats
are what was in flight, which carry the same idempotency key (webhook `Idempotency-Key`,
PagerDuty `dedup_key`), so the receivers drop them.

One webhook request per partition is held for a while, so each partition's commit stays
behind it while the later transitions are delivered: the new owner of the dead process's
partitions re-reads all of those, and must skip them.

What may go out twice is judged from `deliveries`, not from the clock: a request whose
final outcome was recorded there was settled before any new owner restored (the dead
process wrote nothing after its kill, and a survivor gives a partition away only once its
drained jobs' outcomes are acknowledged), so a correct notifier never sends it again, and
every transition ends with exactly one final webhook outcome. A repeat is only ever a
delivery whose outcome never reached `deliveries`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections import Counter

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from loadtest.harness import stop_processes
from pipeline.topics import ALERTS, DELIVERIES
from tests.pipeline_helpers import make_config, start_prodmon, topic_probe
from tests.sinks.fakes import FakePagerDuty, FakeWebhookReceiver, Received
from tests.test_notify_crash import transition, until

SECRET = "whsec-scaleout-test-0123456789"
ROUTING_KEY = "R0UTINGKEYscaleout0123456789abcd"
TRANSITIONS = 240
PAGED = range(0, TRANSITIONS, 4)  # PagerDuty allows ~2 events/s: a quarter also pages
CONCURRENCY = 8
HOLD_S = 10.0


class HoldingWebhook(FakeWebhookReceiver):
    """Takes a little while per request, and holds the first request of each `held`
    idempotency key for `HOLD_S`; `answered` has the keys it has answered."""

    def __init__(self, secret: str, held: set[str]) -> None:
        super().__init__(secret)
        self.held = held
        self.answered: set[str] = set()

    async def answer(self, request: web.Request, hit: Received) -> web.StreamResponse:
        key = hit.headers.get("Idempotency-Key", "")
        delay = 0.02
        if key in self.held:
            self.held.discard(key)
            delay = HOLD_S
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._release.wait(), delay)
        self.answered.add(key)
        return await super().answer(request, hit)


def first_per_partition(partitions: int) -> set[str]:
    """The id of the first transition keyed to each partition of `alerts`."""
    partitioner, chosen = DefaultPartitioner(), {}
    every = list(range(partitions))
    for n in range(TRANSITIONS):
        t = transition(n)
        chosen.setdefault(partitioner(t["alert_id"].encode(), every, every), t["id"])
    return set(chosen.values())


def notifier(bootstrap: str, prefix: str, webhook: str, pagerduty: str) -> subprocess.Popen:
    env = {
        "PRODMON_WEBHOOK_URL": webhook,
        "PRODMON_WEBHOOK_SECRET": SECRET,
        "PRODMON_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "PRODMON_PAGERDUTY_EVENTS_URL": pagerduty,
        "PRODMON_NOTIFY__CONCURRENCY": str(CONCURRENCY),
    }
    return start_prodmon(bootstrap, prefix, "notify", env)


def repeats(counts: Counter) -> int:
    return sum(counts.values()) - len(counts)


async def test_kill_9_one_of_three_notifiers_loses_nothing_and_repeats_only_in_flight(
    bootstrap, topics
):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    held = first_per_partition(len(await producer.partitions_for(topics + ALERTS)))
    webhook = await HoldingWebhook(SECRET, set(held)).start()
    pagerduty = await FakePagerDuty().start()
    processes = [notifier(bootstrap, topics, webhook.url, pagerduty.url) for _ in range(3)]
    try:
        await asyncio.sleep(8)  # the group forms and spreads the partitions
        assert [p.poll() for p in processes] == [None] * 3, "a notifier did not start"
        try:
            for n in range(TRANSITIONS):
                channels = ["webhook", "pagerduty"] if n in PAGED else ["webhook"]
                t = transition(n) | {"channels": channels}
                await producer.send(topics + ALERTS, orjson.dumps(t), key=t["alert_id"].encode())
            await producer.flush()
        finally:
            await producer.stop()
        # Every partition's commit is held back while later transitions are delivered.
        started = lambda: not webhook.held and len(webhook.hits) >= TRANSITIONS // 2  # noqa: E731
        assert await until(started, 60), "deliveries did not start"
        processes[1].send_signal(signal.SIGKILL)  # mid-delivery
        processes[1].wait(10)
        sent = {h.headers.get("Idempotency-Key") for h in webhook.hits}
        unanswered = sent - webhook.answered  # requests the webhook still held

        def webhook_keys() -> Counter:
            return Counter(h.headers.get("Idempotency-Key") for h in webhook.hits)

        def dedup_keys() -> Counter:
            return Counter(orjson.loads(h.body).get("dedup_key") for h in pagerduty.hits)

        def complete() -> bool:
            return len(webhook_keys()) >= TRANSITIONS and len(dedup_keys()) >= len(PAGED)

        assert await until(complete, 120), "notifications lost"
        await asyncio.sleep(2.0)  # anything still to come would show up now
    finally:
        stop_processes(processes)
        await webhook.stop()
        await pagerduty.stop()
        with contextlib.suppress(Exception):
            await producer.stop()
    by_webhook, by_pagerduty = webhook_keys(), dedup_keys()
    assert len(by_webhook) == TRANSITIONS and len(by_pagerduty) == len(PAGED)  # none lost
    assert None not in by_webhook and None not in by_pagerduty
    # Killed mid-delivery: its held request went out again from the partition's new owner.
    assert any(by_webhook[key] == 2 for key in held)
    # Nothing whose outcome `deliveries` holds went out again, though its commit was held
    # back: one final webhook outcome per transition, repeated or not (see the docstring).
    finals = Counter(
        (d["transition_id"], d["channel"])
        for d in await topic_probe(make_config(bootstrap, topics), DELIVERIES)()
        if d.get("final")
    )
    assert {key: finals[(key, "webhook")] for key in by_webhook} == dict.fromkeys(by_webhook, 1)
    assert len(unanswered) <= 3 * CONCURRENCY
    assert repeats(by_webhook) <= 3 * CONCURRENCY
    assert repeats(by_pagerduty) <= 3 * CONCURRENCY
