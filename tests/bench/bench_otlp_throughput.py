"""Benchmark: OTLP spans per second into rollups, one pipeline process, next to latency/1.

Measured in one run on the local broker:
1. the OTLP ceiling: a bare aiokafka consumer reading the OTLP topic (protobuf
   `ExportTraceServiceRequest`s, `--spans-per-request` SERVER spans each, as the Collector's
   Kafka exporter writes them after its batch processor) and decoding every request;
2. one process running `otlp,ingest,windows`: from the first OTLP record consumed to the
   windows stage accounting every span (as bench_rollup_throughput: events of windows still
   open once ingest has windowed everything are not waited for);
3. for comparison, the same spans as latency/1 JSON arrays of the same size on `events.raw`:
   the raw consume ceiling there and `ingest,windows` (bench_rollup_throughput's figures).

Pipeline figures are reported as ratios of their ceiling (only same-run ratios mean anything
on these noisy machines).

Run: .venv/bin/python -m tests.bench.bench_otlp_throughput [--spans 200000]
     [--spans-per-request 500] [--series 1000] [--fleet-rate 5000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import random
import sys
import time
import uuid

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.app import Pipeline
from pipeline.broker import LocalBroker
from pipeline.config import RuntimeConfig, load_config
from pipeline.logging import configure_logging
from pipeline.topics import create_topics
from tests.bench.bench_rollup_throughput import pipeline_rate, raw_consume_rate

T0 = 1_795_320_000_000
SERVER = 2


def make_requests(
    spans: int, per_request: int, series: int, fleet_rate: int, seed: int = 1
) -> list[bytes]:
    """Encoded requests of SERVER spans over `series` (service, route) pairs, time ordered
    (`fleet_rate` spans per second of event time), one resource per service per request."""
    rng = random.Random(seed)
    services = max(1, series // 10)
    out = []
    for first in range(0, spans, per_request):
        request = ExportTraceServiceRequest()
        by_service: dict[int, object] = {}
        for i in range(first, min(first + per_request, spans)):
            s = rng.randrange(series)
            svc = s % services
            scope = by_service.get(svc)
            if scope is None:
                resource_spans = request.resource_spans.add()
                resource_spans.resource.attributes.extend(
                    [
                        KeyValue(key="service.name", value=AnyValue(string_value=f"svc-{svc}")),
                        KeyValue(key="host.name", value=AnyValue(string_value=f"h-{s % 50}")),
                    ]
                )
                scope = by_service[svc] = resource_spans.scope_spans.add()
            end = (T0 + i * 1000 // fleet_rate) * 1_000_000
            duration = int(rng.lognormvariate(3.0, 0.7) * 1_000_000)
            status = 500 if rng.random() < 0.01 else 200
            scope.spans.add(  # type: ignore[attr-defined]
                trace_id=i.to_bytes(16, "big"),
                span_id=(i + 1).to_bytes(8, "big"),
                name="GET",
                kind=SERVER,
                start_time_unix_nano=end - duration,
                end_time_unix_nano=end,
                attributes=[
                    KeyValue(
                        key="http.route", value=AnyValue(string_value=f"/api/{s // services}")
                    ),
                    KeyValue(key="http.request.method", value=AnyValue(string_value="GET")),
                    KeyValue(key="http.response.status_code", value=AnyValue(int_value=status)),
                ],
            )
        out.append(request.SerializeToString())
    return out


def as_latency_arrays(requests: list[bytes]) -> list[bytes]:
    """The same spans as latency/1 JSON arrays, one per request (what `otlp` would emit)."""
    from schemas.otlp import OtlpMapping, decode_traces, map_traces

    out = []
    for value in requests:
        request, _ = decode_traces(value, "otlp_proto")
        events, _ = map_traces(request, OtlpMapping(), lambda text, lang: None)
        out.append(orjson.dumps(events))
    return out


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20,
        max_request_size=8 << 20, enable_idempotence=False,
    )  # fmt: skip
    await producer.start()
    try:
        futures = [await producer.send(topic, v) for v in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def otlp_ceiling(bootstrap: str, topic: str, spans: int) -> float:
    """Spans/s a bare consumer reads and decodes from the OTLP topic."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None, max_partition_fetch_bytes=4 << 20,
    )  # fmt: skip
    await consumer.start()
    seen, started = 0, None
    try:
        while seen < spans:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for messages in batch.values():
                if started is None and messages:
                    started = time.perf_counter()
                for m in messages:
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(m.value)
                    seen += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
    finally:
        await consumer.stop()
    assert started is not None
    return spans / (time.perf_counter() - started)


