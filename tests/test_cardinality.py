"""Cardinality limits: series over a partition's limits are counted in a visible overflow
series, raise one warning signal, and idle series give their room back."""

from __future__ import annotations

import orjson
import pytest

from pipeline.config import ConfigError, load_config
from pipeline.metrics import exposition
from pipeline.topics import ROLLUPS, SIGNALS
from stages.cardinality import OTHER, CardinalityLimits, SeriesRegistry
from stages.windows import WindowsConfig, WindowsStage
from tests.pipeline_helpers import make_config, running_pipeline, send_raw, topic_probe, wait_for
from tests.test_windows import T0, Harness, latency

LIMITS = CardinalityLimits(max_services=3, max_series_per_service=2, series_idle_s=120.0)


def test_series_over_the_limits_go_to_overflow_series_with_one_warning_per_scope():
    registry = SeriesRegistry(LIMITS)
    admitted = [registry.admit(f"s{i}", "/a", 0) for i in range(5)]
    assert admitted == ["s0|/a", "s1|/a", "s2|/a", f"{OTHER}|{OTHER}", f"{OTHER}|{OTHER}"]
    assert [registry.admit("s0", e, 0) for e in ("/a", "/b", "/c", "/d")] == [
        "s0|/a",
        "s0|/b",
        f"s0|{OTHER}",
        f"s0|{OTHER}",
    ]
    assert registry.overflow_events == 4
    assert registry.take_warnings() == [(OTHER, "firing"), ("s0", "firing")]
    registry.admit("s9", "/x", 0)
    registry.admit("s0", "/e", 0)
    assert registry.take_warnings() == []  # one warning per scope while it overflows


def test_idle_series_are_forgotten_which_frees_room_and_resolves_the_warning():
    registry = SeriesRegistry(LIMITS)
    for i in range(4):
        registry.admit(f"s{i}", "/a", 0)
    registry.take_warnings()
    registry.admit("s0", "/a", 60_000)  # s0 stays active
    assert registry.expire(before=30_000) == 3  # s1, s2 and the overflow series
    assert registry.take_warnings() == [(OTHER, "resolved")]
    assert registry.admit("s3", "/a", 70_000) == "s3|/a"  # room again
    assert registry.series == 2


def _burst(endpoints: int, services: int, per: int) -> list[dict]:
    return [
        latency(T0 + 1000 + n, 10.0 + n, service=f"svc{s}", endpoint=f"/e{e}")
        | {"event_id": f"{s}-{e}-{n}"}
        for s in range(services)
        for e in range(endpoints)
        for n in range(per)
    ]


def test_windows_count_every_event_and_put_the_overflow_in_a_visible_series():
    config = WindowsConfig(limits=LIMITS)
    h = Harness(WindowsStage(config))
    events = _burst(endpoints=4, services=5, per=3)
    for i in range(0, len(events), 7):
        h.send(*events[i : i + 7])
    h.send(latency(T0 + 16_000, 1.0, service="svc0", endpoint="/e0") | {"event_id": "close"})
    h.run()
    base = {r["series"]: r for r in h.rollups if r["resolution"] == "10s"}
    assert set(base) == {
        *(f"svc{s}|/e{e}" for s in range(3) for e in range(2)),
        *(f"svc{s}|{OTHER}" for s in range(3)),
        f"{OTHER}|{OTHER}",
        *(f"svc{s}|*" for s in range(3)),
        f"{OTHER}|*",
    }
    assert base[f"svc0|{OTHER}"]["count"] == 2 * 3  # /e2 and /e3
    assert base[f"{OTHER}|{OTHER}"]["count"] == 2 * 4 * 3  # svc3 and svc4, all endpoints
    assert sum(r["count"] for s, r in base.items() if not s.endswith("|*")) == len(events)
    signals = [v for v in h.other if isinstance(v, dict) and v.get("rule") == "cardinality-limit"]
    assert sorted(s["service"] for s in signals) == sorted([OTHER, "svc0", "svc1", "svc2"])
    assert {s["state"] for s in signals} == {"firing"} and len({s["id"] for s in signals}) == 4
    stats = h.stage.core.stats
    assert stats["series_overflow"] == 2 * 3 * 3 + 2 * 4 * 3


def test_a_restored_partition_keeps_its_admitted_series_from_the_changelog():
    config = WindowsConfig(limits=CardinalityLimits(max_services=2, series_idle_s=7200.0))
    h = Harness(WindowsStage(config))
    h.send(latency(T0 + 1000, 1.0, service="a"), latency(T0 + 2000, 1.0, service="b"))
    h.send(latency(T0 + 21_000, 1.0, service="a"))  # closes the first window: 1m opens
    h.run()
    h.restart(WindowsStage(config))
    h.send(latency(T0 + 22_000, 1.0, service="c"), latency(T0 + 23_000, 1.0, service="b"))
    h.send(latency(T0 + 45_000, 1.0, service="a"))
    h.run()
    second = {r["series"] for r in h.rollups if r["start"] == T0 + 20_000}
    assert "b|/pay" in second and f"{OTHER}|{OTHER}" in second  # b known, c over
    assert "c|/pay" not in second


def test_limits_are_checked_with_the_key_named():
    with pytest.raises(ConfigError, match=r"windows\.max_services"):
        load_config(env={}, overrides={"windows.max_services": -1})
    with pytest.raises(ConfigError, match=r"windows\.series_idle_s"):
        load_config(env={}, overrides={"windows.series_idle_s": 0})


async def test_a_flood_of_endpoints_through_the_pipeline_is_capped_and_signalled_once(
    bootstrap, topics
):
    config = make_config(bootstrap, topics, **{"windows.max_series_per_service": 3})
    events = [
        latency(T0 + 1000 + n, 5.0, service="api", endpoint=f"/item/{n}") | {"event_id": f"f{n}"}
        for n in range(50)
    ] + [latency(T0 + 30_000, 5.0, service="api", endpoint="/item/0") | {"event_id": "end"}]
    payload = [(b"api", orjson.dumps(events[i : i + 10])) for i in range(0, len(events), 10)]
    async with running_pipeline(config, ["ingest", "windows"]) as pipeline:
        await send_raw(config, payload)
        rollups = await wait_for(
            topic_probe(config, ROLLUPS),
            lambda got: any(r["series"] == f"api|{OTHER}" for r in got),
            timeout_s=30,
        )
        signals = await wait_for(topic_probe(config, SIGNALS), bool, timeout_s=10)
        metrics = await exposition(pipeline)
    base = {r["series"]: r for r in rollups if r["resolution"] == "10s" and r["start"] == T0}
    assert base[f"api|{OTHER}"]["count"] == 47 and len(base) == 5  # 3 admitted, other, *
    assert base["api|*"]["count"] == 50
    [warning] = signals
    assert warning["rule"] == "cardinality-limit" and warning["state"] == "firing"
    assert warning["service"] == "api" and "more than 3 endpoints" in warning["summary"]
    assert 'prodmon_stage_events_total{stage="windows",kind="series_overflow"} 47' in metrics
