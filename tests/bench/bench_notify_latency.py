"""Benchmark: delay from a signal being produced to its notification arriving at a loopback
receiver, while the same process also ingests and windows background latency traffic.

One run on the local broker: a pipeline process runs ingest, windows, escalation and the
notifier; a producer task sends background latency events at `--background-rate`; every
`1 / --signal-rate` seconds a new signal (a new alert) is produced; a loopback webhook
receiver (HMAC-verified) records when each alert's notification arrives. Reports p50, p90,
p99 and max of the delay, and the background rate actually sustained.

Run: .venv/bin/python -m tests.bench.bench_notify_latency [--signals 200]
     [--signal-rate 10] [--background-rate 20000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import time
import uuid

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.app import Pipeline
from pipeline.broker import LocalBroker
from pipeline.config import load_config
from pipeline.logging import configure_logging
from pipeline.topics import EVENTS_RAW, SIGNALS, create_topics
from tests.sinks.fakes import FakeWebhookReceiver

SECRET = "whsec-benchmark-0123456789"


class TimedReceiver(FakeWebhookReceiver):
    """The verifying webhook receiver, noting when each alert's first notification lands."""

    def __init__(self) -> None:
        super().__init__(SECRET)
        self.arrived: dict[str, float] = {}

    async def answer(self, request, hit):
        response = await super().answer(request, hit)
        if hit.json and "alert_id" in hit.json:
            self.arrived.setdefault(hit.json["alert_id"], time.time())
        return response


def signal(n: int) -> dict:
    service = f"svc{n % 20}"
    return {
        "id": f"bench-{n}|{service}|firing",
        "kind": "threshold",
        "state": "firing",
        "rule": f"bench-{n}",
        "severity": "high",
        "key": f"{service}|*",
        "service": service,
        "metric": "p99_ms",
        "value": 1500.0,
        "ts": int(time.time() * 1000),
        "channels": ["webhook"],
        "tags": {},
        "summary": "benchmark",
    }


async def background(bootstrap: str, prefix: str, rate: int, stop: asyncio.Event) -> int:
    """Latency events to events.raw at about `rate` per second, in batches of 100."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    rng, sent, started = random.Random(1), 0, time.monotonic()
    try:
        while not stop.is_set():
            now_ms = int(time.time() * 1000)
            batch = [
                {
                    "schema": "latency/1",
                    "event_id": f"bg-{sent + i}",
                    "ts": now_ms,
                    "service": f"bg{i % 10}",
                    "endpoint": f"/e{i % 7}",
                    "status": 200,
                    "duration_ms": round(rng.lognormvariate(3, 0.5), 3),
                }
                for i in range(100)
            ]
            await producer.send(prefix + EVENTS_RAW, orjson.dumps(batch), key=b"bg")
            sent += len(batch)
            ahead = sent / rate - (time.monotonic() - started)
            await asyncio.sleep(max(ahead, 0))
    finally:
        await producer.stop()
    return sent


async def main_async(args: argparse.Namespace) -> dict:
    configure_logging("WARNING")
    receiver = await TimedReceiver().start()
    os.environ["PRODMON_WEBHOOK_URL"] = receiver.url
    os.environ["PRODMON_WEBHOOK_SECRET"] = SECRET
    with LocalBroker() as broker:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        await create_topics(admin, prefix=prefix, partitions=4)
        await admin.close()
        config = load_config(
            env={},
            overrides={"kafka.bootstrap": broker.bootstrap, "kafka.prefix": prefix},
        )
        stop, load_stop = asyncio.Event(), asyncio.Event()
        pipeline = Pipeline(config, ["ingest", "windows", "escalation", "notify"])
        task = asyncio.create_task(pipeline.run(stop))
        await asyncio.sleep(8)  # group joins
        load = asyncio.create_task(
            background(broker.bootstrap, prefix, args.background_rate, load_stop)
        )
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
        await producer.start()
        sent_at: dict[str, float] = {}
        load_started = time.monotonic()
        for n in range(args.signals):
            value = signal(n)
            alert_id = f"{value['service']}:{value['rule']}:{value['key']}"
            sent_at[alert_id] = time.time()
            await producer.send_and_wait(
                prefix + SIGNALS, orjson.dumps(value), key=value["service"].encode()
            )
            await asyncio.sleep(1 / args.signal_rate)
        await producer.stop()
        deadline = time.monotonic() + 60
        while len(receiver.arrived) < len(sent_at) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        load_stop.set()
        background_sent = await load
        load_seconds = time.monotonic() - load_started
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)
    await receiver.stop()
    delays = sorted(
        (receiver.arrived[a] - t) * 1000 for a, t in sent_at.items() if a in receiver.arrived
    )
    quantiles = statistics.quantiles(delays, n=100, method="inclusive")
    return {
        "signals": len(sent_at),
        "notified": len(delays),
        "delay_ms": {
            "p50": statistics.median(delays),
            "p90": quantiles[89],
            "p99": quantiles[98],
            "max": delays[-1],
        },
        "background_events": background_sent,
        "background_events_per_s": background_sent / load_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=200)
    parser.add_argument("--signal-rate", type=float, default=10.0)
    parser.add_argument("--background-rate", type=int, default=20_000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    d = results["delay_ms"]
    print(
        f"signals={results['signals']} notified={results['notified']} "
        f"background={results['background_events_per_s']:,.0f} events/s"
    )
    print(
        f"signal -> notification delay: p50 {d['p50']:.1f} ms  p90 {d['p90']:.1f} ms  "
        f"p99 {d['p99']:.1f} ms  max {d['max']:.1f} ms"
    )
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
