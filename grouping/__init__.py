"""Error fingerprinting: decide which issue an error event belongs to.

Pure, stateless and deterministic, called once per error event by ingest: the same
event gets the same fingerprint in any process, partition, order or restart. An
explicit `fingerprint` wins; otherwise the exception type plus the in-app frames
(module + normalised function, never line numbers); with no usable frames the
exception type plus the parameterised message (its values replaced by their token
class, docs/grouping.md). Never raises on a validated event.

Grouping has a version (`GROUPING_VERSION`). Events are grouped with the current one;
`previous_fingerprint` gives an event's fingerprint under the version before it, which
the fingerprint stage uses to keep issues opened before an upgrade (stages/fingerprint.py).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Any, NamedTuple

__all__ = [
    "GROUPING_VERSION",
    "Grouping",
    "TokenPattern",
    "compile_token_patterns",
    "explain",
    "fingerprint_error",
    "fingerprint_frames",
    "fingerprint_plain",
    "message_variables",
    "normalise_function",
    "parameterise_message",
    "previous_fingerprint",
    "set_token_patterns",
]

GROUPING_VERSION = 2
PREVIOUS_VERSION = 1
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
    version: int = GROUPING_VERSION

    @property
    def template(self) -> str:
        """The parameterised message (computed on demand: frame grouping never needs it)."""
        if self.version == PREVIOUS_VERSION:
            return parameterise_message_v1(self.message)
        return parameterise_message(self.message)

    @property
    def title(self) -> str:
        """ "{type}: {template}", bounded."""
        return _title(self.exception_type, self.template)


from grouping.v1 import (  # noqa: E402
    _DIGIT,
    _DIGIT_TOKEN,
    _EMAIL,
    _HEX_0X,
    _IPV6_CANDIDATE,
    _KEEP,
    _LIST,
    _MAC,
    _PATH_CHARS,
    _QUOTE_CHARS,
    _QUOTED,
    _SPACED_UNITS,
    _TECH_PREFIXES,
    _TRAILING_DIGITS,
    _TS,
    _TS_RUN,
    _UNITS,
    _URL,
    _UUID,
    _WS,
    _digit_token,
    _ipv6,
    _keep_named_number,
    _trailing_digits,
)
from grouping.v1 import parameterise_message as parameterise_message_v1  # noqa: E402

# --------------------------------------------------------------------------
# Message parameterisation (grouping version 2). A message is constant words
# and variable values; each pass below finds one class of value by its shape
# alone (never by knowledge of a product or log format) and puts `<class>` in
# its place, so the template says why two messages group. Order matters: the
# user's own patterns first, then quoted values (their content is data whatever
# it looks like, unless it is a nested sentence), then the shapes that contain
# punctuation (urls, e-mails, uuids, timestamps, ips, host names, paths, hex),
# then key=value values, numbers, and whatever else holds a digit.
#
# The grouping key is the template with every placeholder as `<*>` (which class
# filled a slot never splits), after the structure passes: a value spelt with
# punctuation between values is one value (<*>:<*>), a sign belongs to its
# number, a list of like values is one value, and an empty or one-value
# parenthesis after a value is that value's other spelling ("18846 bytes
# (18.4 KB)", an address and its host name).
# --------------------------------------------------------------------------

_ANY = "<*>"
_CLASSES = (
    "str", "url", "email", "uuid", "mac", "ts", "ip", "host", "path", "hex", "id", "num",
    "value", "name",
)  # fmt: skip
# Host names: dotted names ending in a generic top-level domain, or with 3+ labels ending
# in a two-letter country code (so file.py or notes.md are not hosts), or any name with a
# port (db-1:5432, localhost:8080).
_GTLD = (
    "com|net|org|edu|gov|mil|int|info|biz|io|ai|app|dev|cloud|local|localdomain|internal"
    "|lan|arpa|corp|home|online|site|tech|xyz"
)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(
    r"(?<![\w.@/\\-])(?:"
    rf"(?:{_LABEL}\.)+(?:{_GTLD})\b"
    rf"|(?:{_LABEL}\.){{2,}}[A-Za-z]{{2}}\b"
    rf"|(?:localhost|{_LABEL}(?:\.{_LABEL})*)(?=:\d)"
    r")(?::\d{1,5})?(?![\w-]|\.\w|:\d)",
    re.IGNORECASE,
)
# key=value whose value holds digits or punctuation (rhost=a.b, tty=:0, id=a-1); a plain
# word (state=RUNNING, user=root) may be what tells two errors apart, and is kept.
_KEY_VALUE = re.compile(
    r"(?<![\w.-])([A-Za-z_][\w.\[\]-]{0,40}=)(?:"
    r"(?=[^\s,;&)\]}<]*[^\sA-Za-z,;&)\]}<])([^\s,;&)\]}{<\"']+(?:\{[^{}\s]*\})?)"
    r"|(null|none|nil|undefined|NaN)\b"
    r"|(\"[^\"\n]{0,200}\"|'[^'\n]{0,200}')"
    r")"
)
_IPV4_V2 = re.compile(r"(?<![\w.-])(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?(?::\d{1,5})?(?![\w-]|\.\w)")
# Numbers that name things rather than count them are kept when the message says so in
# words: "status code 404", "exit code 137", "signal 9", utf-8, RFC 3339. A field
# (status: 200, status=200) is a value like any other.
_NAMED_NUMBER_V2 = re.compile(
    r"\b(?:status(?:[ _]?code)?|HTTP(?:/[\d.]+)?|response code)\s+[1-5]\d\d\b"
    r"|\b(?:exit(?:[ _]?code| status)|errno|signal|sqlstate)\s*[:=\[]?\s*-?\d+\b"
    r"|\b(?:utf|ucs|iso|latin|cp|windows|sha|rfc|ipv|base|ecma)-\d+(?:-\d+)*\b"
    r"|\b(?:rfc|iso)\s?\d{3,5}\b"
    r"|\b(?:x86[_-]64|i[3-6]86)\b",  # architectures
    re.IGNORECASE,
)
_PATH_V2 = re.compile(
    # unix absolute or ./ ../ ~/ relative: /var/lib/x.db, ~/x, ./x/y, /home/x//y
    r"(?<![\w.:/~\\>-])(?:~|\.{1,2})?(?:/+" + _PATH_CHARS + r"+)+/?"
    # windows drive and UNC paths: C:\Users\x\a.txt, \\server\share\x
    r"|\b[A-Za-z]:\\(?:[^\\\s'\"<>|:*?]+\\?)*"
    r"|\\\\[\w.$-]+(?:\\[^\\\s'\"<>|:*?]+)+"
    # relative paths with a file extension: src/app/main.py, lib\x\y.dll
    r"|(?<![\w./\\-])(?:" + _PATH_CHARS + r"+[/\\]+)+" + _PATH_CHARS + r"*\.[A-Za-z]\w{0,7}\b"
)
_PATH_QUERY = re.compile(r"<path>\?[^\s\"'`<>]*")  # /servers/detail?changes-since=...
# "for user alice", "to database orders", "Invalid user admin": after a preposition or
# "invalid/unknown", a noun that names an account, host or store is followed by its name.
_NAMED_AS = re.compile(
    r"(?i:\b(?:(?:for|of|by|to|from|as|on|in)\s+(?:(?:invalid|unknown|illegal|new)\s+)?"
    r"|(?:invalid|unknown|illegal)\s+)"
    r"(?:user|username|account|login|host|hostname|group|role|tenant|database|table|queue"
    r"|topic|bucket)\s+)"
    r"(?!(?i:is|was|has|had|not|does|did|and|or|the|a|an|with|from|to|for|of|in|on|at|by"
    r"|as|name|id|account|unknown|none|null)\b)"
    r"([A-Za-z_$][\w.$-]{0,63})(?![\w.$<-])"
)
_HEX_LETTERS = re.compile(r"\b(?:[a-f]{8,}|[A-F]{8,})\b")  # ffffffff, DEADBEEF
_PURE_NUMBER = re.compile(r"^[-+]?\d+(?:[.,]\d+)*$")
# Numbers: signed, decimal, with thousands separators, versions, sizes and durations with
# their units, and comparison prefixes (<1 sec, ~5ms).
_NUMBER_V2 = re.compile(
    r"(?<![\w.<\x01])(?:[<>~]=?|[-+])?(?:"
    r"(?:\d+(?:\.\d+)?(?:ms|us|µs|ns|h|m|s)){2,}"
    r"|\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?"
    r"(?:(?:" + _UNITS + r")|\s(?:" + _SPACED_UNITS + r"|B)\b)?"
    r")(?![\w])",
    re.IGNORECASE,
)
# Whatever still holds a digit: a run of letters and digits, unless it is a word with a
# version-like number (sha256, utf8, ipv6, http2, Base64Encoder) or a key (PSR0=...).
_DIGIT_RUN = re.compile(r"(?<![A-Za-z0-9<\x01])[A-Za-z0-9]*\d[A-Za-z0-9]*(?![A-Za-z0-9>=\x01])")
_TECH_WORD = re.compile(r"^([A-Za-z]+)\d{1,3}$")
_CAMEL_WORDS = re.compile(r"^(?:[A-Z]?[a-z]{2,}|[A-Z]{2,})\d+(?:[A-Z]?[a-z]{2,}\d*)+$")

_JOINED = re.compile(r"<\*>(?:[-+.:_/#@,]*<\*>)+")
_SIGNED = re.compile(r"(?<![A-Za-z0-9])[-+#~]<\*>")
_RUN = re.compile(r"(?<!\S)(\S*<\*>\S*?)(?:[\s,;|]+\1)+(?![^\s,;.:)\]])")
# A word that holds a value is a value as a whole (blk_<*>, web-<*>, core.<*>, <*>_perf,
# R<*>-M<*>:J<*>): the generated part decides, and its glue varies with it.
_IN_TOKEN = re.compile(r"(?<![\w.#@+/\\-])[\w.#@+/\\-]*<\*>(?:[\w.#@+/\\-]|<\*>)*(?<![.-])")
_ALT_SPELLING = re.compile(r"<\*> ?\((?:<\*>)?\)")


class TokenPattern(NamedTuple):
    """A user's own variable class ([fingerprint] token_patterns): matches become `<name>`."""

    name: str
    pattern: re.Pattern[str]


