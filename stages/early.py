"""Early evaluation: threshold rules checked on windows that are still open.

A rollup rule normally sees a window when it closes, and a window closes when the
watermark (max event time - allowed lateness) passes its end. An incident that starts
early in a window is therefore seen up to a window plus the lateness later. Early
evaluation removes that wait where the evidence is already conclusive: every
`early_eval_s` (wall time) per input partition, the windows stage looks at the open
windows of the rules' resolution (`baseline.resolution`), including the closed smaller
windows already merged into them, and when a rule's condition holds it sends one
*provisional* observation to `rollups.early`. The baseline stage counts it as that
window's occurrence for the rule's gate (detection/rules.py `RuleGate`), so a rule that
needs one window fires within about a second of the evidence, and the closed window's
rollup later is not counted a second time.

Only conditions that part of a window can settle are evaluated early:
- comparisons `>` and `>=` (a `<` rule on half a window would fire on every window);
- `count`, `throughput_rps` (per the whole window's length) and `max_ms` only grow as a
  window fills, so a violation seen early is final;
- rates, the mean and percentiles can still fall, so they need `early_min_events` events
  in the window so far. A window that ends up under the threshold after all has still
  counted as a violation for its rule; the finding resolves as usual after a clear
  `window_s`.

Pure: the caller passes the partition's windows and the wall time; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from histograms.hdr import HdrLayout, SparseHistogram
from schemas.rollups import PERCENTILES, service_wide_series
from schemas.topology import ROLLUPS_EARLY
from stages.base import Emit, StageResult

if TYPE_CHECKING:
    from detection.rules import Rule
    from stages.coarse import CoarseWindows
    from stages.ingest_windows import Summary
    from stages.windows import PartitionWindows, Window, WindowsCore

__all__ = ["EARLY_TOPIC", "EarlyEvaluator", "early_rules"]

EARLY_TOPIC = ROLLUPS_EARLY
REJUDGE_GROWTH = 1.25  # a window is judged again once it holds this many times the events
CACHE_LIMIT = 400_000  # series remembered (matching rules, service series) before a reset
EARLY_OPS = (">", ">=")
# Metrics whose value can only grow while a window fills.
GROWING = frozenset({"count", "throughput_rps", "max_ms"})
PERCENTILE_OF = dict(PERCENTILES)
EARLY_METRICS = (
    GROWING | {"error_rate_pct", "client_error_rate_pct", "mean_ms"} | set(PERCENTILE_OF)
)


def early_rules(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    """The rules that can be evaluated on an open window (see the module docstring)."""
    return tuple(r for r in rules if r.op in EARLY_OPS and r.metric in EARLY_METRICS)


class _Evidence:
    """What one series' open window (at the rules' resolution) holds so far: the windows
    it is made of, and their counts; the rest is computed once, when a rule first asks.
    Parts from ingest's columns come as figures, with a function that makes their window
    if a percentile is asked for."""

    __slots__ = (
        "_ceiling_ms",
        "_hist",
        "_summed_us",
        "client_errors",
        "count",
        "errors",
        "max_us",
        "parts",
        "pending",
    )

    def __init__(self) -> None:
        self.parts: list[Window] = []
        self.pending: list[Callable[[], Window]] = []  # windows of summed parts, unmade
        self.count = self.errors = self.client_errors = self.max_us = self._summed_us = 0
        self._ceiling_ms: float | None = None
        self._hist: SparseHistogram | None = None

    def add_summary(self, summary: Summary, window: Callable[[], Window]) -> None:
        """A part given as figures (`PartialBucket.summaries`) and its window's maker."""
        self.pending.append(window)
        self.count += summary.events
        self.errors += summary.errors
        self.client_errors += summary.client_errors
        self._summed_us += summary.sum_us
        if summary.max_us > self.max_us:
            self.max_us = summary.max_us

    def add(self, window: Window) -> None:
        self.parts.append(window)
        self.count += window.hist.total + len(window.values)
        self.errors += window.errors
        self.client_errors += window.client_errors
        if window.max_us > self.max_us:  # a window's largest value, pending ones included
            self.max_us = window.max_us

    def ceiling_ms(self, hdr: HdrLayout) -> float:
        """No percentile exceeds this: the top of the largest value's bucket, in ms."""
        if self._ceiling_ms is None:
            self._ceiling_ms = hdr.highest_equivalent(min(self.max_us, hdr.highest)) / 1000.0
        return self._ceiling_ms

    def sum_us(self) -> int:
        return self._summed_us + sum(w.sum_us + sum(w.values) for w in self.parts)

    def percentile_us(self, core: WindowsCore, percentile: float) -> int:
        """The percentile over every part, as the closed window's rollup will compute it."""
        if self._hist is None:
            self._hist = SparseHistogram(core.hdr)
            for window in [*self.parts, *(make() for make in self.pending)]:
                window.flush()  # what closing does anyway; the answers stay the same
                if window.hist.total:
                    self._hist.merge(window.hist)
        return self._hist.value_at_percentile(percentile)


