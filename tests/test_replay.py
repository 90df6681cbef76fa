"""`prodmon replay` on the real broker: an incident replayed from events.raw history in
isolation, twice with the same result, and compared against another configuration."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime

import orjson

from loadtest.fleet import Slowdown, latency_traffic
from ops.replay import replay
from pipeline.config import load_config
from tests.pipeline_helpers import make_config, send_raw

STRICT = """
[baseline]
resolution = "10s"
warmup = 20

[[rules]]
name = "cart-p50"
metric = "p50_ms"
threshold = 10
min_occurrences = 1
window_s = 60
match = { endpoint = "/api/cart" }
"""


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def batches(events: list[dict]) -> list[tuple[bytes, bytes]]:
    out = []
    for service in sorted({e["service"] for e in events}):
        mine = [e for e in events if e["service"] == service]
        out += [
            (service.encode(), orjson.dumps(mine[i : i + 200])) for i in range(0, len(mine), 200)
        ]
    return out


async def test_replay_is_isolated_repeatable_and_comparable(bootstrap, topics, tmp_path):
    live = make_config(bootstrap, topics, **{"baseline.resolution": "10s", "baseline.warmup": 20})
    now = int(time.time() * 1000)
    base = (now - 20 * 60_000) // 60_000 * 60_000
    incident = Slowdown("checkout", "/api/pay", base + 10 * 60_000, base + 13 * 60_000, 15.0, 0.1)
    events = latency_traffic(base, 14 * 60, 20, seed=11, incidents=(incident,))
    await send_raw(live, batches(events))  # history only: no live pipeline is running

    start, end = base + 9 * 60_000, base + 14 * 60_000
    strict = tmp_path / "strict.toml"
    strict.write_text(STRICT)
    other = load_config(strict, env={}, overrides={"kafka.bootstrap": bootstrap})
    first, compared = await replay(live, start, end, 9 * 60_000, None, [live, other])
    (second,) = await replay(live, start, end, 9 * 60_000, None, [live])

    def core(timeline):
        return [(e.ts, e.kind, e.what) for e in timeline]

    assert core(first) == core(second)  # the same stretch, the same timeline
    signals = [e for e in first if e.kind == "signal" and "checkout|/api/pay" in e.what]
    assert signals and min(e.ts for e in signals) >= incident.start_ms
    assert any(e.kind == "alert" and "checkout" in e.what for e in first)
    assert not any("search" in e.what and e.kind == "signal" for e in first)
    # The stricter config fires a rule the current one does not have.
    assert any("cart-p50" in e.what for e in compared)
    assert not any("cart-p50" in e.what for e in first)


def test_replay_cli_refuses_a_bad_time():
    cmd = [sys.executable, "-m", "ops.cli", "replay", "--bootstrap", "127.0.0.1:1"]
    done = subprocess.run(
        [*cmd, "--from", "yesterday", "--to", "2026-01-01T00:00:00Z"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and b"--from" in done.stderr
