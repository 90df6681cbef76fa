"""Build `events.raw` error and latency events (design.md input contract) from SDK calls.

Every builder returns a plain dict that is already within the limits of `schemas.events`
(identifiers bounded, texts truncated the way ingest truncates them, context JSON-only and
small enough, tags str -> str, at most `max_frames` frames), so ingest's normalization changes
no value and the fingerprint the SDK computes on the event is the one the pipeline computes.
Builders never look at Kafka; `client.py` buffers and sends what they return.
"""

from __future__ import annotations

import datetime as _dt
import enum
import math
import os
import socket
import sys
import sysconfig
import time
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from types import TracebackType
from typing import Any

import orjson

from schemas.events import ERROR_SCHEMA, LATENCY_SCHEMA, SEVERITIES, TRUNCATION_MARKER, Limits

__all__ = [
    "DEFAULT_SEVERITY",
    "build_error_event",
    "build_latency_event",
    "coerce_severity",
    "default_host",
    "exception_type_name",
    "new_event_id",
    "now_ms",
    "stack_frames",
]

DEFAULT_SEVERITY = "medium"
LIMITS = Limits()
MAX_ID_LEN = LIMITS.max_id_len
MAX_TEXT_LEN = LIMITS.max_text_len
MAX_FRAMES = LIMITS.max_frames
MAX_CONTEXT_DEPTH = LIMITS.max_context_depth
MAX_CONTEXT_BYTES = LIMITS.max_context_bytes
MAX_TAGS = LIMITS.max_tags
MAX_DURATION_MS = float(LIMITS.max_duration_ms)
# Context strings and containers are cut short well before the encoded-size limit.
MAX_CONTEXT_STR = 1024
MAX_CONTEXT_ITEMS = 100
_INT64 = 1 << 63

OnCoerce = Callable[[str], None]


def now_ms() -> int:
    """Current wall-clock time as integer epoch milliseconds."""
    return time.time_ns() // 1_000_000


def new_event_id() -> str:
    """A fresh, unique event id: the 32-hex form of a random UUID4 (`uuid.uuid4().hex`).

    Built from os.urandom directly: the same bits as uuid4, at a third of the cost.
    """
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    return b.hex()


def default_host() -> str:
    """This machine's host name, bounded to the identifier limit."""
    try:
        return bounded_id(socket.gethostname()) or "unknown"
    except Exception:
        return "unknown"


def bounded_id(value: Any) -> str:
    """An identifier as a string of at most `MAX_ID_LEN` characters (ingest rejects longer)."""
    text = value if type(value) is str else str(value)
    return text if len(text) <= MAX_ID_LEN else text[:MAX_ID_LEN]


def bounded_text(value: str, limit: int = MAX_TEXT_LEN) -> str:
    """Free text truncated exactly as ingest truncates it (`schemas.events`)."""
    if len(value) <= limit:
        return value
    return value[: max(limit - len(TRUNCATION_MARKER), 0)] + TRUNCATION_MARKER


def coerce_severity(value: Any) -> tuple[str, bool]:
    """(severity, valid): one of critical/high/medium/low, case-insensitive; else medium."""
    if type(value) is str:
        if value in SEVERITIES:
            return value, True
        lowered = value.strip().lower()
        if lowered in SEVERITIES:
            return lowered, True
    return DEFAULT_SEVERITY, False


# --- exceptions and stack frames -------------------------------------------------------------


def exception_type_name(exc: Any) -> str:
    """`ValueError` for builtins, `package.module.QualName` for everything else."""
    cls = exc if isinstance(exc, type) else type(exc)
    qualname = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "Exception")
    module = getattr(cls, "__module__", None)
    name = qualname if not module or module == "builtins" else f"{module}.{qualname}"
    return bounded_id(name)


def exception_message(exc: Any) -> str:
    """`str(exc)`, bounded; never raises, even for exceptions whose __str__ fails."""
    try:
        text = str(exc)
    except Exception:
        try:
            text = f"<unprintable {type(exc).__name__}>"
        except Exception:
            text = "<unprintable>"
    return bounded_text(text)


def _stdlib_prefixes() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    found = {
        os.path.normcase(os.path.abspath(paths[key]))
        for key in ("stdlib", "platstdlib")
        if paths.get(key)
    }
    return tuple(sorted(p.rstrip(os.sep) + os.sep for p in found))


_STDLIB = _stdlib_prefixes()


def _is_in_app(filename: str) -> bool:
    if filename.startswith("<"):
        # <frozen importlib._bootstrap> is the stdlib; <string>/<stdin> are the app's code.
        return not filename.startswith("<frozen")
    lowered = filename.lower()
    if "site-packages" in lowered or "dist-packages" in lowered:
        return False
    return not os.path.normcase(os.path.abspath(filename)).startswith(_STDLIB)


