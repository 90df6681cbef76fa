"""Ingest and windows fused in one stage: latency events go straight into their windows.

design.md: when fleets key `events.raw` by service (the usual case), windowing can run
right after ingest in the same process, with no repartition hop through
`events.latency`. Errors and dead letters still leave through their topics. The common
message, one valid latency event, takes a fast path (`IngestStage._process_plain`) with
exactly the general path's results (tests/test_fast_path.py).

Windows are kept per `events.raw` partition, so every series must arrive on one raw
partition (raw keyed by service). If a service's events are spread over several raw
partitions, use the two separate stages instead (`windows.fused = false`).
"""

from __future__ import annotations

from itertools import groupby
from operator import attrgetter

from stages.base import Record, StageResult
from stages.ingest import IngestStage
from stages.windows import CoreStageMixin, WindowsConfig, WindowsCore

_PARTITION = attrgetter("partition")
_OFFSET = attrgetter("offset")


class IngestWindowsStage(CoreStageMixin):
    """`ingest` whose latency events are windowed in-process (state: `state.windows`)."""

    name = "ingest"
    state_name = "windows"
    inputs: tuple[str, ...] = ("events.raw",)
    stateful = True

    def __init__(self, ingest: IngestStage, windows: WindowsConfig | None = None) -> None:
        self.ingest = ingest
        self.core = WindowsCore(windows or WindowsConfig(), "events.raw")
        ingest.on_latency = self.core.add_fields

    def process(self, records: list[Record], now: float) -> StageResult:
        """Ingest the batch; records re-read after a restart only rebuild their windows.

        Commits are held back to the oldest open window, so a restart re-reads records
        whose errors and dead letters were already produced: those outputs are dropped.
        """
        touched = sorted(set(map(_PARTITION, records)))
        replayed = self._replayed(records)
        if replayed:
            self.ingest.process(replayed, now)
            replay_until = self.core.replay_until
            records = [r for r in records if r.offset >= replay_until(r.partition)]
        result = self.ingest.process(records, now)
        result.extend(self.core.finish(touched, now))
        return result

    def _replayed(self, records: list[Record]) -> list[Record]:
        """The records processed before the last restore (cheap when there are none)."""
        marks = self.core.replay_marks()
        if not marks:
            return []
        for partition, group in groupby(records, _PARTITION):
            mark = marks.get(partition)
            if mark is not None and min(map(_OFFSET, group)) < mark:
                return [r for r in records if r.offset < marks.get(r.partition, -1)]
        return []
