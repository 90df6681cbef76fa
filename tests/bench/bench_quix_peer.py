"""Benchmark peer: the rollup job in Quix Streams, on the rollup benchmark's own topic.

Issue 22 asks prodmon to be at least 10x Quix Streams on the same job. The job is the
topic `bench_rollup_throughput` produces (latency events, one per message, keyed by
service, event time in the `ts` field) turned into a 10 s tumbling window per series
(`service|endpoint`) computing count, mean and max of `duration_ms`, closed windows
emitted (`.final()`). prodmon computes more per window (HDR percentiles, dedup, full
validation, changelogged state); Quix here computes only count / mean / max.

Keying. The topic is keyed by service (the usual fleet keying, and what prodmon reads),
not by series, and a Quix window is per message key. So the Quix job re-keys with
`group_by` (series = `service|endpoint`): the documented Quix way to aggregate by
something other than the message key. Quix then re-produces every event to its
`repartition__` topic and windows what it consumes from there, in the same process. That
is the fair equivalent: prodmon also windows per series on this service-keyed topic (and
on an unkeyed one) with its own hop (ingest's partial windows, merged by the windows
stage), and pays for it within the measured figure. `--quix-variants group_by,service`
also measures a hand-tuned Quix job with no repartition: a window per service key whose
aggregate is a dict of endpoint -> (count, sum, max) (correct only because the topic is
keyed by service, which is why it is not the headline figure).

Timing: from the first record Quix processed to the last one (the N-th record through
the window operator; windows still open then are not waited for, as in prodmon's figure),
in events/s, taken inside the Quix process (its start-up, topic creation and rebalance
are left out). The Quix app runs in a child process: `Application.run()` blocks and
installs its own signal handlers, and the child's heap does not carry the parent's
million event dicts.

Configuration against the local broker (tansu, pipeline/broker.py):
- Quix's producer defaults to `enable.idempotence=True`; tansu has no InitProducerId, and
  nothing here may rely on it, so `producer_extra_config={"enable.idempotence": False}`.
  `processing_guarantee` stays at its default, at-least-once (exactly-once would need
  transactions).
- tansu's DescribeConfigs returns only the configs set explicitly, and Quix needs the
  source topic's `retention.ms` to derive its repartition and changelog topics: the
  child sets it to Kafka's default (7 days) when the broker reports none
  (`report_retention`).
- tansu answers a JoinGroup only after about half the session timeout (23 s at
  librdkafka's default 45 s), so the consumer gets `session.timeout.ms=6000`; this
  shortens start-up, which is not timed.
- RocksDB state goes to a fresh temporary directory, removed afterwards; changelog
  topics stay on (Quix's default, as prodmon's state has its changelog). Everything
  else is Quix's default (commit every 5 s, JSON via orjson).
- Each run uses a fresh consumer group, `auto_offset_reset="earliest"`.

quixstreams is a bench-only dependency: `pip install -e '.[bench]'` (the `bench` extra of
pyproject.toml), or `.venv/bin/pip install "quixstreams>=3.28,<4"`.

Run (with prodmon and the ceiling in the same run, the issue's job):
    .venv/bin/python -m tests.bench.bench_rollup_throughput --events 1000000 --series 350 \
        --fleet-rate 5000 --peer quix
or `.venv/bin/python -m tests.bench.bench_quix_peer [--events N]`, which runs the same
with those defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import shutil
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENT = "quixstreams>=3.28,<4"
VARIANTS = ("group_by", "service")
WINDOW_MS = 10_000


def report_retention(bootstrap: str, topic: str) -> None:
    """Make the broker report the topic's `retention.ms` (Kafka's default, 7 days) if it
    does not: tansu's DescribeConfigs answers only the configs set explicitly (Kafka
    answers every config, defaults included), and Quix reads the source topic's
    `retention.ms` to configure its repartition and changelog topics (a KeyError without
    it). On Kafka this finds the value and changes nothing."""
    from confluent_kafka.admin import (  # type: ignore[import-untyped]
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource("topic", topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    if "retention.ms" not in configs:
        entry = ConfigEntry(
            "retention.ms", str(7 * 86_400_000), incremental_operation=AlterConfigOpType.SET
        )
        resource = ConfigResource("topic", topic, incremental_configs=[entry])
        admin.incremental_alter_configs([resource])[resource].result(timeout=30)


def run_quix_job(
    bootstrap: str, topic: str, total: int, variant: str, state_dir: str, timeout_s: float
) -> dict:
    """Run the Quix app on `topic` until `total` records went through the window; in the
    child process. Returns the measured figures."""
    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Max, Mean, Reduce

    report_retention(bootstrap, topic)
    clock = time.perf_counter
    # Progress: records through the window operator (with group_by, the records of the
    # repartition topic), counted once each is fully processed; the clock starts at the
    # first record.
    seen = [0]
    marks: dict[str, float] = {}

    def processed(topic_name: str, partition: int, offset: int) -> None:
        if not marks:
            marks["start"] = clock()
            marks["cpu_start"] = time.process_time()
        if variant == "service" or topic_name != topic:
            seen[0] += 1
            if seen[0] == total:
                marks["end"] = clock()
                marks["cpu_end"] = time.process_time()
                app.stop()

    app = Application(
        broker_address=bootstrap,
        consumer_group=f"quix-bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
        # tansu has no idempotent producer (InitProducerId); Quix defaults it on.
        producer_extra_config={"enable.idempotence": False},
        # tansu answers a JoinGroup after about half the session timeout (23 s at
        # librdkafka's default 45 s): start-up only, not timed.
        consumer_extra_config={"session.timeout.ms": 6000},
        on_message_processed=processed,
    )
    source = app.topic(
        topic,
        value_deserializer="json",
        timestamp_extractor=lambda value, headers, ts, ts_type: value["ts"],
    )
    sdf = app.dataframe(source)
    if variant == "group_by":
        sdf = sdf.group_by(lambda e: f"{e['service']}|{e['endpoint']}", name="series")
        windows = sdf.tumbling_window(WINDOW_MS).agg(
            count=Count(), mean=Mean("duration_ms"), max=Max("duration_ms")
        )
    elif variant == "service":

        def fold(acc: dict, e: dict) -> dict:
            d = e["duration_ms"]
            s = acc.get(e["endpoint"])
            if s is None:
                acc[e["endpoint"]] = [1, d, d]
            else:
                s[0] += 1
                s[1] += d
                if d > s[2]:
                    s[2] = d
            return acc

        def first(e: dict) -> dict:
            d = e["duration_ms"]
            return {e["endpoint"]: [1, d, d]}

        windows = sdf.tumbling_window(WINDOW_MS).agg(series=Reduce(fold, first))
    else:
        raise ValueError(f"unknown variant {variant!r}")
    closed = [0]

    def count_closed(window: dict) -> None:
        closed[0] += len(window["series"]) if variant == "service" else 1

    windows.final().update(count_closed)

    done = threading.Event()

    def watchdog() -> None:  # bounded: stop the app if it never gets there
        if not done.wait(timeout_s):
            app.stop()

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        app.run()
    finally:
        done.set()
    if "end" not in marks:
        raise RuntimeError(f"Quix processed {seen[0]} of {total} records in {timeout_s} s")
    elapsed = marks["end"] - marks["start"]
    return {
        "variant": variant,
        "events": seen[0],
        "seconds": elapsed,
        "events_per_s": seen[0] / elapsed,
        "closed_windows": closed[0],
        # CPU of the whole Quix process (librdkafka's threads too) over the same span
        "cpu_s": marks["cpu_end"] - marks["cpu_start"],
    }


async def quix_rate(
    bootstrap: str, topic: str, total: int, variant: str = "group_by", timeout_s: float = 600
) -> dict:
    """Run the Quix job in a child process (this interpreter) with a temporary state dir;
    its figures (events/s from its first record to its last through the window)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown Quix variant {variant!r} (known: {', '.join(VARIANTS)})")
    if importlib.util.find_spec("quixstreams") is None:
        raise SystemExit(
            f"the Quix peer needs {REQUIREMENT}: pip install -e '.[bench]' "
            f"(or .venv/bin/pip install '{REQUIREMENT}')"
        )
    state_dir = tempfile.mkdtemp(prefix="prodmon-quix-state-")
    job = {
        "bootstrap": bootstrap,
        "topic": topic,
        "total": total,
        "variant": variant,
        "state_dir": state_dir,
        "timeout_s": timeout_s,
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.bench.bench_quix_peer",
            "--worker",
            json.dumps(job),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"the Quix job failed (exit {proc.returncode})")
        return json.loads(out.decode().strip().splitlines()[-1])
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":  # the child process
        # quixstreams imports authlib's httpx client, which warns about its own module (and
        # authlib's import puts an "always" filter for its warnings in front of ours).
        with contextlib.suppress(ImportError):
            import authlib.deprecate  # type: ignore[import-untyped]  # noqa: F401
        warnings.filterwarnings("ignore", message="The httpx module is deprecated")
        found = run_quix_job(**json.loads(sys.argv[2]))
        print(json.dumps(found), flush=True)
        return
    from tests.bench import bench_rollup_throughput

    # The job by default; any option given here overrides (argparse keeps the last).
    defaults = ["--events", "1000000", "--series", "350", "--fleet-rate", "5000"]
    bench_rollup_throughput.main([*defaults, "--peer", "quix", *sys.argv[1:]])


if __name__ == "__main__":
    main()
