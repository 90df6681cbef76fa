"""The pipeline's topology, declared once: its topics and, per stage, what it reads and writes.

This table is the one place the data flow is written down. The stage classes take their
`inputs` from it, the runtime builds a stage for each name (`pipeline/app.py`, which a test
holds to this table), `prodmon run --stages` accepts exactly these names, the load harness
watches the lag of these inputs, and `prodmon topology` prints the table that
docs/architecture.md shows (a test keeps the two the same).

Topic names are logical: the runtime adds the deployment's prefix (`prodmon.` by default).
"""

from __future__ import annotations

from dataclasses import dataclass

# Logical topic names (design.md).
EVENTS_RAW = "events.raw"
EVENTS_ERRORS = "events.errors"
EVENTS_LATENCY = "events.latency"
EVENTS_DLQ = "events.dlq"
ISSUES = "issues"
ROLLUPS = "rollups"
ROLLUPS_EARLY = "rollups.early"  # provisional rule observations of open windows (internal)
SIGNALS = "signals"
ALERTS = "alerts"
DELIVERIES = "deliveries"
COMMANDS = "commands"
# The OpenTelemetry Collector's Kafka exporter topics: named by the deployment
# (`[otlp]` config), read as named, without the prefix.
OTLP_TOPICS = "[otlp] traces_topic, logs_topic"


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One runnable stage: its name (also its consumer group and `--stages` name), the topics
    it consumes and produces, and whether it keeps a changelog `state.<name>`."""

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    stateful: bool
    role: str  # one line: what it does
    when: str = "always"  # when `--stages all` runs it


INGEST = StageSpec(
    "ingest",
    reads=(EVENTS_RAW,),
    writes=(EVENTS_ERRORS, EVENTS_LATENCY, EVENTS_DLQ),
    stateful=True,
    role="validate events; errors to fingerprint, latency as partial windows per series",
)
FINGERPRINT = StageSpec(
    "fingerprint",
    reads=(EVENTS_ERRORS, COMMANDS),
    writes=(ISSUES, COMMANDS),  # a merge re-targets the commands of the merged issue
    stateful=True,
    role="group errors into issues: new, counts, regressed, resolved",
)
WINDOWS = StageSpec(
    "windows",
    reads=(EVENTS_LATENCY,),
    writes=(ROLLUPS, ROLLUPS_EARLY, SIGNALS, EVENTS_DLQ),
    stateful=True,
    role="merge partial windows into HDR rollups per series and resolution",
)
BASELINE = StageSpec(
    "baseline",
    reads=(ROLLUPS, ROLLUPS_EARLY, ISSUES),
    writes=(SIGNALS,),
    stateful=True,
    role="anomaly detectors, threshold rules and SLA burn rates into signals",
)
ESCALATION = StageSpec(
    "escalation",
    reads=(SIGNALS, COMMANDS),
    writes=(ALERTS,),
    stateful=True,
    role="alert lifecycle: fire, escalate, acknowledge, silence, resolve",
)
OTLP = StageSpec(
    "otlp",
    reads=(),  # OTLP_TOPICS, read as named
    writes=(EVENTS_RAW, EVENTS_DLQ),
    stateful=False,
    role="OpenTelemetry spans and logs from the Collector into events",
    when="when [otlp] names a topic that exists",
)
NOTIFY = StageSpec(
    "notify",
    reads=(ALERTS,),
    writes=(DELIVERIES,),
    stateful=False,  # its memory is `deliveries` itself (pipeline/notifier.py)
    role="deliver alerts through the sinks (Slack, email, PagerDuty, webhook, SMS, log)",
)

# In flow order. `notify` is the runtime's notifier, not a pure stage.
STAGES: tuple[StageSpec, ...] = (OTLP, INGEST, FINGERPRINT, WINDOWS, BASELINE, ESCALATION, NOTIFY)
PURE_STAGES: tuple[StageSpec, ...] = tuple(s for s in STAGES if s is not NOTIFY)
BY_NAME: dict[str, StageSpec] = {s.name: s for s in STAGES}


def render_table() -> str:
    """The topology as the Markdown table docs/architecture.md shows."""
    rows = [
        "| stage | reads | writes | changelog | runs | what it does |",
        "|---|---|---|---|---|---|",
    ]
    for s in STAGES:
        reads = ", ".join(s.reads) or OTLP_TOPICS
        state = f"state.{s.name}" if s.stateful else "-"
        rows.append(
            f"| {s.name} | {reads} | {', '.join(s.writes)} | {state} | {s.when} | {s.role} |"
        )
    return "\n".join(rows)
