"""Slim consumed records (pipeline/slim_records.py): the same messages as aiokafka's own
records, for the consumers that ask, and aiokafka's path untouched for the others."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import ConsumerRecord

from grouping import fingerprint_error
from loadtest.fleet import error_burst
from pipeline import runner, slim_records
from pipeline.slim_records import SlimRecords, install_slim_records
from pipeline.topics import EVENTS_DLQ
from stages.base import Record
from tests.pipeline_helpers import (
    as_batches,
    issues_probe,
    make_config,
    running_pipeline,
    send_raw,
    topic_probe,
    wait_for,
)

TP = TopicPartition("prod.events.raw", 3)
FIELDS = ("partition", "offset", "key", "value", "timestamp")


def _logical(topic: str) -> str:
    return topic.removeprefix("prod.")


def _batch(base_offset: int, messages: list[tuple[bytes | None, bytes | None]]) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for delta, (key, value) in enumerate(messages):
        builder.append(delta, timestamp=1_700_000_000_000 + delta, key=key, value=value, headers=[])
    buffer = bytearray(builder.build())
    buffer[0:8] = base_offset.to_bytes(8, "big")  # the broker assigns the base offset
    return bytes(buffer)


def _unpack(data: bytes, fetch_offset: int, deserializer, check_crcs: bool = True):
    """What `getall` collects from a fetched partition, and the position it ends at (its
    records made as aiokafka's fetcher makes them once slim records are installed)."""
    records = slim_records._PartitionRecords(
        TP,
        slim_records._memory_records(data),
        [],
        fetch_offset,
        None,
        deserializer,
        check_crcs,
        0,
    )
    return list(records), records.next_fetch_offset


class _Batch:
    """What `_crc_ok` reads of a batch, whose own (software) check must not be used."""

    magic = 2

    def __init__(self, data: bytes) -> None:
        self.base_offset = int.from_bytes(data[0:8], "big")
        self.crc = int.from_bytes(data[17:21], "big")

    def validate_crc(self) -> bool:
        raise AssertionError("the software CRC was used")


def test_crcs_of_fetched_batches_are_computed_in_hardware_on_the_fetched_bytes() -> None:
    second = len(FETCHED) - len(SECOND)
    assert slim_records._crc_ok(_Batch(FETCHED), FETCHED, 0) == (True, second)
    assert slim_records._crc_ok(_Batch(SECOND), FETCHED, second) == (True, len(FETCHED))
    corrupt = bytearray(FETCHED)
    corrupt[-3] ^= 0xFF
    assert slim_records._crc_ok(_Batch(SECOND), bytes(corrupt), second) == (False, len(FETCHED))
    # Bytes it cannot line up with the batch: aiokafka's own check.
    batch = MemoryRecords(FETCHED).next_batch()
    assert slim_records._crc_ok(batch, None, -1) == (True, -1)
    assert slim_records._crc_ok(batch, FETCHED, second) == (True, -1)  # another batch there


MESSAGES = [(b"checkout", b'{"a":1}'), (None, b"[2]"), (b"k", None), (b"", b"")]
SECOND = _batch(14, MESSAGES[:2])
FETCHED = _batch(10, MESSAGES) + SECOND


# The broker answers a fetch from the batch holding the fetch offset on, so a fetch
# starting mid-batch gets that batch's earlier records too.
@pytest.mark.parametrize(
    ("data", "fetch_offset"),
    [(FETCHED, 10), (FETCHED, 12), (FETCHED, 13), (SECOND, 14), (SECOND, 15)],
    ids=["first-batch", "mid-first", "last-of-first", "second-batch", "mid-second"],
)
def test_slim_records_hold_what_aiokafka_records_hold(data: bytes, fetch_offset: int) -> None:
    theirs, their_position = _unpack(data, fetch_offset, None)
    ours, our_position = _unpack(data, fetch_offset, SlimRecords(_logical))
    assert all(type(r) is ConsumerRecord for r in theirs)
    assert all(type(r) is Record for r in ours)
    assert [r.offset for r in ours] == list(range(fetch_offset, 16))  # mid-batch: skipped
    assert [tuple(getattr(r, f) for f in FIELDS) for r in ours] == [
        tuple(getattr(r, f) for f in FIELDS) for r in theirs
    ]
    assert {r.topic for r in ours} <= {"events.raw"}  # the logical name
    assert our_position == their_position == 16


def _recrc(batch: bytearray, start: int) -> None:
    """Seal a batch edited in place (at `start` in `batch`) with a valid CRC again."""
    crc = calc_crc32c(bytes(batch[start + 21 :]))
    batch[start + 17 : start + 21] = crc.to_bytes(4, "big")


def test_a_batch_failing_its_crc_is_skipped_and_noted_and_the_rest_still_read() -> None:
    corrupt = bytearray(FETCHED)
    corrupt[-3] ^= 0xFF  # a byte of the second batch's last record
    with pytest.raises(CorruptRecordException):  # aiokafka's own path stops the consumer
        _unpack(bytes(corrupt), 10, None)
    slim = SlimRecords(_logical)
    ours, position = _unpack(bytes(corrupt), 10, slim)
    assert [r.offset for r in ours] == [10, 11, 12, 13]  # the first batch, intact
    assert position == 16  # moved past the unreadable batch
    [skipped] = slim.take_unreadable()
    assert (skipped.topic, skipped.tp, skipped.first_offset, skipped.last_offset) == (
        "events.raw",
        TP,
        14,
        15,
    )
    assert "CRC" in skipped.reason and skipped.records == 2
    assert slim.take_unreadable() == []  # taken once
    ours, _ = _unpack(bytes(corrupt), 10, SlimRecords(_logical), check_crcs=False)
    assert len(ours) == 6  # CRCs not checked: as aiokafka, read as they are


def test_a_batch_with_an_unknown_codec_is_skipped_with_the_codec_named() -> None:
    data = bytearray(FETCHED)
    second = len(FETCHED) - len(SECOND)
    attributes = second + 21
    data[attributes + 1] = (data[attributes + 1] & ~0x07) | 6  # codec id 6: none Kafka knows
    _recrc(data, second)
    slim = SlimRecords(_logical)
    ours, position = _unpack(bytes(data), 12, slim)
    assert [r.offset for r in ours] == [12, 13]
    assert position == 16
    [skipped] = slim.take_unreadable()
    assert (skipped.first_offset, skipped.last_offset) == (14, 15)
    assert "codec" in skipped.reason and "6" in skipped.reason


def test_a_corrupt_compressed_batch_is_skipped_with_the_codec_named() -> None:
    builder = DefaultRecordBatchBuilder(2, 1, 0, -1, -1, -1, 1 << 20)  # gzip
    for delta in range(40):
        builder.append(
            delta, timestamp=1, key=None, value=b'{"n": %d, "pad": "x"}' % delta, headers=[]
        )
    data = bytearray(builder.build())
    data[0:8] = (100).to_bytes(8, "big")
    data[len(data) // 2] ^= 0xFF  # inside the compressed payload
    _recrc(data, 0)
    slim = SlimRecords(_logical)
    ours, position = _unpack(bytes(data), 100, slim)
    assert ours == [] and position == 140
    [skipped] = slim.take_unreadable()
    assert (skipped.first_offset, skipped.last_offset) == (100, 139)
    assert "gzip" in skipped.reason


def test_a_batch_whose_framing_is_broken_skips_one_offset_and_stops_the_fetch() -> None:
    data = bytearray(FETCHED)
    second = len(FETCHED) - len(SECOND)
    data[second + 8 : second + 12] = (4).to_bytes(4, "big")  # a length below any batch
    slim = SlimRecords(_logical)
    ours, position = _unpack(bytes(data), 10, slim)
    assert [r.offset for r in ours] == [10, 11, 12, 13]
    [skipped] = slim.take_unreadable()
    assert (skipped.first_offset, skipped.last_offset) == (14, 14)
    assert position == 15  # the next fetch starts past it
    assert "corrupt" in skipped.reason


async def test_a_consumer_asking_gets_records_and_others_get_aiokafkas(
    bootstrap: str, prefix: str
) -> None:
    assert install_slim_records()
    assert fetcher.PartitionRecords is slim_records._PartitionRecords
    topic = prefix + "slim"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for i in range(300):
            await producer.send(topic, f"v{i}".encode(), key=b"k" if i % 2 else None, partition=0)
        await producer.flush()
    finally:
        await producer.stop()

    async def read(deserializer) -> list:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            value_deserializer=deserializer,
        )
        await consumer.start()
        got: list = []
        try:
            while len(got) < 300:
                for messages in (await consumer.getmany(timeout_ms=1000, max_records=70)).values():
                    got += messages
        finally:
            await consumer.stop()
        return got

    theirs = await read(None)
    ours = await read(SlimRecords(lambda physical: physical.removeprefix(prefix)))
    assert all(type(r) is ConsumerRecord and r.topic == topic for r in theirs)
    assert all(type(r) is Record and r.topic == "slim" for r in ours)
    assert [r.value for r in ours] == [f"v{i}".encode() for i in range(300)]
    assert [tuple(getattr(r, f) for f in FIELDS) for r in ours] == [
        tuple(getattr(r, f) for f in FIELDS) for r in theirs
    ]


async def test_without_slim_records_the_runner_renames_aiokafkas_records(
    bootstrap, topics, monkeypatch
) -> None:
    """An aiokafka lacking the internals slim records rely on: the pipeline still gets
    every record under its logical topic (the runner renames aiokafka's own)."""
    monkeypatch.setattr(fetcher, "PartitionRecords", slim_records._Base)
    monkeypatch.setattr(runner, "install_slim_records", lambda: False)
    config = make_config(bootstrap, topics)
    now = int(time.time() * 1000)
    events, _ = error_burst(60, seed=3, start_ms=now - 60_000)
    expected: dict[str, int] = {}
    for event in events:
        fp = fingerprint_error(event).id
        expected[fp] = expected.get(fp, 0) + 1
    counts = lambda got: {i["issue_id"]: i["count"] for i in got}  # noqa: E731
    async with running_pipeline(config, ["ingest", "fingerprint"]):
        await send_raw(config, [*as_batches(events), (b"k", b"not json")])
        issues = await wait_for(issues_probe(config), lambda got: counts(got) == expected)
        dead = await wait_for(topic_probe(config, EVENTS_DLQ), bool)
    assert fetcher.PartitionRecords is slim_records._Base  # aiokafka's own records throughout
    assert counts(issues) == expected
    assert [d["source"]["topic"] for d in dead] == ["events.raw"]  # the logical name


def _partition_records(data: bytes, fetch_offset: int) -> slim_records._PartitionRecords:
    return slim_records._PartitionRecords(
        TP,
        slim_records._memory_records(data),
        [],
        fetch_offset,
        None,
        SlimRecords(_logical),
        True,
        0,
    )


@pytest.mark.parametrize("limit", [1, 2, 3, 5, None])
@pytest.mark.parametrize("fetch_offset", [10, 12, 14])
def test_records_are_taken_a_batch_at_a_time_up_to_the_limit(
    fetch_offset: int, limit: int | None
) -> None:
    """`take` (what `getall` calls for slim consumers) hands out whole batches at once,
    never more than the limit, in order, the position just past what it handed out."""
    expected, _ = _unpack(FETCHED, fetch_offset, SlimRecords(_logical))
    records = _partition_records(FETCHED, fetch_offset)
    taken: list[Record] = []
    while not records.exhausted:
        got = records.take(limit)
        assert limit is None or len(got) <= limit
        if got:
            assert records.next_fetch_offset == got[-1].offset + 1
        taken += got
    assert taken == expected
    assert records.next_fetch_offset == 16


async def _fill_two_partitions(bootstrap: str, topic: str, count: int) -> None:
    """`count` small records to `topic`, alternately to partitions 0 and 1."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=50)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, f"v{i}".encode(), partition=i % 2) for i in range(count)
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()


async def test_a_consumer_asking_gets_what_aiokafka_gives_at_every_limit(
    bootstrap: str, prefix: str
) -> None:
    """Through `getmany`: slim records taken a batch at a time, at limits below, at and
    above a fetched batch, are aiokafka's records, in order, none lost or repeated."""
    assert install_slim_records()
    topic = prefix + "limits"
    await _fill_two_partitions(bootstrap, topic, 500)
    for limit in (1, 7, 64, 5000):
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            value_deserializer=SlimRecords(lambda physical: physical.removeprefix(prefix)),
        )
        await consumer.start()
        got: dict[int, list[int]] = {0: [], 1: []}
        try:
            while sum(map(len, got.values())) < 500:
                batch = await consumer.getmany(timeout_ms=1000, max_records=limit)
                assert sum(map(len, batch.values())) <= limit
                for tp, messages in batch.items():
                    got[tp.partition] += [m.offset for m in messages]
        finally:
            await consumer.stop()
        assert got == {0: list(range(250)), 1: list(range(250))}, limit


