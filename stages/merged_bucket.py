"""One open base window of the windows stage, fed by ingest's partial windows, as columns.

Each partial window merged (a row of a service's partials element, schemas/partials.py)
was a `SparseHistogram` decoded from its words and merged into the series' `Window`: two
histogram objects and a sorted merge per row, and a `Window` per series and open window
(about 500 bytes) until the close. Here a row is appended to columns instead: its
series' id in this bucket, its six numbers, and its words as they came (appended to
one `bytearray`). The close (and early evaluation, for the series it judges) reduces the
columns with numpy for every series at once: counters by `np.add.at`, every bucket of
every row in one sort, as `Window.merge` would add them (past `promote_at` buckets dense,
as `bulk_close` stores a close's). Where a count would not fit the sparse word (never at
realistic loads) the series are rebuilt row by row exactly as before.

Pure: no I/O, no clocks.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from histograms.hdr import HdrLayout, SparseHistogram
from schemas.partials import InvalidPartial
from stages.bulk_close import _reduce, _store, _tables

if TYPE_CHECKING:
    from stages.windows import Window

__all__ = ["MergedBucket", "check_words"]

NUMBERS = 6  # count, errors, client_errors, late, sum_us, max_us


def check_words(hdr: HdrLayout, blobs: list[bytes], counts: list[int]) -> None:
    """Check partial windows' words (each blob: one row's little-endian sparse words with
    the layout's count bits) all at once: ascending buckets of `hdr`, positive counts
    adding up to the row's count. `InvalidPartial` naming the first row that is not."""
    if not blobs:
        return
    data = np.frombuffer(b"".join(blobs), dtype=np.uint64)
    if sys.byteorder != "little":
        data = data.byteswap()
    lens = np.fromiter(map(len, blobs), np.int64, len(blobs)) // 8
    row = np.repeat(np.arange(len(blobs), dtype=np.int64), lens)
    index = (data >> np.uint64(hdr._count_bits)).astype(np.int64)
    tally = (data & np.uint64(hdr._cmask)).astype(np.int64)
    bad = (tally <= 0) | (index >= hdr.counts_len)
    later = np.zeros(len(data), dtype=bool)  # within a row, each index above the one before
    later[1:] = (row[1:] == row[:-1]) & (index[1:] <= index[:-1])
    sums = np.zeros(len(blobs), dtype=np.int64)
    np.add.at(sums, row, tally)
    wrong = np.flatnonzero(sums != np.asarray(counts, dtype=np.int64))
    if bad.any() or later.any():
        first = int(row[int(np.flatnonzero(bad | later)[0])])
        raise InvalidPartial(f"rows[{first}]: histogram words are not ascending buckets")
    if len(wrong):
        first = int(wrong[0])
        held = int(sums[first])
        raise InvalidPartial(f"rows[{first}]: count {counts[first]} but the histogram holds {held}")


