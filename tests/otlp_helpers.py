"""Telemetry made by the real OpenTelemetry Python SDK, encoded as the Collector's Kafka
exporter writes it (`otlp_proto`: the export request's protobuf bytes; `otlp_json`: OTLP/JSON,
ids as hex, 64-bit integers as decimal strings, enums as integers)."""

from __future__ import annotations

import base64
import logging
from typing import Any

import orjson
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

RESOURCE = {
    "service.name": "checkout",
    "deployment.environment.name": "prod",
    "service.version": "1.4.2",
    "host.name": "web-12",
    "cloud.region": "eu-west-1",
    "k8s.pod.name": "checkout-7d9f",
}
ROUTE = "/api/pay/{id}"
MS = 1_000_000  # ns


class UpstreamTimeout(Exception):
    pass


def charge_card(order: int) -> None:
    raise UpstreamTimeout(f"pay-api timed out after 3000 ms for order {order}")


def load_order(order: int) -> dict[str, Any]:
    return {}[f"order-{order}"]


def make_spans(t0_ms: int, ok: int = 100, failures: int = 3) -> tuple[Any, list[float]]:
    """SERVER spans of one route (`ok` of 1..ok ms, one 503 of 50 ms, `failures` raising
    UpstreamTimeout after 200 ms), plus a CLIENT and an INTERNAL span that are not requests.
    Returns the ExportTraceServiceRequest and the request durations in ms."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(RESOURCE))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("checkout.http")
    start = (t0_ms + 1000) * MS
    durations: list[float] = []
    http = {"http.route": ROUTE, "http.request.method": "POST"}
    for i in range(ok):
        span = tracer.start_span(
            f"POST {ROUTE}",
            kind=SpanKind.SERVER,
            start_time=start + i * 10 * MS,
            attributes={**http, "http.response.status_code": 200},
        )
        span.end(end_time=start + i * 10 * MS + (i + 1) * MS)
        durations.append(float(i + 1))
    span = tracer.start_span(
        f"POST {ROUTE}",
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={**http, "http.response.status_code": 503},
    )
    span.end(end_time=start + 50 * MS)
    durations.append(50.0)
    for i in range(failures):
        began = start + (i + 1) * 100 * MS
        try:
            with tracer.start_as_current_span(
                f"POST {ROUTE}", kind=SpanKind.SERVER, start_time=began, attributes=http,
                end_on_exit=False,
            ) as span:  # fmt: skip
                try:
                    charge_card(40 + i)
                finally:
                    pass
        except UpstreamTimeout:
            span.end(end_time=began + 200 * MS)
        durations.append(200.0)
    for kind in (SpanKind.CLIENT, SpanKind.INTERNAL):
        span = tracer.start_span("SELECT orders", kind=kind, start_time=start)
        span.end(end_time=start + 5 * MS)
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans()), durations


def closer_spans(t_ms: int) -> Any:
    """One SERVER span at `t_ms` on another route: moves the windows' watermark past t0."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(RESOURCE))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("x").start_span(
        "GET /health",
        kind=SpanKind.SERVER,
        start_time=t_ms * MS,
        attributes={"http.route": "/health"},
    )
    span.end(end_time=(t_ms + 1) * MS)
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans())


def make_logs() -> Any:
    """Through the standard `logging` module and the SDK's handler: an ERROR with an
    exception (KeyError from load_order), an ERROR without one, and an INFO (not an error)."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create(RESOURCE))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger("checkout.orders.otlp-test")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    try:
        try:
            load_order(42)
        except KeyError:
            logger.exception("payment failed for order 42")
        logger.error("card declined for order 43")
        logger.info("order 44 paid")
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
    return encode_logs(exporter.get_finished_logs())


def otlp_json(request: Any) -> bytes:
    """OTLP/JSON as the Collector writes it: protobuf's JSON mapping with enums as integers,
    and trace/span ids as hex instead of base64."""
    doc = json_format.MessageToDict(request, use_integers_for_enums=True)

    def hexify(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                    node[key] = base64.b64decode(value).hex()
                else:
                    hexify(value)
        elif isinstance(node, list):
            for item in node:
                hexify(item)

    hexify(doc)
    return orjson.dumps(doc)


def encoded(request: Any, encoding: str) -> bytes:
    return request.SerializeToString() if encoding == "otlp_proto" else otlp_json(request)
