"""OTLP as the OpenTelemetry Collector's Kafka exporter writes it, mapped to prodmon events.

One Kafka record holds one `ExportTraceServiceRequest` or `ExportLogsServiceRequest`, as
protobuf (`otlp_proto`) or OTLP/JSON (`otlp_json`: ids as hex strings, 64-bit integers as
decimal strings, enums as integers). `decode_traces` / `decode_logs` read either into the
generated protobuf messages of `opentelemetry-proto`; `map_traces` / `map_logs` turn them
into `latency/1` and `error/1` event objects of the input contract (design.md), with
deterministic `event_id`s so that a Collector retry is recognisably the same event.

The mapping (docs/ingest.md has the table): resource attributes give service, env,
release, host, region and (bounded) tags; spans of the configured kinds give latency
events; span events named `exception` and log records at or above the configured severity
give error events. Stack-trace text is turned into frames by a `FrameParser` the caller
passes in (the parsers live in grouping/stacktraces.py, above this layer).

What cannot be mapped is reported as a `Problem` (the OTLP field path and why) and left
out; the rest of the request still maps. Nothing here does I/O; nothing raises on bad
input except the decoders' `OtlpDecodeError` for a record that is not OTLP at all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

__all__ = [
    "ENCODINGS",
    "SEVERITY_NUMBERS",
    "SPAN_KINDS",
    "OtlpDecodeError",
    "OtlpMapping",
    "Problem",
    "decode_logs",
    "decode_traces",
    "map_logs",
    "map_traces",
    "severity_number",
]

ENCODINGS = ("otlp_proto", "otlp_json")
SPAN_KINDS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
SEVERITY_NUMBERS = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}
STATUS_ERROR = 2  # Status.StatusCode.STATUS_CODE_ERROR
MAX_TAGS = 16
MAX_TAG_CHARS = 256
MAX_ID_CHARS = 256
# Resource attributes that are mapped to fields, or never copied into tags: the SDK's own
# description, and command lines (they may carry secrets).
_MAPPED = frozenset(
    {
        "service.name",
        "deployment.environment.name",
        "deployment.environment",
        "service.version",
        "host.name",
        "cloud.region",
        "process.command",
        "process.command_args",
        "process.command_line",
    }
)
# gRPC status codes as the HTTP statuses gRPC gateways answer with (rpc.grpc.status_code).
_GRPC_HTTP = {
    0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429,
    9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}  # fmt: skip

FrameParser = Callable[[str, str | None], list[dict[str, Any]] | None]


class OtlpDecodeError(Exception):
    """A record that is not an OTLP export request in the configured encoding."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason


class Problem(NamedTuple):
    """A part of a request left out: its OTLP field path and why."""

    field: str
    reason: str


@dataclass(frozen=True)
class OtlpMapping:
    """What to map: span kinds that are requests (`SPAN_KINDS` values) and the lowest log
    severity number that is an error (`SEVERITY_NUMBERS`)."""

    span_kinds: frozenset[int] = frozenset({SPAN_KINDS["server"], SPAN_KINDS["consumer"]})
    error_severity: int = SEVERITY_NUMBERS["ERROR"]


# ---- decoding ------------------------------------------------------------------------------


def decode_traces(value: bytes, encoding: str) -> tuple[ExportTraceServiceRequest, list[Problem]]:
    """One Kafka record's `ExportTraceServiceRequest`, and the spans left out while decoding
    (OTLP/JSON spans whose ids are not hex)."""
    request = ExportTraceServiceRequest()
    return request, _decode(request, value, encoding, _TRACE_PATH)


def decode_logs(value: bytes, encoding: str) -> tuple[ExportLogsServiceRequest, list[Problem]]:
    """One Kafka record's `ExportLogsServiceRequest`, and the records left out."""
    request = ExportLogsServiceRequest()
    return request, _decode(request, value, encoding, _LOGS_PATH)


