"""Real alert records for the wording tests: an issue, rollups and an anomaly are fed to the
real baseline and escalation stages, and what escalation emits is what the sinks render
(with the links the notifier adds, sinks/links.py)."""

from __future__ import annotations

import random
from typing import Any

import orjson

from alerting.routing import Route, RoutingConfig
from sinks.links import with_links
from sinks.text import for_channel
from stages.base import Record
from stages.baseline import BaselineStage
from stages.escalation import EscalationStage

BASE_URL = "https://prodmon.example.com"
CHANNELS = ("slack", "email", "pagerduty", "webhook", "sms")
T0 = 1795320000000  # 2026-11-22 04:00:00 UTC
FINGERPRINT = "27054bf8c6e40161cea5e686a5b3a7f4"
HOSTILE = "<!channel> <b>x</b> @here"


def issue_record(
    fingerprint: str = FINGERPRINT,
    kind: str = "new",
    message: str = "upstream pay-api timed out after <num> ms",
    exception_type: str = "TimeoutError",
    release: str = "1.4.2",
    count: int = 15,
) -> dict[str, Any]:
    """An `issues` record as the fingerprint stage writes it."""
    return {
        "type": kind,
        "update_id": f"{fingerprint}:{kind}",
        "issue_id": fingerprint,
        "title": f"{exception_type}: {message}",
        "exception_type": exception_type,
        "message_template": message,
        "status": kind,
        "count": count,
        "first_seen": T0 + 123,
        "last_seen": T0 + 60_456,
        "ts": T0 + 60_456,
        "updated_at": T0 + 61_000,
        "services": ["checkout"],
        "releases": ["1.4.1", release],
        "hosts": ["web-12", "web-7", "web-3"],
        "host_count": 3,
        "first_release": release,
        "severity": "critical",
        "sample": {
            "service": "checkout",
            "host": "web-12",
            "release": release,
            "exception": {"type": exception_type, "message": message},
            "stacktrace": [
                {"module": "app.web", "function": "handle", "filename": "app/web.py",
                 "lineno": 10, "in_app": True},
                {"module": "app.pay", "function": "charge", "filename": "app/pay.py",
                 "lineno": 88, "in_app": True},
                {"module": "urllib3", "function": "urlopen", "filename": "urllib3/pool.py",
                 "lineno": 700, "in_app": False},
            ],
        },
    }  # fmt: skip


def rollup(minute: int, p99_ms: float, errors: int = 0, endpoint: str = "/api/pay") -> dict:
    start = T0 + minute * 60_000
    return {
        "id": f"checkout|{endpoint}|1m|{start}",
        "series": f"checkout|{endpoint}",
        "service": "checkout",
        "endpoint": endpoint,
        "resolution": "1m",
        "start": start,
        "end": start + 60_000,
        "count": 1000,
        "errors": errors,
        "client_errors": 0,
        "p50_ms": 40.0,
        "p95_ms": 300.0,
        "p99_ms": p99_ms,
        "max_ms": p99_ms * 2,
    }


class Pipeline:
    """Baseline and escalation in a loop, every route reaching every channel."""

    def __init__(self, group_wait_s: float = 0.0) -> None:
        routing = RoutingConfig(
            routes=(Route({}, CHANNELS, 300.0),), inhibitions=(), group_wait_s=group_wait_s
        )
        self.baseline = BaselineStage()
        self.escalation = EscalationStage(routing)
        self.offset = 0
        self.alerts: list[dict[str, Any]] = []

    def _records(self, topic: str, values: list[dict]) -> list[Record]:
        records = []
        for value in values:
            self.offset += 1
            records.append(Record(topic, 0, self.offset, "k", orjson.dumps(value)))
        return records

    def feed(self, topic: str, values: list[dict], now_ms: int) -> list[dict[str, Any]]:
        signals = self.baseline.process(self._records(topic, values), now_ms / 1000)
        return self.signals([e.value for e in signals.emits], now_ms)

    def signals(self, values: list[dict], now_ms: int) -> list[dict[str, Any]]:
        out = self.escalation.process(self._records("signals", values), now_ms / 1000)
        emitted = [e.value for e in out.emits]
        self.alerts += emitted
        return emitted

    def tick(self, now_ms: int) -> list[dict[str, Any]]:
        emitted = [e.value for e in self.escalation.tick(now_ms / 1000).emits]
        self.alerts += emitted
        return emitted


