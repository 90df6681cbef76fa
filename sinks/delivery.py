"""Delivery: one alert transition to one channel, with every safeguard written once.

`Deliverer.deliver(alert, channel)` runs, per attempt, in this order:

1. rate limit (token bucket per channel): wait for a token up to a bound, else end with
   `dropped_rate_limited`;
2. circuit breaker (per destination): when open, end with `skipped_circuit_open`;
3. `sink.send(alert)` under a per-attempt timeout; an exception other than
   `DeliveryError` (a bug, or an answer the sink could not parse) is a retryable failure
   with the reason `sink error: <ExceptionType>`;
4. on a retryable failure, wait (Retry-After when the destination gave one, capped; else
   exponential backoff with full jitter) and go again, until `max_attempts` or the
   `give_up_after_s` budget runs out: then end with `gave_up` and the last reason. A
   non-retryable failure ends at once with `failed`.

Every attempt's outcome and the final one are passed to `on_outcome` (the runtime writes
each to `deliveries`). `deliver` never raises (cancellation aside) and never logs secrets:
reasons come from `DeliveryError`s and exception class names only. Clock, sleep and RNG
are injected so tests run in virtual time.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import aiohttp
import structlog

from sinks.backoff import retry_delay
from sinks.base import Alert, DeliveryError, DeliveryOutcome, DeliveryStatus, Sink
from sinks.breaker import CircuitBreaker
from sinks.ratelimit import TokenBucket

__all__ = ["DEFAULT_RATE_LIMITS", "Deliverer", "DeliveryPolicy", "OutcomeCallback", "RateLimit"]

OutcomeCallback = Callable[[DeliveryOutcome], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `rate_per_s` requests a second to a channel, bursts of up to `burst`."""

    rate_per_s: float
    burst: int


DEFAULT_RATE_LIMITS: Mapping[str, RateLimit] = MappingProxyType(
    {
        "slack": RateLimit(1.0, 5),  # Slack allows ~1 message/s per webhook, short bursts
        "pagerduty": RateLimit(2.0, 20),  # Events API v2: ~120 events/min per routing key
        "sms": RateLimit(1.0, 5),
        "email": RateLimit(5.0, 20),
        "webhook": RateLimit(20.0, 50),
    }
)


