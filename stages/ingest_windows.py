"""Ingest with the local phase of two-phase windowing: latency events go straight into
partial windows kept per `events.raw` partition, whatever the keying.

docs/windows.md: ingest windows what each raw partition (a *source*) brings; closing a
base window there sends each series' partial window (and then the source's watermark)
through `events.latency` to the windows stage, which merges the partials of every source
into the rollups. Only partials cross Kafka, not events. Errors and dead letters leave
through their topics as before.

The common message, one plainly valid latency event or an array of them (what the SDK
and batching fleets send), takes a fast path: a stretch of such records is decoded in one
call (`_ingest_lines`) and deduped and windowed a field at a time (`_window_columns`), with
no Python bytecode per event. Short stretches, and stretches holding anything else, go
record by record (`_ingest_records`, one decode per record, still windowed together), and
every message that is not plain, including an array with any element that is not, takes
ingest's general path, whole and in order, so the results are exactly the general path's
(tests/test_fast_path.py).

Commits of `events.raw` are held back to the oldest record an open partial window needs;
records re-read after a restart only rebuild windows (their errors and dead letters are
not produced a second time).
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import partial
from itertools import groupby, repeat
from math import floor
from operator import attrgetter
from typing import Any, NamedTuple, cast

import numpy as np

from histograms.hdr import HdrLayout
from schemas.partials import BROADCAST_KEY, encode_service_partials, encode_watermark
from schemas.plain_latency import plain_latency_decoder
from schemas.topology import INGEST
from stages.base import Emit, Record, StageResult
from stages.bulk_close import _reduce, _tables
from stages.cardinality import UNLIMITED, CardinalityLimits
from stages.ingest import LATENCY_TOPIC, IngestStage
from stages.windows import (
    LATE_PREFIX,
    NEVER,
    SWEEP_EVERY_MS,
    CoreStageMixin,
    PartitionWindows,
    Window,
    WindowsConfig,
    WindowsCore,
    encoded_json,
)

_PARTITION = attrgetter("partition")
_LATENCY = b"latency/1"  # in every plain message (a JSON escape in it takes the general path)
_PROBES = 32  # records looked at to tell how mixed a run is (`_probe_misses`)
# Runs of a partition are tried at once while at least this share of its recent ones were
# plain throughout (a failed try costs about what a good one spares), the share a moving
# average with this weight for the newest run.
_TRY_AT, _TRY_ALPHA = 0.6, 0.2
_OPEN_OBJECT, _OPEN_ARRAY, _CLOSE_OBJECT, _CLOSE_ARRAY = b"{[}]"
# A source partition that has never had a latency event is idle after this long (wall
# time, at most `idle_flush_s`): a keyed fleet leaves some raw partitions empty, and the
# windows stage must not wait `idle_flush_s` for them after every start.
EMPTY_SOURCE_GRACE_S = 3.0
_TS = attrgetter("ts")
_DURATION = attrgetter("duration_ms")
_STATUS = attrgetter("status")
_OFFSET = attrgetter("offset")
_VALUE = attrgetter("value")


def _probe_misses(records: list[Record]) -> int:
    """How many of `_PROBES` records spread over `records` are not latency events (0, 1,
    or 2 for 2 or more). 2 or more (about 1 in 16 records or more): stretches of latency
    events worth decoding at once are rare, and one pass record by record costs less
    than looking for them. 0: most often every record is one."""
    step = max(1, len(records) // _PROBES)
    misses = 0
    for record in records[::step]:
        value = record.value
        if value is None or _LATENCY not in value:
            misses += 1
            if misses >= 2:
                break
    return misses


# A window's event as one word: its value (integer microseconds) << 2 | its status class.
OK, CLIENT_ERROR, SERVER_ERROR = 0, 1, 2
FREED = 2**62  # `last_seen` of a series id that is free: never expired again


class PartialBucket:
    """One raw partition's open base window, for every series at once, as two columns:
    each event's series id (`PartialWindowsCore.series_ids`) and its word (value << 2 |
    status class). No object per series or event: 12 bytes an event, where a `Window`,
    its histogram, its list of pending values and a dict entry per series and raw
    partition held ~580 bytes (docs/memory.md). Closing reduces the columns with numpy
    (`PartialWindowsCore._send_partials`); early evaluation reads judged series as figures
    (`summaries`); `items` builds `Window`s."""

    __slots__ = ("hdr", "names", "sids", "words")

    def __init__(self, hdr: HdrLayout, names: list[str | None]) -> None:
        self.hdr = hdr
        self.names = names  # the core's: series id -> series
        self.sids = array("I")
        self.words = array("Q")

    def __bool__(self) -> bool:
        return bool(self.sids)

    def __len__(self) -> int:
        """Series with events here."""
        return int(np.count_nonzero(self._counts())) if self.sids else 0

    def _counts(self) -> np.ndarray:
        """Events here per series id (a pass over the ids, no sort)."""
        return np.bincount(np.frombuffer(self.sids, dtype=np.uint32))

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(series ids in order of first event, start, end of each one's events in the
        next two, events' values and status classes grouped by series)."""
        ids = np.frombuffer(self.sids, dtype=np.uint32)
        words = np.frombuffer(self.words, dtype=np.uint64)
        order = _stable_order(ids)
        sids, words = ids[order].astype(np.int64), words[order]
        first = np.flatnonzero(np.concatenate(([True], sids[1:] != sids[:-1])))
        bounds = np.concatenate((first, [len(sids)]))
        by_arrival = np.argsort(order[first], kind="stable")  # as a dict of windows would
        values = (words >> np.uint64(2)).astype(np.int64)
        classes = (words & np.uint64(3)).astype(np.int64)
        return sids[first][by_arrival], bounds, by_arrival, np.stack((values, classes))

    def tallies(self) -> list[tuple[str, int]]:
        """(series, events) of every series here, by series id (early evaluation's count)."""
        if not self.sids:
            return []
        counts = self._counts()
        sids = np.flatnonzero(counts)
        names: list[Any] = self.names  # an id in an open bucket is never freed
        return list(zip([names[s] for s in sids.tolist()], counts[sids].tolist(), strict=True))

    def summaries(self, wanted: Any = None) -> Iterator[tuple[str, Summary, Any]]:
        """(series, its `Summary`, a function making its `Window`) of every series here
        (or those `wanted` says yes to), in order of first event: what early evaluation
        reads, without a `Window` per series unless it asks (for percentiles)."""
        if not self.sids:
            return
        sids, bounds, by_arrival, (values, classes) = self.columns()
        first = bounds[:-1]
        counts = np.diff(bounds).tolist()
        sums = np.add.reduceat(values, first).tolist()
        maxima = np.maximum.reduceat(values, first).tolist()
        errors = np.add.reduceat((classes == SERVER_ERROR).astype(np.int64), first).tolist()
        client = np.add.reduceat((classes == CLIENT_ERROR).astype(np.int64), first).tolist()
        ends = bounds.tolist()
        names, hdr = self.names, self.hdr
        for n, sid in zip(by_arrival.tolist(), sids.tolist(), strict=True):
            series = names[sid]
            assert series is not None  # an id in an open bucket is never freed
            if wanted is not None and not wanted(series):
                continue
            summary = Summary(counts[n], errors[n], client[n], maxima[n], sums[n])
            part = values[ends[n] : ends[n + 1]]
            yield series, summary, partial(_pending_window, hdr, part, summary)

    def items(self, wanted: Any = None) -> Iterator[tuple[str, Window]]:
        """(series, `Window`) of every series here (or those `wanted` says yes to): what
        the windows of a dict bucket would hold, their values still pending (`Window`:
        `max_us` counts them; `flush` records them)."""
        for series, _, window in self.summaries(wanted):
            yield series, window()


