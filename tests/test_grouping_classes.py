"""Grouping version 2: each token class, the structure rules, the user's own patterns, the
version-1 fingerprints, and fingerprints that depend on nothing but the message."""

from __future__ import annotations

import itertools
import random
import zlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grouping import (
    GROUPING_VERSION,
    compile_token_patterns,
    explain,
    fingerprint_error,
    message_variables,
    parameterise_message,
    previous_fingerprint,
    set_token_patterns,
)
from grouping.v1 import parameterise_message as parameterise_message_v1
from pipeline.config import ConfigError, load_config
from stages.base import Record
from stages.fingerprint import FingerprintStage


def error(message: str, etype: str = "LogError", **kw) -> dict:
    return {
        "schema": "error/1",
        "ts": 1_795_320_000_000,
        "service": "svc",
        "exception": {"type": etype, "message": message},
        "stacktrace": [],
        **kw,
    }


def fp(message: str) -> str:
    return fingerprint_error(error(message)).id


@pytest.fixture(autouse=True)
def _no_user_patterns():
    set_token_patterns({})
    yield
    set_token_patterns({})


# --- one test per token class: what it matches, and that values of it never split ------------

CLASSES = [
    # (class, message, the value, another message differing only in that value)
    ("num", "retry 3 of 5", "3", "retry 4 of 5"),
    ("num", "blk_-1608999687919862906 deleted", "1608999687919862906", "blk_75034833 deleted"),
    ("num", "took 250ms", "250ms", "took 1.5s"),
    ("num", "wrote 18846 bytes", "18846 bytes", "wrote 12 bytes"),
    ("num", "lifetime <1 sec", "<1 sec", "lifetime 00:17"),
    ("hex", "object at 0x7f3a2b1c0d00 freed", "0x7f3a2b1c0d00", "object at 0x55d0 freed"),
    ("hex", "mask ffffffff set", "ffffffff", "mask 0000ffff set"),
    ("id", "session k2j3h4g5m6 expired", "k2j3h4g5m6", "session z9y8x7w6v5u4 expired"),
    ("id", "node R27-M0-N8 down", "R27", "node R45-M1-N0 down"),
    ("ip", "dial tcp 10.0.0.5:6379 refused", "10.0.0.5:6379", "dial tcp [2001:db8::1]:443 refused"),
    ("host", "connect to db-1.example.com:5432", "db-1.example.com:5432", "connect to x.org:1"),
    ("host", "cannot resolve www.google.com now", "www.google.com", "cannot resolve a.b.cn now"),
    ("path", "open /etc/app/config.yaml failed", "/etc/app/config.yaml", "open /srv//x failed"),
    ("url", "GET https://api.x.com/v1/users?id=5 failed", "https://api.x.com/v1/users?id=5",
     "GET http://y/z failed"),
    ("email", "invite for bob@example.com bounced", "bob@example.com",
     "invite for a.b+c@mail.co.uk bounced"),
    ("uuid", "order 6f1c2a9e-0a4b-4c1d-9f0e-1a2b3c4d5e6f lost",
     "6f1c2a9e-0a4b-4c1d-9f0e-1a2b3c4d5e6f", "order 0e4bd3f2-91aa-4f7e-8c55-77aa12bc9d01 lost"),
    ("mac", "link 00:1a:2b:3c:4d:5e up", "00:1a:2b:3c:4d:5e", "link aa:bb:cc:dd:ee:ff up"),
    ("ts", "token expired at 2025-11-02T14:30:00Z", "2025-11-02T14:30:00Z",
     "token expired at Sun Jul 3 23:16:09 2005"),
    ("str", "KeyError: 'user_id'", "'user_id'", "KeyError: 'cart'"),
    ("value", "auth failed tty=:0 ok", ":0", "auth failed tty=NODEV:1 ok"),
    ("value", "lock ws=null tag=\"View Lock\"", "null", "lock ws=WorkSource{10113} tag=\"x\""),
    ("name", "session closed for user cyrus", "cyrus", "session closed for user news"),
]  # fmt: skip


