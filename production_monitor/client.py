"""The SDK clients that ship error and latency events to Kafka: sync and asyncio flavours.

Both clients share one `_Core`: the event builders (`events.py`), a bounded buffer, the
counters, and a single sender coroutine. The caller's calls only build an event and append it
to the buffer; they never block, never wait for the network and never raise. The sender
batches the buffer into messages of one JSON array each (design.md: `events.raw` accepts an
array), keyed by service, produced to `{prefix}events.raw` with acks="all" and no idempotence.
While the broker is unreachable it retries with exponential backoff; the buffer then fills up
to `max_buffer` events (in flight ones included) and every event beyond is dropped and counted.

`ProductionMonitor` runs the sender in a daemon thread with its own event loop;
`AsyncProductionMonitor` runs it as a task in the application's loop.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from production_monitor.events import (
    LIMITS,
    bounded_id,
    build_error_event,
    build_latency_event,
    coerce_severity,
    default_host,
)
from retry import Backoff

__all__ = ["AsyncProductionMonitor", "MonitorStats", "ProductionMonitor"]

log = logging.getLogger("production_monitor")

DEFAULT_PREFIX = "prodmon."
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
RAW_TOPIC = "events.raw"
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 5.0
IDLE_WAKE_S = 1.0  # safety net: the sender looks at the buffer at least this often
MAX_BATCHES_PER_ROUND = 8  # batches produced before waiting for their acks
MIN_MESSAGE_BYTES = 16 * 1024
LOG_INTERVAL_S = 30.0
POLL_S = 0.005  # how often flush() looks at the pending count


@dataclass(frozen=True, slots=True)
class MonitorStats:
    """A snapshot of a monitor's counters; readable as attributes or as `stats["sent"]`."""

    sent: int  # events acknowledged by the broker
    dropped: int  # events given up: buffer full, closed, unencodable, or unsent at close
    buffered: int  # events accepted and not yet acknowledged (in flight included)
    errors: int  # failed connection attempts, failed sends, internal failures
    invalid: int  # arguments coerced (bad severity, status...) or latency events refused
    connected: bool  # the producer is started

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _RateLimitedLog:
    """Warnings on the "production_monitor" logger, at most one per key per interval."""

    def __init__(self, interval: float = LOG_INTERVAL_S) -> None:
        self.interval = interval
        self._last: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def warning(self, key: str, msg: str, *args: Any) -> None:
        try:
            now = time.monotonic()
            with self._lock:
                last, suppressed = self._last.get(key, (None, 0))
                if last is not None and now - last < self.interval:
                    self._last[key] = (last, suppressed + 1)
                    return
                self._last[key] = (now, 0)
            if suppressed:
                msg += " (%d similar warnings suppressed)"
                args = (*args, suppressed)
            log.warning(msg, *args)
        except Exception:
            pass


_fingerprint_fn: Any = None


def _fingerprint_error() -> Any:
    global _fingerprint_fn
    if _fingerprint_fn is None:
        from grouping import fingerprint_error

        _fingerprint_fn = fingerprint_error
    return _fingerprint_fn


def _default_service() -> str:
    name = os.environ.get("PRODMON_SERVICE")
    if not name:
        argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        name = argv0.removesuffix(".py") or "unknown"
    return name


