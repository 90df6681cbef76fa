"""Generic JSON webhook sink: POSTs the alert record, signed with a shared secret.

Body: the alert transition record as JSON (exact bytes signed). Headers:

- `X-Prodmon-Timestamp`: unix seconds when signed;
- `X-Prodmon-Signature`: `sha256=<hex HMAC-SHA256(secret, "{timestamp}." + body)>`;
- `Idempotency-Key`: the transition id (`sha256:<hex>` when not short printable ASCII),
  identical on every retry, so a receiver can drop duplicates.

Receivers recompute the HMAC over the raw body, compare in constant time and reject
timestamps older than a tolerance (see `verify_signature` and docs/sinks.md). The URL
(may embed a token) and the secret never appear in a repr, a log line or a reason.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from sinks.base import Alert
from sinks.http import check_answer, post, url_destination, url_secrets
from sinks.text import header_token, json_bytes

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookSink", "sign", "verify_signature"]

TIMESTAMP_HEADER = "X-Prodmon-Timestamp"
SIGNATURE_HEADER = "X-Prodmon-Signature"
DEFAULT_TOLERANCE_S = 300


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over `"{timestamp}." + body`."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """Receiver side: the signature matches and the timestamp is within `tolerance_s`."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


class WebhookSink:
    """POSTs signed alert records to one URL."""

    channel = "webhook"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        secret: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._url = url
        self._secret = secret.encode()
        self._clock = clock
        self.destination = url_destination(url)

    def __repr__(self) -> str:
        return f"WebhookSink(destination={self.destination!r})"

    def render(self, alert: Alert) -> dict[str, Any]:
        """What would be sent: the body and the non-signature headers."""
        return {"body": alert, "headers": {"Idempotency-Key": self._idempotency_key(alert)}}

    @staticmethod
    def _idempotency_key(alert: Alert) -> str:
        return header_token(str(alert.get("id") or alert.get("alert_id") or ""))

    async def send(self, alert: Alert) -> None:
        """POST the signed record; 2xx success, 408/429/5xx retryable, 410 gone, others not."""
        body = json_bytes(alert)
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "prodmon-webhook/1",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            "Idempotency-Key": self._idempotency_key(alert),
        }
        answer = await post(self._session, self._url, body=body, headers=headers)
        check_answer(
            answer,
            ok=range(200, 300),
            gone=(410,),
            secrets=(*url_secrets(self._url), self._secret.decode()),
        )
