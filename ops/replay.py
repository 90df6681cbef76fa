"""`prodmon replay`: re-run the pipeline over a stretch of `events.raw` history, in isolation.

1. Find where the stretch starts in `events.raw` (offsets-for-times, per partition; the
   local broker answers batch-granular, so records are then filtered by event time).
2. Copy the events of [from - warmup, to) (optionally one service's) into topics under a
   fresh prefix, same partitions and keys: the replay has its own topics, consumer groups
   and state, and never touches the live pipeline's.
3. Run every stage there, with the notifier in dry-run mode (it records what it would
   have sent), until the copied input is consumed and the outputs are quiet.
4. Print the incident timeline from `--from` on: issues opened or regressed, signals,
   alerts and the notifications that would have gone out, ordered by event time.

`--compare OTHER.toml` replays the same copy under a second configuration and shows what
differs, so thresholds can be backtested before they ship. Timelines are built from event
times and deterministic ids only, so replaying the same stretch twice gives the same one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.app import STAGE_FACTORIES, Pipeline
from pipeline.config import Config, ConfigError, load_config
from pipeline.topic_reader import read_to_end, read_topic
from pipeline.topics import ALERTS, EVENTS_RAW, ISSUES, SIGNALS, create_topics

QUIET_S = 3.0
FINAL_FLUSH_S = 1.0
REPLAY_IDLE_FLUSH_S = 24 * 3600.0


@dataclass(frozen=True, order=True)
class Entry:
    """One line of the timeline."""

    ts: int
    kind: str  # issue | signal | alert | notify
    what: str
    detail: str = ""

    def signature(self) -> tuple[str, str]:
        return (self.kind, self.what)

    def line(self) -> str:
        clock = datetime.fromtimestamp(self.ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"{clock}  {self.kind:<7} {self.what}" + (f"  {self.detail}" if self.detail else "")


def parse_time(text: str, option: str) -> int:
    """ISO-8601 (or `YYYY-MM-DD HH:MM:SS`, UTC when no zone) in epoch ms."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{option}: {text!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


async def copy_stretch(
    source: Config, target_prefix: str, start_ms: int, end_ms: int, service: str | None
) -> int:
    """Copy events of [start_ms, end_ms) from the live events.raw; returns messages copied."""
    topic = source.kafka.prefix + EVENTS_RAW
    consumer = AIOKafkaConsumer(**source.kafka.client_kwargs(), group_id=None)
    producer = AIOKafkaProducer(**source.kafka.client_kwargs(), enable_idempotence=False)
    await consumer.start()
    await producer.start()
    copied = 0
    try:
        await consumer.topics()
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return 0
        consumer.assign(tps)
        starts = await consumer.offsets_for_times({tp: max(start_ms - 60_000, 0) for tp in tps})
        kept: list[tuple[int, bytes | None, bytes]] = []

        def keep(message: Any) -> None:
            value = _in_stretch(message.value, start_ms, end_ms, service)
            if value is not None:
                kept.append((message.partition, message.key, value))

        await read_to_end(consumer, tps, keep, timeout_s=600, start=starts)
        target = target_prefix + EVENTS_RAW
        futures = [await producer.send(target, v, key=k, partition=p) for p, k, v in kept]
        await asyncio.gather(*futures)
        copied = len(kept)
    finally:
        await consumer.stop()
        await producer.stop()
    return copied


def _in_stretch(raw: bytes | None, start_ms: int, end_ms: int, service: str | None) -> bytes | None:
    """The message, restricted to events of the stretch (and service); None when empty.

    Events with no usable time or service are kept (bad input replays into the DLQ).
    """
    if raw is None:
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    events = doc if isinstance(doc, list) else [doc]
    chosen = [e for e in events if _wanted(e, start_ms, end_ms, service)]
    if not chosen:
        return None
    if len(chosen) == len(events):
        return raw
    return orjson.dumps(chosen)


def _wanted(event: Any, start_ms: int, end_ms: int, service: str | None) -> bool:
    if not isinstance(event, dict):
        return True
    if service is not None and event.get("service") not in (service, None):
        return False
    ts = event.get("ts")
    if isinstance(ts, str):
        with contextlib.suppress(ConfigError):
            ts = parse_time(ts, "ts")
    return not isinstance(ts, int) or start_ms <= ts < end_ms


async def run_isolated(config: Config, expected_input: int, timeout_s: float = 600) -> None:
    """Run every stage (notifier in dry run) until the input is consumed and outputs settle."""
    stop = asyncio.Event()
    # Not `otlp`: what it mapped is already in the events.raw history being replayed.
    pipeline = Pipeline(config, [*(n for n in STAGE_FACTORIES if n != "otlp"), "notify"])
    task = asyncio.create_task(pipeline.run(stop))
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            ingest = next((r for r in pipeline.runners if r.stage.name == "ingest"), None)
            if ingest is not None and ingest.stats.records_in >= expected_input:
                break
        # Only now may quiet windows flush: mid-replay pauses must not close windows early
        # (that would make the result depend on timing), but the last ones must close.
        for runner in pipeline.runners:
            core = getattr(runner.stage, "core", None)
            if core is not None:
                core.config = replace(core.config, idle_flush_s=FINAL_FLUSH_S)
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            seen = sum(r.stats.records_in for r in pipeline.runners)
            if seen != last or not await _caught_up(pipeline):
                last, quiet_since = seen, time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET_S + FINAL_FLUSH_S:
                break
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)