@pytest.mark.parametrize(("cls", "message", "value", "other"), CLASSES)
def test_each_token_class_is_found_and_its_values_never_split(cls, message, value, other):
    assert (cls, value) in message_variables(message)
    assert f"<{cls}>" in parameterise_message(message)
    assert fp(message) == fp(other)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("connection refused", "permission denied"),
        ("Request failed with status code 404", "Request failed with status code 500"),
        ("worker exited with exit code 137", "worker exited with exit code 1"),
        ("state=RUNNING lost", "state=FAILED lost"),  # a plain-word value names a state
        ("authentication failure; user=root", "authentication failure; user=guest"),
        ("Receiving block x", "Received block x"),
        ("open through proxy HTTPS", "open through proxy SOCKS5"),
        ("ClassNotFoundException: com.a.Bar", "ClassNotFoundException: com.a.Baz"),
    ],
)
def test_constant_words_still_split(a, b):
    assert fp(a) != fp(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # a list of like values is one value, whatever its length
        ("ask 10.0.0.1:50010 to delete blk_1 blk_-2 blk_3", "ask 10.0.0.2:50010 to delete blk_4"),
        ("ids (1, 2, 3) failed", "ids (17) failed"),
        # a value spelt with punctuation between parts is one value
        ("lifetime 00:01:02 total", "lifetime 5 total"),
        ("at R27-M0-N8-I:J18-U11 fault", "at R02-M1-N0-C:J12-U01 fault"),
        # an empty or one-value parenthesis after a value is its other spelling
        ("18846 bytes (18.4 KB) received", "0 bytes received"),
        (
            "connection from 1.2.3.4 (h-1-2-3-4.isp.net) at noon",
            "connection from 1.2.3.5 () at noon",
        ),
        # a word holding a generated part is a value as a whole
        ("program IMB-MPI1.2MB_perf failed", "program /bgl/apps/x failed"),
        ("pod api-77c8f9hjk5-ab2cd OOMKilled", "pod api-6b9dxq4m2z-kxqhz OOMKilled"),
    ],
)
def test_structure_rules_group_values_of_any_shape(a, b):
    assert fp(a) == fp(b)


def test_words_with_version_numbers_are_not_values():
    for message in ("unsupported http2 over ipv6 with utf8", "Base64Encoder got x86_64 input"):
        assert parameterise_message(message) == message
        assert message_variables(message) == []


def test_the_class_of_a_slot_does_not_split():
    # the same slot holds a number, a hex id or a mixed id: one issue
    assert fp("iar 00106570 dear 0218dc58") == fp("iar 0010a4c0 dear 024d8e32")


def test_stack_traces_with_in_app_frames_still_decide():
    frames = [{"module": "app.pay", "function": "charge", "in_app": True}]
    a = fingerprint_error(error("timeout after 3000 ms", stacktrace=frames))
    b = fingerprint_error(error("something else entirely", stacktrace=frames))
    assert a.method == "frames" and a.id == b.id


# --- the user's own token patterns -----------------------------------------------------------


def test_user_patterns_add_a_class_that_wins_over_the_built_in_ones():
    message = "ticket TCK-12 rejected"
    assert "<ticket>" not in parameterise_message(message)
    set_token_patterns({"ticket": r"TCK-[0-9]+"})
    assert parameterise_message(message) == "ticket <ticket> rejected"
    assert ("ticket", "TCK-12") in message_variables(message)
    assert fp(message) == fp("ticket TCK-9981 rejected")
    out = explain(error(message))
    assert {"class": "ticket", "text": "TCK-12"} in out["variables"]


def test_user_patterns_can_make_a_word_variable():
    set_token_patterns({"color": r"\b(?:red|green|blue)\b"})
    assert fp("paint red failed") == fp("paint blue failed")


