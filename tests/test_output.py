"""Packing a stage's emits into Kafka messages (pipeline/output.py)."""

from __future__ import annotations

import random

import orjson

from pipeline import output
from pipeline.app import make_producer
from pipeline.config import load_config
from pipeline.output import MAX_PACKED_BYTES, Message, Partitioner, pack_emits, produce_all
from pipeline.topic_reader import read_topic
from pipeline.topics import TopicNames
from stages.base import Emit, EncodedJSON


def _unpacked(messages) -> list:
    return [v for m in messages for v in orjson.loads(m.value)]


def test_a_large_batch_is_split_under_the_limit_keeping_every_value_in_order():
    rng = random.Random(3)
    values = [{"i": i, "pad": "x" * rng.choice((10, 500, 4000))} for i in range(5000)]
    emits = [Emit("events.errors", "same-key", v) for v in values]
    messages = pack_emits(emits, TopicNames("p."), {"events.errors": 4}, Partitioner())
    assert len(messages) > 1
    assert all(len(m.value) <= MAX_PACKED_BYTES for m in messages)
    assert len({m.partition for m in messages}) == 1
    assert _unpacked(messages) == values


def test_a_small_batch_is_one_message_and_a_huge_value_travels_alone():
    small = [Emit("events.errors", "k", {"i": i}) for i in range(10)]
    huge = {"pad": "y" * (MAX_PACKED_BYTES + 1)}
    messages = pack_emits(small, TopicNames("p."), {"events.errors": 4}, Partitioner())
    assert len(messages) == 1 and _unpacked(messages) == [e.value for e in small]
    mixed = [*small, Emit("events.errors", "k", huge)]
    messages = pack_emits(mixed, TopicNames("p."), {"events.errors": 4}, Partitioner())
    assert _unpacked(messages) == [*(e.value for e in small), huge]
    assert sum(len(m.value) > MAX_PACKED_BYTES for m in messages) == 1


def test_values_a_stage_encoded_itself_are_packed_as_they_are():
    encoded = [EncodedJSON(b'{"i": %d, "kept":  "as sent"}' % i) for i in range(3)]
    emits = [
        Emit("events.errors", "k", {"i": -1}),
        *(Emit("events.errors", "k", v) for v in encoded),
    ]
    (message,) = pack_emits(emits, TopicNames("p."), {"events.errors": 4}, Partitioner())
    assert (
        message.value == b'[{"i":-1},{"i": 0, "kept":  "as sent"},{"i": 1, "kept":  "as sent"},'
        b'{"i": 2, "kept":  "as sent"}]'
    )
    assert encoded[1] == {"i": 1, "kept": "as sent"}  # read as the object it encodes
    (one,) = pack_emits(
        [Emit("issues", "k", encoded[0])], TopicNames("p."), {"events.errors": 4}, Partitioner()
    )
    assert one.value == encoded[0].json


async def test_produce_all_places_and_orders_messages_as_kafka_s_own_partitioner_does(
    bootstrap: str, topics: str
):
    """Batched sends land keyed messages where `producer.send` would (murmur2), keep each
    partition's order, and still send a message too big for one batch and a tombstone."""
    config = load_config(env={}, overrides={"kafka.bootstrap": bootstrap, "kafka.prefix": topics})
    producer = make_producer(config)
    await producer.start()
    try:
        rollups, alerts = f"{topics}rollups", f"{topics}alerts"
        keys = [f"svc-{i % 7}|/api/{i % 3}".encode() for i in range(300)]
        big = b'"' + b"x" * (1024 * 1024 + 10) + b'"'  # over the producer's max_batch_size
        messages = [Message(rollups, None, k, b'{"n": %d}' % i) for i, k in enumerate(keys)]
        messages += [Message(rollups, None, keys[0], big), Message(rollups, None, keys[1], None)]
        messages += [Message(rollups, None, keys[0], b'{"n": "last"}')]
        await produce_all(producer, messages)
        for key in sorted(set(keys)):  # the reference: the producer's own partitioner
            await producer.send_and_wait(alerts, b"ref", key=key)
    finally:
        await producer.stop()
    got = await read_topic(config.kafka, rollups)
    reference = {r.key: r.partition for r in await read_topic(config.kafka, alerts)}
    assert len(got) == len(messages)
    assert all(r.partition == reference[r.key] for r in got)
    for partition in {r.partition for r in got}:
        in_partition = sorted((r for r in got if r.partition == partition), key=lambda r: r.offset)
        sent = [m for m in messages if reference[m.key.decode()] == partition]
        assert [r.value for r in in_partition] == [
            orjson.loads(m.value) if m.value is not None else None for m in sent
        ]
    assert sum(r.value is None for r in got) == 1  # the tombstone


class _CountingProducer:
    """A real producer, watched: how many of its sent batches were unacknowledged, at
    most, when another was sent."""

    def __init__(self, producer) -> None:
        self._producer = producer
        self._futures: list = []
        self.most_unacked = 0

    def __getattr__(self, name: str):
        return getattr(self._producer, name)

    async def send_batch(self, batch, topic, *, partition):
        unacked = sum(not f.done() for f in self._futures)
        self.most_unacked = max(self.most_unacked, unacked)
        future = await self._producer.send_batch(batch, topic, partition=partition)
        self._futures.append(future)
        return future


async def test_produce_all_waits_for_acks_once_its_window_of_bytes_is_sent(
    bootstrap: str, topics: str, monkeypatch
):
    """Past `PRODUCE_WINDOW_BYTES` sent and unacknowledged, the rest waits for those acks
    (aiokafka's copies of a whole close no longer exist at once); order and content hold."""
    config = load_config(env={}, overrides={"kafka.bootstrap": bootstrap, "kafka.prefix": topics})
    producer = make_producer(config)
    await producer.start()
    rollups = f"{topics}rollups"
    value = b'"' + b"v" * 400_000 + b'"'  # two to a batch of the producer's 1 MB
    messages = [Message(rollups, i % 4, b"k%d" % i, value[:-2] + b'%d"' % i) for i in range(40)]
    try:
        unbounded = _CountingProducer(producer)
        monkeypatch.setattr(output, "PRODUCE_WINDOW_BYTES", 1 << 40)
        await produce_all(unbounded, messages)
        bounded = _CountingProducer(producer)
        monkeypatch.setattr(output, "PRODUCE_WINDOW_BYTES", 1_000_000)
        await produce_all(bounded, messages)
    finally:
        await producer.stop()
    assert unbounded.most_unacked >= 4  # without a window: a batch per partition or more
    assert bounded.most_unacked <= 2  # 1 MB: the second batch sent waits for the acks
    got = await read_topic(config.kafka, rollups)
    for partition in range(4):
        keys = [r.key for r in sorted(got, key=lambda r: r.offset) if r.partition == partition]
        assert keys == [m.key.decode() for m in messages if m.partition == partition] * 2