def test_records_before_a_corrupt_record_are_read_and_the_rest_of_its_batch_skipped() -> None:
    data = bytearray(FETCHED)
    data[len(FETCHED) - len(SECOND) - 7] = 0x7F  # the size of the first batch's last record
    slim = SlimRecords(_logical)
    ours, position = _unpack(bytes(data), 10, slim, check_crcs=False)
    assert [r.offset for r in ours] == [10, 11, 12, 14, 15]
    [skipped] = slim.take_unreadable()
    assert (skipped.first_offset, skipped.last_offset) == (13, 13)
    assert "CorruptRecordException" in skipped.reason
    assert position == 16


async def test_a_drained_partition_is_fetched_again_while_another_still_holds_records(
    bootstrap: str, prefix: str
) -> None:
    """aiokafka sends no fetch to a broker while any partition it serves holds records
    fetched under 100 ms ago (`prefetch_backoff`), so a consumer that drains its partitions
    one after another waits a whole round trip each time the last one runs dry. A slim
    consumer's results give no backoff (`_FetchResult.calculate_backoff`): once a partition
    is drained, its next fetch is due even while another still holds records."""
    assert install_slim_records()
    topic = prefix + "prefetch"
    await _fill_two_partitions(bootstrap, topic, 400)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        value_deserializer=SlimRecords(lambda physical: physical.removeprefix(prefix)),
    )
    await consumer.start()
    try:
        first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
        consumer.assign([first, second])  # the partitions with records, no empty ones
        fetched, in_flight = consumer._fetcher._records, consumer._fetcher._in_flight
        deadline = time.monotonic() + 10
        while not (first in fetched and second in fetched) or in_flight:  # none taken yet
            assert time.monotonic() < deadline, "the partitions were never fetched"
            await asyncio.sleep(0.001)
        taken = await consumer.getmany(first, max_records=1000)
        # Right after (no await: the fetcher's task has not run since), the second holds
        # fresh records and the first is drained: a fetch for the first is due.
        assert len(taken[first]) == 200 and first not in fetched and second in fetched
        assert fetched[second].calculate_backoff() == 0
        assignment = consumer._subscription.subscription.assignment
        requests = consumer._fetcher._get_actions_per_node(assignment)[0]
        asked = [(topic, p) for _, r in requests for topic, ps in r.topics for p, *_ in ps]
        assert asked == [(topic, 0)]
    finally:
        await consumer.stop()