async def otlp_pipeline_rate(bootstrap: str, prefix: str, topic: str, total: int) -> dict:
    config = load_config(
        env={},
        overrides={
            "kafka.bootstrap": bootstrap,
            "kafka.prefix": prefix,
            "ingest.future_tolerance_s": 10**9,
            "otlp.traces_topic": topic,
        },
    )
    stop = asyncio.Event()
    pipeline = Pipeline(config, ["otlp", "ingest", "windows"])
    task = asyncio.create_task(pipeline.run(stop))
    started = otlp_s = local_s = None
    target = total
    try:
        while True:
            await asyncio.sleep(0.01)
            if task.done():
                task.result()
                raise RuntimeError("the pipeline stopped before the benchmark finished")
            if len(pipeline.runners) < 3:
                continue
            otlp, ingest, windows = pipeline.runners
            if started is None and otlp.stats.records_in:
                started = time.perf_counter()
            if started is None:
                continue
            if otlp_s is None and otlp.stage.stats["events_out"] >= total:  # type: ignore[attr-defined]
                otlp_s = time.perf_counter() - started
            local, core = ingest.stage.core, windows.stage.core  # type: ignore[attr-defined]
            if local_s is None and local.stats["events"] + local.stats["late"] >= total:
                local_s = time.perf_counter() - started
                still_open = local.open_events()  # counted: flushing them would be timed
                target = local.stats["events"] - still_open
            if local_s is not None and core.stats["events"] + core.stats["late"] >= target:
                break
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)
    return {
        "events_per_s": total / elapsed,
        "seconds": elapsed,
        "otlp_stage_events_per_s": total / otlp_s if otlp_s else None,
        "local_events_per_s": total / local_s if local_s else None,
    }


async def main_async(args: argparse.Namespace) -> dict:
    configure_logging("warning")
    gc.set_threshold(RuntimeConfig().gc_gen0_threshold, 20, 20)
    requests = make_requests(args.spans, args.spans_per_request, args.series, args.fleet_rate)
    arrays = as_latency_arrays(requests)
    with LocalBroker() as broker:
        bootstrap = broker.bootstrap
        otlp_prefix, json_prefix = f"bo{uuid.uuid4().hex[:6]}.", f"bj{uuid.uuid4().hex[:6]}."
        topic = f"otlp_spans_{uuid.uuid4().hex[:6]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            for prefix in (otlp_prefix, json_prefix):
                await create_topics(admin, prefix=prefix, partitions=4)
            await admin.create_topics([NewTopic(topic, 4, 1)])
        finally:
            await admin.close()
        await produce(bootstrap, topic, requests)
        await produce(bootstrap, json_prefix + "events.raw", arrays)
        result = {
            "spans": args.spans,
            "spans_per_request": args.spans_per_request,
            "fleet_rate": args.fleet_rate,
            "series": args.series,
            "otlp_ceiling_spans_per_s": await otlp_ceiling(bootstrap, topic, args.spans),
            "otlp": await otlp_pipeline_rate(bootstrap, otlp_prefix, topic, args.spans),
            "latency1_ceiling_events_per_s": await raw_consume_rate(
                bootstrap, json_prefix + "events.raw", args.spans
            ),
            "latency1": await pipeline_rate(bootstrap, json_prefix, args.spans, fused=False),
        }
    result["otlp_ratio"] = result["otlp"]["events_per_s"] / result["otlp_ceiling_spans_per_s"]
    result["latency1_ratio"] = (
        result["latency1"]["events_per_s"] / result["latency1_ceiling_events_per_s"]
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--spans-per-request", type=int, default=500)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--fleet-rate", type=int, default=5000, help="spans/s of event time")
    parser.add_argument("--json")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    sys.exit(0)


if __name__ == "__main__":
    main()