class _Core:
    """Configuration, event building, the bounded buffer, counters and the sender coroutine.

    Thread model: `track_exception`, `record_latency`, `pending` and `stats` may be called from
    any thread; `run` executes in one event loop (the sync client's thread or the app's loop).
    The buffer and the counters are guarded by `_lock`, held only for a few operations.
    """

    def __init__(
        self,
        *,
        bootstrap: str | None,
        service: str | None,
        prefix: str | None,
        env: str | None,
        release: str | None,
        host: str | None,
        max_buffer: int,
        batch_max: int,
        linger_ms: float,
        kafka_options: dict[str, Any] | None,
    ) -> None:
        self._log = _RateLimitedLog()
        self.bootstrap = str(bootstrap or os.environ.get("PRODMON_BOOTSTRAP") or DEFAULT_BOOTSTRAP)
        self.service = bounded_id(service or _default_service()) or "unknown"
        self.prefix = DEFAULT_PREFIX if prefix is None else str(prefix)
        self.topic = self.prefix + RAW_TOPIC
        self.key = self.service.encode("utf-8")
        self.env = bounded_id(env) if env is not None else None
        release = release if release is not None else os.environ.get("PRODMON_RELEASE")
        self.release = bounded_id(release) if release is not None else None
        self.host = bounded_id(host) if host is not None else default_host()
        self.max_buffer = _clamp_int(max_buffer, 10_000, 1, 100_000_000)
        self.batch_max = _clamp_int(batch_max, 500, 1, LIMITS.max_events_per_message)
        try:
            self.linger = max(float(linger_ms), 0.0) / 1000.0
        except (TypeError, ValueError):
            self.linger = 0.05
        self.kafka_options = dict(kafka_options or {})
        request_size = self.kafka_options.get("max_request_size", 1_048_576)
        try:
            request_size = int(request_size)
        except (TypeError, ValueError):
            request_size = 1_048_576
        self.max_message_bytes = max(
            min(LIMITS.max_message_bytes, request_size) - 1024, MIN_MESSAGE_BYTES
        )

        self._lock = threading.Lock()
        self._buffer: deque[dict[str, Any]] = deque()
        self._inflight = 0
        self._sent = 0
        self._dropped = 0
        self._errors = 0
        self._invalid = 0
        self._flushers = 0
        self._closing = False  # no new events are accepted
        self._stop_deadline: float | None = None  # monotonic; set when closing
        self.drained_at_close: bool | None = None
        self.finished = False  # run() has returned (or will never run)

        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake = asyncio.Event()  # new work, flush or stop
        self._stop_event = asyncio.Event()  # stop requested: cuts backoff pauses short
        self.task: asyncio.Task[None] | None = None
        self._deadline_handle: asyncio.TimerHandle | None = None
        self._producer: Any = None

    # --- caller side (any thread) ---------------------------------------------------------

    def track_exception(
        self, exc: Any, context: Any, severity: Any, tags: Any, fingerprint: Any
    ) -> str:
        try:
            sev, valid = coerce_severity(severity)
            if not valid:
                self._note_invalid("severity", severity)
            if exc is None:
                exc = sys.exc_info()[1]
            event = build_error_event(
                exc,
                service=self.service,
                env=self.env,
                release=self.release,
                host=self.host,
                severity=sev,
                context=context,
                tags=tags,
                fingerprint=fingerprint,
                on_coerce=self._note_invalid,
            )
        except Exception as err:
            self._count_error("build", "production_monitor: cannot build an error event: %r", err)
            return ""
        fid = ""
        try:
            fid = str(_fingerprint_error()(event).id)
        except Exception as err:
            self._count_error("fingerprint", "production_monitor: fingerprinting failed: %r", err)
        self._enqueue(event)
        return fid

    def record_latency(
        self,
        endpoint: Any,
        duration_ms: Any,
        status: Any,
        method: Any,
        region: Any,
        ts: Any,
    ) -> bool:
        try:
            event = build_latency_event(
                endpoint,
                duration_ms,
                service=self.service,
                env=self.env,
                release=self.release,
                host=self.host,
                status=status,
                method=method,
                region=region,
                ts=ts,
                on_coerce=self._note_invalid,
            )
        except Exception as err:
            with self._lock:
                self._invalid += 1
                self._dropped += 1
            self._log.warning(
                "latency", "production_monitor: latency event refused (%s); dropped", err
            )
            return False
        return self._enqueue(event)

    def _enqueue(self, event: dict[str, Any]) -> bool:
        with self._lock:
            if self._closing:
                self._dropped += 1
                reason = "closed"
            elif len(self._buffer) + self._inflight >= self.max_buffer:
                self._dropped += 1
                reason = "full"
            else:
                self._buffer.append(event)
                n = len(self._buffer)
                reason = ""
        if reason:
            self._log.warning(
                "drop-" + reason,
                "production_monitor: event dropped (%s)",
                "monitor is closed" if reason == "closed" else f"buffer of {self.max_buffer} full",
            )
            return False
        if n == 1 or n == self.batch_max:
            self._signal(self._wake)
        return True

    def _note_invalid(self, what: str, value: Any = None) -> None:
        with self._lock:
            self._invalid += 1
        self._log.warning("invalid-" + what, "production_monitor: invalid %s coerced", what)

    def _count_error(self, key: str, msg: str, *args: Any) -> None:
        with self._lock:
            self._errors += 1
        self._log.warning(key, msg, *args)

    def pending(self) -> int:
        """Events accepted and not yet acknowledged (buffered or in flight)."""
        with self._lock:
            return len(self._buffer) + self._inflight

    def stats(self) -> MonitorStats:
        with self._lock:
            return MonitorStats(
                sent=self._sent,
                dropped=self._dropped,
                buffered=len(self._buffer) + self._inflight,
                errors=self._errors,
                invalid=self._invalid,
                connected=self._producer is not None,
            )

    def add_flusher(self, delta: int) -> None:
        with self._lock:
            self._flushers += delta
        if delta > 0:
            self._signal(self._wake)

    def request_stop(self, timeout: float) -> None:
        """Refuse new events; the sender drains until `timeout` from now, then stops."""
        with self._lock:
            self._closing = True
            if self._stop_deadline is None:
                self._stop_deadline = time.monotonic() + max(float(timeout), 0.0)
        self._signal(self._wake)
        self._signal(self._stop_event)
        self._call_in_loop(self._arm_deadline)

    def drop_leftovers(self) -> int:
        """Count everything still pending as dropped (the sender will not send it)."""
        with self._lock:
            leftover = len(self._buffer) + self._inflight
            self._buffer.clear()
            self._inflight = 0
            self._dropped += leftover
        if leftover:
            log.warning("production_monitor: %d events not delivered before close", leftover)
        return leftover

    def _signal(self, event: asyncio.Event) -> None:
        """Set an asyncio.Event owned by the sender's loop, from any thread."""
        self._call_in_loop(event.set)

    def _call_in_loop(self, fn: Any) -> None:
        """Run `fn` in the sender's loop: now if we are in it, else soon."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            fn()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(fn)

    def _arm_deadline(self) -> None:
        """(In the loop) cancel the sender at the stop deadline, wherever it is waiting."""
        task, deadline, loop = self.task, self._stop_deadline, self._loop
        if task is None or task.done() or deadline is None or loop is None:
            return
        if self._deadline_handle is None:
            delay = max(deadline - time.monotonic(), 0.0) + 0.05
            self._deadline_handle = loop.call_later(delay, self._on_deadline)

    def _on_deadline(self) -> None:
        task = self.task
        if task is not None and not task.done():
            task.cancel()

    # --- the sender (one event loop) --------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    async def run(self) -> None:
        """Connect, then batch and send until a stop is requested and drained (or timed out)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.task = asyncio.current_task()
        self._arm_deadline()  # a stop requested before the sender ran
        try:
            await self._send_loop()
        except asyncio.CancelledError:
            pass
        except Exception as err:  # a bug: keep the caller safe, count and log it
            self._count_error("sender", "production_monitor: sender failed: %r", err)
        finally:
            if self._deadline_handle is not None:
                self._deadline_handle.cancel()
            with self._lock:
                self.drained_at_close = len(self._buffer) + self._inflight == 0
            await self._close_producer()
            self.drop_leftovers()
            self.finished = True

    def _should_exit(self) -> bool:
        deadline = self._stop_deadline
        if deadline is None:
            return False
        return self.pending() == 0 or time.monotonic() >= deadline

    async def _send_loop(self) -> None:
        backoff = Backoff(BACKOFF_INITIAL_S, BACKOFF_MAX_S)
        while not self._should_exit():
            if self._producer is None:
                if not await self._connect():
                    await self._pause(backoff.next_delay())
                    continue
                backoff.reset()
            if not self._buffer:
                self._wake.clear()
                if not self._buffer and self._stop_deadline is None:
                    await self._wait_wake(IDLE_WAKE_S)
                continue
            if (
                self.linger > 0
                and self._flushers == 0
                and self._stop_deadline is None
                and len(self._buffer) < self.batch_max
            ):
                self._wake.clear()
                await self._wait_wake(self.linger)
            if await self._send_round():
                backoff.reset()
            else:
                await self._pause(backoff.next_delay())

    async def _wait_wake(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _pause(self, delay: float) -> None:
        """Back off for `delay`, cut short by a stop request; never past the stop deadline."""
        deadline = self._stop_deadline
        if deadline is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), delay)
        else:
            await asyncio.sleep(max(0.0, min(delay, deadline - time.monotonic())))

    def _producer_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": f"prodmon-sdk-{self.service}",
            "acks": "all",
            "enable_idempotence": False,
            "compression_type": None,
            "linger_ms": 0,
            "request_timeout_ms": 15_000,
        }
        kwargs.update(self.kafka_options)
        return kwargs

    async def _connect(self) -> bool:
        from aiokafka import AIOKafkaProducer

        producer = None
        try:
            producer = AIOKafkaProducer(**self._producer_kwargs())
            await producer.start()
        except asyncio.CancelledError:
            self._producer = producer  # stopped by run()'s cleanup
            raise
        except Exception as err:
            self._count_error(
                "connect",
                "production_monitor: cannot connect to Kafka at %s (%r); buffering and retrying",
                self.bootstrap,
                err,
            )
            if producer is not None:
                await _stop_producer(producer, 1.0)
            return False
        self._producer = producer
        return True

    def _take(self, n: int) -> list[dict[str, Any]]:
        with self._lock:
            k = min(n, len(self._buffer))
            popleft = self._buffer.popleft
            events = [popleft() for _ in range(k)]
            self._inflight += k
        return events

    def _settle(self, n: int, *, sent: int = 0, dropped: int = 0) -> None:
        with self._lock:
            self._inflight -= n
            self._sent += sent
            self._dropped += dropped

    def _requeue(self, events: list[dict[str, Any]]) -> None:
        with self._lock:
            self._buffer.extendleft(reversed(events))
            self._inflight -= len(events)

    def _pack(self, events: list[dict[str, Any]]) -> list[tuple[list[dict[str, Any]], bytes]]:
        """Split taken events into JSON-array payloads of at most `max_message_bytes` each."""
        limit = self.max_message_bytes
        out: list[tuple[list[dict[str, Any]], bytes]] = []
        parts: list[bytes] = []
        batch: list[dict[str, Any]] = []
        size = 2
        for event in events:
            try:
                data = orjson.dumps(event)
            except Exception as err:
                data = b""
                reason = f"cannot be encoded: {err!r}"
            else:
                reason = "" if len(data) + 2 <= limit else f"is {len(data)} bytes encoded"
            if reason:
                self._settle(1, dropped=1)
                self._count_error("encode", "production_monitor: event dropped, it %s", reason)
                continue
            if parts and size + len(data) + 1 > limit:
                out.append((batch, b"[" + b",".join(parts) + b"]"))
                parts, batch, size = [], [], 2
            parts.append(data)
            batch.append(event)
            size += len(data) + 1
        if parts:
            out.append((batch, b"[" + b",".join(parts) + b"]"))
        return out

    async def _send_round(self) -> bool:
        """Send up to MAX_BATCHES_PER_ROUND batches and wait for their acks; False on failure."""
        producer = self._producer
        batches: list[tuple[list[dict[str, Any]], bytes]] = []
        for _ in range(MAX_BATCHES_PER_ROUND):
            events = self._take(self.batch_max)
            if not events:
                break
            batches.extend(self._pack(events))
        if not batches:
            return True
        outcomes: list[BaseException | None] = [None] * len(batches)
        waiting: list[tuple[int, asyncio.Future[Any]]] = []
        try:
            for i, (_, payload) in enumerate(batches):
                try:
                    waiting.append((i, await producer.send(self.topic, payload, key=self.key)))
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # e.g. no metadata in time: the rest would wait too
                    for j in range(i, len(batches)):
                        outcomes[j] = err
                    break
            if waiting:
                results = await asyncio.gather(*(f for _, f in waiting), return_exceptions=True)
                for (i, _), res in zip(waiting, results, strict=True):
                    if isinstance(res, BaseException):
                        outcomes[i] = res
        except asyncio.CancelledError:
            # Stopped at the close deadline: count what was acknowledged; the rest stays in
            # flight and run() counts it as dropped.
            for i, fut in waiting:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    n = len(batches[i][0])
                    self._settle(n, sent=n)
            raise
        ok = True
        for (events, _), failure in reversed(list(zip(batches, outcomes, strict=True))):
            if failure is None:
                self._settle(len(events), sent=len(events))
                continue
            ok = False
            if _is_too_large(failure):
                if len(events) == 1 or self.max_message_bytes <= MIN_MESSAGE_BYTES:
                    self._settle(len(events), dropped=len(events))
                    self._count_error(
                        "too-large",
                        "production_monitor: %d events dropped: %r",
                        len(events),
                        failure,
                    )
                    continue
                self.max_message_bytes = max(self.max_message_bytes // 2, MIN_MESSAGE_BYTES)
            self._requeue(events)  # reversed iteration keeps the original order at the front
            self._count_error(
                "send",
                "production_monitor: sending %d events to %s failed (%r); will retry",
                len(events),
                self.topic,
                failure,
            )
        return ok

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        deadline = self._stop_deadline
        grace = 1.0 if deadline is None else max(deadline - time.monotonic(), 0.5)
        await _stop_producer(producer, grace)


def _is_too_large(err: BaseException) -> bool:
    from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError

    return isinstance(err, MessageSizeTooLargeError | RecordListTooLargeError)


async def _stop_producer(producer: Any, timeout: float) -> None:
    """Stop an aiokafka producer within `timeout`; past it, tear its tasks down regardless."""
    try:
        await asyncio.wait_for(producer.stop(), timeout)
        return
    except asyncio.CancelledError:
        pass
    except Exception as err:
        log.debug("production_monitor: producer stop: %r", err)
    # Best effort: aiokafka waits for undeliverable batches; do not let it outlive us.
    with contextlib.suppress(Exception):
        sender = getattr(producer, "_sender", None)
        task = getattr(sender, "sender_task", None)
        if task is not None and not task.done():
            task.cancel()
        await asyncio.wait_for(producer.client.close(), 1.0)


def _clamp_int(value: Any, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(value), low), high)
    except (TypeError, ValueError):
        return default


