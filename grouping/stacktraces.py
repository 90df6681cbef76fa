"""Stack-trace text into prodmon frames, for the languages OpenTelemetry SDKs report from.

OpenTelemetry carries an exception's stack as one string (`exception.stacktrace`), in the
format of the language that raised it. `parse_stacktrace` turns that text into the frames of
the input contract (design.md): dicts with `module`, `function`, `filename`, `lineno`,
`in_app`, **outermost first**. Parsers: Python, Java/Kotlin (any JVM trace), JavaScript/Node
(V8), Go (`runtime/debug.Stack` and panics), .NET (`Exception.ToString()`) and Ruby
(`full_message` / `backtrace`, 3.3 and 3.4 quoting).

Where a trace chains exceptions, the frames kept are those of the exception the trace is
about (the one `exception.type` names): Python's last traceback, Java's top section (before
`Caused by:`), .NET's section after the last `--- End of inner exception stack trace ---`.

`in_app` comes from each language's defaults (standard library and dependency paths are not
the application's) overridden by the user's `InAppRules`. Text no parser recognises gives
`None`: the event then groups by type and parameterised message.

Pure functions over strings; never raises on any input (bounded regexes, no I/O).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["LANGUAGES", "InAppRules", "parse_stacktrace"]

Frame = dict[str, Any]
MAX_TRACE_CHARS = 256 * 1024  # longer text is cut before parsing (bounded work per event)
MAX_PARSED_FRAMES = 1000


@dataclass(frozen=True)
class InAppRules:
    """The user's in-app path rules ([otlp] in_app_include / in_app_exclude).

    A rule matches a frame when the frame's filename contains it or its module starts with
    it. `include` wins over `exclude`; both win over the language's defaults."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def decide(self, frame: Frame, default: bool) -> bool:
        if not self.include and not self.exclude:
            return default
        filename = frame.get("filename") or ""
        module = frame.get("module") or ""
        for rule in self.include:
            if rule in filename or module.startswith(rule):
                return True
        for rule in self.exclude:
            if rule in filename or module.startswith(rule):
                return False
        return default


def _frame(module: str | None, function: str | None, filename: str | None, line: str | None):
    return {
        "module": module or None,
        "function": function or None,
        "filename": filename or None,
        "lineno": int(line) if line and line.isdigit() and len(line) < 10 else None,
    }


def _not_under(paths: tuple[str, ...], prefixes: tuple[str, ...] = ()) -> Callable[[Frame], bool]:
    def in_app(frame: Frame) -> bool:
        filename = frame["filename"] or ""
        module = frame["module"] or ""
        if any(p in filename for p in paths):
            return False
        return not (module and module.startswith(prefixes))

    return in_app


# ---- Python ---------------------------------------------------------------------------

_PY_FRAME = re.compile(r'^\s*File "([^"\n]{1,2000})", line (\d{1,9})(?:, in ([^\n]{1,500}))?$')
_PY_LIBRARY = ("site-packages/", "dist-packages/", "/lib/python", "<frozen ", "\\lib\\")


def _python(text: str) -> list[Frame]:
    start = text.rfind("Traceback (most recent call last):")
    body = text[start:] if start >= 0 else text
    frames = []
    for line in body.splitlines():
        m = _PY_FRAME.match(line)
        if m:
            frames.append(_frame(None, m.group(3), m.group(1), m.group(2)))
    return frames  # already outermost first


# ---- Java / Kotlin / any JVM -------------------------------------------------------------

_JAVA_FRAME = re.compile(
    r"^\s*at (?:[\w.$-]{1,200}(?:@[\w.-]{1,50})?/)?([\w.$]{1,500})\.([\w$<>-]{1,200})"
    r"\(([^()\s:]{1,300}:(\d{1,9})|Native Method|Unknown Source|[^()\s]{1,300})\)\s*$"
)
_JVM_LIBRARY = (
    "java.", "javax.", "jdk.", "sun.", "com.sun.", "kotlin.", "kotlinx.", "scala.",
    "org.springframework.", "org.apache.", "io.ktor.", "io.netty.", "org.eclipse.jetty.",
    "io.opentelemetry.", "reactor.", "io.micronaut.", "io.quarkus.", "org.hibernate.",
)  # fmt: skip


