"""What an issue says about itself: its sample's type, message, frames and context, bounded;
its services; its count, duration and rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ops.rootcause.text import MAX_SCAN_CHARS, as_int

MAX_FRAMES = 50  # frames looked at per sample


@dataclass(frozen=True)
class Facts:
    """The bounded text of an issue that patterns are matched against."""

    exception_type: str
    message: str  # template and sample message, bounded
    frames: str  # "module.function filename" of the frames, bounded
    in_app: frozenset[str]  # "module:function" of in-app frames
    context: str  # context keys and scalar values, bounded
    sample_message: str


def _sample(issue: dict[str, Any]) -> dict[str, Any]:
    sample = issue.get("sample")
    return sample if isinstance(sample, dict) else {}


def _frames(sample: dict[str, Any]) -> list[dict[str, Any]]:
    frames = sample.get("stacktrace")
    if not isinstance(frames, list):
        return []
    return [f for f in frames[-MAX_FRAMES:] if isinstance(f, dict)]


def _flatten(value: Any, out: list[str], budget: list[int], depth: int = 0) -> None:
    """Keys and scalar values of a context object, bounded in depth and size."""
    if budget[0] <= 0 or depth > 4:
        return
    if isinstance(value, dict):
        for i, (k, v) in enumerate(value.items()):
            if i >= 50 or budget[0] <= 0:
                return
            piece = str(k)[:64]
            out.append(piece)
            budget[0] -= len(piece) + 1
            _flatten(v, out, budget, depth + 1)
    elif isinstance(value, list):
        for v in value[:20]:
            _flatten(v, out, budget, depth + 1)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        piece = str(value)[:256]
        out.append(piece)
        budget[0] -= len(piece) + 1


def issue_facts(issue: dict[str, Any]) -> Facts:
    """The issue's exception type, message, frames and context, each bounded."""
    sample = _sample(issue)
    exc = sample.get("exception")
    if not isinstance(exc, dict):
        exc = {}
    etype = issue.get("exception_type") or exc.get("type") or ""
    sample_message = exc.get("message")
    if not isinstance(sample_message, str):
        sample_message = ""
    template = issue.get("message_template")
    template = template if isinstance(template, str) else ""
    message = template[:MAX_SCAN_CHARS]
    if sample_message and sample_message[:MAX_SCAN_CHARS] != message:
        message += "\n" + sample_message[:MAX_SCAN_CHARS]
    frame_text: list[str] = []
    in_app: set[str] = set()
    for f in _frames(sample):
        module = str(f.get("module") or "")[:200]
        function = str(f.get("function") or "")[:200]
        filename = str(f.get("filename") or "")[:200]
        frame_text.append(f"{module}.{function} {filename}")
        if f.get("in_app") and (module or filename) and function:
            in_app.add(f"{module or filename}:{function}")
    ctx: list[str] = []
    _flatten(sample.get("context"), ctx, [MAX_SCAN_CHARS])
    return Facts(
        exception_type=str(etype)[:256],
        message=message,
        frames="\n".join(frame_text)[:MAX_SCAN_CHARS],
        in_app=frozenset(in_app),
        context=" ".join(ctx)[:MAX_SCAN_CHARS],
        sample_message=sample_message[:MAX_SCAN_CHARS],
    )


def issue_services(issue: dict[str, Any]) -> set[str]:
    """The issue's services and its sample's."""
    services = {s for s in issue.get("services") or [] if isinstance(s, str)}
    svc = _sample(issue).get("service")
    if isinstance(svc, str):
        services.add(svc)
    return services


def issue_rate(issue: dict[str, Any]) -> tuple[int, int | None, float | None]:
    """Count, first_seen..last_seen in ms and occurrences per minute (None when unknown)."""
    count = as_int(issue.get("count")) or 0
    first, last = as_int(issue.get("first_seen")), as_int(issue.get("last_seen"))
    if first is None or last is None:
        return count, None, None
    duration = max(0, last - first)
    return count, duration, count / max(1.0, duration / 60_000)
