"""Configuration: a TOML file, then environment overrides, validated at start-up.

Each `[section]` is a typed msgspec struct; the layers (defaults < file < environment <
CLI flags) are merged as plain data and converted once with `msgspec.convert`, so a value
of the wrong type or an unknown key is refused with a `ConfigError` naming its full key
path (`runtime.max_batch_records: expected int, got 'many'`). `validate` then checks
ranges and choices that types cannot express. The nested tables with their own parsers
(`[sla]`, `[escalation]`, `[[rules]]`, `[sentry.projects]`) name their keys the same way.
Secrets (SASL passwords) come only from the environment and are never printed:
`Config.redacted()` is what logs show.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar, get_type_hints
from urllib.parse import urlsplit

import msgspec

from alerting.routing import RoutingConfig, RoutingConfigError
from detection.rules import DEFAULT_RULES, Rule, RulesConfigError, parse_rules
from pipeline.topics import DEFAULT_PREFIX
from schemas.sentry import parse_projects
from sla import SLAConfig, SLAConfigError

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SECRET_KEYS = frozenset({"sasl_plain_password"})


class Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One `[section]` of the configuration: typed fields with their defaults."""


class KafkaConfig(Section):
    """Connection settings passed through to every aiokafka client."""

    bootstrap: str = "127.0.0.1:9092"
    prefix: str = DEFAULT_PREFIX
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    # Environment only (PRODMON_KAFKA__SASL_PLAIN_PASSWORD); never in repr or logs.
    sasl_plain_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    client_id: str = "prodmon"

    def __repr__(self) -> str:  # the password never reaches a repr, a log or a traceback
        shown = msgspec.structs.replace(self, sasl_plain_password=None)
        return "KafkaConfig" + repr(msgspec.structs.astuple(shown))

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by AIOKafkaProducer/Consumer/AdminClient."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        if self.security_protocol.startswith("SASL"):
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_plain_username
            kwargs["sasl_plain_password"] = self.sasl_plain_password
        if self.security_protocol.endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            kwargs["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        return kwargs


class RuntimeConfig(Section):
    """How the stage runner polls, batches and backs off."""

    max_batch_records: int = 5000
    # Encoded output (records and changelog) that may wait for the broker's acks, in flight
    # or queued, before the loop waits for all of it: the bound on what a close of many
    # series holds in memory (docs/memory.md).
    max_unacked_bytes: int = 16 * 1024 * 1024
    poll_timeout_ms: int = 200
    tick_interval_s: float = 1.0
    partitions: int = 4
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    session_timeout_ms: int = 10000
    heartbeat_interval_ms: int = 3000
    # How long the broker may hold a fetch when there is no data: bounds the added delay
    # per hop for quiet topics (signals, alerts), at the cost of more idle fetches.
    fetch_max_wait_ms: int = 50
    # Python's gen-0 GC threshold for pipeline processes (0 keeps the interpreter's
    # default). Decoded events are short-lived; frequent full collections walking a
    # large heap cost ~25 % of throughput in the benchmark.
    gc_gen0_threshold: int = 50_000


class IngestSection(Section):
    max_message_bytes: int = 1_048_576
    max_text_len: int = 8192
    max_context_depth: int = 8
    max_duration_ms: float = 3_600_000.0
    future_tolerance_s: float = 300.0
    dedup_max_ids: int = 200_000
    dedup_window_s: float = 600.0


class OtlpSection(Section):
    """OpenTelemetry traces and logs from the Collector's Kafka exporter (stages/otlp_ingest.py,
    docs/ingest.md). Topics are read as named, without the prefix; both empty or absent from
    the cluster: no `otlp` stage."""

    # The Collector's default topic names; "" turns one off. A configured topic that does not
    # exist when the pipeline starts is not read (pipeline/app.py, docs/ingest.md).
    traces_topic: str = "otlp_spans"
    logs_topic: str = "otlp_logs"
    encoding: str = "otlp_proto"  # or "otlp_json"
    traces_encoding: str = ""  # "" = `encoding`
    logs_encoding: str = ""  # "" = `encoding`
    span_kinds: tuple[str, ...] = ("server", "consumer")
    error_severity: str = "ERROR"  # log records at or above it are errors
    # In-app path rules: a frame whose filename contains, or module starts with, an entry.
    in_app_include: tuple[str, ...] = ()
    in_app_exclude: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.traces_topic or self.logs_topic)


