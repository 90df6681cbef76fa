"""The building blocks alone: backoff, Retry-After parsing, breaker, token bucket."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from retry import full_jitter
from sinks.backoff import retry_delay
from sinks.breaker import CircuitBreaker
from sinks.delivery import DeliveryPolicy
from sinks.http import parse_retry_after
from sinks.ratelimit import TokenBucket
from tests.sinks.conftest import FakeClock


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (20, 30.0)]:
        delays = [full_jitter(attempt, 0.5, 30.0, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # it really spreads over the whole range


def test_retry_after_wins_over_backoff_but_is_capped() -> None:
    rng = random.Random(1)
    kwargs = {"base_s": 0.5, "cap_s": 30.0, "retry_after_cap_s": 60.0, "rng": rng}
    assert retry_delay(1, 12.0, **kwargs) == 12.0
    assert retry_delay(1, 600.0, **kwargs) == 60.0
    assert retry_delay(1, -3.0, **kwargs) == 0.0
    assert 0 <= retry_delay(1, None, **kwargs) <= 0.5


def test_parse_retry_after_accepts_seconds_and_http_dates() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("120", lambda: now) == 120.0
    assert parse_retry_after(" 1.5 ", lambda: now) == 1.5
    assert parse_retry_after(formatdate(now + 90, usegmt=True), lambda: now) == pytest.approx(90)
    assert parse_retry_after(formatdate(now - 90, usegmt=True), lambda: now) == 0.0
    for junk in (None, "", "soon", "nan"):
        assert parse_retry_after(junk, lambda: now) is None


def test_breaker_lifecycle() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=10, clock=clock)
    breaker.record_failure()
    breaker.record_success()  # success resets the count: failures must be consecutive
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # one trial only
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now += 10
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_a_trial_that_never_reports_is_replaced_after_a_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5, clock=clock)
    breaker.record_failure()
    clock.now += 5
    assert breaker.allow()
    assert not breaker.allow()
    clock.now += 5
    assert breaker.allow()


def test_token_bucket_bursts_refills_and_books_waits() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2.0, burst=3, clock=clock)
    assert [bucket.reserve(0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve(0.4) is None  # next token in 0.5 s
    assert bucket.reserve(0.5) == 0.5
    assert bucket.reserve(1.0) == 1.0  # booked behind the previous waiter
    clock.now += 10
    assert bucket.reserve(0) == 0.0  # refilled (capped at burst)
    bucket.refund()
    assert [bucket.reserve(0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve(0) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"max_attempts": 0},
        {"attempt_timeout_s": 0},
        {"breaker_failure_threshold": 0},
        {"backoff_base_s": -1},
    ],
)
def test_policy_refuses_nonsense(bad: dict) -> None:
    with pytest.raises(ValueError):
        DeliveryPolicy(**bad)