class _Api:
    """What both clients expose the same way."""

    _core: _Core

    @property
    def stats(self) -> MonitorStats:
        """Counters: sent, dropped, buffered, errors, invalid; and whether connected."""
        return self._core.stats()

    @property
    def service(self) -> str:
        return self._core.service

    @property
    def topic(self) -> str:
        return self._core.topic

    def track_exception(
        self,
        exc: BaseException | None = None,
        context: dict[str, Any] | None = None,
        severity: str = "medium",
        tags: dict[str, Any] | None = None,
        fingerprint: list[str] | None = None,
    ) -> str:
        """Queue an error event for `exc` (default: the exception being handled).

        Returns the issue id the pipeline will file it under (`fingerprint_error(event).id`),
        or "" if the event could not be built. Never blocks, never raises. An invalid severity
        is sent as "medium" and counted in `stats.invalid`.
        """
        try:
            return self._core.track_exception(exc, context, severity, tags, fingerprint)
        except Exception:  # pragma: no cover - _Core already guards every step
            return ""

    def record_latency(
        self,
        endpoint: str,
        duration_ms: float,
        status: int | None = None,
        method: str | None = None,
        region: str | None = None,
        ts: Any = None,
    ) -> bool:
        """Queue a latency event; False when it was dropped (refused or buffer full)."""
        try:
            return self._core.record_latency(endpoint, duration_ms, status, method, region, ts)
        except Exception:  # pragma: no cover
            return False


