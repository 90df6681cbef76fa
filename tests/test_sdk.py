"""The client SDK (production_monitor) on the real local broker: events, ids, batching, drops."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from grouping import fingerprint_error
from pipeline.broker import free_port
from production_monitor import AsyncProductionMonitor, ProductionMonitor
from schemas.events import Limits, validate_event

ERROR_KEYS = {
    "schema",
    "event_id",
    "ts",
    "service",
    "env",
    "release",
    "host",
    "severity",
    "exception",
    "stacktrace",
    "fingerprint",
    "context",
    "tags",
}
FRAME_KEYS = {"module", "function", "filename", "lineno", "in_app"}


class PaymentError(Exception):
    """A non-builtin exception: its type goes on the wire with its module."""


def _charge(amount_ms: int) -> None:
    raise PaymentError(f"upstream pay-api timed out after {amount_ms} ms")


def _raise_and_track(monitor: Any, amounts: tuple[int, ...], **kwargs: Any) -> list[str]:
    """The same exception raised from the same code, once per amount; the returned ids."""
    ids = []
    for amount in amounts:
        try:
            _charge(amount)
        except PaymentError as exc:
            ids.append(monitor.track_exception(exc, **kwargs))
    return ids


async def _consume(bootstrap: str, topic: str, want: int, timeout: float = 15.0):
    """(key, value-as-decoded-list) for every message until `want` events were seen."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    messages: list[tuple[bytes | None, list[dict[str, Any]]]] = []
    try:
        deadline = time.monotonic() + timeout
        seen = 0
        while seen < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    value = orjson.loads(record.value)
                    assert isinstance(value, list), "the SDK sends one JSON array per message"
                    messages.append((record.key, value))
                    seen += len(value)
    finally:
        await consumer.stop()
    return messages


def _validated(event: dict[str, Any]) -> dict[str, Any]:
    return validate_event(event, int(time.time() * 1000), Limits())


async def test_sync_round_trip_errors_and_latency(bootstrap, topics):
    service = f"checkout-{uuid.uuid4().hex[:6]}"
    monitor = ProductionMonitor(
        bootstrap, service=service, prefix=topics, release="1.4.2", host="web-12", batch_max=300
    )
    try:
        ids = _raise_and_track(
            monitor,
            (3000, 4500),
            context={"user_id": "123", "at": object()},
            severity="high",
            tags={"region": "eu", "attempt": 2},
        )
        plain_id = monitor.track_exception(ValueError("Invalid input"), severity="URGENT")
        for i in range(1000):
            monitor.record_latency("/api/pay", 10.0 + i % 7, status=200, method="post", region="eu")
        assert await asyncio.to_thread(monitor.flush, 10.0) is True
        stats = monitor.stats
        assert (stats.sent, stats.buffered, stats.dropped) == (1003, 0, 0)
        assert stats["invalid"] == 1  # "URGENT" is not a severity: sent as medium, counted
    finally:
        assert await asyncio.to_thread(monitor.close, 5.0) is True

    # Same exception, same code, different numbers in the message: one issue.
    assert ids[0] == ids[1] and len(ids[0]) == 32 and int(ids[0], 16) >= 0
    assert plain_id and plain_id != ids[0]

    messages = await _consume(bootstrap, topics + "events.raw", want=1003)
    assert all(key == service.encode() for key, _ in messages)
    assert all(len(events) <= 300 for _, events in messages)
    events = [e for _, events in messages for e in events]
    errors = [e for e in events if e["schema"] == "error/1"]
    latencies = [e for e in events if e["schema"] == "latency/1"]
    assert (len(errors), len(latencies)) == (3, 1000)
    assert len({e["event_id"] for e in events}) == 1003

    for event in errors:
        assert set(event) == ERROR_KEYS
        assert event["service"] == service and event["env"] == "prod"
        assert (event["release"], event["host"]) == ("1.4.2", "web-12")
        assert isinstance(event["ts"], int) and abs(event["ts"] - time.time() * 1000) < 60_000
        _validated(event)  # ingest accepts it as it is
    raised = [e for e in errors if e["exception"]["type"] != "ValueError"]
    plain = next(e for e in errors if e["exception"]["type"] == "ValueError")
    for event, want_id in zip(raised, ids, strict=True):
        # The id returned is the one the pipeline computes, on the raw and the normalized event.
        assert fingerprint_error(event).id == want_id
        assert fingerprint_error(_validated(event)).id == want_id
        assert event["exception"]["type"] == f"{__name__}.PaymentError"
        assert event["exception"]["message"].startswith("upstream pay-api timed out after")
        assert event["severity"] == "high"
        assert event["context"]["user_id"] == "123" and isinstance(event["context"]["at"], str)
        assert event["tags"] == {"region": "eu", "attempt": "2"}
        frames = event["stacktrace"]
        assert all(set(f) == FRAME_KEYS for f in frames)
        # Outermost first: the frame that caught it, then the function that raised.
        assert [f["function"] for f in frames] == ["_raise_and_track", "_charge"]
        assert all(f["module"] == __name__ and f["in_app"] for f in frames)
        assert frames[0]["filename"].endswith("test_sdk.py")
        assert frames[1]["lineno"] == _charge.__code__.co_firstlineno + 1
    assert plain["stacktrace"] == [] and plain["severity"] == "medium"
    assert fingerprint_error(plain).id == plain_id
    assert plain["exception"]["message"] == "Invalid input"

    latency = latencies[0]
    assert latency["service"] == service and latency["endpoint"] == "/api/pay"
    assert (latency["method"], latency["status"], latency["region"]) == ("POST", 200, "eu")
    assert latency["host"] == "web-12" and isinstance(latency["duration_ms"], float)
    assert sorted(e["duration_ms"] for e in latencies[:7]) == [10.0 + i for i in range(7)]
    for event in latencies[:10]:
        _validated(event)


