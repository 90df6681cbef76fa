"""The `signals` topic: anomaly and threshold findings with their evidence, keyed by series
or fingerprint.

Fields:
    id          deterministic: source | rule | key | event time (a re-emitted signal is the same)
    kind        "anomaly" (learned baseline) | "threshold" (a static rule)
    state       "firing" | "resolved"
    rule        the rule name, or "baseline:<metric>" for an anomaly
    severity    critical | high | medium | low | warning | info
    key         the series (`service|endpoint`, `service|*`) or the issue fingerprint
    service, endpoint, fingerprint   what it is about (None when not applicable)
    metric      the observed metric; value: its value; threshold/op: the rule's condition
    baseline    for anomalies: {"centre", "spread", "z", "score", "kind"}
    window      {"start", "end"} of the observation (epoch ms, event time)
    ts          event time of the finding (epoch ms)
    provisional true when a threshold finding was made on a window still open (early
                evaluation, stages/early.py); its window's end is then still ahead
    channels    channels the rule asks for (empty: routing decides)
    tags        the rule's tags
    summary     one human-readable line
    occurrences, window_s, since   threshold findings: violating observations within the
                rule's window (this one included), its length (s), and the start of the
                first of them (epoch ms): "above 1 s in 3 of the last 5 minutes, since ...";
    peak        threshold findings: the worst violating value of the rule's episode
    points      threshold and anomaly signals of a series (firing and resolved): the metric's
                last windows at the baseline resolution, [[window start ms, value], ...]
                (at most 45), for the notification's chart
    issue       signals about an issue: what a notification says of it
                (alerting/alert_text.py `issue_facts`: exception_type, message, culprit,
                events, releases, release, hosts, host_count, first_seen, update,
                rate_per_min)
"""

from __future__ import annotations

from typing import Any

SIGNAL_KINDS = ("anomaly", "threshold")
SIGNAL_STATES = ("firing", "resolved")


def signal_id(rule: str, key: str, state: str, ts_ms: int) -> str:
    return f"{rule}|{key}|{state}|{ts_ms}"


def is_signal(value: Any) -> bool:
    return isinstance(value, dict) and value.get("kind") in SIGNAL_KINDS and "id" in value