@pytest.mark.parametrize(
    ("patterns", "says"),
    [
        ({"ticket": "TCK-[0-9"}, "ticket: not a valid regular expression"),
        ({"ticket": ""}, "ticket: expected a regular expression"),
        ({"ticket": "x*"}, "ticket: the pattern matches the empty string"),
        ({"num": "[0-9]+"}, "num: is a built-in class"),
        ({"bad name": "x"}, "'bad name': a class name is a word"),
    ],
)
def test_bad_user_patterns_are_refused_naming_the_class(patterns, says):
    with pytest.raises(ValueError, match=says):
        compile_token_patterns(patterns)


def test_fingerprint_config_section_reads_token_patterns(tmp_path):
    path = tmp_path / "prodmon.toml"
    path.write_text('[fingerprint.token_patterns]\nticket = "TCK-[0-9]+"\n')
    assert load_config(path, env={}).fingerprint.token_patterns == {"ticket": "TCK-[0-9]+"}
    env = {"PRODMON_FINGERPRINT__TOKEN_PATTERNS": '{"order": "ORD-\\\\d+"}'}
    assert load_config(env=env).fingerprint.token_patterns == {"order": "ORD-\\d+"}


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        (
            '[fingerprint.token_patterns]\nticket = "TCK-[0-9"\n',
            "fingerprint.token_patterns.ticket",
        ),
        ('[fingerprint]\ntoken_patterns = "x"\n', "fingerprint.token_patterns: expected a table"),
        ("[fingerprint.token_patterns]\nticket = 3\n", "fingerprint.token_patterns.ticket"),
    ],
)
def test_bad_token_patterns_in_config_name_the_key(tmp_path, toml, says):
    path = tmp_path / "prodmon.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=says):
        load_config(path, env={})


# --- versions --------------------------------------------------------------------------------


def test_version_1_fingerprints_are_the_frozen_version_1_grouping():
    e = error("Received block blk_-1608999687919862906 of size 91178")
    old = fingerprint_error(e, 1)
    assert old.version == 1
    assert old.template == parameterise_message_v1(e["exception"]["message"])
    assert previous_fingerprint(e) == old.id != fingerprint_error(e).id
    with pytest.raises(ValueError):
        fingerprint_error(e, 3)


def test_explain_shows_both_versions_and_why():
    out = explain(error("Received block blk_-16089 of size 91178 from /10.250.10.6"))
    assert out["grouping_version"] == GROUPING_VERSION == 2
    assert out["fingerprints"] == {"v2": out["fingerprint"], "v1": previous_fingerprint(
        error("Received block blk_-16089 of size 91178 from /10.250.10.6"))}  # fmt: skip
    assert out["grouping_key"] == "Received block <*> of size <*> from <*>"
    assert [v["class"] for v in out["variables"]] == ["num", "num", "ip"]


def test_messages_without_values_keep_their_version_1_fingerprint():
    e = error("Connection reset by peer")
    assert previous_fingerprint(e) == fingerprint_error(e).id


# --- stateless: the fingerprint depends on the message only ----------------------------------

TEMPLATES = [
    "Received block blk_{n} of size {n} from /10.250.{b}.{b}",
    "session opened for user {w} by (uid={b})",
    "{h}:{p} open through proxy {h}:{p} HTTPS",
    "connection from {ip} ({h}) at Sun Jul {d} 23:16:{d} 2005",
    "retry {b} of {b} in {n}ms",
]
VALUES = {
    "n": st.integers(-(2**63), 2**63 - 1).map(str),
    "b": st.integers(0, 255).map(str),
    "d": st.integers(10, 28).map(str),
    "p": st.integers(1, 65535).map(str),
    "w": st.sampled_from(["root", "cyrus", "news", "test"]),
    "h": st.sampled_from(["www.google.com", "x-1.isp.net", "proxy.example.edu.hk"]),
    "ip": st.tuples(*[st.integers(1, 254)] * 4).map(lambda t: ".".join(map(str, t))),
}


