"""Error fingerprinting: decide which issue an error event belongs to.

Pure and deterministic, called once per error event by ingest: an explicit
`fingerprint` wins; otherwise the exception type plus the in-app frames
(module + normalised function, never line numbers); with no usable frames the
exception type plus the parameterised message. Never raises on a validated event.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "Grouping",
    "explain",
    "fingerprint_error",
    "normalise_function",
    "parameterise_message",
]

MAX_MESSAGE_CHARS = 4096  # longer messages are templated from their first part
MAX_TITLE_CHARS = 200
MAX_FRAMES = 32  # innermost frames kept in the grouping key
_SEP = "\x1f"
_DEFAULT_MARKER = re.compile(r"^\{\{\s*default\s*\}\}$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Grouping:
    """The outcome of grouping one error event."""

    id: str  # 32 hex chars
    method: str  # "explicit" | "frames" | "message"
    exception_type: str
    frames: tuple[str, ...]  # "module.function" of the frames used
    template: str  # the parameterised message
    title: str  # "{type}: {template}", bounded


# --------------------------------------------------------------------------
# Message parameterisation. Passes run in order; each replaces one kind of
# variable value with a placeholder. Order matters: quoted values first (their
# content is data whatever it looks like), then the shapes that contain digits
# and punctuation (urls, e-mails, uuids, timestamps, ips, paths, hex, ids), and
# plain numbers last.
# --------------------------------------------------------------------------

_Q_MAX = 400  # longest quoted span considered
_QUOTED = re.compile(
    r"(?<![\w'])'([^'\n]{0,%d})'(?!\w)"  # 'single'
    r'|(?<![\w"\\])"([^"\n]{0,%d})"(?!\w)'  # "double"
    r"|`([^`'\n]{0,%d})`"  # `backtick`
    r"|`([^`'\n]{0,%d})'(?!\w)"  # `ruby'
    r"|\u2018([^\u2019\n]{0,%d})\u2019"  # ‘curly’
    r"|\u201c([^\u201d\n]{0,%d})\u201d"  # “curly”
    r"|(?<=\)=)\(([^()\n]{0,%d})\)" % ((_Q_MAX,) * 7)  # Postgres: Key (col)=(value)
)
_PROSE_WORDS = 5  # a quoted span with this many words is a nested message: keep, parameterise inside

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s'\"<>`]*[^\s'\"<>`.,;:!?)\]}]")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_UUID = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)
_MAC = re.compile(r"\b(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}\b")

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]{0,6}\.?"
_WDAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]{0,6}\.?,?"
_TZ = r"(?:\s?(?:Z|UTC|GMT|[ECMP][SD]T|CET|CEST|BST|IST|JST|AEST|[+-]\d{2}:?\d{2})\b)?"
_TIME = r"\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?:\s?[AaPp][Mm]\b)?" + _TZ
_TS = re.compile(
    "|".join(
        (
            # ISO 8601 / RFC 3339 / SQL: 2025-11-02T14:30:00.123Z, 2025-11-02 14:30:00+01:00
            r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?" + _TZ + r")?\b",
            # 2025/11/02, 02/11/2025, 11-02-2025, 02.11.2025 (+ time)
            r"\b(?:\d{4}[/.]\d{1,2}[/.]\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-]\d{4})(?:[T ]" + _TIME + ")?",
            # Sun, 02 Nov 2025 14:30:00 GMT / 2 Nov 2025 / Nov 2, 2025 / Sun Nov 02 ... 2025
            r"\b(?:" + _WDAY + r"\s+)?\d{1,2}\s+" + _MONTH + r"\s+\d{4}(?:\s+" + _TIME + ")?",
            r"\b(?:" + _WDAY + r"\s+)?" + _MONTH + r"\s+\d{1,2}(?:st|nd|rd|th)?,?(?:\s+"
            + _TIME
            + r")?(?:\s+\d{4}\b)?",
            # a bare clock time with seconds: 14:30:00.123
            r"\b" + _TIME,
        )
    )
)
_TS_RUN = re.compile(r"<ts>(?:[ ,T]*<ts>)+")

_IPV6_CANDIDATE = re.compile(
    r"(?<![\w:.])\[?(?:[0-9A-Fa-f]{1,4})?(?::(?:[0-9A-Fa-f]{1,4})?){2,7}"
    r"(?::(?:\d{1,3}\.){3}\d{1,3})?(?:%\w+)?\]?(?::\d{1,5})?(?![\w.]|:[\w:])"
)
_IPV4 = re.compile(
    r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?(?::\d{1,5})?(?![\w]|\.\d)"
)

_PATH_CHARS = r"[\w.@%+,~=$-]"
_PATH = re.compile(
    # unix absolute or ./ ../ ~/ relative: /var/lib/x.db, ~/x, ./x/y
    r"(?<![\w.:/~\\>-])(?:~|\.{1,2})?(?:/" + _PATH_CHARS + r"+)+/?"
    # windows drive and UNC paths: C:\Users\x\a.txt, \\server\share\x
    r"|\b[A-Za-z]:\\(?:[^\\\s'\"<>|:*?]+\\?)*"
    r"|\\\\[\w.$-]+(?:\\[^\\\s'\"<>|:*?]+)+"
    # relative paths with a file extension: src/app/main.py, lib\x\y.dll
    r"|(?<![\w./\\-])(?:" + _PATH_CHARS + r"+[/\\])+" + _PATH_CHARS + r"*\.[A-Za-z]\w{0,7}\b"
)

_HEX_0X = re.compile(r"\b0[xX][0-9a-fA-F]+\b")
# Tokens of letters, digits, '_' and '-' that contain a digit: hashes and ids live here.
_DIGIT_TOKEN = re.compile(r"(?<![\w-])[\w-]*\d[\w-]*")
_TOKEN_PART = re.compile(r"([_-])")
_HEX_PART = re.compile(r"^[0-9a-fA-F]{8,}$")
_CAMEL_SEGMENT = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")

# Keep HTTP status codes: "status code 404" and "status code 500" are different errors.
_HTTP_STATUS = re.compile(
    r"\b((?:status(?:[ _]?code)?|HTTP(?:/[\d.]+)?|response code)\s*[:=]?\s*)([1-5]\d\d)\b",
    re.IGNORECASE,
)
_KEEP = "\x01"

_UNITS = (
    r"ns|us|µs|μs|ms|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|wks?|weeks?"
    r"|b|bytes?|[kmgtp]i?b|k|px|x|%|st|nd|rd|th"
)
_SPACED_UNITS = (
    r"ns|us|µs|μs|ms|secs?|seconds?|mins?|minutes?|hrs?|hours?|days?|weeks?"
    r"|bytes?|[kmgtp]i?b"
)
_NUMBER = re.compile(
    r"(?<![\w.\x01])(?:"
    r"(?:\d+(?:\.\d+)?(?:ms|us|µs|ns|h|m|s)){2,}"  # Go durations: 1m30.5s, 2h0m0s
    r"|[-+]?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?"  # 42, -1, 1.5, 1,234,567, 6.02e23, 1.4.2
    r"(?:(?:" + _UNITS + r")|\s(?:" + _SPACED_UNITS + r"))?"
    r")(?![\w])",
    re.IGNORECASE,
)
# digits glued to the end of a word: user123, db01 (kept: ipv4, s3, E11000, sha256, int64, x86)
_TRAILING_DIGITS = re.compile(r"\b([A-Za-z]{2,})(\d{2,})\b")
_TECH_PREFIXES = frozenset(
    "sha md crc int uint float utf ucs base win x arm aarch iso http tls ssl ipv oauth es ecma"
    " py python java jdk node log ec ed rsa aes des hmac pbkdf bcrypt argon gzip lz zstd mp h"
    " vp av s3 tcp udp rfc iec ieee cp latin".split()
)
_LIST = re.compile(r"(<(\w+)>)(?:\s*[,;]\s*<\2>)+")
_WS = re.compile(r"\s+")


def _quoted(m: re.Match[str]) -> str:
    inner = next((g for g in m.groups() if g is not None), "")
    if inner.count(" ") + 1 >= _PROSE_WORDS:
        return m.group(0)  # a nested message: leave it for the later passes
    if m.group(0).startswith("("):
        return "(<str>)"
    return "<str>"


def _ipv6(m: re.Match[str]) -> str:
    text = m.group(0)
    core = text
    if core.startswith("["):
        core = core[1:].split("]", 1)[0]
    core = core.split("%", 1)[0]
    try:
        ipaddress.IPv6Address(core)
    except ValueError:
        if core.count(":") >= 3:  # unbracketed address followed by ":port"
            try:
                ipaddress.IPv6Address(core.rsplit(":", 1)[0])
            except ValueError:
                return text
        else:
            return text
    return "<ip>"


def _is_id_part(part: str) -> bool:
    """Does one '_'/'-'-separated part mixing letters and digits look generated?"""
    n = len(part)
    if n < 8:
        return False
    digits = sum(c.isdigit() for c in part)
    if n >= 16 or digits >= 4:
        return True
    segments = _CAMEL_SEGMENT.findall(part)
    # random tokens (a1b2c3d4, NffrFeUfNV2Hib) split into many short segments;
    # identifiers (Base64Encoder, Http2Server, SHA256Hasher) into a few words
    return len(segments) * 3 > n


def _digit_token(m: re.Match[str]) -> str:
    token = m.group(0)
    if token.isdigit():
        return token
    parts = _TOKEN_PART.split(token)
    out: list[str] = []
    for part in parts:
        if part in ("_", "-") or part.isdigit() or part.isalpha() or not part:
            out.append(part)
            continue
        if _HEX_PART.match(part):
            out.append("<hex>")
            break
        if _is_id_part(part):
            out.append("<id>")
            break
        out.append(part)
    else:
        return token
    # everything after the first generated part belongs to it (pod-7d4b9c8f6-x2x9k)
    return "".join(out)


def _trailing_digits(m: re.Match[str]) -> str:
    if m.group(1).lower() in _TECH_PREFIXES:
        return m.group(0)
    return m.group(1) + "<num>"


def _keep_status(m: re.Match[str]) -> str:
    return m.group(1) + _KEEP + m.group(2)


@lru_cache(maxsize=16384)
def parameterise_message(message: str) -> str:
    """Replace the variable parts of an exception message with placeholders."""
    if not message:
        return ""
    s = message[:MAX_MESSAGE_CHARS]
    s = _QUOTED.sub(_quoted, s)
    s = _URL.sub("<url>", s)
    s = _EMAIL.sub("<email>", s)
    s = _UUID.sub("<uuid>", s)
    s = _MAC.sub("<hex>", s)
    s = _TS.sub("<ts>", s)
    if "<ts>" in s:
        s = _TS_RUN.sub("<ts>", s)
    if ":" in s:
        s = _IPV6_CANDIDATE.sub(_ipv6, s)
    s = _IPV4.sub("<ip>", s)
    s = _PATH.sub("<path>", s)
    s = _HEX_0X.sub("<hex>", s)
    s = _DIGIT_TOKEN.sub(_digit_token, s)
    s = _HTTP_STATUS.sub(_keep_status, s)
    s = _NUMBER.sub("<num>", s)
    s = _TRAILING_DIGITS.sub(_trailing_digits, s)
    if _KEEP in s:
        s = s.replace(_KEEP, "")
    s = _LIST.sub(r"\1", s)
    return _WS.sub(" ", s).strip()


# --------------------------------------------------------------------------
# Frame normalisation: the parts of a frame that survive a redeploy.
# --------------------------------------------------------------------------

_ANONYMOUS = frozenset(
    {
        "<lambda>",
        "<anonymous>",
        "anonymous",
        "<anon>",
        "Anonymous function",
        "{anonymous}",
        "<unknown>",
        "?",
        "",
    }
)
_FUNCTION_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\s*\[as [^\]]*\]"), ""),  # JS: Foo.bar [as baz]
    (re.compile(r"\s*\(index \d+\)"), ""),  # JS: Promise.all (index 3)
    (re.compile(r"(?:/|\s+at\s+|@)?0x[0-9a-fA-F]+"), ""),  # addresses
    (re.compile(r"\$\$Lambda(?:\$\d+)?(?:/\w+)?"), "$$Lambda"),  # Java lambda classes
    (re.compile(r"\blambda\$(\w+?)\$\d+"), r"lambda$\1"),  # Java lambda methods
    (re.compile(r"(\$\$\w*?(?:CGLIB|ByteBuddy|Javassist|HibernateProxy)\$\$)\w+"), r"\1"),
    (re.compile(r"\$Proxy\d+"), "$Proxy"),
    (re.compile(r"(Generated\w*Accessor)\d+"), r"\1"),
    (re.compile(r"\$\d+"), "$"),  # anonymous inner classes Foo$1, access$000
    (re.compile(r"\bfunc\d+"), "func"),  # Go closures main.handler.func1
    (re.compile(r"::h[0-9a-f]{16}\b"), ""),  # Rust symbol hashes
    (re.compile(r"block \(\d+ levels?\) in"), "block in"),  # Ruby
    (re.compile(r"(_block_invoke)_\d+"), r"\1"),  # Objective-C blocks
    (re.compile(r"(DisplayClass|b__|c__|d__)\d+(?:_\d+)?"), r"\1"),  # C# compiler types
    (re.compile(r"(?<=[A-Za-z])_[0-9a-f]{6,}\b"), ""),  # generated suffixes _a1b2c3
    (re.compile(r"\s+"), " "),
)
_FILE_SCHEME = re.compile(r"^[A-Za-z][\w+.-]*://[^/]*")
_FILE_HASH = re.compile(r"[.-](?=[0-9a-fA-F]*\d)[0-9a-fA-F]{6,}(?=\.)")
_VOLATILE_DIR = re.compile(r"\d{4,}|^[0-9a-fA-F]{7,}$")


@lru_cache(maxsize=16384)
def normalise_function(name: str) -> str:
    """Strip generated noise (addresses, lambda numbers, proxy suffixes) from a frame name."""
    name = name.strip()
    if name in _ANONYMOUS or name.endswith(".<anonymous>"):
        return "<anon>"
    for pattern, repl in _FUNCTION_RULES:
        name = pattern.sub(repl, name)
    name = name.strip()
    return name[:200] if name else "<anon>"


@lru_cache(maxsize=16384)
def _normalise_filename(filename: str) -> str:
    """Keep the last two stable components of a path, without release dirs or bundle hashes."""
    f = _FILE_SCHEME.sub("", filename.replace("\\", "/"))
    f = f.split("?", 1)[0].split("#", 1)[0]
    parts = [p for p in f.split("/") if p and p != "." and not _VOLATILE_DIR.search(p)]
    if not parts:
        return "?"
    parts[-1] = _FILE_HASH.sub("", parts[-1])
    return "/".join(parts[-2:])


def _frame_key(frame: Any) -> str | None:
    if not isinstance(frame, dict):
        return None
    module = frame.get("module")
    function = frame.get("function")
    if isinstance(module, str) and module.strip() and module not in ("?", "<unknown>"):
        where = normalise_function(module)
    else:
        filename = frame.get("filename") or frame.get("abs_path")
        if isinstance(filename, str) and filename.strip():
            where = _normalise_filename(filename)
        elif not isinstance(function, str) or not function.strip():
            return None
        else:
            where = "?"
    fn = normalise_function(function) if isinstance(function, str) else "<anon>"
    return f"{where}.{fn}"


def fingerprint_frames(stacktrace: Any) -> tuple[str, ...]:
    """The grouping frames of a stacktrace: in-app ones if any, recursion collapsed."""
    if not isinstance(stacktrace, list) or not stacktrace:
        return ()
    frames = [f for f in stacktrace if isinstance(f, dict) and f.get("in_app") is True]
    if not frames:
        frames = stacktrace
    keys: list[str] = []
    for frame in frames:
        key = _frame_key(frame)
        if key is not None and (not keys or keys[-1] != key):
            keys.append(key)
    return tuple(keys[-MAX_FRAMES:])


# --------------------------------------------------------------------------
# Grouping.
# --------------------------------------------------------------------------


def _digest(parts: list[str]) -> str:
    return hashlib.blake2b(_SEP.join(parts).encode("utf-8", "replace"), digest_size=16).hexdigest()


def _title(exc_type: str, template: str) -> str:
    title = f"{exc_type}: {template}" if template else exc_type
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1] + "…"
    return title


def _explicit_parts(fingerprint: Any) -> list[str] | None:
    """The user's fingerprint entries, or None when there is no usable override."""
    if not isinstance(fingerprint, list | tuple) or not fingerprint:
        return None
    parts = [str(p) for p in fingerprint if p is not None and str(p).strip()]
    return parts or None


