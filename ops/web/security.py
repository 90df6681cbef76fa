"""Who may read the dashboard and who may act (docs/dashboard.md, "Security model").

- Bound to a loopback address (the default), every request must name a loopback host in
  its `Host` header (a DNS-rebinding page cannot read the dashboard or post to it), and
  actions need no token unless one is configured.
- Bound elsewhere, actions need the token (env PRODMON_DASHBOARD_TOKEN): browsers log in
  once (`/login`, an HttpOnly SameSite=Strict session cookie), scripts send
  `Authorization: Bearer <token>`. Without a token the dashboard is read-only there.
- With a token configured (on any address) reading needs it too: every page, `/api/state`
  and `/events` need a session or the bearer token; only `/login` and `/static/*` do not.
- Every browser action is a POST that must carry the page's CSRF field (an HMAC of a
  per-process secret and the session) and must not come from another origin (`Origin`,
  `Sec-Fetch-Site`).
- Wrong tokens (login form or bearer header) lock their client out for a time that doubles
  with each failure beyond a few (`LoginThrottle`): guesses sent in parallel are refused
  unchecked once the lock is set, and the memory it takes is bounded.
- The session cookie is `Secure` when the request came over TLS: to this process, or to a
  reverse proxy named in `dashboard.trusted_proxies` that says so in `X-Forwarded-Proto`
  (from any other peer that header is ignored).

The token is compared in constant time and never logged, rendered or put in a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

TOKEN_ENV = "PRODMON_DASHBOARD_TOKEN"
MIN_TOKEN_CHARS = 16
SESSION_COOKIE = "prodmon_session"
SESSION_TTL_S = 12 * 3600
MAX_SESSIONS = 1000
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
_BEARER_CHECKED = web.RequestKey("prodmon_bearer_checked", bool)  # a wrong token counts once

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


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(proxies: Iterable[str]) -> tuple[Network, ...]:
    """`dashboard.trusted_proxies` as networks (addresses become /32 or /128)."""
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in proxies if p.strip())


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address((text or "").strip().strip("[]"))
    except ValueError:
        return None


class LoginThrottle:
    """Per-client lockout after failed token checks, bounded in memory.

    The first `free_failures` failures of a client cost nothing; each further one locks the
    client out for `base_s * 2**(n - 1)` seconds (n counting the failures beyond the free
    ones), at most `max_s`. While locked, a client's tokens are not even checked, so guesses
    sent in parallel are refused once the lock is set (the handler checks the lock and
    records a failure with no `await` in between). A client's record is forgotten `forget_s`
    after its last failure or at its first success; at most `max_clients` are kept, the
    least recently failing dropped first.
    """

    def __init__(
        self,
        *,
        free_failures: int = 3,
        base_s: float = 1.0,
        max_s: float = 900.0,
        forget_s: float = 3600.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.base_s = base_s
        self.max_s = max_s
        self.forget_s = forget_s
        self.max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, tuple[int, float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def retry_after(self, client: str) -> float:
        """Seconds this client is still locked out for (0: it may try)."""
        found = self._clients.get(client)
        if found is None:
            return 0.0
        _failures, last, locked_until = found
        now = self._clock()
        if now - last > self.forget_s:
            del self._clients[client]
            return 0.0
        return max(locked_until - now, 0.0)

    def failed(self, client: str) -> float:
        """Record a wrong token; returns the lockout it earned, in seconds."""
        now = self._clock()
        failures, last, _ = self._clients.pop(client, (0, now, 0.0))
        if now - last > self.forget_s:
            failures = 0
        failures += 1
        beyond = failures - self.free_failures
        lock = min(self.base_s * 2 ** min(beyond - 1, 60), self.max_s) if beyond > 0 else 0.0
        self._clients[client] = (failures, now, now + lock)
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        return lock

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)


@dataclass
class Guard:
    """The dashboard's access decisions for one process."""

    bind_host: str
    token: str | None = field(default=None, repr=False)
    trusted_proxies: tuple[Network, ...] = ()
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    sessions: OrderedDict[str, float] = field(default_factory=OrderedDict, repr=False)
    throttle: LoginThrottle = field(default_factory=LoginThrottle, repr=False)

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
        """An `Authorization: Bearer <token>` header with the right token. A wrong one
        counts as a failed login of the client; a locked-out client's is not checked."""
        cached = request.get(_BEARER_CHECKED)
        if cached is not None:
            return bool(cached)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        ok = False
        if scheme.lower() == "bearer" and self.token is not None:
            client = self.client_key(request)
            if self.throttle.retry_after(client) <= 0:
                ok = self.token_matches(given.strip())
                if ok:
                    self.throttle.succeeded(client)
                else:
                    self.throttle.failed(client)
        request[_BEARER_CHECKED] = ok
        return ok

    def may_read(self, request: web.Request) -> bool:
        """May this request see pages, `/api/state` and `/events`? Without a token, anyone
        who reaches the dashboard (the Host check aside); with one, a session or bearer."""
        if self.token is None:
            return True
        return self.session(request) is not None or self.bearer(request)

    # --- clients behind proxies -------------------------------------------------------------

    def from_trusted_proxy(self, request: web.Request) -> bool:
        """The TCP peer is one of `dashboard.trusted_proxies`."""
        peer = _address(request.remote)
        return peer is not None and any(peer in net for net in self.trusted_proxies)

    def is_tls(self, request: web.Request) -> bool:
        """The request reached us over TLS, or reached a trusted proxy over TLS (its
        `X-Forwarded-Proto`, last value, is `https`). The header is ignored from others."""
        if request.secure:
            return True
        if not self.from_trusted_proxy(request):
            return False
        proto = request.headers.get("X-Forwarded-Proto", "").rsplit(",", 1)[-1]
        return proto.strip().lower() == "https"

    def client_key(self, request: web.Request) -> str:
        """Who a failed login is counted against: the peer address, or behind a trusted
        proxy the nearest untrusted address of `X-Forwarded-For`; an IPv6 client by its /64
        (one host usually holds a whole /64)."""
        peer = _address(request.remote)
        if peer is not None and any(peer in net for net in self.trusted_proxies):
            hops = request.headers.get("X-Forwarded-For", "").split(",")
            for hop in reversed(hops):
                address = _address(hop)
                if address is None:
                    break
                peer = address
                if not any(address in net for net in self.trusted_proxies):
                    break
        if peer is None:
            return request.remote or "?"
        if isinstance(peer, ipaddress.IPv6Address):
            if peer.ipv4_mapped is not None:
                return str(peer.ipv4_mapped)
            return str(ipaddress.ip_network(f"{peer}/64", strict=False))
        return str(peer)

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