@dataclass(frozen=True)
class DeliveryPolicy:
    """Retry, timeout, breaker and rate-limit settings (channels absent from
    `rate_limits` are not limited)."""

    max_attempts: int = 5
    attempt_timeout_s: float = 10.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 60.0
    give_up_after_s: float = 300.0
    breaker_failure_threshold: int = 5
    breaker_cooldown_s: float = 30.0
    rate_limits: Mapping[str, RateLimit] = field(default_factory=lambda: DEFAULT_RATE_LIMITS)
    rate_limit_max_wait_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.attempt_timeout_s <= 0:
            raise ValueError("attempt_timeout_s must be > 0")
        if self.breaker_failure_threshold < 1:
            raise ValueError("breaker_failure_threshold must be >= 1")
        for name in ("backoff_base_s", "backoff_max_s", "retry_after_max_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


def _log() -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger("prodmon.sinks.delivery")


def _where(exc: BaseException) -> str:
    """`file:line` where an unexpected exception was raised (no message: it may hold secrets)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno}"


class Deliverer:
    """Delivers alert transitions through the configured sinks; see the module docstring."""

    def __init__(
        self,
        sinks: Mapping[str, Sink],
        policy: DeliveryPolicy | None = None,
        *,
        on_outcome: OutcomeCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self.sinks = dict(sinks)
        self.policy = policy or DeliveryPolicy()
        self._on_outcome = on_outcome
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._breakers: dict[str, CircuitBreaker] = {}
        self._buckets: dict[str, TokenBucket | None] = {}

    def breaker(self, destination: str) -> CircuitBreaker:
        """The circuit breaker of one destination (created closed on first use)."""
        found = self._breakers.get(destination)
        if found is None:
            found = CircuitBreaker(
                self.policy.breaker_failure_threshold, self.policy.breaker_cooldown_s, self._clock
            )
            self._breakers[destination] = found
        return found

    def bucket(self, channel: str) -> TokenBucket | None:
        """The token bucket of one channel, None when the channel is not limited."""
        if channel not in self._buckets:
            limit = self.policy.rate_limits.get(channel)
            self._buckets[channel] = (
                TokenBucket(limit.rate_per_s, limit.burst, self._clock) if limit else None
            )
        return self._buckets[channel]

    def breaker_states(self) -> dict[str, str]:
        """Destination -> breaker state, for health and metrics."""
        return {dest: breaker.state for dest, breaker in self._breakers.items()}

    async def deliver(self, alert: Alert, channel: str) -> DeliveryOutcome:
        """Deliver one transition to one channel; returns the final outcome, never raises."""
        started = self._clock()
        try:
            return await self._run(alert, channel, started)
        except Exception as exc:  # a bug here or in a callback: record it, never raise
            _log().error(
                "delivery_internal_error",
                channel=channel,
                error_type=type(exc).__name__,
                where=_where(exc),
            )
            outcome = self._outcome(
                alert if isinstance(alert, Mapping) else {},
                channel,
                "failed",
                attempts=0,
                reason=f"internal error: {type(exc).__name__}",
                started=started,
            )
            await self._report(outcome)
            return outcome

    async def _run(self, alert: Alert, channel: str, started: float) -> DeliveryOutcome:
        if not isinstance(alert, Mapping):
            return await self._finish({}, channel, "failed", 0, "not an alert record", started)
        sink = self.sinks.get(channel)
        if sink is None:
            reason = f"no sink configured for channel {channel!r}"
            return await self._finish(alert, channel, "failed", 0, reason, started)
        policy = self.policy
        breaker = self.breaker(sink.destination)
        bucket = self.bucket(channel)
        attempts = 0
        last_reason: str | None = None
        while True:
            if bucket is not None:
                wait = bucket.reserve(policy.rate_limit_max_wait_s)
                if wait is None:
                    reason = _joined(
                        f"rate limit of {bucket.rate_per_s:g}/s for {channel} exceeded "
                        f"(waited up to {policy.rate_limit_max_wait_s:g} s)",
                        last_reason,
                    )
                    return await self._finish(
                        alert, channel, "dropped_rate_limited", attempts, reason, started, sink
                    )
                if wait > 0:
                    await self._sleep(wait)
            if not breaker.allow():
                if bucket is not None:
                    bucket.refund()
                reason = _joined(f"circuit open for {sink.destination}", last_reason)
                return await self._finish(
                    alert, channel, "skipped_circuit_open", attempts, reason, started, sink
                )
            attempts += 1
            sent_at = self._clock()
            error = await self._attempt(sink, alert, breaker)
            latency_ms = (self._clock() - sent_at) * 1000
            if error is None:
                return await self._finish(
                    alert, channel, "delivered", attempts, None, started, sink, latency_ms
                )
            last_reason = error.reason
            if not error.retryable:
                return await self._finish(
                    alert, channel, "failed", attempts, error.reason, started, sink, latency_ms
                )
            delay = retry_delay(
                attempts,
                error.retry_after,
                base_s=policy.backoff_base_s,
                cap_s=policy.backoff_max_s,
                retry_after_cap_s=policy.retry_after_max_s,
                rng=self._rng,
            )
            over_budget = self._clock() - started + delay > policy.give_up_after_s
            if attempts >= policy.max_attempts or over_budget:
                return await self._finish(
                    alert, channel, "gave_up", attempts, error.reason, started, sink, latency_ms
                )
            attempt = self._outcome(
                alert,
                channel,
                "failed",
                attempts=attempts,
                reason=error.reason,
                started=started,
                sink=sink,
                latency_ms=latency_ms,
                final=False,
                next_retry_s=round(delay, 3),
            )
            _log().info(
                "delivery_retry",
                channel=channel,
                destination=sink.destination,
                transition_id=attempt.transition_id,
                attempt=attempts,
                reason=error.reason,
                retry_in_s=attempt.next_retry_s,
            )
            await self._report(attempt)
            await self._sleep(delay)

    async def _attempt(
        self, sink: Sink, alert: Alert, breaker: CircuitBreaker
    ) -> DeliveryError | None:
        """One `send` under the timeout; updates the breaker; returns the error, if any."""
        timeout = self.policy.attempt_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await sink.send(alert)
        except DeliveryError as exc:
            error = exc
        except TimeoutError:
            error = DeliveryError(f"timeout after {timeout:g} s", retryable=True)
        except (aiohttp.ClientError, OSError) as exc:
            error = DeliveryError(f"connection failed: {type(exc).__name__}", retryable=True)
        except Exception as exc:  # unexpected: retry it, it may be the answer, not us
            breaker.release()  # says nothing about the destination's health
            _log().error(
                "sink_error",
                channel=sink.channel,
                destination=sink.destination,
                error_type=type(exc).__name__,
                where=_where(exc),
            )
            return DeliveryError(f"sink error: {type(exc).__name__}", retryable=True)
        except BaseException:
            breaker.release()
            raise
        else:
            breaker.record_success()
            return None
        if error.throttled:
            breaker.release()
        elif error.retryable:
            breaker.record_failure()
        elif error.status is not None:
            breaker.record_success()  # it answered: up, but refused this request
        else:
            breaker.release()
        return error

    async def _finish(
        self,
        alert: Alert,
        channel: str,
        status: DeliveryStatus,
        attempts: int,
        reason: str | None,
        started: float,
        sink: Sink | None = None,
        latency_ms: float = 0.0,
    ) -> DeliveryOutcome:
        outcome = self._outcome(
            alert,
            channel,
            status,
            attempts=attempts,
            reason=reason,
            started=started,
            sink=sink,
            latency_ms=latency_ms,
        )
        log = _log()
        (log.info if status == "delivered" else log.warning)(
            "delivery",
            channel=channel,
            destination=outcome.destination,
            transition_id=outcome.transition_id,
            status=status,
            attempts=attempts,
            reason=reason,
            elapsed_ms=round(outcome.elapsed_ms, 1),
        )
        await self._report(outcome)
        return outcome

    def _outcome(
        self,
        alert: Alert,
        channel: str,
        status: DeliveryStatus,
        *,
        attempts: int,
        reason: str | None,
        started: float,
        sink: Sink | None = None,
        latency_ms: float = 0.0,
        final: bool = True,
        next_retry_s: float | None = None,
    ) -> DeliveryOutcome:
        alert_id = str(alert.get("alert_id") or "")
        transition_id = alert.get("id") or (
            f"{alert_id}|{alert.get('seq')}|{alert.get('transition')}"
        )
        return DeliveryOutcome(
            transition_id=str(transition_id),
            alert_id=alert_id,
            channel=channel,
            status=status,
            attempts=attempts,
            reason=reason,
            latency_ms=latency_ms,
            ts=self._now_ms(),
            destination=sink.destination if sink is not None else "",
            final=final,
            elapsed_ms=(self._clock() - started) * 1000,
            next_retry_s=next_retry_s,
        )

    async def _report(self, outcome: DeliveryOutcome) -> None:
        if self._on_outcome is None:
            return
        try:
            result = self._on_outcome(outcome)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # the callback's failure must not become a lost outcome
            _log().error(
                "delivery_callback_error",
                channel=outcome.channel,
                transition_id=outcome.transition_id,
                error_type=type(exc).__name__,
                where=_where(exc),
            )


def _joined(reason: str, last_reason: str | None) -> str:
    return f"{reason}; last error: {last_reason}" if last_reason else reason