async def test_ids_follow_the_grouping_rules_without_a_broker():
    monitor = ProductionMonitor(f"127.0.0.1:{free_port()}", service="grouping", linger_ms=0)
    try:
        same = _raise_and_track(monitor, (1, 250, 99999))
        explicit = _raise_and_track(monitor, (7,), fingerprint=["payments", "timeout"])
        library = monitor.track_exception(KeyError("user_42"))  # never raised: no traceback
        library_again = monitor.track_exception(KeyError("user_97"))
        other = monitor.track_exception(TimeoutError("upstream pay-api timed out after 3 ms"))
    finally:
        await asyncio.to_thread(monitor.close, 0.2)
    assert len(set(same)) == 1
    assert explicit[0] not in (same[0], "")
    assert library == library_again != other
    assert len({same[0], library, other}) == 3


async def test_unreachable_broker_never_raises_and_counts_drops(caplog):
    caplog.set_level(logging.WARNING, logger="production_monitor")
    monitor = ProductionMonitor(
        f"127.0.0.1:{free_port()}", service="offline", max_buffer=10, linger_ms=5
    )

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    ids = _raise_and_track(monitor, tuple(range(20)))
    assert all(len(i) == 32 for i in ids)
    monitor.track_exception(Unprintable(), context="not a dict", tags=["x"], severity=None)
    monitor.track_exception("not an exception")
    monitor.track_exception(None)  # no exception being handled
    for _ in range(3):
        monitor.record_latency("/x", 1.0, status=999)  # bad status: sent as None, counted
    monitor.record_latency("/x", -5.0)  # refused: ingest would dead-letter it
    monitor.record_latency("/x", float("nan"))
    stats = monitor.stats
    assert stats.buffered == 10
    assert stats.dropped == 20 + 3 + 3 - 10 + 2
    assert stats.invalid >= 3 + 2 + 3

    started = time.monotonic()
    delivered = await asyncio.to_thread(monitor.flush, 1.0)
    elapsed = time.monotonic() - started
    assert delivered is False
    assert elapsed < 1.0 + 2.0  # it gave up at its timeout, give or take scheduling
    assert monitor.stats.errors >= 1  # failed connection attempts

    assert await asyncio.to_thread(monitor.close, 0.3) is False
    after = monitor.stats
    assert after.buffered == 0 and after.dropped == stats.dropped + 10
    assert after.sent == 0 and after.connected is False
    monitor.track_exception(ValueError("after close"))  # still never raises
    assert monitor.record_latency("/x", 1.0) is False
    assert monitor.stats.dropped == after.dropped + 2
    assert monitor.close() is False  # idempotent
    assert any(r.name == "production_monitor" for r in caplog.records)


async def test_async_client_round_trip(bootstrap, topics):
    service = f"async-{uuid.uuid4().hex[:6]}"
    monitor = AsyncProductionMonitor(bootstrap, service=service, prefix=topics, env="staging")
    ids = _raise_and_track(monitor, (5,))  # before start: buffered
    async with monitor:
        ids += _raise_and_track(monitor, (6, 7), severity="critical")
        assert monitor.record_latency("/api/cart", 3.25, status=503, method="GET") is True
        assert await monitor.flush(10.0) is True
        assert monitor.stats.sent == 4 and monitor.stats.connected
    assert monitor.stats.buffered == 0 and monitor.stats.dropped == 0
    assert len(set(ids)) == 1

    events = [e for _, es in await _consume(bootstrap, topics + "events.raw", want=4) for e in es]
    errors = [e for e in events if e["schema"] == "error/1"]
    (latency,) = [e for e in events if e["schema"] == "latency/1"]
    assert [e["severity"] for e in errors] == ["medium", "critical", "critical"]
    assert {fingerprint_error(e).id for e in errors} == set(ids)
    assert all(e["env"] == "staging" and e["service"] == service for e in errors)
    assert (latency["status"], latency["duration_ms"], latency["method"]) == (503, 3.25, "GET")
    _validated(latency)


async def test_async_buffer_overflow_before_start_counts_drops():
    monitor = AsyncProductionMonitor(f"127.0.0.1:{free_port()}", service="tiny", max_buffer=5)
    results = [monitor.record_latency("/a", float(i)) for i in range(12)]
    assert results == [True] * 5 + [False] * 7
    assert (monitor.stats.buffered, monitor.stats.dropped) == (5, 7)
    await monitor.start()
    assert await monitor.flush(0.3) is False
    assert await monitor.close(0.2) is False
    assert (monitor.stats.buffered, monitor.stats.dropped) == (0, 12)
