"""Two-phase windowing, pure: partial windows per raw partition, merged into rollups.

Ingest keeps partial windows per `events.raw` partition, whatever the keying, and sends
them (with each source's watermark) through `events.latency`; the windows stage merges
them. These tests feed both stages the way the runtime does (packed internal topic,
held-back commits, changelogs, restarts, crashes between producing and committing) and
hold the rollups equal to one windowing of all the events in one place.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import numpy as np
import orjson
import pytest

from histograms.hdr import SparseHistogram
from pipeline.output import Partitioner, pack_emits
from pipeline.topics import TopicNames
from schemas.partials import expand_partials
from stages.base import Record, StageResult
from stages.cardinality import CardinalityLimits
from stages.ingest import IngestStage
from stages.ingest_windows import IngestWindowsStage, _stable_order
from stages.windows import WindowsConfig, WindowsStage

T0 = 1_795_320_000_000 - 1_795_320_000_000 % 3_600_000
NOW = T0 / 1000 + 7200
FAR = NOW + 10**6
CONFIG = WindowsConfig(early_eval_s=0)
NAMES = TopicNames("t.")


def events(count: int, series: int = 40, span_s: int = 150, seed: int = 1) -> list[dict]:
    """Latency events over `series` series, in time order give or take a second."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        s = rng.randrange(series)
        ts = T0 + i * span_s * 1000 // count + rng.randrange(-1000, 1000)
        out.append(
            {
                "schema": "latency/1",
                "event_id": f"l-{i}",
                "ts": ts,
                "service": f"svc-{s % 7}",
                "endpoint": f"/api/{s // 7}",
                "status": rng.choice([200, 200, 200, 200, 404, 503]),
                "duration_ms": round(rng.lognormvariate(3.0, 1.0), 3),
            }
        )
    return out


class Topic:
    """One topic's partitions, a consumer's position and its committed offsets."""

    def __init__(self, name: str, partitions: int) -> None:
        self.name = name
        self.log: dict[int, list[Record]] = {p: [] for p in range(partitions)}
        self.position = dict.fromkeys(self.log, 0)
        self.committed = dict.fromkeys(self.log, 0)

    def append(self, partition: int, key: bytes | None, value: bytes) -> None:
        log = self.log[partition]
        log.append(Record(self.name, partition, len(log), key, value))

    def poll(self, limit: int) -> list[Record]:
        records = []
        for partition, log in self.log.items():
            taken = log[self.position[partition] : self.position[partition] + limit]
            self.position[partition] += len(taken)
            records += taken
        return records

    def commit(self, holds: dict[tuple[str, int], int]) -> None:
        for partition in self.log:
            consumed = self.position[partition]
            self.committed[partition] = min(consumed, holds.get((self.name, partition), consumed))

    def rewind(self) -> None:
        self.position = dict(self.committed)


