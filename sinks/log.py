"""Log sink: one structured log line (JSON under the runtime's structlog set-up) per
notification. Always configured; holds no secrets, and logs only bounded, one-lined
alert fields (the full record is on the `alerts` topic).
"""

from __future__ import annotations

import structlog

from sinks.base import Alert
from sinks.text import group_members, one_line, severity_of

__all__ = ["LogSink"]


class LogSink:
    """Writes `notification` events to the `prodmon.sinks.log` logger."""

    channel = "log"
    destination = "log"

    def __init__(self, logger_name: str = "prodmon.sinks.log") -> None:
        self._logger_name = logger_name

    def __repr__(self) -> str:
        return "LogSink()"

    def render(self, alert: Alert) -> dict[str, object]:
        """The fields of the log line."""
        return {
            "transition_id": one_line(alert.get("id"), 600),
            "alert_id": one_line(alert.get("alert_id"), 500),
            "transition": one_line(alert.get("transition"), 20),
            "severity": severity_of(alert),
            "status": one_line(alert.get("status"), 20),
            "level": alert.get("level"),
            "service": one_line(alert.get("service"), 200) or None,
            "title": one_line(alert.get("title"), 300),
            "summary": one_line(alert.get("summary"), 1000),
            "count": alert.get("count"),
            "channels": [one_line(c, 30) for c in alert.get("channels") or []],
            "group": [one_line(m.get("alert_id"), 500) for m in group_members(alert) or []],
        }

    async def send(self, alert: Alert) -> None:
        """Log the notification (cannot fail short of a broken log stream)."""
        logger = structlog.get_logger(self._logger_name)
        quiet = alert.get("transition") in ("acknowledged", "resolved")
        (logger.info if quiet else logger.warning)("notification", **self.render(alert))
