"""SMS sink, Twilio-style: one form POST per recipient to
`{base_url}/2010-04-01/Accounts/{sid}/Messages.json` with HTTP basic auth (sid, token).

The body is one concise line, `[CRITICAL] FIRING checkout: title — summary`, at most 1600
characters (Twilio's limit). With several recipients, a retry only re-sends to those not
yet reached for that transition (remembered in a bounded in-memory log), so nobody gets
the same text twice because someone else's number failed. The auth token never appears in
a repr, a log line or a reason.
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp

from sinks.base import Alert
from sinks.http import check_answer, post, url_destination
from sinks.text import alert_line

__all__ = ["BODY_MAX", "SmsSink", "sms_body"]

BODY_MAX = 1600
SENT_LOG_MAX = 10_000


def sms_body(alert: Alert) -> str:
    """The text message for `alert`: one line, at most `BODY_MAX` characters."""
    return alert_line(alert, BODY_MAX)


class SmsSink:
    """Sends one SMS per recipient through a Twilio-compatible Messages API."""

    channel = "sms"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        account_sid: str,
        auth_token: str,
        sender: str,
        recipients: Sequence[str],
    ) -> None:
        self._session = session
        self._url = (
            f"{base_url.rstrip('/')}/2010-04-01/Accounts/{quote(account_sid, safe='')}"
            "/Messages.json"
        )
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._headers = {"Authorization": f"Basic {credentials}"}
        self._secrets = (auth_token, credentials)
        self.sender = sender
        self.recipients = tuple(recipients)
        self.destination = url_destination(base_url)
        self._sent: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __repr__(self) -> str:
        return f"SmsSink(destination={self.destination!r}, recipients={len(self.recipients)})"

    def render(self, alert: Alert) -> dict[str, Any]:
        """The form fields each recipient's request carries."""
        return {"From": self.sender, "To": list(self.recipients), "Body": sms_body(alert)}

    async def send(self, alert: Alert) -> None:
        """POST to each recipient not yet reached; the first failure raises."""
        body = sms_body(alert)
        transition_id = str(alert.get("id") or "")
        for recipient in self.recipients:
            mark = (transition_id, recipient)
            if transition_id and mark in self._sent:
                continue
            answer = await post(
                self._session,
                self._url,
                form={"To": recipient, "From": self.sender, "Body": body},
                headers=self._headers,
            )
            check_answer(answer, ok=(200, 201), secrets=self._secrets)
            if transition_id:
                self._sent[mark] = None
                while len(self._sent) > SENT_LOG_MAX:
                    self._sent.popitem(last=False)