class FingerprintSection(Section):
    count_interval_s: float = 10.0
    # The user's own variable token classes, {class name: regex} ([fingerprint.token_patterns]
    # in TOML, a JSON object in PRODMON_FINGERPRINT__TOKEN_PATTERNS): what a pattern matches
    # becomes <name> in message templates (docs/grouping.md). Every process of a deployment
    # must use the same patterns.
    # Values are checked by `_validate_token_patterns` (a regex each, errors naming the class).
    token_patterns: dict[str, Any] = msgspec.field(default_factory=dict)


class WindowsSection(Section):
    """Latency windows: see stages/windows.py."""

    window_s: float = 10.0
    rollup_resolutions_s: tuple[float, ...] = (60.0, 3600.0)
    allowed_lateness_s: float = 5.0
    idle_flush_s: float = 30.0
    hdr_digits: int = 2
    hdr_highest_us: int = 3_600_000_000
    # Early evaluation of threshold rules on open windows (stages/early.py): how often per
    # partition (wall time; 0 turns it off) and how many events a rate, mean or percentile
    # needs first.
    early_eval_s: float = 1.0
    early_min_events: int = 50
    # No longer used: ingest always keeps partial windows and the windows stage merges them
    # (two-phase windowing, docs/windows.md), as fast as the fused stage was for any keying.
    # Accepted so that configurations that set it still load; ignored.
    fused: bool = False
    # Cardinality limits per input partition (stages/cardinality.py; 0 = no limit): series
    # over them are counted in `service|(other)` (or `(other)|(other)`), with one warning
    # signal; a series idle this long (event time) is forgotten.
    max_services: int = 10_000
    max_series_per_service: int = 1_000
    series_idle_s: float = 7200.0
    # A close of many series is handed to the runtime this many series at a time (their
    # rollups, then their changelog writes), each part produced before the next is made:
    # what a close holds at once (docs/memory.md).
    close_part_series: int = 4096


class BaselineSection(Section):
    """The baseline stage and its detector (see stages/baseline.py, detection/detector.py)."""

    resolution: str = "1m"
    metrics: tuple[str, ...] = ("p50_ms", "p99_ms", "error_rate_pct", "throughput_rps")
    learn_issue_rates: bool = True
    anomaly_severity: str = "medium"
    resolve_after_s: float = 300.0
    # Series and issues with no data this long (event time) and nothing firing are
    # forgotten (0 = never).
    idle_expiry_s: float = 86_400.0
    warmup: int = 30
    threshold_z: float = 4.0
    min_occurrences: int = 2
    evaluation_window: int = 5
    cooldown: int = 150  # points; the detector's default (detection/detector.py), tuned on NAB
    # Keep the built-in rules (the default thresholds) beside [[rules]]; a rule of the same
    # name replaces a built-in one.
    default_rules: bool = True


class NotifySection(Section):
    """The notifier (pipeline/notifier.py). Destinations and secrets come from the
    environment only (docs/sinks.md)."""

    dry_run: bool = False  # record what would be sent, send nothing
    concurrency: int = 8  # deliveries in flight at once per channel
    max_attempts: int = 5
    attempt_timeout_s: float = 10.0
    give_up_after_s: float = 300.0
    backoff_base_s: float = 0.5


class HealthSection(Section):
    """Health probes and /metrics (pipeline/health.py, docs/health.md)."""

    port: int = 0  # 0 = no health server
    host: str = "127.0.0.1"
    max_lag: int = 10_000
    max_lag_unhealthy: int = 1_000_000
    check_timeout_s: float = 2.0


