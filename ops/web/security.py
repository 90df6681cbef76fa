"""Who may read the dashboard and who may act (docs/dashboard.md, "Security model").

- Bound to a loopback address (the default), every request must name a loopback host in
  its `Host` header (a DNS-rebinding page cannot read the dashboard or post to it), and
  actions need no token unless one is configured.
- Bound elsewhere, actions need the token (env PRODMON_DASHBOARD_TOKEN): browsers log in
  once (`/login`, an HttpOnly SameSite=Strict session cookie), scripts send
  `Authorization: Bearer <token>`. Without a token the dashboard is read-only there.
- Every browser action is a POST that must carry the page's CSRF field (an HMAC of a
  per-process secret and the session) and must not come from another origin (`Origin`,
  `Sec-Fetch-Site`).

The token is compared in constant time and never logged, rendered or put in a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

TOKEN_ENV = "PRODMON_DASHBOARD_TOKEN"
MIN_TOKEN_CHARS = 16
SESSION_COOKIE = "prodmon_session"
SESSION_TTL_S = 12 * 3600
MAX_SESSIONS = 1000
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def is_loopback(host: str) -> bool:
    """True for loopback addresses and localhost names (brackets allowed around IPv6)."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_token(token: str | None) -> str | None:
    """The configured token, or None; ValueError (naming the variable only) when too short."""
    if token is None or token == "":
        return None
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"{TOKEN_ENV}: must be at least {MIN_TOKEN_CHARS} characters")
    return token


@dataclass
class Guard:
    """The dashboard's access decisions for one process."""

    bind_host: str
    token: str | None = field(default=None, repr=False)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    sessions: OrderedDict[str, float] = field(default_factory=OrderedDict, repr=False)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.bind_host)

    @property
    def actions_enabled(self) -> bool:
        """Actions exist at all: on loopback, or elsewhere with a token configured."""
        return self.loopback or self.token is not None

    @property
    def login_required(self) -> bool:
        return self.token is not None

    def host_allowed(self, request: web.Request) -> bool:
        """On loopback, the Host header must name a loopback host (anti DNS rebinding)."""
        if not self.loopback:
            return True
        host = request.headers.get("Host", "")
        if "@" in host or "/" in host:
            return False
        try:
            name = urlsplit(f"//{host}").hostname or ""
        except ValueError:
            return False
        return is_loopback(name)

    # --- sessions ---------------------------------------------------------------------------

    def token_matches(self, given: str) -> bool:
        if self.token is None:
            return False
        return hmac.compare_digest(given.encode(), self.token.encode())

    def new_session(self) -> str:
        session = secrets.token_urlsafe(32)
        self.sessions[session] = time.monotonic()
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        return session

    def session(self, request: web.Request) -> str | None:
        """The request's valid session id, or None."""
        session = request.cookies.get(SESSION_COOKIE)
        created = self.sessions.get(session or "")
        if session is None or created is None:
            return None
        if time.monotonic() - created > SESSION_TTL_S:
            self.sessions.pop(session, None)
            return None
        return session

    def end_session(self, request: web.Request) -> None:
        self.sessions.pop(request.cookies.get(SESSION_COOKIE) or "", None)

    def bearer(self, request: web.Request) -> bool:
        """An `Authorization: Bearer <token>` header with the right token."""
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(given.strip())

    def authorized(self, request: web.Request) -> bool:
        """May this request act (CSRF and origin checks aside)?"""
        if not self.actions_enabled:
            return False
        if self.token is None:
            return True
        return self.bearer(request) or self.session(request) is not None

    # --- CSRF -------------------------------------------------------------------------------

    def csrf_token(self, request: web.Request) -> str:
        """The CSRF field of the pages this request sees (bound to its session)."""
        subject = self.session(request) or "-"
        return hmac.new(self.secret, subject.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, request: web.Request, form: Mapping[str, str]) -> bool:
        given = form.get("csrf")
        if not isinstance(given, str):
            return False
        return hmac.compare_digest(given.encode(), self.csrf_token(request).encode())

    def same_origin(self, request: web.Request) -> bool:
        """No cross-site browser request: `Sec-Fetch-Site` and `Origin`, when sent, agree."""
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        if origin == "null":
            return False
        return urlsplit(origin).netloc.lower() == request.headers.get("Host", "").lower()

    def may_act(self, request: web.Request, form: Mapping[str, str]) -> tuple[bool, str]:
        """(allowed, reason when not) for a POST action."""
        if not self.actions_enabled:
            return False, f"actions are disabled: set {TOKEN_ENV} to act on a non-loopback address"
        if not self.same_origin(request):
            return False, "cross-origin request refused"
        if self.token is not None and self.bearer(request):
            return True, ""  # not an ambient browser credential: no CSRF possible
        if not self.authorized(request):
            return False, "log in with the dashboard token first"
        if not self.csrf_ok(request, form):
            return False, "missing or stale form token: reload the page and try again"
        return True, ""
