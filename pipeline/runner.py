"""Run one pure stage as a member of its Kafka consumer group.

The runner owns every piece of I/O around a stage: it consumes batches with
`getmany`, calls the stage once per batch, and then checkpoints. Restoring
state on assignment and dropping it on revocation also live here. It never
crashes on a broker outage: it backs off, logs, and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any, NamedTuple

import orjson
import structlog
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from pipeline.config import Config
from pipeline.member import assigned_count, consumer_lag
from pipeline.metrics import BATCH_TIMER
from pipeline.output import (
    OFFSET_MARKER,
    Message,
    Partitioner,
    changelog_messages,
    pack_emits,
    produce_all,
)
from pipeline.slim_records import SlimRecords, UnreadableBatch, install_slim_records
from pipeline.topic_reader import history_consumer, read_to_end
from pipeline.topics import BATCHED_TOPICS, EVENTS_DLQ, TopicNames, state_topic
from retry import Backoff
from schemas.dlq import dead_letter
from stages.base import Emit, Record, Stage, StageResult

log = structlog.get_logger("prodmon.runner")

# Emits on these topics are worth a log line each (they are rare and carry ids).
NOTABLE_TOPICS = frozenset({"issues", "events.dlq", "signals", "alerts"})
_TOPIC = attrgetter("topic")
# Batches whose checkpoints may queue behind the group in flight before the loop waits for
# them (a batch made in parts counts once; `runtime.max_unacked_bytes` bounds the encoded
# size of all that waits for acks). Stages of one process share a producer, so a stage's
# small checkpoint can wait behind another's close (tens of ms): at 8, ingest waited for
# its queue about 5 % of the time on the issue-22 benchmark, at 16 under 2 %; 32 spared
# little more and held more at the memory benchmark's peak (docs/benchmarks.md).
MAX_QUEUED_CHECKPOINTS = 16
# Emits and changelog writes gathered from a result's parts before they are queued: a
# close's parts (4,096 series each) go one by one, a batch's small ones together.
PART_ENTRIES = 4096


class _Checkpoint(NamedTuple):
    """One batch's encoded checkpoint, waiting to be made durable. It keeps the encoded
    messages only: what the stage emitted is dropped once encoded, but for the count and
    the few emits worth a log line."""

    outputs: list[Message]
    changelog: list[Message]
    offsets: dict[TopicPartition, int]
    emits: int
    notable: list[Emit]
    size: int  # encoded bytes (keys and values) of outputs and changelog
    ends_batch: bool  # False: a part of a batch made in parts (not counted as a batch)


@dataclass
class RunnerStats:
    """Counters a runner keeps for logs, health and metrics."""

    records_in: int = 0
    emits_out: int = 0
    batches: int = 0
    skipped_replayed: int = 0
    commit_failures: int = 0
    produce_retries: int = 0
    restored_keys: int = 0
    poison_records: int = 0
    unreadable_state: int = 0  # changelog records a restore could not read (logged, skipped)
    unreadable_batches: int = 0  # input batches that could not be read (sent to the DLQ)
    unreadable_records: int = 0  # the offsets those batches spanned
    assigned: set[int] = field(default_factory=set)

    def counters(self) -> dict[str, int]:
        """Every counter by name (what /metrics exports as `prodmon_<name>_total`)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "assigned"}


async def connect_with_backoff(
    start: Callable[[], Awaitable[None]], config: Config, stop: asyncio.Event, logger: Any
) -> None:
    """Call `start` until it connects or `stop` is set, backing off while the broker is away."""
    backoff = Backoff(config.runtime.retry_initial_s, config.runtime.retry_max_s)
    while not stop.is_set():
        try:
            await start()
            return
        except KafkaError as exc:
            logger.warning("broker_unreachable", error=repr(exc), retry_in=backoff.current)
            await backoff.wait(stop)


async def start_group_consumer(config: Config, group_id: str, **options: Any) -> AIOKafkaConsumer:
    """A started member of `group_id` with the runtime's group settings (offsets committed
    by the caller, a new group reading from the earliest record); stopped again if the
    start fails, so a broker that is away leaks no connection."""
    runtime = config.runtime
    consumer = AIOKafkaConsumer(
        **config.kafka.client_kwargs(),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=runtime.session_timeout_ms,
        heartbeat_interval_ms=runtime.heartbeat_interval_ms,
        fetch_max_wait_ms=runtime.fetch_max_wait_ms,
        **options,
    )
    try:
        await consumer.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await consumer.stop()
        raise
    return consumer