class DashboardSection(Section):
    """The web dashboard (ops/web, docs/dashboard.md). Its token comes from the environment
    only (PRODMON_DASHBOARD_TOKEN)."""

    # Reverse proxies (addresses or CIDR networks) whose X-Forwarded-Proto/-For are believed:
    # a request they forward with `X-Forwarded-Proto: https` came over TLS. Empty: none.
    trusted_proxies: tuple[str, ...] = ()
    # Where people reach the dashboard (`https://prodmon.example.com`): every notification
    # then links to the alert, issue and service pages there (sinks/links.py). Empty: none.
    external_url: str = ""


class SentrySection(Section):
    """The Sentry-compatible ingest endpoint (ops/sentry_ingest.py, docs/ingest.md). Its
    `[sentry.projects.<id>]` keys are never logged: `Config.redacted()` only counts them."""

    host: str = "127.0.0.1"
    port: int = 9000
    rate_limit_per_s: float = 0.0  # events per second for the process; 0 = no limit
    max_body_bytes: int = 20 * 1024 * 1024  # as sent (compressed)
    max_decompressed_bytes: int = 100 * 1024 * 1024
    produce_timeout_s: float = 10.0  # no ack by then: 429, the SDK sends again later
    retry_after_s: int = 10  # Retry-After when Kafka is unavailable
    projects: Any = msgspec.field(default_factory=dict)  # id -> schemas.sentry.Project


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    kafka: KafkaConfig = msgspec.field(default_factory=KafkaConfig)
    runtime: RuntimeConfig = msgspec.field(default_factory=RuntimeConfig)
    ingest: IngestSection = msgspec.field(default_factory=IngestSection)
    otlp: OtlpSection = msgspec.field(default_factory=OtlpSection)
    fingerprint: FingerprintSection = msgspec.field(default_factory=FingerprintSection)
    windows: WindowsSection = msgspec.field(default_factory=WindowsSection)
    notify: NotifySection = msgspec.field(default_factory=NotifySection)
    health: HealthSection = msgspec.field(default_factory=HealthSection)
    dashboard: DashboardSection = msgspec.field(default_factory=DashboardSection)
    # Parsed from the nested [sla] table (see sla/), not flat keys.
    sla: SLAConfig = msgspec.field(default_factory=SLAConfig)
    baseline: BaselineSection = msgspec.field(default_factory=BaselineSection)
    # Parsed from [[rules]] tables (see detection/rules.py); includes the defaults.
    rules: tuple[Rule, ...] = DEFAULT_RULES
    # Parsed from the nested [escalation] table (see alerting/routing.py).
    escalation: RoutingConfig = msgspec.field(default_factory=RoutingConfig)
    sentry: SentrySection = msgspec.field(default_factory=SentrySection)

    def redacted(self) -> dict[str, Any]:
        """The config as plain data with every secret replaced, safe to log or print."""
        data: dict[str, Any] = {
            name: msgspec.structs.asdict(getattr(self, name)) for name in SECTIONS
        }
        data["sla"] = asdict(self.sla)
        data["rules"] = [rule.name for rule in self.rules]
        data["escalation"] = {"routes": len(self.escalation.routes)}
        data["sentry"]["projects"] = {
            pid: {"service": p.service, "env": p.env, "keys": len(p.keys)}
            for pid, p in self.sentry.projects.items()
        }
        for section in data.values():
            if not isinstance(section, dict):
                continue
            for key in SECRET_KEYS & section.keys():
                if section[key]:
                    section[key] = "***"
        return data


