"""The sink contract: what a notifier is, how it fails, and what a delivery leaves behind.

A sink turns one alert transition into one notification and says, by raising
`DeliveryError`, whether a failure is worth retrying. It never retries, sleeps, rate-limits
or records outcomes itself: that is written once, in `sinks.delivery`. A sink must never
put a secret (webhook URL path, token, password) in a reason, a repr or a log line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["Alert", "DeliveryError", "DeliveryOutcome", "DeliveryStatus", "Sink"]

Alert = dict[str, Any]
"""An alert transition record, the value of the `alerts` topic (see stages/escalation.py)."""

DeliveryStatus = Literal[
    "delivered", "failed", "gave_up", "dropped_rate_limited", "skipped_circuit_open"
]


@runtime_checkable
class Sink(Protocol):
    """One notification channel bound to one destination."""

    channel: str  # "slack", "email", "pagerduty", "webhook", "sms", "log"
    destination: str  # a non-secret label (host, host:port): the circuit breaker's key

    async def send(self, alert: Alert) -> None:
        """Notify once; raise `DeliveryError` on failure (never retry here)."""
        ...


class DeliveryError(Exception):
    """A failed notification attempt.

    `reason` is short and secret-free (it goes to the `deliveries` topic); `retryable` says
    whether trying again may help; `retry_after` is the wait the destination asked for, in
    seconds; `status` is the HTTP/SMTP status when there was one (429 marks throttling,
    which does not count against the circuit breaker).
    """

    def __init__(
        self,
        reason: str,
        retryable: bool,
        retry_after: float | None = None,
        *,
        status: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status

    @property
    def throttled(self) -> bool:
        """The destination is rate-limiting us: it is alive, so the breaker ignores this."""
        return self.status == 429

    def __repr__(self) -> str:
        return (
            f"DeliveryError({self.reason!r}, retryable={self.retryable}, "
            f"retry_after={self.retry_after}, status={self.status})"
        )


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What happened to one alert transition on one channel: one attempt, or the end.

    Attempt records (`final=False`) are always `failed` with `next_retry_s` set; the final
    record is `delivered`, `failed` (not retryable), `gave_up` (retries exhausted, with the
    last reason), `dropped_rate_limited` or `skipped_circuit_open`.
    """

    transition_id: str
    alert_id: str
    channel: str
    status: DeliveryStatus
    attempts: int  # requests made so far for this delivery
    reason: str | None
    latency_ms: float  # duration of this outcome's request (0 when none was made)
    ts: int  # wall time of the outcome, epoch ms
    destination: str = ""
    final: bool = True
    elapsed_ms: float = 0.0  # since deliver() began, waits included
    next_retry_s: float | None = None

    @property
    def record_id(self) -> str:
        """Deterministic id of this record on `deliveries` (a re-run produces the same id)."""
        return f"{self.transition_id}|{self.channel}|{self.attempts}|{self.status}"

    def to_record(self) -> dict[str, Any]:
        """The JSON-able value written to the `deliveries` topic (key: alert id)."""
        return {
            "id": self.record_id,
            "transition_id": self.transition_id,
            "alert_id": self.alert_id,
            "channel": self.channel,
            "destination": self.destination,
            "status": self.status,
            "final": self.final,
            "attempts": self.attempts,
            "reason": self.reason,
            "latency_ms": round(self.latency_ms, 3),
            "elapsed_ms": round(self.elapsed_ms, 3),
            "next_retry_s": self.next_retry_s,
            "ts": self.ts,
        }
