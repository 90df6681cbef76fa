"""Health probes and the Prometheus endpoint of a pipeline process (aiohttp).

Endpoints (see docs/health.md for what makes each one degraded or unhealthy):

- `/health/live`    the process and its event loop answer (always 200);
- `/health/startup` every stage restored its state after its first assignment;
- `/health/ready`   broker reachable, every stage consuming with partitions, lag bounded;
- `/health`         the worse of startup and ready, for humans and simple monitors;
- `/metrics`        Prometheus text format 0.0.4 (pipeline/metrics.py).

Each probe answers `{"status": "healthy"|"degraded"|"unhealthy", "checks": {...},
"reasons": [...]}`, HTTP 200 when healthy or degraded and 503 when unhealthy. Probes
only read the live objects, plus one bounded broker round trip for readiness: they
never hang, whatever the broker does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pipeline.config import Config
from pipeline.member import GroupMember
from pipeline.metrics import CONTENT_TYPE, exposition

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from pipeline.app import Pipeline

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
_RANK = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}
NOTIFY = "notify"


@dataclass
class HealthSettings:
    """Where the server listens and the readiness bounds (`[health]` in the config)."""

    host: str = "127.0.0.1"
    port: int = 0  # in the config: 0 = no health server; serve(port=0) = a free port
    max_lag: int = 10_000  # a stage this many records behind (all partitions) is degraded
    max_lag_unhealthy: int = 1_000_000  # ... and this many behind, unhealthy
    check_timeout_s: float = 2.0  # bound on the broker round trip and on reading lag
    max_loop_lag_s: float = 1.0  # event loop stalls longer than this make liveness degraded

    @classmethod
    def from_config(cls, config: Config) -> HealthSettings:
        """Settings from the config's `[health]` section."""
        section = config.health
        return cls(
            host=section.host,
            port=section.port,
            max_lag=section.max_lag,
            max_lag_unhealthy=section.max_lag_unhealthy,
            check_timeout_s=section.check_timeout_s,
        )


@dataclass
class Report:
    """One probe's answer; the status only ever gets worse as checks run."""

    status: str = HEALTHY
    checks: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def worsen(self, status: str, reason: str) -> None:
        if _RANK[status] > _RANK[self.status]:
            self.status = status
        self.reasons.append(reason)

    def merge(self, other: Report, prefix: str) -> None:
        self.checks[prefix] = other.checks
        for reason in other.reasons:
            self.reasons.append(f"{prefix}: {reason}")
        if _RANK[other.status] > _RANK[self.status]:
            self.status = other.status

    @property
    def http_status(self) -> int:
        return 503 if self.status == UNHEALTHY else 200

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "checks": self.checks, "reasons": self.reasons}


