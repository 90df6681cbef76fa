"""Decode, validate and normalize raw error and latency events (the `events.raw` input contract).

Every rule that rejects input raises `InvalidEvent(field, reason)`, where `field` is the dotted
path of the offending value (`$` for the whole message) and `reason` is a human-readable sentence
that names the field. This module never does I/O and never raises anything but `InvalidEvent` for
bad input; `validate_event` is on the per-event hot path, so the latency branch avoids regexes and
allocates only the output dict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal, overload

import orjson

__all__ = [
    "DEFAULT_SEVERITY",
    "ERROR_SCHEMA",
    "LATENCY_SCHEMA",
    "SEVERITIES",
    "TRUNCATION_MARKER",
    "InvalidEvent",
    "Limits",
    "check_context",
    "decode_batch",
    "decode_message",
    "latency_fields",
    "normalized_latency",
    "normalized_tags",
    "plain_latency",
    "validate_event",
]

ERROR_SCHEMA = "error/1"
LATENCY_SCHEMA = "latency/1"
SEVERITIES = frozenset({"critical", "high", "medium", "low"})
DEFAULT_SEVERITY = "medium"
TRUNCATION_MARKER = "…[truncated]"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_MAX_ISO_LEN = 64


class InvalidEvent(Exception):
    """A message or event broke a rule of the input contract."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@dataclass(frozen=True)
class Limits:
    """Bounds applied to raw input; anything past them is rejected or truncated as documented."""

    max_message_bytes: int = 1 << 20
    max_events_per_message: int = 10_000
    # event_id, service, endpoint, host, env, release, region, method, exception.type,
    # fingerprint parts and tag keys: rejected when longer.
    max_id_len: int = 256
    # exception.message and stack frame strings: truncated with TRUNCATION_MARKER when longer
    # (tag values likewise, at max_id_len).
    max_text_len: int = 8192
    # more frames keep the first max_frames//2 and the rest from the end; `frames_omitted` counts.
    max_frames: int = 200
    max_context_depth: int = 8
    max_context_bytes: int = 16 * 1024
    max_tags: int = 64
    max_duration_ms: float = 3_600_000
    future_tolerance_s: float = 300
    min_ts: int = 946_684_800_000  # 2000-01-01T00:00:00Z

    @cached_property
    def latency_bounds(self) -> tuple[int, float, int, float]:
        """(min_ts, max ms ahead of now, max_id_len, max_duration_ms): the latency hot path's."""
        return (self.min_ts, self.future_tolerance_s * 1000, self.max_id_len, self.max_duration_ms)


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, for reasons."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def decode_message(value: bytes, limits: Limits) -> list[Any]:
    """Decode one `events.raw` message into its list of (still unvalidated) elements."""
    return decode_batch(value, limits)[0]


def decode_batch(value: bytes, limits: Limits) -> tuple[list[Any], bool]:
    """Like `decode_message`, also telling whether the message was a JSON array."""
    size = len(value)
    if size > limits.max_message_bytes:
        raise InvalidEvent(
            "$", f"message is {size} bytes, over the limit of {limits.max_message_bytes} bytes"
        )
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        try:
            bytes(value).decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise InvalidEvent(
                "$", f"message is not valid UTF-8 (byte {uexc.start}: {uexc.reason})"
            ) from None
        raise InvalidEvent("$", f"message is not valid JSON ({exc})") from None
    if type(doc) is dict:
        return [doc], False
    if type(doc) is list:
        if len(doc) > limits.max_events_per_message:
            raise InvalidEvent(
                "$",
                f"message holds {len(doc)} events, over the limit of "
                f"{limits.max_events_per_message}",
            )
        return doc, True
    raise InvalidEvent(
        "$", f"message must be a JSON object or an array of objects, got {_json_type(doc)}"
    )


# --- field rules -----------------------------------------------------------------------------


