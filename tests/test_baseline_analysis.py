"""Baseline analysis (seed 003): numbers checked against hand-computed values."""

from __future__ import annotations

import json
import math
import random

import pytest

from detection.detector import DetectorConfig
from ops.baseline_analysis import (
    analyze,
    format_text,
    percentile,
    stability_score,
)


def test_statistics_on_a_small_input() -> None:
    # values 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squared deviations sum to 32,
    # sample variance 32 / 7, so std = sqrt(32 / 7) = 2.13809...
    report = analyze([2, 4, 4, 4, 5, 5, 7, 9])
    assert report.count == 8 and report.skipped == 0
    assert report.mean == 5.0
    assert report.std == pytest.approx(math.sqrt(32 / 7))
    assert (report.min, report.max) == (2.0, 9.0)
    # linear interpolation: p50 at rank 3.5 -> (4 + 5) / 2; p95 at rank 6.65 -> 7 + 0.65 * 2
    assert report.p50 == 4.5
    assert report.p95 == pytest.approx(8.3)
    assert report.p99 == pytest.approx(7 + 0.93 * 2)


def test_thresholds_follow_the_sigma_ladder() -> None:
    report = analyze([2, 4, 4, 4, 5, 5, 7, 9])
    s = math.sqrt(32 / 7)
    t = report.thresholds
    assert t.critical_upper == pytest.approx(5 + 3 * s)
    assert t.high_upper == pytest.approx(5 + 2 * s)
    assert t.medium_upper == pytest.approx(5 + s)
    assert t.medium_lower == pytest.approx(5 - s)
    assert t.high_lower == pytest.approx(5 - 2 * s)
    assert t.critical_lower == pytest.approx(5 - 3 * s)
    assert t.low_upper == report.p95


def test_seed_example_mean_50_std_5() -> None:
    # Seed 003: mean 50, std 5 -> critical 65, high 60, medium 55.
    values = [45.0, 55.0] * 50
    report = analyze(values)
    s = report.std  # sample std of +-5 around 50 over 100 points: 5 * sqrt(100 / 99)
    assert s == pytest.approx(5 * math.sqrt(100 / 99))
    assert report.thresholds.critical_upper == pytest.approx(50 + 3 * s)


def test_iqr_outliers_and_fences() -> None:
    values = [10, 12, 12, 13, 12, 11, 14, 13, 15, 102, 12, 14, -40]
    report = analyze(values)
    o = report.outliers
    ordered = sorted(values)
    # 13 values: q1 at rank 3 (12), q3 at rank 9 (14)
    assert (o.q1, o.q3, o.iqr) == (12.0, 14.0, 2.0)
    assert (o.lower_fence, o.upper_fence) == (9.0, 17.0)
    assert o.indices == [9, 12]
    assert o.values == [102.0, -40.0]
    assert percentile(ordered, 25) == 12.0


def test_percentile_edges() -> None:
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0], 0) == 1.0
    assert percentile([1.0, 2.0], 100) == 2.0
    assert percentile([0.0, 10.0], 25) == 2.5
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_stability_score_formula() -> None:
    assert stability_score([7.0] * 10, 0) == 100.0
    # halves [9, 11, 11, 9, 9, 11] and [11, 9, 9, 11, 11, 9] both average 10 (no drift);
    # sample std sqrt(12 / 11), cv = std / 10
    values = [9.0, 11.0, 11.0, 9.0] * 3
    cv = math.sqrt(12 / 11) / 10
    assert stability_score(values, 0) == pytest.approx(round(100 - 40 * cv, 2))
    # halves 0..0 and 1..1: mean 0.5, std 0.527, cv >= 1, drift 1/0.527 = 1.897 sigma
    step = [0.0] * 5 + [1.0] * 5
    std = math.sqrt(10 * 0.25 / 9)
    expected = 100 - 40 - 30 * min((1 / std) / 2, 1)
    assert stability_score(step, 0) == pytest.approx(round(expected, 2))
    # outliers: 1 of 10 is 10 % -> the whole 30 points
    assert stability_score([7.0] * 10, 1) == 70.0
    assert stability_score([0.0, 0.0, 1.0], 0) >= 0.0


def test_noisy_series_is_less_stable_than_a_calm_one() -> None:
    rng = random.Random(1)
    calm = [100 + rng.gauss(0, 1) for _ in range(500)]
    wild = [100 + rng.gauss(0, 40) + (80 if i > 250 else 0) for i in range(500)]
    assert analyze(calm).stability_score > 90
    # cv 0.43 costs 17 points, a 1.4 sigma shift between the halves 21 more
    assert analyze(wild).stability_score < 70


def test_non_finite_values_are_skipped_but_indices_stay_input_positions() -> None:
    values = [1.0, math.nan, 1.0, 1.0, math.inf, 1.0, 50.0, 1.0]
    report = analyze(values)
    assert report.count == 6 and report.skipped == 2
    assert report.outliers.indices == [6]
    assert report.max == 50.0


def test_detector_findings_are_reported_with_timestamps() -> None:
    rng = random.Random(2)
    values = [20 + rng.gauss(0, 1) for _ in range(400)]
    values[300:304] = [40.0, 41.0, 42.0, 40.0]
    ts = [1_700_000_000.0 + 60 * i for i in range(400)]
    report = analyze(values, ts)
    assert [a.index for a in report.anomalies] == [301]
    a = report.anomalies[0]
    assert a.timestamp == ts[301] and a.value == 41.0 and a.kind == "spike"
    assert 0.5 <= a.score <= 1.0
    assert report.anomalous_points >= 4
    # without timestamps the same finding, no timestamp
    plain = analyze(values)
    assert [(a.index, a.timestamp) for a in plain.anomalies] == [(301, None)]


def test_detector_config_is_passed_through() -> None:
    values = [5.0] * 100
    values[60] = 9.0  # one stray point
    assert analyze(values).anomalies == []
    strict = DetectorConfig(min_occurrences=1, evaluation_window=1)
    assert [a.index for a in analyze(values, detector_config=strict).anomalies] == [60]


def test_to_dict_is_json_and_text_mentions_the_essentials() -> None:
    rng = random.Random(3)
    values = [10 + rng.gauss(0, 1) for _ in range(200)] + [30, 31, 32]
    report = analyze(values)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["count"] == 203
    assert set(data["thresholds"]) >= {"critical_upper", "high_upper", "low_upper"}
    assert data["outliers"]["indices"][-3:] == [200, 201, 202]
    text = format_text(report)
    for needle in (
        "mean / std",
        "p50 / p95 / p99",
        "critical (3 sigma)",
        "IQR OUTLIERS",
        "stability",
    ):
        assert needle in text
    assert "#201" in text  # the finding


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="no finite values"):
        analyze([])
    with pytest.raises(ValueError, match="no finite values"):
        analyze([math.nan])
    with pytest.raises(ValueError, match="timestamps"):
        analyze([1.0, 2.0], [0.0])


def test_single_value() -> None:
    report = analyze([4.2])
    assert (report.mean, report.std, report.p99) == (4.2, 0.0, 4.2)
    assert report.stability_score == 100.0
