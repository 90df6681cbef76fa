"""Load harness: fleet simulator -> pipeline -> loopback webhook, measured every second.

`run_loadtest` starts a local broker (unless given one), creates the topics under a fresh
prefix, runs the whole pipeline (in this process, or as `python -m ops.cli run` processes)
with every alert routed to a loopback webhook receiver, drives the simulator with one
scripted incident (or a staggered schedule of several), samples consumer lag / throughput /
RSS every second, measures each incident's detection delay, the raw aiokafka
consume-and-decode ceiling of the same `events.raw`, and writes `out_dir/report.json` and
`out_dir/report.html`. See docs/loadtest.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from loadtest.report import write_html
from loadtest.simulator import INCIDENT_KINDS, FleetSpec, Incident, incident_schedule, run_fleet
from pipeline.broker import LocalBroker, free_port
from pipeline.slim_records import SlimRecords, install_slim_records
from pipeline.topics import create_topics

WEBHOOK_SECRET = "whsec-loadtest-0123456789abcdef"
WINDOW_S = 5.0  # the harness's window length (CONFIG_TOML)
BUDGET_SLACK_S = 2.0  # the detection target: p99 delay <= window_s + this (issue 6)

# What each consumer group reads (logical topics); the group id is `<prefix><stage>`.
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "ingest": ("events.raw",),
    "fingerprint": ("events.errors", "commands"),
    "windows": ("events.latency",),
    "baseline": ("rollups", "rollups.early", "issues"),
    "escalation": ("signals", "commands"),
    "notify": ("alerts",),
}

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


class Receiver:
    """A loopback webhook receiver that notes when every notification arrives."""

    def __init__(self) -> None:
        self.hits: list[dict] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.time()
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = {}
        if isinstance(data, dict):
            self.hits.append({"arrived": arrived, **{k: data.get(k) for k in _ALERT_FIELDS}})
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


_ALERT_FIELDS = (
    "alert_id",
    "id",
    "service",
    "key",
    "rule",
    "metric",
    "severity",
    "status",
    "transition",
    "first_seen",
)


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


def rss_bytes(pid: int) -> int | None:
    """Resident set size of `pid` from /proc/<pid>/status (VmRSS), or None when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of `pid` from /proc/<pid>/stat, or None when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class LagSampler:
    """Committed offsets vs end offsets per consumer group, once a second."""

    def __init__(self, bootstrap: str, prefix: str, stages: list[str], pids: list[int]) -> None:
        self.bootstrap, self.prefix, self.stages, self.pids = bootstrap, prefix, stages, pids
        self.samples: list[dict] = []
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        self.tps: dict[str, list[TopicPartition]] = {}

    async def start(self) -> None:
        await self.admin.start()
        await self.consumer.start()
        topics = {t for s in self.stages for t in STAGE_INPUTS[s]}
        for topic in topics:
            name = self.prefix + topic
            parts = self.consumer.partitions_for_topic(name)
            if not parts:
                await self.consumer._client.force_metadata_update()
                parts = self.consumer.partitions_for_topic(name) or set()
            self.tps[topic] = [TopicPartition(name, p) for p in sorted(parts)]

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.consumer.stop()
        with contextlib.suppress(Exception):
            await self.admin.close()

    async def sample(self, t0: float) -> dict:
        all_tps = [tp for tps in self.tps.values() for tp in tps]
        ends = await self.consumer.end_offsets(all_tps)
        lag, committed = {}, {}
        for stage in self.stages:
            stage_tps = [tp for topic in STAGE_INPUTS[stage] for tp in self.tps[topic]]
            try:
                # Explicit partitions: some brokers (tansu) answer the "all partitions"
                # form of OffsetFetch in a way aiokafka cannot decode.
                offsets = await self.admin.list_consumer_group_offsets(
                    self.prefix + stage, partitions=stage_tps
                )
            except Exception:  # a group not formed yet counts as nothing read
                offsets = {}
            done = total_lag = 0
            for tp in stage_tps:
                meta = offsets.get(tp)
                pos = meta.offset if meta is not None and meta.offset >= 0 else 0
                done += pos
                total_lag += max(0, ends[tp] - pos)
            lag[stage], committed[stage] = total_lag, done
        sample = {
            "t": round(time.time() - t0, 3),
            "lag": lag,
            "committed": committed,
            "raw_end": sum(ends[tp] for tp in self.tps.get("events.raw", [])),
            "rss": {str(pid): rss_bytes(pid) for pid in self.pids},
            "cpu_s": {str(pid): cpu_seconds(pid) for pid in self.pids},
        }
        self.samples.append(sample)
        return sample


