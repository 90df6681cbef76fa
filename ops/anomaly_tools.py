"""Offline anomaly commands: score a CSV series with the streaming detector, analyse it.

The CLI wiring lives elsewhere; these functions do the work and raise `ValueError` with a
message fit for the user.

Input CSV
    A header row naming a ``timestamp`` and a ``value`` column (case-insensitive, spaces
    around names ignored, other columns allowed and ignored), then one row per point.
    ``timestamp`` is any of:

    - ISO-8601, with or without a timezone (``2024-05-01T12:00:00Z``,
      ``2024-05-01T14:00:00+02:00``, ``2024-05-01T12:00:00``), or ``YYYY-MM-DD HH:MM:SS``
      (with optional fractional seconds); a time without a timezone is taken as UTC;
    - epoch seconds, or epoch milliseconds: any number whose magnitude is >= 1e11 (which
      as seconds would be beyond the year 5000) is read as milliseconds.

    ``value`` is a number (``nan``/``inf`` are accepted and then skipped by the detector).
    A row whose value is empty is skipped (a gap, not an error); blank lines are ignored.
    Any other unreadable row raises ValueError naming its line number and column. Rows
    are sorted by time (stably, so equal times keep file order) before anything else.

Output CSV (`score_csv`)
    ``timestamp,value,anomaly_score`` in time order: timestamp and value written exactly
    as they appeared in the input, the score with 6 decimals: detection.detector's anomaly
    likelihood in [0, 1], 0 during warm-up; the live stage pages at the first point at or
    above its `score_threshold` (0.5) and damps the scores of the `cooldown` points after
    it, so a threshold of 0.5 on this column reproduces its findings.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from detection.detector import Detector, DetectorConfig
from ops.baseline_analysis import analyze, format_text

__all__ = ["analyze_csv", "parse_timestamp", "read_series_csv", "score_csv"]

MS_THRESHOLD = 1e11  # numeric timestamps at least this large are epoch milliseconds
OUTPUT_HEADER = ("timestamp", "value", "anomaly_score")


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    ts: float
    ts_text: str
    value: float
    value_text: str


def parse_timestamp(text: str) -> float:
    """Epoch seconds from ISO-8601 / 'YYYY-MM-DD HH:MM:SS' / epoch s or ms; ValueError if not."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty timestamp")
    try:
        number = float(raw)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number):
            raise ValueError(f"timestamp {raw!r} is not finite")
        return number / 1000.0 if abs(number) >= MS_THRESHOLD else number
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"unrecognised timestamp {raw!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def read_series_csv(path: str | Path) -> tuple[list[float], list[float]]:
    """(timestamps in epoch seconds, values), sorted by time. See the module docstring."""
    rows = _read_rows(path)
    return [row.ts for row in rows], [row.value for row in rows]


def score_csv(
    in_path: str | Path, out_path: str | Path, config: DetectorConfig | None = None
) -> int:
    """Score every point with a fresh detector in time order; returns the rows written."""
    rows = _read_rows(in_path)
    detector = Detector(config)
    with open(out_path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(OUTPUT_HEADER)
        for row in rows:
            update = detector.update(row.ts, row.value)
            writer.writerow((row.ts_text, row.value_text, f"{update.score:.6f}"))
    return len(rows)


def analyze_csv(
    in_path: str | Path, fmt: str = "text", config: DetectorConfig | None = None
) -> str:
    """Baseline analysis of a CSV series, rendered as text or JSON."""
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown format {fmt!r} (use text or json)")
    timestamps, values = read_series_csv(in_path)
    if not values:
        raise ValueError(f"{in_path}: no data rows")
    report = analyze(values, timestamps, config)
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"
    return format_text(report)


def _read_rows(path: str | Path) -> list[_Row]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file, expected a header with timestamp,value")
        ts_col, value_col = _columns(path, header)
        rows = [
            row
            for fields in reader
            if (row := _parse_row(path, reader.line_num, fields, ts_col, value_col)) is not None
        ]
    rows.sort(key=lambda row: row.ts)
    return rows


def _columns(path: str | Path, header: list[str]) -> tuple[int, int]:
    names = [name.strip().lower() for name in header]
    missing = [name for name in ("timestamp", "value") if name not in names]
    if missing:
        raise ValueError(f"{path}: line 1: header has no {' or '.join(missing)} column")
    return names.index("timestamp"), names.index("value")


def _parse_row(
    path: str | Path, line: int, fields: list[str], ts_col: int, value_col: int
) -> _Row | None:
    if not any(field.strip() for field in fields):
        return None  # blank line
    value_text = fields[value_col] if value_col < len(fields) else None
    ts_text = fields[ts_col] if ts_col < len(fields) else None
    if ts_text is None or value_text is None:
        column = "timestamp" if ts_text is None else "value"
        raise ValueError(f"{path}: line {line}: column {column!r} is missing")
    if not value_text.strip():
        return None  # a gap: no value for this time
    try:
        ts = parse_timestamp(ts_text)
    except ValueError as exc:
        raise ValueError(f"{path}: line {line}: column 'timestamp': {exc}") from None
    try:
        value = float(value_text)
    except ValueError:
        raise ValueError(
            f"{path}: line {line}: column 'value': {value_text.strip()!r} is not a number"
        ) from None
    return _Row(line, ts, ts_text, value, value_text)
