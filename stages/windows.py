"""The windows stage: latency events in, one HDR-histogram rollup per series per window out.

Event-time tumbling windows per series `service|endpoint` and per service as a whole
(`service|*`). Each input partition has its own watermark: the largest event time seen
minus the allowed lateness. A window closes once the watermark passes its end; its
rollup goes to `rollups` once, with a deterministic id (series + resolution + start).
An event whose window has already closed is late: it is counted for its series and the
count is reported in that series' next rollup.

Coarser resolutions (1 min and 1 h by default) are built by merging closed windows'
histograms, each level feeding the next, so they equal a direct computation over the
same events and a long trend never needs raw events.

Durability, without writing every open window to the changelog:
- base windows live only in memory, and the stage *holds back* the commit of each input
  partition to the oldest record an open window still needs (`hold_offsets`), so a
  restart re-reads exactly what was not yet emitted;
- the changelog holds, per partition, the watermark, what is closed, and the next offset
  processed (`meta`), the open coarse windows, and pending late counts. After a restore,
  re-read records that fall into closed windows were already counted and are skipped.

Pure (see stages/base.py): no Kafka, no clocks, no I/O.
"""

from __future__ import annotations

from base64 import b64decode
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from detection.rules import Rule
from histograms.hdr import HdrLayout, SparseHistogram, layout
from schemas.dlq import dead_letter
from schemas.partials import InvalidPartial, read_partial, read_service_partials, read_watermark
from schemas.rollups import (
    PERCENTILES,
    SERVICE_WIDE,
    resolution_name,
    rollup_id,
    service_wide_series,
)
from schemas.topology import ROLLUPS, SIGNALS, WINDOWS
from stages.base import Emit, EncodedJSON, Record, StageBase, StageResult
from stages.bulk_close import merge_into, summaries
from stages.cardinality import CardinalityLimits, SeriesRegistry, cardinality_signal
from stages.coarse import CoarseWindows
from stages.early import EarlyEvaluator
from stages.merged_bucket import MergedBucket, check_words

__all__ = ["WindowsConfig", "WindowsCore", "WindowsStage"]

ROLLUPS_TOPIC = ROLLUPS
META_KEY = "meta"
LATE_PREFIX = "late|"
SOURCE_PREFIX = "src|"  # a source partition's watermark (two-phase windowing)
NEVER = -(2**62)


@dataclass(frozen=True)
class WindowsConfig:
    """Window sizes, lateness and histogram precision."""

    window_s: float = 10.0
    rollup_resolutions_s: tuple[float, ...] = (60.0, 3600.0)
    allowed_lateness_s: float = 5.0
    # A partition that receives nothing for this long (wall time) flushes its open windows.
    idle_flush_s: float = 30.0
    hdr_lowest_us: int = 1
    hdr_highest_us: int = 3_600_000_000
    hdr_digits: int = 2
    # Early evaluation (stages/early.py): the rollup rules, the resolution they observe
    # (None: off), how often (wall time) a partition's open windows are checked, and how
    # many events a rate, mean or percentile needs before it counts.
    early_rules: tuple[Rule, ...] = ()
    early_resolution: str | None = None
    early_eval_s: float = 1.0
    early_min_events: int = 50
    # Series each partition keeps (stages/cardinality.py).
    limits: CardinalityLimits = field(default_factory=CardinalityLimits)
    # Series (rollups, changelog keys) per part of a close (`StageResult.streamed`): what a
    # close of many series holds at once until the broker has it (docs/memory.md).
    close_part_series: int = 4096

    def sizes_ms(self) -> list[int]:
        """Base window size first, then each coarser resolution; each divides the next."""
        return [round(self.window_s * 1000)] + [round(s * 1000) for s in self.rollup_resolutions_s]