class StageRunner(ConsumerRebalanceListener):
    """One stage, one consumer group member, one checkpoint routine."""

    def __init__(
        self,
        stage: Stage,
        config: Config,
        producer: AIOKafkaProducer,
        group_id: str | None = None,
    ) -> None:
        self.stage = stage
        self.config = config
        self.producer = producer
        self.names = TopicNames(config.kafka.prefix)
        self.group_id = group_id or f"{config.kafka.prefix}{stage.name}"
        self.state_name = stage.state_name  # its changelog: state.<state_name>
        self.stats = RunnerStats()
        self.log = log.bind(stage=stage.name, group=self.group_id)
        self._lock = asyncio.Lock()
        self._partitioner = Partitioner()
        self._partition_counts: dict[str, int] = {}
        self._skip_below: dict[tuple[str, int], int] = {}
        # Stages that keep windows open hold their commits back (see `_commit_offsets`).
        self._holds_back = stage.hold_offsets() is not None
        self._consumed: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._in_flight: asyncio.Task | None = None
        self._queued: list[_Checkpoint] = []  # waiting for the group in flight
        self._unacked_bytes = 0  # encoded size of the checkpoints queued and in flight
        self._abandoned = False  # a checkpoint gave up on stop: no later one may be made durable
        self._consumer: AIOKafkaConsumer | None = None
        self._slim = SlimRecords(self.names.logical)
        self._last_tick = 0.0
        self.ready = asyncio.Event()

    # ---- what health and metrics read (pipeline/member.py) ---------------------------

    @property
    def member_name(self) -> str:
        return self.stage.name

    @property
    def connected(self) -> bool:
        return self._consumer is not None

    def assigned_partitions(self) -> int:
        return assigned_count(self._consumer, len(self.stats.assigned))

    async def lags(self) -> list[tuple[str, int, int]]:
        return await consumer_lag(self._consumer, self.names.logical)

    @property
    def produce_retries(self) -> int | None:
        return self.stats.produce_retries

    @property
    def restored_keys(self) -> int | None:
        return self.stats.restored_keys

    def stage_counters(self) -> dict[str, float]:
        """The stage's own counters."""
        return dict(self.stage.counters())

    def state_keys(self) -> int | None:
        """State keys the stage holds, if it counts them."""
        return self.stage.state_size()

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, process and checkpoint until `stop` is set; then leave the group."""
        await connect_with_backoff(self._start_consumer, self.config, stop, self.log)
        if self._consumer is None:
            return
        self.log.info(
            "stage_started",
            inputs=[*self.stage.inputs, *self.stage.external_inputs],
        )
        try:
            await self._consume_loop(stop)
        finally:
            await self._leave()

    async def _start_consumer(self) -> None:
        install_slim_records()
        consumer = await start_group_consumer(
            self.config,
            self.group_id,
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            value_deserializer=self._slim,
        )
        self._consumer = consumer
        for topic in BATCHED_TOPICS:
            partitions = await self.producer.partitions_for(self.names.physical(topic))
            self._partition_counts[topic] = len(partitions) if partitions else 1
        topics = [self.names.physical(t) for t in self.stage.inputs]
        # Topics other systems fill (the OTLP exporter's) are named as they are, no prefix.
        topics += self.stage.external_inputs
        consumer.subscribe(topics, listener=self)

    async def _leave(self) -> None:
        with contextlib.suppress(Exception):
            await self.drain()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()  # leaves the group; our offsets are already committed
        self.log.info("stage_stopped", records_in=self.stats.records_in)

    # ---- the loop --------------------------------------------------------------------

    async def _consume_loop(self, stop: asyncio.Event) -> None:
        runtime = self.config.runtime
        assert self._consumer is not None
        while not stop.is_set():
            batch = await self._consumer.getmany(
                timeout_ms=runtime.poll_timeout_ms, max_records=runtime.max_batch_records
            )
            now = time.time()
            async with self._lock:
                records, offsets = self._collect(batch)
                result = StageResult()
                if records:
                    with BATCH_TIMER.time(self.stage.name):
                        result = self._process(records, now)
                if self._slim.unreadable:
                    unreadable = self._slim.take_unreadable()
                    result.extend(self._dead_letter_unreadable(unreadable, offsets, now))
                pending = bool(records)
                if now - self._last_tick >= runtime.tick_interval_s:
                    self._last_tick = now
                    if result.in_parts:  # its parts are made before the stage is called again
                        await self.checkpoint(result, offsets, stop)
                        result, offsets, pending = StageResult(), {}, False
                    result.extend(self.stage.tick(now))
                if pending or result.in_parts or result.emits or result.state:
                    await self.checkpoint(result, offsets, stop)
        await self.drain()

    def _process(self, records: list[Record], now: float) -> StageResult:
        """Call the stage; if it raises, isolate the poison record(s) to the dead-letter topic.

        Stages are written never to raise; this is the guard for when one does anyway, so
        that one bad record never blocks its partition or crashes the process.
        """
        try:
            return self.stage.process(records, now)
        except Exception:
            self.log.exception("stage_failed_on_batch", records=len(records))
        result = StageResult()
        for record in records:
            try:
                result.extend(self.stage.process([record], now).whole())
            except Exception as exc:
                self.stats.poison_records += 1
                self.log.exception(
                    "poison_record",
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                )
                result.emits.append(
                    Emit(
                        EVENTS_DLQ,
                        (record.key or b"").decode("utf-8", "replace"),
                        dead_letter(
                            f"stage {self.stage.name} failed on this record: {exc!r}"[:500],
                            f"${self.stage.name}",
                            record.topic,
                            record.partition,
                            record.offset,
                            None,
                            record.value or b"",
                            int(now * 1000),
                        ),
                    )
                )
        return result

    def _dead_letter_unreadable(
        self,
        skipped: list[UnreadableBatch],
        offsets: dict[TopicPartition, int],
        now: float,
    ) -> StageResult:
        """Batches the consumer could not read: each offset range goes to the dead-letter
        topic with its reason, and the partition's commit moves past it."""
        result = StageResult()
        for unreadable in skipped:
            self.stats.unreadable_batches += 1
            self.stats.unreadable_records += unreadable.records
            tp = unreadable.tp
            offsets[tp] = max(offsets.get(tp, 0), unreadable.last_offset + 1)
            self.log.error(
                "unreadable_batch",
                topic=unreadable.topic,
                partition=tp.partition,
                first_offset=unreadable.first_offset,
                last_offset=unreadable.last_offset,
                reason=unreadable.reason,
            )
            letter = unreadable.dead_letter(int(now * 1000))
            result.emits.append(Emit(EVENTS_DLQ, "", letter))
        return result

    def _collect(
        self, batch: dict[TopicPartition, list]
    ) -> tuple[list[Record], dict[TopicPartition, int]]:
        """A getmany batch as the stage's records, skipping what the changelog says is done.

        The consumer unpacks `Record`s with logical topic names (pipeline/slim_records.py).
        Where it cannot, aiokafka's `ConsumerRecord`s (which have every field of `Record`)
        are handed over as they are, their topic renamed here."""
        records: list[Record] = []
        offsets: dict[TopicPartition, int] = {}
        logical = self.names.logical
        for tp, messages in batch.items():
            if not messages:
                continue
            topic = logical(tp.topic)
            offsets[tp] = messages[-1].offset + 1
            skip = self._skip_below.get((topic, tp.partition))
            if skip is not None:
                kept = [m for m in messages if m.offset >= skip]
                self.stats.skipped_replayed += len(messages) - len(kept)
                messages = kept
                if messages or offsets[tp] >= skip:
                    del self._skip_below[(topic, tp.partition)]
            if messages and messages[0].topic != topic:  # aiokafka's own records
                for m in messages:
                    m.topic = topic
            records.extend(messages)
        self.stats.records_in += len(records)
        return records, offsets

    async def checkpoint(
        self, result: StageResult, offsets: dict[TopicPartition, int], stop: asyncio.Event
    ) -> None:
        """Make one batch durable, in this order, retrying until it holds or we stop:

        1. produce the stage's outputs and wait for the broker's acks;
        2. produce the changelog (state changes, then each input partition's next
           offset as a marker) and wait for the acks;
        3. commit the input offsets.

        A crash after 1 re-emits the same records (deterministic ids make them
        recognisable); a crash after 2 restores state that already includes the batch,
        and the offset markers make the restored stage skip the records it has counted.

        Everything is encoded now (a snapshot of this batch), then steps 1-3 run in the
        background while the next batch is processed: waiting for acks and the commit
        does not stall the loop. One group of checkpoints is in flight at a time; the
        batches checkpointed meanwhile queue up and go next as one group (outputs, then
        changelog, in batch order; the latest offsets committed), so order holds and a
        slow broker costs round trips per group, not per batch. Past
        `MAX_QUEUED_CHECKPOINTS` the loop waits, and once `runtime.max_unacked_bytes` of
        encoded messages wait for acks (queued or in flight) it waits until all are
        durable: that bounds the memory a close of many series holds (docs/memory.md).
        A result that comes in parts (`StageResult.streamed`) is queued a part at a time,
        each part made only once the one before is queued (and, past those bounds,
        durable); the offsets go with the last. `drain` waits for all of it (before a
        rebalance and on stop).
        """
        held = [result]
        if result.in_parts:
            parts, held, entries, making = result.parts(), [], 0, 0.0
            while True:
                started = time.perf_counter()
                part = next(parts, None)
                making += time.perf_counter() - started
                if part is None:
                    break
                held.append(part)  # small parts (a partition's meta) go out together
                entries += len(part.emits) + len(part.state)
                if entries >= PART_ENTRIES:
                    await self._queue(held, None, stop)
                    held, entries = [], 0
            BATCH_TIMER.observe(self.stage.name, making)  # the stage's work, done here
        await self._queue(held, offsets, stop)

    async def _queue(
        self,
        results: list[StageResult],
        offsets: dict[TopicPartition, int] | None,
        stop: asyncio.Event,
    ) -> None:
        """Encode `results` (a batch's, or parts of one, in order) and queue them to be
        made durable (`checkpoint`); `offsets` None: parts of a batch, whose offsets come
        with a later call."""
        ends_batch = offsets is not None
        emits = [emit for result in results for emit in result.emits]
        outputs = pack_emits(emits, self.names, self._partition_counts, self._partitioner)
        offsets = self._commit_offsets(offsets) if offsets is not None else {}
        changelog: list[Message] = []
        if self.stage.stateful:
            for result in results:  # part by part: a key written twice keeps its order
                changelog += changelog_messages(self.state_name, self.names, result.state)
            markers: dict[tuple[int, str], object] = {
                (tp.partition, OFFSET_MARKER + self.names.logical(tp.topic)): next_offset
                for tp, next_offset in offsets.items()
            }
            changelog += changelog_messages(self.state_name, self.names, markers)
        size = encoded_size(outputs) + encoded_size(changelog)
        notable = notable_emits(emits)
        self._queued.append(
            _Checkpoint(outputs, changelog, offsets, len(emits), notable, size, ends_batch)
        )
        self._unacked_bytes += size
        task = self._in_flight
        if task is None or task.done():
            if task is not None:
                task.result()  # a checkpoint that failed outright fails the loop, as it did
            task = self._in_flight = asyncio.create_task(self._make_queued_durable(stop))
        elif ends_batch and sum(c.ends_batch for c in self._queued) >= MAX_QUEUED_CHECKPOINTS:
            await asyncio.shield(task)  # bounded: the queue is made durable first
        if self._unacked_bytes >= self.config.runtime.max_unacked_bytes:
            await asyncio.shield(task)

    async def drain(self) -> None:
        """Wait until the checkpoint in flight (if any) is durable and committed."""
        task, self._in_flight = self._in_flight, None
        if task is not None:
            await task

    async def _make_queued_durable(self, stop: asyncio.Event) -> None:
        """Make the queued checkpoints durable, a group at a time, until none is left."""
        while self._queued:
            group, self._queued = self._queued, []
            offsets: dict[TopicPartition, int] = {}
            for checkpoint in group:
                offsets.update(checkpoint.offsets)  # later batches' offsets win
            await self._make_durable(
                [m for checkpoint in group for m in checkpoint.outputs],
                [m for checkpoint in group for m in checkpoint.changelog],
                offsets,
                group,
                stop,
            )
            self._unacked_bytes -= sum(checkpoint.size for checkpoint in group)

    async def _make_durable(
        self,
        outputs: list[Message],
        changelog: list[Message],
        offsets: dict[TopicPartition, int],
        checkpoints: list[_Checkpoint],
        stop: asyncio.Event,
    ) -> None:
        if self._abandoned:  # committing (or marking) past the abandoned batch would skip it
            self.log.warning("stopping_without_commit", partitions=_parts(offsets))
            return
        backoff = Backoff(self.config.runtime.retry_initial_s, self.config.runtime.retry_max_s)
        while True:
            try:
                await produce_all(self.producer, outputs)
                await produce_all(self.producer, changelog)
                break
            except KafkaError as exc:
                self.stats.produce_retries += 1
                self.log.warning("produce_failed", error=repr(exc), retry_in=backoff.current)
                if stop.is_set():
                    self.log.warning("stopping_without_commit", partitions=_parts(offsets))
                    self._abandoned = True
                    return
                await backoff.wait(stop)
        await self._commit(offsets)
        for checkpoint in checkpoints:
            self.stats.batches += checkpoint.ends_batch
            self.stats.emits_out += checkpoint.emits
            self._log_notable(checkpoint.notable)

    def _commit_offsets(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """The offsets to commit (and to mark in the changelog) after this batch.

        Usually the next offset of each consumed partition. A stage that keeps records
        in open windows (`hold_offsets`) holds a partition's commit back to the oldest
        record it still needs, so a restart re-reads exactly what was not yet emitted;
        as windows close, later checkpoints move the commit forward.
        """
        if not self._holds_back:
            return offsets
        self._consumed.update(offsets)
        holds = self.stage.hold_offsets() or {}
        logical = self.names.logical
        result: dict[TopicPartition, int] = {}
        for tp, next_offset in self._consumed.items():
            target = min(next_offset, holds.get((logical(tp.topic), tp.partition), next_offset))
            if self._committed.get(tp) != target:
                result[tp] = target
        return result

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets or self._consumer is None:
            return
        try:
            await self._consumer.commit(offsets)
            self._committed.update(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced under us: the new owner re-reads from the last commit,
            # and the changelog's offset markers keep stateful stages from double counting.
            self.stats.commit_failures += 1
            self.log.warning("commit_failed", error=repr(exc), partitions=_parts(offsets))
        except KafkaError as exc:
            self.stats.commit_failures += 1
            self.log.warning("commit_failed", error=repr(exc), partitions=_parts(offsets))

    def _log_notable(self, notable: list[Emit]) -> None:
        for emit in notable:
            if isinstance(emit.value, dict):
                value = emit.value
                self.log.info(
                    "emitted",
                    topic=emit.topic,
                    key=emit.key,
                    kind=value.get("type"),
                    reason=value.get("reason"),
                    source=value.get("source"),
                    event_id=(value.get("sample") or {}).get("event_id"),
                )

    # ---- rebalance -------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait for the batch in hand to be checkpointed, then forget the partitions' state."""
        async with self._lock:
            await self.drain()
            partitions = {tp.partition for tp in revoked}
            self.stage.revoke(partitions)
            self.stats.assigned -= partitions
            for tp in revoked:
                self._consumed.pop(tp, None)
                self._committed.pop(tp, None)
            for key in [k for k in self._skip_below if k[1] in partitions]:
                del self._skip_below[key]
            if revoked:
                self.log.info("partitions_revoked", partitions=sorted(partitions))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Restore the assigned partitions' state from the changelog before processing."""
        partitions = {tp.partition for tp in assigned}
        async with self._lock:
            self.stage.assign(partitions)
            self.stats.assigned |= partitions
            if self.stage.stateful and partitions:
                restored = await self._restore(partitions)
                self.log.info("state_restored", partitions=sorted(partitions), keys=restored)
            else:
                self.log.info("partitions_assigned", partitions=sorted(partitions))
        self.ready.set()

    async def _restore(self, partitions: set[int]) -> int:
        topic = self.names.physical(state_topic(self.state_name))
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        reader = history_consumer(self.config.kafka)
        await reader.start()
        counter = [0]

        def restore(m: ConsumerRecord) -> None:
            counter[0] += self._restore_one(m.partition, m.key, m.value)

        try:
            reader.assign(tps)
            await read_to_end(reader, tps, restore, timeout_s=300)
        finally:
            await reader.stop()
        self.stats.restored_keys += counter[0]
        return counter[0]

    def _restore_one(self, partition: int, key: bytes | None, value: bytes | None) -> int:
        if key is None:
            return 0
        text = key.decode("utf-8", "replace")
        try:
            decoded = orjson.loads(value) if value is not None else None
            if text.startswith(OFFSET_MARKER):
                self._skip_below[(text[len(OFFSET_MARKER) :], partition)] = int(decoded or 0)
                return 0
            self.stage.restore(partition, text, decoded)
        except Exception as exc:  # one unreadable record must not stop the whole restore
            self.stats.unreadable_state += 1
            self.log.error(
                "state_record_unreadable", partition=partition, key=text[:200], error=repr(exc)
            )
            return 0
        return 1


def notable_emits(emits: list[Emit]) -> list[Emit]:
    """The emits worth a log line each once durable (rare, and they carry ids)."""
    if NOTABLE_TOPICS.isdisjoint(map(_TOPIC, emits)):  # most batches: a C loop
        return []
    return [emit for emit in emits if emit.topic in NOTABLE_TOPICS]


def encoded_size(messages: list[Message]) -> int:
    """Bytes of keys and values held by encoded messages."""
    return sum(len(m.key or b"") + len(m.value or b"") for m in messages)


def _parts(offsets: dict[TopicPartition, int]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]@{o}" for tp, o in sorted(offsets.items())]