class Process:
    """A stage run like the runtime runs it: outputs, then changelog, then the commit."""

    def __init__(self, make: Any, topic: Topic, partitions: list[int]) -> None:
        self.make, self.topic, self.partitions = make, topic, partitions
        self.changelog: dict[tuple[int, str], Any] = {}
        self.stage = self._start()

    def _start(self) -> Any:
        stage = self.make()
        stage.assign(self.partitions)
        for (partition, key), value in self.changelog.items():
            stage.restore(partition, key, value)
        return stage

    def step(
        self,
        out: Any,
        now: float,
        limit: int = 25,
        crash: bool = False,
        torn: int | None = None,
    ) -> bool:
        """One batch and tick; `crash`: die after the outputs are acknowledged, before the
        changelog and the commit (kill -9 mid-checkpoint), then restart. `torn`: read the
        results a part at a time, as the runtime does, and die once that many parts'
        changelog writes are durable (part way through a changelog made in parts)."""
        records = self.topic.poll(limit)
        result = self.stage.process(records, now) if records else StageResult()
        if torn is not None:
            left = self._take(result, out, torn)
            if left is not None:  # the runtime reads a result's parts before the tick
                left = self._take(self.stage.tick(now), out, left)
            if left is None:
                self.topic.rewind()
                self.stage = self._start()
            else:
                self.topic.commit(self.stage.hold_offsets())
            return bool(records)
        result.extend(self.stage.tick(now))
        out(result)
        if crash:
            self.topic.rewind()
            self.stage = self._start()
            return bool(records)
        self.changelog.update(result.state)
        self.topic.commit(self.stage.hold_offsets())
        return bool(records)

    def _take(self, result: StageResult, out: Any, left: int) -> int | None:
        """`result` a part at a time: its outputs, then its changelog writes; None: died
        once `left` more parts' changelog writes were durable, before the next one's."""
        for part in result.parts():
            out(part)
            if part.state:
                if left == 0:
                    return None
                left -= 1
                self.changelog.update(part.state)
        return left

    def restart(self) -> None:
        """A clean restart (kill -9 between checkpoints)."""
        self.topic.rewind()
        self.stage = self._start()


class TwoPhase:
    """Raw events -> ingest (partial windows) -> events.latency -> windows -> rollups."""

    def __init__(
        self, raw_partitions: int = 4, latency_partitions: int = 3, config: WindowsConfig = CONFIG
    ) -> None:
        self.raw = Topic("events.raw", raw_partitions)
        self.latency = Topic("events.latency", latency_partitions)
        self.counts = {"events.latency": latency_partitions, "events.errors": latency_partitions}
        self.partitioner = Partitioner()
        self.ingest = Process(
            lambda: IngestWindowsStage(IngestStage(), config),
            self.raw,
            list(range(raw_partitions)),
        )
        self.windows = Process(
            lambda: WindowsStage(config), self.latency, list(range(latency_partitions))
        )
        self.rollups: list[dict[str, Any]] = []

    def send(self, batch: list[dict], keyed: bool, seed: int = 2) -> None:
        rng = random.Random(seed)
        for event in batch:
            if keyed:
                partition = self.partitioner(event["service"], len(self.raw.log))
            else:
                partition = rng.randrange(len(self.raw.log))
            self.raw.append(partition, None, orjson.dumps(event))

    def _to_latency(self, result: StageResult) -> None:
        emits = [e for e in result.emits if e.topic == "events.latency"]
        for m in pack_emits(emits, NAMES, self.counts, self.partitioner):
            self.latency.append(m.partition, None, m.value)

    def _to_rollups(self, result: StageResult) -> None:
        self.rollups += [e.value for e in result.emits if e.topic == "rollups"]

    def run(
        self,
        now: float = NOW,
        crashes: tuple[int, ...] = (),
        restarts: tuple[int, ...] = (),
        torn: dict[int, int] | None = None,
    ):
        """Steps until nothing moves; at the steps in `crashes` a process dies
        mid-checkpoint (ingest at odd ones, windows at even ones, both at multiples of
        three), at those in `restarts` both restart from their commits, and at those in
        `torn` (step -> parts durable) a process dies part way through its parts (ingest
        at odd steps, windows at even ones)."""
        torn = torn or {}
        n = 0
        while True:
            n += 1
            crash_ingest = n in crashes and (n % 2 == 1 or n % 3 == 0)
            crash_windows = n in crashes and (n % 2 == 0 or n % 3 == 0)
            tear = torn.get(n)
            moved = self.ingest.step(
                self._to_latency, now, crash=crash_ingest, torn=tear if n % 2 else None
            )
            moved |= self.windows.step(
                self._to_rollups, now, crash=crash_windows, torn=None if n % 2 else tear
            )
            if n in restarts:
                self.ingest.restart()
                self.windows.restart()
            if not moved and n > max((*crashes, *restarts, *torn), default=0):
                return

    def finish(self) -> None:
        """Everything idle: the last windows close."""
        self.run(FAR)
        self.run(FAR + 1000)


