"""The highest fleet rate one pipeline process sustains with detection on time (issue 22).

The whole pipeline (`--stages all` in one process: ingest, fingerprint, windows, baseline,
escalation and the notifier, which delivers to the harness's loopback webhook) runs under
`loadtest.harness.run_loadtest` at a rising fleet rate. A rate is sustained when

- what the fleet sent kept its pace (the fleet, not the pipeline, would be the limit),
- every scripted incident was detected and the detection delay's p99 is within the run's
  budget, window + 2 s (`detections.summary.within_budget`), and
- every consumer group had caught up when the load stopped plus the drain time.

Each step is a separate load test on a fresh local broker; the figure is the highest rate
sustained, with the raw aiokafka consume+decode ceiling of that run's `events.raw`
(measured by the harness after the run) and the ratio of the two.

    .venv/bin/python -m tests.bench.bench_pipeline_rate --rates 10000,20000,30000,40000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile

from loadtest.harness import run_loadtest
from pipeline.logging import configure_logging


def _sustained(report: dict, rate: int) -> tuple[bool, str]:
    fleet = report["fleet"]["events_per_s"]
    summary = report["detections"]["summary"]
    if fleet < 0.9 * rate:
        return False, f"the fleet sent only {fleet:,.0f}/s (add --processes)"
    if not summary["within_budget"]:
        return False, (
            f"detected {summary['detected']}/{summary['total']}, p99 {summary['p99_s']} s "
            f"over {summary['budget_s']} s"
        )
    return True, f"detected {summary['detected']}/{summary['total']}, p99 {summary['p99_s']} s"


async def _step(rate: int, args: argparse.Namespace) -> tuple[bool, dict]:
    with tempfile.TemporaryDirectory(prefix="prodmon-rate-") as out:
        report = await run_loadtest(
            None,
            rate,
            args.duration,
            processes=args.processes,
            pipeline_processes=1,
            out_dir=out,
            incidents=args.incidents,
        )
    ok, why = _sustained(report, rate)
    t = report["throughput"]
    print(
        f"rate {rate:>7,}/s: {'sustained' if ok else 'NOT sustained'} ({why}); pipeline "
        f"{t['pipeline_events_per_s']:,.0f}/s, raw ceiling {t['raw_ceiling_events_per_s']:,.0f}/s "
        f"(fleet rate / ceiling {rate / t['raw_ceiling_events_per_s']:.3f}), drained in "
        f"{report['drain_s']} s",
        flush=True,
    )
    return ok, report


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="10000,20000,30000,40000", help="events/s, rising")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load a step")
    parser.add_argument("--processes", type=int, default=1, help="fleet producer processes")
    parser.add_argument("--incidents", type=int, default=8, help="incidents a step")
    args = parser.parse_args(argv)
    configure_logging("error")
    best: tuple[int, dict] | None = None
    for rate in sorted(int(r) for r in args.rates.split(",")):
        ok, report = await _step(rate, args)
        if not ok:
            break
        best = (rate, report)
    if best is None:
        print("no rate sustained")
        return 1
    rate, report = best
    ceiling = report["throughput"]["raw_ceiling_events_per_s"]
    print(
        f"highest sustained: {rate:,} events/s with detection p99 "
        f"{report['detections']['summary']['p99_s']} s (budget "
        f"{report['detections']['summary']['budget_s']} s); its raw ceiling {ceiling:,.0f}/s, "
        f"ratio {rate / ceiling:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
