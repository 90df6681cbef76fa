"""The fingerprint stage as a pure function: lifecycle, count throttling, commands, changelog."""

from __future__ import annotations

import itertools

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.issues import ISSUE_FIELDS, validate_issue
from stages.base import Record
from stages.fingerprint import FingerprintConfig, FingerprintStage, IssueState

T0 = 1_795_320_000.0  # "now", epoch seconds
TS0 = 1_795_320_000_000  # event time, epoch ms
_offsets = itertools.count()


def event(fp: str = "a" * 32, ts: int = TS0, **kw) -> dict:
    return {
        "schema": "error/1",
        "event_id": kw.get("event_id", f"e-{next(_offsets)}"),
        "ts": ts,
        "service": kw.get("service", "checkout"),
        "env": "prod",
        "release": kw.get("release", "1.4.2"),
        "host": "web-12",
        "severity": kw.get("severity", "medium"),
        "exception": {"type": "TimeoutError", "message": "pay-api timed out after 3000 ms"},
        "stacktrace": None,
        "frames_omitted": 0,
        "fingerprint": None,
        "context": kw.get("context"),
        "tags": None,
        "fingerprint_id": fp,
        **({"_src": kw["_src"]} if "_src" in kw else {}),
    }


def errors(*events: dict, partition: int = 0) -> Record:
    return Record("events.errors", partition, next(_offsets), b"k", orjson.dumps(list(events)))


def command(cmd: dict, partition: int = 0) -> Record:
    key = str(cmd.get("id", "")).encode()
    return Record("commands", partition, next(_offsets), key, orjson.dumps(cmd))


def resolve(issue_id: str, ts: int, notes: str | None = "fixed pool size") -> dict:
    return {"command": "resolve", "id": issue_id, "notes": notes, "author": "ana", "ts": ts}


def issues_of(result) -> list[dict]:
    assert all(e.topic == "issues" for e in result.emits)
    return [e.value for e in result.emits]


@pytest.fixture
def stage() -> FingerprintStage:
    s = FingerprintStage(FingerprintConfig(count_interval_s=10.0))
    s.assign([0, 1])
    return s


def test_stage_declares_its_topics():
    s = FingerprintStage()
    assert s.name == "fingerprint"
    assert s.inputs == ("events.errors", "commands")
    assert s.stateful is True


def test_a_new_issue_is_titled_by_its_first_event_s_parameterised_message(stage):
    [rec] = issues_of(stage.process([errors(event())], T0))
    assert rec["message_template"] == "pay-api timed out after <num>"
    assert rec["title"] == "TimeoutError: pay-api timed out after <num>"
    # Events from an ingest that templated the message itself keep that template.
    older = {**event(fp="b" * 32), "message_template": "pay-api timed out"}
    [rec] = issues_of(stage.process([errors(older)], T0))
    assert rec["title"] == "TimeoutError: pay-api timed out"


def test_first_event_emits_new_issue_immediately(stage):
    result = stage.process([errors(event())], T0)
    [rec] = issues_of(result)
    assert result.emits[0].key == "a" * 32
    assert rec["type"] == "new"
    assert rec["update_id"] == f"{'a' * 32}:new"
    assert rec["status"] == "new"
    assert rec["count"] == 1
    assert rec["title"] == "TimeoutError: pay-api timed out after <num>"
    assert rec["first_seen"] == rec["last_seen"] == TS0
    assert rec["services"] == ["checkout"]
    assert rec["first_release"] == "1.4.2"
    assert rec["sample"]["event_id"]
    assert rec["updated_at"] == int(T0 * 1000)
    assert set(rec) == set(ISSUE_FIELDS)
    assert validate_issue(rec) is rec