_user_patterns: tuple[TokenPattern, ...] = ()
_placeholder = re.compile(r"<(?:" + "|".join(_CLASSES) + r")>")


def compile_token_patterns(patterns: dict[str, str]) -> tuple[TokenPattern, ...]:
    """The user's {class name: regex}, compiled; ValueError names the bad one."""
    compiled = []
    for name, regex in patterns.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", name):
            raise ValueError(f"{name!r}: a class name is a word of letters, digits and '_'")
        if name in _CLASSES:
            raise ValueError(f"{name}: is a built-in class ({', '.join(_CLASSES)})")
        if not isinstance(regex, str) or not regex:
            raise ValueError(f"{name}: expected a regular expression (a non-empty string)")
        try:
            rx = re.compile(regex)
        except re.error as exc:
            raise ValueError(f"{name}: not a valid regular expression ({exc})") from None
        if rx.match(""):
            raise ValueError(f"{name}: the pattern matches the empty string")
        compiled.append(TokenPattern(name, rx))
    return tuple(compiled)


def set_token_patterns(patterns: dict[str, str] | tuple[TokenPattern, ...]) -> None:
    """Install the user's token patterns for this process (from the [fingerprint] config).

    Grouping is a pure function of the event and this configuration; every process of a
    deployment must use the same patterns (they are part of the grouping, like its version).
    """
    global _user_patterns, _placeholder
    compiled = compile_token_patterns(patterns) if isinstance(patterns, dict) else patterns
    _user_patterns = tuple(compiled)
    names = (*_CLASSES, *(p.name for p in _user_patterns))
    _placeholder = re.compile(r"<(?:" + "|".join(names) + r")>")
    _template_v2.cache_clear()
    _key_v2.cache_clear()


