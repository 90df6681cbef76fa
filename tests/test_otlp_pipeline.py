"""OpenTelemetry traces and logs, as the Collector's Kafka exporter writes them, through the
real pipeline on the local broker: rollups with the right counts and histograms, issues with
the right type and frames, retries not double counted, bad records dead-lettered."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from histograms.hdr import SparseHistogram, layout
from pipeline.topics import EVENTS_DLQ, ROLLUPS
from tests.otlp_helpers import ROUTE, closer_spans, encoded, make_logs, make_spans
from tests.pipeline_helpers import issues_probe, make_config, running_pipeline, wait_for
from tests.pipeline_helpers import topic_probe as probe

STAGES = ["otlp", "ingest", "windows", "fingerprint"]


async def _create(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 2, 1) for n in names])
    finally:
        await admin.close()


async def _send(bootstrap: str, compression: str, records: list[tuple[str, bytes]]) -> None:
    """As the exporter sends: no key (round robin), compressed."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, compression_type=compression, enable_idempotence=False
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value) for topic, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@pytest.mark.parametrize(
    ("encoding", "compression"), [("otlp_proto", "zstd"), ("otlp_json", "gzip")]
)
async def test_sdk_spans_and_logs_become_rollups_and_issues(
    bootstrap, topics, encoding, compression
):
    suffix = uuid.uuid4().hex[:8]
    traces, logs = f"otlp_spans_{suffix}", f"otlp_logs_{suffix}"
    await _create(bootstrap, traces, logs)
    config = make_config(
        bootstrap,
        topics,
        **{"otlp.traces_topic": traces, "otlp.logs_topic": logs, "otlp.encoding": encoding},
    )
    now = int(time.time() * 1000)
    t0 = now - 120_000 - now % 10_000
    spans, durations = make_spans(t0)
    span_bytes = encoded(spans, encoding)
    records = [
        (traces, span_bytes),
        (traces, span_bytes),  # a Collector retry: the same request again
        (logs, encoded(make_logs(), encoding)),
        (traces, b"\x00not otlp at all{"),
        (traces, encoded(closer_spans(t0 + 40_000), encoding)),
    ]
    async with running_pipeline(config, STAGES):
        await _send(bootstrap, compression, records)
        series_id = f"checkout|{ROUTE}|10s|{t0}"

        def rolled(got: list[dict]) -> bool:
            return any(r["id"] == series_id for r in got)

        rollups = await wait_for(probe(config, ROLLUPS), rolled)
        issues = await wait_for(issues_probe(config), lambda got: len(got) >= 3)
        await asyncio.sleep(1.5)  # a double count would show in the next count update
        issues = await issues_probe(config)()
        dead = await wait_for(probe(config, EVENTS_DLQ), lambda got: len(got) >= 1)

    rollup = {r["id"]: r for r in rollups}[series_id]
    expected = SparseHistogram(layout())
    for ms in durations:
        expected.record(int(ms * 1000 + 0.5))
    assert rollup["count"] == len(durations) == 104  # CLIENT and INTERNAL spans are not requests
    assert rollup["errors"] == 4  # the 503 and the three spans with status ERROR
    assert SparseHistogram.decode(rollup["hist"]) == expected
    assert rollup["max_ms"] == 200.0
    assert 49 <= rollup["p50_ms"] <= 54

    by_type = {i["exception_type"]: i for i in issues}
    assert set(by_type) == {"tests.otlp_helpers.UpstreamTimeout", "KeyError", "ERROR"}, by_type
    timeout = by_type["tests.otlp_helpers.UpstreamTimeout"]
    assert timeout["count"] == 3  # three spans; the retried request counted once
    assert timeout["services"] == ["checkout"] and timeout["releases"] == ["1.4.2"]
    sample = timeout["sample"]
    app_frames = [f["function"] for f in sample["stacktrace"] if f["in_app"]]
    assert app_frames[-2:] == ["make_spans", "charge_card"]
    assert sample["context"]["trace_id"] and sample["context"]["span_id"]
    assert sample["tags"]["k8s.pod.name"] == "checkout-7d9f"
    key_error = by_type["KeyError"]
    assert key_error["count"] == 1 and key_error["severity"] == "high"
    assert key_error["message_template"].startswith("payment failed for order")
    assert [f["function"] for f in key_error["sample"]["stacktrace"]][-2:] == [
        "make_logs", "load_order",
    ]  # fmt: skip
    plain = by_type["ERROR"]
    assert plain["count"] == 1  # the INFO record is not an error
    assert plain["sample"]["stacktrace"][0]["function"] == "make_logs"  # its code.* call site

    (letter,) = [d for d in dead if d["source"]["topic"] == traces]
    assert letter["source"]["offset"] is not None and letter["field"] == "$"
    where = f"{traces}[{letter['source']['partition']}]@{letter['source']['offset']}"
    assert letter["reason"].startswith(where)


async def test_only_otlp_topics_that_exist_are_read_and_none_means_no_stage(bootstrap, topics):
    suffix = uuid.uuid4().hex[:8]
    traces, logs = f"otlp_spans_{suffix}", f"otlp_logs_{suffix}"
    absent = make_config(
        bootstrap, topics, **{"otlp.traces_topic": traces, "otlp.logs_topic": logs}
    )
    async with running_pipeline(absent, ["ingest", "otlp"]) as pipeline:
        await wait_for(_runners(pipeline), bool, timeout_s=30)
        assert [r.stage.name for r in pipeline.runners] == ["ingest"]  # no idle otlp member
        assert pipeline.stage_names == ["ingest"]
    await _create(bootstrap, traces)  # the Collector writes traces only
    present = make_config(
        bootstrap, topics, **{"otlp.traces_topic": traces, "otlp.logs_topic": logs}
    )
    async with running_pipeline(present, ["otlp"]) as pipeline:
        [runner] = await wait_for(_runners(pipeline), bool, timeout_s=30)
        assert runner.stage.name == "otlp"
        assert pipeline.config.otlp.traces_topic == traces
        assert pipeline.config.otlp.logs_topic == ""  # absent: not subscribed


def _runners(pipeline):
    async def probe_runners() -> list:
        return list(pipeline.runners)

    return probe_runners
