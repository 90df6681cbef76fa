"""The bulk (numpy) window closing gives exactly what the per-window methods give."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from histograms.hdr import _TABLE_SIZE, SparseHistogram, _payload, layout
from schemas.rollups import PERCENTILES
from stages.bulk_close import _payloads, flush_all, merge_into, summaries
from stages.windows import Window

LAY = layout()
PCTS = [p for _, p in PERCENTILES] + [0.1, 100.0, 250.0]


def clone(window: Window) -> Window:
    copy = Window(window.hist.layout, window.start)
    copy.hist = window.hist.copy()
    copy.values = list(window.values)
    for field in ("errors", "client_errors", "late", "sum_us", "max_us"):
        setattr(copy, field, getattr(window, field))
    return copy


def state(window: Window) -> tuple:
    return (
        window.hist.items(),
        window.hist.total,
        window.hist.is_dense(),
        window.values,
        window.errors,
        window.client_errors,
        window.late,
        window.sum_us,
        window.max_us,
    )


def random_window(rng: random.Random, start: int = 0) -> Window:
    """Windows as they occur, and the edges: empty, a few values, many, pre-flushed
    buckets, dense, values beyond the layout's range, and zero."""
    window = Window(LAY, start)
    kind = rng.choice(["few", "few", "many", "flushed", "dense", "wide", "empty"])
    n = {"few": rng.randint(1, 8), "many": rng.randint(50, 400), "empty": 0}.get(kind, 40)
    values = [int(rng.lognormvariate(10, 1.5)) for _ in range(n)]
    if kind == "wide":
        values += [0, 1, LAY.highest, LAY.highest + 12345, 5 * LAY.highest]
    if kind == "flushed":
        window.hist.record_many([int(rng.expovariate(1e-4)) for _ in range(200)])
        window.sum_us, window.max_us = 17, 99
    if kind == "dense":
        window.hist.record_many([rng.randrange(LAY.highest) for _ in range(300)])
        window.hist.densify()
    window.values = values
    window.errors = rng.randint(0, 3)
    window.client_errors = rng.randint(0, 3)
    return window


@pytest.mark.parametrize("seed", range(6))
def test_flush_all_equals_flushing_each_window(seed: int) -> None:
    rng = random.Random(seed)
    windows = [random_window(rng) for _ in range(60)]
    expected = [clone(w) for w in windows]
    for window in expected:
        window.flush()
    flush_all(LAY, windows)
    assert [state(w) for w in windows] == [state(w) for w in expected]


@pytest.mark.parametrize("seed", range(6))
def test_merge_into_equals_merging_one_by_one(seed: int) -> None:
    rng = random.Random(seed)
    targets = [random_window(rng) for _ in range(12)]
    for target in targets:
        target.flush()
    sources = [random_window(rng) for _ in range(50)]
    owners = [rng.randrange(len(targets)) for _ in sources]
    expected = [clone(t) for t in targets]
    for source, owner in zip([clone(s) for s in sources], owners, strict=True):
        source.flush()
        expected[owner].merge(source)
    merge_into(LAY, targets, sources, owners)
    assert [state(t) for t in targets] == [state(t) for t in expected]


def test_merging_past_the_break_even_promotes_like_one_by_one() -> None:
    # Two sparse windows that are each under `promote_at` buckets but not together.
    half = LAY.promote_at // 2 + 10
    a, b, target = Window(LAY, 0), Window(LAY, 0), Window(LAY, 0)
    a.values = [LAY.value_from_index(i) for i in range(0, 2 * half, 2)]
    b.values = [LAY.value_from_index(i) for i in range(1, 2 * half, 2)]
    expected = Window(LAY, 0)
    for w in (clone(a), clone(b)):
        w.flush()
        assert not w.hist.is_dense()
        expected.merge(w)
    merge_into(LAY, [target], [a, b], [0, 0])
    assert target.hist.is_dense() and expected.hist.is_dense()
    assert state(target) == state(expected)


def test_counts_beyond_the_sparse_word_fall_back_to_the_exact_merge() -> None:
    big = 1 << (LAY._count_bits - 1)
    a, b = Window(LAY, 0), Window(LAY, 0)
    a.hist.record(1000, big)
    b.hist.record(1000, big)
    assert not a.hist.is_dense()
    merge_into(LAY, [a], [b], [0])
    assert a.hist.total == 2 * big
    assert a.hist.items() == [(LAY.index_of(1000), 2 * big)]


@pytest.mark.parametrize("seed", range(6))
def test_summaries_equal_each_histograms_answers(seed: int) -> None:
    rng = random.Random(seed)
    windows = [random_window(rng) for _ in range(80)]
    flush_all(LAY, windows)
    values, encoded = summaries(LAY, windows, PCTS)
    for window, got, enc in zip(windows, values, encoded, strict=True):
        want = window.hist.values_at_percentiles(PCTS)
        assert got == [want[p] for p in PCTS]
        assert enc == window.hist.encode()
        assert SparseHistogram.decode(enc) == window.hist


def test_summaries_of_wide_gaps_and_counts_use_the_general_payload() -> None:
    window = Window(LAY, 0)
    window.hist.record(3, 5000)  # a count past the byte tables
    window.hist.record(LAY.highest)  # a gap past them
    values, encoded = summaries(LAY, [window], PCTS)
    assert encoded == [window.hist.encode()]
    want = window.hist.values_at_percentiles(PCTS)
    assert values == [[want[p] for p in PCTS]]


@pytest.mark.parametrize("seed", range(4))
def test_payloads_of_many_buckets_are_each_buckets_payload_in_order(seed: int) -> None:
    """Gaps and counts over the whole lookup table (one- and two-byte varints): the bulk
    bytes are the buckets' `_payload` bytes one after the other, and the ends mark them."""
    rng = random.Random(seed)
    gaps = [rng.choice([1, 2, 63, 64, 65, _TABLE_SIZE - 1, rng.randrange(1, _TABLE_SIZE)])]
    gaps += [rng.randrange(1, _TABLE_SIZE) for _ in range(300)]
    counts = [rng.choice([1, 63, 64, _TABLE_SIZE - 1, rng.randrange(1, _TABLE_SIZE)])]
    counts += [rng.randrange(1, _TABLE_SIZE) for _ in range(300)]
    stream, ends = _payloads(np.array(gaps), np.array(counts))
    indices = list(itertools.accumulate(gaps, initial=-1))[1:]
    assert stream == _payload(indices, counts)
    start = 0
    for k, end in enumerate(ends.tolist()):
        assert stream[start:end] == _payload([gaps[k] - 1], [counts[k]])
        start = end
