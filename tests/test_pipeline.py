"""The ingest + fingerprint pipeline end to end, against the real local broker."""

from __future__ import annotations

import random
import time

import orjson

from grouping import fingerprint_error
from loadtest.fleet import BUGS, error_burst, error_event, malformed_payloads
from pipeline.topic_reader import send_json
from pipeline.topics import COMMANDS, EVENTS_DLQ
from tests.pipeline_helpers import (
    as_batches,
    issues_probe,
    make_config,
    running_pipeline,
    send_raw,
    topic_probe,
    wait_for,
)

STAGES = ["ingest", "fingerprint"]


def _expected_counts(events: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        fp = fingerprint_error(event).id
        counts[fp] = counts.get(fp, 0) + 1
    return counts


def _counts(issues: list[dict]) -> dict[str, int]:
    return {i["issue_id"]: i["count"] for i in issues}


async def test_errors_group_into_one_issue_per_bug_with_exact_counts(bootstrap, topics):
    config = make_config(bootstrap, topics)
    now = int(time.time() * 1000)
    events, per_bug = error_burst(300, seed=1, start_ms=now - 60_000)
    expected = _expected_counts(events)
    # Line numbers and message values vary, yet each bug is exactly one issue.
    assert len(expected) == len(BUGS)
    assert sorted(expected.values()) == sorted(per_bug.values())
    async with running_pipeline(config, STAGES):
        await send_raw(config, as_batches(events))
        issues = await wait_for(issues_probe(config), lambda got: _counts(got) == expected)
    assert _counts(issues) == expected
    by_type = {i["exception_type"]: i for i in issues}
    db = by_type["psycopg.OperationalError"]
    assert db["severity"] == "critical"
    assert set(db["releases"]) == {"1.4.2", "1.4.3"}
    assert db["first_release"] == "1.4.2"
    assert "10.0." not in db["message_template"]  # the varying address is a placeholder


async def test_malformed_events_go_to_dlq_with_reasons_and_good_events_still_flow(
    bootstrap, topics
):
    config = make_config(bootstrap, topics)
    now = int(time.time() * 1000)
    good, _ = error_burst(40, seed=2, start_ms=now - 10_000)
    bad = malformed_payloads(now)
    payloads = []
    for i, (raw, _field) in enumerate(bad):
        payloads.extend(as_batches(good[i * 5 : (i + 1) * 5]))
        payloads.append((b"checkout", raw))
    payloads.extend(as_batches(good[len(bad) * 5 :]))
    # One array mixing a valid event with an invalid element: only the element is dead.
    mixed = [good[0] | {"event_id": "mixed-ok"}, {"schema": "error/1", "service": "x"}]
    payloads.append((b"checkout", orjson.dumps(mixed)))
    expected = _expected_counts([*good, mixed[0]])
    async with running_pipeline(config, STAGES):
        await send_raw(config, payloads)
        issues = await wait_for(issues_probe(config), lambda got: _counts(got) == expected)
        letters = await wait_for(
            topic_probe(config, EVENTS_DLQ), lambda got: len(got) >= len(bad) + 1
        )
    assert _counts(issues) == expected
    assert len(letters) == len(bad) + 1
    fields = sorted(letter["field"] for letter in letters)
    assert fields == sorted([f for _, f in bad] + [letters[-1]["field"]])
    for letter in letters:
        assert letter["field"] in letter["reason"] or letter["field"] == "$"
        assert letter["source"]["topic"] == "events.raw"
    undecodable = [x for x in letters if "raw_b64" in x]
    assert len(undecodable) == 1  # the invalid UTF-8 payload, kept as base64
    mixed_letter = next(x for x in letters if x["source"]["index"] == 1)
    assert mixed_letter["field"] in ("ts", "exception")


async def test_restarted_pipeline_resumes_from_committed_offsets_without_loss_or_double_count(
    bootstrap, topics
):
    config = make_config(bootstrap, topics)
    now = int(time.time() * 1000)
    first, _ = error_burst(120, seed=3, start_ms=now - 50_000)
    second, _ = error_burst(80, seed=4, start_ms=now - 20_000)
    async with running_pipeline(config, STAGES):
        await send_raw(config, as_batches(first))
        want = _expected_counts(first)
        await wait_for(issues_probe(config), lambda got: _counts(got) == want)
    # Events that arrive while the pipeline is down are processed after the restart.
    await send_raw(config, as_batches(second))
    want = _expected_counts(first + second)
    async with running_pipeline(config, STAGES):
        issues = await wait_for(issues_probe(config), lambda got: _counts(got) == want)
        # Give a double count the chance to show up before asserting.
        issues = await wait_for(issues_probe(config), lambda got: False, timeout_s=2)
    assert _counts(issues) == want


async def test_resolved_issue_that_recurs_is_regressed(bootstrap, topics):
    config = make_config(bootstrap, topics)
    now = int(time.time() * 1000)
    events, _ = error_burst(30, seed=5, start_ms=now - 30_000)
    async with running_pipeline(config, STAGES):
        await send_raw(config, as_batches(events))
        want = _expected_counts(events)
        issues = await wait_for(issues_probe(config), lambda got: _counts(got) == want)
        target = issues[0]["issue_id"]
        command = {
            "command": "resolve",
            "id": target,
            "notes": "pool size raised",
            "author": "test",
            "command_id": "c-1",
            "ts": int(time.time() * 1000),
        }
        await send_json(config.kafka, config.kafka.prefix + COMMANDS, target, command)
        issues = await wait_for(
            issues_probe(config),
            lambda got: any(i["issue_id"] == target and i["status"] == "resolved" for i in got),
        )
        resolved = next(i for i in issues if i["issue_id"] == target)
        assert resolved["resolution_notes"] == "pool size raised"
        bug = next(b for b in BUGS if b.exception_type == resolved["exception_type"])
        again = error_event(bug, random.Random(1), int(time.time() * 1000) + 500, "1.5.0")
        assert fingerprint_error(again).id == target
        await send_raw(config, as_batches([again]))
        issues = await wait_for(
            issues_probe(config),
            lambda got: any(i["issue_id"] == target and i["status"] == "regressed" for i in got),
        )
    regressed = next(i for i in issues if i["issue_id"] == target)
    assert regressed["status"] == "regressed"
    assert regressed["count"] == want[target] + 1


async def test_the_users_token_patterns_group_errors_in_the_running_pipeline(bootstrap, topics):
    from grouping import set_token_patterns

    config = make_config(
        bootstrap, topics, **{"fingerprint.token_patterns": {"colour": r"\b(?:red|blue)\b"}}
    )
    now = int(time.time() * 1000)
    events = [
        {
            "schema": "error/1",
            "event_id": f"paint-{i}",
            "ts": now - 1000 + i,
            "service": "painter",
            "exception": {"type": "PaintError", "message": f"cannot mix {colour} paint"},
        }
        for i, colour in enumerate(["red", "blue", "red", "blue"])
    ]
    try:
        async with running_pipeline(config, STAGES):
            await send_raw(config, as_batches(events))
            issues = await wait_for(
                issues_probe(config), lambda got: sum(i["count"] for i in got) >= 4
            )
    finally:
        set_token_patterns({})
    assert [i["count"] for i in issues] == [4]  # one issue: the colour is a value