def _ts_ms(value: Any, now_ms: int, limits: Limits) -> int:
    """`ts` as int epoch ms, from a number of ms or an ISO-8601 string, bounded in time."""
    t = type(value)
    if t is int:
        ts = value
    elif t is float:
        if not math.isfinite(value):
            raise InvalidEvent("ts", "ts must be a finite number of epoch milliseconds")
        ts = int(value)
    elif t is str:
        ts = _iso_ms(value)
    elif value is None:
        raise InvalidEvent("ts", "ts is required")
    else:
        raise InvalidEvent(
            "ts",
            f"ts must be epoch milliseconds (number) or an ISO-8601 string, "
            f"got {_json_type(value)}",
        )
    if ts < limits.min_ts:
        raise InvalidEvent(
            "ts",
            f"ts {ts} is before {limits.min_ts} ms (2000-01-01); ts is epoch milliseconds, "
            "not seconds",
        )
    ahead = ts - now_ms
    if ahead > limits.future_tolerance_s * 1000:
        raise InvalidEvent(
            "ts",
            f"ts is {ahead // 1000} s in the future, over the tolerance of "
            f"{limits.future_tolerance_s:g} s",
        )
    return ts


def _iso_ms(text: str) -> int:
    """Parse an ISO-8601 timestamp (`Z` or an offset; naive means UTC) to epoch ms."""
    if len(text) > _MAX_ISO_LEN:
        raise InvalidEvent("ts", f"ts string is longer than {_MAX_ISO_LEN} characters")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidEvent("ts", f"ts string {text!r} is not an ISO-8601 timestamp") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return (dt - _EPOCH) // _ONE_MS
    except OverflowError:
        raise InvalidEvent("ts", f"ts string {text!r} is out of range") from None


@overload
def _ident(value: Any, field: str, limits: Limits, required: Literal[True]) -> str: ...
@overload
def _ident(value: Any, field: str, limits: Limits, required: bool) -> str | None: ...
def _ident(value: Any, field: str, limits: Limits, required: bool) -> str | None:
    """A bounded identifier string; None when absent and optional."""
    if type(value) is str:
        if not value:
            if required:
                raise InvalidEvent(field, f"{field} must be a non-empty string")
            return value
        if len(value) > limits.max_id_len:
            raise InvalidEvent(
                field,
                f"{field} is {len(value)} characters, over the limit of {limits.max_id_len}",
            )
        return value
    if value is None:
        if required:
            raise InvalidEvent(field, f"{field} is required")
        return None
    raise InvalidEvent(field, f"{field} must be a string, got {_json_type(value)}")


def _text(value: Any, limit: int) -> str:
    """Free text bounded to `limit` characters, truncated with TRUNCATION_MARKER."""
    if len(value) <= limit:
        return value
    keep = max(limit - len(TRUNCATION_MARKER), 0)
    return value[:keep] + TRUNCATION_MARKER


def _severity(value: Any) -> str:
    if value is None:
        return DEFAULT_SEVERITY
    if type(value) is str and value in SEVERITIES:
        return value
    raise InvalidEvent(
        "severity",
        f"severity must be one of critical, high, medium, low, got {value!r}"
        if type(value) is str
        else f"severity must be a string, got {_json_type(value)}",
    )


def _exception(value: Any, limits: Limits) -> dict[str, str]:
    if value is None:
        raise InvalidEvent("exception", "exception is required for error/1 events")
    if type(value) is not dict:
        raise InvalidEvent("exception", f"exception must be an object, got {_json_type(value)}")
    etype = _ident(value.get("type"), "exception.type", limits, required=True)
    message = value.get("message")
    if message is None:
        message = ""
    elif type(message) is not str:
        raise InvalidEvent(
            "exception.message",
            f"exception.message must be a string, got {_json_type(message)}",
        )
    return {"type": etype, "message": _text(message, limits.max_text_len)}


_FRAME_STR_FIELDS = ("module", "function", "filename")


def _frame(value: Any, path: str, limits: Limits) -> dict[str, Any]:
    if type(value) is not dict:
        raise InvalidEvent(path, f"{path} must be an object, got {_json_type(value)}")
    frame: dict[str, Any] = {}
    for name in _FRAME_STR_FIELDS:
        v = value.get(name)
        if v is not None:
            if type(v) is not str:
                raise InvalidEvent(
                    f"{path}.{name}", f"{path}.{name} must be a string, got {_json_type(v)}"
                )
            v = _text(v, limits.max_text_len)
        frame[name] = v
    lineno = value.get("lineno")
    if lineno is not None and (type(lineno) is not int or lineno < 0):
        raise InvalidEvent(
            f"{path}.lineno",
            f"{path}.lineno must be an integer >= 0, got {lineno!r}"
            if type(lineno) in (int, float)
            else f"{path}.lineno must be an integer >= 0, got {_json_type(lineno)}",
        )
    frame["lineno"] = lineno
    in_app = value.get("in_app")
    if in_app is not None and type(in_app) is not bool:
        raise InvalidEvent(
            f"{path}.in_app", f"{path}.in_app must be a boolean, got {_json_type(in_app)}"
        )
    frame["in_app"] = in_app
    return frame


