"""Fake notification services on 127.0.0.1 free ports, checking what the real ones check.

Each HTTP fake records every request (`hits`) and the ones it accepted (`received`), and
can be scripted to misbehave for its next requests: `fail(status, times, body, headers)`, `throttle(
retry_after, times)`, `slow(seconds, times)`. `closed_port_url()` gives a URL where nothing
listens (connection refused). The SMTP fake is an aiosmtpd `Controller` that records
envelopes and can require AUTH.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import re
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    """A port nothing listens on right now (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port_url(path: str = "/hook") -> str:
    """An http URL on loopback where the connection is refused."""
    return f"http://127.0.0.1:{free_port()}{path}"


@dataclass
class Received:
    """One request as the fake saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)


@dataclass
class Scripted:
    """One scripted misbehaviour: answer `status` after holding the request `delay_s`."""

    status: int = 500
    body: str = "internal error"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class FakeService:
    """Base of the HTTP fakes: serving, recording, scripting. Subclasses implement `answer`."""

    route = "/"

    def __init__(self) -> None:
        self.hits: list[Received] = []
        self.received: list[Received] = []
        self._script: deque[Scripted] = deque()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> FakeService:
        app = web.Application()
        app.router.add_post(self.route, self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(
        self,
        status: int = 500,
        times: int = 1,
        body: str = "internal error",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `times` requests with `status` and `body` (`headers` may set a
        Content-Type, charset included, which is then sent as-is)."""
        self._script.extend(Scripted(status, body, dict(headers or {})) for _ in range(times))

    def throttle(self, retry_after: str | None, times: int = 1, status: int = 429) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self._script.extend(Scripted(status, "rate_limited", headers) for _ in range(times))

    def slow(self, seconds: float, times: int = 1) -> None:
        self._script.extend(Scripted(200, "ok", {}, seconds) for _ in range(times))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        hit = Received(request.path, dict(request.headers), body)
        self.hits.append(hit)
        if self._script:
            scripted = self._script.popleft()
            if scripted.delay_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._release.wait(), scripted.delay_s)
            if "Content-Type" in scripted.headers:  # verbatim, even a charset nobody knows
                return web.Response(
                    status=scripted.status,
                    body=scripted.body.encode(),
                    headers=scripted.headers,
                )
            return web.Response(
                status=scripted.status, text=scripted.body, headers=scripted.headers
            )
        return await self.answer(request, hit)

    async def answer(self, request: web.Request, hit: Received) -> web.StreamResponse:
        raise NotImplementedError


def _json_body(hit: Received) -> Any:
    try:
        return orjson.loads(hit.body)
    except orjson.JSONDecodeError:
        return None


# --- Slack ---------------------------------------------------------------------------------


def _text_ok(obj: Any, limit: int, types: tuple[str, ...] = ("plain_text", "mrkdwn")) -> bool:
    return (
        isinstance(obj, dict)
        and obj.get("type") in types
        and isinstance(obj.get("text"), str)
        and 1 <= len(obj["text"]) <= limit
    )


def slack_blocks_error(blocks: Any) -> str | None:
    """What Slack would reject in a blocks list (None: valid)."""
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "blocks must be a list of at most 50"
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "header":
            if not _text_ok(block.get("text"), 150, ("plain_text",)):
                return "header text must be plain_text, 1..150 chars"
        elif kind == "section":
            text, fields = block.get("text"), block.get("fields")
            if text is None and fields is None:
                return "section needs text or fields"
            if text is not None and not _text_ok(text, 3000):
                return "section text must be 1..3000 chars"
            if fields is not None and (
                not isinstance(fields, list)
                or len(fields) > 10
                or not all(_text_ok(f, 2000) for f in fields)
            ):
                return "section fields: at most 10, each 1..2000 chars"
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                return "context needs 1..10 elements"
            if not all(_text_ok(e, 3000) for e in elements):
                return "context element text must be 1..3000 chars"
        elif kind != "divider":
            return f"unknown block type {kind!r}"
    return None


