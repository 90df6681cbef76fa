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
from functools import lru_cache
from typing import Any, NamedTuple

__all__ = [
    "Grouping",
    "explain",
    "fingerprint_error",
    "fingerprint_frames",
    "normalise_function",
    "parameterise_message",
]

MAX_MESSAGE_CHARS = 4096  # longer messages are templated from their first part
MAX_TITLE_CHARS = 200
MAX_FRAMES = 32  # innermost frames kept in the grouping key
_SEP = "\x1f"
# Explicit fingerprint variables (as in Sentry): {{ default }}, {{ type }}, {{ message }}
_VARIABLE = re.compile(r"^\s*\{\{\s*([\w.]+)\s*\}\}\s*$")
_VARIABLES = {
    "default": "default",
    "type": "type",
    "error.type": "type",
    "message": "message",
    "error.value": "message",
}


class Grouping(NamedTuple):
    """The outcome of grouping one error event."""

    id: str  # 32 hex chars
    method: str  # "explicit" | "frames" | "message"
    exception_type: str
    frames: tuple[str, ...]  # "module.function" of the frames used
    message: str  # the exception message

    @property
    def template(self) -> str:
        """The parameterised message (computed on demand: frame grouping never needs it)."""
        return parameterise_message(self.message)

    @property
    def title(self) -> str:
        """ "{type}: {template}", bounded."""
        return _title(self.exception_type, self.template)


# --------------------------------------------------------------------------
# Message parameterisation. Passes run in order; each replaces one kind of
# variable value with a placeholder. Order matters: quoted values first (their
# content is data whatever it looks like), then the shapes that contain digits
# and punctuation (urls, e-mails, uuids, timestamps, ips, paths, hex, ids), and
# plain numbers last.
# --------------------------------------------------------------------------

_Q_MAX = 400  # longest quoted span considered
_QUOTED = re.compile(
    r"(?=['\"`\u2018\u201c(])(?:"  # fail fast where no quote can start
    + "|".join(
        (
            r"(?<![\w'])'([^'\n]{0,Q})'(?!\w)",  # 'single'
            r'(?<![\w"\\])"([^"\n]{0,Q})"(?!\w)',  # "double"
            r"`([^`'\n]{0,Q})`",  # `backtick`
            r"`([^`'\n]{0,Q})'(?!\w)",  # `ruby'
            r"\u2018([^\u2019\n]{0,Q})\u2019",  # ‘curly’
            r"\u201c([^\u201d\n]{0,Q})\u201d",  # “curly”
            r"(?<=\)=)\(([^()\n]{0,Q})\)",  # Postgres: Key (col)=(value)
        )
    ).replace("{0,Q}", "{0,%d}" % _Q_MAX)  # noqa: UP031
    + ")"
)
# A quoted span of this many words, or of 2+ words with a lowercase word and no digit
# ('Connection aborted.'), is a nested message: kept, and parameterised inside.
_PROSE_WORDS = 5

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s'\"<>`]*[^\s'\"<>`.,;:!?)\]}]")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_UUID = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)
_MAC = re.compile(r"\b(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}\b")

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b\.?"
)
_WDAY = r"(?:Mon|Tues?|Wed(?:nes)?|Thu(?:rs?)?|Fri|Sat(?:ur)?|Sun)(?:day)?\b\.?,?"
_TZ = (
    r"(?:\s?(?:Z\b|(?:UTC|GMT)(?:[+-]\d{2}:?\d{2})?\b|[+-]\d{2}:?\d{2}\b"
    r"|(?:[ECMP][SD]T|CEST|CET|BST|IST|JST|AEST)\b))?"
)
_TIME = (
    r"(?:\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?:\s?[AaPp][Mm]\b)?|\d{1,2}:\d{2}\s?[AaPp][Mm]\b)" + _TZ
)
_YEAR = r"\d{4}\b"
_TS = re.compile(
    r"(?=\d|[A-Z])(?:"  # fail fast: every form starts with a digit or a capitalised name
    + "|".join(
        (
            # ISO 8601 / RFC 3339 / SQL: 2025-11-02T14:30:00.123Z, 2025-11-02 14:30:00+01:00
            r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?" + _TZ + r")?\b",
            # 2025/11/02, 02/11/2025, 11-02-2025, 02.11.2025 (+ time)
            r"\b(?:\d{4}[/.]\d{1,2}[/.]\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-]\d{4})(?:[T ]"
            + _TIME
            + ")?",
            # Sun, 02 Nov 2025 14:30:00 GMT / 2 Nov 2025 / Mon, 02-Jan-06 15:04:05 MST
            rf"\b(?:{_WDAY}\s+)?\d{{1,2}}[-\s]{_MONTH}[-\s]\d{{2,4}}\b(?:\s+{_TIME})?",
            # Nov 2, 2025 / Sun Nov 02 14:30:00 UTC 2025 / Mon Jan 02 2006 14:04:05 GMT-0800
            rf"\b(?:{_WDAY}\s+)?{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?\b,?"
            rf"(?:\s+{_YEAR})?(?:\s+{_TIME})?(?:\s+{_YEAR})?",
            # a bare clock time: 14:30:00.123, 11:21 PM
            r"\b" + _TIME,
        )
    )
    + ")"
)
_TS_RUN = re.compile(r"<ts>(?:[ ,T]*<ts>)+")

