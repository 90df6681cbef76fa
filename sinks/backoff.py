"""Retry timing: exponential backoff with full jitter, and honouring a destination's
Retry-After (capped). Pure functions of their inputs; the RNG is passed in so tests can
seed it.
"""

from __future__ import annotations

import random

__all__ = ["full_jitter", "retry_delay"]


def full_jitter(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Uniform in [0, min(cap, base * 2**(attempt-1))] (AWS "full jitter"); attempt >= 1."""
    ceiling = min(cap_s, base_s * (2.0 ** max(attempt - 1, 0)))
    return rng.uniform(0.0, ceiling)


def retry_delay(
    attempt: int,
    retry_after_s: float | None,
    *,
    base_s: float,
    cap_s: float,
    retry_after_cap_s: float,
    rng: random.Random,
) -> float:
    """Seconds to wait before the next attempt: what the destination asked for (at most
    `retry_after_cap_s`) when it asked, else full-jitter backoff."""
    if retry_after_s is not None:
        return min(max(retry_after_s, 0.0), retry_after_cap_s)
    return full_jitter(attempt, base_s, cap_s, rng)
