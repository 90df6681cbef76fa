"""Topic creation against the real local broker."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from pipeline.topics import DATA_TOPICS, ROLLUPS, ROLLUPS_EARLY, create_topics


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


async def test_an_older_deployment_gets_the_new_internal_topic_co_partitioned(bootstrap, prefix):
    """Topics made before `rollups.early` existed: the pipeline adds it at start, with the
    partition count of `rollups` (3 here), not its configured default (4)."""
    from aiokafka.admin import NewTopic

    from pipeline.app import Pipeline
    from pipeline.config import load_config

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(prefix + ROLLUPS, 3, 1)])
        config = load_config(
            env={}, overrides={"kafka.bootstrap": bootstrap, "kafka.prefix": prefix}
        )
        await Pipeline(config, [])._ensure_internal_topics()
        await Pipeline(config, [])._ensure_internal_topics()  # idempotent
        (early,) = await admin.describe_topics([prefix + ROLLUPS_EARLY])
    finally:
        await admin.close()
    assert early["error_code"] == 0
    assert len(early["partitions"]) == 3
