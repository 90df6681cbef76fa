"""The escalation stage: signals and commands in, alert lifecycle transitions out.

One alert per issue (signals that name a fingerprint) or per rule and series, with a
deterministic id `<service>:<rule>:<key>` (`<service>:issue:<fingerprint>` for issues).
Its life: firing -> (escalated ...) -> acknowledged -> resolved. Every transition is one
record on `alerts` (id `<alert id>|<seq>|<transition>`, so a re-emitted transition is the
same record and sinks never notify twice) carrying the channels it must reach:

- a new alert notifies its route's channels (alerting/routing.py); with grouping on, after
  `group_wait_s` (alerts of one group that arrive meanwhile go out together, as one
  message per channel), and a new alert of a group that notified less than
  `group_interval_s` ago waits for the end of that interval; a group's resolutions within
  one wait, and its escalations and repeats due at one tick, go out together too;
- later signals for a firing alert update it (count, last seen) without a notification,
  unless its severity rises (then an `updated` transition reaches the new route);
- unacknowledged, it escalates a level each time its route's time is up, and repeats at
  the top level every `repeat_interval_s`; an ack stops that;
- a `resolved` signal or a resolve command resolves it, and the notice goes to every
  channel that was notified;
- silences and inhibitions mute it: the transition is still recorded (channels empty,
  `muted` says why) so nothing vanishes, and it is notified if the mute ends first.

Signals and commands are partitioned by service, so a service's alerts, silences and
inhibitions live together. Timers use the `now` the runtime passes (wall time); they are
in the changelog, so a restarted worker fires what fell due while it was down, once.
Pure: no Kafka, no clocks, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeGuard

import orjson

from alerting.alert_text import describe, resolution_text
from alerting.routing import RoutingConfig, Silence, severity_rank
from schemas.signals import is_signal
from schemas.topology import ALERTS, ESCALATION
from stages.base import Emit, Record, StageBase, StageResult

__all__ = ["Alert", "EscalationStage", "alert_id_for", "partition_key_for"]

ALERTS_TOPIC = ALERTS
RESOLVED_RETENTION_MS = 24 * 3600 * 1000
# Channels that always get one message per alert, never a group's: each PagerDuty alert is
# its own incident, acknowledged and resolved by its own dedup key.
PER_ALERT_CHANNELS = frozenset({"pagerduty"})
GROUP_SUMMARY_MAX = 300
MAX_POINTS = 60  # recent points of an alert's metric kept for its chart (signals' `points`)


def alert_id_for(signal: dict[str, Any]) -> str:
    service = signal.get("service") or "-"
    if signal.get("fingerprint"):
        return f"{service}:issue:{signal['fingerprint']}"
    return f"{service}:{signal.get('rule')}:{signal.get('key')}"


def partition_key_for(alert_id: str) -> str:
    """The Kafka key (the service) that routes a command to the alert's partition."""
    return alert_id.split(":", 1)[0]


@dataclass
class Alert:
    """One alert's state (JSON-able through `asdict`)."""

    alert_id: str
    service: str
    rule: str
    key: str
    severity: str
    title: str
    summary: str
    labels: dict[str, Any]
    status: str = "firing"
    level: int = 0
    seq: int = 0
    count: int = 1
    first_seen: int = 0
    last_seen: int = 0
    fired_at: int = 0
    next_at: int | None = None  # when it escalates or repeats next (ms)
    pending_until: int | None = None  # group wait / interval: notify at this time
    notified_at: int | None = None  # when its first notification went out
    notified: list[str] = field(default_factory=list)
    override: list[str] | None = None  # channels from a `route` command
    muted: str | None = None  # "silence:<id>" or "inhibited:<alert id>"
    ack_by: str | None = None
    notes: str | None = None
    resolved_at: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    # What the title and summary were built from (alerting/alert_text.py `describe`): the
    # figures the sinks show; `peak` the worst value seen while firing.
    facts: dict[str, Any] = field(default_factory=dict)
    peak: float | None = None
    # The metric's recent points from the latest signal that had them, `[[ms, value], ...]`
    # (at most MAX_POINTS): the email draws its chart from them.
    points: list[list[float]] = field(default_factory=list)


