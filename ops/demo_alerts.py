"""The demo's alert story: a loopback receiver, escalation, ack, resolve, and a replay.

Kept apart from ops/demo.py so each file tells one part of the demo.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from alerting.routing import Route, RoutingConfig
from ops.replay import format_timeline, replay
from pipeline.config import Config
from pipeline.topic_reader import read_topic, send_json
from pipeline.topics import ALERTS, COMMANDS
from stages.escalation import partition_key_for

DEMO_SECRET = "demo-webhook-secret-0123456789"
ESCALATE_AFTER_S = 12.0


class Receiver:
    """A loopback webhook endpoint that prints each notification as it lands."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        alert = orjson.loads(await request.read())
        self.received.append(alert)
        members = (alert.get("group") or {}).get("alerts") or []
        listed = f" in one message with {len(members) - 1} more" if len(members) > 1 else ""
        print(
            f"  >> receiver got [{alert['transition']}] {alert['severity']}: "
            f"{alert.get('title') or alert['alert_id']}{listed}",
            flush=True,
        )
        return web.json_response({"ok": True})


def demo_routing() -> RoutingConfig:
    """Critical alerts page the loopback receiver and escalate quickly; the rest are logged."""
    page = Route(
        {"severity": "critical"},
        ("webhook",),
        ESCALATE_AFTER_S,
        levels=(("webhook",), ("webhook", "log")),
    )
    # A service's new alerts within 2 s of each other go out as one message per channel.
    return RoutingConfig(routes=(page, Route({}, ("log",), 3600.0)), group_wait_s=2.0)


def use_receiver(receiver: Receiver) -> None:
    """Point the notifier's webhook sink at the receiver (secrets come from the env)."""
    os.environ["PRODMON_WEBHOOK_URL"] = receiver.url
    os.environ["PRODMON_WEBHOOK_SECRET"] = DEMO_SECRET


async def _wait(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not predicate():
        await asyncio.sleep(0.5)
    return predicate()


async def alert_lifecycle(config: Config, receiver: Receiver, banner: Callable[[str], None]):
    """Let one critical alert escalate, then acknowledge and resolve it by command."""
    await _wait(lambda: bool(receiver.received), 30)
    if not receiver.received:
        print("  (no critical alert reached the receiver)")
        return
    alert_id = receiver.received[0]["alert_id"]
    banner(f"nobody acknowledges {alert_id}: it escalates after {ESCALATE_AFTER_S:.0f} s")

    def transitions() -> list[str]:
        return [a["transition"] for a in receiver.received if a["alert_id"] == alert_id]

    await _wait(lambda: "escalated" in transitions(), ESCALATE_AFTER_S + 20)
    topic = config.kafka.prefix + COMMANDS
    banner(f"prodmon ack {alert_id}")
    command = {"command": "ack", "id": alert_id, "author": "demo", "ts": int(time.time() * 1000)}
    await send_json(config.kafka, topic, partition_key_for(alert_id), command)
    await _wait(lambda: "acknowledged" in transitions(), 20)
    banner(f"prodmon resolve {alert_id} --notes 'rolled back 1.4.3'")
    command = {
        "command": "resolve",
        "id": alert_id,
        "notes": "rolled back 1.4.3",
        "author": "demo",
        "ts": int(time.time() * 1000),
    }
    await send_json(config.kafka, topic, partition_key_for(alert_id), command)
    await _wait(lambda: "resolved" in transitions(), 20)
    history = [
        r.value
        for r in await read_topic(config.kafka, config.kafka.prefix + ALERTS)
        if isinstance(r.value, dict) and r.value.get("alert_id") == alert_id
    ]
    print(f"  {alert_id}: " + " -> ".join(a["transition"] for a in history))


async def replay_incident(
    config: Config, start_ms: int, end_ms: int, banner: Callable[[str], None]
) -> None:
    """Replay the incident's stretch in isolation and print the first lines of its timeline."""
    banner("prodmon replay of the incident (isolated topics, notifications in dry run)")
    (timeline,) = await replay(config, start_ms, end_ms, 8 * 60_000, "checkout", [config])
    lines = format_timeline(timeline).splitlines()
    print("\n".join(lines[:18]) + (f"\n  ... {len(lines) - 18} more" if len(lines) > 18 else ""))
