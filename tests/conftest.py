"""Shared fixtures: one real local broker per test session (per xdist worker); tests
isolate by topic prefix. Tests that need a broker are marked `broker` here, so the fast
broker-free lane (`-m "not broker"`) never starts one."""

from __future__ import annotations

import gc
import inspect
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.broker import LocalBroker
from pipeline.config import RuntimeConfig
from pipeline.topics import create_topics

# The GC thresholds a pipeline process runs with (pipeline/app.py: runtime.gc_gen0_threshold),
# so tests run the stages as they run in production, without a collection every few hundred
# allocations.
gc.set_threshold(RuntimeConfig().gc_gen0_threshold, 20, 20)

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


# The broker-free lane's longest tests (`--durations=40`; the `heavy` ones run in the other
# lane), longest first. When workers take
# the next test from one queue (`--maxschedchunk 1`, as run.sh runs that lane), these run
# first, so that the workers end on short tests together instead of one worker finishing a
# long test alone. Only the order changes; a test missing here keeps its place. (Other
# schedules hand out consecutive chunks, where these first would all go to one worker.)
SLOW_FIRST = (
    "tests/test_fast_path.py::test_the_fast_check_accepts_only_what_the_rules_accept_unchanged",
    "tests/test_fast_path.py::test_the_stage_equals_its_general_path_through_restarts",
    "tests/test_plain_error.py::test_ingest_emits_the_same_with_and_without_the_fast_path",
    "tests/test_fast_path.py::test_partial_windows_are_what_ingest_then_windows_makes_of_each_partition",
    "tests/test_cli.py::test_run_keeps_retrying_while_the_broker_is_unreachable_and_stops_on_sigterm",
    "tests/test_baseline_memory.py::test_a_service_s_six_hours_of_minute_buckets_hold_a_few_kb",
    "tests/test_ingest_properties.py::test_every_element_is_exactly_one_emit_dead_letter_or_duplicate",
    "tests/test_sdk.py::test_unreachable_broker_never_raises_and_counts_drops",
    "tests/test_ingest_properties.py::test_a_batch_of_records_is_conserved_as_a_whole",
    "tests/test_fast_path.py::test_the_fast_path_takes_exactly_the_messages_plain_latency_accepts",
    "tests/sinks/test_render_properties.py::test_email_headers_never_carry_line_breaks",
    "tests/test_plain_error.py::test_what_the_fast_path_accepts_the_rules_accept_unchanged",
    "tests/test_grouping.py::test_never_raises",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _needs_broker(item):
            item.add_marker(pytest.mark.broker)
    if config.getoption("maxschedchunk", None) == 1:
        rank = {nodeid: i for i, nodeid in enumerate(SLOW_FIRST)}
        items.sort(key=lambda item: rank.get(item.nodeid, len(rank)))  # stable: the rest stay


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