def test_events_group_by_fingerprint_and_count(stage):
    batch = [
        errors(event("a" * 32), event("b" * 32), event("a" * 32, ts=TS0 + 5)),
        errors(event("a" * 32, ts=TS0 - 5, service="cart", release="1.5.0", severity="critical")),
    ]
    result = stage.process(batch, T0)
    assert [r["type"] for r in issues_of(result)] == ["new", "new"]  # counts are throttled
    a = stage.issue("a" * 32)
    assert a.count == 3
    assert (a.first_seen, a.last_seen) == (TS0 - 5, TS0 + 5)
    assert a.services == ["checkout", "cart"]
    assert a.releases == ["1.4.2", "1.5.0"]
    assert a.first_release == "1.4.2"
    assert a.severity == "critical"
    assert stage.issue("b" * 32).count == 1


def test_count_updates_are_throttled_to_one_per_interval(stage):
    stage.process([errors(event())], T0)
    emitted = []
    for i in range(1, 40):  # one event every second for 39 s
        result = stage.process([errors(event(ts=TS0 + i * 1000))], T0 + i)
        emitted += issues_of(result)
        emitted += issues_of(stage.tick(T0 + i + 0.5))
    counts = [r for r in emitted if r["type"] == "count"]
    assert [r["count"] for r in counts] == [11, 21, 31]
    assert [r["update_id"] for r in counts] == [f"{'a' * 32}:count:{n}" for n in (11, 21, 31)]
    [last] = issues_of(stage.tick(T0 + 100))  # the remainder, once due
    assert (last["type"], last["count"], last["last_seen"]) == ("count", 40, TS0 + 39_000)
    assert issues_of(stage.tick(T0 + 200)) == []  # nothing new, nothing emitted


def test_first_count_update_moves_new_to_active(stage):
    stage.process([errors(event())], T0)
    stage.process([errors(event(ts=TS0 + 1))], T0 + 1)
    assert stage.issue("a" * 32).status == "new"
    assert issues_of(stage.tick(T0 + 5)) == []
    result = stage.tick(T0 + 10)
    [rec] = issues_of(result)
    assert (rec["type"], rec["status"], rec["count"]) == ("count", "active", 2)
    assert result.state[(0, "a" * 32)]["status"] == "active"


def test_resolve_then_newer_event_regresses(stage):
    stage.process([errors(event())], T0)
    result = stage.process([command(resolve("a" * 32, TS0 + 60_000))], T0 + 60)
    [rec] = issues_of(result)
    assert rec["type"] == "resolved"
    assert rec["status"] == "resolved"
    assert rec["resolution_notes"] == "fixed pool size"
    assert rec["resolved_at"] == TS0 + 60_000
    assert rec["update_id"] == f"{'a' * 32}:resolved:{TS0 + 60_000}"
    assert result.state[(0, "a" * 32)]["status"] == "resolved"

    late = stage.process([errors(event(ts=TS0 + 30_000))], T0 + 61)  # happened before the fix
    assert [(r["type"], r["status"]) for r in issues_of(late)] == [("count", "resolved")]
    assert stage.issue("a" * 32).status == "resolved"
    assert stage.issue("a" * 32).count == 2

    again = stage.process([errors(event(ts=TS0 + 90_000))], T0 + 90)
    [rec] = issues_of(again)
    assert (rec["type"], rec["status"], rec["count"]) == ("regressed", "regressed", 3)
    assert rec["update_id"] == f"{'a' * 32}:regressed:3"
    assert again.state[(0, "a" * 32)]["status"] == "regressed"


def test_resolve_without_ts_uses_now(stage):
    stage.process([errors(event())], T0)
    cmd = {"command": "resolve", "id": "a" * 32, "notes": None}
    [rec] = issues_of(stage.process([command(cmd)], T0 + 5))
    assert rec["resolved_at"] == int((T0 + 5) * 1000)


def test_redelivered_resolve_is_not_emitted_twice(stage):
    stage.process([errors(event())], T0)
    cmd = command(resolve("a" * 32, TS0 + 1000))
    assert len(stage.process([cmd], T0 + 1).emits) == 1
    assert stage.process([cmd], T0 + 2).emits == []