# The flat `[section]` tables, converted by msgspec; sla, rules and escalation have parsers
# of their own (nested tables), so they are not in this list.
SECTIONS: dict[str, type[Section]] = {
    name: kind
    for name, kind in get_type_hints(Config).items()
    if isinstance(kind, type) and issubclass(kind, Section)
}
# How a wrong type is described where msgspec's type name would not help.
_EXPECTED = {"fingerprint.token_patterns": "expected a table of class name = regular expression"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _field_type(section: str, key: str) -> Any:
    return get_type_hints(SECTIONS[section])[key]


def _from_env(section: str, key: str, raw: str) -> Any:
    """An environment string as the TOML value it stands for: comma lists for tuples,
    yes/no for booleans, JSON for tables, "" for an optional value left unset."""
    kind = _field_type(section, key)
    text = str(kind)
    if kind is bool and raw.strip().lower() in (*_TRUE, *_FALSE):
        return raw.strip().lower() in _TRUE
    if text.startswith("dict["):
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise ConfigError(
                f"{section}.{key}: expected a JSON object, got {raw[:60]!r}"
            ) from None
    if raw == "" and "None" in text:
        return None
    return raw


def _put(layers: dict[str, dict[str, Any]], section: str, key: str, raw: Any, origin: str) -> None:
    """Record one value for `section.key`, refusing unknown names and secrets in files."""
    if section not in SECTIONS:
        allowed = ", ".join([*SECTIONS, "sla", "rules", "escalation"])
        raise ConfigError(f"{origin}{section}: unknown section (allowed: {allowed})")
    known = msgspec.structs.fields(SECTIONS[section])
    if key not in {f.name for f in known}:
        allowed = ", ".join(f.name for f in known)
        raise ConfigError(f"{origin}{section}.{key}: unknown key (allowed: {allowed})")
    if key in SECRET_KEYS and origin != "env ":
        raise ConfigError(
            f"{section}.{key}: secrets are read from the environment only "
            f"(PRODMON_{section.upper()}__{key.upper()}), never from a file"
        )
    if origin == "env " and isinstance(raw, str):
        raw = _from_env(section, key, raw)
    if str(_field_type(section, key)).startswith("tuple[") and isinstance(raw, str):
        raw = raw.split(",") if raw.strip() else []  # "a, b" for a list, as env gives it
    if isinstance(raw, list):
        raw = [item.strip() if isinstance(item, str) else item for item in raw]
    layers.setdefault(section, {})[key] = raw


def _convert(layers: dict[str, dict[str, Any]]) -> Config:
    """The merged layers as typed sections; a wrong type names its full key path."""
    try:
        return msgspec.convert(layers, Config, strict=False)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).rpartition(" - at ")
        path = where.strip("`").removeprefix("$.")
        section, _, rest = path.partition(".")
        key, _, index = rest.partition("[")
        raw = layers.get(section, {}).get(key)
        if index.rstrip("]").isdigit() and isinstance(raw, list):
            raw = raw[int(index.rstrip("]"))]
        expected = message.partition(", got ")[0].replace("`", "").replace("Expected", "expected")
        expected = _EXPECTED.get(path, expected.replace("array", "a list"))
        raise ConfigError(f"{path}: {expected}, got {raw!r}") from None


