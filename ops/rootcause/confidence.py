"""How sure the analysis is, 0..1, and the terms that made it up:

    confidence = clamp(0, 1,
          0.50 * strongest          # weight of the strongest cause pattern (0 when none)
        + 0.05 * (patterns - 1)     # agreement: further patterns of any kind, at most 0.15
        + 0.10 * volume             # volume = min(1, log10(count) / 3): 1000 events -> 0.1
        + 0.20 * similar_resolved   # best score of a similar *resolved* issue with notes
                                    # (half credit without notes)
        + 0.05 * correlated)        # 1 when a firing signal of the same service is in window

so a lone single-occurrence error without any recognisable pattern scores 0 and a typed,
frequent, correlated error with a resolved look-alike approaches 1.
"""

from __future__ import annotations

import math
from typing import Any

from ops.rootcause.patterns import CONTEXT_NAMES


def score_confidence(
    patterns: list[dict[str, Any]],
    count: int,
    similar: list[dict[str, Any]],
    correlated: bool,
) -> tuple[float, dict[str, float]]:
    """The confidence (above) and its factors, each rounded to 3 places."""
    causes = [p["weight"] for p in patterns if p["name"] not in CONTEXT_NAMES]
    strongest = max(causes, default=0.0)
    agreement = min(0.15, 0.05 * max(0, len(patterns) - 1))
    volume = min(1.0, math.log10(count) / 3) if count > 0 else 0.0
    best_resolved = 0.0
    for s in similar:
        if s["status"] == "resolved":
            best_resolved = max(best_resolved, s["score"] * (1.0 if s["resolution_notes"] else 0.5))
    factors = {
        "strongest_pattern": round(0.5 * strongest, 3),
        "agreement": round(agreement, 3),
        "volume": round(0.1 * volume, 3),
        "similar_resolved": round(0.2 * best_resolved, 3),
        "correlated_signal": 0.05 if correlated else 0.0,
    }
    return round(max(0.0, min(1.0, sum(factors.values()))), 3), factors