class HealthChecker:
    """Evaluates the probes against a `Pipeline`."""

    def __init__(self, pipeline: Pipeline, settings: HealthSettings | None = None) -> None:
        self.pipeline = pipeline
        self.settings = settings or HealthSettings.from_config(pipeline.config)
        self.started = time.monotonic()
        self._loop_lags: deque[float] = deque(maxlen=40)  # ~10 s of samples
        self._seen: dict[tuple[str, str], int] = {}  # (stage, counter) -> value at last probe

    # ---- the pipeline's parts ----------------------------------------------------------------

    def _wants_notifier(self) -> bool:
        return NOTIFY in self.pipeline.stage_names

    def _wanted_stages(self) -> list[str]:
        return [n for n in self.pipeline.stage_names if n != NOTIFY]

    def _producer(self) -> AIOKafkaProducer | None:
        return self.pipeline.producer

    def _members(self) -> list[tuple[str, GroupMember]]:
        """(name, member) for every consumer group member of the process."""
        return [(m.member_name, m) for m in self.pipeline.members()]

    def _not_started(self, report: Report) -> bool:
        """Unhealthy when the stages the process should run do not exist yet."""
        missing = []
        if self._wanted_stages() and not self.pipeline.runners:
            missing = self._wanted_stages()
        if self._wants_notifier() and self.pipeline.notifier is None:
            missing.append(NOTIFY)
        for name in missing:
            report.checks[name] = {"started": False}
        if missing:
            report.worsen(
                UNHEALTHY,
                f"not started: {', '.join(missing)} (waiting for the broker to accept the "
                "producer?)",
            )
        return bool(missing)

    # ---- probes ------------------------------------------------------------------------------

    def live(self) -> Report:
        """The process answers; a stalled event loop makes it degraded, never unhealthy.

        (A loop blocked for good cannot answer at all, which is what the probe detects.)
        """
        report = Report()
        worst = max(self._loop_lags, default=0.0)
        report.checks["uptime_s"] = round(time.monotonic() - self.started, 3)
        report.checks["event_loop_lag_s"] = round(worst, 4)
        if worst > self.settings.max_loop_lag_s:
            report.worsen(
                DEGRADED,
                f"event loop stalled {worst:.2f}s recently (> {self.settings.max_loop_lag_s}s)",
            )
        return report

    def startup(self) -> Report:
        """Healthy once every stage has had its first assignment and restored its state."""
        report = Report()
        self._not_started(report)
        for name, member in self._members():
            restored = member.ready.is_set()
            check: dict[str, Any] = {"restored": restored}
            if member.restored_keys is not None:
                check["restored_keys"] = member.restored_keys
            report.checks[name] = check
            if not restored:
                report.worsen(UNHEALTHY, f"{name}: state not restored yet (no assignment so far)")
        return report

    async def ready(self) -> Report:
        """Broker reachable, every stage consuming with partitions, lag under the bounds."""
        report = Report()
        report.checks["broker"] = await self._broker_check(report)
        self._not_started(report)
        members = self._members()
        lags = await self._lags(members, report)
        for name, member in members:
            check: dict[str, Any] = {}
            report.checks[name] = check
            connected = member.connected
            restored = member.ready.is_set()
            check["consumer_connected"] = connected
            check["restored"] = restored
            if not connected:
                report.worsen(UNHEALTHY, f"{name}: consumer not connected to the broker")
                continue
            if not restored:
                report.worsen(UNHEALTHY, f"{name}: waiting for its first partition assignment")
                continue
            partitions = member.assigned_partitions()
            check["assigned_partitions"] = partitions
            if partitions == 0:
                report.worsen(
                    DEGRADED,
                    f"{name}: no partitions assigned (rebalancing, or an idle member of a "
                    "group with more members than partitions)",
                )
            if name in lags:
                total = lags[name]
                check["lag"] = total
                if total > self.settings.max_lag_unhealthy:
                    report.worsen(
                        UNHEALTHY,
                        f"{name}: {total} records behind (> {self.settings.max_lag_unhealthy})",
                    )
                elif total > self.settings.max_lag:
                    report.worsen(
                        DEGRADED, f"{name}: {total} records behind (> {self.settings.max_lag})"
                    )
            self._retries(name, member, check, report)
        return report

    async def overall(self) -> Report:
        report = Report()
        report.merge(self.startup(), "startup")
        report.merge(await self.ready(), "ready")
        return report

    # ---- pieces ------------------------------------------------------------------------------

    async def _broker_check(self, report: Report) -> dict[str, Any]:
        """One metadata round trip on the process's producer (or a TCP connect before it
        exists), bounded by `check_timeout_s`."""
        timeout = self.settings.check_timeout_s
        producer = self._producer()
        started = time.monotonic()
        try:
            if producer is not None:
                cluster = await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout)
                check: dict[str, Any] = {"reachable": True, "brokers": len(cluster.brokers())}
            else:
                address = await asyncio.wait_for(self._tcp_probe(), timeout)
                check = {"reachable": True, "via": f"tcp {address}", "producer": False}
        except TimeoutError:
            report.worsen(UNHEALTHY, f"broker unreachable: no answer within {timeout}s")
            return {"reachable": False, "error": "timeout"}
        except Exception as exc:
            report.worsen(UNHEALTHY, f"broker unreachable: {exc!r}"[:300])
            return {"reachable": False, "error": repr(exc)[:300]}
        check["round_trip_ms"] = round((time.monotonic() - started) * 1000, 2)
        return check

    async def _tcp_probe(self) -> str:
        """The first bootstrap address that accepts a TCP connection (raises if none)."""
        bootstrap = self.pipeline.config.kafka.bootstrap
        errors = []
        for address in [a.strip() for a in bootstrap.split(",") if a.strip()]:
            host, _, port = address.rpartition(":")
            try:
                _, writer = await asyncio.open_connection(host.strip("[]") or address, int(port))
            except (OSError, ValueError) as exc:
                errors.append(f"{address}: {exc}")
                continue
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return address
        raise ConnectionError("; ".join(errors) or "no bootstrap servers configured")

    async def _lags(self, members: list[tuple[str, GroupMember]], report: Report) -> dict[str, int]:
        """Total lag per member, read concurrently and bounded by `check_timeout_s`."""

        async def one(member: GroupMember) -> int | None:
            parts = await member.lags()
            return sum(lag for _, _, lag in parts) if parts else None

        try:
            totals = await asyncio.wait_for(
                asyncio.gather(*(one(m) for _, m in members)), self.settings.check_timeout_s
            )
        except TimeoutError:
            report.worsen(DEGRADED, "consumer lag unknown: reading positions timed out")
            return {}
        return {name: t for (name, _), t in zip(members, totals, strict=True) if t is not None}

    def _retries(
        self, name: str, member: GroupMember, check: dict[str, Any], report: Report
    ) -> None:
        """Produce retries since the previous probe mean the broker is refusing writes now."""
        value = member.produce_retries
        if value is None:
            return
        previous = self._seen.get((name, "produce_retries"), value)
        self._seen[(name, "produce_retries")] = value
        check["produce_retries"] = value
        if value > previous:
            report.worsen(
                DEGRADED, f"{name}: {value - previous} produce retries since the last probe"
            )

    async def watch_loop(self, interval: float = 0.25) -> None:
        """Sample event loop lag (how late a sleep wakes up) for the liveness probe."""
        while True:
            start = time.monotonic()
            await asyncio.sleep(interval)
            self._loop_lags.append(max(0.0, time.monotonic() - start - interval))