def _replace(
    pattern: re.Pattern[str], cls: str, s: str, found: list[tuple[str, str]] | None
) -> str:
    if found is None:
        return pattern.sub(f"<{cls}>", s)

    def record(m: re.Match[str]) -> str:
        found.append((cls, m.group(0)))
        return f"<{cls}>"

    return pattern.sub(record, s)


def _quoted_v2(m: re.Match[str], found: list[tuple[str, str]] | None) -> str:
    text = m.group(0)
    if text[0] == "(":
        inner = m.group(m.lastindex or 0)
        if found is not None:
            found.append(("str", inner))
        return "(<str>)"  # Postgres: Key (col)=(value)
    inner = next((g for g in m.groups() if g is not None), "")
    if inner.strip() and any(c.isspace() for c in inner.strip()):
        # words: a nested message or a request line; its values are found inside it
        return text[0] + _QUOTED.sub(lambda n: _quoted_v2(n, found), text[1:-1]) + text[-1]
    if found is not None:
        found.append(("str", text))
    return "<str>"


def _ipv6_v2(m: re.Match[str], found: list[tuple[str, str]] | None) -> str:
    out = _ipv6(m)
    if found is not None and out != m.group(0):
        found.append(("ip", m.group(0)))
    return out


def _digit_token_v2(m: re.Match[str], found: list[tuple[str, str]] | None) -> str:
    out = _digit_token(m)
    if found is not None and out != m.group(0):
        found.append(("hex" if "<hex>" in out else "id", m.group(0)))
    return out


