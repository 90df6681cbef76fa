"""Untrusted text, bounded: one control-free line, truncated with a marker; timestamps.

Everything that comes from events (messages, frames, context, notes, summaries) is
attacker-controlled text: it is only matched with bounded, backtracking-safe regexes on
bounded prefixes, copied out truncated with control characters replaced, and never evaluated
or used as a format string.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

TRUNCATION_MARKER = "…[truncated]"
MAX_SCAN_CHARS = 4096  # only this prefix of each untrusted text is matched
MAX_SNIPPET = 80  # matched text quoted in evidence
MAX_TEXT = 300  # titles, summaries
MAX_NOTES = 600  # resolution notes

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean(value: Any, limit: int = MAX_TEXT) -> str:
    """`value` as one bounded line: control/bidi characters replaced, truncated with a marker."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit * 4:
        text = text[: limit * 4]
    text = _CONTROL.sub(" ", text)
    if len(text) > limit:
        return text[:limit] + TRUNCATION_MARKER
    return text


def iso_utc(ms: Any) -> str | None:
    """Epoch milliseconds as `YYYY-MM-DDTHH:MM:SSZ`, or None when not a usable number."""
    if not isinstance(ms, int | float) or isinstance(ms, bool) or not math.isfinite(ms):
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return None


def as_int(value: Any) -> int | None:
    """An int (a finite float truncated), or None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None
