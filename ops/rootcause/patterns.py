"""The pattern table, as data: each cause pattern's regexes, weight and suggested fixes, and
the fixes of the context patterns (high-frequency, new-release, regression).

Pattern weights are a pattern's own strength (how reliably the evidence names a cause): a
match on the exception type or the message counts fully, a match only in stack frames or in
the event context counts 0.6 of it, and each further independent source adds 0.05 (at most
0.1, capped at 1.0); ops/rootcause/detect.py applies them. Context patterns say *when* and
*how much*, not *why*, so they weigh less.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class PatternRule:
    """A cause pattern: regexes (literal alternations, backtracking-safe) and fixes."""

    name: str
    weight: float
    type_re: re.Pattern[str] | None
    text_re: re.Pattern[str] | None
    frame_re: re.Pattern[str] | None
    fixes: tuple[str, ...]


def _re(text: str) -> re.Pattern[str]:
    return re.compile(text, re.IGNORECASE)


PATTERN_RULES: tuple[PatternRule, ...] = (
    PatternRule(
        "timeout",
        0.7,
        _re(r"timeout|timedout|deadlineexceeded"),
        _re(r"timed?[ -]?out|deadline exceeded|ETIMEDOUT|read operation timed"),
        None,
        (
            "Find which dependency is slow (the frames and correlated latency signals name it) "
            "before raising any timeout; a longer timeout only hides a saturated backend.",
            "Set explicit connect and read timeouts per call, below the caller's own deadline.",
            "Retry idempotent calls with capped exponential backoff and jitter; add a circuit "
            "breaker so a slow dependency fails fast instead of piling up requests.",
        ),
    ),
    PatternRule(
        "connection-refused-reset",
        0.75,
        _re(
            r"ConnectionRefused|ConnectionReset|ConnectionAborted|BrokenPipe|ConnectError"
            r"|ConnectException|ClientConnectorError|^ConnectionError$"
        ),
        _re(
            r"connection refused|ECONNREFUSED|connection reset|ECONNRESET|broken pipe|EPIPE"
            r"|connection aborted|could not connect|failed to connect|unable to connect"
            r"|remote end closed|network is unreachable|no route to host|EHOSTUNREACH"
        ),
        None,
        (
            "Check that the target is up and listening on the configured host/port (health "
            "checks, recent restarts or deploys of the dependency).",
            "Resets under load usually mean idle connections killed by a proxy or server: set "
            "pool keep-alive/idle timeouts below the peer's and validate connections on checkout.",
            "Retry connect failures with backoff; do not retry non-idempotent requests blindly.",
        ),
    ),
    PatternRule(
        "dns",
        0.85,
        _re(r"gaierror|UnknownHost|NameResolution|DNSLookup"),
        _re(
            r"name or service not known|getaddrinfo|NXDOMAIN|EAI_AGAIN|ENOTFOUND"
            r"|temporary failure in name resolution|nodename nor servname|no such host"
            r"|name resolution"
        ),
        None,
        (
            "Verify the hostname in configuration and that it resolves from the failing hosts "
            "(resolv.conf, service discovery, a recently removed DNS record).",
            "Cache resolved addresses briefly and retry EAI_AGAIN (a transient resolver failure).",
        ),
    ),
    PatternRule(
        "tls-certificate",
        0.8,
        _re(r"SSLError|SSLCertVerification|CertificateError|SSLHandshake|TLSError"),
        _re(
            r"CERTIFICATE_VERIFY_FAILED|certificate (?:has )?expired|certificate verify"
            r"|self[- ]signed certificate|unable to get local issuer|hostname mismatch"
            r"|handshake failure|\bSSL\b|\bTLS\b|x509"
        ),
        None,
        (
            "Check the peer certificate's expiry and chain (openssl s_client -connect host:443 "
            "-showcerts) and that the client trusts the issuing CA.",
            "Make sure the name the client connects to is in the certificate's SANs.",
            "Never disable verification as a fix; add the right CA bundle instead, and alert on "
            "certificate expiry ahead of time.",
        ),
    ),
    PatternRule(
        "null-reference",
        0.8,
        _re(r"NullPointer|NullReference|NoneType"),
        _re(
            r"NoneType|null pointer|null reference|nil pointer|cannot read propert(?:y|ies) of "
            r"(?:undefined|null)|undefined is not an? |is not an object|\bis None\b"
            r"|unexpected null"
        ),
        None,
        (
            "Find where the value became None/null (the innermost in-app frame) and decide "
            "whether absence is legal; if it is, handle it explicitly, if not, validate it at "
            "the boundary where it enters (request parsing, DB row, API response).",
            "Look for a recent change that made a lookup optional (a new code path, a deleted "
            "row, a field removed from an upstream payload).",
        ),
    ),
    PatternRule(
        "key-index",
        0.7,
        _re(
            r"^KeyError$|^IndexError$|LookupError|IndexOutOfBounds|ArrayIndexOutOfBounds"
            r"|NoSuchElement|KeyNotFound"
        ),
        _re(r"index out of (?:range|bounds)|key not found|no such key|missing key"),
        None,
        (
            "Use .get()/bounds checks where a missing key or empty list is expected, and fail "
            "with a clear error where it is not.",
            "Compare the producing side's payload with what the code expects: a renamed or "
            "dropped field upstream is the usual cause when this starts suddenly.",
        ),
    ),
    PatternRule(
        "out-of-memory",
        0.85,
        _re(r"MemoryError|OutOfMemory"),
        _re(
            r"out of memory|\bOOM\b|cannot allocate memory|ENOMEM|heap space"
            r"|memory limit|killed by signal 9|OOMKilled"
        ),
        None,
        (
            "Profile memory of the failing operation (tracemalloc, heap dump) and look for "
            "unbounded buffers: loading whole result sets or files, caches without eviction.",
            "Stream or paginate large data, bound caches and queues, and size the container "
            "limit from a measured peak rather than raising it blindly.",
        ),
    ),
    PatternRule(
        "disk-full",
        0.9,
        None,
        _re(r"no space left on device|ENOSPC|disk (?:is )?full|disk quota exceeded|EDQUOT"),
        None,
        (
            "Free space now (logs, temp files, old artefacts) and find what grew (du -x on the "
            "volume); check log rotation and retention.",
            "Alert on disk usage before it reaches 100% and put bounded retention on anything "
            "the service writes.",
        ),
    ),
    PatternRule(
        "permission-auth",
        0.75,
        _re(
            r"PermissionError|PermissionDenied|AccessDenied|Unauthori[sz]ed|Forbidden"
            r"|Authentication|AuthError|InvalidToken|ExpiredSignature|NotAuthenticated"
        ),
        _re(
            r"permission denied|access denied|EACCES|unauthori[sz]ed|forbidden"
            r"|\b40[13]\b|invalid (?:token|credentials|api key|signature)"
            r"|authentication failed|password authentication failed|token (?:has )?expired"
            r"|expired token|not authenticated"
        ),
        None,
        (
            "Check whether credentials were rotated or expired (API keys, tokens, DB passwords, "
            "service-account roles) and whether the deployment picked up the new secret.",
            "For file permission errors, check the process user and the mode/owner of the path.",
            "A burst of auth failures from many clients can also be credential stuffing: check "
            "source addresses before loosening anything.",
        ),
    ),
    PatternRule(
        "rate-limited",
        0.85,
        _re(r"RateLimit|Throttl|TooManyRequests|ResourceExhausted"),
        _re(
            r"too many requests|rate[- ]?limit|throttl|quota exceeded|RESOURCE_EXHAUSTED"
            r"|(?:HTTP|status|code)[ :=]{0,3}429\b|\b429 "
        ),
        None,
        (
            "Honour Retry-After and back off with jitter; cap concurrency toward the provider.",
            "Find what raised the call volume (a retry storm, a new caller, a missing cache) "
            "and batch or cache requests; ask for a higher quota only after that.",
        ),
    ),
    PatternRule(
        "deadlock-lock-timeout",
        0.85,
        _re(r"Deadlock|LockTimeout|LockNotAvailable|SerializationFailure"),
        _re(
            r"deadlock|lock wait timeout|could not obtain lock|lock timeout|lock not available"
            r"|could not serialize access|database is locked"
        ),
        None,
        (
            "Acquire rows/locks in one consistent order in every transaction and keep "
            "transactions short (no network calls while holding locks).",
            "Retry the whole transaction on deadlock/serialization failure, a bounded number "
            "of times; check the database's lock logs for the other party.",
        ),
    ),
    PatternRule(
        "database",
        0.75,
        _re(
            r"OperationalError|InterfaceError|DatabaseError|SQLException|PoolTimeout"
            r"|TooManyConnections|ConnectionDoesNotExist"
        ),
        _re(
            r"too many connections|connection pool|QueuePool limit|pool (?:is )?exhausted"
            r"|remaining connection slots|could not connect to server"
            r"|server closed the connection unexpectedly|lost connection to mysql"
            r"|connection to server at|terminating connection"
        ),
        _re(r"sqlalchemy|psycopg|asyncpg|pymysql|mysqldb|django\.db|sqlite3|jdbc|hikari"),
        (
            "Check the database itself first: is it up, failing over, or at max_connections?",
            "If the pool is exhausted, look for connections held too long or leaked (sessions "
            "not closed on error paths) before enlarging the pool; size pool x replicas below "
            "the server's connection limit.",
            "Enable pool pre-ping / recycle so dead connections are replaced, and put a "
            "statement timeout on long queries.",
        ),
    ),
    PatternRule(
        "serialization",
        0.75,
        _re(r"JSONDecode|UnicodeDecode|UnicodeEncode|Serializ|Unmarshal|ParseError|Pickling"),
        _re(
            r"expecting value|unexpected token|invalid json|not json serializable"
            r"|cannot (?:de)?serialize|failed to (?:de)?serialize|unmarshal|malformed"
            r"|unterminated string|invalid start byte"
        ),
        None,
        (
            "Log (bounded) what was received when decoding fails: an HTML error page or an "
            "empty body from an upstream often shows up as a JSON decode error.",
            "Check the response status and content type before decoding, and version payload "
            "schemas so producers and consumers can change independently.",
        ),
    ),
    PatternRule(
        "configuration",
        0.7,
        _re(r"ImproperlyConfigured|Config(?:uration)?Error|MissingEnv|EnvError"),
        _re(
            r"environment variable|env var|missing (?:required )?(?:config|setting|option)"
            r"|not configured|improperly configured|no such file or directory[^\n]{0,200}"
            r"\.(?:ya?ml|ini|json|env|conf|toml|cfg)\b"
        ),
        _re(r"\bos\.(?:__getitem__|getenv)|environ"),
        (
            "Compare the failing environment's configuration and secrets with a working one; "
            "a variable missing from one deployment is the usual cause after a release.",
            "Validate required configuration at startup so a bad deploy fails its health check "
            "instead of failing requests.",
        ),
    ),
)

# Context patterns (ops/rootcause/detect.py finds them): when and how much, not why.
CONTEXT_FIXES = {
    "high-frequency": (
        "This fires often: treat it as an incident, not noise. Rate-limit the alert, not the "
        "fix, and watch the rate after deploying a fix.",
    ),
    "new-release": (
        "It started with a release: diff that release against the previous one around the "
        "in-app frames and consider a rollback or a feature-flag off while investigating.",
    ),
    "regression": (
        "It came back after being resolved: re-read the previous resolution notes, check "
        "whether the fix shipped to every service/release, and add a test that reproduces it.",
    ),
}
CONTEXT_NAMES = frozenset(CONTEXT_FIXES)
