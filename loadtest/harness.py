"""Load harness: fleet simulator -> pipeline -> loopback webhook, measured every second.

`run_loadtest` starts a local broker (unless given one), creates the topics under a fresh
prefix, runs the whole pipeline (in this process, or as `python -m ops.cli run` processes)
with every alert routed to a loopback webhook receiver, drives the simulator with one
scripted incident (or a staggered schedule of several), samples consumer lag / throughput /
RSS every second, measures each incident's detection delay, the raw aiokafka
consume-and-decode ceiling of the same `events.raw`, and writes `out_dir/report.json` and
`out_dir/report.html`. See docs/loadtest.md.

Here: the run's configuration, its incident script and its phases (`_LoadRun`, one method
each). Beside it: receiver.py (the webhook receiver), measure.py (lag, RSS and CPU samples,
the raw ceiling), detection.py (detection delays and their summary) and figures.py
(report.json from the measurements).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from aiokafka.admin import AIOKafkaAdminClient

from loadtest.detection import (
    delay_summary,
    detect_all,
    detection_report,
    detection_targets,
    percentile,
)
from loadtest.figures import Measured, build_report
from loadtest.measure import STAGE_INPUTS, LagSampler, raw_ceiling, rss_bytes, stage_event_counts
from loadtest.receiver import Receiver
from loadtest.report import write_html
from loadtest.simulator import INCIDENT_KINDS, FleetSpec, Incident, incident_schedule, run_fleet
from pipeline.broker import LocalBroker
from pipeline.topics import create_topics

if TYPE_CHECKING:
    from pipeline.app import Pipeline

# What tests/, tests/bench/ and ops/ import from here (the rest moved beside it, see above).
__all__ = [
    "_detect_all",
    "delay_summary",
    "detection_report",
    "detection_targets",
    "percentile",
    "raw_ceiling",
    "run_loadtest",
    "stop_processes",
]

_detect_all = detect_all  # the name tests/test_loadtest.py imports

WEBHOOK_SECRET = "whsec-loadtest-0123456789abcdef"
WEBHOOK_ENV = ("PRODMON_WEBHOOK_URL", "PRODMON_WEBHOOK_SECRET")
WINDOW_S = 5.0  # the harness's window length (CONFIG_TOML)

# Short windows so that a run of seconds can detect an incident; everything else default.
CONFIG_TOML = """
[runtime]
tick_interval_s = 0.5

[windows]
window_s = {window_s}
allowed_lateness_s = {allowed_lateness_s}
idle_flush_s = 3

[baseline]
resolution = "5s"

[escalation]
group_by = ["service", "rule", "key"]

[[escalation.routes]]
match = {{ service = "*" }}
channels = ["webhook"]
"""


def stop_processes(processes: list[subprocess.Popen], timeout_s: float = 30) -> None:
    """SIGTERM each process still running, then wait for all (killing any that hangs)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()


def _script(
    spec: FleetSpec,
    duration_s: float,
    incident: Incident | None,
    incidents: int,
    kinds: tuple[str, ...],
) -> tuple[Incident, ...]:
    """The scripted incidents: `incident` if given; else the default single script (a
    slowdown and an error burst on the first endpoint at 40 % of the run) when `incidents`
    <= 1, or `incident_schedule` of `incidents`. Then the spec's own incidents."""
    if incident is not None:
        return (incident, *spec.incidents)
    if incidents > 1:
        return (*incident_schedule(spec, incidents, duration_s, WINDOW_S, kinds), *spec.incidents)
    service, endpoint = spec.series()[0]
    start, length = 0.4 * duration_s, max(3.0, 0.4 * duration_s)
    return (
        Incident(start, length, service, endpoint, "slowdown", 8.0),
        Incident(start, length, service, endpoint, "errors", 0.2),
        *spec.incidents,
    )


def _scripted(
    spec: FleetSpec,
    duration_s: float,
    incident: Incident | None,
    incidents: int,
    kinds: tuple[str, ...],
) -> FleetSpec:
    """The fleet with the incidents injected: `_script`'s, which the simulator then plays."""
    return FleetSpec(
        **{**spec.__dict__, "incidents": _script(spec, duration_s, incident, incidents, kinds)}
    )


