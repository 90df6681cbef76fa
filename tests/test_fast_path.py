"""Ingest's fast path gives exactly the general path's results, for any input.

`IngestWindowsStage` (ingest with partial windows, two-phase windowing) takes a fast path
for the common message (one plainly valid latency event) and falls back to the general
path for anything else. Two references:

- ingest then windows per partition: `IngestStage` without `on_latency` (the general
  path, every record), its latency events fed to `WindowsStage` on the same partition
  and offset: its 10 s rollups of endpoint series are ingest's partial windows;
- the stage as it was before the fast path: the general path for every record
  (`IngestStage.process`) and the straightforward replay filter, driven through restarts
  like the runner does.

The fast path repeats `_plain_latency_fields`' check inline; one property pins the
messages it takes to exactly those `plain_latency` accepts.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from histograms.hdr import SparseHistogram, layout
from schemas.events import (
    InvalidEvent,
    Limits,
    _checked_latency_fields,
    latency_fields,
    plain_latency,
    plain_latency_batch,
)
from schemas.partials import expand_partials
from stages.base import Emit, Record, StageResult
from stages.ingest import IngestConfig, IngestStage
from stages.ingest_windows import IngestWindowsStage, PartialWindowsCore
from stages.windows import WindowsConfig, WindowsStage

T0 = 1_795_320_000_000 - 1_795_320_000_000 % 3_600_000  # an hour boundary
NOW = T0 / 1000 + 60
LIMITS = Limits(max_id_len=12, max_message_bytes=600)
# Messages up to 160 bytes cannot hold a longer string: the fast path skips length checks.
WIDE_LIMITS = Limits(max_id_len=160, max_message_bytes=600)
WINDOWS = WindowsConfig(window_s=10.0, rollup_resolutions_s=(60.0,), allowed_lateness_s=5.0)
WINDOWS_HDR = layout()
FAR_FUTURE = 10**7  # seconds: every partition is idle, so every open window closes

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- strategies ---------------------------------------------------------------------------------

ABSENT = object()  # a field left out of the event

json_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
# Milliseconds relative to the batch's `now`: windows close as batches advance, some events
# are late.
ts_offsets = st.integers(-60_000, 10_000)
valid_ids = st.sampled_from(["e1", "e2", "e3", "e4", "x" * 12])  # repeats: duplicates


# Strategies are built once (at import, or once per `now_ms` through `functools.cache`): a
# composite that builds its strategies on every draw spends most of each example
# re-validating and re-labelling them. The same strategies drawn in the same order generate
# the same examples.
PLAIN_TS_OFFSETS = ts_offsets | st.just(300_000)  # the future tolerance: 300 s
PLAIN_SERVICES = st.sampled_from(["svc", "pay", "s|x", "x" * 12])
PLAIN_ENDPOINTS = st.sampled_from(["/a", "/b", "x" * 12])
PLAIN_DURATIONS = st.floats(0, 3_600_000) | st.integers(0, 3_600_000) | st.sampled_from([-0.0])
OPTIONAL_FIELDS = [
    ("status", st.sampled_from([None, 100, 200, 404, 499, 500, 599])),
    ("method", st.sampled_from([None, "GET", "", "x" * 12])),
    ("region", st.sampled_from([None, "eu-1", "x" * 12])),
    ("host", st.sampled_from([None, "h-1", "x" * 12])),
]


@functools.cache
@st.composite
def plain_latency_events(draw: st.DrawFn, now_ms: int) -> dict[str, Any]:
    """Latency events as the SDK sends them (the fast path's case), edges included."""
    event = {
        "schema": "latency/1",
        "event_id": draw(valid_ids),
        "ts": now_ms + draw(PLAIN_TS_OFFSETS),
        "service": draw(PLAIN_SERVICES),
        "endpoint": draw(PLAIN_ENDPOINTS),
        "duration_ms": draw(PLAIN_DURATIONS),
    }
    for name, values in OPTIONAL_FIELDS:
        if draw(st.booleans()):
            event[name] = draw(values)
    return event


@functools.cache
def unusual_values(now_ms: int) -> st.SearchStrategy[tuple[str, Any]]:
    """(field, value) pairs to put in a plain event: the edges of each rule, on both sides,
    valid values that need the rule to normalize them, and ABSENT (left out)."""
    text = [ABSENT, None, "", "x" * 12, "x" * 13, 7, True, ["GET"]]
    table = {
        "schema": [ABSENT, None, "latency/2", "error/1"],
        "event_id": [ABSENT, None, "", "x" * 13, 3, 1.5, ["e1"]],
        "ts": [
            *(ABSENT, None, "soon", True, float(now_ms), "2026-11-22T04:00Z", 1_000, 2**63),
            *(LIMITS.min_ts - 1, LIMITS.min_ts, now_ms + 300_000, now_ms + 300_001),
        ],
        "service": text,
        "endpoint": text,
        "duration_ms": [
            *(ABSENT, None, "12", True, -1, -0.5, -0.0, 0, 3_600_000, 3_600_000.5),
            *(1e308, 10**18, 2**64 - 1),
        ],
        "status": [ABSENT, None, 99, 100, 599, 600, 200.0, True, "500", -(2**63)],
        "method": text,
        "region": text,
        "host": text,
    }
    return st.sampled_from([(name, v) for name, values in table.items() for v in values])


UNUSUAL_COUNTS = st.integers(1, 2)


@functools.cache
@st.composite
def latency_events(draw: st.DrawFn, now_ms: int) -> dict[str, Any]:
    """Plain latency events with one or two fields changed to an unusual value, sometimes
    with unknown fields."""
    event = draw(plain_latency_events(now_ms))
    for _ in range(draw(UNUSUAL_COUNTS)):
        name, value = draw(unusual_values(now_ms))
        if value is ABSENT:
            event.pop(name, None)
        else:
            event[name] = value
    if draw(st.booleans()):
        event["extra"] = draw(json_junk)  # unknown fields are dropped
    return event


ERROR_SCHEMAS = st.sampled_from(["error/1", "error/1", "error/2", None])
ERROR_IDS = valid_ids | st.none()
ERROR_SERVICES = st.sampled_from(["svc", "", "x" * 13])
ERROR_TYPES = st.sampled_from(["KeyError", ""])


@functools.cache
@st.composite
def error_events(draw: st.DrawFn, now_ms: int) -> dict[str, Any]:
    event: dict[str, Any] = {
        "schema": draw(ERROR_SCHEMAS),
        "event_id": draw(ERROR_IDS),
        "ts": now_ms + draw(ts_offsets),
        "service": draw(ERROR_SERVICES),
        "exception": {"type": draw(ERROR_TYPES), "message": "boom"},
    }
    return event


@functools.cache
def elements(now_ms: int) -> st.SearchStrategy[Any]:
    return plain_latency_events(now_ms) | latency_events(now_ms) | error_events(now_ms) | json_junk


@functools.cache
def element_arrays(now_ms: int) -> st.SearchStrategy[list[Any]]:
    return st.lists(elements(now_ms), max_size=4)


@functools.cache
def plain_arrays(now_ms: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(plain_latency_events(now_ms), min_size=1, max_size=5)


VALUE_KINDS = st.sampled_from(
    ["plain"] * 4 + ["latency"] * 4 + ["plain_array"] * 2 + ["error", "array", "other", "lines"]
)
UNUSUAL_IN_ARRAY = st.integers(0, 3)
OTHER_VALUES = st.sampled_from(
    [None, b"", b"\xff\xfe{", b'{"schema": "latency/1"', b"[1, 2", b"nan"]
) | json_junk.map(orjson.dumps)


@functools.cache
@st.composite
def raw_values(draw: st.DrawFn, now_ms: int) -> bytes | None:
    """Message values: mostly one latency object, also arrays, other JSON, bad bytes, None."""
    kind = draw(VALUE_KINDS)
    if kind == "plain":
        return orjson.dumps(draw(plain_latency_events(now_ms)))
    if kind == "latency":
        return orjson.dumps(draw(latency_events(now_ms)))
    if kind == "error":
        return orjson.dumps(draw(error_events(now_ms)))
    if kind == "array":
        return orjson.dumps(draw(element_arrays(now_ms)))
    if kind == "plain_array":  # the batching fleet's message; sometimes one element unusual
        events = draw(plain_arrays(now_ms))
        if draw(UNUSUAL_IN_ARRAY) == 0:
            events.insert(draw(st.integers(0, len(events))), draw(elements(now_ms)))
        return orjson.dumps(events)
    if kind == "lines":  # newlines, blanks and joins that must not fool a decode by lines
        event = orjson.dumps(draw(plain_latency_events(now_ms)))
        return draw(st.sampled_from(LINE_TRICKS))(event)
    return draw(OTHER_VALUES)


# What a value might be made of one plain event, to test `_ingest_lines`: plain with a
# newline in or around it, or not plain though its lines (or its text joined to another
# value's) would be; plain and holding the schema's name twice.
def _named_twice(event: bytes) -> bytes:
    return event[:-1] + b',"host":"latency/1"}'


LINE_TRICKS = [
    _named_twice,
    _pretty := lambda e: orjson.dumps(orjson.loads(e), option=orjson.OPT_INDENT_2),
    lambda e: e + b"\n",
    lambda e: b"\r\n" + e,
    lambda e: e + b"\n" + e,
    lambda e: e + b"," + e,
    lambda e: e + b" " + e,  # two lines' worth on one line
    lambda e: e + b"]",
    lambda e: b"[" + e,
    _newline := lambda e: b"\n",
    _blank := lambda e: b" ",
]


# Values, none plain, that read as one stream of JSON texts give one item each: an array
# begun in one value and closed in the next, beside a value with two events.
SPANNING = [
    ((lambda e: b"[" + e + b",", lambda e: e + b"]", lambda e: e + b" " + e), "spanning"),
    ((lambda e: b"[" + e, lambda e: b"," + e + b"]", lambda e: e + e), "spanning"),
    ((lambda e: b'{"a":' + e, lambda e: b',"b":' + e + b"}", lambda e: e + e), "spanning"),
]


BATCH_COUNTS = st.integers(1, 6)
NOW_STEPS = st.sampled_from([0.0, 1.0, 7.5, 40.0])
PARTITIONS = st.integers(0, 2)
KEYS = st.none() | st.sampled_from([b"svc", b"\xff"])


@functools.cache
def batch_records(now_ms: int) -> st.SearchStrategy[list[tuple[int, bytes | None, bytes | None]]]:
    return st.lists(st.tuples(PARTITIONS, KEYS, raw_values(now_ms)), max_size=8)


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[float, list[tuple[int, bytes | None, bytes | None]]]]:
    """Batches of (partition, key, value) with the `now` each is processed at."""
    out = []
    now = NOW
    for _ in range(draw(BATCH_COUNTS)):
        now += draw(NOW_STEPS)
        now_ms = int(now * 1000)
        records = draw(batch_records(now_ms))
        out.append((now, records))
    return out


# (From how many events a run of plain records is windowed column by column, how many are
# held at most): (1, 2) puts every run through `_window_columns` (and its fallbacks) two
# events at a time, the defaults (a bound no run here reaches) never.
COLUMNS = st.sampled_from(
    [(1, 2), (1, 512), (IngestWindowsStage.columns_from_events, IngestWindowsStage.columns_up_to)]
)


def fast_stage(config: IngestConfig, columns: tuple[int, int]) -> IngestWindowsStage:
    stage = IngestWindowsStage(IngestStage(config), WINDOWS)
    stage.columns_from_events, stage.columns_up_to = columns
    return stage


ingest_configs = st.builds(
    IngestConfig,
    limits=st.sampled_from([LIMITS, WIDE_LIMITS]),
    dedup_max_ids=st.sampled_from([3, 1000]),
    dedup_window_s=st.sampled_from([30.0, 600.0]),
)

# --- references ---------------------------------------------------------------------------------


class ReferenceFused(IngestWindowsStage):
    """The stage before the fast path: the general path (`IngestStage.process`, whose
    latency events go to `on_latency`) and the plain replay filter."""

    def process(self, records: list[Record], now: float) -> StageResult:
        touched = sorted({r.partition for r in records})
        replay_until = self.core.replay_until
        replayed = [r for r in records if r.offset < replay_until(r.partition)]
        if replayed:
            self.ingest.process(replayed, now)
            records = [r for r in records if r.offset >= replay_until(r.partition)]
        result = self.ingest.process(records, now)
        result.extend(self.core.finish(touched, now))
        return result


class Split:
    """Ingest then windows, each raw partition's latency events windowed by a windows stage
    of their own, at the raw record's partition and offset."""

    def __init__(self, config: IngestConfig) -> None:
        self.ingest = IngestStage(config)
        self.windows: dict[int, WindowsStage] = {}

    def process(
        self, records: list[Record], now: float
    ) -> tuple[list[Emit], list[tuple[int, Emit]]]:
        """(ingest's emits other than `events.latency`, the windows' emits with their
        partition)."""
        other: list[Emit] = []
        tagged: list[tuple[int, Emit]] = []
        for partition in sorted({r.partition for r in records}):
            latency: list[Record] = []
            for record in [r for r in records if r.partition == partition]:
                emits = self.ingest.process([record], now).emits  # one at a time: its offset
                other += [e for e in emits if e.topic != "events.latency"]
                events = [e.value for e in emits if e.topic == "events.latency"]
                if events:
                    value = orjson.dumps(events)
                    latency.append(Record("events.latency", partition, record.offset, None, value))
            windows = self.windows.setdefault(partition, WindowsStage(WINDOWS))
            tagged += [(partition, e) for e in windows.process(latency, now).emits]
        return other, tagged

    def tick(self, now: float) -> list[tuple[int, Emit]]:
        return [(p, e) for p, w in self.windows.items() for e in w.tick(now).emits]

    def stats(self, counter: str) -> int:
        return sum(w.core.stats[counter] for w in self.windows.values())

    def hold_offsets(self) -> dict[tuple[str, int], int]:
        holds: dict[tuple[str, int], int] = {}
        for w in self.windows.values():
            holds.update({("events.raw", p): o for (_, p), o in w.hold_offsets().items()})
        return holds


def as_records(batch: list[tuple[int, bytes | None, bytes | None]], next_offset: dict[int, int]):
    """The batch as a runner hands it over: grouped by partition, offsets increasing."""
    records = []
    for partition in sorted({p for p, _, _ in batch}):
        for p, key, value in batch:
            if p == partition:
                offset = next_offset.get(p, 0)
                next_offset[p] = offset + 1
                records.append(Record("events.raw", p, offset, key, value))
    return records


def remembered(ingest: IngestStage) -> tuple[list, list]:
    """The accepted ids, and their acceptance order with times."""
    ids = ingest.recent_ids
    return sorted(ids.ids), [chunk for chunk in ids.chunks if chunk[1]]


def same(a: Any, b: Any) -> bool:
    """Equal as JSON, to the byte (so -0.0 differs from 0.0, and 1 from 1.0); values a
    stage encoded itself (EncodedJSON) as the objects they encode."""
    option = orjson.OPT_SORT_KEYS
    return orjson.dumps(a, option=option, default=dict) == orjson.dumps(
        b, option=option, default=dict
    )


# --- properties ---------------------------------------------------------------------------------


def partial_summary(value: dict[str, Any]) -> tuple:
    """A partial window as (count, errors, client errors, late, mean, max, histogram)."""
    lay = WINDOWS_HDR
    if "words" in value:
        hist = SparseHistogram.from_words(lay, value["words"], value["bits"])
    else:
        hist = SparseHistogram.from_pairs(lay, value["counts"])
    count = value["count"]
    mean = value["sum_us"] / count / 1000.0 if count else 0.0
    late = value["late"]
    return (
        count,
        value["errors"],
        value["client_errors"],
        late,
        mean,
        value["max_us"] / 1000.0,
        hist,
    )


def rollup_summary(value: dict[str, Any]) -> tuple:
    hist = SparseHistogram.decode(value["hist"])
    return (
        value["count"],
        value["errors"],
        value["client_errors"],
        value["late"],
        value["mean_ms"],
        value["max_ms"],
        hist,
    )


@SETTINGS
@given(steps=batches(), config=ingest_configs, columns=COLUMNS)
def test_partial_windows_are_what_ingest_then_windows_makes_of_each_partition(
    steps, config, columns
):
    stage = fast_stage(config, columns)
    split = Split(config)
    partials: dict[tuple[str, int, int], tuple] = {}
    rollups: dict[tuple[str, int, int], tuple] = {}
    offsets: dict[int, int] = {}

    def collect(emits: list[Emit], split_emits: list[tuple[int, Emit]]) -> None:
        for e in emits:
            if e.topic == "events.latency" and "partials" in e.value:
                for partial in expand_partials(e.value):
                    key = (partial["series"], partial["start"], partial["src"])
                    assert key not in partials  # one partial per series, window and source
                    partials[key] = partial_summary(partial)
        for partition, e in split_emits:
            assert e.topic == "rollups"  # no windows dead letters
            value = e.value
            if value["resolution"] == "10s" and value["endpoint"] != "*":
                rollups[(value["series"], value["start"], partition)] = rollup_summary(value)

    for now, batch in steps:
        records = as_records(batch, offsets)
        result = stage.process(records, now)
        split_other, split_windows = split.process(records, now)
        other = [(e.topic, e.key, e.value) for e in result.emits if e.topic != "events.latency"]
        assert same(other, [(e.topic, e.key, e.value) for e in split_other])
        collect(result.emits, split_windows)
        assert stage.ingest.stats == split.ingest.stats
        for counter in ("events", "late", "replayed"):
            assert stage.core.stats[counter] == split.stats(counter)
        assert stage.hold_offsets() == split.hold_offsets()
    # Close every window (idle): the last partials and rollups.
    collect(stage.tick(NOW + FAR_FUTURE).emits, split.tick(NOW + FAR_FUTURE))
    assert partials == rollups


@st.composite
def steps_with_restarts(draw: st.DrawFn) -> list[Any]:
    steps: list[Any] = []
    for now, batch in draw(batches()):
        if steps and draw(st.integers(0, 3)) == 0:
            steps.append("restart")
        steps.append((now, batch))
    return steps


class Runner:
    """Feeds the stage like the runner: held-back commits, changelog, restarts."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.stage = make()
        self.log: dict[int, list[Record]] = {}
        self.position: dict[int, int] = {}
        self.changelog: dict[tuple[int, str], Any] = {}

    def append(self, batch: list[tuple[int, bytes | None, bytes | None]]) -> None:
        sizes = {p: len(log) for p, log in self.log.items()}
        for record in as_records(batch, sizes):
            self.log.setdefault(record.partition, []).append(record)

    def poll(self, now: float) -> StageResult:
        records = []
        for partition in sorted(self.log):
            records += self.log[partition][self.position.get(partition, 0) :]
            self.position[partition] = len(self.log[partition])
        result = self.stage.process(records, now)
        self.changelog.update(result.state)
        return result

    def restart(self) -> None:
        holds = self.stage.hold_offsets()
        for partition in self.log:
            held = holds.get(("events.raw", partition))
            if held is not None:
                self.position[partition] = min(self.position.get(partition, 0), held)
        self.stage = self.make()
        self.stage.assign(sorted(self.log))
        for (partition, key), value in self.changelog.items():
            self.stage.restore(partition, key, value)


@SETTINGS
@given(steps=steps_with_restarts(), config=ingest_configs, columns=COLUMNS)
def test_the_stage_equals_its_general_path_through_restarts(steps, config, columns):
    fast = Runner(lambda: fast_stage(config, columns))
    reference = Runner(lambda: ReferenceFused(IngestStage(config), WINDOWS))
    for step in steps:
        if step == "restart":
            fast.restart()
            reference.restart()
            continue
        now, batch = step
        fast.append(batch)
        reference.append(batch)
        got, expected = fast.poll(now), reference.poll(now)
        assert same(
            [(e.topic, e.key, e.value) for e in got.emits],
            [(e.topic, e.key, e.value) for e in expected.emits],
        )
        assert same(sorted(got.state.items()), sorted(expected.state.items()))
        assert fast.stage.ingest.stats == reference.stage.ingest.stats
        assert fast.stage.core.stats == reference.stage.core.stats
        assert fast.stage.hold_offsets() == reference.stage.hold_offsets()
        assert remembered(fast.stage.ingest) == remembered(reference.stage.ingest)


def outcome(check: Any, *args: Any) -> Any:
    try:
        return check(*args)
    except InvalidEvent as exc:
        return ("invalid", exc.field, exc.reason)


@settings(SETTINGS, max_examples=3000)
@given(
    event=st.integers(T0, T0 + 10**6).flatmap(
        lambda t: latency_events(t) | plain_latency_events(t)
    ),
    now_step=st.floats(-400, 400),
)
def test_the_fast_check_accepts_only_what_the_rules_accept_unchanged(event, now_step):
    now_ms = T0 + int(now_step * 1000)
    value = orjson.dumps(event)
    obj = orjson.loads(value)
    by_rules = outcome(_checked_latency_fields, obj, now_ms, LIMITS)
    assert same(outcome(latency_fields, obj, now_ms, LIMITS), by_rules)
    fields = plain_latency(value, now_ms, LIMITS)
    if fields is not None:  # the fast path's case
        assert same(fields, by_rules) and fields[0] is not None
        assert type(fields[6]) is float and math.isfinite(fields[6])


@SETTINGS
@given(
    values=st.lists(raw_values(int(NOW * 1000)), max_size=12),
    limits=st.sampled_from([LIMITS, WIDE_LIMITS]),
)
def test_the_fast_path_takes_exactly_the_messages_plain_latency_accepts(values, limits):
    stage = IngestWindowsStage(IngestStage(IngestConfig(limits=limits)), WINDOWS)
    general: list[int] = []
    stage.ingest._ingest_record = lambda record, *a: general.append(record.offset)
    stage.process([Record("events.raw", 0, i, None, v) for i, v in enumerate(values)], NOW)
    now_ms = int(NOW * 1000)
    plain = [plain_latency_batch(v, now_ms, limits) for v in values]
    assert general == [i for i, fields in enumerate(plain) if fields is None]


# --- examples -----------------------------------------------------------------------------------


def test_plain_messages_take_the_fast_path(monkeypatch: pytest.MonkeyPatch):
    stage = IngestWindowsStage(IngestStage(IngestConfig(limits=LIMITS)), WINDOWS)
    general = []
    monkeypatch.setattr(stage.ingest, "_ingest_record", lambda record, *a: general.append(record))
    event = {"schema": "latency/1", "event_id": "a", "ts": T0 + 1000, "service": "svc"}
    plain = [
        {**event, "endpoint": "/a", "duration_ms": 1.5, "status": 200},
        {**event, "event_id": "b", "endpoint": "/a", "duration_ms": 2, "method": None},
        {**event, "event_id": "c", "endpoint": "/b", "duration_ms": 0.0, "region": "eu"},
    ]
    unusual = [
        {**event, "event_id": "d", "endpoint": "/a", "duration_ms": 1.5, "ts": float(T0)},
        {**event, "endpoint": "/a", "duration_ms": 1.5, "event_id": None},
        [{**event, "event_id": "e", "endpoint": "/a", "duration_ms": 1.5}, {"schema": "x"}],
    ]
    batched = [  # what batching fleets and the SDK send: an array of plain events
        [{**event, "event_id": f"f{i}", "endpoint": "/c", "duration_ms": 3.0} for i in range(3)]
    ]
    records = [
        Record("events.raw", 0, i, None, orjson.dumps(v))
        for i, v in enumerate(plain + unusual + batched)
    ]
    stage.process(records, NOW)
    assert [r.offset for r in general] == [3, 4, 5]
    assert stage.ingest.stats["latency"] == 6
    assert stage.core.stats["events"] == 6


def test_a_number_beyond_double_range_in_an_unknown_field_does_not_lose_the_event():
    """The one documented difference from orjson (schemas/plain_latency.py): JSON allows
    numbers of any size, so a plain event whose unknown field holds 1e400 is windowed."""
    stage = IngestWindowsStage(IngestStage(IngestConfig(limits=LIMITS)), WINDOWS)
    event = {"schema": "latency/1", "event_id": "a", "ts": T0 + 1000, "service": "svc"}
    value = orjson.dumps({**event, "endpoint": "/a", "duration_ms": 1.5})
    value = value[:-1] + b', "trace": 1e400}'
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(value)
    result = stage.process([Record("events.raw", 0, 0, None, value)], NOW)
    assert not [e for e in result.emits if e.topic == "events.dlq"]
    assert stage.core.stats["events"] == 1


def test_a_windowing_bug_dead_letters_the_event_as_the_general_path_does(
    monkeypatch: pytest.MonkeyPatch,
):
    open_bucket = PartialWindowsCore.open_bucket

    def broken(self: Any, ps: Any, start: int, *args: Any) -> Any:
        if start == T0 + 10_000:
            raise RuntimeError("window bug")
        return open_bucket(self, ps, start, *args)

    monkeypatch.setattr(PartialWindowsCore, "open_bucket", broken)
    config = IngestConfig(limits=LIMITS, dedup_max_ids=3)
    event = {"schema": "latency/1", "service": "svc", "endpoint": "/a", "duration_ms": 2.0}
    values = [orjson.dumps({**event, "event_id": f"e{i}", "ts": T0 + 4000 * i}) for i in range(5)]
    records = [Record("events.raw", 0, i, None, v) for i, v in enumerate(values + values)]
    fast = IngestWindowsStage(IngestStage(config), WINDOWS)
    reference = ReferenceFused(IngestStage(config), WINDOWS)
    got, expected = fast.process(records, NOW), reference.process(records, NOW)
    reasons = [e.value["reason"] for e in got.emits if e.topic == "events.dlq"]
    assert reasons == ["internal error in ingest: RuntimeError('window bug')"] * 4
    assert same(
        [(e.topic, e.key, e.value) for e in got.emits],
        [(e.topic, e.key, e.value) for e in expected.emits],
    )
    assert same(sorted(got.state.items()), sorted(expected.state.items()))
    assert fast.ingest.stats == reference.ingest.stats
    assert fast.core.stats == reference.core.stats
    assert remembered(fast.ingest) == remembered(reference.ingest)


def test_a_replay_over_several_partitions_only_rebuilds_windows():
    def ingest() -> IngestWindowsStage:
        return IngestWindowsStage(IngestStage(IngestConfig(limits=LIMITS)), WINDOWS)

    def event(i: int, ts: int, **kw: Any) -> bytes:
        base = {"schema": "latency/1", "event_id": f"l{i}", "ts": ts, "service": "svc"}
        return orjson.dumps({**base, "endpoint": "/a", "duration_ms": 2.0, **kw})

    runner = Runner(ingest)
    runner.append([(1, None, event(99, T0, duration_ms=-1))])  # dead-lettered once
    runner.append([(p, None, event(10 * p + i, T0 + 1000 * i)) for p in (0, 1) for i in range(3)])
    first = runner.poll(NOW)
    assert [e.topic for e in first.emits] == ["events.dlq"]
    runner.restart()  # no window closed: both partitions are read again from offset 0
    runner.append([(0, None, event(7, T0 + 20_000)), (1, None, event(17, T0 + 20_000))])
    second = runner.poll(NOW)
    assert [e.topic for e in second.emits if e.topic != "events.latency"] == []
    partials = [p for e in second.emits if "partials" in e.value for p in expand_partials(e.value)]
    assert sorted((p["series"], p["start"], p["src"], p["count"]) for p in partials) == [
        ("svc|/a", T0, 0, 3),
        ("svc|/a", T0, 1, 3),
    ]
    watermarks = [e.value for e in second.emits if "watermark" in e.value]
    assert sorted((w["src"], w["watermark"]) for w in watermarks) == [
        (0, T0 + 10_000),
        (1, T0 + 10_000),
    ]


def test_a_long_run_of_plain_events_is_windowed_column_by_column_as_the_loop_would(
    monkeypatch: pytest.MonkeyPatch,
):
    """The common case at speed: hundreds of plain events (one a message, arrays, with and
    without status, new series, three windows) go through `_window_columns` and give what
    the general path gives; a duplicate among them sends that run event by event."""
    config = IngestConfig(limits=LIMITS)
    event = {"schema": "latency/1", "service": "svc"}
    values = []
    for i in range(600):
        one = {**event, "event_id": f"e{i}", "ts": T0 + 50 * i, "endpoint": f"/{i % 9}"}
        one["duration_ms"] = (i * 7.3) % 900
        if i % 3:
            one["status"] = (200, 404, 503)[i % 3]
        values.append(one)
    messages = values[:300] + [values[k : k + 4] for k in range(300, 600, 4)]
    messages.insert(340, {**values[5], "event_id": "e510"})  # a later event's id, sent first
    records = [Record("events.raw", 0, i, None, orjson.dumps(m)) for i, m in enumerate(messages)]
    taken: list[bool] = []
    columns = IngestWindowsStage._window_columns

    def spy(self: Any, *args: Any) -> bool:
        taken.append(columns(self, *args))
        return taken[-1]

    monkeypatch.setattr(IngestWindowsStage, "_window_columns", spy)
    fast = IngestWindowsStage(IngestStage(config), WINDOWS)
    reference = ReferenceFused(IngestStage(config), WINDOWS)
    for batch in (records[:300], records[300:330], records[330:]):  # a run each
        got, expected = fast.process(batch, NOW), reference.process(batch, NOW)
        assert same(
            [(e.topic, e.key, e.value) for e in got.emits],
            [(e.topic, e.key, e.value) for e in expected.emits],
        )
    assert taken == [True, True, False]  # two windows; arrays; the duplicate
    final, expected = fast.tick(NOW + FAR_FUTURE), reference.tick(NOW + FAR_FUTURE)
    assert same(
        [(e.topic, e.key, e.value) for e in final.emits],
        [(e.topic, e.key, e.value) for e in expected.emits],
    )
    assert fast.ingest.stats == reference.ingest.stats
    assert fast.ingest.stats["duplicates"] == 1
    assert fast.core.stats == reference.core.stats
    assert fast.hold_offsets() == reference.hold_offsets()
    assert remembered(fast.ingest) == remembered(reference.ingest)


def test_plain_records_are_decoded_together_and_no_value_passes_for_another(
    monkeypatch: pytest.MonkeyPatch,
):
    """`_ingest_lines` decodes a stretch of values as the lines of one text. A value with
    a newline in or around it, a blank one, two events on one line, or one that only
    joined to its neighbour makes JSON must give what decoding each value alone gives:
    every ordered pair of such values between plain ones, against the general path."""
    config = IngestConfig(limits=LIMITS)
    lines = IngestWindowsStage._ingest_lines
    taken: dict[Any, list[bool]] = {}  # (a, b) -> what `_ingest_lines` said, call by call
    case: Any = None

    def spy(self: Any, *args: Any) -> bool:
        taken.setdefault(case, []).append(lines(self, *args))
        return taken[case][-1]

    monkeypatch.setattr(IngestWindowsStage, "_ingest_lines", spy)

    def event(i: int) -> bytes:
        one = {"schema": "latency/1", "event_id": f"e{i}", "ts": T0 + 10 * i, "service": "s"}
        return orjson.dumps({**one, "endpoint": f"/{i % 3}", "duration_ms": i / 4})

    fast = fast_stage(config, (1, 512))
    reference = ReferenceFused(IngestStage(config), WINDOWS)
    offset = 0
    plain = [event(i) for i in range(4)]
    pairs = [(a, b) for a in LINE_TRICKS for b in LINE_TRICKS]
    for n, (a, b) in enumerate([(None, None), *pairs, *SPANNING]):
        case, i = (a, b), 10 * (n + 1)
        if a is None:
            values = plain
        elif b == "spanning":  # values, none plain, that a stream of JSON texts would join
            values = [piece(event(i + k)) for k, piece in enumerate(a)]
        else:
            values = [event(i), a(event(i + 1)), b(event(i + 2)), event(i + 3)]
        records = [Record("events.raw", 0, offset + k, None, v) for k, v in enumerate(values)]
        offset += len(records)
        got, expected = fast.process(records, NOW), reference.process(records, NOW)
        assert same(
            [(e.topic, e.key, e.value) for e in got.emits],
            [(e.topic, e.key, e.value) for e in expected.emits],
        )
        assert fast.ingest.stats == reference.ingest.stats
    # Four plain values are decoded together, and so are a pretty-printed event (one
    # JSON text over lines) and plain ones around a value that does not name the schema
    # (it goes its own way); two values that do not name it among four send all record
    # by record; a value that is not plain (two events in it, a fragment), or has
    # whitespace around it, sends its stretch record by record, and a stretch that
    # failed is never tried again.
    assert taken[None, None] == [True]
    assert taken[_named_twice, _named_twice] == [True]
    assert taken[_pretty, _named_twice] == [True]
    assert taken[_named_twice, _blank] == [True, True]
    assert (_blank, _newline) not in taken
    for a, b in pairs:
        if a not in (_named_twice, _pretty, _blank, _newline):
            assert taken[a, b][0] is False
            if b not in (_blank, _newline):  # all four name the schema: one stretch
                assert taken[a, b] == [False]
    final, expected = fast.tick(NOW + FAR_FUTURE), reference.tick(NOW + FAR_FUTURE)
    assert same(
        [(e.topic, e.key, e.value) for e in final.emits],
        [(e.topic, e.key, e.value) for e in expected.emits],
    )
    assert fast.ingest.stats["latency"] > len(pairs) * 2
    assert fast.core.stats == reference.core.stats
    assert remembered(fast.ingest) == remembered(reference.ingest)


def spy_on_lines(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, bool]]:
    """Every `_ingest_lines` call from now on, as (partition, records, what it said)."""
    lines = IngestWindowsStage._ingest_lines
    taken: list[tuple[int, int, bool]] = []

    def spy(self: Any, partition: int, records: list[Record], *args: Any) -> bool:
        taken.append((partition, len(records), lines(self, partition, records, *args)))
        return taken[-1][2]

    monkeypatch.setattr(IngestWindowsStage, "_ingest_lines", spy)
    return taken


def _escaped_schema(event: bytes) -> bytes:
    return event.replace(b'"latency/1"', b'"latency\\/1"')


def _oversized(event: bytes) -> bytes:
    return event[:-1] + b',"pad":"' + b"x" * LIMITS.max_message_bytes + b'"}'


def _ts_past_64_bits(event: bytes) -> bytes:
    doc = {**orjson.loads(event), "ts": 0}
    return orjson.dumps(doc).replace(b'"ts":0', b'"ts":%d' % 2**64)  # orjson writes no such int


def _error(event: bytes) -> bytes:
    return orjson.dumps({"schema": "error/1", "event_id": "x1", "ts": T0, "service": "s"})


# One record among many plain ones that the probe does not look at, which must not be
# decoded with the rest: no value, too large, the schema's name escaped (msgspec reads it
# as the name; the rule sends it down the general path), another schema; and two events
# in one value, which names the schema, so its stretch is the whole run, not tried again.
# With `twice`, a later value names the schema twice, so the run holds the name as many
# times as it has values.
AFTER_ODD = [(200, False), (192, True)]
ODD_ONES = [
    (lambda e: None, False, AFTER_ODD),
    (_oversized, False, AFTER_ODD),
    (_escaped_schema, False, AFTER_ODD),
    (_escaped_schema, True, AFTER_ODD),
    (_error, True, AFTER_ODD),
    (lambda e: e + b" " + e, False, [(200, False)]),
    (_ts_past_64_bits, False, [(200, False)]),
]


@pytest.mark.parametrize(
    ("odd", "twice", "tries"),
    ODD_ONES,
    ids=[
        "none",
        "oversized",
        "escaped",
        "escaped-name-count-even",
        "error",
        "two",
        "ts-past-64-bits",
    ],
)
def test_a_run_tried_at_once_is_not_decoded_past_one_odd_record(
    monkeypatch: pytest.MonkeyPatch, odd: Any, twice: bool, tries: list[tuple[int, bool]]
):
    """When every probed record is a latency event, each `columns_up_to` records are first
    tried as one stretch: one record the probe missed that is not plain makes that try
    fail (changing nothing), and the stretches around it are decoded as before."""
    config = IngestConfig(limits=LIMITS)
    calls = spy_on_lines(monkeypatch)

    def event(i: int) -> bytes:
        one = {"schema": "latency/1", "event_id": f"e{i}", "ts": T0 + 10 * i, "service": "s"}
        return orjson.dumps({**one, "endpoint": f"/{i % 3}", "duration_ms": i / 4})

    values = [event(i) for i in range(200)]
    values[7] = odd(values[7])  # the probe looks at every 6th record of 200
    if twice:
        values[100] = _named_twice(values[100])
    values[150] = values[150].replace(b'"s"', b'"s\\\\x"')  # a backslash elsewhere, plain
    records = [Record("events.raw", 0, k, None, v) for k, v in enumerate(values)]
    fast = fast_stage(config, (32, 512))
    reference = ReferenceFused(IngestStage(config), WINDOWS)
    got, expected = fast.process(records, NOW), reference.process(records, NOW)
    assert same(
        [(e.topic, e.key, e.value) for e in got.emits],
        [(e.topic, e.key, e.value) for e in expected.emits],
    )
    # The whole run failed at once; the 192 plain ones after the odd one were decoded
    # together (the 7 before it are too few: record by record).
    assert [(n, ok) for _, n, ok in calls] == tries
    final, expected = fast.tick(NOW + FAR_FUTURE), reference.tick(NOW + FAR_FUTURE)
    assert same(
        [(e.topic, e.key, e.value) for e in final.emits],
        [(e.topic, e.key, e.value) for e in expected.emits],
    )
    assert fast.ingest.stats == reference.ingest.stats
    assert fast.core.stats == reference.core.stats
    assert remembered(fast.ingest) == remembered(reference.ingest)


def test_a_run_of_plain_records_is_decoded_at_once(monkeypatch: pytest.MonkeyPatch):
    """All plain, probed or not: one try per `columns_up_to` records, each taken."""
    config = IngestConfig(limits=LIMITS)
    calls = spy_on_lines(monkeypatch)
    values = [
        orjson.dumps(
            {
                "schema": "latency/1",
                "event_id": f"e{i}",
                "ts": T0 + i,
                "service": "s",
                "endpoint": "/",
                "duration_ms": 1.5,
            }
        )
        for i in range(300)
    ]
    records = [Record("events.raw", 0, k, None, v) for k, v in enumerate(values)]
    fast = fast_stage(config, (32, 128))
    fast.process(records, NOW)
    assert [(n, ok) for _, n, ok in calls] == [(128, True), (128, True), (44, True)]
    assert fast.ingest.stats["latency"] == 300


def test_a_partition_whose_try_failed_looks_for_stretches_until_a_run_is_plain(
    monkeypatch: pytest.MonkeyPatch,
):
    """A try at once that fails costs a decode up to the odd record: once tries of a
    partition's runs fail often (a moving average of the runs plain throughout below
    0.6), its runs look for stretches (no try of the whole) until enough are plain
    again; then tries resume. Other partitions are not affected."""
    config = IngestConfig(limits=LIMITS)
    taken = spy_on_lines(monkeypatch)
    fast = fast_stage(config, (32, 512))
    reference = ReferenceFused(IngestStage(config), WINDOWS)
    offsets = [0, 0]

    def run(partition: int, odd_at: int | None) -> list[tuple[int, int, bool]]:
        start = offsets[partition]
        values = []
        for i in range(start, start + 100):
            one = {"schema": "latency/1", "event_id": f"p{partition}e{i}", "ts": T0 + 10 * i}
            one |= {"service": "s", "endpoint": f"/{i % 3}", "duration_ms": i / 4}
            values.append(orjson.dumps(one))
        if odd_at is not None:
            values[odd_at] = _error(values[odd_at])
        records = [
            Record("events.raw", partition, start + k, None, v) for k, v in enumerate(values)
        ]
        offsets[partition] += len(records)
        taken.clear()
        got, expected = fast.process(records, NOW), reference.process(records, NOW)
        assert same(
            [(e.topic, e.key, e.value) for e in got.emits],
            [(e.topic, e.key, e.value) for e in expected.emits],
        )
        return list(taken)

    # every 3rd record probed of 100: an error at 40 is missed by the probe
    around = [(0, 40, True), (0, 59, True)]  # the stretches before and after it
    for _ in range(3):  # plain share 1 -> 0.8 -> 0.64 -> 0.51
        assert run(0, 40) == [(0, 100, False), *around]  # tried, failed: stretches
    assert run(0, 40) == around  # not tried: stretches at once (-> 0.41)
    assert run(1, None) == [(1, 100, True)]  # another partition: tried
    assert run(0, None) == [(0, 100, True)]  # not tried: one stretch, plain (-> 0.53)
    assert run(0, None) == [(0, 100, True)]  # the same (-> 0.62)
    assert run(0, 40) == [(0, 100, False), *around]  # tried again
    assert fast.ingest.stats == reference.ingest.stats
    assert fast.core.stats == reference.core.stats
