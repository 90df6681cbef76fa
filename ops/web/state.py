"""The dashboard's materialized view: fed records of `rollups`, `issues`, `alerts`,
`deliveries`, `signals` and `commands`, queried by the pages. Pure (no I/O, no clock: the
caller passes `now_ms`) and bounded (`Limits`):

- rollups: one `Point` per window, per series and resolution, for a horizon per resolution
  (whole-service series keep longer than endpoint series), at most `max_series` series;
  whole-service HDR histograms only for the SLA period (they feed the merged percentiles);
- issues: the latest record per issue, plus its count at most once per hour for 8 days
  (the 7-day trends), at most `max_issues` (least recently seen evicted first);
- alerts: the latest transition per alert and its last transitions, resolved alerts for
  24 h, at most `max_alerts`; the last deliveries per alert;
- signals: the last `max_signals` (root-cause correlations);
- commands: silences, and the last command sent per alert (shown until it takes effect).

Records are values decoded from JSON, so anything may be missing or of the wrong type:
everything here is defensive, and nothing here escapes (render.py does).
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ops.dashboard_view import STATUS_RANK, dashboard_data
from ops.rootcause import analyze_issue
from ops.sla_view import service_status
from ops.views import latest_alerts
from schemas.handles import action_handle, is_handle
from schemas.rollups import SERVICE_WIDE, is_rollup
from sla import SLAConfig

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
RESOLUTIONS = ("10s", "1m", "1h")
VIEWS = ("rollups", "issues", "alerts", "deliveries", "signals", "commands")
ACTIVE = ("firing", "acknowledged")
REQUEST_KINDS = ("ack", "resolve", "route")


@dataclass(frozen=True)
class Limits:
    """Memory bounds of the view (docs/dashboard.md, "What it keeps in memory")."""

    # resolution -> how much history to keep, for whole-service and for endpoint series
    service_horizon_ms: tuple[tuple[str, int], ...] = (
        ("10s", HOUR_MS),
        ("1m", DAY_MS),
        ("1h", 7 * DAY_MS),
    )
    endpoint_horizon_ms: tuple[tuple[str, int], ...] = (
        ("10s", 15 * 60_000),
        ("1m", 3 * HOUR_MS),
        ("1h", 2 * DAY_MS),
    )
    other_horizon_ms: int = DAY_MS  # any other resolution
    max_points: int = 2000  # per series and resolution, whatever the horizon says
    max_series: int = 1000
    sla_period_ms: int = HOUR_MS  # SLA evaluation period (histograms kept this long)
    max_issues: int = 2000
    issue_history_ms: int = 8 * DAY_MS
    max_alerts: int = 2000
    resolved_alert_retention_ms: int = DAY_MS
    transitions_per_alert: int = 10
    deliveries_per_alert: int = 20
    max_signals: int = 1000
    max_silences: int = 500
    max_requests: int = 2000

    @property
    def longest_horizon_ms(self) -> int:
        """Rollups older than this (before the newest) are never kept."""
        spans = [ms for _, ms in self.service_horizon_ms + self.endpoint_horizon_ms]
        return max([*spans, self.other_horizon_ms])

    def horizon(self, resolution: str, whole_service: bool) -> int:
        table = dict(self.service_horizon_ms if whole_service else self.endpoint_horizon_ms)
        return table.get(resolution, self.other_horizon_ms)


class Point(NamedTuple):
    """One closed window of one series (a rollup without its histogram)."""

    start: int
    end: int
    # Shadows tuple.count on purpose (a rollup's field name, read as `point.count`):
    # legal at run time; mypy reports any NamedTuple field named like a tuple method.
    count: int  # type: ignore[assignment]
    errors: int
    client_errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return default


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _str(value: Any, limit: int = 2000) -> str:
    return (value if isinstance(value, str) else "" if value is None else str(value))[:limit]


class _Series:
    """The points of one series at one resolution, oldest first, and recent histograms."""

    __slots__ = ("hists", "latest_end", "points", "traffic")

    def __init__(self) -> None:
        self.points: OrderedDict[int, Point] = OrderedDict()
        self.hists: OrderedDict[int, str] = OrderedDict()
        self.latest_end = 0
        self.traffic = 0  # events in the points kept: what eviction and ranking weigh

    def add(
        self, point: Point, hist: str | None, horizon: int, max_points: int, hist_horizon: int
    ) -> None:
        """Keep `point` (and `hist`) unless older than the horizons; drop what fell out."""
        self.latest_end = max(self.latest_end, point.end)
        cutoff, hist_cutoff = self.latest_end - horizon, self.latest_end - hist_horizon
        if point.end <= cutoff:
            return
        in_order = not self.points or point.start >= next(reversed(self.points))
        replaced = self.points.get(point.start)
        self.traffic += point.count - (replaced.count if replaced is not None else 0)
        self.points[point.start] = point
        if hist is not None and point.end > hist_cutoff:
            self.hists[point.start] = hist
        if not in_order:  # rare: a late or re-emitted window; keep both in time order
            self.points = OrderedDict(sorted(self.points.items()))
            self.hists = OrderedDict(sorted(self.hists.items()))
        while self.points and (
            len(self.points) > max_points or next(iter(self.points.values())).end <= cutoff
        ):
            self.traffic -= self.points.popitem(last=False)[1].count
        while self.hists:
            first = self.points.get(next(iter(self.hists)))
            if first is not None and first.end > hist_cutoff:
                break
            self.hists.popitem(last=False)


_SLA_RANK = {"critical": 0, "warning": 1}


def _service_rank(row: dict[str, Any]) -> tuple[Any, ...]:
    """Overview order: services with problems first (active alerts, then SLA status), then
    by traffic, busiest first; the name breaks ties."""
    sla = row["sla"] or {}
    return (
        -row["active_alerts"],
        _SLA_RANK.get(str(sla.get("status")), 2),
        -row["traffic"],
        row["service"],
    )


class DashboardState:
    """Feed it records with `apply`; read it with the page queries."""

    def __init__(self, sla: SLAConfig | None = None, limits: Limits | None = None) -> None:
        self.sla = sla or SLAConfig()
        self.limits = limits or Limits()
        self.version = 0
        self.view_versions = dict.fromkeys(VIEWS, 0)
        self.records = dict.fromkeys(VIEWS, 0)
        self._series: dict[tuple[str, str, str], _Series] = {}  # (service, endpoint, res)
        self._endpoints: dict[str, set[str]] = {}
        self._service_versions: dict[str, int] = {}
        self._sla_cache: dict[str, tuple[int, dict[str, Any] | None]] = {}
        self._issues: dict[str, dict[str, Any]] = {}
        self._issue_counts: dict[str, dict[int, tuple[int, int]]] = {}
        self._alerts: dict[str, dict[str, Any]] = {}
        self._handles: dict[str, str] = {}  # action handle -> alert or issue id (handles.py)
        self._transitions: dict[str, deque[dict[str, Any]]] = {}
        self._deliveries: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self._signals: deque[dict[str, Any]] = deque(maxlen=self.limits.max_signals)
        self._silences: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._requests: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._latest_alert_ts = 0
        self._kpi_cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    # --- feeding ------------------------------------------------------------------------------

    def apply(self, topic: str, key: str | None, value: Any) -> str | None:
        """Fold one record of a logical topic in; returns the view it changed, or None."""
        handler = {
            "rollups": self._on_rollup,
            "issues": self._on_issue,
            "alerts": self._on_alert,
            "deliveries": self._on_delivery,
            "signals": self._on_signal,
            "commands": self._on_command,
        }.get(topic)
        if handler is None or not isinstance(value, dict) or not handler(key, value):
            return None
        self.version += 1
        self.view_versions[topic] = self.version
        self.records[topic] += 1
        return topic

    def _on_rollup(self, _key: str | None, value: dict[str, Any]) -> bool:
        if not is_rollup(value) or not isinstance(value.get("resolution"), str):
            return False
        service, endpoint = _str(value["service"], 200), _str(value["endpoint"], 500)
        resolution = _str(value["resolution"], 16)
        start, end = _int(value["start"], -1), _int(value["end"], -1)
        if not service or end <= start or start < 0:
            return False
        key = (service, endpoint, resolution)
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= self.limits.max_series:
                self._evict_series()
            series = self._series[key] = _Series()
            self._endpoints.setdefault(service, set()).add(endpoint)
        whole = endpoint == SERVICE_WIDE
        point = Point(
            start,
            end,
            _int(value["count"]),
            _int(value.get("errors")),
            _int(value.get("client_errors")),
            _num(value.get("p50_ms")),
            _num(value.get("p95_ms")),
            _num(value.get("p99_ms")),
            _num(value.get("max_ms")),
        )
        hist = value.get("hist") if whole and isinstance(value.get("hist"), str) else None
        series.add(
            point,
            hist,
            self.limits.horizon(resolution, whole),
            self.limits.max_points,
            self.limits.sla_period_ms,
        )
        self._service_versions[service] = self._service_versions.get(service, 0) + 1
        return True

    def _evict_series(self) -> None:
        """Drop the series with the least traffic kept (endpoint series before services;
        of equal traffic, the one quiet longest): a flood of new, tiny series (one client's
        bug) cannot push the busy services out."""
        victim = min(
            self._series,
            key=lambda k: (
                k[1] == SERVICE_WIDE,
                self._series[k].traffic,
                self._series[k].latest_end,
            ),
        )
        del self._series[victim]
        service, endpoint, _ = victim
        if not any(k[:2] == (service, endpoint) for k in self._series):
            endpoints = self._endpoints.get(service, set())
            endpoints.discard(endpoint)
            if not endpoints:
                self._endpoints.pop(service, None)
                self._service_versions.pop(service, None)
                self._sla_cache.pop(service, None)

    def _on_issue(self, _key: str | None, value: dict[str, Any]) -> bool:
        issue_id = value.get("issue_id")
        if not isinstance(issue_id, str) or not issue_id:
            return False
        count, ts = _int(value.get("count")), _int(value.get("last_seen") or value.get("ts"))
        history = self._issue_counts.setdefault(issue_id, {})
        bucket = ts // HOUR_MS
        if count >= history.get(bucket, (0, -1))[1]:
            history[bucket] = (ts, count)
        oldest = max(history) - self.limits.issue_history_ms // HOUR_MS
        for stale in [b for b in history if b < oldest]:
            del history[stale]
        current = self._issues.get(issue_id)
        order = (count, _int(value.get("updated_at")))
        if current is None or order >= (_int(current.get("count")), _int(current["updated_at"])):
            self._issues[issue_id] = {**value, "updated_at": order[1]}
        if current is None:
            self._handles[action_handle(issue_id)] = issue_id
        if len(self._issues) > self.limits.max_issues:
            self._evict_issues()
        return True

    def _evict_issues(self) -> None:
        """Drop a tenth of the issues: resolved ones first, then the least recently seen."""
        ranked = sorted(
            self._issues.values(),
            key=lambda i: (i.get("status") != "resolved", _int(i.get("last_seen"))),
        )
        for issue in ranked[: max(1, len(ranked) // 10)]:
            self._issues.pop(issue["issue_id"], None)
            self._issue_counts.pop(issue["issue_id"], None)
            self._forget_handle(issue["issue_id"])

    def _on_alert(self, _key: str | None, value: dict[str, Any]) -> bool:
        alert_id = value.get("alert_id")
        if not isinstance(alert_id, str) or not alert_id:
            return False
        seq = _int(value.get("seq"))
        current = self._alerts.get(alert_id)
        if current is None or seq >= _int(current.get("seq")):
            self._alerts[alert_id] = value
        if current is None:
            self._handles[action_handle(alert_id)] = alert_id
        history = self._transitions.setdefault(
            alert_id, deque(maxlen=self.limits.transitions_per_alert)
        )
        if all(t["seq"] != seq for t in history):
            history.append(
                {
                    "seq": seq,
                    "transition": _str(value.get("transition"), 32),
                    "ts": _int(value.get("ts")),
                    "channels": [
                        _str(c, 32)
                        for c in [
                            *(value.get("channels") or [])[:10],
                            *(value.get("group_channels") or [])[:10],
                        ]
                    ],
                    "author": _str(value.get("author"), 128) or None,
                    "notes": _str(value.get("notes"), 500) or None,
                }
            )
            if len(history) > 1 and history[-2]["seq"] > seq:
                ordered = sorted(history, key=lambda t: t["seq"])
                history.clear()
                history.extend(ordered)
        self._latest_alert_ts = max(self._latest_alert_ts, _int(value.get("ts")))
        self._prune_alerts()
        return True

    def _prune_alerts(self) -> None:
        cutoff = self._latest_alert_ts - self.limits.resolved_alert_retention_ms
        stale = [
            a
            for a, v in self._alerts.items()
            if v.get("status") == "resolved" and _int(v.get("ts")) < cutoff
        ]
        if len(self._alerts) - len(stale) > self.limits.max_alerts:
            ranked = sorted(
                self._alerts.items(),
                key=lambda kv: (kv[1].get("status") != "resolved", _int(kv[1].get("ts"))),
            )
            stale += [a for a, _ in ranked[: len(self._alerts) - self.limits.max_alerts]]
        for alert_id in stale:
            self._alerts.pop(alert_id, None)
            self._transitions.pop(alert_id, None)
            self._deliveries.pop(alert_id, None)
            self._forget_handle(alert_id)

    def _forget_handle(self, item_id: str) -> None:
        """Drop an evicted alert's or issue's handle unless the other kind still uses it."""
        if item_id not in self._alerts and item_id not in self._issues:
            self._handles.pop(action_handle(item_id), None)

    def _on_delivery(self, _key: str | None, value: dict[str, Any]) -> bool:
        alert_id = value.get("alert_id")
        if not isinstance(alert_id, str) or not alert_id:
            return False
        log = self._deliveries.get(alert_id)
        if log is None:
            log = self._deliveries[alert_id] = deque(maxlen=self.limits.deliveries_per_alert)
            while len(self._deliveries) > self.limits.max_alerts:
                self._deliveries.popitem(last=False)
        record_id = _str(value.get("id"), 500)
        if any(d["id"] == record_id for d in log):
            return False  # a re-delivered record
        log.append(
            {
                "id": record_id,
                "transition_id": _str(value.get("transition_id"), 500),
                "channel": _str(value.get("channel"), 32),
                "status": _str(value.get("status"), 32),
                "final": bool(value.get("final", True)),
                "attempts": _int(value.get("attempts")),
                "reason": _str(value.get("reason"), 300) or None,
                "ts": _int(value.get("ts")),
            }
        )
        return True

    def _on_signal(self, _key: str | None, value: dict[str, Any]) -> bool:
        if value.get("kind") not in ("anomaly", "threshold"):
            return False
        keep = ("id", "rule", "kind", "severity", "service", "endpoint", "metric", "state")
        slim: dict[str, Any] = {k: _str(value.get(k), 300) or None for k in keep}
        slim["fingerprint"] = _str(value.get("fingerprint"), 64) or None
        slim["summary"] = _str(value.get("summary"), 300)
        slim["value"] = _num(value.get("value"))
        slim["ts"] = _int(value.get("ts"))
        self._signals.append(slim)
        return True

    def _on_command(self, _key: str | None, value: dict[str, Any]) -> bool:
        kind = value.get("command")
        if kind == "silence":
            silence_id = _str(value.get("command_id") or value.get("id"), 128)
            matchers = value.get("matchers")
            if not silence_id or not isinstance(matchers, dict) or silence_id in self._silences:
                return False  # one copy per partition: keep the first
            self._silences[silence_id] = {
                "silence_id": silence_id,
                "matchers": {_str(k, 64): _str(v, 300) for k, v in list(matchers.items())[:20]},
                "starts_at": _int(value.get("starts_at")),
                "ends_at": _int(value.get("ends_at")),
                "author": _str(value.get("author"), 128),
                "comment": _str(value.get("comment"), 500),
            }
            while len(self._silences) > self.limits.max_silences:
                self._silences.popitem(last=False)
            return True
        target = value.get("id")
        if kind not in REQUEST_KINDS or not isinstance(target, str) or ":" not in target:
            return False  # issue commands are the issue's own business
        self._requests.pop(target, None)
        self._requests[target] = {
            "command": kind,
            "ts": _int(value.get("ts")),
            "author": _str(value.get("author"), 128) or None,
        }
        while len(self._requests) > self.limits.max_requests:
            self._requests.popitem(last=False)
        return True

    # --- queries: services ----------------------------------------------------------------------

    def services(self) -> list[str]:
        return sorted(self._endpoints)

    def points(self, service: str, endpoint: str, resolution: str) -> list[Point]:
        """The kept windows of one series at one resolution, oldest first."""
        found = self._series.get((service, endpoint, resolution))
        return list(found.points.values()) if found else []

    def service_sla(self, service: str) -> dict[str, Any] | None:
        """SLA status over the SLA period of the service's whole-service windows: 1 min
        windows when there are any (cheap: 60 histograms an hour), else 10 s windows."""
        version = self._service_versions.get(service, 0)
        cached = self._sla_cache.get(service)
        if cached is not None and cached[0] == version:
            return cached[1]
        result = None
        for resolution in ("1m", "10s"):
            series = self._series.get((service, SERVICE_WIDE, resolution))
            if series is None or not series.hists:
                continue
            rollups: list[dict[str, Any]] = [
                {
                    "start": p.start,
                    "end": p.end,
                    "count": p.count,
                    "errors": p.errors,
                    "hist": series.hists[p.start],
                }
                for p in series.points.values()
                if p.start in series.hists
            ]
            report, _ = service_status(service, rollups, self.sla, self.limits.sla_period_ms)
            data = report.to_dict()
            metrics = data["metrics"]
            observed = [r for r in rollups if r["end"] > data["start"]]
            first = min((r["start"] for r in observed), default=data["start"])
            span_s = max((data["end"] - max(first, data["start"])) / 1000, 1e-9)
            result = {
                "status": data["status"],
                "resolution": resolution,
                "start": data["start"],
                "end": data["end"],
                "count": data["count"],
                "errors": data["errors"],
                "availability_pct": (metrics.get("uptime_pct") or {}).get("value"),
                "error_rate_pct": (metrics.get("error_rate_pct") or {}).get("value"),
                "p50_ms": (metrics.get("p50_ms") or {}).get("value"),
                "p95_ms": (metrics.get("p95_ms") or {}).get("value"),
                "p99_ms": (metrics.get("p99_ms") or {}).get("value"),
                "throughput_rps": data["count"] / span_s,  # over the windows observed
                "violations": data["violations"],
            }
            break
        self._sla_cache[service] = (version, result)
        return result

    def service_rows(self) -> list[dict[str, Any]]:
        """One overview row per service: SLA-period figures, the latest 10 s, active alerts."""
        active: dict[str, int] = {}
        for alert in self._alerts.values():
            if alert.get("status") in ACTIVE:
                service = _str(alert.get("service"), 200)
                active[service] = active.get(service, 0) + 1
        rows = []
        for service in set(self._endpoints) | set(active):
            latest = self.points(service, SERVICE_WIDE, "10s")[-1:]
            last = latest[0] if latest else None
            rows.append(
                {
                    "service": service,
                    "sla": self.service_sla(service) if service in self._endpoints else None,
                    "now": None
                    if last is None
                    else {
                        "end": last.end,
                        "rps": last.count / max((last.end - last.start) / 1000, 1e-9),
                        "p99_ms": last.p99_ms,
                        "errors": last.errors,
                    },
                    "active_alerts": active.get(service, 0),
                    "traffic": self._traffic(service),
                }
            )
        rows.sort(key=_service_rank)
        return rows

    def _traffic(self, service: str) -> int:
        """Events of the service's whole-service series kept at its finest resolution."""
        for resolution in ("10s", "1m", "1h"):
            series = self._series.get((service, SERVICE_WIDE, resolution))
            if series is not None:
                return series.traffic
        return 0

    def service_page(self, service: str, endpoint: str = SERVICE_WIDE) -> dict[str, Any] | None:
        """Percentile series per resolution of one series, and the service's endpoint table."""
        if service not in self._endpoints:
            return None
        charts = {res: self.points(service, endpoint, res) for res in RESOLUTIONS}
        table = []
        for name in sorted(self._endpoints[service] - {SERVICE_WIDE}):
            for res in RESOLUTIONS:  # the finest resolution that has data
                points = self.points(service, name, res)
                if points:
                    break
            if not points:
                continue
            last = points[-1]
            count = sum(p.count for p in points)
            errors = sum(p.errors for p in points)
            table.append(
                {
                    "endpoint": name,
                    "resolution": res,
                    "since": points[0].start,
                    "count": count,
                    "error_rate_pct": 100.0 * errors / count if count else None,
                    "client_errors": sum(p.client_errors for p in points),
                    "last": last,
                }
            )
        return {
            "service": service,
            "endpoint": endpoint,
            "charts": charts,
            "endpoints": table,
            "sla": self.service_sla(service),
            "alerts": [a for a in self.alerts() if a.get("service") == service],
        }

    # --- queries: issues --------------------------------------------------------------------

    def _count_at(self, issue_id: str) -> Callable[[int], int]:
        """A function: the issue's count as of a time (to the hour; 0 before it was seen)."""
        history = sorted(self._issue_counts.get(issue_id, {}).values())
        times = [ts for ts, _ in history]
        best, counts = 0, []
        for _, count in history:
            best = max(best, count)
            counts.append(best)

        def count_at(ts: int) -> int:
            i = bisect.bisect_right(times, ts)
            return counts[i - 1] if i else 0

        return count_at

    def issue_trend(self, issue_id: str, now_ms: int, days: int = 7) -> list[int]:
        """Events per day for the last `days` days (oldest first), to the hour."""
        count_at = self._count_at(issue_id)
        return [
            count_at(now_ms - d * DAY_MS) - count_at(now_ms - (d + 1) * DAY_MS)
            for d in range(days - 1, -1, -1)
        ]

    def issues(self, now_ms: int, status: str | None = None) -> list[dict[str, Any]]:
        """Issues by count (most first), each with its 7-day trend."""
        out = [
            {**issue, "trend": self.issue_trend(issue["issue_id"], now_ms)}
            for issue in self._issues.values()
            if status is None or issue.get("status") == status
        ]
        out.sort(key=lambda i: (-_int(i.get("count")), str(i["issue_id"])))
        return out

    def issue(self, issue_id: str, now_ms: int) -> dict[str, Any] | None:
        """One issue with its trend and root-cause hints (ops/rootcause.py)."""
        issue = self._issues.get(issue_id)
        if issue is None:
            return None
        rollups = []
        for service in issue.get("services") or []:
            if isinstance(service, str):
                points = self.points(service, SERVICE_WIDE, "1m") or self.points(
                    service, SERVICE_WIDE, "10s"
                )
                rollups += [
                    {"service": service, "endpoint": SERVICE_WIDE, **p._asdict()} for p in points
                ]
        analysis = analyze_issue(issue, list(self._issues.values()), list(self._signals), rollups)
        return {"issue": issue, "trend": self.issue_trend(issue_id, now_ms), "analysis": analysis}

    def kpis(self, now_ms: int) -> dict[str, Any]:
        """ops/dashboard_view.py's dashboard (the `prodmon dashboard` numbers), with the SLA
        statuses of this view; recomputed when issues or alerts change, or every 10 s.

        dashboard_data only asks for counts at now minus whole days, so each issue is given
        to it as its counts at those 8 instants (plus its latest record): the same answers
        as its whole history, at a bounded cost."""
        key = (self.view_versions["issues"], self.view_versions["alerts"], now_ms // 10_000)
        cached = self._kpi_cache
        if cached is None or cached[0] != key:
            bounds = [now_ms - k * DAY_MS for k in range(8)]
            records: list[dict[str, Any]] = []
            for issue_id in self._issues:
                count_at = self._count_at(issue_id)
                records += [
                    {"issue_id": issue_id, "count": count_at(b), "last_seen": b} for b in bounds
                ]
            records += list(self._issues.values())  # last: the latest record wins
            alerts = list(self._alerts.values())
            data = dashboard_data(records, alerts, [], self.sla, now_ms)
            self._kpi_cache = cached = (key, data)
        data = dict(cached[1])
        statuses = {s: (self.service_sla(s) or {}).get("status") for s in self._endpoints}
        data["sla_by_service"] = {s: v for s, v in statuses.items() if v}
        data["sla_status"] = max(
            data["sla_by_service"].values(), key=lambda s: STATUS_RANK.get(s, 0), default="unknown"
        )
        return data

    # --- queries: alerts --------------------------------------------------------------------

    def alerts(self, status: str | None = None) -> list[dict[str, Any]]:
        """Latest transition per alert, most severe and newest first (ops/views.py)."""
        return latest_alerts(self._alerts.values(), status=status)

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        """The latest transition of one alert."""
        return self._alerts.get(alert_id)

    def alert_by_handle(self, handle: Any) -> str | None:
        """The id of the alert whose action handle this is (handles.py), or None."""
        alert_id = self._handles.get(handle) if is_handle(handle) else None
        return alert_id if alert_id in self._alerts else None

    def issue_by_handle(self, handle: Any) -> str | None:
        """The id of the issue whose action handle this is (handles.py), or None."""
        issue_id = self._handles.get(handle) if is_handle(handle) else None
        return issue_id if issue_id in self._issues else None

    def alert_details(self, alert_id: str) -> dict[str, Any]:
        """An alert's last transitions, its deliveries, and a command not yet in effect."""
        alert = self._alerts.get(alert_id) or {}
        request = self._requests.get(alert_id)
        if request is not None and request["ts"] <= _int(alert.get("ts")):
            request = None  # the alert changed after it: the command was handled
        finals = {}
        for d in self._deliveries.get(alert_id, ()):
            if d["final"]:
                finals[d["channel"]] = d
        return {
            "transitions": list(self._transitions.get(alert_id, ())),
            "deliveries": sorted(finals.values(), key=lambda d: d["channel"]),
            "request": request,
        }

    def silences(self, now_ms: int) -> list[dict[str, Any]]:
        """Silences in force (or scheduled), ending soonest first."""
        return sorted(
            (s for s in self._silences.values() if s["ends_at"] > now_ms),
            key=lambda s: s["ends_at"],
        )

    def summary(self) -> dict[str, Any]:
        """Counts for /api/state and the logs."""
        return {
            "version": self.version,
            "records": dict(self.records),
            "series": len(self._series),
            "points": sum(len(s.points) for s in self._series.values()),
            "issues": len(self._issues),
            "alerts": len(self._alerts),
            "signals": len(self._signals),
            "silences": len(self._silences),
        }