async def run_loadtest(
    bootstrap: str | None,
    rate: int,
    duration_s: float,
    processes: int = 1,
    pipeline_processes: int = 1,
    out_dir: str = "loadtest-report",
    *,
    partitions: int = 4,
    spec: FleetSpec | None = None,
    incident: Incident | None = None,
    incidents: int = 1,
    incident_kinds: tuple[str, ...] = INCIDENT_KINDS,
    allowed_lateness_s: float = 2.0,
    extra_config: str = "",
    drain_timeout_s: float = 30.0,
    seed: int = 1,
) -> dict:
    """Run one load test and return (and write to `out_dir/report.json`) its figures.

    bootstrap: a Kafka bootstrap, or None to start a local broker for the run.
    rate / duration_s / processes: the simulated fleet (events/s, seconds, producer processes).
    pipeline_processes: 1 runs the pipeline in this process; more run that many
    `python -m ops.cli run --stages all` processes sharing the consumer groups.
    incidents / incident_kinds: more than 1 scripts that many staggered incidents of those
    kinds on different series (`incident_schedule`) instead of the default single script.
    allowed_lateness_s: `windows.allowed_lateness_s` of the run (detection delay's floor).
    extra_config: TOML appended to the harness's config (e.g. a `[[rules]]` override).
    """
    spec = _scripted(spec or FleetSpec(), duration_s, incident, incidents, tuple(incident_kinds))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = await _LoadRun.start(bootstrap, out, detection_targets(spec.incidents))
    config_path = run.write_config(allowed_lateness_s, extra_config)
    try:
        try:
            await run.set_up_topics(partitions)
            await run.start_pipeline(config_path, pipeline_processes)
            await run.produce_fleet(rate, duration_s, processes, spec, seed)
            await run.wait_for_detection(drain_timeout_s)
            run.count_stage_events()
        finally:
            await run.stop()
        measured = await run.collect()
    finally:  # also when a phase failed: a local broker never outlives its run
        if run.broker is not None:
            run.broker.stop()
    params = {
        "rate": rate,
        "duration_s": duration_s,
        "processes": processes,
        "pipeline_processes": pipeline_processes,
        "partitions": partitions,
        "bootstrap": run.bootstrap if run.broker is None else "local",
        "prefix": run.prefix,
    }
    report = build_report(params, spec, measured)
    _write_report(report, out)
    return report


