"""Root-cause analysis: patterns, similar issues, correlations, confidence, renderers (pure)."""

from __future__ import annotations

import json

from ops.rootcause import analyze_issue, format_markdown, format_text, similarity

T0 = 1_762_000_000_000  # first_seen of the issue under analysis
MIN = 60_000


def _issue(
    issue_id: str,
    etype: str,
    template: str,
    *,
    message: str | None = None,
    status: str = "active",
    count: int = 5,
    first_seen: int = T0,
    last_seen: int | None = None,
    service: str = "checkout",
    releases: tuple[str, ...] = ("1.4.0",),
    frames: list[dict] | None = None,
    context: dict | None = None,
    notes: str | None = None,
) -> dict:
    return {
        "type": "regressed" if status == "regressed" else "count",
        "update_id": f"{issue_id}:count:{count}",
        "issue_id": issue_id,
        "title": f"{etype}: {template}",
        "exception_type": etype,
        "message_template": template,
        "status": status,
        "count": count,
        "first_seen": first_seen,
        "last_seen": last_seen if last_seen is not None else first_seen + 30 * MIN,
        "ts": last_seen or first_seen,
        "updated_at": first_seen,
        "services": [service],
        "releases": list(releases),
        "first_release": releases[0] if releases else None,
        "severity": "high",
        "sample": {
            "schema": "error/1",
            "service": service,
            "release": releases[0] if releases else None,
            "exception": {"type": etype, "message": message or template},
            "stacktrace": frames or [],
            "context": context,
        },
        "resolved_at": first_seen - 60 * MIN if status in ("resolved", "regressed") else None,
        "resolution_notes": notes,
        "resolved_by": "alice" if notes else None,
    }


def _frame(module: str, function: str, in_app: bool = True) -> dict:
    return {
        "module": module,
        "function": function,
        "filename": module.replace(".", "/") + ".py",
        "lineno": 10,
        "in_app": in_app,
    }


def _signal(
    service: str, offset_ms: int, rule: str = "p99_high", state: str = "firing", **extra
) -> dict:
    ts = T0 + offset_ms
    return {
        "id": f"{rule}|{service}|*|{state}|{ts}",
        "kind": "threshold",
        "state": state,
        "rule": rule,
        "severity": "high",
        "key": f"{service}|*",
        "service": service,
        "endpoint": "*",
        "metric": "p99_ms",
        "value": 2300.0,
        "ts": ts,
        "summary": f"{rule} on {service}",
        **extra,
    }


def _names(analysis: dict) -> list[str]:
    return [p["name"] for p in analysis["patterns"]]


DB_FRAMES = [
    _frame("app.orders", "create_order"),
    _frame("app.db", "session"),
    _frame("sqlalchemy.pool.base", "_do_get", in_app=False),
]


# --- patterns ------------------------------------------------------------------------------


def test_timeout_pattern_from_type_and_message():
    issue = _issue(
        "t1",
        "ReadTimeout",
        "HTTPSConnectionPool(host=<str>, port=<num>): Read timed out. (read timeout=<num>)",
        frames=[_frame("app.payments", "charge"), _frame("requests.adapters", "send", False)],
    )
    a = analyze_issue(issue, [], [])
    timeout = next(p for p in a["patterns"] if p["name"] == "timeout")
    assert {"exception_type", "message"} <= set(timeout["sources"])
    assert timeout["weight"] >= 0.7
    assert any("timed out" in e.lower() for e in timeout["evidence"])
    assert any(s["pattern"] == "timeout" for s in a["suggestions"])


def test_db_connection_refused_matches_connection_and_database():
    issue = _issue(
        "db1",
        "OperationalError",
        "(psycopg2.OperationalError) connection to server at <str> (<ip>), port <num> failed: "
        "Connection refused",
        frames=DB_FRAMES,
    )
    names = _names(analyze_issue(issue, [], []))
    assert "connection-refused-reset" in names
    assert "database" in names
    db = next(p for p in analyze_issue(issue, [], [])["patterns"] if p["name"] == "database")
    assert "frames" in db["sources"]  # sqlalchemy in the stack


def test_pool_exhausted_is_database():
    issue = _issue(
        "db2",
        "TimeoutError",
        "QueuePool limit of size <num> overflow <num> reached, connection timed out",
    )
    names = _names(analyze_issue(issue, [], []))
    assert names[0] in ("database", "timeout")
    assert {"database", "timeout"} <= set(names)


