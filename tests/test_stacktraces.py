"""Stack traces as OpenTelemetry SDKs report them (`exception.stacktrace`), in each language's
own format, parse into frames outermost first with in_app from the language's defaults and
the user's rules. Fixtures: tests/fixtures/stacktraces/."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from grouping.stacktraces import InAppRules, parse_stacktrace

FIXTURES = Path(__file__).parent / "fixtures" / "stacktraces"


def _app(frames):
    """(function, file name, line) of the in-app frames, outermost first."""
    return [
        (f["function"], Path(f["filename"] or "").name, f["lineno"]) for f in frames if f["in_app"]
    ]


@pytest.mark.parametrize(
    ("fixture", "language", "expected"),
    [
        (
            "python.txt",
            "python",
            [("handle_pay", "handlers.py", 41), ("charge", "pay.py", 88)],
        ),
        (
            "java.txt",
            "java",
            [("post", "CheckoutController.java", 27), ("pay", "CheckoutService.java", 41),
             ("charge", "PayClient.java", 88)],
        ),
        (
            "kotlin.txt",
            "java",
            [("getCart", "CartRoutes.kt", 19), ("invokeSuspend", "CartService.kt", 57)],
        ),
        (
            "node.txt",
            "nodejs",
            [(None, "checkout.js", 23), ("CartService.checkout", "service.js", 52),
             ("computeTotal", "total.js", 14)],
        ),
        (
            "go.txt",
            "go",
            [("handlePay", "pay.go", 41), ("(*Client).Charge", "client.go", 88)],
        ),
        (
            "dotnet.txt",
            "dotnet",
            [("Post", "CheckoutController.cs", 27), ("PayAsync", "CheckoutService.cs", 41),
             ("ChargeAsync", "PayClient.cs", 88)],
        ),
        (
            "ruby.txt",
            "ruby",
            [("create", "checkout_controller.rb", 27), ("pay", "checkout_service.rb", 41),
             ("charge", "pay_client.rb", 88)],
        ),
        (
            "ruby34.txt",
            "ruby",
            [("block in create", "checkout_controller.rb", 27),
             ("pay", "checkout_service.rb", 41), ("charge", "pay_client.rb", 88)],
        ),
    ],
)  # fmt: skip
def test_each_languages_trace_parses_into_in_app_frames_outermost_first(
    fixture, language, expected
):
    text = (FIXTURES / fixture).read_text()
    with_hint = parse_stacktrace(text, language)
    recognised = parse_stacktrace(text)  # no telemetry.sdk.language: told from the text
    assert with_hint is not None and _app(with_hint) == expected
    assert recognised == with_hint


def test_library_frames_are_kept_but_not_in_app():
    frames = parse_stacktrace((FIXTURES / "java.txt").read_text())
    assert frames is not None
    assert frames[0]["module"] == "java.lang.Thread" and frames[0]["in_app"] is False
    assert frames[-1] == {
        "module": "com.example.checkout.PayClient",
        "function": "charge",
        "filename": "PayClient.java",
        "lineno": 88,
        "in_app": True,
    }
    go = parse_stacktrace((FIXTURES / "go.txt").read_text())
    assert go is not None
    assert [f["module"] for f in go if not f["in_app"]] == [
        "net/http", "net/http", "go.opentelemetry.io/otel/sdk/trace", "runtime/debug",
    ]  # fmt: skip


def test_a_chained_trace_keeps_the_frames_of_the_exception_it_is_about():
    python = parse_stacktrace((FIXTURES / "python_chained.txt").read_text())
    assert python is not None
    assert [f["function"] for f in python] == ["order_view", "load_order"]
    java = parse_stacktrace((FIXTURES / "java.txt").read_text())
    assert java is not None
    assert "timedRead" not in [f["function"] for f in java]  # the Caused by: section
    dotnet = (
        "System.AggregateException: failed ---> System.IO.IOException: disk\n"
        "   at Store.Disk.Write() in /src/Store/Disk.cs:line 9\n"
        "   --- End of inner exception stack trace ---\n"
        "   at Store.Api.Save() in /src/Store/Api.cs:line 20\n"
    )
    frames = parse_stacktrace(dotnet)
    assert frames is not None
    assert [f["function"] for f in frames] == ["Save"]


def test_in_app_rules_override_the_language_defaults():
    text = (FIXTURES / "python.txt").read_text()
    rules = InAppRules(include=("site-packages/requests/",), exclude=("/srv/app/checkout/pay",))
    frames = parse_stacktrace(text, "python", rules)
    assert frames is not None
    assert [f["in_app"] for f in frames] == [True, False, True, True]
    java = parse_stacktrace((FIXTURES / "java.txt").read_text(), rules=InAppRules(
        exclude=("com.example.checkout.CheckoutController",)
    ))  # fmt: skip
    assert java is not None
    assert [f["function"] for f in java if f["in_app"]] == ["pay", "charge"]


def test_a_real_python_traceback_parses():
    def fail():
        raise ValueError("bad order 42")

    try:
        fail()
    except ValueError as exc:
        text = "".join(traceback.format_exception(exc))
    frames = parse_stacktrace(text, "python")
    assert frames is not None
    assert [f["function"] for f in frames][-2:] == [
        "test_a_real_python_traceback_parses", "fail",
    ]  # fmt: skip
    assert frames[-1]["filename"] == __file__


@pytest.mark.parametrize(
    "text", ["", "no trace here", "ValueError: x", "\x00\xff" * 100, "at " * 10000, None, 42]
)
def test_text_no_parser_knows_gives_none(text):
    assert parse_stacktrace(text) is None
