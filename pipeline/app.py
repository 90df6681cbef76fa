"""A pipeline process: a shared producer and one StageRunner per selected stage."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pipeline.config import Config, ConfigError, from_section
from pipeline.member import GroupMember

if TYPE_CHECKING:
    from pipeline.notifier import Notifier
from pipeline.runner import StageRunner
from retry import Backoff
from schemas import topology
from stages.base import Stage
from stages.cardinality import CardinalityLimits
from stages.windows import WindowsConfig

log = structlog.get_logger("prodmon.app")


def _ingest(config: Config) -> Stage:
    from schemas.events import Limits
    from stages.ingest import IngestConfig, IngestStage
    from stages.ingest_windows import IngestWindowsStage

    section = config.ingest
    ingest = IngestStage(
        from_section(
            IngestConfig,
            section,
            limits=from_section(Limits, section),
        )
    )
    # Two-phase windowing (docs/windows.md): partial windows per events.raw partition here,
    # merged by the windows stage.
    return IngestWindowsStage(ingest, windows_config(config))


def windows_config(config: Config) -> WindowsConfig:
    return from_section(
        WindowsConfig,
        config.windows,
        early_rules=config.rules,
        early_resolution=config.baseline.resolution,
        limits=from_section(CardinalityLimits, config.windows),
    )


def _windows(config: Config) -> Stage:
    from stages.windows import WindowsStage

    return WindowsStage(windows_config(config))


def _fingerprint(config: Config) -> Stage:
    from stages.fingerprint import FingerprintConfig, FingerprintStage

    return FingerprintStage(from_section(FingerprintConfig, config.fingerprint))


def _baseline(config: Config) -> Stage:
    from pipeline.config import detector_config
    from stages.baseline import BaselineConfig, BaselineStage

    return BaselineStage(
        from_section(BaselineConfig, config.baseline, detector=detector_config(config.baseline)),
        rules=config.rules,
        sla=config.sla,
    )


def _escalation(config: Config) -> Stage:
    from stages.escalation import EscalationStage

    return EscalationStage(config.escalation)


def _otlp(config: Config) -> Stage:
    from grouping.stacktraces import InAppRules
    from pipeline.topics import TopicNames
    from schemas.events import Limits
    from schemas.otlp import SEVERITY_NUMBERS, SPAN_KINDS, OtlpMapping
    from stages.otlp_ingest import OtlpConfig, OtlpIngestStage

    o = config.otlp
    if not o.enabled:
        raise ConfigError("--stages otlp: set otlp.traces_topic and/or otlp.logs_topic")
    logical = TopicNames(config.kafka.prefix).logical  # how the runner names their records
    return OtlpIngestStage(
        OtlpConfig(
            traces_topic=logical(o.traces_topic) if o.traces_topic else "",
            logs_topic=logical(o.logs_topic) if o.logs_topic else "",
            traces_encoding=o.traces_encoding or o.encoding,
            logs_encoding=o.logs_encoding or o.encoding,
            mapping=OtlpMapping(
                span_kinds=frozenset(SPAN_KINDS[k] for k in o.span_kinds),
                error_severity=SEVERITY_NUMBERS[o.error_severity],
            ),
            in_app=InAppRules(include=o.in_app_include, exclude=o.in_app_exclude),
            limits=from_section(Limits, config.ingest),
        ),
        topics=(o.traces_topic, o.logs_topic),
    )


# How each stage of the topology (schemas/topology.py) is built from the config; a test holds
# the two to the same names.
STAGE_FACTORIES: dict[str, Callable[[Config], Stage]] = {
    topology.INGEST.name: _ingest,
    topology.FINGERPRINT.name: _fingerprint,
    topology.WINDOWS.name: _windows,
    topology.BASELINE.name: _baseline,
    topology.ESCALATION.name: _escalation,
    topology.OTLP.name: _otlp,  # only when [otlp] names a topic (`configured_stages`)
}
OTLP = topology.OTLP.name
NOTIFY = topology.NOTIFY.name  # not a pure stage: the notifier (pipeline/notifier.py)


def configured_stages(config: Config) -> list[str]:
    """The stages `all` means under `config`: `otlp` only when it names a topic."""
    return [n for n in STAGE_FACTORIES if n != OTLP or config.otlp.enabled]


def parse_stage_list(text: str, config: Config | None = None) -> list[str]:
    """`all` or a comma list of known stage names, refused with the allowed names otherwise."""
    stages = configured_stages(config) if config is not None else list(STAGE_FACTORIES)
    known = [*stages, NOTIFY]
    if text.strip() == "all":
        return known
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in STAGE_FACTORIES and n != NOTIFY]
    if unknown or not names:
        raise ConfigError(
            f"--stages: unknown stage {', '.join(unknown) or '(none)'} "
            f"(allowed: all, {', '.join(known)})"
        )
    if OTLP in names and config is not None and not config.otlp.enabled:
        raise ConfigError("--stages otlp: set otlp.traces_topic and/or otlp.logs_topic")
    return list(dict.fromkeys(names))


def make_producer(config: Config) -> AIOKafkaProducer:
    """The process's one producer: acks from all replicas, never idempotent (see design.md).

    No linger: a checkpoint sends all of a batch's messages without yielding, so they
    are batched anyway, and then waits for their acks; lingering only delayed that wait
    (three times per checkpoint: outputs, changelog, and the commit after them).
    """
    return AIOKafkaProducer(
        **config.kafka.client_kwargs(),
        acks="all",
        enable_idempotence=False,
        linger_ms=0,
        max_request_size=8 * 1024 * 1024,
        max_batch_size=1024 * 1024,
    )


class StageCrashed(RuntimeError):
    """A stage of the process failed outside the per-record guard; the process must exit
    non-zero so that its supervisor restarts it (docs/faults.md)."""


async def _supervise(runs: dict[str, Coroutine[Any, Any, None]], stop: asyncio.Event) -> None:
    """Run every stage of the process until all end; if one fails, log its cause once,
    stop the others cleanly (their checkpoints drain and commit) and raise `StageCrashed`.

    A stage never ends on bad input (poison records and unreadable batches go to the
    dead-letter topic) nor on a broker outage (it backs off): an exception reaching here is
    a bug or a broken environment, and a stage that died silently while its siblings kept
    the process alive would stop its partitions' progress without anyone noticing."""
    tasks = {asyncio.create_task(run, name=f"stage:{name}"): name for name, run in runs.items()}
    crashed: list[tuple[str, BaseException]] = []
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.cancelled() or task.exception() is None:
                continue
            error = task.exception()
            assert error is not None
            crashed.append((tasks[task], error))
            log.error("stage_crashed", stage=tasks[task], error=repr(error), exc_info=error)
        if crashed:
            stop.set()
    if crashed:
        name, error = crashed[0]
        raise StageCrashed(f"stage {name} crashed: {error!r}") from error


