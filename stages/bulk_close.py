"""Closing many windows at once: flush, merge, percentiles and encodings with numpy.

A base window closes for every active series at the same moment (tens of thousands at a
10 s boundary), and each closed window is merged into its series' coarser window. Done
one window at a time in Python that costs ~100 us a series, as much as ingesting the
window's events. Here the same work runs over all the windows' buckets in a few numpy
passes, and only what must be per window (its record, its zlib stream) stays in Python.

Every function gives exactly what the per-window methods give (`Window.flush`,
`Window.merge`, `SparseHistogram.values_at_percentiles` and `encode`); tests/
test_bulk_close.py compares them. Dense histograms (rare: thousands of buckets) and
layouts too large for the lookup tables take the per-window methods.

The columns: each non-empty bucket of a window is one entry, keyed ``segment *
counts_len + counts_index`` where the segment is the window's place in the list, so one
sort orders every window's buckets at once; a window's entries are then one slice.

Pure: no I/O, no clocks.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np

from histograms.hdr import (
    _COUNT_BYTES,
    _GAP_BYTES,
    _TABLE_SIZE,
    HdrLayout,
    SparseHistogram,
    _payload,
    encode_payload,
)

if TYPE_CHECKING:
    from stages.windows import Window

__all__ = ["flush_all", "merge_into", "summaries"]


class _Tables:
    """numpy copies of a layout's lookup tables."""

    def __init__(self, lay: HdrLayout) -> None:
        self.base = np.array(lay._base, dtype=np.int64)
        self.shift = np.array(lay._shift, dtype=np.int64)
        tops = lay.bucket_tops()
        self.tops = np.array(tops, dtype=np.int64) if tops is not None else None
        self.width = lay.counts_len  # keys are segment * width + counts index

    def index_of(self, values: np.ndarray, lay: HdrLayout) -> np.ndarray:
        """`HdrLayout.index_of` of every value (clamped to 0..highest)."""
        clamped = np.clip(values, 0, lay.highest)
        # The bit length of v | mask: frexp's exponent (exact: values are far below 2**53).
        _, bits = np.frexp((clamped | lay.sub_bucket_mask).astype(np.float64))
        return self.base[bits] + (clamped >> self.shift[bits])


@lru_cache(maxsize=16)
def _tables(lay: HdrLayout) -> _Tables:
    return _Tables(lay)


