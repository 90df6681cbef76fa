"""A simulated fleet's error events: recurring bugs with drifting line numbers and values.

Deterministic for a given seed, so tests and the demo can say exactly how many
events of each bug they sent.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import orjson

SERVICES = ("checkout", "payments", "search", "accounts")


@dataclass(frozen=True)
class Bug:
    """One recurring defect: its exception, where it is raised, how its message varies."""

    name: str
    exception_type: str
    frames: tuple[tuple[str, str, str], ...]  # (module, function, filename), outermost first
    message: Callable[[random.Random], str]
    severity: str


BUGS: tuple[Bug, ...] = (
    Bug(
        "pay-timeout",
        "TimeoutError",
        (("app.api", "post_checkout", "app/api.py"), ("app.pay", "charge", "app/pay.py")),
        lambda r: f"upstream pay-api timed out after {r.choice([3000, 5000, 2500])} ms",
        "high",
    ),
    Bug(
        "db-conn",
        "psycopg.OperationalError",
        (("app.db", "connect", "app/db.py"),),
        lambda r: (
            f'connection to server at "10.0.{r.randint(0, 9)}.{r.randint(1, 254)}", '
            f"port 5432 failed: Connection refused"
        ),
        "critical",
    ),
    Bug(
        "missing-key",
        "KeyError",
        (("app.search", "rank", "app/search.py"), ("app.search", "score_doc", "app/search.py")),
        lambda r: f"'doc-{uuid.UUID(int=r.getrandbits(128))}'",
        "medium",
    ),
    Bug(
        "bad-user",
        "ValueError",
        (("app.accounts", "load_user", "app/accounts.py"),),
        lambda r: f"invalid user id {r.randint(1000, 99999)} for tenant 0x{r.getrandbits(32):08x}",
        "low",
    ),
)


def error_event(bug: Bug, rng: random.Random, ts_ms: int, release: str) -> dict:
    """One error event of `bug`, as a fleet service would send it (design.md contract)."""
    shift = rng.randint(0, 40)  # redeploys move line numbers; grouping must not care
    frames = [
        {"module": m, "function": f, "filename": fn, "lineno": 10 + 7 * i + shift, "in_app": True}
        for i, (m, f, fn) in enumerate(bug.frames)
    ]
    frames.insert(0, {"module": "gunicorn.workers", "function": "handle", "in_app": False})
    return {
        "schema": "error/1",
        "event_id": f"e-{rng.getrandbits(64):016x}",
        "ts": ts_ms,
        "service": rng.choice(SERVICES),
        "env": "prod",
        "release": release,
        "host": f"web-{rng.randint(1, 12)}",
        "severity": bug.severity,
        "exception": {"type": bug.exception_type, "message": bug.message(rng)},
        "stacktrace": frames,
        "fingerprint": None,
        "context": {"user_id": str(rng.randint(1, 10_000))},
        "tags": {"region": rng.choice(["eu", "us"])},
    }


def error_burst(count: int, seed: int, start_ms: int) -> tuple[list[dict], dict[str, int]]:
    """`count` error events over the bugs (skewed), and how many each bug got."""
    rng = random.Random(seed)
    weights = [5, 3, 2, 1]
    per_bug: dict[str, int] = {b.name: 0 for b in BUGS}
    events = []
    for i in range(count):
        bug = rng.choices(BUGS, weights)[0]
        per_bug[bug.name] += 1
        release = "1.4.2" if i < count // 2 else "1.4.3"
        events.append(error_event(bug, rng, start_ms + i * 10, release))
    return events, per_bug


def malformed_payloads(start_ms: int) -> list[tuple[bytes, str]]:
    """Bad input a real fleet sends, each with the field its dead letter must name."""
    good = {
        "schema": "error/1",
        "event_id": "e-bad",
        "ts": start_ms,
        "service": "checkout",
        "exception": {"type": "X", "message": "m"},
    }
    return [
        (b"{not json", "$"),
        (b"\xff\xfe\x00garbage", "$"),
        (orjson.dumps({**good, "schema": "error/9"}), "schema"),
        (orjson.dumps({k: v for k, v in good.items() if k != "service"}), "service"),
        (orjson.dumps({**good, "exception": {"message": "no type"}}), "exception.type"),
        (orjson.dumps({**good, "ts": start_ms + 10 * 24 * 3600 * 1000}), "ts"),
        (
            orjson.dumps(
                {
                    "schema": "latency/1",
                    "ts": start_ms,
                    "service": "checkout",
                    "endpoint": "/pay",
                    "duration_ms": -5,
                }
            ),
            "duration_ms",
        ),
    ]


ENDPOINTS = {
    "checkout": ("/api/pay", "/api/cart"),
    "payments": ("/charge",),
    "search": ("/search", "/suggest"),
    "accounts": ("/login",),
}


@dataclass(frozen=True)
class Slowdown:
    """An incident on one series: latency times `factor` and a 5xx share, over a time span."""

    service: str
    endpoint: str
    start_ms: int
    end_ms: int
    factor: float = 8.0
    error_rate: float = 0.0


def latency_traffic(
    start_ms: int,
    seconds: int,
    per_second: int,
    seed: int,
    incidents: tuple[Slowdown, ...] = (),
) -> list[dict]:
    """Latency events from every service endpoint, log-normal durations, time ordered."""
    rng = random.Random(seed)
    series = [(s, e) for s, endpoints in ENDPOINTS.items() for e in endpoints]
    events = []
    for n in range(seconds * per_second):
        ts = start_ms + n * 1000 // per_second
        service, endpoint = series[rng.randrange(len(series))]
        duration = rng.lognormvariate(3.2, 0.5)
        status = 500 if rng.random() < 0.0002 else 404 if rng.random() < 0.01 else 200
        for incident in incidents:
            hit = incident.service == service and incident.endpoint == endpoint
            if hit and incident.start_ms <= ts < incident.end_ms:
                duration *= incident.factor
                if rng.random() < incident.error_rate:
                    status = 503
        events.append(
            {
                "schema": "latency/1",
                "event_id": f"l-{seed}-{n}",
                "ts": ts,
                "service": service,
                "endpoint": endpoint,
                "method": "GET",
                "status": status,
                "duration_ms": round(duration, 3),
                "host": f"{service}-{rng.randrange(4)}",
            }
        )
    return events