def as_sent(record: dict[str, Any], channel: str) -> dict[str, Any]:
    """What the notifier hands `channel`'s sink (pipeline/notifier.py `_dispatch`)."""
    return with_links(for_channel(record, channel), BASE_URL)


def issue_alert() -> dict[str, Any]:
    """The firing record of a new issue (rules new-issue and timeout-errors)."""
    run = Pipeline()
    emitted = run.feed("issues", [issue_record()], T0 + 61_000)
    return next(a for a in emitted if a["transition"] == "firing")


def metric_alert() -> tuple[dict[str, Any], dict[str, Any]]:
    """The firing record of p99-over-1s on checkout /api/pay (3 slow minutes of 5), then
    the record of its resolution after a quiet window."""
    run = Pipeline()
    slow = [rollup(0, 1370.0), rollup(1, 2100.0), rollup(2, 1500.0)]
    firing = [a for a in run.feed("rollups", slow, T0 + 181_000) if a["rule"] == "p99-over-1s"]
    quiet = [rollup(m, 200.0) for m in range(3, 9)]
    resolved = [a for a in run.feed("rollups", quiet, T0 + 600_000) if a["rule"] == "p99-over-1s"]
    return firing[0], next(a for a in resolved if a["transition"] == "resolved")


def anomaly_signal() -> dict[str, Any]:
    """A learned-baseline finding on checkout's 5xx rate, as stages/baseline.py emits it."""
    return {
        "id": f"baseline:error_rate_pct|checkout|*|firing|{T0 + 300_000}",
        "kind": "anomaly",
        "state": "firing",
        "rule": "baseline:error_rate_pct",
        "severity": "medium",
        "key": "checkout|*",
        "service": "checkout",
        "endpoint": "*",
        "fingerprint": None,
        "metric": "error_rate_pct",
        "value": 6.9,
        "threshold": None,
        "op": None,
        "baseline": {"centre": 0.2, "spread": 0.1, "z": 41.2, "score": 9.0, "kind": "level"},
        "window": {"start": T0 + 240_000, "end": T0 + 300_000},
        "ts": T0 + 300_000,
        "channels": [],
        "tags": {"category": "anomaly"},
        "summary": "checkout|* error_rate_pct 6.9 is 41.2 sigma above its baseline 0.2",
    }


def group_alert() -> dict[str, Any]:
    """The leader record of a burst of new issues after one deploy (release 1.5.0): one
    message per channel lists them, the worst first."""
    run = Pipeline(group_wait_s=30)
    issues = [
        issue_record("a" * 32, message="connection refused to db-main", release="1.5.0"),
        issue_record(
            "b" * 32, exception_type="KeyError", message=f"'cart' {HOSTILE}", release="1.5.0"
        ),
        issue_record("c" * 32, exception_type="ValueError", message="bad sku", release="1.5.0"),
    ]
    issues[1]["severity"] = "high"
    run.feed("issues", issues, T0 + 61_000)
    [leader] = [a for a in run.tick(T0 + 100_000) if a.get("group")]
    return leader


def metric_alert_after_a_quiet_hour() -> dict[str, Any]:
    """The firing record of p99-over-1s after 40 quiet minutes (p99 around 420 ms), so its
    points show the time before the incident (docs/sinks.md's email chart)."""
    rng = random.Random(7)
    run = Pipeline()
    run.feed("rollups", [rollup(m, rng.gauss(420, 40)) for m in range(-40, 0)], T0)
    slow = [rollup(0, 1370.0), rollup(1, 2100.0), rollup(2, 1500.0)]
    fired = [a for a in run.feed("rollups", slow, T0 + 181_000) if a["rule"] == "p99-over-1s"]
    return fired[0]