def test_null_reference_and_key_errors():
    none_issue = _issue(
        "n1", "AttributeError", "<str> object has no attribute <str>",
        message="'NoneType' object has no attribute 'email'",
    )  # fmt: skip
    assert "null-reference" in _names(analyze_issue(none_issue, [], []))
    js = _issue("n2", "TypeError", "Cannot read properties of undefined (reading <str>)")
    assert "null-reference" in _names(analyze_issue(js, [], []))
    key = _issue("k1", "KeyError", "<str>", message="'customer_id'")
    names = _names(analyze_issue(key, [], []))
    assert "key-index" in names and "null-reference" not in names
    idx = _issue("k2", "IndexError", "list index out of range")
    assert _names(analyze_issue(idx, [], []))[0] == "key-index"


def test_keyerror_on_env_name_is_configuration():
    issue = _issue(
        "c1", "KeyError", "<str>", message="'DATABASE_URL'",
        frames=[_frame("app.settings", "load"), _frame("os", "__getitem__", False)],
    )  # fmt: skip
    names = _names(analyze_issue(issue, [], []))
    assert "configuration" in names and "key-index" in names


def test_oom_disk_auth_rate_limit_tls_dns_deadlock_serialization():
    cases = {
        "out-of-memory": ("MemoryError", ""),
        "disk-full": ("OSError", "[Errno <num>] No space left on device: <path>"),
        "permission-auth": ("HTTPError", "401 Client Error: Unauthorized for url: <url>"),
        "rate-limited": ("HTTPError", "429 Too Many Requests"),
        "tls-certificate": (
            "SSLCertVerificationError",
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired",
        ),
        "dns": ("gaierror", "[Errno <num>] Name or service not known"),
        "deadlock-lock-timeout": ("OperationalError", "(1213, 'Deadlock found when trying')"),
        "serialization": ("JSONDecodeError", "Expecting value: line <num> column <num>"),
    }
    for expected, (etype, template) in cases.items():
        names = _names(analyze_issue(_issue("x", etype, template), [], []))
        assert names and names[0] == expected, (expected, names)


def test_auth_failure_burst_is_high_frequency():
    issue = _issue(
        "a1",
        "AuthenticationError",
        "password authentication failed for user <str>",
        count=1200,
        last_seen=T0 + 20 * MIN,
    )
    a = analyze_issue(issue, [], [])
    names = _names(a)
    assert "permission-auth" in names and "high-frequency" in names
    assert a["timeline"]["rate_per_min"] == 60.0


def test_lock_wait_timeout_prefers_deadlock_over_timeout():
    issue = _issue("l1", "OperationalError", "(1205, 'Lock wait timeout exceeded; try restarting')")
    a = analyze_issue(issue, [], [])
    weights = {p["name"]: p["weight"] for p in a["patterns"]}
    assert weights["deadlock-lock-timeout"] > weights["timeout"]


def test_frames_only_match_counts_less():
    issue = _issue(
        "f1", "RuntimeError", "request failed",
        frames=[_frame("app.client", "wait_with_timeout")],
    )  # fmt: skip
    a = analyze_issue(issue, [], [])
    timeout = next(p for p in a["patterns"] if p["name"] == "timeout")
    assert timeout["sources"] == ["frames"]
    assert timeout["weight"] < 0.7


def test_new_release_and_regression_context_patterns():
    older = _issue("o1", "ValueError", "bad", first_seen=T0 - 600 * MIN, releases=("1.3.9",))
    issue = _issue(
        "r1",
        "KeyError",
        "<str>",
        status="regressed",
        releases=("1.4.0",),
        notes="guarded lookup in cart merge",
    )
    a = analyze_issue(issue, [older], [])
    names = _names(a)
    assert "new-release" in names and "regression" in names
    reg = next(p for p in a["patterns"] if p["name"] == "regression")
    assert any("guarded lookup" in e for e in reg["evidence"])
    # the same release was already in an earlier issue: only "only seen in" remains
    seen = _issue("o2", "ValueError", "x", first_seen=T0 - 5 * MIN, releases=("1.4.0",))
    nr = next(p for p in analyze_issue(issue, [seen], [])["patterns"] if p["name"] == "new-release")
    assert len(nr["evidence"]) == 1
    # no earlier issues: no history to call the release new against
    alone = next(p for p in analyze_issue(issue, [], [])["patterns"] if p["name"] == "new-release")
    assert alone["evidence"] == ["only seen in release '1.4.0'"]


