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
from schemas.plain_error import PlainErrorReader, encode_error
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
_FRAME_PARTS = attrgetter("module", "function", "filename", "in_app")


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
        stage's fast path, stages/ingest_windows.py).
        """
        self.recent_ids.expire(now)
        emits: list[Emit] = []
        counts = [0, 0, 0]  # errors, latency, duplicates
        try:
            loop(records, now, emits, counts)
        finally:
            stats = self.stats
            stats["errors"] += counts[0]
            stats["latency"] += counts[1]
            stats["duplicates"] += counts[2]
        return StageResult(emits=emits)

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
        """The general path: every element of one record (see the module docstring)."""
        value = record.value
        if value is None:
            self._dead(emits, record, "tombstone: message has no value", "$", None, b"", now)
            return
        limits = self.config.limits
        now_ms = int(now * 1000)
        if b"error/1" in value:
            plain = self._plain_errors.read(value, now_ms)
            if plain is not None:
                accept, out = self._accept_error, (now, emits, counts)
                events, is_array = plain
                for i, event in enumerate(events):
                    # (a failing array element is named by its index in the raw message)
                    accept(event, event.event_id, _stamp_plain, record, i, is_array, None, *out)
                return
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


def _stamp_plain(event: Any, position: list[int]) -> tuple[str, Any]:
    """`_stamp_dict` for a struct of `PlainErrorReader`, emitted as its encoded JSON."""
    exc = event.exception
    frames = event.stacktrace
    frame_parts = tuple(map(_FRAME_PARTS, frames)) if frames else None
    group_id = fingerprint_plain(exc.type, exc.message, frame_parts, event.fingerprint).id
    event.fingerprint_id = group_id
    event.src = position
    return group_id, EncodedJSON(encode_error(event))


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
