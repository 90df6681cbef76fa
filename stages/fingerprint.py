"""The issue-lifecycle stage: grouped error events become issues (new, counts, regressed, resolved).

Pure: it reads `events.errors` batches (already fingerprinted by ingest) and `commands`, keeps one
IssueState per fingerprint per partition, and returns `issues` updates plus changelog entries.
It never raises on bad input: undecodable records, malformed events and commands are counted in
`stats` and skipped.

Lifecycle: the first event of a fingerprint emits "new"; later events are counted and reported by
periodic "count" updates (at most one per issue per `count_interval_s`; the first moves new ->
active); a "resolve" command emits "resolved"; an event at or after the resolve time emits
"regressed" (late events older than the resolve are counted but do not regress the issue).

Grouping upgrades (grouping/__init__.py `GROUPING_VERSION`): `events.errors` is keyed by the
current version's fingerprint, so an issue opened under the previous version sits under a key
that no new event carries. When such an issue is restored, the stage regroups its sample: if
the new fingerprint differs, it hands the issue over (an `events.errors` element with
`_handover`, keyed by the new fingerprint) and keeps a `moved` marker under the old key. The
partition of the new fingerprint adopts the issue under the new key, with its old issue id:
that alias is its changelog entry, so it survives restores, and every later event of the new
fingerprint counts into the old issue (no "new" update, no new alert). Commands for the old
id are forwarded along the marker. If the new fingerprint already has an issue of its own
(events of it arrived first), that issue stays and the handover is dropped.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import msgspec
import orjson

from grouping import (
    GROUPING_VERSION,
    PREVIOUS_VERSION,
    fingerprint_error,
    parameterise_message,
)
from schemas.issues import issue_record
from schemas.topology import COMMANDS, EVENTS_ERRORS, FINGERPRINT, ISSUES
from stages.base import Emit, Record, StageBase, StageResult

__all__ = ["FingerprintConfig", "FingerprintStage", "IssueState"]

ERRORS_TOPIC = EVENTS_ERRORS
COMMANDS_TOPIC = COMMANDS
SOURCE_KEY = "__src__:"
MOVED = "moved_to"  # changelog value of an issue handed over to its new fingerprint's key
ISSUES_TOPIC = ISSUES

MAX_SERVICES = 50
MAX_RELEASES = 100
MAX_HOSTS = 20  # hosts named per issue; the rest are only counted (`host_bits`)
HOST_BITS = 1024  # linear-counting bitmap of the hosts beyond the named ones
MAX_TITLE_CHARS = 200
_SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
_SAMPLE_TEXT_CHARS = 2048
_SAMPLE_FRAMES = 20


@dataclass
class FingerprintConfig:
    """Tuning of the fingerprint stage."""

    count_interval_s: float = 10.0  # at most one "count" update per issue per interval
    sample_max_bytes: int = 16384  # bound on the JSON size of the kept sample event


@dataclass(slots=True)
class IssueState:
    """Everything known about one issue; its `to_dict()` is the changelog value."""

    issue_id: str
    title: str
    exception_type: str
    message_template: str
    first_seen: int  # event ts, epoch ms
    last_seen: int
    count: int = 0
    services: list[str] = field(default_factory=list)
    releases: list[str] = field(default_factory=list)
    # The first MAX_HOSTS distinct hosts, and how many distinct hosts reported it in all
    # (exact up to MAX_HOSTS, then estimated from `host_bits`: 128 bytes whatever the fleet).
    hosts: list[str] = field(default_factory=list)
    host_count: int = 0
    host_bits: int = 0  # bit crc32(host) % HOST_BITS of every host beyond `hosts`
    first_release: str | None = None
    severity: str = "medium"
    sample: dict[str, Any] | None = None
    status: str = "new"
    resolved_at: int | None = None  # epoch ms
    resolution_notes: str | None = None
    resolved_by: str | None = None
    last_emitted_count: int = 0
    last_emitted_at: float = 0.0  # epoch s of the last new/count/regressed update
    updated_at: int = 0  # epoch ms ("now") of the last update of any kind
    # The grouping version the issue's key was computed with (changelog entries written
    # before versions existed are version 1).
    grouping_version: int = PREVIOUS_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The fields by name (what `dataclasses.asdict` gives, with `host_bits` in hex),
        its lists copied; the sample is shared (it is replaced, never changed in place)."""
        return {
            "issue_id": self.issue_id,
            "title": self.title,
            "exception_type": self.exception_type,
            "message_template": self.message_template,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "count": self.count,
            "services": list(self.services),
            "releases": list(self.releases),
            "hosts": list(self.hosts),
            "host_count": self.host_count,
            "host_bits": format(self.host_bits, "x"),  # 1024 bits: beyond JSON's integers
            "first_release": self.first_release,
            "severity": self.severity,
            "sample": self.sample,
            "status": self.status,
            "resolved_at": self.resolved_at,
            "resolution_notes": self.resolution_notes,
            "resolved_by": self.resolved_by,
            "last_emitted_count": self.last_emitted_count,
            "last_emitted_at": self.last_emitted_at,
            "updated_at": self.updated_at,
            "grouping_version": self.grouping_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IssueState:
        """Rebuild from a changelog value; unknown keys are ignored, missing ones defaulted
        (a record written before hosts were kept starts from its sample event's host)."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        state = cls(**kwargs)
        state.services = list(state.services or [])
        state.releases = list(state.releases or [])
        state.hosts = [h for h in state.hosts or [] if isinstance(h, str)][:MAX_HOSTS]
        bits = state.host_bits
        state.host_bits = int(bits, 16) if isinstance(bits, str) and bits else 0
        state.host_bits &= (1 << HOST_BITS) - 1
        if "hosts" not in data:
            host = (state.sample or {}).get("host")
            state.hosts = [host] if isinstance(host, str) and host else []
        state.host_count = count_hosts(state)
        return state

    def add_host(self, host: str) -> None:
        """Count a host not in `hosts` (the caller checked): named while there is room,
        else set its bit."""
        if len(self.hosts) < MAX_HOSTS:
            self.hosts.append(host)
            self.host_count += 1
            return
        bit = 1 << (zlib.crc32(host.encode("utf-8", "surrogatepass")) % HOST_BITS)
        if not self.host_bits & bit:
            self.host_bits |= bit
            self.host_count = count_hosts(self)


def count_hosts(state: IssueState) -> int:
    """Distinct hosts: the named ones plus the linear-counting estimate of the others
    (-m ln(share of bits still clear); within a few % up to a few thousand hosts)."""
    ones = state.host_bits.bit_count()
    if not ones:
        return len(state.hosts)
    clear = HOST_BITS - ones
    estimate = HOST_BITS * math.log(HOST_BITS / clear) if clear else HOST_BITS * math.log(HOST_BITS)
    return len(state.hosts) + max(ones, round(estimate))


def _bounded_sample(event: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """A copy of `event` whose JSON encoding fits in `max_bytes` (big parts trimmed first)."""
    sample = dict(event)
    if len(orjson.dumps(sample, option=orjson.OPT_NON_STR_KEYS)) <= max_bytes:
        return sample
    sample["context"] = None
    frames = sample.get("stacktrace")
    if isinstance(frames, list) and len(frames) > _SAMPLE_FRAMES:
        sample["stacktrace"] = frames[-_SAMPLE_FRAMES:]
    exc = sample.get("exception")
    if isinstance(exc, dict) and isinstance(exc.get("message"), str):
        sample["exception"] = {**exc, "message": exc["message"][:_SAMPLE_TEXT_CHARS]}
    if len(orjson.dumps(sample, option=orjson.OPT_NON_STR_KEYS)) <= max_bytes:
        return sample
    keep = ("schema", "event_id", "ts", "service", "env", "release", "host", "severity")
    small = {k: sample.get(k) for k in keep}
    if isinstance(exc, dict):
        small["exception"] = {
            "type": str(exc.get("type"))[:200],
            "message": str(exc.get("message"))[: max(0, max_bytes // 4)],
        }
    return small


def _regrouped_key(state: IssueState, key: str) -> str | None:
    """The current grouping's fingerprint of an issue kept under an older version's `key`,
    from its sample event; None when the sample no longer groups to `key` (trimmed)."""
    sample = state.sample
    if not isinstance(sample, dict):
        return None
    if fingerprint_error(sample, PREVIOUS_VERSION).id != key:
        return None
    return fingerprint_error(sample).id


def _emit(emits: list[Emit], kind: str, state: IssueState, now: float) -> None:
    state.updated_at = int(now * 1000)
    emits.append(Emit(ISSUES_TOPIC, state.issue_id, issue_record(kind, state)))


def _title(exc_type: str, template: str) -> str:
    title = f"{exc_type}: {template}" if template else exc_type
    return title if len(title) <= MAX_TITLE_CHARS else title[: MAX_TITLE_CHARS - 1] + "…"


class ErrorRef(msgspec.Struct, gc=False):
    """The fields of an `events.errors` event that counting it needs. Decoded by msgspec,
    `src` is a (raw partition, offset, index) tuple or None; built from an event decoded
    the general way (`_ref`), any value."""

    fingerprint_id: Any = None
    src: tuple[int, int, int] | None = msgspec.field(default=None, name="_src")
    handover: Any = msgspec.field(default=None, name="_handover")
    ts: Any = None
    service: Any = None
    release: Any = None
    severity: Any = None
    host: Any = None


class _LooseRef(msgspec.Struct, gc=False):
    """`ErrorRef` with `src` of any value: for a message whose `_src` is not three
    integers."""

    fingerprint_id: Any = None
    src: Any = msgspec.field(default=None, name="_src")
    handover: Any = msgspec.field(default=None, name="_handover")
    ts: Any = None
    service: Any = None
    release: Any = None
    severity: Any = None
    host: Any = None


_REFS = msgspec.json.Decoder(list[ErrorRef])
_LOOSE_REFS = msgspec.json.Decoder(list[_LooseRef])
_REF_FIELDS = ("fingerprint_id", "_src", "ts", "service", "release", "severity", "host")


class _ErrorBatch:
    """One `events.errors` message: every event's `ErrorRef`, and whole events on demand.

    Most events only add to an issue's count, so msgspec decodes just the fields counting
    needs and skips the rest (stack, context); the whole message is decoded by orjson
    only for an event that opens or regresses an issue (its sample).
    """

    __slots__ = ("_events", "_value", "refs")

    def __init__(self, value: bytes, refs: Sequence[ErrorRef | None], events: list | None) -> None:
        self._value = value
        self.refs = refs
        self._events = events

    @classmethod
    def decode(cls, value: bytes | None) -> _ErrorBatch | None:
        """The batch, or None when the message is not an event or an array of them."""
        if value is None:
            return None
        try:
            return cls(value, _REFS.decode(value), None)
        except Exception:  # an odd `_src`, an odd element or not JSON
            pass
        try:
            return cls(value, _LOOSE_REFS.decode(value), None)  # type: ignore[arg-type]
        except Exception:  # an odd element or not JSON: decode it the general way
            pass
        try:
            events = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        if isinstance(events, dict):
            events = [events]
        if not isinstance(events, list):
            return None
        return cls(value, [_ref(e) for e in events], events)

    def event(self, index: int) -> dict[str, Any]:
        """The whole event at `index`."""
        if self._events is None:
            self._events = orjson.loads(self._value)
        return self._events[index]


def _position(src: Any) -> tuple[Any, tuple[int, int] | None]:
    """(raw partition, (offset, index)) of an `_src` decoded the general way; a position
    of None when it is not three integers (such an event is never skipped)."""
    if type(src) is not list or len(src) != 3:
        return None, None
    raw_partition, offset, index = src
    if type(raw_partition) is not int or type(offset) is not int or type(index) is not int:
        return None, None
    return raw_partition, (offset, index)


def _ref(event: Any) -> ErrorRef | None:
    if not isinstance(event, dict):
        return None
    get = event.get
    return ErrorRef(
        fingerprint_id=get("fingerprint_id"),
        src=get("_src"),
        handover=get("_handover"),
        ts=get("ts"),
        service=get("service"),
        release=get("release"),
        severity=get("severity"),
        host=get("host"),
    )


class FingerprintStage(StageBase):
    """Issue lifecycle per fingerprint; see the module docstring."""

    name = FINGERPRINT.name
    inputs: tuple[str, ...] = FINGERPRINT.reads
    stateful = FINGERPRINT.stateful

    def __init__(self, config: FingerprintConfig | None = None) -> None:
        self.config = config or FingerprintConfig()
        self._issues: dict[int, dict[str, IssueState]] = {}
        # issues whose count changed since their last emission, per partition
        self._pending: dict[int, set[str]] = {}
        # Per partition: raw source partition -> last (offset, index) counted (a tuple; its
        # changelog value is the array [offset, index]). Ingest stamps
        # each error event with its `events.raw` position (`_src`); a re-ingested record
        # (ingest crashed before committing) arrives again at or below it and is skipped.
        self._sources: dict[int, dict[int, tuple[int, int]]] = {}
        # Per partition: old issue id -> the new fingerprint it was handed over to.
        self._moved: dict[int, dict[str, str]] = {}
        # Issues restored under an older grouping version, waiting to be regrouped.
        self._to_regroup: list[tuple[int, str]] = []
        self.stats: dict[str, int] = {
            "events": 0,
            "duplicates": 0,
            "new": 0,
            "regressed": 0,
            "resolved": 0,
            "count_updates": 0,
            "bad_records": 0,
            "bad_events": 0,
            "commands_ignored": 0,
            "bad_commands": 0,
            "handed_over": 0,
            "adopted": 0,
            "handovers_dropped": 0,
        }

    # -- stage protocol ----------------------------------------------------------------------

    def counters(self) -> Mapping[str, float]:
        return self.stats

    def state_size(self) -> int | None:
        """Issues held."""
        return sum(len(issues) for issues in self._issues.values())

    def process(self, records: list[Record], now: float) -> StageResult:
        result = StageResult()
        changed: dict[int, set[str]] = {}
        if self._to_regroup:
            self._regroup_restored(result)
        for record in records:
            try:
                if record.topic == COMMANDS_TOPIC:
                    self._command(record, now, result.emits, changed)
                else:
                    self._errors(record, now, result.emits, changed)
            except Exception:  # defensive: a bad record must never stop the stage
                self.stats["bad_records"] += 1
        self._emit_due_counts(now, result.emits, changed)
        self._collect_state(changed, result)
        for partition in {r.partition for r in records if r.topic != COMMANDS_TOPIC}:
            for source, position in self._sources.get(partition, {}).items():
                result.state[(partition, f"{SOURCE_KEY}{source}")] = list(position)
        return result

    def tick(self, now: float) -> StageResult:
        result = StageResult()
        changed: dict[int, set[str]] = {}
        if self._to_regroup:
            self._regroup_restored(result)
        self._emit_due_counts(now, result.emits, changed)
        self._collect_state(changed, result)
        return result

    def restore(self, partition: int, key: str, value: Any) -> None:
        if key.startswith(SOURCE_KEY):
            if isinstance(value, list) and len(value) == 2:
                source = int(key[len(SOURCE_KEY) :])
                offset, index = (int(v) for v in value)
                self._sources.setdefault(partition, {})[source] = (offset, index)
            return
        issues = self._issues.setdefault(partition, {})
        pending = self._pending.setdefault(partition, set())
        moved = self._moved.setdefault(partition, {})
        if value is None:
            issues.pop(key, None)
            pending.discard(key)
            moved.pop(key, None)
            return
        if isinstance(value, dict) and isinstance(value.get(MOVED), str):
            issues.pop(key, None)
            pending.discard(key)
            moved[key] = value[MOVED]
            return
        try:
            state = IssueState.from_dict(value)
        except Exception:
            self.stats["bad_records"] += 1
            return
        issues[key] = state
        moved.pop(key, None)
        if state.grouping_version < GROUPING_VERSION:
            self._to_regroup.append((partition, key))
        if state.count != state.last_emitted_count:
            pending.add(key)
        else:
            pending.discard(key)

    def assign(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._issues.setdefault(p, {})
            self._pending.setdefault(p, set())

    def revoke(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        for p in gone:
            self._issues.pop(p, None)
            self._pending.pop(p, None)
            self._sources.pop(p, None)
            self._moved.pop(p, None)
        self._to_regroup = [(p, k) for p, k in self._to_regroup if p not in gone]

    # -- queries -----------------------------------------------------------------------------

    def issue(self, issue_id: str) -> IssueState | None:
        """The state of one issue in any owned partition (for tests and tooling)."""
        for issues in self._issues.values():
            state = issues.get(issue_id)
            if state is not None and state.issue_id == issue_id:
                return state
        for issues in self._issues.values():  # adopted under a new fingerprint
            for state in issues.values():
                if state.issue_id == issue_id:
                    return state
        return None

    # -- grouping upgrades -------------------------------------------------------------------

    def _regroup_restored(self, result: StageResult) -> None:
        """Hand issues restored under an older grouping version over to their new key."""
        todo, self._to_regroup = self._to_regroup, []
        for partition, key in todo:
            state = self._issues.get(partition, {}).get(key)
            if state is None or state.grouping_version >= GROUPING_VERSION:
                continue
            new_key = _regrouped_key(state, key)
            state.grouping_version = GROUPING_VERSION
            if new_key is None or new_key == key:
                # same fingerprint in both versions (frame grouping), or a sample that
                # cannot be regrouped: the issue stays where it is
                result.state[(partition, key)] = state.to_dict()
                continue
            del self._issues[partition][key]
            self._pending.get(partition, set()).discard(key)
            self._moved.setdefault(partition, {})[key] = new_key
            result.state[(partition, key)] = {MOVED: new_key, "issue_id": state.issue_id}
            result.emits.append(
                Emit(
                    ERRORS_TOPIC,
                    new_key,
                    {"fingerprint_id": new_key, "_handover": state.to_dict()},
                )
            )
            self.stats["handed_over"] += 1

    def _adopt(self, issues: dict[str, IssueState], key: str, value: Any) -> bool:
        """Take over an issue handed over from its old key; False when `key` has its own."""
        if key in issues or not isinstance(value, dict):
            self.stats["handovers_dropped"] += 1
            return False
        state = IssueState.from_dict(value)
        state.grouping_version = GROUPING_VERSION
        issues[key] = state
        self.stats["adopted"] += 1
        return True

    # -- events ------------------------------------------------------------------------------

    def _errors(
        self, record: Record, now: float, emits: list[Emit], changed: dict[int, set[str]]
    ) -> None:
        batch = _ErrorBatch.decode(record.value)
        if batch is None:
            self.stats["bad_records"] += 1
            return
        partition = record.partition
        issues = self._issues.get(partition)
        if issues is None:
            issues = self._issues[partition] = {}
            self._pending[partition] = set()
        pending = self._pending[partition]
        touched = changed.setdefault(partition, set())
        sources = self._sources.setdefault(partition, {})
        stats = self.stats
        counted = bad = duplicates = 0
        sample_bytes = self.config.sample_max_bytes
        try:
            for i, ref in enumerate(batch.refs):
                if (
                    ref is None
                    or not isinstance(issue_id := ref.fingerprint_id, str)
                    or not issue_id
                ):
                    bad += 1
                    continue
                if ref.handover is not None:
                    if self._adopt(issues, issue_id, ref.handover):
                        touched.add(issue_id)
                    continue
                # Skip an event at or below its raw partition's last counted position.
                src = ref.src
                position: tuple[int, int] | None
                if type(src) is tuple:  # (raw partition, offset, index), as msgspec decoded it
                    raw_partition, offset, index = src
                    position = (offset, index)
                else:
                    raw_partition, position = _position(src)
                if position is not None:
                    last = sources.get(raw_partition)
                    if last is not None and position <= last:
                        duplicates += 1
                        continue
                    sources[raw_partition] = position
                ts = ref.ts
                if type(ts) is not int:
                    ts = record.timestamp or int(now * 1000)
                state = issues.get(issue_id)
                try:
                    if state is None:
                        state = self._new_issue(issue_id, batch.event(i), ts, now, emits)
                        issues[issue_id] = state
                    else:
                        # Count one more event of the issue (`batch.event(i)` decodes the
                        # whole event, only for a regression's sample).
                        state.count += 1
                        if ts > state.last_seen:
                            state.last_seen = ts
                        elif ts < state.first_seen:
                            state.first_seen = ts
                        service = ref.service
                        services = state.services
                        if (
                            isinstance(service, str)
                            and service not in services
                            and len(services) < MAX_SERVICES
                        ):
                            services.append(service)
                        release = ref.release
                        releases = state.releases
                        if (
                            isinstance(release, str)
                            and release not in releases
                            and len(releases) < MAX_RELEASES
                        ):
                            releases.append(release)
                        host = ref.host
                        if type(host) is str and host and host not in state.hosts:
                            state.add_host(host)
                        severity = ref.severity
                        if severity != state.severity and _SEVERITY_RANK.get(
                            severity, -1
                        ) > _SEVERITY_RANK.get(state.severity, -1):
                            state.severity = severity
                        if state.status == "resolved":
                            self._regress(state, ts, now, emits, batch, i, sample_bytes)
                        if state.count != state.last_emitted_count:
                            pending.add(issue_id)
                except Exception:  # defensive: one odd event must not lose the batch's state
                    bad += 1
                    if issue_id in issues:
                        touched.add(issue_id)
                    continue
                touched.add(issue_id)
                counted += 1
        finally:
            stats["events"] += counted
            stats["bad_events"] += bad
            stats["duplicates"] += duplicates

    def _regress(
        self,
        state: IssueState,
        ts: int,
        now: float,
        emits: list[Emit],
        batch: _ErrorBatch,
        index: int,
        sample_bytes: int,
    ) -> None:
        """A resolved issue's event at or after its resolve time regresses it."""
        if state.resolved_at is not None and ts >= state.resolved_at:
            state.status = "regressed"
            state.sample = _bounded_sample(batch.event(index), sample_bytes)
            state.last_emitted_count = state.count
            state.last_emitted_at = now
            _emit(emits, "regressed", state, now)
            self.stats["regressed"] += 1

    def _new_issue(
        self, issue_id: str, event: dict[str, Any], ts: int, now: float, emits: list[Emit]
    ) -> IssueState:
        exc = event.get("exception")
        exc = exc if isinstance(exc, dict) else {}
        exc_type = str(exc.get("type") or "Error")
        template = event.get("message_template")  # from ingests before templates were lazy
        if not isinstance(template, str):
            message = exc.get("message")
            template = parameterise_message(message if isinstance(message, str) else "")
        release = event.get("release") if isinstance(event.get("release"), str) else None
        service = event.get("service")
        severity = event.get("severity")
        host = event.get("host")
        hosts = [host] if isinstance(host, str) and host else []
        state = IssueState(
            issue_id=issue_id,
            title=_title(exc_type, template),
            exception_type=exc_type,
            message_template=template,
            first_seen=ts,
            last_seen=ts,
            count=1,
            services=[service] if isinstance(service, str) else [],
            releases=[release] if release else [],
            hosts=hosts,
            host_count=len(hosts),
            first_release=release,
            severity=severity if severity in _SEVERITY_RANK else "medium",
            sample=_bounded_sample(event, self.config.sample_max_bytes),
            status="new",
            last_emitted_count=1,
            last_emitted_at=now,
            grouping_version=GROUPING_VERSION,
        )
        _emit(emits, "new", state, now)
        self.stats["new"] += 1
        return state

    # -- count updates -----------------------------------------------------------------------

    def _emit_due_counts(self, now: float, emits: list[Emit], changed: dict[int, set[str]]) -> None:
        interval = self.config.count_interval_s
        for partition, pending in self._pending.items():
            if not pending:
                continue
            issues = self._issues[partition]
            done: list[str] = []
            for issue_id in pending:
                state = issues.get(issue_id)
                if state is None or state.count == state.last_emitted_count:
                    done.append(issue_id)
                    continue
                if now - state.last_emitted_at < interval:
                    continue
                if state.status == "new":
                    state.status = "active"
                state.last_emitted_count = state.count
                state.last_emitted_at = now
                _emit(emits, "count", state, now)
                self.stats["count_updates"] += 1
                changed.setdefault(partition, set()).add(issue_id)
                done.append(issue_id)
            pending.difference_update(done)

    # -- commands ----------------------------------------------------------------------------

    def _command(
        self, record: Record, now: float, emits: list[Emit], changed: dict[int, set[str]]
    ) -> None:
        try:
            cmd = orjson.loads(record.value) if record.value is not None else None
        except orjson.JSONDecodeError:
            cmd = None
        if not isinstance(cmd, dict) or not isinstance(cmd.get("command"), str):
            self.stats["bad_commands"] += 1
            return
        target = cmd.get("id")
        if not isinstance(target, str):
            self.stats["bad_commands"] += 1
            return
        fingerprint = cmd.get("fingerprint")
        key = fingerprint if isinstance(fingerprint, str) else target
        state = self._issues.get(record.partition, {}).get(key)
        if state is not None and state.issue_id != target:
            state = None
        moved_to = self._moved.get(record.partition, {}).get(target)
        if cmd["command"] == "resolve" and state is None and moved_to is not None:
            # the issue was handed over to its new fingerprint: forward the command there
            emits.append(Emit(COMMANDS_TOPIC, moved_to, {**cmd, "fingerprint": moved_to}))
            return
        if cmd["command"] != "resolve" or state is None:
            self.stats["commands_ignored"] += 1  # alert commands, or an issue owned elsewhere
            return
        ts = cmd.get("ts")
        resolved_at = (
            int(ts) if (type(ts) is int or type(ts) is float) and ts >= 0 else int(now * 1000)
        )
        notes = cmd.get("notes")
        notes = notes if isinstance(notes, str) else None
        author = cmd.get("author")
        author = author if isinstance(author, str) else None
        if (
            state.status == "resolved"
            and state.resolved_at == resolved_at
            and state.resolution_notes == notes
        ):
            self.stats["commands_ignored"] += 1  # a redelivered command
            return
        state.status = "resolved"
        state.resolved_at = resolved_at
        state.resolution_notes = notes
        state.resolved_by = author
        _emit(emits, "resolved", state, now)
        self.stats["resolved"] += 1
        changed.setdefault(record.partition, set()).add(key)

    # -- changelog ---------------------------------------------------------------------------

    def _collect_state(self, changed: dict[int, set[str]], result: StageResult) -> None:
        for partition, ids in changed.items():
            issues = self._issues.get(partition)
            if issues is None:
                continue
            for issue_id in ids:
                state = issues.get(issue_id)
                if state is not None:
                    result.state[(partition, issue_id)] = state.to_dict()
