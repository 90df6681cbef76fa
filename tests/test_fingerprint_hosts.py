"""Affected hosts of an issue (issue 23): the issue names its first hosts and counts all of
them in bounded state, restores both from its changelog (older records too), and the
alert's wording says them."""

from __future__ import annotations

import orjson

from alerting.alert_text import describe, issue_facts
from schemas.issues import validate_issue
from stages.base import Record
from stages.fingerprint import MAX_HOSTS, FingerprintConfig, FingerprintStage, IssueState
from tests.test_fingerprint_stage import T0, errors, event, issues_of

FP = "a" * 32


def _on(host: str, **kw) -> dict:
    return {**event(FP, **kw), "host": host}


def _stage() -> FingerprintStage:
    stage = FingerprintStage(FingerprintConfig(count_interval_s=0.0))
    stage.assign([0])
    return stage


def test_a_new_issue_names_its_first_host_and_counts_distinct_hosts():
    stage = _stage()
    [new] = issues_of(stage.process([errors(_on("web-12"))], T0))
    assert (new["hosts"], new["host_count"]) == (["web-12"], 1)
    batch = [_on(h) for h in ("web-12", "web-7", "web-12", "web-3", "web-7")]
    [count] = issues_of(stage.process([errors(*batch)], T0 + 1))
    assert count["hosts"] == ["web-12", "web-7", "web-3"]  # in order of first report
    assert count["host_count"] == 3 and count["count"] == 6
    assert validate_issue(count) is count


def test_hosts_are_bounded_and_the_count_of_a_large_fleet_stays_close():
    stage = _stage()
    stage.process([errors(_on("host-0"))], T0)
    for start in range(0, 500, 100):  # 500 hosts, each reporting twice
        batch = [_on(f"host-{i}") for i in range(start, start + 100) for _ in range(2)]
        stage.process([errors(*batch)], T0 + 1 + start)
    state = stage.issue(FP)
    assert state is not None and len(state.hosts) == MAX_HOSTS
    assert state.hosts[:3] == ["host-0", "host-1", "host-2"]
    assert abs(state.host_count - 500) <= 25  # estimated beyond the named hosts
    saved = state.to_dict()
    assert len(orjson.dumps(saved)) < 2_000 + len(orjson.dumps(state.sample))
    # One more event of a host already counted changes nothing.
    before = state.host_count
    stage.process([errors(_on("host-321"))], T0 + 1000)
    assert state.host_count == before


def test_hosts_and_count_survive_a_restore_from_the_changelog():
    stage = _stage()
    hosts = [f"web-{i}" for i in range(40)]
    result = stage.process([errors(*[_on(h) for h in hosts])], T0)
    [value] = [v for (p, k), v in result.state.items() if k == FP]
    restored = FingerprintStage(FingerprintConfig(count_interval_s=0.0))
    restored.restore(0, FP, orjson.loads(orjson.dumps(value)))
    state = restored.issue(FP)
    original = stage.issue(FP)
    assert state is not None and original is not None
    assert state.hosts == original.hosts and state.host_bits == original.host_bits
    assert state.host_count == original.host_count
    # Counting goes on where it left off: a known overflow host is not counted again.
    restored.assign([0])
    restored.process([errors(_on("web-39"))], T0 + 1)
    assert restored.issue(FP).host_count == original.host_count


def test_a_record_written_before_hosts_were_kept_restores_with_its_sample_s_host():
    stage = _stage()
    stage.process([errors(_on("web-12"))], T0)
    old = stage.issue(FP).to_dict()
    for name in ("hosts", "host_count", "host_bits"):
        del old[name]
    state = IssueState.from_dict(old)
    assert (state.hosts, state.host_count, state.host_bits) == (["web-12"], 1, 0)
    restored = FingerprintStage(FingerprintConfig(count_interval_s=0.0))
    restored.restore(0, FP, old)
    restored.assign([0])
    [rec] = issues_of(restored.process([errors(_on("web-3"))], T0 + 1))
    assert (rec["hosts"], rec["host_count"]) == (["web-12", "web-3"], 2)


def test_a_batch_decoded_the_general_way_still_counts_every_event_and_host():
    """A batch with one odd element is decoded by orjson, not msgspec: its events must be
    read field by field as the fast path reads them (not taken for handovers)."""
    stage = _stage()
    stage.process([errors(_on("web-1"))], T0)
    odd = Record("events.errors", 0, 10_000, b"k", orjson.dumps([_on("web-2"), _on("web-3"), 42]))
    [rec] = issues_of(stage.process([odd], T0 + 1))
    assert rec["count"] == 3
    assert rec["hosts"] == ["web-1", "web-2", "web-3"]
    assert stage.stats["handovers_dropped"] == 0 and stage.stats["bad_events"] == 1


def test_the_issue_alert_says_how_many_hosts():
    stage = _stage()
    stage.process([errors(_on("web-12"))], T0)
    [rec] = issues_of(stage.process([errors(*[_on(f"web-{i}") for i in range(30)])], T0 + 1))
    facts = issue_facts(rec)
    assert len(facts["hosts"]) == 10 and facts["host_count"] == rec["host_count"] >= 30
    signal = {"kind": "threshold", "metric": "issue_new", "value": 1.0, "issue": facts}
    assert f"on {rec['host_count']} hosts" in describe(signal)["summary"]
    one = issue_facts({**rec, "hosts": ["web-12"], "host_count": 1})
    assert "31 events on web-12," in describe({**signal, "issue": one})["summary"]
    legacy = {k: v for k, v in rec.items() if k not in ("hosts", "host_count")}
    assert issue_facts(legacy)["hosts"] == [rec["sample"]["host"]]