def _byte_cells(table: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """`table` (of at most 2-byte strings) as numpy: each entry's bytes padded to 2 and
    read as one native 16-bit word (viewed as bytes again, they come back in order), and
    its length."""
    cells = np.zeros((len(table), 2), dtype=np.uint8)
    for n, piece in enumerate(table):
        cells[n, : len(piece)] = list(piece)
    return cells.view(np.uint16).ravel(), np.array(list(map(len, table)), dtype=np.int64)


# The payload lookup tables of histograms/hdr.py as numpy: every sparse window's payload
# is then a few array operations over all their buckets, not a bytes object per bucket
# joined per window.
_GAP_CELLS, _GAP_LENS = _byte_cells(_GAP_BYTES)
_COUNT_CELLS, _COUNT_LENS = _byte_cells(_COUNT_BYTES)


def _payloads(gaps: np.ndarray, counts: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The payload bytes (`_payload`'s) of buckets with these gaps and counts (each below
    `_TABLE_SIZE`), one after the other, and where each bucket's bytes end in them."""
    cells = np.empty((len(gaps), 2), dtype=np.uint16)  # a bucket's gap bytes, count bytes
    cells[:, 0], cells[:, 1] = _GAP_CELLS.take(gaps), _COUNT_CELLS.take(counts)
    gap_lens, count_lens = _GAP_LENS.take(gaps), _COUNT_LENS.take(counts)
    keep = np.empty((len(gaps), 4), dtype=bool)  # which of those 4 bytes are written
    keep[:, 0], keep[:, 1] = gap_lens > 0, gap_lens > 1
    keep[:, 2], keep[:, 3] = True, count_lens > 1  # a count takes 1 or 2 bytes
    return cells.view(np.uint8)[keep].tobytes(), np.cumsum(gap_lens + count_lens)


def _sparse(window: Window) -> bool:
    return type(window.hist) is SparseHistogram


def _entries(lay: HdrLayout, hists: Sequence[SparseHistogram], segments: Sequence[int]):
    """The buckets of sparse `hists` as (keys, counts), each keyed by its segment."""
    words = np.frombuffer(b"".join(h._counts for h in hists), dtype=np.uint64)
    lens = np.fromiter((len(h._counts) for h in hists), np.int64, len(hists))
    segment = np.repeat(np.asarray(segments, dtype=np.int64), lens)
    index = (words >> np.uint64(lay._count_bits)).astype(np.int64)
    counts = (words & np.uint64(lay._cmask)).astype(np.int64)
    return segment * _tables(lay).width + index, counts


def _reduce(keys: np.ndarray, counts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys and the total count of each (`counts` None: one per key)."""
    if counts is None:
        return np.unique(keys, return_counts=True)
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    first = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return keys[first], np.add.reduceat(counts, first)


def _store(lay: HdrLayout, hists: Sequence[SparseHistogram], keys, counts) -> bool:
    """Make each of `hists` (segment i = hists[i]) hold its entries of the reduced
    `keys`/`counts`, every segment non-empty. False (nothing changed) if a count does not
    fit the sparse word; the caller then takes the per-window path."""
    if int(counts.max()) > lay._cmask:
        return False
    width = _tables(lay).width
    segment = keys // width
    bounds = np.searchsorted(segment, np.arange(len(hists) + 1)).tolist()
    totals = np.add.reduceat(counts, bounds[:-1]).tolist()
    if max(totals) > lay._cmask:
        return False
    words = ((keys - segment * width).astype(np.uint64) << np.uint64(lay._count_bits)) | (
        counts.astype(np.uint64)
    )
    view = memoryview(words.tobytes())
    promote_at = lay.promote_at
    for i, hist in enumerate(hists):
        a, b = bounds[i], bounds[i + 1]
        buckets = array("Q")
        buckets.frombytes(view[8 * a : 8 * b])
        hist._counts = buckets
        hist.total = totals[i]
        if b - a > promote_at:
            hist._promote()  # as `_add_tally` would have, bucket by bucket
    return True


def flush_all(lay: HdrLayout, windows: Sequence[Window]) -> None:
    """`Window.flush` for every window: pending values go into the histograms."""
    todo = [w for w in windows if w.values]
    for window in todo:
        if not _sparse(window):
            window.flush()
    todo = [w for w in todo if w.values]
    if not todo:
        return
    lens = np.fromiter((len(w.values) for w in todo), np.int64, len(todo))
    try:
        values = np.fromiter(chain.from_iterable(w.values for w in todo), np.int64, int(lens.sum()))
    except OverflowError:  # a value beyond 64 bits (not a validated duration): one by one
        for window in todo:
            window.flush()
        return
    starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
    sums = np.add.reduceat(values, starts).tolist()
    maxima = np.maximum.reduceat(values, starts).tolist()
    keys = np.repeat(np.arange(len(todo), dtype=np.int64), lens) * _tables(lay).width
    keys += _tables(lay).index_of(values, lay)
    held = [i for i, w in enumerate(todo) if w.hist.total]
    counts = None
    if held:
        old_keys, old_counts = _entries(lay, [todo[i].hist for i in held], held)
        keys = np.concatenate((keys, old_keys))
        counts = np.concatenate((np.ones(len(values), dtype=np.int64), old_counts))
    if not _store(lay, [w.hist for w in todo], *_reduce(keys, counts)):
        for window in todo:
            window.flush()
        return
    for window, total, top in zip(todo, sums, maxima, strict=True):
        window.sum_us += total
        if top > window.max_us:
            window.max_us = top
        window.values = []


def merge_into(
    lay: HdrLayout, targets: Sequence[Window], sources: Sequence[Window], owners: Sequence[int]
) -> None:
    """`targets[owners[k]].merge(sources[k])` for every k (sources are flushed first)."""
    flush_all(lay, sources)
    grouped: list[list[Window]] = [[] for _ in targets]
    counted = [target.hist.total > 0 for target in targets]  # has buckets, or will have
    for source, owner in zip(sources, owners, strict=True):
        grouped[owner].append(source)
        if source.hist.total:
            counted[owner] = True
    bulk: list[int] = []
    for t, (target, group) in enumerate(zip(targets, grouped, strict=True)):
        if _sparse(target) and all(map(_sparse, group)):
            bulk.append(t)
        else:
            for source in group:
                target.merge(source)
    filled = [t for t in bulk if counted[t]]
    if filled:
        parts = [(n, targets[t].hist) for n, t in enumerate(filled) if targets[t].hist.total]
        parts += [(n, s.hist) for n, t in enumerate(filled) for s in grouped[t] if s.hist.total]
        keys, counts = _entries(lay, [h for _, h in parts], [n for n, _ in parts])
        if not _store(lay, [targets[t].hist for t in filled], *_reduce(keys, counts)):
            for t in filled:
                for source in grouped[t]:
                    targets[t].hist.merge(source.hist)
    for t in bulk:
        target = targets[t]
        for source in grouped[t]:
            target.errors += source.errors
            target.client_errors += source.client_errors
            target.late += source.late
            target.sum_us += source.sum_us
            if source.max_us > target.max_us:
                target.max_us = source.max_us


def summaries(
    lay: HdrLayout, windows: Sequence[Window], percentiles: Sequence[float]
) -> tuple[list[list[int]], list[str]]:
    """For each flushed window: its histogram's values at `percentiles` (in order) and
    its encoding, as `values_at_percentiles` and `encode` give them."""
    tables = _tables(lay)
    bulk = [i for i, w in enumerate(windows) if w.hist.total and _sparse(w)]
    tops = tables.tops
    if tops is None or min(percentiles, default=1.0) <= 0:
        bulk = []
    values: list[list[int] | None] = [None] * len(windows)
    encoded: list[str | None] = [None] * len(windows)
    if bulk:
        assert tops is not None  # bulk is emptied above when there are no tops
        keys, counts = _entries(lay, [windows[i].hist for i in bulk], range(len(bulk)))
        index = keys % tables.width
        lens = np.fromiter((len(windows[i].hist._counts) for i in bulk), np.int64, len(bulk))
        ends = np.cumsum(lens)
        starts = ends - lens
        running = np.cumsum(counts)
        before = np.concatenate(([0], running))[starts]
        totals = running[ends - 1] - before
        columns = []
        for p in percentiles:  # HdrHistogram's target count, the same float expression
            target = np.floor(min(p, 100.0) * totals.astype(np.float64) / 100 + 0.5)
            target = np.minimum(np.maximum(target.astype(np.int64), 1), totals)
            at = np.searchsorted(running, before + target, side="left")
            columns.append(tops[index[at]])
        rows = np.stack(columns, axis=1).tolist()
        gaps = index - np.concatenate(([-1], index[:-1]))
        gaps[starts] = index[starts] + 1
        small = (np.maximum.reduceat(gaps, starts) < _TABLE_SIZE) & (
            np.maximum.reduceat(counts, starts) < _TABLE_SIZE
        )
        top = _TABLE_SIZE - 1  # (a window with more takes `_payload`)
        stream, ends_at = _payloads(np.minimum(gaps, top), np.minimum(counts, top))
        byte_ends = ends_at[ends - 1].tolist()
        byte_starts = [0, *byte_ends[:-1]]
        for n, (i, a, b, fits) in enumerate(
            zip(bulk, byte_starts, byte_ends, small.tolist(), strict=True)
        ):
            values[i] = rows[n]
            payload = stream[a:b] if fits else _payload(*windows[i].hist._columns())
            encoded[i] = encode_payload(lay, payload)
    for i, window in enumerate(windows):
        if values[i] is None:
            found = window.hist.values_at_percentiles(percentiles)
            values[i] = [found[p] for p in percentiles]
            encoded[i] = window.hist.encode()
    return values, encoded  # type: ignore[return-value]
