"""Retry timing: exponential backoff with full jitter, and honouring a destination's
Retry-After (capped). Pure functions of their inputs; the RNG is passed in so tests can
seed it.
"""

from __future__ import annotations

import random

from retry import full_jitter

__all__ = ["retry_delay"]


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