class MergedBucket:
    """The partial windows merged into one base window, by series (module docstring)."""

    __slots__ = ("_window", "hdr", "ids", "lengths", "names", "numbers", "sids", "start", "words")

    def __init__(self, hdr: HdrLayout, window: type[Window], start: int) -> None:
        self.hdr = hdr
        self._window = window  # stages.windows.Window (imported there: no import cycle)
        self.start = start
        self.ids: dict[str, int] = {}  # series -> id here, in the order first merged
        self.names: list[str] = []  # id -> series
        self.sids = array("I")  # per row: its series' id
        self.numbers = array("q")  # per row: its NUMBERS
        self.lengths = array("I")  # per row: its words
        self.words = bytearray()  # every row's sparse words (little-endian), in row order

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, series: object) -> bool:
        return series in self.ids

    def id_of(self, series: str) -> int:
        """The series' id here, a new one if it has none yet."""
        sid = self.ids.get(series)
        if sid is None:
            sid = self.ids[series] = len(self.names)
            self.names.append(series)
        return sid

    def add(self, sid: int, numbers: list[int], words: bytes) -> None:
        """Merge one partial window (its words checked by `check_words`)."""
        self.sids.append(sid)
        self.numbers.extend(numbers)
        self.lengths.append(len(words) // 8)
        self.words += words

    # --- reading -------------------------------------------------------------------------------

    def tallies(self) -> list[tuple[str, int]]:
        """(series, events) of every series here (early evaluation's count)."""
        if not self.sids:
            return []
        sids = np.frombuffer(self.sids, dtype=np.uint32)
        counts = np.frombuffer(self.numbers, dtype=np.int64)[0::NUMBERS]
        totals = np.zeros(len(self.names), dtype=np.int64)
        np.add.at(totals, sids, counts)
        return list(zip(self.names, totals.tolist(), strict=True))

    def windows(self) -> dict[str, Window]:
        """Every series' merged window, in the order the series were first merged."""
        return dict(self.items())

    def items(self, wanted: Callable[[str], bool] | None = None) -> Iterator[tuple[str, Window]]:
        """(series, merged flushed `Window`) of every series here, or of those `wanted`
        says yes to, in the order first merged."""
        for part in self.parts(wanted):
            yield from part

    def parts(
        self, wanted: Callable[[str], bool] | None = None, size: int = 0
    ) -> Iterator[list[tuple[str, Window]]]:
        """`items` in lists of at most `size` (0: one list): the columns are reduced once,
        the `Window`s built a list at a time (a close of many series holds one list of
        them, not one per series)."""
        names = self.names
        keep = None if wanted is None else [sid for sid, s in enumerate(names) if wanted(s)]
        if not self.sids or keep == []:
            return
        rows = np.arange(len(self.sids), dtype=np.int64)
        sids = np.frombuffer(self.sids, dtype=np.uint32).astype(np.int64)
        if keep is not None:
            rows = rows[np.isin(sids, keep)]
            sids = sids[rows]
        chosen = np.unique(sids) if keep is not None else np.arange(len(names), dtype=np.int64)
        slot = np.full(len(names), -1, dtype=np.int64)
        slot[chosen] = np.arange(len(chosen), dtype=np.int64)
        segment = slot[sids]
        numbers = np.frombuffer(self.numbers, dtype=np.int64).reshape(-1, NUMBERS)[rows]
        sums = np.zeros((len(chosen), NUMBERS - 1), dtype=np.int64)
        np.add.at(sums, segment, numbers[:, : NUMBERS - 1])
        maxima = np.zeros(len(chosen), dtype=np.int64)
        np.maximum.at(maxima, segment, numbers[:, NUMBERS - 1])
        keys, counts = self._buckets(rows, segment)
        width = _tables(self.hdr).width
        n = len(chosen)
        bounds = np.searchsorted(keys // width, np.arange(n + 1)).tolist()
        step = size or n
        for first in range(0, n, step):
            last = min(n, first + step)
            lo, hi = bounds[first], bounds[last]
            hists = self._histograms(keys[lo:hi] - first * width, counts[lo:hi], last - first)
            part = []
            numbers_of = zip(
                chosen[first:last].tolist(),
                sums[first:last].tolist(),
                maxima[first:last].tolist(),
                strict=True,
            )
            for k, (sid, (_, errors, client_errors, late, sum_us), max_us) in enumerate(numbers_of):
                window = self._window(self.hdr, self.start)
                window.hist = self._rebuilt(sid) if hists is None else hists[k]
                window.errors, window.client_errors, window.late = errors, client_errors, late
                window.sum_us, window.max_us = sum_us, max_us
                part.append((names[sid], window))
            yield part

    def _buckets(self, rows: np.ndarray, segment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every bucket of `rows`' words summed per (segment, bucket index): the keys
        `segment * width + index`, sorted, and their counts."""
        lay = self.hdr
        lengths = np.frombuffer(self.lengths, dtype=np.uint32).astype(np.int64)
        data = np.frombuffer(bytes(self.words), dtype=np.uint64)  # a copy: rows still come
        if len(rows) < len(lengths):  # the words of `rows` only
            chosen = np.zeros(len(lengths), dtype=bool)
            chosen[rows] = True
            data = data[np.repeat(chosen, lengths)]
        if sys.byteorder != "little":
            data = data.byteswap()
        lens = lengths[rows]
        width = _tables(lay).width
        keys = np.repeat(segment, lens) * width + (data >> np.uint64(lay._count_bits)).astype(
            np.int64
        )
        return _reduce(keys, (data & np.uint64(lay._cmask)).astype(np.int64))

    def _histograms(
        self, keys: np.ndarray, counts: np.ndarray, n: int
    ) -> list[SparseHistogram] | None:
        """The histograms of segments 0..n-1 of reduced `keys`/`counts`, as `bulk_close`
        stores a close's (dense past `promote_at` buckets); None when they need the
        row-by-row merge."""
        lay = self.hdr
        hists = [SparseHistogram(lay) for _ in range(n)]
        width = _tables(lay).width
        if not len(keys) or not np.bincount(keys // width, minlength=n).all():
            return None  # a series without buckets (a zero count)
        return hists if _store(lay, hists, keys, counts) else None  # None: a count too big

    def _rebuilt(self, sid: int) -> SparseHistogram:
        """The series' histogram merged row by row (`SparseHistogram.merge`, which
        promotes to dense when it must), exactly as a `Window` per series merged it."""
        merged = SparseHistogram(self.hdr)
        ends = np.cumsum(np.frombuffer(self.lengths, dtype=np.uint32), dtype=np.int64) * 8
        for r in np.flatnonzero(np.frombuffer(self.sids, dtype=np.uint32) == sid).tolist():
            end = int(ends[r])
            words = array("Q", self.words[end - 8 * self.lengths[r] : end])
            if sys.byteorder != "little":
                words.byteswap()
            hist = SparseHistogram(self.hdr)
            hist._counts = words
            hist.total = int(sum(w & self.hdr._cmask for w in words))
            if len(words) > self.hdr.promote_at or hist.total > self.hdr._cmask:
                hist.densify()
            merged.merge(hist)
        return merged
