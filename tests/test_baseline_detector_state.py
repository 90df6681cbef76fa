"""The baseline stage and its detectors' changelog state across detector versions."""

from __future__ import annotations

from detection.detector import STATE_VERSION, Detector
from stages.baseline import BaselineStage


def test_a_detector_state_of_another_version_is_relearned_not_fatal() -> None:
    stage = BaselineStage()
    old = {"v": STATE_VERSION - 1, "n": 500}  # what the previous detector wrote
    stage.restore(0, "d|checkout|/pay|p99_ms", old)
    assert "p99_ms" not in stage.detectors.detectors(0, "checkout|/pay")
    det = Detector()
    for i in range(50):
        det.update(1_700_000_000.0 + 60 * i, 100.0 + i % 3)
    stage.restore(0, "d|checkout|/pay|p99_ms", det.to_state())
    assert stage.detectors.detectors(0, "checkout|/pay")["p99_ms"].to_state() == det.to_state()