def _group(event: dict[str, Any]) -> Grouping:
    exc = event.get("exception")
    exc = exc if isinstance(exc, dict) else {}
    exc_type = str(exc.get("type") or "Error").strip()[:200] or "Error"
    message = exc.get("message")
    template = parameterise_message(message if isinstance(message, str) else "")
    frames = fingerprint_frames(event.get("stacktrace"))
    if frames:
        method, default = "frames", ["frames", exc_type, *frames]
    else:
        method, default = "message", ["message", exc_type, template]

    explicit = _explicit_parts(event.get("fingerprint"))
    if explicit is not None:
        is_default = [bool(_DEFAULT_MARKER.match(p.strip())) for p in explicit]
        if not all(is_default):
            parts = ["explicit"]
            for p, d in zip(explicit, is_default, strict=True):
                parts.extend(default if d else (p,))
            used = frames if any(is_default) else ()
            return Grouping(
                _digest(parts), "explicit", exc_type, used, template, _title(exc_type, template)
            )
    return Grouping(_digest(default), method, exc_type, frames, template, _title(exc_type, template))


def fingerprint_error(event: dict[str, Any]) -> Grouping:
    """Group one validated error event. Never raises."""
    try:
        return _group(event)
    except Exception:  # defensive: grouping must never stop ingest
        exc = event.get("exception") if isinstance(event, dict) else None
        exc_type = str(exc.get("type") if isinstance(exc, dict) else "Error")[:200]
        return Grouping(
            _digest(["fallback", exc_type]), "message", exc_type, (), "", _title(exc_type, "")
        )


def explain(event: dict[str, Any]) -> dict[str, Any]:
    """How an event is grouped, for `prodmon grouping explain`."""
    g = fingerprint_error(event)
    return {
        "fingerprint": g.id,
        "method": g.method,
        "exception_type": g.exception_type,
        "frames_used": list(g.frames),
        "message_template": g.template,
        "title": g.title,
    }