def _key_value_v2(m: re.Match[str], found: list[tuple[str, str]] | None) -> str:
    value = m.group(m.lastindex or 2)
    if _PURE_NUMBER.match(value):
        return m.group(0)  # left to the number pass
    if found is not None:
        found.append(("value", value))
    return m.group(1) + "<value>"


def _named_as(m: re.Match[str], found: list[tuple[str, str]] | None) -> str:
    if found is not None:
        found.append(("name", m.group(1)))
    return m.group(0)[: m.start(1) - m.start(0)] + "<name>"


def _trailing_digits_v2(m: re.Match[str], found: list[tuple[str, str]] | None) -> str:
    out = _trailing_digits(m)
    if found is not None and out != m.group(0):
        found.append(("num", m.group(2)))
    return out


def _digit_run_v2(m: re.Match[str], found: list[tuple[str, str]] | None) -> str:
    token = m.group(0)
    word = _TECH_WORD.match(token)
    if word is not None:
        letters = word.group(1)
        if letters.lower() in _TECH_PREFIXES:
            return token  # sha256, utf8, ipv6, http2
        if len(token) == len(letters) + 1 and len(letters) >= 2 and letters.islower():
            return token  # a lowercase name and one digit: ssh2, eth0, tty1
    if _CAMEL_WORDS.match(token):
        return token  # Base64Encoder, Float64Array, utf8mb4
    cls = "num" if token.isdigit() else "id"
    if found is not None:
        found.append((cls, token))
    return f"<{cls}>"


def _parameterise(message: str, found: list[tuple[str, str]] | None) -> str:
    """The version-2 template of `message`; each variable found is appended to `found`."""
    s = message[:MAX_MESSAGE_CHARS]
    for user in _user_patterns:
        s = _replace(user.pattern, user.name, s, found)
    # Each pass runs only when its cheap precondition holds: most messages skip most passes.
    if any(q in s for q in _QUOTE_CHARS):
        s = _QUOTED.sub(lambda m: _quoted_v2(m, found), s)
    if "://" in s:
        s = _replace(_URL, "url", s, found)
    if "@" in s:
        s = _replace(_EMAIL, "email", s, found)
    if ":" in s:
        s = _replace(_MAC, "mac", s, found)
    if _DIGIT.search(s) is not None:
        if "-" in s:
            s = _replace(_UUID, "uuid", s, found)
        if ":" in s:
            s = _IPV6_CANDIDATE.sub(lambda m: _ipv6_v2(m, found), s)
        if "." in s:
            s = _replace(_IPV4_V2, "ip", s, found)
    if "/" in s or "\\" in s:
        s = _replace(_PATH_V2, "path", s, found)
        if "<path>?" in s:
            s = _PATH_QUERY.sub("<path>", s)
    if _DIGIT.search(s) is not None:
        s = _replace(_TS, "ts", s, found)
        if "<ts>" in s:
            s = _TS_RUN.sub("<ts>", s)
    if "." in s or ":" in s:
        s = _replace(_HOST, "host", s, found)
    if "=" in s:
        s = _KEY_VALUE.sub(lambda m: _key_value_v2(m, found), s)
    s = _replace(_HEX_LETTERS, "hex", s, found)
    s = _NAMED_AS.sub(lambda m: _named_as(m, found), s)
    if _DIGIT.search(s) is not None:
        if "0x" in s or "0X" in s:
            s = _replace(_HEX_0X, "hex", s, found)
        s = _DIGIT_TOKEN.sub(lambda m: _digit_token_v2(m, found), s)
        s = _NAMED_NUMBER_V2.sub(_keep_named_number, s)
        s = _replace(_NUMBER_V2, "num", s, found)
        s = _TRAILING_DIGITS.sub(lambda m: _trailing_digits_v2(m, found), s)
        s = _DIGIT_RUN.sub(lambda m: _digit_run_v2(m, found), s)
        if _KEEP in s:
            s = s.replace(_KEEP, "")
    if ">," in s or ">;" in s:
        s = _LIST.sub(r"\1", s)
    return _WS.sub(" ", s).strip()


