"""One handler per `prodmon` command; each returns the process exit status."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable

import orjson

from ops.cli import config_from_args, run_async
from ops.views import format_dead_letters, format_issues, latest_issues
from pipeline.config import ConfigError


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def cmd_broker(args: argparse.Namespace) -> int:
    from pipeline.broker import LocalBroker

    broker = LocalBroker(port=args.port)
    stopped = False

    def _stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    broker.start()
    print(f"bootstrap={broker.bootstrap}", flush=True)
    try:
        while not stopped and broker.process is not None and broker.process.poll() is None:
            time.sleep(0.2)
    finally:
        broker.stop()
    return 0 if stopped else 1


def cmd_topics_create(args: argparse.Namespace) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    from pipeline.topics import create_topics

    config = config_from_args(args)

    async def _create() -> int:
        admin = AIOKafkaAdminClient(**config.kafka.client_kwargs())
        await admin.start()
        try:
            outcome = await create_topics(
                admin, prefix=config.kafka.prefix, partitions=config.runtime.partitions
            )
        finally:
            await admin.close()
        for topic, what in sorted(outcome.items()):
            print(f"{what:8} {topic}")
        return 0

    return run_async(_create())


def cmd_topics_show(args: argparse.Namespace) -> int:
    """The topology (schemas/topology.py): each stage, what it reads and writes."""
    from schemas.topology import render_table

    print(render_table())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.app import Pipeline, StageCrashed, parse_stage_list

    config = config_from_args(args)
    stages = parse_stage_list(args.stages, config)
    if "notify" in stages:
        from sinks.config import SinkSettings

        try:
            SinkSettings.from_env()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    async def _run() -> int:
        stop = asyncio.Event()
        install_stop_signals(stop)
        try:
            await Pipeline(config, stages).run(stop)
        except StageCrashed as exc:  # logged with its traceback as `stage_crashed`
            print(f"prodmon: {exc}; exiting so that a supervisor restarts", file=sys.stderr)
            return 70  # EX_SOFTWARE
        return 0

    return run_async(_run())


def cmd_grouping_explain(args: argparse.Namespace) -> int:
    from grouping import explain, set_token_patterns
    from schemas.events import InvalidEvent, Limits, validate_event

    set_token_patterns(config_from_args(args).fingerprint.token_patterns)
    limits = Limits()
    for number, line in enumerate(sys.stdin.buffer, start=1):
        if not line.strip():
            continue
        try:
            event = validate_event(orjson.loads(line), int(time.time() * 1000), limits)
            if event.get("schema") != "error/1":
                raise InvalidEvent("schema", "grouping explains error/1 events only")
            out = explain(event)
        except orjson.JSONDecodeError as exc:
            out = {"line": number, "error": f"$: not valid JSON ({exc})"}
        except InvalidEvent as exc:
            out = {"line": number, "error": str(exc)}
        sys.stdout.buffer.write(orjson.dumps(out) + b"\n")
    sys.stdout.flush()
    return 0


def command_record(kind: str, target: str, **fields: object) -> dict:
    """A `commands` topic record (see docs/contracts.md)."""
    return {
        "command": kind,
        "id": target,
        "command_id": uuid.uuid4().hex,
        "ts": int(time.time() * 1000),
        **fields,
    }


def command_key(target: str) -> str:
    """The Kafka key that routes a command to its target's partition: an alert id's service,
    or the issue id itself."""
    from stages.escalation import partition_key_for

    return partition_key_for(target) if ":" in target else target


def _send_command(args: argparse.Namespace, record: dict, broadcast: bool = False) -> None:
    from pipeline.topic_reader import send_json
    from pipeline.topics import COMMANDS

    config = config_from_args(args)
    topic = config.kafka.prefix + COMMANDS
    key = command_key(record["id"])
    run_async(send_json(config.kafka, topic, key, record, broadcast=broadcast))


def cmd_resolve(args: argparse.Namespace) -> int:
    author = args.author or getpass.getuser()
    record = command_record("resolve", args.id, notes=args.notes, author=author)
    _send_command(args, record)
    print(f"resolve sent for {args.id} (command {record['command_id']})")
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    author = args.author or getpass.getuser()
    record = command_record("ack", args.id, notes=args.notes, author=author)
    _send_command(args, record)
    print(f"ack sent for {args.id} (command {record['command_id']})")
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    from alerting.routing import CHANNELS

    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    unknown = [c for c in channels if c not in CHANNELS]
    if not channels or unknown:
        raise ConfigError(
            f"--channels: {', '.join(unknown) or '(none)'} not allowed "
            f"(choose from {', '.join(CHANNELS)})"
        )
    extra = {"severity": args.severity} if args.severity else {}
    record = command_record("route", args.id, channels=channels, **extra)
    _send_command(args, record)
    print(f"route sent for {args.id}: {', '.join(channels)}")
    return 0


def cmd_silence(args: argparse.Namespace) -> int:
    matchers = {}
    for item in args.match:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"--match: expected label=value (globs allowed), got {item!r}")
        matchers[key.strip()] = value.strip()
    duration_ms = parse_duration_ms(args.duration, "--for")
    now_ms = int(time.time() * 1000)
    record = command_record(
        "silence",
        "silence",
        matchers=matchers,
        starts_at=now_ms,
        ends_at=now_ms + duration_ms,
        author=args.author or getpass.getuser(),
        comment=args.comment,
    )
    # Every partition's escalation owner must know the silence: one copy per partition.
    _send_command(args, record, broadcast=True)
    print(f"silence {record['command_id']} sent: {matchers} for {args.duration}")
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    from ops.views import format_alerts, latest_alerts
    from pipeline.topic_reader import read_topic
    from pipeline.topics import ALERTS

    config = config_from_args(args)
    records = asyncio.run(read_topic(config.kafka, config.kafka.prefix + ALERTS))
    alerts = latest_alerts((r.value for r in records), status=args.status)
    if args.format == "json":
        print(orjson.dumps(alerts, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_alerts(alerts))
    return 0


def cmd_exceptions(args: argparse.Namespace) -> int:
    from pipeline.topic_reader import read_topic
    from pipeline.topics import ISSUES

    config = config_from_args(args)
    records = asyncio.run(read_topic(config.kafka, config.kafka.prefix + ISSUES))
    issues = latest_issues(records, status=args.status, service=args.service)
    if args.format == "json":
        print(orjson.dumps(issues, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_issues(issues))
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from pipeline.topic_reader import read_topic
    from pipeline.topics import EVENTS_DLQ

    config = config_from_args(args)
    records = asyncio.run(read_topic(config.kafka, config.kafka.prefix + EVENTS_DLQ))
    letters = [r.value for r in records if isinstance(r.value, dict)]
    if args.format == "json":
        print(orjson.dumps(letters, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_dead_letters(letters))
    return 0


def parse_duration_ms(text: str, option: str) -> int:
    """`90s`, `15m`, `1h`, `7d` (or plain seconds) in ms; ConfigError names the option."""
    units = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    text = text.strip().lower()
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"{option}: expected a duration like 90s, 15m, 1h or 7d, got {text!r}")
    return round(value * units[unit])


def cmd_sla(args: argparse.Namespace) -> int:
    from ops.sla_view import format_budgets, format_text, sla_statuses
    from pipeline.topic_reader import read_topic
    from pipeline.topics import ROLLUPS

    config = config_from_args(args)
    period_ms = parse_duration_ms(args.period, "--period")
    records = asyncio.run(read_topic(config.kafka, config.kafka.prefix + ROLLUPS))
    statuses = sla_statuses((r.value for r in records), config.sla, args.service, period_ms)
    if args.format == "json":
        out = [report.to_dict() | extra for report, extra in statuses]
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    elif not statuses:
        print("no rollups yet" + (f" for service {args.service}" if args.service else ""))
    else:
        print(format_text([report for report, _ in statuses]) + format_budgets(statuses))
    return 0


def cmd_anomaly_score(args: argparse.Namespace) -> int:
    from ops.anomaly_tools import score_csv

    try:
        rows = score_csv(args.csv, args.out)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--csv {args.csv}: {exc}") from None
    print(f"scored {rows} points -> {args.out}")
    return 0


def cmd_baseline_analyze(args: argparse.Namespace) -> int:
    from ops.anomaly_tools import analyze_csv

    if bool(args.csv) == bool(args.series):
        raise ConfigError("baseline analyze: give exactly one of --csv or --series")
    try:
        if args.csv:
            print(analyze_csv(args.csv, fmt=args.format))
        else:
            print(_analyze_series(args))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"baseline analyze: {exc}") from None
    return 0


def _analyze_series(args: argparse.Namespace) -> str:
    from ops.baseline_analysis import analyze, format_text
    from ops.sla_view import latest_rollups
    from pipeline.topic_reader import read_topic
    from pipeline.topics import ROLLUPS
    from stages.baseline import rollup_metrics

    config = config_from_args(args)
    records = asyncio.run(read_topic(config.kafka, config.kafka.prefix + ROLLUPS))
    rollups = sorted(
        (
            r
            for r in latest_rollups(x.value for x in records)
            if r["series"] == args.series and r["resolution"] == args.resolution
        ),
        key=lambda r: r["start"],
    )
    if not rollups:
        raise ValueError(f"no {args.resolution} rollups for series {args.series!r}")
    metrics = [rollup_metrics(r) for r in rollups]
    if args.metric not in metrics[0]:
        raise ValueError(f"--metric {args.metric!r} is not one of {', '.join(metrics[0])}")
    report = analyze([m[args.metric] for m in metrics], [r["end"] / 1000 for r in rollups])
    if args.format == "json":
        return orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode()
    return format_text(report)


def cmd_replay(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ops.replay import format_comparison, format_timeline, parse_time, replay
    from pipeline.config import load_config

    config = config_from_args(args)
    start, end = parse_time(args.start, "--from"), parse_time(args.end, "--to")
    if end <= start:
        raise ConfigError("--to: must be later than --from")
    warmup = parse_duration_ms(args.warmup, "--warmup") if args.warmup not in ("0", "0s") else 0
    configs = [config]
    if args.compare:
        configs.append(load_config(args.compare, overrides={"kafka.bootstrap": args.bootstrap}))
    timelines = run_async_value(replay(config, start, end, warmup, args.service, configs))
    if args.format == "json":
        out = [[asdict(e) for e in t] for t in timelines]
        print(orjson.dumps(out if args.compare else out[0], option=orjson.OPT_INDENT_2).decode())
        return 0
    print(format_timeline(timelines[0]))
    if args.compare:
        print(f"\n=== compared with {args.compare} ===")
        print(format_comparison(timelines[0], timelines[1]))
    return 0


def run_async_value(coro):
    return asyncio.run(coro)


def cmd_rootcause(args: argparse.Namespace) -> int:
    from ops import rootcause
    from pipeline.topic_reader import read_topic
    from pipeline.topics import ISSUES, ROLLUPS, SIGNALS

    config = config_from_args(args)

    async def _read() -> list[list]:
        return [
            await read_topic(config.kafka, config.kafka.prefix + t)
            for t in (ISSUES, SIGNALS, ROLLUPS)
        ]

    issue_records, signal_records, rollup_records = asyncio.run(_read())
    issues = latest_issues(issue_records)
    matches = [i for i in issues if str(i.get("issue_id", "")).startswith(args.id)]
    if len(matches) != 1:
        found = "no issue" if not matches else f"{len(matches)} issues"
        raise ConfigError(f"rootcause: {found} with id {args.id!r} (prodmon exceptions lists them)")
    signals = [r.value for r in signal_records if isinstance(r.value, dict)]
    rollups = [r.value for r in rollup_records if isinstance(r.value, dict)]
    analysis = rootcause.analyze_issue(matches[0], issues, signals, rollups)
    if args.format == "json":
        print(orjson.dumps(analysis, option=orjson.OPT_INDENT_2).decode())
    elif args.format == "markdown":
        print(rootcause.format_markdown(analysis))
    else:
        print(rootcause.format_text(analysis))
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    from loadtest.harness import run_loadtest
    from loadtest.report import detection_line
    from loadtest.simulator import INCIDENT_KINDS

    duration_ms = parse_duration_ms(args.duration, "--duration")
    for option, value in (
        ("--rate", args.rate),
        ("--processes", args.processes),
        ("--pipeline-processes", args.pipeline_processes),
        ("--incidents", args.incidents),
    ):
        if value < 1:
            raise ConfigError(f"{option}: must be at least 1, got {value}")
    kinds = tuple(k.strip() for k in args.incident_kinds.split(",") if k.strip())
    if not kinds or any(k not in INCIDENT_KINDS for k in kinds):
        raise ConfigError(
            f"--incident-kinds: {args.incident_kinds!r}, expected some of {INCIDENT_KINDS}"
        )
    if args.allowed_lateness < 0:
        raise ConfigError(f"--allowed-lateness: must be >= 0, got {args.allowed_lateness}")
    report = asyncio.run(
        run_loadtest(
            args.bootstrap,
            args.rate,
            duration_ms / 1000,
            processes=args.processes,
            pipeline_processes=args.pipeline_processes,
            out_dir=args.out,
            incidents=args.incidents,
            incident_kinds=kinds,
            allowed_lateness_s=args.allowed_lateness,
        )
    )
    detection = report.get("detection") or {}
    dets = report.get("detections") or {}
    summary = {
        "throughput": report.get("throughput"),
        "detection_delay_s": detection.get("delay_s"),
        "detected_by": (detection.get("first") or {}).get("alert_id"),
        "detections": {k: v for k, v in dets.items() if k != "incidents"},
        "memory": {k: v for k, v in (report.get("memory") or {}).items() if "per_series" in k},
        "notifications": report.get("notifications"),
    }
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    print(detection_line(dets))
    print(f"report: {args.out}/report.json, {args.out}/report.html")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from ops import dashboard_view as view
    from pipeline.topic_reader import read_topic
    from pipeline.topics import ALERTS, ISSUES, ROLLUPS

    config = config_from_args(args)

    async def _read() -> list[list]:
        topics = (ISSUES, ALERTS, ROLLUPS)
        return [
            [r.value for r in await read_topic(config.kafka, config.kafka.prefix + t)]
            for t in topics
        ]

    issues, alerts, rollups = asyncio.run(_read())
    data = view.dashboard_data(issues, alerts, rollups, config.sla, int(time.time() * 1000))
    renderers = {
        "text": view.format_text,
        "markdown": view.format_markdown,
        "html": view.format_html,
        "json": lambda d: orjson.dumps(d, option=orjson.OPT_INDENT_2).decode(),
    }
    print(renderers[args.format](data))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo's story goes to stdout; the pipeline's JSON logs go to a file it names."""
    import tempfile

    from ops.demo import run_demo
    from pipeline.logging import configure_logging

    path = args.log_file or os.path.join(tempfile.gettempdir(), f"prodmon-demo-{os.getpid()}.log")
    with open(path, "a", encoding="utf-8") as logs:
        configure_logging(args.log_level, stream=logs)
        print(f"prodmon demo: the pipeline's JSON logs go to {path}", flush=True)
        return run_async(run_demo(events=args.events))


def cmd_dashboard_serve(args: argparse.Namespace) -> int:
    from ops.web.app import cmd_dashboard_serve as serve

    return serve(args)


def cmd_ingest_serve(args: argparse.Namespace) -> int:
    from ops.sentry_ingest import cmd_ingest_serve as serve

    return serve(args)


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "broker": cmd_broker,
    "topics create": cmd_topics_create,
    "topics show": cmd_topics_show,
    "run": cmd_run,
    "grouping explain": cmd_grouping_explain,
    "resolve": cmd_resolve,
    "ack": cmd_ack,
    "route": cmd_route,
    "silence": cmd_silence,
    "alerts": cmd_alerts,
    "anomaly score": cmd_anomaly_score,
    "replay": cmd_replay,
    "dashboard": cmd_dashboard,
    "dashboard serve": cmd_dashboard_serve,
    "ingest serve": cmd_ingest_serve,
    "loadtest": cmd_loadtest,
    "rootcause": cmd_rootcause,
    "baseline analyze": cmd_baseline_analyze,
    "exceptions": cmd_exceptions,
    "dlq": cmd_dlq,
    "sla": cmd_sla,
    "demo": cmd_demo,
}
