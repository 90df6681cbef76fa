"""Decode and check a plain latency message in one step (the latency hot path's decoder).

A plain message is one latency/1 event, or a non-empty array of them within the
events-per-message limit, whose values all pass the fast check of
`schemas.events._plain_latency_fields`, with a non-empty `event_id`. msgspec decodes such
a message straight into `PlainLatency` structs and checks every bound while it decodes
(in C), which costs less than decoding to dicts and checking them in Python. Any other
message fails to decode here, and the caller sends it down the general path, which
handles it or says precisely what is wrong.

Only the future bound of `ts` depends on the time of processing, so the caller checks
that one (`ts - now_ms <= max_ahead_ms`).

One difference from orjson, on purpose: in fields the schema does not know (which both
paths ignore), msgspec skips a number beyond double range (say 1e400), where orjson
refuses the whole message. JSON permits such numbers.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
from msgspec import Meta

from schemas.events import LATENCY_SCHEMA, Limits


class PlainDecoder(NamedTuple):
    """`decode(value)` gives one `event` struct or a list of them; raises if not plain.
    `decode_lines(text)` gives what `decode` gives for each JSON text in `text` (texts
    apart by whitespace, as in JSON lines; stages/ingest_windows.py checks the bounds)."""

    decode: Any
    decode_lines: Any
    event: Any  # the struct type, made at run time (a type checker cannot know its fields)


@lru_cache(maxsize=8)
def plain_latency_decoder(limits: Limits) -> PlainDecoder:
    """The decoder for `limits` (built once per distinct limits)."""
    ident = Annotated[str, Meta(min_length=1, max_length=limits.max_id_len)]
    text = Annotated[str, Meta(max_length=limits.max_id_len)]
    # The struct type is made here, at run time, from `limits`: a type checker cannot know
    # its fields, so it is typed Any (as is the batch type built from it).
    event: Any = msgspec.defstruct(
        "PlainLatency",
        [
            ("schema", Literal[LATENCY_SCHEMA]),
            ("ts", Annotated[int, Meta(ge=limits.min_ts)]),
            ("service", ident),
            ("endpoint", ident),
            ("duration_ms", Annotated[float, Meta(ge=0, le=limits.max_duration_ms)]),
            ("event_id", ident),
            ("status", Annotated[int, Meta(ge=100, le=599)] | None, None),
            ("method", text | None, None),
            ("region", text | None, None),
            ("host", text | None, None),
        ],
        gc=False,  # only strings and numbers: nothing for the cycle collector to find
    )
    batch: Any = Annotated[
        list[event],
        Meta(min_length=1, max_length=limits.max_events_per_message),
    ]
    decoder = msgspec.json.Decoder(event | batch)
    return PlainDecoder(decoder.decode, decoder.decode_lines, event)
