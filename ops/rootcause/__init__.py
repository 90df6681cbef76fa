"""Root-cause analysis of one issue from the `issues`, `signals` and `rollups` topics (no I/O).

`analyze_issue(issue, issues, signals, rollups=None)` returns a JSON-able dict:

    issue_id, title, status, count, severity, services   the issue, bounded
    patterns       [{name, weight, evidence: [str], sources: [str]}], strongest first
    similar        [{issue_id, title, score, reasons, status, resolution_notes, resolved_by}],
                   top 5 by score (a resolved look-alike with notes wins ties)
    suggestions    [{pattern, fixes: [str]}] per detected pattern, plus the notes of similar
                   resolved issues first (pattern "similar-resolved")
    correlations   {window_ms, signals: [...], rollups: {...} | None}; firing signals of the
                   issue's services (or about the issue's fingerprint) whose `ts` is within
                   ±window_ms of first_seen, closest first, with `offset_ms` (signal ts minus
                   first_seen: negative = before the issue started)
    timeline       {first_seen, first_seen_iso, last_seen, last_seen_iso, first_release,
                    releases, duration_ms, rate_per_min}: "when did this start"
    confidence     0..1 (confidence.py); confidence_factors: the terms that made it up

One module per step:

    text.py         untrusted text bounded (control characters out, truncated) and timestamps
    facts.py        what an issue says about itself (type, message, frames, context, rate)
    patterns.py     the pattern table, as data: regexes, weights, suggested fixes
    detect.py       which patterns an issue shows (the table, plus the context patterns)
    similarity.py   issues that look alike
    correlation.py  signals and rollups around the first occurrence
    confidence.py   how sure the analysis is
    analysis.py     `analyze_issue`: all of the above as one dict
    render.py       `format_text`, `format_markdown`

Everything that comes from events is attacker-controlled text: it is only matched with
bounded, backtracking-safe regexes on bounded prefixes, copied out truncated with control
characters replaced, and never evaluated or used as a format string. The renderers truncate
again and put it in code spans.
"""

from __future__ import annotations

from ops.rootcause.analysis import analyze_issue
from ops.rootcause.correlation import DEFAULT_WINDOW_MS
from ops.rootcause.patterns import PATTERN_RULES
from ops.rootcause.render import format_markdown, format_text
from ops.rootcause.similarity import similarity

__all__ = [
    "DEFAULT_WINDOW_MS",
    "PATTERN_RULES",
    "analyze_issue",
    "format_markdown",
    "format_text",
    "similarity",
]
