"""Sentry's ingest protocol as prodmon reads it: auth, body decoding, envelopes, and the
mapping of Sentry events and transactions to `events.raw`'s error/1 and latency/1.

Pure: no sockets, no Kafka, no clock (callers pass "now"). The HTTP endpoint that uses it is
ops/sentry_ingest.py; docs/ingest.md ("Sentry SDKs") is the user's view of the mapping.

Must never log or return a key: `parse_auth` hands the key to its caller only.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from schemas.events import InvalidEvent, Limits, validate_event

__all__ = [
    "DROPPED_ITEM_TYPES",
    "BodyTooLarge",
    "EnvelopeError",
    "EnvelopeItem",
    "InvalidItem",
    "Project",
    "decode_body",
    "map_error",
    "map_item",
    "map_transaction",
    "parse_auth",
    "parse_envelope",
    "parse_projects",
]

# Item types the SDKs send that prodmon accepts and drops (counted by type); any other type
# is dropped too and counted as "other".
DROPPED_ITEM_TYPES = frozenset(
    {
        "session",
        "sessions",
        "client_report",
        "attachment",
        "user_report",
        "feedback",
        "check_in",
        "profile",
        "profile_chunk",
        "replay_event",
        "replay_recording",
        "replay_video",
        "statsd",
        "metric_meta",
        "span",
        "log",
        "otel_log",
        "security",
    }
)

# Sentry level -> prodmon severity.
LEVELS = {
    "fatal": "critical",
    "error": "high",
    "warning": "medium",
    "warn": "medium",
    "info": "low",
    "log": "low",
    "debug": "low",
}

# Sentry span status (`contexts.trace.status`) -> the HTTP status Sentry itself pairs with it.
SPAN_STATUS_HTTP = {
    "ok": 200,
    "cancelled": 499,
    "unknown": 500,
    "unknown_error": 500,
    "invalid_argument": 400,
    "deadline_exceeded": 504,
    "not_found": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "resource_exhausted": 429,
    "failed_precondition": 400,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal_error": 500,
    "unavailable": 503,
    "data_loss": 500,
    "unauthenticated": 401,
}

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class EnvelopeError(ValueError):
    """The body is not an envelope (its framing is broken): the whole request is refused."""


class BodyTooLarge(ValueError):
    """The body, once decompressed, is over the configured limit."""


class InvalidItem(ValueError):
    """One item cannot become a prodmon event: it goes to `events.dlq` with this reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


# --- projects and auth -----------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """One `[sentry.projects.<id>]` table: its public keys and the defaults of its events."""

    id: str
    keys: frozenset[str] = field(repr=False)
    service: str | None = None
    env: str | None = None