_IPV6_CANDIDATE = re.compile(
    r"(?<![\w:.])\[?(?:[0-9A-Fa-f]{1,4})?(?::(?:[0-9A-Fa-f]{1,4})?){2,7}"
    r"(?::(?:\d{1,3}\.){3}\d{1,3})?(?:%\w+)?\]?(?::\d{1,5})?(?![\w.]|:[\w:])"
)
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?(?::\d{1,5})?(?![\w]|\.\d)")

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
# Only tokens of 7+ chars can hold one (shorter numbers are left to the number pass).
_DIGIT_TOKEN = re.compile(r"(?<![\w-])(?=[\w-]{7})[\w-]*\d[\w-]*")
_TOKEN_PART = re.compile(r"([_-])")
_HEX_PART = re.compile(r"^[0-9a-fA-F]+$")
_WORD_NUMBER = re.compile(r"^[A-Za-z]+\d+$")
_CAMEL_SEGMENT = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")

# Numbers that name things rather than count them are kept: status codes ("status code 404"
# and "status code 500" are different errors; so are exit code 1 and 137, signal 9 and 15) and
# standard names (utf-8, iso-8859-1, RFC 3339).
_NAMED_NUMBER = re.compile(
    r"\b(?:status(?:[ _]?code)?|HTTP(?:/[\d.]+)?|response code)\s*[:=]?\s*[1-5]\d\d\b"
    r"|\b(?:exit(?:[ _]?code| status)|errno|signal|sqlstate)\s*[:=\[]?\s*-?\d+\b"
    r"|\b(?:utf|ucs|iso|latin|cp|windows|sha|rfc|ipv|base|ecma)-\d+(?:-\d+)*\b"
    r"|\b(?:rfc|iso)\s?\d{3,5}\b",
    re.IGNORECASE,
)
_DIGITS = re.compile(r"(\d+)")
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
# digits glued to the end of a word: user123, db01, user_1234 (kept: ipv4, s3, E11000, sha256)
_TRAILING_DIGITS = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2,}_?)(\d{2,})\b")
_TECH_PREFIXES = frozenset(
    {
        "sha", "md", "crc", "int", "uint", "float", "utf", "ucs", "base", "win", "x", "arm",
        "aarch", "iso", "http", "tls", "ssl", "ipv", "oauth", "es", "ecma", "py", "python",
        "java", "jdk", "node", "log", "ec", "ed", "rsa", "aes", "des", "hmac", "pbkdf", "bcrypt",
        "argon", "gzip", "lz", "zstd", "mp", "h", "vp", "av", "tcp", "udp", "rfc", "iec", "ieee",
        "cp", "latin", "amd", "ppc", "mips", "riscv", "ansi", "ascii", "bit", "crypt", "pem",
    }
)  # fmt: skip
_LIST = re.compile(r"(<(\w+)>)(?:\s*[,;]\s*<\2>)+")
_WS = re.compile(r"\s+")
_DIGIT = re.compile(r"\d")
_QUOTE_CHARS = ("'", '"', "`", "\u2018", "\u201c", ")=(")


