"""The notifier: alert transitions in, notifications out, every outcome on `deliveries`.

This is runtime, not a pure stage: it owns the I/O of talking to Slack, SMTP, PagerDuty,
webhooks and SMS (sinks/). It is a member of its own consumer group (`<prefix>notify`),
so a slow or failing destination never stalls the other stages.

No head-of-line blocking. Each (transition, channel) of a consumed `alerts` record becomes
a delivery job, run as its own task, and the notifier goes on consuming while earlier jobs
are still being retried (as Alertmanager runs each receiver's retries independently): a
Slack that hangs for five minutes does not delay a PagerDuty page of another alert.

- **Order**: the jobs of one (alert, channel) run one after another, in `alerts` order, so
  a resolve never goes out before its firing on that channel; different alerts, and
  different channels of one alert, do not wait for each other.
- **Concurrency**: at most `notify.concurrency` jobs *per channel* are in flight (inside
  `Deliverer.deliver`, retries and backoff included), so a hanging channel can only use
  up its own slots.
- **Memory**: when `max_pending` jobs are not final yet, fetching is paused
  (`consumer.pause`) until the backlog is down to half of that.
- **Commit**: per partition, offsets are committed up to the lowest offset that still has
  a job which is not final (delivered, failed, gave up, dropped or skipped), else up to
  the last record read. Every outcome record of a job (its attempts and its final one) is
  acknowledged by the broker before the job counts as final.
- **Revocation and stop**: no job of a revoked partition (all of them, on stop) starts any
  more; the jobs already in flight get up to `drain_timeout_s` to finish, the rest are
  cancelled; what is final is committed and the rest left uncommitted, so the next owner
  (or this process after a restart) delivers it again.

No double notification after a restart: on assignment the notifier reads its partitions of
`deliveries` and skips every (transition, channel) that already has a final outcome. Each
final outcome is acknowledged before its job releases its channel's slot, so the only window
left is a job cancelled, or a process killed, between a destination accepting a request and
its outcome being acknowledged: at most `concurrency` notifications per channel can go out
twice, and they carry the same idempotency key (PagerDuty's dedup_key, the webhook's
Idempotency-Key, the email's Message-ID).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.config import Config
from pipeline.member import assigned_count, consumer_lag
from pipeline.runner import connect_with_backoff, start_group_consumer
from pipeline.slim_records import SlimRecords, UnreadableBatch, install_slim_records
from pipeline.topic_reader import history_consumer, read_to_end
from pipeline.topics import ALERTS, DELIVERIES, EVENTS_DLQ, TopicNames
from sinks.base import DeliveryOutcome, Sink
from sinks.delivery import Deliverer, DeliveryPolicy
from sinks.links import with_links
from sinks.text import for_channel

log = structlog.get_logger("prodmon.notifier")

FINAL = frozenset(
    {"delivered", "failed", "gave_up", "dropped_rate_limited", "skipped_circuit_open"}
)
MAX_POLL_RECORDS = 500
COMMIT_TIMEOUT_S = 10.0  # a commit the coordinator does not answer is left for the next one


class PartitionProgress:
    """Which records of one assigned `alerts` partition still have deliveries not final."""

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.unfinished: dict[int, int] = {}  # offset -> jobs of that record not final yet
        self.read_to: int | None = None  # next offset after the last record read
        self.committed: int | None = None  # last offset this process committed
        self.released = False  # revoked or stopping: no job of this partition starts

    def read(self, offset: int) -> None:
        self.read_to = max(self.read_to or 0, offset + 1)

    def add(self, offset: int) -> None:
        self.unfinished[offset] = self.unfinished.get(offset, 0) + 1

    def finish(self, offset: int) -> None:
        left = self.unfinished.get(offset, 0) - 1
        if left > 0:
            self.unfinished[offset] = left
        else:
            self.unfinished.pop(offset, None)

    def commit_point(self) -> int | None:
        """The offset to commit: the lowest one not final, else the end of what was read."""
        if self.read_to is None:
            return None
        return min(self.unfinished, default=self.read_to)


@dataclass(eq=False)
class Job:
    """One transition to one channel, from one `alerts` record."""

    progress: PartitionProgress
    offset: int
    transition: dict[str, Any]
    channel: str
    task: asyncio.Task | None = None
    started: bool = False  # holds its channel's slot: in flight
    acks: list[asyncio.Future] = field(default_factory=list)  # its attempt records

    @property
    def key(self) -> tuple[str, str]:
        """(transition id, channel): what `deliveries` remembers as final."""
        return (str(self.transition["id"]), self.channel)

    @property
    def lane(self) -> tuple[str, str]:
        """(alert id, channel): jobs of one lane run one after another, in order."""
        return (str(self.transition["alert_id"]), self.channel)


class Notifier(ConsumerRebalanceListener):
    """Delivers the `alerts` topic through sinks; see the module docstring."""

    name = "notify"

    def __init__(
        self,
        config: Config,
        producer: AIOKafkaProducer,
        sinks: Mapping[str, Sink],
        policy: DeliveryPolicy | None = None,
        *,
        max_pending: int | None = None,
        drain_timeout_s: float | None = None,
    ) -> None:
        self.config = config
        self.producer = producer
        self.names = TopicNames(config.kafka.prefix)
        self.group_id = f"{config.kafka.prefix}notify"
        self.sinks = dict(sinks)
        self.deliverer = Deliverer(self.sinks, policy, on_outcome=self._on_outcome)
        concurrency = config.notify.concurrency
        # Jobs not final yet above which fetching pauses (resumes at half of it).
        self.max_pending = max_pending or max(64, 64 * concurrency)
        # How long in-flight jobs may still run when their partition is revoked or on stop.
        self.drain_timeout_s = (
            drain_timeout_s if drain_timeout_s is not None else config.notify.attempt_timeout_s
        )
        self.done: dict[int, set[tuple[str, str]]] = defaultdict(set)
        self.stats = {
            "transitions": 0,
            "delivered": 0,
            "skipped_done": 0,
            "no_sink": 0,
            "fetch_paused": 0,
            "released_unfinished_records": 0,
            "unreadable_batches": 0,
        }
        self.outcomes: dict[str, int] = defaultdict(int)
        self.channel_outcomes: dict[tuple[str, str], int] = defaultdict(int)
        self._slots: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(concurrency)
        )
        self._progress: dict[TopicPartition, PartitionProgress] = {}
        self._jobs: set[Job] = set()
        self._lanes: dict[tuple[str, str], asyncio.Task] = {}  # lane -> its last job's task
        self._in_flight: dict[tuple[str, str], Job] = {}  # job key -> started job
        self._paused = False
        self._lock = asyncio.Lock()  # consuming vs. rebalance callbacks vs. stop
        self._consumer: AIOKafkaConsumer | None = None
        self._slim = SlimRecords(self.names.logical)
        self.ready = asyncio.Event()
        self.log = log.bind(stage="notify", group=self.group_id)

    # --- what health and metrics read (pipeline/member.py) -------------------------------------

    @property
    def member_name(self) -> str:
        return "notify"

    @property
    def connected(self) -> bool:
        return self._consumer is not None

    def assigned_partitions(self) -> int:
        return assigned_count(self._consumer, len(self._progress))

    async def lags(self) -> list[tuple[str, int, int]]:
        return await consumer_lag(self._consumer, self.names.logical)

    @property
    def produce_retries(self) -> int | None:
        return None  # outcome records are retried by the producer itself

    @property
    def restored_keys(self) -> int | None:
        return None

    @property
    def pending(self) -> int:
        """Delivery jobs consumed and not final yet (queued, in flight or retrying)."""
        return len(self._jobs)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, start delivery jobs and commit until `stop`; then give every partition
        up as on revocation (see the module docstring) and leave the group."""
        await connect_with_backoff(self._start, self.config, stop, self.log)
        if self._consumer is None:
            return
        self.log.info("stage_started", channels=sorted(self.sinks))
        try:
            while not stop.is_set():
                batch = await self._poll(self._consumer)
                async with self._lock:
                    for tp, messages in batch.items():
                        self._dispatch(tp, messages)
                    if self._slim.unreadable:
                        await self._skip_unreadable(self._slim.take_unreadable())
                    await self._commit(list(self._progress))
        finally:
            try:
                async with self._lock:
                    await self._release(list(self._progress), "stop")
            except Exception as exc:  # never skip leaving the group
                self.log.error("release_failed", error=repr(exc))
            consumer, self._consumer = self._consumer, None
            with contextlib.suppress(Exception):
                await consumer.stop()
            self.log.info("stage_stopped", **self.stats)

    async def _start(self) -> None:
        install_slim_records()
        consumer = await start_group_consumer(
            self.config, self.group_id, value_deserializer=self._slim
        )
        self._consumer = consumer
        consumer.subscribe([self.names.physical(ALERTS)], listener=self)

    # --- consuming ----------------------------------------------------------------------------

    async def _poll(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list]:
        """The next records, no more than the backlog has room for (none while paused)."""
        self._apply_backpressure(consumer)
        room = max(1, min(MAX_POLL_RECORDS, self.max_pending - self.pending))
        return await consumer.getmany(
            timeout_ms=self.config.runtime.poll_timeout_ms, max_records=room
        )

    async def _skip_unreadable(self, skipped: list[UnreadableBatch]) -> None:
        """Batches of `alerts` the consumer could not read: each offset range goes to the
        dead-letter topic (acked) and the partition's commit moves past it."""
        for unreadable in skipped:
            progress = self._progress.get(unreadable.tp)
            if progress is None or progress.released:  # not ours yet: read again later
                if self._consumer is not None:
                    with contextlib.suppress(Exception):
                        self._consumer.seek(unreadable.tp, unreadable.first_offset)
                continue
            self.stats["unreadable_batches"] += 1
            self.log.error(
                "unreadable_batch",
                partition=unreadable.tp.partition,
                first_offset=unreadable.first_offset,
                last_offset=unreadable.last_offset,
                reason=unreadable.reason,
            )
            letter = unreadable.dead_letter(int(time.time() * 1000))
            await self.producer.send_and_wait(
                self.names.physical(EVENTS_DLQ), orjson.dumps(letter), key=b""
            )
            progress.read(unreadable.last_offset)

    def _apply_backpressure(self, consumer: AIOKafkaConsumer) -> None:
        """Pause fetching at `max_pending` jobs not final; resume at half of it."""
        if not self._paused and self.pending >= self.max_pending:
            self._paused = True
            self.stats["fetch_paused"] += 1
            self.log.warning("fetch_paused", pending=self.pending, max_pending=self.max_pending)
        elif self._paused and self.pending <= self.max_pending // 2:
            self._paused = False
            self.log.info("fetch_resumed", pending=self.pending)
        with contextlib.suppress(Exception):  # no assignment (rebalancing): nothing to do
            if self._paused:
                consumer.pause(*consumer.assignment())  # again: a new assignment starts unpaused
            elif consumer.paused():
                consumer.resume(*consumer.paused())

    def _dispatch(self, tp: TopicPartition, messages: list) -> None:
        """Turn a partition's records into delivery jobs."""
        if not messages:
            return
        progress = self._progress.get(tp)
        if progress is None or progress.released:
            # Fetched before its assignment finished restoring `deliveries` (or after it was
            # revoked): read these again once the partition is ours and ready.
            if self._consumer is not None:
                with contextlib.suppress(Exception):
                    self._consumer.seek(tp, messages[0].offset)
            return
        external_url = self.config.dashboard.external_url  # links back (sinks/links.py)
        for message in messages:
            transition = _transition(message.value)
            if transition is not None:
                self.stats["transitions"] += 1
                for channel in transition.get("channels") or []:
                    view = for_channel(transition, str(channel))  # a group: its members there
                    view = with_links(view, external_url)
                    self._schedule(progress, message.offset, view, str(channel))
            progress.read(message.offset)

    def _schedule(
        self, progress: PartitionProgress, offset: int, transition: dict[str, Any], channel: str
    ) -> None:
        """Start the job of one (transition, channel), behind the earlier ones of its lane."""
        if (str(transition["id"]), channel) in self.done[progress.tp.partition]:
            self.stats["skipped_done"] += 1
            return
        if channel not in self.sinks:
            self.stats["no_sink"] += 1
            self.log.warning(
                "channel_not_configured",
                channel=channel,
                alert_id=transition["alert_id"],
                transition=transition["id"],
            )
            return
        job = Job(progress, offset, transition, channel)
        progress.add(offset)
        self._jobs.add(job)
        job.task = asyncio.create_task(self._run_job(job, self._lanes.get(job.lane)))
        self._lanes[job.lane] = job.task

    # --- delivering ---------------------------------------------------------------------------

    async def _run_job(self, job: Job, before: asyncio.Task | None) -> None:
        """Wait for the lane's previous job, then deliver (or skip) and mark the record."""
        try:
            if before is not None:
                await asyncio.wait([before])  # its end, whatever it was (even cancelled)
            if job.progress.released:
                return  # left for the next owner
            if job.key in self.done[job.progress.tp.partition]:
                self.stats["skipped_done"] += 1  # a repeated record, delivered meanwhile
            elif not await self._deliver(job):
                return
            job.progress.finish(job.offset)
        finally:
            self._jobs.discard(job)
            self._in_flight.pop(job.key, None)
            if self._lanes.get(job.lane) is job.task:
                del self._lanes[job.lane]

    async def _deliver(self, job: Job) -> bool:
        """Deliver under the channel's slot; True once final and all its outcome records are
        acknowledged, False when its partition was given up before it could start."""
        async with self._slots[job.channel]:  # bounded in flight: bounded redelivery
            if job.progress.released:
                return False
            job.started = True
            self._in_flight[job.key] = job
            outcome = await self.deliverer.deliver(job.transition, job.channel)
        await self._await_attempt_records(job)
        self.done[job.progress.tp.partition].add(job.key)
        if outcome.status == "delivered":
            self.stats["delivered"] += 1
        return True

    async def _await_attempt_records(self, job: Job) -> None:
        """The job's attempt records acknowledged. One the broker never took (it was away
        past the producer's timeout) is logged, not raised: raising would end the notifier,
        and with it the whole process."""
        if not job.acks:
            return
        results = await asyncio.gather(*job.acks, return_exceptions=True)
        lost = [r for r in results if isinstance(r, Exception)]
        if lost:
            self.log.warning("outcome_records_lost", count=len(lost), error=repr(lost[0]))

    async def _on_outcome(self, outcome: DeliveryOutcome) -> None:
        """Every attempt's and every final outcome goes to `deliveries` (acked before commit)."""
        self.outcomes[outcome.status] += int(outcome.final)
        self.channel_outcomes[(outcome.channel, outcome.status)] += int(outcome.final)
        record = outcome.to_record()
        future = await self.producer.send(
            self.names.physical(DELIVERIES), orjson.dumps(record), key=outcome.alert_id.encode()
        )
        if not outcome.final:
            job = self._in_flight.get((outcome.transition_id, outcome.channel))
            if job is not None:
                job.acks.append(future)
            else:  # not a job of ours (cannot happen): still never an unretrieved error
                future.add_done_callback(lambda f: f.cancelled() or f.exception())
            return
        await future  # acknowledged before the job's slot goes to the next delivery
        self.log.info(
            "delivery",
            alert_id=outcome.alert_id,
            transition=outcome.transition_id,
            channel=outcome.channel,
            status=outcome.status,
            attempts=outcome.attempts,
            reason=outcome.reason,
        )

    # --- committing ---------------------------------------------------------------------------

    async def _commit(self, tps: Collection[TopicPartition]) -> None:
        """Commit each partition up to its lowest record not final (when that moved)."""
        consumer = self._consumer
        if consumer is None:
            return
        offsets = {}
        for tp in tps:
            progress = self._progress.get(tp)
            if progress is None:
                continue
            point = progress.commit_point()
            if point is not None and point != progress.committed:
                offsets[tp] = point
        with contextlib.suppress(Exception):
            offsets = {tp: o for tp, o in offsets.items() if tp in consumer.assignment()}
        if not offsets:
            return
        try:
            async with asyncio.timeout(COMMIT_TIMEOUT_S):
                await consumer.commit(offsets)
        except (KafkaError, TimeoutError) as exc:
            self.log.warning("commit_failed", error=repr(exc))
            return
        for tp, offset in offsets.items():
            self._progress[tp].committed = offset

    # --- rebalance and stop -------------------------------------------------------------------

    async def _release(self, tps: Collection[TopicPartition], why: str) -> None:
        """Give partitions up: queued jobs never start, in-flight ones get `drain_timeout_s`,
        then are cancelled; commit what is final and forget the partitions."""
        progress = [self._progress[tp] for tp in tps if tp in self._progress]
        for p in progress:
            p.released = True
        jobs = [job for job in self._jobs if job.progress in progress]
        in_flight = [job.task for job in jobs if job.started and job.task is not None]
        for job in jobs:
            if not job.started and job.task is not None:
                job.task.cancel()
        if in_flight:
            await asyncio.wait(in_flight, timeout=self.drain_timeout_s)
        unfinished = [job.task for job in jobs if job.task is not None and not job.task.done()]
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*(job.task for job in jobs if job.task), return_exceptions=True)
        left = sum(len(p.unfinished) for p in progress)
        self.stats["released_unfinished_records"] += left
        await self._commit([p.tp for p in progress])
        if jobs or left:
            self.log.info(
                "partitions_released",
                why=why,
                partitions=sorted(p.tp.partition for p in progress),
                cancelled_in_flight=len(unfinished),
                records_left_uncommitted=left,
            )
        for p in progress:
            self._progress.pop(p.tp, None)
            self.done.pop(p.tp.partition, None)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before a rebalance: finish (briefly), commit and forget the revoked partitions."""
        async with self._lock:
            await self._release(revoked, "revoked")

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Learn which (transition, channel) pairs already have a final outcome."""
        async with self._lock:
            partitions = sorted(tp.partition for tp in assigned)
            topic = self.names.physical(DELIVERIES)
            tps = [TopicPartition(topic, p) for p in partitions]
            reader = history_consumer(self.config.kafka)

            def remember(message: Any) -> None:
                try:
                    value = orjson.loads(message.value)
                except (orjson.JSONDecodeError, TypeError):
                    return
                if isinstance(value, dict) and value.get("status") in FINAL and value.get("final"):
                    pair = (str(value.get("transition_id")), str(value.get("channel")))
                    self.done[message.partition].add(pair)

            try:
                await reader.start()
                if tps:
                    reader.assign(tps)
                    await read_to_end(reader, tps, remember, timeout_s=300)
            except Exception as exc:
                # Go on with what was read rather than stall the partitions for good: at
                # worst a notification goes out again, with the same idempotency key.
                self.log.error("deliveries_restore_failed", error=repr(exc))
            finally:
                with contextlib.suppress(Exception):
                    await reader.stop()
            for tp in assigned:
                self._progress[tp] = PartitionProgress(tp)
            known = sum(len(self.done[p]) for p in partitions)
            self.log.info("deliveries_restored", partitions=partitions, known=known)
        self.ready.set()


def _transition(value: bytes | None) -> dict[str, Any] | None:
    """An `alerts` record's transition, or None when it is not one (skipped)."""
    try:
        decoded = orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return None
    if isinstance(decoded, dict) and decoded.get("id") and decoded.get("alert_id"):
        return decoded
    return None