def _java(text: str) -> list[Frame]:
    frames = []
    for line in text.splitlines():
        if line.startswith("Caused by:") or line.lstrip().startswith("Suppressed:"):
            break
        m = _JAVA_FRAME.match(line)
        if m:
            source = m.group(3)
            filename = source.split(":", 1)[0] if m.group(4) else None
            frames.append(_frame(m.group(1), m.group(2), filename, m.group(4)))
    frames.reverse()
    return frames


# ---- JavaScript / Node (V8) -------------------------------------------------------------

_JS_FRAME = re.compile(
    r"^\s*at (?:async )?(?:([^\n]{1,500}?) \(([^\n]{1,2000})\)|([^\n]{1,2000}))$"
)
_JS_LOCATION = re.compile(r"^(.*?):(\d{1,9})(?::\d{1,9})?$")
_JS_LIBRARY = ("node_modules/", "node:", "internal/", "<anonymous>")


def _node(text: str) -> list[Frame]:
    frames = []
    for line in text.splitlines():
        m = _JS_FRAME.match(line)
        if not m:
            continue
        location = m.group(2) or m.group(3)
        where = _JS_LOCATION.match(location)
        if not where:  # `at async Promise.all (index 0)`: no source position
            continue
        filename = where.group(1).removeprefix("file://")
        frames.append(_frame(None, m.group(1), filename, where.group(2)))
    frames.reverse()
    return frames


# ---- Go ----------------------------------------------------------------------------------

_GO_FUNC = re.compile(r"^(?:created by )?(\S[^\n]{0,500}?)(?:\([^()\n]*\))?(?: in goroutine \d+)?$")
_GO_FILE = re.compile(r"^\t([^\n]{1,2000}?\.go|[^\n]{1,2000}?):(\d{1,9})(?: \+0x[0-9a-f]+)?$")
_GO_LIBRARY = ("/usr/local/go/src/", "/go/pkg/mod/", "/pkg/mod/", "/usr/lib/go")


def _go_split(function: str) -> tuple[str, str]:
    """`github.com/a/b/pkg.(*T).M` -> (`github.com/a/b/pkg`, `(*T).M`)."""
    slash = function.rfind("/")
    dot = function.find(".", slash + 1)
    if dot < 0:
        return "", function
    return function[:dot], function[dot + 1 :]


def _go(text: str) -> list[Frame]:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("goroutine ")), -1)
    frames = []
    pending: str | None = None
    for line in lines[start + 1 :]:
        if start >= 0 and not line.strip():
            break  # the first goroutine only (the one that failed)
        where = _GO_FILE.match(line)
        if where and pending is not None:
            module, function = _go_split(pending)
            frames.append(_frame(module, function, where.group(1), where.group(2)))
            pending = None
            continue
        m = _GO_FUNC.match(line)
        pending = m.group(1) if m and not line.startswith("\t") else None
    frames.reverse()
    return frames


def _go_in_app(frame: Frame) -> bool:
    if any(p in (frame["filename"] or "") for p in _GO_LIBRARY):
        return False
    module = frame["module"] or ""
    first = module.split("/", 1)[0]
    return "." in first and not module.startswith(("go.opentelemetry.io/", "golang.org/x/"))


# ---- .NET ----------------------------------------------------------------------------------

_DOTNET_FRAME = re.compile(
    r"^\s*at ([^\s(][^()\n]{0,500}?)\(([^()\n]{0,1000})\)"
    r"(?: in ([^\n]{1,2000}?):(?:line|Zeile|ligne|línea|riga|строка) (\d{1,9}))?\s*$"
)
_DOTNET_LIBRARY = ("System.", "Microsoft.", "Npgsql.", "Grpc.", "OpenTelemetry.", "Polly.")


