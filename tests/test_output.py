"""Packing a stage's emits into Kafka messages (pipeline/output.py)."""

from __future__ import annotations

import random

import orjson

from pipeline.output import MAX_PACKED_BYTES, Partitioner, pack_emits
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