def test_commands_for_other_targets_are_ignored(stage):
    stage.process([errors(event())], T0)
    before = stage.stats["commands_ignored"]
    records = [
        command({"command": "ack", "id": "a" * 32, "ts": TS0}),
        command({"command": "silence", "id": "alert-1", "ts": TS0}),
        command(resolve("f" * 32, TS0)),  # unknown issue
        command(resolve("a" * 32, TS0), partition=1),  # issue lives in partition 0
    ]
    assert stage.process(records, T0).emits == []
    assert stage.stats["commands_ignored"] == before + 4
    assert stage.issue("a" * 32).status == "new"


def test_garbage_never_raises(stage):
    bad = [
        Record("events.errors", 0, 1, None, None),
        Record("events.errors", 0, 2, None, b"\xff\xfe not json"),
        Record("events.errors", 0, 3, None, b"42"),
        Record("events.errors", 0, 4, None, orjson.dumps([1, "x", None, {"no": "fp"}])),
        Record("events.errors", 0, 5, None, orjson.dumps([{"fingerprint_id": "c" * 32}])),
        Record("events.errors", 7, 6, None, orjson.dumps([{"fingerprint_id": 5, "ts": "x"}])),
        Record("commands", 0, 7, None, b"{"),
        Record("commands", 0, 8, None, orjson.dumps(["resolve"])),
        Record("commands", 0, 9, None, orjson.dumps({"command": "resolve"})),
        Record("commands", 0, 10, None, orjson.dumps({"command": 1, "id": "a"})),
        Record(
            "commands", 0, 11, None, orjson.dumps({"command": "resolve", "id": "c" * 32, "ts": "x"})
        ),
    ]
    result = stage.process(bad, T0)
    assert stage.stats["bad_records"] >= 3
    assert stage.stats["bad_events"] >= 4
    assert stage.stats["bad_commands"] >= 4
    # the one usable (if minimal) event made an issue, and the resolve for it worked
    types = [r["type"] for r in issues_of(result)]
    assert types == ["new", "resolved"]
    stage.tick(T0 + 100)


def test_changelog_round_trip_restores_the_same_issue(stage):
    first = stage.process([errors(event(), event(ts=TS0 + 1))], T0)
    second = stage.process([command(resolve("a" * 32, TS0 + 5000))], T0 + 1)
    changelog = {**first.state, **second.state}
    assert set(changelog) == {(0, "a" * 32)}

    fresh = FingerprintStage(FingerprintConfig(count_interval_s=10.0))
    fresh.assign([0])
    for (partition, key), value in changelog.items():
        fresh.restore(partition, key, orjson.loads(orjson.dumps(value)))
    assert fresh.issue("a" * 32) == stage.issue("a" * 32)
    # restored state behaves the same: a newer event regresses it
    [rec] = issues_of(fresh.process([errors(event(ts=TS0 + 9000))], T0 + 2))
    assert (rec["type"], rec["count"]) == ("regressed", 3)


def test_restore_none_deletes_and_pending_counts_survive_restore(stage):
    stage.process([errors(event())], T0)
    state = stage.process([errors(event(ts=TS0 + 1))], T0 + 1).state
    fresh = FingerprintStage()
    fresh.assign([0])
    for (p, k), v in state.items():
        fresh.restore(p, k, v)
    # the count (2) was not yet reported before the "crash": the restored stage reports it
    [rec] = issues_of(fresh.tick(T0 + 20))
    assert (rec["type"], rec["count"]) == ("count", 2)
    fresh.restore(0, "a" * 32, None)
    assert fresh.issue("a" * 32) is None


def test_issue_state_round_trip():
    s = IssueState("x" * 32, "T: m", "T", "m", TS0, TS0 + 1, count=3, services=["a"])
    assert IssueState.from_dict(orjson.loads(orjson.dumps(s.to_dict()))) == s