async def raw_ceiling(
    bootstrap: str, topic: str, total_events: int, timeout_s: float, slim: bool = False
) -> dict:
    """A bare aiokafka consumer from offset 0, decoding every message: events/s (the ceiling).

    `slim`: read slim records, as the pipeline's consumers do (pipeline/slim_records.py),
    instead of aiokafka's own; for comparison, not the ceiling."""
    options = {}
    if slim and install_slim_records():
        options["value_deserializer"] = SlimRecords(str)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=4 << 20,
        **options,
    )
    await consumer.start()
    seen, started, last = 0, None, None
    loads = orjson.loads
    deadline = time.monotonic() + timeout_s
    try:
        while seen < total_events and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for messages in batch.values():
                if started is None and messages:
                    started = time.perf_counter()
                for m in messages:
                    value = loads(m.value)
                    seen += len(value) if type(value) is list else 1
                last = time.perf_counter()
    finally:
        await consumer.stop()
    elapsed = (last - started) if started is not None and last is not None else 0.0
    return {
        "events": seen,
        "seconds": round(elapsed, 3),
        "events_per_s": seen / elapsed if elapsed > 0 else 0.0,
    }


def _stage_rates(samples: list[dict], stages: list[str]) -> dict[str, list[float]]:
    """Messages/s per stage between consecutive samples (committed offset deltas)."""
    out: dict[str, list[float]] = {s: [] for s in stages}
    for a, b in itertools.pairwise(samples):
        dt = max(1e-6, b["t"] - a["t"])
        for s in stages:
            out[s].append(round(max(0, b["committed"][s] - a["committed"][s]) / dt, 1))
    return out


def _sustained(samples: list[dict], stage: str) -> dict:
    """Messages a stage committed, over the span from its first to its last progress."""
    moving = [
        (a["t"], b["t"])
        for a, b in itertools.pairwise(samples)
        if b["committed"][stage] > a["committed"][stage]
    ]
    total = samples[-1]["committed"][stage] - samples[0]["committed"][stage] if samples else 0
    if not moving:
        return {"messages": total, "seconds": 0.0, "messages_per_s": 0.0}
    span = max(1e-6, moving[-1][1] - moving[0][0])
    return {"messages": total, "seconds": round(span, 3), "messages_per_s": total / span}


def _detection(
    hits: list[dict],
    incident: Incident,
    incident_wall: float,
    *,
    service_wide: bool = True,
    until: float | None = None,
) -> dict:
    """Incident start (wall) -> first notification about the incident's series.

    A match is a notification (not a resolution) for the incident's service, arriving after
    the start (and before `until`), whose triggering window ended after the start, about the
    incident's rollup series `service|endpoint` or, when `service_wide`, the service's
    `service|*` series (latency or error rate, not an issue fingerprint).
    """
    after = [
        h
        for h in hits
        if h["arrived"] >= incident_wall
        and (until is None or h["arrived"] < until)
        and h.get("service") == incident.service
    ]
    own, wide = f"{incident.service}|{incident.endpoint}", f"{incident.service}|*"
    series = [
        h
        for h in after
        if h.get("transition") != "resolved"
        and _after_start(h, incident_wall)
        and (h.get("key") == own or (service_wide and str(h.get("key") or "").startswith(wide)))
    ]
    first = min(series, key=lambda h: h["arrived"], default=None)
    first_any = min(after, key=lambda h: h["arrived"], default=None)
    window_end = _first_seen_s(first) if first else None
    return {
        "detected": first is not None,
        "delay_s": round(first["arrived"] - incident_wall, 3) if first else None,
        "rule": first.get("rule") if first else None,
        "key": first.get("key") if first else None,
        # the triggering window's end (event time) -> notification: lateness + pipeline hops
        "window_end_to_notification_s": (
            round(first["arrived"] - window_end, 3) if first and window_end else None
        ),
        "first": first,
        "first_any_notification_delay_s": (
            round(first_any["arrived"] - incident_wall, 3) if first_any else None
        ),
        "notifications_for_service": len(after),
    }