def _stable_order(ids: np.ndarray) -> np.ndarray:
    """`np.argsort(ids, kind="stable")` of 32-bit ids, as a radix sort of 16-bit digits:
    numpy's stable sort is a radix sort for 16-bit values, about 10 times faster than its
    merge sort of wider ones. The low digit first, then the high one if any id has one
    (a stable sort by the high digit keeps the order of the low)."""
    order = np.argsort((ids & 0xFFFF).astype(np.uint16), kind="stable")
    if len(ids) and int(ids.max()) > 0xFFFF:
        high = (ids[order] >> 16).astype(np.uint16)
        order = order[np.argsort(high, kind="stable")]
    return order


class Summary(NamedTuple):
    """One series' events in an open partial window, in figures."""

    events: int
    errors: int
    client_errors: int
    max_us: int
    sum_us: int


def _pending_window(hdr: HdrLayout, values: np.ndarray, summary: Summary) -> Window:
    """A `Window` of `values` (still pending) and their `summary`."""
    window = Window(hdr, 0)
    window.values = values.tolist()
    window.max_us = summary.max_us
    window.errors = summary.errors
    window.client_errors = summary.client_errors
    return window


class PartialWindowsCore(WindowsCore):
    """The local phase of two-phase windowing (docs/windows.md): base windows per
    `events.raw` partition (the *source*) of whatever arrives there, whatever its key.

    Closing a base window sends each series' partial window to `events.latency`
    (partitioned by service) and then the source's watermark to every partition
    (schemas/partials.py); the windows stage merges the partials into rollups. No coarse
    windows, no service-wide windows and no cardinality limits here: the windows stage
    builds those from the partials, as it built them from events. Late events are
    counted per series and travel in the series' next partial window.
    """

    def __init__(self, config: WindowsConfig, input_topic: str = "events.raw") -> None:
        unlimited = CardinalityLimits(0, 0, config.limits.series_idle_s)
        super().__init__(replace(config, limits=unlimited), input_topic)
        self.stats["partials_sent"] = 0
        # The last watermark sent per source partition: (closed, idle).
        self.announced: dict[int, tuple[int, bool]] = {}
        # Series ids, shared by every raw partition's buckets: series -> id, id -> series,
        # id -> start of the last closed window that held it, and the ids free for reuse.
        self.series_ids: dict[str, int] = {}
        # The same ids by service, then endpoint (`series_id_columns`): looked up without
        # building each event's series name. Filled as they are looked up; emptied when
        # an id is freed (it may be given to another series).
        self.ids_by_service: dict[str, dict[str, int]] = {}
        self.series_names: list[str | None] = []
        self.last_seen = array("q")
        self.free_ids: list[int] = []
        self.ids_swept = NEVER

    def _new_bucket(self) -> PartialBucket:
        return PartialBucket(self.hdr, self.series_names)

    def open_events(self) -> int:
        """Events in open partial windows (not yet sent as partials); counted, not built."""
        self.settle()
        return sum(len(b.sids) for ps in self.partitions.values() for b in ps.open.values())

    def series_id(self, series: str) -> int:
        """The id of a series seen for the first time (or again after it was forgotten)."""
        if self.free_ids:
            sid = self.free_ids.pop()
            self.series_names[sid] = series
            self.last_seen[sid] = NEVER
        else:
            sid = len(self.series_names)
            self.series_names.append(series)
            self.last_seen.append(NEVER)
        self.series_ids[series] = sid
        return sid

    def series_id_columns(self, events: list[Any]) -> list[int]:
        """The series id of each event (`service|endpoint`), new series given theirs."""
        by_service = self.ids_by_service
        try:
            return [by_service[event.service][event.endpoint] for event in events]
        except KeyError:  # a pair not looked up since the last id was freed
            pass
        series_ids = self.series_ids
        sids = []
        for event in events:
            service, endpoint = event.service, event.endpoint
            series = service + "|" + endpoint
            sid = series_ids.get(series)
            if sid is None:
                sid = self.series_id(series)
            by_service.setdefault(service, {})[endpoint] = sid
            sids.append(sid)
        return sids

    def _forget_idle_series(self, closed: int) -> None:
        """Free the ids of series unseen for `series_idle_s` (event time) and in no open
        bucket: idle series give their memory back."""
        self.ids_swept = closed
        if not self.series_names:
            return
        before = closed - round(self.config.limits.series_idle_s * 1000)
        last = np.frombuffer(self.last_seen, dtype=np.int64)
        idle = last < before
        for ps in self.partitions.values():
            for bucket in ps.open.values():
                idle[np.frombuffer(bucket.sids, dtype=np.uint32)] = False
        gone = np.flatnonzero(idle).tolist()
        last[gone] = FREED
        del last
        names, ids = self.series_names, self.series_ids
        if gone:
            self.ids_by_service.clear()
        for sid in gone:
            del ids[names[sid]]  # type: ignore[arg-type]
            names[sid] = None
        self.free_ids += gone
        self.stats["series_expired"] += len(gone)

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
        """`WindowsCore.add_fields` into the columns of a `PartialBucket`."""
        ps = self.partitions.get(partition) or self._partition(partition, now)
        if offset >= ps.next_offset:
            ps.next_offset = offset + 1
        bucket = self.open_bucket(ps, ts - ts % self.sizes[0], offset, service, endpoint)
        if bucket is None:
            return  # late: counted
        if ts > ps.max_ts:
            ps.max_ts = ts
        series = service + "|" + endpoint
        sid = self.series_ids.get(series)
        if sid is None:
            sid = self.series_id(series)
        word = int(duration_ms * 1000.0 + 0.5) << 2
        if status >= 400:
            word |= SERVER_ERROR if status >= 500 else CLIENT_ERROR
        bucket.sids.append(sid)
        bucket.words.append(word)
        self.stats["events"] += 1

    def _partition(self, partition: int, now: float | None) -> PartitionWindows:
        ps = self.partitions.get(partition)
        if ps is None:
            ps = super()._partition(partition, now)
            ps.registry = UNLIMITED  # no limits here: nothing to remember per series
        return ps

    def _late_event(self, ps: PartitionWindows, offset: int, service: str, endpoint: str) -> None:
        if offset < ps.replay_until:
            self.stats["replayed"] += 1  # counted before the restart
            return
        self._late(ps, service + "|" + endpoint)  # the service's own: merged downstream
        self.stats["late"] += 1

    def _close(self, partition: int, ps: PartitionWindows, watermark: int) -> Iterator[StageResult]:
        """Send the partials of every base window the watermark passed, then the
        source's new watermark (after them, so it vouches for them)."""
        size = self.sizes[0]
        ready = sorted(start for start in ps.open if start + size <= watermark)
        if not ready:
            return
        for start in ready:
            bucket = ps.open.pop(start)
            del ps.first_offset[start]
            yield from self._send_partials(partition, ps, start, bucket)
            ps.closed = max(ps.closed, start + size)
        if ps.closed - self.ids_swept >= SWEEP_EVERY_MS:
            self._forget_idle_series(ps.closed)
        result = StageResult()
        self._announce(partition, ps, False, result)
        yield result

    def _send_partials(
        self,
        partition: int,
        ps: PartitionWindows,
        start: int,
        bucket: PartialBucket,
    ) -> Iterator[StageResult]:
        """One partial window per series of the closed `bucket`, in a few numpy passes
        over its columns: counts, sums, maxima, errors and the histogram words of every
        series at once (the words `SparseHistogram.to_words` would give); handed over a
        part of whole services (about `close_part_series` series) at a time."""
        if not bucket.sids:
            return
        lay = self.hdr
        sids, bounds, by_arrival, (values, classes) = bucket.columns()
        first = bounds[:-1]
        counts = np.diff(bounds)
        sums = np.add.reduceat(values, first).tolist()
        maxima = np.maximum.reduceat(values, first).tolist()
        errors = np.add.reduceat((classes == SERVER_ERROR).astype(np.int64), first).tolist()
        client_errors = np.add.reduceat((classes == CLIENT_ERROR).astype(np.int64), first)
        tables = _tables(lay)
        segment = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        keys, held = _reduce(segment * tables.width + tables.index_of(values, lay), None)
        segment = keys // tables.width
        index = (keys - segment * tables.width).astype(np.uint64)
        words = (index << np.uint64(lay._count_bits)) | held.astype(np.uint64)
        if sys.byteorder != "little":
            words = words.byteswap()
        blob = memoryview(words.tobytes())
        edges = np.searchsorted(segment, np.arange(len(counts) + 1)).tolist()
        last = np.frombuffer(self.last_seen, dtype=np.int64)
        last[sids] = start
        del last
        late, names = ps.late, self.series_names
        counts_list = counts.tolist()
        b64 = base64.b64encode
        # Each service's rows are built and encoded in one go (a service's series in
        # first-event order), so only one service's rows exist as Python lists at a time:
        # all of a close's rows at once were the largest transient of a close
        # (docs/memory.md).
        arrival, in_order = by_arrival.tolist(), sids.tolist()
        services: dict[str, list[int]] = {}  # service -> positions in `arrival`
        endpoints: list[str] = []  # by position
        for k, sid in enumerate(in_order):
            series = names[sid]
            assert series is not None  # an id in an open bucket is never freed
            service, _, endpoint = series.rpartition("|")
            endpoints.append(endpoint)
            members = services.get(service)
            if members is None:
                services[service] = [k]
            else:
                members.append(k)
        emits: list[Emit] = []
        rows_held, bits = 0, lay._count_bits
        for service, members in services.items():
            rows = []
            for k in members:
                n = arrival[k]
                pending = 0
                if late:
                    series = names[in_order[k]]
                    assert series is not None
                    pending = late.pop(series, 0)
                    if pending:
                        ps.dirty.add(LATE_PREFIX + series)
                rows.append(
                    [
                        endpoints[k],
                        counts_list[n],
                        errors[n],
                        int(client_errors[n]),
                        pending,
                        sums[n],
                        maxima[n],
                        b64(blob[8 * edges[n] : 8 * edges[n + 1]]).decode("ascii"),
                    ]
                )
            value = encode_service_partials(service, start, partition, bits, rows)
            emits.append(Emit(LATENCY_TOPIC, service, encoded_json(value)))
            rows_held += len(rows)
            if rows_held >= self.config.close_part_series:
                yield StageResult(emits)
                emits, rows_held = [], 0
        self.stats["partials_sent"] += len(counts_list)
        if emits:
            yield StageResult(emits)

    def _announce(
        self, partition: int, ps: PartitionWindows, idle: bool, result: StageResult
    ) -> None:
        """Send the source's watermark to every `events.latency` partition."""
        self.announced[partition] = (ps.closed, idle)
        watermark = encode_watermark(partition, ps.closed, idle, ps.max_ts)
        result.emits.append(Emit(LATENCY_TOPIC, BROADCAST_KEY, watermark))

    def finish(self, partitions: Iterable[int], now: float) -> StageResult:
        """As `WindowsCore.finish`; a source that had said it was idle says it is not
        before anything else it sends."""
        return self._stream(self._finish_announced(list(partitions), now))

    def _finish_announced(self, partitions: list[int], now: float) -> Iterator[StageResult]:
        result = StageResult()
        for partition in partitions:
            ps = self.partitions.get(partition)
            said = self.announced.get(partition)
            if ps is not None and said is not None and said[1]:
                self._announce(partition, ps, False, result)
        yield result
        yield from self._finish(partitions, now)

    def tick(self, now: float, assigned: Iterable[int]) -> StageResult:
        """Flush idle partitions' windows, then send each assigned source's watermark if
        it changed (a new owner sends it once): a source with no open window and nothing
        new for `idle_flush_s` (`EMPTY_SOURCE_GRACE_S` if it never had an event) says it
        is idle, so the windows stage does not wait for it.
        """
        return self._stream(self._tick(now, list(assigned)))

    def _tick(self, now: float, assigned: list[int]) -> Iterator[StageResult]:
        yield from self._flush_idle(now)
        result = StageResult()
        for partition in assigned:
            ps = self.partitions.get(partition) or self._partition(partition, now)
            if ps.last_active is None:
                ps.last_active = now
            quiet_s = self.config.idle_flush_s
            if ps.max_ts == NEVER:
                quiet_s = min(quiet_s, EMPTY_SOURCE_GRACE_S)
            idle = not ps.open and now - ps.last_active >= quiet_s
            if self.announced.get(partition) != (ps.closed, idle):
                self._announce(partition, ps, idle, result)
        yield result

    def revoke(self, partitions: Iterable[int]) -> None:
        partitions = list(partitions)
        super().revoke(partitions)
        for partition in partitions:
            self.announced.pop(partition, None)