class FakeSlack(FakeService):
    """Incoming webhook: JSON with `text` or `blocks`; 200 "ok", or 400 with an error code."""

    def __init__(self, token: str = "T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX") -> None:
        super().__init__()
        self.token = token
        self.route = f"/services/{token}"

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.route}"

    async def answer(self, request: web.Request, hit: Received) -> web.StreamResponse:
        payload = _json_body(hit)
        if request.content_type != "application/json" or not isinstance(payload, dict):
            return web.Response(status=400, text="invalid_payload")
        if not payload.get("text") and not payload.get("blocks"):
            return web.Response(status=400, text="no_text")
        blocks = [payload.get("blocks") or []]
        for attachment in payload.get("attachments") or []:
            if not isinstance(attachment, dict):
                return web.Response(status=400, text="invalid_attachments")
            color = attachment.get("color", "#000000")
            if not re.fullmatch(r"#[0-9A-Fa-f]{6}|good|warning|danger", str(color)):
                return web.Response(status=400, text="invalid_attachments")
            blocks.append(attachment.get("blocks") or [])
        if any(slack_blocks_error(b) for b in blocks):
            return web.Response(status=400, text="invalid_blocks")
        hit.json = payload
        self.received.append(hit)
        return web.Response(status=200, text="ok")


# --- PagerDuty -----------------------------------------------------------------------------

PD_SEVERITIES = {"critical", "error", "warning", "info"}
PD_ACTIONS = {"trigger", "acknowledge", "resolve"}


def pagerduty_event_errors(event: Any) -> list[str]:
    """Events API v2 validation (what PagerDuty answers 400 for)."""
    if not isinstance(event, dict):
        return ["Event object is invalid"]
    errors = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("'routing_key' must be 32 characters")
    action = event.get("event_action")
    if action not in PD_ACTIONS:
        errors.append("'event_action' is invalid")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not 1 <= len(dedup) <= 255):
        errors.append("'dedup_key' must be 1..255 characters")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not 1 <= len(summary) <= 1024:
            errors.append("'payload.summary' must be 1..1024 characters")
        if not isinstance(payload.get("source"), str) or not payload["source"]:
            errors.append("'payload.source' is missing")
        if payload.get("severity") not in PD_SEVERITIES:
            errors.append("'payload.severity' is invalid")
        if "timestamp" in payload:
            try:
                datetime.fromisoformat(str(payload["timestamp"]).replace("Z", "+00:00"))
            except ValueError:
                errors.append("'payload.timestamp' is not ISO-8601")
        details = payload.get("custom_details")
        if details is not None and not isinstance(details, dict):
            errors.append("'payload.custom_details' must be an object")
        links = event.get("links", [])
        if not isinstance(links, list) or not all(
            isinstance(link, dict)
            and isinstance(link.get("href"), str)
            and link["href"].startswith(("http://", "https://"))
            and isinstance(link.get("text", ""), str)
            for link in links
        ):
            errors.append("'links' must be a list of {href, text}")
    return errors


class FakePagerDuty(FakeService):
    """Events API v2 enqueue endpoint: 202 success JSON or 400 invalid event."""

    route = "/v2/enqueue"

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.route}"

    async def answer(self, request: web.Request, hit: Received) -> web.StreamResponse:
        event = _json_body(hit)
        errors = pagerduty_event_errors(event)
        if errors:
            body = {"status": "invalid event", "message": "Event object is invalid"}
            return web.json_response(body | {"errors": errors}, status=400)
        hit.json = event
        self.received.append(hit)
        dedup = event.get("dedup_key") or hashlib.sha1(hit.body).hexdigest()
        body = {"status": "success", "message": "Event processed", "dedup_key": dedup}
        return web.json_response(body, status=202)


# --- SMS (Twilio-style) --------------------------------------------------------------------

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