class Pipeline:
    """Runs the selected stages until `stop` is set, then stops them cleanly."""

    def __init__(self, config: Config, stages: list[str]) -> None:
        self.config = config
        # Callers that list every factory (replay, demo) get `otlp` only when configured.
        self.stage_names = [n for n in stages if n != OTLP or config.otlp.enabled]
        self.runners: list[StageRunner] = []
        self.notifier: Notifier | None = None
        self.producer: AIOKafkaProducer | None = None

    def members(self) -> list[GroupMember]:
        """The process's consumer group members: each stage's runner, then the notifier."""
        members: list[GroupMember] = list(self.runners)
        if self.notifier is not None:
            members.append(self.notifier)
        return members

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop`; serves /health and /metrics when `health.port` is set."""
        from pipeline.health import serving

        if self.config.runtime.gc_gen0_threshold > 0:
            gc.set_threshold(self.config.runtime.gc_gen0_threshold, 20, 20)

        async with serving(self):
            await self._run(stop)

    async def _run(self, stop: asyncio.Event) -> None:
        producer = make_producer(self.config)
        backoff = Backoff(self.config.runtime.retry_initial_s, self.config.runtime.retry_max_s)
        while not stop.is_set():
            try:
                await producer.start()
                self.producer = producer
                break
            except KafkaError as exc:
                log.warning("broker_unreachable", error=repr(exc), retry_in=backoff.current)
                with contextlib.suppress(Exception):
                    await producer.stop()
                producer = make_producer(self.config)
                await backoff.wait(stop)
        if stop.is_set():
            with contextlib.suppress(Exception):
                await producer.stop()
            return
        await self._ensure_internal_topics()
        if OTLP in self.stage_names:
            await self._read_only_present_otlp_topics()
        if self.config.fingerprint.token_patterns:  # part of grouping: ingest, fingerprint
            from grouping import set_token_patterns

            set_token_patterns(self.config.fingerprint.token_patterns)
        self.runners = [
            StageRunner(STAGE_FACTORIES[name](self.config), self.config, producer)
            for name in self.stage_names
            if name != NOTIFY
        ]
        log.info("pipeline_started", stages=self.stage_names, config=self.config.redacted())
        async with contextlib.AsyncExitStack() as resources:
            tasks = {runner.stage.name: runner.run(stop) for runner in self.runners}
            if NOTIFY in self.stage_names:
                self.notifier = await self._notifier(producer, resources)
                tasks[NOTIFY] = self.notifier.run(stop)
            try:
                await _supervise(tasks, stop)
            finally:
                with contextlib.suppress(Exception):
                    await producer.stop()
                log.info("pipeline_stopped")

    async def _read_only_present_otlp_topics(self) -> None:
        """The OTLP topics are the Collector's, not ours: read those that exist now, and run
        no `otlp` stage when none does (so a deployment without a Collector has no idle
        consumer group member). A topic created later is read after a restart."""
        from aiokafka.admin import AIOKafkaAdminClient

        otlp = self.config.otlp
        admin = AIOKafkaAdminClient(**self.config.kafka.client_kwargs())
        try:
            await admin.start()
            present = set(await admin.list_topics())
        except Exception as exc:  # the broker may be down: read what is configured
            log.warning("otlp_topics_not_checked", error=repr(exc))
            return
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        traces = otlp.traces_topic if otlp.traces_topic in present else ""
        logs = otlp.logs_topic if otlp.logs_topic in present else ""
        if (traces, logs) == (otlp.traces_topic, otlp.logs_topic):
            return
        absent = [t for t in (otlp.traces_topic, otlp.logs_topic) if t and t not in present]
        log.warning("otlp_topics_absent", topics=absent, reading=[t for t in (traces, logs) if t])
        otlp = msgspec.structs.replace(otlp, traces_topic=traces, logs_topic=logs)
        self.config = msgspec.structs.replace(self.config, otlp=otlp)
        if not self.config.otlp.enabled:
            self.stage_names = [n for n in self.stage_names if n != OTLP]

    async def _ensure_internal_topics(self) -> None:
        """Internal topics newer than the deployment's topics (pipeline/topics.py); a
        failure is logged, and the stage that needs the topic retries as for any outage."""
        from aiokafka.admin import AIOKafkaAdminClient

        from pipeline.topics import ensure_internal_topics

        admin = AIOKafkaAdminClient(**self.config.kafka.client_kwargs())
        try:
            await admin.start()
            await ensure_internal_topics(
                admin, self.config.kafka.prefix, self.config.runtime.partitions
            )
        except Exception as exc:  # the broker may be down: stages retry on their own
            log.warning("internal_topics_not_ensured", error=repr(exc))
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    async def _notifier(self, producer, resources: contextlib.AsyncExitStack):
        import aiohttp

        from pipeline.notifier import Notifier
        from sinks.config import SinkSettings, build_sinks
        from sinks.delivery import DeliveryPolicy

        n = self.config.notify
        settings = SinkSettings.from_env()
        session = await resources.enter_async_context(aiohttp.ClientSession())
        sinks = build_sinks(settings, session, dry_run=n.dry_run)
        policy = from_section(DeliveryPolicy, n)
        log.info("notifier_sinks", channels=sorted(sinks), destinations=settings.redacted())
        return Notifier(self.config, producer, sinks, policy)