def _module_relative(filename: str, module: str) -> str | None:
    """`pkg/mod.py` when `filename` is where `module` lives, else None."""
    if not module or module == "__main__":
        return None
    norm = filename.replace("\\", "/")
    base = module.replace(".", "/")
    for tail in (base + ".py", base + "/__init__.py", base + ".pyc"):
        if norm == tail or norm.endswith("/" + tail):
            return tail
    return None


def _syspath_relative(filename: str) -> str | None:
    """`filename` relative to the longest `sys.path` entry holding it, else None."""
    if filename.startswith("<"):
        return None
    path = os.path.abspath(filename)
    best = ""
    for entry in sys.path:
        if not isinstance(entry, str):
            continue
        root = os.path.abspath(entry or os.curdir)
        if len(root) > len(best) and path.startswith(root.rstrip(os.sep) + os.sep):
            best = root
    if not best:
        return None
    return path[len(best.rstrip(os.sep)) + 1 :].replace(os.sep, "/")


@lru_cache(maxsize=8192)
def _file_info(filename: str, module: str) -> tuple[str, bool]:
    """(portable filename, in_app) for a code file; cached, so frames cost a dict lookup."""
    try:
        in_app = _is_in_app(filename)
        rel = _module_relative(filename, module) or _syspath_relative(filename) or filename
        return bounded_text(rel), in_app
    except Exception:
        return bounded_text(filename), True


def stack_frames(tb: TracebackType | None, max_frames: int = MAX_FRAMES) -> list[dict[str, Any]]:
    """Frames of a traceback, outermost (where it was caught) first, innermost (raise) last.

    Over `max_frames`, keeps the first half and the rest from the end, as ingest does.
    """
    frames: list[dict[str, Any]] = []
    seen = 0
    while tb is not None and seen < 100_000:
        frame = tb.tb_frame
        code = frame.f_code
        module = frame.f_globals.get("__name__")
        module = module if type(module) is str else ("" if module is None else str(module))
        filename, in_app = _file_info(code.co_filename or "<unknown>", module)
        frames.append(
            {
                "module": bounded_text(module) if module else None,
                "function": bounded_text(code.co_name),
                "filename": filename,
                "lineno": tb.tb_lineno if (tb.tb_lineno or 0) >= 0 else None,
                "in_app": in_app,
            }
        )
        tb = tb.tb_next
        seen += 1
    if len(frames) > max_frames:
        head = max_frames // 2
        tail = max_frames - head
        frames = frames[:head] + (frames[len(frames) - tail :] if tail else [])
    return frames


# --- context, tags, fingerprint --------------------------------------------------------------


def _scalar(value: Any) -> Any:
    """A JSON scalar for a non-container value, or its bounded string form."""
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        value = int(value)
        return value if -_INT64 <= value < _INT64 else str(value)
    if isinstance(value, float):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return bounded_text(str(value), MAX_CONTEXT_STR)
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bounded_text(bytes(value).decode("utf-8", errors="replace"), MAX_CONTEXT_STR)
    try:
        text = str(value)
    except Exception:
        text = f"<unprintable {type(value).__name__}>"
    return bounded_text(text, MAX_CONTEXT_STR)