def _first_seen_s(hit: dict) -> float | None:
    """When the alert's first signal was observed (its window's end), in epoch seconds."""
    value = hit.get("first_seen")
    return value / 1000 if isinstance(value, int | float) and value > 0 else None


def _after_start(hit: dict, incident_wall: float) -> bool:
    """The notification's triggering window ended after the incident started (unknown: yes)."""
    seen = _first_seen_s(hit)
    return seen is None or seen > incident_wall


def detection_targets(incidents: tuple[Incident, ...]) -> list[dict]:
    """One target per scripted incident: entries sharing (service, endpoint, start) are one
    incident (e.g. a slowdown plus an error burst), with all their kinds; in script order."""
    targets: dict[tuple[str, str, float], dict] = {}
    for inc in incidents:
        t = targets.setdefault(
            (inc.service, inc.endpoint, inc.start_s),
            {"incident": inc, "kinds": [], "duration_s": inc.duration_s},
        )
        t["kinds"].append(inc.kind)
        t["duration_s"] = max(t["duration_s"], inc.duration_s)
    return list(targets.values())


def _detect_all(hits: list[dict], targets: list[dict], start_wall: float) -> list[dict]:
    """`_detection` for every target. The service-wide series counts only for a target alone
    on its service; a later incident on the same series ends the earlier one's search."""
    out = []
    for t in targets:
        inc = t["incident"]
        same_service = [o["incident"] for o in targets if o["incident"].service == inc.service]
        later = [
            o.start_s
            for o in same_service
            if o.endpoint == inc.endpoint and o.start_s > inc.start_s
        ]
        det = _detection(
            hits,
            inc,
            start_wall + inc.start_s,
            service_wide=len(same_service) == 1,
            until=start_wall + min(later) if later else None,
        )
        head = {"service": inc.service, "endpoint": inc.endpoint, "kind": "+".join(t["kinds"])}
        timing = {"start_s": inc.start_s, "duration_s": t["duration_s"]}
        out.append({**head, **timing, "start_wall": start_wall + inc.start_s, **det})
    return out


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least q % of values at or below
    it): conservative for few samples, e.g. with 8 values p95 and p99 are the maximum."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def delay_summary(delays: list[float | None], budget_s: float | None = None) -> dict:
    """Detected / total, p50 / p95 / p99 / max of the detected delays (None = undetected),
    and, given a budget, whether every incident was detected with p99 within it."""
    found = [d for d in delays if d is not None]
    p99 = percentile(found, 99)  # None exactly when nothing was detected
    out = {
        "detected": len(found),
        "total": len(delays),
        "p50_s": percentile(found, 50),
        "p95_s": percentile(found, 95),
        "p99_s": p99,
        "max_s": max(found, default=None),
    }
    if budget_s is not None:
        out["budget_s"] = budget_s
        out["within_budget"] = p99 is not None and len(found) == len(delays) and p99 <= budget_s
    return out


