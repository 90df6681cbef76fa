"""Issues that look alike: exception type, message template and in-app frames."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from ops.rootcause.facts import issue_facts
from ops.rootcause.text import MAX_NOTES, MAX_SCAN_CHARS, MAX_TEXT, as_int, clean

MAX_SIMILAR = 5
SIMILAR_MIN_SCORE = 0.3

_TOKEN = re.compile(r"<\w{1,10}>|[A-Za-z_][A-Za-z0-9_]{0,63}|\d{1,20}")


def _tokens(text: str) -> set[str]:
    return {t.lower() for t in _TOKEN.findall(text[:MAX_SCAN_CHARS])}


def similarity(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, list[str]]:
    """How alike two issues look (0..1) and why.

    0.35 for the same exception type, 0.45 x the message-template similarity (the larger of
    token Jaccard and difflib ratio on the first 300 characters), 0.20 x the Jaccard overlap
    of in-app frames (module:function).
    """
    reasons: list[str] = []
    score = 0.0
    ta, tb = str(a.get("exception_type") or ""), str(b.get("exception_type") or "")
    if ta and ta == tb:
        score += 0.35
        reasons.append("same exception type")
    ma, mb = str(a.get("message_template") or ""), str(b.get("message_template") or "")
    if ma and mb:
        ka, kb = _tokens(ma), _tokens(mb)
        jaccard = len(ka & kb) / len(ka | kb) if ka | kb else 0.0
        ratio = difflib.SequenceMatcher(None, ma[:300], mb[:300], autojunk=False).ratio()
        msg = max(jaccard, ratio)
        if msg > 0:
            score += 0.45 * msg
        if msg >= 0.5:
            reasons.append(f"similar message ({msg:.2f})")
    fa, fb = issue_facts(a).in_app, issue_facts(b).in_app
    if fa and fb:
        overlap = len(fa & fb) / len(fa | fb)
        if overlap > 0:
            score += 0.2 * overlap
            reasons.append(f"{len(fa & fb)} shared in-app frame(s)")
    return round(min(1.0, score), 3), reasons


def find_similar(
    issue: dict[str, Any], issues: Iterable[dict[str, Any]], limit: int = MAX_SIMILAR
) -> list[dict[str, Any]]:
    """Other issues that look alike, best first; resolved ones with notes win ties."""
    me = issue.get("issue_id")
    found: list[dict[str, Any]] = []
    for other in issues:
        if not isinstance(other, dict) or (me is not None and other.get("issue_id") == me):
            continue
        score, reasons = similarity(issue, other)
        if score < SIMILAR_MIN_SCORE:
            continue
        notes = other.get("resolution_notes")
        found.append(
            {
                "issue_id": clean(other.get("issue_id") or "", 64),
                "title": clean(other.get("title") or "", MAX_TEXT),
                "score": score,
                "reasons": reasons,
                "status": clean(other.get("status") or "", 32),
                "count": as_int(other.get("count")),
                "resolution_notes": clean(notes, MAX_NOTES) if notes else None,
                "resolved_by": clean(other.get("resolved_by"), 128)
                if other.get("resolved_by")
                else None,
                "resolved_at": as_int(other.get("resolved_at")),
            }
        )
    found.sort(
        key=lambda s: (
            -s["score"],
            not (s["status"] == "resolved" and s["resolution_notes"]),
            s["issue_id"],
        )
    )
    return found[:limit]