def _jsonable(value: Any, depth: int) -> Any:
    """JSON-only copy of `value`; containers deeper than the context limit become strings."""
    if isinstance(value, Mapping):
        if depth > MAX_CONTEXT_DEPTH:
            return _scalar(value)
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= MAX_CONTEXT_ITEMS:
                break
            out[bounded_id(k)] = _jsonable(v, depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        if depth > MAX_CONTEXT_DEPTH:
            return _scalar(value)
        items = value if isinstance(value, list | tuple) else list(value)
        return [_jsonable(v, depth + 1) for v in items[:MAX_CONTEXT_ITEMS]]
    return _scalar(value)


def sanitize_context(context: Any, on_coerce: OnCoerce | None = None) -> dict[str, Any] | None:
    """A JSON-only snapshot of the caller's context within ingest's depth and size limits."""
    if context is None:
        return None
    if not isinstance(context, Mapping):
        if on_coerce:
            on_coerce("context")
        context = {"value": context}
    out = _jsonable(context, 1)
    size = len(orjson.dumps(out))
    if size > MAX_CONTEXT_BYTES:
        if on_coerce:
            on_coerce("context")
        out = {"_truncated": f"context was {size} bytes encoded, over {MAX_CONTEXT_BYTES}"}
    return out


def sanitize_tags(tags: Any, on_coerce: OnCoerce | None = None) -> dict[str, str] | None:
    """Tags as at most `MAX_TAGS` non-empty str keys to bounded str values."""
    if tags is None:
        return None
    if not isinstance(tags, Mapping):
        if on_coerce:
            on_coerce("tags")
        return None
    out: dict[str, str] = {}
    for key, value in tags.items():
        if len(out) >= MAX_TAGS:
            if on_coerce:
                on_coerce("tags")
            break
        k = bounded_id(key)
        if not k or value is None:
            continue
        t = type(value)
        if t is str:
            v = value
        elif t is bool:
            v = "true" if value else "false"
        elif t is float:
            v = repr(value) if math.isfinite(value) else str(value)
        else:
            v = str(value)
        out[k] = bounded_id(v)
    return out


def sanitize_fingerprint(parts: Any, on_coerce: OnCoerce | None = None) -> list[str] | None:
    """An explicit grouping fingerprint as a non-empty list of bounded strings, or None."""
    if parts is None:
        return None
    if isinstance(parts, str | bytes):
        parts = [parts.decode("utf-8", "replace") if isinstance(parts, bytes) else parts]
    if not isinstance(parts, Iterable):
        parts = [parts]
    out = [bounded_id(p) for p in parts]
    if not out:
        if on_coerce:
            on_coerce("fingerprint")
        return None
    return out


# --- events ----------------------------------------------------------------------------------


def build_error_event(
    exc: Any,
    *,
    service: str,
    env: str | None,
    release: str | None,
    host: str | None,
    severity: str = DEFAULT_SEVERITY,
    context: Any = None,
    tags: Any = None,
    fingerprint: Any = None,
    ts: int | None = None,
    on_coerce: OnCoerce | None = None,
) -> dict[str, Any]:
    """An `error/1` event for `exc` (an exception, raised or not; anything else is stringified).

    `severity` must already be valid (see `coerce_severity`). The stack trace comes from
    `exc.__traceback__`; an exception that was never raised has an empty one.
    """
    if isinstance(exc, BaseException):
        etype = exception_type_name(exc)
        message = exception_message(exc)
        frames = stack_frames(exc.__traceback__)
    else:
        etype = exception_type_name(exc) if exc is not None else "None"
        message = exception_message(exc)
        frames = []
    return {
        "schema": ERROR_SCHEMA,
        "event_id": new_event_id(),
        "ts": now_ms() if ts is None else int(ts),
        "service": service,
        "env": env,
        "release": release,
        "host": host,
        "severity": severity,
        "exception": {"type": etype, "message": message},
        "stacktrace": frames,
        "fingerprint": sanitize_fingerprint(fingerprint, on_coerce),
        "context": sanitize_context(context, on_coerce),
        "tags": sanitize_tags(tags, on_coerce),
    }


def _coerce_status(status: Any, on_coerce: OnCoerce | None) -> int | None:
    if status is None:
        return None
    try:
        code = int(status) if type(status) is not bool else None
    except (TypeError, ValueError, OverflowError):
        code = None
    if code is None or not 100 <= code <= 599:
        if on_coerce:
            on_coerce("status")
        return None
    return code


def _coerce_ts(ts: Any) -> int:
    """Epoch ms from None (now), epoch ms, epoch seconds (< 1e11), a datetime or ISO text."""
    if ts is None:
        return now_ms()
    if isinstance(ts, str):
        ts = _dt.datetime.fromisoformat(ts)
    if isinstance(ts, _dt.datetime):
        if ts.tzinfo is None:
            ts = ts.astimezone()
        return int(ts.timestamp() * 1000)
    value = float(ts)
    if not math.isfinite(value):
        raise ValueError("ts must be finite")
    return int(value * 1000) if value < 1e11 else int(value)


def build_latency_event(
    endpoint: Any,
    duration_ms: Any,
    *,
    service: str,
    env: str | None,
    release: str | None,
    host: str | None,
    status: Any = None,
    method: Any = None,
    region: Any = None,
    ts: Any = None,
    on_coerce: OnCoerce | None = None,
) -> dict[str, Any]:
    """A `latency/1` event. Raises ValueError for a duration ingest would reject
    (not a finite number in [0, 3_600_000] ms) or an empty endpoint: the client drops those."""
    if isinstance(duration_ms, _dt.timedelta):
        duration = duration_ms.total_seconds() * 1000.0
    elif type(duration_ms) is bool:
        raise ValueError("duration_ms must be a number")
    else:
        duration = float(duration_ms)
    if not math.isfinite(duration) or duration < 0 or duration > MAX_DURATION_MS:
        raise ValueError(f"duration_ms {duration_ms!r} is out of range")
    endpoint_s = bounded_id(endpoint) if endpoint is not None else ""
    if not endpoint_s:
        raise ValueError("endpoint is required")
    return {
        "schema": LATENCY_SCHEMA,
        "event_id": new_event_id(),
        "ts": _coerce_ts(ts),
        "service": service,
        "endpoint": endpoint_s,
        "method": bounded_id(method).upper() if method is not None else None,
        "status": _coerce_status(status, on_coerce),
        "duration_ms": duration,
        "region": bounded_id(region) if region is not None else None,
        "host": host,
        "env": env,
        "release": release,
    }
