"""The windows stage's open base windows as columns (stages/merged_bucket.py)."""

from __future__ import annotations

import base64
import random

import orjson
import pytest

from histograms.hdr import SparseHistogram, layout
from schemas.partials import InvalidPartial, encode_service_partials
from stages.base import Record
from stages.merged_bucket import MergedBucket, check_words
from stages.windows import Window, WindowsConfig, WindowsStage

HDR = layout(1, 3_600_000_000, 2)
START = 1_795_320_000_000


def _partial(rng: random.Random, wide: bool = False) -> tuple[list[int], bytes]:
    """One partial window: its six numbers and its sparse words (little-endian bytes)."""
    hist = SparseHistogram(HDR)
    values = [
        rng.randrange(1, 10**6 if not wide else 3 * 10**9) for _ in range(rng.randrange(1, 40))
    ]
    hist.record_many(values)
    errors = rng.randrange(0, hist.total + 1)
    numbers = [hist.total, errors, hist.total - errors, rng.randrange(3), sum(values), max(values)]
    return numbers, hist._counts.tobytes()


def _by_window(rows: list[tuple[str, list[int], bytes]], hdr=HDR) -> dict[str, Window]:
    """What a `Window` per series made of the same rows (the code before columns)."""
    windows: dict[str, Window] = {}
    for series, numbers, words in rows:
        hist = SparseHistogram.from_words(hdr, base64.b64encode(words).decode(), hdr._count_bits)
        window = windows.get(series)
        if window is None:
            window = windows[series] = Window(hdr, START)
            window.hist = hist
        else:
            window.hist.merge(hist)
        _, errors, client_errors, late, sum_us, max_us = numbers
        window.errors += errors
        window.client_errors += client_errors
        window.late += late
        window.sum_us += sum_us
        window.max_us = max(window.max_us, max_us)
    return windows


def _same(got: Window, want: Window) -> None:
    assert got.start == want.start
    assert got.hist.items() == want.hist.items() and got.hist.total == want.hist.total
    assert got.hist.is_dense() == want.hist.is_dense()
    fields = ("errors", "client_errors", "late", "sum_us", "max_us")
    assert [getattr(got, f) for f in fields] == [getattr(want, f) for f in fields]


@pytest.mark.parametrize("seed", range(20))
def test_columns_merge_every_series_as_a_window_per_series_did(seed: int):
    rng = random.Random(seed)
    names = [f"svc-{i % 3}|/e{i}" for i in range(rng.randrange(1, 30))]
    rows = [(rng.choice(names), *_partial(rng, wide=rng.random() < 0.1)) for _ in range(200)]
    bucket = MergedBucket(HDR, Window, START)
    for series, numbers, words in rows:
        bucket.add(bucket.id_of(series), numbers, words)
    want = _by_window(rows)
    got = bucket.windows()
    assert list(got) == list(want)  # the order series were first merged
    for series in want:
        _same(got[series], want[series])
    assert bucket.tallies() == [(s, w.hist.total) for s, w in want.items()]
    chosen = set(rng.sample(names, max(1, len(names) // 3)))
    picked = dict(bucket.items(lambda s: s in chosen))
    assert list(picked) == [s for s in want if s in chosen]
    for series, window in picked.items():
        _same(window, want[series])


def test_a_window_over_promote_at_buckets_is_dense_as_a_window_merge_made_it():
    narrow = layout(1, 10_000_000, 1)  # 336 buckets: promote_at 316
    values = [int(1.001334**i) for i in range(12_000)]  # 1 us .. 9 s: every bucket
    rows = []
    for part in range(0, len(values), 1000):
        hist = SparseHistogram(narrow)
        hist.record_many(values[part : part + 1000])
        numbers = [hist.total, 0, 0, 0, sum(values[part : part + 1000]), 0]
        rows.append(("svc|/wide", numbers, hist._counts.tobytes()))
    bucket = MergedBucket(narrow, Window, START)
    for series, numbers, words in rows:
        bucket.add(bucket.id_of(series), numbers, words)
    want = _by_window(rows, narrow)["svc|/wide"]
    got = bucket.windows()["svc|/wide"]
    assert want.hist.is_dense()
    _same(got, want)


def test_words_are_checked_all_at_once_naming_the_row():
    rng = random.Random(1)
    good = [_partial(rng) for _ in range(3)]
    check_words(HDR, [w for _, w in good], [n[0] for n, _ in good])
    with pytest.raises(InvalidPartial, match=r"rows\[1\]: count"):
        check_words(HDR, [w for _, w in good], [good[0][0][0], good[1][0][0] + 1, good[2][0][0]])
    words = good[2][1]
    assert len(words) >= 16  # two buckets at least: swapped, they descend
    blobs = [good[0][1], good[1][1], words[8:16] + words[0:8] + words[16:]]
    with pytest.raises(InvalidPartial, match=r"rows\[2\]: histogram words"):
        check_words(HDR, blobs, [n[0] for n, _ in good])


def test_a_service_element_with_one_bad_row_is_refused_whole():
    """Every row is checked before any is merged: a bad row dead-letters its record and
    leaves nothing of its element behind."""
    stage = WindowsStage(WindowsConfig(early_eval_s=0))
    rng = random.Random(2)
    rows = []
    for n in range(4):
        numbers, words = _partial(rng)
        if n == 2:
            numbers[0] += 1  # its histogram holds one event less than it says
        rows.append([f"/e{n}", *numbers, base64.b64encode(words).decode()])
    element = encode_service_partials("svc", START, 0, HDR._count_bits, rows)
    result = stage.process([Record("events.latency", 0, 0, None, orjson.dumps([element]))], 1.0)
    [dead] = [e for e in result.emits if e.topic == "events.dlq"]
    assert "rows[2]: count" in orjson.dumps(dead.value).decode()
    assert stage.core.stats["events"] == 0 and stage.core.stats["partials"] == 0
    assert not any(ps.open for ps in stage.core.partitions.values())


def test_a_series_without_buckets_is_merged_row_by_row_as_before():
    """A row of zero events (no words) leaves its series without buckets: the columns
    cannot store it, and every series is merged as a `Window` per series did."""
    rng = random.Random(9)
    rows = [("svc|/a", *_partial(rng)), ("svc|/b", [0, 0, 0, 2, 0, 0], b"")]
    rows.append(("svc|/a", *_partial(rng)))
    bucket = MergedBucket(HDR, Window, START)
    for series, numbers, words in rows:
        bucket.add(bucket.id_of(series), numbers, words)
    want, got = _by_window(rows), bucket.windows()
    assert list(got) == list(want)
    for series in want:
        _same(got[series], want[series])