def _stacktrace(value: Any, limits: Limits) -> tuple[list[dict[str, Any]] | None, int]:
    """Normalized frames (outermost first) and how many were omitted from the middle."""
    if value is None:
        return None, 0
    if type(value) is not list:
        raise InvalidEvent(
            "stacktrace", f"stacktrace must be an array of frames, got {_json_type(value)}"
        )
    frames = [_frame(f, f"stacktrace[{i}]", limits) for i, f in enumerate(value)]
    n = len(frames)
    if n <= limits.max_frames:
        return frames, 0
    head = limits.max_frames // 2
    tail = limits.max_frames - head
    return frames[:head] + (frames[n - tail :] if tail else []), n - limits.max_frames


def _fingerprint(value: Any, limits: Limits) -> list[str] | None:
    if value is None:
        return None
    if type(value) is not list or not value:
        raise InvalidEvent(
            "fingerprint",
            "fingerprint must be null or a non-empty array of strings, got "
            + ("an empty array" if type(value) is list else _json_type(value)),
        )
    for i, part in enumerate(value):
        path = f"fingerprint[{i}]"
        if type(part) is not str:
            raise InvalidEvent(path, f"{path} must be a string, got {_json_type(part)}")
        if len(part) > limits.max_id_len:
            raise InvalidEvent(
                path, f"{path} is {len(part)} characters, over the limit of {limits.max_id_len}"
            )
    return list(value)


def check_context(value: Any, limits: Limits) -> dict[str, Any] | None:
    """`context` as it is, once its depth and encoded size are within the limits."""
    if value is None:
        return None
    if type(value) is not dict:
        raise InvalidEvent("context", f"context must be an object, got {_json_type(value)}")
    # Iterative depth check (the context object itself is depth 1), stopping at the limit.
    max_depth = limits.max_context_depth
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise InvalidEvent("context", f"context is nested deeper than {max_depth} levels")
        children = node.values() if type(node) is dict else node
        for child in children:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        raise InvalidEvent("context", "context must contain only JSON values") from None
    if size > limits.max_context_bytes:
        raise InvalidEvent(
            "context",
            f"context is {size} bytes encoded, over the limit of {limits.max_context_bytes}",
        )
    return value


def normalized_tags(value: Any, limits: Limits) -> dict[str, str] | None:
    """Tags as str -> str; numbers and booleans are stringified, long values truncated."""
    if value is None:
        return None
    if type(value) is not dict:
        raise InvalidEvent("tags", f"tags must be an object, got {_json_type(value)}")
    if len(value) > limits.max_tags:
        raise InvalidEvent(
            "tags", f"tags has {len(value)} entries, over the limit of {limits.max_tags}"
        )
    out: dict[str, str] = {}
    for key, v in value.items():
        if type(key) is not str or not key or len(key) > limits.max_id_len:
            raise InvalidEvent(
                "tags",
                f"tags keys must be non-empty strings of at most {limits.max_id_len} characters",
            )
        t = type(v)
        if t is str:
            s = v
        elif t is bool:
            s = "true" if v else "false"
        elif t is int:
            s = str(v)
        elif t is float and math.isfinite(v):
            s = repr(v)
        else:
            path = f"tags.{key}"
            raise InvalidEvent(
                path,
                f"{path} must be a finite number"
                if t is float
                else f"{path} must be a string, number or boolean, got {_json_type(v)}",
            )
        out[key] = s if len(s) <= limits.max_id_len else _text(s, limits.max_id_len)
    return out