def parse_projects(table: Any, env: Any) -> dict[str, Project]:
    """Projects from `[sentry.projects]` (or the same as a JSON string from the environment).

    A key written `$NAME` is read from the environment variable NAME. Raises ValueError
    naming the key that is wrong (never showing a key's value).
    """
    if isinstance(table, str):
        try:
            table = orjson.loads(table) if table.strip() else {}
        except orjson.JSONDecodeError:
            raise ValueError("sentry.projects: expected a JSON object of project tables") from None
    if not isinstance(table, dict):
        raise ValueError("sentry.projects: expected [sentry.projects.<id>] tables")
    projects: dict[str, Project] = {}
    for pid, spec in table.items():
        where = f"sentry.projects.{pid}"
        if not str(pid).isdigit():
            raise ValueError(f"{where}: a project id is a number (the DSN's last path part)")
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: expected a table with keys, service, env")
        unknown = set(spec) - {"keys", "service", "env"}
        if unknown:
            raise ValueError(
                f"{where}: unknown key {sorted(unknown)[0]!r} (allowed: keys, service, env)"
            )
        raw_keys = spec.get("keys", [])
        if isinstance(raw_keys, str):
            raw_keys = [raw_keys]
        if not isinstance(raw_keys, list) or not all(isinstance(k, str) for k in raw_keys):
            raise ValueError(f"{where}.keys: expected a list of strings")
        keys = set()
        for i, key in enumerate(raw_keys):
            if key.startswith("$"):
                value = env.get(key[1:], "")
                if not value:
                    raise ValueError(
                        f"{where}.keys[{i}]: environment variable {key[1:]} is not set"
                    )
                key = value
            if not key.strip():
                raise ValueError(f"{where}.keys[{i}]: empty key")
            keys.add(key.strip())
        if not keys:
            raise ValueError(f"{where}.keys: at least one public key is required")
        for name in ("service", "env"):
            value = spec.get(name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{where}.{name}: expected a non-empty string")
        projects[str(pid)] = Project(
            str(pid), frozenset(keys), spec.get("service"), spec.get("env")
        )
    return projects


def parse_auth(header: str | None, query_key: str | None) -> str | None:
    """The public key of a request: `X-Sentry-Auth: Sentry sentry_key=..., ...` (or the same
    in `Authorization`), else `?sentry_key=`; None when there is none."""
    if header:
        text = header.strip()
        if text[:7].lower() == "sentry ":
            text = text[7:]
        for part in text.split(","):
            name, _, value = part.strip().partition("=")
            if name.strip() == "sentry_key" and value.strip():
                return value.strip()
    if query_key and query_key.strip():
        return query_key.strip()
    return None


# --- bodies ----------------------------------------------------------------------------------


def decode_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body decompressed per `Content-Encoding` (gzip, deflate, br or none), at most
    `limit` bytes: over it raises BodyTooLarge (without inflating the rest); a corrupt
    stream or an unknown encoding raises EnvelopeError."""
    coding = (encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        if len(body) > limit:
            raise BodyTooLarge(f"body is {len(body)} bytes, over the limit of {limit}")
        return body
    if coding in ("gzip", "x-gzip", "deflate"):
        # gzip: wbits 16+; deflate: zlib-wrapped per RFC 9110, raw deflate accepted too.
        if coding == "deflate":
            wbits = zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS
        else:
            wbits = 16 + zlib.MAX_WBITS
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise EnvelopeError(f"{coding} body cannot be decompressed ({exc})") from None
        if len(out) > limit:
            raise BodyTooLarge(f"decompressed body is over the limit of {limit} bytes")
        if not inflater.eof:
            raise EnvelopeError(f"{coding} body is truncated")
        return out
    if coding == "br":
        import brotli  # type: ignore[import-untyped]

        decompressor = brotli.Decompressor()
        try:
            out = decompressor.process(body, output_buffer_limit=limit + 1)
            if len(out) > limit or not decompressor.is_finished():
                if len(out) > limit or not decompressor.can_accept_more_data():
                    raise BodyTooLarge(f"decompressed body is over the limit of {limit} bytes")
                raise EnvelopeError("br body is truncated")
        except brotli.error as exc:
            raise EnvelopeError(f"br body cannot be decompressed ({exc})") from None
        return bytes(out)
    raise EnvelopeError(f"Content-Encoding {coding[:40]!r} is not supported (gzip, deflate, br)")


# --- envelopes -------------------------------------------------------------------------------


@dataclass
class EnvelopeItem:
    type: str
    headers: dict[str, Any]
    payload: bytes


def _json_line(data: bytes, where: str) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise EnvelopeError(f"{where} is not valid JSON") from None
    if not isinstance(value, dict):
        raise EnvelopeError(f"{where} must be a JSON object")
    return value


def parse_envelope(body: bytes) -> tuple[dict[str, Any], list[EnvelopeItem]]:
    """Split an envelope into its header and items (payloads as bytes, not decoded).

    An item header with `length` takes exactly that many bytes (then an optional newline);
    without it the payload runs to the next newline. Broken framing raises EnvelopeError.
    """
    data = bytes(body)
    end = data.find(b"\n")
    header = _json_line(data if end < 0 else data[:end], "envelope header")
    pos = len(data) if end < 0 else end + 1
    items: list[EnvelopeItem] = []
    size = len(data)
    while pos < size:
        end = data.find(b"\n", pos)
        line = data[pos:] if end < 0 else data[pos:end]
        pos = size if end < 0 else end + 1
        if not line.strip():
            continue
        where = f"item {len(items)} header"
        item_header = _json_line(line, where)
        item_type = item_header.get("type")
        if not isinstance(item_type, str) or not item_type:
            raise EnvelopeError(f"{where} has no type")
        length = item_header.get("length")
        if length is not None:
            if type(length) is not int or length < 0:
                raise EnvelopeError(f"{where}: length must be an integer >= 0")
            if pos + length > size:
                raise EnvelopeError(f"{where}: length {length} runs past the end of the body")
            payload = data[pos : pos + length]
            pos += length
            if data[pos : pos + 1] == b"\n":
                pos += 1
        else:
            end = data.find(b"\n", pos)
            payload = data[pos:] if end < 0 else data[pos:end]
            pos = size if end < 0 else end + 1
        items.append(EnvelopeItem(item_type, item_header, payload))
    return header, items


# --- mapping ---------------------------------------------------------------------------------


def _ts_ms(value: Any, field_name: str) -> int:
    """A Sentry timestamp (epoch seconds, or an RFC 3339 string) as epoch ms."""
    if type(value) in (int, float) and math.isfinite(value):
        return round(value * 1000)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidItem(field_name, f"{field_name} is not an RFC 3339 timestamp") from None
        if parsed.tzinfo is None:
            from datetime import UTC

            parsed = parsed.replace(tzinfo=UTC)
        return round(parsed.timestamp() * 1000)
    raise InvalidItem(field_name, f"{field_name} must be a number of seconds or an RFC 3339 string")


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _tags(value: Any, limits: Limits) -> dict[str, str]:
    """Sentry tags (an object, or a list of [key, value] pairs) as str -> str, bounded."""
    pairs = value.items() if isinstance(value, dict) else value if isinstance(value, list) else ()
    out: dict[str, str] = {}
    for pair in pairs:
        if isinstance(value, list) and (not isinstance(pair, list | tuple) or len(pair) != 2):
            continue
        key, v = pair
        if not isinstance(key, str) or not key or len(key) > limits.max_id_len or v is None:
            continue
        if len(out) >= limits.max_tags:
            break
        out[key] = v if isinstance(v, str) else orjson.dumps(v).decode()
    return out


def _clip(value: Any, depth_left: int) -> Any:
    """`value` with containers nested deeper than `depth_left` replaced by their JSON text."""
    if isinstance(value, dict | list):
        if depth_left <= 0:
            return orjson.dumps(value).decode()[:200]
        if isinstance(value, dict):
            return {str(k): _clip(v, depth_left - 1) for k, v in value.items()}
        return [_clip(v, depth_left - 1) for v in value]
    return value


def _bounded_context(parts: list[tuple[str, Any]], limits: Limits) -> dict[str, Any]:
    """The context parts in priority order, each kept only if the whole still fits the
    context limits (depth and encoded size): a big optional part is left out, not the event."""
    context: dict[str, Any] = {}
    size = 2
    budget = limits.max_context_bytes
    for name, value in parts:
        if value is None or value == {} or value == []:
            continue
        clipped = _clip(value, limits.max_context_depth - 2)
        try:
            cost = len(orjson.dumps({name: clipped}))
        except (TypeError, orjson.JSONEncodeError):
            continue
        if size + cost <= budget:
            context[name] = clipped
            size += cost
    return context


def _frames(stacktrace: Any) -> list[dict[str, Any]] | None:
    """Sentry frames (caller first, the raising frame last: the same order as prodmon's
    outermost-first stacktrace) as prodmon frames."""
    if not isinstance(stacktrace, dict):
        return None
    frames = stacktrace.get("frames")
    if not isinstance(frames, list):
        return None
    out = []
    for frame in frames:
        if not isinstance(frame, dict):
            continue
        lineno = frame.get("lineno")
        in_app = frame.get("in_app")
        out.append(
            {
                "module": _str(frame.get("module")) or _str(frame.get("package")),
                "function": _str(frame.get("function")),
                "filename": _str(frame.get("filename")) or _str(frame.get("abs_path")),
                "lineno": lineno if type(lineno) is int and lineno >= 0 else None,
                "in_app": in_app if isinstance(in_app, bool) else None,
            }
        )
    return out


def _message(event: dict[str, Any]) -> str:
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        return _str(logentry.get("formatted")) or _str(logentry.get("message")) or ""
    message = event.get("message")
    if isinstance(message, dict):
        return _str(message.get("formatted")) or _str(message.get("message")) or ""
    return _str(message) or ""


def _common(event: dict[str, Any], project: Project, now_ms: int) -> dict[str, Any]:
    """The fields error and latency events share: ids, time, service, env, host, release."""
    tags = event.get("tags")
    service = None
    if isinstance(tags, dict):
        service = _str(tags.get("service"))
    elif isinstance(tags, list):
        service = next(
            (_str(p[1]) for p in tags if isinstance(p, list) and len(p) == 2 and p[0] == "service"),
            None,
        )
    ts = event.get("timestamp")
    return {
        "event_id": _str(event.get("event_id")),
        "ts": now_ms if ts is None else _ts_ms(ts, "timestamp"),
        "service": service or project.service or f"sentry-{project.id}",
        "host": _str(event.get("server_name")),
    }


def map_error(
    event: dict[str, Any], project: Project, now_ms: int, limits: Limits
) -> dict[str, Any]:
    """A Sentry error (or message) event as an error/1 event (not yet validated)."""
    exception = event.get("exception")
    values = exception.get("values") if isinstance(exception, dict) else exception
    values = [v for v in values if isinstance(v, dict)] if isinstance(values, list) else []
    message = _message(event)
    if values:
        primary = values[-1]  # Sentry lists chained exceptions oldest first
        exc_type = _str(primary.get("type")) or "Error"
        exc_message = _str(primary.get("value")) or message
        stacktrace = _frames(primary.get("stacktrace"))
    else:
        exc_type = "Message"
        exc_message = message
        stacktrace = _frames(event.get("stacktrace"))
        threads = event.get("threads")
        thread_list = threads.get("values") if isinstance(threads, dict) else threads
        if stacktrace is None and isinstance(thread_list, list):
            for thread in thread_list:
                if isinstance(thread, dict) and (thread.get("crashed") or thread.get("current")):
                    stacktrace = _frames(thread.get("stacktrace"))
                    break
    if not values and not exc_message:
        raise InvalidItem("exception", "event has neither an exception nor a message")
    level = event.get("level")
    if level is not None and (not isinstance(level, str) or level.lower() not in LEVELS):
        raise InvalidItem("level", f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    fingerprint = event.get("fingerprint")
    if fingerprint is not None:
        if not isinstance(fingerprint, list):
            raise InvalidItem("fingerprint", "fingerprint must be an array of strings")
        fingerprint = [p if isinstance(p, str) else orjson.dumps(p).decode() for p in fingerprint]
    request = event.get("request")
    sdk = event.get("sdk")
    sentry_part = {
        "project": project.id,
        "level": level,
        "platform": _str(event.get("platform")),
        "logger": _str(event.get("logger")),
        "transaction": _str(event.get("transaction")),
        "sdk": {"name": sdk.get("name"), "version": sdk.get("version")}
        if isinstance(sdk, dict)
        else None,
    }
    chain = [{"type": v.get("type"), "value": v.get("value")} for v in values[:-1]]
    contexts = _object(event.get("contexts"))
    # Priority order: what identifies and explains the event first, bulky detail last.
    parts: list[tuple[str, Any]] = [
        ("sentry", {k: v for k, v in sentry_part.items() if v is not None}),
        ("user", event.get("user") if isinstance(event.get("user"), dict) else None),
        ("exception_chain", chain),
        (
            "request",
            {k: request.get(k) for k in ("method", "url") if request.get(k)}
            if isinstance(request, dict)
            else None,
        ),
    ]
    for name in ("trace", "runtime", "os", "device", "app", "browser", "response"):
        parts.append((f"contexts.{name}", contexts.get(name)))
    for name, value in contexts.items():
        if f"contexts.{name}" not in dict(parts):
            parts.append((f"contexts.{name}", value))
    parts.append(("extra", event.get("extra")))
    context = _bounded_context(parts, limits)
    out = {
        "schema": "error/1",
        **_common(event, project, now_ms),
        "env": _str(event.get("environment")) or project.env,
        "release": _str(event.get("release")),
        "severity": LEVELS[level.lower()] if isinstance(level, str) else "high",
        "exception": {"type": exc_type, "message": exc_message},
        "stacktrace": stacktrace,
        "fingerprint": fingerprint,
        "context": context or None,
        "tags": _tags(event.get("tags"), limits) or None,
    }
    return {k: v for k, v in out.items() if v is not None}


def _http_status(event: dict[str, Any]) -> int | None:
    contexts = _object(event.get("contexts"))
    response = contexts.get("response")
    candidates: list[Any] = []
    if isinstance(response, dict):
        candidates.append(response.get("status_code"))
    trace = contexts.get("trace")
    data = trace.get("data") if isinstance(trace, dict) else None
    if isinstance(data, dict):
        candidates += [data.get("http.response.status_code"), data.get("http.status_code")]
    tags = event.get("tags")
    if isinstance(tags, dict):
        candidates.append(tags.get("http.status_code"))
    for value in candidates:
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if type(value) is int and 100 <= value <= 599:
            return value
    status = trace.get("status") if isinstance(trace, dict) else None
    return SPAN_STATUS_HTTP.get(status) if isinstance(status, str) else None


def map_transaction(
    event: dict[str, Any], project: Project, now_ms: int, limits: Limits
) -> dict[str, Any]:
    """A Sentry transaction as a latency/1 event: the whole transaction's duration (its spans
    are not mapped)."""
    name = _str(event.get("transaction"))
    if name is None:
        raise InvalidItem("transaction", "transaction has no name")
    start, end = event.get("start_timestamp"), event.get("timestamp")
    if start is None or end is None:
        raise InvalidItem("start_timestamp", "transaction needs start_timestamp and timestamp")
    start_ms = _ts_ms(start, "start_timestamp")
    end_exact = end * 1000 if type(end) in (int, float) else _ts_ms(end, "timestamp")
    start_exact = start * 1000 if type(start) in (int, float) else start_ms
    duration = end_exact - start_exact
    if not math.isfinite(duration) or duration < 0:
        raise InvalidItem("timestamp", "transaction ends before it starts")
    method = None
    request = event.get("request")
    if isinstance(request, dict):
        method = _str(request.get("method"))
    verb, _, rest = name.partition(" ")
    if verb in HTTP_METHODS and rest:
        method, name = method or verb, rest
    tags = event.get("tags")
    out = {
        "schema": "latency/1",
        **_common(event, project, now_ms),
        "ts": _ts_ms(end, "timestamp"),
        "endpoint": name,
        "method": method.upper() if method else None,
        "status": _http_status(event),
        "duration_ms": round(duration, 3),
        "region": _str(tags.get("region")) if isinstance(tags, dict) else None,
    }
    return {k: v for k, v in out.items() if v is not None}


def map_item(
    item_type: str, payload: bytes, project: Project, now_ms: int, limits: Limits
) -> dict[str, Any]:
    """One `event` or `transaction` payload as a validated prodmon raw event; InvalidItem
    says why it cannot be one."""
    if len(payload) > limits.max_message_bytes:
        raise InvalidItem(
            "$",
            f"{item_type} is {len(payload)} bytes, over the limit of {limits.max_message_bytes}",
        )
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidItem("$", f"{item_type} payload is not valid JSON ({exc})") from None
    if not isinstance(event, dict):
        raise InvalidItem("$", f"{item_type} payload must be a JSON object")
    if item_type == "transaction" or event.get("type") == "transaction":
        mapped = map_transaction(event, project, now_ms, limits)
    else:
        mapped = map_error(event, project, now_ms, limits)
    try:
        validate_event(mapped, now_ms, limits)
    except InvalidEvent as exc:
        raise InvalidItem(exc.field, exc.reason) from None
    return mapped
