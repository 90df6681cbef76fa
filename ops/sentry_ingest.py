"""`prodmon ingest serve`: a Sentry-compatible ingest endpoint that writes to `events.raw`.

Sentry SDKs whose DSN points here (`http://<key>@host:port/<project id>`) send envelopes to
`POST /api/<project>/envelope/` (or one event to the older `/api/<project>/store/`). Each
`event` item becomes an error/1 event and each `transaction` a latency/1 event (the mapping
is schemas/sentry.py); other items are accepted and dropped (counted); an item that cannot be
mapped goes to `events.dlq` with its reason while the rest of the envelope still counts.

The answer `{"id": ...}` is sent only after Kafka acknowledged every record the request
produced (acks=all, never idempotence): when Kafka is unavailable, or the configured rate
limit is exceeded, the answer is 429 with `Retry-After` and `X-Sentry-Rate-Limits`, which the
SDKs honour, and nothing was accepted. A request answered 429 may still reach Kafka later
(a send that timed out is not recalled); ingest drops the repeated `event_id`.

Never logs a key, a body or a header.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiokafka import AIOKafkaProducer

from pipeline.app import make_producer
from pipeline.config import Config
from pipeline.metrics import Family, render
from pipeline.topics import EVENTS_DLQ, EVENTS_RAW
from schemas.dlq import dead_letter
from schemas.events import Limits
from schemas.sentry import (
    DROPPED_ITEM_TYPES,
    BodyTooLarge,
    EnvelopeError,
    InvalidItem,
    Project,
    decode_body,
    map_item,
    parse_auth,
    parse_envelope,
)

log = structlog.get_logger("prodmon.sentry")

EVENT_ITEM_TYPES = ("event", "transaction")
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Content-Encoding, X-Sentry-Auth, "
    "Authorization, sentry-trace, baggage",
    "Access-Control-Expose-Headers": "Retry-After, X-Sentry-Rate-Limits",
    "Access-Control-Max-Age": "3600",
}


class TokenBucket:
    """`rate` events per second with a burst of one second's worth; 0 = unlimited."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp = time.monotonic()

    def take(self, n: int) -> float:
        """0 when `n` events may pass now (they are counted), else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if n <= self.tokens:
            self.tokens -= n
            return 0.0
        return (min(n, self.rate) - self.tokens) / self.rate


class Outcome(Exception):
    """An HTTP answer other than success, with Sentry's JSON error body."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def _rate_limited(seconds: float, reason: str) -> Outcome:
    wait = max(1, math.ceil(seconds))
    # X-Sentry-Rate-Limits: retry_after:categories:scope:reason (no categories = all).
    headers = {"Retry-After": str(wait), "X-Sentry-Rate-Limits": f"{wait}::organization:{reason}"}
    return Outcome(429, reason.replace("_", " "), headers)


