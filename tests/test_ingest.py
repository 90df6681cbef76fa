"""The ingest stage: routing, dead letters, deterministic ids and the duplicate window."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

import stages.ingest as ingest_module
from schemas.events import TRUNCATION_MARKER, Limits
from stages.base import Emit, Record, StageResult
from stages.ingest import IngestConfig, IngestStage

NOW = 1_795_320_060.0  # epoch seconds
TS = 1_795_320_000_123  # epoch ms, a minute before NOW


def error_event(**overrides: Any) -> dict[str, Any]:
    event = {
        "schema": "error/1",
        "event_id": "e-7f3a",
        "ts": TS,
        "service": "checkout",
        "severity": "high",
        "exception": {"type": "TimeoutError", "message": "upstream timed out after 3000 ms"},
        "stacktrace": [{"module": "app.pay", "function": "charge", "lineno": 88, "in_app": True}],
    }
    event.update(overrides)
    return event


def latency_event(**overrides: Any) -> dict[str, Any]:
    event = {
        "schema": "latency/1",
        "event_id": "l-19c2",
        "ts": TS,
        "service": "checkout",
        "endpoint": "/api/pay",
        "method": "POST",
        "status": 200,
        "duration_ms": 12.5,
    }
    event.update(overrides)
    return event


def record(value: Any, offset: int = 0, key: bytes | None = b"checkout", partition: int = 0):
    """A raw record; dicts and lists are encoded as JSON."""
    if isinstance(value, dict | list):
        value = orjson.dumps(value)
    return Record("events.raw", partition, offset, key, value)


def run(stage: IngestStage, *records: Record, now: float = NOW) -> list[Emit]:
    return stage.process(list(records), now).emits


def topics(emits: list[Emit]) -> list[str]:
    return [e.topic for e in emits]


# --- the Stage protocol -------------------------------------------------------------------------


def test_stage_declares_its_name_input_and_statelessness():
    stage = IngestStage()
    assert (stage.name, stage.inputs, stage.stateful) == ("ingest", ("events.raw",), False)


def test_tick_emits_nothing_and_partition_hooks_are_no_ops():
    stage = IngestStage()
    stage.assign([0, 1])
    stage.restore(0, "k", {"v": 1})
    stage.revoke([0])
    result = stage.tick(NOW)
    assert isinstance(result, StageResult) and result.emits == [] and result.state == {}


def test_process_returns_no_state_changes():
    assert IngestStage().process([record(latency_event())], NOW).state == {}


# --- routing ------------------------------------------------------------------------------------


def test_latency_event_goes_to_events_latency_partitioned_by_service():
    (emit,) = run(IngestStage(), record(latency_event()))
    assert emit.topic == "events.latency" and emit.key == "checkout"
    assert emit.value["duration_ms"] == 12.5 and emit.value["ts"] == TS
    assert emit.value["event_id"] == "l-19c2"


def test_error_event_goes_to_events_errors_keyed_by_its_fingerprint_id():
    (emit,) = run(IngestStage(), record(error_event()))
    assert emit.topic == "events.errors"
    assert isinstance(emit.value["fingerprint_id"], str) and emit.value["fingerprint_id"]
    assert emit.key == emit.value["fingerprint_id"]
    assert emit.value["severity"] == "high"


def test_the_same_error_from_two_events_gets_the_same_stable_fingerprint_key():
    first = run(IngestStage(), record(error_event(event_id="a")))
    second = run(IngestStage(), record(error_event(event_id="b")), now=NOW + 5)
    assert first[0].key == second[0].key


def test_emits_keep_the_order_of_their_inputs():
    batch = [latency_event(event_id=str(i), duration_ms=float(i)) for i in range(5)]
    emits = run(IngestStage(), record(batch))
    assert [e.value["duration_ms"] for e in emits] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_every_emit_value_is_json_serialisable():
    emits = run(IngestStage(), record([error_event(), latency_event(), {"bad": 1}]))
    assert sorted(e.topic for e in emits) == ["events.dlq", "events.errors", "events.latency"]
    for emit in emits:
        orjson.dumps(emit.value)


def test_empty_array_produces_nothing():
    stage = IngestStage()
    assert run(stage, record(b"[]")) == []
    assert stage.stats == {"errors": 0, "latency": 0, "dead_letters": 0, "duplicates": 0}


# --- dead letters -------------------------------------------------------------------------------


def test_invalid_utf8_goes_to_the_dlq_as_raw_b64():
    raw = b'{"schema": "latency/1", "service": "\xff\xfe"}'
    (emit,) = run(IngestStage(), record(raw, offset=7, key=b"svc"))
    assert emit.topic == "events.dlq" and emit.key == "svc"
    dl = emit.value
    assert dl["field"] == "$" and "UTF-8" in dl["reason"]
    assert dl["source"] == {"topic": "events.raw", "partition": 0, "offset": 7, "index": None}
    assert "raw" not in dl and base64.b64decode(dl["raw_b64"]) == raw
    assert dl["dlq_ts"] == int(NOW * 1000)


def test_invalid_json_goes_to_the_dlq_with_the_raw_text():
    (emit,) = run(IngestStage(), record(b'{"schema": '))
    assert emit.topic == "events.dlq" and emit.value["raw"] == '{"schema": '
    assert "JSON" in emit.value["reason"]


def test_a_single_invalid_object_is_dead_lettered_whole_without_an_index():
    raw = orjson.dumps(latency_event(duration_ms=-3))
    (emit,) = run(IngestStage(), record(raw, offset=4))
    assert emit.value["field"] == "duration_ms" and "duration_ms" in emit.value["reason"]
    assert emit.value["source"]["index"] is None and emit.value["raw"] == raw.decode()


def test_array_with_mixed_good_and_bad_lets_the_good_flow_and_dead_letters_each_bad():
    bad_latency = latency_event(event_id="x", status=True)
    bad_error = error_event(event_id="y", exception={"message": "no type"})
    batch = [latency_event(event_id="1"), bad_latency, error_event(event_id="2"), 42, bad_error]
    stage = IngestStage()
    emits = run(stage, record(batch, offset=9))
    assert topics(emits) == [
        "events.latency",
        "events.dlq",
        "events.errors",
        "events.dlq",
        "events.dlq",
    ]
    dead = [e.value for e in emits if e.topic == "events.dlq"]
    assert [d["source"]["index"] for d in dead] == [1, 3, 4]
    assert [d["field"] for d in dead] == ["status", "$", "exception.type"]
    assert orjson.loads(dead[0]["raw"]) == bad_latency  # the element alone, re-encoded
    assert dead[1]["raw"] == "42"
    assert all(d["source"]["offset"] == 9 for d in dead)
    assert stage.stats == {"errors": 1, "latency": 1, "dead_letters": 3, "duplicates": 0}


def test_oversize_message_is_one_dead_letter_with_truncated_raw():
    big = b"[" + b" " * (1 << 20) + b"]"
    stage = IngestStage()
    (emit,) = run(stage, record(big))
    assert emit.topic == "events.dlq" and emit.value["field"] == "$"
    assert "bytes" in emit.value["reason"] and emit.value["raw_truncated"] is True
    assert stage.stats["dead_letters"] == 1


def test_message_with_too_many_events_is_one_dead_letter():
    stage = IngestStage(IngestConfig(limits=Limits(max_events_per_message=3)))
    (emit,) = run(stage, record([latency_event(event_id=str(i)) for i in range(4)]))
    assert emit.topic == "events.dlq" and "4 events" in emit.value["reason"]


def test_tombstone_goes_to_the_dlq_with_a_reason():
    (emit,) = run(IngestStage(), record(None, key=b"k"))
    assert emit.topic == "events.dlq" and emit.key == "k"
    assert "tombstone" in emit.value["reason"] and emit.value["raw"] == ""


def test_dead_letter_key_is_the_original_key_or_empty():
    (no_key,) = run(IngestStage(), record(b"1", key=None))
    (bad_key,) = run(IngestStage(), record(b"1", key=b"a\xffb"))
    assert no_key.key == "" and bad_key.key == "a\ufffdb"


def test_deep_context_is_dead_lettered_naming_context():
    context: dict[str, Any] = {"v": 1}
    for _ in range(10):
        context = {"c": context}
    (emit,) = run(IngestStage(), record(error_event(context=context)))
    assert emit.topic == "events.dlq" and emit.value["field"] == "context"
    assert "context" in emit.value["reason"]


def test_future_ts_is_dead_lettered_naming_ts():
    (emit,) = run(IngestStage(), record(latency_event(ts=int(NOW * 1000) + 3_600_000)))
    assert emit.topic == "events.dlq" and emit.value["field"] == "ts"


def test_long_message_is_truncated_and_still_flows():
    long = error_event(exception={"type": "ValueError", "message": "z" * 20_000})
    (emit,) = run(IngestStage(), record(long))
    assert emit.topic == "events.errors"
    assert emit.value["exception"]["message"].endswith(TRUNCATION_MARKER)


def test_element_too_deep_to_re_encode_is_still_dead_lettered():
    deep = b"[" + b"[" * 400 + b"]" * 400 + b"]"
    (emit,) = run(IngestStage(), record(deep))
    assert emit.topic == "events.dlq" and emit.value["source"]["index"] == 0


def test_a_fingerprinting_failure_is_dead_lettered_not_raised(monkeypatch: pytest.MonkeyPatch):
    def broken(event: dict[str, Any]) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(ingest_module, "fingerprint_error", broken)
    stage = IngestStage()
    emits = run(stage, record([error_event(), latency_event()]))
    assert topics(emits) == ["events.dlq", "events.latency"]
    assert "fingerprinting failed" in emits[0].value["reason"]
    assert stage.stats["dead_letters"] == 1


# --- deterministic ids and duplicates ---------------------------------------------------------


def test_missing_event_id_gets_a_deterministic_fallback_from_its_source():
    no_id = latency_event()
    del no_id["event_id"]
    single = run(IngestStage(), record(no_id, offset=5, partition=2))
    batch = run(IngestStage(), record([no_id, no_id], offset=6, partition=2))
    assert single[0].value["event_id"] == "events.raw:2:5:0"
    assert [e.value["event_id"] for e in batch] == ["events.raw:2:6:0", "events.raw:2:6:1"]


def test_a_redelivered_record_without_event_ids_is_recognised_as_duplicate():
    no_id = latency_event()
    del no_id["event_id"]
    stage = IngestStage()
    assert len(run(stage, record([no_id, no_id], offset=5))) == 2
    assert run(stage, record([no_id, no_id], offset=5), now=NOW + 1) == []
    assert stage.stats["duplicates"] == 2


def test_repeated_event_id_within_the_window_is_dropped_and_counted():
    stage = IngestStage(IngestConfig(dedup_window_s=600))
    assert topics(run(stage, record(latency_event(event_id="dup")))) == ["events.latency"]
    assert run(stage, record(latency_event(event_id="dup"), offset=1), now=NOW + 599) == []
    assert stage.stats["duplicates"] == 1 and stage.stats["latency"] == 1


def test_repeated_event_id_within_one_message_is_dropped():
    stage = IngestStage()
    emits = run(stage, record([error_event(event_id="d"), error_event(event_id="d")]))
    assert topics(emits) == ["events.errors"] and stage.stats["duplicates"] == 1


def test_repeated_event_id_after_the_window_is_accepted_again():
    stage = IngestStage(IngestConfig(dedup_window_s=600))
    run(stage, record(latency_event(event_id="dup")))
    assert len(run(stage, record(latency_event(event_id="dup"), offset=1), now=NOW + 600)) == 1
    # ...and the window restarts from that second acceptance.
    assert run(stage, record(latency_event(event_id="dup"), offset=2), now=NOW + 700) == []
    assert stage.stats == {"errors": 0, "latency": 2, "dead_letters": 0, "duplicates": 1}


def test_a_duplicate_does_not_extend_the_window():
    stage = IngestStage(IngestConfig(dedup_window_s=600))
    run(stage, record(latency_event(event_id="dup")))
    assert run(stage, record(latency_event(event_id="dup")), now=NOW + 500) == []
    assert len(run(stage, record(latency_event(event_id="dup")), now=NOW + 600)) == 1


def test_an_invalid_event_is_never_counted_as_a_duplicate():
    stage = IngestStage()
    bad = latency_event(event_id="same", duration_ms=-1)
    emits = run(stage, record(bad), record(bad, offset=1))
    assert topics(emits) == ["events.dlq", "events.dlq"] and stage.stats["duplicates"] == 0


def test_dedup_memory_is_bounded_by_forgetting_the_oldest_ids():
    stage = IngestStage(IngestConfig(dedup_max_ids=2))
    for i, eid in enumerate(["a", "b", "c"]):
        run(stage, record(latency_event(event_id=eid), offset=i))
    assert len(stage.recent_ids) == 2
    assert len(run(stage, record(latency_event(event_id="a"), offset=3))) == 1  # forgotten
    assert run(stage, record(latency_event(event_id="c"), offset=4)) == []  # still remembered


def test_dedup_memory_never_exceeds_its_bound_under_load():
    stage = IngestStage(IngestConfig(dedup_max_ids=100))
    for offset in range(20):
        batch = [latency_event(event_id=f"{offset}-{i}") for i in range(50)]
        assert len(run(stage, record(batch, offset=offset))) == 50
        assert len(stage.recent_ids) <= 100
        assert run(stage, record(batch, offset=offset)) == []  # a re-sent copy
    assert stage.stats["latency"] == 1000 and stage.stats["duplicates"] == 20 * 50


def test_expired_ids_are_forgotten():
    stage = IngestStage(IngestConfig(dedup_window_s=10))
    run(stage, record([latency_event(event_id=str(i)) for i in range(100)]))
    run(stage, record(b"[]"), now=NOW + 11)
    assert len(stage.recent_ids) == 0


def test_stats_count_every_outcome():
    stage = IngestStage()
    run(stage, record([error_event(), latency_event(), latency_event(), {}]), record(None))
    assert stage.stats == {"errors": 1, "latency": 1, "dead_letters": 2, "duplicates": 1}


def test_error_events_carry_their_raw_position_for_the_fingerprint_stage():
    batch = [error_event(event_id="x1"), error_event(event_id="x2")]
    emits = run(IngestStage(), record(batch, offset=41, partition=3))
    assert [e.value["_src"] for e in emits] == [[3, 41, 0], [3, 41, 1]]