def reference(batch: list[dict]) -> dict[str, dict]:
    """The rollups of windowing every event in one place (one partition, one stage)."""
    stage = WindowsStage(CONFIG)
    rollups = []
    for offset, event in enumerate(batch):
        record = Record("events.latency", 0, offset, None, orjson.dumps([event]))
        rollups += [e.value for e in stage.process([record], NOW).emits if e.topic == "rollups"]
    rollups += [e.value for e in stage.tick(FAR).emits if e.topic == "rollups"]
    return by_id(rollups)


def by_id(rollups: list[dict]) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for rollup in rollups:
        # A re-emitted rollup (after a crash) must be the same record.
        assert found.setdefault(rollup["id"], rollup) == rollup
    return found


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed by service", "not keyed"])
def test_keyed_and_unkeyed_inputs_give_the_rollups_of_one_windowing(keyed):
    batch = events(3000)
    expected = reference(batch)
    pipeline = TwoPhase()
    pipeline.send(batch, keyed)
    pipeline.run()
    pipeline.finish()
    got = by_id(pipeline.rollups)
    assert got == expected
    assert sum(r["count"] for r in got.values() if r["resolution"] == "10s") == 2 * len(batch)
    if not keyed:  # a series' events came from several sources
        assert pipeline.windows.stage.core.stats["partials"] > len(
            [r for r in got.values() if r["resolution"] == "10s" and r["endpoint"] != "*"]
        )


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed by service", "not keyed"])
def test_kill_9_mid_window_and_mid_checkpoint_gives_identical_rollups(keyed):
    batch = events(3000, seed=3)
    expected = reference(batch)
    pipeline = TwoPhase()
    pipeline.send(batch, keyed, seed=4)
    pipeline.run(crashes=(2, 3, 6, 9, 13, 16, 21), restarts=(5, 11, 19))
    pipeline.finish()
    assert by_id(pipeline.rollups) == expected
    stats = pipeline.windows.stage.core.stats
    assert stats["late"] == 0


@pytest.mark.parametrize("seed", range(6))
def test_kill_9_part_way_through_a_close_in_parts_gives_identical_rollups(seed):
    """Closes handed over a few series a part, and a process killed part way through its
    changelog writes at many steps: the restart closes those windows again without
    counting anything twice or emitting a coarse window early, and whatever it emits
    again is what it emitted before (`by_id`). Keyed and not keyed alternate."""
    batch = events(3000, seed=5)
    expected = reference(batch)
    pipeline = TwoPhase(config=replace(CONFIG, close_part_series=2))
    pipeline.send(batch, keyed=seed % 2 == 0, seed=6)
    rng = random.Random(seed)
    pipeline.run(torn={n: rng.randrange(20) for n in range(2, 60)})
    pipeline.finish()
    assert by_id(pipeline.rollups) == expected
    assert pipeline.windows.stage.core.stats["late"] == 0


def test_a_close_of_many_series_comes_in_parts_of_close_part_series():
    """What a close holds at once is a part: a part carries the rollups of at most
    `close_part_series` series (each with at most one window per resolution: three here) and as
    many changelog writes, and the parts together are exactly the close made whole."""
    config = replace(CONFIG, close_part_series=4)
    batch = events(2000, series=60, span_s=60, seed=8)
    pipeline = TwoPhase(raw_partitions=2, latency_partitions=1)
    pipeline.send(batch, keyed=False)
    pipeline.ingest.step(pipeline._to_latency, NOW, limit=10**6)
    pipeline.ingest.step(pipeline._to_latency, FAR)  # every source idle: all windows close
    records = pipeline.latency.poll(10**6)
    whole = WindowsStage(CONFIG).process(records, NOW).whole()  # 4,096 series a part
    parts = list(WindowsStage(config).process(records, NOW).parts())
    assert len(parts) > 20
    for part in parts:
        assert len([e for e in part.emits if e.topic == "rollups"]) <= 4 * 3
        assert len(part.state) <= 4 * 3 or "meta" in {key for _, key in part.state}
    emitted = [e for part in parts for e in part.emits]
    assert sorted(e.value.json for e in emitted) == sorted(e.value.json for e in whole.emits)
    for key in {e.key for e in whole.emits}:  # each series' records in the same order
        assert [e.value for e in emitted if e.key == key] == [
            e.value for e in whole.emits if e.key == key
        ]
    written: dict = {}
    for part in parts:  # a key may be written twice (a closed window's final state, then
        written.update(part.state)  # its tombstone): the last write is what stays
    assert written == whole.state


