"""An analysis as a plain-text or Markdown report. The analysis holds untrusted text
(ops/rootcause/text.py): both truncate it again, and Markdown puts it in code spans."""

from __future__ import annotations

from typing import Any

from ops.rootcause.text import MAX_NOTES, MAX_TEXT, clean


def _offset(ms: int) -> str:
    sign = "-" if ms < 0 else "+"
    s = abs(ms) // 1000
    return f"{sign}{s // 60}m{s % 60:02d}s"


def format_text(analysis: dict[str, Any]) -> str:
    """A plain-text report (every untrusted string truncated and control-free)."""
    a, t = analysis, analysis.get("timeline") or {}
    lines = [
        f"Root cause analysis: {clean(a.get('title'), MAX_TEXT)}",
        f"  issue {clean(a.get('issue_id'), 64)}  status={clean(a.get('status'), 32)}  "
        f"severity={clean(a.get('severity'), 32)}  count={a.get('count')}  "
        f"confidence={a.get('confidence', 0):.2f}",
        f"  started {t.get('first_seen_iso') or '-'} in release "
        f"{clean(t.get('first_release') or '-', 128)}; last seen {t.get('last_seen_iso') or '-'}",
        "",
        "Patterns:",
    ]
    for p in a.get("patterns") or []:
        lines.append(f"  - {clean(p['name'], 64)} ({p['weight']:.2f})")
        lines.extend(f"      {clean(e, MAX_TEXT)}" for e in p.get("evidence") or [])
    if not a.get("patterns"):
        lines.append("  (none)")
    lines.append("Similar issues:")
    for s in a.get("similar") or []:
        lines.append(
            f"  - {clean(s['issue_id'], 64)} [{clean(s['status'], 32)}] {s['score']:.2f} "
            f"{clean(s['title'], MAX_TEXT)}"
        )
        if s.get("resolution_notes"):
            lines.append(f"      notes: {clean(s['resolution_notes'], MAX_NOTES)}")
    if not a.get("similar"):
        lines.append("  (none)")
    corr = a.get("correlations") or {}
    window_min = (corr.get("window_ms") or 0) // 60_000
    lines.append(f"Signals within ±{window_min} min of first occurrence:")
    for s in corr.get("signals") or []:
        lines.append(
            f"  - {_offset(s['offset_ms'])} {clean(s['rule'], 128)} "
            f"[{clean(s['severity'], 16)}] {clean(s['service'], 128)}: "
            f"{clean(s['summary'], MAX_TEXT)}"
        )
    if not corr.get("signals"):
        lines.append("  (none)")
    lines.append("Suggested fixes:")
    for block in a.get("suggestions") or []:
        lines.append(f"  {clean(block['pattern'], 64)}:")
        lines.extend(f"    * {clean(f, MAX_NOTES + MAX_TEXT)}" for f in block["fixes"])
    return "\n".join(lines) + "\n"


def _code(value: Any, limit: int = MAX_TEXT) -> str:
    """Untrusted text as a Markdown code span that cannot be broken out of."""
    text = clean(value, limit).replace("`", "'")
    return f"`{text}`" if text else "-"


def format_markdown(analysis: dict[str, Any]) -> str:
    """A Markdown report; untrusted strings are in code spans, truncated, control-free."""
    a, t = analysis, analysis.get("timeline") or {}
    out = [
        f"## Root cause analysis: {_code(a.get('title'))}",
        "",
        f"- **Issue:** {_code(a.get('issue_id'), 64)} · **status** {_code(a.get('status'), 32)}"
        f" · **severity** {_code(a.get('severity'), 32)} · **count** {a.get('count')}",
        f"- **Confidence:** {a.get('confidence', 0):.2f}",
        f"- **Started:** {t.get('first_seen_iso') or '-'} in release "
        f"{_code(t.get('first_release') or '-', 128)} · last seen {t.get('last_seen_iso') or '-'}",
        "",
        "### Patterns",
        "",
    ]
    for p in a.get("patterns") or []:
        evidence = "; ".join(clean(e, MAX_TEXT).replace("`", "'") for e in p.get("evidence") or [])
        out.append(f"- **{clean(p['name'], 64)}** ({p['weight']:.2f}): {_code(evidence, 600)}")
    if not a.get("patterns"):
        out.append("- none detected")
    out += ["", "### Similar issues", ""]
    if a.get("similar"):
        out.append("| issue | status | score | title | resolution notes |")
        out.append("|---|---|---|---|---|")
        for s in a["similar"]:
            cells = [
                _code(s["issue_id"], 64),
                _code(s["status"], 32),
                f"{s['score']:.2f}",
                _code(s["title"]),
                _code(s.get("resolution_notes") or "", MAX_NOTES),
            ]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    else:
        out.append("- none")
    corr = a.get("correlations") or {}
    window_min = (corr.get("window_ms") or 0) // 60_000
    out += ["", f"### Signals near first occurrence (±{window_min} min)", ""]
    for s in corr.get("signals") or []:
        out.append(
            f"- {_offset(s['offset_ms'])} {_code(s['rule'], 128)} {_code(s['severity'], 16)} "
            f"{_code(s['service'], 128)}: {_code(s['summary'])}"
        )
    if not corr.get("signals"):
        out.append("- none")
    out += ["", "### Suggested fixes", ""]
    for block in a.get("suggestions") or []:
        out.append(f"- **{clean(block['pattern'], 64)}**")
        out.extend(f"  - {_code(f, MAX_NOTES + MAX_TEXT)}" for f in block["fixes"])
    return "\n".join(out) + "\n"
