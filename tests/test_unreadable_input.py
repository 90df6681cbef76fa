"""Input a fleet really sends: every Kafka codec is read, and a batch that cannot be read
(corrupt, failed CRC) goes to the dead-letter topic while everything else keeps flowing.
Through the real local broker; the producers are aiokafka's, as a fleet's would be."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c

from loadtest.fleet import latency_traffic
from pipeline import app
from pipeline.app import StageCrashed
from pipeline.metrics import exposition
from pipeline.topics import EVENTS_DLQ, EVENTS_LATENCY, EVENTS_RAW
from tests.pipeline_helpers import make_config, running_pipeline, topic_probe, wait_for

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def _events(tag: str, count: int) -> list[dict]:
    now = int(time.time() * 1000)
    events = latency_traffic(now - 5_000, 1, count, seed=len(tag))
    return [event | {"event_id": f"{tag}-{i}"} for i, event in enumerate(events)]


async def test_every_kafka_codec_is_read_end_to_end(bootstrap, topics):
    config = make_config(bootstrap, topics)
    sent = {codec: _events(codec, 100) for codec in CODECS}
    for codec, events in sent.items():
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=False,
            compression_type=None if codec == "none" else codec,
            linger_ms=50,  # one compressed batch per partition, as a fleet's client sends
        )
        await producer.start()
        try:
            futures = [
                await producer.send(topics + EVENTS_RAW, orjson.dumps(e), key=e["service"].encode())
                for e in events
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
    async with running_pipeline(config, ["ingest"]) as pipeline:
        [ingest] = await _runners(pipeline, 1)
        await wait_for(_stats(ingest, "records_in"), lambda n: n >= 500, timeout_s=30)
    # Ingest windows latency events itself (two-phase windowing): the ids it accepted.
    ids = set(ingest.stage.ingest.recent_ids.ids)
    assert ingest.stage.core.stats["events"] >= 500
    for codec in CODECS:
        assert {f"{codec}-{i}" for i in range(100)} <= ids, codec
    assert ingest.stats.unreadable_batches == 0


async def _runners(pipeline, count: int) -> list:
    """The pipeline's stage runners, once it has made them (after its producer started)."""

    async def probe() -> list:
        return pipeline.runners

    runners = await wait_for(probe, lambda got: len(got) == count, timeout_s=30)
    assert len(runners) == count
    return runners


def _stats(runner, name: str):
    async def probe() -> int:
        return getattr(runner.stats, name)

    return probe


def _batch(values: list[bytes], codec: int = 0, damage: str | None = None) -> bytes:
    """One record batch as a producer builds it, optionally damaged: `payload` flips a byte
    of the (compressed) records and reseals the CRC, `crc` leaves the CRC stale."""
    builder = DefaultRecordBatchBuilder(2, codec, 0, -1, -1, -1, 1 << 20)
    for delta, value in enumerate(values):
        builder.append(delta, timestamp=int(time.time() * 1000), key=None, value=value, headers=[])
    batch = bytearray(builder.build())
    if damage is not None:
        batch[len(batch) // 2] ^= 0xFF
    if damage == "payload":
        batch[17:21] = calc_crc32c(bytes(batch[21:])).to_bytes(4, "big")
    return bytes(batch)


async def _produce_batches(bootstrap: str, topic: str, batches: list[bytes]) -> None:
    """Send record batches byte for byte to partition 0 (a damaged batch cannot be made
    with a producer's public API)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        client.add_topic(topic)
        await client.force_metadata_update()
        leader = client.cluster.leader_for_partition(TopicPartition(topic, 0))
        for batch in batches:
            request = ProduceRequest(None, -1, 10_000, [(topic, [(0, batch)])])
            response = await client.send(leader, request)
            [(_, [partition])] = response.topics
            assert partition[1] == 0, f"broker refused the batch: {partition}"
    finally:
        await client.close()


async def test_unreadable_batches_go_to_the_dlq_and_every_stage_moves_past_them(bootstrap, topics):
    config = make_config(bootstrap, topics)
    before, after = _events("before", 30), _events("after", 30)
    encode = lambda events: [orjson.dumps(e) for e in events]  # noqa: E731
    await _produce_batches(
        bootstrap,
        topics + EVENTS_RAW,
        [
            _batch(encode(before)),
            _batch(encode(_events("lost", 60)), codec=1, damage="payload"),  # gzip
            _batch(encode(_events("stale", 20)), damage="crc"),
            _batch(encode(after)),
        ],
    )
    # The windows stage's own input, damaged too: the same guard holds for it.
    await _produce_batches(
        bootstrap, topics + EVENTS_LATENCY, [_batch([b"[]"] * 50, codec=1, damage="payload")]
    )
    async with running_pipeline(config, ["ingest", "windows"]) as pipeline:
        ingest, windows = await _runners(pipeline, 2)
        letters = await wait_for(
            topic_probe(config, EVENTS_DLQ), lambda got: len(got) >= 3, timeout_s=30
        )
        await wait_for(_stats(ingest, "records_in"), lambda n: n >= 60, timeout_s=30)
        metrics = await exposition(pipeline)
    by_topic = {(x["source"]["topic"], x["source"]["offset"]): x for x in letters}
    lost = by_topic[("events.raw", 30)]
    assert lost["source"]["last_offset"] == 89
    assert "gzip" in lost["reason"] and "30-89" in lost["reason"]
    stale = by_topic[("events.raw", 90)]
    assert stale["source"]["last_offset"] == 109 and "CRC" in stale["reason"]
    damaged = by_topic[("events.latency", 0)]
    assert "gzip" in damaged["reason"] and damaged["source"]["last_offset"] == 49
    assert all(x["field"] == "$batch" for x in letters)
    # Everything around the damage flowed: the batches before and after it.
    assert ingest.stats.records_in == 60
    assert ingest.stats.unreadable_batches == 2 and ingest.stats.unreadable_records == 80
    assert windows.stats.unreadable_batches == 1
    assert 'prodmon_unreadable_batches_total{stage="ingest"} 2' in metrics
    assert 'prodmon_unreadable_records_total{stage="windows"} 50' in metrics


class _CrashingTick:
    """A stage whose tick fails: a bug outside the per-record guard."""

    def __init__(self, stage) -> None:
        self._stage = stage

    def __getattr__(self, name: str):
        return getattr(self._stage, name)

    def tick(self, now: float):
        raise RuntimeError("tick bug")


async def test_a_crashed_stage_stops_the_process_cleanly_with_its_cause(
    bootstrap, topics, monkeypatch
):
    windows = app.STAGE_FACTORIES["windows"]
    monkeypatch.setitem(app.STAGE_FACTORIES, "windows", lambda c: _CrashingTick(windows(c)))
    config = make_config(bootstrap, topics)
    stop = asyncio.Event()
    pipeline = app.Pipeline(config, ["ingest", "windows"])
    with pytest.raises(StageCrashed, match="stage windows crashed: RuntimeError"):
        await asyncio.wait_for(pipeline.run(stop), 60)
    assert stop.is_set()  # the sibling stage was told to stop, and it did
    ingest = pipeline.runners[0]
    assert ingest.stage.name == "ingest" and ingest._consumer is None  # left its group