def test_no_pattern_for_vague_issue():
    a = analyze_issue(_issue("v1", "Exception", "something went wrong", count=1), [], [])
    assert [n for n in _names(a) if n not in ("new-release",)] == []
    assert a["suggestions"][-1]["fixes"]


# --- similar -------------------------------------------------------------------------------


def test_regressed_issue_ranks_resolved_lookalike_with_notes_first():
    frames = [_frame("app.cart", "merge"), _frame("app.cart", "load_items")]
    issue = _issue(
        "cur",
        "KeyError",
        "<str> missing in cart payload",
        status="regressed",
        frames=frames,
    )
    resolved = _issue(
        "old",
        "KeyError",
        "<str> missing in cart payload",
        status="resolved",
        frames=frames,
        notes="Root cause: mobile client omits sku; fix: default sku from catalog (PR #812)",
    )
    same_type_only = _issue("kt", "KeyError", "<str>", frames=[_frame("app.auth", "login")])
    other = _issue("zz", "ZeroDivisionError", "division by zero")
    text_only = _issue("tx", "ValueError", "<str> missing in cart payload")
    a = analyze_issue(issue, [same_type_only, other, resolved, text_only, issue], [])
    ids = [s["issue_id"] for s in a["similar"]]
    assert ids[0] == "old"
    assert "cur" not in ids and "zz" not in ids
    assert "tx" in ids and "kt" in ids
    scores = [s["score"] for s in a["similar"]]
    assert scores == sorted(scores, reverse=True)
    top = a["similar"][0]
    assert top["resolution_notes"].startswith("Root cause: mobile client")
    assert "same exception type" in top["reasons"]
    assert a["suggestions"][0]["pattern"] == "similar-resolved"
    assert "PR #812" in a["suggestions"][0]["fixes"][0]


def test_similar_is_top_five_and_symmetric():
    base = _issue("b", "TimeoutError", "timed out waiting for <str>")
    many = [_issue(f"s{i}", "TimeoutError", f"timed out waiting for <str> {i}") for i in range(9)]
    a = analyze_issue(base, many, [])
    assert len(a["similar"]) == 5
    assert similarity(base, many[0])[0] == similarity(many[0], base)[0]
    assert 0.0 <= similarity(base, many[0])[0] <= 1.0


# --- correlations --------------------------------------------------------------------------


def test_correlations_filter_by_service_window_state_and_order_by_closeness():
    issue = _issue("c", "ReadTimeout", "Read timed out", service="checkout")
    signals = [
        _signal("checkout", 4 * MIN, rule="error_rate_high"),
        _signal("checkout", -90_000, rule="p99_high"),  # 1.5 min before: closest
        _signal("checkout", -9 * MIN, rule="throughput_drop"),
        _signal("checkout", 11 * MIN, rule="too_late"),  # outside ±10 min
        _signal("checkout", -30 * MIN, rule="too_early"),
        _signal("payments", 30_000, rule="other_service"),  # other service
        _signal("checkout", 10_000, rule="resolved_one", state="resolved"),
        _signal("issues", 2 * MIN, rule="issue_rate", fingerprint="c"),  # about the issue
    ]
    a = analyze_issue(issue, [], signals)
    rules = [s["rule"] for s in a["correlations"]["signals"]]
    assert rules == ["p99_high", "issue_rate", "error_rate_high", "throughput_drop"]
    first = a["correlations"]["signals"][0]
    assert first["offset_ms"] == -90_000 and first["relation"] == "before"
    assert a["correlations"]["signals"][1]["about_issue"] is True
    assert a["correlations"]["window_ms"] == 10 * MIN
    narrow = analyze_issue(issue, [], signals, window_ms=2 * MIN)
    assert [s["rule"] for s in narrow["correlations"]["signals"]] == ["p99_high", "issue_rate"]


def test_rollup_shift_and_timeline():
    issue = _issue("r", "ReadTimeout", "Read timed out", releases=("2.0.1", "2.0.2"))
    rollups = [
        {"service": "checkout", "endpoint": "*", "start": T0 - 2 * MIN, "count": 1000,
         "errors": 2, "p99_ms": 180.0},
        {"service": "checkout", "endpoint": "*", "start": T0 + MIN, "count": 1000,
         "errors": 90, "p99_ms": 2400.0},
        {"service": "payments", "endpoint": "*", "start": T0, "count": 5, "errors": 5},
    ]  # fmt: skip
    a = analyze_issue(issue, [], [], rollups)
    shift = a["correlations"]["rollups"]
    assert shift["before"]["error_rate_pct"] == 0.2
    assert shift["after"]["error_rate_pct"] == 9.0
    assert shift["after"]["max_p99_ms"] == 2400.0
    t = a["timeline"]
    assert t["first_seen"] == T0 and t["first_release"] == "2.0.1"
    assert t["first_seen_iso"].endswith("Z")
    assert analyze_issue(issue, [], [])["correlations"]["rollups"] is None