class Window:
    """One series' accumulator for one window.

    The hot path only appends the value (integer microseconds) to `values`, and raises
    `max_us` if the value is larger; the values go into the histogram in bulk (`flush`),
    every `FLUSH_AT` values and at close. So `max_us` is the largest value, pending ones
    included (early evaluation reads it without scanning the pending values).
    """

    __slots__ = ("client_errors", "errors", "hist", "late", "max_us", "start", "sum_us", "values")

    def __init__(self, hdr: HdrLayout, start: int) -> None:
        self.start = start
        self.hist = SparseHistogram(hdr)
        self.values: list[int] = []
        self.errors = 0
        self.client_errors = 0
        self.late = 0
        self.sum_us = 0
        self.max_us = 0

    def flush(self) -> None:
        values = self.values
        if values:
            self.hist.record_many(values)
            self.sum_us += sum(values)
            self.max_us = max(self.max_us, max(values))
            self.values = []

    def merge(self, other: Window) -> None:
        """Add `other` to this window. Its pending values become pending here too: a
        service's window, merged from its endpoints', then records them in one bulk."""
        if other.hist.total:
            self.hist.merge(other.hist)
        self.values += other.values
        self.errors += other.errors
        self.client_errors += other.client_errors
        self.late += other.late
        self.sum_us += other.sum_us
        self.max_us = max(self.max_us, other.max_us)

    def to_state(self) -> dict[str, Any]:
        """The changelog form of a flushed window: a sparse histogram as its words
        (`SparseHistogram.to_words`), a dense one as `to_pairs`."""
        hist = self.hist
        words = hist.to_words()
        if words is None:
            held: dict[str, Any] = {"counts": hist.to_pairs()}
        else:
            held = {"words": words, "bits": hist.layout._count_bits}
        return {
            "start": self.start,
            **held,
            "errors": self.errors,
            "client_errors": self.client_errors,
            "late": self.late,
            "sum_us": self.sum_us,
            "max_us": self.max_us,
        }

    @classmethod
    def from_state(cls, hdr: HdrLayout, value: dict[str, Any]) -> Window:
        window = cls(hdr, int(value["start"]))
        if "words" in value:
            window.hist = SparseHistogram.from_words(hdr, value["words"], int(value["bits"]))
        else:
            window.hist = SparseHistogram.from_pairs(hdr, value["counts"])
        window.errors = int(value["errors"])
        window.client_errors = int(value["client_errors"])
        window.late = int(value["late"])
        window.sum_us = int(value["sum_us"])
        window.max_us = int(value["max_us"])
        return window


def encoded_json(value: dict[str, Any]) -> EncodedJSON:
    """`value` encoded now, holding only its bytes (orjson's result keeps the buffer it
    wrote into: 4 KB or more). What a close emits per series lives until the broker
    acknowledges it, so it is held as these few hundred bytes rather than a dict of
    Python objects (docs/memory.md)."""
    return EncodedJSON(memoryview(orjson.dumps(value)).tobytes())


FLUSH_AT = 128
SWEEP_EVERY_MS = 60_000  # how often (event time) a partition forgets its idle series
SIGNALS_TOPIC = SIGNALS


class PartitionWindows:
    """Everything one input partition's windows need."""

    __slots__ = (
        "closed",
        "coarse",
        "dirty",
        "early_at",
        "early_judged",
        "early_sent",
        "first_offset",
        "last_active",
        "late",
        "max_ts",
        "merged",
        "next_offset",
        "open",
        "partition",
        "registry",
        "replay_until",
        "sources",
        "swept",
    )

    def __init__(
        self,
        partition: int,
        levels: int,
        now: float | None,
        limits: CardinalityLimits,
        hdr: HdrLayout,
    ) -> None:
        self.partition = partition
        self.max_ts = -(2**62)
        self.closed = -(2**62)  # every base window ending at or before this is emitted
        # Base windows: start -> series -> window (ingest: a `PartialBucket` of columns).
        self.open: dict[int, Any] = {}
        self.first_offset: dict[int, int] = {}  # start -> first input offset it holds
        self.coarse = [CoarseWindows(hdr, Window) for _ in range(levels)]
        self.late: dict[str, int] = {}
        self.next_offset = -1
        self.replay_until = -1  # offsets below this were processed before a restart
        self.last_active = now  # None until the partition is first seen after a restore
        self.dirty: set[str] = set()  # changelog keys to write at the next checkpoint
        self.early_at = -(2.0**62)  # wall time of the last early evaluation
        self.early_sent: set[tuple[str, str, int]] = set()  # (rule, series, start) observed
        self.early_judged: dict[int, dict[str, int]] = {}  # start -> series -> events judged
        self.registry = SeriesRegistry(limits)  # the series admitted, under the limits
        self.swept = -(2**62)  # `closed` when idle series were last forgotten
        # Two-phase windowing (schemas/partials.py): each source partition's watermark as
        # [closed, idle], and per open base window the sources merged per series (a bit
        # per source partition: an int, where a set of (series, source) tuples cost
        # ~90 bytes a partial).
        self.sources: dict[int, list[Any]] = {}
        self.merged: dict[int, dict[str, int]] = {}