def _is_prose(inner: str) -> bool:
    words = inner.split()
    if len(words) >= _PROSE_WORDS:
        return True
    if len(words) < 2 or _DIGIT.search(inner) is not None:
        return False
    for word in words:
        word = word.strip(".,;:!?")
        if len(word) >= 2 and word.isalpha() and word[0].islower():
            return True
    return False


def _quoted(m: re.Match[str]) -> str:
    text = m.group(0)
    if text[0] == "(":
        return "(<str>)"  # Postgres: Key (col)=(value)
    inner = next((g for g in m.groups() if g is not None), "")
    if _is_prose(inner):
        # a nested message: keep its words, parameterise the quoted values inside it
        return text[0] + _QUOTED.sub(_quoted, text[1:-1]) + text[-1]
    return "<str>"


def _ipv6(m: re.Match[str]) -> str:
    text = m.group(0)
    core = text
    if core.startswith("["):
        core = core[1:].split("]", 1)[0]
    core = core.split("%", 1)[0]
    if _DIGIT.search(core) is None:
        return text  # Fee::add, Cafe::Bad: scope operators, not addresses
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
    if n < 7 or _WORD_NUMBER.match(part):
        return False  # short, or word + number (user123, ISO8601): left to the number passes
    if n >= 16:
        return True
    digits = sum(c.isdigit() for c in part)
    if digits >= 4 and digits * 3 >= n:
        return True  # digit-dense: ORD2023ABC, cafe1234
    # random tokens (a1b2c3d4, k9Mtd2gDcgG) split into many short segments;
    # identifiers (Base64Encoder, Http2Server, SHA256Hasher, utf8mb4) into a few words
    segments = _CAMEL_SEGMENT.findall(part)
    if len(segments) * 3 <= n:
        return False
    return n >= 10 or sum(s.isdigit() for s in segments) >= 3


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
        if len(part) >= 16 and _HEX_PART.match(part):
            out.append("<hex>")  # hashes: md5, sha1, trace ids
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
    if m.group(1).rstrip("_").lower() in _TECH_PREFIXES:
        return m.group(0)
    return m.group(1) + "<num>"


def _keep_named_number(m: re.Match[str]) -> str:
    return _DIGITS.sub(_KEEP + r"\1", m.group(0))  # the number pass skips digits after _KEEP


@lru_cache(maxsize=16384)
def parameterise_message(message: str) -> str:
    """Replace the variable parts of an exception message with placeholders."""
    if not message:
        return ""
    s = message[:MAX_MESSAGE_CHARS]
    # Each pass runs only when its cheap precondition holds: most messages skip most passes.
    if any(q in s for q in _QUOTE_CHARS):
        s = _QUOTED.sub(_quoted, s)
    if "://" in s:
        s = _URL.sub("<url>", s)
    if "@" in s:
        s = _EMAIL.sub("<email>", s)
    if _DIGIT.search(s) is not None:
        if "-" in s:
            s = _UUID.sub("<uuid>", s)
        if ":" in s:
            s = _MAC.sub("<hex>", s)
        s = _TS.sub("<ts>", s)
        if "<ts>" in s:
            s = _TS_RUN.sub("<ts>", s)
        if ":" in s:
            s = _IPV6_CANDIDATE.sub(_ipv6, s)
        if "." in s:
            s = _IPV4.sub("<ip>", s)
    if "/" in s or "\\" in s:
        s = _PATH.sub("<path>", s)
    if _DIGIT.search(s) is not None:
        if "0x" in s or "0X" in s:
            s = _HEX_0X.sub("<hex>", s)
        s = _DIGIT_TOKEN.sub(_digit_token, s)
        s = _NAMED_NUMBER.sub(_keep_named_number, s)
        s = _NUMBER.sub("<num>", s)
        s = _TRAILING_DIGITS.sub(_trailing_digits, s)
        if _KEEP in s:
            s = s.replace(_KEEP, "")
    if ">," in s or ">;" in s:
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
    *dirs, name = f.split("/")
    name = _FILE_HASH.sub("", name)
    dirs = [d for d in dirs if d and d not in (".", "..") and not _VOLATILE_DIR.search(d)]
    return "/".join([*dirs[-1:], name]) if name else "/".join(dirs[-2:]) or "?"


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