def _judged(
    found: dict[tuple[str, int], Any], whole_of: dict[str, str], start: int, series: str
) -> bool:
    """Whether `series` (or its service as a whole) is judged in the window at `start`."""
    return (series, start) in found or (whole_of[series], start) in found


def _judging(
    found: dict[tuple[str, int], _Evidence], whole_of: dict[str, str], start: int, series: str
) -> Iterator[_Evidence]:
    """The evidence `series`' part of the window at `start` adds to: its own, and its
    service's as a whole, where judged."""
    for key in ((series, start), (whole_of[series], start)):
        evidence = found.get(key)
        if evidence is not None:
            yield evidence


def _tallies(bucket: Any) -> Iterable[tuple[str, int]]:
    """(series, events so far) of an open base window: a dict of `Window`s, or ingest's
    columns (`stages.ingest_windows.PartialBucket`)."""
    if type(bucket) is not dict:
        return bucket.tallies()
    return [(series, w.hist.total + len(w.values)) for series, w in bucket.items()]


class EarlyEvaluator:
    """Finds provisional rule violations in one partition's open windows."""

    def __init__(
        self, rules: tuple[Rule, ...], level: int, every_s: float, min_events: int
    ) -> None:
        self.rules = early_rules(rules)
        self.level = level  # index into WindowsCore.sizes of the rules' resolution
        self.every_s = every_s
        self.min_events = min_events
        self.growing = any(r.metric in GROWING for r in self.rules)
        self._matching: dict[str, tuple[Rule, ...]] = {}
        self._whole: dict[str, str] = {}  # series -> its service's `service|*`
        self.stats = {"passes": 0, "observations": 0}

    def due(self, ps: PartitionWindows, now: float) -> bool:
        """Time for a pass: every `every_s` while windows are open (or, fed partial windows,
        while it has sources: its coarse windows hold the closed part of the rules' window)."""
        if not self.rules or now - ps.early_at < self.every_s:
            return False
        return bool(ps.open or (ps.sources and self.level))

    def run(self, core: WindowsCore, ps: PartitionWindows, now: float, result: StageResult):
        """Append a provisional observation for every open window that violates a rule."""
        ps.early_at = now
        self.stats["passes"] += 1
        if len(self._matching) + len(self._whole) > CACHE_LIMIT:
            self._matching.clear()  # series come and go: rebuilt for those still open
            self._whole.clear()
        size = core.sizes[self.level]
        if ps.early_sent:
            ps.early_sent = {sent for sent in ps.early_sent if sent[2] + size > ps.closed}
        for start in [s for s in ps.early_judged if s + size <= ps.closed]:
            del ps.early_judged[start]
        for (series, start), evidence in self._evidence(core, ps, size).items():
            self._judge(core, ps, series, start, size, evidence, result)

    def _evidence(
        self, core: WindowsCore, ps: PartitionWindows, size: int
    ) -> dict[tuple[str, int], _Evidence]:
        """Per (series, start of its window at the rules' resolution) with enough events to
        judge: the open base windows in it, each service's as a whole, and the closed
        smaller windows merged so far.

        Counting comes first and builds nothing per series: most series of a large fleet
        hold too few events to judge a rate, and this runs over all of them.
        """
        least = 1 if self.growing else self.min_events
        whole_of = self._whole
        coarse_levels = ps.coarse[: self.level]
        counts: dict[int, dict[str, int]] = {}
        if ps.sources:  # fed partial windows: base windows are open here only briefly, so
            for coarse in coarse_levels:  # judge every series the coarse windows hold
                for series, at in coarse.starts():
                    counts.setdefault(at - at % size, {}).setdefault(series, 0)
        for base_start, bucket in ps.open.items():
            start = base_start - base_start % size
            tally = counts.get(start)
            if tally is None:
                tally = counts[start] = {}
            get = tally.get
            for series, n in _tallies(bucket):
                tally[series] = get(series, 0) + n
                whole = whole_of.get(series)
                if whole is None:
                    whole = whole_of[series] = service_wide_series(series)
                tally[whole] = get(whole, 0) + n
        found: dict[tuple[str, int], _Evidence] = {}
        for start, tally in counts.items():
            judged = ps.early_judged.get(start)
            if judged is None:
                judged = ps.early_judged[start] = {}
            coarse_parts: dict[str, list[CoarseWindows]] = {}
            for coarse in coarse_levels:
                held = coarse.start_and_count
                for series in tally:
                    part = held(series)
                    if part is not None and part[0] - part[0] % size == start:
                        tally[series] += part[1]
                        coarse_parts.setdefault(series, []).append(coarse)
            for series, n in tally.items():
                # Judged again only once the window grew by a quarter: the cost follows the
                # data, not the number of series times the passes.
                if n >= least and n >= judged.get(series, 0) * REJUDGE_GROWTH:
                    judged[series] = n
                    evidence = found[(series, start)] = _Evidence()
                    for coarse in coarse_parts.get(series, ()):
                        evidence.add(coarse.get(series))  # type: ignore[arg-type]  # held
        if found:
            for base_start, bucket in ps.open.items():
                start = base_start - base_start % size
                if type(bucket) is dict:
                    windows: Iterable[tuple[str, Window]] = bucket.items()
                else:  # columns (ingest's or merged partials'): the series judged only
                    wanted = partial(_judged, found, whole_of, start)
                    if hasattr(bucket, "summaries"):  # ingest's: figures, no windows
                        for series, summary, make in bucket.summaries(wanted):
                            for evidence in _judging(found, whole_of, start, series):
                                evidence.add_summary(summary, make)
                        continue
                    windows = bucket.items(wanted)
                for series, window in windows:
                    for evidence in _judging(found, whole_of, start, series):
                        evidence.add(window)
        return found

    def _judge(
        self,
        core: WindowsCore,
        ps: PartitionWindows,
        series: str,
        start: int,
        size: int,
        evidence: _Evidence,
        result: StageResult,
    ) -> None:
        rules = self._matching.get(series)
        if rules is None:
            service, _, endpoint = series.rpartition("|")
            labels = {"service": service, "endpoint": endpoint, "series": series}
            rules = self._matching[series] = tuple(r for r in self.rules if r.matches(labels))
        metrics: dict[str, float] = {}
        names: list[str] = []
        for rule in rules:
            if (rule.name, series, start) in ps.early_sent:
                continue
            # No percentile exceeds the top of the largest value's bucket: skip the merge.
            if (
                rule.metric in PERCENTILE_OF
                and rule.metric not in metrics
                and not rule.violated(evidence.ceiling_ms(core.hdr))
            ):
                continue
            value = self._value(core, rule.metric, evidence, size, metrics)
            if value is not None and rule.violated(value):
                ps.early_sent.add((rule.name, series, start))
                names.append(rule.name)
        if not names:
            return
        self.stats["observations"] += 1
        service, _, endpoint = series.rpartition("|")
        result.emits.append(
            Emit(
                EARLY_TOPIC,
                series,
                {
                    "series": series,
                    "service": service,
                    "endpoint": endpoint,
                    "resolution": core.resolutions[self.level],
                    "start": start,
                    "end": start + size,
                    "provisional": True,
                    "as_of": ps.max_ts,
                    "count": evidence.count,
                    "errors": evidence.errors,
                    "client_errors": evidence.client_errors,
                    "rules": names,
                    "metrics": metrics,
                },
            )
        )

    def _value(
        self,
        core: WindowsCore,
        metric: str,
        evidence: _Evidence,
        size: int,
        metrics: dict[str, float],
    ) -> float | None:
        """The metric over the window so far, or None while it needs more events."""
        if metric in metrics:
            return metrics[metric]
        count = evidence.count
        value: float | None
        if metric == "count":
            value = float(count)
        elif metric == "throughput_rps":
            value = count / (size / 1000.0)
        elif metric == "max_ms":
            value = evidence.max_us / 1000.0
        elif count < self.min_events:
            return None
        elif metric == "error_rate_pct":
            value = 100.0 * evidence.errors / count
        elif metric == "client_error_rate_pct":
            value = 100.0 * evidence.client_errors / count
        elif metric == "mean_ms":
            value = evidence.sum_us() / count / 1000.0
        else:
            value = evidence.percentile_us(core, PERCENTILE_OF[metric]) / 1000.0
        metrics[metric] = value
        return value


def provisional_summary(record: dict[str, Any]) -> str:
    """How a signal from an early observation describes its evidence."""
    return f"early: {record.get('count', 0)} events of a window still open"
