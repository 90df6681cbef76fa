"""Grouping upgrades: issues opened under grouping version 1 keep their events after the upgrade.

Events are keyed by their current (version 2) fingerprint; an issue restored under its
version-1 key is handed over to the new key, where the old issue id lives on as an alias in
the stage's state (and its changelog), so no "new" update and no second issue appear.
"""

from __future__ import annotations

import itertools

import orjson

from grouping import fingerprint_error, previous_fingerprint
from stages.base import Record
from stages.fingerprint import MOVED, FingerprintStage, IssueState

T0 = 1_795_320_000.0
TS0 = 1_795_320_000_000
_offsets = itertools.count()

# Version 1 kept the sign glued to the block id and typed the values; version 2 does not:
# the two grouping versions give these messages different fingerprints.
MESSAGE = "Received block blk_-1608999687919862906 of size 91178 from /10.250.10.6"
LATER = "Received block blk_7503483334202473044 of size 233217 from /10.251.215.16"


def event(message: str, version: int = 2, **kw) -> dict:
    e = {
        "schema": "error/1",
        "event_id": kw.get("event_id", f"e-{next(_offsets)}"),
        "ts": kw.get("ts", TS0),
        "service": "hdfs",
        "severity": "medium",
        "exception": {"type": "LogError", "message": message},
        "stacktrace": [],
        "fingerprint": None,
    }
    e["fingerprint_id"] = fingerprint_error(e, version).id
    return e


def errors(*events: dict, partition: int = 0) -> Record:
    return Record("events.errors", partition, next(_offsets), b"k", orjson.dumps(list(events)))


def resolve(issue_id: str, ts: int) -> Record:
    cmd = {"command": "resolve", "id": issue_id, "notes": "fixed", "author": "ana", "ts": ts}
    return Record("commands", 0, next(_offsets), issue_id.encode(), orjson.dumps(cmd))


def feed_back(result, topic: str, partition: int = 0) -> list[Record]:
    """The records of `topic` a stage emitted, as the runtime would deliver them back."""
    values = [e.value for e in result.emits if e.topic == topic]
    if topic == "events.errors":
        return [errors(*values, partition=partition)] if values else []
    return [Record(topic, partition, next(_offsets), b"", orjson.dumps(v)) for v in values]


def version_1_issue() -> tuple[str, dict]:
    """The changelog entry a version-1 stage wrote for MESSAGE (no grouping_version key)."""
    old = FingerprintStage()
    first = event(MESSAGE, version=1)
    result = old.process([errors(first)], T0)
    ((_, key), value) = next(iter(result.state.items()))
    value.pop("grouping_version")  # written before grouping had versions
    return key, value


def test_the_two_versions_fingerprint_the_message_differently():
    e = event(MESSAGE)
    assert previous_fingerprint(e) != fingerprint_error(e).id
    assert fingerprint_error(event(LATER)).id == fingerprint_error(e).id  # v2 groups them


def test_an_upgraded_event_lands_in_the_issue_its_old_fingerprint_names():
    old_id, old_state = version_1_issue()
    stage = FingerprintStage()
    stage.restore(0, old_id, old_state)
    handover = stage.tick(T0 + 1)
    assert handover.state[(0, old_id)] == {MOVED: fingerprint_error(event(MESSAGE)).id,
                                           "issue_id": old_id}  # fmt: skip
    adopted = stage.process(feed_back(handover, "events.errors"), T0 + 2)
    assert [e.value["type"] for e in adopted.emits] == []  # no "new" issue
    result = stage.process([errors(event(LATER))], T0 + 30)
    kinds = [(e.key, e.value["type"]) for e in result.emits if e.topic == "issues"]
    assert kinds == [(old_id, "count")]  # counted in the old issue, under its old id
    assert stage.issue(old_id).count == 2
    assert stage.stats["new"] == 0


def test_the_alias_survives_a_restore_from_the_changelog():
    old_id, old_state = version_1_issue()
    first = FingerprintStage()
    first.restore(0, old_id, old_state)
    changelog: dict = {}
    handover = first.tick(T0 + 1)
    changelog.update(handover.state)
    changelog.update(first.process(feed_back(handover, "events.errors"), T0 + 2).state)

    restarted = FingerprintStage()  # a restart: state only from the changelog
    for (partition, key), value in changelog.items():
        restarted.restore(partition, key, value)
    again = restarted.tick(T0 + 3)
    assert not [e for e in again.emits if e.topic == "events.errors"]  # handed over once
    result = restarted.process([errors(event(LATER))], T0 + 60)
    assert [e.value["issue_id"] for e in result.emits if e.topic == "issues"] == [old_id]
    assert restarted.issue(old_id).count == 2
    assert restarted.stats["new"] == 0


def test_resolving_the_old_id_reaches_the_adopted_issue_and_it_regresses():
    old_id, old_state = version_1_issue()
    stage = FingerprintStage()
    stage.restore(0, old_id, old_state)
    handover = stage.tick(T0 + 1)
    stage.process(feed_back(handover, "events.errors"), T0 + 2)
    forwarded = stage.process([resolve(old_id, TS0 + 5_000)], T0 + 3)
    assert [e.topic for e in forwarded.emits] == ["commands"]  # along the moved marker
    resolved = stage.process(feed_back(forwarded, "commands"), T0 + 4)
    assert [(e.key, e.value["type"]) for e in resolved.emits] == [(old_id, "resolved")]
    regressed = stage.process([errors(event(LATER, ts=TS0 + 10_000))], T0 + 5)
    assert [(e.key, e.value["type"]) for e in regressed.emits] == [(old_id, "regressed")]


def test_a_new_fingerprint_that_already_has_its_own_issue_keeps_it():
    old_id, old_state = version_1_issue()
    stage = FingerprintStage()
    early = stage.process([errors(event(LATER))], T0)  # v2 events came before the handover
    new_id = early.emits[0].key
    stage.restore(0, old_id, old_state)
    handover = stage.tick(T0 + 1)
    stage.process(feed_back(handover, "events.errors"), T0 + 2)
    assert stage.stats["handovers_dropped"] == 1
    stage.process([errors(event(MESSAGE))], T0 + 30)
    assert stage.issue(new_id).count == 2


def test_issues_grouped_by_frames_stay_where_they_are():
    frames = [{"module": "app.pay", "function": "charge", "lineno": 3, "in_app": True}]
    e = event(MESSAGE) | {"stacktrace": frames}
    e["fingerprint_id"] = fingerprint_error(e).id
    assert previous_fingerprint(e) == e["fingerprint_id"]
    old = FingerprintStage()
    ((_, key), value) = next(iter(old.process([errors(e)], T0).state.items()))
    value.pop("grouping_version")
    stage = FingerprintStage()
    stage.restore(0, key, value)
    result = stage.tick(T0 + 1)
    assert not [x for x in result.emits if x.topic == "events.errors"]
    assert IssueState.from_dict(result.state[(0, key)]).grouping_version == 2
