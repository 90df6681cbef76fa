"""Turn a stage's emits and state changes into Kafka messages, and produce them.

Internal repartition topics carry one JSON array per destination partition (see
design.md: producing one message per event would cap the pipeline near 100k/s).
Every other topic gets one message per emit, keyed by the emit's key.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from pipeline.topics import BATCHED_TOPICS, TopicNames, state_topic
from schemas.partials import BROADCAST_KEY
from stages.base import Emit, EncodedJSON

MAX_PACKED_BYTES = 512 * 1024
_PARTITION_CACHE_LIMIT = 200_000
OFFSET_MARKER = "__offset__:"


@dataclass(slots=True)
class Message:
    topic: str  # physical
    partition: int | None
    key: bytes | None
    value: bytes | None


class Partitioner:
    """Kafka's default murmur2 key partitioner, memoised per key (keys repeat a lot)."""

    def __init__(self) -> None:
        self._tables: dict[int, dict[str | bytes, int]] = {}

    def table(self, partitions: int) -> dict[str | bytes, int]:
        """The memo of keys already placed among `partitions` (key -> partition): a hit
        there is the answer of a call."""
        table = self._tables.get(partitions)
        if table is None:
            table = self._tables[partitions] = {}
        return table

    def __call__(self, key: str | bytes, partitions: int) -> int:
        table = self.table(partitions)
        cached = table.get(key)
        if cached is None:
            if len(table) >= _PARTITION_CACHE_LIMIT:
                table.clear()
            data = key.encode() if isinstance(key, str) else key
            cached = (murmur2(data) & 0x7FFFFFFF) % partitions
            table[key] = cached
        return cached


_KEY_PARTITIONER = Partitioner()
_RECORD_OVERHEAD = 128  # at least what a record and its batch add to key + value
PRODUCE_WINDOW_BYTES = 4 * 1024 * 1024  # sent, not yet acknowledged: see `produce_all`


def encode_value(value: object) -> bytes | None:
    """An emit's value as the bytes of its message (None stays a tombstone)."""
    if value is None or isinstance(value, bytes):
        return value
    if type(value) is EncodedJSON:
        return value.json
    return _right_sized(orjson.dumps(value))


def _right_sized(encoded: bytes) -> bytes:
    """A copy of `encoded` that holds only its bytes: orjson's result keeps the buffer it
    wrote into (at least 4 KB, doubling as it grows), and a message lives until the broker
    acknowledges it, so a ~400-byte rollup held 4 KB (docs/memory.md)."""
    return memoryview(encoded).tobytes()


def pack_emits(
    emits: list[Emit],
    names: TopicNames,
    partition_counts: dict[str, int],
    partitioner: Partitioner,
) -> list[Message]:
    """Encode emits: batched topics packed per partition, the rest one message each.

    On a batched topic an emit keyed `BROADCAST_KEY` goes to every partition (a source
    watermark of two-phase windowing, schemas/partials.py), in order with the others."""
    messages: list[Message] = []
    packed: dict[tuple[str, int], list[object]] = defaultdict(list)
    # the batched topic of the emit before (most come in runs): its partition count, its
    # partitioner memo and its lists in `packed` by partition
    topic_before, count = "", 0
    places: dict[str | bytes, int] = {}
    lists: list[list[object]] = []
    physical_names: dict[str, str] = {}
    for emit in emits:
        topic = emit.topic
        if topic in BATCHED_TOPICS:
            if topic != topic_before:
                topic_before, count = topic, partition_counts[topic]
                places = partitioner.table(count)
                lists = [packed[(topic, partition)] for partition in range(count)]
            value = emit.value
            if type(value) is EncodedJSON:
                value = orjson.Fragment(value.json)  # included as it is
            key = emit.key
            if key == BROADCAST_KEY:
                for partition in range(count):
                    lists[partition].append(value)
                continue
            place = places.get(key)
            lists[partitioner(key, count) if place is None else place].append(value)
        else:
            physical = physical_names.get(topic)
            if physical is None:  # one string per topic, not one per message
                physical = physical_names[topic] = names.physical(topic)
            messages.append(Message(physical, None, emit.key.encode(), encode_value(emit.value)))
    for (topic, partition), values in packed.items():
        if not values:  # (every partition of a batched topic has its list)
            continue
        physical = names.physical(topic)
        for chunk in _chunks(values):
            messages.append(Message(physical, partition, None, chunk))
    return messages