_TRACE_PATH = ("resourceSpans", "scopeSpans", "spans")
_LOGS_PATH = ("resourceLogs", "scopeLogs", "logRecords")
_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _decode(request: Any, value: bytes, encoding: str, path: tuple[str, str, str]) -> list[Problem]:
    if not value:
        raise OtlpDecodeError("$", "empty record (no OTLP request)")
    if encoding == "otlp_proto":
        try:
            request.ParseFromString(bytes(value))
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise OtlpDecodeError("$", f"not a protobuf OTLP request ({exc})") from None
        return []
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise OtlpDecodeError("$", f"not OTLP/JSON ({exc})") from None
    if type(doc) is not dict:
        raise OtlpDecodeError("$", "OTLP/JSON request must be a JSON object")
    problems = _hex_ids_to_base64(doc, path)
    try:
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise OtlpDecodeError("$", f"not an OTLP/JSON request ({exc})"[:500]) from None
    return problems


def _hex_ids_to_base64(doc: dict[str, Any], path: tuple[str, str, str]) -> list[Problem]:
    """OTLP/JSON writes ids as hex; protobuf's JSON reader wants base64. Items whose ids are
    not hex are removed, and reported."""
    problems: list[Problem] = []
    top, middle, leaf = path
    for r, resource in enumerate(_list(doc.get(top))):
        for s, scope in enumerate(_list(resource.get(middle) if type(resource) is dict else None)):
            items = scope.get(leaf) if type(scope) is dict else None
            if type(items) is not list:
                continue
            kept = []
            for i, item in enumerate(items):
                where = f"{top}[{r}].{middle}[{s}].{leaf}[{i}]"
                if type(item) is dict and _convert_ids(item, where, problems):
                    for j, link in enumerate(_list(item.get("links"))):
                        if type(link) is dict:
                            _convert_ids(link, f"{where}.links[{j}]", problems)
                    kept.append(item)
                elif type(item) is not dict:
                    kept.append(item)  # protobuf's reader says what is wrong with it
            scope[leaf] = kept
    return problems


def _convert_ids(item: dict[str, Any], where: str, problems: list[Problem]) -> bool:
    for name in _ID_FIELDS:
        text = item.get(name)
        if text is None or text == "":
            continue
        try:
            if type(text) is not str:
                raise ValueError
            item[name] = base64.b64encode(bytes.fromhex(text)).decode("ascii")
        except (ValueError, binascii.Error):
            problems.append(Problem(f"{where}.{name}", f"{name} is not a hex id: {text!r:.80}"))
            return False
    return True


def _list(value: Any) -> list[Any]:
    return value if type(value) is list else []


# ---- attributes and resources ------------------------------------------------------------


def _value(any_value: Any) -> Any:
    """An OTLP AnyValue as a plain JSON value."""
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    if kind == "bytes_value":
        return any_value.bytes_value.hex()
    value = getattr(any_value, kind)
    if kind == "double_value" and not math.isfinite(value):
        return None
    return value