class ProductionMonitor(_Api):
    """Synchronous client: calls enqueue; a daemon thread with its own loop sends to Kafka.

    The constructor does not wait for the broker. Use `flush()` to wait for delivery and
    `close()` (or a `with` block) to drain and stop; an unclosed monitor is flushed for up to
    2 s when the interpreter exits.
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        service: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        env: str | None = "prod",
        release: str | None = None,
        host: str | None = None,
        max_buffer: int = 10_000,
        batch_max: int = 500,
        linger_ms: int = 50,
        kafka_options: dict[str, Any] | None = None,
    ) -> None:
        self._core = core = _Core(
            bootstrap=bootstrap,
            service=service,
            prefix=prefix,
            env=env,
            release=release,
            host=host,
            max_buffer=max_buffer,
            batch_max=batch_max,
            linger_ms=linger_ms,
            kafka_options=kafka_options,
        )
        self._closed = False
        self._thread: threading.Thread | None = None
        try:
            loop = asyncio.new_event_loop()
            core.attach(loop)
            self._thread = threading.Thread(
                target=_thread_main,
                args=(core, loop),
                name=f"production-monitor[{core.service}]",
                daemon=True,
            )
            self._thread.start()
        except Exception as err:
            core.finished = True
            core._count_error("thread", "production_monitor: cannot start sender: %r", err)
        # Garbage collected unclosed: stop the thread without waiting. At exit: flush briefly.
        self._finalizer = weakref.finalize(self, core.request_stop, 2.0)
        # typeshed declares `atexit` a plain attribute outside finalize's empty __slots__;
        # at run time it is a settable property.
        self._finalizer.atexit = False  # type: ignore[misc]
        ref = weakref.ref(self)

        def _at_exit() -> None:
            monitor = ref()
            if monitor is not None:
                monitor.close(timeout=2.0)

        self._at_exit = _at_exit
        atexit.register(_at_exit)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait up to `timeout` s until everything buffered is acknowledged; True if it was."""
        try:
            core = self._core
            deadline = time.monotonic() + max(float(timeout), 0.0)
            core.add_flusher(1)
            try:
                while True:
                    if core.pending() == 0:
                        return True
                    left = deadline - time.monotonic()
                    if left <= 0 or core.finished:
                        return False
                    time.sleep(min(POLL_S, left))
            finally:
                core.add_flusher(-1)
        except Exception as err:
            self._core._count_error("flush", "production_monitor: flush failed: %r", err)
            return False

    def close(self, timeout: float = 10.0) -> bool:
        """Drain for up to `timeout` s, then stop; undelivered events count as dropped.

        Returns True when everything was delivered. Idempotent; never raises.
        """
        core = self._core
        try:
            if self._closed:
                return bool(core.drained_at_close)
            self._closed = True
            with contextlib.suppress(Exception):
                atexit.unregister(self._at_exit)
                self._finalizer.detach()
            timeout = max(float(timeout), 0.0)
            core.request_stop(timeout)
            thread = self._thread
            if thread is not None and thread.is_alive():
                # The sender stops itself at the deadline (see _Core._arm_deadline).
                thread.join(timeout + 2.0)
                if thread.is_alive() and core.task is not None and core._loop is not None:
                    with contextlib.suppress(RuntimeError):
                        core._loop.call_soon_threadsafe(core.task.cancel)
                    thread.join(3.0)
            if not core.finished:
                core.drop_leftovers()
            return bool(core.drained_at_close)
        except Exception as err:
            core._count_error("close", "production_monitor: close failed: %r", err)
            return False

    def __enter__(self) -> ProductionMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _thread_main(core: _Core, loop: asyncio.AbstractEventLoop) -> None:
    """The sync client's sender thread: run the sender, then tidy the loop up."""
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(core.run())
    except Exception as err:
        core._count_error("thread", "production_monitor: sender thread failed: %r", err)
    finally:
        core.finished = True
        with contextlib.suppress(Exception):
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in tasks:
                t.cancel()
            if tasks:
                loop.run_until_complete(
                    asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 2.0)
                )
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        with contextlib.suppress(Exception):
            loop.close()


