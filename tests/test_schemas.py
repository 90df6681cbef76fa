"""The events.raw input contract: decoding, every validation rule, normalization, dead letters."""

from __future__ import annotations

import base64
import copy
import math
from typing import Any

import orjson
import pytest

from schemas.dlq import MAX_RAW_BYTES, dead_letter
from schemas.events import (
    TRUNCATION_MARKER,
    InvalidEvent,
    Limits,
    decode_batch,
    decode_message,
    validate_event,
)

LIMITS = Limits()
NOW_MS = 1_795_320_060_000


def error_event(**overrides: Any) -> dict[str, Any]:
    event = {
        "schema": "error/1",
        "event_id": "e-7f3a",
        "ts": 1_795_320_000_123,
        "service": "checkout",
        "env": "prod",
        "release": "1.4.2",
        "host": "web-12",
        "severity": "high",
        "exception": {"type": "TimeoutError", "message": "upstream pay-api timed out"},
        "stacktrace": [
            {
                "module": "app.pay",
                "function": "charge",
                "filename": "app/pay.py",
                "lineno": 88,
                "in_app": True,
            }
        ],
        "fingerprint": None,
        "context": {"user_id": "123"},
        "tags": {"region": "eu"},
    }
    event.update(overrides)
    return event


def latency_event(**overrides: Any) -> dict[str, Any]:
    event = {
        "schema": "latency/1",
        "event_id": "l-19c2",
        "ts": 1_795_320_000_456,
        "service": "checkout",
        "endpoint": "/api/pay",
        "method": "POST",
        "status": 200,
        "duration_ms": 12.5,
        "region": "eu",
        "host": "web-12",
    }
    event.update(overrides)
    return event


def rejection(obj: Any, now_ms: int = NOW_MS, limits: Limits = LIMITS) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        validate_event(obj, now_ms, limits)
    return info.value


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        node = {"child": node}
    return node


def without(event: dict[str, Any], key: str) -> dict[str, Any]:
    event = dict(event)
    del event[key]
    return event


# --- decode_message ---------------------------------------------------------------------------


def test_decode_message_wraps_an_object_in_a_list():
    assert decode_message(b'{"a": 1}', LIMITS) == [{"a": 1}]


def test_decode_message_returns_an_array_as_is_including_empty():
    assert decode_message(b'[{"a": 1}, 2]', LIMITS) == [{"a": 1}, 2]
    assert decode_message(b"[]", LIMITS) == []


def test_decode_batch_tells_an_array_from_a_single_object():
    assert decode_batch(b'{"a": 1}', LIMITS) == ([{"a": 1}], False)
    assert decode_batch(b'[{"a": 1}]', LIMITS) == ([{"a": 1}], True)


def test_oversize_message_is_rejected_before_decoding():
    limits = Limits(max_message_bytes=64)
    with pytest.raises(InvalidEvent) as info:
        decode_message(b"[" + b"1," * 40 + b"1]", limits)
    assert info.value.field == "$"
    assert "64" in info.value.reason and "message" in info.value.reason


def test_invalid_utf8_is_rejected_as_not_utf8():
    with pytest.raises(InvalidEvent) as info:
        decode_message(b'{"service": "\xff\xfe"}', LIMITS)
    assert info.value.field == "$"
    assert "UTF-8" in info.value.reason


def test_invalid_json_is_rejected_with_the_parse_error():
    with pytest.raises(InvalidEvent) as info:
        decode_message(b'{"service": ', LIMITS)
    assert info.value.field == "$"
    assert "not valid JSON" in info.value.reason


@pytest.mark.parametrize("raw", [b"1", b'"text"', b"null", b"true"])
def test_a_message_that_is_neither_object_nor_array_is_rejected(raw: bytes):
    with pytest.raises(InvalidEvent) as info:
        decode_message(raw, LIMITS)
    assert info.value.field == "$"
    assert "message must be a JSON object or an array" in info.value.reason


def test_too_many_events_in_one_message_is_rejected():
    with pytest.raises(InvalidEvent) as info:
        decode_message(b"[1,2,3]", Limits(max_events_per_message=2))
    assert info.value.field == "$" and "3 events" in info.value.reason


def test_invalid_event_str_is_field_then_reason():
    err = InvalidEvent("exception.type", "exception.type is required")
    assert str(err) == "exception.type: exception.type is required"
    assert (err.field, err.reason) == ("exception.type", "exception.type is required")


