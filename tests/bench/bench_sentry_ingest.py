"""Events per second through the Sentry-compatible endpoint (ops/sentry_ingest.py) into
`events.raw`, one endpoint process, on the local broker.

The bodies are shaped like sentry-sdk's (Python) envelopes: gzip, an envelope header, one
`event` item with a 25-frame exception, tags, user and the SDK's usual contexts; one in
four is a `transaction` envelope instead. `--clients` connections send one envelope at a
time each (an SDK sends from one background thread), so the number is requests answered
after Kafka's acks. Also reported: the pure cost of decoding and mapping one envelope
(schemas/sentry.py) without HTTP or Kafka.

    python -m tests.bench.bench_sentry_ingest [--seconds 10] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import time
import uuid

import aiohttp
import orjson
from aiokafka.admin import AIOKafkaAdminClient

from ops.sentry_ingest import SentryIngest, start
from pipeline.broker import LocalBroker
from pipeline.config import load_config
from pipeline.topics import create_topics
from schemas.events import Limits
from schemas.sentry import Project, decode_body, map_item, parse_envelope

KEY = "0123456789abcdef0123456789abcdef"


def error_envelope() -> bytes:
    event_id = uuid.uuid4().hex
    frames = [
        {
            "filename": f"app/module_{i}.py",
            "abs_path": f"/srv/app/module_{i}.py",
            "function": f"handler_{i}",
            "module": f"app.module_{i}",
            "lineno": 10 + i,
            "in_app": i > 3,
            "context_line": "    return next_step(request)",
            "pre_context": ["", "def handler(request):"],
            "post_context": [""],
            "vars": {"request": "<Request>", "i": str(i)},
        }
        for i in range(25)
    ]
    event = {
        "event_id": event_id,
        "timestamp": time.time(),
        "platform": "python",
        "level": "error",
        "release": "1.4.2",
        "environment": "prod",
        "server_name": "web-12",
        "exception": {
            "values": [
                {
                    "type": "TimeoutError",
                    "value": "upstream pay-api timed out after 3000 ms",
                    "module": None,
                    "mechanism": {"type": "generic", "handled": True},
                    "stacktrace": {"frames": frames},
                }
            ]
        },
        "tags": {"region": "eu"},
        "user": {"id": "123"},
        "contexts": {
            "runtime": {"name": "CPython", "version": "3.11.9"},
            "trace": {"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16]},
        },
        "sdk": {"name": "sentry.python", "version": "2.19.0"},
        "breadcrumbs": {"values": [{"message": f"step {i}"} for i in range(20)]},
    }
    payload = orjson.dumps(event)
    header = {"event_id": event_id, "sent_at": "2026-12-06T10:00:00Z"}
    item = {"type": "event", "content_type": "application/json", "length": len(payload)}
    return gzip.compress(b"\n".join([orjson.dumps(header), orjson.dumps(item), payload]))


def transaction_envelope() -> bytes:
    now = time.time()
    tx = {
        "type": "transaction",
        "event_id": uuid.uuid4().hex,
        "transaction": "/api/pay",
        "start_timestamp": now - 0.012,
        "timestamp": now,
        "contexts": {"trace": {"op": "http.server", "status": "ok", "trace_id": "t"}},
        "spans": [{"op": "db", "start_timestamp": now - 0.01, "timestamp": now - 0.005}] * 5,
    }
    payload = orjson.dumps(tx)
    item = {"type": "transaction", "length": len(payload)}
    return gzip.compress(b"\n".join([b"{}", orjson.dumps(item), payload]))


def bench_mapping(n: int = 2000) -> float:
    """Microseconds to decode and map one error envelope (pure)."""
    project = Project("1", frozenset({KEY}), service="checkout")
    bodies = [error_envelope() for _ in range(n)]
    limits = Limits()
    t0 = time.perf_counter()
    now_ms = int(time.time() * 1000)
    for body in bodies:
        _, items = parse_envelope(decode_body(body, "gzip", 1 << 24))
        for item in items:
            map_item(item.type, item.payload, project, now_ms, limits)
    return (time.perf_counter() - t0) / n * 1e6


async def bench_endpoint(seconds: float, clients: int) -> dict[str, float]:
    with LocalBroker() as broker:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        await create_topics(admin, prefix="bench.", partitions=4)
        await admin.close()
        config = load_config(
            env={},
            overrides={
                "kafka.bootstrap": broker.bootstrap,
                "kafka.prefix": "bench.",
                "sentry.projects": {"1": {"keys": [KEY], "service": "checkout"}},
            },
        )
        ingest = SentryIngest(config)
        runner, port = await start(ingest, "127.0.0.1", 0)
        bodies = [error_envelope() if i % 4 else transaction_envelope() for i in range(400)]
        url = f"http://127.0.0.1:{port}/api/1/envelope/"
        headers = {
            "X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={KEY}",
            "Content-Encoding": "gzip",
        }
        latencies: list[float] = []
        sent = 0
        deadline = time.monotonic() + seconds

        async def client(offset: int) -> None:
            nonlocal sent
            async with aiohttp.ClientSession() as http:
                i = offset
                while time.monotonic() < deadline:
                    t0 = time.perf_counter()
                    async with http.post(url, data=bodies[i % len(bodies)], headers=headers) as r:
                        assert r.status == 200, r.status
                        await r.read()
                    latencies.append(time.perf_counter() - t0)
                    sent += 1
                    i += clients

        t0 = time.monotonic()
        await asyncio.gather(*(client(c) for c in range(clients)))
        elapsed = time.monotonic() - t0
        await runner.cleanup()
        await ingest.close()
    latencies.sort()
    return {
        "events_per_s": sent / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "requests": sent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    print(f"decode + map one gzip error envelope: {bench_mapping():.0f} us")
    result = asyncio.run(bench_endpoint(args.seconds, args.clients))
    print(
        f"endpoint, {args.clients} clients, {result['requests']} envelopes: "
        f"{result['events_per_s']:.0f} events/s, request p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
