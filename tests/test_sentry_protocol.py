"""Sentry's protocol without a server: auth header parsing, envelope framing, body decoding,
the event and transaction mapping (schemas/sentry.py), and the [sentry] config."""

from __future__ import annotations

import gzip
import time
from datetime import UTC, datetime

import brotli
import orjson
import pytest

from pipeline.config import ConfigError, load_config
from schemas.events import Limits
from schemas.sentry import (
    BodyTooLarge,
    EnvelopeError,
    InvalidItem,
    Project,
    decode_body,
    map_item,
    parse_auth,
    parse_envelope,
)

PROJECT = Project("7", frozenset({"k"}), service="checkout", env="prod")
LIMITS = Limits()


def iso(ms: int) -> str:
    """RFC 3339 with milliseconds and Z, as the SDKs write it."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def now_ms() -> int:
    return int(time.time() * 1000)


def test_the_key_comes_from_x_sentry_auth_or_the_query_string():
    header = "Sentry sentry_version=7, sentry_client=sentry.python/2.0, sentry_key=abc123"
    assert parse_auth(header, None) == "abc123"
    assert parse_auth("sentry_key=abc, sentry_version=7", None) == "abc"
    assert parse_auth(None, "q-key") == "q-key"
    assert parse_auth("Sentry sentry_version=7", None) is None
    assert parse_auth(None, "  ") is None


def test_envelope_items_with_and_without_length():
    body = (
        b'{"event_id":"e1","dsn":"x"}\n'
        b'{"type":"attachment","length":5}\n'
        b"a\nb\nc\n"
        b'{"type":"event"}\n'
        b'{"message":"hi"}\n'
        b'{"type":"session"}\n'
        b'{"sid":"s"}'
    )
    header, items = parse_envelope(body)
    assert header["event_id"] == "e1"
    assert [(i.type, i.payload) for i in items] == [
        ("attachment", b"a\nb\nc"),
        ("event", b'{"message":"hi"}'),
        ("session", b'{"sid":"s"}'),
    ]


@pytest.mark.parametrize(
    "body",
    [b"not json\n", b'{}\n{"length": 2}\nxx\n', b'{}\n{"type":"event","length":50}\n{}\n'],
)
def test_broken_framing_refuses_the_envelope(body):
    with pytest.raises(EnvelopeError):
        parse_envelope(body)


def test_bodies_are_decoded_within_the_limit():
    data = b"x" * 10_000
    assert decode_body(gzip.compress(data), "gzip", 10_000) == data
    assert decode_body(brotli.compress(data), "br", 10_000) == data
    for encoding, packed in (("gzip", gzip.compress(data)), ("br", brotli.compress(data))):
        with pytest.raises(BodyTooLarge):
            decode_body(packed, encoding, 9_999)
    with pytest.raises(EnvelopeError):
        decode_body(gzip.compress(data)[:-20], "gzip", 100_000)
    with pytest.raises(EnvelopeError):
        decode_body(data, "compress", 100_000)


def test_a_message_event_maps_to_an_error_with_the_project_defaults():
    sent_ms = (now_ms() // 1000 - 60) * 1000 + 250
    event = {
        "event_id": "a" * 32,
        "timestamp": iso(sent_ms),
        "level": "info",
        "logentry": {"message": "cache %s warmed", "formatted": "cache eu warmed"},
        "tags": [["service", "cache"], ["region", "eu"]],
        "contexts": {"big": {"blob": "x" * 20_000}, "trace": {"trace_id": "t"}},
    }
    got = map_item("event", orjson.dumps(event), PROJECT, now_ms(), LIMITS)
    assert got["service"] == "cache"  # the event's own service tag wins
    assert got["env"] == "prod"
    assert got["ts"] == sent_ms
    assert got["severity"] == "low"
    assert got["exception"] == {"type": "Message", "message": "cache eu warmed"}
    assert got["tags"] == {"service": "cache", "region": "eu"}
    # A context too big for the limit is left out; the event is kept.
    assert "contexts.big" not in got["context"]
    assert got["context"]["contexts.trace"] == {"trace_id": "t"}


def test_a_transaction_maps_to_a_latency_event():
    start = time.time() - 1
    tx = {
        "type": "transaction",
        "transaction": "/api/pay",
        "start_timestamp": start,
        "timestamp": start + 0.125,
        "request": {"method": "post"},
        "contexts": {"response": {"status_code": 503}, "trace": {"status": "ok"}},
    }
    got = map_item("transaction", orjson.dumps(tx), PROJECT, now_ms(), LIMITS)
    assert got["schema"] == "latency/1"
    assert (got["service"], got["endpoint"], got["method"], got["status"]) == (
        "checkout",
        "/api/pay",
        "POST",
        503,  # the HTTP status wins over the span status
    )
    assert got["duration_ms"] == pytest.approx(125, abs=0.01)


@pytest.mark.parametrize(
    ("item_type", "payload", "field"),
    [
        ("event", b"[1]", "$"),
        ("event", b'{"level": "loud", "message": "x"}', "level"),
        ("event", b'{"message": "m", "timestamp": "x"}', "timestamp"),
        ("event", b"{}", "exception"),
        ("transaction", b'{"transaction": "t", "start_timestamp": 2, "timestamp": 1}', "timestamp"),
        ("transaction", b'{"start_timestamp": 1, "timestamp": 2}', "transaction"),
    ],
)
def test_items_that_cannot_be_events_say_why(item_type, payload, field):
    with pytest.raises(InvalidItem) as info:
        map_item(item_type, payload, PROJECT, now_ms(), LIMITS)
    assert info.value.field == field


def test_sentry_config_reads_keys_from_the_environment_and_never_shows_them(tmp_path):
    path = tmp_path / "prodmon.toml"
    path.write_text(
        "[sentry]\nport = 9100\nrate_limit_per_s = 50\n"
        '[sentry.projects.1]\nkeys = ["$MY_SENTRY_KEY", "literal-key"]\nservice = "shop"\n'
    )
    config = load_config(path, env={"MY_SENTRY_KEY": "from-env"})
    assert config.sentry.port == 9100
    assert config.sentry.projects["1"].keys == {"from-env", "literal-key"}
    shown = repr(config.redacted()) + repr(config)
    assert "from-env" not in shown and "literal-key" not in shown
    assert config.redacted()["sentry"]["projects"]["1"]["keys"] == 2
    with pytest.raises(ConfigError, match="MY_SENTRY_KEY is not set"):
        load_config(path, env={})
    env = {"PRODMON_SENTRY__PROJECTS": '{"3": {"keys": ["k3"]}}'}
    assert set(load_config(env=env).sentry.projects) == {"3"}
    with pytest.raises(ConfigError, match=r"sentry\.projects\.x"):
        load_config(env={"PRODMON_SENTRY__PROJECTS": '{"x": {"keys": ["k"]}}'})
