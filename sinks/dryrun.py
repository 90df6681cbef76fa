"""Dry-run sink for replay and backtesting: records what a real sink would have sent and
sends nothing. Wraps a real sink to capture its rendered payload (its `render`), or stands
alone and records the alert itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sinks.base import Alert, Sink

__all__ = ["DryRunSink", "WouldSend"]


@dataclass(frozen=True, slots=True)
class WouldSend:
    """One notification that was not sent."""

    channel: str
    transition_id: str
    alert_id: str
    payload: Any


class DryRunSink:
    """Same channel and destination as the sink it stands in for; `sent` lists the rest."""

    def __init__(self, channel: str, inner: Sink | None = None) -> None:
        self.channel = channel
        self.destination = f"dry-run:{inner.destination}" if inner is not None else "dry-run"
        self._inner = inner
        self.sent: list[WouldSend] = []

    def __repr__(self) -> str:
        return f"DryRunSink(channel={self.channel!r}, destination={self.destination!r})"

    async def send(self, alert: Alert) -> None:
        """Record the would-be payload (the wrapped sink's `render(alert)` when it has one)."""
        render = getattr(self._inner, "render", None)
        payload = render(alert) if callable(render) else alert
        self.sent.append(
            WouldSend(
                self.channel, str(alert.get("id") or ""), str(alert.get("alert_id") or ""), payload
            )
        )