def detection_report(per_incident: list[dict], window_s: float, lateness_s: float) -> dict:
    """The detection section of report.json: budget, summaries overall and per kind, and the
    share of the delay after the triggering window closed (lateness + pipeline)."""
    budget = window_s + BUDGET_SLACK_S
    kinds = sorted({d["kind"] for d in per_incident})
    return {
        "window_s": window_s,
        "allowed_lateness_s": lateness_s,
        "budget_s": budget,
        "summary": delay_summary([d["delay_s"] for d in per_incident], budget),
        "by_kind": {
            k: delay_summary([d["delay_s"] for d in per_incident if d["kind"] == k]) for k in kinds
        },
        "window_end_to_notification": delay_summary(
            [d["window_end_to_notification_s"] for d in per_incident if d["detected"]]
        ),
        "incidents": per_incident,
    }


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
    spec = spec or FleetSpec()
    series = spec.series()
    script = _script(spec, duration_s, incident, incidents, tuple(incident_kinds))
    incident = script[0]
    spec = FleetSpec(**{**spec.__dict__, "incidents": script})
    targets = detection_targets(script)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"lt{uuid.uuid4().hex[:8]}."
    broker: LocalBroker | None = None
    if bootstrap is None:
        broker = LocalBroker().start()
        bootstrap = broker.bootstrap
    receiver = Receiver()
    await receiver.start()
    config_path = out / "loadtest.toml"
    config_path.write_text(
        CONFIG_TOML.format(
            window_s=WINDOW_S,
            allowed_lateness_s=allowed_lateness_s,
        )
        + extra_config
    )
    procs: list[subprocess.Popen] = []
    stop = asyncio.Event()
    pipeline_task = None
    saved_env = {k: os.environ.get(k) for k in ("PRODMON_WEBHOOK_URL", "PRODMON_WEBHOOK_SECRET")}
    sampler = None
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await create_topics(admin, prefix=prefix, partitions=partitions)
        finally:
            await admin.close()

        from pipeline.app import Pipeline, parse_stage_list
        from pipeline.config import load_config

        config = load_config(
            config_path, env={}, overrides={"kafka.bootstrap": bootstrap, "kafka.prefix": prefix}
        )
        stages = parse_stage_list("all", config)
        group_stages = [s for s in stages if s in STAGE_INPUTS]
        env = {"PRODMON_WEBHOOK_URL": receiver.url, "PRODMON_WEBHOOK_SECRET": WEBHOOK_SECRET}
        pipeline = None
        if pipeline_processes <= 1:
            os.environ.update(env)
            pipeline = Pipeline(config, stages)
            pipeline_task = asyncio.create_task(pipeline.run(stop))
            pids = [os.getpid()]
        else:
            cmd = [
                sys.executable,
                "-m",
                "ops.cli",
                "run",
                "--bootstrap",
                bootstrap,
                "--prefix",
                prefix,
                "--stages",
                "all",
                "--config",
                str(config_path),
            ]
            child_env = {**os.environ, **env}
            for _ in range(pipeline_processes):
                procs.append(
                    subprocess.Popen(
                        cmd, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                    )
                )
            pids = [p.pid for p in procs]
        await _wait_ready(pipeline, procs, timeout_s=30)
        rss_idle = {str(pid): rss_bytes(pid) for pid in pids}

        sampler = LagSampler(bootstrap, prefix, group_stages, pids)
        await sampler.start()
        # t = 0 on a window boundary (windows are aligned to the epoch), at least 1 s ahead,
        # so that an incident's start_s fixes where in its window it starts.
        start_wall = WINDOW_S * math.ceil((time.time() + 1.0) / WINDOW_S)
        t0 = start_wall
        fleet_task = asyncio.create_task(
            asyncio.to_thread(
                run_fleet,
                bootstrap,
                prefix + "events.raw",
                rate,
                duration_s,
                processes,
                spec,
                seed,
                start_wall,
            )
        )
        incident_wall = start_wall + incident.start_s
        while not fleet_task.done():
            await sampler.sample(t0)
            await asyncio.sleep(1.0)
        fleet = fleet_task.result()
        load_end = time.time()
        # Drain: until every group has caught up (two samples in a row) and every incident
        # has been notified, or the drain timeout.
        caught_up = 0
        deadline = time.time() + drain_timeout_s
        while time.time() < deadline:
            s = await sampler.sample(t0)
            caught_up = caught_up + 1 if all(v == 0 for v in s["lag"].values()) else 0
            detected = all(d["detected"] for d in _detect_all(receiver.hits, targets, start_wall))
            if caught_up >= 2 and detected:
                break
            await asyncio.sleep(1.0)
        drain_s = time.time() - load_end
        stage_events = _stage_event_counts(pipeline) if pipeline is not None else {}
        samples = sampler.samples
    finally:
        stop.set()
        if pipeline_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pipeline_task, 30)
        stop_processes(procs, timeout_s=20)
        if sampler is not None:
            await sampler.stop()
        await receiver.stop()
        for k, v in saved_env.items():
            if pipeline_task is not None:
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    try:
        ceiling = await raw_ceiling(bootstrap, prefix + "events.raw", fleet["events"], 120)
    finally:
        if broker is not None:
            broker.stop()

    events_per_message = fleet["events"] / fleet["messages"] if fleet["messages"] else 0.0
    per_incident = _detect_all(receiver.hits, targets, start_wall)
    per_stage = {}
    for stage in group_stages:
        sus = _sustained(samples, stage)
        entry = {**sus, "final_lag": samples[-1]["lag"][stage] if samples else None}
        if stage == "ingest":
            entry["events_per_s"] = sus["messages_per_s"] * events_per_message
        if stage in stage_events and sus["seconds"] > 0:
            entry["events"] = stage_events[stage]
            entry["events_per_s"] = stage_events[stage] / sus["seconds"]
        if f"{stage}_late" in stage_events:
            entry["late_events"] = stage_events[f"{stage}_late"]
        per_stage[stage] = entry
    ingest_rate = per_stage.get("ingest", {}).get("events_per_s", 0.0)
    rss_peak: dict[str, int] = {}
    for s in samples:
        for pid, v in s["rss"].items():
            if v is not None:
                rss_peak[pid] = max(rss_peak.get(pid, 0), v)
    cpu_used = 0.0
    if samples:
        for pid in samples[0]["cpu_s"]:
            first, last = samples[0]["cpu_s"][pid], samples[-1]["cpu_s"][pid]
            if first is not None and last is not None:
                cpu_used += last - first
    ingest = per_stage.get("ingest", {})
    pipeline_events = ingest.get("events", ingest.get("messages", 0) * events_per_message)
    active_series = len(series)
    total_peak = sum(rss_peak.values())
    total_idle = sum(v for v in rss_idle.values() if v)
    report = {
        "params": {
            "rate": rate,
            "duration_s": duration_s,
            "processes": processes,
            "pipeline_processes": pipeline_processes,
            "partitions": partitions,
            "bootstrap": bootstrap if broker is None else "local",
            "prefix": prefix,
        },
        "fleet": fleet,
        "incident": {**incident.__dict__, "start_wall": incident_wall},
        "incidents": [i.__dict__ for i in spec.incidents],
        "stages": per_stage,
        "throughput": {
            "fleet_events_per_s": fleet["events_per_s"],
            "pipeline_events_per_s": ingest_rate,
            "raw_ceiling_events_per_s": ceiling["events_per_s"],
            "ratio_of_ceiling": ingest_rate / ceiling["events_per_s"]
            if ceiling["events_per_s"]
            else None,
            "events_per_message": events_per_message,
            "pipeline_cpu_s": round(cpu_used, 3),
            "events_per_cpu_s": pipeline_events / cpu_used if cpu_used > 0 else None,
        },
        "raw_ceiling": ceiling,
        "detection": per_incident[0],
        "detections": detection_report(
            per_incident, config.windows.window_s, config.windows.allowed_lateness_s
        ),
        "notifications": len(receiver.hits),
        "memory": {
            "rss_idle_bytes": rss_idle,
            "rss_peak_bytes": rss_peak,
            "active_series": active_series,
            "rss_peak_per_series_bytes": total_peak / active_series if active_series else None,
            "rss_growth_per_series_bytes": (total_peak - total_idle) / active_series
            if active_series
            else None,
        },
        "series": {
            "t": [s["t"] for s in samples],
            "lag": {st: [s["lag"][st] for s in samples] for st in group_stages},
            "messages_per_s": _stage_rates(samples, group_stages),
            "raw_produced_per_s": _stage_rates(
                [{"t": s["t"], "committed": {"raw": s["raw_end"]}} for s in samples], ["raw"]
            )["raw"],
            "rss_bytes": {pid: [s["rss"][pid] for s in samples] for pid in rss_peak},
        },
        "drain_s": round(drain_s, 3),
    }
    (out / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    write_html(report, out / "report.html")
    return report


def _stage_event_counts(pipeline) -> dict[str, int]:
    """Events (not messages) each in-process stage handled, from the stages' own counters."""
    counts: dict[str, int] = {}
    for runner in pipeline.runners:
        stage = runner.stage
        stats = getattr(stage, "stats", None)
        core = getattr(stage, "core", None)
        if stage.name == "ingest":
            ingest = getattr(stage, "ingest", stage)
            st = getattr(ingest, "stats", {}) or {}
            counts["ingest"] = sum(st.get(k, 0) for k in ("errors", "latency", "dead_letters"))
        elif stage.name == "windows" and core is not None:
            counts["windows"] = core.stats["events"] + core.stats["late"]
            counts["windows_late"] = core.stats["late"]  # after their window closed: no histogram
        elif stage.name == "fingerprint" and isinstance(stats, dict):
            counts["fingerprint"] = stats.get("events", 0)
    return counts


async def _wait_ready(pipeline, procs: list[subprocess.Popen], timeout_s: float) -> None:
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