class WindowsCore:
    """Windowing for the partitions a process owns: the windows stage's, and (subclassed by
    `stages.ingest_windows.PartialWindowsCore`) ingest's partial windows."""

    def __init__(self, config: WindowsConfig, input_topic: str) -> None:
        self.config = config
        self.input_topic = input_topic
        self.sizes = config.sizes_ms()
        for small, big in zip(self.sizes, self.sizes[1:], strict=False):
            if big % small:
                raise ValueError(f"rollup resolution {big} ms is not a multiple of {small} ms")
        self.resolutions = [resolution_name(s) for s in self.sizes]
        self.lateness_ms = round(config.allowed_lateness_s * 1000)
        self.hdr = layout(config.hdr_lowest_us, config.hdr_highest_us, config.hdr_digits)
        self.partitions: dict[int, PartitionWindows] = {}
        self.stats = {
            "events": 0,
            "late": 0,
            "replayed": 0,
            "rollups": 0,
            "series_overflow": 0,  # events counted in an overflow series (over a limit)
            "series_expired": 0,  # idle series forgotten
            "partials": 0,  # partial windows merged (two-phase windowing)
            "duplicate_partials": 0,  # partials sent again after a crash, not counted twice
        }
        self.early: EarlyEvaluator | None = None
        self._unsettled: list[StageResult] = []  # handed out in parts (`settle`)
        if config.early_resolution in self.resolutions and config.early_eval_s > 0:
            self.early = EarlyEvaluator(
                config.early_rules,
                self.resolutions.index(config.early_resolution),
                config.early_eval_s,
                config.early_min_events,
            )

    def _partition(self, partition: int, now: float | None) -> PartitionWindows:
        ps = self.partitions.get(partition)
        if ps is None:
            ps = self.partitions[partition] = PartitionWindows(
                partition, len(self.sizes) - 1, now, self.config.limits, self.hdr
            )
        return ps

    # --- the hot path ------------------------------------------------------------------------

    def add(self, partition: int, offset: int, event: dict[str, Any], now: float) -> None:
        """Account one validated latency event (a normalized dict) read at `offset`."""
        self.add_fields(
            partition,
            offset,
            event["service"],
            event["endpoint"],
            event["ts"],
            event["duration_ms"],
            event.get("status") or 0,
            now,
        )

    def add_fields(
        self,
        partition: int,
        offset: int,
        service: str,
        endpoint: str,
        ts: int,
        duration_ms: float,
        status: int,
        now: float,
    ) -> None:
        """The hot path: one validated latency event, as its fields."""
        ps = self.partitions.get(partition) or self._partition(partition, now)
        size = self.sizes[0]
        start = ts - ts % size
        if offset >= ps.next_offset:
            ps.next_offset = offset + 1
        if start + size <= ps.closed:
            self._late_event(ps, offset, service, endpoint)
            return
        if ts > ps.max_ts:
            ps.max_ts = ts
        bucket = ps.open.get(start)
        if bucket is None:
            bucket = ps.open[start] = {}
            ps.first_offset[start] = offset
        elif type(bucket) is MergedBucket:  # latency events after partials (an upgrade)
            bucket = ps.open[start] = bucket.windows()
        series = service + "|" + endpoint
        window = bucket.get(series)
        if window is None:  # once per series and window, or over a cardinality limit
            series = ps.registry.admit(service, endpoint, start)
            window = bucket.get(series)
            if window is None:
                window = bucket[series] = Window(self.hdr, start)
        values = window.values
        value = int(duration_ms * 1000.0 + 0.5)
        values.append(value)
        if value > window.max_us:
            window.max_us = value
        if len(values) >= FLUSH_AT:
            window.flush()
        if status >= 400:
            if status >= 500:
                window.errors += 1
            else:
                window.client_errors += 1
        self.stats["events"] += 1

    def open_bucket(
        self, ps: PartitionWindows, start: int, offset: int, service: str, endpoint: str
    ) -> Any:
        """The open base windows (series -> window) starting at `start`, for an event at
        `offset`; None when that window has closed (the event is accounted as late).

        `add_fields` in two steps, for a caller that keeps the result while the start
        stays the same (ingest's fast path): windows close only in `finish`.
        """
        if start + self.sizes[0] <= ps.closed:
            self._late_event(ps, offset, service, endpoint)
            return None
        bucket = ps.open.get(start)
        if bucket is None:
            bucket = ps.open[start] = self._new_bucket()
            ps.first_offset[start] = offset
        return bucket

    def _new_bucket(self) -> Any:
        """An empty open base window (every series'): series -> `Window` here."""
        return {}

    def _late_event(self, ps: PartitionWindows, offset: int, service: str, endpoint: str) -> None:
        """An event for a closed window: counted late, or skipped if counted before a restart."""
        if offset < ps.replay_until:
            self.stats["replayed"] += 1  # counted before the restart
            return
        self._late(ps, service + "|" + endpoint)
        self._late(ps, service + "|" + SERVICE_WIDE)
        self.stats["late"] += 1

    def _late(self, ps: PartitionWindows, series: str) -> None:
        ps.late[series] = ps.late.get(series, 0) + 1
        ps.dirty.add(LATE_PREFIX + series)

    # --- closing -----------------------------------------------------------------------------

    def finish(self, partitions: Iterable[int], now: float) -> StageResult:
        """After a batch: close what the watermarks allow and collect changelog writes
        (in parts: `_stream`, `_finish`). The parts are made as the result is read: read
        it (or `settle`) before adding events to this core again."""
        return self._stream(self._finish(list(partitions), now))

    def _stream(self, parts: Iterator[StageResult]) -> StageResult:
        """A result of `parts`, made as they are read (`StageResult.streamed`): a close of
        many series is handed over a part at a time (docs/memory.md)."""
        self.settle()
        result = StageResult.streamed(parts)
        self._unsettled.append(result)
        return result

    def settle(self) -> None:
        """Make whatever is left of the results handed out in parts, whole (their holder
        reads them as before): called before anything changes this state again, so a
        caller that reads a result only later, or not at all, sees the same as if every
        part had been made at once. The runtime reads every part first: nothing is left."""
        for result in self._unsettled:
            result.whole()
        self._unsettled.clear()

    def _finish(self, partitions: list[int], now: float) -> Iterator[StageResult]:
        """`finish`'s parts, partition by partition: the closes' rollups (`close_part_series`
        series a part), early evaluation's and the cardinality limits' signals, then the
        changelog writes (`_flush_state`)."""
        for partition in partitions:
            ps = self.partitions.get(partition)
            if ps is None:
                continue
            ps.last_active = now
            yield from self._closing(partition, ps, self._watermark(ps), now)

    def _closing(
        self, partition: int, ps: PartitionWindows, watermark: int, now: float | None
    ) -> Iterator[StageResult]:
        """One partition's close up to `watermark`, early evaluation at `now` (None: not
        now), the cardinality signals, then its changelog writes."""
        yield from self._close(partition, ps, watermark)
        result = StageResult()
        if now is not None and self.early is not None and self.early.due(ps, now):
            self.early.run(self, ps, now, result)
        self._report_cardinality(partition, ps, result)
        yield result
        ps.dirty.add(META_KEY)
        yield from self._flush_state(partition, ps)

    def _watermark(self, ps: PartitionWindows) -> int:
        """Where base windows close: with partials, the least watermark of the sources
        that are not idle (every source idle: everything open); otherwise the largest
        event time seen minus the allowed lateness."""
        if not ps.sources:
            return ps.max_ts - self.lateness_ms
        busy = [closed for closed, idle in ps.sources.values() if not idle]
        if busy:
            return min(busy)
        return max(ps.open) + self.sizes[0] if ps.open else NEVER

    # --- two-phase windowing: partial windows and source watermarks --------------------------

    def merge_partial(self, partition: int, offset: int, value: dict[str, Any]) -> None:
        """Merge one source's partial window (schemas/partials.py) read at `offset`.

        A partial whose id (`series|start|src`) was merged already is a re-emission after
        the source's crash, and so is one for a window its source's watermark had passed
        (a source sends its partials before the watermark that passes them); either is
        dropped. One for a window already closed here is late: its events are counted late.
        Records re-read after a restore rebuild open windows and skip closed ones."""
        series, start, src, numbers = read_partial(value)
        if "words" in value:
            self._merge(
                partition, offset, series, start, src, numbers, value["words"], value["bits"]
            )
        else:
            self._merge(partition, offset, series, start, src, numbers, None, 0, value["counts"])

    def merge_service_partials(self, partition: int, offset: int, value: dict[str, Any]) -> None:
        """Merge a service's partial windows (one element, schemas/partials.py): each row
        as `merge_partial` merges a partial, into the open window's columns
        (stages/merged_bucket.py). The whole element is checked first: a bad row refuses
        it whole."""
        start, src, bits, rows = read_service_partials(value)
        ps = self.partitions.get(partition) or self._partition(partition, None)
        bucket = ps.open.get(start)
        if not self._mergeable(ps, offset, start, src, bits) or type(bucket) is dict:
            for series, numbers, words in rows:  # late, replayed, re-sent, or an odd form
                self._merge(partition, offset, series, start, src, numbers, words, bits)
            return
        blobs = [b64decode(words, validate=True) for _, _, words in rows]
        check_words(self.hdr, blobs, [numbers[0] for _, numbers, _ in rows])
        if offset >= ps.next_offset:
            ps.next_offset = offset + 1
        seen = ps.merged.get(start)
        if seen is None:
            seen = ps.merged[start] = {}
        bit, events, merged = 1 << src, 0, 0
        admit = ps.registry.admit
        for (series, numbers, _), blob in zip(rows, blobs, strict=True):
            held = seen.get(series, 0)
            if held & bit:
                self.stats["duplicate_partials"] += 1
                continue
            seen[series] = held | bit
            if bucket is None:
                bucket = ps.open[start] = MergedBucket(self.hdr, Window, start)
                ps.first_offset[start] = offset
            sid = bucket.ids.get(series)
            if sid is None:  # once per series and window, or over a cardinality limit
                service, _, endpoint = series.rpartition("|")
                sid = bucket.id_of(admit(service, endpoint, start))
            bucket.add(sid, numbers, blob)
            events += numbers[0]
            merged += 1
        self.stats["events"] += events
        self.stats["partials"] += merged

    def _mergeable(
        self, ps: PartitionWindows, offset: int, start: int, src: int, bits: int
    ) -> bool:
        """Whether a source's partials for the window at `start` go into its open window:
        not closed here, not re-sent after the source's own watermark passed it, and in
        the layout's word form (else `_merge` accounts for them row by row)."""
        if start + self.sizes[0] <= ps.closed or bits != self.hdr._count_bits:
            return False
        source = ps.sources.get(src)
        replayed = offset < ps.replay_until
        return replayed or source is None or start + self.sizes[0] > source[0]

    def _merge(
        self,
        partition: int,
        offset: int,
        series: str,
        start: int,
        src: int,
        numbers: list[int],
        words: str | None,
        bits: int,
        pairs: list[int] | None = None,
    ) -> None:
        count, errors, client_errors, late, sum_us, max_us = numbers
        ps = self.partitions.get(partition) or self._partition(partition, None)
        if offset >= ps.next_offset:
            ps.next_offset = offset + 1
        end = start + self.sizes[0]
        replayed = offset < ps.replay_until
        source = ps.sources.get(src)
        if end <= ps.closed:
            if replayed:
                self.stats["replayed"] += 1
            elif source is not None and end <= source[0]:
                self.stats["duplicate_partials"] += 1
            else:  # the window closed without this source (idle, or an idle flush)
                self._late_count(ps, series, count + late)
                self._late_count(ps, service_wide_series(series), count + late)
                self.stats["late"] += count
            return
        if not replayed and source is not None and end <= source[0]:
            self.stats["duplicate_partials"] += 1
            return
        seen = ps.merged.get(start)
        if seen is None:
            seen = ps.merged[start] = {}
        merged, bit = seen.get(series, 0), 1 << src
        if merged & bit:
            self.stats["duplicate_partials"] += 1
            return
        seen[series] = merged | bit
        bucket = ps.open.get(start)
        if type(bucket) is MergedBucket:  # an odd form after columns: windows from here on
            ps.open[start] = bucket.windows()
        if words is not None:
            hist = SparseHistogram.from_words(self.hdr, words, bits)
        else:
            hist = SparseHistogram.from_pairs(self.hdr, pairs or [])
        if hist.total != count:
            raise InvalidPartial(f"count: {count} but the histogram holds {hist.total}")
        bucket = ps.open.get(start)
        if bucket is None:
            bucket = ps.open[start] = {}
            ps.first_offset[start] = offset
        window = bucket.get(series)
        if window is None:
            service, _, endpoint = series.rpartition("|")
            series = ps.registry.admit(service, endpoint, start)
            window = bucket.get(series)
        if window is None:
            window = bucket[series] = Window(self.hdr, start)
            window.hist = hist
        else:
            window.hist.merge(hist)
        window.errors += errors
        window.client_errors += client_errors
        window.late += late
        window.sum_us += sum_us
        if max_us > window.max_us:
            window.max_us = max_us
        self.stats["events"] += count
        self.stats["partials"] += 1

    def source_watermark(self, partition: int, offset: int, value: dict[str, Any]) -> None:
        """A source's watermark (schemas/partials.py): it only grows; `idle` follows the
        latest. Re-read after a restore, it was applied already (its state is restored)."""
        src, closed, idle, max_ts = read_watermark(value)
        ps = self.partitions.get(partition) or self._partition(partition, None)
        if offset >= ps.next_offset:
            ps.next_offset = offset + 1
        if offset < ps.replay_until:
            return
        source = ps.sources.get(src)
        if source is None:
            source = ps.sources[src] = [closed, idle]
        else:
            source[0], source[1] = max(source[0], closed), idle
        if max_ts > ps.max_ts:
            ps.max_ts = max_ts
        ps.dirty.add(SOURCE_PREFIX + str(src))

    def _late_count(self, ps: PartitionWindows, series: str, count: int) -> None:
        if count:
            ps.late[series] = ps.late.get(series, 0) + count
            ps.dirty.add(LATE_PREFIX + series)

    def flush_idle(self, now: float) -> StageResult:
        """`_flush_idle`, in parts."""
        return self._stream(self._flush_idle(now))

    def _flush_idle(self, now: float) -> Iterator[StageResult]:
        """Close every open window of partitions idle for `idle_flush_s` (wall time).

        A partition fed partial windows waits twice that: its sources flush their own idle
        windows after `idle_flush_s` and say they are idle, which closes the windows here;
        this only keeps windows from waiting for an ingest stage that is down."""
        idle: list[int] = []
        for partition, ps in self.partitions.items():
            idle_s = self.config.idle_flush_s * (2 if ps.sources else 1)
            if ps.last_active is None:
                ps.last_active = now
            elif ps.open and now - ps.last_active >= idle_s:
                idle.append(partition)
        for partition in idle:
            ps = self.partitions[partition]
            yield from self._closing(partition, ps, max(ps.open) + self.sizes[0], None)

    def _close(self, partition: int, ps: PartitionWindows, watermark: int) -> Iterator[StageResult]:
        """Close the base windows `watermark` passed, then the coarse windows they complete."""
        size = self.sizes[0]
        ready = sorted(start for start in ps.open if start + size <= watermark)
        if not ready:
            return
        before = ps.closed
        for start in ready:
            bucket = ps.open.pop(start)
            del ps.first_offset[start]
            ps.merged.pop(start, None)
            yield from self._close_base(ps, start, bucket)
            ps.closed = max(ps.closed, start + size)
        yield from self._close_coarse(ps, before)
        if ps.closed - ps.swept >= SWEEP_EVERY_MS:
            ps.swept = ps.closed
            idle_ms = round(self.config.limits.series_idle_s * 1000)
            self.stats["series_expired"] += ps.registry.expire(ps.closed - idle_ms)

    def _report_cardinality(
        self, partition: int, ps: PartitionWindows, result: StageResult
    ) -> None:
        """Count overflowing events and signal the limits newly reached or cleared."""
        registry = ps.registry
        if registry.overflow_events:
            self.stats["series_overflow"] += registry.overflow_events
            registry.overflow_events = 0
        for scope, state in registry.take_warnings():
            signal = cardinality_signal(partition, scope, state, self.config.limits, ps.max_ts)
            result.emits.append(Emit(SIGNALS_TOPIC, signal["key"], signal))

    def _close_base(
        self, ps: PartitionWindows, start: int, bucket: MergedBucket | dict[str, Window]
    ) -> Iterator[StageResult]:
        """Emit one base window start: every series' window, `close_part_series` a part, then
        each service's merge of them."""
        step = self.config.close_part_series
        if type(bucket) is MergedBucket:
            parts: Iterable[list[tuple[str, Window]]] = bucket.parts(size=step)
        else:
            held = list(bucket.items())
            parts = (held[k : k + step] for k in range(0, len(held), step))
        whole: dict[str, Window] = {}  # service-wide series -> its window, filled part by part
        for part in parts:
            series = [name for name, _ in part]
            windows = [window for _, window in part]
            targets: dict[str, int] = {}  # this part's services -> place in `services`
            owners = [targets.setdefault(service_wide_series(s), len(targets)) for s in series]
            services = [whole.get(name) or Window(self.hdr, start) for name in targets]
            whole.update(zip(targets, services, strict=True))
            merge_into(self.hdr, services, windows, owners)
            yield self._emit_closed(ps, series, windows)
        names = list(whole)
        for k in range(0, len(names), step):
            series = names[k : k + step]
            yield self._emit_closed(ps, series, [whole[name] for name in series])

    def _emit_closed(
        self, ps: PartitionWindows, series: list[str], windows: list[Window]
    ) -> StageResult:
        """The rollups of closed base windows, with the late counts pending for them."""
        for name, window in zip(series, windows, strict=True):
            window.late += ps.late.pop(name, 0)
            if window.late:
                ps.dirty.add(LATE_PREFIX + name)
        result = StageResult()
        self._emit(ps, 0, series, windows, result)
        return result

    def _emit(
        self,
        ps: PartitionWindows,
        level: int,
        series: list[str],
        windows: list[Window],
        result: StageResult,
    ) -> None:
        """Emit the rollups of closed windows of one resolution, then merge each into its
        series' window of the next resolution. The windows hold no pending values:
        `merge_into` flushed the base ones, and service-wide and coarse windows are only
        ever built by `merge_into` from flushed windows."""
        values, encoded = summaries(self.hdr, windows, [p for _, p in PERCENTILES])
        for name, window, at, hist in zip(series, windows, values, encoded, strict=True):
            result.emits.append(self._rollup(name, level, window, at, hist))
        self._roll_up(ps, level + 1, series, windows, result)

    def _roll_up(
        self,
        ps: PartitionWindows,
        level: int,
        series: list[str],
        windows: list[Window],
        result: StageResult,
    ) -> None:
        """Merge closed windows into the next resolution's open windows of the same series."""
        if level >= len(self.sizes):
            return
        size, finer = self.sizes[level], self.sizes[level - 1]
        coarse = ps.coarse[level - 1]
        prefix = self.resolutions[level] + "|"
        slots, merged, ends = [], [], []
        held = coarse.slots
        for name, window in zip(series, windows, strict=True):
            start = window.start - window.start % size
            end = window.start + finer
            slot = held.get(name)
            if slot is not None and coarse.holds(slot, end):
                continue  # merged before a restart (`_flush_state`), into this or an older one
            if slot is not None and coarse.start[slot] != start:
                self._emit(ps, level, [name], self._pop_closed(ps, level, [name], result), result)
                slot = None
            if slot is None:
                slot = coarse.open(name, start)
            slots.append(slot)
            merged.append(window)
            ends.append(end)
            ps.dirty.add(prefix + name)
        coarse.merge(slots, merged, ends)

    def _close_coarse(self, ps: PartitionWindows, before: int) -> Iterator[StageResult]:
        """Emit coarse windows that the base windows' progress has completed (`close_part_series`
        series a part)."""
        step = self.config.close_part_series
        for level in range(1, len(self.sizes)):
            size = self.sizes[level]
            if before // size == ps.closed // size:
                break  # no boundary crossed at this level, so none at coarser ones either
            coarse = ps.coarse[level - 1]
            done = coarse.done(ps.closed, size)
            prefix = self.resolutions[level] + "|"
            for k in range(0, len(done), step):
                series = done[k : k + step]
                for name in series:
                    ps.dirty.add(prefix + name)
                result = StageResult()
                self._emit(ps, level, series, self._pop_closed(ps, level, series, result), result)
                yield result

    def _pop_closed(
        self, ps: PartitionWindows, level: int, series: list[str], result: StageResult
    ) -> list[Window]:
        """Take the closed coarse windows of `series` out of their columns, and write
        each one's final state (as far as its end) with their rollups, before meta: a
        restart that finds the tombstone not yet written emits it again as it was
        (`_flush_state`)."""
        coarse = ps.coarse[level - 1]
        prefix, size = self.resolutions[level] + "|", self.sizes[level]
        windows = [coarse.pop(name) for name in series]
        for name, window in zip(series, windows, strict=True):
            final = window.to_state()
            final["through"] = window.start + size
            result.state[(ps.partition, prefix + name)] = encoded_json(final)
        return windows

    def _rollup(
        self, series: str, level: int, window: Window, values: list[int], hist: str
    ) -> Emit:
        """The rollup record of a flushed window, given its percentile values (in
        `PERCENTILES` order) and its encoded histogram."""
        count = window.hist.total
        resolution = self.resolutions[level]
        service, _, endpoint = series.rpartition("|")
        record: dict[str, Any] = {
            "id": rollup_id(series, resolution, window.start),
            "series": series,
            "service": service,
            "endpoint": endpoint,
            "resolution": resolution,
            "start": window.start,
            "end": window.start + self.sizes[level],
            "count": count,
            "errors": window.errors,
            "client_errors": window.client_errors,
            "late": window.late,
            "mean_ms": window.sum_us / count / 1000.0 if count else 0.0,
            "max_ms": window.max_us / 1000.0,
        }
        for (name, _), value in zip(PERCENTILES, values, strict=True):
            record[name] = value / 1000.0
        record["hist"] = hist
        self.stats["rollups"] += 1
        return Emit(ROLLUPS_TOPIC, series, encoded_json(record))

    # --- state ---------------------------------------------------------------------------------

    def _flush_state(self, partition: int, ps: PartitionWindows) -> Iterator[StageResult]:
        """Write the dirty changelog keys, in parts of `close_part_series` keys: first the open
        coarse windows (they hold no pending values, see `_emit`), then meta, source
        watermarks and late counts, then the tombstones of the coarse windows closed
        (whose final state was written with their rollups, `_pop_closed`).

        A crash part way leaves some written and meta as before the close, so a restart
        closes those base windows again: the coarse windows already written say how far
        they reach (`CoarseWindows.through`) and take nothing twice, and the closed ones
        are there whole, to be emitted again as they were. A crash after meta leaves
        closed coarse windows whose tombstones were not written: the next close emits
        them again, as they were, and their coarser windows hold them already."""
        keys, step = list(ps.dirty), self.config.close_part_series
        ps.dirty.clear()
        values: dict[tuple[int, str], Any] = {}
        last: dict[tuple[int, str], Any] = {}  # meta, source watermarks, late counts
        tombstones: list[str] = []
        for key in keys:
            if key == META_KEY:
                last[(partition, key)] = {
                    "max_ts": ps.max_ts,
                    "closed": ps.closed,
                    "next": ps.next_offset,
                }
            elif key.startswith(LATE_PREFIX):
                last[(partition, key)] = ps.late.get(key[len(LATE_PREFIX) :]) or None
            elif key.startswith(SOURCE_PREFIX):
                closed, idle = ps.sources[int(key[len(SOURCE_PREFIX) :])]
                last[(partition, key)] = {"closed": closed, "idle": idle}
            else:  # an open coarse window: ``resolution|series``
                resolution, _, series = key.partition("|")
                held = ps.coarse[self.resolutions.index(resolution) - 1].state(series)
                if held is None:
                    tombstones.append(key)
                    continue
                values[(partition, key)] = encoded_json(held)
                if len(values) >= step:
                    yield StageResult(state=values)
                    values = {}
        if values:
            yield StageResult(state=values)
        yield StageResult(state=last)
        for k in range(0, len(tombstones), step):
            yield StageResult(
                state=dict.fromkeys((partition, key) for key in tombstones[k : k + step])
            )

    def restore(self, partition: int, key: str, value: Any) -> None:
        self.settle()
        ps = self._partition(partition, None)
        if key == META_KEY:
            if value is not None:
                ps.max_ts = int(value["max_ts"])
                ps.closed = int(value["closed"])
                ps.replay_until = ps.next_offset = int(value["next"])
            return
        if key.startswith(LATE_PREFIX):
            series = key[len(LATE_PREFIX) :]
            if value:
                ps.late[series] = int(value)
            else:
                ps.late.pop(series, None)
            return
        if key.startswith(SOURCE_PREFIX):
            src = int(key[len(SOURCE_PREFIX) :])
            if value is None:
                ps.sources.pop(src, None)
            else:
                ps.sources[src] = [int(value["closed"]), bool(value["idle"])]
            return
        resolution, _, series = key.partition("|")
        if resolution not in self.resolutions[1:]:
            return  # a resolution no longer configured
        coarse = ps.coarse[self.resolutions.index(resolution) - 1]
        if value is None:
            coarse.discard(series)
        else:
            window = Window.from_state(self.hdr, value)
            coarse.put(series, window, int(value.get("through", 0)))
            if not series.endswith("|" + SERVICE_WIDE):
                ps.registry.seen(series, window.start)

    def replay_marks(self) -> dict[int, int]:
        """`replay_until` of every partition that has offsets to replay (restored ones)."""
        return {p: ps.replay_until for p, ps in self.partitions.items() if ps.replay_until > 0}

    def replay_until(self, partition: int) -> int:
        """Offsets of `partition` below this were processed before the last restore."""
        ps = self.partitions.get(partition)
        return ps.replay_until if ps is not None else -1

    def hold_offsets(self) -> dict[tuple[str, int], int]:
        return {
            (self.input_topic, partition): min(ps.first_offset.values())
            for partition, ps in self.partitions.items()
            if ps.first_offset
        }

    def revoke(self, partitions: Iterable[int]) -> None:
        self.settle()
        for partition in partitions:
            self.partitions.pop(partition, None)

    def open_windows(self) -> Iterator[tuple[int, str, Window]]:
        """Every open base window as (partition, series, window); for tests and metrics."""
        self.settle()
        for partition, ps in self.partitions.items():
            for bucket in ps.open.values():
                for series, window in bucket.items():
                    window.flush()
                    yield partition, series, window


