"""Shared fixtures: one real local broker per test session (per xdist worker); tests
isolate by topic prefix. Tests that need a broker are marked `broker` here, so the fast
broker-free lane (`-m "not broker"`) never starts one."""

from __future__ import annotations

import inspect
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.broker import LocalBroker
from pipeline.topics import create_topics

BROKER_FIXTURES = frozenset({"broker", "bootstrap", "topics"})
# Modules that start brokers or prodmon processes of their own.
_BROKER_WORDS = ("LocalBroker(", "start_prodmon(")
_module_needs_broker: dict[str, bool] = {}


def _needs_broker(item: pytest.Item) -> bool:
    if BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    module = getattr(item, "module", None)
    if module is None:
        return False
    name = module.__name__
    if name not in _module_needs_broker:
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):
            source = ""
        _module_needs_broker[name] = any(word in source for word in _BROKER_WORDS)
    return _module_needs_broker[name]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _needs_broker(item):
            item.add_marker(pytest.mark.broker)


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
