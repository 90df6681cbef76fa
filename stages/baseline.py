"""The baseline stage: rollups and issue updates in, anomaly and threshold signals out.

For every series and metric (p50 and p99 latency, 5xx rate, throughput) and every issue's
occurrence rate, a `Detector` (detection/detector.py) learns a robust, seasonal baseline online
and reports findings. Static rules (detection/rules.py) run beside it on the same observations,
plus per-service SLA status and error-budget burn rates (sla/). Every finding goes
to `signals` with its evidence; a finding that clears is followed by a `resolved` signal.

Observations are taken from rollups of one resolution (`baseline.resolution`, 1 min by
default) so the baseline learns from a steady cadence. A rollup re-emitted after a crash
(same window) is recognised and ignored, so nothing is learned twice.

State (changelog `state.baseline`, per input partition): detectors, rule gates, the last
window seen per series, issue counters, each service's per-minute request/error buckets
(6 h, for burn rates) and each series' last RECENT_POINTS observations of the metrics its
rules and detectors watch (the chart a firing or resolved signal carries as `points`).
A key's detectors and a series' recent points are held as bytes (stages/baseline_store.py:
a few KB a series instead of about 40 KB of objects) and unpacked only to be updated; the
detectors go to the changelog as one `dp|<key>` record per key and update (the previous
`d|<key>|<metric>` records are still read). Pure: no Kafka, no clocks, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from alerting.alert_text import issue_facts
from detection.detector import DetectorConfig, Update
from detection.rules import DEFAULT_RULES, ISSUE_METRICS, ROLLUP_METRICS, Rule, RuleGate
from schemas.rollups import SERVICE_WIDE, is_rollup
from schemas.signals import signal_id
from schemas.topology import BASELINE, SIGNALS
from sla import SLAConfig, burn_rates, evaluate, summarize_windows
from stages.base import Emit, Record, StageBase, StageResult
from stages.baseline_store import BUNDLE_KIND, LEGACY_KIND, DetectorBundles, RecentPoints
from stages.early import EARLY_OPS, EARLY_TOPIC, provisional_summary

__all__ = ["BaselineConfig", "BaselineStage"]

SIGNALS_TOPIC = SIGNALS
MINUTE_MS = 60_000
BURN_HISTORY_MS = 6 * 3_600_000
SLA_PERIOD_MS = 3_600_000


@dataclass(frozen=True)
class BaselineConfig:
    """What the baseline learns from and how anomalies are reported."""

    resolution: str = "1m"
    metrics: tuple[str, ...] = ("p50_ms", "p99_ms", "error_rate_pct", "throughput_rps")
    learn_issue_rates: bool = True
    anomaly_severity: str = "medium"
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    # An anomaly resolves after this long without an anomalous point (event time).
    resolve_after_s: float = 300.0
    # A series or issue with no data for this long (event time) and nothing firing is
    # forgotten, its changelog keys tombstoned (0 = never).
    idle_expiry_s: float = 86_400.0


def _rounded(value: float) -> float:
    """Four significant figures: enough for a chart, short in the changelog."""
    return float(f"{value:.4g}") if math.isfinite(value) else 0.0


def _json_bytes(value: Any) -> bytes:
    """`value` as JSON bytes holding only their size (orjson's result keeps the buffer it
    wrote into). Exact for what rollups carry: ints and finite floats read back as such."""
    return memoryview(orjson.dumps(value)).tobytes()


def _restored_points(value: Any, names: tuple[str, ...]) -> dict[str, list] | None:
    """A series' recent points from their changelog value, or None (a tombstone, or points
    of other metrics than this configuration watches: they start afresh)."""
    if not isinstance(value, dict) or value.get("metrics") != list(names):
        return None
    try:
        points = [
            [int(p[0]), *map(float, p[1:])]
            for p in value.get("points") or []
            if isinstance(p, list) and len(p) == len(names) + 1
        ]
    except (TypeError, ValueError):
        return None
    return {"metrics": list(names), "points": points[-RECENT_POINTS:]}


def rollup_metrics(rollup: dict[str, Any]) -> dict[str, float]:
    """The observed metrics of one rollup window."""
    count = rollup["count"]
    seconds = max((rollup["end"] - rollup["start"]) / 1000.0, 1e-9)
    metrics = {name: float(rollup.get(name) or 0.0) for name in ROLLUP_METRICS[:7]}
    metrics["error_rate_pct"] = 100.0 * rollup.get("errors", 0) / count if count else 0.0
    metrics["client_error_rate_pct"] = (
        100.0 * rollup.get("client_errors", 0) / count if count else 0.0
    )
    metrics["throughput_rps"] = count / seconds
    metrics["count"] = float(count)
    return metrics


def add_to_minutes(buckets: dict[int, list[int]], rollup: dict[str, Any]) -> list[list[int]]:
    """Count a service-wide rollup into its minute of `buckets` ([count, errors] by minute
    start), forget minutes past `BURN_HISTORY_MS`; the buckets as `[start, count, errors]`
    rows (their changelog form)."""
    minute = rollup["start"] - rollup["start"] % MINUTE_MS
    bucket = buckets.setdefault(minute, [0, 0])
    bucket[0] += rollup["count"]
    bucket[1] += rollup.get("errors", 0)
    for start in [s for s in buckets if s < rollup["end"] - BURN_HISTORY_MS]:
        del buckets[start]
    return [[s, c, e] for s, (c, e) in buckets.items()]


EXPIRY_SWEEP_MS = 60_000
# A series' recent observations kept for the charts of its signals (`points`): this many
# windows of `resolution`, values to 4 significant figures.
RECENT_POINTS = 45


class BaselineStage(StageBase):
    """Consumes `rollups` and `issues`; emits `signals`."""

    name = BASELINE.name
    inputs: tuple[str, ...] = BASELINE.reads
    stateful = BASELINE.stateful

    def __init__(
        self,
        config: BaselineConfig | None = None,
        rules: tuple[Rule, ...] = DEFAULT_RULES,
        sla: SLAConfig | None = None,
    ) -> None:
        self.config = config or BaselineConfig()
        self.rules = rules
        self.sla = sla or SLAConfig()
        self._rollup_rules = [r for r in rules if r.metric in ROLLUP_METRICS]
        self._issue_rules = [r for r in rules if r.metric in ISSUE_METRICS]
        self._service_rules = [r for r in rules if r.metric in ("sla_violations", "burn_rate")]
        # per partition, key -> its metrics' detectors packed into one bytes value
        self.detectors = DetectorBundles(self.config.detector)
        self.gates: dict[int, dict[str, RuleGate]] = {}
        self.last_window: dict[int, dict[str, int]] = {}
        self.issue_counts: dict[int, dict[str, list[int]]] = {}
        # service -> its minute buckets [[start, requests, errors], ...] (6 h, for burn
        # rates) as JSON bytes: 8 KB a service instead of 60 KB of objects
        self.minutes: dict[int, dict[str, bytes]] = {}
        self.anomaly_seen: dict[int, dict[str, int]] = {}  # key -> last anomalous ts (firing)
        self.peaks: dict[int, dict[str, float]] = {}  # rule|key -> worst violating value
        self.swept: dict[int, int] = {}  # partition -> event time of the last idle sweep
        watched = {r.metric for r in self._rollup_rules} | set(self.config.metrics)
        self._point_metrics = tuple(m for m in ROLLUP_METRICS if m in watched)
        # series -> its recent points: [window start, value per metric of _point_metrics]
        self.recent = RecentPoints(len(self._point_metrics))
        self.stats = {"rollups": 0, "issues": 0, "signals": 0, "ignored": 0, "expired": 0}

    # --- Stage protocol ---------------------------------------------------------------------

    def counters(self) -> Mapping[str, float]:
        return self.stats

    def state_size(self) -> int | None:
        """Keys whose detectors are held (a series or an issue, all its metrics)."""
        return len(self.detectors)

    def process(self, records: list[Record], now: float) -> StageResult:
        result = StageResult()
        for record in records:
            try:
                value = orjson.loads(record.value) if record.value is not None else None
            except orjson.JSONDecodeError:
                self.stats["ignored"] += 1
                continue
            if record.topic == "rollups" and is_rollup(value):
                self._on_rollup(record.partition, value, result)
            elif record.topic == EARLY_TOPIC and isinstance(value, dict) and "metrics" in value:
                self._on_early(record.partition, value, result)
            elif record.topic == "issues" and isinstance(value, dict) and "issue_id" in value:
                self._on_issue(record.partition, value, result)
            else:
                self.stats["ignored"] += 1
        self.stats["signals"] += len(result.emits)
        return result

    def restore(self, partition: int, key: str, value: Any) -> None:
        kind, _, name = key.partition("|")
        if kind == BUNDLE_KIND:
            self.detectors.restore(partition, name, value)
        elif kind == LEGACY_KIND:  # one detector's to_state(), as written before issue 24
            self.detectors.restore_legacy(partition, name, value)
        elif kind == "g":
            gates = self.gates.setdefault(partition, {})
            if value is None:
                gates.pop(name, None)
            else:
                gates[name] = RuleGate.from_state(value)
        elif kind == "w" and value is not None:
            self.last_window.setdefault(partition, {})[name] = int(value)
        elif kind == "i" and value is not None:
            self.issue_counts.setdefault(partition, {})[name] = [int(v) for v in value]
        elif kind == "m" and value is not None:
            rows = [[int(start), int(c), int(e)] for start, c, e in value]
            self.minutes.setdefault(partition, {})[name] = _json_bytes(rows)
        elif kind == "p":
            peaks = self.peaks.setdefault(partition, {})
            if value is None:
                peaks.pop(name, None)
            else:
                peaks[name] = float(value)
        elif kind == "a":
            seen = self.anomaly_seen.setdefault(partition, {})
            if value is None:
                seen.pop(name, None)
            else:
                seen[name] = int(value)
        elif kind == "r":
            restored = _restored_points(value, self._point_metrics)
            if restored is None:
                self.recent.forget(partition, name)
            else:
                self.recent.set_rows(partition, name, restored["points"])

    def revoke(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.detectors.revoke(partition)
            self.recent.revoke(partition)
            for store in (
                self.gates,
                self.last_window,
                self.issue_counts,
                self.minutes,
                self.anomaly_seen,
                self.peaks,
            ):
                store.pop(partition, None)

    # --- expiry -----------------------------------------------------------------------------

    def _expire_idle(self, partition: int, now_ms: int, result: StageResult) -> None:
        """Forget the series and issues of `partition` with no data for `idle_expiry_s`
        (event time) and nothing firing: detectors, gates, peaks and their changelog keys
        (tombstones), so idle series give their memory back and restores stay small.
        Swept at most once a minute of event time."""
        idle_ms = self.config.idle_expiry_s * 1000
        if idle_ms <= 0 or now_ms - self.swept.get(partition, -(2**62)) < EXPIRY_SWEEP_MS:
            return
        self.swept[partition] = now_ms
        cutoff = now_ms - idle_ms
        idle = {s for s, start in self.last_window.get(partition, {}).items() if start < cutoff}
        idle |= {
            fp for fp, (_, last) in self.issue_counts.get(partition, {}).items() if last < cutoff
        }
        if not idle:
            return
        owner_of = {
            "a": lambda name: name.rpartition("|")[0],  # key|metric
            "g": lambda name: name.partition("|")[2],  # rule|key
            "p": lambda name: name.partition("|")[2],
            "w": lambda name: name,
            "i": lambda name: name,
            "r": lambda name: name,
            BUNDLE_KIND: lambda name: name,
        }
        stores: dict[str, dict[int, dict[str, Any]]] = {
            "a": self.anomaly_seen,
            "g": self.gates,
            "p": self.peaks,
            "w": self.last_window,
            "i": self.issue_counts,
        }

        def owner(kind: str, name: str) -> str | None:
            key = owner_of[kind](name)
            if key in idle:
                return key
            base = key.rpartition("|")[0]  # e.g. a burn-rate pair's `service|*|burn:1h`
            return base if base in idle else None

        firing = {owner("a", name) for name in self.anomaly_seen.get(partition, {})}
        firing |= {
            owner("g", name) for name, gate in self.gates.get(partition, {}).items() if gate.firing
        }
        idle -= firing
        if not idle:
            return
        for key in [k for k in self.detectors.keys(partition) if owner(BUNDLE_KIND, k)]:
            self.detectors.forget(partition, key, result.state)
        for kind, store in stores.items():
            names = store.get(partition, {})
            for name in [n for n in names if owner(kind, n) is not None]:
                del names[name]
                result.state[(partition, f"{kind}|{name}")] = None
        for series in [s for s in self.recent.keys(partition) if owner("r", s)]:
            self.recent.forget(partition, series)
            result.state[(partition, f"r|{series}")] = None
        self.stats["expired"] += len(idle)

    # --- rollups ----------------------------------------------------------------------------

    def _on_rollup(self, partition: int, rollup: dict[str, Any], result: StageResult) -> None:
        if rollup["resolution"] != self.config.resolution:
            return
        series = rollup["series"]
        seen = self.last_window.setdefault(partition, {})
        if rollup["start"] <= seen.get(series, -(2**62)):
            self.stats["ignored"] += 1  # a window already learned (re-emitted after a crash)
            return
        seen[series] = rollup["start"]
        result.state[(partition, f"w|{series}")] = rollup["start"]
        self.stats["rollups"] += 1
        self._expire_idle(partition, rollup["end"], result)
        metrics = rollup_metrics(rollup)
        labels = {
            "service": rollup["service"],
            "endpoint": rollup["endpoint"],
            "series": series,
        }
        window = {"start": rollup["start"], "end": rollup["end"]}
        ts = rollup["end"]
        self._remember_point(partition, series, window, metrics, result)
        first_emit = len(result.emits)
        if rollup["count"] > 0:
            observed = [(metric, metrics[metric]) for metric in self.config.metrics]
            self._learn(partition, series, observed, ts, labels, window, result)
        for rule in self._rollup_rules:
            if rule.matches(labels):
                value = metrics[rule.metric]
                self._gate(partition, rule, series, value, ts, labels, window, result)
        self._attach_points(partition, series, result.emits[first_emit:])
        if rollup["endpoint"] == SERVICE_WIDE:
            self._service_checks(partition, rollup, labels, window, result)

    # --- recent points (the charts of signals) ---------------------------------------------

    def _remember_point(
        self,
        partition: int,
        series: str,
        window: dict[str, int],
        metrics: dict[str, float],
        result: StageResult,
    ) -> None:
        """Keep this window's values of the watched metrics in the series' recent points:
        at most RECENT_POINTS, none older than RECENT_POINTS windows before this one."""
        names = self._point_metrics
        if not names:
            return
        oldest = window["start"] - RECENT_POINTS * (window["end"] - window["start"])
        values = [_rounded(metrics[m]) for m in names]
        start = int(window["start"])  # held as int64 (a rollup's starts are ints)
        points = self.recent.append(partition, series, start, oldest, values, RECENT_POINTS)
        result.state[(partition, f"r|{series}")] = {"metrics": list(names), "points": points}

    def _attach_points(
        self,
        partition: int,
        series: str,
        emits: list[Emit],
        early: dict[str, Any] | None = None,
    ) -> None:
        """Give each threshold or anomaly signal of a watched metric in `emits` the series'
        recent points of its metric, `[[window start ms, value], ...]` (with the open
        window's provisional value last for an early finding)."""
        if not emits:
            return
        rows = self.recent.rows(partition, series)
        if rows is None:
            return
        names = self._point_metrics
        for emit in emits:
            signal = emit.value
            metric = signal.get("metric")
            if signal.get("kind") not in ("threshold", "anomaly") or signal.get("key") != series:
                continue
            if metric not in names:
                continue
            column = names.index(metric) + 1
            points = [[p[0], p[column]] for p in rows]
            if early is not None and isinstance(signal.get("value"), int | float):
                points = [*points[1 - RECENT_POINTS :], [early["start"], signal["value"]]]
            signal["points"] = points

    def _on_early(self, partition: int, early: dict[str, Any], result: StageResult) -> None:
        """A provisional observation of an open window (stages/early.py): for each of this
        stage's rules that it breaks, it counts as that window's violation; nothing is
        learned from it. A malformed one is counted as ignored."""
        series, metrics = early.get("series"), early.get("metrics")
        texts = (series, early.get("service"), early.get("endpoint"))
        bounds = (early.get("start"), early.get("end"))
        if not (
            isinstance(metrics, dict)
            and all(isinstance(t, str) for t in texts)
            and all(type(b) is int for b in bounds)
        ):
            self.stats["ignored"] += 1
            return
        assert isinstance(series, str)  # checked with the other texts above
        if early.get("resolution") != self.config.resolution:
            return
        if early["start"] <= self.last_window.get(partition, {}).get(series, -(2**62)):
            self.stats["ignored"] += 1  # the window closed and was observed already
            return
        labels = {"service": early["service"], "endpoint": early["endpoint"], "series": series}
        window = {"start": early["start"], "end": early["end"]}
        ts = early["end"]  # the window's, as the closed window's rollup will say
        first_emit = len(result.emits)
        for rule in self._rollup_rules:
            value = metrics.get(rule.metric)
            if not isinstance(value, int | float) or rule.op not in EARLY_OPS:
                continue
            if rule.violated(value) and rule.matches(labels):
                self._gate(partition, rule, series, value, ts, labels, window, result, early=early)
        self._attach_points(partition, series, result.emits[first_emit:], early)

    def _learn(
        self,
        partition: int,
        key: str,
        observed: list[tuple[str, float]],
        ts: int,
        labels: dict[str, Any],
        window: dict[str, int],
        result: StageResult,
    ) -> None:
        """Feed each (metric, value) to the key's detector of that metric: unpacked from the
        key's bundle, updated, packed back; the bundle is stored and written once."""
        store = self.detectors
        packed = store.open(partition, key)
        for metric, value in observed:
            detector = store.detector(packed, metric)
            update = detector.update(ts / 1000.0, value)
            packed[metric] = store.pack(detector)
            self._judge(partition, key, metric, value, update, ts, labels, window, result)
        store.put(partition, key, packed, result.state)

    def _judge(
        self,
        partition: int,
        key: str,
        metric: str,
        value: float,
        update: Update,
        ts: int,
        labels: dict[str, Any],
        window: dict[str, int],
        result: StageResult,
    ) -> None:
        """A detector's verdict into firing and resolved anomaly signals."""
        name = f"{key}|{metric}"
        seen = self.anomaly_seen.setdefault(partition, {})
        rule = f"baseline:{metric}"
        if update.finding:
            firing_already = name in seen
            seen[name] = ts
            result.state[(partition, f"a|{name}")] = ts
            if not firing_already:
                result.emits.append(
                    self._anomaly(rule, key, metric, value, update, ts, labels, window)
                )
        elif update.anomalous and name in seen:
            seen[name] = ts
            result.state[(partition, f"a|{name}")] = ts
        elif name in seen and ts - seen[name] >= self.config.resolve_after_s * 1000:
            del seen[name]
            result.state[(partition, f"a|{name}")] = None
            emit = self._anomaly(rule, key, metric, value, update, ts, labels, window, "resolved")
            result.emits.append(emit)

    def _anomaly(
        self,
        rule: str,
        key: str,
        metric: str,
        value: float,
        update: Update,
        ts: int,
        labels: dict[str, Any],
        window: dict[str, int],
        state: str = "firing",
    ) -> Emit:
        direction = "above" if update.z > 0 else "below"
        summary = (
            f"{key} {metric} {value:.4g} is {abs(update.z):.1f} sigma {direction} its baseline "
            f"{update.centre:.4g} (spread {update.spread:.3g}); {update.kind or 'anomaly'}"
            if state == "firing"
            else f"{key} {metric} is back within its baseline ({value:.4g})"
        )
        return Emit(
            SIGNALS_TOPIC,
            labels.get("service") or "-",  # partitioned by service (see escalation)
            {
                "id": signal_id(rule, key, state, ts),
                "kind": "anomaly",
                "state": state,
                "rule": rule,
                "severity": self.config.anomaly_severity,
                "key": key,
                "service": labels.get("service"),
                "endpoint": labels.get("endpoint"),
                "fingerprint": labels.get("fingerprint"),
                "metric": metric,
                "value": value,
                "threshold": None,
                "op": None,
                "baseline": {
                    "centre": update.centre,
                    "spread": update.spread,
                    "z": update.z,
                    "score": update.score,
                    "kind": update.kind,
                },
                "window": window,
                "ts": ts,
                "channels": [],
                "tags": {"category": "anomaly"},
                "summary": summary,
                "issue": labels.get("issue"),
            },
        )

    def _gate(
        self,
        partition: int,
        rule: Rule,
        key: str,
        value: float,
        ts: int,
        labels: dict[str, Any],
        window: dict[str, int],
        result: StageResult,
        severity: str | None = None,
        early: dict[str, Any] | None = None,
    ) -> None:
        """Feed one observation to the rule's gate; a finding becomes a signal. `early` is
        the provisional observation of an open window it came from, if it did."""
        gates = self.gates.setdefault(partition, {})
        name = f"{rule.name}|{key}"
        gate = gates.get(name)
        if gate is None:
            if not rule.violated(value):
                return  # nothing to remember for a rule that never fired here
            gate = gates[name] = RuleGate()
        # For the alert's wording: violations in the window so far, and the first of them.
        recent = [t for t in gate.violations if t > ts - rule.window_s * 1000 and t != ts]
        state = gate.observe(rule, ts, rule.violated(value))
        result.state[(partition, f"g|{name}")] = gate.to_state()
        peak = self._peak(partition, rule, name, value, gate, state, result)
        if state is None:
            return
        verb = f"{rule.op} {rule.threshold:g}" if state == "firing" else "cleared"
        if early is not None:
            verb += f"; {provisional_summary(early)}"
        result.emits.append(
            Emit(
                SIGNALS_TOPIC,
                labels.get("service") or "-",  # partitioned by service (see escalation)
                {
                    "id": signal_id(rule.name, key, state, ts),
                    "kind": "threshold",
                    "state": state,
                    "rule": rule.name,
                    "severity": severity or rule.severity_for(labels),
                    "key": key,
                    "service": labels.get("service"),
                    "endpoint": labels.get("endpoint"),
                    "fingerprint": labels.get("fingerprint"),
                    "metric": rule.metric,
                    "value": value,
                    "threshold": rule.threshold,
                    "op": rule.op,
                    "baseline": None,
                    "window": window,
                    "ts": ts,
                    "provisional": early is not None,
                    "channels": list(rule.channels),
                    "tags": dict(rule.tags),
                    "summary": f"{rule.name}: {key} {rule.metric} {value:.4g} ({verb})",
                    "occurrences": len(recent) + 1,
                    "window_s": rule.window_s,
                    "since": min(recent, default=ts) - (window["end"] - window["start"]),
                    "peak": peak,
                    "issue": labels.get("issue"),
                },
            )
        )

    def _peak(
        self,
        partition: int,
        rule: Rule,
        name: str,
        value: float,
        gate: RuleGate,
        state: str | None,
        result: StageResult,
    ) -> float | None:
        """The worst violating value of the rule's current episode (the resolution notice
        says it): kept from the first violation, forgotten once the episode ends."""
        peaks = self.peaks.setdefault(partition, {})
        peak = peaks.get(name)
        if rule.violated(value):
            worse = min if rule.op.startswith("<") else max
            peak = value if peak is None else worse(peak, value)
            peaks[name] = peak
            result.state[(partition, f"p|{name}")] = peak
        elif name in peaks and (state == "resolved" or not (gate.firing or gate.violations)):
            del peaks[name]
            result.state[(partition, f"p|{name}")] = None
        return peak

    # --- per service: SLA and error budget ------------------------------------------------

    def _service_checks(
        self,
        partition: int,
        rollup: dict[str, Any],
        labels: dict[str, Any],
        window: dict[str, int],
        result: StageResult,
    ) -> None:
        service = rollup["service"]
        held = self.minutes.setdefault(partition, {})
        packed = held.get(service)
        buckets = {} if packed is None else {s: [c, e] for s, c, e in orjson.loads(packed)}
        rows = add_to_minutes(buckets, rollup)
        held[service] = _json_bytes(rows)
        result.state[(partition, f"m|{service}")] = rows
        self._judge_service(partition, rollup, buckets, labels, window, result)

    def _judge_service(
        self,
        partition: int,
        rollup: dict[str, Any],
        buckets: dict[int, list[int]],
        labels: dict[str, Any],
        window: dict[str, int],
        result: StageResult,
    ) -> None:
        """The service's SLA and burn-rate rules over its minute buckets."""
        service = rollup["service"]
        now_ms = rollup["end"]
        windows = [
            {"start": s, "end": min(s + MINUTE_MS, now_ms), "count": c, "errors": e}
            for s, (c, e) in buckets.items()
        ]
        threshold = self.sla.threshold_for(service)
        recent = [w for w in windows if w["end"] > now_ms - SLA_PERIOD_MS]
        inputs = summarize_windows(
            recent,
            threshold,
            p50_ms=rollup.get("p50_ms"),
            p95_ms=rollup.get("p95_ms"),
            p99_ms=rollup.get("p99_ms"),
        )
        report = evaluate(service, inputs, threshold)
        budgets = burn_rates(windows, self.sla.objective_for(service), now_ms)
        key = f"{service}|{SERVICE_WIDE}"
        for rule in self._service_rules:
            if not rule.matches(labels):
                continue
            if rule.metric == "sla_violations":
                value = float(len(report.violations))
                self._gate(partition, rule, key, value, now_ms, labels, window, result)
                continue
            for pair in budgets:  # each multi-window pair is its own alert, as in the SRE book
                value = pair.long_rate if pair.firing else 0.0
                pair_key = f"{key}|burn:{pair.name}"
                self._gate(
                    partition, rule, pair_key, value, now_ms, labels, window, result, pair.severity
                )

    # --- issues -----------------------------------------------------------------------------

    def _on_issue(self, partition: int, issue: dict[str, Any], result: StageResult) -> None:
        fingerprint = issue["issue_id"]
        count, last_seen = int(issue.get("count") or 0), int(issue.get("last_seen") or 0)
        counters = self.issue_counts.setdefault(partition, {})
        previous = counters.get(fingerprint)
        if previous is not None and count <= previous[0] and issue.get("type") == "count":
            self.stats["ignored"] += 1  # nothing new (or a re-delivered update)
            return
        self.stats["issues"] += 1
        self._expire_idle(partition, last_seen, result)
        if previous is None:
            first_seen = int(issue.get("first_seen") or last_seen)
            delta, span_ms = count, last_seen - first_seen
        else:
            delta, span_ms = count - previous[0], last_seen - previous[1]
        rate = max(delta, 0) / max(span_ms / MINUTE_MS, 1.0)
        counters[fingerprint] = [count, last_seen]
        result.state[(partition, f"i|{fingerprint}")] = [count, last_seen]
        sample = issue.get("sample") or {}
        labels = {
            "service": sample.get("service") or (issue.get("services") or [None])[0],
            "endpoint": None,
            "series": None,
            "fingerprint": fingerprint,
            "exception_type": issue.get("exception_type"),
            "message": issue.get("message_template"),
            "severity": issue.get("severity"),
            "issue": issue_facts(issue, rate),  # what a notification says (alert_text.py)
        }
        window = {"start": previous[1] if previous else int(issue.get("first_seen") or 0)}
        window["end"] = last_seen
        observed = {
            "issue_rate_per_min": rate,
            "issue_new": 1.0 if issue.get("type") == "new" else 0.0,
            "issue_regressed": 1.0 if issue.get("type") == "regressed" else 0.0,
        }
        ts = int(issue.get("ts") or last_seen)
        if self.config.learn_issue_rates and issue.get("type") in ("count", "new", "regressed"):
            learned = [("issue_rate_per_min", rate)]
            self._learn(partition, fingerprint, learned, ts, labels, window, result)
        for rule in self._issue_rules:
            if rule.matches(labels):
                value = observed[rule.metric]
                self._gate(partition, rule, fingerprint, value, ts, labels, window, result)
