"""The notifier: alert transitions in, notifications out, every outcome on `deliveries`.

This is runtime, not a pure stage: it owns the I/O of talking to Slack, SMTP, PagerDuty,
webhooks and SMS (sinks/). It is a member of its own consumer group (`<prefix>notify`),
so a slow or failing destination never stalls the other stages.

Per batch of `alerts` records: each transition is delivered to each of its channels
(different alerts concurrently, one alert's transitions in order), every attempt's outcome
is produced to `deliveries` (key: alert id, so `deliveries` is co-partitioned with
`alerts`), and the input offsets are committed only once those outcome records are
acknowledged.

No double notification after a restart: on assignment the notifier reads its partitions of
`deliveries` and skips every (transition, channel) that already has a final outcome. Each
final outcome is acknowledged before the next delivery starts, and at most
`notify.concurrency` deliveries are in flight, so the only window left is a crash between
a destination accepting a request and its outcome being acknowledged (milliseconds): at
most `concurrency` notifications can go out twice, and they carry the same idempotency key
(PagerDuty's dedup_key, the webhook's Idempotency-Key, the email's Message-ID).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.config import Config
from pipeline.runner import connect_with_backoff
from pipeline.topic_reader import read_to_end
from pipeline.topics import ALERTS, DELIVERIES, TopicNames
from sinks.base import DeliveryOutcome, Sink
from sinks.delivery import Deliverer, DeliveryPolicy

log = structlog.get_logger("prodmon.notifier")

FINAL = frozenset(
    {"delivered", "failed", "gave_up", "dropped_rate_limited", "skipped_circuit_open"}
)


class Notifier(ConsumerRebalanceListener):
    """Delivers the `alerts` topic through sinks; see the module docstring."""

    name = "notify"

    def __init__(
        self,
        config: Config,
        producer: AIOKafkaProducer,
        sinks: Mapping[str, Sink],
        policy: DeliveryPolicy | None = None,
    ) -> None:
        self.config = config
        self.producer = producer
        self.names = TopicNames(config.kafka.prefix)
        self.group_id = f"{config.kafka.prefix}notify"
        self.sinks = dict(sinks)
        self.deliverer = Deliverer(self.sinks, policy, on_outcome=self._on_outcome)
        self.done: dict[int, set[tuple[str, str]]] = defaultdict(set)
        self.stats = {"transitions": 0, "delivered": 0, "skipped_done": 0, "no_sink": 0}
        self.outcomes: dict[str, int] = defaultdict(int)
        self.channel_outcomes: dict[tuple[str, str], int] = defaultdict(int)
        self._pending: list[asyncio.Future] = []
        self._slots = asyncio.Semaphore(config.notify.concurrency)
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self.ready = asyncio.Event()
        self.log = log.bind(stage="notify", group=self.group_id)

    async def run(self, stop: asyncio.Event) -> None:
        await connect_with_backoff(self._start, self.config, stop, self.log)
        if self._consumer is None:
            return
        self.log.info("stage_started", channels=sorted(self.sinks))
        try:
            while not stop.is_set():
                batch = await self._consumer.getmany(
                    timeout_ms=self.config.runtime.poll_timeout_ms, max_records=500
                )
                if batch:
                    async with self._lock:
                        await self._handle(batch)
        finally:
            consumer, self._consumer = self._consumer, None
            with contextlib.suppress(Exception):
                await consumer.stop()
            self.log.info("stage_stopped", **self.stats)

    async def _start(self) -> None:
        runtime = self.config.runtime
        consumer = AIOKafkaConsumer(
            **self.config.kafka.client_kwargs(),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=runtime.session_timeout_ms,
            heartbeat_interval_ms=runtime.heartbeat_interval_ms,
            fetch_max_wait_ms=runtime.fetch_max_wait_ms,
        )
        try:
            await consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        self._consumer = consumer
        consumer.subscribe([self.names.physical(ALERTS)], listener=self)

    # --- delivering ---------------------------------------------------------------------------

    async def _handle(self, batch: dict[TopicPartition, list]) -> None:
        by_alert: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        offsets = {tp: messages[-1].offset + 1 for tp, messages in batch.items() if messages}
        for tp, messages in batch.items():
            for message in messages:
                try:
                    value = orjson.loads(message.value) if message.value else None
                except orjson.JSONDecodeError:
                    value = None
                if isinstance(value, dict) and value.get("id") and value.get("alert_id"):
                    by_alert[value["alert_id"]].append((tp.partition, value))
        await asyncio.gather(*(self._deliver_in_order(items) for items in by_alert.values()))
        if self._pending:
            pending, self._pending = self._pending, []
            # Outcomes acknowledged before the commit. An attempt record the broker never
            # took (it was away past the producer's timeout) is logged, not raised: raising
            # here would end the notifier, and with it the whole process.
            results = await asyncio.gather(*pending, return_exceptions=True)
            lost = [r for r in results if isinstance(r, Exception)]
            if lost:
                self.log.warning("outcome_records_lost", count=len(lost), error=repr(lost[0]))
        if self._consumer is not None and offsets:
            try:
                await self._consumer.commit(offsets)
            except KafkaError as exc:
                self.log.warning("commit_failed", error=repr(exc))

    async def _deliver_in_order(self, items: list[tuple[int, dict[str, Any]]]) -> None:
        for partition, transition in items:
            self.stats["transitions"] += 1
            for channel in transition.get("channels") or []:
                key = (transition["id"], channel)
                if key in self.done[partition]:
                    self.stats["skipped_done"] += 1
                    continue
                if channel not in self.sinks:
                    self.stats["no_sink"] += 1
                    self.log.warning(
                        "channel_not_configured",
                        channel=channel,
                        alert_id=transition["alert_id"],
                        transition=transition["id"],
                    )
                    continue
                async with self._slots:  # bounded in flight: bounded redelivery after a crash
                    outcome = await self.deliverer.deliver(transition, channel)
                self.done[partition].add(key)
                if outcome.status == "delivered":
                    self.stats["delivered"] += 1

    async def _on_outcome(self, outcome: DeliveryOutcome) -> None:
        """Every attempt's and every final outcome goes to `deliveries` (acked before commit)."""
        self.outcomes[outcome.status] += int(outcome.final)
        self.channel_outcomes[(outcome.channel, outcome.status)] += int(outcome.final)
        record = outcome.to_record()
        future = await self.producer.send(
            self.names.physical(DELIVERIES), orjson.dumps(record), key=outcome.alert_id.encode()
        )
        if outcome.final:
            await future  # acknowledged before the next notification goes out
        else:
            self._pending.append(future)
        if outcome.final:
            self.log.info(
                "delivery",
                alert_id=outcome.alert_id,
                transition=outcome.transition_id,
                channel=outcome.channel,
                status=outcome.status,
                attempts=outcome.attempts,
                reason=outcome.reason,
            )

    # --- rebalance ----------------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:
            for tp in revoked:
                self.done.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Learn which (transition, channel) pairs already have a final outcome."""
        async with self._lock:
            partitions = sorted(tp.partition for tp in assigned)
            topic = self.names.physical(DELIVERIES)
            tps = [TopicPartition(topic, p) for p in partitions]
            reader = AIOKafkaConsumer(
                **self.config.kafka.client_kwargs(), enable_auto_commit=False, group_id=None
            )
            await reader.start()

            def remember(message: Any) -> None:
                try:
                    value = orjson.loads(message.value)
                except (orjson.JSONDecodeError, TypeError):
                    return
                if isinstance(value, dict) and value.get("status") in FINAL and value.get("final"):
                    pair = (str(value.get("transition_id")), str(value.get("channel")))
                    self.done[message.partition].add(pair)

            try:
                if tps:
                    reader.assign(tps)
                    await read_to_end(reader, tps, remember, timeout_s=300)
            finally:
                await reader.stop()
            known = sum(len(self.done[p]) for p in partitions)
            self.log.info("deliveries_restored", partitions=partitions, known=known)
        self.ready.set()
