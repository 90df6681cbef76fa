"""`prodmon demo`: local broker, topics, pipeline, a simulated fleet, and what came out.

Everything runs on loopback and stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from loadtest.fleet import (
    BUGS,
    Slowdown,
    error_burst,
    error_event,
    latency_traffic,
    malformed_payloads,
)
from ops.dashboard_view import dashboard_data
from ops.dashboard_view import format_text as format_dashboard
from ops.demo_alerts import Receiver, alert_lifecycle, demo_routing, replay_incident, use_receiver
from ops.rootcause import analyze_issue
from ops.rootcause import format_text as rootcause_text
from ops.sla_view import format_budgets, format_text, latest_rollups, sla_statuses
from ops.views import (
    format_alerts,
    format_dead_letters,
    format_issues,
    format_rollups,
    latest_alerts,
    latest_issues,
)
from pipeline.app import STAGE_FACTORIES, Pipeline
from pipeline.broker import LocalBroker
from pipeline.config import load_config
from pipeline.topic_reader import read_topic, send_json
from pipeline.topics import (
    ALERTS,
    COMMANDS,
    EVENTS_DLQ,
    EVENTS_RAW,
    ISSUES,
    ROLLUPS,
    SIGNALS,
    create_topics,
)


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


async def _send_events(producer: AIOKafkaProducer, topic: str, events: list[dict]) -> None:
    """Send events the way a fleet does: arrays of up to 50, keyed by service."""
    by_service: dict[str, list[dict]] = {}
    for event in events:
        by_service.setdefault(event["service"], []).append(event)
    for service, group in by_service.items():
        for i in range(0, len(group), 50):
            await producer.send(topic, orjson.dumps(group[i : i + 50]), key=service.encode())
    await producer.flush()


async def _wait_for_issues(config, predicate, timeout_s: float = 90.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    issues: list[dict] = []
    while time.monotonic() < deadline:
        issues = latest_issues(await read_topic(config.kafka, config.kafka.prefix + ISSUES))
        if predicate(issues):
            return issues
        await asyncio.sleep(1.0)
    return issues


async def _latency_incident(
    config, producer: AIOKafkaProducer, raw_topic: str, incident_span: list[int]
) -> None:
    """Ten minutes of fleet latency with a slowdown on checkout /api/pay near the end."""
    now_ms = int(time.time() * 1000)
    base = (now_ms - 600_000) // 60_000 * 60_000
    incident = Slowdown("checkout", "/api/pay", base + 480_000, base + 600_000, 12.0, 0.08)
    traffic = latency_traffic(base, 600, 100, seed=3, incidents=(incident,))
    _banner(
        f"fleet sends {len(traffic)} latency events; incident: checkout /api/pay is 12x slower "
        f"with 8% 5xx from {_hhmm(incident.start_ms)} to {_hhmm(incident.end_ms)}"
    )
    await _send_events(producer, raw_topic, traffic)
    incident_span[:] = [incident.start_ms, incident.end_ms]
    topic = config.kafka.prefix + ROLLUPS
    deadline = time.monotonic() + 60
    rollups: list[dict] = []
    while time.monotonic() < deadline:
        rollups = latest_rollups(r.value for r in await read_topic(config.kafka, topic))
        if any(r["id"] == f"checkout|/api/pay|1m|{incident.start_ms}" for r in rollups):
            break
        await asyncio.sleep(1.0)
    _banner(f"latency rollups ({len(rollups)} records on {topic}); 1 min resolution, checkout")
    print(format_rollups([r for r in rollups if r["service"] == "checkout"], "1m"))
    _banner("SLA status over the last 5 minutes of event time")
    statuses = sla_statuses(rollups, config.sla, period_ms=300_000)
    print(format_text([report for report, _ in statuses]) + format_budgets(statuses))
    await _signals_and_alerts(config)


async def _signals_and_alerts(config) -> None:
    """What the baselines and rules found, and the alerts escalation made of it."""
    await asyncio.sleep(3.0)  # the last rollups travel through baseline and escalation
    signals = [
        r.value
        for r in await read_topic(config.kafka, config.kafka.prefix + SIGNALS)
        if isinstance(r.value, dict)
    ]
    _banner(f"signals ({len(signals)}): anomalies against learned baselines and rule findings")
    for s in sorted(signals, key=lambda s: s.get("ts", 0))[:20]:
        print(f"  {_hhmm(s['ts'])} {s['state']:<8} {s['severity']:<8} {s['summary'][:110]}")
    values = (r.value for r in await read_topic(config.kafka, config.kafka.prefix + ALERTS))
    alert_values = list(values)
    _banner("alerts (demo routing: critical -> loopback webhook, escalating; others -> log)")
    print(format_alerts(latest_alerts(alert_values)))
    issues = [r.value for r in await read_topic(config.kafka, config.kafka.prefix + ISSUES)]
    rollups = [r.value for r in await read_topic(config.kafka, config.kafka.prefix + ROLLUPS)]
    data = dashboard_data(issues, alert_values, rollups, config.sla, int(time.time() * 1000))
    _banner("dashboard (prodmon dashboard --format text|json|markdown|html)")
    print(format_dashboard(data))
    top = data["top_errors"][1] if len(data["top_errors"]) > 1 else None
    if top is not None:
        latest = latest_issues(await read_topic(config.kafka, config.kafka.prefix + ISSUES))
        issue = next(i for i in latest if i["issue_id"] == top["issue_id"])
        signals = [
            v
            for v in (
                r.value for r in await read_topic(config.kafka, config.kafka.prefix + SIGNALS)
            )
            if isinstance(v, dict)
        ]
        _banner(f"root-cause hints for {top['issue_id'][:12]} (prodmon rootcause ID)")
        print(rootcause_text(analyze_issue(issue, latest, signals, rollups)))


def _hhmm(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000))


async def run_demo(events: int = 400) -> int:
    receiver = await Receiver().start()
    use_receiver(receiver)
    broker = LocalBroker()
    _banner("starting the local broker")
    broker.start()
    print(f"bootstrap={broker.bootstrap}")
    config = load_config(
        overrides={
            "kafka.bootstrap": broker.bootstrap,
            "kafka.prefix": "prodmon.",
            "fingerprint.count_interval_s": 1.0,
            "baseline.resolution": "10s",
            "baseline.warmup": 20,
        }
    )
    config.escalation = demo_routing()
    stop = asyncio.Event()
    pipeline_task: asyncio.Task | None = None
    try:
        admin = AIOKafkaAdminClient(**config.kafka.client_kwargs())
        await admin.start()
        created = await create_topics(admin, prefix=config.kafka.prefix, partitions=4)
        await admin.close()
        print(f"topics: {len(created)} created under prefix {config.kafka.prefix!r}")

        # The demo's fleet writes prodmon's own events; there is no Collector for `otlp`.
        stages = [*(n for n in STAGE_FACTORIES if n != "otlp"), "notify"]
        _banner(f"running the pipeline: {', '.join(stages)}")
        pipeline_task = asyncio.create_task(Pipeline(config, stages).run(stop))

        now_ms = int(time.time() * 1000)
        burst, per_bug = error_burst(events, seed=7, start_ms=now_ms - events * 10 - 60_000)
        bad = malformed_payloads(now_ms)
        _banner(f"fleet sends {len(burst)} error events from 4 services and {len(bad)} bad ones")
        for name, count in per_bug.items():
            print(f"  {name:<12} {count} events (line numbers and message values vary)")
        raw_topic = config.kafka.prefix + EVENTS_RAW
        producer = AIOKafkaProducer(**config.kafka.client_kwargs(), enable_idempotence=False)
        await producer.start()
        try:
            await _send_events(producer, raw_topic, burst)
            for payload, _field in bad:
                await producer.send(raw_topic, payload, key=b"checkout")
            await producer.flush()

            issues = await _wait_for_issues(
                config, lambda got: sum(i.get("count", 0) for i in got) >= len(burst)
            )
            _banner(f"issues ({len(issues)} groups for {len(BUGS)} bugs)")
            print(format_issues(issues))
            letters = [
                r.value
                for r in await read_topic(config.kafka, config.kafka.prefix + EVENTS_DLQ)
                if isinstance(r.value, dict)
            ]
            _banner(f"dead letters ({len(letters)})")
            print(format_dead_letters(letters))

            incident_span: list[int] = []
            await _latency_incident(config, producer, raw_topic, incident_span)
            await alert_lifecycle(config, receiver, _banner)

            if issues:
                top = issues[0]
                _banner(f"resolving {top['issue_id'][:12]} then the bug comes back")
                await send_json(
                    config.kafka,
                    config.kafka.prefix + COMMANDS,
                    top["issue_id"],
                    {
                        "command": "resolve",
                        "id": top["issue_id"],
                        "notes": "raised the pool size; deployed 1.4.4",
                        "author": "demo",
                        "command_id": "demo-resolve-1",
                        "ts": int(time.time() * 1000),
                    },
                )
                await _wait_for_issues(
                    config,
                    lambda got: any(
                        i["issue_id"] == top["issue_id"] and i.get("status") == "resolved"
                        for i in got
                    ),
                    timeout_s=30,
                )
                bug = next(b for b in BUGS if top.get("exception_type") == b.exception_type)
                rng = random.Random(99)
                again = [
                    error_event(bug, rng, int(time.time() * 1000) + 1000 + i, "1.4.4")
                    for i in range(3)
                ]
                await _send_events(producer, raw_topic, again)
                issues = await _wait_for_issues(
                    config,
                    lambda got: any(
                        i["issue_id"] == top["issue_id"]
                        and i.get("status") == "regressed"
                        and i.get("count", 0) >= top["count"] + len(again)
                        for i in got
                    ),
                    timeout_s=30,
                )
                print(format_issues([i for i in issues if i["issue_id"] == top["issue_id"]]))
            if incident_span:
                start, end = incident_span
                await replay_incident(config, start - 60_000, end, _banner)
        finally:
            await producer.stop()
        _banner("shutting down")
        return 0
    finally:
        stop.set()
        if pipeline_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pipeline_task, 30)
        broker.stop()
        await receiver.stop()
        print("stopped cleanly")
