"""Prometheus text exposition (format 0.0.4) of a running pipeline, built on demand.

Nothing is registered ahead of time: every scrape reads the live objects through their
typed members (`pipeline/member.py`: each `StageRunner`'s `RunnerStats`, its stage's
counters, its consumer's positions, and the `Notifier`'s counters) and renders them.
The one thing that must be recorded as it happens is batch processing time:
`BATCH_TIMER` keeps a histogram per stage, fed by the runner around `_process` (see
docs/health.md for the two-line hook).

No client library: the format is small, and this keeps the dependency list as it is.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.app import Pipeline

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Batch processing time buckets (seconds): a batch of a few thousand small records
# takes about a millisecond per thousand; the top buckets catch stalls.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# RunnerStats counters exported as `prodmon_<name>_total{stage}`, with their help text.
RUNNER_COUNTERS: tuple[tuple[str, str], ...] = (
    ("records_in", "Records consumed and handed to the stage."),
    ("emits_out", "Records the stage emitted, acknowledged by the broker."),
    ("batches", "Batches made durable (outputs acked, offsets committed)."),
    ("skipped_replayed", "Re-read records skipped because the changelog already counted them."),
    ("commit_failures", "Offset commits that failed (usually a rebalance under the runner)."),
    ("produce_retries", "Produce attempts retried after a broker error."),
    ("restored_keys", "State keys restored from the changelog on assignment."),
    ("poison_records", "Records the stage raised on, sent to the dead-letter topic."),
    ("unreadable_state", "Changelog records a restore could not read (logged and skipped)."),
    ("unreadable_batches", "Input batches that could not be read, sent to the dead-letter topic."),
    ("unreadable_records", "Offsets spanned by the unreadable input batches that were skipped."),
)

# ---- exposition ------------------------------------------------------------------------


def escape_label(value: str) -> str:
    """A label value as the text format wants it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text: only backslash and newline are escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def format_labels(labels: Mapping[str, Any]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{escape_label(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


@dataclass
class Family:
    """One metric family: HELP, TYPE, then its samples (suffix, labels, value)."""

    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: Any) -> None:
        self.samples.append((suffix, labels, value))


def render(families: Iterable[Family]) -> str:
    """The families in text format 0.0.4 (a family without samples is left out)."""
    lines: list[str] = []
    for family in families:
        if not family.samples:
            continue
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for suffix, labels, value in family.samples:
            lines.append(f"{family.name}{suffix}{format_labels(labels)} {format_value(value)}")
    return "\n".join(lines) + "\n"


# ---- batch time histogram -----------------------------------------------------------------


class BatchTimer:
    """Per-stage histogram of batch processing time (the stage call, not the I/O).

    In the runner's consume loop::

        with BATCH_TIMER.time(self.stage.name):
            result = self._process(records, now)

    or, without touching the runner, `BATCH_TIMER.instrument(runner)` once it exists.
    """

    def __init__(self, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def observe(self, stage: str, seconds: float) -> None:
        counts = self._counts.get(stage)
        if counts is None:
            counts = self._counts[stage] = [0] * (len(self.buckets) + 1)
            self._sums[stage] = 0.0
        for i, bound in enumerate(self.buckets):
            if seconds <= bound:
                counts[i] += 1
                break
        else:
            counts[-1] += 1  # only in +Inf
        self._sums[stage] += seconds

    @contextlib.contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(stage, time.perf_counter() - start)

    def instrument(self, runner: Any) -> None:
        """Time `runner._process` by wrapping it on the instance (idempotent)."""
        process = runner._process
        if getattr(process, "_prodmon_timed", False):
            return
        stage = runner.stage.name

        def timed(records: list, now: float) -> Any:
            with self.time(stage):
                return process(records, now)

        timed._prodmon_timed = True  # type: ignore[attr-defined]
        runner._process = timed

    def samples(self, stage: str) -> list[tuple[str, dict[str, Any], float]]:
        """Cumulative bucket, sum and count samples of one stage (zeros if never observed)."""
        counts = self._counts.get(stage, [0] * (len(self.buckets) + 1))
        out: list[tuple[str, dict[str, Any], float]] = []
        running = 0
        for bound, count in zip(self.buckets, counts, strict=False):
            running += count
            out.append(("_bucket", {"stage": stage, "le": format_value(float(bound))}, running))
        total = running + counts[-1]
        out.append(("_bucket", {"stage": stage, "le": "+Inf"}, total))
        out.append(("_sum", {"stage": stage}, self._sums.get(stage, 0.0)))
        out.append(("_count", {"stage": stage}, total))
        return out

    def stages(self) -> list[str]:
        return sorted(self._counts)


BATCH_TIMER = BatchTimer()


# ---- reading the live objects ---------------------------------------------------------------


async def collect(pipeline: Pipeline, timer: BatchTimer | None = None) -> list[Family]:
    """Every family for the pipeline's runners and notifier, read now."""
    timer = timer or BATCH_TIMER
    counters = {
        name: Family(f"prodmon_{name}_total", "counter", text) for name, text in RUNNER_COUNTERS
    }
    dlq = Family(
        "prodmon_dlq_records_total", "counter", "Bad input records sent to the dead-letter topic."
    )
    stage_events = Family(
        "prodmon_stage_events_total", "counter", "A stage's own counters, by kind."
    )
    assigned = Family("prodmon_assigned_partitions", "gauge", "Input topic-partitions assigned.")
    ready = Family(
        "prodmon_stage_ready", "gauge", "1 once the stage's state is restored after assignment."
    )
    lag = Family(
        "prodmon_consumer_lag", "gauge", "Records behind the partition's highwater offset."
    )
    state = Family("prodmon_state_keys", "gauge", "State keys held by the stage.")
    batch = Family(
        "prodmon_batch_seconds", "histogram", "Time the stage takes to process one batch."
    )
    deliveries = Family(
        "prodmon_deliveries_total", "counter", "Final notification outcomes, by status."
    )
    notifier_events = Family(
        "prodmon_notifier_events_total", "counter", "Notifier counters, by kind."
    )

    timed: set[str] = set()
    for runner in list(pipeline.runners):
        name = runner.member_name
        values = runner.stats.counters()
        for key, family in counters.items():
            family.add(values[key], stage=name)  # a counter renamed away fails loudly here
        assigned.add(runner.assigned_partitions(), stage=name)
        ready.add(1 if runner.ready.is_set() else 0, stage=name)
        own = runner.stage_counters()
        if "dead_letters" in own:
            dlq.add(own["dead_letters"], stage=name)
        for kind, value in sorted(own.items()):
            stage_events.add(value, stage=name, kind=kind)
        size = runner.state_keys()
        if size is not None:
            state.add(size, stage=name)
        for topic, partition, behind in await runner.lags():
            lag.add(behind, stage=name, topic=topic, partition=partition)
        if name not in timed:
            timed.add(name)
            batch.samples.extend(timer.samples(name))

    notifier = pipeline.notifier
    if notifier is not None:
        name = notifier.member_name
        ready.add(1 if notifier.ready.is_set() else 0, stage=name)
        for (channel, status), count in sorted(notifier.channel_outcomes.items()):
            deliveries.add(count, channel=channel, status=status)
        for kind, value in sorted(notifier.stats.items()):
            notifier_events.add(value, kind=kind)
        for topic, partition, behind in await notifier.lags():
            lag.add(behind, stage=name, topic=topic, partition=partition)

    return [
        *counters.values(),
        dlq,
        stage_events,
        assigned,
        ready,
        lag,
        state,
        batch,
        deliveries,
        notifier_events,
    ]


async def exposition(pipeline: Pipeline, timer: BatchTimer | None = None) -> str:
    """The pipeline's metrics as Prometheus text format 0.0.4."""
    return render(await collect(pipeline, timer))