class SentryIngest:
    """The endpoint's state: projects and keys, the producer, the rate limit, the counters."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings = config.sentry
        self.projects: dict[str, Project] = dict(self.settings.projects)
        self.limits = Limits(
            max_message_bytes=config.ingest.max_message_bytes,
            max_text_len=config.ingest.max_text_len,
            max_context_depth=config.ingest.max_context_depth,
            max_duration_ms=config.ingest.max_duration_ms,
            future_tolerance_s=config.ingest.future_tolerance_s,
        )
        self.raw_topic = config.kafka.prefix + EVENTS_RAW
        self.dlq_topic = config.kafka.prefix + EVENTS_DLQ
        self.bucket = TokenBucket(self.settings.rate_limit_per_s)
        self.producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self.kafka_ok = False
        self.requests: Counter[str] = Counter()
        self.items: Counter[tuple[str, str]] = Counter()

    # --- Kafka ----------------------------------------------------------------------------

    async def _producer(self) -> AIOKafkaProducer:
        """The started producer; started on first use (and again after a failed start)."""
        async with self._starting:
            if self.producer is None:
                producer = make_producer(self.config)
                try:
                    await asyncio.wait_for(producer.start(), self.settings.produce_timeout_s)
                except Exception:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self.producer = producer
            return self.producer

    async def produce(self, records: list[tuple[str, bytes, bytes]]) -> None:
        """Send (topic, key, value) records and wait for every ack, or raise a 429 Outcome."""
        if not records:
            return
        try:
            producer = await self._producer()

            async def send_all() -> None:
                futures = [await producer.send(t, v, key=k) for t, k, v in records]
                await asyncio.gather(*futures)

            await asyncio.wait_for(send_all(), self.settings.produce_timeout_s)
        except Exception as exc:
            self.kafka_ok = False
            log.warning("sentry_kafka_unavailable", error=type(exc).__name__, records=len(records))
            raise _rate_limited(self.settings.retry_after_s, "kafka_unavailable") from None
        self.kafka_ok = True

    async def close(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
            self.producer = None

    # --- requests -------------------------------------------------------------------------

    def authorize(self, request: web.Request) -> Project:
        project = self.projects.get(request.match_info["project_id"])
        key = parse_auth(
            request.headers.get("X-Sentry-Auth") or request.headers.get("Authorization"),
            request.query.get("sentry_key"),
        )
        if key is None:
            raise Outcome(401, "missing authorization (X-Sentry-Auth sentry_key or ?sentry_key=)")
        if project is None or key not in project.keys:
            known = any(key in p.keys for p in self.projects.values())
            if known:
                raise Outcome(403, "this key is not a key of this project")
            raise Outcome(401, "unknown public key")
        return project

    async def body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise Outcome(413, f"body is over the limit of {limit} bytes")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise Outcome(413, f"body is over the limit of {limit} bytes") from None
        try:
            return decode_body(
                raw,
                request.headers.get("Content-Encoding"),
                self.settings.max_decompressed_bytes,
            )
        except BodyTooLarge as exc:
            raise Outcome(413, str(exc)) from None
        except EnvelopeError as exc:
            raise Outcome(400, str(exc)) from None

    def _dead_letter(
        self, project: Project, kind: str, index: int, exc: InvalidItem, raw: bytes, now_ms: int
    ) -> tuple[str, bytes, bytes]:
        source = f"sentry:/api/{project.id}/{kind}/"
        value = dead_letter(exc.reason, exc.field, source, -1, -1, index, raw, now_ms)
        return self.dlq_topic, f"sentry:{project.id}".encode(), orjson.dumps(value)

    async def accept(
        self, project: Project, kind: str, items: list[tuple[str, bytes]], now_ms: int
    ) -> str | None:
        """Map, rate-limit and produce one request's items; the first event's id."""
        records: list[tuple[str, bytes, bytes]] = []
        counted: Counter[tuple[str, str]] = Counter()
        events = 0
        first_id: str | None = None
        for index, (item_type, payload) in enumerate(items):
            if item_type not in EVENT_ITEM_TYPES:
                shown = item_type if item_type in DROPPED_ITEM_TYPES else "other"
                counted[(shown, "dropped")] += 1
                continue
            try:
                event = map_item(item_type, payload, project, now_ms, self.limits)
            except InvalidItem as exc:
                records.append(self._dead_letter(project, kind, index, exc, payload, now_ms))
                counted[(item_type, "dead_letter")] += 1
                continue
            first_id = first_id or event.get("event_id")
            records.append((self.raw_topic, event["service"].encode(), orjson.dumps(event)))
            counted[(item_type, "accepted")] += 1
            events += 1
        wait = self.bucket.take(events) if events else 0.0
        if wait:
            self.requests["rate_limited"] += 1
            raise _rate_limited(wait, "rate_limited")
        await self.produce(records)
        self.items.update(counted)
        return first_id

    async def handle(self, request: web.Request, kind: str) -> web.Response:
        try:
            project = self.authorize(request)
            body = await self.body(request)
            now_ms = int(time.time() * 1000)
            if kind == "envelope":
                try:
                    header, parsed = parse_envelope(body)
                except EnvelopeError as exc:
                    raise Outcome(400, str(exc)) from None
                items = [(item.type, item.payload) for item in parsed]
                event_id = await self.accept(project, kind, items, now_ms)
                event_id = header.get("event_id") or event_id
            else:
                event_id = await self.accept(project, kind, [("event", body)], now_ms)
        except Outcome as out:
            outcome = {401: "unauthorized", 403: "forbidden", 429: "throttled"}
            self.requests[outcome.get(out.status, f"http_{out.status}")] += 1
            return web.json_response(
                {"detail": out.detail}, status=out.status, headers={**CORS_HEADERS, **out.headers}
            )
        self.requests["ok"] += 1
        answer = {"id": event_id} if isinstance(event_id, str) else {}
        return web.json_response(answer, headers=CORS_HEADERS)

    # --- health and metrics ---------------------------------------------------------------

    def families(self) -> list[Family]:
        requests = Family(
            "prodmon_sentry_requests_total", "counter", "Sentry ingest requests by outcome."
        )
        for outcome, n in sorted(self.requests.items()):
            requests.add(n, outcome=outcome)
        items = Family(
            "prodmon_sentry_items_total",
            "counter",
            "Envelope items by type and outcome (accepted, dropped, dead_letter).",
        )
        for (item_type, outcome), n in sorted(self.items.items()):
            items.add(n, type=item_type, outcome=outcome)
        up = Family("prodmon_sentry_kafka_ok", "gauge", "1 when the last produce was acknowledged.")
        up.add(1 if self.kafka_ok else 0)
        return [requests, items, up]


def build_app(ingest: SentryIngest) -> web.Application:
    app = web.Application(client_max_size=ingest.settings.max_body_bytes)

    async def envelope(request: web.Request) -> web.Response:
        return await ingest.handle(request, "envelope")

    async def store(request: web.Request) -> web.Response:
        return await ingest.handle(request, "store")

    async def preflight(request: web.Request) -> web.Response:
        return web.Response(status=204, headers=CORS_HEADERS)

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(request: web.Request) -> web.Response:
        try:
            await ingest._producer()
        except Exception:
            return web.json_response({"status": "unhealthy", "reason": "kafka"}, status=503)
        return web.json_response({"status": "ok"})

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            text=render(ingest.families()), content_type="text/plain", charset="utf-8"
        )

    for kind, handler in (("envelope", envelope), ("store", store)):
        path = "/api/{project_id:\\d+}/" + kind + "/"
        app.router.add_post(path, handler)
        app.router.add_route("OPTIONS", path, preflight)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/health", ready)
    app.router.add_get("/metrics", metrics)
    return app


async def start(ingest: SentryIngest, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Listen on host:port (0 = a free port); returns the runner and the bound port. The
    body is read as sent (auto_decompress off) so that decompression is bounded."""
    runner = web.AppRunner(build_app(ingest), auto_decompress=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, bound


async def serve(config: Config, stop: asyncio.Event, announce: bool = False) -> None:
    ingest = SentryIngest(config)
    runner, port = await start(ingest, config.sentry.host, config.sentry.port)
    log.info(
        "sentry_ingest_started",
        host=config.sentry.host,
        port=port,
        projects=sorted(ingest.projects),
        rate_limit_per_s=config.sentry.rate_limit_per_s,
    )
    if not ingest.projects:
        log.warning("sentry_no_projects", reason="no [sentry.projects.<id>]: every request is 401")
    if announce:
        print(f"sentry_ingest=http://{config.sentry.host}:{port}/", flush=True)
    try:
        with contextlib.suppress(Exception):  # connect early; requests retry if this fails
            await ingest._producer()
        await stop.wait()
    finally:
        await runner.cleanup()
        await ingest.close()
        log.info("sentry_ingest_stopped")


def cmd_ingest_serve(args: Any) -> int:
    """`prodmon ingest serve`: the Sentry-compatible endpoint until SIGTERM/SIGINT."""
    from ops.cli import config_from_args, run_async
    from ops.commands import install_stop_signals
    from pipeline.config import ConfigError

    config = config_from_args(args)
    if args.host is not None:
        config.sentry.host = args.host
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise ConfigError(f"--port: expected 0..65535, got {args.port}")
        config.sentry.port = args.port

    async def _main() -> int:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await serve(config, stop, announce=True)
        return 0

    try:
        return run_async(_main())
    except OSError as exc:
        raise ConfigError(f"--host/--port: {exc.strerror or exc}") from None
