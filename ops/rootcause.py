"""Root-cause analysis of one issue from the `issues`, `signals` and `rollups` topics (no I/O).

`analyze_issue(issue, issues, signals, rollups=None)` returns a JSON-able dict:

    issue_id, title, status, count, severity, services   the issue, bounded
    patterns       [{name, weight, evidence: [str], sources: [str]}], strongest first
    similar        [{issue_id, title, score, reasons, status, resolution_notes, resolved_by}],
                   top 5 by score (a resolved look-alike with notes wins ties)
    suggestions    [{pattern, fixes: [str]}] per detected pattern, plus the notes of similar
                   resolved issues first (pattern "similar-resolved")
    correlations   {window_ms, signals: [...], rollups: {...} | None}; firing signals of the
                   issue's services (or about the issue's fingerprint) whose `ts` is within
                   ±window_ms of first_seen, closest first, with `offset_ms` (signal ts minus
                   first_seen: negative = before the issue started)
    timeline       {first_seen, first_seen_iso, last_seen, last_seen_iso, first_release,
                    releases, duration_ms, rate_per_min}: "when did this start"
    confidence     0..1 (below); confidence_factors: the terms that made it up

Pattern weights are a pattern's own strength (how reliably the evidence names a cause): a
match on the exception type or the message counts fully, a match only in stack frames or in
the event context counts 0.6 of it, and each further independent source adds 0.05 (at most
0.1, capped at 1.0). Context patterns (high-frequency, new-release, regression) say *when*
and *how much*, not *why*, so they weigh less.

Confidence:

    confidence = clamp(0, 1,
          0.50 * strongest          # weight of the strongest cause pattern (0 when none)
        + 0.05 * (patterns - 1)     # agreement: further patterns of any kind, at most 0.15
        + 0.10 * volume             # volume = min(1, log10(count) / 3): 1000 events -> 0.1
        + 0.20 * similar_resolved   # best score of a similar *resolved* issue with notes
                                    # (half credit without notes)
        + 0.05 * correlated)        # 1 when a firing signal of the same service is in window

so a lone single-occurrence error without any recognisable pattern scores 0 and a typed,
frequent, correlated error with a resolved look-alike approaches 1.

Everything that comes from events (messages, frames, context, notes, summaries) is
attacker-controlled text: it is only matched with bounded, backtracking-safe regexes on
bounded prefixes, copied out truncated with control characters replaced, and never evaluated
or used as a format string. The renderers truncate again and put it in code spans.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "DEFAULT_WINDOW_MS",
    "PATTERN_RULES",
    "analyze_issue",
    "format_markdown",
    "format_text",
    "similarity",
]

DEFAULT_WINDOW_MS = 10 * 60 * 1000
TRUNCATION_MARKER = "…[truncated]"
MAX_SCAN_CHARS = 4096  # only this prefix of each untrusted text is matched
MAX_SNIPPET = 80  # matched text quoted in evidence
MAX_TEXT = 300  # titles, summaries
MAX_NOTES = 600  # resolution notes
MAX_FRAMES = 50  # frames looked at per sample
MAX_SIMILAR = 5
MAX_CORRELATIONS = 20
SIMILAR_MIN_SCORE = 0.3
HIGH_FREQUENCY_COUNT = 100
HIGH_FREQUENCY_PER_MIN = 10.0

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_TOKEN = re.compile(r"<\w{1,10}>|[A-Za-z_][A-Za-z0-9_]{0,63}|\d{1,20}")
_ENV_NAME = re.compile(r"^['\"]?[A-Z][A-Z0-9_]{2,63}['\"]?$")


def _clean(value: Any, limit: int = MAX_TEXT) -> str:
    """`value` as one bounded line: control/bidi characters replaced, truncated with a marker."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit * 4:
        text = text[: limit * 4]
    text = _CONTROL.sub(" ", text)
    if len(text) > limit:
        return text[:limit] + TRUNCATION_MARKER
    return text


def _iso(ms: Any) -> str | None:
    if not isinstance(ms, int | float) or isinstance(ms, bool) or not math.isfinite(ms):
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


# --- what an issue says about itself -------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
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


def _facts(issue: dict[str, Any]) -> _Facts:
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
    return _Facts(
        exception_type=str(etype)[:256],
        message=message,
        frames="\n".join(frame_text)[:MAX_SCAN_CHARS],
        in_app=frozenset(in_app),
        context=" ".join(ctx)[:MAX_SCAN_CHARS],
        sample_message=sample_message[:MAX_SCAN_CHARS],
    )


