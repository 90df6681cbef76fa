"""`prodmon anomaly score` and `prodmon baseline analyze` as a user runs them."""

from __future__ import annotations

import csv
import random
import subprocess
import sys

import orjson


def _series(path) -> None:
    rng = random.Random(7)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["timestamp", "value"])
        for i in range(400):
            value = rng.gauss(100, 5) + (80 if 300 <= i < 310 else 0)
            out.writerow([f"2026-11-01T{i // 60:02d}:{i % 60:02d}:00Z", f"{value:.3f}"])


def _prodmon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args], capture_output=True, timeout=60, check=False
    )


def test_anomaly_score_writes_scores_that_flag_the_incident(tmp_path):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    _series(src)
    assert _prodmon("anomaly", "score", "--csv", str(src), "--out", str(dst)).returncode == 0
    with open(dst, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score"] and len(rows) == 400
    scores = [float(r["anomaly_score"]) for r in rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert max(scores[300:310]) > 0.5  # the incident stands out
    assert max(scores[40:300]) < 0.5  # the quiet stretch after warm-up does not


def test_baseline_analyze_json_and_bad_input(tmp_path):
    src = tmp_path / "in.csv"
    _series(src)
    done = _prodmon("baseline", "analyze", "--csv", str(src), "--format", "json")
    report = orjson.loads(done.stdout)
    assert report["count"] == 400 and 0 <= report["stability_score"] <= 100
    assert report["anomalies"]
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2026-11-01 00:00:00,1\nnot-a-time,2\n")
    failed = _prodmon("anomaly", "score", "--csv", str(bad), "--out", str(tmp_path / "o.csv"))
    assert failed.returncode == 2 and b"line 3" in failed.stderr