@lru_cache(maxsize=16384)
def _digest(parts: tuple[str, ...]) -> str:
    return hashlib.blake2b(_SEP.join(parts).encode("utf-8", "replace"), digest_size=16).hexdigest()


def _title(exc_type: str, template: str) -> str:
    title = f"{exc_type}: {template}" if template else exc_type
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1] + "…"
    return title


def _marker(part: str) -> str | None:
    """Which variable an explicit fingerprint entry names, if any."""
    m = _VARIABLE.match(part)
    return _VARIABLES.get(m.group(1).lower()) if m else None


def _explicit_parts(fingerprint: Any) -> list[str] | None:
    """The user's fingerprint entries, or None when there is no usable override."""
    if not isinstance(fingerprint, list | tuple) or not fingerprint:
        return None
    parts = [str(p) for p in fingerprint if p is not None and str(p).strip()]
    return parts or None


def _group(event: dict[str, Any]) -> Grouping:
    exc = event.get("exception")
    exc = exc if isinstance(exc, dict) else {}
    message = exc.get("message")
    message = message if isinstance(message, str) else ""
    frames = fingerprint_frames(event.get("stacktrace"))
    return _grouping(str(exc.get("type") or "Error"), message, frames, event.get("fingerprint"))


def _grouping(exc_type: str, message: str, frames: tuple[str, ...], fingerprint: Any) -> Grouping:
    exc_type = exc_type.strip()[:200] or "Error"
    if frames:
        method, default = "frames", ("frames", exc_type, *frames)
    else:
        method, default = "message", ("message", exc_type, parameterise_message(message))

    explicit = _explicit_parts(fingerprint)
    if explicit is not None:
        markers = [_marker(p) for p in explicit]
        if any(m != "default" for m in markers):
            parts = ["explicit"]
            for p, m in zip(explicit, markers, strict=True):
                if m == "default":
                    parts.extend(default)
                elif m == "type":
                    parts.append(exc_type)
                elif m == "message":
                    parts.append(parameterise_message(message))
                else:
                    parts.append(p)
            used = frames if "default" in markers else ()
            return Grouping(_digest(tuple(parts)), "explicit", exc_type, used, message)
    return Grouping(_digest(default), method, exc_type, frames, message)


PlainFrame = tuple[Any, Any, Any, Any]  # (module, function, filename, in_app) of a valid frame


def fingerprint_plain(
    exc_type: str, message: str, frames: tuple[PlainFrame, ...] | None, fingerprint: Any
) -> Grouping:
    """`fingerprint_error` of a validated event given by its parts (ingest's fast path).

    A fleet's stack traces repeat, so the grouping keys of each distinct stack are
    computed once and cached. Never raises.
    """
    try:
        return _grouping(exc_type, message, _frame_keys(frames) if frames else (), fingerprint)
    except Exception:  # defensive, as fingerprint_error
        return _fallback(exc_type)


@lru_cache(maxsize=8192)
def _frame_keys(frames: tuple[PlainFrame, ...]) -> tuple[str, ...]:
    return fingerprint_frames(
        [{"module": m, "function": f, "filename": n, "in_app": a} for m, f, n, a in frames]
    )


def _fallback(exc_type: Any) -> Grouping:
    """The group of an event that grouping failed on (by its exception type alone)."""
    exc_type = str(exc_type)[:200]
    return Grouping(_digest(("fallback", exc_type)), "message", exc_type, (), "")


def fingerprint_error(event: dict[str, Any]) -> Grouping:
    """Group one validated error event. Never raises."""
    try:
        return _group(event)
    except Exception:  # defensive: grouping must never stop ingest
        exc = event.get("exception") if isinstance(event, dict) else None
        return _fallback(exc.get("type") if isinstance(exc, dict) else "Error")


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