# --- patterns ------------------------------------------------------------------------------


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

_CONTEXT_FIXES = {
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


def _snippet(match: re.Match[str]) -> str:
    return _clean(match.group(0), MAX_SNIPPET)


def _match_rule(rule: PatternRule, facts: _Facts) -> dict[str, Any] | None:
    evidence: list[str] = []
    sources: list[str] = []
    strong = False
    if rule.type_re is not None and facts.exception_type:
        m = rule.type_re.search(facts.exception_type)
        if m:
            evidence.append(f"exception type {_clean(facts.exception_type, MAX_SNIPPET)!r}")
            sources.append("exception_type")
            strong = True
    if rule.text_re is not None:
        m = rule.text_re.search(facts.message)
        if m:
            evidence.append(f"message contains {_snippet(m)!r}")
            sources.append("message")
            strong = True
    frame_re = rule.frame_re or rule.text_re
    if frame_re is not None and facts.frames:
        m = frame_re.search(facts.frames)
        if m:
            evidence.append(f"stack frame mentions {_snippet(m)!r}")
            sources.append("frames")
    if rule.text_re is not None and facts.context:
        m = rule.text_re.search(facts.context)
        if m:
            evidence.append(f"event context mentions {_snippet(m)!r}")
            sources.append("context")
    if not sources:
        return None
    weight = rule.weight if strong else rule.weight * 0.6
    weight = min(1.0, weight + min(0.1, 0.05 * (len(sources) - 1)))
    return {"name": rule.name, "weight": round(weight, 3), "evidence": evidence, "sources": sources}


def _config_keyerror(facts: _Facts) -> dict[str, Any] | None:
    """KeyError on an ENV_LIKE name: a missing setting rather than a data bug."""
    if facts.exception_type != "KeyError" or not _ENV_NAME.match(facts.sample_message.strip()):
        return None
    name = _clean(facts.sample_message.strip(), MAX_SNIPPET)
    return {
        "name": "configuration",
        "weight": 0.75,
        "evidence": [f"KeyError on an environment-style name {name!r}"],
        "sources": ["exception_type", "message"],
    }


def _rate(issue: dict[str, Any]) -> tuple[int, int | None, float | None]:
    count = _int(issue.get("count")) or 0
    first, last = _int(issue.get("first_seen")), _int(issue.get("last_seen"))
    if first is None or last is None:
        return count, None, None
    duration = max(0, last - first)
    return count, duration, count / max(1.0, duration / 60_000)


def _context_patterns(issue: dict[str, Any], issues: list[dict[str, Any]]) -> list[dict]:
    found: list[dict[str, Any]] = []
    count, _, per_min = _rate(issue)
    if count >= HIGH_FREQUENCY_COUNT or (
        count >= 10 and per_min is not None and per_min >= HIGH_FREQUENCY_PER_MIN
    ):
        why = [f"{count} occurrences"]
        if per_min is not None:
            why.append(f"{per_min:.1f}/min between first_seen and last_seen")
        weight = 0.3 + min(0.2, 0.05 * math.log10(max(1, count)))
        found.append(
            {"name": "high-frequency", "weight": round(weight, 3), "evidence": why, "sources": []}
        )
    release = issue.get("first_release")
    if isinstance(release, str) and release:
        releases = [r for r in issue.get("releases") or [] if isinstance(r, str)]
        first = _int(issue.get("first_seen"))
        earlier = [
            other
            for other in issues
            if other.get("issue_id") != issue.get("issue_id")
            and first is not None
            and (_int(other.get("first_seen")) or first) < first
        ]
        # without any earlier issue there is no history to call the release new against
        seen_before = not earlier or any(
            release in (other.get("releases") or []) for other in earlier
        )
        why = []
        if releases == [release]:
            why.append(f"only seen in release {_clean(release, MAX_SNIPPET)!r}")
        if not seen_before:
            why.append(
                f"release {_clean(release, MAX_SNIPPET)!r} appears in no issue that started "
                "earlier (a new deploy)"
            )
        if why:
            weight = 0.45 if len(why) == 2 else 0.35
            found.append(
                {"name": "new-release", "weight": weight, "evidence": why, "sources": ["release"]}
            )
    if issue.get("status") == "regressed" or issue.get("type") == "regressed":
        why = ["status is regressed: it was resolved and happened again"]
        if issue.get("resolved_at") is not None:
            why.append(f"last resolved at {_iso(issue.get('resolved_at')) or '?'}")
        if issue.get("resolution_notes"):
            why.append(f"previous notes: {_clean(issue['resolution_notes'], MAX_TEXT)!r}")
        found.append({"name": "regression", "weight": 0.5, "evidence": why, "sources": ["status"]})
    return found


_CONTEXT_NAMES = frozenset(_CONTEXT_FIXES)


def detect_patterns(issue: dict[str, Any], issues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cause patterns (from type, message, frames, context) and context patterns, by weight."""
    facts = _facts(issue)
    found: dict[str, dict[str, Any]] = {}
    for rule in PATTERN_RULES:
        hit = _match_rule(rule, facts)
        if hit is not None:
            found[rule.name] = hit
    cfg = _config_keyerror(facts)
    if cfg is not None and (
        "configuration" not in found or found["configuration"]["weight"] < cfg["weight"]
    ):
        found["configuration"] = cfg
    if "deadlock-lock-timeout" in found and "timeout" in found:
        # "lock wait timeout" is the lock's problem, not a slow dependency's.
        found["timeout"]["weight"] = round(found["timeout"]["weight"] * 0.5, 3)
    patterns = list(found.values()) + _context_patterns(issue, issues)
    patterns.sort(key=lambda p: (-p["weight"], p["name"]))
    return patterns


# --- similar issues ------------------------------------------------------------------------


def _tokens(text: str) -> set[str]:
    return {t.lower() for t in _TOKEN.findall(text[:MAX_SCAN_CHARS])}


def similarity(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, list[str]]:
    """How alike two issues look (0..1) and why.

    0.35 for the same exception type, 0.45 x the message-template similarity (the larger of
    token Jaccard and difflib ratio on the first 300 characters), 0.20 x the Jaccard overlap
    of in-app frames (module:function).
    """
    reasons: list[str] = []
    score = 0.0
    ta, tb = str(a.get("exception_type") or ""), str(b.get("exception_type") or "")
    if ta and ta == tb:
        score += 0.35
        reasons.append("same exception type")
    ma, mb = str(a.get("message_template") or ""), str(b.get("message_template") or "")
    if ma and mb:
        ka, kb = _tokens(ma), _tokens(mb)
        jaccard = len(ka & kb) / len(ka | kb) if ka | kb else 0.0
        ratio = difflib.SequenceMatcher(None, ma[:300], mb[:300], autojunk=False).ratio()
        msg = max(jaccard, ratio)
        if msg > 0:
            score += 0.45 * msg
        if msg >= 0.5:
            reasons.append(f"similar message ({msg:.2f})")
    fa, fb = _facts(a).in_app, _facts(b).in_app
    if fa and fb:
        overlap = len(fa & fb) / len(fa | fb)
        if overlap > 0:
            score += 0.2 * overlap
            reasons.append(f"{len(fa & fb)} shared in-app frame(s)")
    return round(min(1.0, score), 3), reasons


def _has_notes(issue: dict[str, Any]) -> bool:
    return issue.get("status") == "resolved" and bool(issue.get("resolution_notes"))


def find_similar(
    issue: dict[str, Any], issues: Iterable[dict[str, Any]], limit: int = MAX_SIMILAR
) -> list[dict[str, Any]]:
    """Other issues that look alike, best first; resolved ones with notes win ties."""
    me = issue.get("issue_id")
    found: list[dict[str, Any]] = []
    for other in issues:
        if not isinstance(other, dict) or (me is not None and other.get("issue_id") == me):
            continue
        score, reasons = similarity(issue, other)
        if score < SIMILAR_MIN_SCORE:
            continue
        notes = other.get("resolution_notes")
        found.append(
            {
                "issue_id": _clean(other.get("issue_id") or "", 64),
                "title": _clean(other.get("title") or "", MAX_TEXT),
                "score": score,
                "reasons": reasons,
                "status": _clean(other.get("status") or "", 32),
                "count": _int(other.get("count")),
                "resolution_notes": _clean(notes, MAX_NOTES) if notes else None,
                "resolved_by": _clean(other.get("resolved_by"), 128)
                if other.get("resolved_by")
                else None,
                "resolved_at": _int(other.get("resolved_at")),
            }
        )
    found.sort(
        key=lambda s: (
            -s["score"],
            not (s["status"] == "resolved" and s["resolution_notes"]),
            s["issue_id"],
        )
    )
    return found[:limit]


# --- correlations --------------------------------------------------------------------------


def _services(issue: dict[str, Any]) -> set[str]:
    services = {s for s in issue.get("services") or [] if isinstance(s, str)}
    svc = _sample(issue).get("service")
    if isinstance(svc, str):
        services.add(svc)
    return services


def correlate_signals(
    issue: dict[str, Any], signals: Iterable[dict[str, Any]], window_ms: int = DEFAULT_WINDOW_MS
) -> list[dict[str, Any]]:
    """Firing signals of the issue's services (or about it) near first_seen, closest first."""
    first = _int(issue.get("first_seen"))
    if first is None:
        return []
    services, me = _services(issue), issue.get("issue_id")
    out: list[dict[str, Any]] = []
    for sig in signals:
        if not isinstance(sig, dict) or sig.get("state") != "firing":
            continue
        ts = _int(sig.get("ts"))
        if ts is None or abs(ts - first) > window_ms:
            continue
        about_issue = me is not None and sig.get("fingerprint") == me
        if sig.get("service") not in services and not about_issue:
            continue
        offset = ts - first
        out.append(
            {
                "id": _clean(sig.get("id") or "", MAX_TEXT),
                "rule": _clean(sig.get("rule") or "", 128),
                "kind": _clean(sig.get("kind") or "", 16),
                "severity": _clean(sig.get("severity") or "", 16),
                "service": _clean(sig.get("service") or "", 128),
                "endpoint": _clean(sig.get("endpoint"), 128) if sig.get("endpoint") else None,
                "metric": _clean(sig.get("metric"), 64) if sig.get("metric") else None,
                "value": sig.get("value") if isinstance(sig.get("value"), int | float) else None,
                "ts": ts,
                "offset_ms": offset,
                "relation": "before" if offset < 0 else "after" if offset > 0 else "at",
                "about_issue": about_issue,
                "summary": _clean(sig.get("summary") or "", MAX_TEXT),
            }
        )
    out.sort(key=lambda s: (abs(s["offset_ms"]), s["offset_ms"], s["id"]))
    return out[:MAX_CORRELATIONS]


@dataclass(slots=True)
class _Side:
    """One side (before or after first_seen) of `_rollup_shift`'s comparison."""

    count: int = 0
    errors: int = 0
    max_p99_ms: float | None = None


def _rollup_shift(
    issue: dict[str, Any], rollups: Iterable[dict[str, Any]], window_ms: int
) -> dict[str, Any] | None:
    """Service-wide error rate and worst p99 in the window before vs after first_seen."""
    first = _int(issue.get("first_seen"))
    if first is None:
        return None
    services = _services(issue)
    acc = {"before": _Side(), "after": _Side()}
    seen = False
    for r in rollups:
        if not isinstance(r, dict) or r.get("service") not in services:
            continue
        if r.get("endpoint") not in (None, "*"):
            continue
        start = _int(r.get("start"))
        if start is None or abs(start - first) > window_ms:
            continue
        side = acc["before"] if start < first else acc["after"]
        side.count += _int(r.get("count")) or 0
        side.errors += _int(r.get("errors")) or 0
        p99 = r.get("p99_ms")
        if isinstance(p99, int | float) and not isinstance(p99, bool) and math.isfinite(p99):
            side.max_p99_ms = p99 if side.max_p99_ms is None else max(side.max_p99_ms, p99)
        seen = True
    if not seen:
        return None
    return {
        name: {
            "count": side.count,
            "errors": side.errors,
            "error_rate_pct": round(100.0 * side.errors / side.count, 3) if side.count else None,
            "max_p99_ms": side.max_p99_ms,
        }
        for name, side in acc.items()
    }


# --- confidence ----------------------------------------------------------------------------


def _confidence(
    patterns: list[dict[str, Any]],
    count: int,
    similar: list[dict[str, Any]],
    correlated: bool,
) -> tuple[float, dict[str, float]]:
    causes = [p["weight"] for p in patterns if p["name"] not in _CONTEXT_NAMES]
    strongest = max(causes, default=0.0)
    agreement = min(0.15, 0.05 * max(0, len(patterns) - 1))
    volume = min(1.0, math.log10(count) / 3) if count > 0 else 0.0
    best_resolved = 0.0
    for s in similar:
        if s["status"] == "resolved":
            best_resolved = max(best_resolved, s["score"] * (1.0 if s["resolution_notes"] else 0.5))
    factors = {
        "strongest_pattern": round(0.5 * strongest, 3),
        "agreement": round(agreement, 3),
        "volume": round(0.1 * volume, 3),
        "similar_resolved": round(0.2 * best_resolved, 3),
        "correlated_signal": 0.05 if correlated else 0.0,
    }
    return round(max(0.0, min(1.0, sum(factors.values()))), 3), factors


# --- analysis ------------------------------------------------------------------------------


def analyze_issue(
    issue: dict[str, Any],
    issues: list[dict[str, Any]],
    signals: list[dict[str, Any]],
    rollups: list[dict[str, Any]] | None = None,
    *,
    window_ms: int = DEFAULT_WINDOW_MS,
) -> dict[str, Any]:
    """Patterns, similar issues, suggested fixes, correlations and confidence for `issue`."""
    issues = [i for i in issues or [] if isinstance(i, dict)]
    patterns = detect_patterns(issue, issues)
    similar = find_similar(issue, issues)
    correlated = correlate_signals(issue, signals or [], window_ms)
    count, duration, per_min = _rate(issue)

    suggestions: list[dict[str, Any]] = []
    hints = [
        f"{s['issue_id']} ({s['title']}) was resolved"
        + (f" by {s['resolved_by']}" if s["resolved_by"] else "")
        + f": {s['resolution_notes']}"
        for s in similar
        if s["status"] == "resolved" and s["resolution_notes"]
    ]
    if hints:
        suggestions.append({"pattern": "similar-resolved", "fixes": hints})
    fixes_by_name = {r.name: r.fixes for r in PATTERN_RULES} | _CONTEXT_FIXES
    for p in patterns:
        suggestions.append({"pattern": p["name"], "fixes": list(fixes_by_name[p["name"]])})
    if not patterns and not hints:
        suggestions.append(
            {
                "pattern": "unknown",
                "fixes": [
                    "No known pattern matched: start from the innermost in-app frame of the "
                    "sample and the release that first showed it.",
                ],
            }
        )

    same_service = any(not s["about_issue"] for s in correlated)
    confidence, factors = _confidence(patterns, count, similar, same_service)
    releases = [_clean(r, 128) for r in (issue.get("releases") or [])[:20] if isinstance(r, str)]
    first_release = issue.get("first_release")
    return {
        "issue_id": _clean(issue.get("issue_id") or "", 64),
        "title": _clean(issue.get("title") or "", MAX_TEXT),
        "exception_type": _clean(issue.get("exception_type") or "", 128),
        "status": _clean(issue.get("status") or "", 32),
        "severity": _clean(issue.get("severity") or "", 32),
        "count": count,
        "services": sorted(_clean(s, 128) for s in _services(issue))[:20],
        "patterns": patterns,
        "similar": similar,
        "suggestions": suggestions,
        "correlations": {
            "window_ms": window_ms,
            "signals": correlated,
            "rollups": _rollup_shift(issue, rollups, window_ms) if rollups else None,
        },
        "timeline": {
            "first_seen": _int(issue.get("first_seen")),
            "first_seen_iso": _iso(issue.get("first_seen")),
            "last_seen": _int(issue.get("last_seen")),
            "last_seen_iso": _iso(issue.get("last_seen")),
            "first_release": _clean(first_release, 128) if first_release else None,
            "releases": releases,
            "duration_ms": duration,
            "rate_per_min": round(per_min, 3) if per_min is not None else None,
        },
        "confidence": confidence,
        "confidence_factors": factors,
    }


# --- renderers -----------------------------------------------------------------------------


def _offset(ms: int) -> str:
    sign = "-" if ms < 0 else "+"
    s = abs(ms) // 1000
    return f"{sign}{s // 60}m{s % 60:02d}s"


def format_text(analysis: dict[str, Any]) -> str:
    """A plain-text report (every untrusted string truncated and control-free)."""
    a, t = analysis, analysis.get("timeline") or {}
    lines = [
        f"Root cause analysis: {_clean(a.get('title'), MAX_TEXT)}",
        f"  issue {_clean(a.get('issue_id'), 64)}  status={_clean(a.get('status'), 32)}  "
        f"severity={_clean(a.get('severity'), 32)}  count={a.get('count')}  "
        f"confidence={a.get('confidence', 0):.2f}",
        f"  started {t.get('first_seen_iso') or '-'} in release "
        f"{_clean(t.get('first_release') or '-', 128)}; last seen {t.get('last_seen_iso') or '-'}",
        "",
        "Patterns:",
    ]
    for p in a.get("patterns") or []:
        lines.append(f"  - {_clean(p['name'], 64)} ({p['weight']:.2f})")
        lines.extend(f"      {_clean(e, MAX_TEXT)}" for e in p.get("evidence") or [])
    if not a.get("patterns"):
        lines.append("  (none)")
    lines.append("Similar issues:")
    for s in a.get("similar") or []:
        lines.append(
            f"  - {_clean(s['issue_id'], 64)} [{_clean(s['status'], 32)}] {s['score']:.2f} "
            f"{_clean(s['title'], MAX_TEXT)}"
        )
        if s.get("resolution_notes"):
            lines.append(f"      notes: {_clean(s['resolution_notes'], MAX_NOTES)}")
    if not a.get("similar"):
        lines.append("  (none)")
    corr = a.get("correlations") or {}
    window_min = (corr.get("window_ms") or 0) // 60_000
    lines.append(f"Signals within ±{window_min} min of first occurrence:")
    for s in corr.get("signals") or []:
        lines.append(
            f"  - {_offset(s['offset_ms'])} {_clean(s['rule'], 128)} "
            f"[{_clean(s['severity'], 16)}] {_clean(s['service'], 128)}: "
            f"{_clean(s['summary'], MAX_TEXT)}"
        )
    if not corr.get("signals"):
        lines.append("  (none)")
    lines.append("Suggested fixes:")
    for block in a.get("suggestions") or []:
        lines.append(f"  {_clean(block['pattern'], 64)}:")
        lines.extend(f"    * {_clean(f, MAX_NOTES + MAX_TEXT)}" for f in block["fixes"])
    return "\n".join(lines) + "\n"


def _code(value: Any, limit: int = MAX_TEXT) -> str:
    """Untrusted text as a Markdown code span that cannot be broken out of."""
    text = _clean(value, limit).replace("`", "'")
    return f"`{text}`" if text else "-"


def format_markdown(analysis: dict[str, Any]) -> str:
    """A Markdown report; untrusted strings are in code spans, truncated, control-free."""
    a, t = analysis, analysis.get("timeline") or {}
    out = [
        f"## Root cause analysis: {_code(a.get('title'))}",
        "",
        f"- **Issue:** {_code(a.get('issue_id'), 64)} · **status** {_code(a.get('status'), 32)}"
        f" · **severity** {_code(a.get('severity'), 32)} · **count** {a.get('count')}",
        f"- **Confidence:** {a.get('confidence', 0):.2f}",
        f"- **Started:** {t.get('first_seen_iso') or '-'} in release "
        f"{_code(t.get('first_release') or '-', 128)} · last seen {t.get('last_seen_iso') or '-'}",
        "",
        "### Patterns",
        "",
    ]
    for p in a.get("patterns") or []:
        evidence = "; ".join(_clean(e, MAX_TEXT).replace("`", "'") for e in p.get("evidence") or [])
        out.append(f"- **{_clean(p['name'], 64)}** ({p['weight']:.2f}): {_code(evidence, 600)}")
    if not a.get("patterns"):
        out.append("- none detected")
    out += ["", "### Similar issues", ""]
    if a.get("similar"):
        out.append("| issue | status | score | title | resolution notes |")
        out.append("|---|---|---|---|---|")
        for s in a["similar"]:
            cells = [
                _code(s["issue_id"], 64),
                _code(s["status"], 32),
                f"{s['score']:.2f}",
                _code(s["title"]),
                _code(s.get("resolution_notes") or "", MAX_NOTES),
            ]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    else:
        out.append("- none")
    corr = a.get("correlations") or {}
    window_min = (corr.get("window_ms") or 0) // 60_000
    out += ["", f"### Signals near first occurrence (±{window_min} min)", ""]
    for s in corr.get("signals") or []:
        out.append(
            f"- {_offset(s['offset_ms'])} {_code(s['rule'], 128)} {_code(s['severity'], 16)} "
            f"{_code(s['service'], 128)}: {_code(s['summary'])}"
        )
    if not corr.get("signals"):
        out.append("- none")
    out += ["", "### Suggested fixes", ""]
    for block in a.get("suggestions") or []:
        out.append(f"- **{_clean(block['pattern'], 64)}**")
        out.extend(f"  - {_code(f, MAX_NOTES + MAX_TEXT)}" for f in block["fixes"])
    return "\n".join(out) + "\n"
