"""Runs of error messages skip the partial-windows ingest's latency loop
(`IngestStage._with_error_runs`): the results must be exactly those of handing every record
to that loop, which gives the general path's results for an error message.

Batches mix plain latency messages, plain error messages (runs of every length around
`MIN_ERROR_RUN`), error messages the fast path refuses, duplicates across both kinds and
tombstones; each batch goes through one stage that splits and one that never does.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

import stages.ingest
from schemas.events import Limits
from stages.base import Record
from stages.ingest import MIN_ERROR_RUN, IngestConfig, IngestStage
from stages.ingest_windows import IngestWindowsStage
from stages.windows import WindowsConfig

T0 = 1_795_320_000_000 - 1_795_320_000_000 % 3_600_000
NOW = T0 / 1000 + 60
WINDOWS = WindowsConfig(window_s=10.0, rollup_resolutions_s=(60.0,), allowed_lateness_s=5.0)


def _error(rng: random.Random, i: int, event_id: str) -> dict[str, Any]:
    frames = [
        {"module": "app.api", "function": "handle", "lineno": rng.randint(1, 3)},
        {"module": "app.db", "function": rng.choice(["get", "put"]), "in_app": True},
    ]
    return {
        "schema": "error/1",
        "event_id": event_id,
        "ts": T0 + i * 97,
        "service": rng.choice(["a", "b"]),
        "exception": {"type": rng.choice(["KeyError", "ValueError"]), "message": f"m {i}"},
        "stacktrace": rng.choice([frames, None, []]),
        "context": rng.choice([None, {"user": str(i)}, {"deep": {"er": [1]}}]),
    }


def _latency(rng: random.Random, i: int, event_id: str) -> dict[str, Any]:
    return {
        "schema": "latency/1",
        "event_id": event_id,
        "ts": T0 + i * 97,
        "service": rng.choice(["a", "b"]),
        "endpoint": rng.choice(["/x", "/y"]),
        "status": rng.choice([200, 500]),
        "duration_ms": round(rng.uniform(0.1, 90.0), 3),
    }


def _batch(seed: int) -> list[Record]:
    """Runs of each kind; ids repeat now and then, across kinds too."""
    rng = random.Random(seed)
    records: list[Record] = []
    i = 0
    while len(records) < 400:
        kind = rng.choice(["error", "error", "latency", "odd"])
        for _ in range(rng.choice([1, 2, MIN_ERROR_RUN - 1, MIN_ERROR_RUN, 3 * MIN_ERROR_RUN])):
            i += 1
            event_id = f"e{rng.randrange(i + 1)}" if rng.random() < 0.1 else f"e{i}"
            if kind == "error":
                value: bytes | None = orjson.dumps(_error(rng, i, event_id))
            elif kind == "latency":
                value = orjson.dumps(_latency(rng, i, event_id))
            elif rng.random() < 0.2:
                value = None  # a tombstone
            else:  # an error message the fast path refuses, or an array of errors
                event = _error(rng, i, event_id)
                event["ts"] = float(event["ts"]) if rng.random() < 0.5 else event["ts"]
                value = orjson.dumps([event] if rng.random() < 0.5 else event)
            records.append(Record("events.raw", rng.choice([0, 0, 1]), i, None, value))
    records.sort(key=lambda r: r.partition)  # as the runner hands them: by partition
    return records


def _stage() -> IngestWindowsStage:
    limits = Limits(future_tolerance_s=10**9)
    return IngestWindowsStage(IngestStage(IngestConfig(limits=limits, dedup_max_ids=50)), WINDOWS)


def _outcome(stage: IngestWindowsStage, batches: list[list[Record]]) -> Any:
    emits = []
    for records in batches:
        result = stage.process(records, NOW)
        emits.append([(e.topic, e.key, dict(e.value)) for e in result.emits])
        emits.append(sorted(result.state.items()))
    ids = stage.ingest.recent_ids
    return (
        orjson.dumps(emits, option=orjson.OPT_SORT_KEYS),
        dict(stage.ingest.stats),
        dict(stage.core.stats),
        sorted(ids.ids),
        [chunk for chunk in ids.chunks if chunk[1]],
    )


@pytest.mark.parametrize("seed", range(12))
def test_runs_of_error_messages_give_what_the_latency_loop_gives(
    seed: int, monkeypatch: pytest.MonkeyPatch
):
    batches = [_batch(seed * 10 + b) for b in range(3)]
    split = _outcome(_stage(), batches)
    monkeypatch.setattr(stages.ingest, "MIN_ERROR_RUN", 10**9)  # never split
    whole = _outcome(_stage(), batches)
    assert split == whole


def test_a_batch_of_error_messages_is_split_off(monkeypatch: pytest.MonkeyPatch):
    """The runs really do leave the loop (or the test above would prove nothing)."""
    stage = _stage()
    handed: list[int] = []
    loop = stage._ingest_plain

    def counting(records: list[Record], *args: Any) -> None:
        handed.extend(r.offset for r in records)
        loop(records, *args)

    monkeypatch.setattr(stage, "_ingest_plain", counting)
    rng = random.Random(1)
    values = [orjson.dumps(_error(rng, i, f"e{i}")) for i in range(20)]
    values[10] = orjson.dumps(_latency(rng, 10, "l10"))
    stage.process([Record("events.raw", 0, i, None, v) for i, v in enumerate(values)], NOW)
    assert handed == [10]
    assert stage.ingest.stats["errors"] == 19 and stage.ingest.stats["latency"] == 1
