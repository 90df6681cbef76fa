"""The OTLP mapping (schemas/otlp.py) and the `otlp` stage, without a broker: what each span,
span event and log record becomes, what is left out and how it is dead-lettered."""

from __future__ import annotations

import time

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from pipeline.app import configured_stages, parse_stage_list
from pipeline.config import ConfigError, load_config
from schemas.otlp import SEVERITY_NUMBERS, SPAN_KINDS, OtlpMapping
from stages.base import Record
from stages.otlp_ingest import OtlpConfig, OtlpIngestStage
from tests.otlp_helpers import encoded, make_logs, make_spans, otlp_json

NOW = time.time()
T0 = int(NOW * 1000) - 60_000


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        any_value = AnyValue(bool_value=value)
    elif isinstance(value, int):
        any_value = AnyValue(int_value=value)
    else:
        any_value = AnyValue(string_value=str(value))
    return KeyValue(key=key, value=any_value)


def _request(*spans: Span, resource: dict | None = None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    for key, value in (resource if resource is not None else {"service.name": "cart"}).items():
        resource_spans.resource.attributes.append(_kv(key, value))
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def _span(n: int, kind: int = SPAN_KINDS["server"], ms: float = 12.5, **attrs: object) -> Span:
    start = T0 * 1_000_000 + n
    return Span(
        trace_id=bytes([n + 1]) * 16,
        span_id=bytes([n + 1]) * 8,
        name=f"span {n}",
        kind=kind,  # type: ignore[arg-type]
        start_time_unix_nano=start,
        end_time_unix_nano=start + int(ms * 1_000_000),
        attributes=[_kv(k.replace("__", "."), v) for k, v in attrs.items()],  # a__b: a.b
    )


def _stage(**options: object) -> OtlpIngestStage:
    return OtlpIngestStage(OtlpConfig(traces_topic="spans", logs_topic="logs", **options))  # type: ignore[arg-type]


def _run(stage: OtlpIngestStage, topic: str, *values: bytes) -> tuple[list[dict], list[dict]]:
    records = [Record(topic, 1, 10 + i, None, v) for i, v in enumerate(values)]
    result = stage.process(records, NOW)
    events = [e for emit in result.emits if emit.topic == "events.raw" for e in emit.value]
    dead = [emit.value for emit in result.emits if emit.topic == "events.dlq"]
    return events, dead


def test_a_server_span_is_a_latency_event_with_its_http_fields():
    span = _span(
        0, ms=12.5, http__route="/cart/{id}", http__request__method="GET",
        http__response__status_code=404,
    )  # fmt: skip
    resource = {"service.name": "cart", "host.name": "h1", "cloud.region": "eu",
                "process.command_line": "cart --password=hunter2"}  # fmt: skip
    (event,), dead = _run(_stage(), "spans", _request(span, resource=resource).SerializeToString())
    assert not dead
    assert event == {
        "schema": "latency/1",
        "event_id": f"otel:{'01' * 16}:{'01' * 8}",
        "ts": T0 + 12,
        "service": "cart",
        "endpoint": "/cart/{id}",
        "method": "GET",
        "status": 404,
        "duration_ms": 12.5,
        "region": "eu",
        "host": "h1",
    }


def test_status_comes_from_the_span_when_no_http_status_and_rpc_spans_name_their_method():
    error = _span(1)
    error.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR))
    rpc = _span(2, rpc__service="cart.Cart", rpc__method="Get", rpc__grpc__status_code=14)
    plain = _span(3)
    events, _ = _run(_stage(), "spans", _request(error, rpc, plain).SerializeToString())
    assert [(e["endpoint"], e["status"]) for e in events] == [
        ("span 1", 500), ("cart.Cart/Get", 503), ("span 3", 200),
    ]  # fmt: skip


def test_only_the_configured_span_kinds_are_requests():
    spans = [_span(i, kind=k) for i, k in enumerate(SPAN_KINDS.values())]
    value = _request(*spans).SerializeToString()
    events, _ = _run(_stage(), "spans", value)
    assert [e["endpoint"] for e in events] == ["span 1", "span 4"]  # server, consumer
    client_only = OtlpMapping(span_kinds=frozenset({SPAN_KINDS["client"]}))
    events, _ = _run(_stage(mapping=client_only), "spans", value)
    assert [e["endpoint"] for e in events] == ["span 2"]


def test_missing_service_name_is_unknown_service_as_opentelemetry_says():
    (event,), _ = _run(_stage(), "spans", _request(_span(0), resource={}).SerializeToString())
    assert event["service"] == "unknown_service"


def test_bad_fields_are_dead_lettered_with_their_place_and_the_rest_still_counts():
    bad_status = _span(0, http__response__status_code=9000)
    backwards = _span(1)
    backwards.end_time_unix_nano = backwards.start_time_unix_nano - 1
    too_long = _span(2)
    too_long.start_time_unix_nano -= 5_000_000 * 1_000_000  # over ingest.max_duration_ms
    good = _span(3)
    events, dead = _run(
        _stage(), "spans", _request(bad_status, backwards, too_long, good).SerializeToString()
    )
    assert [e["endpoint"] for e in events] == ["span 3"]
    fields = [d["field"] for d in dead]
    assert fields == [
        "resource_spans[0].scope_spans[0].spans[0].attributes.http.response.status_code",
        "resource_spans[0].scope_spans[0].spans[1].end_time_unix_nano",
        "duration_ms",
    ]
    for letter in dead:
        assert letter["source"] == {
            "topic": "spans", "partition": 1, "offset": 10, "index": letter["source"]["index"],
        }  # fmt: skip
        assert letter["reason"].startswith("spans[1]@10 ")
    assert "otel:" in dead[2]["reason"]  # names the mapped event (trace and span id)