def _attributes(key_values: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


def _tag_text(value: Any) -> str:
    if type(value) is str:
        text = value
    elif type(value) is bool:
        text = "true" if value else "false"
    elif type(value) in (int, float):
        text = repr(value)
    else:
        text = orjson.dumps(value).decode()
    return text[:MAX_TAG_CHARS]


@dataclass(slots=True)
class Source:
    """What a resource (and scope) says about the service that sent its spans or logs."""

    service: str
    env: str | None
    release: str | None
    host: str | None
    region: str | None
    language: str | None
    tags: dict[str, str] | None
    scope: str


def _source(resource: Any, scope_name: str) -> Source:
    attrs = _attributes(resource.attributes)
    tags: dict[str, str] = {}
    for key, value in attrs.items():
        if len(tags) >= MAX_TAGS:
            break
        if key in _MAPPED or key.startswith("telemetry.") or not key or len(key) > MAX_ID_CHARS:
            continue
        if value is not None:
            tags[key] = _tag_text(value)
    env = attrs.get("deployment.environment.name") or attrs.get("deployment.environment")
    return Source(
        service=_text_or(attrs.get("service.name"), "unknown_service"),
        env=_text_or(env, None),
        release=_text_or(attrs.get("service.version"), None),
        host=_text_or(attrs.get("host.name"), None),
        region=_text_or(attrs.get("cloud.region"), None),
        language=_text_or(attrs.get("telemetry.sdk.language"), None),
        tags=tags or None,
        scope=scope_name,
    )


def _text_or(value: Any, default: str | None) -> Any:
    if type(value) is str and value:
        return value[:MAX_ID_CHARS]
    if type(value) in (int, float) and type(value) is not bool:
        return str(value)
    return default


# ---- traces ------------------------------------------------------------------------------


def map_traces(
    request: ExportTraceServiceRequest, mapping: OtlpMapping, frames: FrameParser
) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The request's latency and error events (in request order), and what was left out."""
    events: list[dict[str, Any]] = []
    problems: list[Problem] = []
    kinds = mapping.span_kinds
    for r, resource_spans in enumerate(request.resource_spans):
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            source = _source(resource_spans.resource, scope_spans.scope.name)
            for i, span in enumerate(scope_spans.spans):
                where = f"resource_spans[{r}].scope_spans[{s}].spans[{i}]"
                trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
                if len(trace_id) != 32 or len(span_id) != 16:
                    problems.append(
                        Problem(
                            f"{where}.trace_id",
                            "span has no valid trace_id (16 bytes) and span_id (8 bytes)",
                        )
                    )
                    continue
                attrs = _attributes(span.attributes) if span.kind in kinds or span.events else {}
                if span.kind in kinds:
                    try:
                        events.append(_latency(span, attrs, source, trace_id, span_id))
                    except _Unmappable as exc:
                        problems.append(Problem(f"{where}.{exc.field}", exc.reason))
                for e, event in enumerate(span.events):
                    if event.name == "exception":
                        events.append(
                            _span_exception(span, event, e, source, trace_id, span_id, frames)
                        )
    return events, problems


class _Unmappable(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field, self.reason = field, reason


def _status(span: Any, attrs: dict[str, Any]) -> int:
    for name in ("http.response.status_code", "http.status_code"):
        value = attrs.get(name)
        if value is None:
            continue
        if type(value) is str and value.isdigit() and len(value) == 3:
            value = int(value)
        if type(value) is not int or not 100 <= value <= 599:
            raise _Unmappable(
                f"attributes.{name}", f"{name} must be an HTTP status, got {value!r:.40}"
            )
        return value
    grpc = attrs.get("rpc.grpc.status_code")
    if type(grpc) is int and grpc in _GRPC_HTTP:
        return _GRPC_HTTP[grpc]
    return 500 if span.status.code == STATUS_ERROR else 200


def _latency(
    span: Any, attrs: dict[str, Any], source: Source, trace_id: str, span_id: str
) -> dict[str, Any]:
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if not start or not end:
        raise _Unmappable("end_time_unix_nano", "span has no start or end time")
    if end < start:
        raise _Unmappable("end_time_unix_nano", "span ends before it starts")
    endpoint = attrs.get("http.route")
    if type(endpoint) is not str or not endpoint:
        service, method = attrs.get("rpc.service"), attrs.get("rpc.method")
        if type(service) is str and type(method) is str and service and method:
            endpoint = f"{service}/{method}"
        else:
            endpoint = span.name
    if not endpoint:
        raise _Unmappable("name", "span has no name and no http.route or rpc.service/rpc.method")
    method = attrs.get("http.request.method") or attrs.get("http.method")
    return {
        "schema": "latency/1",
        "event_id": f"otel:{trace_id}:{span_id}",
        "ts": end // 1_000_000,
        "service": source.service,
        "endpoint": endpoint,
        "method": method if type(method) is str else None,
        "status": _status(span, attrs),
        "duration_ms": (end - start) / 1_000_000,
        "region": source.region,
        "host": source.host,
    }


def _span_exception(
    span: Any,
    event: Any,
    index: int,
    source: Source,
    trace_id: str,
    span_id: str,
    frames: FrameParser,
) -> dict[str, Any]:
    attrs = _attributes(event.attributes)
    stack = attrs.get("exception.stacktrace")
    etype = attrs.get("exception.type")
    message = attrs.get("exception.message")
    return {
        "schema": "error/1",
        "event_id": f"otel:{trace_id}:{span_id}:{index}",
        "ts": (event.time_unix_nano or span.end_time_unix_nano) // 1_000_000,
        "service": source.service,
        "env": source.env,
        "release": source.release,
        "host": source.host,
        "exception": {
            "type": etype[:MAX_ID_CHARS] if type(etype) is str and etype else "Exception",
            "message": message if type(message) is str else "",
        },
        "stacktrace": frames(stack, source.language) if type(stack) is str else None,
        "context": {"trace_id": trace_id, "span_id": span_id, "span": span.name[:MAX_ID_CHARS]},
        "tags": source.tags,
    }


# ---- logs --------------------------------------------------------------------------------

_SEVERITY_WORDS = (
    ("FATAL", 21), ("CRIT", 21), ("EMERG", 21), ("ALERT", 21), ("PANIC", 21),
    ("ERR", 17), ("WARN", 13), ("INFO", 9), ("NOTICE", 9), ("DEBUG", 5), ("TRACE", 1),
)  # fmt: skip


def severity_number(number: int, text: str) -> int:
    """A log record's severity number; from its text when the number is unset (0)."""
    if number:
        return number
    upper = text.strip().upper()
    for word, value in _SEVERITY_WORDS:
        if upper.startswith(word):
            return value
    return 0


def _severity_name(number: int) -> str:
    for name, low in sorted(SEVERITY_NUMBERS.items(), key=lambda item: -item[1]):
        if number >= low:
            return name
    return "UNSPECIFIED"


def map_logs(
    request: ExportLogsServiceRequest, mapping: OtlpMapping, frames: FrameParser
) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The request's error events (log records at or above the error severity)."""
    events: list[dict[str, Any]] = []
    problems: list[Problem] = []
    threshold = mapping.error_severity
    for r, resource_logs in enumerate(request.resource_logs):
        for s, scope_logs in enumerate(resource_logs.scope_logs):
            source = _source(resource_logs.resource, scope_logs.scope.name)
            for i, record in enumerate(scope_logs.log_records):
                number = severity_number(record.severity_number, record.severity_text)
                if number < threshold:
                    continue
                nanos = record.time_unix_nano or record.observed_time_unix_nano
                if not nanos:
                    where = f"resource_logs[{r}].scope_logs[{s}].log_records[{i}]"
                    problems.append(Problem(f"{where}.time_unix_nano", "log record has no time"))
                    continue
                events.append(_log_error(record, number, nanos, source, frames))
    return events, problems


def _log_error(
    record: Any, number: int, nanos: int, source: Source, frames: FrameParser
) -> dict[str, Any]:
    attrs = _attributes(record.attributes)
    body = _value(record.body) if record.HasField("body") else None
    message = body if type(body) is str else ("" if body is None else _tag_text(body))
    etype = attrs.get("exception.type")
    stack = attrs.get("exception.stacktrace")
    stacktrace = frames(stack, source.language) if type(stack) is str else None
    if stacktrace is None:
        stacktrace = _call_site(attrs)
    digest = hashlib.blake2b(
        source.service.encode() + b"\0" + record.SerializeToString(deterministic=True),
        digest_size=16,
    ).hexdigest()
    context: dict[str, Any] = {"logger": source.scope[:MAX_ID_CHARS]}
    if record.trace_id:
        context["trace_id"] = record.trace_id.hex()
    if record.span_id:
        context["span_id"] = record.span_id.hex()
    exc_message = attrs.get("exception.message")
    if type(exc_message) is str and exc_message:
        context["exception_message"] = exc_message[:1024]
    return {
        "schema": "error/1",
        "event_id": f"otel-log:{digest}",
        "ts": nanos // 1_000_000,
        "service": source.service,
        "env": source.env,
        "release": source.release,
        "host": source.host,
        "severity": _log_severity(number),
        "exception": {
            "type": etype[:MAX_ID_CHARS]
            if type(etype) is str and etype
            else _severity_name(number),
            "message": message,
        },
        "stacktrace": stacktrace,
        "context": context,
        "tags": source.tags,
    }


def _log_severity(number: int) -> str:
    """FATAL is critical, ERROR high, anything lower (a lowered error_severity) medium."""
    if number >= SEVERITY_NUMBERS["FATAL"]:
        return "critical"
    return "high" if number >= SEVERITY_NUMBERS["ERROR"] else "medium"


def _call_site(attrs: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The `code.*` attributes of a log record (where it was logged) as one frame."""
    filename = attrs.get("code.file.path") or attrs.get("code.filepath")
    function = attrs.get("code.function.name") or attrs.get("code.function")
    line = attrs.get("code.line.number") or attrs.get("code.lineno")
    module = attrs.get("code.namespace")
    if type(filename) is not str and type(function) is not str:
        return None
    return [
        {
            "module": module if type(module) is str else None,
            "function": function if type(function) is str else None,
            "filename": filename if type(filename) is str else None,
            "lineno": line if type(line) is int and line >= 0 else None,
            "in_app": True,
        }
    ]
