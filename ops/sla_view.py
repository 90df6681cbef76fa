"""SLA status per service, assembled from `rollups` records (used by `prodmon sla`).

Pure: takes the rollup records already read from the topic. For each service it uses the
whole-service series (`service|*`) at its finest resolution, so no event is counted twice:
- the evaluation period is the last `period_ms` of event time before the service's latest
  closed window; its percentiles come from merging the windows' HDR histograms;
- the error budget covers the SLO period (config `sla.slo_period_days`), and burn rates use
  the multi-window pairs of the sla package, all relative to that same latest window end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from histograms.hdr import SparseHistogram
from schemas.rollups import SERVICE_WIDE, is_rollup
from sla import SLAConfig, SLAReport, burn_rates, error_budget, evaluate, summarize_windows
from sla.common import PERCENT_KEYS
from sla.evaluate import MetricResult, format_ms, format_pct

DEFAULT_PERIOD_MS = 3_600_000


def latest_rollups(values: Iterable[Any]) -> list[dict[str, Any]]:
    """The last record per rollup id (a re-emitted rollup replaces the earlier one)."""
    by_id: dict[str, dict[str, Any]] = {}
    for value in values:
        if is_rollup(value):
            by_id[value["id"]] = value
    return list(by_id.values())


def _finest_whole_service(rollups: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """service -> its whole-service rollups at the finest resolution present."""
    per_service: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for rollup in rollups:
        if rollup.get("endpoint") != SERVICE_WIDE:
            continue
        size = rollup["end"] - rollup["start"]
        per_service.setdefault(rollup["service"], {}).setdefault(size, []).append(rollup)
    return {service: sizes[min(sizes)] for service, sizes in per_service.items()}


def merged_percentiles(rollups: Iterable[Mapping[str, Any]]) -> dict[str, float | None]:
    """p50/p95/p99 in ms of the merged histograms (None when there are no events)."""
    total: SparseHistogram | None = None
    for rollup in rollups:
        hist = SparseHistogram.decode(rollup["hist"])
        if total is None:
            total = hist
        else:
            total.merge(hist)
    if total is None or total.total == 0:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    values = total.values_at_percentiles([50.0, 95.0, 99.0])
    return {
        "p50_ms": values[50.0] / 1000,
        "p95_ms": values[95.0] / 1000,
        "p99_ms": values[99.0] / 1000,
    }


def service_status(
    service: str,
    rollups: list[dict[str, Any]],
    config: SLAConfig,
    period_ms: int = DEFAULT_PERIOD_MS,
) -> tuple[SLAReport, dict[str, Any]]:
    """The SLA report of one service and its error budget / burn rates (as a dict)."""
    now_ms = max(r["end"] for r in rollups)
    start = now_ms - period_ms
    in_period = [r for r in rollups if r["end"] > start]
    threshold = config.threshold_for(service)
    inputs = summarize_windows(
        in_period, threshold, start=start, end=now_ms, **merged_percentiles(in_period)
    )
    report = evaluate(service, inputs, threshold)
    objective = config.objective_for(service)
    budget = error_budget(rollups, objective, config.period_ms, now_ms)
    extra = {
        "error_budget": budget.to_dict(),
        "burn_rates": [alert.to_dict() for alert in burn_rates(rollups, objective, now_ms)],
    }
    return report, extra


def sla_statuses(
    values: Iterable[Any],
    config: SLAConfig,
    service: str | None = None,
    period_ms: int = DEFAULT_PERIOD_MS,
) -> list[tuple[SLAReport, dict[str, Any]]]:
    """Every service's status (or just `service`'s), services in name order."""
    grouped = _finest_whole_service(latest_rollups(values))
    names = sorted(grouped) if service is None else [s for s in (service,) if s in grouped]
    return [service_status(name, grouped[name], config, period_ms) for name in names]


def format_budgets(statuses: list[tuple[SLAReport, dict[str, Any]]]) -> str:
    """One line per service: budget remaining and any burn-rate pair that is firing."""
    lines = ["", "Error budget"]
    for report, extra in statuses:
        budget = extra["error_budget"]
        firing = [b["name"] for b in extra["burn_rates"] if b["firing"]]
        rates = ", ".join(
            f"{b['name']} {b['long_rate']:.1f}x/{b['short_rate']:.1f}x" for b in extra["burn_rates"]
        )
        lines.append(
            f"  {report.service:<24} objective {budget['objective_pct']}%  "
            f"remaining {budget['remaining_fraction'] * 100:.1f}%  burn {rates}"
            + (f"  FIRING: {', '.join(firing)}" if firing else "")
        )
    return "\n".join(lines)


# The text table of `prodmon sla`.

_STATUS_ORDER = {"critical": 0, "warning": 1, "healthy": 2}
_COLUMNS = (
    ("P50", "p50_ms"),
    ("P95", "p95_ms"),
    ("P99", "p99_ms"),
    ("ERRORS", "error_rate_pct"),
    ("UPTIME", "uptime_pct"),
)


def _cell(result: MetricResult) -> str:
    show = format_pct if result.metric in PERCENT_KEYS else format_ms
    if result.value is None:
        return f"- / {show(result.threshold)}"
    mark = "" if result.ok else " !"
    return f"{show(result.value)} / {show(result.threshold)}{mark}"


def format_text(reports: Iterable[SLAReport]) -> str:
    """A table (worst status first, values as `value / threshold`, `!` = violated) and advice."""
    ordered = sorted(reports, key=lambda r: (_STATUS_ORDER.get(r.status, 3), r.service))
    header = ["SERVICE", "STATUS", "REQUESTS", *(name for name, _ in _COLUMNS)]
    rows = [header]
    for report in ordered:
        by_metric = {m.metric: m for m in report.metrics}
        cells = [_cell(by_metric[metric]) for _, metric in _COLUMNS]
        rows.append([report.service, report.status, f"{report.inputs.count:,}", *cells])
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    for report in ordered:
        if report.violations:
            lines.append("")
            lines.append(f"{report.service} ({report.status}):")
            lines.extend(f"  - {v.metric}: {v.recommendation}" for v in report.violations)
    return "\n".join(lines)