def test_otlp_json_ids_that_are_not_hex_leave_out_that_span_only():
    spans, _ = make_spans(T0, ok=2, failures=0)
    doc = orjson.loads(otlp_json(spans))
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "zz-not-hex"
    events, dead = _run(_stage(traces_encoding="otlp_json"), "spans", orjson.dumps(doc))
    assert len(events) == 2  # the other server span and the 503 one
    (letter,) = dead
    assert letter["field"] == "resourceSpans[0].scopeSpans[0].spans[0].traceId"


def test_both_encodings_give_the_same_events_so_ids_are_deterministic():
    spans, _ = make_spans(T0, ok=3, failures=2)
    logs = make_logs()
    proto = _stage()
    json = _stage(traces_encoding="otlp_json", logs_encoding="otlp_json")
    for topic, request in (("spans", spans), ("logs", logs)):
        from_proto, _ = _run(proto, topic, encoded(request, "otlp_proto"))
        from_json, _ = _run(json, topic, encoded(request, "otlp_json"))
        assert from_proto == from_json and from_proto
        again, _ = _run(proto, topic, encoded(request, "otlp_proto"))
        assert [e["event_id"] for e in again] == [e["event_id"] for e in from_proto]


def test_log_records_at_or_above_the_error_severity_are_errors():
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for number, text in ((9, "INFO"), (13, "WARN"), (17, "ERROR"), (21, "FATAL"), (0, "error")):
        record = records.add(time_unix_nano=T0 * 1_000_000, severity_number=number)  # type: ignore[arg-type]
        record.severity_text = text
        record.body.string_value = f"{text} happened"
    value = request.SerializeToString()
    events, _ = _run(_stage(), "logs", value)
    assert [(e["exception"]["type"], e["severity"]) for e in events] == [
        ("ERROR", "high"), ("FATAL", "critical"), ("ERROR", "high"),
    ]  # fmt: skip
    warn = OtlpMapping(error_severity=SEVERITY_NUMBERS["WARN"])
    events, _ = _run(_stage(mapping=warn), "logs", value)
    assert [e["severity"] for e in events] == ["medium", "high", "critical", "high"]


def test_undecodable_records_are_dead_lettered_whole():
    stage = _stage()
    events, dead = _run(stage, "logs", b"\xff\xfe garbage", b"")
    assert not events
    assert [d["source"]["offset"] for d in dead] == [10, 11]
    assert all(d["field"] == "$" for d in dead)
    _, dead = _run(_stage(traces_encoding="otlp_json"), "spans", b'{"resourceSpans": 7}')
    assert dead[0]["reason"].startswith("spans[1]@10 $: not an OTLP/JSON request")


def test_events_go_to_events_raw_keyed_by_service_in_bounded_arrays():
    spans, _ = make_spans(T0, ok=20, failures=0)
    result = _stage(max_events_per_message=8).process(
        [Record("spans", 0, 0, None, spans.SerializeToString())], NOW
    )
    assert [(e.topic, e.key, len(e.value)) for e in result.emits] == [
        ("events.raw", "checkout", 8), ("events.raw", "checkout", 8),
        ("events.raw", "checkout", 5),
    ]  # fmt: skip


def test_config_names_the_key_and_the_stage_runs_only_when_configured():
    plain = load_config(env={})  # the Collector's topic names by default
    assert (plain.otlp.traces_topic, plain.otlp.logs_topic) == ("otlp_spans", "otlp_logs")
    assert "otlp" in configured_stages(plain)
    off = load_config(env={}, overrides={"otlp.traces_topic": "", "otlp.logs_topic": ""})
    assert "otlp" not in configured_stages(off)
    assert "otlp" not in parse_stage_list("all", off)
    with pytest.raises(ConfigError, match=r"otlp\.traces_topic"):
        parse_stage_list("otlp", off)
    on = load_config(
        env={}, overrides={"otlp.traces_topic": "otlp_spans", "otlp.span_kinds": "SERVER"}
    )
    assert "otlp" in parse_stage_list("all", on)
    assert parse_stage_list("otlp,ingest", on) == ["otlp", "ingest"]
    assert on.otlp.span_kinds == ("server",)
    for key, value, message in (
        ("otlp.encoding", "protobuf", "otlp.encoding: 'protobuf' is not one of"),
        ("otlp.logs_encoding", "xml", "otlp.logs_encoding"),
        ("otlp.span_kinds", "server,sever", "otlp.span_kinds: 'sever'"),
        ("otlp.error_severity", "LOUD", "otlp.error_severity"),
        ("otlp.traces_topic", "bad topic", "otlp.traces_topic"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(env={}, overrides={key: value})
    with pytest.raises(ConfigError, match=r"otlp\.logs_topic: must differ"):
        load_config(env={}, overrides={"otlp.traces_topic": "a", "otlp.logs_topic": "a"})
    env = {"PRODMON_OTLP__LOGS_TOPIC": "otlp_logs", "PRODMON_OTLP__ERROR_SEVERITY": "warning"}
    from_env = load_config(env=env)
    assert from_env.otlp.logs_topic == "otlp_logs" and from_env.otlp.error_severity == "WARN"
