"""Ingest's fast path for plain error messages gives exactly the general path's results.

`schemas.plain_error.PlainErrorReader` decodes and checks a plain error message in one
step, into structs that encode to the normalized event; ingest takes it for such messages
and the general path (`decode_batch`, then `validate_event` per element) for everything
else. Two properties: what the fast path accepts, the rules accept with the same
normalized event (its JSON, decoded); and ingest's emits are the same with and without the
fast path, for any batch of messages.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stages.ingest
from schemas.events import InvalidEvent, Limits, validate_event
from schemas.plain_error import PlainErrorReader, encode_error
from stages.base import Record
from stages.ingest import IngestConfig, IngestStage

T0 = 1_795_320_000_000
NOW_MS = T0 + 60_000
LIMITS = Limits(
    max_id_len=12,
    max_text_len=20,
    max_frames=3,
    max_tags=3,
    max_context_depth=3,
    max_context_bytes=60,
    max_message_bytes=2000,
)
SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ABSENT = object()

# Strings within every limit, and at the edges of the limits (ids 12, text 20 characters).
fit_text = st.sampled_from(["", "a", "é" * 12, "x" * 12])
edge_text = st.sampled_from(["x" * 13, "é" * 20, "y" * 21])
scalars = st.sampled_from([None, "v", 1, -(2**63), True, 2.5, "é" * 13])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.sampled_from([10**30, -(10**30)])
    | st.floats(allow_nan=False, allow_infinity=False)
    | fit_text
    | edge_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
plain_frames = st.fixed_dictionaries(
    {},
    optional={
        "module": st.none() | fit_text,
        "function": st.none() | fit_text,
        "filename": st.none() | fit_text | edge_text,
        "lineno": st.none() | st.sampled_from([0, 7, 2**63 - 1, 2**63, 10**30]),
        "in_app": st.none() | st.booleans(),
        "vars": json_values,  # unknown: dropped
    },
)
odd_frames = st.fixed_dictionaries(
    {
        "module": st.sampled_from([3, "y" * 21, None]),
        "lineno": st.sampled_from([-1, 2**63, 10**30, 1.0, True, None]),
        "in_app": st.sampled_from([1, None, False]),
    }
)
frames = plain_frames | plain_frames | plain_frames | odd_frames


# The strategies below are built once, at import: a composite that builds its strategies
# on every draw spends most of each example re-validating and re-labelling them. The same
# strategies drawn in the same order generate the same examples.
EVENT_SCHEMAS = st.sampled_from(["error/1"] * 8 + ["latency/1", "error/2"])
EVENT_IDS = st.sampled_from(["e1", "e2", "e3", "x" * 12])  # repeats: duplicates
TS_OFFSETS = st.integers(-60_000, 300_001)
SERVICES = st.sampled_from(["svc", "pay", "x" * 12])
MESSAGES = st.none() | fit_text | edge_text
PLAIN_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "env": st.none() | fit_text,
    "release": st.none() | fit_text,
    "host": st.none() | fit_text,
    "severity": st.sampled_from([None, "critical", "high", "medium", "low"]),
    "stacktrace": st.none() | st.lists(plain_frames, max_size=3),
    "fingerprint": st.none() | st.lists(fit_text, min_size=1, max_size=3),
    "context": st.none() | st.dictionaries(st.text(max_size=3), scalars, max_size=2),
    "tags": st.none()
    | st.dictionaries(st.sampled_from(["a", "é" * 12]), scalars, max_size=2)
    | st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), fit_text, max_size=4),
    "extra": json_values,  # unknown: dropped
}
ODD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "release": edge_text,
    "severity": st.sampled_from(["urgent", 3]),
    "stacktrace": st.lists(frames, min_size=2, max_size=5) | st.just({}),
    "fingerprint": st.lists(st.none() | edge_text, max_size=2) | st.just("{{ default }}"),
    "context": json_values,
    "tags": st.dictionaries(fit_text | edge_text, json_values, max_size=4)
    | st.just({"k": 1e308, "b": True, "i": -3}),
}
ODD_NAMES = st.sampled_from(sorted(ODD_FIELDS))
UNUSUAL_COUNTS = st.integers(0, 2)


@st.composite
def error_events(draw: st.DrawFn) -> dict[str, Any]:
    """Error events as fleets send them, with fields that need a rule now and then."""
    event: dict[str, Any] = {
        "schema": draw(EVENT_SCHEMAS),
        "event_id": draw(EVENT_IDS),
        "ts": NOW_MS + draw(TS_OFFSETS),
        "service": draw(SERVICES),
        "exception": {"type": "KeyError", "message": draw(MESSAGES)},
    }
    for name, values in PLAIN_FIELDS.items():
        if draw(st.booleans()):
            event[name] = draw(values)
    if draw(st.booleans()):  # half are plain; the rest have a field that may need a rule
        name = draw(ODD_NAMES)
        event[name] = draw(ODD_FIELDS[name])
        for _ in range(draw(UNUSUAL_COUNTS)):
            name, value = draw(unusual_values)
            if value is ABSENT:
                event.pop(name, None)
            else:
                event[name] = value
    return event


unusual_values = st.sampled_from(
    [
        (name, value)
        for name, values in {
            "event_id": [ABSENT, None, "", "x" * 13, 3],
            "ts": [ABSENT, float(T0), "2026-11-22T04:00Z", True, LIMITS.min_ts - 1, 2**64],
            "service": [ABSENT, "", "x" * 13, 7],
            "exception": [ABSENT, None, "boom", {"message": "no type"}, {"type": "x" * 13}],
        }.items()
        for value in values
    ]
)
MESSAGE_KINDS = st.sampled_from(["one"] * 4 + ["array"] * 2 + ["mixed", "other"])
EVENTS = error_events()
EVENT_ARRAYS = st.lists(EVENTS, max_size=4)
MIXED_EVENTS = st.lists(EVENTS, min_size=1, max_size=3)
OTHER_VALUES = st.sampled_from([None, b"", b'{"schema": "error/1"', b"[]", b"\xff error/1"])


@st.composite
def messages(draw: st.DrawFn) -> bytes | None:
    """One error event, an array of them (sometimes with another element), or other input."""
    kind = draw(MESSAGE_KINDS)
    if kind == "one":
        return encode(draw(EVENTS))
    if kind == "array":
        return encode(draw(EVENT_ARRAYS))
    if kind == "mixed":
        events = draw(MIXED_EVENTS)
        events.insert(0, draw(json_values))
        return encode(events)
    return draw(OTHER_VALUES)


def encode(value: Any) -> bytes:
    """JSON as a fleet may send it: integers of any size, non-ASCII text as UTF-8."""
    return json.dumps(value, ensure_ascii=False).encode()


def outcome(obj: Any) -> Any:
    try:
        return validate_event(obj, NOW_MS, LIMITS)
    except InvalidEvent as exc:
        return ("invalid", exc.field, exc.reason)


@SETTINGS
@given(event=error_events())
def test_what_the_fast_path_accepts_the_rules_accept_unchanged(event):
    value = encode(event)
    plain = PlainErrorReader(LIMITS).read(value, NOW_MS)
    if plain is not None:
        (struct,), is_array = plain
        assert not is_array
        normalized = orjson.loads(encode_error(struct))
        assert normalized.pop("fingerprint_id") is None and normalized.pop("_src") is None
        expected = outcome(orjson.loads(value))
        assert normalized == expected
        assert list(normalized) == list(expected)  # the same key order


class NoFastPath:
    def read(self, value: Any, now_ms: int) -> None:
        return None

    def read_stacks(self, value: Any, now_ms: int) -> None:
        return None


@SETTINGS
@given(values=st.lists(messages(), max_size=10))
def test_ingest_emits_the_same_with_and_without_the_fast_path(values):
    records = [Record("events.raw", 0, i, b"svc", v) for i, v in enumerate(values)]
    fast = IngestStage(IngestConfig(limits=LIMITS))
    fast_result = fast.process(records, NOW_MS / 1000)
    general = IngestStage(IngestConfig(limits=LIMITS))
    general._plain_errors = NoFastPath()
    general_result = general.process(records, NOW_MS / 1000)
    assert [(e.topic, e.key, e.value) for e in fast_result.emits] == [
        (e.topic, e.key, e.value) for e in general_result.emits
    ]
    assert fast.stats == general.stats


def test_fleet_error_messages_take_the_fast_path(monkeypatch: pytest.MonkeyPatch):
    """What the SDK and the fleet simulator send is plain: no event takes the general path."""
    from loadtest.fleet import error_burst

    events, _ = error_burst(50, seed=3, start_ms=T0)
    stage = IngestStage()
    general = []
    monkeypatch.setattr(stages.ingest, "decode_batch", lambda *a: general.append(a))
    records = [Record("events.raw", 0, 0, None, orjson.dumps(events[:10]))] + [
        Record("events.raw", 0, i, None, orjson.dumps(e)) for i, e in enumerate(events[10:], 1)
    ]
    result = stage.process(records, T0 / 1000)
    assert general == []
    assert stage.stats["errors"] == 50
    assert len([e for e in result.emits if e.topic == "events.errors"]) == 50


def test_a_message_the_fast_path_refuses_is_dead_lettered_with_its_field():
    stage = IngestStage(IngestConfig(limits=LIMITS))
    event = {
        "schema": "error/1",
        "event_id": "e1",
        "ts": T0,
        "service": "svc",
        "exception": {"type": "KeyError"},
        "stacktrace": [{"module": "m", "lineno": -1}],
    }
    result = stage.process([Record("events.raw", 0, 0, None, orjson.dumps(event))], T0 / 1000)
    (dead,) = result.emits
    assert dead.topic == "events.dlq"
    assert dead.value["field"] == "stacktrace[0].lineno"