@st.composite
def messages(draw):
    template = draw(st.sampled_from(TEMPLATES))
    out, rest = [], template
    while "{" in rest:
        head, _, tail = rest.partition("{")
        name, _, rest = tail.partition("}")
        out.append(head + draw(VALUES[name]))
    return TEMPLATES.index(template), "".join(out) + rest


def _clear_caches() -> None:  # a fresh process: nothing remembered
    set_token_patterns({})


_offsets = itertools.count()


def _run_stage(events: list[dict], partitions: int, order: random.Random) -> dict[str, int]:
    """Issue id -> count after a stage consumed `events` keyed by fingerprint."""
    by_partition: dict[int, list[dict]] = {}
    for e in events:
        part = zlib.crc32(e["fingerprint_id"].encode()) % partitions
        by_partition.setdefault(part, []).append(e)
    records = []
    for part, evs in by_partition.items():
        for e in evs:
            records.append(Record("events.errors", part, next(_offsets), b"", orjson.dumps([e])))
    order.shuffle(records)  # partitions interleave in any order
    records.sort(key=lambda r: (r.partition, r.offset))  # order within a partition holds
    stage = FingerprintStage()
    stage.process(records, 1_795_320_000.0)
    return {
        state.issue_id: state.count
        for issues in stage._issues.values()
        for state in issues.values()
    }


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(messages(), min_size=1, max_size=30), seed=st.integers(0, 2**32))
def test_fingerprints_do_not_depend_on_order_or_partition(batch, seed):
    first = {m: fp(m) for _, m in batch}
    rng = random.Random(seed)
    shuffled = list(batch)
    rng.shuffle(shuffled)
    _clear_caches()
    assert {m: fp(m) for _, m in reversed(shuffled)} == first
    # one fingerprint per template, whatever the values
    by_template: dict[int, set[str]] = {}
    for t, m in batch:
        by_template.setdefault(t, set()).add(first[m])
    assert all(len(ids) == 1 for ids in by_template.values())
    assert len({next(iter(ids)) for ids in by_template.values()}) == len(by_template)
    # through the fingerprint stage, on 1 or 4 partitions, in any order: the same issues
    events = []
    for i, (_, m) in enumerate(shuffled):
        e = error(m, event_id=f"e-{i}")
        e["fingerprint_id"] = first[m]
        events.append(e)
    one = _run_stage(events, 1, random.Random(seed))
    four = _run_stage(list(reversed(events)), 4, random.Random(seed + 1))
    assert one == four
    assert sum(one.values()) == len(batch)


# --- the command -----------------------------------------------------------------------------


def test_grouping_explain_command_uses_the_config_s_token_patterns(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "prodmon.toml"
    path.write_text('[fingerprint.token_patterns]\nticket = "TCK-[0-9]+"\n')
    line = orjson.dumps(error("ticket TCK-12 rejected for user bob")) + b"\n"
    cmd = [sys.executable, "-m", "ops.cli", "grouping", "explain", "--config", str(path)]
    done = subprocess.run(cmd, input=line, capture_output=True, timeout=60, check=True)
    out = orjson.loads(done.stdout)
    assert out["message_template"] == "ticket <ticket> rejected for user <name>"
    assert out["variables"] == [
        {"class": "ticket", "text": "TCK-12"},
        {"class": "name", "text": "bob"},
    ]
    assert set(out["fingerprints"]) == {"v1", "v2"}
    path.write_text('[fingerprint.token_patterns]\nticket = "TCK-[0-9"\n')
    bad = subprocess.run(cmd, input=line, capture_output=True, timeout=60, check=False)
    assert bad.returncode == 2
    assert b"fingerprint.token_patterns.ticket" in bad.stderr
