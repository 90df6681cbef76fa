"""HTTP plumbing shared by the webhook-style sinks: one POST, mapped to success or a
`DeliveryError` that says whether to retry.

Never puts a URL in a reason: aiohttp's exception texts carry the full URL, whose path is
a secret for Slack and generic webhooks, so reasons are built from status codes, exception
class names and OS error texts only. Bodies quoted in reasons are bounded, one-lined and
scrubbed of the sink's secrets.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from sinks.base import DeliveryError
from sinks.text import scrubbed_quote

__all__ = [
    "HttpAnswer",
    "check_answer",
    "decode_leniently",
    "describe_error",
    "is_loopback",
    "parse_retry_after",
    "post",
    "url_destination",
    "url_origin",
    "url_secrets",
]

MAX_BODY_BYTES = 8192
RETRYABLE_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A response, read and closed: status, headers and (bounded) body text."""

    status: int
    headers: Mapping[str, str]
    text: str


def url_origin(url: str) -> str:
    """`scheme://host[:port]` of `url`: the only part of a webhook URL safe to show."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def url_destination(url: str) -> str:
    """`host[:port]` of `url`: a sink's breaker key and label."""
    return url_origin(url).split("://", 1)[-1]


def url_secrets(url: str) -> tuple[str, ...]:
    """Strings to scrub from quoted answers: the URL, its path and query, long path parts."""
    parts = urlsplit(url)
    path_qs = parts.path + (f"?{parts.query}" if parts.query else "")
    pieces = [p for p in (*parts.path.split("/"), parts.query) if len(p) >= 12]
    return tuple(sorted({url, path_qs, *pieces} - {"", "/"}, key=len, reverse=True))


def is_loopback(host: str | None) -> bool:
    """True for localhost and loopback addresses (where plain http/SMTP is acceptable)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date), else None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now()
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)


def decode_leniently(raw: bytes, charset: str | None) -> str:
    """`raw` as text in the answer's charset; an unknown or non-text charset (`bogus`,
    `base64`) falls back to UTF-8, and undecodable bytes become U+FFFD: a receiver's odd
    header must never turn its answer into something other than its status."""
    try:
        return raw.decode(charset or "utf-8", "replace")
    except (LookupError, ValueError):
        return raw.decode("utf-8", "replace")


def describe_error(exc: BaseException) -> str:
    """A secret-free description of a client-side failure (never str(exc): it has the URL)."""
    for candidate in (getattr(exc, "os_error", None), exc.__cause__, exc):
        if isinstance(candidate, OSError) and candidate.errno:
            return f"{type(exc).__name__}: {os.strerror(candidate.errno)}"
    return type(exc).__name__


async def post(
    session: aiohttp.ClientSession,
    url: str,
    *,
    body: bytes | None = None,
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpAnswer:
    """POST `body` (bytes, sent as-is) or `form`; network failures become retryable errors."""
    data: Any = body if body is not None else (dict(form) if form else None)
    try:
        async with session.post(url, data=data, headers=headers, allow_redirects=False) as response:
            raw = await response.content.read(MAX_BODY_BYTES)
            return HttpAnswer(
                response.status,
                dict(response.headers),
                decode_leniently(raw, response.charset),
            )
    except aiohttp.InvalidURL as exc:
        raise DeliveryError("invalid URL", retryable=False) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise DeliveryError(f"connection failed: {describe_error(exc)}", retryable=True) from exc


def check_answer(
    answer: HttpAnswer,
    *,
    ok: Iterable[int] = (200, 201, 202, 204),
    gone: Iterable[int] = (),
    secrets: Iterable[str] = (),
    now: Callable[[], float] = time.time,
) -> None:
    """Raise the `DeliveryError` an answer means: 408/425/429/5xx retryable (with any
    Retry-After), `gone` statuses non-retryable as "destination gone", other codes
    non-retryable with a bounded, scrubbed quote of the body."""
    status = answer.status
    if status in set(ok):
        return
    detail = scrubbed_quote(answer.text, secrets, 200)
    reason = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status in RETRYABLE_STATUSES or status >= 500:
        retry_after = parse_retry_after(answer.headers.get("Retry-After"), now)
        raise DeliveryError(reason, retryable=True, retry_after=retry_after, status=status)
    if status in set(gone):
        raise DeliveryError(f"{reason} (destination gone)", retryable=False, status=status)
    raise DeliveryError(reason, retryable=False, status=status)
