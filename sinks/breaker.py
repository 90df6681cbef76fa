"""A circuit breaker for one destination: stop hammering what is down, probe it later.

closed --(N consecutive failures)--> open --(cool-down elapsed)--> half-open
half-open lets exactly one trial through: success closes, failure re-opens (cool-down
restarts). Only failures that say the destination is unhealthy count (timeouts, refused
connections, 5xx); the caller decides which. The clock is injected (monotonic seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Consecutive-failure breaker with a single half-open trial."""

    def __init__(self, failure_threshold: int, cooldown_s: float, clock: Callable[[], float]):
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self._trial_started = 0.0

    @property
    def state(self) -> BreakerState:
        """The state as of now (an open breaker whose cool-down elapsed reads half_open)."""
        if self._state == "open" and self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return self._state

    def allow(self) -> bool:
        """May a request go now? In half-open, only the first caller gets the trial."""
        state = self.state
        if state == "closed":
            return True
        if state == "open":
            return False
        if self._state == "open":  # cool-down just elapsed: this caller is the trial
            self._state = "half_open"
            self._trial_in_flight = False
        now = self._clock()
        if self._trial_in_flight and now - self._trial_started < self.cooldown_s:
            return False  # (a trial never reported back is replaced after a cool-down)
        self._trial_in_flight = True
        self._trial_started = now
        return True

    def record_success(self) -> None:
        """The destination answered: close and forget past failures."""
        self._state = "closed"
        self._failures = 0
        self._trial_in_flight = False

    def record_failure(self) -> None:
        """The destination looked unhealthy: count it; a failed trial re-opens at once."""
        self._trial_in_flight = False
        if self._state == "half_open":
            self._open()
            return
        self._failures += 1
        if self._state == "closed" and self._failures >= self.failure_threshold:
            self._open()

    def release(self) -> None:
        """The request said nothing about the destination's health (e.g. throttled)."""
        self._trial_in_flight = False

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state}, failures={self._failures})"
