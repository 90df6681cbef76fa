"""A token bucket per channel: at most `rate` notifications a second, bursts up to `burst`.

`reserve(max_wait)` takes a token now or books the next free one and says how long to wait
for it; when that wait would exceed `max_wait` it books nothing and returns None, and the
caller records a `dropped_rate_limited` outcome (nothing is dropped silently). Booking
before sleeping keeps concurrent callers fair without a lock. The clock is injected.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """Token bucket with reservations (tokens may go negative while waiters are booked)."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float]):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(now - self._updated, 0.0)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_per_s)
        self._updated = now

    def reserve(self, max_wait_s: float) -> float | None:
        """Seconds to wait before the booked token is yours (0: now), or None: over the bound."""
        self._refill()
        wait = 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate_per_s
        if wait > max_wait_s:
            return None
        self._tokens -= 1.0
        return wait

    def refund(self) -> None:
        """Give back a booked token that was not used."""
        self._refill()
        self._tokens = min(float(self.burst), self._tokens + 1.0)

    def __repr__(self) -> str:
        return f"TokenBucket(rate_per_s={self.rate_per_s}, burst={self.burst})"