async def _caught_up(pipeline: Pipeline) -> bool:
    """Every stage has its partitions (state restored) and has read all it was sent: quiet
    before that is only a stage still joining its group, not a settled replay."""
    if not pipeline.runners or not all(r.ready.is_set() for r in pipeline.runners):
        return False
    for runner in pipeline.runners:
        if any(behind for _, _, behind in await runner.lags()):
            return False
    return True


async def timeline(config: Config, from_ms: int) -> list[Entry]:
    """The incident timeline of a finished replay, from `from_ms` on, in event-time order."""
    kafka, prefix = config.kafka, config.kafka.prefix
    entries: list[Entry] = []
    for record in await read_topic(kafka, prefix + ISSUES):
        issue = record.value
        if isinstance(issue, dict) and issue.get("type") in ("new", "regressed"):
            # A new issue's time is its first_seen, a regression's its ts; 0 when absent.
            ts = int((issue.get("first_seen") if issue["type"] == "new" else issue.get("ts")) or 0)
            title = str(issue.get("title", ""))[:80]
            entries.append(Entry(ts, "issue", f"{issue['type']} {issue['issue_id'][:12]}", title))
    for record in await read_topic(kafka, prefix + SIGNALS):
        s = record.value
        if isinstance(s, dict) and "rule" in s:
            what = f"{s['state']} {s['rule']} {s['key']}"
            entries.append(Entry(int(s["ts"]), "signal", what, f"[{s['severity']}]"))
    for record in await read_topic(kafka, prefix + ALERTS):
        a = record.value
        if not isinstance(a, dict) or "alert_id" not in a:
            continue
        ts = int((a.get("evidence") or {}).get("ts") or a.get("last_seen") or 0)
        what = f"{a['transition']} {a['alert_id']}"
        detail = f"[{a['severity']}] -> {', '.join(a['channels']) or 'nobody'}"
        if isinstance(a.get("group"), dict):
            detail += f" (one message for a group of {a['group'].get('size')})"
        if a.get("grouped_in"):
            detail += f" (in the group message of {str(a['grouped_in']).split('|')[0]})"
        if a.get("muted"):
            detail += f" (muted: {a['muted']})"
        entries.append(Entry(ts, "alert", what, detail))
    return sorted({e for e in entries if e.ts >= from_ms})


async def replay(
    source: Config,
    from_ms: int,
    to_ms: int,
    warmup_ms: int,
    service: str | None,
    configs: list[Config],
) -> list[list[Entry]]:
    """Replay the stretch once per config (each in its own prefix); their timelines."""
    results = []
    admin = AIOKafkaAdminClient(**source.kafka.client_kwargs())
    await admin.start()
    try:
        for config in configs:
            prefix = f"replay-{uuid.uuid4().hex[:8]}."
            await create_topics(admin, prefix=prefix, partitions=source.runtime.partitions)
            copied = await copy_stretch(source, prefix, from_ms - warmup_ms, to_ms, service)
            isolated = _isolated(config, source, prefix)
            await run_isolated(isolated, copied)
            results.append(await timeline(isolated, from_ms))
    finally:
        await admin.close()
    return results


def _isolated(config: Config, source: Config, prefix: str) -> Config:
    """`config` pointed at the replay's prefix, with dry-run notifications and no early
    evaluation (findings come from closed windows only)."""
    overrides = {
        "kafka.bootstrap": source.kafka.bootstrap,
        "kafka.prefix": prefix,
        "notify.dry_run": True,
        "windows.idle_flush_s": REPLAY_IDLE_FLUSH_S,
    }
    isolated = load_config(env={}, overrides=overrides)
    for section in ("runtime", "ingest", "fingerprint", "windows", "baseline"):
        values = getattr(config, section)
        setattr(isolated, section, values)
    isolated.sla, isolated.rules, isolated.escalation = config.sla, config.rules, config.escalation
    # Early evaluation runs on a wall-time cadence, so what a replay would see early depends
    # on how fast it reads: off, so that a stretch replays to the same timeline every time.
    isolated.windows = msgspec.structs.replace(
        config.windows, idle_flush_s=REPLAY_IDLE_FLUSH_S, early_eval_s=0
    )
    isolated.notify.dry_run = True
    return isolated


def format_timeline(entries: list[Entry]) -> str:
    return "\n".join(e.line() for e in entries) if entries else "(nothing happened)"


def format_comparison(base: list[Entry], other: list[Entry]) -> str:
    """What only one configuration produced (by kind and subject, first time each)."""
    first_a = {e.signature(): e for e in reversed(base)}
    first_b = {e.signature(): e for e in reversed(other)}
    only_a = sorted(first_a[s] for s in first_a.keys() - first_b.keys())
    only_b = sorted(first_b[s] for s in first_b.keys() - first_a.keys())
    lines = [f"only with the current config ({len(only_a)}):"]
    lines += [f"  - {e.line()}" for e in only_a] or ["  (none)"]
    lines.append(f"only with the compared config ({len(only_b)}):")
    lines += [f"  + {e.line()}" for e in only_b] or ["  (none)"]
    return "\n".join(lines)
