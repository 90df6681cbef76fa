"""Offline anomaly commands: CSV reading (formats, bad rows), scoring output, analysis."""

from __future__ import annotations

import csv
import json
import math
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from detection.detector import Detector
from ops.anomaly_tools import analyze_csv, parse_timestamp, read_series_csv, score_csv

NOON = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", NOON),
        ("2024-05-01T12:00:00+00:00", NOON),
        ("2024-05-01T14:00:00+02:00", NOON),
        ("2024-05-01T12:00:00", NOON),  # no zone: UTC
        ("2024-05-01 12:00:00", NOON),
        ("2024-05-01 12:00:00.250", NOON + 0.25),
        (" 1714564800 ", NOON),
        ("1714564800.5", NOON + 0.5),
        ("1714564800000", NOON),  # milliseconds
        ("1714564800250", NOON + 0.25),
        ("0", 0.0),
    ],
)
def test_timestamp_formats(text: str, expected: float) -> None:
    assert parse_timestamp(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13-01 00:00:00", "nan", "inf"])
def test_bad_timestamps(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_reads_sorts_and_skips_empty_values(tmp_path: Path) -> None:
    path = write(
        tmp_path / "in.csv",
        "Host,Value, TIMESTAMP \n"
        "a,3,2024-05-01 12:10:00\n"
        "a,1,2024-05-01T12:00:00Z\n"
        "\n"
        "b,,2024-05-01 12:15:00\n"  # empty value: skipped
        "a,2.5,1714565100\n",
    )
    ts, values = read_series_csv(path)
    assert ts == [NOON, NOON + 300, NOON + 600]
    assert values == [1.0, 2.5, 3.0]


def test_equal_times_keep_file_order_and_nan_passes_through(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", "timestamp,value\n10,1\n10,2\n5,nan\n")
    ts, values = read_series_csv(path)
    assert ts == [5.0, 10.0, 10.0]
    assert math.isnan(values[0]) and values[1:] == [1.0, 2.0]


@pytest.mark.parametrize(
    ("body", "line", "column"),
    [
        ("timestamp,value\n1,1\n2,abc\n", 3, "value"),
        ("timestamp,value\n1,1\n\nnot-a-time,4\n", 4, "timestamp"),
        ("timestamp,value\n1,1\n,5\n", 3, "timestamp"),
        ("timestamp,value,host\n1,1,a\n2\n", 3, "value"),
    ],
)
def test_bad_rows_name_line_and_column(tmp_path: Path, body: str, line: int, column: str) -> None:
    path = write(tmp_path / "bad.csv", body)
    with pytest.raises(ValueError) as info:
        read_series_csv(path)
    message = str(info.value)
    assert f"line {line}" in message
    assert repr(column) in message


@pytest.mark.parametrize("body", ["", "time,val\n1,2\n", "timestamp\n1\n"])
def test_bad_headers(tmp_path: Path, body: str) -> None:
    with pytest.raises(ValueError, match=r"header|empty"):
        read_series_csv(write(tmp_path / "h.csv", body))


def _series_csv(path: Path, n: int = 600) -> tuple[list[str], list[float]]:
    rng = random.Random(5)
    stamps, values = [], []
    for i in range(n):
        t = NOON + 60 * i
        stamp = (
            datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")
            if i % 2
            else datetime.fromtimestamp(t, UTC).isoformat()
        )
        v = 50 + rng.gauss(0, 1) + (25 if 400 <= i < 404 else 0)
        stamps.append(stamp)
        values.append(v)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "value", "region"])
        for stamp, v in zip(stamps, values, strict=True):
            writer.writerow([stamp, repr(v), "eu"])
    return stamps, values


def test_score_csv_writes_columns_in_time_order(tmp_path: Path) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    stamps, values = _series_csv(src)
    assert score_csv(src, out) == len(values)
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["timestamp", "value", "anomaly_score"]
    body = rows[1:]
    assert [r[0] for r in body] == stamps  # written exactly as read
    assert [float(r[1]) for r in body] == values
    scores = [float(r[2]) for r in body]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert all(len(r[2].split(".")[1]) == 6 for r in body)
    assert all(s == 0.0 for s in scores[:30])  # warm-up
    assert max(scores[400:404]) > 0.9
    assert max(scores[100:390]) < 0.5
    # the same as running the detector by hand
    det = Detector()
    expected = [f"{det.update(NOON + 60 * i, v).score:.6f}" for i, v in enumerate(values)]
    assert [r[2] for r in body] == expected


def test_score_csv_sorts_unsorted_input_and_skips_gaps(tmp_path: Path) -> None:
    src = write(
        tmp_path / "in.csv", "value,timestamp\n2,1714564860000\n1,1714564800000\n,1714564830000\n"
    )
    out = tmp_path / "out.csv"
    assert score_csv(src, out) == 2
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines == [
        "timestamp,value,anomaly_score",
        "1714564800000,1,0.000000",
        "1714564860000,2,0.000000",
    ]


def test_score_csv_reports_bad_input_before_writing(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", "timestamp,value\n1,1\n2,x\n")
    out = tmp_path / "out.csv"
    with pytest.raises(ValueError, match="line 3"):
        score_csv(src, out)
    assert not out.exists()


def test_analyze_csv_text_and_json(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    _series_csv(src)
    text = analyze_csv(src)
    assert text.startswith("BASELINE ANALYSIS")
    assert "DETECTOR FINDINGS" in text
    data = json.loads(analyze_csv(src, fmt="json"))
    assert data["count"] == 600
    assert [a["index"] for a in data["anomalies"]] == [401]
    assert data["anomalies"][0]["timestamp"] == NOON + 60 * 401
    with pytest.raises(ValueError, match="format"):
        analyze_csv(src, fmt="yaml")


def test_analyze_csv_without_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no data"):
        analyze_csv(write(tmp_path / "e.csv", "timestamp,value\n"))