class CoreStageMixin(StageBase):
    """The Stage protocol's timer, state and offset hooks, delegated to a `WindowsCore`."""

    core: WindowsCore

    @property
    def stats(self) -> dict[str, int]:
        """The windowing counters (events, late, rollups, series over the limits, ...)."""
        return self.core.stats

    def counters(self) -> Mapping[str, float]:
        return self.core.stats

    def state_size(self) -> int | None:
        """Open base windows held (one per series and window start)."""
        return sum(
            len(bucket) for ps in self.core.partitions.values() for bucket in ps.open.values()
        )

    def tick(self, now: float) -> StageResult:
        return self.core.flush_idle(now)

    def restore(self, partition: int, key: str, value: Any) -> None:
        self.core.restore(partition, key, value)

    def revoke(self, partitions: Iterable[int]) -> None:
        self.core.revoke(partitions)

    def hold_offsets(self) -> dict[tuple[str, int], int]:
        return self.core.hold_offsets()


class WindowsStage(CoreStageMixin):
    """The standalone stage: consumes `events.latency` (JSON arrays from ingest)."""

    name = WINDOWS.name
    inputs: tuple[str, ...] = WINDOWS.reads
    stateful = WINDOWS.stateful

    def __init__(self, config: WindowsConfig | None = None) -> None:
        self.core = WindowsCore(config or WindowsConfig(), "events.latency")

    def process(self, records: list[Record], now: float) -> StageResult:
        """Merge partial windows and source watermarks (schemas/partials.py); latency
        events (what ingest wrote here before two-phase windowing) are windowed as such."""
        core = self.core
        core.settle()
        dead: list[Emit] = []
        touched: set[int] = set()
        for record in records:
            touched.add(record.partition)
            partition, offset = record.partition, record.offset
            try:
                elements = orjson.loads(record.value or b"[]")
                for element in elements if isinstance(elements, list) else [elements]:
                    if "partials" in element:
                        core.merge_service_partials(partition, offset, element)
                    elif "partial" in element:
                        core.merge_partial(partition, offset, element)
                    elif "watermark" in element:
                        core.source_watermark(partition, offset, element)
                    else:
                        core.add(partition, offset, element, now)
            except Exception as exc:  # only ingest writes here; anything else is dead-lettered
                dead.append(_dead_letter(record, exc, now))
        result = StageResult(dead)
        result.extend(core.finish(sorted(touched), now))
        return result


def _dead_letter(record: Record, exc: Exception, now: float) -> Emit:
    return Emit(
        "events.dlq",
        (record.key or b"").decode("utf-8", "replace"),
        dead_letter(
            f"windows could not read this record: {exc!r}"[:500],
            "$",
            record.topic,
            record.partition,
            record.offset,
            None,
            record.value or b"",
            int(now * 1000),
        ),
    )
