"""The topics of design.md: their names, configs, and idempotent creation."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas.topology import (
    ALERTS,
    COMMANDS,
    DELIVERIES,
    EVENTS_DLQ,
    EVENTS_ERRORS,
    EVENTS_LATENCY,
    EVENTS_RAW,
    ISSUES,
    ROLLUPS,
    ROLLUPS_EARLY,
    SIGNALS,
    STAGES,
)

DEFAULT_PREFIX = "prodmon."

DATA_TOPICS = (
    EVENTS_RAW,
    EVENTS_ERRORS,
    EVENTS_LATENCY,
    EVENTS_DLQ,
    ISSUES,
    ROLLUPS,
    ROLLUPS_EARLY,
    SIGNALS,
    ALERTS,
    DELIVERIES,
    COMMANDS,
)
# Internal repartition topics carry one JSON array of events per message.
BATCHED_TOPICS = frozenset({EVENTS_ERRORS, EVENTS_LATENCY})
# Stages that keep a compacted changelog `state.<stage>` (schemas/topology.py).
STATEFUL_STAGES = tuple(s.name for s in STAGES if s.stateful)


def state_topic(stage: str) -> str:
    return f"state.{stage}"


@dataclass(frozen=True)
class TopicNames:
    """Maps logical topic names to physical ones under a prefix."""

    prefix: str = DEFAULT_PREFIX

    def physical(self, logical: str) -> str:
        return self.prefix + logical

    def logical(self, physical: str) -> str:
        return physical[len(self.prefix) :] if physical.startswith(self.prefix) else physical


def topic_specs(partitions: int) -> list[tuple[str, dict[str, str]]]:
    """Every logical topic with its config; state topics are compacted."""
    specs: list[tuple[str, dict[str, str]]] = [(name, {}) for name in DATA_TOPICS]
    specs += [(state_topic(s), {"cleanup.policy": "compact"}) for s in STATEFUL_STAGES]
    return specs


async def create_topics(
    admin: AIOKafkaAdminClient, prefix: str = DEFAULT_PREFIX, partitions: int = 4
) -> dict[str, str]:
    """Create every topic that does not exist yet; returns {topic: "created" | "exists"}.

    All topics get the same partition count so that keys are co-partitioned:
    a fingerprint's events, commands and changelog live in the same partition number.
    """
    names = TopicNames(prefix)
    existing = set(await admin.list_topics())
    wanted = [
        NewTopic(names.physical(t), partitions, 1, topic_configs=cfg)
        for t, cfg in topic_specs(partitions)
        if names.physical(t) not in existing
    ]
    outcome = {names.physical(t): "exists" for t, _ in topic_specs(partitions)}
    outcome.update(await _create(admin, wanted))
    return outcome


async def _create(admin: AIOKafkaAdminClient, wanted: list[NewTopic]) -> dict[str, str]:
    """Create `wanted`: {topic: "created" | "exists"} (another process may have been
    first); any other error raises."""
    if not wanted:
        return {}
    try:
        response = await admin.create_topics(wanted)
        errors = {name: code for name, code, *_ in response.topic_errors}
    except TopicAlreadyExistsError:
        errors = {}
    outcome = {}
    for topic in wanted:
        code = errors.get(topic.name, 0)
        if code not in (0, TopicAlreadyExistsError.errno):
            raise RuntimeError(f"creating topic {topic.name} failed with error code {code}")
        outcome[topic.name] = "created" if code == 0 else "exists"
    return outcome


async def ensure_internal_topics(admin: AIOKafkaAdminClient, prefix: str, partitions: int) -> None:
    """Create internal topics that a release added and an existing deployment lacks.

    `rollups.early` came after `prodmon topics create` was first run on some clusters: it
    gets the partition count of `rollups` there (co-partitioned), `partitions` otherwise.
    `state.ingest` (two-phase windowing) likewise gets the partition count of `events.raw`.
    """
    names = TopicNames(prefix)
    existing = set(await admin.list_topics())
    for wanted, like, configs in (
        (ROLLUPS_EARLY, ROLLUPS, {}),
        (state_topic("ingest"), EVENTS_RAW, {"cleanup.policy": "compact"}),
    ):
        if names.physical(wanted) in existing:
            continue
        count = partitions
        if names.physical(like) in existing:
            (described,) = await admin.describe_topics([names.physical(like)])
            count = len(described["partitions"]) or partitions
        await _create(admin, [NewTopic(names.physical(wanted), count, 1, topic_configs=configs)])