# --- every rule names its field ---------------------------------------------------------------

LONG_ID = "x" * (LIMITS.max_id_len + 1)

RULES: list[tuple[str, Any, str]] = [
    ("not an object", [1, 2], "$"),
    ("schema missing", without(error_event(), "schema"), "schema"),
    ("schema unknown", error_event(schema="error/2"), "schema"),
    ("schema not a string", error_event(schema=7), "schema"),
    ("ts missing", without(error_event(), "ts"), "ts"),
    ("ts a boolean", error_event(ts=True), "ts"),
    ("ts garbage string", error_event(ts="yesterday"), "ts"),
    ("ts in seconds", error_event(ts=1_795_320_000), "ts"),
    ("ts far future", error_event(ts=NOW_MS + 301_000), "ts"),
    ("ts an object", latency_event(ts={"ms": 1}), "ts"),
    ("ts string too long", latency_event(ts="2026-11-22T10:00:00Z" + " " * 60), "ts"),
    ("service missing", without(error_event(), "service"), "service"),
    ("service empty", latency_event(service=""), "service"),
    ("service a number", latency_event(service=5), "service"),
    ("service too long", latency_event(service=LONG_ID), "service"),
    ("event_id a number", latency_event(event_id=17), "event_id"),
    ("event_id too long", error_event(event_id=LONG_ID), "event_id"),
    ("env too long", error_event(env=LONG_ID), "env"),
    ("release a list", error_event(release=["1"]), "release"),
    ("host too long", latency_event(host=LONG_ID), "host"),
    ("region too long", latency_event(region=LONG_ID), "region"),
    ("method a number", latency_event(method=1), "method"),
    ("endpoint missing", without(latency_event(), "endpoint"), "endpoint"),
    ("endpoint too long", latency_event(endpoint=LONG_ID), "endpoint"),
    ("duration missing", without(latency_event(), "duration_ms"), "duration_ms"),
    ("duration a string", latency_event(duration_ms="12"), "duration_ms"),
    ("duration a boolean", latency_event(duration_ms=True), "duration_ms"),
    ("duration negative", latency_event(duration_ms=-0.5), "duration_ms"),
    ("duration absurd", latency_event(duration_ms=3_600_001), "duration_ms"),
    ("status a float", latency_event(status=200.0), "status"),
    ("status a boolean", latency_event(status=True), "status"),
    ("status below 100", latency_event(status=99), "status"),
    ("status above 599", latency_event(status=600), "status"),
    ("severity unknown", error_event(severity="urgent"), "severity"),
    ("severity a number", error_event(severity=1), "severity"),
    ("exception missing", without(error_event(), "exception"), "exception"),
    ("exception a string", error_event(exception="boom"), "exception"),
    ("exception.type missing", error_event(exception={"message": "m"}), "exception.type"),
    ("exception.type empty", error_event(exception={"type": ""}), "exception.type"),
    ("exception.type too long", error_event(exception={"type": LONG_ID}), "exception.type"),
    (
        "exception.message a number",
        error_event(exception={"type": "E", "message": 3}),
        "exception.message",
    ),
    ("stacktrace an object", error_event(stacktrace={"lineno": 1}), "stacktrace"),
    ("frame not an object", error_event(stacktrace=[{}, "frame"]), "stacktrace[1]"),
    (
        "frame lineno negative",
        error_event(stacktrace=[{}, {}, {}, {"lineno": -1}]),
        "stacktrace[3].lineno",
    ),
    ("frame lineno a boolean", error_event(stacktrace=[{"lineno": True}]), "stacktrace[0].lineno"),
    ("frame lineno a string", error_event(stacktrace=[{"lineno": "8"}]), "stacktrace[0].lineno"),
    ("frame in_app a number", error_event(stacktrace=[{"in_app": 1}]), "stacktrace[0].in_app"),
    ("frame module a number", error_event(stacktrace=[{"module": 1}]), "stacktrace[0].module"),
    ("frame function a list", error_event(stacktrace=[{"function": []}]), "stacktrace[0].function"),
    ("frame filename a bool", error_event(stacktrace=[{"filename": 0}]), "stacktrace[0].filename"),
    ("fingerprint empty", error_event(fingerprint=[]), "fingerprint"),
    ("fingerprint a string", error_event(fingerprint="abc"), "fingerprint"),
    ("fingerprint part a number", error_event(fingerprint=["a", 2]), "fingerprint[1]"),
    ("fingerprint part too long", error_event(fingerprint=[LONG_ID]), "fingerprint[0]"),
    ("context a list", error_event(context=[1]), "context"),
    ("context too deep", error_event(context=nested(LIMITS.max_context_depth + 1)), "context"),
    ("context too big", error_event(context={"blob": "x" * 20_000}), "context"),
    ("tags a list", error_event(tags=["a"]), "tags"),
    ("tags too many", error_event(tags={f"k{i}": "v" for i in range(65)}), "tags"),
    ("tag value null", error_event(tags={"region": None}), "tags.region"),
    ("tag value an object", error_event(tags={"region": {"a": 1}}), "tags.region"),
    ("tag key empty", error_event(tags={"": "v"}), "tags"),
    ("tag key too long", error_event(tags={LONG_ID: "v"}), "tags"),
]