def test_a_partial_sent_again_is_counted_once():
    pipeline = TwoPhase(raw_partitions=2, latency_partitions=1)
    batch = events(400, series=5, span_s=40)
    pipeline.send(batch, keyed=False)
    pipeline.run()
    duplicated = list(pipeline.latency.log[0])
    for record in duplicated:  # every partial and watermark again, as after a crash
        pipeline.latency.append(0, None, record.value)
    pipeline.finish()
    assert by_id(pipeline.rollups) == reference(batch)
    assert pipeline.windows.stage.core.stats["duplicate_partials"] > 0


def test_an_idle_source_does_not_hold_windows_back():
    pipeline = TwoPhase(raw_partitions=3, latency_partitions=2)
    batch = [e for e in events(1200, series=3, span_s=120) if e["service"] == "svc-0"]
    first = [e for e in batch if e["ts"] < T0 + 60_000]
    pipeline.send(first, keyed=True)  # one raw partition gets everything
    pipeline.run()
    assert pipeline.rollups == []  # the other sources have not said anything yet
    pipeline.send([e for e in batch if e["ts"] >= T0 + 60_000], keyed=True)
    pipeline.run(NOW + CONFIG.idle_flush_s)  # the others have been idle long enough
    closed = {r["start"] for r in pipeline.rollups}
    assert closed and max(closed) < T0 + 120_000 - 10_000  # the open windows still wait
    pipeline.finish()
    assert by_id(pipeline.rollups) == reference(batch)


