"""The ingest stage: raw events in, validated events routed to errors / latency / dead letters.

Pure (see stages/base.py): it never touches Kafka, clocks or files, and it never raises on any
input. Every element of every input message ends up as exactly one of: an `events.errors` emit
(keyed by fingerprint id), an `events.latency` emit (keyed by `service|endpoint`), an
`events.dlq` emit (with the reason and the field), or a counted duplicate (an `event_id` already
accepted within the dedup window).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import orjson

from schemas.dlq import dead_letter
from schemas.events import LATENCY_SCHEMA, InvalidEvent, Limits, decode_batch, validate_event
from stages.base import Emit, Record, StageResult
from stages.grouping import fingerprint_error

__all__ = ["IngestConfig", "IngestStage"]

ERRORS_TOPIC = "events.errors"
LATENCY_TOPIC = "events.latency"
DLQ_TOPIC = "events.dlq"


@dataclass
class IngestConfig:
    """Input limits and the bounds of the duplicate-event window."""

    limits: Limits = field(default_factory=Limits)
    dedup_max_ids: int = 200_000
    dedup_window_s: float = 600.0


class IngestStage:
    """Decode, validate, dedupe, fingerprint and route raw events."""

    name = "ingest"
    inputs: tuple[str, ...] = ("events.raw",)
    stateful = False

    def __init__(self, config: IngestConfig | None = None) -> None:
        self.config = config or IngestConfig()
        # event_id -> `now` when it was accepted, oldest first (dicts keep insertion order).
        self._seen: dict[str, float] = {}
        self.stats: dict[str, int] = {"errors": 0, "latency": 0, "dead_letters": 0, "duplicates": 0}

    # --- Stage protocol -------------------------------------------------------------------

    def process(self, records: list[Record], now: float) -> StageResult:
        """Route every element of every record; see the module docstring."""
        self._expire(now)
        emits: list[Emit] = []
        for record in records:
            try:
                self._ingest_record(record, now, emits)
            except Exception as exc:  # a bug must not stop the pipeline: dead-letter the record
                self._dead(
                    emits,
                    record,
                    f"internal error in ingest: {exc!r}",
                    "$",
                    None,
                    _raw_or_empty(record.value),
                    now,
                )
        return StageResult(emits=emits)

    def tick(self, now: float) -> StageResult:
        return StageResult()

    def restore(self, partition: int, key: str, value: Any) -> None:
        return None

    def assign(self, partitions: Iterable[int]) -> None:
        return None

    def revoke(self, partitions: Iterable[int]) -> None:
        return None

    # --- per record / per event -----------------------------------------------------------

    def _ingest_record(self, record: Record, now: float, emits: list[Emit]) -> None:
        value = record.value
        if value is None:
            self._dead(emits, record, "tombstone: message has no value", "$", None, b"", now)
            return
        limits = self.config.limits
        try:
            elements, is_array = decode_batch(value, limits)
        except InvalidEvent as exc:
            self._dead(emits, record, exc.reason, exc.field, None, value, now)
            return

        now_ms = int(now * 1000)
        window = self.config.dedup_window_s
        max_ids = self.config.dedup_max_ids
        seen = self._seen
        append = emits.append
        topic, partition, offset = record.topic, record.partition, record.offset
        n_errors = n_latency = n_duplicates = 0
        try:
            for i, element in enumerate(elements):
                try:
                    event = validate_event(element, now_ms, limits)
                except InvalidEvent as exc:
                    self._dead_element(
                        emits, record, exc.reason, exc.field, i, is_array, element, now
                    )
                    continue
                except Exception as exc:  # a validator bug: dead-letter, never raise
                    reason = f"internal error in validation: {exc!r}"
                    self._dead_element(emits, record, reason, "$", i, is_array, element, now)
                    continue

                event_id = event["event_id"]
                if event_id is None:
                    event_id = event["event_id"] = f"{topic}:{partition}:{offset}:{i}"
                seen_at = seen.get(event_id)
                if seen_at is not None:
                    if now - seen_at < window:
                        n_duplicates += 1
                        continue
                    del seen[event_id]  # re-inserted below, as the newest

                if event["schema"] == LATENCY_SCHEMA:
                    append(Emit(LATENCY_TOPIC, event["service"] + "|" + event["endpoint"], event))
                    n_latency += 1
                else:
                    try:
                        group = fingerprint_error(event)
                        group_id = str(group.id)
                        event["fingerprint_id"] = group_id
                        event["message_template"] = str(group.template)
                    except Exception as exc:
                        reason = f"fingerprinting failed: {exc!r}"
                        self._dead_element(emits, record, reason, "$", i, is_array, element, now)
                        continue
                    append(Emit(ERRORS_TOPIC, group_id, event))
                    n_errors += 1

                seen[event_id] = now
                if len(seen) > max_ids:
                    self._evict_oldest(len(seen) - max_ids + max_ids // 16)
        finally:
            stats = self.stats
            stats["errors"] += n_errors
            stats["latency"] += n_latency
            stats["duplicates"] += n_duplicates

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

    def _expire(self, now: float) -> None:
        """Forget accepted ids older than the dedup window (oldest are first)."""
        seen = self._seen
        horizon = now - self.config.dedup_window_s
        expired = []
        for event_id, accepted_at in seen.items():
            if accepted_at > horizon:
                break
            expired.append(event_id)
        for event_id in expired:
            del seen[event_id]

    def _evict_oldest(self, count: int) -> None:
        """Forget the `count` oldest accepted ids (in bulk, so eviction stays cheap)."""
        seen = self._seen
        for event_id in list(islice(seen, count)):
            del seen[event_id]


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
