"""Topic creation against the real local broker."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from pipeline.topics import DATA_TOPICS, create_topics


async def test_create_topics_is_idempotent_and_creates_every_topic(bootstrap, prefix):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        first = await create_topics(admin, prefix=prefix, partitions=2)
        second = await create_topics(admin, prefix=prefix, partitions=2)
        listed = set(await admin.list_topics())
    finally:
        await admin.close()
    assert set(first.values()) == {"created"}
    assert set(second.values()) == {"exists"}
    for name in DATA_TOPICS:
        assert prefix + name in listed
    assert prefix + "state.fingerprint" in listed
