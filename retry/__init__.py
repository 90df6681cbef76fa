"""Retry timing shared by every part of prodmon that waits before trying again: the stage
runners and the notifier reconnecting to a broker, the dashboard's feed, the SDK, and the
sinks' delivery retries. One jittered exponential backoff, so that many processes (or
stages) that lost the same broker do not all come back at the same moment.

Pure timing: the RNG is passed in (tests seed it) and nothing here does I/O except
`Backoff.wait`, which sleeps on the caller's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

__all__ = ["Backoff", "full_jitter"]


def full_jitter(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Uniform in [0, min(cap, base * 2**(attempt-1))] (AWS "full jitter"); attempt >= 1."""
    ceiling = min(cap_s, base_s * (2.0 ** max(attempt - 1, 0)))
    return rng.uniform(0.0, ceiling)


class Backoff:
    """Exponential backoff with equal jitter, capped, reset after a success: each wait is
    uniform between half and all of the current step, and the step doubles up to `maximum`
    (half the step keeps a floor, so a reconnect loop never spins)."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial, self.maximum, self.current = initial, maximum, initial
        self._rng = rng or random.Random()

    def reset(self) -> None:
        self.current = self.initial

    def next_delay(self) -> float:
        """The delay to wait now; the step after it doubles (up to the cap)."""
        delay = self._rng.uniform(self.current / 2, self.current)
        self.current = min(self.current * 2, self.maximum)
        return delay

    async def wait(self, stop: asyncio.Event) -> None:
        """Wait the next delay, or less if `stop` is set meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.next_delay())
