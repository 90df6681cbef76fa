"""Packing a stage's emits into Kafka messages (pipeline/output.py)."""

from __future__ import annotations

import random

import orjson

from pipeline.output import MAX_PACKED_BYTES, Partitioner, pack_emits
from pipeline.topics import TopicNames
from stages.base import Emit


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