class EscalationStage(StageBase):
    """Consumes `signals` and `commands`; emits `alerts`."""

    name = ESCALATION.name
    inputs: tuple[str, ...] = ESCALATION.reads
    stateful = ESCALATION.stateful

    def __init__(self, routing: RoutingConfig | None = None) -> None:
        self.routing = routing or RoutingConfig()
        self.alerts: dict[int, dict[str, Alert]] = {}
        self.silences: dict[int, dict[str, Silence]] = {}
        self.stats = {"signals": 0, "commands": 0, "transitions": 0, "ignored": 0}

    # --- Stage protocol -------------------------------------------------------------------

    def counters(self) -> Mapping[str, float]:
        return self.stats

    def state_size(self) -> int | None:
        """Alerts held."""
        return sum(len(alerts) for alerts in self.alerts.values())

    def process(self, records: list[Record], now: float) -> StageResult:
        result = StageResult()
        now_ms = int(now * 1000)
        for record in records:
            try:
                value = orjson.loads(record.value) if record.value is not None else None
            except orjson.JSONDecodeError:
                value = None
            if record.topic == "signals" and isinstance(value, dict) and is_signal(value):
                self.stats["signals"] += 1
                self._on_signal(record.partition, value, now_ms, result)
            elif record.topic == "commands" and isinstance(value, dict):
                self._on_command(record.partition, value, now_ms, result)
            else:
                self.stats["ignored"] += 1
        return result

    def tick(self, now: float) -> StageResult:
        """Group waits that ended, escalations and repeats that fell due, expired mutes."""
        result = StageResult()
        now_ms = int(now * 1000)
        for partition, alerts in self.alerts.items():
            # (group, notice) -> the alerts of the group that notice is due for now
            due: dict[tuple[tuple, str], list[Alert]] = {}
            for alert in list(alerts.values()):
                notice = self._timers(partition, alert, now_ms, result)
                if notice is not None:
                    due.setdefault((self._group_key(alert), notice), []).append(alert)
            for (_, notice), members in due.items():
                if notice == "resolved":
                    self._flush_resolved(partition, members, now_ms, result)
                else:
                    self._flush_group(partition, members, now_ms, result, notice)
        return result

    def restore(self, partition: int, key: str, value: Any) -> None:
        kind, _, name = key.partition("|")
        if kind == "alert":
            alerts = self.alerts.setdefault(partition, {})
            if value is None:
                alerts.pop(name, None)
            else:
                alerts[name] = Alert(**value)
        elif kind == "silence":
            silences = self.silences.setdefault(partition, {})
            if value is None:
                silences.pop(name, None)
            else:
                silences[name] = Silence.from_state(value)

    def revoke(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.alerts.pop(partition, None)
            self.silences.pop(partition, None)

    # --- signals ------------------------------------------------------------------------------

    def _on_signal(self, partition: int, signal: dict, now_ms: int, result: StageResult) -> None:
        alerts = self.alerts.setdefault(partition, {})
        aid = alert_id_for(signal)
        alert = alerts.get(aid)
        if signal.get("state") == "resolved":
            if alert is not None and alert.status != "resolved":
                alert.evidence = _evidence(signal)  # when and why it cleared
                _update_figures(alert, signal, firing=False)
                alert.points = _points(signal) or alert.points
                self._resolve(partition, alert, now_ms, "condition cleared", None, result)
            return
        if alert is None or alert.status == "resolved":
            if alert is not None and alert.pending_until is not None:
                self._announce_resolved(partition, alert, now_ms, result)  # not left behind
            alert = self._new_alert(aid, signal, now_ms, previous=alert)
            alerts[aid] = alert
            self._start(partition, alert, now_ms, result)
            return
        alert.count += 1
        alert.last_seen = int(signal.get("ts") or now_ms)
        alert.evidence = _evidence(signal)
        _update_figures(alert, signal)
        alert.points = _points(signal) or alert.points
        severity = str(signal.get("severity") or alert.severity)
        if severity_rank(severity) > severity_rank(alert.severity):
            alert.severity = alert.labels["severity"] = severity
            if alert.notified and not alert.muted:
                self._notify(partition, alert, "updated", now_ms, result)
        self._save(partition, alert, result)

    def _new_alert(self, aid: str, signal: dict, now_ms: int, previous: Alert | None) -> Alert:
        labels = {
            k: signal.get(k)
            for k in ("service", "endpoint", "rule", "severity", "metric", "kind", "key")
        }
        labels["fingerprint"] = signal.get("fingerprint")
        labels.update({str(k): str(v) for k, v in (signal.get("tags") or {}).items()})
        ts = int(signal.get("ts") or now_ms)
        wording = describe(signal)
        value = signal.get("value")
        return Alert(
            alert_id=aid,
            service=str(signal.get("service") or "-"),
            rule=str(signal.get("rule")),
            key=str(signal.get("key")),
            severity=str(signal.get("severity") or "medium"),
            title=wording["title"][:300] or f"{signal.get('rule')}: {signal.get('key')}"[:300],
            summary=(wording["summary"] or str(signal.get("summary") or ""))[:2000],
            facts=wording["facts"],
            peak=float(signal["peak"] if _finite(signal.get("peak")) else value)
            if _finite(value)
            else None,
            labels=labels,
            seq=previous.seq if previous is not None else 0,
            first_seen=ts,
            last_seen=ts,
            fired_at=now_ms,
            evidence=_evidence(signal),
            override=list(signal.get("channels") or []) or None,
            points=_points(signal),
        )

    def _start(self, partition: int, alert: Alert, now_ms: int, result: StageResult) -> None:
        alert.muted = self._mute_reason(partition, alert, now_ms)
        if alert.muted:
            self._transition(partition, alert, "firing", [], now_ms, result)
            return
        flush_at = self._group_flush_time(partition, alert, now_ms)
        if flush_at > now_ms:
            alert.pending_until = flush_at
            self._save(partition, alert, result)
            return
        self._notify(partition, alert, "firing", now_ms, result)

    def _group_flush_time(self, partition: int, alert: Alert, now_ms: int) -> int:
        """When a new alert of its group may be notified (Alertmanager's grouping):

        join a flush the group is already waiting for; else, if the group notified less
        than `group_interval_s` ago, wait for the end of that interval; else wait
        `group_wait_s` (0: now).
        """
        group = self._group_key(alert)
        last_notified = None
        for other in self.alerts.get(partition, {}).values():
            if other is alert or other.status == "resolved":
                continue
            if self._group_key(other) != group:
                continue
            if other.pending_until is not None:
                return other.pending_until
            if other.notified_at is not None:
                last_notified = max(last_notified or 0, other.notified_at)
        interval_ms = int(self.routing.group_interval_s * 1000)
        if last_notified is not None and interval_ms and now_ms < last_notified + interval_ms:
            return last_notified + interval_ms
        return now_ms + int(self.routing.group_wait_s * 1000)

    def _group_key(self, alert: Alert) -> tuple:
        return tuple(alert.labels.get(k) for k in self.routing.group_by)

    def _flush_group(
        self,
        partition: int,
        members: list[Alert],
        now_ms: int,
        result: StageResult,
        transition: str = "firing",
    ) -> None:
        """Notify the alerts of one group whose wait ended together: one message per channel
        (likewise for alerts of a group that escalate or repeat at the same tick).

        Each alert still gets its own `firing` transition (its state, escalation timer and
        `notified` channels are its own). The first by severity, then age, leads: its
        record carries `group` (the members and each one's channels) and every shared
        channel, so each channel receives one message listing the members routed to it.
        The others' records name the leader's transition in `grouped_in` and the channels
        it reached them on in `group_channels`, and keep only the channels never shared
        (`PER_ALERT_CHANNELS`: a PagerDuty incident is acknowledged and resolved per
        alert, by its own dedup key).
        """
        if len(members) == 1:
            self._notify(partition, members[0], transition, now_ms, result)
            return
        routed = {a.alert_id: self._route_channels(a) for a in members}
        for alert, channels, extra in self._grouped(members, routed, transition):
            notified = routed[alert.alert_id]
            self._notify(partition, alert, transition, now_ms, result, channels, notified, extra)

    def _flush_resolved(
        self, partition: int, members: list[Alert], now_ms: int, result: StageResult
    ) -> None:
        """Announce the alerts of one group that resolved within one group wait together,
        one message per channel, as `_flush_group` does for new alerts: each gets its own
        `resolved` transition, the leader's lists the group."""
        if len(members) == 1:
            self._announce_resolved(partition, members[0], now_ms, result)
            return
        told = {a.alert_id: list(a.notified) for a in members}
        for alert, channels, extra in self._grouped(members, told, "resolved"):
            alert.pending_until = None
            self._transition(partition, alert, "resolved", channels, now_ms, result, extra)

    def _grouped(
        self, members: list[Alert], channels_of: dict[str, list[str]], transition: str
    ) -> list[tuple[Alert, list[str], dict[str, Any]]]:
        """Each member's channels and extra fields for one group message per channel (see
        `_flush_group`), leader first."""
        members.sort(key=lambda a: (-severity_rank(a.severity), a.fired_at, a.alert_id))
        shared = sorted({c for cs in channels_of.values() for c in cs} - PER_ALERT_CHANNELS)
        leader = members[0]
        group = {
            "labels": dict(zip(self.routing.group_by, self._group_key(leader), strict=True)),
            "size": len(members),
            "alerts": [
                {
                    "alert_id": a.alert_id,
                    "title": a.title,
                    "severity": a.severity,
                    "service": a.service,
                    "rule": a.rule,
                    "summary": a.summary[:GROUP_SUMMARY_MAX],
                    **_member_facts(a),
                    "channels": [c for c in channels_of[a.alert_id] if c in shared],
                }
                for a in members
            ],
        }
        leader_id = f"{leader.alert_id}|{leader.seq + 1}|{transition}"  # see `_transition`
        out: list[tuple[Alert, list[str], dict[str, Any]]] = []
        for alert in members:
            channels = channels_of[alert.alert_id]
            own = [c for c in channels if c not in shared]
            if alert is leader:
                out.append((alert, own + shared, {"group": group}))
            else:
                extra = {
                    "grouped_in": leader_id,
                    "group_channels": [c for c in channels if c in shared],
                }
                out.append((alert, own, extra))
        return out

    # --- commands -----------------------------------------------------------------------------

    def _on_command(self, partition: int, cmd: dict, now_ms: int, result: StageResult) -> None:
        kind = cmd.get("command")
        if kind == "silence":
            self._silence(partition, cmd, now_ms, result)
            return
        alert = self.alerts.get(partition, {}).get(str(cmd.get("id")))
        if alert is None or alert.status == "resolved":
            self.stats["ignored"] += 1  # an issue command, another partition's, or stale
            return
        self.stats["commands"] += 1
        author = cmd.get("author")
        if kind == "ack" and alert.status == "firing":
            alert.status = "acknowledged"
            alert.ack_by = author
            alert.notes = cmd.get("notes")
            alert.next_at = None
            self._transition(partition, alert, "acknowledged", alert.notified, now_ms, result)
        elif kind == "resolve":
            self._resolve(partition, alert, now_ms, cmd.get("notes"), author, result)
        elif kind == "route":
            channels = [str(c) for c in cmd.get("channels") or []]
            if channels:
                alert.override = channels
                alert.severity = str(cmd.get("severity") or alert.severity)
                alert.muted = None
                self._notify(partition, alert, "rerouted", now_ms, result)

    def _silence(self, partition: int, cmd: dict, now_ms: int, result: StageResult) -> None:
        matchers = cmd.get("matchers")
        if not isinstance(matchers, dict) or not matchers:
            self.stats["ignored"] += 1
            return
        silence = Silence(
            str(cmd.get("command_id") or cmd.get("id")),
            {str(k): str(v) for k, v in matchers.items()},
            int(cmd.get("starts_at") or now_ms),
            int(cmd.get("ends_at") or now_ms),
            str(cmd.get("author") or ""),
            str(cmd.get("comment") or ""),
        )
        self.silences.setdefault(partition, {})[silence.silence_id] = silence
        result.state[(partition, f"silence|{silence.silence_id}")] = silence.to_state()
        self.stats["commands"] += 1
        for alert in self.alerts.get(partition, {}).values():
            if (
                alert.status != "resolved"
                and not alert.muted
                and silence.mutes(alert.labels, now_ms)
            ):
                alert.muted = f"silence:{silence.silence_id}"
                alert.next_at = None
                self._save(partition, alert, result)

    # --- transitions --------------------------------------------------------------------------

    def _route_channels(self, alert: Alert) -> list[str]:
        """The channels the alert's route (or its `route` override) gives at its level."""
        route = self.routing.route_for(alert.labels)
        return list(alert.override or route.channels_at(alert.level, alert.severity))

    def _notify(
        self,
        partition: int,
        alert: Alert,
        transition: str,
        now_ms: int,
        result: StageResult,
        channels: list[str] | None = None,
        notified: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Record a transition that notifies: by default on the route's channels, which
        then count as notified (a group flush passes the channels of the record, the ones
        that reach the alert, and the group's fields in `extra`)."""
        route = self.routing.route_for(alert.labels)
        if channels is None:
            channels = self._route_channels(alert)
        alert.pending_until = None
        if transition in ("firing", "escalated", "updated", "rerouted", "repeated"):
            at_top = alert.level >= route.max_level(alert.severity)
            delay_s = self.routing.repeat_interval_s if at_top else route.escalate_after_s
            alert.next_at = now_ms + int(delay_s * 1000) if alert.status == "firing" else None
        alert.notified = sorted(
            set(alert.notified) | set(channels if notified is None else notified)
        )
        if alert.notified_at is None:
            alert.notified_at = now_ms
        self._transition(partition, alert, transition, channels, now_ms, result, extra)

    def _resolve(
        self,
        partition: int,
        alert: Alert,
        now_ms: int,
        notes: str | None,
        author: str | None,
        result: StageResult,
    ) -> None:
        alert.status = "resolved"
        alert.resolved_at = now_ms
        alert.next_at = alert.pending_until = None
        alert.notes = notes
        alert.ack_by = author or alert.ack_by
        self._word_resolution(alert, now_ms, notes, author)
        if alert.notified and self.routing.group_wait_s > 0:
            # Resolutions of a group within one group wait are announced together.
            alert.pending_until = self._resolved_flush_time(partition, alert, now_ms)
            self._save(partition, alert, result)
            return
        self._announce_resolved(partition, alert, now_ms, result)

    @staticmethod
    def _word_resolution(alert: Alert, now_ms: int, notes: str | None, author: str | None) -> None:
        """The summary of a resolution notice: how long it lasted and its peak (the firing
        summary stays in `facts["firing_summary"]`). A cleared condition ends at the event
        time of the signal that cleared it; a resolve command, now."""
        started = alert.facts.get("since") or alert.first_seen
        cleared = author is None and notes == "condition cleared"
        ended = alert.evidence.get("ts") if cleared else None
        ended = ended if isinstance(ended, int) and ended >= started else now_ms
        alert.facts = {**alert.facts, "duration_ms": max(ended - started, 0)}
        alert.facts.setdefault("firing_summary", alert.summary)
        why = notes or (f"resolved by {author}" if author else "resolved")
        alert.summary = resolution_text(alert.facts, started, ended, alert.peak, why)

    def _resolved_flush_time(self, partition: int, alert: Alert, now_ms: int) -> int:
        """Join the group's pending resolution notice, or wait `group_wait_s` for others."""
        group = self._group_key(alert)
        for other in self.alerts.get(partition, {}).values():
            if (
                other is not alert
                and other.status == "resolved"
                and other.pending_until is not None
                and self._group_key(other) == group
            ):
                return other.pending_until
        return now_ms + int(self.routing.group_wait_s * 1000)

    def _announce_resolved(
        self, partition: int, alert: Alert, now_ms: int, result: StageResult
    ) -> None:
        """The `resolved` transition, to every channel that was told about the alert."""
        alert.pending_until = None
        channels = [] if alert.muted and not alert.notified else alert.notified
        self._transition(partition, alert, "resolved", channels, now_ms, result)

    def _transition(
        self,
        partition: int,
        alert: Alert,
        transition: str,
        channels: list[str],
        now_ms: int,
        result: StageResult,
        extra: dict[str, Any] | None = None,
    ) -> None:
        alert.seq += 1
        record = {
            "id": f"{alert.alert_id}|{alert.seq}|{transition}",
            "alert_id": alert.alert_id,
            "transition": transition,
            "seq": alert.seq,
            "level": alert.level,
            "severity": alert.severity,
            "status": alert.status,
            "title": alert.title,
            "summary": alert.summary,
            "service": alert.service,
            "key": alert.key,
            "rule": alert.rule,
            "labels": {k: v for k, v in alert.labels.items() if v is not None},
            "channels": list(channels),
            "muted": alert.muted,
            "count": alert.count,
            "first_seen": alert.first_seen,
            "last_seen": alert.last_seen,
            "ts": now_ms,
            "notes": alert.notes,
            "author": alert.ack_by,
            "evidence": alert.evidence,
            "facts": alert.facts,
            "peak": alert.peak,
            "points": alert.points,
        }
        if extra:
            record.update(extra)
        result.emits.append(Emit(ALERTS_TOPIC, alert.alert_id, record))
        self.stats["transitions"] += 1
        self._save(partition, alert, result)

    def _save(self, partition: int, alert: Alert, result: StageResult) -> None:
        result.state[(partition, f"alert|{alert.alert_id}")] = asdict(alert)

    # --- timers -------------------------------------------------------------------------------

    def _timers(self, partition: int, alert: Alert, now_ms: int, result: StageResult) -> str | None:
        """Fire what fell due for `alert` alone; or name the notice that is due, for `tick`
        to send with the rest of its group: "firing" (its group wait ended), "resolved"
        (its resolution waited for the group), "escalated" or "repeated"."""
        if alert.status == "resolved":
            if alert.pending_until is not None:
                return "resolved" if now_ms >= alert.pending_until else None
            if now_ms - (alert.resolved_at or now_ms) > RESOLVED_RETENTION_MS:
                del self.alerts[partition][alert.alert_id]
                result.state[(partition, f"alert|{alert.alert_id}")] = None
            return None
        if alert.muted:
            if alert.status == "firing" and not self._mute_reason(partition, alert, now_ms):
                alert.muted = None  # the silence ended or the inhibiting alert cleared
                self._notify(partition, alert, "firing", now_ms, result)
            return None
        if alert.pending_until is not None and now_ms >= alert.pending_until:
            return "firing"
        if alert.status == "firing" and alert.next_at is not None and now_ms >= alert.next_at:
            route = self.routing.route_for(alert.labels)
            if alert.level < route.max_level(alert.severity) and not alert.override:
                alert.level += 1
                due = "escalated"
            else:
                due = "repeated"
            if self.routing.group_wait_s > 0:
                return due  # alerts of a group escalate together when their timers agree
            self._notify(partition, alert, due, now_ms, result)
        return None

    def _mute_reason(self, partition: int, alert: Alert, now_ms: int) -> str | None:
        silences = list(self.routing.silences) + list(self.silences.get(partition, {}).values())
        for silence in silences:
            if silence.mutes(alert.labels, now_ms):
                return f"silence:{silence.silence_id}"
        for other in self.alerts.get(partition, {}).values():
            if other is alert or other.status == "resolved":
                continue
            if any(rule.mutes(other.labels, alert.labels) for rule in self.routing.inhibitions):
                return f"inhibited:{other.alert_id}"
        return None


def _evidence(signal: dict[str, Any]) -> dict[str, Any]:
    keys = ("kind", "metric", "value", "threshold", "op", "baseline", "window", "ts", "id")
    return {k: signal.get(k) for k in keys if signal.get(k) is not None}


def _points(signal: dict[str, Any]) -> list[list[float]]:
    """The signal's recent points of its metric, checked and bounded: the last MAX_POINTS
    `[epoch ms, finite value]` pairs in time order ([] when it has none)."""
    raw = signal.get("points")
    if not isinstance(raw, list):
        return []
    points = [
        [int(p[0]), float(p[1])]
        for p in raw[-MAX_POINTS:]
        if isinstance(p, list | tuple)
        and len(p) == 2
        and _finite(p[0])
        and _finite(p[1])
        and abs(p[0]) < 2**53
    ]
    points.sort(key=lambda p: p[0])
    return points


def _finite(value: Any) -> TypeGuard[float]:
    """True for a finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _update_figures(alert: Alert, signal: dict[str, Any], firing: bool = True) -> None:
    """A later signal of the alert: keep its peak (the worst value: the lowest for a `<`
    rule or an anomaly below its baseline; a threshold signal says its episode's own
    `peak`) and the issue's running counts."""
    value = signal.get("peak") if _finite(signal.get("peak")) else signal.get("value")
    if not firing and not _finite(signal.get("peak")):
        value = None  # a cleared anomaly's value is back to normal: no peak
    if _finite(value):
        lower = (
            str(signal.get("op") or "").startswith("<")
            or ((signal.get("baseline") or {}).get("z", 0) or 0) < 0
        )
        if alert.peak is None:
            alert.peak = float(value)
        else:
            alert.peak = min(alert.peak, value) if lower else max(alert.peak, value)
    issue = signal.get("issue")
    if isinstance(issue, dict) and alert.facts.get("kind") == "issue":
        for name in ("events", "last_seen", "releases", "status"):
            if issue.get(name) is not None:
                alert.facts[name] = issue[name]
        hosts = list(alert.facts.get("hosts") or [])
        for host in issue.get("hosts") or []:
            if host not in hosts and len(hosts) < 10:
                hosts.append(host)
        alert.facts["hosts"] = hosts
        counts = (alert.facts.get("host_count"), issue.get("host_count"), len(hosts))
        alert.facts["host_count"] = max(c for c in counts if isinstance(c, int))


def _member_facts(alert: Alert) -> dict[str, Any]:
    """What a group's line about one member needs beyond its title: what kind of alert it
    is and where (the group's first line names what the members share)."""
    facts = alert.facts
    return {
        "kind": facts.get("kind"),
        "reason": facts.get("reason"),
        "endpoint": alert.labels.get("endpoint"),
        "release": facts.get("release"),
        "issue_id": facts.get("issue_id") or alert.labels.get("fingerprint"),
    }
