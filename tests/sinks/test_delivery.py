"""The delivery machinery: retries, Retry-After, timeouts, breaker, rate limit, records."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import aiohttp
import orjson
import pytest

from sinks.base import DeliveryError, DeliveryOutcome
from sinks.delivery import Deliverer, DeliveryPolicy, RateLimit
from sinks.slack import SlackSink
from tests.sinks.conftest import FakeClock, make_alert
from tests.sinks.fakes import FakeSlack, closed_port_url


class ScriptedSink:
    """A sink that plays a script: None succeeds, an exception is raised, an Event is awaited."""

    channel = "fake"

    def __init__(self, *script: Any, destination: str = "fake-host") -> None:
        self.destination = destination
        self.script = deque(script)
        self.calls = 0

    async def send(self, alert: dict[str, Any]) -> None:
        self.calls += 1
        step = self.script.popleft() if self.script else None
        if isinstance(step, asyncio.Event):
            await step.wait()
        elif isinstance(step, BaseException):
            raise step


def unhealthy() -> DeliveryError:
    return DeliveryError("HTTP 503", retryable=True, status=503)


def _summary(outcomes: list[DeliveryOutcome]) -> list[tuple[str, bool, int]]:
    return [(o.status, o.final, o.attempts) for o in outcomes]


# --- retries ------------------------------------------------------------------------------


async def test_two_server_errors_then_success(
    session: aiohttp.ClientSession,
    slack: FakeSlack,
    deliverer_for: Callable[..., Deliverer],
    clock: FakeClock,
    outcomes: list[DeliveryOutcome],
) -> None:
    slack.fail(500, times=2)
    deliverer = deliverer_for({"slack": SlackSink(session, slack.url)}, backoff_base_s=1.0)
    outcome = await deliverer.deliver(make_alert(), "slack")

    assert (outcome.status, outcome.attempts, outcome.reason) == ("delivered", 3, None)
    assert _summary(outcomes) == [
        ("failed", False, 1),
        ("failed", False, 2),
        ("delivered", True, 3),
    ]
    assert outcomes[0].reason == "HTTP 500: internal error"
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 1.0 and 0 <= clock.sleeps[1] <= 2.0  # full jitter bounds
    assert [o.next_retry_s for o in outcomes[:2]] == [round(s, 3) for s in clock.sleeps]
    assert len(slack.received) == 1 and len(slack.hits) == 3


async def test_jitter_is_reproducible_with_a_seeded_rng(
    session: aiohttp.ClientSession,
    slack: FakeSlack,
    deliverer_for: Callable[..., Deliverer],
    clock: FakeClock,
) -> None:
    runs = []
    for _ in range(2):
        slack.fail(500, times=3)
        before = len(clock.sleeps)
        await deliverer_for({"slack": SlackSink(session, slack.url)}).deliver(make_alert(), "slack")
        runs.append(clock.sleeps[before:])
    assert runs[0] == runs[1] and len(runs[0]) == 3


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("7", 7.0), ("0", 0.0), ("3600", 60.0)],  # seconds; capped at retry_after_max_s
)
async def test_429_retry_after_seconds_is_honoured_and_capped(
    session: aiohttp.ClientSession,
    slack: FakeSlack,
    deliverer_for: Callable[..., Deliverer],
    clock: FakeClock,
    retry_after: str,
    expected: float,
) -> None:
    slack.throttle(retry_after)
    deliverer = deliverer_for({"slack": SlackSink(session, slack.url)}, retry_after_max_s=60)
    outcome = await deliverer.deliver(make_alert(), "slack")
    assert (outcome.status, outcome.attempts) == ("delivered", 2)
    assert clock.sleeps == [expected]


async def test_429_retry_after_http_date_is_honoured(
    session: aiohttp.ClientSession,
    slack: FakeSlack,
    deliverer_for: Callable[..., Deliverer],
    clock: FakeClock,
) -> None:
    slack.throttle(formatdate(time.time() + 30, usegmt=True))
    outcome = await deliverer_for({"slack": SlackSink(session, slack.url)}).deliver(
        make_alert(), "slack"
    )
    assert outcome.status == "delivered"
    [waited] = clock.sleeps
    assert 27 <= waited <= 30


async def test_timeouts_are_retried_then_given_up_with_the_reason(
    session: aiohttp.ClientSession,
    slack: FakeSlack,
    deliverer_for: Callable[..., Deliverer],
    outcomes: list[DeliveryOutcome],
) -> None:
    slack.slow(5.0, times=2)
    deliverer = deliverer_for(
        {"slack": SlackSink(session, slack.url)}, attempt_timeout_s=0.2, max_attempts=2
    )
    started = time.monotonic()
    outcome = await deliverer.deliver(make_alert(), "slack")

    assert time.monotonic() - started < 2.0
    assert (outcome.status, outcome.attempts) == ("gave_up", 2)
    assert outcome.reason == "timeout after 0.2 s"
    assert _summary(outcomes) == [("failed", False, 1), ("gave_up", True, 2)]


async def test_refused_connection_is_retryable(
    session: aiohttp.ClientSession, deliverer_for: Callable[..., Deliverer], clock: FakeClock
) -> None:
    sink = SlackSink(session, closed_port_url("/services/T/B/SECRETPATH"))
    outcome = await deliverer_for({"slack": sink}, max_attempts=3).deliver(make_alert(), "slack")
    assert (outcome.status, outcome.attempts) == ("gave_up", 3)
    assert outcome.reason == "connection failed: ClientConnectorError: Connection refused"
    assert len(clock.sleeps) == 2


async def test_non_retryable_answer_is_not_retried(
    session: aiohttp.ClientSession,
    slack: FakeSlack,
    deliverer_for: Callable[..., Deliverer],
    clock: FakeClock,
    outcomes: list[DeliveryOutcome],
) -> None:
    slack.fail(400, body="invalid_blocks")
    outcome = await deliverer_for({"slack": SlackSink(session, slack.url)}).deliver(
        make_alert(), "slack"
    )
    assert (outcome.status, outcome.attempts, outcome.reason) == (
        "failed",
        1,
        "HTTP 400: invalid_blocks",
    )
    assert clock.sleeps == [] and len(slack.hits) == 1
    assert _summary(outcomes) == [("failed", True, 1)]


async def test_give_up_budget_bounds_total_time(
    deliverer_for: Callable[..., Deliverer], clock: FakeClock
) -> None:
    sink = ScriptedSink(*(DeliveryError("busy", True, retry_after=40) for _ in range(10)))
    deliverer = deliverer_for({"fake": sink}, max_attempts=10, give_up_after_s=100)
    outcome = await deliverer.deliver(make_alert(), "fake")
    assert (outcome.status, outcome.attempts, outcome.reason) == ("gave_up", 3, "busy")
    assert clock.sleeps == [40, 40]


# --- circuit breaker ----------------------------------------------------------------------


async def test_circuit_opens_after_consecutive_failures_and_half_opens_after_cooldown(
    deliverer_for: Callable[..., Deliverer],
    clock: FakeClock,
    outcomes: list[DeliveryOutcome],
) -> None:
    sink = ScriptedSink(unhealthy(), unhealthy(), unhealthy(), unhealthy(), None)
    deliverer = deliverer_for(
        {"fake": sink}, max_attempts=1, breaker_failure_threshold=3, breaker_cooldown_s=30
    )
    for seq in range(3):
        assert (await deliverer.deliver(make_alert(seq=seq), "fake")).status == "gave_up"
    assert deliverer.breaker("fake-host").state == "open"

    skipped = await deliverer.deliver(make_alert(seq=9), "fake")
    assert (skipped.status, skipped.attempts) == ("skipped_circuit_open", 0)
    assert skipped.reason == "circuit open for fake-host"
    assert sink.calls == 3  # nothing sent while open

    clock.now += 30
    assert deliverer.breaker_states() == {"fake-host": "half_open"}
    trial = await deliverer.deliver(make_alert(seq=10), "fake")  # trial fails: open again
    assert trial.status == "gave_up" and deliverer.breaker("fake-host").state == "open"

    clock.now += 30
    assert (await deliverer.deliver(make_alert(seq=11), "fake")).status == "delivered"
    assert deliverer.breaker("fake-host").state == "closed"
    assert sink.calls == 5


async def test_half_open_lets_exactly_one_trial_through(
    deliverer_for: Callable[..., Deliverer], clock: FakeClock
) -> None:
    gate = asyncio.Event()
    sink = ScriptedSink(unhealthy(), gate, None)
    deliverer = deliverer_for(
        {"fake": sink}, max_attempts=1, breaker_failure_threshold=1, breaker_cooldown_s=10
    )
    await deliverer.deliver(make_alert(seq=1), "fake")
    clock.now += 10

    trial = asyncio.create_task(deliverer.deliver(make_alert(seq=2), "fake"))
    await asyncio.sleep(0.01)  # the trial is in flight, held by the gate
    other = await deliverer.deliver(make_alert(seq=3), "fake")
    gate.set()

    assert other.status == "skipped_circuit_open"
    assert (await trial).status == "delivered"
    assert deliverer.breaker("fake-host").state == "closed"


async def test_breaker_opens_mid_retry_and_records_the_last_error(
    session: aiohttp.ClientSession,
    slack: FakeSlack,
    deliverer_for: Callable[..., Deliverer],
) -> None:
    slack.fail(500, times=10)
    deliverer = deliverer_for(
        {"slack": SlackSink(session, slack.url)}, max_attempts=5, breaker_failure_threshold=2
    )
    outcome = await deliverer.deliver(make_alert(), "slack")
    assert (outcome.status, outcome.attempts) == ("skipped_circuit_open", 2)
    assert outcome.reason == (
        f"circuit open for 127.0.0.1:{slack.port}; last error: HTTP 500: internal error"
    )


async def test_throttling_and_refusals_do_not_open_the_breaker(
    deliverer_for: Callable[..., Deliverer],
) -> None:
    sink = ScriptedSink(
        DeliveryError("HTTP 429", True, retry_after=1, status=429),
        DeliveryError("HTTP 429", True, retry_after=1, status=429),
        None,
        DeliveryError("HTTP 400", False, status=400),
    )
    deliverer = deliverer_for({"fake": sink}, breaker_failure_threshold=1)
    assert (await deliverer.deliver(make_alert(seq=1), "fake")).status == "delivered"
    assert (await deliverer.deliver(make_alert(seq=2), "fake")).status == "failed"
    assert deliverer.breaker("fake-host").state == "closed"


# --- rate limit ---------------------------------------------------------------------------


async def test_rate_limit_waits_for_a_token_within_the_bound(
    deliverer_for: Callable[..., Deliverer], clock: FakeClock
) -> None:
    deliverer = deliverer_for(
        {"fake": ScriptedSink()},
        rate_limits={"fake": RateLimit(rate_per_s=1.0, burst=2)},
        rate_limit_max_wait_s=1.0,
    )
    results = [await deliverer.deliver(make_alert(seq=n), "fake") for n in range(3)]
    assert [r.status for r in results] == ["delivered"] * 3
    assert clock.sleeps == [1.0]  # the third waited a second for its token


async def test_rate_limit_beyond_the_bound_records_dropped_outcomes(
    deliverer_for: Callable[..., Deliverer],
    clock: FakeClock,
    outcomes: list[DeliveryOutcome],
) -> None:
    sink = ScriptedSink()
    deliverer = deliverer_for(
        {"fake": sink},
        rate_limits={"fake": RateLimit(rate_per_s=1.0, burst=2)},
        rate_limit_max_wait_s=0.5,
    )
    results = [await deliverer.deliver(make_alert(seq=n), "fake") for n in range(4)]
    assert [r.status for r in results] == ["delivered"] * 2 + ["dropped_rate_limited"] * 2
    assert results[2].attempts == 0
    assert results[2].reason == "rate limit of 1/s for fake exceeded (waited up to 0.5 s)"
    assert [o.status for o in outcomes][2:] == ["dropped_rate_limited"] * 2  # never silent
    assert sink.calls == 2 and clock.sleeps == []

    clock.now += 1.0  # a token refills
    assert (await deliverer.deliver(make_alert(seq=9), "fake")).status == "delivered"


async def test_concurrent_callers_book_tokens_in_turn() -> None:
    sink = ScriptedSink()
    deliverer = Deliverer(
        {"fake": sink},
        DeliveryPolicy(rate_limits={"fake": RateLimit(20.0, 1)}, rate_limit_max_wait_s=0.12),
    )
    started = time.monotonic()
    results = await asyncio.gather(
        *(deliverer.deliver(make_alert(seq=n), "fake") for n in range(5))
    )
    # token now, +50 ms, +100 ms; +150 ms would exceed the 120 ms bound
    assert [r.status for r in results] == ["delivered"] * 3 + ["dropped_rate_limited"] * 2
    assert 0.09 <= time.monotonic() - started < 1.0


async def test_channels_without_a_limit_are_not_limited(
    deliverer_for: Callable[..., Deliverer], clock: FakeClock
) -> None:
    deliverer = deliverer_for({"fake": ScriptedSink()}, rate_limits={"slack": RateLimit(1, 1)})
    results = [await deliverer.deliver(make_alert(seq=n), "fake") for n in range(20)]
    assert {r.status for r in results} == {"delivered"} and clock.sleeps == []


# --- records and robustness ---------------------------------------------------------------


async def test_every_attempt_is_reported_and_records_are_json_with_unique_ids(
    clock: FakeClock,
) -> None:
    seen: list[dict[str, Any]] = []

    async def write_to_deliveries(outcome: DeliveryOutcome) -> None:
        await asyncio.sleep(0)
        seen.append(orjson.loads(orjson.dumps(outcome.to_record())))

    sink = ScriptedSink(unhealthy(), unhealthy(), None)
    deliverer = Deliverer(
        {"fake": sink},
        DeliveryPolicy(rate_limits={}),
        on_outcome=write_to_deliveries,
        clock=clock,
        sleep=clock.sleep,
        now_ms=lambda: 42,
    )
    await deliverer.deliver(make_alert(), "fake")

    assert [(r["status"], r["final"], r["attempts"]) for r in seen] == [
        ("failed", False, 1),
        ("failed", False, 2),
        ("delivered", True, 3),
    ]
    assert len({r["id"] for r in seen}) == 3
    assert seen[-1]["id"] == "checkout:issue:9f2c1a|1|firing|fake|3|delivered"
    assert seen[-1] | {"elapsed_ms": 0} == {
        "id": "checkout:issue:9f2c1a|1|firing|fake|3|delivered",
        "transition_id": "checkout:issue:9f2c1a|1|firing",
        "alert_id": "checkout:issue:9f2c1a",
        "channel": "fake",
        "destination": "fake-host",
        "status": "delivered",
        "final": True,
        "attempts": 3,
        "reason": None,
        "latency_ms": 0.0,
        "elapsed_ms": 0,
        "next_retry_s": None,
        "ts": 42,
    }


async def test_deliver_never_raises(
    deliverer_for: Callable[..., Deliverer], outcomes: list[DeliveryOutcome]
) -> None:
    buggy = ScriptedSink(*[RuntimeError("token=hunter2 leaked in a message")] * 9)
    deliverer = deliverer_for({"fake": buggy})
    outcome = await deliverer.deliver(make_alert(), "fake")
    assert (outcome.status, outcome.attempts) == ("gave_up", 5)
    assert outcome.reason == "sink error: RuntimeError"  # the message is never copied
    buggy.script.clear()

    missing = await deliverer.deliver(make_alert(), "slack")
    assert (missing.status, missing.reason) == ("failed", "no sink configured for channel 'slack'")

    weird = await deliverer.deliver({"garbage": object()}, "fake")  # a sink may cope
    assert weird.status == "delivered"
    nothing = await deliverer.deliver(None, "fake")  # type: ignore[arg-type]
    assert (nothing.status, nothing.reason) == ("failed", "not an alert record")

    def broken_callback(_: DeliveryOutcome) -> None:
        raise ValueError("callback down")

    flaky = Deliverer(
        {"fake": ScriptedSink(unhealthy())},
        DeliveryPolicy(rate_limits={}),
        on_outcome=broken_callback,
        sleep=FakeClock().sleep,
    )
    assert (await flaky.deliver(make_alert(), "fake")).status == "delivered"


async def test_unexpected_sink_exception_is_retried_with_its_reason(
    deliverer_for: Callable[..., Deliverer], outcomes: list[DeliveryOutcome]
) -> None:
    sink = ScriptedSink(LookupError("unknown encoding: bogus"), None)
    deliverer = deliverer_for({"fake": sink})
    outcome = await deliverer.deliver(make_alert(), "fake")

    assert (outcome.status, outcome.attempts, sink.calls) == ("delivered", 2, 2)
    assert _summary(outcomes) == [("failed", False, 1), ("delivered", True, 2)]
    assert outcomes[0].reason == "sink error: LookupError"
    assert deliverer.breaker_states() == {"fake-host": "closed"}
