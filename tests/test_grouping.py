"""Error grouping: which events become one issue, and how messages are parameterised."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grouping import Grouping, explain, fingerprint_error, parameterise_message


def error(
    etype: str = "TimeoutError",
    message: str | None = "upstream pay-api timed out after 3000 ms",
    frames: list[dict] | None = None,
    fingerprint: list[str] | None = None,
) -> dict:
    return {
        "schema": "error/1",
        "event_id": "e-1",
        "ts": 1795320000123,
        "service": "checkout",
        "severity": "high",
        "exception": {"type": etype, "message": message},
        "stacktrace": frames,
        "fingerprint": fingerprint,
    }


def frame(module: str, function: str, lineno: int = 1, in_app: bool | None = True, **kw) -> dict:
    return {
        "module": module,
        "function": function,
        "filename": kw.get("filename", module.replace(".", "/") + ".py"),
        "lineno": lineno,
        "in_app": in_app,
    }


APP_STACK = [
    frame("app.api", "handle", 10),
    frame("app.pay", "charge", 88),
    frame("requests.sessions", "send", 600, in_app=False),
]


# --- the Grouping value ------------------------------------------------------------------


def test_grouping_has_a_32_hex_id_and_a_bounded_title():
    g = fingerprint_error(error(frames=APP_STACK))
    assert isinstance(g, Grouping)
    assert re.fullmatch(r"[0-9a-f]{32}", g.id)
    assert g.method == "frames"
    assert g.exception_type == "TimeoutError"
    assert g.frames == ("app.api.handle", "app.pay.charge")
    assert g.template == "upstream pay-api timed out after <num>"
    assert g.title == "TimeoutError: upstream pay-api timed out after <num>"
    long = fingerprint_error(error(message="x " * 500))
    assert len(long.title) <= 200


def test_grouping_is_deterministic():
    assert fingerprint_error(error(frames=APP_STACK)) == fingerprint_error(error(frames=APP_STACK))


# --- frames ------------------------------------------------------------------------------


def test_shifted_line_numbers_keep_one_fingerprint():
    moved = [frame("app.api", "handle", 14), frame("app.pay", "charge", 93), APP_STACK[2]]
    assert (
        fingerprint_error(error(frames=APP_STACK)).id == fingerprint_error(error(frames=moved)).id
    )


def test_different_in_app_frames_make_two_issues():
    other = [frame("app.api", "handle"), frame("app.pay", "refund")]
    assert (
        fingerprint_error(error(frames=APP_STACK)).id != fingerprint_error(error(frames=other)).id
    )


def test_library_frames_do_not_split_when_in_app_frames_exist():
    other_lib = [*APP_STACK[:2], frame("urllib3.connectionpool", "urlopen", 700, in_app=False)]
    a = fingerprint_error(error(frames=APP_STACK))
    b = fingerprint_error(error(frames=other_lib))
    assert a.id == b.id


def test_all_frames_are_used_when_none_is_in_app():
    lib_a = [
        frame("requests.sessions", "send", in_app=None),
        frame("socket", "connect", in_app=None),
    ]
    lib_b = [frame("requests.sessions", "send", in_app=None), frame("ssl", "wrap", in_app=None)]
    a, b = fingerprint_error(error(frames=lib_a)), fingerprint_error(error(frames=lib_b))
    assert a.method == b.method == "frames"
    assert a.frames == ("requests.sessions.send", "socket.connect")
    assert a.id != b.id


def test_frames_win_over_the_message():
    a = fingerprint_error(error(message="connection refused", frames=APP_STACK))
    b = fingerprint_error(error(message="permission denied", frames=APP_STACK))
    assert a.id == b.id


def test_exception_type_is_part_of_the_frame_grouping():
    a = fingerprint_error(error(etype="TimeoutError", frames=APP_STACK))
    b = fingerprint_error(error(etype="ConnectionError", frames=APP_STACK))
    assert a.id != b.id


def test_filename_stands_in_for_a_missing_module():
    a = [{"filename": "/srv/releases/20251102/app/pay.js", "function": "charge", "in_app": True}]
    b = [{"filename": "/srv/releases/20251109/app/pay.js", "function": "charge", "in_app": True}]
    ga, gb = fingerprint_error(error(frames=a)), fingerprint_error(error(frames=b))
    assert ga.frames == ("app/pay.js.charge",)
    assert ga.id == gb.id


def test_numbered_file_names_are_kept():
    a = [{"filename": "app/migrations/0001_initial.py", "function": "up", "in_app": True}]
    b = [{"filename": "app/migrations/0002_users.py", "function": "up", "in_app": True}]
    assert fingerprint_error(error(frames=a)).id != fingerprint_error(error(frames=b)).id


def test_bundle_hashes_in_filenames_do_not_split():
    a = [{"filename": "https://cdn.x.com/static/main.3f2a9c1b.js?v=1", "function": "pay"}]
    b = [{"filename": "https://cdn.x.com/static/main.77d0e4aa.js?v=2", "function": "pay"}]
    assert fingerprint_error(error(frames=a)).id == fingerprint_error(error(frames=b)).id


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("<lambda>", "<anonymous>"),
        ("lambda$process$0", "lambda$process$3"),
        ("com.x.Svc$$Lambda$14/0x0000000800c02a00", "com.x.Svc$$Lambda$52/0x0000000800d13b10"),
        (
            "com.x.Svc$$EnhancerBySpringCGLIB$$a1b2c3d4",
            "com.x.Svc$$EnhancerBySpringCGLIB$$9f8e7d6c",
        ),
        ("jdk.proxy2.$Proxy45", "jdk.proxy2.$Proxy112"),
        ("Outer$1.run", "Outer$2.run"),
        ("main.handler.func1", "main.handler.func2"),
        ("GeneratedMethodAccessor123", "GeneratedMethodAccessor7"),
        ("<Main>b__0_0", "<Main>b__3_1"),
        ("block (2 levels) in perform", "block (3 levels) in perform"),
        ("callback at 0x7f3a2b1c", "callback at 0x7f00aa11"),
        ("my_crate::run::h3f2a9c1b4e5d6f70", "my_crate::run::h0011223344556677"),
    ],
)
def test_generated_function_name_noise_does_not_split(before, after):
    a = fingerprint_error(error(frames=[frame("app.jobs", before)]))
    b = fingerprint_error(error(frames=[frame("app.jobs", after)]))
    assert a.id == b.id, (a.frames, b.frames)


def test_real_function_names_stay_distinct():
    a = fingerprint_error(error(frames=[frame("app.jobs", "sync_users")]))
    b = fingerprint_error(error(frames=[frame("app.jobs", "sync_orders")]))
    assert a.id != b.id


def test_recursion_depth_does_not_split():
    shallow = [frame("app.tree", "walk")] * 3
    deep = [frame("app.tree", "walk")] * 40
    assert fingerprint_error(error(frames=shallow)).id == fingerprint_error(error(frames=deep)).id


# --- message fallback -------------------------------------------------------------------


def test_no_frames_groups_by_type_and_template():
    a = fingerprint_error(error(message="upstream pay-api timed out after 3000 ms"))
    b = fingerprint_error(error(message="upstream pay-api timed out after 1.5s"))
    assert a.method == "message"
    assert a.id == b.id
    assert a.id != fingerprint_error(error(etype="OSError", message=a.template)).id


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("connection refused", "permission denied"),
        ("Lock wait timeout exceeded", "Deadlock found when trying to get lock"),
        ("Request failed with status code 404", "Request failed with status code 500"),
        ("index out of range", "slice bounds out of range"),
        ("No module named <str>", "name <str> is not defined"),
        ("Broken pipe", "Connection reset by peer"),
    ],
)
def test_different_messages_stay_distinct(a, b):
    ga, gb = fingerprint_error(error(message=a)), fingerprint_error(error(message=b))
    assert ga.id != gb.id


def test_missing_or_empty_message_still_groups():
    g = fingerprint_error(error(etype="SystemExit", message=None))
    assert g.template == ""
    assert g.title == "SystemExit"
    assert g.id == fingerprint_error(error(etype="SystemExit", message="")).id


# --- parameterisation: same template for messages that differ only in their values --------

SAME_TEMPLATE = [
    # Postgres
    (
        'duplicate key value violates unique constraint "users_email_key"\n'
        "DETAIL:  Key (email)=(bob@example.com) already exists.",
        'duplicate key value violates unique constraint "users_email_key"\n'
        "DETAIL:  Key (email)=(carol.x@corp.example.org) already exists.",
    ),
    ('relation "users" does not exist', 'relation "public.orders_2025" does not exist'),
    (
        "could not connect to server: Connection refused\n\tIs the server running on host "
        '"db-1.internal" (10.1.2.3) and accepting\n\tTCP/IP connections on port 5432?',
        "could not connect to server: Connection refused\n\tIs the server running on host "
        '"db-2.internal" (10.1.2.4) and accepting\n\tTCP/IP connections on port 6432?',
    ),
    ('invalid input syntax for type integer: "abc"', 'invalid input syntax for type integer: ""'),
    # MySQL
    (
        "Duplicate entry 'bob@x.com' for key 'users.email'",
        "Duplicate entry '1234' for key 'orders.PRIMARY'",
    ),
    (
        "(1045, \"Access denied for user 'root'@'10.0.0.1' (using password: YES)\")",
        "(1045, \"Access denied for user 'app'@'172.16.3.9' (using password: YES)\")",
    ),
    ("Table 'app.users' doesn't exist", "Table 'shop.orders' doesn't exist"),
    # Python
    ("KeyError: 'user_id'", "KeyError: 'cart-7f3a'"),
    (
        "invalid literal for int() with base 10: 'abc'",
        "invalid literal for int() with base 10: '1x'",
    ),
    (
        "[Errno 2] No such file or directory: '/tmp/upload-3f2a.tmp'",
        "[Errno 2] No such file or directory: '/var/lib/app/cache/9c1e.json'",
    ),
    (
        "HTTPSConnectionPool(host='api.stripe.com', port=443): Max retries exceeded with url: "
        "/v1/charges (Caused by NewConnectionError('<urllib3.connection.HTTPSConnection object at "
        "0x7f8b8c0d0e80>: Failed to establish a new connection: [Errno 111] Connection refused'))",
        "HTTPSConnectionPool(host='pay.internal', port=8443): Max retries exceeded with url: "
        "/v2/refunds/99 (Caused by NewConnectionError('<urllib3.connection.HTTPSConnection "
        "object at 0x7f00aa11bb22>: Failed to establish a new connection: [Errno 111] "
        "Connection refused'))",
    ),
    ("Expecting value: line 1 column 1 (char 0)", "Expecting value: line 7 column 13 (char 402)"),
    # Java
    ("Index 5 out of bounds for length 3", "Index 12 out of bounds for length 12"),
    (
        'Cannot invoke "String.length()" because "<local1>" is null',
        'Cannot invoke "java.util.List.size()" because "this.items" is null',
    ),
    (
        "Connect to api.example.com:443 [api.example.com/93.184.216.34] failed: Connect timed out",
        "Connect to api.example.com:8443 [api.example.com/10.0.0.7] failed: Connect timed out",
    ),
    # Go
    (
        "dial tcp 10.0.0.5:6379: connect: connection refused",
        "dial tcp 10.0.3.17:6380: connect: connection refused",
    ),
    ("dial tcp [2001:db8::1]:443: i/o timeout", "dial tcp 192.168.1.20:443: i/o timeout"),
    (
        "open /etc/app/config.yaml: no such file or directory",
        "open /srv/x/y.json: no such file or directory",
    ),
    (
        "runtime error: index out of range [5] with length 3",
        "runtime error: index out of range [0] with length 0",
    ),
    ("context deadline exceeded after 1m30.5s", "context deadline exceeded after 250ms"),
    # Node
    ("connect ECONNREFUSED 127.0.0.1:5432", "connect ECONNREFUSED ::1:5432"),
    (
        "Cannot read properties of undefined (reading 'map')",
        "Cannot read properties of undefined (reading 'id')",
    ),
    ("Unexpected token < in JSON at position 0", "Unexpected token < in JSON at position 1024"),
    # Ruby
    ("undefined method `name' for nil:NilClass", "undefined method `email' for nil:NilClass"),
    # HTTP clients
    (
        "404 Client Error: Not Found for url: https://api.x.com/users/123?expand=1",
        "404 Client Error: Not Found for url: https://api.x.com/users/456",
    ),
    (
        "POST https://hooks.slack.com/services/T00/B00/XXX returned 500",
        "POST https://hooks.example.org/a returned 503",
    ),
    # timeouts, sizes, durations
    ("upstream pay-api timed out after 3000 ms", "upstream pay-api timed out after 2.5s"),
    ("Read timed out. (read timeout=30)", "Read timed out. (read timeout=7.5)"),
    ("payload of 12KB exceeds limit of 8KB", "payload of 1.5MB exceeds limit of 1024 bytes"),
    ("memory usage at 95.5%", "memory usage at 81%"),
    # ids, uuids, hashes, emails, timestamps
    (
        "order 6f1c2a9e-0a4b-4c1d-9f0e-1a2b3c4d5e6f not found",
        "order 0e4bd3f2-91aa-4f7e-8c55-77aa12bc9d01 not found",
    ),
    ("session k2j3h4g5m6 expired", "session z9y8x7w6v5u4 expired"),
    ("customer cus_NffrFeUfNV2Hib has no card", "customer cus_9QwErTy3UiOp1A has no card"),
    (
        "blob 3f2a9c1b4e5d6f708192a3b4c5d6e7f8a9b0c1d2 missing",
        "blob 00aa11bb22cc33dd44ee55ff66 missing",
    ),
    ("object at 0x7f3a2b1c0d00 is not callable", "object at 0x55d0c0ffee is not callable"),
    ("invite for bob@example.com bounced", "invite for alice.smith+test@mail.co.uk bounced"),
    ("token expired at 2025-11-02T14:30:00.123Z", "token expired at 2024-01-09 08:01:59+01:00"),
    (
        "cert expired on Sun, 02 Nov 2025 14:30:00 GMT",
        "cert expired on Mon, 10 Mar 2025 00:00:01 GMT",
    ),
    (
        "job started Sun Nov 02 14:30:00 UTC 2025 failed",
        "job started Tue Mar 04 09:15:22 UTC 2025 failed",
    ),
    ("user 12345 not allowed", "user 9 not allowed"),
    ("worker web-12 lost heartbeat", "worker web-7 lost heartbeat"),
    ("pod api-77c8f9hjk5-ab2cd OOMKilled", "pod api-6b9dxq4m2z-kxqhz OOMKilled"),
    ("batch ids (1, 2, 3) failed", "batch ids (17) failed"),
    (r"Could not find file 'C:\Users\bob\AppData\x.txt'", r"Could not find file 'D:\data\in.csv'"),
    (r"access denied: C:\Program\app.exe", r"access denied: \\fileserver\share\tools\run.bat"),
]


@pytest.mark.parametrize(("a", "b"), SAME_TEMPLATE)
def test_messages_differing_only_in_values_share_a_template(a, b):
    assert parameterise_message(a) == parameterise_message(b)
    ga, gb = fingerprint_error(error(message=a)), fingerprint_error(error(message=b))
    assert ga.id == gb.id


@pytest.mark.parametrize(
    ("message", "template"),
    [
        ("user 6f1c2a9e-0a4b-4c1d-9f0e-1a2b3c4d5e6f not found", "user <uuid> not found"),
        ("object at 0x7f3a2b1c0d00 freed", "object at <hex> freed"),
        ("commit 3f2a9c1b4e5d6f708192a3b4c5d6e7f8a9b0c1d2 missing", "commit <hex> missing"),
        (
            "dial tcp 10.0.0.5:6379: connect: connection refused",
            "dial tcp <ip>: connect: connection refused",
        ),
        ("dial tcp [2001:db8::1]:443: i/o timeout", "dial tcp <ip>: i/o timeout"),
        ("invite for bob@example.com bounced", "invite for <email> bounced"),
        ("GET https://api.x.com/v1/users?id=5 failed", "GET <url> failed"),
        ("open /etc/app/config.yaml: no such file", "open <path>: no such file"),
        (r"cannot open C:\data\in.csv now", "cannot open <path> now"),
        ("token expired at 2025-11-02T14:30:00.123Z", "token expired at <ts>"),
        ("KeyError: 'user_id'", "KeyError: <str>"),
        ('relation "users" does not exist', "relation <str> does not exist"),
        ("timed out after 3000ms", "timed out after <num>"),
        ("retry 3 of 5 in 1.5s", "retry <num> of <num> in <num>"),
        ("session a1b2c3d4e5f6g7 expired", "session <id> expired"),
        ("session a1b2c3d4e5 expired", "session <id> expired"),
        ("span b7ad6b7169203331 dropped", "span <hex> dropped"),
        ("no user_1234 or user42", "no user_<num> or user<num>"),
        ("Dog number 1, #1 dog", "Dog number <num>, #<num> dog"),
        ("process exited with exit code 137", "process exited with exit code 137"),
        ("Mon Jan 02 2006 14:04:05 GMT-0800 (PST) is too old", "<ts> (PST) is too old"),
        ("Request failed with status code 503", "Request failed with status code 503"),
        ("  many \n\t spaces  ", "many spaces"),
    ],
)
def test_placeholders(message, template):
    assert parameterise_message(message) == template


@pytest.mark.parametrize(
    "message",
    [
        "connection refused",
        "permission denied",
        "Lock wait timeout exceeded; try restarting transaction",
        "I/O error and/or timeout on read/write",
        "SSL: CERTIFICATE_VERIFY_FAILED certificate verify failed: unable to get local issuer",
        "Base64Encoder rejected Float64Array input",
        "can't start new thread",
        "std::bad_alloc in Foo::bar",
        "unsupported protocol http2 over ipv6 with utf8",
        "Encoding utf-8 and iso-8859-1 are not supported by utf8mb4_unicode_ci",
        "Fee::add() called too early",
        "x86_64-linux-gnu wheel not found",
    ],
)
def test_ordinary_words_are_not_parameterised(message):
    assert parameterise_message(message) == message


# --- explicit fingerprints --------------------------------------------------------------


def test_explicit_fingerprint_overrides_default_grouping():
    a = fingerprint_error(
        error(etype="TimeoutError", frames=APP_STACK, fingerprint=["pay-api-down"])
    )
    b = fingerprint_error(
        error(etype="ConnectionError", message="other", fingerprint=["pay-api-down"])
    )
    c = fingerprint_error(error(fingerprint=["db-down"]))
    assert a.method == "explicit"
    assert a.id == b.id != c.id
    assert a.id != fingerprint_error(error(frames=APP_STACK)).id


def test_default_placeholder_expands_to_the_default_grouping():
    base = error(frames=APP_STACK)
    alone = fingerprint_error({**base, "fingerprint": ["{{ default }}"]})
    assert alone.id == fingerprint_error(base).id
    eu = fingerprint_error({**base, "fingerprint": ["{{ default }}", "eu"]})
    us = fingerprint_error({**base, "fingerprint": ["{{default}}", "us"]})
    other = [frame("app.api", "handle"), frame("app.pay", "refund")]
    eu_other = fingerprint_error({**error(frames=other), "fingerprint": ["{{ default }}", "eu"]})
    assert eu.method == "explicit"
    assert eu.frames == ("app.api.handle", "app.pay.charge")
    assert len({eu.id, us.id, eu_other.id, alone.id}) == 4


def test_type_and_message_variables_in_explicit_fingerprints():
    a = error(etype="DbError", message="pool 1 exhausted", fingerprint=["db", "{{ type }}"])
    b = error(etype="DbError", message="other", fingerprint=["db", "{{ type }}"])
    c = error(etype="NetError", fingerprint=["db", "{{ type }}"])
    assert fingerprint_error(a).id == fingerprint_error(b).id != fingerprint_error(c).id
    m1 = error(message="pool 1 exhausted", fingerprint=["db", "{{ message }}"])
    m2 = error(message="pool 7 exhausted", fingerprint=["db", "{{ message }}"])
    assert fingerprint_error(m1).id == fingerprint_error(m2).id


def test_exit_codes_and_signals_stay_distinct():
    a = fingerprint_error(error(message="worker exited with exit code 137"))
    b = fingerprint_error(error(message="worker exited with exit code 1"))
    assert a.id != b.id


def test_explain_reports_the_parts():
    out = explain(error(frames=APP_STACK))
    assert out == {
        "fingerprint": fingerprint_error(error(frames=APP_STACK)).id,
        "method": "frames",
        "exception_type": "TimeoutError",
        "frames_used": ["app.api.handle", "app.pay.charge"],
        "message_template": "upstream pay-api timed out after <num>",
        "title": "TimeoutError: upstream pay-api timed out after <num>",
        "grouping_version": 2,
        # frame grouping is the same in every version: upgrading never moves these issues
        "fingerprints": {"v2": out["fingerprint"], "v1": out["fingerprint"]},
        "grouping_key": None,
        "variables": [{"class": "num", "text": "3000 ms"}],
    }


# --- robustness ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    message=st.text(max_size=300),
    frames=st.lists(
        st.fixed_dictionaries(
            {
                "module": st.one_of(st.none(), st.text(max_size=20)),
                "function": st.one_of(st.none(), st.text(max_size=20)),
                "filename": st.one_of(st.none(), st.text(max_size=30)),
                "lineno": st.one_of(st.none(), st.integers(0, 10_000)),
                "in_app": st.one_of(st.none(), st.booleans()),
            }
        ),
        max_size=5,
    ),
    fp=st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=3)),
)
def test_never_raises(message, frames, fp):
    g = fingerprint_error(error(message=message, frames=frames, fingerprint=fp))
    assert re.fullmatch(r"[0-9a-f]{32}", g.id)
    assert len(g.title) <= 200