ENV_SHORTCUTS = {
    "PRODMON_BOOTSTRAP": ("kafka", "bootstrap"),
    "PRODMON_PREFIX": ("kafka", "prefix"),
    "PRODMON_PARTITIONS": ("runtime", "partitions"),
}


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the config: defaults < TOML file < environment < explicit overrides (CLI flags).

    Environment keys: the shortcuts `PRODMON_BOOTSTRAP`, `PRODMON_PREFIX`, `PRODMON_PARTITIONS`,
    and `PRODMON_<SECTION>__<KEY>` for any key (e.g. `PRODMON_RUNTIME__MAX_BATCH_RECORDS`).
    `overrides` uses dotted keys ("kafka.bootstrap").
    """
    layers: dict[str, dict[str, Any]] = {}
    sla_table: dict[str, Any] = {}
    escalation_table: dict[str, Any] = {}
    rule_tables: list[Any] = []
    sentry_projects: Any = None
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: invalid TOML ({exc})") from None
        for section, values in data.items():
            if section == "rules":
                if not isinstance(values, list):
                    raise ConfigError("rules: expected [[rules]] tables (an array of tables)")
                rule_tables = values
                continue
            if not isinstance(values, dict):
                raise ConfigError(f"{section}: expected a [{section}] table")
            if section == "sla":
                sla_table.update(values)
                continue
            if section == "escalation":
                escalation_table.update(values)
                continue
            if section == "sentry":
                values = dict(values)
                sentry_projects = values.pop("projects", None)
            for key, raw in values.items():
                _put(layers, section, key, raw, "")
    env = os.environ if env is None else env
    for name, value in env.items():
        if name in ENV_SHORTCUTS:
            _put(layers, *ENV_SHORTCUTS[name], value, "env ")
        elif name.startswith("PRODMON_SLA__"):
            sla_table[name[len("PRODMON_SLA__") :].lower()] = _env_number(name, value)
        elif name.startswith("PRODMON_") and "__" in name:
            section, _, key = name[len("PRODMON_") :].lower().partition("__")
            _put(layers, section, key, value, "env ")
    for dotted, value in (overrides or {}).items():
        if value is not None:
            section, _, key = dotted.partition(".")
            _put(layers, section, key, value, "")
    config = _convert(layers)
    try:
        config.sla = SLAConfig.from_mapping(sla_table)
        config.rules = parse_rules(rule_tables, keep_defaults=config.baseline.default_rules)
        config.escalation = RoutingConfig.from_mapping(escalation_table)
    except (SLAConfigError, RulesConfigError, RoutingConfigError) as exc:
        raise ConfigError(str(exc)) from None
    try:  # PRODMON_SENTRY__PROJECTS (JSON) replaces the file's [sentry.projects]
        raw_projects = config.sentry.projects if config.sentry.projects else sentry_projects
        config.sentry.projects = parse_projects(raw_projects or {}, env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    validate(config)
    return config


def _env_number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"env {name}: expected a number, got {value!r}") from None


def validate(config: Config) -> None:
    """Range and choice checks that types alone cannot express."""
    k, r = config.kafka, config.runtime
    if not k.bootstrap.strip():
        raise ConfigError("kafka.bootstrap: must name at least one host:port")
    for server in k.bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"kafka.bootstrap: {server!r} is not host:port")
    if k.security_protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(
            f"kafka.security_protocol: {k.security_protocol!r} is not one of "
            f"{', '.join(SECURITY_PROTOCOLS)}"
        )
    if k.security_protocol.startswith("SASL"):
        if k.sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"kafka.sasl_mechanism: {k.sasl_mechanism!r} is not one of "
                f"{', '.join(SASL_MECHANISMS)}"
            )
        if not k.sasl_plain_username or not k.sasl_plain_password:
            raise ConfigError(
                "kafka.sasl_plain_username / PRODMON_KAFKA__SASL_PLAIN_PASSWORD: "
                "both are required with SASL"
            )
    if any(c in k.prefix for c in " /\\:") or len(k.prefix) > 100:
        raise ConfigError(f"kafka.prefix: {k.prefix!r} may not contain spaces, '/', '\\' or ':'")
    positive = {
        "runtime.max_batch_records": r.max_batch_records,
        "runtime.max_unacked_bytes": r.max_unacked_bytes,
        "runtime.poll_timeout_ms": r.poll_timeout_ms,
        "runtime.fetch_max_wait_ms": r.fetch_max_wait_ms,
        "runtime.tick_interval_s": r.tick_interval_s,
        "runtime.partitions": r.partitions,
        "runtime.retry_initial_s": r.retry_initial_s,
        "runtime.retry_max_s": r.retry_max_s,
        "ingest.max_message_bytes": config.ingest.max_message_bytes,
        "ingest.max_text_len": config.ingest.max_text_len,
        "ingest.max_context_depth": config.ingest.max_context_depth,
        "ingest.max_duration_ms": config.ingest.max_duration_ms,
        "ingest.dedup_max_ids": config.ingest.dedup_max_ids,
        "ingest.dedup_window_s": config.ingest.dedup_window_s,
        "fingerprint.count_interval_s": config.fingerprint.count_interval_s,
        "notify.concurrency": config.notify.concurrency,
        "notify.max_attempts": config.notify.max_attempts,
        "notify.attempt_timeout_s": config.notify.attempt_timeout_s,
        "sentry.max_body_bytes": config.sentry.max_body_bytes,
        "sentry.max_decompressed_bytes": config.sentry.max_decompressed_bytes,
        "sentry.produce_timeout_s": config.sentry.produce_timeout_s,
        "sentry.retry_after_s": config.sentry.retry_after_s,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be greater than 0, got {value}")
    _validate_windows(config.windows)
    _validate_baseline(config)
    _validate_token_patterns(config.fingerprint)
    if config.ingest.future_tolerance_s < 0:
        raise ConfigError("ingest.future_tolerance_s: must be >= 0")
    if config.sentry.rate_limit_per_s < 0 or not 0 <= config.sentry.port < 65536:
        raise ConfigError("sentry.rate_limit_per_s must be >= 0 and sentry.port 0 to 65535")
    for proxy in filter(None, config.dashboard.trusted_proxies):
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f"dashboard.trusted_proxies: {proxy[:60]!r} is not an IP address or network"
            ) from None
    config.dashboard.external_url = _external_url(config.dashboard.external_url)
    _validate_otlp(config.otlp)


def _external_url(raw: str) -> str:
    """`dashboard.external_url` without its trailing slash, or ConfigError saying why."""
    url = raw.strip().rstrip("/")
    if not url:
        return ""
    parts = urlsplit(url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or any(c in url for c in " <>|\"'`")
        or any(ord(c) < 33 or ord(c) > 126 for c in url)
    ):
        raise ConfigError(
            f"dashboard.external_url: expected an http(s) URL like "
            f"https://prodmon.example.com (no query or fragment), got {raw[:100]!r}"
        )
    return url


def _validate_token_patterns(f: FingerprintSection) -> None:
    from grouping import compile_token_patterns

    patterns = f.token_patterns
    if isinstance(patterns, str):  # from the environment: a JSON object
        try:
            patterns = json.loads(patterns) if patterns.strip() else {}
        except ValueError:
            patterns = None
    if not isinstance(patterns, dict):
        raise ConfigError(
            "fingerprint.token_patterns: expected a table of class name = regular expression"
        )
    try:
        compile_token_patterns(patterns)
    except ValueError as exc:
        raise ConfigError(f"fingerprint.token_patterns.{exc}") from None
    f.token_patterns = dict(patterns)


def _validate_windows(w: WindowsSection) -> None:
    for key in ("max_services", "max_series_per_service"):
        if getattr(w, key) < 0:
            raise ConfigError(f"windows.{key}: must be >= 0 (0 = no limit), got {getattr(w, key)}")
    if w.series_idle_s <= 0:
        raise ConfigError(f"windows.series_idle_s: must be greater than 0, got {w.series_idle_s}")
    if w.window_s <= 0 or (w.window_s * 1000) % 1:
        raise ConfigError(
            f"windows.window_s: must be a positive whole number of ms, got {w.window_s}"
        )
    previous = w.window_s
    for size in w.rollup_resolutions_s:
        if size <= previous or (size * 1000) % (previous * 1000):
            raise ConfigError(
                f"windows.rollup_resolutions_s: {size} must be larger than and a multiple of "
                f"{previous} (each resolution builds on the one before)"
            )
        previous = size
    if w.allowed_lateness_s < 0:
        raise ConfigError("windows.allowed_lateness_s: must be >= 0")
    if w.idle_flush_s <= 0:
        raise ConfigError("windows.idle_flush_s: must be greater than 0")
    if w.early_eval_s < 0:
        raise ConfigError(f"windows.early_eval_s: must be >= 0 (0: off), got {w.early_eval_s}")
    if w.early_min_events < 1:
        raise ConfigError(f"windows.early_min_events: must be >= 1, got {w.early_min_events}")
    if w.close_part_series < 1:
        raise ConfigError(f"windows.close_part_series: must be >= 1, got {w.close_part_series}")
    if not 1 <= w.hdr_digits <= 5:
        raise ConfigError(f"windows.hdr_digits: must be 1 to 5, got {w.hdr_digits}")
    if w.hdr_highest_us < 2:
        raise ConfigError("windows.hdr_highest_us: must be at least 2")


def _validate_baseline(config: Config) -> None:
    from detection.rules import ROLLUP_METRICS, SEVERITIES

    b = config.baseline
    if b.idle_expiry_s < 0:
        raise ConfigError(
            f"baseline.idle_expiry_s: must be >= 0 (0 = never), got {b.idle_expiry_s}"
        )
    resolutions = {"10s"} | {_resolution(s) for s in config.windows.rollup_resolutions_s}
    resolutions.add(_resolution(config.windows.window_s))
    if b.resolution not in resolutions:
        raise ConfigError(
            f"baseline.resolution: {b.resolution!r} is not a rollup resolution "
            f"(allowed: {', '.join(sorted(resolutions))})"
        )
    for metric in b.metrics:
        if metric not in ROLLUP_METRICS:
            raise ConfigError(
                f"baseline.metrics: {metric!r} is not one of {', '.join(ROLLUP_METRICS)}"
            )
    if b.anomaly_severity not in SEVERITIES:
        raise ConfigError(
            f"baseline.anomaly_severity: {b.anomaly_severity!r} is not one of {SEVERITIES}"
        )
    try:
        detector_config(b)
    except ValueError as exc:
        raise ConfigError(f"baseline: {exc}") from None


def _resolution(seconds: float) -> str:
    from schemas.rollups import resolution_name

    return resolution_name(round(seconds * 1000))


def detector_config(b: BaselineSection) -> Any:
    """The DetectorConfig the [baseline] section asks for."""
    from detection.detector import DetectorConfig

    return from_section(DetectorConfig, b)


def from_section(kind: type[T], section: msgspec.Struct, **computed: Any) -> T:
    """A stage's config (a dataclass) from its typed `[section]`: every field of the same
    name is taken from the section, the others from `computed` or the dataclass defaults.
    So a setting added to both reaches the stage without another line here."""
    own = msgspec.structs.asdict(section)
    names = {f.name for f in dataclasses.fields(kind)} - computed.keys()  # type: ignore[arg-type]
    return kind(**{name: own[name] for name in names if name in own}, **computed)


def _validate_otlp(o: OtlpSection) -> None:
    from schemas.otlp import ENCODINGS, SEVERITY_NUMBERS, SPAN_KINDS

    for key in ("traces_topic", "logs_topic"):
        topic = getattr(o, key)
        if topic and (
            len(topic) > 249
            or topic in (".", "..")
            or not all(c.isascii() and (c.isalnum() or c in "._-") for c in topic)
        ):
            raise ConfigError(
                f"otlp.{key}: {topic[:100]!r} is not a Kafka topic name "
                "(letters, digits, '.', '_', '-'; at most 249)"
            )
    if o.traces_topic and o.traces_topic == o.logs_topic:
        raise ConfigError("otlp.logs_topic: must differ from otlp.traces_topic")
    for key in ("encoding", "traces_encoding", "logs_encoding"):
        value = getattr(o, key)
        if (value or key == "encoding") and value not in ENCODINGS:
            raise ConfigError(f"otlp.{key}: {value!r} is not one of {', '.join(ENCODINGS)}")
    for kind in o.span_kinds:
        if kind.lower() not in SPAN_KINDS:
            raise ConfigError(f"otlp.span_kinds: {kind!r} is not one of {', '.join(SPAN_KINDS)}")
    o.span_kinds = tuple(kind.lower() for kind in o.span_kinds)
    severity = o.error_severity.strip().upper()
    severity = "WARN" if severity == "WARNING" else severity
    if severity not in SEVERITY_NUMBERS:
        raise ConfigError(
            f"otlp.error_severity: {o.error_severity!r} is not one of {', '.join(SEVERITY_NUMBERS)}"
        )
    o.error_severity = severity
    if any(not rule for rule in (*o.in_app_include, *o.in_app_exclude)):
        raise ConfigError("otlp.in_app_include / in_app_exclude: entries must not be empty")
