"""Ingest with the local phase of two-phase windowing: latency events go straight into
partial windows kept per `events.raw` partition, whatever the keying.

docs/windows.md: ingest windows what each raw partition (a *source*) brings; closing a
base window there sends each series' partial window (and then the source's watermark)
through `events.latency` to the windows stage, which merges the partials of every source
into the rollups. Only partials cross Kafka, not events. Errors and dead letters leave
through their topics as before.

The common message, one plainly valid latency event or an array of them (what the SDK
and batching fleets send), takes a fast path (`_ingest_run`): one loop that decodes,
checks, dedupes and windows each event with no function call per event (calls cost as
much as the work here). Every other message, including an array with any element that is
not plain, takes ingest's general path, whole and in order, so the results are exactly
the general path's (tests/test_fast_path.py).

Commits of `events.raw` are held back to the oldest record an open partial window needs;
records re-read after a restart only rebuild windows (their errors and dead letters are
not produced a second time).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from itertools import groupby
from math import floor
from operator import attrgetter
from typing import Any

from schemas.partials import BROADCAST_KEY, encode_partial, encode_watermark
from schemas.plain_latency import plain_latency_decoder
from schemas.topology import INGEST
from stages.base import Emit, Record, StageResult
from stages.bulk_close import flush_all
from stages.cardinality import UNLIMITED, CardinalityLimits
from stages.ingest import LATENCY_TOPIC, IngestStage
from stages.windows import (
    FLUSH_AT,
    LATE_PREFIX,
    NEVER,
    CoreStageMixin,
    PartitionWindows,
    Window,
    WindowsConfig,
    WindowsCore,
    encoded_json,
)

_PARTITION = attrgetter("partition")
_LATENCY = b"latency/1"  # in every plain message (a JSON escape in it takes the general path)
# A source partition that has never had a latency event is idle after this long (wall
# time, at most `idle_flush_s`): a keyed fleet leaves some raw partitions empty, and the
# windows stage must not wait `idle_flush_s` for them after every start.
EMPTY_SOURCE_GRACE_S = 3.0
_TS = attrgetter("ts")
_OFFSET = attrgetter("offset")


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

    def _close(
        self, partition: int, ps: PartitionWindows, watermark: int, result: StageResult
    ) -> None:
        """Send the partials of every base window the watermark passed, then the
        source's new watermark (after them, so it vouches for them)."""
        size = self.sizes[0]
        ready = sorted(start for start in ps.open if start + size <= watermark)
        if not ready:
            return
        for start in ready:
            bucket = ps.open.pop(start)
            del ps.first_offset[start]
            self._send_partials(partition, ps, start, bucket, result)
            ps.closed = max(ps.closed, start + size)
        self._announce(partition, ps, False, result)

    def _send_partials(
        self,
        partition: int,
        ps: PartitionWindows,
        start: int,
        bucket: dict[str, Window],
        result: StageResult,
    ) -> None:
        flush_all(self.hdr, list(bucket.values()))
        emits, late, bits = result.emits, ps.late, self.hdr._count_bits
        for series, window in bucket.items():
            if late:
                pending = late.pop(series, 0)
                if pending:
                    window.late += pending
                    ps.dirty.add(LATE_PREFIX + series)
            hist = window.hist
            words = hist.to_words()
            value = encode_partial(
                series,
                start,
                partition,
                hist.total,
                window.errors,
                window.client_errors,
                window.late,
                window.sum_us,
                window.max_us,
                words,
                bits,
                hist.to_pairs() if words is None else None,
            )
            emits.append(Emit(LATENCY_TOPIC, series.rpartition("|")[0], encoded_json(value)))
        self.stats["partials_sent"] += len(bucket)

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
        partitions = list(partitions)
        result = StageResult()
        for partition in partitions:
            ps = self.partitions.get(partition)
            said = self.announced.get(partition)
            if ps is not None and said is not None and said[1]:
                self._announce(partition, ps, False, result)
        result.extend(super().finish(partitions, now))
        return result

    def tick(self, now: float, assigned: Iterable[int]) -> StageResult:
        """Flush idle partitions' windows, then send each assigned source's watermark if
        it changed (a new owner sends it once): a source with no open window and nothing
        new for `idle_flush_s` (`EMPTY_SOURCE_GRACE_S` if it never had an event) says it
        is idle, so the windows stage does not wait for it.
        """
        result = self.flush_idle(now)
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
        return result

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

    def __init__(self, ingest: IngestStage, windows: WindowsConfig | None = None) -> None:
        self.ingest = ingest
        self.core = PartialWindowsCore(windows or WindowsConfig())
        self.assigned: set[int] = set()
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
        self.core.revoke(partitions)

    def process(self, records: list[Record], now: float) -> StageResult:
        """Ingest the batch; records re-read after a restart only rebuild their windows.

        Commits are held back to the oldest open window, so a restart re-reads records
        whose errors and dead letters were already produced: those outputs are dropped.
        """
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
        """Records of one partition: the plain ones here, the rest by the general path.

        A record is plain when its value is one JSON object, or a non-empty array (within
        the events-per-message limit) of objects, each a latency/1 event with a non-empty
        `event_id` whose values all pass `_plain_latency_fields`' check (the same
        conditions as `schemas.events.plain_latency_batch`, which pins them in
        tests/test_fast_path.py). `schemas.plain_latency` decodes and checks such a value
        in one step; only the future bound of `ts` is checked here. For each event this
        does, in the same order, what the general path does
        (`IngestStage._ingest_record`, then `WindowsCore.add_fields`): the dedup check,
        the window, then remembering the id; an exception dead-letters the record and
        skips its remaining events, as `_ingest_guarded` would.

        Per-partition values that only grow (next offset, max event time) and the
        counters are kept in locals and written back at the end; the general path only
        raises them too, so the result is the same.
        """
        ingest, core = self.ingest, self.core
        limits = ingest.config.limits
        decode, single = plain_latency_decoder(limits)
        max_bytes = limits.max_message_bytes
        latest_ts = int(now * 1000) + limits.future_tolerance_s * 1000
        general = ingest._ingest_guarded
        recent = ingest.recent_ids  # `RecentIds`, inlined (expired before the batch)
        accepted_ids, accepted, max_ids = recent.ids, recent.chunk(now), recent.max_ids
        remember_id, remember_order = accepted_ids.add, accepted.append
        width, hdr = core.sizes[0], core.hdr
        ps: PartitionWindows | None = core.partitions.get(partition)
        next_offset = max_ts = -(2**62)
        bucket: dict[str, Window] = {}
        bucket_start = None  # the window start `bucket` belongs to (None: none yet)
        latency = duplicates = windowed = 0
        try:
            for record in run:
                value = record.value
                try:  # plain (see above), else the general path says why not
                    # (an error event, most often: not worth a decode that must fail)
                    plain = value is not None and len(value) <= max_bytes and _LATENCY in value
                    doc: Any = decode(value) if plain else None
                except Exception:
                    doc = None
                if doc is None:
                    general(record, now, emits, counts)
                    continue
                if type(doc) is single:
                    events: tuple | list = (doc,)
                    ahead = doc.ts > latest_ts
                else:
                    events = doc
                    ahead = max(map(_TS, doc)) > latest_ts
                if ahead:  # too far in the future: the general path's rule says so
                    general(record, now, emits, counts)
                    continue

                offset = record.offset
                for event in events:
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
                            bucket, bucket_start = found, start
                        if ts > max_ts:
                            max_ts = ts
                        series = service + "|" + endpoint
                        window = bucket.get(series)
                        if window is None:  # as `WindowsCore.add_fields` (no limits here)
                            window = bucket[series] = Window(hdr, start)
                        values = window.values
                        value = floor(event.duration_ms * 1000.0 + 0.5)  # = int(): > 0
                        values.append(value)
                        if value > window.max_us:
                            window.max_us = value
                        if len(values) >= FLUSH_AT:
                            window.flush()
                        status = event.status
                        if status is not None and status >= 400:
                            if status >= 500:
                                window.errors += 1
                            else:
                                window.client_errors += 1
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
