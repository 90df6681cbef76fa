"""Shared fixtures: one real local broker per test session; tests isolate by topic prefix."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.broker import LocalBroker
from pipeline.topics import create_topics


@pytest.fixture(scope="session")
def broker():
    """A tansu broker on a free loopback port, for the whole test session."""
    with LocalBroker() as running:
        yield running


@pytest.fixture
def bootstrap(broker: LocalBroker) -> str:
    return broker.bootstrap


@pytest.fixture
def prefix() -> str:
    """A topic prefix unique to the test, so tests never see each other's records."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
async def topics(bootstrap: str, prefix: str) -> str:
    """Every design.md topic created under the test's prefix (4 partitions); returns the prefix."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await create_topics(admin, prefix=prefix, partitions=4)
    finally:
        await admin.close()
    return prefix