def _dotnet(text: str) -> list[Frame]:
    marker = text.rfind("--- End of inner exception stack trace ---")
    body = text[marker:] if marker >= 0 else text
    frames = []
    for line in body.splitlines():
        m = _DOTNET_FRAME.match(line)
        if not m or _JAVA_FRAME.match(line):  # `at a.B(B.java:1)` is a JVM frame
            continue
        qualified = m.group(1)
        dot = qualified.rfind(".", 0, qualified.find("[") if "[" in qualified else None)
        module, function = (qualified[:dot], qualified[dot + 1 :]) if dot > 0 else ("", qualified)
        frames.append(_frame(module, function, m.group(3), m.group(4)))
    frames.reverse()
    return frames


# ---- Ruby ----------------------------------------------------------------------------------

_RUBY_FRAME = re.compile(r"^\s*(?:from )?([^\s:][^:\n]{0,2000}):(\d{1,9}):in [`']([^'`\n]{1,500})'")
_RUBY_OWNER = re.compile(
    r"^((?:block (?:\(\d+ levels\) )?in |rescue in |ensure in )?)([\w:]+)[#.](.+)$"
)
_RUBY_LIBRARY = ("/gems/", "/lib/ruby/", "/rubygems/", "<internal:")


def _ruby(text: str) -> list[Frame]:
    frames = []
    for line in text.splitlines():
        m = _RUBY_FRAME.match(line)
        if not m:
            continue
        function = m.group(3)
        owner = _RUBY_OWNER.match(function)
        module = None
        if owner:
            module, function = owner.group(2), owner.group(1) + owner.group(3)
        frames.append(_frame(module, function, m.group(1), m.group(2)))
    frames.reverse()
    return frames


# ---- dispatch --------------------------------------------------------------------------------

_PARSERS: dict[str, tuple[Callable[[str], list[Frame]], Callable[[Frame], bool]]] = {
    "python": (_python, _not_under(_PY_LIBRARY)),
    "java": (_java, _not_under((), _JVM_LIBRARY)),
    "go": (_go, _go_in_app),
    "dotnet": (_dotnet, _not_under((), _DOTNET_LIBRARY)),
    "ruby": (_ruby, _not_under(_RUBY_LIBRARY)),
    "nodejs": (_node, _not_under(_JS_LIBRARY)),
}
LANGUAGES = tuple(_PARSERS)
# `telemetry.sdk.language` values (OpenTelemetry semantic conventions) -> parser.
_SDK_LANGUAGE = {"webjs": "nodejs", "kotlin": "java", "scala": "java", "cpp": "", "php": ""}


def _guess(text: str) -> list[str]:
    """Parsers worth trying on `text`, most specific first (cheap substring checks)."""
    order = []
    if 'File "' in text:
        order.append("python")
    if "goroutine " in text or ".go:" in text:
        order.append("go")
    if ":in " in text:
        order.append("ruby")
    if "   at " in text or "\tat " in text or "\n at " in text:
        order += ["dotnet", "java", "nodejs"] if ":line " in text else ["java", "nodejs", "dotnet"]
    return order


def parse_stacktrace(
    text: Any, language: str | None = None, rules: InAppRules | None = None
) -> list[Frame] | None:
    """The frames of a stack trace (outermost first), or None when no parser knows it.

    `language` is the resource's `telemetry.sdk.language` when known: its parser is tried
    first; otherwise (or when it finds nothing) the format is recognised from the text."""
    if not isinstance(text, str) or not text:
        return None
    text = text[:MAX_TRACE_CHARS]
    lang = _SDK_LANGUAGE.get(language or "", language or "")
    candidates = _guess(text)
    if lang in _PARSERS:
        candidates = [lang] + [c for c in candidates if c != lang]
    best: list[Frame] = []
    best_lang = ""
    for name in candidates:
        frames = _PARSERS[name][0](text)
        if frames and (name == lang or len(frames) > len(best)):
            best, best_lang = frames, name
            if name == lang:
                break
    if not best:
        return None
    default_in_app = _PARSERS[best_lang][1]
    rules = rules or InAppRules()
    if len(best) > MAX_PARSED_FRAMES:
        best = best[: MAX_PARSED_FRAMES // 2] + best[-MAX_PARSED_FRAMES // 2 :]
    for frame in best:
        frame["in_app"] = rules.decide(frame, default_in_app(frame))
    return best