@lru_cache(maxsize=16384)
def _template_v2(message: str) -> str:
    return _parameterise(message, None) if message else ""


@lru_cache(maxsize=16384)
def _key_v2(message: str) -> str:
    """The grouping key: the template with its placeholders as <*>, structure normalised."""
    s = _placeholder.sub(_ANY, _template_v2(message))
    if _ANY not in s:
        return s
    s = _JOINED.sub(_ANY, s)
    s = _SIGNED.sub(_ANY, s)
    s = _JOINED.sub(_ANY, s)
    s = _IN_TOKEN.sub(_ANY, s)
    s = _JOINED.sub(_ANY, s)
    s = _ALT_SPELLING.sub(_ANY, s)
    s = _RUN.sub(r"\1", s)
    return s


def parameterise_message(message: str) -> str:
    """Replace the variable parts of an exception message with `<class>` placeholders."""
    return _template_v2(message)


def message_variables(message: str) -> list[tuple[str, str]]:
    """The values `parameterise_message` treated as variable, as (class, text), in order."""
    found: list[tuple[str, str]] = []
    if message:
        _parameterise(message, found)
    return sorted(found, key=lambda v: message.find(v[1]))  # in message order


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


def _message_key(message: str, version: int) -> str:
    """The part of the message that grouping uses, under one grouping version."""
    if version == PREVIOUS_VERSION:
        return parameterise_message_v1(message)
    return _key_v2(message)


def _group(event: dict[str, Any], version: int) -> Grouping:
    exc = event.get("exception")
    exc = exc if isinstance(exc, dict) else {}
    message = exc.get("message")
    message = message if isinstance(message, str) else ""
    frames = fingerprint_frames(event.get("stacktrace"))
    exc_type = str(exc.get("type") or "Error")
    return _grouping(exc_type, message, frames, event.get("fingerprint"), version)


def _grouping(
    exc_type: str,
    message: str,
    frames: tuple[str, ...],
    fingerprint: Any,
    version: int = GROUPING_VERSION,
) -> Grouping:
    exc_type = exc_type.strip()[:200] or "Error"
    # Frame grouping is the same in every version (its ids never change on an upgrade).
    if frames:
        method, default = "frames", ("frames", exc_type, *frames)
    else:
        method, default = "message", ("message", exc_type, _message_key(message, version))

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
                    parts.append(_message_key(message, version))
                else:
                    parts.append(p)
            used = frames if "default" in markers else ()
            return Grouping(_digest(tuple(parts)), "explicit", exc_type, used, message, version)
    return Grouping(_digest(default), method, exc_type, frames, message, version)


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


def fingerprint_error(event: dict[str, Any], version: int = GROUPING_VERSION) -> Grouping:
    """Group one validated error event (with grouping `version`, 1 or 2). Never raises."""
    if version not in (PREVIOUS_VERSION, GROUPING_VERSION):
        raise ValueError(f"grouping version {version!r}: known versions are 1 and 2")
    try:
        return _group(event, version)
    except Exception:  # defensive: grouping must never stop ingest
        exc = event.get("exception") if isinstance(event, dict) else None
        return _fallback(exc.get("type") if isinstance(exc, dict) else "Error")


def previous_fingerprint(event: dict[str, Any]) -> str:
    """The event's fingerprint under the previous grouping version (the issue it opened
    before an upgrade). Equal to the current one for frame grouping."""
    return fingerprint_error(event, PREVIOUS_VERSION).id


def explain(event: dict[str, Any]) -> dict[str, Any]:
    """How an event is grouped, for `prodmon grouping explain`: the fingerprint under the
    current and the previous grouping version, and the values treated as variable, each
    with the token class that matched it."""
    g = fingerprint_error(event)
    previous = fingerprint_error(event, PREVIOUS_VERSION)
    uses_message = g.method == "message" or (g.method == "explicit" and not g.frames)
    return {
        "fingerprint": g.id,
        "grouping_version": GROUPING_VERSION,
        "fingerprints": {f"v{GROUPING_VERSION}": g.id, f"v{PREVIOUS_VERSION}": previous.id},
        "method": g.method,
        "exception_type": g.exception_type,
        "frames_used": list(g.frames),
        "message_template": g.template,
        "grouping_key": _key_v2(g.message) if uses_message else None,
        "variables": [{"class": cls, "text": text} for cls, text in message_variables(g.message)],
        "title": g.title,
    }
