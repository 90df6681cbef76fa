"""Grouping version 1's message parameterisation, frozen.

Kept only so that `grouping` can compute the version-1 fingerprint of an event
(the alias that keeps issues opened before an upgrade). Never change it: a change here
changes the old fingerprints that existing issues are known by.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

__all__ = ["MAX_MESSAGE_CHARS", "parameterise_message"]

MAX_MESSAGE_CHARS = 4096  # longer messages are templated from their first part


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
