"""Helpers for tests that run the real pipeline against the local broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from ops.views import latest_issues
from pipeline.app import Pipeline
from pipeline.config import Config, load_config
from pipeline.topic_reader import read_topic
from pipeline.topics import EVENTS_RAW, ISSUES


def make_config(bootstrap: str, prefix: str, **overrides: Any) -> Config:
    base = {
        "kafka.bootstrap": bootstrap,
        "kafka.prefix": prefix,
        "fingerprint.count_interval_s": 0.3,
        "runtime.tick_interval_s": 0.2,
        "runtime.session_timeout_ms": 6000,
        "runtime.heartbeat_interval_ms": 1000,
    }
    base.update(overrides)
    return load_config(env={}, overrides=base)


def start_prodmon(
    bootstrap: str, prefix: str, stages: str, env: dict[str, str], config: str | None = None
) -> subprocess.Popen:
    """A `prodmon run --stages <stages>` process on the test broker: quick to notice a
    dead group member, with `env` added to this process's environment (and `config`, a
    prodmon.toml path, if given)."""
    full = {
        **os.environ,
        "PRODMON_RUNTIME__SESSION_TIMEOUT_MS": "6000",
        "PRODMON_RUNTIME__HEARTBEAT_INTERVAL_MS": "1000",
        **env,
    }
    cmd = [sys.executable, "-m", "ops.cli", "--log-level", "warning", "run", "--stages", stages]
    cmd += ["--bootstrap", bootstrap, "--prefix", prefix]
    if config is not None:
        cmd += ["--config", config]
    return subprocess.Popen(cmd, env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.asynccontextmanager
async def running_pipeline(config: Config, stages: list[str]) -> AsyncIterator[Pipeline]:
    """The pipeline running in this event loop; stopped cleanly on exit."""
    stop = asyncio.Event()
    pipeline = Pipeline(config, stages)
    task = asyncio.create_task(pipeline.run(stop))
    try:
        yield pipeline
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def send_raw(config: Config, payloads: list[tuple[bytes, bytes]]) -> None:
    """Produce (key, value) payloads to events.raw and wait for the acks."""
    producer = AIOKafkaProducer(**config.kafka.client_kwargs(), enable_idempotence=False)
    await producer.start()
    try:
        futures = [
            await producer.send(config.kafka.prefix + EVENTS_RAW, value, key=key)
            for key, value in payloads
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def as_batches(events: list[dict], size: int = 25) -> list[tuple[bytes, bytes]]:
    """Events as the fleet sends them: JSON arrays keyed by service."""
    out = []
    for i in range(0, len(events), size):
        chunk = events[i : i + size]
        out.append((chunk[0]["service"].encode(), orjson.dumps(chunk)))
    return out


async def wait_for(
    probe: Callable[[], Any], predicate: Callable[[Any], bool], timeout_s: float = 60.0
) -> Any:
    """Call the async `probe` until `predicate(result)` holds; return the last result."""
    deadline = time.monotonic() + timeout_s
    result = await probe()
    while not predicate(result) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        result = await probe()
    return result


def issues_probe(config: Config) -> Callable[[], Any]:
    async def probe() -> list[dict]:
        return latest_issues(await read_topic(config.kafka, config.kafka.prefix + ISSUES))

    return probe


def topic_probe(config: Config, logical: str) -> Callable[[], Any]:
    async def probe() -> list[Any]:
        return [r.value for r in await read_topic(config.kafka, config.kafka.prefix + logical)]

    return probe