# --- confidence ----------------------------------------------------------------------------


def test_confidence_strong_multi_evidence_beats_vague_and_is_bounded():
    frames = DB_FRAMES
    strong = _issue(
        "s",
        "OperationalError",
        "QueuePool limit of size <num> overflow <num> reached, connection timed out",
        count=5000,
        frames=frames,
    )
    resolved = _issue(
        "p",
        "OperationalError",
        "QueuePool limit of size <num> overflow <num> reached, connection timed out",
        status="resolved",
        frames=frames,
        notes="Fix: close sessions in error path; pool 10 -> 30",
    )
    signals = [_signal("checkout", -MIN)]
    sa = analyze_issue(strong, [resolved], signals)
    vague = analyze_issue(_issue("v", "Exception", "oops", count=1), [], [])
    single = analyze_issue(_issue("o", "ReadTimeout", "Read timed out", count=1), [], [])
    assert 0.0 <= vague["confidence"] < single["confidence"] < sa["confidence"] <= 1.0
    assert sa["confidence"] >= 0.8
    assert vague["confidence"] <= 0.1
    factors = sa["confidence_factors"]
    assert factors["similar_resolved"] > 0 and factors["correlated_signal"] > 0
    assert abs(sum(factors.values()) - sa["confidence"]) < 0.01


def test_confidence_always_within_bounds_for_odd_input():
    odd = [
        {},
        {"count": -5, "first_seen": "x", "sample": "not a dict"},
        {"count": 10**12, "exception_type": "TimeoutError", "message_template": "timeout " * 999},
        {"issue_id": None, "services": None, "releases": [1, None], "first_release": 7},
    ]
    for issue in odd:
        a = analyze_issue(issue, [issue, {}, "junk"], [{"state": "firing"}, "junk"], [{}])  # type: ignore[list-item]
        assert 0.0 <= a["confidence"] <= 1.0
        json.dumps(a)


# --- untrusted text and renderers ----------------------------------------------------------


def test_renderers_contain_key_facts():
    issue = _issue(
        "abc123", "ReadTimeout", "Read timed out", status="regressed", count=42,
        releases=("1.4.0",), frames=[_frame("app.payments", "charge")],
    )  # fmt: skip
    resolved = _issue(
        "old1", "ReadTimeout", "Read timed out", status="resolved",
        notes="raised pool size, added retry",
    )  # fmt: skip
    a = analyze_issue(issue, [resolved], [_signal("checkout", -2 * MIN)])
    for out in (format_text(a), format_markdown(a)):
        assert "abc123" in out and "timeout" in out and "old1" in out
        assert "raised pool size, added retry" in out
        assert "1.4.0" in out and "-2m00s" in out and "p99_high" in out
        assert f"{a['confidence']:.2f}" in out
    assert "### Patterns" in format_markdown(a)


def test_huge_and_hostile_strings_are_truncated_and_neutralised():
    huge = "A" * 200_000
    hostile = "\x1b[31mred\x1b[0m `code` | pipe\n# heading " + huge
    issue = _issue(
        "h", "ReadTimeout", hostile, message="timed out " + huge,
        frames=[_frame("m" * 50_000, "f" * 50_000)] * 500,
        context={"k" * 10_000: "v" * 100_000, "nested": [{"x": huge}] * 100},
        notes=huge,
    )  # fmt: skip
    other = _issue("h2", "ReadTimeout", hostile, status="resolved", notes=hostile)
    sig = _signal("checkout", 1000, summary=hostile)
    a = analyze_issue(issue, [other], [sig])
    encoded = json.dumps(a)
    assert len(encoded) < 40_000
    assert "\x1b" not in encoded
    for out in (format_text(a), format_markdown(a)):
        assert len(out) < 40_000
        assert "\x1b" not in out
        assert "…[truncated]" in out
        assert max(len(line) for line in out.splitlines()) < 2_000
    md = format_markdown(a)
    assert "\n# heading" not in md
    assert "`code`" not in md
