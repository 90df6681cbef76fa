"""The dashboard's runtime: restore the view from topic history, tail the topics, tell the
browsers what changed.

One consumer without a group (`group_id=None`) is assigned every partition of the view's
topics. On start it reads them from the beginning to their current end with
`read_to_end` (explicit seeks; never `seek_to_beginning`, which races with aiokafka's
background offset reset), then keeps polling from there. After a broker error it
reconnects and resumes from the offsets it had reached, so nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndTimestamp

from ops.web.state import VIEWS, DashboardState
from pipeline.config import KafkaConfig
from pipeline.topic_reader import _decode, read_to_end
from pipeline.topics import TopicNames
from retry import Backoff

log = structlog.get_logger("prodmon.dashboard")


class Broadcaster:
    """A version counter and the views each version changed; subscribers wait for news."""

    def __init__(self, history: int = 256) -> None:
        self.version = 0
        self._log: deque[tuple[int, frozenset[str]]] = deque(maxlen=history)
        self._event = asyncio.Event()
        self.closed = False

    def publish(self, views: Iterable[str]) -> None:
        views = frozenset(views)
        if not views:
            return
        self.version += 1
        self._log.append((self.version, views))
        self._event.set()
        self._event = asyncio.Event()

    def close(self) -> None:
        self.closed = True
        self._event.set()

    def changed_since(self, seen: int) -> frozenset[str]:
        """The views changed after version `seen` (every view when that is too old)."""
        if self._log and self._log[0][0] > seen + 1:
            return frozenset(VIEWS)
        out: set[str] = set()
        for version, views in self._log:
            if version > seen:
                out |= views
        return frozenset(out)

    async def wait(self, seen: int, timeout_s: float) -> bool:
        """True when there is a version newer than `seen` (waits up to `timeout_s`)."""
        if self.version > seen or self.closed:
            return self.version > seen
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)
        return self.version > seen


class TopicFeed:
    """Feeds `state` from the topics under `kafka.prefix` until `stop` is set."""

    def __init__(
        self,
        kafka: KafkaConfig,
        state: DashboardState,
        broadcaster: Broadcaster,
        restore_timeout_s: float = 600.0,
        poll_ms: int = 300,
        retry_max_s: float = 10.0,
    ) -> None:
        self.kafka = kafka
        self.state = state
        self.broadcaster = broadcaster
        self.names = TopicNames(kafka.prefix)
        self.restore_timeout_s = restore_timeout_s
        self.poll_ms = poll_ms
        self.retry_max_s = retry_max_s
        self.ready = asyncio.Event()
        self.positions: dict[TopicPartition, int] = {}
        self.restore_s: float | None = None

    def _apply(self, message: ConsumerRecord) -> str | None:
        tp = TopicPartition(message.topic, message.partition)
        self.positions[tp] = message.offset + 1
        key = message.key.decode("utf-8", "replace") if message.key is not None else None
        return self.state.apply(self.names.logical(message.topic), key, _decode(message.value))

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(0.5, self.retry_max_s)
        while not stop.is_set():
            try:
                await self._run(stop)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("dashboard_feed_error", error=repr(exc), retry_in=backoff.current)
                await backoff.wait(stop)
            else:
                backoff.reset()

    async def _partitions(
        self, consumer: AIOKafkaConsumer, stop: asyncio.Event
    ) -> list[TopicPartition]:
        """Every partition of the view's topics (waits until they all exist)."""
        warned = False
        while not stop.is_set():
            await consumer.topics()  # refreshes the metadata
            found = {t: consumer.partitions_for_topic(self.names.physical(t)) for t in VIEWS}
            missing = sorted(t for t, parts in found.items() if not parts)
            if not missing:
                return [
                    TopicPartition(self.names.physical(t), p)
                    for t in VIEWS
                    for p in sorted(found[t] or ())
                ]
            if not warned:
                log.warning(
                    "dashboard_waiting_for_topics", missing=missing, prefix=self.kafka.prefix
                )
                warned = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
        return []

    async def _restore(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        """Read the history up to the current end: from the beginning, except `rollups`
        older than the view's longest horizon; after an interrupted restore, from where it
        stopped. Every partition is seeked explicitly (the tail continues from there)."""
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        offsets = {tp: self.positions.get(tp, begin[tp]) for tp in tps}
        rollups = [
            tp
            for tp in tps
            if self.names.logical(tp.topic) == "rollups" and tp not in self.positions
        ]
        if rollups:
            oldest = int(time.time() * 1000) - self.state.limits.longest_horizon_ms
            try:
                found = await consumer.offsets_for_times({tp: oldest for tp in rollups})
            except KafkaError as exc:  # a broker without the API: read it all
                log.info("dashboard_offsets_for_times_unavailable", error=repr(exc))
                found = {}
            for tp in rollups:
                if tp in found:
                    offsets[tp] = end[tp] if found[tp] is None else found[tp].offset
        for tp in tps:
            consumer.seek(tp, offsets[tp])
        start = {tp: OffsetAndTimestamp(offsets[tp], -1) for tp in tps}
        await read_to_end(consumer, tps, self._apply, timeout_s=self.restore_timeout_s, start=start)

    async def _run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            **self.kafka.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        try:
            await consumer.start()
            tps = await self._partitions(consumer, stop)
            if not tps:
                return
            consumer.assign(tps)
            if not self.ready.is_set():
                started = time.monotonic()
                await self._restore(consumer, tps)
                self.restore_s = time.monotonic() - started
                self.ready.set()
                log.info(
                    "dashboard_restored", seconds=round(self.restore_s, 3), **self.state.summary()
                )
                self.broadcaster.publish((*VIEWS, "ready"))
            else:
                begin = await consumer.beginning_offsets(tps)
                for tp in tps:  # resume where the last connection stopped
                    consumer.seek(tp, self.positions.get(tp, begin[tp]))
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=self.poll_ms, max_records=5000)
                changed = {
                    view
                    for messages in batch.values()
                    for message in messages
                    if (view := self._apply(message)) is not None
                }
                self.broadcaster.publish(changed)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
