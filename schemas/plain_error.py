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

A fleet's stack traces repeat byte for byte (one bug, one release: the same frames), so
the stack trace is read as raw JSON and each distinct one is decoded, checked and encoded
once (`StackEntry`, a bounded cache per reader): an event then carries its stack's
normalized JSON, and ingest groups it by the entry (`StackEntry.groups`).
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

__all__ = ["PlainErrorReader", "StackEntry", "encode_error"]

# orjson decodes integers beyond 64 bits as floats, which the rules refuse; msgspec keeps
# them as ints. Bounding them sends such values down the general path.
_INT64_MAX = 2**63 - 1
# Distinct stack traces remembered per reader (all forgotten when full: a fleet has far
# fewer; a stream of unique stacks costs one cache miss each, about what it cost before).
MAX_STACKS = 4096
# orjson re-encodes a JSON value in at most 4.5 times its bytes (a number such as 1e15
# becomes 1000000000000000.0; strings, keys and whitespace never grow), so a context whose
# raw JSON is within max_context_bytes / 5 is within the size limit without encoding it.
_CONTEXT_GROWTH = 5


class PlainErrorDecoder(NamedTuple):
    """`decode(value)` gives one event struct or a list of them; raises if not plain.
    `frames(raw)` decodes and checks one event's stack trace (a list of frame structs)."""

    decode: Any
    event: type
    frames: Any


class StackEntry:
    """One distinct stack trace: its frames' parts and normalized JSON, and the groups of
    the events that carried it (filled by ingest)."""

    __slots__ = ("frames", "groups", "json")

    def __init__(self, frames: tuple[tuple[Any, Any, Any, Any], ...], json: msgspec.Raw):
        self.frames = frames  # (module, function, filename, in_app) per frame
        self.json = json  # the frames as the normalized event carries them
        # exception type -> fingerprint id, for events grouped by these frames alone
        self.groups: dict[str, str] = {}


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
            # As raw JSON: each distinct stack trace is decoded and checked once
            # (`PlainErrorReader`), by `frames` below.
            ("stacktrace", msgspec.Raw, None),
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
    frames = msgspec.json.Decoder(Annotated[list[frame], Meta(max_length=limits.max_frames)])
    return PlainErrorDecoder(msgspec.json.Decoder(event | batch).decode, event, frames.decode)


class PlainErrorReader:
    """Reads plain error messages under one set of limits (its decoder built once), and
    remembers the stack traces it has read."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        decoder = plain_error_decoder(limits)
        self._decode = decoder.decode
        self._decode_frames = decoder.frames
        self._max_ahead_ms = limits.future_tolerance_s * 1000
        self._stacks: dict[bytes, StackEntry | None] = {}
        # a context whose raw JSON is no longer than this is within the size limit
        self._small_context = limits.max_context_bytes // _CONTEXT_GROWTH
        if limits.max_context_depth < 1:
            self._small_context = -1  # no shortcut: even a flat context is too deep

    def read(self, value: Any, now_ms: int) -> tuple[list[Any], bool] | None:
        """The events of a plain error message as normalized structs, and whether the
        message was an array; or None (never raises).

        Each struct encodes (`encode_error`) to the normalized event's JSON, once ingest
        has set its `fingerprint_id` and `src` (`_src`). Its `context` is the JSON the
        event carried, checked by the rules and kept as it was sent (equal once decoded).
        """
        plain = self.read_stacks(value, now_ms)
        if plain is None:
            return None
        events, is_array, _ = plain
        for e in events:
            e.fingerprint_id = None
            e.src = None
        return events, is_array

    def read_stacks(
        self, value: Any, now_ms: int
    ) -> tuple[list[Any], bool, list[StackEntry | None]] | None:
        """`read`, with each event's `StackEntry` (None: no stack trace), and its
        `fingerprint_id` and `src` as the message had them: the caller sets both."""
        limits = self.limits
        try:
            if len(value) > limits.max_message_bytes:
                return None
            doc = self._decode(value)
            is_array = type(doc) is list
            events = doc if is_array else [doc]
            max_ts = now_ms + self._max_ahead_ms
            small_context = self._small_context
            stacks = self._stacks
            entries: list[StackEntry | None] = []
            for e in events:
                # The rules msgspec cannot apply; raises if one would refuse the event or
                # change a value.
                if e.ts > max_ts:
                    return None  # too far in the future
                if e.severity is None:
                    e.severity = DEFAULT_SEVERITY
                exc = e.exception
                if exc.message is None:
                    exc.message = ""
                e.frames_omitted = 0
                raw = e.context
                if raw is not None:
                    encoded = bytes(raw)
                    context = orjson.loads(encoded)
                    # A flat object of small raw size passes `check_context` (depth 1,
                    # and the size bound above); anything else is checked by it.
                    if type(context) is dict and len(encoded) <= small_context:
                        for v in context.values():
                            if type(v) is dict or type(v) is list:
                                check_context(context, limits)
                                break
                    else:
                        check_context(context, limits)
                raw = e.stacktrace
                if raw is None:
                    entries.append(None)
                    continue
                key = bytes(raw)
                entry = stacks.get(key, _UNKNOWN)
                if entry is _UNKNOWN:
                    entry = self._stack(key)
                e.stacktrace = None if entry is None else entry.json
                entries.append(entry)
            return events, is_array, entries
        except Exception:  # not plain: the general path says what is wrong, if anything
            return None

    def _stack(self, raw: bytes) -> StackEntry | None:
        """Decode and check a stack trace not seen yet (raises if it is not plain), and
        remember it."""
        if raw == b"null":
            entry = None
        else:
            frames = self._decode_frames(raw)
            parts = tuple((f.module, f.function, f.filename, f.in_app) for f in frames)
            entry = StackEntry(parts, msgspec.Raw(encode_error(frames)))
        stacks = self._stacks
        if len(stacks) >= MAX_STACKS:
            stacks.clear()
        stacks[raw] = entry
        return entry


_UNKNOWN: Any = object()


encode_error = msgspec.json.Encoder().encode
