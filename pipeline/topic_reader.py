"""Read a topic's history from the beginning up to its current end (for CLIs, demo, tests)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from pipeline.config import KafkaConfig


@dataclass(slots=True)
class TopicRecord:
    partition: int
    offset: int
    timestamp: int
    key: str | None
    value: Any  # decoded JSON, or None for a tombstone / undecodable value


def history_consumer(kafka: KafkaConfig, **options: Any) -> AIOKafkaConsumer:
    """A consumer for `read_to_end`: no group, no commits, and an offset out of range (a
    log whose start retention has moved) resets to the earliest offset, never the end."""
    return AIOKafkaConsumer(
        **kafka.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **options,
    )


async def read_topic(
    kafka: KafkaConfig, physical_topic: str, timeout_s: float = 10.0
) -> list[TopicRecord]:
    """Every record of `physical_topic` from offset 0 to the end offsets seen at the start."""
    consumer = history_consumer(kafka)
    await consumer.start()
    records: list[TopicRecord] = []
    try:
        await consumer.topics()  # refreshes cluster metadata
        partitions = consumer.partitions_for_topic(physical_topic) or set()
        tps = [TopicPartition(physical_topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)

        def collect(m: ConsumerRecord) -> None:
            key = m.key.decode("utf-8", "replace") if m.key is not None else None
            records.append(TopicRecord(m.partition, m.offset, m.timestamp, key, _decode(m.value)))

        await read_to_end(consumer, tps, collect, timeout_s)
    finally:
        await consumer.stop()
    return records


async def read_to_end(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    on_message: Callable[[ConsumerRecord], object],  # its result is ignored
    timeout_s: float = 60.0,
    start: Mapping[TopicPartition, Any] | None = None,
) -> None:
    """Feed every message of the assigned `tps`, from the beginning (or the `start` offsets
    from `offsets_for_times`) to the end, to `on_message`.

    The end is the later of the listed end offset and the high watermark that fetches
    report: some brokers (the local tansu among them) answer ListOffsets with the
    start of the last record batch plus one, which would cut the last batch short.
    """
    end = await consumer.end_offsets(tps)
    if start is None:
        # An explicit seek to offset 0, neither seek_to_beginning() nor the listed
        # beginning offsets: a lazy reset can lose the race with the reset aiokafka starts
        # on assign (a reader starting at the end silently skips the whole history), and
        # the local tansu broker now and then lists a partition's beginning as 2 when it
        # is 0 (a changelog restore would lose its first records). Where retention has
        # deleted offset 0, the consumer's reset policy (`history_consumer`: earliest)
        # moves the read to the log's real start.
        pending = set()
        for tp in tps:
            consumer.seek(tp, 0)
            if end[tp] > 0:
                pending.add(tp)
    else:  # offsets_for_times results: an OffsetAndTimestamp, or None (nothing that late)
        pending = set()
        for tp in tps:
            found = start.get(tp)
            if found is not None and found.offset < end[tp]:
                consumer.seek(tp, found.offset)
                pending.add(tp)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        batch = await consumer.getmany(*pending, timeout_ms=200)
        for messages in batch.values():
            for message in messages:
                on_message(message)
        for tp in list(pending):
            position = await consumer.position(tp)
            highwater = consumer.highwater(tp)
            if position >= end[tp] and (highwater is None or position >= highwater):
                pending.discard(tp)
    if pending:
        raise TimeoutError(f"reading {sorted(str(tp) for tp in pending)} did not finish")


def _decode(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


async def send_json(
    kafka: KafkaConfig, physical_topic: str, key: str, value: Any, broadcast: bool = False
) -> None:
    """Produce one JSON record and wait for the broker's ack (commands from the CLI).

    `broadcast` writes a copy to every partition (commands every partition's owner must
    see, such as silences).
    """
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=False)
    await producer.start()
    try:
        body = orjson.dumps(value)
        if not broadcast:
            await producer.send_and_wait(physical_topic, body, key=key.encode())
            return
        partitions = sorted(await producer.partitions_for(physical_topic))
        for partition in partitions:
            await producer.send_and_wait(
                physical_topic, body, key=key.encode(), partition=partition
            )
    finally:
        await producer.stop()
