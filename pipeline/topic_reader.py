"""Read a topic's history from the beginning up to its current end (for CLIs, demo, tests)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pipeline.config import KafkaConfig


@dataclass(slots=True)
class TopicRecord:
    partition: int
    offset: int
    timestamp: int
    key: str | None
    value: Any  # decoded JSON, or None for a tombstone / undecodable value


async def read_topic(
    kafka: KafkaConfig, physical_topic: str, timeout_s: float = 10.0
) -> list[TopicRecord]:
    """Every record of `physical_topic` from offset 0 to the end offsets seen at the start."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    records: list[TopicRecord] = []
    try:
        await consumer.topics()  # refreshes cluster metadata
        partitions = consumer.partitions_for_topic(physical_topic) or set()
        tps = [TopicPartition(physical_topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > 0}
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            batch = await consumer.getmany(*pending, timeout_ms=200)
            for tp, messages in batch.items():
                for m in messages:
                    if m.offset < end[tp]:
                        records.append(
                            TopicRecord(
                                m.partition,
                                m.offset,
                                m.timestamp,
                                m.key.decode("utf-8", "replace") if m.key is not None else None,
                                _decode(m.value),
                            )
                        )
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return records


def _decode(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


async def send_json(kafka: KafkaConfig, physical_topic: str, key: str, value: Any) -> None:
    """Produce one JSON record and wait for the broker's ack (commands from the CLI)."""
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(physical_topic, orjson.dumps(value), key=key.encode())
    finally:
        await producer.stop()