class AsyncProductionMonitor(_Api):
    """asyncio client: `await start()`, non-blocking `track_exception`/`record_latency`,
    `await flush()`, `await close()`; or `async with AsyncProductionMonitor(...) as m:`.

    The sender runs as a task in the running loop; `start()` does not wait for the broker.
    Events tracked before `start()` are buffered and sent once it runs.
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        service: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        env: str | None = "prod",
        release: str | None = None,
        host: str | None = None,
        max_buffer: int = 10_000,
        batch_max: int = 500,
        linger_ms: int = 50,
        kafka_options: dict[str, Any] | None = None,
    ) -> None:
        self._core = _Core(
            bootstrap=bootstrap,
            service=service,
            prefix=prefix,
            env=env,
            release=release,
            host=host,
            max_buffer=max_buffer,
            batch_max=batch_max,
            linger_ms=linger_ms,
            kafka_options=kafka_options,
        )
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> AsyncProductionMonitor:
        """Start the sender task in the running loop (idempotent; returns at once)."""
        try:
            if self._task is None and not self._closed:
                loop = asyncio.get_running_loop()
                self._core.attach(loop)
                self._task = loop.create_task(self._core.run(), name="production-monitor")
                await asyncio.sleep(0)  # let it register its loop thread
        except Exception as err:
            self._core._count_error("start", "production_monitor: start failed: %r", err)
        return self

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait up to `timeout` s until everything buffered is acknowledged; True if it was."""
        core = self._core
        try:
            if self._task is None and not self._closed:
                await self.start()
            deadline = time.monotonic() + max(float(timeout), 0.0)
            core.add_flusher(1)
            try:
                while True:
                    if core.pending() == 0:
                        return True
                    left = deadline - time.monotonic()
                    if left <= 0 or core.finished or self._task is None:
                        return False
                    await asyncio.sleep(min(POLL_S, left))
            finally:
                core.add_flusher(-1)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            core._count_error("flush", "production_monitor: flush failed: %r", err)
            return False

    async def close(self, timeout: float = 10.0) -> bool:
        """Drain for up to `timeout` s, then stop; undelivered events count as dropped."""
        core = self._core
        try:
            if self._closed:
                return bool(core.drained_at_close)
            self._closed = True
            timeout = max(float(timeout), 0.0)
            core.request_stop(timeout)
            task = self._task
            if task is not None and not task.done():
                # The sender stops itself at the deadline (see _Core._arm_deadline).
                done, _ = await asyncio.wait({task}, timeout=timeout + 2.0)
                if not done:
                    task.cancel()
                    await asyncio.wait({task}, timeout=3.0)
            if not core.finished:
                core.drop_leftovers()
                core.finished = True
            return bool(core.drained_at_close)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            core._count_error("close", "production_monitor: close failed: %r", err)
            return False

    async def __aenter__(self) -> AsyncProductionMonitor:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