class _LoadRun:
    """One load test, one method per phase; holds what the teardown (`stop`) must stop and
    what the phases measured."""

    def __init__(
        self,
        out: Path,
        prefix: str,
        bootstrap: str,
        broker: LocalBroker | None,
        receiver: Receiver,
        targets: list[dict],
    ) -> None:
        self.out, self.prefix, self.bootstrap, self.broker = out, prefix, bootstrap, broker
        self.receiver, self.targets = receiver, targets
        # what the teardown stops
        self.stop_event = asyncio.Event()
        self.pipeline: Pipeline | None = None
        self.pipeline_task: asyncio.Task[None] | None = None
        self.procs: list[subprocess.Popen] = []
        self.sampler: LagSampler | None = None
        self.saved_env = {k: os.environ.get(k) for k in WEBHOOK_ENV}
        # what the phases measure
        self.window_s = self.lateness_s = 0.0
        self.group_stages: list[str] = []
        self.pids: list[int] = []
        self.rss_idle: dict[str, int | None] = {}
        self.start_wall = 0.0
        self.samples: list[dict] = []
        self.fleet: dict = {}
        self.load_end = 0.0
        self.drain_s = 0.0
        self.stage_events: dict[str, int] = {}

    @classmethod
    async def start(cls, bootstrap: str | None, out: Path, targets: list[dict]) -> _LoadRun:
        """Set up: a fresh topic prefix, a local broker unless `bootstrap` names one, and the
        loopback webhook receiver."""
        prefix = f"lt{uuid.uuid4().hex[:8]}."
        broker: LocalBroker | None = None
        if bootstrap is None:
            broker = LocalBroker().start()
            bootstrap = broker.bootstrap
        receiver = Receiver()
        await receiver.start()
        return cls(out, prefix, bootstrap, broker, receiver, targets)

    def write_config(self, allowed_lateness_s: float, extra_config: str) -> Path:
        """The run's config file `out/loadtest.toml`: `CONFIG_TOML` plus `extra_config`."""
        config_path = self.out / "loadtest.toml"
        config_path.write_text(
            CONFIG_TOML.format(
                window_s=WINDOW_S,
                allowed_lateness_s=allowed_lateness_s,
            )
            + extra_config
        )
        return config_path

    async def set_up_topics(self, partitions: int) -> None:
        """Create every topic of the pipeline under the run's prefix."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await create_topics(admin, prefix=self.prefix, partitions=partitions)
        finally:
            await admin.close()

    async def start_pipeline(self, config_path: Path, pipeline_processes: int) -> None:
        """Start every stage with its alerts going to the receiver, in this process
        (`pipeline_processes` <= 1) or as that many `python -m ops.cli run` processes; wait
        until it is ready and note its idle RSS."""
        from pipeline.app import Pipeline, parse_stage_list
        from pipeline.config import load_config

        config = load_config(
            config_path,
            env={},
            overrides={"kafka.bootstrap": self.bootstrap, "kafka.prefix": self.prefix},
        )
        self.window_s = config.windows.window_s
        self.lateness_s = config.windows.allowed_lateness_s
        stages = parse_stage_list("all", config)
        self.group_stages = [s for s in stages if s in STAGE_INPUTS]
        env = {"PRODMON_WEBHOOK_URL": self.receiver.url, "PRODMON_WEBHOOK_SECRET": WEBHOOK_SECRET}
        if pipeline_processes <= 1:
            os.environ.update(env)
            self.pipeline = Pipeline(config, stages)
            self.pipeline_task = asyncio.create_task(self.pipeline.run(self.stop_event))
            self.pids = [os.getpid()]
        else:
            cmd = [
                sys.executable,
                "-m",
                "ops.cli",
                "run",
                "--bootstrap",
                self.bootstrap,
                "--prefix",
                self.prefix,
                "--stages",
                "all",
                "--config",
                str(config_path),
            ]
            child_env = {**os.environ, **env}
            for _ in range(pipeline_processes):
                self.procs.append(
                    subprocess.Popen(
                        cmd, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                    )
                )
            self.pids = [p.pid for p in self.procs]
        await _wait_ready(self.pipeline, self.procs, timeout_s=30)
        self.rss_idle = {str(pid): rss_bytes(pid) for pid in self.pids}

    async def produce_fleet(
        self, rate: int, duration_s: float, processes: int, spec: FleetSpec, seed: int
    ) -> None:
        """Run the fleet (which plays the incidents scripted into `spec`) from t = 0,
        sampling lag, RSS and CPU every second until it is done."""
        self.sampler = LagSampler(self.bootstrap, self.prefix, self.group_stages, self.pids)
        self.samples = self.sampler.samples
        await self.sampler.start()
        # t = 0 on a window boundary (windows are aligned to the epoch), at least 1 s ahead,
        # so that an incident's start_s fixes where in its window it starts.
        self.start_wall = WINDOW_S * math.ceil((time.time() + 1.0) / WINDOW_S)
        fleet_task = asyncio.create_task(
            asyncio.to_thread(
                run_fleet,
                self.bootstrap,
                self.prefix + "events.raw",
                rate,
                duration_s,
                processes,
                spec,
                seed,
                self.start_wall,
            )
        )
        while not fleet_task.done():
            await self.sampler.sample(self.start_wall)
            await asyncio.sleep(1.0)
        self.fleet = fleet_task.result()
        self.load_end = time.time()

    async def wait_for_detection(self, drain_timeout_s: float) -> None:
        """Drain: keep sampling until every group has caught up (two samples in a row) and
        every incident has been notified, or for at most `drain_timeout_s`."""
        sampler = self.sampler
        assert sampler is not None, "produce_fleet starts the sampler"
        caught_up = 0
        deadline = time.time() + drain_timeout_s
        while time.time() < deadline:
            s = await sampler.sample(self.start_wall)
            caught_up = caught_up + 1 if all(v == 0 for v in s["lag"].values()) else 0
            found = detect_all(self.receiver.hits, self.targets, self.start_wall)
            if caught_up >= 2 and all(d["detected"] for d in found):
                break
            await asyncio.sleep(1.0)
        self.drain_s = time.time() - self.load_end

    def count_stage_events(self) -> None:
        """The events each in-process stage handled (none with pipeline processes)."""
        self.stage_events = stage_event_counts(self.pipeline) if self.pipeline is not None else {}

    async def stop(self) -> None:
        """Teardown, whatever phase was reached: the pipeline (its task or its processes), the
        sampler and the receiver; the webhook environment as it was before an in-process
        pipeline. The broker stays up for `collect`."""
        self.stop_event.set()
        if self.pipeline_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pipeline_task, 30)
        stop_processes(self.procs, timeout_s=20)
        if self.sampler is not None:
            await self.sampler.stop()
        await self.receiver.stop()
        if self.pipeline_task is not None:
            for k, v in self.saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    async def collect(self) -> Measured:
        """The measurements: the raw ceiling of the run's `events.raw`, each incident's
        detection, and what the phases noted."""
        ceiling = await raw_ceiling(
            self.bootstrap, self.prefix + "events.raw", self.fleet["events"], 120
        )
        return Measured(
            fleet=self.fleet,
            samples=self.samples,
            group_stages=self.group_stages,
            stage_events=self.stage_events,
            rss_idle=self.rss_idle,
            ceiling=ceiling,
            notifications=len(self.receiver.hits),
            per_incident=detect_all(self.receiver.hits, self.targets, self.start_wall),
            start_wall=self.start_wall,
            window_s=self.window_s,
            lateness_s=self.lateness_s,
            drain_s=self.drain_s,
        )


def _write_report(report: dict, out: Path) -> None:
    """Report: `out/report.json` and its HTML rendering `out/report.html`."""
    (out / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    write_html(report, out / "report.html")


async def _wait_ready(
    pipeline: Pipeline | None, procs: list[subprocess.Popen], timeout_s: float
) -> None:
    """In process: until every runner has partitions. Subprocesses: a fixed settle time."""
    deadline = time.monotonic() + timeout_s
    if pipeline is None:
        await asyncio.sleep(4.0)
        dead = [p.pid for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"pipeline processes exited early: {dead}")
        return
    while time.monotonic() < deadline:
        if pipeline.runners and all(r.stats.assigned for r in pipeline.runners):
            return
        await asyncio.sleep(0.1)
