"""The `prodmon` command line as a user runs it: real processes, real broker."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import orjson

PRODMON = [sys.executable, "-m", "ops.cli"]


def _run(
    *args: str, stdin: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PRODMON, *args], input=stdin, capture_output=True, timeout=timeout, check=False
    )


def test_broker_prints_its_bootstrap_and_stops_on_sigterm():
    proc = subprocess.Popen([*PRODMON, "broker"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("bootstrap=127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        import socket

        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_topics_create_is_idempotent(bootstrap, prefix):
    first = _run("topics", "create", "--bootstrap", bootstrap, "--prefix", prefix)
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode().count("created") >= 10
    second = _run("topics", "create", "--bootstrap", bootstrap, "--prefix", prefix)
    assert second.returncode == 0
    assert "created" not in second.stdout.decode()


def test_bad_config_is_refused_at_startup_naming_the_key(tmp_path):
    path = tmp_path / "prodmon.toml"
    path.write_text("[runtime]\nmax_batch_records = -1\n")
    result = _run("run", "--bootstrap", "127.0.0.1:1", "--config", str(path))
    assert result.returncode == 2
    assert b"runtime.max_batch_records" in result.stderr
    result = _run("run", "--bootstrap", "127.0.0.1:1", "--stages", "ingest,nope")
    assert result.returncode == 2
    assert b"nope" in result.stderr and b"fingerprint" in result.stderr


def test_run_keeps_retrying_while_the_broker_is_unreachable_and_stops_on_sigterm():
    from pipeline.broker import free_port

    env = {**os.environ, "PRODMON_RUNTIME__RETRY_MAX_S": "0.5"}
    proc = subprocess.Popen(
        [*PRODMON, "run", "--bootstrap", f"127.0.0.1:{free_port()}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    # Its log, line by line as it is written, then b"" when it ends (read by a thread, so
    # the test never blocks on a read past its deadline).
    err_lines: queue.Queue[bytes] = queue.Queue()

    def read_log() -> None:
        for line in proc.stderr:
            err_lines.put(line)
        err_lines.put(b"")

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        # Rather than sleep a fixed time: wait until it has failed to connect 5 times (its
        # first attempt and 4 retries, 0.25-0.5 s apart), then it must still be running.
        unreachable = 0
        deadline = time.monotonic() + 60
        while unreachable < 5:
            line = err_lines.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line, f"it exited ({proc.wait()}) after {unreachable} failed attempts"
            if line.startswith(b"{"):
                unreachable += orjson.loads(line).get("event") == "broker_unreachable"
        assert proc.poll() is None  # still alive: it backs off instead of crashing
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)


def test_grouping_explain_shows_why_events_group_or_split():
    base = {
        "schema": "error/1",
        "ts": int(time.time() * 1000),
        "service": "checkout",
        "exception": {"type": "TimeoutError", "message": "pay-api timed out after 3000 ms"},
        "stacktrace": [
            {"module": "app.pay", "function": "charge", "lineno": 88, "in_app": True},
        ],
    }
    shifted = base | {
        "exception": {"type": "TimeoutError", "message": "pay-api timed out after 5000 ms"},
        "stacktrace": [{"module": "app.pay", "function": "charge", "lineno": 97, "in_app": True}],
    }
    other = base | {
        "stacktrace": [{"module": "app.cart", "function": "total", "lineno": 5, "in_app": True}]
    }
    lines = b"\n".join(orjson.dumps(e) for e in (base, shifted, other)) + b"\nnot json\n"
    result = _run("grouping", "explain", stdin=lines)
    assert result.returncode == 0, result.stderr
    out = [orjson.loads(x) for x in result.stdout.splitlines()]
    assert out[0]["fingerprint"] == out[1]["fingerprint"] != out[2]["fingerprint"]
    assert out[0]["frames_used"] == ["app.pay.charge"]
    assert "error" in out[3]
