"""The windows stage, pure: windows close once, late events, multi-resolution, restarts."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from histograms.hdr import SparseHistogram, layout
from schemas.partials import expand_partials
from stages.base import Record, StageResult
from stages.ingest import IngestStage
from stages.ingest_windows import IngestWindowsStage
from stages.windows import WindowsConfig, WindowsStage

T0 = 1_795_320_000_000 - 1_795_320_000_000 % 3_600_000  # an hour boundary
NOW = T0 / 1000 + 7200


def latency(ts: int, duration: float, service: str = "checkout", endpoint: str = "/pay", **kw):
    event = {"schema": "latency/1", "event_id": f"l-{ts}-{duration}", "ts": ts}
    event.update(service=service, endpoint=endpoint, duration_ms=duration, status=200)
    event.update(kw)
    return event


class Harness:
    """Feeds a stage the way the runner does: batches, changelog, held-back commits."""

    def __init__(self, stage: Any, topic: str = "events.latency") -> None:
        self.stage, self.topic = stage, topic
        self.log: list[list[Any]] = []  # one message per offset (partition 0)
        self.changelog: dict[tuple[int, str], Any] = {}
        self.committed = 0
        self.rollups: list[dict[str, Any]] = []
        self.other: list[Any] = []

    def send(self, *events: dict[str, Any]) -> None:
        self.log.append(list(events))

    def _apply(self, result: StageResult) -> None:
        for emit in result.emits:
            (self.rollups if emit.topic == "rollups" else self.other).append(emit.value)
        self.changelog.update(result.state)
        holds = self.stage.hold_offsets()
        self.committed = min(len(self.log), holds.get((self.topic, 0), len(self.log)))

    def run(self, upto: int | None = None, batch: int = 3, now: float = NOW) -> None:
        end = len(self.log) if upto is None else upto
        position = self.position if hasattr(self, "position") else self.committed
        while position < end:
            chunk = range(position, min(end, position + batch))
            records = [
                Record(self.topic, 0, o, b"checkout", orjson.dumps(self.log[o])) for o in chunk
            ]
            self._apply(self.stage.process(records, now))
            position = chunk[-1] + 1
        self.position = position

    def tick(self, now: float) -> None:
        self._apply(self.stage.tick(now))

    def restart(self, stage: Any) -> None:
        """A new process: restore the changelog, resume from the committed offset."""
        self.stage = stage
        stage.assign([0])
        for (partition, key), value in self.changelog.items():
            stage.restore(partition, key, value)
        self.position = self.committed


def by_id(rollups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in rollups}


def test_windows_close_once_per_series_and_service_with_deterministic_ids():
    h = Harness(WindowsStage())
    h.send(latency(T0 + 1000, 10.0), latency(T0 + 2000, 30.0, endpoint="/cart"))
    h.send(latency(T0 + 9000, 20.0, status=503), latency(T0 + 9500, 5.0, status=404))
    h.run()
    assert h.rollups == []  # watermark T0+4.5s: nothing closed yet
    h.send(latency(T0 + 15_001, 1.0))  # watermark T0+10.001s closes [T0, T0+10s)
    h.run()
    got = by_id(h.rollups)
    assert sorted(got) == [
        f"checkout|*|10s|{T0}",
        f"checkout|/cart|10s|{T0}",
        f"checkout|/pay|10s|{T0}",
    ]
    pay = got[f"checkout|/pay|10s|{T0}"]
    assert (pay["count"], pay["errors"], pay["client_errors"]) == (3, 1, 1)
    assert pay["start"] == T0 and pay["end"] == T0 + 10_000
    assert pay["max_ms"] == 20.0 and pay["mean_ms"] == pytest.approx(35.0 / 3)
    assert got[f"checkout|*|10s|{T0}"]["count"] == 4
    h.send(latency(T0 + 16_000, 2.0))
    h.run()
    assert len(h.rollups) == 3  # closed windows are not emitted again


def test_late_events_are_counted_and_reported_in_the_next_rollup():
    h = Harness(WindowsStage(WindowsConfig(allowed_lateness_s=2.0)))
    h.send(latency(T0 + 1000, 1.0), latency(T0 + 13_000, 1.0))  # closes window 0
    h.send(latency(T0 + 3000, 1.0), latency(T0 + 4000, 1.0))  # two late events
    h.send(latency(T0 + 25_000, 1.0))  # closes window 10s
    h.run(batch=1)
    got = by_id(h.rollups)
    assert got[f"checkout|/pay|10s|{T0}"]["count"] == 1
    second = got[f"checkout|/pay|10s|{T0 + 10_000}"]
    assert second["count"] == 1 and second["late"] == 2
    assert got[f"checkout|*|10s|{T0 + 10_000}"]["late"] == 2


def direct(values_ms: list[float]) -> SparseHistogram:
    hist = SparseHistogram(layout())
    for v in values_ms:
        hist.record(int(v * 1000 + 0.5))
    return hist


def test_coarse_rollups_equal_a_direct_computation_over_the_same_events():
    rng = random.Random(5)
    h = Harness(WindowsStage())
    events = [
        latency(T0 + rng.randrange(0, 3_600_000), rng.lognormvariate(3, 1), endpoint=e)
        for e in ("/pay", "/cart")
        for _ in range(1500)
    ]
    events.sort(key=lambda e: e["ts"])
    for i in range(0, len(events), 20):
        h.send(*events[i : i + 20])
    h.send(latency(T0 + 3_600_000 + 10_000, 1.0))  # closes the hour
    h.run(batch=7)
    got = by_id(h.rollups)
    assert len(got) == len(h.rollups)  # every id once
    minute = T0 + 17 * 60_000
    for series, pick in (("checkout|/pay", "/pay"), ("checkout|*", None)):
        for resolution, start, size in (("1m", minute, 60_000), ("1h", T0, 3_600_000)):
            chosen = [
                e["duration_ms"]
                for e in events
                if start <= e["ts"] < start + size and pick in (None, e["endpoint"])
            ]
            rollup = got[f"{series}|{resolution}|{start}"]
            expected = direct(chosen)
            assert rollup["count"] == len(chosen)
            assert SparseHistogram.decode(rollup["hist"]) == expected
            assert rollup["p99_ms"] == expected.value_at_percentile(99.0) / 1000
            assert rollup["max_ms"] == int(max(chosen) * 1000 + 0.5) / 1000  # exact to 1 us
            assert rollup["mean_ms"] == pytest.approx(sum(chosen) / len(chosen), abs=0.001)
    assert sum(1 for r in h.rollups if r["resolution"] == "1m") == 2 * 60 + 60


def uninterrupted(events_by_message: list[list[dict[str, Any]]]) -> dict[str, dict]:
    h = Harness(WindowsStage())
    for message in events_by_message:
        h.send(*message)
    h.run()
    return by_id(h.rollups)


def messages(seed: int, count: int = 400) -> list[list[dict[str, Any]]]:
    rng = random.Random(seed)
    ts, out = T0, []
    for _ in range(count):
        ts += rng.randrange(0, 800)
        out.append([latency(ts + rng.randrange(-3000, 0), rng.expovariate(0.05)) for _ in range(3)])
    return out


def run_until(seed: int, upto: int) -> tuple[Harness, dict[str, dict]]:
    """A harness that ran `messages(seed)` up to offset `upto`, and the rollups of running
    them all without interruption."""
    log = messages(seed)
    h = Harness(WindowsStage())
    for message in log:
        h.send(*message)
    h.run(upto=upto)
    return h, uninterrupted(log)


@pytest.mark.parametrize("crash_at", [37, 150, 311])
def test_a_restart_neither_loses_nor_repeats_a_window(crash_at: int):
    h, expected = run_until(crash_at, crash_at)
    assert h.committed < crash_at  # the commit is held back for the open windows
    h.restart(WindowsStage())
    h.run()
    assert len(h.rollups) == len(expected)  # nothing emitted twice
    assert by_id(h.rollups) == expected


@pytest.mark.parametrize("form", ["words", "pairs"])
def test_a_restart_from_either_changelog_form_of_coarse_windows_gives_the_same_rollups(form):
    """Coarse windows are written as histogram words; an older deployment wrote pairs.
    Either, through JSON as the changelog holds it, restores the same windows."""
    h, expected = run_until(seed=5, upto=250)
    coarse = [k for (_, k), v in h.changelog.items() if k.startswith("1m|") and v]
    assert coarse and all("words" in h.changelog[(0, k)] for k in coarse)
    for key in coarse:
        value = dict(h.changelog[(0, key)])
        if form == "pairs":
            words, bits = value.pop("words"), value.pop("bits")
            value["counts"] = SparseHistogram.from_words(layout(), words, bits).to_pairs()
        h.changelog[(0, key)] = orjson.loads(orjson.dumps(value))
    h.restart(WindowsStage())
    h.run()
    assert by_id(h.rollups) == expected


def test_a_crash_after_outputs_but_before_the_changelog_re_emits_the_same_records():
    h, expected = run_until(seed=9, upto=200)
    snapshot, committed = dict(h.changelog), h.committed
    h.run(upto=260)  # these outputs reached the topic, but the changelog write was lost
    h.changelog, h.committed = snapshot, committed
    h.restart(WindowsStage())
    h.run()
    assert by_id(h.rollups) == expected  # re-emitted records carry the same id and values


def test_an_idle_partition_flushes_its_open_windows():
    h = Harness(WindowsStage(WindowsConfig(idle_flush_s=30)))
    h.send(latency(T0 + 1000, 4.0))
    h.run(now=NOW)
    h.tick(NOW + 10)
    assert h.rollups == []
    h.tick(NOW + 31)
    assert {r["id"] for r in h.rollups if r["resolution"] == "10s"} == {
        f"checkout|/pay|10s|{T0}",
        f"checkout|*|10s|{T0}",
    }
    assert h.stage.hold_offsets() == {}  # nothing open: the commit may move on


def test_ingest_replay_rebuilds_partial_windows_without_re_emitting_errors():
    error = {
        "schema": "error/1",
        "ts": T0 + 500,
        "service": "checkout",
        "exception": {"type": "ValueError", "message": "bad"},
    }

    def ingest() -> IngestWindowsStage:
        return IngestWindowsStage(IngestStage(), WindowsConfig())

    def errors() -> list:
        return [v for v in h.other if "exception" in v]

    h = Harness(ingest(), topic="events.raw")
    h.send({**error, "event_id": "e1"}, latency(T0 + 1000, 3.0))
    h.send(latency(T0 + 2000, 5.0))
    h.run(batch=1)
    assert len(errors()) == 1 and h.committed == 0
    h.restart(ingest())
    h.send(latency(T0 + 16_000, 1.0))
    h.run()
    assert len(errors()) == 1  # the error was not sent to events.errors again
    [partial] = [p for v in h.other if "partials" in v for p in expand_partials(v)]
    assert (partial["series"], partial["start"], partial["src"]) == ("checkout|/pay", T0, 0)
    assert partial["count"] == 2 and partial["late"] == 0