@pytest.mark.parametrize(("obj", "field"), [(o, f) for _, o, f in RULES], ids=[r[0] for r in RULES])
def test_every_rule_rejects_with_a_reason_that_names_its_field(obj: Any, field: str):
    err = rejection(obj)
    assert err.field == field
    named = "event" if field == "$" else field
    assert named in err.reason, err.reason
    assert str(err) == f"{field}: {err.reason}"


# --- ts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T10:00:00Z", 1_795_341_600_000),
        ("2026-11-22T10:00:00.123Z", 1_795_341_600_123),
        ("2026-11-22T12:00:00.123+02:00", 1_795_341_600_123),
        ("2026-11-22T10:00:00.123", 1_795_341_600_123),  # naive means UTC
        ("2026-11-22 10:00:00Z", 1_795_341_600_000),
    ],
)
def test_iso8601_ts_is_normalized_to_int_epoch_ms(text: str, expected: int):
    event = validate_event(latency_event(ts=text), 1_795_341_600_123, LIMITS)
    assert event["ts"] == expected and type(event["ts"]) is int


def test_float_ms_ts_becomes_int():
    event = validate_event(latency_event(ts=1_795_320_000_456.9), NOW_MS, LIMITS)
    assert event["ts"] == 1_795_320_000_456 and type(event["ts"]) is int


def test_future_ts_within_tolerance_is_accepted_beyond_is_rejected():
    assert (
        validate_event(latency_event(ts=NOW_MS + 300_000), NOW_MS, LIMITS)["ts"] == NOW_MS + 300_000
    )
    err = rejection(error_event(ts=NOW_MS + 300_001))
    assert err.field == "ts" and "future" in err.reason


def test_iso_ts_in_the_future_is_rejected():
    err = rejection(latency_event(ts="2099-01-01T00:00:00Z"))
    assert err.field == "ts" and "future" in err.reason


def test_ts_before_2000_is_rejected_with_a_seconds_hint():
    err = rejection(latency_event(ts="1999-12-31T23:59:59Z"))
    assert err.field == "ts" and "seconds" in err.reason


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_rejected(bad: float):
    assert rejection(latency_event(ts=bad)).field == "ts"
    assert rejection(latency_event(duration_ms=bad)).field == "duration_ms"
    assert rejection(error_event(tags={"ratio": bad})).field == "tags.ratio"


# --- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "event"),
    [
        ("ts", latency_event(ts=True)),
        ("duration_ms", latency_event(duration_ms=False)),
        ("status", latency_event(status=True)),
        ("stacktrace[0].lineno", error_event(stacktrace=[{"lineno": False}])),
    ],
)
def test_booleans_are_not_accepted_as_numbers(field: str, event: dict[str, Any]):
    err = rejection(event)
    assert err.field == field and "boolean" in err.reason


def test_negative_duration_is_rejected():
    err = rejection(latency_event(duration_ms=-1))
    assert err.field == "duration_ms" and ">= 0" in err.reason


def test_absurd_duration_over_one_hour_is_rejected_but_one_hour_is_fine():
    assert validate_event(latency_event(duration_ms=3_600_000), NOW_MS, LIMITS)["duration_ms"] == (
        3_600_000.0
    )
    err = rejection(latency_event(duration_ms=3_600_000.5))
    assert err.field == "duration_ms" and "absurd" in err.reason


def test_integer_duration_becomes_float_and_zero_is_fine():
    for value in (0, 12):
        got = validate_event(latency_event(duration_ms=value), NOW_MS, LIMITS)["duration_ms"]
        assert got == value and type(got) is float


