"""Fleet simulator for load tests: services x endpoints x hosts sending latency and error events.

Shape of the traffic (all deterministic for a seed):
- latency: log-normal durations per endpoint (each endpoint has its own median), scaled by a
  daily cycle, a sinusoid of the hour of the event's time (slowest at 18:00 UTC, fastest at
  06:00 UTC);
- background errors: a 4xx share and a 5xx share of the requests;
- exceptions: recurring bugs (`fleet.BUGS`) and, more rarely, never-seen-before exceptions;
- a scripted incident schedule (`Incident`, plain data): slowdown, error burst or outage of
  one service endpoint, from a start offset for a duration; `incident_schedule` staggers
  several over a run on different services.

`generate_events` returns a deterministic event list (tests); `run_fleet` sends events live to
`events.raw` from P producer processes at a target rate, as JSON arrays keyed by service.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import random
import time
from dataclasses import asdict, dataclass, field

import orjson

from loadtest.fleet import BUGS, ENDPOINTS, Bug, error_event

INCIDENT_KINDS = ("slowdown", "errors", "outage")
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Incident:
    """One scripted incident. `start_s` is an offset from the start of the run.

    kind "slowdown": latency times `magnitude`; "errors": a `magnitude` share of requests
    fail with 5xx and raise an exception; "outage": every request fails fast with 503
    (`magnitude` is ignored).
    """

    start_s: float
    duration_s: float
    service: str
    endpoint: str
    kind: str
    magnitude: float = 8.0

    def __post_init__(self) -> None:
        if self.kind not in INCIDENT_KINDS:
            raise ValueError(f"incident kind {self.kind!r}: expected one of {INCIDENT_KINDS}")

    def active(self, offset_s: float, service: str, endpoint: str) -> bool:
        return (
            service == self.service
            and endpoint == self.endpoint
            and self.start_s <= offset_s < self.start_s + self.duration_s
        )


@dataclass(frozen=True)
class FleetSpec:
    """The fleet: `services` services with `endpoints` endpoints each, on `hosts` hosts each."""

    services: int = 8
    endpoints: int = 4
    hosts: int = 6
    client_error_rate: float = 0.02  # 4xx share
    server_error_rate: float = 0.002  # 5xx share
    exception_rate: float = 0.001  # error events per request (recurring bugs)
    new_exception_rate: float = 0.00005  # error events of a never-seen exception per request
    daily_amplitude: float = 0.5  # latency x (1 + a * sin(...)) over the day
    incidents: tuple[Incident, ...] = field(default_factory=tuple)

    def series(self) -> list[tuple[str, str]]:
        """Every (service, endpoint), names borrowed from fleet.py where it has them."""
        known = list(ENDPOINTS)
        out = []
        for s in range(self.services):
            name = known[s] if s < len(known) else f"svc-{s:02d}"
            own = ENDPOINTS.get(name, ())
            for e in range(self.endpoints):
                out.append((name, own[e] if e < len(own) else f"/api/v{e}"))
        return out

    def service_names(self) -> list[str]:
        return list(dict.fromkeys(s for s, _ in self.series()))


def endpoint_medians_ms(spec: FleetSpec) -> dict[tuple[str, str], float]:
    """The median latency (ms, before the daily factor) of every series: 8-80 ms, the same
    in every process."""
    seeded = random.Random(1000 + len(spec.series()))
    return {s: seeded.uniform(8.0, 80.0) for s in spec.series()}


# A scheduled slowdown brings its endpoint's median to about this (p99 > 1 s at any hour).
SLOWDOWN_MEDIAN_MS = 2000.0


def incident_schedule(
    spec: FleetSpec,
    count: int,
    duration_s: float,
    window_s: float,
    kinds: tuple[str, ...] = INCIDENT_KINDS,
) -> tuple[Incident, ...]:
    """`count` incidents (at most one per series) staggered over a run of `duration_s`.

    Targets take each service's first endpoint, then each service's second, ..., so that up
    to `spec.services` incidents hit different services. Kinds cycle through `kinds`. Each
    lasts max(4 windows, a quarter of the run) when a slowdown is among `kinds` (its rule,
    p99-over-1s, needs 3 violating windows), else max(2 windows, a quarter of the run); all
    within the load. Starts spread from max(2 windows, 10 %) of the run towards its end
    minus that length, incident i starting i/count of a window after a window boundary
    (when t=0 is one, as in the harness), so the delays sample every alignment of an
    incident within its first window evenly. Errors fail 20 % of requests, outages all,
    slowdowns multiply latency to a median of about `SLOWDOWN_MEDIAN_MS` (at least x8). A
    service with several incidents has its slowdowns first (`_kinds`).
    """
    unknown = [k for k in kinds if k not in INCIDENT_KINDS]
    if unknown:
        raise ValueError(f"incident kinds {unknown}: expected some of {INCIDENT_KINDS}")
    series = spec.series()
    order = [
        series[s * spec.endpoints + e] for e in range(spec.endpoints) for s in range(spec.services)
    ]
    count = max(0, min(count, len(order)))
    if count == 0 or not kinds:
        return ()
    first = min(max(2 * window_s, 0.1 * duration_s), 0.4 * duration_s)
    windows = 4 if "slowdown" in kinds else 2
    length = min(max(windows * window_s, 0.25 * duration_s), duration_s - first)
    last = max(first, duration_s - length - window_s)
    step = (last - first) / (count - 1) if count > 1 else 0.0
    targets = order[:count]
    medians = endpoint_medians_ms(spec)
    out = []
    for i, ((service, endpoint), kind) in enumerate(
        zip(targets, _kinds(targets, kinds), strict=True)
    ):
        magnitude = {"errors": 0.2, "outage": 1.0}.get(kind)
        if magnitude is None:
            magnitude = round(max(8.0, SLOWDOWN_MEDIAN_MS / medians[(service, endpoint)]), 1)
        boundary = window_s * math.floor((first + i * step) / window_s)
        start = round(boundary + i * window_s / count, 3)
        out.append(Incident(start, round(length, 3), service, endpoint, kind, magnitude))
    return tuple(out)


def _kinds(targets: list[tuple[str, str]], kinds: tuple[str, ...]) -> list[str]:
    """Kinds cycled over `targets`, then reordered within each service so that its slowdowns
    come first: while a service's very-high-5xx-rate or sla-critical alert fires, its latency
    alerts are inhibited (alerting/routing.py), so a later slowdown would never be notified."""
    assigned = [kinds[i % len(kinds)] for i in range(len(targets))]
    by_service: dict[str, list[int]] = {}
    for i, (service, _) in enumerate(targets):
        by_service.setdefault(service, []).append(i)
    for indexes in by_service.values():
        ordered = sorted((assigned[i] for i in indexes), key=lambda k: k != "slowdown")
        for i, kind in zip(indexes, ordered, strict=True):
            assigned[i] = kind
    return assigned


def daily_factor(ts_ms: int, amplitude: float) -> float:
    """Latency multiplier by the hour of event time: 1 + a*sin(2*pi*(hour - 12)/24)."""
    hour = (ts_ms % (24 * HOUR_MS)) / HOUR_MS
    return 1.0 + amplitude * math.sin(2 * math.pi * (hour - 12) / 24)


class FleetModel:
    """Makes events; one instance per producer process, seeded per process."""

    def __init__(self, spec: FleetSpec, seed: int, run_start_ms: int) -> None:
        self.spec = spec
        self.rng = random.Random(seed)
        self.seed = seed
        self.run_start_ms = run_start_ms
        self.series = spec.series()
        self.medians = {s: math.log(ms) for s, ms in endpoint_medians_ms(spec).items()}
        self.n = 0
        self.new_bugs = 0

    def event(self, ts_ms: int) -> dict:
        """One event at event time `ts_ms` (latency, or now and then an error event)."""
        rng, spec = self.rng, self.spec
        self.n += 1
        service, endpoint = self.series[rng.randrange(len(self.series))]
        offset_s = (ts_ms - self.run_start_ms) / 1000
        active = [i for i in spec.incidents if i.active(offset_s, service, endpoint)]
        roll = rng.random()
        if not active and roll < spec.exception_rate:
            return self._error(rng.choice(BUGS), service, ts_ms)
        if not active and roll < spec.exception_rate + spec.new_exception_rate:
            return self._error(self._new_bug(), service, ts_ms)
        duration = rng.lognormvariate(self.medians[(service, endpoint)], 0.5)
        duration *= daily_factor(ts_ms, spec.daily_amplitude)
        r = rng.random()
        status = 500 if r < spec.server_error_rate else 404 if r < spec.client_error_rate else 200
        for incident in active:
            if incident.kind == "slowdown":
                duration *= incident.magnitude
            elif incident.kind == "errors":
                if rng.random() < incident.magnitude:
                    if rng.random() < 0.1:
                        return self._error(BUGS[0], service, ts_ms)  # the upstream timeout
                    status = 503
            else:  # outage: every request fails fast
                status, duration = 503, rng.uniform(0.5, 3.0)
        return {
            "schema": "latency/1",
            "event_id": f"l-{self.seed}-{self.n}",
            "ts": ts_ms,
            "service": service,
            "endpoint": endpoint,
            "method": "GET" if len(endpoint) % 2 else "POST",
            "status": status,
            "duration_ms": round(duration, 3),
            "host": f"{service}-{rng.randrange(spec.hosts)}",
        }

    def _error(self, bug: Bug, service: str, ts_ms: int) -> dict:
        event = error_event(bug, self.rng, ts_ms, "1.4.2")
        event["service"] = service
        event["event_id"] = f"e-{self.seed}-{self.n}"
        return event

    def _new_bug(self) -> Bug:
        self.new_bugs += 1
        k = f"{self.seed}x{self.new_bugs}"
        return Bug(
            f"new-{k}",
            f"NewError{k}",
            (("app.feature", f"handler_{k}", "app/feature.py"),),
            lambda r: f"unexpected state {r.randint(1, 999)}",
            "medium",
        )


def generate_events(
    spec: FleetSpec, start_ms: int, seconds: float, rate: int, seed: int = 1
) -> list[dict]:
    """`rate * seconds` events evenly spread over event time from `start_ms` (deterministic).

    Incident offsets are measured from `start_ms`.
    """
    model = FleetModel(spec, seed, start_ms)
    total = int(rate * seconds)
    return [model.event(start_ms + int(i * 1000 / rate)) for i in range(total)]


def batches_by_service(events: list[dict], size: int) -> list[tuple[bytes, bytes]]:
    """(key, JSON array value) messages: events grouped by service, at most `size` each."""
    groups: dict[str, list[dict]] = {}
    for e in events:
        groups.setdefault(e["service"], []).append(e)
    out = []
    for service, items in groups.items():
        key = service.encode()
        for i in range(0, len(items), size):
            out.append((key, orjson.dumps(items[i : i + size])))
    return out


@dataclass(frozen=True)
class ProducerPlan:
    bootstrap: str
    topic: str
    rate: float  # this process's share, events/s
    duration_s: float
    start_wall: float  # time.time() at which every process starts (the run's t=0)
    seed: int
    spec: FleetSpec
    batch_size: int = 200
    tick_s: float = 0.05


async def _produce(plan: ProducerPlan) -> dict:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=plan.bootstrap,
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
    )
    await producer.start()
    model = FleetModel(plan.spec, plan.seed, int(plan.start_wall * 1000))
    sent = messages = 0
    behind_max = 0.0
    try:
        delay = plan.start_wall - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        end = plan.start_wall + plan.duration_s
        pending: list[asyncio.Future] = []
        while True:
            now = time.time()
            if now >= end:
                break
            due = int(plan.rate * (now - plan.start_wall)) - sent
            behind_max = max(behind_max, due / plan.rate if plan.rate else 0.0)
            if due > 0:
                now_ms = int(now * 1000)
                events = [model.event(now_ms) for _ in range(due)]
                for key, value in batches_by_service(events, plan.batch_size):
                    pending.append(await producer.send(plan.topic, value, key=key))
                    messages += 1
                sent += due
                if len(pending) > 2000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.sleep(plan.tick_s)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    elapsed = max(1e-9, min(time.time(), plan.start_wall + plan.duration_s) - plan.start_wall)
    return {
        "seed": plan.seed,
        "events": sent,
        "messages": messages,
        "events_per_s": sent / elapsed,
        "max_behind_s": round(behind_max, 3),
    }


def _worker(plan: ProducerPlan, results) -> None:
    results.put(asyncio.run(_produce(plan)))


def run_fleet(
    bootstrap: str,
    topic: str,
    rate: int,
    duration_s: float,
    processes: int = 1,
    spec: FleetSpec | None = None,
    seed: int = 1,
    start_wall: float | None = None,
    batch_size: int = 200,
) -> dict:
    """Send `rate` events/s for `duration_s` from `processes` processes (blocking).

    Process i uses seed `seed * 1000 + i` and sends `rate / processes` events/s, paced
    against wall time from `start_wall` (default: one second from now). Event times are the
    wall time at sending; incident offsets count from `start_wall`.
    """
    spec = spec or FleetSpec()
    start_wall = start_wall if start_wall is not None else time.time() + 1.0
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    plans = [
        ProducerPlan(
            bootstrap,
            topic,
            rate / processes,
            duration_s,
            start_wall,
            seed * 1000 + i,
            spec,
            batch_size,
        )
        for i in range(processes)
    ]
    procs = [ctx.Process(target=_worker, args=(p, results), daemon=True) for p in plans]
    for p in procs:
        p.start()
    per_process = []
    try:
        for _ in procs:
            per_process.append(results.get(timeout=duration_s + 120))
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
    total = sum(r["events"] for r in per_process)
    return {
        "target_events_per_s": rate,
        "events": total,
        "messages": sum(r["messages"] for r in per_process),
        "events_per_s": total / duration_s if duration_s else 0.0,
        "start_wall": start_wall,
        "processes": sorted(per_process, key=lambda r: r["seed"]),
        "spec": asdict(spec),
    }
