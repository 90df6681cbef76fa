"""Which patterns an issue shows: the table's cause patterns matched against its facts
(ops/rootcause/patterns.py explains the weights), a KeyError on an environment-style name,
and the context patterns (high-frequency, new-release, regression)."""

from __future__ import annotations

import math
import re
from typing import Any

from ops.rootcause.facts import Facts, issue_facts, issue_rate
from ops.rootcause.patterns import PATTERN_RULES, PatternRule
from ops.rootcause.text import MAX_SNIPPET, MAX_TEXT, as_int, clean, iso_utc

HIGH_FREQUENCY_COUNT = 100
HIGH_FREQUENCY_PER_MIN = 10.0

_ENV_NAME = re.compile(r"^['\"]?[A-Z][A-Z0-9_]{2,63}['\"]?$")


def _snippet(match: re.Match[str]) -> str:
    return clean(match.group(0), MAX_SNIPPET)


def _match_rule(rule: PatternRule, facts: Facts) -> dict[str, Any] | None:
    evidence: list[str] = []
    sources: list[str] = []
    strong = False
    if rule.type_re is not None and facts.exception_type:
        m = rule.type_re.search(facts.exception_type)
        if m:
            evidence.append(f"exception type {clean(facts.exception_type, MAX_SNIPPET)!r}")
            sources.append("exception_type")
            strong = True
    if rule.text_re is not None:
        m = rule.text_re.search(facts.message)
        if m:
            evidence.append(f"message contains {_snippet(m)!r}")
            sources.append("message")
            strong = True
    frame_re = rule.frame_re or rule.text_re
    if frame_re is not None and facts.frames:
        m = frame_re.search(facts.frames)
        if m:
            evidence.append(f"stack frame mentions {_snippet(m)!r}")
            sources.append("frames")
    if rule.text_re is not None and facts.context:
        m = rule.text_re.search(facts.context)
        if m:
            evidence.append(f"event context mentions {_snippet(m)!r}")
            sources.append("context")
    if not sources:
        return None
    weight = rule.weight if strong else rule.weight * 0.6
    weight = min(1.0, weight + min(0.1, 0.05 * (len(sources) - 1)))
    return {"name": rule.name, "weight": round(weight, 3), "evidence": evidence, "sources": sources}


def _config_keyerror(facts: Facts) -> dict[str, Any] | None:
    """KeyError on an ENV_LIKE name: a missing setting rather than a data bug."""
    if facts.exception_type != "KeyError" or not _ENV_NAME.match(facts.sample_message.strip()):
        return None
    name = clean(facts.sample_message.strip(), MAX_SNIPPET)
    return {
        "name": "configuration",
        "weight": 0.75,
        "evidence": [f"KeyError on an environment-style name {name!r}"],
        "sources": ["exception_type", "message"],
    }


def _context_patterns(issue: dict[str, Any], issues: list[dict[str, Any]]) -> list[dict]:
    found: list[dict[str, Any]] = []
    count, _, per_min = issue_rate(issue)
    if count >= HIGH_FREQUENCY_COUNT or (
        count >= 10 and per_min is not None and per_min >= HIGH_FREQUENCY_PER_MIN
    ):
        why = [f"{count} occurrences"]
        if per_min is not None:
            why.append(f"{per_min:.1f}/min between first_seen and last_seen")
        weight = 0.3 + min(0.2, 0.05 * math.log10(max(1, count)))
        found.append(
            {"name": "high-frequency", "weight": round(weight, 3), "evidence": why, "sources": []}
        )
    release = issue.get("first_release")
    if isinstance(release, str) and release:
        releases = [r for r in issue.get("releases") or [] if isinstance(r, str)]
        first = as_int(issue.get("first_seen"))
        earlier = [
            other
            for other in issues
            if other.get("issue_id") != issue.get("issue_id")
            and first is not None
            and (as_int(other.get("first_seen")) or first) < first
        ]
        # without any earlier issue there is no history to call the release new against
        seen_before = not earlier or any(
            release in (other.get("releases") or []) for other in earlier
        )
        why = []
        if releases == [release]:
            why.append(f"only seen in release {clean(release, MAX_SNIPPET)!r}")
        if not seen_before:
            why.append(
                f"release {clean(release, MAX_SNIPPET)!r} appears in no issue that started "
                "earlier (a new deploy)"
            )
        if why:
            weight = 0.45 if len(why) == 2 else 0.35
            found.append(
                {"name": "new-release", "weight": weight, "evidence": why, "sources": ["release"]}
            )
    if issue.get("status") == "regressed" or issue.get("type") == "regressed":
        why = ["status is regressed: it was resolved and happened again"]
        if issue.get("resolved_at") is not None:
            why.append(f"last resolved at {iso_utc(issue.get('resolved_at')) or '?'}")
        if issue.get("resolution_notes"):
            why.append(f"previous notes: {clean(issue['resolution_notes'], MAX_TEXT)!r}")
        found.append({"name": "regression", "weight": 0.5, "evidence": why, "sources": ["status"]})
    return found


def detect_patterns(issue: dict[str, Any], issues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cause patterns (from type, message, frames, context) and context patterns, by weight."""
    facts = issue_facts(issue)
    found: dict[str, dict[str, Any]] = {}
    for rule in PATTERN_RULES:
        hit = _match_rule(rule, facts)
        if hit is not None:
            found[rule.name] = hit
    cfg = _config_keyerror(facts)
    if cfg is not None and (
        "configuration" not in found or found["configuration"]["weight"] < cfg["weight"]
    ):
        found["configuration"] = cfg
    if "deadlock-lock-timeout" in found and "timeout" in found:
        # "lock wait timeout" is the lock's problem, not a slow dependency's.
        found["timeout"]["weight"] = round(found["timeout"]["weight"] * 0.5, 3)
    patterns = list(found.values()) + _context_patterns(issue, issues)
    patterns.sort(key=lambda p: (-p["weight"], p["name"]))
    return patterns