class IngestWindowsStage(CoreStageMixin):
    """`ingest` whose latency events go into partial windows (`PartialWindowsCore`, state
    `state.ingest`); the windows stage merges them."""

    name = INGEST.name
    inputs: tuple[str, ...] = INGEST.reads
    stateful = INGEST.stateful
    core: PartialWindowsCore
    # Plain events windowed together from this many on go column by column
    # (`_window_columns`); fewer, event by event: numpy's fixed cost per call outweighs
    # its speed on a few.
    columns_from_events = 32
    # At most about this many are held before they are windowed: the column path makes a
    # pass over them per field, and past a few hundred events (with their strings) those
    # passes leave the CPU's cache, which costs more than the column path saves.
    columns_up_to = 512

    def __init__(self, ingest: IngestStage, windows: WindowsConfig | None = None) -> None:
        self.ingest = ingest
        self.core = PartialWindowsCore(windows or WindowsConfig())
        self.assigned: set[int] = set()
        # Per partition, the share of its recent runs (its records of a batch) that were
        # plain throughout (a moving average, 1 at first): runs are tried at once while it
        # is at least `_TRY_AT` (`_ingest_run`).
        self.plain_share: dict[int, float] = {}
        ingest.on_latency = self.core.add_fields  # the general path's latency events

    def counters(self) -> Mapping[str, float]:
        """Ingest's counters, then the windowing ones it does not have."""
        return {**self.core.stats, **self.ingest.stats}

    def tick(self, now: float) -> StageResult:
        return self.core.tick(now, sorted(self.assigned))

    def assign(self, partitions: Iterable[int]) -> None:
        self.assigned.update(partitions)

    def revoke(self, partitions: Iterable[int]) -> None:
        partitions = set(partitions)
        self.assigned -= partitions
        for partition in partitions:
            self.plain_share.pop(partition, None)
        self.core.revoke(partitions)

    def process(self, records: list[Record], now: float) -> StageResult:
        """Ingest the batch; records re-read after a restart only rebuild their windows.

        Commits are held back to the oldest open window, so a restart re-reads records
        whose errors and dead letters were already produced: those outputs are dropped.
        """
        self.core.settle()
        touched = sorted(set(map(_PARTITION, records)))
        replayed = self._replayed(records)
        if replayed:
            self.ingest.run_batch(replayed, now, self._ingest_plain)
            replay_until = self.core.replay_until
            records = [r for r in records if r.offset >= replay_until(r.partition)]
        result = self.ingest.run_batch(records, now, self._ingest_plain)
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

    # --- the fast path ---------------------------------------------------------------------

    def _ingest_plain(
        self, records: list[Record], now: float, emits: list[Emit], counts: list[int]
    ) -> None:
        """Ingest's per-batch loop (see `IngestStage.run_batch`), one partition run at a time."""
        for partition, run in groupby(records, _PARTITION):
            self._ingest_run(partition, run, now, emits, counts)

    def _ingest_run(
        self,
        partition: int,
        run: Iterable[Record],
        now: float,
        emits: list[Emit],
        counts: list[int],
    ) -> None:
        """Records of one partition, in order. Stretches of records that may be plain
        latency events (within the size limit, naming the schema), from
        `columns_from_events` to `columns_up_to` long, are decoded at once; the records
        between them (and shorter stretches) go record by record. When every probed
        record is a latency event (`_probe_misses`), each `columns_up_to` records are
        first tried as one stretch, which spares looking at them one by one, while most
        of the partition's recent runs were plain throughout (`plain_share`): a failed
        try costs a decode up to the first record that is not plain, so where those are
        common, tries would cost more than they spare, and the run is looked at record
        by record for stretches at once."""
        least, most = self.columns_from_events, self.columns_up_to
        records = list(run)
        misses = _probe_misses(records) if len(records) >= least else 2
        if misses >= 2:
            self._ingest_records(partition, records, now, emits, counts)
            return
        share = self.plain_share.get(partition, 1.0)
        if misses or share < _TRY_AT:
            at_once = self._ingest_stretches(partition, records, False, now, emits, counts)
            plain = at_once == len(records)
        else:  # most often all of them are plain
            plain, values = True, list(map(_VALUE, records))
            for k in range(0, len(records), most):
                chunk, tried = records[k : k + most], len(records) - k >= least
                if tried and self._ingest_lines(
                    partition, chunk, values[k : k + most], now, emits, counts
                ):
                    continue
                at_once = self._ingest_stretches(partition, chunk, tried, now, emits, counts)
                plain = plain and at_once == len(chunk)
        self.plain_share[partition] = share + _TRY_ALPHA * (plain - share)

    def _ingest_stretches(
        self,
        partition: int,
        records: list[Record],
        tried: bool,
        now: float,
        emits: list[Emit],
        counts: list[int],
    ) -> int:
        """Records of one partition, in order: the stretches of them that may be plain
        (each value within the size limit, naming the schema) are decoded at once, the
        records between (and shorter stretches) go record by record. `tried`: all of
        them failed to decode at once already, so a stretch of all of them is not tried
        again. Returns how many were decoded at once."""
        max_bytes = self.ingest.config.limits.max_message_bytes
        least, most = self.columns_from_events, self.columns_up_to
        mixed: list[Record] = []  # records for `_ingest_records`, before `held`
        held: list[Record] = []  # a stretch that may be plain
        held_values: list[bytes] = []  # its values
        at_once, flush = 0, self._ingest_held
        for record in records:
            value = record.value
            if value is not None and len(value) <= max_bytes and _LATENCY in value:
                held.append(record)
                held_values.append(value)
                if len(held) >= most:
                    at_once += flush(partition, mixed, held, held_values, now, emits, counts)
                    mixed, held, held_values = [], [], []
                continue
            if len(held) >= least:
                at_once += flush(partition, mixed, held, held_values, now, emits, counts)
                mixed = []
            else:
                mixed += held
            held, held_values = [], []
            mixed.append(record)
        if len(held) < least or (tried and len(held) == len(records)):
            mixed += held
            held = []
        return at_once + flush(partition, mixed, held, held_values, now, emits, counts)

    def _ingest_held(
        self,
        partition: int,
        mixed: list[Record],
        held: list[Record],
        values: list[bytes],
        now: float,
        emits: list[Emit],
        counts: list[int],
    ) -> int:
        """`mixed` record by record, then the stretch `held` (with its `values`) decoded
        at once if all of it is plain (`_ingest_lines`), else record by record. Returns
        how many were decoded at once."""
        if mixed:
            self._ingest_records(partition, mixed, now, emits, counts)
        if not held:
            return 0
        if self._ingest_lines(partition, held, values, now, emits, counts):
            return len(held)
        self._ingest_records(partition, held, now, emits, counts)
        return 0

    def _ingest_lines(
        self,
        partition: int,
        records: list[Record],
        values: Sequence[bytes | None],
        now: float,
        emits: list[Emit],
        counts: list[int],
    ) -> bool:
        """Decode `values` (of `records`) in one call, as lines of one text, and window
        them, if every one is plain (see `_ingest_records`) and none is too far in the
        future; else return False having changed nothing.

        `decode_lines` reads a stream of JSON texts apart by whitespace, so the values'
        bounds are checked: each one starts with `{` or `[` and ends with `}` or `]`.
        Then no JSON text can run from one value into the next (after a complete value,
        JSON allows only `,`, `:` or a closing bracket, never an opening one), every
        value gives at least one item (it names the schema), and n items from n values is
        exactly one each: what decoding the value alone gives.

        A value is plain only if it names the schema as it is (`_LATENCY`): where the text
        holds no backslash, a value that decodes names it so; otherwise each is looked at.
        """
        n = len(values)
        present = cast("Sequence[bytes]", values)  # if the join takes them all
        try:
            text = b"\n".join(present)
        except TypeError:  # a record without a value
            return False
        if b"\\" in text and not all(map(bytes.__contains__, present, repeat(_LATENCY, n))):
            return False  # one may name it with an escape (see `_LATENCY`)
        lengths = np.fromiter(map(len, present), np.int64, n)
        limits = self.ingest.config.limits
        if int(lengths.max()) > limits.max_message_bytes:
            return False
        ends = np.cumsum(lengths) + np.arange(n)  # past each one's last byte (newlines between)
        chars = np.frombuffer(text, np.uint8)
        first, last = chars[ends - lengths], chars[ends - 1]
        if not (
            ((first == _OPEN_OBJECT) | (first == _OPEN_ARRAY)).all()
            and ((last == _CLOSE_OBJECT) | (last == _CLOSE_ARRAY)).all()
        ):
            return False
        decoder = plain_latency_decoder(limits)
        try:
            docs = decoder.decode_lines(text)
        except Exception:  # one is not plain: the general path says which and why
            return False
        if len(docs) != n:  # a value with two (`{..}\n{..}`, `{..} {..}`)
            return False
        single = decoder.event
        latest_ts = int(now * 1000) + limits.future_tolerance_s * 1000
        if list in map(type, docs):
            sizes = [1 if type(doc) is single else len(doc) for doc in docs]
            latest = max(doc.ts if type(doc) is single else max(map(_TS, doc)) for doc in docs)
        else:
            sizes = None
            try:
                ts = np.fromiter(map(_TS, docs), np.int64, n)
            except OverflowError:  # past 64 bits: far in the future
                return False
            latest = int(ts.max())
        if latest > latest_ts:
            return False
        if sizes is None:
            self._window_plain(partition, records, docs, False, now, emits, counts, ts)
            return True
        start, room = 0, self.columns_up_to  # arrays of events: about that many at once
        for end, size in enumerate(sizes, 1):
            room -= size
            if room <= 0 or end == n:
                part = slice(start, end)
                self._window_plain(partition, records[part], docs[part], True, now, emits, counts)
                start, room = end, self.columns_up_to
        return True

    def _ingest_records(
        self,
        partition: int,
        run: Iterable[Record],
        now: float,
        emits: list[Emit],
        counts: list[int],
    ) -> None:
        """Records of one partition: the plain ones here, the rest by the general path.

        A record is plain when its value is one JSON object, or a non-empty array (within
        the events-per-message limit) of objects, each a latency/1 event with a non-empty
        `event_id` whose values all pass `_plain_latency_fields`' check (the same
        conditions as `schemas.events.plain_latency_batch`, which pins them in
        tests/test_fast_path.py). `schemas.plain_latency` decodes and checks such a value
        in one step; only the future bound of `ts` is checked here.

        Plain records gather until a record for the general path, the run's end or
        `columns_up_to` events; then they are windowed (`_window_plain`), so everything
        happens in the records' order.
        """
        limits = self.ingest.config.limits
        decode, _, single = plain_latency_decoder(limits)
        max_bytes = limits.max_message_bytes
        latest_ts = int(now * 1000) + limits.future_tolerance_s * 1000
        general = self.ingest._ingest_guarded
        records: list[Record] = []  # plain records not yet windowed
        docs: list[Any] = []  # each one's event, or list of events
        batched = False  # whether any of `docs` is a list
        room = self.columns_up_to  # events that may still join them
        for record in run:
            value = record.value
            try:  # plain (see above), else the general path says why not
                # (an error event, most often: not worth a decode that must fail)
                plain = value is not None and len(value) <= max_bytes and _LATENCY in value
                doc: Any = decode(value) if plain else None
            except Exception:
                doc = None
            if (
                doc is None or (doc.ts if type(doc) is single else max(map(_TS, doc))) > latest_ts
            ):  # the general path's (too far in the future: its rule says so)
                if records:
                    self._window_plain(partition, records, docs, batched, now, emits, counts)
                    records, docs, batched, room = [], [], False, self.columns_up_to
                general(record, now, emits, counts)
                continue
            records.append(record)
            docs.append(doc)
            if type(doc) is single:
                room -= 1
            else:
                room -= len(doc)
                batched = True
            if room <= 0:
                self._window_plain(partition, records, docs, batched, now, emits, counts)
                records, docs, batched, room = [], [], False, self.columns_up_to
        if records:
            self._window_plain(partition, records, docs, batched, now, emits, counts)

    def _window_plain(
        self,
        partition: int,
        records: list[Record],
        docs: list[Any],
        batched: bool,
        now: float,
        emits: list[Emit],
        counts: list[int],
        ts: np.ndarray | None = None,
    ) -> None:
        """Dedupe and window the plain `records` (their decoded `docs`, and each one's
        `ts` if known, when none is a list): column by column when that gives what the
        per-event loop would, else event by event."""
        owners = None  # the index in `records` of each event, when not one per record
        events = docs
        if batched:
            events, owners = [], []
            for i, doc in enumerate(docs):
                if type(doc) is list:
                    events += doc
                    owners += [i] * len(doc)
                else:
                    events.append(doc)
                    owners.append(i)
        if len(events) < self.columns_from_events or not self._window_columns(
            partition, records, events, owners, now, counts, None if batched else ts
        ):
            self._window_each(partition, records, docs, now, emits, counts)

    def _window_columns(
        self,
        partition: int,
        records: list[Record],
        events: list[Any],
        owners: list[int] | None,
        now: float,
        counts: list[int],
        ts: np.ndarray | None = None,
    ) -> bool:
        """Dedupe and window `events` (with their `ts` column, if made) a field at a time
        (C loops and numpy, no Python bytecode per event): what `_window_each` does with
        them when none is a duplicate or late, which is the common case.
        Otherwise returns False having changed nothing `_window_each` would not change
        the same way (a series id, an opened bucket), and that loop does it all.
        """
        core, recent = self.core, self.ingest.recent_ids
        accepted_ids = recent.ids
        n = len(events)
        ids = [event.event_id for event in events]
        if not accepted_ids.isdisjoint(ids):
            return False  # a duplicate: the loop counts it
        width = core.sizes[0]
        if ts is None:
            ts = np.fromiter(map(_TS, events), np.int64, n)
        starts = ts - ts % width
        ps = core.partitions.get(partition) or core._partition(partition, now)
        first, last = int(starts.min()), int(starts.max())
        if first + width <= ps.closed:
            return False  # a late event: counted by the loop
        size = len(accepted_ids)
        accepted_ids.update(ids)
        if len(accepted_ids) != size + n:  # an id twice among these: the loop says which
            accepted_ids.difference_update(ids)
            return False
        try:
            groups: list[tuple[Any, Any]] = []  # (bucket, which events or None: all)
            for start in [first] if first == last else np.unique(starts).tolist():
                select = None if first == last else starts == start
                at = 0 if select is None else int(np.argmax(select))  # its first event
                record = records[at if owners is None else owners[at]]
                event = events[at]
                bucket = core.open_bucket(ps, start, record.offset, event.service, event.endpoint)
                groups.append((bucket, select))
            # value << 2 | status class, as `_window_each` makes it
            durations = np.fromiter(map(_DURATION, events), np.float64, n)
            words = np.floor(durations * 1000.0 + 0.5).astype(np.uint64) << np.uint64(2)
            try:
                status = np.fromiter(map(_STATUS, events), np.int64, n)
            except TypeError:  # some have none: no class
                status = np.array([s or 0 for s in map(_STATUS, events)], np.int64)
            words |= (status >= 400).astype(np.uint64) + (status >= 500)
            columns = np.array(core.series_id_columns(events), np.uint32)
        except Exception:  # a bug: the loop dead-letters the record it happens in
            accepted_ids.difference_update(ids)
            return False
        recent.chunk(now).extend(ids)
        recent.trim_added(n)
        for bucket, select in groups:
            if select is None:
                bucket.sids.frombytes(columns.tobytes())
                bucket.words.frombytes(words.tobytes())
            else:
                bucket.sids.frombytes(columns[select].tobytes())
                bucket.words.frombytes(words[select].tobytes())
        latest = int(ts.max())
        if latest > ps.max_ts:
            ps.max_ts = latest
        next_offset = records[-1].offset + 1
        if next_offset > ps.next_offset:
            ps.next_offset = next_offset
        counts[1] += n
        core.stats["events"] += n
        return True

    def _window_each(
        self,
        partition: int,
        records: list[Record],
        docs: list[Any],
        now: float,
        emits: list[Emit],
        counts: list[int],
    ) -> None:
        """Dedupe and window the plain `records` (their decoded `docs`) event by event.

        For each event this does, in the same order, what the general path does
        (`IngestStage._ingest_record`, then `WindowsCore.add_fields`): the dedup check,
        the window, then remembering the id; an exception dead-letters the record and
        skips its remaining events, as `_ingest_guarded` would. Per-partition values that
        only grow (next offset, max event time) and the counters are kept in locals and
        written back at the end; the general path only raises them too, so the result is
        the same.
        """
        ingest, core = self.ingest, self.core
        recent = ingest.recent_ids  # `RecentIds`, inlined (expired before the batch)
        accepted_ids, accepted, max_ids = recent.ids, recent.chunk(now), recent.max_ids
        remember_id, remember_order = accepted_ids.add, accepted.append
        width = core.sizes[0]
        ps: PartitionWindows | None = core.partitions.get(partition)
        next_offset = max_ts = -(2**62)
        series_ids, series_id = core.series_ids, core.series_id
        add_sid = add_word = None  # the columns' appends of the bucket in hand
        bucket_start = None  # the window start they belong to (None: none yet)
        latency = duplicates = windowed = 0
        try:
            for record, doc in zip(records, docs, strict=True):
                offset = record.offset
                for event in doc if type(doc) is list else (doc,):
                    ts, service, endpoint = event.ts, event.service, event.endpoint
                    event_id = event.event_id
                    try:  # as `_ingest_guarded` does
                        if event_id in accepted_ids:  # `event_id in RecentIds`
                            duplicates += 1
                            continue

                        # `WindowsCore.add_fields`
                        if ps is None:
                            ps = core.partitions.get(partition) or core._partition(partition, now)
                        if offset >= next_offset:
                            next_offset = offset + 1
                        start = ts - ts % width
                        if start != bucket_start:
                            found = core.open_bucket(ps, start, offset, service, endpoint)
                            if found is None:  # late (counted) or replayed
                                recent.remember(event_id, now)
                                latency += 1
                                continue
                            add_sid, add_word = found.sids.append, found.words.append
                            bucket_start = start
                        if ts > max_ts:
                            max_ts = ts
                        series = service + "|" + endpoint
                        sid = series_ids.get(series)
                        if sid is None:
                            sid = series_id(series)
                        word = floor(event.duration_ms * 1000.0 + 0.5) << 2  # = int(): > 0
                        status = event.status
                        if status is not None and status >= 400:
                            word |= SERVER_ERROR if status >= 500 else CLIENT_ERROR
                        add_sid(sid)  # type: ignore[misc]  # set with bucket_start
                        add_word(word)  # type: ignore[misc]
                        windowed += 1

                        remember_id(event_id)  # `RecentIds.remember`
                        remember_order(event_id)
                        if len(accepted_ids) > max_ids:
                            recent.trim()
                    except Exception as exc:  # a bug must not stop the pipeline: dead-letter it
                        ingest._internal_error(emits, record, exc, now)  # and skip the rest,
                        break  # as `_ingest_guarded` does
                    latency += 1
        finally:
            counts[1] += latency
            counts[2] += duplicates
            core.stats["events"] += windowed
            if ps is not None:
                if next_offset > ps.next_offset:
                    ps.next_offset = next_offset
                if max_ts > ps.max_ts:
                    ps.max_ts = max_ts