CHECKER = web.AppKey("checker", HealthChecker)


def _answer(report: Report) -> web.Response:
    return web.json_response(report.to_json(), status=report.http_status)


async def _live(request: web.Request) -> web.Response:
    return _answer(request.app[CHECKER].live())


async def _startup(request: web.Request) -> web.Response:
    return _answer(request.app[CHECKER].startup())


async def _ready(request: web.Request) -> web.Response:
    return _answer(await request.app[CHECKER].ready())


async def _overall(request: web.Request) -> web.Response:
    return _answer(await request.app[CHECKER].overall())


async def _metrics(request: web.Request) -> web.Response:
    text = await exposition(request.app[CHECKER].pipeline)
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})


async def _watch(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[CHECKER].watch_loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def build_app(pipeline: Pipeline, settings: HealthSettings | None = None) -> web.Application:
    """The health and metrics app for `pipeline` (a `pipeline.app.Pipeline`)."""
    app = web.Application()
    app[CHECKER] = HealthChecker(pipeline, settings)
    app.router.add_get("/health/live", _live)
    app.router.add_get("/health/startup", _startup)
    app.router.add_get("/health/ready", _ready)
    app.router.add_get("/health", _overall)
    app.router.add_get("/metrics", _metrics)
    app.cleanup_ctx.append(_watch)
    return app


async def serve(
    pipeline: Pipeline,
    host: str = "127.0.0.1",
    port: int = 0,
    settings: HealthSettings | None = None,
) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (`await runner.cleanup()` to stop) and the port
    (port 0 picks a free one)."""
    runner = web.AppRunner(build_app(pipeline, settings), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return runner, int(bound)


@contextlib.asynccontextmanager
async def serving(pipeline: Pipeline) -> AsyncIterator[int | None]:
    """Serve while the block runs when the config's `health.port` is set (0 = disabled).

    Yields the bound port, or None when disabled.
    """
    settings = HealthSettings.from_config(pipeline.config)
    if settings.port <= 0:
        yield None
        return
    runner, port = await serve(pipeline, settings.host, settings.port, settings)
    try:
        yield port
    finally:
        await runner.cleanup()