def _chunks(values: list[object]) -> list[bytes]:
    """JSON arrays of `values`, split so that each stays under MAX_PACKED_BYTES.

    A batch too big for one message is cut by count into as many even parts as its size
    needs, so each value is encoded about twice, not once per halving; a part that is still
    too big (uneven values) is cut again.
    """
    whole = orjson.dumps(values)
    if len(whole) <= MAX_PACKED_BYTES or len(values) == 1:
        return [_right_sized(whole)]
    parts = min(len(values), -(-len(whole) * 5 // (4 * MAX_PACKED_BYTES)))  # 25 % headroom
    step = -(-len(values) // parts)
    chunks: list[bytes] = []
    for start in range(0, len(values), step):
        chunks.extend(_chunks(values[start : start + step]))
    return chunks


def changelog_messages(
    stage: str, names: TopicNames, state: dict[tuple[int, str], object]
) -> list[Message]:
    """State changes as compacted-changelog records in the input's partition (None = tombstone)."""
    topic = names.physical(state_topic(stage))
    return [
        Message(topic, partition, key.encode(), encode_value(value))
        for (partition, key), value in state.items()
    ]


async def produce_all(producer: AIOKafkaProducer, messages: list[Message]) -> None:
    """Send every message and return once the broker acknowledged all of them.

    Messages go into one batch per partition, in order (aiokafka's batch interface costs
    a few times less per message than `send`); a keyed message without a partition goes
    where Kafka's default partitioner puts it. Once `PRODUCE_WINDOW_BYTES` are sent and
    not yet acknowledged, the rest waits for those acks: aiokafka holds two copies of what
    it sends (the batch, the request), so the window bounds them where a close of many
    series would otherwise have all its output copied at once (docs/memory.md).
    """
    if not messages:
        return
    # `send` refuses a message over the producer's max_request_size before it goes out
    # (MessageSizeTooLargeError, as a broker refuses one over its max.message.bytes): such a
    # message still goes through `send`, so it fails the same way.
    limit = getattr(producer, "_max_request_size", 1024 * 1024) - _RECORD_OVERHEAD
    counts: dict[str, int] = {}
    batches: dict[tuple[str, int], Any] = {}
    window = _AckWindow()
    for m in messages:
        topic, partition, key, value = m.topic, m.partition, m.key, m.value
        if partition is None and key is not None:
            count = counts.get(topic)
            if count is None:
                count = counts[topic] = len(await producer.partitions_for(topic))
            partition = _KEY_PARTITIONER(key, count)
        if partition is None or len(key or b"") + len(value or b"") > limit:
            # No key nor partition: the producer picks one. Too big: see above.
            if partition is not None:
                held = batches.pop((topic, partition), None)
                if held is not None:  # what came before it goes first
                    sending = producer.send_batch(held, topic, partition=partition)
                    await window.sent(sending, held.size())
            size = len(key or b"") + len(value or b"")
            await window.sent(producer.send(topic, value, key=key, partition=partition), size)
            continue
        batch = batches.get((topic, partition))
        if batch is None:
            batch = batches[(topic, partition)] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it
            size = batch.size()
            await window.sent(producer.send_batch(batch, topic, partition=partition), size)
            batch = batches[(topic, partition)] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # over a batch
                del batches[(topic, partition)]
                size = len(key or b"") + len(value or b"")
                await window.sent(producer.send(topic, value, key=key, partition=partition), size)
    for (topic, partition), batch in batches.items():
        await window.sent(producer.send_batch(batch, topic, partition=partition), batch.size())
    await window.acked()


class _AckWindow:
    """What `produce_all` sent and the broker has not acknowledged yet: past
    `PRODUCE_WINDOW_BYTES` of batches, the next send first waits for the acks."""

    def __init__(self) -> None:
        self._futures: list[Any] = []
        self._bytes = 0

    async def sent(self, sending: Awaitable[Any], size: int = 0) -> None:
        """Await `sending` (a send: its future is the ack) after any acks due first."""
        if self._bytes >= PRODUCE_WINDOW_BYTES:
            await self.acked()
        self._futures.append(await sending)
        self._bytes += size

    async def acked(self) -> None:
        """Wait for the acks of everything sent."""
        futures, self._futures, self._bytes = self._futures, [], 0
        await asyncio.gather(*futures)
