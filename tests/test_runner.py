"""The stage runner's guarantees, against the real local broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

import pipeline.runner as runner_module
from grouping import fingerprint_error
from loadtest.fleet import error_burst
from pipeline.app import make_producer
from pipeline.runner import StageRunner
from pipeline.topics import EVENTS_DLQ, EVENTS_ERRORS
from stages.base import Emit, Record, StageBase, StageResult
from tests.pipeline_helpers import (
    as_batches,
    issues_probe,
    make_config,
    running_pipeline,
    send_raw,
    topic_probe,
    wait_for,
)


class EchoUnlessPoison(StageBase):
    """A stage that forwards each raw value to `issues`, and raises on the value b"poison"."""

    name = "echo"
    inputs = ("events.raw",)
    stateful = False

    def process(self, records: list[Record], now: float) -> StageResult:
        emits = []
        for record in records:
            if record.value == b"poison":
                raise ValueError("cannot digest this")
            emits.append(Emit("issues", "k", {"echo": record.value.decode()}))
        return StageResult(emits=emits)

    def tick(self, now: float) -> StageResult:
        return StageResult()

    def restore(self, partition: int, key: str, value: Any) -> None: ...

    def assign(self, partitions: Iterable[int]) -> None: ...

    def revoke(self, partitions: Iterable[int]) -> None: ...


async def test_a_record_that_makes_the_stage_raise_goes_to_dlq_and_its_partition_flows_on(
    bootstrap, topics
):
    config = make_config(bootstrap, topics)
    producer = make_producer(config)
    await producer.start()
    stop = asyncio.Event()
    runner = StageRunner(EchoUnlessPoison(), config, producer)
    task = asyncio.create_task(runner.run(stop))
    try:
        values = [b"a", b"b", b"poison", b"c", b"d"]
        await send_raw(config, [(b"same-key", v) for v in values])
        echoed = await wait_for(topic_probe(config, "issues"), lambda got: len(got) >= 4)
        letters = await wait_for(topic_probe(config, EVENTS_DLQ), lambda got: len(got) >= 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await producer.stop()
    assert sorted(e["echo"] for e in echoed) == ["a", "b", "c", "d"]
    assert len(letters) == 1
    assert letters[0]["raw"] == "poison"
    assert "cannot digest this" in letters[0]["reason"]
    assert runner.stats.poison_records == 1


async def test_lost_offset_commit_does_not_double_count_after_restart(bootstrap, topics):
    """The changelog's offset markers: records redelivered after a lost commit are skipped."""
    config = make_config(bootstrap, topics)
    now = int(time.time() * 1000)
    events, _ = error_burst(150, seed=11, start_ms=now - 40_000)
    want: dict[str, int] = {}
    for event in events:
        fp = fingerprint_error(event).id
        want[fp] = want.get(fp, 0) + 1

    def counts(issues: list[dict]) -> dict[str, int]:
        return {i["issue_id"]: i["count"] for i in issues}

    async with running_pipeline(config, ["ingest", "fingerprint"]):
        await send_raw(config, as_batches(events))
        await wait_for(issues_probe(config), lambda got: counts(got) == want)
    # Simulate a crash between changelog write and offset commit: rewind the group.
    group = f"{topics}fingerprint"
    rewind = AIOKafkaConsumer(
        topics + EVENTS_ERRORS,
        **config.kafka.client_kwargs(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        partition_assignment_strategy=(RangePartitionAssignor,),
    )
    await rewind.start()
    try:
        await wait_for(
            lambda: _poll_assignment(rewind), lambda assigned: len(assigned) == 4, timeout_s=30
        )
        await rewind.commit({tp: 0 for tp in rewind.assignment()})
    finally:
        await rewind.stop()
    async with running_pipeline(config, ["fingerprint"]) as pipeline:
        await wait_for(lambda: _skipped(pipeline), lambda skipped: skipped > 0, timeout_s=30)
        issues = await wait_for(issues_probe(config), lambda got: False, timeout_s=2)
        runner = pipeline.runners[0]
    assert counts(issues) == want
    assert runner.stats.skipped_replayed > 0


async def _poll_assignment(consumer: AIOKafkaConsumer) -> set:
    await consumer.getmany(timeout_ms=200)
    return consumer.assignment()


async def _skipped(pipeline) -> int:
    return sum(r.stats.skipped_replayed for r in pipeline.runners)


async def test_checkpoints_behind_the_one_in_flight_go_next_as_one_group_in_order(
    bootstrap, topics
):
    config = make_config(bootstrap, topics)
    producer = make_producer(config)
    await producer.start()
    runner = StageRunner(EchoUnlessPoison(), config, producer)
    stop = asyncio.Event()
    try:
        for n in range(5):
            result = StageResult(emits=[Emit("issues", "same-key", {"echo": str(n)})])
            await runner.checkpoint(result, {}, stop)
            if n == 0:
                await asyncio.sleep(0)  # the first group (checkpoint 0) starts
        # The loop did not wait for acks: the first checkpoint is in flight, the rest queued.
        assert runner._in_flight is not None and not runner._in_flight.done()
        assert len(runner._queued) == 4
        await runner.drain()
        assert not runner._queued
        echoed = await wait_for(topic_probe(config, "issues"), lambda got: len(got) >= 5)
    finally:
        await producer.stop()
    assert [e["echo"] for e in echoed] == ["0", "1", "2", "3", "4"]  # one key: in order
    assert runner.stats.batches == 5 and runner.stats.emits_out == 5


async def _runner_bound_to_10kb(bootstrap: str, topics: str) -> tuple[StageRunner, Any]:
    """An echoing stage's runner whose `max_unacked_bytes` is 10 KB, and its started
    producer (the caller stops it)."""
    config = make_config(bootstrap, topics)
    config.runtime.max_unacked_bytes = 10_000
    producer = make_producer(config)
    await producer.start()
    return StageRunner(EchoUnlessPoison(), config, producer), producer


async def test_output_awaiting_acks_past_its_byte_bound_makes_the_loop_wait_for_them(
    bootstrap, topics
):
    runner, producer = await _runner_bound_to_10kb(bootstrap, topics)
    stop = asyncio.Event()
    small = StageResult(emits=[Emit("issues", "k", {"echo": "first"})])
    big = StageResult(emits=[Emit("issues", f"k{n}", {"echo": "x" * 100}) for n in range(200)])
    try:
        await runner.checkpoint(small, {}, stop)
        await asyncio.sleep(0)  # the first group starts; it is in flight
        first = runner._in_flight
        await runner.checkpoint(big, {}, stop)  # ~25 KB queued: over the bound
        # The loop waited until everything queued was durable, the big batch included.
        assert first is not None and first.done()
        assert not runner._queued and runner._unacked_bytes == 0
        assert runner.stats.batches == 2 and runner.stats.emits_out == 201
        # With nothing in flight, a batch over the bound is made durable before the loop
        # goes on.
        await runner.checkpoint(big, {}, stop)
        assert runner._in_flight is not None and runner._in_flight.done()
        assert runner.stats.batches == 3 and runner._unacked_bytes == 0
        # Under the bound, a checkpoint does not wait for acks (as before).
        await runner.checkpoint(small, {}, stop)
        await asyncio.sleep(0)
        await runner.checkpoint(small, {}, stop)
        assert len(runner._queued) == 1 and runner._unacked_bytes > 0
        await runner.drain()
        assert runner._unacked_bytes == 0
    finally:
        await producer.stop()


async def test_a_result_in_parts_is_made_a_part_at_a_time_within_the_byte_bound(
    bootstrap, topics, monkeypatch
):
    """A close of many series comes in parts (`StageResult.streamed`): each part is made
    only once the one before is queued, and past `max_unacked_bytes` only once what is
    queued is durable, so what waits for acks stays within the bound and a part."""
    monkeypatch.setattr(runner_module, "PART_ENTRIES", 20)  # a part of 20 emits: queued alone
    runner, producer = await _runner_bound_to_10kb(bootstrap, topics)
    config = runner.config
    stop = asyncio.Event()
    seen: list[tuple[int, int]] = []  # (bytes awaiting acks, emits durable) at each part

    def parts():
        for n in range(20):
            seen.append((runner._unacked_bytes, runner.stats.emits_out))
            echoes = [{"echo": f"{n}-{i}", "pad": "x" * 100} for i in range(20)]  # ~2.6 KB
            yield StageResult(emits=[Emit("issues", "k", echo) for echo in echoes])

    try:
        await runner.checkpoint(StageResult.streamed(parts()), {}, stop)
        await runner.drain()
        echoed = await wait_for(topic_probe(config, "issues"), lambda got: len(got) >= 400)
    finally:
        await producer.stop()
    assert max(unacked for unacked, _ in seen) < 10_000 + 3_000
    assert seen[-1][1] > 0  # later parts were made after earlier ones were durable
    assert [e["echo"] for e in echoed] == [f"{n}-{i}" for n in range(20) for i in range(20)]
    assert runner.stats.batches == 1 and runner.stats.emits_out == 400


class RestoreRecorder(EchoUnlessPoison):
    """Records what it restores; a value with "boom" makes its restore raise."""

    stateful = True

    def __init__(self) -> None:
        self.restored: list[tuple[str, Any]] = []

    def restore(self, partition: int, key: str, value: Any) -> None:
        if "boom" in value:
            raise ValueError("unreadable histogram")
        self.restored.append((key, value))


def test_an_unreadable_changelog_record_is_logged_skipped_and_counted_and_restore_goes_on():
    stage = RestoreRecorder()
    runner = StageRunner(stage, make_config("127.0.0.1:9", "unused."), producer=None)
    assert runner._restore_one(0, b"a", b'{"n": 1}') == 1
    assert runner._restore_one(0, b"b", b"{not json") == 0
    assert runner._restore_one(0, b"c", b'{"boom": 1}') == 0
    assert runner._restore_one(0, b"d", b'{"n": 2}') == 1
    assert stage.restored == [("a", {"n": 1}), ("d", {"n": 2})]
    assert runner.stats.unreadable_state == 2
