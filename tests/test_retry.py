"""The one backoff (retry/): jittered, doubling, capped, reset, and cut short on stop."""

from __future__ import annotations

import asyncio
import random
import time

from retry import Backoff


def test_delays_are_jittered_within_each_doubling_step_up_to_the_cap():
    backoff = Backoff(0.5, 4.0, random.Random(3))
    steps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    delays = [backoff.next_delay() for _ in steps]
    assert all(step / 2 <= d <= step for d, step in zip(delays, steps, strict=True))
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered, not a fixed ladder
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_two_processes_that_lost_the_broker_together_do_not_retry_in_step():
    a, b = Backoff(1.0, 30.0, random.Random(1)), Backoff(1.0, 30.0, random.Random(2))
    assert [round(a.next_delay(), 3) for _ in range(5)] != [
        round(b.next_delay(), 3) for _ in range(5)
    ]


async def test_waiting_ends_early_when_stop_is_set():
    backoff = Backoff(30.0, 60.0)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()
    await backoff.wait(stop)
    assert time.monotonic() - started < 5