def test_status_is_optional_and_bounded_inclusive():
    assert validate_event(without(latency_event(), "status"), NOW_MS, LIMITS)["status"] is None
    for status in (100, 599):
        assert validate_event(latency_event(status=status), NOW_MS, LIMITS)["status"] == status


# --- normalized shape ---------------------------------------------------------------------------


def test_latency_event_is_normalized_with_every_optional_field_present():
    minimal = {
        "schema": "latency/1",
        "ts": 1_795_320_000_456,
        "service": "checkout",
        "endpoint": "/api/pay",
        "duration_ms": 12,
    }
    assert validate_event(minimal, NOW_MS, LIMITS) == {
        "schema": "latency/1",
        "event_id": None,
        "ts": 1_795_320_000_456,
        "service": "checkout",
        "endpoint": "/api/pay",
        "method": None,
        "status": None,
        "duration_ms": 12.0,
        "region": None,
        "host": None,
    }


def test_error_event_is_normalized_with_every_optional_field_present():
    minimal = {
        "schema": "error/1",
        "ts": 1_795_320_000_123,
        "service": "checkout",
        "exception": {"type": "KeyError"},
    }
    assert validate_event(minimal, NOW_MS, LIMITS) == {
        "schema": "error/1",
        "event_id": None,
        "ts": 1_795_320_000_123,
        "service": "checkout",
        "env": None,
        "release": None,
        "host": None,
        "severity": "medium",
        "exception": {"type": "KeyError", "message": ""},
        "stacktrace": None,
        "frames_omitted": 0,
        "fingerprint": None,
        "context": None,
        "tags": None,
    }


def test_full_error_event_keeps_its_values():
    event = validate_event(error_event(), NOW_MS, LIMITS)
    assert event["severity"] == "high"
    assert event["exception"] == {"type": "TimeoutError", "message": "upstream pay-api timed out"}
    assert event["stacktrace"] == error_event()["stacktrace"]
    assert event["context"] == {"user_id": "123"} and event["tags"] == {"region": "eu"}


def test_unknown_top_level_fields_are_dropped_not_rejected():
    event = validate_event(latency_event(extra={"x": 1}, sdk="py"), NOW_MS, LIMITS)
    assert "extra" not in event and "sdk" not in event


def test_frames_keep_only_known_fields_and_fill_missing_with_none():
    event = validate_event(error_event(stacktrace=[{"lineno": 0, "colno": 3}]), NOW_MS, LIMITS)
    assert event["stacktrace"] == [
        {"module": None, "function": None, "filename": None, "lineno": 0, "in_app": None}
    ]


def test_empty_event_id_counts_as_absent():
    assert validate_event(latency_event(event_id=""), NOW_MS, LIMITS)["event_id"] is None
    assert validate_event(error_event(event_id=""), NOW_MS, LIMITS)["event_id"] is None


def test_validation_does_not_mutate_its_input():
    raw = error_event(stacktrace=[{"lineno": 1}] * 300, tags={"n": 1})
    before = copy.deepcopy(raw)
    validate_event(raw, NOW_MS, LIMITS)
    assert raw == before


# --- bounds: truncate free text, reject identifiers ------------------------------------------


def test_long_exception_message_is_truncated_with_a_marker_not_rejected():
    message = "m" * 10_000
    event = validate_event(error_event(exception={"type": "E", "message": message}), NOW_MS, LIMITS)
    got = event["exception"]["message"]
    assert len(got) == LIMITS.max_text_len
    assert got.endswith(TRUNCATION_MARKER) and got.startswith("m" * 100)


def test_message_at_the_limit_is_kept_whole():
    message = "m" * LIMITS.max_text_len
    event = validate_event(error_event(exception={"type": "E", "message": message}), NOW_MS, LIMITS)
    assert event["exception"]["message"] == message


def test_identifier_at_the_limit_is_accepted_one_over_is_rejected():
    at_limit = "s" * LIMITS.max_id_len
    assert validate_event(latency_event(service=at_limit), NOW_MS, LIMITS)["service"] == at_limit
    err = rejection(latency_event(service=at_limit + "s"))
    assert err.field == "service" and str(LIMITS.max_id_len) in err.reason


def test_long_stacktrace_keeps_first_and_last_hundred_frames_and_counts_the_rest():
    frames = [{"function": f"f{i}", "lineno": i} for i in range(250)]
    event = validate_event(error_event(stacktrace=frames), NOW_MS, LIMITS)
    kept = event["stacktrace"]
    assert len(kept) == 200 and event["frames_omitted"] == 50
    assert [f["lineno"] for f in kept] == list(range(100)) + list(range(150, 250))


