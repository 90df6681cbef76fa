"""The `prodmon` command line: parse arguments, build the config, hand off to one command.

Bad arguments and bad config values exit with status 2 and a message naming the
option or key; nothing here prints a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from pipeline.config import Config, ConfigError, load_config
from schemas.topology import STAGES


def _kafka_options(parser: argparse.ArgumentParser, *, bootstrap_required: bool = False) -> None:
    parser.add_argument(
        "--bootstrap", help="Kafka bootstrap servers host:port[,host:port] (env PRODMON_BOOTSTRAP)"
    )
    parser.add_argument("--prefix", help="topic prefix (default 'prodmon.'; env PRODMON_PREFIX)")
    parser.add_argument("--config", help="prodmon.toml configuration file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prodmon", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("broker", help="run the local Kafka-protocol broker on 127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="port (a free one when omitted)")

    p = sub.add_parser("topics", help="manage the pipeline's topics")
    topics_sub = p.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = topics_sub.add_parser("create", help="create every topic (idempotent)")
    _kafka_options(create)
    create.add_argument("--partitions", type=int, help="partitions per topic (default 4)")
    topics_sub.add_parser("show", help="the topology: each stage, the topics it reads and writes")

    p = sub.add_parser("run", help="run pipeline stages until SIGTERM/SIGINT")
    _kafka_options(p)
    p.add_argument(
        "--stages",
        default="all",
        help=f"all, or a comma list of: {', '.join(s.name for s in STAGES)} "
        "(`prodmon topics show` says what each reads and writes)",
    )

    p = sub.add_parser("grouping", help="explain error grouping")
    grouping_sub = p.add_subparsers(dest="grouping_command", required=True, metavar="ACTION")
    explain = grouping_sub.add_parser(
        "explain",
        help="read error events as JSON lines on stdin, write fingerprints (current and "
        "previous grouping version) and the variable tokens with their class",
    )
    explain.add_argument(
        "--config", help="prodmon.toml whose [fingerprint] token_patterns add token classes"
    )

    p = sub.add_parser("resolve", help="resolve an issue (or alert) by id, with notes")
    p.add_argument("id", help="issue fingerprint or alert id")
    p.add_argument("--notes", default="", help="resolution notes")
    p.add_argument("--author", default=None, help="who resolved it (default: $USER)")
    _kafka_options(p)

    p = sub.add_parser("ack", help="acknowledge an alert (stops its escalation)")
    p.add_argument("id", help="alert id")
    p.add_argument("--notes", default="", help="notes")
    p.add_argument("--author", default=None, help="who acknowledged it (default: $USER)")
    _kafka_options(p)

    p = sub.add_parser("route", help="re-send an alert to other channels (manual re-alert)")
    p.add_argument("id", help="alert id")
    p.add_argument("--channels", required=True, help="comma list: slack,email,pagerduty,...")
    p.add_argument("--severity", default=None, help="new severity for later escalation")
    _kafka_options(p)

    p = sub.add_parser("silence", help="mute alerts whose labels match, for a while")
    p.add_argument("--match", action="append", required=True, help="label=glob (repeatable)")
    p.add_argument("--for", dest="duration", default="2h", help="how long, e.g. 30m, 2h")
    p.add_argument("--comment", default="", help="why")
    p.add_argument("--author", default=None, help="who (default: $USER)")
    _kafka_options(p)

    p = sub.add_parser("alerts", help="list alerts and their state")
    _kafka_options(p)
    p.add_argument("--status", help="firing, acknowledged or resolved")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = sub.add_parser("anomaly", help="offline anomaly tools")
    anomaly_sub = p.add_subparsers(dest="anomaly_command", required=True, metavar="ACTION")
    score = anomaly_sub.add_parser(
        "score", help="score a timestamp,value CSV with the pipeline's detector"
    )
    score.add_argument("--csv", required=True, help="input CSV with header timestamp,value")
    score.add_argument("--out", required=True, help="output CSV: timestamp,value,anomaly_score")

    p = sub.add_parser("baseline", help="baseline analysis of a metric CSV")
    baseline_sub = p.add_subparsers(dest="baseline_command", required=True, metavar="ACTION")
    analyze = baseline_sub.add_parser(
        "analyze", help="statistics, thresholds, outliers, anomalies and stability"
    )
    analyze.add_argument("--csv", help="input CSV with header timestamp,value")
    analyze.add_argument("--series", help="or a series from the rollups topic, e.g. 'checkout|*'")
    analyze.add_argument("--metric", default="p99_ms", help="rollup metric (with --series)")
    analyze.add_argument("--resolution", default="1m", help="rollup resolution (with --series)")
    analyze.add_argument("--format", choices=("text", "json"), default="text")
    _kafka_options(analyze)

    p = sub.add_parser("replay", help="re-run a stretch of events.raw in isolation (dry run)")
    _kafka_options(p)
    p.add_argument("--from", dest="start", required=True, help="ISO-8601 start (UTC default)")
    p.add_argument("--to", dest="end", required=True, help="ISO-8601 end")
    p.add_argument("--service", help="only this service's events")
    p.add_argument("--warmup", default="1h", help="history before --from to warm state")
    p.add_argument("--compare", help="a second config (TOML) to replay and compare with")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = sub.add_parser("rootcause", help="root-cause hints for an issue (patterns, similar, when)")
    p.add_argument("id", help="issue id (fingerprint; a unique prefix is enough)")
    _kafka_options(p)
    p.add_argument("--format", choices=("text", "json", "markdown"), default="text")

    p = sub.add_parser("loadtest", help="simulated fleet + pipeline; report throughput, lag, delay")
    p.add_argument("--bootstrap", help="an existing cluster (default: a local broker)")
    p.add_argument("--rate", type=int, default=20_000, help="events/s the fleet sends")
    p.add_argument("--duration", default="60s", help="how long, e.g. 60s, 5m")
    p.add_argument("--processes", type=int, default=1, help="fleet producer processes")
    p.add_argument("--pipeline-processes", type=int, default=1, help="pipeline processes")
    p.add_argument(
        "--incidents", type=int, default=8, help="staggered incidents (1: the single default)"
    )
    p.add_argument(
        "--incident-kinds", default="slowdown,errors,outage", help="kinds the incidents cycle"
    )
    p.add_argument("--allowed-lateness", type=float, default=2.0, help="windows.allowed_lateness_s")
    p.add_argument("--out", default="loadtest-report", help="report directory")

    p = sub.add_parser("dashboard", help="dashboard from the topics; serve: the live one")
    _kafka_options(p)
    p.add_argument("--format", choices=("text", "json", "markdown", "html"), default="text")
    # `prodmon dashboard serve`: the live web dashboard (ops/web, docs/dashboard.md)
    dashboard_sub = p.add_subparsers(dest="dashboard_command", metavar="[serve]")
    serve = dashboard_sub.add_parser("serve", help="the live web dashboard (aiohttp, SSE)")
    for flag, text in (
        ("--bootstrap", "Kafka bootstrap servers host:port[,host:port] (env PRODMON_BOOTSTRAP)"),
        ("--prefix", "topic prefix (default 'prodmon.'; env PRODMON_PREFIX)"),
        ("--config", "prodmon.toml configuration file"),
    ):  # SUPPRESS: values given before `serve` are kept
        serve.add_argument(flag, default=argparse.SUPPRESS, help=text)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=8080, help="port (0 = a free one)")

    p = sub.add_parser("ingest", help="HTTP ingest endpoints that write to events.raw")
    ingest_sub = p.add_subparsers(dest="ingest_command", required=True, metavar="ACTION")
    serve = ingest_sub.add_parser("serve", help="the Sentry-compatible endpoint (docs/ingest.md)")
    _kafka_options(serve)
    serve.add_argument("--host", help="address to bind (default: [sentry] host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: [sentry] port, 9000; 0 = free)")

    p = sub.add_parser("exceptions", help="list issues (grouped exceptions) from the topics")
    _kafka_options(p)
    p.add_argument("--status", help="new, active, resolved or regressed")
    p.add_argument("--service", help="only issues seen in this service")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = sub.add_parser("sla", help="SLA status, error budget and burn rates per service")
    _kafka_options(p)
    p.add_argument("--service", help="only this service")
    p.add_argument("--period", default="1h", help="evaluation period, e.g. 15m, 1h, 24h")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = sub.add_parser("dlq", help="list dead letters with their reasons")
    _kafka_options(p)
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = sub.add_parser("demo", help="broker + pipeline + simulated fleet with an incident")
    p.add_argument("--events", type=int, default=400, help="error events to simulate")
    p.add_argument("--log-file", help="where the JSON logs go (default: a file in the temp dir)")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    overrides = {
        "kafka.bootstrap": getattr(args, "bootstrap", None),
        "kafka.prefix": getattr(args, "prefix", None),
        "runtime.partitions": getattr(args, "partitions", None),
    }
    return load_config(getattr(args, "config", None), overrides=overrides)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from pipeline.logging import configure_logging

    configure_logging(args.log_level)
    from ops import commands

    try:
        handler = commands.HANDLERS[_command_name(args)]
        return handler(args) or 0
    except ConfigError as exc:
        print(f"prodmon: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _command_name(args: argparse.Namespace) -> str:
    for sub in (
        "topics_command",
        "grouping_command",
        "anomaly_command",
        "baseline_command",
        "dashboard_command",
        "ingest_command",
    ):
        if getattr(args, sub, None):
            return f"{args.command} {getattr(args, sub)}"
    return args.command


def run_async(coro) -> int:
    return asyncio.run(coro) or 0


if __name__ == "__main__":
    sys.exit(main())
