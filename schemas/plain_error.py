"""Decode and check a plain error message in one step (the error path's fast decoder).

A plain message is one error/1 event, or a non-empty array of them within the
events-per-message limit, whose values need no rule beyond a type or a bound: an
integer `ts`, a non-empty `event_id`, strings within their limits (nothing to truncate),
no more frames than the limit, tags whose values are such strings. msgspec decodes such
a message into structs and checks those bounds while it decodes (in C);
`PlainErrorReader.read` then applies the few rules msgspec cannot (the future bound of
`ts`, and the `context` rules, which run on exactly what orjson decodes). Each struct
encodes straight to the normalized event's JSON, so the event is never built as a dict
nor encoded by the runtime. Decoded, that JSON equals what
`schemas.events.validate_event` returns for the same event: tests/test_plain_error.py
holds the two to that.

Anything else (another schema, a mixed array, a value a rule would normalize or reject)
returns None, and the caller takes the general path, which handles it or says precisely
what is wrong. As for latency (schemas/plain_latency.py), one difference on purpose: in a
field the schema does not know, msgspec skips a number beyond double range (1e400) where
orjson refuses the whole message.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
import orjson
from msgspec import Meta

from schemas.events import (
    DEFAULT_SEVERITY,
    ERROR_SCHEMA,
    Limits,
    check_context,
)

__all__ = ["PlainErrorReader", "encode_error"]

# orjson decodes integers beyond 64 bits as floats, which the rules refuse; msgspec keeps
# them as ints. Bounding them sends such values down the general path.
_INT64_MAX = 2**63 - 1


class PlainErrorDecoder(NamedTuple):
    """`decode(value)` gives one event struct or a list of them; raises if not plain."""

    decode: Any
    event: type


@lru_cache(maxsize=8)
def plain_error_decoder(limits: Limits) -> PlainErrorDecoder:
    """The decoder for `limits` (built once per distinct limits).

    The event struct's fields are in the order of the normalized event, followed by the
    fields ingest adds, so that encoding it gives the normalized event's JSON. Fields that
    only ingest sets are overwritten whatever the input held.
    """
    ident = Annotated[str, Meta(min_length=1, max_length=limits.max_id_len)]
    optional_ident = Annotated[str, Meta(max_length=limits.max_id_len)] | None
    text = Annotated[str, Meta(max_length=limits.max_text_len)] | None
    # The struct types are made here, at run time, from `limits`: a type checker cannot
    # know their fields, so they are typed Any (as are the types built from them).
    frame: Any = msgspec.defstruct(
        "PlainFrame",
        [
            ("module", text, None),
            ("function", text, None),
            ("filename", text, None),
            ("lineno", Annotated[int, Meta(ge=0, le=_INT64_MAX)] | None, None),
            ("in_app", bool | None, None),
        ],
        gc=False,
    )
    exception = msgspec.defstruct(
        "PlainException", [("type", ident), ("message", text, None)], gc=False
    )
    part = Annotated[str, Meta(max_length=limits.max_id_len)]
    event: Any = msgspec.defstruct(
        "PlainError",
        [
            ("schema", Literal[ERROR_SCHEMA]),
            ("event_id", ident),
            ("ts", Annotated[int, Meta(ge=limits.min_ts, le=_INT64_MAX)]),
            ("service", ident),
            ("env", optional_ident, None),
            ("release", optional_ident, None),
            ("host", optional_ident, None),
            ("severity", Literal["critical", "high", "medium", "low"] | None, None),
            ("exception", exception),
            ("stacktrace", Annotated[list[frame], Meta(max_length=limits.max_frames)] | None, None),
            ("frames_omitted", Any, 0),
            ("fingerprint", Annotated[list[part], Meta(min_length=1)] | None, None),
            # As raw JSON, decoded by orjson: its rules then see exactly what the general
            # path sees.
            ("context", msgspec.Raw, None),
            # String values within the limit are what the tags rule keeps as they are
            # (numbers and booleans it turns into strings: the general path's case).
            ("tags", Annotated[dict[ident, part], Meta(max_length=limits.max_tags)] | None, None),
            ("fingerprint_id", Any, None),
            ("src", Any, None),
        ],
        kw_only=True,
        rename={"src": "_src"},
        gc=False,  # decoded JSON holds no reference cycles
    )
    batch: Any = Annotated[
        list[event],
        Meta(min_length=1, max_length=limits.max_events_per_message),
    ]
    return PlainErrorDecoder(msgspec.json.Decoder(event | batch).decode, event)


class PlainErrorReader:
    """Reads plain error messages under one set of limits (its decoder built once)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._decode = plain_error_decoder(limits).decode
        self._max_ahead_ms = limits.future_tolerance_s * 1000

    def read(self, value: Any, now_ms: int) -> tuple[list[Any], bool] | None:
        """The events of a plain error message as normalized structs, and whether the
        message was an array; or None (never raises).

        Each struct encodes (`encode_error`) to the normalized event's JSON, once ingest
        has set its `fingerprint_id` and `src` (`_src`). Its `context` is the JSON the
        event carried, checked by the rules and kept as it was sent (equal once decoded).
        """
        limits = self.limits
        try:
            if len(value) > limits.max_message_bytes:
                return None
            doc = self._decode(value)
            is_array = type(doc) is list
            events = doc if is_array else [doc]
            max_ts = now_ms + self._max_ahead_ms
            for e in events:
                _normalize(e, max_ts, limits)
            return events, is_array
        except Exception:  # not plain: the general path says what is wrong, if anything
            return None


def _normalize(e: Any, max_ts: float, limits: Limits) -> None:
    """Apply the rules msgspec cannot to one decoded event; raises if one would refuse it
    or change a value."""
    if e.ts > max_ts:
        raise ValueError("ts is too far in the future")
    if e.severity is None:
        e.severity = DEFAULT_SEVERITY
    exc = e.exception
    if exc.message is None:
        exc.message = ""
    e.frames_omitted = 0
    if e.context is not None:
        check_context(orjson.loads(memoryview(e.context)), limits)
    e.fingerprint_id = None
    e.src = None


encode_error = msgspec.json.Encoder().encode