class FakeSms(FakeService):
    """Messages resource: basic auth (sid, token), form To/From/Body; 201 JSON."""

    def __init__(self, sid: str = "AC" + "0" * 32, token: str = "sms-auth-token-0123") -> None:
        super().__init__()
        self.sid = sid
        self.token = token
        self.route = "/2010-04-01/Accounts/{sid}/Messages.json"
        self._busy_once: set[str] = set()

    def busy_once(self, number: str) -> None:
        """The next message to `number` gets a 503 (others go through)."""
        self._busy_once.add(number)

    async def answer(self, request: web.Request, hit: Received) -> web.StreamResponse:
        if request.match_info["sid"] != self.sid:
            return web.json_response({"code": 20404, "message": "Not found"}, status=404)
        expected = "Basic " + base64.b64encode(f"{self.sid}:{self.token}".encode()).decode()
        if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        if request.content_type != "application/x-www-form-urlencoded":
            return web.json_response({"code": 21600, "message": "Bad content type"}, status=400)
        form = dict(parse_qsl(hit.body.decode(), keep_blank_values=True))
        if not E164.match(form.get("To", "")):
            return web.json_response({"code": 21211, "message": "Invalid 'To'"}, status=400)
        if not form.get("From"):
            return web.json_response({"code": 21603, "message": "'From' is required"}, status=400)
        body = form.get("Body", "")
        if not body:
            return web.json_response({"code": 21602, "message": "Body is required"}, status=400)
        if len(body) > 1600:
            return web.json_response({"code": 21617, "message": "Body too long"}, status=400)
        if form["To"] in self._busy_once:
            self._busy_once.discard(form["To"])
            return web.json_response({"code": 20500, "message": "busy"}, status=503)
        hit.form = form
        self.received.append(hit)
        sid = "SM" + hashlib.md5(hit.body).hexdigest()
        return web.json_response({"sid": sid, "status": "queued", "to": form["To"]}, status=201)


# --- Generic webhook receiver --------------------------------------------------------------


class FakeWebhookReceiver(FakeService):
    """Verifies `X-Prodmon-Signature` (its own HMAC code) and timestamp freshness."""

    def __init__(
        self,
        secret: str,
        path_token: str = "hook-path-token-abc",
        tolerance_s: float = 300,
        now: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.secret = secret.encode()
        self.route = f"/hooks/{path_token}"
        self.tolerance_s = tolerance_s
        self.now = now
        self.idempotency_keys: list[str] = []

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.route}"

    def _verified(self, hit: Received) -> str | None:
        ts = hit.headers.get("X-Prodmon-Timestamp", "")
        signature = hit.headers.get("X-Prodmon-Signature", "")
        if not ts.isdigit():
            return "missing timestamp"
        if abs(self.now() - int(ts)) > self.tolerance_s:
            return "stale timestamp"
        mac = hmac.new(self.secret, ts.encode() + b"." + hit.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(f"sha256={mac}", signature):
            return "bad signature"
        return None

    async def answer(self, request: web.Request, hit: Received) -> web.StreamResponse:
        problem = self._verified(hit)
        if problem:
            return web.json_response({"error": problem}, status=401)
        key = hit.headers.get("Idempotency-Key", "")
        if key in self.idempotency_keys:
            return web.json_response({"duplicate": True}, status=200)
        self.idempotency_keys.append(key)
        hit.json = _json_body(hit)
        self.received.append(hit)
        return web.json_response({"ok": True}, status=200)


# --- SMTP ----------------------------------------------------------------------------------


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


class RecordingHandler:
    """aiosmtpd handler: records each message; can be told to answer the next DATA badly."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.next_replies: deque[str] = deque()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.next_replies:
            return self.next_replies.popleft()
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


class FakeSmtp:
    """aiosmtpd on 127.0.0.1: plain by default, AUTH (no TLS needed) when given credentials,
    STARTTLS or implicit TLS when given a server SSL context."""

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls_context: Any = None,
        implicit_tls_context: Any = None,
    ) -> None:
        self.handler = RecordingHandler()
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if username is not None:
            kwargs.update(
                auth_required=True,
                auth_require_tls=False,
                authenticator=self._authenticator(username, password or ""),
            )
        if starttls_context is not None:
            kwargs.update(tls_context=starttls_context, require_starttls=True)
        if implicit_tls_context is not None:
            kwargs.update(ssl_context=implicit_tls_context)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    @staticmethod
    def _authenticator(username: str, password: str) -> Callable[..., AuthResult]:
        def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any):
            ok = (
                isinstance(data, LoginPassword)
                and data.login == username.encode()
                and data.password == password.encode()
            )
            return AuthResult(success=ok, handled=False)

        return check

    @property
    def mails(self) -> list[Mail]:
        return self.handler.mails

    def start(self) -> FakeSmtp:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