def test_a_partial_for_a_window_closed_without_its_source_counts_late():
    pipeline = TwoPhase(raw_partitions=2, latency_partitions=1)
    batch = [e for e in events(1200, series=3, span_s=120) if e["service"] == "svc-0"]
    for event in batch[: len(batch) // 2]:
        pipeline.raw.append(0, None, orjson.dumps(event))
    pipeline.run()
    for event in batch[len(batch) // 2 :]:
        pipeline.raw.append(0, None, orjson.dumps(event))
    pipeline.run(NOW + CONFIG.idle_flush_s)  # source 1 has been idle: nothing waits for it
    assert pipeline.rollups
    stragglers = [dict(e, event_id=e["event_id"] + "-late") for e in batch[:5]]
    for event in stragglers:  # source 1 wakes up with events of a closed window
        pipeline.raw.append(1, None, orjson.dumps(event))
    pipeline.finish()
    stats = pipeline.windows.stage.core.stats
    assert stats["late"] == 5 and stats["events"] == len(batch)
    got, expected = by_id(pipeline.rollups), reference(batch)
    assert {i: r["count"] for i, r in got.items()} == {i: r["count"] for i, r in expected.items()}
    late = [r for r in got.values() if r["late"] and r["resolution"] == "10s"]
    # reported in each series' next window, as for any late event
    assert sorted((r["series"], r["late"]) for r in late) == [("svc-0|*", 5), ("svc-0|/api/0", 5)]


def test_early_evaluation_sees_an_error_burst_in_ingest_and_in_the_windows_stage():
    """Ingest judges each raw partition's open windows (a burst on one source is seen at
    once); the windows stage judges the minute so far (bursts split over sources)."""
    from detection.rules import DEFAULT_RULES
    from stages.early import EARLY_TOPIC

    config = WindowsConfig(
        early_rules=DEFAULT_RULES, early_resolution="1m", early_eval_s=1.0, idle_flush_s=30.0
    )
    stage = IngestWindowsStage(IngestStage(), config)
    burst = [
        {
            "schema": "latency/1",
            "event_id": f"b-{n}",
            "ts": T0 + n * 10,
            "service": "checkout",
            "endpoint": "/pay",
            "status": 500 if n % 5 == 0 else 200,
            "duration_ms": 20.0,
        }
        for n in range(200)  # 20 % 5xx over 2 s of a 10 s window
    ]
    records = [Record("events.raw", 0, i, None, orjson.dumps(e)) for i, e in enumerate(burst)]
    result = stage.process(records, NOW)
    early = [e.value for e in result.emits if e.topic == EARLY_TOPIC]
    assert {r["series"] for r in early} == {"checkout|/pay", "checkout|*"}
    assert all(r["resolution"] == "1m" and r["count"] == 200 for r in early)
    assert not [e for e in result.emits if e.topic == "events.latency" and "partials" in e.value]

    # Spread over four sources, no raw partition holds enough to judge a rate; the windows
    # stage sees the minute's closed windows merged and judges them.
    windows = WindowsStage(config)
    spread = TwoPhase(raw_partitions=4, latency_partitions=1)
    spread.windows = Process(lambda: windows, spread.latency, [0])
    spread.ingest = Process(
        lambda: IngestWindowsStage(IngestStage(), config), spread.raw, [0, 1, 2, 3]
    )
    slow = [dict(e, ts=T0 + n * 40, event_id=f"s-{n}") for n, e in enumerate(burst)]
    closer = [
        dict(e, ts=T0 + 25_000 + n, event_id=f"c-{n}", status=200) for n, e in enumerate(burst[:8])
    ]
    seen: list[dict] = []
    spread.windows.step = _recording(spread.windows.step, seen)
    for n, event in enumerate(slow):
        spread.raw.append(n % 4, None, orjson.dumps(event))
    spread.run()
    for n, event in enumerate(closer):  # each source closes the burst's 10 s window
        spread.raw.append(n % 4, None, orjson.dumps(event))
    spread.run(NOW + 5)
    [merged] = [r for r in seen if r["series"] == "checkout|/pay"]
    assert (merged["resolution"], merged["start"], merged["count"]) == ("1m", T0, 200)
    assert merged["errors"] == 40 and "high-5xx-rate" in merged["rules"]


def test_the_windows_stage_judges_an_open_window_merged_from_one_source_so_far():
    """A source that passed a window sends its partials; another source keeps the window
    open in the windows stage, which judges what it has merged so far (the merged
    columns' windows, built for the series judged only)."""
    from detection.rules import DEFAULT_RULES

    config = WindowsConfig(
        early_rules=DEFAULT_RULES, early_resolution="10s", early_eval_s=1.0, idle_flush_s=30.0
    )
    two = TwoPhase(raw_partitions=2, latency_partitions=1, config=config)
    seen: list[dict] = []
    two.windows.step = _recording(two.windows.step, seen)
    event = {"schema": "latency/1", "service": "checkout", "endpoint": "/pay", "duration_ms": 20}
    for n in range(100):  # 20 % 5xx, on source 0
        status = 500 if n % 5 == 0 else 200
        burst = {**event, "event_id": f"b-{n}", "ts": T0 + n * 10, "status": status}
        two.raw.append(0, None, orjson.dumps(burst))
    two.raw.append(1, None, orjson.dumps({**event, "event_id": "open", "ts": T0 + 5}))
    two.raw.append(0, None, orjson.dumps({**event, "event_id": "next", "ts": T0 + 25_000}))
    two.run(NOW)
    two.run(NOW + 2)  # the next pass, with source 0's partials merged
    [merged] = [r for r in seen if r["series"] == "checkout|/pay"]
    assert (merged["resolution"], merged["start"], merged["count"]) == ("10s", T0, 100)
    assert merged["errors"] == 20 and "high-5xx-rate" in merged["rules"]
    assert not [r for r in two.rollups if r["start"] == T0]  # still open: source 1


@pytest.mark.heavy
def test_100k_series_give_the_rollups_of_one_windowing():
    """Fleet scale (issue 24): 100k series of one or two events each (one base window), the raw
    topic not keyed, through ingest's columns and the windows stage: every rollup is byte
    for byte the one a windowing of all the events in one place makes (`WindowsStage` fed
    the events themselves: a `Window` per series)."""
    config = WindowsConfig(early_eval_s=0, rollup_resolutions_s=())  # coarse: other tests
    series, count = 100_000, 150_000
    rng = random.Random(9)
    batch = [
        {
            "schema": "latency/1",
            "event_id": f"f-{i}",
            "ts": T0 + i * 10_000 // count,
            "service": f"svc-{i % series % 5000}",  # 5,000 services x 20 endpoints: the
            "endpoint": f"/e/{i % series // 5000}",  # default cardinality limits hold
            "status": rng.choice([200, 200, 200, 404, 503]),
            "duration_ms": round(rng.lognormvariate(3.0, 1.0), 3),
        }
        for i in range(count)
    ]
    chunks = [orjson.dumps(batch[i : i + 50]) for i in range(0, count, 50)]

    reference = WindowsStage(config)
    records = [Record("events.latency", 0, n, None, v) for n, v in enumerate(chunks)]
    expected = reference.process(records, NOW)
    expected.extend(reference.tick(FAR))
    want = sorted(e.value.json for e in expected.emits if e.topic == "rollups")

    pipeline = TwoPhase(raw_partitions=4, latency_partitions=4, config=config)
    for chunk in chunks:
        pipeline.raw.append(rng.randrange(4), None, chunk)
    pipeline.run()
    pipeline.finish()
    got = sorted(r.json for r in pipeline.rollups)

    assert len(want) == series + 5000  # the 10 s window of each series and service
    assert got == want
    ingest = pipeline.ingest.stage.core
    assert ingest.stats["partials_sent"] > series  # each series came from several sources
    assert len(ingest.series_ids) == series


def test_wide_and_out_of_range_windows_give_the_rollups_of_one_windowing():
    """A window wider than a sparse histogram holds (over `promote_at` buckets: dense once
    merged) and values beyond the layout's top (clamped in the histogram, exact in the
    sum and max) cross ingest's columns as they would one windowing."""
    config = WindowsConfig(early_eval_s=0, hdr_highest_us=10_000_000, hdr_digits=1)
    base = {"schema": "latency/1", "service": "wide", "endpoint": "/x", "status": 200}
    batch = [  # 1 us .. 9 s, log-spaced: every one of the layout's 336 buckets
        {**base, "event_id": f"w-{i}", "ts": T0 + i % 9000, "duration_ms": 0.001 * 1.001334**i}
        for i in range(12_000)
    ] + [
        {**base, "event_id": f"o-{i}", "ts": T0 + 100 + i, "duration_ms": 20_000.0 + i}
        for i in range(5)  # beyond hdr_highest_us: clamped in the histogram only
    ]
    reference = WindowsStage(config)
    chunks = [orjson.dumps(batch[i : i + 50]) for i in range(0, len(batch), 50)]
    records = [Record("events.latency", 0, n, None, v) for n, v in enumerate(chunks)]
    expected = reference.process(records, NOW)
    expected.extend(reference.tick(FAR))
    pipeline = TwoPhase(raw_partitions=2, latency_partitions=2, config=config)
    for n, chunk in enumerate(chunks):
        pipeline.raw.append(n % 2, None, chunk)
    pipeline.run()
    pipeline.finish()
    want = {e.value["id"]: e.value for e in expected.emits if e.topic == "rollups"}
    assert by_id(pipeline.rollups) == want
    [whole] = [r for r in want.values() if r["series"] == "wide|/x" and r["resolution"] == "10s"]
    assert whole["count"] == 12_005 and whole["max_ms"] == 20_004.0
    hist = SparseHistogram.decode(whole["hist"])
    assert hist.is_dense() and hist.total == 12_005


@pytest.mark.parametrize("columns_from", [32, 1], ids=["event-by-event", "columns"])
def test_ingest_forgets_idle_series_and_their_ids_are_reused(columns_from: int):
    """Idle series give their memory back: a series unseen for `series_idle_s` (event
    time) loses its id in ingest's columns; a new series reuses it, and one that comes
    back gets an id again, with the same partials as ever (also through the column
    path, whose ids by service must forget the freed one)."""
    config = WindowsConfig(early_eval_s=0, limits=CardinalityLimits(series_idle_s=60.0))
    stage = IngestWindowsStage(IngestStage(), config)
    stage.columns_from_events = columns_from
    core = stage.core

    def send(offset: int, ts: int, endpoint: str) -> list[dict]:
        event = {"schema": "latency/1", "event_id": f"i-{offset}", "ts": ts, "service": "svc"}
        event |= {"endpoint": endpoint, "duration_ms": 3.0, "status": 200}
        result = stage.process([Record("events.raw", 0, offset, None, orjson.dumps(event))], NOW)
        return [p for e in result.emits if "partials" in e.value for p in expand_partials(e.value)]

    send(0, T0, "/old")
    assert send(1, T0 + 20_000, "/new")[0]["series"] == "svc|/old"  # /old's window closed
    old_id = core.series_ids["svc|/old"]
    for n, ts in enumerate(range(T0 + 40_000, T0 + 200_000, 20_000)):  # only /new is active
        send(2 + n, ts, "/new")
    assert "svc|/old" not in core.series_ids and core.stats["series_expired"] == 1
    send(20, T0 + 210_000, "/newer")
    assert core.series_ids["svc|/newer"] == old_id  # the freed id, reused
    send(21, T0 + 215_000, "/old")
    [back] = [p for p in send(22, T0 + 230_000, "/new") if p["series"] == "svc|/old"]
    assert (back["start"], back["count"], back["sum_us"], back["max_us"]) == (
        T0 + 210_000,
        1,
        3000,
        3000,
    )
    assert len(core.series_names) == 3  # /old, /new, /newer: no more ids than series


def _recording(step: Any, seen: list[dict]) -> Any:
    """A `Process.step` whose emits to rollups.early are also kept in `seen`."""

    def recorded(out: Any, now: float, **options: Any) -> bool:
        def tee(result: StageResult) -> None:
            seen.extend(e.value for e in result.emits if e.topic == "rollups.early")
            out(result)

        return step(tee, now, **options)

    return recorded


@pytest.mark.parametrize("top", [3, 0xFFFF, 0x10000, 100_000, 2**32 - 1])
def test_series_ids_are_ordered_as_a_stable_sort_orders_them(top: int):
    """`PartialBucket.columns` groups a bucket's events by series id with a radix sort of
    16-bit digits (`_stable_order`): the order is exactly numpy's stable sort, ties in
    arrival order, whether the ids need one digit or two."""
    rng = np.random.default_rng(top)
    for size in (0, 1, 2, 1000):
        ids = rng.integers(0, top, size, endpoint=True, dtype=np.uint64).astype(np.uint32)
        ids[: size // 2] |= np.uint32(top & 0xFFFF0000)  # ids that share the high digit
        assert _stable_order(ids).tolist() == np.argsort(ids, kind="stable").tolist()