def test_revoke_drops_partition_state(stage):
    stage.process([errors(event("a" * 32), partition=0), errors(event("b" * 32), partition=1)], T0)
    stage.process([errors(event("a" * 32, ts=TS0 + 1), partition=0)], T0 + 1)
    stage.revoke([0])
    assert stage.issue("a" * 32) is None
    assert stage.issue("b" * 32) is not None
    assert issues_of(stage.tick(T0 + 60)) == []  # nothing pending survives for partition 0


def test_state_is_returned_for_every_changed_issue_only(stage):
    r1 = stage.process([errors(event("a" * 32), event("b" * 32))], T0)
    assert set(r1.state) == {(0, "a" * 32), (0, "b" * 32)}
    r2 = stage.process([errors(event("b" * 32, ts=TS0 + 1))], T0 + 1)
    assert set(r2.state) == {(0, "b" * 32)}
    assert r2.state[(0, "b" * 32)]["count"] == 2


def test_sample_is_bounded():
    s = FingerprintStage(FingerprintConfig(sample_max_bytes=2048))
    big = event(context={"blob": "x" * 50_000})
    big["exception"]["message"] = "y" * 50_000
    [rec] = issues_of(s.process([errors(big)], T0))
    assert len(orjson.dumps(rec["sample"])) <= 2048
    assert rec["sample"]["exception"]["type"] == "TimeoutError"


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["event", "late", "resolve", "tick", "garbage"]),
            st.integers(0, 2),  # which issue
            st.integers(0, 1),  # which partition
        ),
        max_size=40,
    )
)
def test_counts_match_events_whatever_the_interleaving(steps):
    stage = FingerprintStage(FingerprintConfig(count_interval_s=5.0))
    stage.assign([0, 1])
    sent: dict[tuple[int, str], int] = {}
    latest: dict[str, dict] = {}
    now, ts = T0, TS0
    for kind, which, partition in steps:
        fp = f"{which:032x}"
        now += 1
        ts += 1000
        if kind in ("event", "late"):
            at = ts if kind == "event" else TS0 - 1000
            result = stage.process([errors(event(fp, ts=at), partition=partition)], now)
            sent[(partition, fp)] = sent.get((partition, fp), 0) + 1
        elif kind == "resolve":
            result = stage.process([command(resolve(fp, ts), partition=partition)], now)
        elif kind == "tick":
            result = stage.tick(now)
        else:
            result = stage.process([Record("events.errors", partition, 0, None, b"[{")], now)
        for emit in result.emits:
            assert validate_issue(emit.value)["issue_id"] == emit.key
            latest[emit.key] = emit.value
    final = stage.tick(now + 60)
    for emit in final.emits:
        latest[emit.key] = emit.value
    for (partition, fp), n in sent.items():
        assert stage._issues[partition][fp].count == n
    # once every pending update is flushed, the last record of an issue carries its full count
    for (partition, fp), n in sent.items():
        if not any(p != partition and f == fp for p, f in sent):
            assert latest[fp]["count"] == n


def test_events_re_ingested_after_an_ingest_crash_are_not_counted_twice(stage):
    batch = [event(_src=[2, 10, 0]), event(_src=[2, 10, 1]), event(_src=[3, 4, 0])]
    now = TS0 / 1000
    first = stage.process([errors(*batch)], now)
    again = stage.process([errors(*batch, event(_src=[2, 11, 0]))], now + 1)
    assert stage.issue("a" * 32).count == 4  # three, then only the new one
    assert stage.stats["duplicates"] == 3
    restored = FingerprintStage()
    for (partition, key), value in {**first.state, **again.state}.items():
        restored.restore(partition, key, value)
    restored.process([errors(event(_src=[2, 11, 0]))], now + 2)
    assert restored.issue("a" * 32).count == 4  # the positions survive a restart
    restored.process([errors(event())], now + 3)  # no position: always counted
    assert restored.issue("a" * 32).count == 5