def test_stacktrace_at_the_limit_is_kept_whole():
    frames = [{"lineno": i} for i in range(200)]
    event = validate_event(error_event(stacktrace=frames), NOW_MS, LIMITS)
    assert len(event["stacktrace"]) == 200 and event["frames_omitted"] == 0


def test_context_at_max_depth_is_accepted_one_deeper_is_rejected():
    ok = nested(LIMITS.max_context_depth)
    assert validate_event(error_event(context=ok), NOW_MS, LIMITS)["context"] == ok
    err = rejection(error_event(context={"list": [[[[[[[[1]]]]]]]]}))
    assert err.field == "context" and "deeper" in err.reason


def test_context_over_16_kib_encoded_is_rejected():
    err = rejection(error_event(context={"blob": "x" * LIMITS.max_context_bytes}))
    assert err.field == "context" and "bytes" in err.reason


def test_tags_numbers_and_booleans_are_stringified():
    event = validate_event(error_event(tags={"n": 3, "r": 0.5, "b": True}), NOW_MS, LIMITS)
    assert event["tags"] == {"n": "3", "r": "0.5", "b": "true"}


def test_fingerprint_is_kept_as_a_list_of_strings():
    event = validate_event(error_event(fingerprint=["{{ default }}", "db"]), NOW_MS, LIMITS)
    assert event["fingerprint"] == ["{{ default }}", "db"]


@pytest.mark.parametrize("severity", ["critical", "high", "medium", "low"])
def test_every_severity_is_accepted(severity: str):
    assert validate_event(error_event(severity=severity), NOW_MS, LIMITS)["severity"] == severity


def test_missing_or_null_severity_defaults_to_medium():
    assert validate_event(error_event(severity=None), NOW_MS, LIMITS)["severity"] == "medium"


# --- dead letters -------------------------------------------------------------------------------


def test_dead_letter_keeps_utf8_raw_as_text_with_its_source():
    dl = dead_letter("ts is required", "ts", "events.raw", 3, 42, 1, b'{"a": 1}', 1234)
    assert dl == {
        "reason": "ts is required",
        "field": "ts",
        "source": {"topic": "events.raw", "partition": 3, "offset": 42, "index": 1},
        "raw": '{"a": 1}',
        "dlq_ts": 1234,
    }
    orjson.dumps(dl)  # JSON-serialisable


def test_dead_letter_keeps_invalid_utf8_as_base64():
    raw = b"\xff\xfe{not utf8"
    dl = dead_letter("bad", "$", "events.raw", 0, 1, None, raw, 1)
    assert "raw" not in dl and base64.b64decode(dl["raw_b64"]) == raw


def test_dead_letter_truncates_raw_beyond_the_bound_and_keeps_the_size():
    raw = b"a" * (MAX_RAW_BYTES + 10)
    dl = dead_letter("too big", "$", "events.raw", 0, 1, None, raw, 1)
    assert len(dl["raw"]) == MAX_RAW_BYTES and dl["raw_truncated"] is True
    assert dl["raw_size"] == MAX_RAW_BYTES + 10


def test_dead_letter_of_a_hostile_maximal_message_fits_kafkas_default_limit():
    """1 MiB of control characters (JSON-escaped as \\u00XX) or of invalid UTF-8 (base64)."""
    for raw in (b"\x01" * (1 << 20), b"\xff" * (1 << 20)):
        dl = dead_letter("too big", "$", "events.raw", 0, 1, None, raw, 1)
        assert len(orjson.dumps(dl)) < 1_000_000


def test_dead_letter_truncation_does_not_split_a_utf8_character_into_base64():
    raw = b"a" * (MAX_RAW_BYTES - 1) + "é".encode() + b"tail"
    dl = dead_letter("too big", "$", "events.raw", 0, 1, None, raw, 1)
    assert dl["raw"] == "a" * (MAX_RAW_BYTES - 1) and dl["raw_truncated"] is True


def test_dead_letter_at_the_bound_is_whole():
    raw = b"a" * MAX_RAW_BYTES
    dl = dead_letter("r", "$", "events.raw", 0, 1, None, raw, 1)
    assert len(dl["raw"]) == MAX_RAW_BYTES and "raw_truncated" not in dl
