"""What health probes and /metrics read of a process's consumer group members.

A member is a stage's `StageRunner` or the `Notifier`. Both implement `GroupMember`, so
pipeline/health.py and pipeline/metrics.py read typed properties instead of reaching into
private attributes: a rename is a type error, not a silently missing metric.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from aiokafka import AIOKafkaConsumer

__all__ = ["LAG_TIMEOUT_S", "GroupMember", "assigned_count", "consumer_lag"]

LAG_TIMEOUT_S = 0.5


class GroupMember(Protocol):
    """A consumer group member of a pipeline process."""

    ready: asyncio.Event  # set once its first assignment's state is restored

    @property
    def member_name(self) -> str:
        """The stage's name, or "notify"."""
        ...

    @property
    def connected(self) -> bool:
        """Its consumer has joined (started against the broker)."""
        ...

    def assigned_partitions(self) -> int:
        """Input topic-partitions it holds now."""
        ...

    async def lags(self) -> list[tuple[str, int, int]]:
        """(logical topic, partition, records behind) for partitions with a known lag."""
        ...

    @property
    def produce_retries(self) -> int | None:
        """Produce attempts retried after broker errors (None: it does not produce)."""
        ...

    @property
    def restored_keys(self) -> int | None:
        """State keys restored from its changelog (None: it keeps no changelog)."""
        ...


async def consumer_lag(
    consumer: AIOKafkaConsumer | None, logical: Callable[[str], str]
) -> list[tuple[str, int, int]]:
    """(logical topic, partition, lag) for each assigned partition with a known highwater.

    Lag is `highwater - position`; a partition not fetched yet has no highwater and is
    left out. Bounded: a position that needs a broker round trip gives up quickly.
    """
    if consumer is None:
        return []
    try:
        assigned = sorted(consumer.assignment())
    except Exception:
        return []
    out: list[tuple[str, int, int]] = []
    for tp in assigned:
        try:
            high = consumer.highwater(tp)
            if high is None:
                continue
            position = await asyncio.wait_for(consumer.position(tp), LAG_TIMEOUT_S)
        except Exception:  # includes TimeoutError; unassigned meanwhile
            continue
        out.append((logical(tp.topic), tp.partition, max(0, int(high) - int(position))))
    return out


def assigned_count(consumer: AIOKafkaConsumer | None, fallback: int) -> int:
    """Topic-partitions the consumer holds, else `fallback` (what the member last knew)."""
    if consumer is not None:
        try:
            return len(consumer.assignment())
        except Exception:
            pass
    return fallback
