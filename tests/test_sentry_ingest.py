"""The Sentry-compatible ingest endpoint (`prodmon ingest serve`) against the real local
broker: the real `sentry-sdk` whose DSN points at it, and the protocol's edges (auth,
compression, size limits, malformed items, rate limits, Kafka down)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import signal
import sys
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import brotli
import orjson
import sentry_sdk
from aiokafka.admin import AIOKafkaAdminClient

from ops.sentry_ingest import SentryIngest, start
from pipeline.broker import LocalBroker
from pipeline.config import Config
from pipeline.topics import EVENTS_DLQ, EVENTS_RAW, ROLLUPS, create_topics
from tests.pipeline_helpers import (
    issues_probe,
    make_config,
    running_pipeline,
    topic_probe,
    wait_for,
)

KEY = "0123456789abcdef0123456789abcdef"
OTHER_KEY = "fedcba9876543210fedcba9876543210"
PROJECTS = {
    "7": {"keys": [KEY], "service": "checkout", "env": "prod"},
    "8": {"keys": [OTHER_KEY], "service": "search"},
}


def sentry_config(bootstrap: str, prefix: str, **overrides: Any) -> Config:
    return make_config(bootstrap, prefix, **{"sentry.projects": PROJECTS, **overrides})


@contextlib.asynccontextmanager
async def endpoint(config: Config) -> AsyncIterator[tuple[SentryIngest, str]]:
    """The endpoint on a free loopback port, in this event loop; yields it and its base URL."""
    ingest = SentryIngest(config)
    runner, port = await start(ingest, "127.0.0.1", 0)
    try:
        yield ingest, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await ingest.close()


# --- the real SDK ---------------------------------------------------------------------------


def checkout(cart: list[int]) -> int:
    return charge(sum(cart))


def charge(amount: int) -> int:
    raise TimeoutError(f"upstream pay-api timed out after 3000 ms (amount {amount})")


def use_the_sdk(dsn: str) -> None:
    """What a service does with the SDK: a real exception, a message, a transaction with a
    span; then flush (the SDK sends from its own thread)."""
    sentry_sdk.init(
        dsn=dsn,
        release="1.4.2",
        environment="prod",
        server_name="web-12",
        traces_sample_rate=1.0,
        default_integrations=False,
    )
    try:
        sentry_sdk.set_tag("region", "eu")
        sentry_sdk.set_user({"id": "123"})
        try:
            checkout([1, 2])
        except TimeoutError:
            sentry_sdk.capture_exception()
        sentry_sdk.capture_message("payment provider switched to fallback", level="warning")
        with sentry_sdk.start_transaction(op="http.server", name="/api/pay") as transaction:
            transaction.set_http_status(201)
            with sentry_sdk.start_span(op="db.query", name="select cart"):
                time.sleep(0.03)
        assert sentry_sdk.flush(timeout=15) is None
    finally:
        sentry_sdk.get_client().close(timeout=5)


async def test_real_sentry_sdk_errors_and_transactions_become_issues_and_rollups(bootstrap, topics):
    config = sentry_config(
        bootstrap, topics, **{"windows.idle_flush_s": 1.0, "windows.allowed_lateness_s": 0.5}
    )
    async with (
        endpoint(config) as (ingest, url),
        running_pipeline(config, ["ingest", "fingerprint", "windows"]),
    ):
        dsn = url.replace("http://", f"http://{KEY}@") + "/7"
        await asyncio.to_thread(use_the_sdk, dsn)
        issues = await wait_for(issues_probe(config), lambda got: len(got) >= 2)
        rollups = await wait_for(
            topic_probe(config, ROLLUPS),
            lambda got: any(r["series"] == "checkout|/api/pay" for r in got),
        )
    by_type = {i["exception_type"]: i for i in issues}
    assert set(by_type) == {"TimeoutError", "Message"}
    error = by_type["TimeoutError"]
    assert error["services"] == ["checkout"]
    assert error["releases"] == ["1.4.2"]
    assert error["severity"] == "high"  # Sentry level "error"
    assert by_type["Message"]["severity"] == "medium"  # "warning"
    sample = error["sample"]
    frames = sample["stacktrace"]
    # Outermost first, the raising frame last, exactly as the exception's traceback.
    assert [f["function"] for f in frames[-2:]] == ["checkout", "charge"]
    assert frames[-1]["in_app"] is True
    assert frames[-1]["filename"].endswith("test_sentry_ingest.py")
    assert frames[-1]["lineno"] == charge.__code__.co_firstlineno + 1
    assert sample["host"] == "web-12"
    assert sample["env"] == "prod"
    assert sample["tags"]["region"] == "eu"
    assert sample["context"]["user"] == {"id": "123"}
    assert "3000 ms" in sample["exception"]["message"]
    pay = next(r for r in rollups if r["series"] == "checkout|/api/pay")
    assert pay["count"] == 1
    assert pay["errors"] == 0 and pay["client_errors"] == 0
    assert 30 <= pay["max_ms"] < 5000
    assert ingest.items[("event", "accepted")] == 2
    assert ingest.items[("transaction", "accepted")] == 1


# --- the protocol ---------------------------------------------------------------------------


def envelope(*items: tuple[dict, bytes], header: dict | None = None) -> bytes:
    lines = [orjson.dumps(header or {})]
    for item_header, payload in items:
        lines += [orjson.dumps(item_header), payload]
    return b"\n".join(lines) + b"\n"


def error_event(event_id: str, **extra: Any) -> dict:
    return {
        "event_id": event_id,
        "timestamp": time.time(),
        "level": "fatal",
        "platform": "python",
        "exception": {
            "values": [
                {"type": "KeyError", "value": "'sku'"},
                {
                    "type": "ValueError",
                    "value": "bad cart",
                    "stacktrace": {
                        "frames": [
                            {"function": "handle", "module": "app.web", "lineno": 10},
                            {"function": "parse", "module": "app.cart", "lineno": 42},
                        ]
                    },
                },
            ]
        },
        **extra,
    }


def auth(key: str = KEY) -> dict[str, str]:
    return {"X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={key}, sentry_client=test/1"}


async def raw_events(config: Config) -> list[Any]:
    return await topic_probe(config, EVENTS_RAW)()


async def test_envelope_with_gzip_deflate_or_br_is_acked_with_the_event_id(bootstrap, topics):
    config = sentry_config(bootstrap, topics)
    ids = {name: uuid.uuid4().hex for name in ("gzip", "deflate", "br")}
    compress = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}
    async with endpoint(config) as (_, url), aiohttp.ClientSession() as http:
        for name, event_id in ids.items():
            body = envelope(
                ({"type": "event"}, orjson.dumps(error_event(event_id))),
                header={"event_id": event_id},
            )
            async with http.post(
                f"{url}/api/7/envelope/",
                data=compress[name](body),
                headers={**auth(), "Content-Encoding": name},
            ) as resp:
                assert resp.status == 200, await resp.text()
                assert await resp.json() == {"id": event_id}
    # Answered only after the acks: the events are already in events.raw.
    got = {e["event_id"]: e for e in await raw_events(config)}
    assert set(got) == set(ids.values())
    event = got[ids["br"]]
    assert event["schema"] == "error/1" and event["service"] == "checkout"
    assert event["severity"] == "critical" and event["env"] == "prod"
    assert event["exception"] == {"type": "ValueError", "message": "bad cart"}
    assert [f["function"] for f in event["stacktrace"]] == ["handle", "parse"]
    assert event["context"]["exception_chain"] == [{"type": "KeyError", "value": "'sku'"}]


async def test_store_endpoint_and_query_string_key(bootstrap, topics):
    config = sentry_config(bootstrap, topics)
    event_id = uuid.uuid4().hex
    event = error_event(event_id, fingerprint=["{{ default }}", "tenant-9"], environment="qa")
    async with (
        endpoint(config) as (_, url),
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/api/8/store/?sentry_key={OTHER_KEY}&sentry_version=7", data=orjson.dumps(event)
        ) as resp,
    ):
        assert resp.status == 200
        assert await resp.json() == {"id": event_id}
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
    (got,) = await raw_events(config)
    assert got["service"] == "search" and got["env"] == "qa"  # the event's own env wins
    assert got["fingerprint"] == ["{{ default }}", "tenant-9"]


async def test_wrong_or_missing_key_is_refused_with_a_json_error(bootstrap, topics):
    config = sentry_config(bootstrap, topics)
    body = envelope(({"type": "event"}, orjson.dumps(error_event(uuid.uuid4().hex))))
    cases = [
        ("/api/7/envelope/", {}, 401),
        ("/api/7/envelope/", auth("nope"), 401),
        ("/api/7/envelope/", auth(OTHER_KEY), 403),  # a real key, of another project
        ("/api/99/envelope/", auth(), 403),  # no such project
    ]
    async with endpoint(config) as (_, url), aiohttp.ClientSession() as http:
        for path, headers, status in cases:
            async with http.post(url + path, data=body, headers=headers) as resp:
                assert resp.status == status, path
                detail = (await resp.json())["detail"]
                assert KEY not in detail and "nope" not in detail
    assert await raw_events(config) == []


async def test_malformed_item_goes_to_the_dlq_and_the_rest_counts(bootstrap, topics):
    config = sentry_config(bootstrap, topics)
    good = uuid.uuid4().hex
    tx = {
        "type": "transaction",
        "event_id": uuid.uuid4().hex,
        "transaction": "GET /api/cart",
        "start_timestamp": time.time() - 0.25,
        "timestamp": time.time(),
        "contexts": {"trace": {"op": "http.server", "status": "internal_error"}},
    }
    body = envelope(
        ({"type": "event"}, orjson.dumps(error_event(good))),
        ({"type": "event"}, b'{"exception": {"values": [}'),  # broken JSON
        ({"type": "transaction"}, orjson.dumps({**tx, "start_timestamp": "yesterday"})),
        ({"type": "transaction"}, orjson.dumps(tx)),
        ({"type": "session"}, b'{"sid": "x", "status": "ok"}'),
        ({"type": "client_report"}, b'{"discarded_events": []}'),
        ({"type": "attachment", "length": 7, "filename": "a.txt"}, b"a\nb\nc\nd"[:7]),
        ({"type": "brand_new_thing"}, b"{}"),
    )
    async with endpoint(config) as (ingest, url), aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/7/envelope/", data=body, headers=auth()) as resp:
            assert resp.status == 200
            assert await resp.json() == {"id": good}
        async with http.get(f"{url}/metrics") as resp:
            metrics = await resp.text()
    raw = {e["event_id"]: e for e in await raw_events(config)}
    assert set(raw) == {good, tx["event_id"]}
    latency = raw[tx["event_id"]]
    assert latency["schema"] == "latency/1"
    assert (latency["endpoint"], latency["method"], latency["status"]) == ("/api/cart", "GET", 500)
    assert 240 <= latency["duration_ms"] <= 260
    letters = await topic_probe(config, EVENTS_DLQ)()
    assert sorted(d["field"] for d in letters) == ["$", "start_timestamp"]
    assert all(d["source"]["topic"] == "sentry:/api/7/envelope/" for d in letters)
    assert {d["source"]["index"] for d in letters} == {1, 2}
    assert ingest.items[("session", "dropped")] == 1
    assert ingest.items[("attachment", "dropped")] == 1
    assert ingest.items[("other", "dropped")] == 1
    assert ingest.items[("event", "dead_letter")] == 1
    assert 'prodmon_sentry_items_total{type="transaction",outcome="accepted"} 1' in metrics


async def test_size_limits_and_broken_envelopes(bootstrap, topics):
    config = sentry_config(
        bootstrap, topics, **{"sentry.max_body_bytes": 4096, "sentry.max_decompressed_bytes": 8192}
    )
    big = envelope(({"type": "event"}, b'{"message": "' + b"x" * 9000 + b'"}'))
    async with endpoint(config) as (_, url), aiohttp.ClientSession() as http:
        post = f"{url}/api/7/envelope/"
        async with http.post(post, data=big, headers=auth()) as resp:
            assert resp.status == 413  # as sent
        bomb = gzip.compress(big)  # small when sent, over the limit inflated
        assert len(bomb) < 4096
        headers = {**auth(), "Content-Encoding": "gzip"}
        async with http.post(post, data=bomb, headers=headers) as resp:
            assert resp.status == 413
        async with http.post(post, data=b"not gzip", headers=headers) as resp:
            assert resp.status == 400
        async with http.post(
            post, data=b'{}\n{"type": "event", "length": 99}\n{}', headers=auth()
        ) as resp:
            assert resp.status == 400
            assert "length" in (await resp.json())["detail"]
    assert await raw_events(config) == []


async def test_rate_limit_answers_429_with_sentry_headers(bootstrap, topics):
    config = sentry_config(bootstrap, topics, **{"sentry.rate_limit_per_s": 2})
    async with endpoint(config) as (ingest, url), aiohttp.ClientSession() as http:

        async def send() -> int:
            body = envelope(({"type": "event"}, orjson.dumps(error_event(uuid.uuid4().hex))))
            async with http.post(f"{url}/api/7/envelope/", data=body, headers=auth()) as resp:
                if resp.status == 429:
                    retry = int(resp.headers["Retry-After"])
                    assert 1 <= retry <= 2
                    assert resp.headers["X-Sentry-Rate-Limits"].startswith(f"{retry}::")
                return resp.status

        # All at once, so the bucket cannot refill between them however slow Kafka is.
        statuses = sorted(await asyncio.gather(*(send() for _ in range(4))))
    assert statuses == [200, 200, 429, 429]
    assert len(await raw_events(config)) == 2
    assert ingest.requests["throttled"] == 2


async def test_kafka_down_answers_429_then_delivers_when_it_returns(prefix):
    """Nothing is acknowledged that Kafka did not take: a send while the broker is away is
    refused with 429 (the SDK keeps it or sends it again later), the same send after it
    returns is accepted and is in events.raw."""
    broker = LocalBroker().start()
    port = int(broker.bootstrap.rsplit(":", 1)[1])
    config = sentry_config(
        broker.bootstrap, prefix, **{"sentry.produce_timeout_s": 2, "sentry.retry_after_s": 7}
    )

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await create_topics(admin, prefix=prefix, partitions=2)
        finally:
            await admin.close()

    event_id = uuid.uuid4().hex
    body = envelope(({"type": "event"}, orjson.dumps(error_event(event_id))))
    try:
        await create()
        async with endpoint(config) as (_, url), aiohttp.ClientSession() as http:
            broker.stop()
            async with http.post(f"{url}/api/7/envelope/", data=body, headers=auth()) as resp:
                assert resp.status == 429
                assert resp.headers["Retry-After"] == "7"
                assert resp.headers["X-Sentry-Rate-Limits"] == "7::organization:kafka_unavailable"
            broker = LocalBroker(port=port).start()  # memory storage: comes back empty
            await create()
            status = 0
            for _ in range(20):
                async with http.post(f"{url}/api/7/envelope/", data=body, headers=auth()) as resp:
                    status = resp.status
                if status == 200:
                    break
                await asyncio.sleep(1)
            assert status == 200
        got = await raw_events(config)
        assert event_id in [e["event_id"] for e in got]
    finally:
        broker.stop()


async def test_prodmon_ingest_serve_runs_the_endpoint_until_sigterm(bootstrap, topics):
    env = {
        **os.environ,
        "PRODMON_SENTRY__PROJECTS": orjson.dumps({"7": {"keys": ["$KEY_7"]}}).decode(),
        "KEY_7": KEY,
    }
    cmd = [sys.executable, "-m", "ops.cli", "--log-level", "warning", "ingest", "serve"]
    cmd += ["--bootstrap", bootstrap, "--prefix", topics, "--port", "0"]
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        url = line.decode().strip().removeprefix("sentry_ingest=").rstrip("/")
        event_id = uuid.uuid4().hex
        body = envelope(({"type": "event"}, orjson.dumps(error_event(event_id))))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/health/ready") as resp:
                assert resp.status == 200
            async with http.post(f"{url}/api/7/envelope/", data=body, headers=auth()) as resp:
                assert resp.status == 200
                assert await resp.json() == {"id": event_id}
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        _, err = await proc.communicate()
        assert KEY not in err.decode()  # the key is never logged
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    config = make_config(bootstrap, topics)
    assert [e["service"] for e in await raw_events(config)] == ["sentry-7"]
