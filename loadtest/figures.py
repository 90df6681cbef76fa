"""The figures of report.json, from what a run measured: throughput per stage and against
the raw ceiling, memory and CPU, detection, and the per-second series the HTML charts."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from loadtest.detection import detection_report
from loadtest.simulator import FleetSpec


@dataclass
class Measured:
    """What one run measured: the input of `build_report`."""

    fleet: dict  # run_fleet's result
    samples: list[dict]  # LagSampler's, one a second
    group_stages: list[str]  # the consumer groups sampled
    stage_events: dict[str, int]  # events per in-process stage ({} with pipeline processes)
    rss_idle: dict[str, int | None]  # pid -> RSS once the pipeline had its partitions
    ceiling: dict  # raw_ceiling's result
    notifications: int  # webhook notifications received
    per_incident: list[dict]  # detect_all's result
    start_wall: float  # t = 0 of the run (epoch seconds, on a window boundary)
    window_s: float  # the run's windows.window_s
    lateness_s: float  # the run's windows.allowed_lateness_s
    drain_s: float  # end of the load -> caught up and detected (or the drain timeout)


def stage_rates(samples: list[dict], stages: list[str]) -> dict[str, list[float]]:
    """Messages/s per stage between consecutive samples (committed offset deltas)."""
    out: dict[str, list[float]] = {s: [] for s in stages}
    for a, b in itertools.pairwise(samples):
        dt = max(1e-6, b["t"] - a["t"])
        for s in stages:
            out[s].append(round(max(0, b["committed"][s] - a["committed"][s]) / dt, 1))
    return out


def sustained(samples: list[dict], stage: str) -> dict:
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


def _per_stage(
    samples: list[dict],
    group_stages: list[str],
    stage_events: dict[str, int],
    events_per_message: float,
) -> dict[str, dict]:
    """Sustained rate and final lag per consumer group; events/s where events are known."""
    per_stage = {}
    for stage in group_stages:
        sus = sustained(samples, stage)
        entry = {**sus, "final_lag": samples[-1]["lag"][stage] if samples else None}
        if stage == "ingest":
            entry["events_per_s"] = sus["messages_per_s"] * events_per_message
        if stage in stage_events and sus["seconds"] > 0:
            entry["events"] = stage_events[stage]
            entry["events_per_s"] = stage_events[stage] / sus["seconds"]
        if f"{stage}_late" in stage_events:
            entry["late_events"] = stage_events[f"{stage}_late"]
        per_stage[stage] = entry
    return per_stage


def _rss_peak(samples: list[dict]) -> dict[str, int]:
    """The largest RSS sampled per pid."""
    rss_peak: dict[str, int] = {}
    for s in samples:
        for pid, v in s["rss"].items():
            if v is not None:
                rss_peak[pid] = max(rss_peak.get(pid, 0), v)
    return rss_peak


def _cpu_used(samples: list[dict]) -> float:
    """CPU seconds the sampled processes used between the first and the last sample."""
    cpu_used = 0.0
    if samples:
        for pid in samples[0]["cpu_s"]:
            first, last = samples[0]["cpu_s"][pid], samples[-1]["cpu_s"][pid]
            if first is not None and last is not None:
                cpu_used += last - first
    return cpu_used


def build_report(params: dict, spec: FleetSpec, m: Measured) -> dict:
    """report.json: `params` (the run's parameters), the fleet and its scripted incidents
    (`spec.incidents`, the first is "incident"), and the figures from `m`."""
    fleet, samples, group_stages = m.fleet, m.samples, m.group_stages
    incident = spec.incidents[0]
    incident_wall = m.start_wall + incident.start_s
    events_per_message = fleet["events"] / fleet["messages"] if fleet["messages"] else 0.0
    per_stage = _per_stage(samples, group_stages, m.stage_events, events_per_message)
    ingest_rate = per_stage.get("ingest", {}).get("events_per_s", 0.0)
    rss_peak = _rss_peak(samples)
    cpu_used = _cpu_used(samples)
    ingest = per_stage.get("ingest", {})
    pipeline_events = ingest.get("events", ingest.get("messages", 0) * events_per_message)
    active_series = len(spec.series())
    total_peak = sum(rss_peak.values())
    total_idle = sum(v for v in m.rss_idle.values() if v)
    ceiling = m.ceiling
    return {
        "params": params,
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
        "detection": m.per_incident[0],
        "detections": detection_report(m.per_incident, m.window_s, m.lateness_s),
        "notifications": m.notifications,
        "memory": {
            "rss_idle_bytes": m.rss_idle,
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
            "messages_per_s": stage_rates(samples, group_stages),
            "raw_produced_per_s": stage_rates(
                [{"t": s["t"], "committed": {"raw": s["raw_end"]}} for s in samples], ["raw"]
            )["raw"],
            "rss_bytes": {pid: [s["rss"][pid] for s in samples] for pid in rss_peak},
        },
        "drain_s": round(m.drain_s, 3),
    }