def _duration_ms(value: Any, limits: Limits) -> float:
    t = type(value)
    if t is float:
        if not math.isfinite(value):
            raise InvalidEvent("duration_ms", "duration_ms must be a finite number")
    elif t is not int:
        if value is None:
            raise InvalidEvent("duration_ms", "duration_ms is required for latency/1 events")
        raise InvalidEvent("duration_ms", f"duration_ms must be a number, got {_json_type(value)}")
    if value < 0:
        raise InvalidEvent("duration_ms", f"duration_ms must be >= 0, got {value}")
    if value > limits.max_duration_ms:
        raise InvalidEvent(
            "duration_ms",
            f"duration_ms {value} is absurd: over the limit of {limits.max_duration_ms:.0f} ms",
        )
    return float(value)


def _status(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not int:
        raise InvalidEvent(
            "status", f"status must be an integer HTTP status, got {_json_type(value)}"
        )
    if value < 100 or value > 599:
        raise InvalidEvent("status", f"status must be between 100 and 599, got {value}")
    return value


# --- events ----------------------------------------------------------------------------------


def _error_event(obj: dict[str, Any], now_ms: int, limits: Limits) -> dict[str, Any]:
    get = obj.get
    ts = _ts_ms(get("ts"), now_ms, limits)
    frames, omitted = _stacktrace(get("stacktrace"), limits)
    return {
        "schema": ERROR_SCHEMA,
        "event_id": _ident(get("event_id"), "event_id", limits, required=False) or None,
        "ts": ts,
        "service": _ident(get("service"), "service", limits, required=True),
        "env": _ident(get("env"), "env", limits, required=False),
        "release": _ident(get("release"), "release", limits, required=False),
        "host": _ident(get("host"), "host", limits, required=False),
        "severity": _severity(get("severity")),
        "exception": _exception(get("exception"), limits),
        "stacktrace": frames,
        "frames_omitted": omitted,
        "fingerprint": _fingerprint(get("fingerprint"), limits),
        "context": check_context(get("context"), limits),
        "tags": normalized_tags(get("tags"), limits),
    }


LatencyFields = tuple[Any, int, str, str, Any, Any, float, Any, Any]


def latency_fields(obj: dict[str, Any], now_ms: int, limits: Limits) -> LatencyFields:
    """Validate a latency/1 object (schema already checked) into its fields, in the order
    event_id, ts, service, endpoint, method, status, duration_ms, region, host.

    The hot path of the product; `normalized_latency` turns the result into the dict.
    """
    fields = _plain_latency_fields(obj, now_ms, limits)
    if fields is None:
        fields = _checked_latency_fields(obj, now_ms, limits)
    return fields


def plain_latency(value: Any, now_ms: int, limits: Limits) -> LatencyFields | None:
    """`latency_fields` of a message that is the common case, or None (never raises).

    The common case is one JSON object, a latency/1 event whose values all pass the
    fast check (`_plain_latency_fields`), with an `event_id`. For anything else (a
    tombstone, an oversized or undecodable message, an array, another schema, a value
    that needs a rule, no `event_id`) the caller takes the general path (`decode_batch`,
    then `latency_fields` or `validate_event` per element), which decodes the message
    again and handles it or says precisely why not.
    """
    try:
        if len(value) > limits.max_message_bytes:
            return None
        obj = orjson.loads(value)
        if type(obj) is not dict or obj.get("schema") != LATENCY_SCHEMA:
            return None
        fields = _plain_latency_fields(obj, now_ms, limits)
    except Exception:  # no value, not JSON, ...: the general path says what is wrong
        return None
    return fields if fields is not None and fields[0] is not None else None


def plain_latency_batch(value: Any, now_ms: int, limits: Limits) -> list[LatencyFields] | None:
    """`plain_latency` for a message that is one such event or a non-empty array of them
    (within the events-per-message limit): each event's fields, or None (never raises)."""
    try:
        if len(value) > limits.max_message_bytes:
            return None
        doc = orjson.loads(value)
    except Exception:
        return None
    if type(doc) is dict:
        objs = [doc]
    elif type(doc) is list and 0 < len(doc) <= limits.max_events_per_message:
        objs = doc
    else:
        return None
    out = []
    for obj in objs:
        try:
            if type(obj) is not dict or obj.get("schema") != LATENCY_SCHEMA:
                return None
            fields = _plain_latency_fields(obj, now_ms, limits)
        except Exception:
            return None
        if fields is None or fields[0] is None:
            return None
        out.append(fields)
    return out


def _plain_latency_fields(obj: dict[str, Any], now_ms: int, limits: Limits) -> LatencyFields | None:
    """The fields when every value is plainly valid (what events nearly always are), else
    None: then `_checked_latency_fields` applies the rules, which normalize or reject.

    This is only a shortcut: a value it accepts is one its rule accepts unchanged.
    """
    min_ts, max_ahead_ms, max_id, max_duration = limits.latency_bounds
    get = obj.get
    ts = get("ts")
    service = get("service")
    endpoint = get("endpoint")
    # Any, not Any | None: the check below (`type(duration) in _NUMBER_TYPES`) rules out
    # None, in a form a type checker does not follow.
    duration: Any = get("duration_ms")
    status = get("status")
    event_id = get("event_id")
    method = get("method")
    region = get("region")
    host = get("host")
    if not (
        type(ts) is int
        and ts >= min_ts
        and ts - now_ms <= max_ahead_ms
        and type(service) is str
        and 0 < len(service) <= max_id
        and type(endpoint) is str
        and 0 < len(endpoint) <= max_id
        and type(duration) in _NUMBER_TYPES
        and 0 <= duration <= max_duration
        and (status is None or (type(status) is int and 100 <= status <= 599))
        and (event_id is None or (type(event_id) is str and len(event_id) <= max_id))
        and (method is None or (type(method) is str and len(method) <= max_id))
        and (region is None or (type(region) is str and len(region) <= max_id))
        and (host is None or (type(host) is str and len(host) <= max_id))
    ):
        return None
    if type(duration) is not float:
        duration = float(duration)
    return (event_id or None, ts, service, endpoint, method, status, duration, region, host)


_NUMBER_TYPES = (float, int)  # not bool


def _checked_latency_fields(obj: dict[str, Any], now_ms: int, limits: Limits) -> LatencyFields:
    """`latency_fields` by the rules, field by field: normalizes or raises InvalidEvent."""
    get = obj.get
    ts = _ts_ms(get("ts"), now_ms, limits)
    service = _ident(get("service"), "service", limits, required=True)
    endpoint = _ident(get("endpoint"), "endpoint", limits, required=True)
    duration = _duration_ms(get("duration_ms"), limits)
    status = _status(get("status"))
    event_id = _ident(get("event_id"), "event_id", limits, required=False)
    method = _ident(get("method"), "method", limits, required=False)
    region = _ident(get("region"), "region", limits, required=False)
    host = _ident(get("host"), "host", limits, required=False)
    return (event_id or None, ts, service, endpoint, method, status, duration, region, host)


def normalized_latency(fields: LatencyFields) -> dict[str, Any]:
    """The normalized latency event (docs/contracts.md) from `latency_fields`' result."""
    event_id, ts, service, endpoint, method, status, duration, region, host = fields
    return {
        "schema": LATENCY_SCHEMA,
        "event_id": event_id,
        "ts": ts,
        "service": service,
        "endpoint": endpoint,
        "method": method,
        "status": status,
        "duration_ms": duration,
        "region": region,
        "host": host,
    }


def validate_event(obj: Any, now_ms: int, limits: Limits) -> dict[str, Any]:
    """Validate one decoded element and return its normalized dict (see docs/contracts.md).

    `event_id` is None when absent (or empty); the caller supplies a deterministic fallback.
    Unknown top-level fields are dropped.
    """
    if type(obj) is not dict:
        raise InvalidEvent("$", f"event must be a JSON object, got {_json_type(obj)}")
    schema = obj.get("schema")
    if schema == LATENCY_SCHEMA:
        return normalized_latency(latency_fields(obj, now_ms, limits))
    if schema == ERROR_SCHEMA:
        return _error_event(obj, now_ms, limits)
    if schema is None:
        raise InvalidEvent("schema", "schema is required (error/1 or latency/1)")
    raise InvalidEvent(
        "schema",
        f"schema must be one of {ERROR_SCHEMA!r}, {LATENCY_SCHEMA!r}, got "
        + (repr(schema[:64]) if type(schema) is str else _json_type(schema)),
    )
