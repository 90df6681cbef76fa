"""Reading a topic's history (CLIs, changelog restore, the notifier's memory) on the broker."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.config import KafkaConfig
from pipeline.topic_reader import read_topic

HISTORY = 40
READS = 60


async def test_every_read_starts_at_the_beginning_while_the_topic_is_written(bootstrap, prefix):
    """A reader must never start at the end: aiokafka resets a freshly assigned partition
    to `latest` in the background, and a lazy seek to the beginning can lose that race,
    which would make a changelog restore silently skip all state."""
    topic = prefix + "history"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 4, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    for i in range(HISTORY):
        await producer.send(topic, orjson.dumps(i), key=f"k{i % 7}".encode())
    await producer.flush()

    async def keep_writing() -> None:
        i = HISTORY
        while True:
            await producer.send_and_wait(topic, orjson.dumps(i), key=f"k{i % 7}".encode())
            i += 1
            await asyncio.sleep(0.005)

    writer = asyncio.create_task(keep_writing())
    kafka = KafkaConfig(bootstrap=bootstrap)
    short_reads = []
    try:
        for n in range(READS):
            values = {r.value for r in await read_topic(kafka, topic)}
            missing = set(range(HISTORY)) - values
            if missing:
                short_reads.append((n, len(missing)))
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await producer.stop()
    assert short_reads == []
