"""The ingest stage: raw events in, validated events routed to errors / latency / dead letters.

Pure (see stages/base.py): it never touches Kafka, clocks or files, and it never raises on any
input. Every element of every input message ends up as exactly one of: an `events.errors` emit
(keyed by fingerprint id), an `events.latency` emit (partitioned by service), an
`events.dlq` emit (with the reason and the field), or a counted duplicate (an `event_id` already
accepted within the dedup window).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import orjson

from grouping import fingerprint_error, fingerprint_plain
from schemas.dlq import dead_letter
from schemas.events import (
    LATENCY_SCHEMA,
    InvalidEvent,
    Limits,
    decode_batch,
    latency_fields,
    normalized_latency,
    validate_event,
)
from schemas.plain_error import PlainErrorReader, StackEntry, encode_error
from schemas.topology import EVENTS_DLQ, EVENTS_ERRORS, EVENTS_LATENCY, INGEST
from stages.base import Emit, EncodedJSON, Record, StageBase, StageResult
from stages.dedup import RecentIds

__all__ = ["IngestConfig", "IngestStage", "LatencySink"]

LatencySink = Callable[[int, int, str, str, int, float, int, float], None]
BatchLoop = Callable[[list[Record], float, list[Emit], list[int]], None]
Stamp = Callable[[Any, list[int]], tuple[str, Any]]

ERRORS_TOPIC = EVENTS_ERRORS
LATENCY_TOPIC = EVENTS_LATENCY
DLQ_TOPIC = EVENTS_DLQ
_MAX_GROUPS_PER_STACK = 64  # exception types remembered per stack trace
_VALUE = attrgetter("value")


@dataclass
class IngestConfig:
    """Input limits and the bounds of the duplicate-event window."""

    limits: Limits = field(default_factory=Limits)
    dedup_max_ids: int = 200_000
    dedup_window_s: float = 600.0


class IngestStage(StageBase):
    """Decode, validate, dedupe, fingerprint and route raw events."""

    name = "ingest"
    inputs: tuple[str, ...] = INGEST.reads
    stateful = False

    def __init__(self, config: IngestConfig | None = None) -> None:
        self.config = config or IngestConfig()
        self._plain_errors = PlainErrorReader(self.config.limits)
        self.recent_ids = RecentIds(self.config.dedup_window_s, self.config.dedup_max_ids)
        self._now, self._now_ms = -1.0, -1  # the last `now` seen, and it in epoch ms
        self.stats: dict[str, int] = {"errors": 0, "latency": 0, "dead_letters": 0, "duplicates": 0}
        # When set, the general path's valid latency events go to this callback instead of
        # `events.latency` (the fused ingest+windows stage: no repartition hop), as
        # (partition, offset, service, endpoint, ts, duration_ms, status, now).
        self.on_latency: LatencySink | None = None

    # --- Stage protocol -------------------------------------------------------------------

    def counters(self) -> Mapping[str, float]:
        return self.stats

    def process(self, records: list[Record], now: float) -> StageResult:
        """Route every element of every record; see the module docstring."""
        return self.run_batch(records, now, self._ingest_each)

    def run_batch(self, records: list[Record], now: float, loop: BatchLoop) -> StageResult:
        """One batch: forget expired ids, run ``loop(records, now, emits, counts)``, count.

        `loop` routes every record and adds to `counts` (errors, latency, duplicates):
        `_ingest_each`, the general path, or a loop with exactly its results (the fused
        stage's fast path, stages/ingest_windows.py). Since such a loop gives the general
        path's results, runs of error messages within the batch go to the general path
        directly (`_with_error_runs`), in order: a loop made for latency events spends
        time on each record it hands over.
        """
        self.recent_ids.expire(now)
        emits: list[Emit] = []
        counts = [0, 0, 0]  # errors, latency, duplicates
        try:
            if loop != self._ingest_each and _has_error_messages(records):
                self._with_error_runs(records, now, loop, emits, counts)
            else:
                loop(records, now, emits, counts)
        finally:
            stats = self.stats
            stats["errors"] += counts[0]
            stats["latency"] += counts[1]
            stats["duplicates"] += counts[2]
        return StageResult(emits=emits)

    def _with_error_runs(
        self,
        records: list[Record],
        now: float,
        loop: BatchLoop,
        emits: list[Emit],
        counts: list[int],
    ) -> None:
        """`loop(records, ...)`, except that each run of at least `MIN_ERROR_RUN` error
        messages goes to `_ingest_guarded` record by record; the rest go to `loop` in the
        slices between those runs. The records are handled in their order, each as `loop`
        would (it gives the general path's results), so the results are the same."""
        starts = _ERROR_STARTS
        flags = [v is not None and v.startswith(starts) for v in map(_VALUE, records)]
        guarded = self._ingest_guarded
        n = len(records)
        start = i = 0  # the slice not yet handled starts at `start`
        while i < n:
            try:
                i = flags.index(True, i)  # the next run of error messages: [i, end)
            except ValueError:
                break
            try:
                end = flags.index(False, i)
            except ValueError:
                end = n
            if end - i >= MIN_ERROR_RUN:
                if start < i:
                    loop(records[start:i], now, emits, counts)
                for record in records[i:end]:
                    guarded(record, now, emits, counts)
                start = end
            i = end
        if start < n:
            loop(records[start:] if start else records, now, emits, counts)

    # --- per record / per event -----------------------------------------------------------

    def _ingest_each(
        self, records: list[Record], now: float, emits: list[Emit], counts: list[int]
    ) -> None:
        """The general path for every record of a batch."""
        ingest = self._ingest_guarded
        for record in records:
            ingest(record, now, emits, counts)

    def _ingest_guarded(
        self, record: Record, now: float, emits: list[Emit], counts: list[int]
    ) -> None:
        """`_ingest_record`, dead-lettering the record if that raises (a bug)."""
        try:
            self._ingest_record(record, now, emits, counts)
        except Exception as exc:  # a bug must not stop the pipeline: dead-letter it
            self._internal_error(emits, record, exc, now)

    def _internal_error(
        self, emits: list[Emit], record: Record, exc: Exception, now: float
    ) -> None:
        reason = f"internal error in ingest: {exc!r}"
        self._dead(emits, record, reason, "$", None, _raw_or_empty(record.value), now)

    def _ingest_record(
        self, record: Record, now: float, emits: list[Emit], counts: list[int]
    ) -> None:
        """Every element of one record (see the module docstring): a plain error message
        by the fast path, anything else by the general path."""
        value = record.value
        if (
            value is None
            or b"error/1" not in value
            or not self._ingest_plain_errors(record, value, now, emits, counts)
        ):
            self._ingest_general(record, now, emits, counts)

    def _ingest_plain_errors(
        self, record: Record, value: bytes, now: float, emits: list[Emit], counts: list[int]
    ) -> bool:
        """A plain error message (`schemas.plain_error`): each event deduped, grouped and
        emitted as its encoded JSON, as `_accept_error` does with `_stamp_dict` for the
        general path's events. False (nothing done) when the message is not plain."""
        if now != self._now:
            self._now, self._now_ms = now, int(now * 1000)
        plain = self._plain_errors.read_stacks(value, self._now_ms)
        if plain is None:
            return False
        events, is_array, stacks = plain
        recent = self.recent_ids  # `RecentIds`, inlined (expired before the batch)
        ids = recent.ids
        accepted: list[str] | None = None
        partition, offset = record.partition, record.offset
        for i, event in enumerate(events):
            event_id = event.event_id
            if event_id in ids:
                counts[2] += 1
                continue
            try:
                stack = stacks[i]
                if stack is not None and event.fingerprint is None:  # `_group_plain`'s hit
                    group_id = stack.groups.get(event.exception.type)
                    if group_id is None:
                        group_id = _group_plain(event, stack)
                else:
                    group_id = _group_plain(event, stack)
                event.fingerprint_id = group_id
                event.src = (partition, offset, i)  # `_src`, an array: see `_stamp_dict`
                out = EncodedJSON(encode_error(event))
            except Exception as exc:
                # (a failing array element is named by its index in the raw message)
                reason = f"fingerprinting failed: {exc!r}"
                self._dead_element(emits, record, reason, "$", i, is_array, None, now)
                continue
            emits.append(Emit(ERRORS_TOPIC, group_id, out))
            counts[0] += 1
            ids.add(event_id)  # `RecentIds.remember`
            if accepted is None:
                chunks = recent.chunks  # `RecentIds.chunk`, inlined for its usual case
                accepted = chunks[-1][1] if chunks and chunks[-1][0] == now else recent.chunk(now)
            accepted.append(event_id)
            if len(ids) > recent.max_ids:
                recent.trim()
        return True

    def _ingest_general(
        self, record: Record, now: float, emits: list[Emit], counts: list[int]
    ) -> None:
        """The general path: every element of one record (see the module docstring)."""
        value = record.value
        if value is None:
            self._dead(emits, record, "tombstone: message has no value", "$", None, b"", now)
            return
        limits = self.config.limits
        now_ms = int(now * 1000)
        try:
            elements, is_array = decode_batch(value, limits)
        except InvalidEvent as exc:
            self._dead(emits, record, exc.reason, exc.field, None, value, now)
            return

        on_latency = self.on_latency
        partition, offset = record.partition, record.offset
        for i, element in enumerate(elements):
            try:
                if type(element) is dict and element.get("schema") == LATENCY_SCHEMA:
                    fields = latency_fields(element, now_ms, limits)
                    event_id = fields[0]
                    event = None
                else:
                    event = validate_event(element, now_ms, limits)
                    event_id = event["event_id"]
            except InvalidEvent as exc:
                self._dead_element(emits, record, exc.reason, exc.field, i, is_array, element, now)
                continue
            except Exception as exc:  # a validator bug: dead-letter, never raise
                reason = f"internal error in validation: {exc!r}"
                self._dead_element(emits, record, reason, "$", i, is_array, element, now)
                continue

            if event_id is None:
                event_id = f"{record.topic}:{partition}:{offset}:{i}"
                if event is not None:
                    event["event_id"] = event_id
            if event is not None:
                self._accept_error(
                    event, event_id, _stamp_dict, record, i, is_array, element, now, emits, counts
                )
                continue
            if event_id in self.recent_ids:
                counts[2] += 1
                continue
            if on_latency is None:
                # Partitioned by service: a service's endpoint series and its
                # whole-service series are windowed together (docs/contracts.md).
                event = normalized_latency((event_id, *fields[1:]))
                emits.append(Emit(LATENCY_TOPIC, fields[2], event))
            else:
                _, ts, service, endpoint, _, status, duration, _, _ = fields
                on_latency(partition, offset, service, endpoint, ts, duration, status or 0, now)
            counts[1] += 1
            self.recent_ids.remember(event_id, now)

    def _accept_error(
        self,
        event: Any,
        event_id: str,
        stamp: Stamp,
        record: Record,
        index: int,
        is_array: bool,
        element: Any,
        now: float,
        emits: list[Emit],
        counts: list[int],
    ) -> None:
        """Dedupe one validated error event, then fingerprint and route it: `stamp` adds
        its fingerprint id and raw position and gives (fingerprint id, value to emit)."""
        if event_id in self.recent_ids:
            counts[2] += 1
            return
        try:
            group_id, value = stamp(event, [record.partition, record.offset, index])
        except Exception as exc:
            reason = f"fingerprinting failed: {exc!r}"
            self._dead_element(emits, record, reason, "$", index, is_array, element, now)
            return
        emits.append(Emit(ERRORS_TOPIC, group_id, value))
        counts[0] += 1
        self.recent_ids.remember(event_id, now)

    def _dead_element(
        self,
        emits: list[Emit],
        record: Record,
        reason: str,
        field_path: str,
        index: int,
        is_array: bool,
        element: Any,
        now: float,
    ) -> None:
        """Dead-letter one element: an array element alone, a single object as its message."""
        if is_array:
            self._dead(emits, record, reason, field_path, index, _encode_element(element), now)
        else:
            self._dead(emits, record, reason, field_path, None, record.value or b"", now)

    def _dead(
        self,
        emits: list[Emit],
        record: Record,
        reason: str,
        field_path: str,
        index: int | None,
        raw: bytes,
        now: float,
    ) -> None:
        """Append one dead letter for `record` (or one of its elements)."""
        emits.append(
            Emit(
                DLQ_TOPIC,
                _key_text(record.key),
                dead_letter(
                    reason,
                    field_path,
                    record.topic,
                    record.partition,
                    record.offset,
                    index,
                    raw,
                    int(now * 1000),
                ),
            )
        )
        self.stats["dead_letters"] += 1


def _stamp_dict(event: dict[str, Any], position: list[int]) -> tuple[str, Any]:
    """A validated event's fingerprint id, added to it with its raw position (`_src`: the
    fingerprint stage skips re-ingested events)."""
    group_id = fingerprint_error(event).id
    event["fingerprint_id"] = group_id
    event["_src"] = position
    return group_id, event


def _group_plain(event: Any, stack: StackEntry | None) -> str:
    """The fingerprint id of a struct of `PlainErrorReader` with its stack entry.

    An event without an explicit fingerprint whose frames group it (the usual case) is
    grouped by its exception type and frames alone, so the id is kept per type on its
    stack's entry; anything else is grouped from scratch."""
    exc = event.exception
    fingerprint = event.fingerprint
    if stack is None:
        return fingerprint_plain(exc.type, exc.message, None, fingerprint).id
    if fingerprint is None:
        groups = stack.groups
        group_id = groups.get(exc.type)
        if group_id is not None:
            return group_id
        grouping = fingerprint_plain(exc.type, exc.message, stack.frames, None)
        if grouping.method == "frames":  # the message played no part
            if len(groups) >= _MAX_GROUPS_PER_STACK:
                groups.clear()
            groups[exc.type] = grouping.id
        return grouping.id
    return fingerprint_plain(exc.type, exc.message, stack.frames, fingerprint).id


# How an error message usually starts (the SDK's and most fleets' encoding): telling
# error messages apart this way is only a matter of speed (see `_with_error_runs`).
_ERROR_STARTS = (b'{"schema":"error/1"', b'[{"schema":"error/1"')
MIN_ERROR_RUN = 8  # shorter runs of error messages stay in the loop


def _is_error_message(value: bytes | None) -> bool:
    return value is not None and value.startswith(_ERROR_STARTS)


def _has_error_messages(records: list[Record]) -> bool:
    """Whether the batch looks like one with runs of error messages (its first, middle or
    last record is one): a batch of latency events pays three checks."""
    if not records:
        return False
    return (
        _is_error_message(records[0].value)
        or _is_error_message(records[len(records) // 2].value)
        or _is_error_message(records[-1].value)
    )


def _key_text(key: Any) -> str:
    if key is None:
        return ""
    try:
        return bytes(key).decode("utf-8", errors="replace")
    except Exception:
        return str(key)


def _encode_element(element: Any) -> bytes:
    """An array element re-encoded for its dead letter (empty when it cannot be encoded)."""
    try:
        return orjson.dumps(element)
    except Exception:
        return b""


def _raw_or_empty(value: Any) -> bytes:
    try:
        return bytes(value) if value is not None else b""
    except Exception:
        return b""
