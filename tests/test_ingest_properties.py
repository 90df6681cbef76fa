"""Property tests: ingest never raises and accounts for every input element exactly once."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.output import encode_value
from schemas.events import InvalidEvent, decode_batch
from stages.base import Record
from stages.ingest import IngestConfig, IngestStage

NOW = 1_795_320_060.0
NOW_MS = int(NOW * 1000)
OUT_TOPICS = {"events.errors", "events.latency", "events.dlq"}

SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- strategies ---------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
event_ids = st.sampled_from(["a", "b", "c", None, ""])
timestamps = st.integers(NOW_MS - 86_400_000, NOW_MS + 300_000) | st.sampled_from(
    ["2026-11-22T04:00:00Z", "2026-11-22T04:00:00.5+01:00", "2026-11-22T04:00:00"]
)


# Strategies are built once, at import: a composite that builds its strategies on every
# draw spends most of each example re-validating and re-labelling them. The same strategies
# drawn in the same order generate the same examples.
SERVICES = st.sampled_from(["checkout", "search"])
ENDPOINTS = st.sampled_from(["/api/pay", "/api/find"])
DURATIONS = st.floats(0, 3_600_000) | st.integers(0, 3_600_000)
STATUSES = st.none() | st.integers(100, 599)
METHODS = st.none() | st.just("GET")


@st.composite
def valid_latency(draw: st.DrawFn) -> dict[str, Any]:
    event = {
        "schema": "latency/1",
        "ts": draw(timestamps),
        "service": draw(SERVICES),
        "endpoint": draw(ENDPOINTS),
        "duration_ms": draw(DURATIONS),
        "status": draw(STATUSES),
        "method": draw(METHODS),
    }
    event_id = draw(event_ids)
    if event_id is not None:
        event["event_id"] = event_id
    return event


FRAME_LISTS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "module": st.sampled_from(["app.pay", "lib.db"]),
            "function": st.sampled_from(["charge", "query"]),
            "filename": st.just("app/pay.py"),
            "lineno": st.integers(0, 500),
            "in_app": st.booleans(),
        },
    ),
    max_size=5,
)
SEVERITIES = st.sampled_from(["critical", "high", "medium", "low"])
EXCEPTION_TYPES = st.sampled_from(["TimeoutError", "KeyError"])
EXCEPTION_MESSAGES = st.text(max_size=40)
FINGERPRINTS = st.none() | st.lists(st.text(max_size=5), min_size=1, max_size=2)
CONTEXTS = st.none() | st.dictionaries(st.text(max_size=5), json_values, max_size=3)
TAGS = st.none() | st.dictionaries(
    st.text(min_size=1, max_size=5),
    st.text(max_size=5) | st.integers(-10, 10) | st.booleans(),
    max_size=3,
)


@st.composite
def valid_error(draw: st.DrawFn) -> dict[str, Any]:
    frames = draw(FRAME_LISTS)
    event: dict[str, Any] = {
        "schema": "error/1",
        "ts": draw(timestamps),
        "service": draw(SERVICES),
        "severity": draw(SEVERITIES),
        "exception": {
            "type": draw(EXCEPTION_TYPES),
            "message": draw(EXCEPTION_MESSAGES),
        },
        "stacktrace": frames,
        "fingerprint": draw(FINGERPRINTS),
        "context": draw(CONTEXTS),
        "tags": draw(TAGS),
    }
    event_id = draw(event_ids)
    if event_id is not None:
        event["event_id"] = event_id
    return event


PATHS = [
    ("schema",),
    ("ts",),
    ("service",),
    ("endpoint",),
    ("duration_ms",),
    ("status",),
    ("event_id",),
    ("exception",),
    ("exception", "type"),
    ("exception", "message"),
    ("stacktrace",),
    ("fingerprint",),
    ("context",),
    ("tags",),
]


VALID_EVENTS = valid_latency() | valid_error()
MUTATED_PATHS = st.sampled_from(PATHS)


@st.composite
def mutated_event(draw: st.DrawFn) -> Any:
    """A (mostly) valid event with one field deleted or replaced by arbitrary JSON."""
    event = copy.deepcopy(draw(VALID_EVENTS))
    path = draw(MUTATED_PATHS)
    target: Any = event
    for step in path[:-1]:
        target = target.get(step) if isinstance(target, dict) else None
    if isinstance(target, dict):
        if draw(st.booleans()):
            target.pop(path[-1], None)
        else:
            target[path[-1]] = draw(json_values)
    return event


elements = valid_latency() | valid_error() | mutated_event() | json_values
VALUE_KINDS = st.sampled_from(["object", "array", "array", "json", "bytes", "tombstone"])
OBJECTS = valid_latency() | valid_error() | mutated_event()
ARRAYS = st.lists(elements, max_size=6)
BYTES = st.binary(max_size=64)


@st.composite
def raw_values(draw: st.DrawFn) -> bytes | None:
    """Message values: JSON objects, arrays of mixed elements, arbitrary bytes, tombstones."""
    kind = draw(VALUE_KINDS)
    if kind == "object":
        return orjson.dumps(draw(OBJECTS))
    if kind == "array":
        return orjson.dumps(draw(ARRAYS))
    if kind == "json":
        return orjson.dumps(draw(json_values))
    if kind == "bytes":
        return draw(BYTES)
    return None


keys = st.none() | st.binary(max_size=6)


def expected_elements(value: bytes | None, stage: IngestStage) -> int:
    """How many outcomes one record must produce: one per element, one for a bad message."""
    if value is None:
        return 1
    try:
        elements, _ = decode_batch(value, stage.config.limits)
    except InvalidEvent:
        return 1
    return len(elements)


def outcomes(stage: IngestStage) -> int:
    stats = stage.stats
    return stats["errors"] + stats["latency"] + stats["dead_letters"] + stats["duplicates"]


def check_emits(emits: list, records: list[Record]) -> None:
    offsets = {r.offset for r in records}
    dlq_sources = []
    for emit in emits:
        assert emit.topic in OUT_TOPICS and isinstance(emit.key, str)
        encode_value(emit.value)  # the runtime can send it
        if emit.topic == "events.dlq":
            source = emit.value["source"]
            assert source["offset"] in offsets
            assert emit.value["field"] and emit.value["reason"]
            dlq_sources.append((source["offset"], source["index"]))
        else:
            assert emit.value["event_id"]
    assert len(dlq_sources) == len(set(dlq_sources))


# --- properties ---------------------------------------------------------------------------------


@SETTINGS
@given(values=st.lists(st.tuples(keys, raw_values()), max_size=5), now_step=st.floats(0, 900))
def test_every_element_is_exactly_one_emit_dead_letter_or_duplicate(
    values: list[tuple[bytes | None, bytes | None]], now_step: float
):
    stage = IngestStage(IngestConfig(dedup_max_ids=8))
    now = NOW
    for offset, (key, value) in enumerate(values):
        rec = Record("events.raw", 0, offset, key, value)
        before = outcomes(stage)
        emits = stage.process([rec], now).emits
        expected = expected_elements(value, stage)
        duplicates = outcomes(stage) - before - len(emits)
        assert duplicates >= 0
        assert len(emits) + duplicates == expected
        check_emits(emits, [rec])
        now += now_step


@SETTINGS
@given(values=st.lists(raw_values(), max_size=6))
def test_a_batch_of_records_is_conserved_as_a_whole(values: list[bytes | None]):
    stage = IngestStage()
    records = [Record("events.raw", 1, i, b"k", v) for i, v in enumerate(values)]
    result = stage.process(records, NOW)
    expected = sum(expected_elements(v, stage) for v in values)
    assert len(result.emits) + stage.stats["duplicates"] == expected
    assert outcomes(stage) == expected
    check_emits(result.emits, records)


@SETTINGS
@given(value=st.binary(max_size=256), key=keys)
def test_arbitrary_bytes_never_raise(value: bytes, key: bytes | None):
    stage = IngestStage()
    emits = stage.process([Record("events.raw", 0, 0, key, value)], NOW).emits
    assert len(emits) + stage.stats["duplicates"] == expected_elements(value, stage)


@SETTINGS
@given(doc=json_values)
def test_arbitrary_json_never_raises(doc: Any):
    stage = IngestStage()
    value = orjson.dumps(doc)
    emits = stage.process([Record("events.raw", 0, 0, None, value)], NOW).emits
    assert len(emits) + stage.stats["duplicates"] == expected_elements(value, stage)
    check_emits(emits, [Record("events.raw", 0, 0, None, value)])


@SETTINGS
@given(event=mutated_event())
def test_a_mutated_event_is_either_valid_or_dead_lettered_naming_a_field(event: Any):
    stage = IngestStage()
    (emit,) = stage.process([Record("events.raw", 0, 0, None, orjson.dumps(event))], NOW).emits
    if emit.topic == "events.dlq":
        field = emit.value["field"]
        root = field.split(".")[0].split("[")[0]
        assert root == "$" or root in emit.value["reason"]


@SETTINGS
@given(event=valid_latency() | valid_error())
def test_a_valid_event_always_flows_to_its_topic(event: dict[str, Any]):
    stage = IngestStage()
    (emit,) = stage.process([Record("events.raw", 0, 0, None, orjson.dumps(event))], NOW).emits
    expected = "events.errors" if event["schema"] == "error/1" else "events.latency"
    assert emit.topic == expected, emit.value
