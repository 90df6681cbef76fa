"""The `otlp` stage: OpenTelemetry traces and logs from the Collector's Kafka exporter topics
into prodmon events, produced to `events.raw`.

Stateless. Each consumed record is one OTLP export request (schemas/otlp.py decodes and maps
it); its latency and error events are checked against the input contract here, so that what
cannot be used is dead-lettered with the OTLP topic, partition and offset it came from, and
the rest go to `events.raw` keyed by service, in arrays of at most `max_events_per_message`.
From there ingest validates, dedups (event ids are deterministic, so a Collector retry is
dropped there), fingerprints and windows them exactly as any other event.

Never raises on input; no I/O (the runner consumes the topics, named as configured, without
the prefix: `external_inputs`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

from grouping.stacktraces import InAppRules, parse_stacktrace
from schemas.dlq import dead_letter
from schemas.events import InvalidEvent, Limits, validate_event
from schemas.otlp import (
    OtlpDecodeError,
    OtlpMapping,
    Problem,
    decode_logs,
    decode_traces,
    map_logs,
    map_traces,
)
from schemas.topology import EVENTS_DLQ, EVENTS_RAW, OTLP
from stages.base import Emit, Record, StageBase, StageResult


@dataclass(frozen=True)
class OtlpConfig:
    """Which topics to read (as the records name them) and how to map them."""

    traces_topic: str = ""
    logs_topic: str = ""
    traces_encoding: str = "otlp_proto"
    logs_encoding: str = "otlp_proto"
    mapping: OtlpMapping = field(default_factory=OtlpMapping)
    in_app: InAppRules = field(default_factory=InAppRules)
    limits: Limits = field(default_factory=Limits)
    max_events_per_message: int = 500


class OtlpIngestStage(StageBase):
    """OTLP export requests in, `events.raw` arrays (and dead letters) out."""

    name = OTLP.name
    inputs: tuple[str, ...] = OTLP.reads
    stateful = OTLP.stateful

    def __init__(self, config: OtlpConfig, topics: tuple[str, ...] | None = None) -> None:
        """`topics`: the Kafka topics to consume, as named (by default the config's)."""
        self.config = config
        wanted = topics if topics is not None else (config.traces_topic, config.logs_topic)
        self.external_inputs = tuple(t for t in wanted if t)
        self.stats: dict[str, int] = defaultdict(int)

    def _frames(self, text: str, language: str | None) -> list[dict[str, Any]] | None:
        return parse_stacktrace(text, language, self.config.in_app)

    def process(self, records: list[Record], now: float) -> StageResult:
        now_ms = int(now * 1000)
        result = StageResult()
        by_service: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in records:
            for event in self._events(record, now_ms, result):
                by_service[event["service"]].append(event)
        step = self.config.max_events_per_message
        for service, events in by_service.items():
            for start in range(0, len(events), step):
                result.emits.append(Emit(EVENTS_RAW, service, events[start : start + step]))
            self.stats["events_out"] += len(events)
        return result

    def _events(self, record: Record, now_ms: int, result: StageResult) -> list[dict[str, Any]]:
        """The record's usable events; everything else dead-lettered into `result`."""
        config = self.config
        self.stats["requests_in"] += 1
        try:
            if record.topic == config.traces_topic:
                traces, problems = decode_traces(record.value or b"", config.traces_encoding)
                events, more = map_traces(traces, config.mapping, self._frames)
            elif record.topic == config.logs_topic:
                logs, problems = decode_logs(record.value or b"", config.logs_encoding)
                events, more = map_logs(logs, config.mapping, self._frames)
            else:
                return []
        except OtlpDecodeError as exc:
            self._dead(result, record, exc.field, exc.reason, None, record.value or b"", now_ms)
            return []
        for problem in (*problems, *more):
            self._dead_problem(result, record, problem, now_ms)
        kept = []
        limits = config.limits
        for index, event in enumerate(events):
            try:
                validate_event(event, now_ms, limits)
            except InvalidEvent as exc:
                reason = f"mapped event {event.get('event_id')}: {exc.reason}"
                raw = orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS)
                self._dead(result, record, exc.field, reason, index, raw, now_ms)
                continue
            kept.append(event)
        return kept

    def _dead_problem(
        self, result: StageResult, record: Record, problem: Problem, now_ms: int
    ) -> None:
        self._dead(result, record, problem.field, problem.reason, None, b"", now_ms)

    def _dead(
        self,
        result: StageResult,
        record: Record,
        field_path: str,
        reason: str,
        index: int | None,
        raw: bytes,
        now_ms: int,
    ) -> None:
        self.stats["dead_lettered"] += 1
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        letter = dead_letter(
            f"{where} {field_path}: {reason}"[:1000],
            field_path,
            record.topic,
            record.partition,
            record.offset,
            index,
            raw,
            now_ms,
        )
        result.emits.append(
            Emit(EVENTS_DLQ, (record.key or b"").decode("utf-8", "replace"), letter)
        )
